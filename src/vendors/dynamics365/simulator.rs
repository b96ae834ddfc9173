//! A Dataverse environment (Dynamics 365 Sales) and its Entra ID tenant, for what the Dynamics
//! 365 connector calls, behaving as Microsoft documents (learn.microsoft.com/power-apps/developer
//! /data-platform/webapi, learn.microsoft.com/entra/identity-platform):
//!
//! - every API request checked against `contract.json` first (400 with Dataverse's error body
//!   `{error: {code, message}}`; 404 for an operation the contract lacks);
//! - the tenant's token endpoint: the client-credentials grant for the app registration, with
//!   the environment's `/.default` scope (Entra's `AADSTS` refusals otherwise), access tokens
//!   that live an hour; a request without a live token is a 401 with an empty body and
//!   `WWW-Authenticate`;
//! - contacts queried by `$filter` on `emailaddress1` (`eq`, joined by `or`, quotes doubled) and
//!   created (201 with the row under `Prefer: return=representation`, else 204 and
//!   `OData-EntityId`); tasks and notes whose bound rows must exist; opportunities whose
//!   `salesstage` a PATCH moves (and which a PATCH without `If-Match: *` creates when the id is
//!   unknown, as Dataverse's upsert does), won or lost once by the actions; on-demand workflows
//!   run for a row; `WhoAmI`;
//! - service protection: every answer's `x-ms-ratelimit-burst-remaining-xrm-requests` (6,000
//!   requests per sliding 5 minutes), and, once held to its published limits or once others'
//!   requests fill the window, 429 with `Retry-After` (until the oldest request ages out) and
//!   error `0x80072322`.
//!
//! The recorder holds the API's requests; token grants are counted apart
//! ([`FakeDataverse::grants`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{json, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// Requests per user per web server in the sliding window.
const WINDOW_REQUESTS: usize = 6_000;
const WINDOW: Duration = Duration::from_secs(300);
/// How long an access token lives.
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
const API: &str = "/api/data/v9.2/";

pub struct FakeDataverse {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Environment>>,
}

/// A row as the environment keeps it: its id and its columns.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub columns: Value,
}

struct Environment {
    /// This simulator's own address: the environment URL and the authority.
    url: String,
    tenant: String,
    client_id: String,
    client_secret: String,
    access_tokens: HashMap<String, Instant>,
    grants: usize,
    contacts: Vec<Row>,
    tasks: Vec<Row>,
    annotations: Vec<Row>,
    opportunities: Vec<Row>,
    workflows: Vec<String>,
    workflow_runs: Vec<(String, String)>,
    /// Request times in the service-protection window, oldest first.
    window: VecDeque<Instant>,
    /// Whether the window is enforced: once held to the published limits, or once others'
    /// requests fill it.
    enforced: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Environment>>,
    recorder: Recorder,
    faults: Faults,
}

fn dataverse_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Dataverse's error body.
fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"error": {"code": code, "message": message}}))
}

fn does_not_exist(entity: &str, id: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "0x80040217",
        &format!("{entity} With Id = {id} Does Not Exist"),
    )
}

impl FakeDataverse {
    /// Starts an environment whose tenant `tenant` has the app registration `client_id` with
    /// `client_secret`.
    pub async fn start(
        addr: std::net::SocketAddr,
        tenant: &str,
        client_id: &str,
        client_secret: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Environment {
            url: String::new(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            access_tokens: HashMap::new(),
            grants: 0,
            contacts: Vec::new(),
            tasks: Vec::new(),
            annotations: Vec::new(),
            opportunities: Vec::new(),
            workflows: Vec::new(),
            workflow_runs: Vec::new(),
            window: VecDeque::new(),
            enforced: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(grant_token))
            .route("/api/data/v9.2/{*rest}", any(handle))
            .with_state(app_state);
        let server = Server::start(app, addr, faults.clone()).await?;
        state.lock().expect("dataverse lock").url = server.url();
        Ok(Self {
            server,
            recorder,
            faults,
            state,
        })
    }

    /// The environment's address, to configure as `environment_url` (and as `authority`: the
    /// simulator is the tenant's token endpoint too).
    pub fn environment_url(&self) -> String {
        self.server.url()
    }

    /// Adds a contact (as someone using Dynamics would) and answers its id.
    pub fn add_contact(&self, first_name: &str, last_name: &str, email: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().contacts.push(Row {
            id: id.clone(),
            columns: json!({"contactid": id, "firstname": first_name, "lastname": last_name, "emailaddress1": email}),
        });
        id
    }

    /// Adds an open opportunity in the qualify stage and answers its id.
    pub fn add_opportunity(&self, name: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().opportunities.push(Row {
            id: id.clone(),
            columns: json!({"opportunityid": id, "name": name, "salesstage": 0, "statecode": 0, "statuscode": 1}),
        });
        id
    }

    /// Publishes an on-demand workflow and answers its id.
    pub fn add_workflow(&self) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().workflows.push(id.clone());
        id
    }

    pub fn contacts(&self) -> Vec<Row> {
        self.lock().contacts.clone()
    }

    pub fn tasks(&self) -> Vec<Row> {
        self.lock().tasks.clone()
    }

    pub fn annotations(&self) -> Vec<Row> {
        self.lock().annotations.clone()
    }

    pub fn opportunities(&self) -> Vec<Row> {
        self.lock().opportunities.clone()
    }

    /// The workflow runs started: (workflow id, row id).
    pub fn workflow_runs(&self) -> Vec<(String, String)> {
        self.lock().workflow_runs.clone()
    }

    /// Token grants answered so far.
    pub fn grants(&self) -> usize {
        self.lock().grants
    }

    /// Expires every access token now.
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// Fills the service-protection window with others' requests made almost five minutes ago,
    /// leaving `left`: they age out of the window two seconds from now.
    pub fn leave_requests(&self, left: usize) {
        let mut environment = self.lock();
        let others = WINDOW_REQUESTS.saturating_sub(left + environment.window.len());
        let at = Instant::now()
            .checked_sub(WINDOW - Duration::from_secs(2))
            .unwrap_or_else(Instant::now);
        for _ in 0..others {
            environment.window.push_front(at);
        }
        environment.enforced = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Environment> {
        self.state.lock().expect("dataverse lock")
    }
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant.
async fn grant_token(
    State(app): State<AppState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) = match dataverse_contract().check(
        "POST",
        "/{tenant}/oauth2/v2.0/token",
        &fields_of(&body),
    ) {
        Err(Breach::Invalid(problems)) => {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": format!("AADSTS900144: {}", listed.join("; ")), "error_codes": [900144]}),
            )
        }
        _ => app
            .state
            .lock()
            .expect("dataverse lock")
            .grant(&tenant, &form),
    };
    (status, axum::Json(answer)).into_response()
}

/// Every API call: recorded, scripted faults first, then the environment's answer with its
/// service-protection headers.
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
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let answer = app.state.lock().expect("dataverse lock").answer(
        method.as_str(),
        uri.path(),
        &query,
        &headers,
        parsed,
    );
    app.recorder.record(
        method.as_str(),
        uri.path(),
        &headers,
        recorded,
        answer.status,
    );
    let mut response = if answer.body.is_null() {
        answer.status.into_response()
    } else {
        (answer.status, axum::Json(answer.body)).into_response()
    };
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// What the environment answers: status, body (`Null` for none) and headers.
struct Answer {
    status: StatusCode,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl From<(StatusCode, Value)> for Answer {
    fn from((status, body): (StatusCode, Value)) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

// === impl Environment ===

impl Environment {
    fn grant(&mut self, tenant: &str, form: &HashMap<String, String>) -> (StatusCode, Value) {
        if tenant != self.tenant {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": format!("AADSTS90002: Tenant '{tenant}' not found."), "error_codes": [90002]}),
            );
        }
        if form.get("client_id") != Some(&self.client_id) {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": "unauthorized_client", "error_description": "AADSTS700016: Application with identifier was not found in the directory.", "error_codes": [700016]}),
            );
        }
        if form.get("client_secret") != Some(&self.client_secret) {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.", "error_codes": [7000215]}),
            );
        }
        if form.get("scope") != Some(&format!("{}/.default", self.url)) {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_scope", "error_description": "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", "error_codes": [1002012]}),
            );
        }
        self.grants += 1;
        let access_token = format!("eyJ0eXAiOiJKV1Qi.{}", uuid::Uuid::new_v4().simple());
        self.access_tokens
            .insert(access_token.clone(), Instant::now() + ACCESS_TOKEN_LIFETIME);
        (
            StatusCode::OK,
            json!({
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "ext_expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "access_token": access_token,
            }),
        )
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        parsed: Result<Value, String>,
    ) -> Answer {
        let live = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| self.access_tokens.get(token))
            .is_some_and(|expires| Instant::now() < *expires);
        if !live {
            return Answer {
                status: StatusCode::UNAUTHORIZED,
                body: Value::Null,
                headers: vec![(
                    "www-authenticate",
                    format!(
                        "Bearer authorization_uri={}/{}/oauth2/authorize, resource_id={}",
                        self.url, self.tenant, self.url
                    ),
                )],
            };
        }
        let now = Instant::now();
        while self
            .window
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW)
        {
            self.window.pop_front();
        }
        let used = self.window.len();
        if self.enforced && used >= WINDOW_REQUESTS {
            let wait = self.window.front().map_or(WINDOW, |first| {
                WINDOW.saturating_sub(now.duration_since(*first))
            });
            let (status, body) = error(
                StatusCode::TOO_MANY_REQUESTS,
                "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            );
            return Answer {
                status,
                body,
                headers: vec![("retry-after", wait.as_secs().max(1).to_string())],
            };
        }
        self.window.push_back(now);
        let remaining = WINDOW_REQUESTS.saturating_sub(used + 1);
        let mut answer = self.operation(method, path, query, headers, parsed);
        answer.headers.push((
            "x-ms-ratelimit-burst-remaining-xrm-requests",
            remaining.to_string(),
        ));
        answer.headers.push((
            "x-ms-ratelimit-time-remaining-xrm-requests",
            "1200000.00".to_owned(),
        ));
        answer
    }

    fn operation(
        &mut self,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        parsed: Result<Value, String>,
    ) -> Answer {
        let instance = match parsed {
            Ok(instance) => instance,
            Err(reason) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "0x80048d19",
                    &format!("Error identified in Payload provided by the user for Entity :'', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : Microsoft.OData.ODataException: {reason}"),
                )
                .into()
            }
        };
        // A row id in parentheses is written ({id}) in the contract.
        let (template, ids) = templated(path);
        match dataverse_contract().check(method, &template, &instance) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(_)) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "0x80060888",
                    &format!(
                        "Resource not found for the segment '{}'.",
                        path.trim_start_matches(API)
                    ),
                )
                .into()
            }
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return error(
                    StatusCode::BAD_REQUEST,
                    "0x80048d19",
                    &format!(
                        "Error identified in Payload provided by the user: {}",
                        listed.join("; ")
                    ),
                )
                .into();
            }
        }
        let id = ids.first().map(String::as_str).unwrap_or_default();
        let represent = headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|prefer| prefer.contains("return=representation"));
        match (method, template.trim_start_matches(API)) {
            ("GET", "contacts") => self.query_contacts(query),
            ("GET", "WhoAmI") => (
                StatusCode::OK,
                json!({
                    "@odata.context": format!("{}{API}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", self.url),
                    "BusinessUnitId": "4b0c2a9e-1d3f-4e5a-8b6c-7d8e9f0a1b2c",
                    "UserId": "6f1e2d3c-4b5a-4968-8776-655443322110",
                    "OrganizationId": "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d",
                }),
            )
                .into(),
            ("POST", "contacts") => {
                let row = insert(&mut self.contacts, "contactid", &instance);
                self.created("contacts", "contactid", row, query, represent)
            }
            ("POST", "tasks") => match self.bound(&instance, "regardingobjectid_contact_task@odata.bind", "regardingobjectid_opportunity_task@odata.bind") {
                Err(refusal) => refusal.into(),
                Ok(()) => {
                    let row = insert(&mut self.tasks, "activityid", &instance);
                    self.created("tasks", "activityid", row, query, represent)
                }
            },
            ("POST", "annotations") => match self.bound(&instance, "objectid_contact@odata.bind", "objectid_opportunity@odata.bind") {
                Err(refusal) => refusal.into(),
                Ok(()) => {
                    let row = insert(&mut self.annotations, "annotationid", &instance);
                    self.created("annotations", "annotationid", row, query, represent)
                }
            },
            ("PATCH", _) => self.patch_opportunity(id, &instance, headers).into(),
            ("POST", "WinOpportunity") => self.close_opportunity(&instance, 1).into(),
            ("POST", "LoseOpportunity") => self.close_opportunity(&instance, 2).into(),
            ("POST", _) => self.execute_workflow(id, &instance).into(),
            _ => error(StatusCode::NOT_FOUND, "0x80060888", "Resource not found.").into(),
        }
    }

    /// Contacts whose primary email equals one of the filter's; only the filter the connector
    /// sends.
    fn query_contacts(&self, query: &HashMap<String, String>) -> Answer {
        let emails = match query.get("$filter").map(|filter| email_filter(filter)) {
            Some(Ok(emails)) => emails,
            Some(Err(reason)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "0x80060888",
                    &format!("Syntax error in $filter: {reason}"),
                )
                .into()
            }
            None => Vec::new(),
        };
        let value: Vec<Value> = self
            .contacts
            .iter()
            .filter(|contact| {
                emails.is_empty()
                    || contact.columns["emailaddress1"]
                        .as_str()
                        .is_some_and(|email| emails.iter().any(|e| e.eq_ignore_ascii_case(email)))
            })
            .map(|contact| json!({"@odata.etag": "W/\"1\"", "contactid": contact.id, "emailaddress1": contact.columns["emailaddress1"]}))
            .collect();
        (
            StatusCode::OK,
            json!({"@odata.context": format!("{}{API}$metadata#contacts(contactid,emailaddress1)", self.url), "value": value}),
        )
            .into()
    }

    /// The answer to a create: 201 with the row's selected columns when asked to represent it,
    /// else 204 and `OData-EntityId`.
    fn created(
        &self,
        entity_set: &str,
        key: &str,
        row: Value,
        query: &HashMap<String, String>,
        represent: bool,
    ) -> Answer {
        let id = row[key].as_str().unwrap_or_default().to_owned();
        let entity_id = format!("{}{API}{entity_set}({id})", self.url);
        if !represent {
            return Answer {
                status: StatusCode::NO_CONTENT,
                body: Value::Null,
                headers: vec![("odata-entityid", entity_id)],
            };
        }
        let mut body =
            json!({"@odata.context": format!("{}{API}$metadata#{entity_set}/$entity", self.url)});
        let selected: Vec<&str> = query
            .get("$select")
            .map(|select| select.split(',').collect())
            .unwrap_or_default();
        if let (Some(body), Some(columns)) = (body.as_object_mut(), row.as_object()) {
            for (name, value) in columns {
                if selected.is_empty() || selected.contains(&name.as_str()) {
                    body.insert(name.clone(), value.clone());
                }
            }
        }
        Answer {
            status: StatusCode::CREATED,
            body,
            headers: vec![("odata-entityid", entity_id)],
        }
    }

    /// The row a create binds to (`/contacts(id)` or `/opportunities(id)`) exists.
    fn bound(
        &self,
        row: &Value,
        contact_bind: &str,
        opportunity_bind: &str,
    ) -> Result<(), (StatusCode, Value)> {
        for (bind, entity, rows) in [
            (contact_bind, "contact", &self.contacts),
            (opportunity_bind, "opportunity", &self.opportunities),
        ] {
            if let Some(target) = row.get(bind).and_then(Value::as_str) {
                let id = target
                    .split_once('(')
                    .and_then(|(_, rest)| rest.strip_suffix(')'))
                    .unwrap_or_default();
                if !rows.iter().any(|r| r.id == id) {
                    return Err(does_not_exist(entity, id));
                }
            }
        }
        Ok(())
    }

    /// A PATCH moves an opportunity; without `If-Match: *`, an unknown id creates one.
    fn patch_opportunity(
        &mut self,
        id: &str,
        changes: &Value,
        headers: &HeaderMap,
    ) -> (StatusCode, Value) {
        let must_exist = headers.get("if-match").and_then(|v| v.to_str().ok()) == Some("*");
        match self.opportunities.iter_mut().find(|o| o.id == id) {
            Some(opportunity) => {
                if opportunity.columns["statecode"] != 0 {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "0x80040203",
                        "The opportunity is closed and cannot be changed.",
                    );
                }
                merge(&mut opportunity.columns, changes);
                (StatusCode::NO_CONTENT, Value::Null)
            }
            None if must_exist => does_not_exist("opportunity", id),
            None => {
                let mut columns = changes.clone();
                columns["opportunityid"] = json!(id);
                columns["statecode"] = json!(0);
                self.opportunities.push(Row {
                    id: id.to_owned(),
                    columns,
                });
                (StatusCode::NO_CONTENT, Value::Null)
            }
        }
    }

    /// `WinOpportunity` (state 1) or `LoseOpportunity` (state 2) of an open opportunity.
    fn close_opportunity(&mut self, body: &Value, state: u8) -> (StatusCode, Value) {
        let bind = body["OpportunityClose"]["opportunityid@odata.bind"]
            .as_str()
            .unwrap_or_default();
        let id = bind
            .split_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or_default();
        let Some(opportunity) = self.opportunities.iter_mut().find(|o| o.id == id) else {
            return does_not_exist("opportunity", id);
        };
        if opportunity.columns["statecode"] != 0 {
            return error(
                StatusCode::BAD_REQUEST,
                "0x80040203",
                "The opportunity is already closed.",
            );
        }
        opportunity.columns["statecode"] = json!(state);
        opportunity.columns["statuscode"] = body["Status"].clone();
        (StatusCode::NO_CONTENT, Value::Null)
    }

    fn execute_workflow(&mut self, workflow: &str, body: &Value) -> (StatusCode, Value) {
        if !self.workflows.iter().any(|w| w == workflow) {
            return does_not_exist("workflow", workflow);
        }
        let row = body["EntityId"].as_str().unwrap_or_default();
        if !self.contacts.iter().any(|c| c.id == row) {
            return does_not_exist("contact", row);
        }
        self.workflow_runs
            .push((workflow.to_owned(), row.to_owned()));
        (
            StatusCode::OK,
            json!({"@odata.context": format!("{}{API}$metadata#Microsoft.Dynamics.CRM.ExecuteWorkflowResponse", self.url), "Id": uuid::Uuid::new_v4().to_string()}),
        )
    }
}

/// Adds `row` to `rows` under a new id in `key`, and answers it as stored.
fn insert(rows: &mut Vec<Row>, key: &str, row: &Value) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    let mut columns = row.clone();
    columns[key] = json!(id);
    rows.push(Row {
        id,
        columns: columns.clone(),
    });
    columns
}

fn merge(columns: &mut Value, changes: &Value) {
    if let (Some(columns), Some(changes)) = (columns.as_object_mut(), changes.as_object()) {
        for (name, value) in changes {
            columns.insert(name.clone(), value.clone());
        }
    }
}

/// `path` with every `(id)` written `({id})`, and the ids.
fn templated(path: &str) -> (String, Vec<String>) {
    let mut ids = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| match segment.split_once('(') {
            Some((name, rest)) if rest.ends_with(')') => {
                ids.push(rest.trim_end_matches(')').to_owned());
                format!("{name}({{id}})")
            }
            _ => segment.to_owned(),
        })
        .collect();
    (segments.join("/"), ids)
}

/// The emails of a `$filter` made of `emailaddress1 eq '...'` joined by `or`, quotes doubled.
fn email_filter(filter: &str) -> Result<Vec<String>, String> {
    let mut emails = Vec::new();
    let mut rest = filter.trim();
    loop {
        let literal = rest
            .strip_prefix("emailaddress1 eq '")
            .ok_or_else(|| format!("expected emailaddress1 eq '...' at {rest:?}"))?;
        let mut email = String::new();
        let mut chars = literal.char_indices();
        let end = loop {
            match chars.next() {
                Some((at, '\'')) => {
                    if literal[at + 1..].starts_with('\'') {
                        email.push('\'');
                        chars.next();
                    } else {
                        break at + 1;
                    }
                }
                Some((_, c)) => email.push(c),
                None => return Err("an unterminated string literal".into()),
            }
        };
        emails.push(email);
        rest = literal[end..].trim_start();
        if rest.is_empty() {
            return Ok(emails);
        }
        rest = rest
            .strip_prefix("or ")
            .ok_or_else(|| format!("expected or at {rest:?}"))?
            .trim_start();
    }
}

// === the conformance suite's view ===

/// The simulated tenant's app registration (not real credentials).
const SIMULATED_TENANT: &str = "simulated.onmicrosoft.com";
const SIMULATED_CLIENT_ID: &str = "5f0e1d2c-3b4a-4958-8776-1a2b3c4d5e6f";
const SIMULATED_CLIENT_SECRET: &str = "simulated~dataverse~client~secret";

impl Simulation for super::Dynamics365 {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let environment = FakeDataverse::start(
                addr,
                SIMULATED_TENANT,
                SIMULATED_CLIENT_ID,
                SIMULATED_CLIENT_SECRET,
            )
            .await?;
            Ok(Box::new(environment) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeDataverse {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_CLIENT_SECRET.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "environment_url = \"{url}\", authority = \"{url}\", tenant_id = \"{SIMULATED_TENANT}\", client_id = \"{SIMULATED_CLIENT_ID}\", client_secret = {secret}",
            url = self.environment_url()
        )
    }

    /// With the couple as contacts: Dynamics 365 syncs contacts.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] = json!([
            {"name": "Sam Taylor", "email": "sam@example.com", "role": "couple"},
            {"name": "Alex Morgan", "email": "alex@example.com", "role": "couple"}
        ]);
        notification
    }

    fn address(&self) -> String {
        self.environment_url()
    }

    fn about(&self) -> String {
        "a Dynamics 365 Sales environment and its Entra ID tenant: contacts, tasks, notes, opportunities"
            .to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["subject"]
            .as_str()
            .or(request.body["emailaddress1"].as_str())
            .or(request.body["$filter"].as_str())
            .map(|text| format!("{text:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().enforced = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"error": {"code": "0x80040216", "message": "The service is temporarily unavailable."}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[("www-authenticate", "Bearer error=\"invalid_token\"")],
            Value::Null,
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"error": {"code": "0x80060888", "message": "Could not find a property named 'emailaddress' on type 'Microsoft.Dynamics.CRM.contact'."}}),
            ),
            "Could not find a property named",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_read_as_dataverse_reads_it() {
        assert_eq!(
            email_filter("emailaddress1 eq 'a@x.com' or emailaddress1 eq 'o''brien@x.com'"),
            Ok(vec!["a@x.com".to_owned(), "o'brien@x.com".to_owned()])
        );
        assert!(email_filter("emailaddress1 eq 'a@x.com' and emailaddress1 eq 'b@x.com'").is_err());
        assert!(email_filter("contains(emailaddress1,'a')").is_err());
        assert!(email_filter("emailaddress1 eq 'open").is_err());
    }

    #[test]
    fn the_contract_knows_the_operations_herald_calls() {
        let contract = dataverse_contract();
        let (template, ids) =
            templated("/api/data/v9.2/opportunities(7d2e4c1a-93b0-4f8e-a1c2-5b6d7e8f9a0b)");
        assert_eq!(ids, ["7d2e4c1a-93b0-4f8e-a1c2-5b6d7e8f9a0b"]);
        assert_eq!(
            contract.check("PATCH", &template, &json!({"salesstage": 2})),
            Ok(())
        );
        assert!(matches!(
            contract.check("PATCH", &template, &json!({"salesstage": 7})),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check(
                "POST",
                "/api/data/v9.2/tasks",
                &json!({"subject": "s", "prioritycode": 5})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("DELETE", "/api/data/v9.2/contacts", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
    }
}
