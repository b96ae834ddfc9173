//! PagerDuty for what the PagerDuty connector and its webhook handler call, behaving as the
//! Events API v2 and webhook documentation say:
//!
//! - `POST /v2/enqueue` checked against `contract.json` (400 `{status: "invalid event", message,
//!   errors}`); an integration key the account does not have is refused the same way; a trigger
//!   with the `dedup_key` of an open incident is added to it (no second incident), acknowledge
//!   and resolve change its status; 202 `{status: "success", message, dedup_key}`;
//! - about 120 events a minute per integration key, once held to it, refused with 429;
//! - `GET /incidents/{id}` with a REST API key (`Authorization: Token token=...`), the incident
//!   with its `incident_key`;
//! - people acting in PagerDuty ([`FakePagerDuty::act`]): the incident's status changes and the
//!   v3 webhook (`incident.acknowledged`, `incident.resolved`) goes to the subscription's
//!   address signed with `X-PagerDuty-Signature`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};

use crate::sandbox::contract::{load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::inbound::hex_hmac_sha256;
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// Events a minute per integration key.
const EVENTS_PER_MINUTE: usize = 120;

pub struct FakePagerDuty {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Account>>,
}

struct Account {
    routing_key: String,
    api_token: String,
    incidents: Vec<Value>,
    recent: VecDeque<Instant>,
    held_to_limits: bool,
    webhook: Option<String>,
    next: u64,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Account>>,
    recorder: Recorder,
    faults: Faults,
}

fn pagerduty_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn invalid(errors: Vec<String>) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

impl FakePagerDuty {
    /// Starts PagerDuty with one service (`routing_key`) and a REST API key (`api_token`).
    pub async fn start(
        addr: std::net::SocketAddr,
        routing_key: &str,
        api_token: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Account {
            routing_key: routing_key.to_owned(),
            api_token: api_token.to_owned(),
            incidents: Vec::new(),
            recent: VecDeque::new(),
            held_to_limits: false,
            webhook: None,
            next: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/v2/enqueue", post(enqueue))
            .route("/incidents/{id}", get(incident))
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
        })
    }

    /// The address of both APIs, Herald's `events_url` and `api_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn incidents(&self) -> Vec<Value> {
        self.lock().incidents.clone()
    }

    /// A v3 webhook subscription sending incident events to `url`.
    pub fn subscribe(&self, url: &str) {
        self.lock().webhook = Some(url.to_owned());
    }

    /// `user` acknowledges or resolves (`event_type` `incident.acknowledged` or
    /// `incident.resolved`) the incident of `dedup_key` in PagerDuty; the webhook is signed with
    /// each of `secrets` (two while a secret is rotated). Answers the status Herald gave.
    pub async fn act(
        &self,
        dedup_key: &str,
        event_type: &str,
        user: &str,
        secrets: &[&str],
    ) -> u16 {
        let (url, payload) = {
            let mut account = self.lock();
            let Some(url) = account.webhook.clone() else {
                return 0;
            };
            account.next += 1;
            let event_id = format!("01{:024X}", account.next);
            let Some(incident) = account
                .incidents
                .iter_mut()
                .rev()
                .find(|incident| incident["incident_key"] == dedup_key)
            else {
                return 0;
            };
            incident["status"] = json!(event_type.trim_start_matches("incident."));
            let payload = json!({
                "event": {
                    "id": event_id,
                    "event_type": event_type,
                    "resource_type": "incident",
                    "occurred_at": "2027-06-12T13:05:00.000Z",
                    "agent": {"id": "PUSER01", "summary": user, "type": "user_reference", "self": "https://api.pagerduty.com/users/PUSER01", "html_url": "https://weddings.pagerduty.com/users/PUSER01"},
                    "client": null,
                    "data": {
                        "id": incident["id"],
                        "type": "incident",
                        "self": format!("https://api.pagerduty.com/incidents/{}", incident["id"].as_str().unwrap_or_default()),
                        "html_url": incident["html_url"],
                        "number": incident["incident_number"],
                        "status": incident["status"],
                        "title": incident["title"],
                        "urgency": incident["urgency"],
                    }
                }
            });
            (url, payload)
        };
        let body = payload.to_string();
        let signature = secrets
            .iter()
            .map(|secret| format!("v1={}", hex_hmac_sha256(secret, body.as_bytes())))
            .collect::<Vec<_>>()
            .join(",");
        match reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("x-pagerduty-signature", signature)
            .header("x-webhook-id", "PWEBHOOK1")
            .body(body)
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Account> {
        self.state.lock().expect("pagerduty lock")
    }
}

async fn enqueue(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The integration key is the credential: recordings keep everything else.
    let mut recorded = parsed.clone();
    if recorded.get("routing_key").is_some() {
        recorded["routing_key"] = json!("<routing key>");
    }
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record("POST", "/v2/enqueue", &headers, recorded, status);
        return response;
    }
    let (status, answer) = app.state.lock().expect("pagerduty lock").enqueue(&parsed);
    app.recorder
        .record("POST", "/v2/enqueue", &headers, recorded, status);
    (status, axum::Json(answer)).into_response()
}

async fn incident(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/incidents/{id}");
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record("GET", &path, &headers, Value::Null, status);
        return response;
    }
    let (status, answer) = {
        let account = app.state.lock().expect("pagerduty lock");
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Token token="));
        if token != Some(account.api_token.as_str()) {
            (
                StatusCode::UNAUTHORIZED,
                json!({"error": {"message": "Invalid Credentials", "code": 2006}}),
            )
        } else {
            match account
                .incidents
                .iter()
                .find(|incident| incident["id"] == id)
            {
                Some(found) => (StatusCode::OK, json!({ "incident": found })),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({"error": {"message": "Not Found", "code": 2100}}),
                ),
            }
        }
    };
    app.recorder
        .record("GET", &path, &headers, Value::Null, status);
    (status, axum::Json(answer)).into_response()
}

impl Account {
    fn enqueue(&mut self, event: &Value) -> (StatusCode, Value) {
        match pagerduty_contract().check("POST", "/v2/enqueue", event) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(problem)) => return invalid(vec![problem]),
            Err(Breach::Invalid(problems)) => {
                return invalid(
                    problems
                        .iter()
                        .map(|problem| format!("{}: {}", problem.at, problem.message))
                        .collect(),
                )
            }
        }
        if event["routing_key"] != self.routing_key.as_str() {
            return invalid(vec!["Invalid routing key".to_owned()]);
        }
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.held_to_limits && self.recent.len() >= EVENTS_PER_MINUTE {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}),
            );
        }
        self.recent.push_back(now);
        let action = event["event_action"].as_str().unwrap_or_default();
        let open = |incident: &&mut Value, key: &str| {
            incident["incident_key"] == key && incident["status"] != "resolved"
        };
        let key = match action {
            "trigger" => {
                if !event["payload"].is_object() {
                    return invalid(vec!["'payload' is missing".to_owned()]);
                }
                self.next += 1;
                let key = event["dedup_key"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{:032x}", self.next));
                match self
                    .incidents
                    .iter_mut()
                    .find(|incident| open(incident, &key))
                {
                    Some(incident) => {
                        incident["alert_counts"]["all"] =
                            json!(incident["alert_counts"]["all"].as_u64().unwrap_or(0) + 1);
                    }
                    None => {
                        let id = format!("Q{:013X}", self.next);
                        let severity = event["payload"]["severity"].as_str().unwrap_or_default();
                        self.incidents.push(json!({
                            "id": id,
                            "type": "incident",
                            "incident_number": self.incidents.len() + 1,
                            "incident_key": key,
                            "title": event["payload"]["summary"],
                            "status": "triggered",
                            "urgency": if matches!(severity, "critical" | "error") { "high" } else { "low" },
                            "html_url": format!("https://weddings.pagerduty.com/incidents/{id}"),
                            "alert_counts": {"all": 1},
                            "links": event["links"],
                            "custom_details": event["payload"]["custom_details"],
                        }));
                    }
                }
                key
            }
            _ => {
                let Some(key) = event["dedup_key"].as_str().map(str::to_owned) else {
                    return invalid(vec![
                        "'dedup_key' is required to acknowledge or resolve".to_owned()
                    ]);
                };
                if let Some(incident) = self
                    .incidents
                    .iter_mut()
                    .find(|incident| open(incident, &key))
                {
                    incident["status"] = json!(if action == "resolve" {
                        "resolved"
                    } else {
                        "acknowledged"
                    });
                }
                key
            }
        };
        (
            StatusCode::ACCEPTED,
            json!({"status": "success", "message": "Event processed", "dedup_key": key}),
        )
    }
}

// === the conformance suite's view ===

/// The integration key and REST API key the simulated account takes (not real ones).
const SIMULATED_ROUTING_KEY: &str = "R0SIMULATEDPAGERDUTYSERVICEKEY01";
const SIMULATED_API_TOKEN: &str = "y_simulatedPagerDutyRestKey";

impl Simulation for super::PagerDuty {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let pagerduty =
                FakePagerDuty::start(addr, SIMULATED_ROUTING_KEY, SIMULATED_API_TOKEN).await?;
            Ok(Box::new(pagerduty) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakePagerDuty {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_ROUTING_KEY.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "routing_key = {secret}, events_url = \"{url}\", api_url = \"{url}\"",
            url = self.url()
        )
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        self.url()
    }

    fn about(&self) -> String {
        "the wedding-day on-call service: incidents, acknowledgements".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        match request.body["event_action"].as_str() {
            Some(action) => format!(
                "{action} {}",
                request.body["dedup_key"].as_str().unwrap_or_default()
            ),
            None => request.path.clone(),
        }
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            502,
            &[],
            json!({"status": "error", "message": "Bad Gateway"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        // PagerDuty's gateway refusing a key (its REST API's answer); the Events API answers an
        // unknown key as an invalid event instead.
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": {"message": "Invalid Credentials", "code": 2006}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.severity' must be one of critical, error, warning, info"]}),
            ),
            "Event object is invalid",
        )
    }
}
