//! Entra ID and Microsoft Graph for what the Microsoft 365 calendar connector calls, behaving as
//! Microsoft's documentation says:
//!
//! - the client-credentials grant at `/{tenant}/oauth2/v2.0/token` (`invalid_client` for a wrong
//!   secret, `unauthorized_client` for another tenant, only `.default` scopes), access tokens
//!   that expire after an hour; the app's role `Calendars.ReadWrite` required of every call (403
//!   `ErrorAccessDenied` without it);
//! - the mailbox's calendars (`/calendar`, `/calendars/{id}`; 404 `ErrorItemNotFound`), events
//!   created (checked against `contract.json`: 400 `ErrorInvalidRequest` naming the field; an
//!   all-day event must start and end at midnight), a `transactionId` used before answered with
//!   the event it made, found with the `$filter` on a single-value extended property, patched,
//!   deleted (the attendees' cancellations kept);
//! - 10,000 requests per 10 minutes per app and mailbox, once held to it, refused with 429
//!   `ApplicationThrottled` and `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{json, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const WINDOW: Duration = Duration::from_secs(600);
const REQUESTS_PER_WINDOW: usize = 10_000;

pub struct FakeMicrosoftCalendar {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Tenant>>,
}

struct Tenant {
    tenant: String,
    client_id: String,
    client_secret: String,
    mailbox: String,
    can_write: bool,
    access_tokens: HashMap<String, Instant>,
    calendars: Vec<String>,
    /// (calendar, event).
    events: Vec<(String, Value)>,
    cancellations: Vec<(String, String)>,
    recent: VecDeque<Instant>,
    held_to_limits: bool,
    next: u64,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Tenant>>,
    recorder: Recorder,
    faults: Faults,
}

fn graph_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn graph_error(status: u16, code: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        json!({"error": {"code": code, "message": message, "innerError": {"request-id": "00000000-0000-0000-0000-000000000000"}}}),
    )
}

impl FakeMicrosoftCalendar {
    /// Starts Entra ID and Graph for `tenant`, an app (`client_id`, `client_secret`) granted
    /// `Calendars.ReadWrite`, and the mailbox `mailbox` with its default calendar.
    pub async fn start(
        addr: std::net::SocketAddr,
        tenant: &str,
        client_id: &str,
        client_secret: &str,
        mailbox: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Tenant {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            mailbox: mailbox.to_owned(),
            can_write: true,
            access_tokens: HashMap::new(),
            calendars: vec!["AAMkDefaultCalendar".to_owned()],
            events: Vec::new(),
            cancellations: Vec::new(),
            recent: VecDeque::new(),
            held_to_limits: false,
            next: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(grant))
            .route("/v1.0/users/{*rest}", any(graph))
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

    /// Entra ID's and Graph's address: Herald's `authority` and `graph_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Another calendar of the mailbox.
    pub fn add_calendar(&self, id: &str) {
        self.lock().calendars.push(id.to_owned());
    }

    /// An administrator removes the app's `Calendars.ReadWrite`.
    pub fn revoke_calendar_permission(&self) {
        self.lock().can_write = false;
    }

    /// The events of a calendar (`None`: the default one).
    pub fn events(&self, calendar: Option<&str>) -> Vec<Value> {
        let tenant = self.lock();
        let calendar = calendar.unwrap_or("AAMkDefaultCalendar").to_owned();
        tenant
            .events
            .iter()
            .filter(|(owner, _)| *owner == calendar)
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The (attendee, subject) cancellations deleting meetings sent.
    pub fn cancellations(&self) -> Vec<(String, String)> {
        self.lock().cancellations.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tenant> {
        self.state.lock().expect("graph lock")
    }
}

/// Token grants are not Graph requests: they are not recorded (nor charged by Herald).
async fn grant(State(app): State<AppState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) = app.state.lock().expect("graph lock").grant(&tenant, &form);
    (status, axum::Json(answer)).into_response()
}

async fn graph(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let recorded = if method == Method::GET {
        fields_of(uri.query().unwrap_or_default().as_bytes())
    } else {
        parsed.clone()
    };
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, recorded, status);
        return response;
    }
    let (status, answer, retry) = app
        .state
        .lock()
        .expect("graph lock")
        .answer(&method, &uri, &headers, parsed);
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    let mut response = (status, axum::Json(answer)).into_response();
    if let Some(seconds) = retry {
        response.headers_mut().insert(
            "retry-after",
            axum::http::HeaderValue::from_str(&seconds.to_string()).expect("a number"),
        );
    }
    response
}

impl Tenant {
    fn grant(&mut self, tenant: &str, form: &HashMap<String, String>) -> (StatusCode, Value) {
        let refused = |status: StatusCode, error: &str, description: &str| {
            (
                status,
                json!({"error": error, "error_description": description}),
            )
        };
        if tenant != self.tenant {
            return refused(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
            );
        }
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return refused(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "AADSTS70003",
            );
        }
        if form.get("client_id") != Some(&self.client_id)
            || form.get("client_secret") != Some(&self.client_secret)
        {
            return refused(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            );
        }
        if !form
            .get("scope")
            .is_some_and(|scope| scope.ends_with("/.default"))
        {
            return refused(StatusCode::BAD_REQUEST, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.");
        }
        self.next += 1;
        let token = format!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.simulated-{:08}",
            self.next
        );
        self.access_tokens
            .insert(token.clone(), Instant::now() + ACCESS_TOKEN_LIFETIME);
        (
            StatusCode::OK,
            json!({"token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(), "access_token": token}),
        )
    }

    fn answer(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Value,
    ) -> (StatusCode, Value, Option<u64>) {
        let done = |(status, answer): (StatusCode, Value)| (status, answer, None);
        let live = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| self.access_tokens.get(token))
            .is_some_and(|expires| Instant::now() < *expires);
        if !live {
            return done(graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            ));
        }
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW)
        {
            self.recent.pop_front();
        }
        if self.held_to_limits && self.recent.len() >= REQUESTS_PER_WINDOW {
            let (status, answer) = graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            );
            return (status, answer, Some(1));
        }
        self.recent.push_back(now);
        if !self.can_write {
            return done(graph_error(
                403,
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            ));
        }
        let segments: Vec<String> = uri
            .path()
            .trim_start_matches("/v1.0/users/")
            .split('/')
            .map(|segment| {
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        if segments[0] != self.mailbox {
            return done(graph_error(
                404,
                "ErrorInvalidUser",
                &format!("The requested user '{}' is invalid.", segments[0]),
            ));
        }
        let default = self.calendars[0].clone();
        let rest: Vec<&str> = segments[1..].iter().map(String::as_str).collect();
        match (method.as_str(), rest.as_slice()) {
            ("GET", ["calendar"]) => done(self.calendar(&default)),
            ("GET", ["calendars", calendar]) => done(self.calendar(calendar)),
            ("GET", ["events"]) => done(self.find(&default, uri)),
            ("GET", ["calendars", calendar, "events"]) => done(self.find(calendar, uri)),
            ("POST", ["events"]) => done(self.create(&default, body)),
            ("POST", ["calendars", calendar, "events"]) => done(self.create(calendar, body)),
            ("PATCH", ["events", id]) => done(self.update(id, body)),
            ("DELETE", ["events", id]) => done(self.delete(id)),
            _ => done(graph_error(
                400,
                "BadRequest",
                "Resource not found for the segment.",
            )),
        }
    }

    fn calendar(&self, id: &str) -> (StatusCode, Value) {
        if !self.calendars.iter().any(|calendar| calendar == id) {
            return graph_error(
                404,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            );
        }
        (
            StatusCode::OK,
            json!({"id": id, "name": if *id == self.calendars[0] { "Calendar" } else { id }, "canEdit": true}),
        )
    }

    /// `$filter=singleValueExtendedProperties/Any(ep: ep/id eq '<id>' and ep/value eq '<value>')`.
    fn find(&self, calendar: &str, uri: &Uri) -> (StatusCode, Value) {
        let query = fields_of(uri.query().unwrap_or_default().as_bytes());
        let filter = query["$filter"].as_str().unwrap_or_default();
        let quoted = |after: &str| -> Option<String> {
            let start = filter.find(after)? + after.len();
            let rest = &filter[start..];
            let mut value = String::new();
            let mut chars = rest.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        value.push('\'');
                        continue;
                    }
                    return Some(value);
                }
                value.push(c);
            }
            None
        };
        let shaped = filter.starts_with("singleValueExtendedProperties/Any(ep: ep/id eq '")
            && filter.ends_with("')");
        let (Some(id), Some(value)) = (quoted("ep/id eq '"), quoted("ep/value eq '")) else {
            return graph_error(400, "ErrorInvalidUrlQueryFilter", "Invalid filter clause");
        };
        if !shaped {
            return graph_error(400, "ErrorInvalidUrlQueryFilter", "Invalid filter clause");
        }
        if !self.calendars.iter().any(|owned| owned == calendar) {
            return graph_error(
                404,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            );
        }
        let found: Vec<Value> = self
            .events
            .iter()
            .filter(|(owner, _)| owner == calendar)
            .map(|(_, event)| event)
            .filter(|event| {
                event["singleValueExtendedProperties"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|property| {
                        property["id"]
                            .as_str()
                            .is_some_and(|p| p.eq_ignore_ascii_case(&id))
                            && property["value"] == value.as_str()
                    })
            })
            .cloned()
            .collect();
        (StatusCode::OK, json!({"value": found}))
    }

    fn checked(&self, operation: &str, body: &Value) -> Result<(), (StatusCode, Value)> {
        if let Err(Breach::Invalid(problems)) =
            graph_contract().check(operation, "/v1.0/users/{user}/events", body)
        {
            let first = &problems[0];
            return Err(graph_error(
                400,
                "ErrorInvalidRequest",
                &format!("{}: {}", first.at, first.message),
            ));
        }
        if body["isAllDay"] == true {
            let midnight = |side: &str| {
                body[side]["dateTime"]
                    .as_str()
                    .is_none_or(|time| time.ends_with("T00:00:00"))
            };
            if !midnight("start") || !midnight("end") {
                return Err(graph_error(
                    400,
                    "ErrorInvalidRequest",
                    "An all-day event must start and end at midnight.",
                ));
            }
        }
        Ok(())
    }

    fn create(&mut self, calendar: &str, mut event: Value) -> (StatusCode, Value) {
        if let Err(refused) = self.checked("POST", &event) {
            return refused;
        }
        if !self.calendars.iter().any(|owned| owned == calendar) {
            return graph_error(
                404,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            );
        }
        if let Some(made) = event["transactionId"].as_str().and_then(|transaction| {
            self.events
                .iter()
                .find(|(_, e)| e["transactionId"] == transaction)
        }) {
            return (StatusCode::CREATED, made.1.clone());
        }
        self.next += 1;
        let id = format!("AAMkEvent{:08}", self.next);
        event["id"] = json!(id);
        event["webLink"] = json!(format!("https://outlook.office365.com/owa/?itemid={id}"));
        event["organizer"] = json!({"emailAddress": {"address": self.mailbox}});
        self.events.push((calendar.to_owned(), event.clone()));
        (StatusCode::CREATED, event)
    }

    fn update(&mut self, id: &str, fields: Value) -> (StatusCode, Value) {
        if let Err(refused) = self.checked("PATCH", &fields) {
            return refused;
        }
        let Some((_, event)) = self.events.iter_mut().find(|(_, event)| event["id"] == id) else {
            return graph_error(
                404,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            );
        };
        for (key, value) in fields.as_object().into_iter().flatten() {
            event[key] = value.clone();
        }
        (StatusCode::OK, event.clone())
    }

    fn delete(&mut self, id: &str) -> (StatusCode, Value) {
        let Some(at) = self.events.iter().position(|(_, event)| event["id"] == id) else {
            return graph_error(
                404,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            );
        };
        let (_, event) = self.events.remove(at);
        let subject = event["subject"].as_str().unwrap_or_default().to_owned();
        for attendee in event["attendees"].as_array().into_iter().flatten() {
            if let Some(address) = attendee["emailAddress"]["address"].as_str() {
                self.cancellations
                    .push((address.to_owned(), subject.clone()));
            }
        }
        (StatusCode::NO_CONTENT, Value::Null)
    }
}

// === the conformance suite's view ===

const SIMULATED_TENANT: &str = "8d7c6b5a-4e3f-4a2b-9c1d-0e1f2a3b4c5d";
const SIMULATED_CLIENT: &str = "11111111-2222-4333-8444-555555555555";
const SIMULATED_SECRET: &str = "simulated~entra-client-secret";
const SIMULATED_MAILBOX: &str = "weddings@kew-films.example";

impl Simulation for super::MicrosoftCalendar {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let graph = FakeMicrosoftCalendar::start(
                addr,
                SIMULATED_TENANT,
                SIMULATED_CLIENT,
                SIMULATED_SECRET,
                SIMULATED_MAILBOX,
            )
            .await?;
            Ok(Box::new(graph) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeMicrosoftCalendar {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_SECRET.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "tenant_id = \"{SIMULATED_TENANT}\", client_id = \"{SIMULATED_CLIENT}\", client_secret = {secret}, user = \"{SIMULATED_MAILBOX}\", authority = \"{url}\", graph_url = \"{url}\"",
            url = self.url()
        )
    }

    /// A wedding of its own per notification, as for Google Calendar's simulator.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["weddingContext"]["weddingId"] = json!(format!("w-{notification_id}"));
        notification
    }

    fn address(&self) -> String {
        self.url()
    }

    fn about(&self) -> String {
        "a studio mailbox's calendar, a wedding per event".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        match request.body["subject"].as_str() {
            Some(subject) => format!("{} {subject}", request.method),
            None => format!("{} {}", request.method, request.path),
        }
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"error": {"code": "ServiceNotAvailable", "message": "Service unavailable"}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": {"code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"error": {"code": "ErrorInvalidRequest", "message": "Your request can't be completed. The time zone is not valid."}}),
            ),
            "time zone is not valid",
        )
    }
}
