//! A Pipedrive company for what the Pipedrive connector calls, behaving as Pipedrive documents
//! (developers.pipedrive.com, pipedrive.readme.io):
//!
//! - every API request checked against `contract.json` first (400 with Pipedrive's error body
//!   `{success: false, error, error_info, data: null, additional_data: null}`; 404 for an
//!   operation the contract lacks);
//! - a user's API token in `x-api-token` (401 "unauthorized access" otherwise); an OAuth app
//!   whose token endpoint takes the app's credentials only as HTTP Basic (`invalid_client`), a
//!   refresh-token grant (`invalid_grant`), access tokens that expire after an hour and carry the
//!   app's scopes, checked per operation (403 "Scope and URL mismatch"); the consent page
//!   (`/oauth/authorize`, a person who consents at once) and the authorization-code grant;
//! - persons found by an exact, case-insensitive email search and created with validated emails;
//!   activities of the company's activity types (`call`, `meeting`, `task`, `deadline`, `email`,
//!   `lunch`) whose participants and deal must exist; deals moved between the stages of the
//!   default pipeline or won and lost; notes that must be attached to a deal or person that
//!   exists; `users/me`;
//! - the limits: `x-ratelimit-limit`, `-remaining`, `-reset` on every answer (20 requests per
//!   2-second window per API token, 80 per OAuth token: the Essential plan), enforced with a 429
//!   and `Retry-After` once held to them; `x-daily-requests-left` (writes left of the day's
//!   10,000) on an API token's POST/PUT/PATCH answers; and the company's daily token budget
//!   (30,000 tokens of a one-seat Essential company; a search costs 40, a write 10, a read 2),
//!   whose exhaustion is a 429 too.
//!
//! The recorder holds the API's requests; token grants are counted apart
//! ([`FakePipedrive::grants`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use base64::Engine;
use serde_json::{json, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// Requests per 2-second window on the Essential plan.
const API_TOKEN_WINDOW_LIMIT: usize = 20;
const OAUTH_WINDOW_LIMIT: usize = 80;
const WINDOW: Duration = Duration::from_secs(2);
/// POST/PUT requests a user may make with an API token in a day.
const DAILY_WRITES: usize = 10_000;
/// A one-seat Essential company's daily token budget.
const DAILY_TOKENS: usize = 30_000;
/// How long an OAuth access token lives.
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// The company's activity types.
const ACTIVITY_TYPES: &[&str] = &["call", "meeting", "task", "deadline", "email", "lunch"];
/// The stages of the default pipeline (pipeline 1), by id.
const STAGES: &[(u64, &str)] = &[
    (1, "Qualified"),
    (2, "Contact Made"),
    (3, "Demo Scheduled"),
    (4, "Proposal Made"),
    (5, "Negotiations Started"),
];
const ERROR_INFO: &str =
    "Please check developers.pipedrive.com for more information about Pipedrive API.";

pub struct FakePipedrive {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Company>>,
}

/// A record as the company keeps it: its id and its fields as Pipedrive answers them.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub fields: Value,
}

/// An OAuth app installed in the company.
struct App {
    client_id: String,
    client_secret: String,
    refresh_token: Option<String>,
    scopes: Vec<String>,
    redirect_uri: Option<String>,
    codes: Vec<String>,
}

struct Company {
    api_token: String,
    app: Option<App>,
    access_tokens: HashMap<String, Instant>,
    grants: usize,
    persons: Vec<Record>,
    activities: Vec<Record>,
    notes: Vec<Record>,
    deals: BTreeMap<u64, Record>,
    next_id: u64,
    /// Whether the 2-second window is enforced (its headers are always sent).
    held_to_limits: bool,
    /// Request times per credential in the current window.
    windows: HashMap<String, Vec<Instant>>,
    writes_left: usize,
    tokens_left: usize,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Company>>,
    recorder: Recorder,
    faults: Faults,
}

fn pipedrive_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Pipedrive's error body.
fn refusal(status: StatusCode, error: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"success": false, "error": error, "error_info": ERROR_INFO, "data": null, "additional_data": null}),
    )
}

fn success(status: StatusCode, data: Value) -> (StatusCode, Value) {
    (
        status,
        json!({"success": true, "data": data, "additional_data": null}),
    )
}

impl FakePipedrive {
    /// Starts a company whose user's API token is `api_token`.
    pub async fn start(addr: std::net::SocketAddr, api_token: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Company {
            api_token: api_token.to_owned(),
            app: None,
            access_tokens: HashMap::new(),
            grants: 0,
            persons: Vec::new(),
            activities: Vec::new(),
            notes: Vec::new(),
            deals: BTreeMap::new(),
            next_id: 1,
            held_to_limits: false,
            windows: HashMap::new(),
            writes_left: DAILY_WRITES,
            tokens_left: DAILY_TOKENS,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/oauth/token", post(grant_token))
            .route("/oauth/authorize", get(authorize))
            .route("/api/v2/persons/search", get(handle))
            .route("/api/v2/persons", post(handle))
            .route("/api/v2/activities", post(handle))
            .route("/api/v2/deals/{id}", patch(handle))
            .route("/api/v1/notes", post(handle))
            .route("/api/v1/users/me", get(handle))
            .with_state(app_state);
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
        })
    }

    /// The company's address, to configure as `api_domain` (and as `oauth.server`: the
    /// simulator is Pipedrive's OAuth server too).
    pub fn api_domain(&self) -> String {
        self.server.url()
    }

    /// Installs an OAuth app with `scopes`, authorized with `refresh_token`.
    pub fn install_app(
        &self,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
        scopes: &[&str],
    ) {
        self.lock().app = Some(App {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            refresh_token: Some(refresh_token.to_owned()),
            scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
            redirect_uri: None,
            codes: Vec::new(),
        });
    }

    /// Forgets the app's refresh token and waits for an install through the consent page,
    /// whose callback is `redirect_uri`.
    pub fn await_install(&self, redirect_uri: &str) {
        if let Some(app) = self.lock().app.as_mut() {
            app.refresh_token = None;
            app.redirect_uri = Some(redirect_uri.to_owned());
        }
    }

    /// The app's refresh token, once authorized.
    pub fn refresh_token(&self) -> Option<String> {
        self.lock()
            .app
            .as_ref()
            .and_then(|app| app.refresh_token.clone())
    }

    /// Adds a person (as someone using Pipedrive would) and answers its id.
    pub fn add_person(&self, name: &str, email: &str) -> u64 {
        let mut company = self.lock();
        let id = company.new_id();
        company.persons.push(Record {
            id,
            fields: json!({"id": id, "name": name, "emails": [{"value": email, "primary": true, "label": "work"}]}),
        });
        id
    }

    /// Adds an open deal in `stage_id` and answers its id.
    pub fn add_deal(&self, title: &str, stage_id: u64) -> u64 {
        let mut company = self.lock();
        let id = company.new_id();
        company.deals.insert(
            id,
            Record {
                id,
                fields: json!({"id": id, "title": title, "stage_id": stage_id, "pipeline_id": 1, "status": "open"}),
            },
        );
        id
    }

    pub fn persons(&self) -> Vec<Record> {
        self.lock().persons.clone()
    }

    pub fn activities(&self) -> Vec<Record> {
        self.lock().activities.clone()
    }

    pub fn notes(&self) -> Vec<Record> {
        self.lock().notes.clone()
    }

    pub fn deal(&self, id: u64) -> Option<Record> {
        self.lock().deals.get(&id).cloned()
    }

    /// Token grants answered so far.
    pub fn grants(&self) -> usize {
        self.lock().grants
    }

    /// Expires every OAuth access token now.
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// Sets what is left of the company's daily token budget.
    pub fn set_tokens_left(&self, tokens: usize) {
        self.lock().tokens_left = tokens;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Company> {
        self.state.lock().expect("pipedrive lock")
    }
}

/// `POST /oauth/token`: the app's credentials as HTTP Basic, the grant form-encoded.
async fn grant_token(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) =
        match pipedrive_contract().check("POST", "/oauth/token", &fields_of(&body)) {
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_request", "error_description": listed.join("; ")}),
                )
            }
            _ => app
                .state
                .lock()
                .expect("pipedrive lock")
                .grant(&headers, &form),
        };
    (status, axum::Json(answer)).into_response()
}

/// `GET /oauth/authorize`: a person who consents at once, sent back to the app's callback URL
/// with a single-use code and the `state` it was given.
async fn authorize(State(app): State<AppState>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut company = app.state.lock().expect("pipedrive lock");
    let Some(installing) = company.app.as_mut().filter(|installing| {
        query.get("client_id") == Some(&installing.client_id)
            && installing.redirect_uri.is_some()
            && query.get("redirect_uri") == installing.redirect_uri.as_ref()
    }) else {
        return (
            StatusCode::BAD_REQUEST,
            "The redirect_uri or client_id does not match the app's",
        )
            .into_response();
    };
    let code = format!("pd-code-{}", uuid::Uuid::new_v4().simple());
    installing.codes.push(code.clone());
    let Some(Ok(mut back)) = installing.redirect_uri.as_deref().map(url::Url::parse) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", query.get("state").map_or("", String::as_str));
    (StatusCode::FOUND, [("location", back.to_string())]).into_response()
}

/// Every API call: recorded, scripted faults first, then the company's answer with its
/// rate-limit headers.
async fn handle(
    State(app): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Result<Value, String> = if method == axum::http::Method::GET {
        Ok(fields_of(uri.query().unwrap_or_default().as_bytes()))
    } else {
        serde_json::from_slice(&body).map_err(|err| err.to_string())
    };
    let recorded = parsed.clone().unwrap_or(Value::Null);
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, recorded, status);
        return response;
    }
    let (status, answer, limits) = app.state.lock().expect("pipedrive lock").answer(
        method.as_str(),
        uri.path(),
        &headers,
        parsed,
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    let mut response = (status, axum::Json(answer)).into_response();
    for (name, value) in limits {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The credential a request carries: the API token, or an OAuth access token's scopes.
enum Caller {
    ApiToken,
    OAuth { token: String, scopes: Vec<String> },
}

// === impl Company ===

impl Company {
    fn grant(
        &mut self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> (StatusCode, Value) {
        let basic = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .and_then(|decoded| String::from_utf8(decoded).ok());
        let Some(app) = self.app.as_mut() else {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"success": false, "message": "Invalid client", "error": "invalid_client"}),
            );
        };
        if basic.as_deref() != Some(&format!("{}:{}", app.client_id, app.client_secret)) {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"success": false, "message": "Invalid client", "error": "invalid_client"}),
            );
        }
        let granted = match form.get("grant_type").map(String::as_str) {
            Some("refresh_token") => {
                app.refresh_token.is_some()
                    && form.get("refresh_token") == app.refresh_token.as_ref()
            }
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let known = app.codes.iter().position(|issued| *issued == code);
                match known {
                    Some(at) if form.get("redirect_uri") == app.redirect_uri.as_ref() => {
                        app.codes.remove(at);
                        app.refresh_token =
                            Some(format!("pd-refresh-{}", uuid::Uuid::new_v4().simple()));
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
                json!({"success": false, "message": "Invalid grant: refresh token is invalid", "error": "invalid_grant"}),
            );
        }
        let scope = app.scopes.join(",");
        let refresh_token = app.refresh_token.clone();
        self.grants += 1;
        let access_token = format!("pd-access-{}", uuid::Uuid::new_v4().simple());
        self.access_tokens
            .insert(access_token.clone(), Instant::now() + ACCESS_TOKEN_LIFETIME);
        (
            StatusCode::OK,
            json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "refresh_token": refresh_token,
                "scope": scope,
                "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "api_domain": "https://simulated.pipedrive.com",
            }),
        )
    }

    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        if let Some(token) = headers.get("x-api-token").and_then(|v| v.to_str().ok()) {
            return (token == self.api_token).then_some(Caller::ApiToken);
        }
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))?;
        let live = self
            .access_tokens
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires);
        let scopes = self.app.as_ref().map(|app| app.scopes.clone())?;
        live.then(|| Caller::OAuth {
            token: token.to_owned(),
            scopes,
        })
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        parsed: Result<Value, String>,
    ) -> (StatusCode, Value, Vec<(&'static str, String)>) {
        let Some(caller) = self.caller(headers) else {
            let (status, body) = refusal(StatusCode::UNAUTHORIZED, "unauthorized access");
            return (status, body, Vec::new());
        };
        let (key, limit) = match &caller {
            Caller::ApiToken => ("api_token".to_owned(), API_TOKEN_WINDOW_LIMIT),
            Caller::OAuth { token, .. } => (token.clone(), OAUTH_WINDOW_LIMIT),
        };
        let now = Instant::now();
        let window = self.windows.entry(key).or_default();
        window.retain(|at| now.duration_since(*at) < WINDOW);
        let reset = window.first().map_or(WINDOW, |first| {
            WINDOW.saturating_sub(now.duration_since(*first))
        });
        let mut limits = vec![
            ("x-ratelimit-limit", limit.to_string()),
            ("x-ratelimit-reset", reset.as_secs().max(1).to_string()),
        ];
        if self.held_to_limits && window.len() >= limit {
            limits.push(("x-ratelimit-remaining", "0".to_owned()));
            limits.push(("retry-after", reset.as_secs().max(1).to_string()));
            let (status, body) = refusal(StatusCode::TOO_MANY_REQUESTS, "Request over limit");
            return (status, body, limits);
        }
        window.push(now);
        limits.push((
            "x-ratelimit-remaining",
            limit.saturating_sub(window.len()).to_string(),
        ));
        let cost = match (method, path.ends_with("/search")) {
            ("GET", true) => 40,
            ("GET", false) => 2,
            _ => 10,
        };
        if self.tokens_left < cost {
            limits.push(("retry-after", seconds_to_midnight_utc().to_string()));
            let (status, body) =
                refusal(StatusCode::TOO_MANY_REQUESTS, "Daily token budget exceeded");
            return (status, body, limits);
        }
        self.tokens_left -= cost;
        if matches!(caller, Caller::ApiToken) && method != "GET" {
            self.writes_left = self.writes_left.saturating_sub(1);
            limits.push(("x-daily-requests-left", self.writes_left.to_string()));
        }
        let (status, body) = self.operation(method, path, &caller, parsed);
        (status, body, limits)
    }

    fn operation(
        &mut self,
        method: &str,
        path: &str,
        caller: &Caller,
        parsed: Result<Value, String>,
    ) -> (StatusCode, Value) {
        let instance = match parsed {
            Ok(instance) => instance,
            Err(reason) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("Request body is not valid JSON: {reason}"),
                )
            }
        };
        match pipedrive_contract().check(method, path, &instance) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(_)) => {
                return refusal(StatusCode::NOT_FOUND, "Unknown method .")
            }
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("Validation failed: {}", listed.join("; ")),
                );
            }
        }
        let needs: &[&str] = match (method, path) {
            ("GET", "/api/v2/persons/search") => &["contacts:read", "contacts:full", "search:read"],
            ("POST", "/api/v2/persons") => &["contacts:full"],
            ("POST", "/api/v2/activities") => &["activities:full"],
            ("POST", "/api/v1/notes") => &["deals:full", "contacts:full"],
            ("PATCH", _) => &["deals:full"],
            _ => &["base"],
        };
        if let Caller::OAuth { scopes, .. } = caller {
            if !needs.iter().any(|need| scopes.iter().any(|s| s == need)) {
                return refusal(StatusCode::FORBIDDEN, "Scope and URL mismatch");
            }
        }
        match (method, path) {
            ("GET", "/api/v2/persons/search") => self.search(&instance),
            ("POST", "/api/v2/persons") => self.add_person(&instance),
            ("POST", "/api/v2/activities") => self.add_activity(&instance),
            ("POST", "/api/v1/notes") => self.add_note(&instance),
            ("GET", "/api/v1/users/me") => success(
                StatusCode::OK,
                json!({"id": 1, "name": "Studio Owner", "email": "owner@example.com", "company_id": 7, "company_name": "Simulated Studio", "company_domain": "simulated"}),
            ),
            ("PATCH", path) => match path
                .strip_prefix("/api/v2/deals/")
                .and_then(|id| id.parse().ok())
            {
                Some(id) => self.update_deal(id, &instance),
                None => refusal(StatusCode::NOT_FOUND, "Deal not found"),
            },
            _ => refusal(StatusCode::NOT_FOUND, "Unknown method ."),
        }
    }

    /// Persons whose emails match `term` exactly (case-insensitive); only the email search
    /// the connector sends.
    fn search(&self, query: &Value) -> (StatusCode, Value) {
        let term = query["term"].as_str().unwrap_or_default();
        let exact = query["exact_match"] == "true";
        if term.chars().count() < if exact { 1 } else { 2 } {
            return refusal(
                StatusCode::BAD_REQUEST,
                "Search term must be at least 2 characters long",
            );
        }
        if query["fields"] != "email" || !exact {
            return refusal(
                StatusCode::BAD_REQUEST,
                "The simulator answers only exact email searches",
            );
        }
        let limit = query["limit"]
            .as_str()
            .and_then(|limit| limit.parse().ok())
            .unwrap_or(100);
        let items: Vec<Value> = self
            .persons
            .iter()
            .filter(|person| {
                person.fields["emails"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|email| email["value"].as_str().is_some_and(|e| e.eq_ignore_ascii_case(term)))
            })
            .take(limit)
            .map(|person| {
                json!({"result_score": 1.0, "item": {
                    "id": person.id, "type": "person", "name": person.fields["name"],
                    "emails": person.fields["emails"].as_array().into_iter().flatten().map(|e| e["value"].clone()).collect::<Vec<_>>(),
                    "phones": [], "visible_to": 3, "owner": {"id": 1}, "organization": null,
                    "custom_fields": [], "notes": []
                }})
            })
            .collect();
        (
            StatusCode::OK,
            json!({"success": true, "data": {"items": items}, "additional_data": {"next_cursor": null}}),
        )
    }

    fn add_person(&mut self, body: &Value) -> (StatusCode, Value) {
        if body["name"]
            .as_str()
            .is_some_and(|name| name.trim().is_empty())
        {
            return refusal(StatusCode::BAD_REQUEST, "Name must be given.");
        }
        let id = self.new_id();
        let mut fields = body.clone();
        fields["id"] = json!(id);
        fields["emails"] = json!(body["emails"].as_array().cloned().unwrap_or_default());
        self.persons.push(Record {
            id,
            fields: fields.clone(),
        });
        success(StatusCode::OK, fields)
    }

    fn add_activity(&mut self, body: &Value) -> (StatusCode, Value) {
        let kind = body["type"].as_str().unwrap_or("task");
        if !ACTIVITY_TYPES.contains(&kind) {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("Activity type \"{kind}\" does not exist"),
            );
        }
        let persons = body["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|participant| &participant["person_id"])
            .chain(body.get("person_id"));
        for person in persons {
            if !self.persons.iter().any(|p| Some(p.id) == person.as_u64()) {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("Person {person} not found"),
                );
            }
        }
        if let Some(deal) = body.get("deal_id") {
            if !deal.as_u64().is_some_and(|id| self.deals.contains_key(&id)) {
                return refusal(StatusCode::BAD_REQUEST, &format!("Deal {deal} not found"));
            }
        }
        let id = self.new_id();
        let mut fields = body.clone();
        fields["id"] = json!(id);
        fields["type"] = json!(kind);
        self.activities.push(Record {
            id,
            fields: fields.clone(),
        });
        success(StatusCode::CREATED, fields)
    }

    fn add_note(&mut self, body: &Value) -> (StatusCode, Value) {
        let on_deal = body.get("deal_id").and_then(Value::as_u64);
        let on_person = body.get("person_id").and_then(Value::as_u64);
        match (on_deal, on_person) {
            (None, None) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "Note must be attached to a deal, person, organization, lead or project.",
                )
            }
            (Some(deal), _) if !self.deals.contains_key(&deal) => {
                return refusal(StatusCode::BAD_REQUEST, "Deal not found")
            }
            (_, Some(person)) if !self.persons.iter().any(|p| p.id == person) => {
                return refusal(StatusCode::BAD_REQUEST, "Person not found")
            }
            _ => {}
        }
        let id = self.new_id();
        let mut fields = body.clone();
        fields["id"] = json!(id);
        self.notes.push(Record {
            id,
            fields: fields.clone(),
        });
        success(StatusCode::CREATED, fields)
    }

    fn update_deal(&mut self, id: u64, body: &Value) -> (StatusCode, Value) {
        if let Some(stage) = body.get("stage_id") {
            if !STAGES
                .iter()
                .any(|(known, _)| Some(*known) == stage.as_u64())
            {
                return refusal(StatusCode::BAD_REQUEST, &format!("Stage {stage} not found"));
            }
        }
        let Some(deal) = self.deals.get_mut(&id) else {
            return refusal(StatusCode::NOT_FOUND, "Deal not found");
        };
        if let (Some(fields), Some(changes)) = (deal.fields.as_object_mut(), body.as_object()) {
            for (name, value) in changes {
                fields.insert(name.clone(), value.clone());
            }
        }
        success(StatusCode::OK, deal.fields.clone())
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Seconds until the next midnight UTC, when Pipedrive's daily budgets reset.
fn seconds_to_midnight_utc() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    86_400 - now % 86_400
}

// === the conformance suite's view ===

/// The API token the simulated company accepts (not a real credential).
const SIMULATED_API_TOKEN: &str = "simulated-pipedrive-api-token-0a1b2c";

impl Simulation for super::Pipedrive {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let company = FakePipedrive::start(addr, SIMULATED_API_TOKEN).await?;
            Ok(Box::new(company) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakePipedrive {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_API_TOKEN.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "api_domain = \"{}\", api_token = {secret}",
            self.api_domain()
        )
    }

    /// With the couple as contacts: Pipedrive syncs persons.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] = json!([
            {"name": "Sam Taylor", "email": "sam@example.com", "role": "couple"},
            {"name": "Alex Morgan", "email": "alex@example.com", "role": "couple"}
        ]);
        notification
    }

    fn address(&self) -> String {
        self.api_domain()
    }

    fn about(&self) -> String {
        "an Essential-plan company: persons, activities, notes, deals".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["term"]
            .as_str()
            .or(request.body["subject"].as_str())
            .or(request.body["name"].as_str())
            .map(|text| format!("{text:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"success": false, "error": "Service Unavailable", "error_info": ERROR_INFO, "data": null, "additional_data": null}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"success": false, "error": "unauthorized access", "error_info": ERROR_INFO, "data": null, "additional_data": null}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1"), ("x-ratelimit-remaining", "0")],
            json!({"success": false, "error": "Request over limit", "error_info": ERROR_INFO, "data": null, "additional_data": null}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"success": false, "error": "Invalid email address: sam@@example", "error_info": ERROR_INFO, "data": null, "additional_data": null}),
            ),
            "Invalid email address",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_knows_the_operations_herald_calls() {
        let contract = pipedrive_contract();
        assert_eq!(
            contract.check("PATCH", "/api/v2/deals/42", &json!({"stage_id": 3})),
            Ok(())
        );
        assert!(matches!(
            contract.check("PATCH", "/api/v2/deals/42", &json!({"status": "closed"})),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check(
                "POST",
                "/api/v2/persons",
                &json!({"name": "Sam", "emails": [{"value": "not-an-email"}]})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("DELETE", "/api/v2/persons/1", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
    }
}
