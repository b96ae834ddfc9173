//! A Salesforce org for what the Salesforce connector calls, behaving as Salesforce documents
//! (developer.salesforce.com, REST API Developer Guide):
//!
//! - every REST request checked against `contract.json` first (400 `[{errorCode, message}]`; 404
//!   `NOT_FOUND` for an operation the contract lacks or an API version the org does not serve);
//! - a connected app's refresh-token grant at `/services/oauth2/token` (400 `invalid_grant`,
//!   `invalid_client_id`, `invalid_client`), access tokens that expire after the session
//!   timeout (401 `INVALID_SESSION_ID`, "Session expired or invalid"); the web-server flow's
//!   consent page (`/services/oauth2/authorize`, a person who consents at once) and its
//!   authorization-code grant, with the secret and PKCE's S256 verifier checked; the JWT bearer
//!   grant, its RS256 signature checked against the connected app's certificate (its public
//!   key), and its `iss`, `sub`, `aud` and `exp` (at most three minutes ahead);
//! - SOQL for the one query shape the connector sends (`SELECT Id, Email FROM Contact WHERE
//!   Email IN (...)`, with escaped literals; 400 `MALFORMED_QUERY` otherwise);
//! - sObject Collections creating Contacts and Tasks (per-record `SaveResult`s with
//!   `REQUIRED_FIELD_MISSING`, `INVALID_EMAIL_ADDRESS`, `STRING_TOO_LONG`,
//!   `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`, `MALFORMED_ID`; 400 `INVALID_FIELD` for a field
//!   the object does not have), Opportunity updates with the default sales process's stages;
//!   18-character ids of the right key prefix, with their case-safe suffix;
//! - active autolaunched Flows run through `/actions/custom/flow/{name}`, each input checked
//!   against the flow's input variables (per-input `INVALID_INPUT`), interviews recorded;
//! - the org's rolling 24-hour allocation: `Sforce-Limit-Info: api-usage=used/limit` on every
//!   answer, 403 `REQUEST_LIMIT_EXCEEDED` ("TotalRequests Limit exceeded.") once it is spent.
//!
//! The recorder holds the REST API's requests, the calls Salesforce counts against the
//! allocation; token grants are counted apart ([`FakeSalesforce::grants`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{json, Map, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::ScriptedResponse;
use crate::sandbox::{Faults, RecordedRequest, Recorder, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// The oldest REST API version with sObject Collections.
const OLDEST_VERSION: u32 = 42;
/// The newest version the simulated org serves (Winter '27).
const NEWEST_VERSION: u32 = 68;
/// A Developer Edition org's daily allocation.
const DEVELOPER_ALLOCATION: usize = 15_000;
/// The default session timeout.
const SESSION_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// The stages of the default sales process.
const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
/// The Task `Status` and `Priority` picklists of a new org.
const TASK_STATUSES: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];
const TASK_PRIORITIES: &[&str] = &["High", "Normal", "Low"];
/// The fields the connector may set, per object, with their longest value.
const CONTACT_FIELDS: &[(&str, usize)] = &[
    ("FirstName", 40),
    ("LastName", 80),
    ("Email", 80),
    ("Phone", 40),
    ("Description", 32_000),
];
const TASK_FIELDS: &[(&str, usize)] = &[
    ("Subject", 255),
    ("Description", 32_000),
    ("WhoId", 18),
    ("WhatId", 18),
    ("ActivityDate", 10),
    ("Status", 40),
    ("Priority", 40),
];

pub struct FakeSalesforce {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<OrgState>>,
}

/// A record as the org keeps it.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub fields: Map<String, Value>,
}

struct OrgState {
    client_id: String,
    /// The consumer secret, when the app requires it with a refresh token.
    client_secret: Option<String>,
    /// The org's refresh token, once the app is authorized.
    refresh_token: Option<String>,
    /// The connected app's callback URL, for installs through the consent page.
    redirect_uri: Option<String>,
    /// Authorization codes handed out and not yet exchanged, with their PKCE challenge.
    codes: HashMap<String, Option<String>>,
    /// For the JWT bearer flow: the user the app is pre-authorized for, and the public key
    /// (PKCS#1 DER) of the certificate on the connected app.
    jwt_user: Option<(String, Vec<u8>)>,
    access_tokens: HashMap<String, Instant>,
    session_timeout: Duration,
    grants: usize,
    contacts: Vec<Record>,
    tasks: Vec<Record>,
    opportunities: BTreeMap<String, Record>,
    /// Active autolaunched flows by API name: their input variables, and the inputs each
    /// interview ran with.
    flows: BTreeMap<String, (Vec<String>, Vec<Value>)>,
    next_id: u64,
    allocation: usize,
    used: usize,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<OrgState>>,
    recorder: Recorder,
    faults: Faults,
}

fn salesforce_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Salesforce's error body: a list of `{message, errorCode}` (and `fields` where one is at fault).
fn errors(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!([{"message": message, "errorCode": code}]))
}

impl FakeSalesforce {
    /// Starts an org whose connected app is `client_id` (with `client_secret` required on the
    /// refresh-token grant, if given) and whose user authorized it with `refresh_token`.
    pub async fn start(
        addr: std::net::SocketAddr,
        client_id: &str,
        client_secret: Option<&str>,
        refresh_token: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(OrgState {
            client_id: client_id.to_owned(),
            client_secret: client_secret.map(str::to_owned),
            refresh_token: Some(refresh_token.to_owned()),
            redirect_uri: None,
            codes: HashMap::new(),
            jwt_user: None,
            access_tokens: HashMap::new(),
            session_timeout: SESSION_TIMEOUT,
            grants: 0,
            contacts: Vec::new(),
            tasks: Vec::new(),
            opportunities: BTreeMap::new(),
            flows: BTreeMap::new(),
            next_id: 1,
            allocation: DEVELOPER_ALLOCATION,
            used: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/services/oauth2/token", post(grant_token))
            .route("/services/oauth2/authorize", get(authorize))
            .route("/services/data/{version}/query", get(handle))
            .route("/services/data/{version}/limits", get(handle))
            .route("/services/data/{version}/composite/sobjects", post(handle))
            .route(
                "/services/data/{version}/sobjects/{sobject}/{id}",
                patch(handle),
            )
            .route(
                "/services/data/{version}/actions/custom/flow/{flow}",
                post(handle),
            )
            .with_state(app_state);
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
        })
    }

    /// The org's My Domain, to configure as `instance_url`.
    pub fn instance_url(&self) -> String {
        self.server.url()
    }

    /// Forgets the org's refresh token and waits for an install through the consent page, whose
    /// callback is `redirect_uri`.
    pub fn await_install(&self, redirect_uri: &str) {
        let mut state = self.state.lock().expect("salesforce lock");
        state.refresh_token = None;
        state.redirect_uri = Some(redirect_uri.to_owned());
    }

    /// Uploads a certificate (its public key, PKCS#1 DER) to the connected app and
    /// pre-authorizes `username` for the JWT bearer flow.
    pub fn trust_certificate(&self, username: &str, public_key: &[u8]) {
        self.state.lock().expect("salesforce lock").jwt_user =
            Some((username.to_owned(), public_key.to_vec()));
    }

    /// The org's refresh token, once authorized.
    pub fn refresh_token(&self) -> Option<String> {
        self.state
            .lock()
            .expect("salesforce lock")
            .refresh_token
            .clone()
    }

    /// Adds an Opportunity at `stage` and answers its id.
    pub fn add_opportunity(&self, name: &str, stage: &str) -> String {
        let mut state = self.state.lock().expect("salesforce lock");
        let id = state.new_id("006");
        let mut fields = Map::new();
        fields.insert("Name".into(), json!(name));
        fields.insert("StageName".into(), json!(stage));
        state.opportunities.insert(
            id.clone(),
            Record {
                id: id.clone(),
                fields,
            },
        );
        id
    }

    /// Adds a Contact (as someone using Salesforce would) and answers its id.
    pub fn add_contact(&self, last_name: &str, email: &str) -> String {
        let mut state = self.state.lock().expect("salesforce lock");
        let id = state.new_id("003");
        let mut fields = Map::new();
        fields.insert("LastName".into(), json!(last_name));
        fields.insert("Email".into(), json!(email));
        state.contacts.push(Record {
            id: id.clone(),
            fields,
        });
        id
    }

    pub fn contacts(&self) -> Vec<Record> {
        self.state.lock().expect("salesforce lock").contacts.clone()
    }

    pub fn tasks(&self) -> Vec<Record> {
        self.state.lock().expect("salesforce lock").tasks.clone()
    }

    pub fn opportunity(&self, id: &str) -> Option<Record> {
        let state = self.state.lock().expect("salesforce lock");
        state.opportunities.get(id).cloned()
    }

    /// Activates an autolaunched Flow that takes these input variables.
    pub fn add_flow(&self, api_name: &str, inputs: &[&str]) {
        let mut state = self.state.lock().expect("salesforce lock");
        state.flows.insert(
            api_name.to_owned(),
            (
                inputs.iter().map(|input| input.to_string()).collect(),
                Vec::new(),
            ),
        );
    }

    /// The inputs each interview of a Flow ran with, in order.
    pub fn interviews(&self, api_name: &str) -> Vec<Value> {
        let state = self.state.lock().expect("salesforce lock");
        state
            .flows
            .get(api_name)
            .map(|(_, runs)| runs.clone())
            .unwrap_or_default()
    }

    /// Token grants answered so far.
    pub fn grants(&self) -> usize {
        self.state.lock().expect("salesforce lock").grants
    }

    /// Ends every session now: the next REST call answers 401 `INVALID_SESSION_ID`.
    pub fn expire_sessions(&self) {
        self.state
            .lock()
            .expect("salesforce lock")
            .access_tokens
            .clear();
    }

    /// Sets the org's rolling 24-hour allocation and what is used of it.
    pub fn set_allocation(&self, limit: usize, used: usize) {
        let mut state = self.state.lock().expect("salesforce lock");
        state.allocation = limit;
        state.used = used;
    }
}

/// `POST /services/oauth2/token`, form-encoded: the refresh-token grant.
async fn grant_token(State(app): State<AppState>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) =
        match salesforce_contract().check("POST", "/services/oauth2/token", &fields_of(&body)) {
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_request", "error_description": listed.join("; ")}),
                )
            }
            _ => app.state.lock().expect("salesforce lock").grant(&form),
        };
    (status, axum::Json(answer)).into_response()
}

/// `GET /services/oauth2/authorize`: a person who consents at once, sent back to the app's
/// callback URL with a single-use code and the `state` it was given.
async fn authorize(State(app): State<AppState>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut state = app.state.lock().expect("salesforce lock");
    let registered = state.redirect_uri.clone();
    let challenge = match (
        query.get("code_challenge"),
        query.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(challenge), Some("S256")) => Some(Some(challenge.clone())),
        (None, None) => Some(None),
        _ => None,
    };
    let valid = query.get("response_type").map(String::as_str) == Some("code")
        && query.get("client_id") == Some(&state.client_id)
        && registered.is_some()
        && query.get("redirect_uri") == registered.as_ref();
    let (Some(registered), Some(challenge), true) = (registered, challenge, valid) else {
        return (
            StatusCode::BAD_REQUEST,
            "error=redirect_uri_mismatch&error_description=redirect_uri must match configuration",
        )
            .into_response();
    };
    let code = format!("aPrx{}", uuid::Uuid::new_v4().simple());
    state.codes.insert(code.clone(), challenge);
    let Ok(mut back) = url::Url::parse(&registered) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", query.get("state").map_or("", String::as_str));
    (StatusCode::FOUND, [("location", back.to_string())]).into_response()
}

/// Every REST call: recorded, scripted faults first, then the org's answer with its
/// `Sforce-Limit-Info`.
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
    let (status, answer, usage) = match app.faults.take().await {
        Some(scripted) => {
            let (status, response) = scripted.answer();
            app.recorder
                .record(method.as_str(), uri.path(), &headers, recorded, status);
            return response;
        }
        None => {
            let mut state = app.state.lock().expect("salesforce lock");
            let (status, answer) = state.answer(method.as_str(), uri.path(), &headers, parsed);
            (
                status,
                answer,
                format!("api-usage={}/{}", state.used, state.allocation),
            )
        }
    };
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    let mut response = if answer.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(answer)).into_response()
    };
    if let Ok(value) = usage.parse() {
        response.headers_mut().insert("sforce-limit-info", value);
    }
    response
}

/// One record refused: its `statusCode`, the message, and the field at fault.
struct Refusal {
    code: String,
    message: String,
    field: String,
}

impl Refusal {
    /// The record's `SaveResult`.
    fn save_result(&self) -> Value {
        json!({"success": false, "errors": [{"statusCode": self.code, "message": self.message, "fields": [self.field]}]})
    }
}

// === impl OrgState ===

impl OrgState {
    fn grant(&mut self, form: &HashMap<String, String>) -> (StatusCode, Value) {
        let refuse = |error: &str, description: &str| {
            (
                StatusCode::BAD_REQUEST,
                json!({"error": error, "error_description": description}),
            )
        };
        if form.get("grant_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return match self.verify_assertion(form.get("assertion").map_or("", String::as_str)) {
                Ok(()) => self.issue(None),
                Err(description) => refuse("invalid_grant", description),
            };
        }
        if form.get("client_id") != Some(&self.client_id) {
            return refuse("invalid_client_id", "client identifier invalid");
        }
        if let Some(secret) = &self.client_secret {
            if form.get("client_secret") != Some(secret) {
                return refuse("invalid_client", "invalid client credentials");
            }
        }
        let mut issued_refresh_token = None;
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let Some(challenge) = form.get("code").and_then(|code| self.codes.remove(code))
                else {
                    return refuse("invalid_grant", "invalid authorization code");
                };
                if form.get("redirect_uri") != self.redirect_uri.as_ref() {
                    return refuse(
                        "redirect_uri_mismatch",
                        "redirect_uri must match configuration",
                    );
                }
                if let Some(challenge) = challenge {
                    let verified = form.get("code_verifier").is_some_and(|verifier| {
                        use base64::Engine;
                        use sha2::{Digest, Sha256};
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(Sha256::digest(verifier.as_bytes()))
                            == challenge
                    });
                    if !verified {
                        return refuse("invalid_grant", "invalid code verifier");
                    }
                }
                let token = format!("5Aep861{}", uuid::Uuid::new_v4().simple());
                self.refresh_token = Some(token.clone());
                issued_refresh_token = Some(token);
            }
            _ => {
                if self.refresh_token.is_none()
                    || form.get("refresh_token") != self.refresh_token.as_ref()
                {
                    return refuse("invalid_grant", "expired access/refresh token");
                }
            }
        }
        self.issue(issued_refresh_token)
    }

    /// A JWT bearer assertion, checked as Salesforce checks it.
    fn verify_assertion(&self, assertion: &str) -> Result<(), &'static str> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let (user, key) = self.jwt_user.as_ref().ok_or("invalid assertion")?;
        let mut parts = assertion.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("invalid assertion");
        };
        let decoded = |part: &str| -> Result<Value, &'static str> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| "invalid assertion")?;
            serde_json::from_slice(&bytes).map_err(|_| "invalid assertion")
        };
        if decoded(header)?["alg"] != "RS256" {
            return Err("invalid assertion");
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "invalid assertion")?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
            .verify(format!("{header}.{claims}").as_bytes(), &signature)
            .map_err(|_| "invalid assertion")?;
        let claims = decoded(claims)?;
        if claims["iss"] != json!(self.client_id) {
            return Err("invalid client identifier");
        }
        if claims["sub"] != json!(user) {
            return Err("user hasn't approved this consumer");
        }
        if !matches!(
            claims["aud"].as_str(),
            Some("https://login.salesforce.com" | "https://test.salesforce.com")
        ) {
            return Err("audience is invalid");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default();
        match claims["exp"].as_u64() {
            Some(exp) if exp > now && exp <= now + 180 => Ok(()),
            _ => Err("expired authorization code"),
        }
    }

    /// An access token (and a refresh token when an authorization code brought one).
    fn issue(&mut self, refresh_token: Option<String>) -> (StatusCode, Value) {
        self.grants += 1;
        let token = format!("00D5g000000SIMUL!AQ{}", uuid::Uuid::new_v4().simple());
        self.access_tokens
            .insert(token.clone(), Instant::now() + self.session_timeout);
        let issued_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_millis())
            .unwrap_or_default();
        // No expires_in: an access token lives as long as the org's session timeout.
        let mut answer = json!({
                "access_token": token,
                "signature": "c2ltdWxhdGVkLXNpZ25hdHVyZQ==",
                "scope": "api refresh_token",
                "instance_url": "https://simulated.my.salesforce.com",
                "id": "https://login.salesforce.com/id/00D5g000000SIMULA/0055g000000SIMULA",
                "token_type": "Bearer",
                "issued_at": issued_at.to_string(),
        });
        if let Some(token) = refresh_token {
            answer["refresh_token"] = json!(token);
        }
        (StatusCode::OK, answer)
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        parsed: Result<Value, String>,
    ) -> (StatusCode, Value) {
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let live = token
            .and_then(|token| self.access_tokens.get(token))
            .is_some_and(|expires| Instant::now() < *expires);
        if !live {
            return errors(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            );
        }
        let Some(version) = path
            .strip_prefix("/services/data/v")
            .and_then(|rest| rest.split('/').next())
            .and_then(|version| version.strip_suffix(".0"))
            .and_then(|major| major.parse::<u32>().ok())
            .filter(|major| (OLDEST_VERSION..=NEWEST_VERSION).contains(major))
        else {
            return errors(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            );
        };
        if self.used >= self.allocation {
            return errors(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            );
        }
        self.used += 1;
        let instance = match parsed {
            Ok(instance) => instance,
            Err(reason) => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    "JSON_PARSER_ERROR",
                    &format!("The request body is not JSON: {reason}"),
                )
            }
        };
        match salesforce_contract().check(method, path, &instance) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(_)) => {
                return errors(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                )
            }
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return errors(StatusCode::BAD_REQUEST, "INVALID_FIELD", &listed.join("; "));
            }
        }
        let rest = path
            .strip_prefix(&format!("/services/data/v{version}.0"))
            .unwrap_or_default();
        match (method, rest) {
            ("GET", "/query") => self.query(instance["q"].as_str().unwrap_or_default()),
            ("GET", "/limits") => (
                StatusCode::OK,
                json!({"DailyApiRequests": {"Max": self.allocation, "Remaining": self.allocation.saturating_sub(self.used)}}),
            ),
            ("POST", "/composite/sobjects") => self.create(&instance),
            ("POST", rest) if rest.starts_with("/actions/custom/flow/") => {
                self.run_flow(&rest["/actions/custom/flow/".len()..], &instance)
            }
            ("PATCH", rest) => match rest.strip_prefix("/sobjects/Opportunity/") {
                Some(id) => self.update_opportunity(id, &instance),
                None => errors(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                ),
            },
            _ => errors(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            ),
        }
    }

    /// `SELECT Id, Email FROM Contact WHERE Email IN ('a', 'b')`, nothing else.
    fn query(&self, soql: &str) -> (StatusCode, Value) {
        let malformed = |reason: &str| {
            errors(
                StatusCode::BAD_REQUEST,
                "MALFORMED_QUERY",
                &format!("unexpected token: {reason}"),
            )
        };
        let Some(list) = soql
            .strip_prefix("SELECT Id, Email FROM Contact WHERE Email IN (")
            .and_then(|rest| rest.strip_suffix(')'))
        else {
            return malformed(soql);
        };
        let Some(emails) = soql_literals(list) else {
            return malformed(list);
        };
        let records: Vec<Value> = self
            .contacts
            .iter()
            .filter(|contact| {
                contact.fields["Email"]
                    .as_str()
                    .is_some_and(|email| emails.iter().any(|e| e.eq_ignore_ascii_case(email)))
            })
            .map(|contact| {
                json!({
                    "attributes": {"type": "Contact", "url": format!("/services/data/v{NEWEST_VERSION}.0/sobjects/Contact/{}", contact.id)},
                    "Id": contact.id,
                    "Email": contact.fields["Email"],
                })
            })
            .collect();
        (
            StatusCode::OK,
            json!({"totalSize": records.len(), "done": true, "records": records}),
        )
    }

    /// sObject Collections create: each record saved or refused on its own (`allOrNone` false).
    fn create(&mut self, body: &Value) -> (StatusCode, Value) {
        let records = body["records"].as_array().cloned().unwrap_or_default();
        // A field the object does not have fails the whole request, as Salesforce's parser does.
        for record in &records {
            let kind = record["attributes"]["type"].as_str().unwrap_or_default();
            let fields = match kind {
                "Contact" => CONTACT_FIELDS,
                "Task" => TASK_FIELDS,
                other => {
                    return errors(
                        StatusCode::BAD_REQUEST,
                        "INVALID_TYPE",
                        &format!("sObject type '{other}' is not supported."),
                    )
                }
            };
            for name in record.as_object().into_iter().flat_map(Map::keys) {
                if name != "attributes" && !fields.iter().any(|(field, _)| field == name) {
                    return errors(
                        StatusCode::BAD_REQUEST,
                        "INVALID_FIELD",
                        &format!("No such column '{name}' on sobject of type {kind}"),
                    );
                }
            }
        }
        let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
        let checked: Vec<Result<(), Refusal>> = records
            .iter()
            .map(|record| self.check_record(record))
            .collect();
        if all_or_none && checked.iter().any(Result::is_err) {
            let results: Vec<Value> = checked
                .iter()
                .map(|result| match result {
                    Err(refusal) => refusal.save_result(),
                    Ok(()) => json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]}),
                })
                .collect();
            return (StatusCode::OK, Value::Array(results));
        }
        let results = records
            .into_iter()
            .zip(checked)
            .map(|(record, checked)| match checked {
                Err(refusal) => refusal.save_result(),
                Ok(()) => {
                    let kind = record["attributes"]["type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let mut fields = record.as_object().cloned().unwrap_or_default();
                    fields.remove("attributes");
                    let id = self.new_id(if kind == "Contact" { "003" } else { "00T" });
                    let saved = Record {
                        id: id.clone(),
                        fields,
                    };
                    if kind == "Contact" {
                        self.contacts.push(saved);
                    } else {
                        self.tasks.push(saved);
                    }
                    json!({"id": id, "success": true, "errors": []})
                }
            })
            .collect();
        (StatusCode::OK, Value::Array(results))
    }

    /// What Salesforce refuses in one record.
    fn check_record(&self, record: &Value) -> Result<(), Refusal> {
        let refuse = |code: &str, message: String, field: &str| {
            Err(Refusal {
                code: code.to_owned(),
                message,
                field: field.to_owned(),
            })
        };
        let kind = record["attributes"]["type"].as_str().unwrap_or_default();
        let fields = if kind == "Contact" {
            CONTACT_FIELDS
        } else {
            TASK_FIELDS
        };
        for (field, longest) in fields {
            if let Some(value) = record[*field].as_str() {
                let length = value.chars().count();
                if length > *longest {
                    return refuse(
                        "STRING_TOO_LONG",
                        format!(
                            "{field}: data value too large: {value:.20}... (max length={longest})"
                        ),
                        field,
                    );
                }
            }
        }
        match kind {
            "Contact" => {
                if record["LastName"]
                    .as_str()
                    .is_none_or(|name| name.trim().is_empty())
                {
                    return refuse(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [LastName]".into(),
                        "LastName",
                    );
                }
                if let Some(email) = record["Email"].as_str() {
                    let valid = email.split_once('@').is_some_and(|(local, domain)| {
                        !local.is_empty() && domain.contains('.') && !email.contains(' ')
                    });
                    if !valid {
                        return refuse(
                            "INVALID_EMAIL_ADDRESS",
                            format!("Email: invalid email address: {email}"),
                            "Email",
                        );
                    }
                }
                Ok(())
            }
            _ => {
                for (field, allowed) in [("Status", TASK_STATUSES), ("Priority", TASK_PRIORITIES)] {
                    if let Some(value) = record[field].as_str() {
                        if !allowed.contains(&value) {
                            return refuse(
                                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                format!(
                                    "{field}: bad value for restricted picklist field: {value}"
                                ),
                                field,
                            );
                        }
                    }
                }
                if let Some(who) = record["WhoId"].as_str() {
                    if !self.contacts.iter().any(|contact| contact.id == who) {
                        return refuse(
                            "MALFORMED_ID",
                            format!("Name ID: id value of incorrect type: {who}"),
                            "WhoId",
                        );
                    }
                }
                if let Some(what) = record["WhatId"].as_str() {
                    if !self.opportunities.contains_key(what) {
                        return refuse(
                            "MALFORMED_ID",
                            format!("Related To ID: id value of incorrect type: {what}"),
                            "WhatId",
                        );
                    }
                }
                if let Some(day) = record["ActivityDate"].as_str() {
                    if !crate::wedsync::is_iso_date(day) {
                        return refuse(
                            "INVALID_TYPE_ON_FIELD_IN_RECORD",
                            format!("Due Date Only: value not of required type: {day}"),
                            "ActivityDate",
                        );
                    }
                }
                Ok(())
            }
        }
    }

    /// `POST /actions/custom/flow/{name}`: one interview per input, each answered on its own.
    fn run_flow(&mut self, name: &str, body: &Value) -> (StatusCode, Value) {
        let Some((variables, runs)) = self.flows.get_mut(name) else {
            return errors(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            );
        };
        let results = body["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|input| {
                let unknown = input
                    .as_object()
                    .into_iter()
                    .flat_map(Map::keys)
                    .find(|key| !variables.contains(key));
                match unknown {
                    Some(key) => json!({"actionName": name, "errors": [{"statusCode": "INVALID_INPUT", "message": format!("The flow can't run because of an invalid input: {key} isn't an input variable of the flow."), "fields": []}], "isSuccess": false, "outputValues": null}),
                    None => {
                        runs.push(input.clone());
                        json!({"actionName": name, "errors": null, "isSuccess": true, "outputValues": {"Flow__InterviewStatus": "Finished"}})
                    }
                }
            })
            .collect();
        (StatusCode::OK, Value::Array(results))
    }

    /// `PATCH /sobjects/Opportunity/{id}`: 204, or the stage refused.
    fn update_opportunity(&mut self, id: &str, body: &Value) -> (StatusCode, Value) {
        let Some(opportunity) = self.opportunities.get_mut(id) else {
            return errors(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            );
        };
        for (name, value) in body.as_object().into_iter().flatten() {
            if name != "StageName" {
                return errors(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    &format!("No such column '{name}' on sobject of type Opportunity"),
                );
            }
            let stage = value.as_str().unwrap_or_default();
            if !STAGES.contains(&stage) {
                return (
                    StatusCode::BAD_REQUEST,
                    json!([{"message": format!("Stage: bad value for restricted picklist field: {stage}"), "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "fields": ["StageName"]}]),
                );
            }
            opportunity.fields.insert(name.clone(), value.clone());
        }
        (StatusCode::NO_CONTENT, Value::Null)
    }

    /// A new 18-character id with `prefix` (the object's key prefix) and its case-safe suffix.
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let base = format!("{prefix}5g00000{:05}", self.next_id);
        format!("{base}{}", case_safe_suffix(&base))
    }
}

/// The three characters Salesforce appends to a 15-character id: for each five characters, which
/// are uppercase letters, as a letter or digit.
fn case_safe_suffix(id: &str) -> String {
    const MAP: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    id.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, byte)| byte.is_ascii_uppercase())
                .fold(0usize, |bits, (index, _)| bits | (1 << index));
            MAP[bits] as char
        })
        .collect()
}

/// The string literals of a SOQL list (`'a', 'b'`), unescaped; `None` if it is not one.
fn soql_literals(list: &str) -> Option<Vec<String>> {
    let mut literals = Vec::new();
    let mut chars = list.trim().chars().peekable();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut literal = String::new();
        loop {
            match chars.next()? {
                '\\' => literal.push(chars.next()?),
                '\'' => break,
                other => literal.push(other),
            }
        }
        literals.push(literal);
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        match chars.next() {
            None => return Some(literals),
            Some(',') => {
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
}

// === the conformance suite's view ===

/// The connected app and refresh token the simulated org accepts (not real credentials).
const SIMULATED_CLIENT_ID: &str = "3MVG9simulated.connected.app";
const SIMULATED_REFRESH_TOKEN: &str = "5Aep861simulated.refresh.token";

impl Simulation for super::Salesforce {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let org =
                FakeSalesforce::start(addr, SIMULATED_CLIENT_ID, None, SIMULATED_REFRESH_TOKEN)
                    .await?;
            Ok(Box::new(org) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeSalesforce {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_REFRESH_TOKEN.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "instance_url = \"{}\", oauth = {{ client_id = \"{SIMULATED_CLIENT_ID}\", refresh_token = {secret} }}",
            self.instance_url()
        )
    }

    /// With the couple as contacts: Salesforce syncs people.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] = json!([
            {"name": "Sam Taylor", "email": "sam@example.com", "role": "couple"},
            {"name": "Alex Morgan", "email": "alex@example.com", "role": "couple"}
        ]);
        notification
    }

    fn address(&self) -> String {
        self.instance_url()
    }

    fn about(&self) -> String {
        "a Developer Edition org: contacts, tasks, opportunities".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        match request.body["records"].as_array() {
            Some(records) => format!("{} records", records.len()),
            None => request.body["q"]
                .as_str()
                .map(|q| format!("{q:.60}"))
                .unwrap_or_default(),
        }
    }

    fn hold_to_published_limits(&self) {
        // The daily allocation is always enforced; Salesforce publishes no per-second rate.
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!([{"message": "Server temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}]),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        )
    }

    /// Salesforce's answer to too many concurrent long-running calls: a 403, without
    /// `Retry-After` (Herald waits two seconds).
    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            403,
            &[],
            json!([{"message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!([{"message": "Cannot deserialize instance of date from VALUE_STRING value 2027-13-40", "errorCode": "JSON_PARSER_ERROR"}]),
            ),
            "Cannot deserialize instance of date",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_salesforces_case_safe_suffix() {
        // Salesforce's documented example: 001A0000006Vm9r becomes 001A0000006Vm9rIAC.
        assert_eq!(case_safe_suffix("001A0000006Vm9r"), "IAC");
    }

    #[test]
    fn soql_literals_are_read_with_their_escapes() {
        assert_eq!(
            soql_literals("'a@example.com', 'o\\'brien@example.com'"),
            Some(vec!["a@example.com".into(), "o'brien@example.com".into()])
        );
        assert_eq!(soql_literals("'a') OR Id != ('"), None);
        assert_eq!(soql_literals("a@example.com"), None);
    }

    #[test]
    fn the_contract_knows_the_operations_herald_calls() {
        let contract = salesforce_contract();
        assert_eq!(
            contract.check(
                "PATCH",
                "/services/data/v66.0/sobjects/Opportunity/0065g00000AbCdEAAV",
                &json!({"StageName": "Closed Won"})
            ),
            Ok(())
        );
        assert!(matches!(
            contract.check(
                "POST",
                "/services/data/v66.0/composite/sobjects",
                &json!({"records": []})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check(
                "DELETE",
                "/services/data/v66.0/sobjects/Contact/003",
                &json!({})
            ),
            Err(Breach::UnknownOperation(_))
        ));
    }
}
