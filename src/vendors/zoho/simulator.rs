//! A Zoho CRM organization and its data center's accounts server, for what the Zoho connector
//! calls, behaving as Zoho documents (zoho.com/crm/developer/docs/api/v8, zoho.com/accounts):
//!
//! - every API request checked against `contract.json` first (400 with Zoho's error body
//!   `{code, details, message, status: "error"}`; 404 `INVALID_URL_PATTERN` for an operation the
//!   contract lacks);
//! - the accounts server: a client's refresh-token grant and authorization-code grant, which
//!   Zoho refuses with a 200 whose body is `{"error": "invalid_code"}` (or `invalid_client`);
//!   access tokens that live an hour, carry the client's scopes and come with the `api_domain`
//!   calls go to (this simulator's own address); the consent page (`/oauth/v2/auth`, a person who
//!   consents at once), which issues a refresh token only to `access_type=offline` and sends
//!   the person back with `code`, `state`, `location` and `accounts-server`;
//! - `Authorization: Zoho-oauthtoken <token>` (401 `INVALID_TOKEN` otherwise, expired tokens
//!   too) and a scope per operation (401 `OAUTH_SCOPE_MISMATCH`);
//! - contacts searched by `(Email:equals:...)` criteria OR-ed up to ten (204 when nothing
//!   matches), upserted with a duplicate check on `Email`; tasks whose `Who_Id` and `What_Id`
//!   must exist; deals moved between the values of the standard Stage picklist; notes on a
//!   record that exists; the current user. Writes answer record by record (`SUCCESS`, or
//!   `INVALID_DATA` / `MANDATORY_NOT_FOUND` naming the field), 400 when every record failed;
//! - API credits over a rolling day (a one-licence Standard organization's 50,250; a write
//!   costs one per ten records), 429 `TOO_MANY_REQUESTS` when spent; and, once held to its
//!   published limits, Standard's ten concurrent calls.
//!
//! The recorder holds the API's requests; token grants are counted apart ([`FakeZoho::grants`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{json, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// A one-licence Standard organization's credits per rolling day: 50,000 + 250 per licence.
const DAILY_CREDITS: usize = 50_250;
/// Standard's concurrent calls.
const CONCURRENCY: usize = 10;
/// How long an access token lives.
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Most conditions in one search criteria.
const MAX_CONDITIONS: usize = 10;
/// The standard Stage picklist of Deals.
const STAGES: &[&str] = &[
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Identify Decision Makers",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
    "Closed Lost to Competition",
];
/// The modules a note may be on.
const NOTE_PARENTS: &[&str] = &["Contacts", "Deals", "Leads", "Accounts"];

pub struct FakeZoho {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Organization>>,
}

/// A record as the organization keeps it: its id and its fields as Zoho answers them.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub fields: Value,
}

/// The organization's API console client.
struct Client {
    client_id: String,
    client_secret: String,
    refresh_token: Option<String>,
    scopes: Vec<String>,
    redirect_uri: Option<String>,
    /// Codes issued at the consent page, and whether each asked for offline access.
    codes: Vec<(String, bool)>,
}

struct Organization {
    /// Where API calls go: this simulator's own address.
    api_domain: String,
    client: Option<Client>,
    access_tokens: HashMap<String, Instant>,
    grants: usize,
    contacts: Vec<Record>,
    deals: Vec<Record>,
    tasks: Vec<Record>,
    notes: Vec<Record>,
    next_id: u64,
    credits_left: usize,
    held_to_limits: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Organization>>,
    recorder: Recorder,
    faults: Faults,
    in_flight: Arc<AtomicUsize>,
}

fn zoho_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Zoho's error body.
fn error(status: StatusCode, code: &str, message: &str, details: Value) -> (StatusCode, Value) {
    (
        status,
        json!({"code": code, "details": details, "message": message, "status": "error"}),
    )
}

/// One record's refusal inside a write's `data`.
fn record_error(code: &str, message: &str, field: &str, index: usize) -> Value {
    json!({
        "code": code,
        "details": {"api_name": field, "json_path": format!("$.data[{index}].{field}")},
        "message": message,
        "status": "error",
    })
}

fn record_success(id: &str, message: &str, action: Option<&str>) -> Value {
    let mut answer = json!({
        "code": "SUCCESS",
        "details": {"id": id, "Created_Time": "2026-12-04T10:00:00+00:00", "Modified_Time": "2026-12-04T10:00:00+00:00"},
        "message": message,
        "status": "success",
    });
    if let Some(action) = action {
        answer["action"] = json!(action);
        answer["duplicate_field"] = if action == "update" {
            json!("Email")
        } else {
            Value::Null
        };
    }
    answer
}

/// A write's answer from its records': 400 when every record failed, 207 when some did.
fn written(results: Vec<Value>, all_ok: StatusCode) -> (StatusCode, Value) {
    let failed = results.iter().filter(|r| r["status"] == "error").count();
    let status = match failed {
        0 => all_ok,
        n if n == results.len() => StatusCode::BAD_REQUEST,
        _ => StatusCode::MULTI_STATUS,
    };
    (status, json!({"data": results}))
}

impl FakeZoho {
    /// Starts an organization with no client installed ([`FakeZoho::install_client`]).
    pub async fn start(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Organization {
            api_domain: String::new(),
            client: None,
            access_tokens: HashMap::new(),
            grants: 0,
            contacts: Vec::new(),
            deals: Vec::new(),
            tasks: Vec::new(),
            notes: Vec::new(),
            next_id: 1,
            credits_left: DAILY_CREDITS,
            held_to_limits: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new()
            .route("/oauth/v2/token", post(grant_token))
            .route("/oauth/v2/auth", get(authorize))
            .route("/crm/v8/Contacts/search", get(handle))
            .route("/crm/v8/Contacts/upsert", post(handle))
            .route("/crm/v8/Deals/{id}", put(handle))
            .route("/crm/v8/Tasks", post(handle))
            .route("/crm/v8/Notes", post(handle))
            .route("/crm/v8/users", get(handle))
            .with_state(app_state);
        let server = Server::start(app, addr, faults.clone()).await?;
        state.lock().expect("zoho lock").api_domain = server.url();
        Ok(Self {
            server,
            recorder,
            faults,
            state,
        })
    }

    /// The data center's accounts server (this simulator), to configure as
    /// `oauth.accounts_server`; token answers name the same address as `api_domain`.
    pub fn accounts_server(&self) -> String {
        self.server.url()
    }

    /// Installs the organization's API console client with `scopes`, authorized with
    /// `refresh_token`.
    pub fn install_client(
        &self,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
        scopes: &[&str],
    ) {
        self.lock().client = Some(Client {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            refresh_token: Some(refresh_token.to_owned()),
            scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
            redirect_uri: None,
            codes: Vec::new(),
        });
    }

    /// Forgets the client's refresh token and waits for an install through the consent page,
    /// whose callback is `redirect_uri`.
    pub fn await_install(&self, redirect_uri: &str) {
        if let Some(client) = self.lock().client.as_mut() {
            client.refresh_token = None;
            client.redirect_uri = Some(redirect_uri.to_owned());
        }
    }

    /// The client's refresh token, once authorized.
    pub fn refresh_token(&self) -> Option<String> {
        self.lock()
            .client
            .as_ref()
            .and_then(|client| client.refresh_token.clone())
    }

    /// Adds a contact (as someone using Zoho would) and answers its id.
    pub fn add_contact(&self, first_name: &str, last_name: &str, email: &str) -> String {
        let mut organization = self.lock();
        let id = organization.new_id();
        organization.contacts.push(Record {
            id: id.clone(),
            fields: json!({"id": id, "First_Name": first_name, "Last_Name": last_name, "Email": email}),
        });
        id
    }

    /// Adds a deal in `stage` and answers its id.
    pub fn add_deal(&self, name: &str, stage: &str) -> String {
        let mut organization = self.lock();
        let id = organization.new_id();
        organization.deals.push(Record {
            id: id.clone(),
            fields: json!({"id": id, "Deal_Name": name, "Stage": stage}),
        });
        id
    }

    pub fn contacts(&self) -> Vec<Record> {
        self.lock().contacts.clone()
    }

    pub fn tasks(&self) -> Vec<Record> {
        self.lock().tasks.clone()
    }

    pub fn notes(&self) -> Vec<Record> {
        self.lock().notes.clone()
    }

    pub fn deal(&self, id: &str) -> Option<Record> {
        self.lock().deals.iter().find(|deal| deal.id == id).cloned()
    }

    /// Token grants answered so far.
    pub fn grants(&self) -> usize {
        self.lock().grants
    }

    /// Expires every access token now.
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// Sets what is left of the organization's credits.
    pub fn set_credits_left(&self, credits: usize) {
        self.lock().credits_left = credits;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Organization> {
        self.state.lock().expect("zoho lock")
    }
}

/// `POST /oauth/v2/token`: the client's credentials and the grant, form-encoded.
async fn grant_token(State(app): State<AppState>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let answer = match zoho_contract().check("POST", "/oauth/v2/token", &fields_of(&body)) {
        Err(Breach::Invalid(_)) => json!({"error": "invalid_request"}),
        _ => app.state.lock().expect("zoho lock").grant(&form),
    };
    // Zoho's accounts server refuses a grant with a 200 too.
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// `GET /oauth/v2/auth`: a person who consents at once, sent back to the client's redirect URI
/// with a single-use code, the `state`, and the account's data center.
async fn authorize(State(app): State<AppState>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut organization = app.state.lock().expect("zoho lock");
    let accounts_server = organization.api_domain.clone();
    let Some(installing) = organization.client.as_mut().filter(|client| {
        query.get("client_id") == Some(&client.client_id)
            && client.redirect_uri.is_some()
            && query.get("redirect_uri") == client.redirect_uri.as_ref()
            && query.get("response_type").map(String::as_str) == Some("code")
            && query.get("scope").is_some_and(|scope| !scope.is_empty())
    }) else {
        return (
            StatusCode::BAD_REQUEST,
            "Invalid Redirect Uri, Client ID, response type or scope",
        )
            .into_response();
    };
    let code = format!("1000.{}", uuid::Uuid::new_v4().simple());
    let offline = query.get("access_type").map(String::as_str) == Some("offline");
    installing.codes.push((code.clone(), offline));
    let Some(Ok(mut back)) = installing.redirect_uri.as_deref().map(url::Url::parse) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    back.query_pairs_mut()
        .append_pair("state", query.get("state").map_or("", String::as_str))
        .append_pair("code", &code)
        .append_pair("location", "us")
        .append_pair("accounts-server", &accounts_server);
    (StatusCode::FOUND, [("location", back.to_string())]).into_response()
}

/// Counts a call in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every API call: recorded, scripted faults first, then the organization's answer.
async fn handle(
    State(app): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let concurrent = app.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(app.in_flight.clone());
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
    let (status, answer) = app.state.lock().expect("zoho lock").answer(
        method.as_str(),
        uri.path(),
        &headers,
        parsed,
        concurrent,
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (status, axum::Json(answer)).into_response()
}

// === impl Organization ===

impl Organization {
    fn grant(&mut self, form: &HashMap<String, String>) -> Value {
        let Some(client) = self.client.as_mut().filter(|client| {
            form.get("client_id") == Some(&client.client_id)
                && form.get("client_secret") == Some(&client.client_secret)
        }) else {
            return json!({"error": "invalid_client"});
        };
        let mut issued_refresh_token = None;
        let granted = match form.get("grant_type").map(String::as_str) {
            Some("refresh_token") => {
                client.refresh_token.is_some()
                    && form.get("refresh_token") == client.refresh_token.as_ref()
            }
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                match client.codes.iter().position(|(issued, _)| *issued == code) {
                    Some(at) if form.get("redirect_uri") == client.redirect_uri.as_ref() => {
                        let (_, offline) = client.codes.remove(at);
                        if offline {
                            let token = format!("1000.{}", uuid::Uuid::new_v4().simple());
                            client.refresh_token = Some(token.clone());
                            issued_refresh_token = Some(token);
                        }
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !granted {
            return json!({"error": "invalid_code"});
        }
        let scope = client.scopes.join(",");
        self.grants += 1;
        let access_token = format!("1000.{}", uuid::Uuid::new_v4().simple());
        self.access_tokens
            .insert(access_token.clone(), Instant::now() + ACCESS_TOKEN_LIFETIME);
        let mut answer = json!({
            "access_token": access_token,
            "api_domain": self.api_domain,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
        });
        if let Some(refresh_token) = issued_refresh_token {
            answer["refresh_token"] = json!(refresh_token);
            answer["scope"] = json!(scope);
        }
        answer
    }

    /// The scopes of the access token a request carries, if it is live.
    fn caller_scopes(&self, headers: &HeaderMap) -> Option<Vec<String>> {
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Zoho-oauthtoken "))?;
        let live = self
            .access_tokens
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires);
        live.then(|| self.client.as_ref().map(|client| client.scopes.clone()))
            .flatten()
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        parsed: Result<Value, String>,
        concurrent: usize,
    ) -> (StatusCode, Value) {
        let Some(scopes) = self.caller_scopes(headers) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "INVALID_TOKEN",
                "invalid oauth token",
                json!({}),
            );
        };
        if self.held_to_limits && concurrent > CONCURRENCY {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "concurrency limit exceeded",
                json!({"limit": CONCURRENCY}),
            );
        }
        let instance = match parsed {
            Ok(instance) => instance,
            Err(reason) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_DATA",
                    &format!("body is not valid JSON: {reason}"),
                    json!({}),
                )
            }
        };
        match zoho_contract().check(method, path, &instance) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(_)) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "INVALID_URL_PATTERN",
                    "Please check if the URL trying to access is a correct one",
                    json!({}),
                )
            }
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_DATA",
                    "invalid data",
                    json!({"problems": listed}),
                );
            }
        }
        let module = path
            .strip_prefix("/crm/v8/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        let (needs, operation) = match (method, module) {
            ("GET", "users") => ("ZohoCRM.users", "READ"),
            ("GET", _) => ("ZohoCRM.modules.contacts", "READ"),
            ("PUT", _) => ("ZohoCRM.modules.deals", "UPDATE"),
            (_, "Contacts") => ("ZohoCRM.modules.contacts", "CREATE"),
            (_, "Tasks") => ("ZohoCRM.modules.tasks", "CREATE"),
            _ => ("ZohoCRM.modules.notes", "CREATE"),
        };
        let allowed = scopes.iter().any(|scope| {
            *scope == format!("{needs}.ALL")
                || *scope == format!("{needs}.{operation}")
                || (needs.starts_with("ZohoCRM.modules.") && scope == "ZohoCRM.modules.ALL")
        });
        if !allowed {
            return error(
                StatusCode::UNAUTHORIZED,
                "OAUTH_SCOPE_MISMATCH",
                "invalid oauth scope to access this URL",
                json!({}),
            );
        }
        let records = instance["data"].as_array().map_or(1, Vec::len);
        let cost = if method == "GET" {
            1
        } else {
            records.div_ceil(10)
        };
        if self.credits_left < cost {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "the organization's API credits for the day are used up",
                json!({}),
            );
        }
        self.credits_left -= cost;
        match (method, module) {
            ("GET", "users") => (
                StatusCode::OK,
                json!({"users": [{"id": "5725767000000411001", "full_name": "Studio Owner", "email": "owner@example.com", "status": "active", "role": {"name": "CEO", "id": "5725767000000026005"}, "profile": {"name": "Administrator", "id": "5725767000000026011"}}], "info": {"per_page": 200, "count": 1, "page": 1, "more_records": false}}),
            ),
            ("GET", _) => self.search(&instance),
            ("PUT", _) => self.move_deal(path.rsplit('/').next().unwrap_or_default(), &instance),
            (_, "Contacts") => self.upsert_contacts(&instance),
            (_, "Tasks") => self.add_tasks(&instance),
            _ => self.add_notes(&instance),
        }
    }

    /// Contacts whose email equals one of the criteria's, case-insensitive; only the email
    /// search the connector sends.
    fn search(&self, query: &Value) -> (StatusCode, Value) {
        let Some(criteria) = query["criteria"].as_str() else {
            return error(
                StatusCode::BAD_REQUEST,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                json!({"param_name": "criteria"}),
            );
        };
        let emails = match email_conditions(criteria) {
            Ok(emails) => emails,
            Err(reason) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_QUERY",
                    "invalid query formed",
                    json!({"reason": reason, "api_name": "Email"}),
                )
            }
        };
        let found: Vec<Value> = self
            .contacts
            .iter()
            .filter(|contact| {
                contact.fields["Email"]
                    .as_str()
                    .is_some_and(|email| emails.iter().any(|e| e.eq_ignore_ascii_case(email)))
            })
            .map(|contact| json!({"id": contact.id, "Email": contact.fields["Email"]}))
            .collect();
        if found.is_empty() {
            return (StatusCode::NO_CONTENT, Value::Null);
        }
        (
            StatusCode::OK,
            json!({"data": found, "info": {"per_page": 200, "count": found.len(), "page": 1, "more_records": false}}),
        )
    }

    /// Each record inserted, or updated when a contact has its email.
    fn upsert_contacts(&mut self, body: &Value) -> (StatusCode, Value) {
        if body["duplicate_check_fields"] != json!(["Email"]) {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "the simulator checks duplicates on Email only",
                json!({"api_name": "duplicate_check_fields"}),
            );
        }
        let mut results = Vec::new();
        for (index, record) in body["data"].as_array().into_iter().flatten().enumerate() {
            let email = record["Email"].as_str().unwrap_or_default();
            if !is_email(email) {
                results.push(record_error("INVALID_DATA", "invalid data", "Email", index));
                continue;
            }
            if let Some(existing) = self.contacts.iter_mut().find(|contact| {
                contact.fields["Email"]
                    .as_str()
                    .is_some_and(|known| known.eq_ignore_ascii_case(email))
            }) {
                merge(&mut existing.fields, record);
                results.push(record_success(
                    &existing.id,
                    "record updated",
                    Some("update"),
                ));
                continue;
            }
            if record["Last_Name"]
                .as_str()
                .is_none_or(|name| name.trim().is_empty())
            {
                results.push(record_error(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    "Last_Name",
                    index,
                ));
                continue;
            }
            let id = self.new_id();
            let mut fields = record.clone();
            fields["id"] = json!(id);
            fields["$triggered"] = body["trigger"].clone();
            self.contacts.push(Record {
                id: id.clone(),
                fields,
            });
            results.push(record_success(&id, "record added", Some("insert")));
        }
        written(results, StatusCode::OK)
    }

    fn move_deal(&mut self, id: &str, body: &Value) -> (StatusCode, Value) {
        let change = &body["data"][0];
        if let Some(stage) = change["Stage"].as_str() {
            if !STAGES.contains(&stage) {
                return written(
                    vec![record_error("INVALID_DATA", "invalid data", "Stage", 0)],
                    StatusCode::OK,
                );
            }
        }
        let Some(deal) = self.deals.iter_mut().find(|deal| deal.id == id) else {
            return written(
                vec![
                    json!({"code": "INVALID_DATA", "details": {"id": id}, "message": "the id given seems to be invalid", "status": "error"}),
                ],
                StatusCode::OK,
            );
        };
        merge(&mut deal.fields, change);
        deal.fields["$triggered"] = body["trigger"].clone();
        let id = deal.id.clone();
        written(
            vec![record_success(&id, "record updated", None)],
            StatusCode::OK,
        )
    }

    fn add_tasks(&mut self, body: &Value) -> (StatusCode, Value) {
        let mut results = Vec::new();
        for (index, task) in body["data"].as_array().into_iter().flatten().enumerate() {
            if let Some(who) = task.get("Who_Id") {
                if !self
                    .contacts
                    .iter()
                    .any(|c| Some(c.id.as_str()) == who["id"].as_str())
                {
                    results.push(record_error(
                        "INVALID_DATA",
                        "invalid data",
                        "Who_Id",
                        index,
                    ));
                    continue;
                }
            }
            if let Some(what) = task.get("What_Id") {
                let known = match task["$se_module"].as_str() {
                    Some("Deals") => self
                        .deals
                        .iter()
                        .any(|d| Some(d.id.as_str()) == what["id"].as_str()),
                    _ => false,
                };
                if !known {
                    let field = if task.get("$se_module").is_none() {
                        "$se_module"
                    } else {
                        "What_Id"
                    };
                    results.push(record_error("INVALID_DATA", "invalid data", field, index));
                    continue;
                }
            }
            let id = self.new_id();
            let mut fields = task.clone();
            fields["id"] = json!(id);
            fields["$triggered"] = body["trigger"].clone();
            self.tasks.push(Record {
                id: id.clone(),
                fields,
            });
            results.push(record_success(&id, "record added", None));
        }
        written(results, StatusCode::CREATED)
    }

    fn add_notes(&mut self, body: &Value) -> (StatusCode, Value) {
        let mut results = Vec::new();
        for (index, note) in body["data"].as_array().into_iter().flatten().enumerate() {
            let parent = &note["Parent_Id"];
            let module = parent["module"]["api_name"].as_str().unwrap_or_default();
            let id = parent["id"].as_str().unwrap_or_default();
            let exists = match module {
                "Contacts" => self.contacts.iter().any(|c| c.id == id),
                "Deals" => self.deals.iter().any(|d| d.id == id),
                _ => false,
            };
            if !NOTE_PARENTS.contains(&module) || !exists {
                results.push(record_error(
                    "INVALID_DATA",
                    "invalid data",
                    "Parent_Id",
                    index,
                ));
                continue;
            }
            let note_id = self.new_id();
            let mut fields = note.clone();
            fields["id"] = json!(note_id);
            self.notes.push(Record {
                id: note_id.clone(),
                fields,
            });
            results.push(record_success(&note_id, "record added", None));
        }
        written(results, StatusCode::CREATED)
    }

    /// A record id as Zoho makes them: nineteen digits.
    fn new_id(&mut self) -> String {
        let id = 5_725_767_000_001_000_000_u64 + self.next_id;
        self.next_id += 1;
        id.to_string()
    }
}

/// The emails of a criteria made of `(Email:equals:...)` conditions joined by `or`, with
/// backslash escapes; anything else is refused, saying why.
fn email_conditions(criteria: &str) -> Result<Vec<String>, String> {
    let mut emails = Vec::new();
    let mut joins = String::new();
    let mut condition: Option<String> = None;
    let mut chars = criteria.chars();
    while let Some(c) = chars.next() {
        match (c, condition.as_mut()) {
            ('\\', Some(text)) => text.push(chars.next().ok_or("a trailing backslash")?),
            ('(', _) => condition = Some(String::new()),
            (')', Some(text)) => {
                if !text.is_empty() {
                    let email = text
                        .strip_prefix("Email:equals:")
                        .ok_or_else(|| format!("{text:?} is not an Email equals condition"))?;
                    emails.push(email.to_owned());
                }
                condition = None;
            }
            (')', None) => {}
            (c, Some(text)) => text.push(c),
            (c, None) => joins.push(c),
        }
    }
    if condition.is_some() {
        return Err("unbalanced parentheses".into());
    }
    if !joins.split("or").all(|between| between.trim().is_empty()) {
        return Err(format!("conditions are joined by {joins:?}, not only or"));
    }
    if emails.is_empty() || emails.len() > MAX_CONDITIONS {
        return Err(format!(
            "{} conditions (1 to {MAX_CONDITIONS})",
            emails.len()
        ));
    }
    Ok(emails)
}

fn is_email(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None) if !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
    )
}

fn merge(fields: &mut Value, changes: &Value) {
    if let (Some(fields), Some(changes)) = (fields.as_object_mut(), changes.as_object()) {
        for (name, value) in changes {
            fields.insert(name.clone(), value.clone());
        }
    }
}

// === the conformance suite's view ===

/// The simulated organization's client (not real credentials). The demo, the sandbox and the
/// conformance suite keep one secret per simulator, so the simulated client's secret and its
/// refresh token are the same text, read from the same place.
const SIMULATED_CLIENT_ID: &str = "1000.SIMULATEDZOHOCLIENT";
const SIMULATED_CREDENTIAL: &str = "1000.simulated-zoho-secret-and-refresh-token";

impl Simulation for super::Zoho {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let organization = FakeZoho::start(addr).await?;
            organization.install_client(
                SIMULATED_CLIENT_ID,
                SIMULATED_CREDENTIAL,
                SIMULATED_CREDENTIAL,
                super::SCOPES,
            );
            Ok(Box::new(organization) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeZoho {
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
            "oauth = {{ client_id = \"{SIMULATED_CLIENT_ID}\", client_secret = {secret}, refresh_token = {secret}, accounts_server = \"{}\" }}",
            self.accounts_server()
        )
    }

    /// With the couple as contacts: Zoho CRM syncs contacts.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] = json!([
            {"name": "Sam Taylor", "email": "sam@example.com", "role": "couple"},
            {"name": "Alex Morgan", "email": "alex@example.com", "role": "couple"}
        ]);
        notification
    }

    fn address(&self) -> String {
        self.accounts_server()
    }

    fn about(&self) -> String {
        "a Standard-edition organization and its accounts server: contacts, tasks, notes, deals"
            .to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        if let Some(criteria) = request.body["criteria"].as_str() {
            return format!("{criteria:.60}");
        }
        match request.body["data"].as_array() {
            Some(records) => format!("{} records", records.len()),
            None => String::new(),
        }
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            500,
            &[],
            json!({"code": "INTERNAL_ERROR", "details": {}, "message": "Internal server error occurred.", "status": "error"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}),
        )
    }

    /// Zoho documents no `Retry-After`: Herald's own wait applies.
    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[],
            json!({"code": "TOO_MANY_REQUESTS", "details": {}, "message": "concurrency limit exceeded", "status": "error"}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"code": "INVALID_QUERY", "details": {"reason": "invalid operator found", "api_name": "Email", "operator": "equals"}, "message": "invalid query formed", "status": "error"}),
            ),
            "invalid query formed",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_knows_the_operations_herald_calls() {
        let contract = zoho_contract();
        assert_eq!(
            contract.check(
                "PUT",
                "/crm/v8/Deals/5725767000001000001",
                &json!({"data": [{"Stage": "Closed Won"}], "trigger": ["workflow"]})
            ),
            Ok(())
        );
        assert!(matches!(
            contract.check(
                "PUT",
                "/crm/v8/Deals/1",
                &json!({"data": [{"Stage": "Closed Won"}], "trigger": ["macro"]})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check(
                "POST",
                "/crm/v8/Tasks",
                &json!({"data": [{"Priority": "Urgent", "Subject": "s"}]})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("DELETE", "/crm/v8/Contacts", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
    }

    #[test]
    fn a_criteria_is_read_as_zoho_reads_it() {
        assert_eq!(
            email_conditions("((Email:equals:a@x.com)or(Email:equals:b\\(1\\)@x.com))"),
            Ok(vec!["a@x.com".to_owned(), "b(1)@x.com".to_owned()])
        );
        assert!(email_conditions("((Email:equals:a@x.com)and(Email:equals:b@x.com))").is_err());
        assert!(email_conditions("(Last_Name:equals:Taylor)").is_err());
        let eleven = (0..11)
            .map(|n| format!("(Email:equals:{n}@x.com)"))
            .collect::<Vec<_>>()
            .join("or");
        assert!(email_conditions(&format!("({eleven})")).is_err());
    }
}
