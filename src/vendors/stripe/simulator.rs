//! Stripe for what the Stripe connector calls, and Stripe sending events, behaving as Stripe's
//! API reference and webhook documentation say:
//!
//! - a bearer secret key on every request (401 "Invalid API Key provided" otherwise);
//! - customers listed by exact email, created and updated, every request checked against
//!   `contract.json` (400 `invalid_request_error` naming the `param`); metadata merged on update,
//!   at most 50 keys;
//! - `Idempotency-Key` on writes: the same key with the same parameters answers the first
//!   answer again (`Idempotent-Replayed: true`), with other parameters `idempotency_error`;
//! - 25 requests a second (test mode), once held to it, refused with 429 `rate_limit`;
//! - Stripe sending an event to the endpoint ([`FakeStripe::send_event`]), signed with
//!   `Stripe-Signature` (`t=...,v1=...`, one `v1` per secret while a secret is rolled).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Map, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::inbound::hex_hmac_sha256;
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// Requests a second in test mode.
const REQUESTS_PER_SECOND: usize = 25;

pub struct FakeStripe {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Account>>,
}

struct Account {
    key: String,
    customers: Vec<Value>,
    /// Idempotency key -> (the parameters, the answer).
    idempotent: HashMap<String, (Value, StatusCode, Value)>,
    recent: VecDeque<Instant>,
    held_to_limits: bool,
    next: u64,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Account>>,
    recorder: Recorder,
    faults: Faults,
}

fn stripe_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn invalid(param: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"error": {"type": "invalid_request_error", "param": param, "message": message}}),
    )
}

impl FakeStripe {
    /// Starts Stripe for the account whose secret key is `key`.
    pub async fn start(addr: std::net::SocketAddr, key: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Account {
            key: key.to_owned(),
            customers: Vec::new(),
            idempotent: HashMap::new(),
            recent: VecDeque::new(),
            held_to_limits: false,
            next: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/v1/account", get(read))
            .route("/v1/customers", get(read).post(write))
            .route("/v1/customers/{customer}", post(write))
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

    /// The API's address, Herald's `api_url`.
    pub fn api_url(&self) -> String {
        self.server.url()
    }

    pub fn customers(&self) -> Vec<Value> {
        self.lock().customers.clone()
    }

    /// A customer the account already has.
    pub fn add_customer(&self, email: &str, name: &str) -> String {
        let mut account = self.lock();
        let id = account.next_id("cus_");
        account.customers.push(
            json!({"id": id, "object": "customer", "email": email, "name": name, "metadata": {}}),
        );
        id
    }

    /// Stripe sends event `event_type` about `object` to `url`, signed at `at` (seconds since
    /// the epoch) with each of `secrets`. Answers the status and body Herald gave.
    pub async fn send_event(
        &self,
        url: &str,
        event_id: &str,
        event_type: &str,
        object: Value,
        secrets: &[&str],
        at: u64,
    ) -> (u16, Value) {
        let event = json!({
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": at,
            "type": event_type,
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "data": {"object": object},
        });
        let body = event.to_string();
        let mut header = format!("t={at}");
        for secret in secrets {
            header.push_str(&format!(
                ",v1={}",
                hex_hmac_sha256(secret, format!("{at}.{body}").as_bytes())
            ));
        }
        match reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", header)
            .body(body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Account> {
        self.state.lock().expect("stripe lock")
    }
}

async fn read(
    State(app): State<AppState>,
    uri: axum::http::Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let fields = fields_of(query.unwrap_or_default().as_bytes());
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder.record("GET", &path, &headers, fields, status);
        return response;
    }
    let (status, answer) = app
        .state
        .lock()
        .expect("stripe lock")
        .answer("GET", &path, &path, &headers, &fields);
    app.recorder.record("GET", &path, &headers, fields, status);
    (status, axum::Json(answer)).into_response()
}

async fn write(
    State(app): State<AppState>,
    customer: Option<Path<String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (path, template) = match &customer {
        Some(Path(id)) => (format!("/v1/customers/{id}"), "/v1/customers/{customer}"),
        None => ("/v1/customers".to_owned(), "/v1/customers"),
    };
    let fields = fields_of(&body);
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder.record("POST", &path, &headers, fields, status);
        return response;
    }
    let (status, answer, replayed) = {
        let mut account = app.state.lock().expect("stripe lock");
        let key = headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        match key
            .as_ref()
            .and_then(|key| account.idempotent.get(key).cloned())
        {
            Some((params, _, _)) if params != fields => {
                let key = key.unwrap_or_default();
                (
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"type": "idempotency_error", "message": format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.")}}),
                    false,
                )
            }
            Some((_, status, answer)) => (status, answer, true),
            None => {
                let (status, answer) = account.answer("POST", &path, template, &headers, &fields);
                if let Some(key) = key.filter(|_| {
                    status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::UNAUTHORIZED
                }) {
                    account
                        .idempotent
                        .insert(key, (fields.clone(), status, answer.clone()));
                }
                (status, answer, false)
            }
        }
    };
    app.recorder.record("POST", &path, &headers, fields, status);
    let mut response = (status, axum::Json(answer)).into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

impl Account {
    fn next_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}Q{:013}", self.next)
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        template: &str,
        headers: &HeaderMap,
        fields: &Value,
    ) -> (StatusCode, Value) {
        let key = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if key != Some(self.key.as_str()) {
            let shown = key.map_or_else(String::new, |key| {
                format!(
                    ": {}****{}",
                    &key[..key.len().min(8)],
                    &key[key.len().saturating_sub(4)..]
                )
            });
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": {"type": "invalid_request_error", "message": format!("Invalid API Key provided{shown}")}}),
            );
        }
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.held_to_limits && self.recent.len() >= REQUESTS_PER_SECOND {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests."}}),
            );
        }
        self.recent.push_back(now);
        match stripe_contract().check(method, template, fields) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(problem)) => return invalid("", &problem),
            Err(Breach::Invalid(problems)) => {
                let first = &problems[0];
                let param = first.at.trim_start_matches('/');
                return invalid(param, &format!("Invalid {param}: {}", first.message));
            }
        }
        let field = |name: &str| fields[name].as_str().unwrap_or_default().to_owned();
        let metadata: Map<String, Value> = fields
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix("metadata[")?.strip_suffix(']')?;
                Some((key.to_owned(), value.clone()))
            })
            .collect();
        match (method, template) {
            ("GET", "/v1/account") => (
                StatusCode::OK,
                json!({"id": "acct_1SimulatedStudio", "object": "account", "country": "GB", "business_profile": {"name": "Kew Wedding Films"}}),
            ),
            ("GET", _) => {
                let email = field("email");
                let data: Vec<Value> = self
                    .customers
                    .iter()
                    .filter(|customer| email.is_empty() || customer["email"] == email.as_str())
                    .take(
                        fields["limit"]
                            .as_str()
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(10),
                    )
                    .cloned()
                    .collect();
                (
                    StatusCode::OK,
                    json!({"object": "list", "url": "/v1/customers", "has_more": false, "data": data}),
                )
            }
            ("POST", "/v1/customers") => {
                let id = self.next_id("cus_");
                let customer = json!({
                    "id": id,
                    "object": "customer",
                    "email": field("email"),
                    "name": fields.get("name").cloned().unwrap_or(Value::Null),
                    "metadata": metadata,
                });
                self.customers.push(customer.clone());
                (StatusCode::OK, customer)
            }
            _ => {
                let id = path.trim_start_matches("/v1/customers/");
                let Some(customer) = self.customers.iter_mut().find(|c| c["id"] == id) else {
                    return (
                        StatusCode::NOT_FOUND,
                        json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "id", "message": format!("No such customer: '{id}'")}}),
                    );
                };
                let stored = customer["metadata"]
                    .as_object_mut()
                    .expect("metadata object");
                for (key, value) in metadata {
                    if value == "" {
                        stored.remove(&key);
                    } else {
                        stored.insert(key, value);
                    }
                }
                if stored.len() > 50 {
                    return invalid("metadata", "You can specify up to 50 keys in metadata.");
                }
                (StatusCode::OK, customer.clone())
            }
        }
    }
}

// === the conformance suite's view ===

/// The secret key of the simulated account (not a real one).
const SIMULATED_KEY: &str = "sk_test_simulatedStripeSecretKey4242";

impl Simulation for super::Stripe {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let stripe = FakeStripe::start(addr, SIMULATED_KEY).await?;
            Ok(Box::new(stripe) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeStripe {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_KEY.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!("secret_key = {secret}, api_url = \"{}\"", self.api_url())
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] =
            json!([{"name": "Sam", "email": "sam@example.com", "role": "couple"}]);
        notification
    }

    fn address(&self) -> String {
        self.api_url()
    }

    fn about(&self) -> String {
        "a studio's account in test mode: the couples' customers".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        match request.body["email"].as_str() {
            Some(email) => format!("customer {email}"),
            None => request.path.clone(),
        }
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            500,
            &[],
            json!({"error": {"type": "api_error", "message": "An unknown error occurred"}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": {"type": "invalid_request_error", "message": "Expired API Key provided: sk_test_****4242"}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests hit the API too quickly."}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"error": {"type": "invalid_request_error", "code": "email_invalid", "param": "email", "message": "Invalid email address: sam@"}}),
            ),
            "Invalid email address",
        )
    }
}
