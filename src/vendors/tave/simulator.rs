//! A Tave / VSCO Workspace API v2 simulator for what the Tave connector calls, as the vendor's
//! OpenAPI (served at `/api/v2/openapi.json`) describes it: `X-API-KEY` auth; jobs (`GET`/`PUT
//! /job/{id}`), events (`GET /event?jobId=`, paged `{type, items, meta}` collections; `PUT
//! /event/{id}`), payments (`GET /payment/{id}`), contacts, notes (`POST /note`, `contentHtml` with
//! a `jobId` or `contactId` that exists); problem documents `{type, title, detail, status}` for errors; a 429 of type
//! `quota-limit` with `Retry-After`. Every request is checked against `contract.json`
//! first: a breach is the API's 400 `validation-error`, its `detail` naming each field.
//! REST hooks: `GET`/`POST /rest-hook` list and subscribe, and [`FakeTave::fire`] delivers an
//! event the way Tave does (a JSON POST of only the object's `targetId` to each subscribed url,
//! dropping a hook answered 410).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use serde_json::{json, Map, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::SchemaError;
use crate::sandbox::ScriptedResponse;
use crate::sandbox::{Faults, RecordedRequest, Recorder, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

pub struct FakeTave {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<TaveState>>,
}

/// A REST-hook subscription: Tave POSTs each `event` to `url`.
#[derive(Debug, Clone)]
pub struct RestHook {
    pub id: String,
    pub event: String,
    pub url: String,
}

/// A note as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Note {
    pub id: String,
    pub job_id: Option<String>,
    pub content_html: String,
}

struct TaveState {
    api_key: String,
    jobs: BTreeMap<String, Map<String, Value>>,
    notes: Vec<Note>,
    /// Contacts (the address book) by id.
    contacts: BTreeMap<String, Map<String, Value>>,
    /// Events (a job's sessions and shoots) by id.
    events: BTreeMap<String, Map<String, Value>>,
    /// Payments recorded against jobs, by id.
    payments: BTreeMap<String, Map<String, Value>>,
    hooks: Vec<RestHook>,
    next_id: u64,
}

impl TaveState {
    /// A new record's id, as Tave makes them: a lowercase ULID (a 48-bit millisecond time, here
    /// fixed at 2026-01-01, then 80 bits that here count up).
    fn new_id(&mut self) -> String {
        const TIME_MS: u128 = 1_767_225_600_000;
        const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
        self.next_id += 1;
        let value = (TIME_MS << 80) | u128::from(self.next_id);
        (0..26)
            .map(|at| ALPHABET[((value >> (125 - 5 * at)) & 31) as usize] as char)
            .collect()
    }
}

/// The studio's records are named as Tave names them, so a test cannot pass with an id Tave
/// would never give.
fn assert_tave_id(id: &str) {
    assert!(
        super::connector::tave_id(id).as_deref() == Some(id),
        "{id:?} is not a Tave id: Tave's ids are lowercase ULIDs"
    );
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<TaveState>>,
    recorder: Recorder,
    faults: Faults,
}

impl FakeTave {
    /// Starts a studio whose API key is `api_key`.
    pub async fn start(addr: std::net::SocketAddr, api_key: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(TaveState {
            api_key: api_key.to_owned(),
            jobs: BTreeMap::new(),
            notes: Vec::new(),
            contacts: BTreeMap::new(),
            events: BTreeMap::new(),
            payments: BTreeMap::new(),
            hooks: Vec::new(),
            next_id: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/api/v2/job/{id}", put(update_job).get(get_job))
            .route("/api/v2/payment/{id}", axum::routing::get(get_payment))
            .route("/api/v2/event", axum::routing::get(list_events))
            .route("/api/v2/event/{id}", put(update_event))
            .route("/api/v2/note", post(create_note))
            .route("/api/v2/studio/me", axum::routing::get(studio_me))
            .route(
                "/api/v2/rest-hook",
                post(create_rest_hook).get(list_rest_hooks),
            )
            .with_state(app_state);
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
        })
    }

    /// The URL to configure as the Tave connector's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/api/v2", self.server.url())
    }

    /// Adds a job that exists in the studio.
    pub fn add_job(&self, id: &str, fields: Value) {
        assert_tave_id(id);
        self.state.lock().expect("tave lock").jobs.insert(
            id.to_owned(),
            fields.as_object().cloned().unwrap_or_default(),
        );
    }

    pub fn job(&self, id: &str) -> Option<Map<String, Value>> {
        self.state.lock().expect("tave lock").jobs.get(id).cloned()
    }

    /// Records a payment, e.g. `{"jobId": ..., "amount": 1500}`.
    pub fn add_payment(&self, id: &str, fields: Value) {
        assert_tave_id(id);
        self.state.lock().expect("tave lock").payments.insert(
            id.to_owned(),
            fields.as_object().cloned().unwrap_or_default(),
        );
    }

    /// Adds a contact to the studio's address book.
    pub fn add_contact(&self, id: &str, fields: Value) {
        assert_tave_id(id);
        self.state.lock().expect("tave lock").contacts.insert(
            id.to_owned(),
            fields.as_object().cloned().unwrap_or_default(),
        );
    }

    /// Adds an event (a session or shoot), e.g. `{"jobId": ..., "startDate": ..., "confirmed": true}`.
    pub fn add_event(&self, id: &str, fields: Value) {
        assert_tave_id(id);
        self.state.lock().expect("tave lock").events.insert(
            id.to_owned(),
            fields.as_object().cloned().unwrap_or_default(),
        );
    }

    pub fn event(&self, id: &str) -> Option<Map<String, Value>> {
        self.state
            .lock()
            .expect("tave lock")
            .events
            .get(id)
            .cloned()
    }

    pub fn notes(&self) -> Vec<Note> {
        self.state.lock().expect("tave lock").notes.clone()
    }

    pub fn rest_hooks(&self) -> Vec<RestHook> {
        self.state.lock().expect("tave lock").hooks.clone()
    }

    /// Does what Tave does when `event` happens to the object `target_id`: POSTs
    /// `{"targetId": target_id}` (all a REST hook carries: "only the targetId will be provided")
    /// to every hook subscribed to it, and drops a hook whose address answers 410 Gone (the
    /// REST-hook convention). Answers the status each hook's address returned.
    pub async fn fire(&self, event: &str, target_id: &str) -> Vec<u16> {
        let payload = json!({"targetId": target_id});
        let hooks: Vec<RestHook> = self
            .rest_hooks()
            .into_iter()
            .filter(|hook| hook.event == event)
            .collect();
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for hook in hooks {
            let status = match client.post(&hook.url).json(&payload).send().await {
                Ok(answer) => answer.status().as_u16(),
                Err(_) => 0,
            };
            if status == 410 {
                self.state
                    .lock()
                    .expect("tave lock")
                    .hooks
                    .retain(|kept| kept.id != hook.id);
            }
            statuses.push(status);
        }
        statuses
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> (StatusCode, Response) {
    problem_document(
        status,
        json!({"type": kind, "title": title, "detail": detail, "status": status.as_u16()}),
    )
}

/// Answers `body` as an `application/problem+json` document.
fn problem_document(status: StatusCode, body: Value) -> (StatusCode, Response) {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    (status, response)
}

/// The API's validation problem: 400 `validation-error` whose `detail` maps each field at fault
/// to what is wrong with it.
fn invalid(errors: &[SchemaError]) -> (StatusCode, Response) {
    let status = StatusCode::BAD_REQUEST;
    let mut detail = Map::new();
    for error in errors {
        let field = if error.at.is_empty() {
            "body"
        } else {
            error.at.as_str()
        };
        let messages = detail
            .entry(field.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(messages) = messages {
            messages.push(Value::String(error.message.clone()));
        }
    }
    problem_document(
        status,
        json!({"type": "validation-error", "title": "Validation Failed", "detail": detail, "status": status.as_u16()}),
    )
}

/// A stored record as the API answers it: its fields and its id.
fn record(id: &str, fields: &Map<String, Value>) -> (StatusCode, Response) {
    let mut answer = fields.clone();
    answer.insert("id".into(), json!(id));
    (
        StatusCode::OK,
        (StatusCode::OK, axum::Json(Value::Object(answer))).into_response(),
    )
}

/// `PUT /{kind}/{id}`: the body's fields written over the record's.
fn update(
    records: &mut BTreeMap<String, Map<String, Value>>,
    kind: &str,
    id: &str,
    body: &Value,
) -> (StatusCode, Response) {
    let Some(fields) = records.get_mut(id) else {
        return missing(kind, id);
    };
    fields.extend(body.as_object().cloned().unwrap_or_default());
    record(id, fields)
}

/// The API's 404 for a record of `kind` it does not have.
fn missing(kind: &str, id: &str) -> (StatusCode, Response) {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not Found",
        &format!("{kind} {id} was not found."),
    )
}

async fn get_payment(
    State(app): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    get_record(app, id, uri, headers, "Payment", |state| &state.payments).await
}

async fn get_job(
    State(app): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    get_record(app, id, uri, headers, "Job", |state| &state.jobs).await
}

/// `GET /{collection}/{id}`: one record of the studio's `collection`, or the API's 404 naming
/// the `kind`.
async fn get_record(
    app: AppState,
    id: String,
    uri: Uri,
    headers: HeaderMap,
    kind: &'static str,
    collection: fn(&TaveState) -> &BTreeMap<String, Map<String, Value>>,
) -> Response {
    respond(
        app,
        "GET",
        &uri,
        headers,
        Bytes::new(),
        move |state, _| match collection(state).get(&id) {
            Some(fields) => record(&id, fields),
            None => missing(kind, &id),
        },
    )
    .await
}

/// `GET /event?jobId=&page=&pageSize=`: a page of the studio's events.
async fn list_events(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    respond(app, "GET", &uri, headers, Bytes::new(), |state, query| {
        let job = query["jobId"].as_str();
        let matching = state
            .events
            .iter()
            .filter(|(_, event)| {
                job.is_none_or(|job| event.get("jobId").and_then(Value::as_str) == Some(job))
            })
            .map(|(id, event)| {
                let mut event = event.clone();
                event.insert("id".into(), json!(id));
                Value::Object(event)
            })
            .collect();
        collection("event-collection", matching, query)
    })
    .await
}

/// `GET /rest-hook`: a page of the studio's REST-hook subscriptions.
async fn list_rest_hooks(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    respond(app, "GET", &uri, headers, Bytes::new(), |state, query| {
        let hooks = state
            .hooks
            .iter()
            .map(|hook| json!({"id": hook.id, "event": hook.event, "url": hook.url}))
            .collect();
        collection("resthook-collection", hooks, query)
    })
    .await
}

/// A page of `items` as the API's collections come: `{type, items, meta: {currentPage,
/// totalPages, totalItems, rows}}`, by the query's `page` and `pageSize`.
fn collection(kind: &str, items: Vec<Value>, query: &Value) -> (StatusCode, Response) {
    let number = |name: &str, default: usize| {
        query[name]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
            .max(1)
    };
    let (page, size) = (number("page", 1), number("pageSize", 100));
    let total = items.len();
    let items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    let answer = json!({
        "type": kind,
        "items": items,
        "meta": {"currentPage": page, "totalPages": total.div_ceil(size), "totalItems": total, "rows": size},
    });
    (
        StatusCode::OK,
        (StatusCode::OK, axum::Json(answer)).into_response(),
    )
}

async fn update_event(
    State(app): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(app, "PUT", &uri, headers, body, move |state, body| {
        update(&mut state.events, "Event", &id, body)
    })
    .await
}

async fn update_job(
    State(app): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(app, "PUT", &uri, headers, body, move |state, body| {
        update(&mut state.jobs, "Job", &id, body)
    })
    .await
}

async fn studio_me(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    respond(app, "GET", &uri, headers, Bytes::new(), |_, _| {
        let studio = json!({"id": "S-1", "name": "Herald Sandbox Studio", "timezoneId": "Europe/London", "plan": "pro"});
        (StatusCode::OK, (StatusCode::OK, axum::Json(studio)).into_response())
    })
    .await
}

async fn create_note(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(app, "POST", &uri, headers, body, |state, body| {
        let content = body["contentHtml"].as_str().unwrap_or_default();
        let job_id = body["jobId"].as_str().map(str::to_owned);
        if let Some(contact) = body["contactId"].as_str() {
            if !state.contacts.contains_key(contact) {
                return invalid(&[SchemaError {
                    at: "contactId".into(),
                    message: format!("Contact {contact} does not exist."),
                }]);
            }
        }
        if let Some(job) = &job_id {
            if !state.jobs.contains_key(job) {
                return invalid(&[SchemaError {
                    at: "jobId".into(),
                    message: format!("Job {job} does not exist."),
                }]);
            }
        }
        let id = state.new_id();
        state.notes.push(Note {
            id: id.clone(),
            job_id: job_id.clone(),
            content_html: content.to_owned(),
        });
        let answer = json!({"id": id, "jobId": job_id, "contentHtml": content});
        (
            StatusCode::CREATED,
            (StatusCode::CREATED, axum::Json(answer)).into_response(),
        )
    })
    .await
}

async fn create_rest_hook(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(app, "POST", &uri, headers, body, |state, body| {
        let hook = RestHook {
            id: state.new_id(),
            event: body["event"].as_str().unwrap_or_default().to_owned(),
            url: body["url"].as_str().unwrap_or_default().to_owned(),
        };
        let answer = json!({"id": hook.id, "event": hook.event, "url": hook.url});
        state.hooks.push(hook);
        (
            StatusCode::CREATED,
            (StatusCode::CREATED, axum::Json(answer)).into_response(),
        )
    })
    .await
}

/// A hook's address ends in the subscriber's secret: the recording keeps everything before it.
fn without_hook_secret(mut body: Value) -> Value {
    if let Some(url) = body["url"].as_str() {
        let kept = url.rsplit_once('/').map_or(url, |(kept, _)| kept);
        body["url"] = Value::String(format!("{kept}/<secret>"));
    }
    body
}

/// Auth, rate limit, the contract check, faults and recording around an operation.
async fn respond(
    app: AppState,
    method: &str,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    operation: impl FnOnce(&mut TaveState, &Value) -> (StatusCode, Response),
) -> Response {
    let path = uri.path();
    let parsed: Value = match method {
        "GET" => fields_of(uri.query().unwrap_or_default().as_bytes()),
        _ => serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let (status, response) = match app.faults.take().await {
        Some(scripted) => scripted.answer(),
        None => {
            let mut state = app.state.lock().expect("tave lock");
            let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
            if key != Some(state.api_key.as_str()) {
                problem(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Unauthorized",
                    "A valid X-API-KEY header is required.",
                )
            } else {
                match tave_contract().check(method, path, &parsed) {
                    Ok(()) => operation(&mut state, &parsed),
                    Err(Breach::UnknownOperation(message)) => {
                        problem(StatusCode::NOT_FOUND, "not-found", "Not Found", &message)
                    }
                    Err(Breach::Invalid(errors)) => invalid(&errors),
                }
            }
        }
    };
    app.recorder
        .record(method, path, &headers, without_hook_secret(parsed), status);
    response
}

/// The Tave / VSCO Workspace contract (`contract.json`, written from the vendor's OpenAPI
/// document), parsed once.
fn tave_contract() -> &'static WrittenContract {
    static CONTRACT: std::sync::OnceLock<WrittenContract> = std::sync::OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

// === the conformance suite's view ===

/// The API key the simulated studio accepts (not a real credential).
const SIMULATED_API_KEY: &str = "tave-simulated-0000000000000000";
/// The job the simulated studio has, which the sample notification names.
const SIMULATED_JOB: &str = "01jsm0k3x7c9v2b8n4q6w1e5r0";

impl Simulation for super::Tave {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let tave = FakeTave::start(addr, SIMULATED_API_KEY).await?;
            tave.add_job(SIMULATED_JOB, json!({"name": "Sam & Alex"}));
            Ok(Box::new(tave) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeTave {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_API_KEY.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!("base_url = \"{}\", api_key = {secret}", self.base_url())
    }

    /// A client message about the studio's job: one note on its communication log.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["type"] = json!("client_message");
        notification["taveJobId"] = json!(SIMULATED_JOB);
        notification
    }

    fn address(&self) -> String {
        self.base_url()
    }

    fn about(&self) -> String {
        format!("a studio with job {SIMULATED_JOB} (name it in taveJobId)")
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["jobId"]
            .as_str()
            .map(|job| format!("job {job}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        // Tave publishes no rate, only its 429 `quota-limit` answer.
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"type": "unknown", "title": "Service Unavailable", "detail": "maintenance", "status": 503}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"type": "unauthorized", "title": "Unauthorized", "detail": "A valid X-API-KEY header is required.", "status": 401}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"type": "quota-limit", "title": "Too Many Requests", "detail": "API quota exceeded; retry later.", "status": 429}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"type": "validation-error", "title": "Validation Failed", "detail": {"contentHtml": ["must not be longer than 65535 characters"]}, "status": 400}),
            ),
            "must not be longer than 65535 characters",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_loads_and_matches_path_templates() {
        assert_eq!(
            tave_contract().check("GET", "/api/v2/studio/me", &fields_of(b"")),
            Ok(())
        );
    }
}
