//! Google's OAuth and the Calendar API v3 for what the Google Calendar connector calls, behaving
//! as Google's documentation and its discovery document say:
//!
//! - the consent page (`/o/oauth2/v2/auth`: a person who consents at once, sent back with a
//!   single-use code; a refresh token only with `access_type=offline`, PKCE `S256` checked when a
//!   challenge was given) and the token endpoint (`/token`: `invalid_grant` for a spent code or
//!   an unknown refresh token; access tokens that expire after an hour);
//! - every call with a live bearer token whose scopes the method accepts (the discovery
//!   document's `scopes`), 401 `authError` or 403 `insufficientPermissions` otherwise;
//! - bodies checked against the document's `Event` schema and the fields the method requires,
//!   queries against its parameters (400 `invalid`, in Google's words);
//! - calendars the account has (`primary` among them; 404 `notFound` for others); events with
//!   ids a client chose (base32hex, 5-1024 characters, 409 `duplicate` for one in use), found
//!   by `privateExtendedProperty`, patched (nested objects merged, lists replaced), cancelled
//!   ones listed only with `showDeleted`; each invitation Google would email (`sendUpdates`)
//!   kept;
//! - 600 requests a minute per user, once held to it, refused with 403 `usageLimits`
//!   `userRateLimitExceeded`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Map, Value};

use super::discovery;
use crate::connectors::oauth::pkce_challenge;
use crate::sandbox::contract::fields_of;
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const REQUESTS_PER_MINUTE: usize = 600;

pub struct FakeGoogleCalendar {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Account>>,
}

struct Account {
    email: String,
    client_id: String,
    client_secret: String,
    redirect_uri: Option<String>,
    /// code -> (offline, PKCE challenge).
    codes: HashMap<String, (bool, Option<String>)>,
    refresh_tokens: Vec<String>,
    scopes: Vec<String>,
    access_tokens: HashMap<String, Instant>,
    calendars: Vec<String>,
    /// (calendar, event).
    events: Vec<(String, Value)>,
    invitations: Vec<(String, String)>,
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

/// Google's error body.
fn error(code: u16, domain: &str, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        json!({"error": {"code": code, "message": message, "errors": [{"domain": domain, "reason": reason, "message": message}]}}),
    )
}

impl FakeGoogleCalendar {
    /// Starts Google for the account `email`, whose OAuth client is `client_id` with
    /// `client_secret` and which holds `refresh_token` already (empty: none yet).
    pub async fn start(
        addr: std::net::SocketAddr,
        email: &str,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Account {
            email: email.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: None,
            codes: HashMap::new(),
            refresh_tokens: if refresh_token.is_empty() {
                Vec::new()
            } else {
                vec![refresh_token.to_owned()]
            },
            scopes: vec!["https://www.googleapis.com/auth/calendar.events".to_owned()],
            access_tokens: HashMap::new(),
            calendars: vec![email.to_owned()],
            events: Vec::new(),
            invitations: Vec::new(),
            recent: VecDeque::new(),
            held_to_limits: false,
            next: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/o/oauth2/v2/auth", get(authorize))
            .route("/token", post(grant))
            .route(
                "/calendar/v3/calendars/{*rest}",
                get(api).post(api).patch(api),
            )
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

    /// Google's address: Herald's `api_url`, and `/o/oauth2/v2/auth` and `/token` under it.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The redirect URI registered on the OAuth client.
    pub fn register_redirect_uri(&self, uri: &str) {
        self.lock().redirect_uri = Some(uri.to_owned());
    }

    /// The scopes the account grants (a person may untick some).
    pub fn grant_scopes(&self, scopes: &[&str]) {
        self.lock().scopes = scopes.iter().map(|scope| (*scope).to_owned()).collect();
    }

    /// Another calendar the account can write.
    pub fn add_calendar(&self, id: &str) {
        self.lock().calendars.push(id.to_owned());
    }

    /// The events of `calendar` (`primary` names the account's own).
    pub fn events(&self, calendar: &str) -> Vec<Value> {
        let account = self.lock();
        let calendar = account.resolve(calendar);
        account
            .events
            .iter()
            .filter(|(owner, _)| *owner == calendar)
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The (attendee, event id) invitations Google emailed.
    pub fn invitations(&self) -> Vec<(String, String)> {
        self.lock().invitations.clone()
    }

    /// The refresh tokens issued by consents so far.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.lock().refresh_tokens.clone()
    }

    /// Every access token expires now.
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Account> {
        self.state.lock().expect("google lock")
    }
}

fn query_of(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The consent page: the person consents at once and is sent back with a code and the state.
async fn authorize(State(app): State<AppState>, uri: Uri) -> Response {
    let query = query_of(&uri);
    let mut account = app.state.lock().expect("google lock");
    let valid = query.get("client_id") == Some(&account.client_id)
        && account.redirect_uri.is_some()
        && query.get("redirect_uri") == account.redirect_uri.as_ref()
        && query.get("response_type").map(String::as_str) == Some("code")
        && query.get("scope").is_some_and(|scope| {
            scope
                .split(' ')
                .any(|s| s.starts_with("https://www.googleapis.com/auth/calendar"))
        });
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            "Error 400: redirect_uri_mismatch or invalid_request",
        )
            .into_response();
    }
    if query.contains_key("code_challenge")
        && query.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request (code_challenge_method)",
        )
            .into_response();
    }
    account.next += 1;
    let code = format!("4/0simulated{:08}", account.next);
    let offline = query.get("access_type").map(String::as_str) == Some("offline");
    account.codes.insert(
        code.clone(),
        (offline, query.get("code_challenge").cloned()),
    );
    let Some(Ok(mut back)) = account.redirect_uri.as_deref().map(url::Url::parse) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    back.query_pairs_mut()
        .append_pair("state", query.get("state").map_or("", String::as_str))
        .append_pair("code", &code)
        .append_pair("scope", &account.scopes.join(" "));
    (StatusCode::FOUND, [("location", back.to_string())]).into_response()
}

/// The token endpoint: `authorization_code` and `refresh_token` grants, form-encoded. Grants
/// are not Calendar API requests: they are not recorded (nor charged by Herald).
async fn grant(State(app): State<AppState>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) = app.state.lock().expect("google lock").grant(&form);
    (status, axum::Json(answer)).into_response()
}

/// Every Calendar API call: recorded, scripted faults first, then the account's answer.
async fn api(
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
    let (status, answer) = app
        .state
        .lock()
        .expect("google lock")
        .answer(&method, &uri, &headers, &body, parsed);
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    (status, axum::Json(answer)).into_response()
}

impl Account {
    /// `primary` is the account's own calendar.
    fn resolve(&self, calendar: &str) -> String {
        if calendar == "primary" {
            self.email.clone()
        } else {
            calendar.to_owned()
        }
    }

    fn grant(&mut self, form: &HashMap<String, String>) -> (StatusCode, Value) {
        let refused = |error: &str, description: &str| {
            (
                StatusCode::BAD_REQUEST,
                json!({"error": error, "error_description": description}),
            )
        };
        if form.get("client_id") != Some(&self.client_id)
            || form.get("client_secret") != Some(&self.client_secret)
        {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_client", "error_description": "Unauthorized"}),
            );
        }
        let mut issued = None;
        match form.get("grant_type").map(String::as_str) {
            Some("refresh_token") => {
                let given = form.get("refresh_token").cloned().unwrap_or_default();
                if !self.refresh_tokens.contains(&given) {
                    return refused("invalid_grant", "Token has been expired or revoked.");
                }
            }
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let Some((offline, challenge)) = self.codes.remove(&code) else {
                    return refused("invalid_grant", "Bad Request");
                };
                if form.get("redirect_uri") != self.redirect_uri.as_ref() {
                    return refused("redirect_uri_mismatch", "Bad Request");
                }
                if let Some(challenge) = challenge {
                    let verifier = form
                        .get("code_verifier")
                        .map(String::as_str)
                        .unwrap_or_default();
                    if pkce_challenge(verifier) != challenge {
                        return refused("invalid_grant", "Invalid code verifier.");
                    }
                }
                if offline {
                    self.next += 1;
                    let token = format!("1//0simulated-refresh-{:08}", self.next);
                    self.refresh_tokens.push(token.clone());
                    issued = Some(token);
                }
            }
            _ => return refused("unsupported_grant_type", "Invalid grant_type"),
        }
        self.next += 1;
        let access_token = format!("ya29.simulated-{:08}", self.next);
        self.access_tokens
            .insert(access_token.clone(), Instant::now() + ACCESS_TOKEN_LIFETIME);
        let mut answer = json!({
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
            "scope": self.scopes.join(" "),
            "token_type": "Bearer",
        });
        if let Some(token) = issued {
            answer["refresh_token"] = json!(token);
        }
        (StatusCode::OK, answer)
    }

    fn answer(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        parsed: Value,
    ) -> (StatusCode, Value) {
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let live = token
            .and_then(|token| self.access_tokens.get(token))
            .is_some_and(|expires| Instant::now() < *expires);
        if !live {
            return error(401, "global", "authError", "Invalid Credentials");
        }
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.held_to_limits && self.recent.len() >= REQUESTS_PER_MINUTE {
            return error(
                403,
                "usageLimits",
                "userRateLimitExceeded",
                "Rate Limit Exceeded",
            );
        }
        self.recent.push_back(now);
        // /calendar/v3/calendars/{calendarId}[/events[/{eventId}]], each segment escaped.
        let segments: Vec<String> = uri
            .path()
            .trim_start_matches("/calendar/v3/calendars/")
            .split('/')
            .map(|segment| {
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let calendar = self.resolve(&segments[0]);
        let (resource, operation) = match (method.as_str(), segments.len()) {
            ("GET", 1) => ("calendars", "get"),
            ("GET", 2) if segments[1] == "events" => ("events", "list"),
            ("POST", 2) if segments[1] == "events" => ("events", "insert"),
            ("PATCH", 3) if segments[1] == "events" => ("events", "patch"),
            _ => return error(404, "global", "notFound", "Not Found"),
        };
        let discovery = discovery::calendar();
        let scopes = discovery.scopes(resource, operation);
        if !self.scopes.iter().any(|granted| scopes.contains(granted)) {
            return error(
                403,
                "global",
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
            );
        }
        let query = fields_of(uri.query().unwrap_or_default().as_bytes());
        let query = query.as_object().cloned().unwrap_or_default();
        let mut problems = discovery.check_query(resource, operation, &query);
        if matches!(operation, "insert" | "patch") {
            if serde_json::from_slice::<Value>(body).is_err() {
                problems.push("Invalid JSON payload received.".to_owned());
            } else {
                problems.extend(discovery.check_body("Event", resource, operation, &parsed));
            }
        }
        if let Some(problem) = problems.first() {
            return error(400, "global", "invalid", problem);
        }
        if !self.calendars.contains(&calendar) {
            return error(404, "global", "notFound", "Not Found");
        }
        match operation {
            "get" => (
                StatusCode::OK,
                json!({"kind": "calendar#calendar", "id": calendar, "summary": calendar, "timeZone": "Europe/London"}),
            ),
            "list" => self.list(&calendar, &query),
            "insert" => self.insert(&calendar, parsed, &query),
            _ => self.patch(&calendar, &segments[2], parsed, &query),
        }
    }

    fn list(&self, calendar: &str, query: &Map<String, Value>) -> (StatusCode, Value) {
        let wanted: Vec<(&str, &str)> = query
            .get("privateExtendedProperty")
            .and_then(Value::as_str)
            .and_then(|pair| pair.split_once('='))
            .into_iter()
            .collect();
        let show_deleted = query.get("showDeleted").and_then(Value::as_str) == Some("true");
        let items: Vec<Value> = self
            .events
            .iter()
            .filter(|(owner, _)| owner == calendar)
            .map(|(_, event)| event)
            .filter(|event| show_deleted || event["status"] != "cancelled")
            .filter(|event| {
                wanted
                    .iter()
                    .all(|(key, value)| event["extendedProperties"]["private"][*key] == *value)
            })
            .cloned()
            .collect();
        (
            StatusCode::OK,
            json!({"kind": "calendar#events", "summary": calendar, "items": items}),
        )
    }

    fn invite(&mut self, event: &Value, query: &Map<String, Value>) {
        if query
            .get("sendUpdates")
            .and_then(Value::as_str)
            .is_some_and(|send| send != "none")
        {
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            for attendee in event["attendees"].as_array().into_iter().flatten() {
                if let Some(email) = attendee["email"].as_str() {
                    self.invitations.push((email.to_owned(), id.clone()));
                }
            }
        }
    }

    fn insert(
        &mut self,
        calendar: &str,
        mut event: Value,
        query: &Map<String, Value>,
    ) -> (StatusCode, Value) {
        let id = match event["id"].as_str() {
            Some(id) => {
                let base32hex = id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b));
                if !(5..=1024).contains(&id.len()) || !base32hex {
                    return error(400, "global", "invalid", "Invalid resource id value.");
                }
                if self
                    .events
                    .iter()
                    .any(|(owner, e)| owner == calendar && e["id"] == id)
                {
                    return error(
                        409,
                        "global",
                        "duplicate",
                        "The requested identifier already exists.",
                    );
                }
                id.to_owned()
            }
            None => {
                self.next += 1;
                format!("{:026}", self.next)
            }
        };
        event["id"] = json!(id);
        event["kind"] = json!("calendar#event");
        event["htmlLink"] = json!(format!("https://www.google.com/calendar/event?eid={id}"));
        event["organizer"] = json!({"email": calendar, "self": true});
        if event.get("status").is_none() {
            event["status"] = json!("confirmed");
        }
        self.invite(&event, query);
        self.events.push((calendar.to_owned(), event.clone()));
        (StatusCode::OK, event)
    }

    fn patch(
        &mut self,
        calendar: &str,
        id: &str,
        fields: Value,
        query: &Map<String, Value>,
    ) -> (StatusCode, Value) {
        let Some((_, event)) = self
            .events
            .iter_mut()
            .find(|(owner, event)| owner == calendar && event["id"] == id)
        else {
            return error(404, "global", "notFound", "Not Found");
        };
        merge(event, fields);
        let event = event.clone();
        self.invite(&event, query);
        (StatusCode::OK, event)
    }
}

/// A patch as Google applies it: objects merged field by field, everything else replaced.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

// === the conformance suite's view ===

/// The account and OAuth client of the simulated Google (not real ones).
const SIMULATED_ACCOUNT: &str = "weddings@kew-films.example";
const SIMULATED_CLIENT_ID: &str = "1234567890-simulated.apps.googleusercontent.com";
/// The client secret and the account's refresh token, one credential for the suite.
const SIMULATED_SECRET: &str = "GOCSPX-simulated-google-secret";

impl Simulation for super::GoogleCalendar {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let google = FakeGoogleCalendar::start(
                addr,
                SIMULATED_ACCOUNT,
                SIMULATED_CLIENT_ID,
                SIMULATED_SECRET,
                SIMULATED_SECRET,
            )
            .await?;
            Ok(Box::new(google) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeGoogleCalendar {
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
            "oauth = {{ client_id = \"{SIMULATED_CLIENT_ID}\", client_secret = {secret}, refresh_token = {secret}, token_url = \"{url}/token\", authorize_url = \"{url}/o/oauth2/v2/auth\" }}, api_url = \"{url}\"",
            url = self.url()
        )
    }

    /// A wedding of its own per notification: notifications of one wedding sent at once meet
    /// each other's event (409, then a patch: a request more than the limiter was charged).
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["weddingContext"]["weddingId"] = json!(format!("w-{notification_id}"));
        notification
    }

    fn address(&self) -> String {
        self.url()
    }

    fn about(&self) -> String {
        "a studio's primary calendar, a wedding per event".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        match request.body["summary"].as_str() {
            Some(summary) => format!("{} {summary}", request.method),
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
            json!({"error": {"code": 503, "message": "The service is currently unavailable.", "errors": [{"domain": "global", "reason": "backendError", "message": "The service is currently unavailable."}]}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"domain": "global", "reason": "authError", "message": "Invalid Credentials", "locationType": "header", "location": "Authorization"}]}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": {"code": 429, "message": "Rate Limit Exceeded", "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}]}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"error": {"code": 400, "message": "Invalid start time.", "errors": [{"domain": "global", "reason": "invalid", "message": "Invalid start time."}]}}),
            ),
            "Invalid start time",
        )
    }
}
