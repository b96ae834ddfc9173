//! A Tripleseat customer for what the Tripleseat connector calls, behaving as Tripleseat's
//! support articles document (support.tripleseat.com, "Tripleseat API" section):
//!
//! - every API request checked against `contract.json` first (422 naming the field; 404 for an
//!   operation it lacks);
//! - OAuth 2 only: the partner app's consent page (`/oauth2/authorize`, a customer admin who
//!   approves at once, `response_type=code` and only the scopes the app was approved for) and
//!   the token endpoint (`/oauth2/token`, client id and secret in the form; authorization-code
//!   and refresh-token grants answering `{access_token, token_type, expires_in: 7200,
//!   refresh_token, scope, created_at}`); access tokens expire after two hours (401 after);
//! - events with a start and end (`MM/DD/YYYY hh:mm AM`), no longer than 24 hours, a status of
//!   PROSPECT, TENTATIVE, DEFINITE, CLOSED or LOST, moved and updated with `PUT`, refused (422)
//!   when the new time overlaps a DEFINITE event in the same room; notes on an event (`body`
//!   required); the customer's sites;
//! - 10 requests a second, answered 429 with `Retry-After` once held to it;
//! - the customer's webhook endpoint: a lead or event change POSTed as
//!   `{webhook_trigger_type, object}` signed with `X-Signature` ([`FakeTripleseat::send_webhook`]).
//!
//! The recorder holds the API's requests; token grants are counted apart
//! ([`FakeTripleseat::grants`]). Tripleseat documents no error body: the simulator's
//! `{"errors": {field: [message]}}` and `{"error": ...}` are its own.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{json, Value};

use super::EventTime;
use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::inbound::hex_hmac_sha256;
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// The simulated partner app's client id (its UID).
pub const CLIENT_ID: &str = "tripleseat-partner-uid-7f3a";
/// The scopes the simulated app was approved for.
pub const APPROVED_SCOPES: &[&str] = &["events:read", "events:write", "leads:read"];
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
const REQUESTS_PER_SECOND: usize = 10;
const STATUSES: &[&str] = &["PROSPECT", "TENTATIVE", "DEFINITE", "CLOSED", "LOST"];

pub struct FakeTripleseat {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Customer>>,
}

/// A note on an event.
#[derive(Debug, Clone)]
pub struct Note {
    pub id: u64,
    pub event_id: u64,
    pub body: String,
}

struct Customer {
    client_secret: String,
    refresh_token: Option<String>,
    redirect_uri: Option<String>,
    codes: Vec<String>,
    access_tokens: HashMap<String, Instant>,
    grants: usize,
    events: BTreeMap<u64, Value>,
    notes: Vec<Note>,
    next_id: u64,
    held_to_limits: bool,
    recent: VecDeque<Instant>,
    /// Whether each refresh answers a new refresh token and retires the one it was given.
    rotates_refresh_tokens: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Customer>>,
    recorder: Recorder,
    faults: Faults,
}

fn tripleseat_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn refused(status: StatusCode, field: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"errors": {field: [message]}}))
}

impl FakeTripleseat {
    /// Starts a customer that installed the partner app [`CLIENT_ID`] with `client_secret`,
    /// its refresh token `refresh_token`.
    pub async fn start(
        addr: std::net::SocketAddr,
        client_secret: &str,
        refresh_token: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Customer {
            client_secret: client_secret.to_owned(),
            refresh_token: Some(refresh_token.to_owned()),
            redirect_uri: None,
            codes: Vec::new(),
            access_tokens: HashMap::new(),
            grants: 0,
            events: BTreeMap::new(),
            notes: Vec::new(),
            next_id: 40_001,
            held_to_limits: false,
            recent: VecDeque::new(),
            rotates_refresh_tokens: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/oauth2/token", post(grant_token))
            .route("/oauth2/authorize", get(authorize))
            .route("/v1/{*rest}", any(handle))
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

    /// The API's address, Herald's `api_url` (the consent page is `/oauth2/authorize` on it).
    pub fn api_url(&self) -> String {
        self.server.url()
    }

    /// Adds an event in room `room` from `start` to `end` (`MM/DD/YYYY hh:mm AM`) and answers
    /// its id.
    pub fn add_event(&self, name: &str, start: &str, end: &str, status: &str, room: u64) -> u64 {
        let mut customer = self.lock();
        let id = customer.new_id();
        customer.events.insert(
            id,
            json!({"id": id, "name": name, "event_start": start, "event_end": end, "status": status, "room_ids": [room], "location_id": 12, "booking_id": id + 100_000, "account_id": 5, "contact_id": 6}),
        );
        id
    }

    pub fn event(&self, id: u64) -> Option<Value> {
        self.lock().events.get(&id).cloned()
    }

    pub fn notes(&self) -> Vec<Note> {
        self.lock().notes.clone()
    }

    /// Token grants answered so far.
    pub fn grants(&self) -> usize {
        self.lock().grants
    }

    /// Expires every access token now.
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// Forgets the refresh token and waits for an admin to install the app through the consent
    /// page, whose callback is `redirect_uri`.
    pub fn await_install(&self, redirect_uri: &str) {
        let mut customer = self.lock();
        customer.refresh_token = None;
        customer.redirect_uri = Some(redirect_uri.to_owned());
    }

    /// From now on each refresh answers a new refresh token and the one it was given stops
    /// working (whether Tripleseat rotates is not documented; OAuth servers may).
    pub fn rotate_refresh_tokens(&self) {
        self.lock().rotates_refresh_tokens = true;
    }

    pub fn refresh_token(&self) -> Option<String> {
        self.lock().refresh_token.clone()
    }

    /// POSTs `{webhook_trigger_type, object}` to `target` as Tripleseat's webhook endpoint does,
    /// signed with `signing_key`; the status the target answered.
    pub async fn send_webhook(
        &self,
        target: &str,
        signing_key: &str,
        trigger: &str,
        object: Value,
    ) -> u16 {
        let body = json!({"webhook_trigger_type": trigger, "object": object}).to_string();
        match reqwest::Client::new()
            .post(target)
            .header("content-type", "application/json")
            .header("x-signature", hex_hmac_sha256(signing_key, body.as_bytes()))
            .body(body)
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Customer> {
        self.state.lock().expect("tripleseat lock")
    }
}

/// `POST /oauth2/token`, form-encoded with the client's credentials.
async fn grant_token(State(app): State<AppState>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) =
        match tripleseat_contract().check("POST", "/oauth2/token", &fields_of(&body)) {
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_request", "error_description": listed.join("; ")}),
                )
            }
            _ => app.state.lock().expect("tripleseat lock").grant(&form),
        };
    (status, axum::Json(answer)).into_response()
}

/// `GET /oauth2/authorize`: a customer admin who approves at once, sent back to the app's
/// redirect URI with a single-use code and the `state`.
async fn authorize(State(app): State<AppState>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut customer = app.state.lock().expect("tripleseat lock");
    let scopes_approved = query.get("scope").is_some_and(|scope| {
        !scope.is_empty()
            && scope
                .split(' ')
                .all(|scope| APPROVED_SCOPES.contains(&scope))
    });
    let valid = query.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && query.get("response_type").map(String::as_str) == Some("code")
        && customer.redirect_uri.is_some()
        && query.get("redirect_uri") == customer.redirect_uri.as_ref()
        && scopes_approved;
    let Some(Ok(mut back)) = customer
        .redirect_uri
        .as_deref()
        .filter(|_| valid)
        .map(url::Url::parse)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "The client, redirect URI, response type or scope is not the app's",
        )
            .into_response();
    };
    let code = format!("ts-code-{}", uuid::Uuid::new_v4().simple());
    customer.codes.push(code.clone());
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", query.get("state").map_or("", String::as_str));
    (StatusCode::FOUND, [("location", back.to_string())]).into_response()
}

/// Every API call: recorded, scripted faults first, then the customer's answer.
async fn handle(
    State(app): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = if method == axum::http::Method::GET {
        fields_of(uri.query().unwrap_or_default().as_bytes())
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, parsed, status);
        return response;
    }
    let (status, answer, retry) = app.state.lock().expect("tripleseat lock").answer(
        method.as_str(),
        uri.path(),
        &headers,
        &parsed,
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, parsed, status);
    let mut response = (status, axum::Json(answer)).into_response();
    if retry {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    response
}

// === impl Customer ===

impl Customer {
    fn grant(&mut self, form: &HashMap<String, String>) -> (StatusCode, Value) {
        if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
            || form.get("client_secret") != Some(&self.client_secret)
        {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_client", "error_description": "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."}),
            );
        }
        let granted = match form.get("grant_type").map(String::as_str) {
            Some("refresh_token") => {
                let valid = self.refresh_token.is_some()
                    && form.get("refresh_token") == self.refresh_token.as_ref();
                if valid && self.rotates_refresh_tokens {
                    self.refresh_token =
                        Some(format!("ts-refresh-{}", uuid::Uuid::new_v4().simple()));
                }
                valid
            }
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                match self.codes.iter().position(|issued| *issued == code) {
                    Some(at) if form.get("redirect_uri") == self.redirect_uri.as_ref() => {
                        self.codes.remove(at);
                        self.refresh_token =
                            Some(format!("ts-refresh-{}", uuid::Uuid::new_v4().simple()));
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !granted {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_grant", "error_description": "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."}),
            );
        }
        self.grants += 1;
        let access_token = format!("ts-access-{}", uuid::Uuid::new_v4().simple());
        self.access_tokens
            .insert(access_token.clone(), Instant::now() + ACCESS_TOKEN_LIFETIME);
        (
            StatusCode::OK,
            json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "refresh_token": self.refresh_token,
                "scope": APPROVED_SCOPES.join(" "),
                "created_at": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs()),
            }),
        )
    }

    /// The status, body and whether to add `Retry-After`.
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &Value,
    ) -> (StatusCode, Value, bool) {
        let live = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| self.access_tokens.get(token))
            .is_some_and(|expires| Instant::now() < *expires);
        if !live {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_token", "error_description": "The access token is invalid or has expired"}),
                false,
            );
        }
        if self.held_to_limits {
            let now = Instant::now();
            while self
                .recent
                .front()
                .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= REQUESTS_PER_SECOND {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "Rate limit exceeded: 10 requests per second"}),
                    true,
                );
            }
            self.recent.push_back(now);
        }
        match tripleseat_contract().check(method, path, body) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(what)) => {
                return (StatusCode::NOT_FOUND, json!({"error": what}), false)
            }
            Err(Breach::Invalid(problems)) => {
                let mut errors = serde_json::Map::new();
                for problem in problems {
                    errors.insert(problem.at.clone(), json!([problem.message]));
                }
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "errors": errors }),
                    false,
                );
            }
        }
        let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
        let id = |segment: &str| segment.trim_end_matches(".json").parse::<u64>().ok();
        let (status, answer) = match (method, segments.as_slice()) {
            ("GET", ["sites.json"]) => (
                StatusCode::OK,
                json!([{"id": 3, "name": "The Grand Hall Venue Group", "time_zone": "London"}]),
            ),
            ("GET", ["events", event]) => match id(event).and_then(|id| self.events.get(&id)) {
                Some(found) => (StatusCode::OK, found.clone()),
                None => (StatusCode::NOT_FOUND, json!({"error": "Event not found"})),
            },
            ("PUT", ["events", event]) => match id(event) {
                Some(id) => self.update_event(id, &body["event"]),
                None => (StatusCode::NOT_FOUND, json!({"error": "Event not found"})),
            },
            ("POST", ["events", event, "notes"]) => {
                match id(event).filter(|id| self.events.contains_key(id)) {
                    Some(event_id) => {
                        let body = body["note"]["body"].as_str().unwrap_or_default();
                        if body.trim().is_empty() {
                            refused(StatusCode::UNPROCESSABLE_ENTITY, "body", "can't be blank")
                        } else {
                            let id = self.new_id();
                            self.notes.push(Note {
                                id,
                                event_id,
                                body: body.to_owned(),
                            });
                            (
                                StatusCode::CREATED,
                                json!({"id": id, "body": body, "notable_type": "Event", "notable_id": event_id}),
                            )
                        }
                    }
                    None => (StatusCode::NOT_FOUND, json!({"error": "Event not found"})),
                }
            }
            _ => (StatusCode::NOT_FOUND, json!({"error": "Not found"})),
        };
        (status, answer, false)
    }

    /// Applies `change` to the event: times readable, start before end, at most 24 hours, no
    /// DEFINITE event of another booking in the same room at the same time.
    fn update_event(&mut self, id: u64, change: &Value) -> (StatusCode, Value) {
        let Some(current) = self.events.get(&id).cloned() else {
            return (StatusCode::NOT_FOUND, json!({"error": "Event not found"}));
        };
        let mut updated = current.clone();
        for (name, value) in change.as_object().into_iter().flatten() {
            updated[name] = value.clone();
        }
        let time = |event: &Value, field: &str| event[field].as_str().and_then(EventTime::parse);
        let (Some(start), Some(end)) = (time(&updated, "event_start"), time(&updated, "event_end"))
        else {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "event_start",
                "must be mm/dd/yyyy hh:mm am|pm",
            );
        };
        let span = end.minutes() - start.minutes();
        if span <= 0 || span > 24 * 60 {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "event_end",
                "must be after the start and within 24 hours of it",
            );
        }
        if !updated["status"]
            .as_str()
            .is_some_and(|status| STATUSES.contains(&status))
        {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "status",
                "is not included in the list",
            );
        }
        let rooms = &updated["room_ids"];
        let clash = self.events.values().find(|other| {
            other["id"] != updated["id"]
                && other["status"] == "DEFINITE"
                && other["room_ids"] == *rooms
                && match (time(other, "event_start"), time(other, "event_end")) {
                    (Some(other_start), Some(other_end)) => {
                        other_start.minutes() < end.minutes()
                            && start.minutes() < other_end.minutes()
                    }
                    _ => false,
                }
        });
        if let Some(clash) = clash {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "room_ids",
                &format!(
                    "are already booked for {}",
                    clash["name"].as_str().unwrap_or("another event")
                ),
            );
        }
        self.events.insert(id, updated.clone());
        (StatusCode::OK, updated)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

// === the conformance suite's view ===

/// The credential the simulated customer accepts as the app's secret and refresh token (not a
/// real credential).
const SIMULATED_CREDENTIAL: &str = "simulated-tripleseat-credential-5c6d";

impl Simulation for super::Tripleseat {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let customer =
                FakeTripleseat::start(addr, SIMULATED_CREDENTIAL, SIMULATED_CREDENTIAL).await?;
            Ok(Box::new(customer) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeTripleseat {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_CREDENTIAL.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "api_url = \"{}\", oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {secret}, refresh_token = {secret} }}",
            self.api_url()
        )
    }

    /// About an event the wedding moves to its day.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let event = {
            let mut customer = self.lock();
            let id = customer.new_id();
            customer.events.insert(
                id,
                json!({"id": id, "name": "Taylor & Morgan wedding", "event_start": "06/05/2027 02:00 PM", "event_end": "06/05/2027 11:00 PM", "status": "DEFINITE", "room_ids": [id], "location_id": 12}),
            );
            id
        };
        let mut notification = base_sample_notification(notification_id);
        notification["metadata"] = json!({"tripleseatEventId": event});
        notification
    }

    fn address(&self) -> String {
        self.api_url()
    }

    fn about(&self) -> String {
        "a venue group's events and notes behind a partner app's OAuth".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["note"]["body"]
            .as_str()
            .or(request.body["event"]["event_start"].as_str())
            .map(|text| format!("{text:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(503, &[], json!({"error": "Service Unavailable"}))
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": "invalid_token", "error_description": "The access token is invalid or has expired"}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": "Rate limit exceeded: 10 requests per second"}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                422,
                &[],
                json!({"errors": {"room_ids": ["are already booked for Patel rehearsal dinner"]}}),
            ),
            "already booked",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_knows_the_operations_herald_calls() {
        let contract = tripleseat_contract();
        assert_eq!(
            contract.check(
                "PUT",
                "/v1/events/40001.json",
                &json!({"event": {"event_start": "06/12/2027 02:00 PM", "event_end": "06/12/2027 11:00 PM", "status": "DEFINITE"}})
            ),
            Ok(())
        );
        assert!(matches!(
            contract.check(
                "PUT",
                "/v1/events/40001.json",
                &json!({"event": {"status": "BOOKED"}})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("POST", "/v1/events/40001/notes", &json!({"note": {}})),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("DELETE", "/v1/events/40001.json", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
    }
}
