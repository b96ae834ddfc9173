//! A Zapier account's catch hooks with the Zap behind each, behaving as Zapier documents them:
//!
//! - `POST /hooks/catch/{account}/{hook}/` answered 200 `{status: "success", id, request_id,
//!   attempt}` whatever the body holds: Zapier takes the request first and runs the Zap after,
//!   so a Zap run that fails (a required input missing) shows in the Zap's history
//!   ([`FakeZap::runs`]), never in the answer; a Zap that is turned off still answers success
//!   and does not run;
//! - an unknown or deleted hook answered 410 (unverified);
//! - once held to limits, about 30 requests a second per hook (Zapier's help centre, "Webhooks by
//!   Zapier rate limits") refused with 429;
//! - the Zap's action is the vendor's ([`AutomationVendor::action`]): it runs when the record
//!   carries the inputs the action requires, and what it made is kept as the run's record.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{json, Value};

use super::AutomationVendor;
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator};

const HOOK_LIMIT: usize = 30;
const HOOK_PERIOD: Duration = Duration::from_secs(1);

/// One run of the Zap behind a hook, as its history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZapRun {
    /// The record the hook caught (and, when the run succeeded, the vendor's action made from).
    pub record: Value,
    /// `Ok` when the vendor's action ran; otherwise the history's error.
    pub outcome: Result<(), String>,
    /// The headers the request carried (signature headers, when signed).
    pub headers: BTreeMap<String, String>,
}

pub struct FakeZap {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Account>>,
    vendor: &'static AutomationVendor,
}

struct Hook {
    on: bool,
    runs: Vec<ZapRun>,
    recent: VecDeque<Instant>,
}

struct Account {
    vendor: &'static AutomationVendor,
    hooks: BTreeMap<(String, String), Hook>,
    next_request: u64,
    held_to_limits: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Account>>,
    recorder: Recorder,
    faults: Faults,
}

impl FakeZap {
    pub async fn start(
        addr: std::net::SocketAddr,
        vendor: &'static AutomationVendor,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Account {
            vendor,
            hooks: BTreeMap::new(),
            next_request: 1,
            held_to_limits: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/hooks/catch/{account}/{hook}", any(handle))
            .route("/hooks/catch/{account}/{hook}/", any(handle))
            .with_state(AppState {
                state: state.clone(),
                recorder: recorder.clone(),
                faults: faults.clone(),
            });
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
            vendor,
        })
    }

    /// Adds a Zap whose trigger is the catch hook `hook` of `account`, turned on, and answers
    /// the hook's URL as the Zap editor shows it.
    pub fn add_hook(&self, account: &str, hook: &str) -> String {
        self.lock().hooks.insert(
            (account.to_owned(), hook.to_owned()),
            Hook {
                on: true,
                runs: Vec::new(),
                recent: VecDeque::new(),
            },
        );
        format!("{}/hooks/catch/{account}/{hook}/", self.server.url())
    }

    /// The supplier turns the Zap off (or on again).
    pub fn turn(&self, account: &str, hook: &str, on: bool) {
        if let Some(found) = self
            .lock()
            .hooks
            .get_mut(&(account.to_owned(), hook.to_owned()))
        {
            found.on = on;
        }
    }

    /// The supplier deletes the Zap and its hook.
    pub fn delete_hook(&self, account: &str, hook: &str) {
        self.lock()
            .hooks
            .remove(&(account.to_owned(), hook.to_owned()));
    }

    /// The Zap's history: every run, oldest first.
    pub fn runs(&self, account: &str, hook: &str) -> Vec<ZapRun> {
        self.lock()
            .hooks
            .get(&(account.to_owned(), hook.to_owned()))
            .map(|found| found.runs.clone())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Account> {
        self.state.lock().expect("zap lock")
    }
}

async fn handle(
    State(app): State<AppState>,
    Path((account, hook)): Path<(String, String)>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, parsed, status);
        return response;
    }
    let kept: BTreeMap<String, String> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("webhook-"))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect();
    let (status, answer) = app
        .state
        .lock()
        .expect("zap lock")
        .catch(&account, &hook, &parsed, kept);
    app.recorder
        .record(method.as_str(), uri.path(), &headers, parsed, status);
    let mut response = (status, axum::Json(answer)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

impl Account {
    fn catch(
        &mut self,
        account: &str,
        hook: &str,
        record: &Value,
        headers: BTreeMap<String, String>,
    ) -> (StatusCode, Value) {
        let vendor = self.vendor;
        let Some(found) = self.hooks.get_mut(&(account.to_owned(), hook.to_owned())) else {
            return (
                StatusCode::GONE,
                json!({"status": "error", "message": "This hook does not exist or was deleted."}),
            );
        };
        let now = Instant::now();
        while found
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= HOOK_PERIOD)
        {
            found.recent.pop_front();
        }
        if self.held_to_limits && found.recent.len() >= HOOK_LIMIT {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"status": "error", "message": "Too many requests; slow down."}),
            );
        }
        found.recent.push_back(now);
        let request = self.next_request;
        self.next_request += 1;
        if found.on {
            let outcome = match vendor.required.iter().find(|name| {
                record[**name]
                    .as_str()
                    .is_none_or(|value| value.trim().is_empty())
            }) {
                Some(missing) => Err(format!(
                    "{} in {}: required field \"{missing}\" is missing",
                    vendor.action,
                    vendor.name()
                )),
                None => Ok(()),
            };
            found.runs.push(ZapRun {
                record: record.clone(),
                outcome,
                headers,
            });
        }
        let id = format!("{request:08x}-5a1e-4c0d-9b7a-{request:012x}");
        (
            StatusCode::OK,
            json!({"attempt": id, "id": id, "request_id": id, "status": "success"}),
        )
    }
}

// === the conformance suite's view ===

/// The hook the simulated account has for the conformance suite (not a real one).
pub const SIMULATED_ACCOUNT: &str = "20261204";
pub const SIMULATED_HOOK: &str = "simzap7";

impl FakeZap {
    /// Starts a simulated account with the conformance suite's hook.
    pub async fn simulated(
        addr: std::net::SocketAddr,
        vendor: &'static AutomationVendor,
    ) -> std::io::Result<Box<dyn RunningSimulator>> {
        let zap = FakeZap::start(addr, vendor).await?;
        zap.add_hook(SIMULATED_ACCOUNT, SIMULATED_HOOK);
        Ok(Box::new(zap))
    }
}

impl RunningSimulator for FakeZap {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        format!(
            "{}/hooks/catch/{SIMULATED_ACCOUNT}/{SIMULATED_HOOK}/",
            self.server.url()
        )
    }

    fn settings(&self, secret: &str) -> String {
        format!("hook_url = {secret}")
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["type"] = json!("booking_confirmed");
        notification["title"] = json!("Booking confirmed");
        notification["message"] = json!("Priya & Tom booked the full-day package");
        notification["weddingContext"]["coupleNames"] = json!("Priya & Tom");
        notification["contacts"] = json!([
            {"name": "Priya Shah", "email": "priya@example.com", "phone": "+447700900123", "role": "client"}
        ]);
        notification
    }

    fn address(&self) -> String {
        format!("{}/hooks/catch", self.server.url())
    }

    fn about(&self) -> String {
        format!(
            "a Zapier catch hook whose Zap runs {}'s {}",
            self.vendor.name(),
            self.vendor.action
        )
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["title"]
            .as_str()
            .map(|title| format!("{title:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"status": "error", "message": "Service Unavailable"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"status": "error", "message": "Unauthorized"}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"status": "error", "message": "Too many requests; slow down."}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                413,
                &[],
                json!({"status": "error", "message": "Request entity too large"}),
            ),
            "Request entity too large",
        )
    }
}
