//! An Asana workspace for what the Asana connector calls, behaving as Asana's published
//! OpenAPI description and developer documentation say:
//!
//! - every API request (under `/api/1.0`) checked against `contract.json` first (400 with
//!   Asana's error body `{errors: [{message, help}]}`; 404 for an operation it lacks);
//! - `Authorization: Bearer <token>` (401 "Not Authorized" otherwise);
//! - one project with sections (its stages) and a text custom field; tasks created in it or as
//!   subtasks, custom field values taken only for fields on one of the task's projects, tasks
//!   moved between sections, stories (comments); answers hold the compact fields and those
//!   `opt_fields` names, as Asana's do;
//! - the task search: premium only (402 Payment Required otherwise) and, when asked, as
//!   eventually consistent as Asana documents (a task is found only some seconds after it is
//!   made or changed);
//! - webhooks: `POST /webhooks` calls the target with `X-Hook-Secret` while the request is in
//!   flight and makes the webhook only if the target echoes it (a `localhost` target is refused
//!   with a 403); the 201 carries the secret; a task completed in the workspace
//!   ([`FakeAsana::complete_task`]) is delivered to the webhooks whose filters take it, signed
//!   with `X-Hook-Signature` (hex HMAC-SHA256 of the body);
//! - 150 requests per minute per token (a free workspace) once held to the published limits:
//!   429 with `Retry-After`; 500s carry a `phrase`, as Asana's do.
//!
//! The wording of messages Asana's documentation does not quote is the simulator's own.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{json, Map, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::inbound::hex_hmac_sha256;
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// The simulated workspace's objects.
pub const WORKSPACE: &str = "1100000000000001";
pub const PROJECT: &str = "1200000000000001";
pub const REFERENCE_FIELD: &str = "1300000000000001";
/// The project's sections, by gid.
pub const SECTIONS: &[(&str, &str)] = &[
    ("1400000000000001", "Enquiry"),
    ("1400000000000002", "Booked"),
    ("1400000000000003", "Final details"),
    ("1400000000000004", "Wedding week"),
];
/// The token's user.
const USER: &str = "1000000000000001";
/// Requests per minute per token on a free workspace.
const REQUESTS_PER_MINUTE: usize = 150;
const HELP: &str = "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors";

pub struct FakeAsana {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Workspace>>,
}

/// A webhook the workspace made.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub gid: String,
    pub resource: String,
    pub target: String,
    pub secret: String,
    pub filters: Vec<Value>,
}

struct Workspace {
    token: String,
    premium: bool,
    search_lag: Duration,
    tasks: BTreeMap<String, Task>,
    stories: Vec<(String, Value)>,
    webhooks: Vec<Webhook>,
    next_gid: u64,
    held_to_limits: bool,
    requests: VecDeque<Instant>,
    /// A path ending and the requests to it still to fail with a 500.
    failing: Option<(String, usize)>,
}

/// A task as the workspace keeps it: its fields as Asana answers them, and when it last
/// changed (for the search's lag).
#[derive(Debug, Clone)]
struct Task {
    fields: Value,
    changed: Instant,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Workspace>>,
    recorder: Recorder,
    faults: Faults,
}

fn asana_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Asana's error body.
fn refusal(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"errors": [{"message": message, "help": HELP}]}),
    )
}

fn data(status: StatusCode, data: Value) -> (StatusCode, Value) {
    (status, json!({ "data": data }))
}

impl FakeAsana {
    /// Starts a premium workspace whose user's token is `token`.
    pub async fn start(addr: std::net::SocketAddr, token: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Workspace {
            token: token.to_owned(),
            premium: true,
            search_lag: Duration::ZERO,
            tasks: BTreeMap::new(),
            stories: Vec::new(),
            webhooks: Vec::new(),
            next_gid: 1_500_000_000_000_001,
            held_to_limits: false,
            requests: VecDeque::new(),
            failing: None,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/api/1.0/webhooks", post(create_webhook).get(handle))
            .route("/api/1.0/{*rest}", any(handle))
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

    /// Asana's API as Herald's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/api/1.0", self.server.url())
    }

    /// Makes the workspace a free one: its task search answers 402.
    pub fn set_premium(&self, premium: bool) {
        self.lock().premium = premium;
    }

    /// How long a made or changed task stays out of the search (Asana documents 10 to 60 s).
    pub fn set_search_lag(&self, lag: Duration) {
        self.lock().search_lag = lag;
    }

    /// Adds a task in the project (as a planner would), with `reference` in the reference field
    /// when given, and answers its gid.
    pub fn add_task(&self, name: &str, due_on: &str, reference: Option<&str>) -> String {
        let mut workspace = self.lock();
        let gid = workspace.new_gid();
        let mut fields = json!({"gid": gid, "resource_type": "task", "resource_subtype": "default_task", "name": name, "notes": "", "due_on": due_on, "completed": false, "completed_by": null, "parent": null, "memberships": [membership(SECTIONS[0].0)], "custom_fields": [reference_value(None)]});
        if let Some(reference) = reference {
            fields["custom_fields"] = json!([reference_value(Some(reference))]);
        }
        workspace.tasks.insert(
            gid.clone(),
            Task {
                fields,
                changed: Instant::now() - Duration::from_secs(3600),
            },
        );
        gid
    }

    /// Every task, as Asana would answer it with all its fields.
    pub fn tasks(&self) -> Vec<Value> {
        self.lock()
            .tasks
            .values()
            .map(|task| task.fields.clone())
            .collect()
    }

    pub fn task(&self, gid: &str) -> Option<Value> {
        self.lock().tasks.get(gid).map(|task| task.fields.clone())
    }

    /// The stories (comments) on a task, oldest first.
    pub fn stories(&self, task_gid: &str) -> Vec<Value> {
        self.lock()
            .stories
            .iter()
            .filter(|(task, _)| task == task_gid)
            .map(|(_, story)| story.clone())
            .collect()
    }

    pub fn webhooks(&self) -> Vec<Webhook> {
        self.lock().webhooks.clone()
    }

    /// Answers the next `count` requests whose path ends with `ending` (`/subtasks`) with
    /// Asana's 500, whatever comes before them: a failure part-way through a delivery.
    pub fn fail_requests_ending(&self, ending: &str, count: usize) {
        self.lock().failing = Some((ending.to_owned(), count));
    }

    /// Deletes a task, as a planner would.
    pub fn delete_task(&self, gid: &str) {
        self.lock().tasks.remove(gid);
    }

    /// `person` ticks the task: it is completed, and each webhook whose resource holds it and
    /// whose filters take the change is sent the event. Answers the status each target answered.
    pub async fn complete_task(&self, gid: &str, person: &str) -> Vec<u16> {
        let deliveries = {
            let mut workspace = self.lock();
            let person_gid = workspace.new_gid();
            let Some(task) = workspace.tasks.get_mut(gid) else {
                return Vec::new();
            };
            task.fields["completed"] = json!(true);
            task.fields["completed_by"] =
                json!({"gid": person_gid, "resource_type": "user", "name": person});
            task.changed = Instant::now();
            let projects: Vec<String> = task.fields["memberships"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["project"]["gid"].as_str().map(str::to_owned))
                .collect();
            let event = json!({
                "user": {"gid": person_gid, "resource_type": "user"},
                "created_at": "2027-05-01T09:00:00.000Z",
                "action": "changed",
                "resource": {"gid": gid, "resource_type": "task", "resource_subtype": "default_task"},
                "parent": null,
                "change": {"field": "completed", "action": "changed"},
            });
            workspace
                .webhooks
                .iter()
                .filter(|hook| projects.contains(&hook.resource))
                .filter(|hook| {
                    hook.filters.is_empty()
                        || hook.filters.iter().any(|filter| {
                            filter["resource_type"] == "task"
                                && filter["action"].as_str().is_none_or(|a| a == "changed")
                                && filter["fields"].as_array().is_none_or(|fields| {
                                    fields.iter().any(|field| field == "completed")
                                })
                        })
                })
                .map(|hook| (hook.clone(), json!({"events": [event]}).to_string()))
                .collect::<Vec<_>>()
        };
        let mut answered = Vec::new();
        for (hook, body) in deliveries {
            answered.push(deliver(&hook.target, &hook.secret, body).await);
        }
        answered
    }

    /// Sends a webhook's target a delivery as Asana would, signed with `secret` (a test's
    /// forged or heartbeat delivery): the status the target answered.
    pub async fn send_event(&self, target: &str, secret: &str, body: &str) -> u16 {
        deliver(target, secret, body.to_owned()).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Workspace> {
        self.state.lock().expect("asana lock")
    }
}

/// POSTs a signed delivery to a webhook's target; the status it answered (0 if unreachable).
async fn deliver(target: &str, secret: &str, body: String) -> u16 {
    let signature = hex_hmac_sha256(secret, body.as_bytes());
    match reqwest::Client::new()
        .post(target)
        .header("content-type", "application/json")
        .header("x-hook-signature", signature)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

fn membership(section: &str) -> Value {
    let name = SECTIONS
        .iter()
        .find(|(gid, _)| *gid == section)
        .map_or("", |(_, name)| *name);
    json!({
        "project": {"gid": PROJECT, "resource_type": "project", "name": "Weddings 2027"},
        "section": {"gid": section, "resource_type": "section", "name": name},
    })
}

fn reference_value(value: Option<&str>) -> Value {
    json!({"gid": REFERENCE_FIELD, "resource_type": "custom_field", "name": "WedSync reference", "type": "text", "resource_subtype": "text", "text_value": value, "display_value": value})
}

/// `POST /webhooks`: the handshake with the target while the request is in flight, then the
/// webhook and its secret.
async fn create_webhook(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let gate = app
        .state
        .lock()
        .expect("asana lock")
        .gate("POST", uri.path(), &headers, &parsed);
    let answer = match gate {
        Err(refused) => refused,
        Ok(()) => {
            let target = parsed["data"]["target"].as_str().unwrap_or_default();
            let resource = parsed["data"]["resource"].as_str().unwrap_or_default();
            let host = url::Url::parse(target)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned));
            if host.as_deref() == Some("localhost") {
                refusal(StatusCode::FORBIDDEN, "Invalid hostname: localhost")
            } else if resource != PROJECT {
                refusal(
                    StatusCode::NOT_FOUND,
                    &format!("resource: Unknown object: {resource}"),
                )
            } else {
                handshake(&app, target, resource, &parsed["data"]["filters"]).await
            }
        }
    };
    app.recorder
        .record("POST", uri.path(), &headers, parsed, answer.0);
    (answer.0, axum::Json(answer.1)).into_response()
}

async fn handshake(
    app: &AppState,
    target: &str,
    resource: &str,
    filters: &Value,
) -> (StatusCode, Value) {
    let secret = hex::encode(uuid::Uuid::new_v4().as_bytes());
    let confirmed = reqwest::Client::new()
        .post(target)
        .header("x-hook-secret", &secret)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()
        .filter(|answer| matches!(answer.status().as_u16(), 200 | 204))
        .and_then(|answer| {
            answer
                .headers()
                .get("x-hook-secret")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        })
        .is_some_and(|echoed| echoed == secret);
    if !confirmed {
        return refusal(
            StatusCode::BAD_REQUEST,
            "The remote server did not respond with the handshake secret.",
        );
    }
    let mut workspace = app.state.lock().expect("asana lock");
    let gid = workspace.new_gid();
    workspace.webhooks.push(Webhook {
        gid: gid.clone(),
        resource: resource.to_owned(),
        target: target.to_owned(),
        secret: secret.clone(),
        filters: filters.as_array().cloned().unwrap_or_default(),
    });
    (
        StatusCode::CREATED,
        json!({
            "data": {"gid": gid, "resource_type": "webhook", "active": true, "resource": {"gid": resource, "name": "Weddings 2027"}, "target": target, "filters": filters},
            "X-Hook-Secret": secret,
        }),
    )
}

/// Every other API call: recorded, scripted faults first, then the workspace's answer.
async fn handle(
    State(app): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = fields_of(uri.query().unwrap_or_default().as_bytes());
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let recorded = if method == axum::http::Method::GET {
        query.clone()
    } else {
        parsed.clone()
    };
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, recorded, status);
        return response;
    }
    let (status, answer) = {
        let mut workspace = app.state.lock().expect("asana lock");
        let checked = if method == axum::http::Method::GET {
            &query
        } else {
            &parsed
        };
        match workspace.gate(method.as_str(), uri.path(), &headers, checked) {
            Err(refused) => refused,
            Ok(()) if workspace.fails(uri.path()) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"errors": [{"message": "Server Error", "phrase": "4 tall frogs hop quietly"}]}),
            ),
            Ok(()) => workspace.answer(method.as_str(), uri.path(), &query, &parsed),
        }
    };
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    let mut response = (status, axum::Json(answer)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(wait) = response_retry_after(&app) {
            response.headers_mut().insert("retry-after", wait);
        }
    }
    response
}

fn response_retry_after(app: &AppState) -> Option<axum::http::HeaderValue> {
    let workspace = app.state.lock().expect("asana lock");
    let oldest = workspace.requests.front()?;
    let wait = Duration::from_secs(60).saturating_sub(oldest.elapsed());
    axum::http::HeaderValue::from_str(&(wait.as_secs() + 1).to_string()).ok()
}

// === impl Workspace ===

impl Workspace {
    /// The token, the rate limit and the contract, in that order.
    fn gate(
        &mut self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        checked: &Value,
    ) -> Result<(), (StatusCode, Value)> {
        let bearer = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if bearer != Some(self.token.as_str()) {
            return Err(refusal(StatusCode::UNAUTHORIZED, "Not Authorized"));
        }
        if self.held_to_limits {
            let now = Instant::now();
            while self
                .requests
                .front()
                .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
            {
                self.requests.pop_front();
            }
            if self.requests.len() >= REQUESTS_PER_MINUTE {
                return Err(refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    "You have made too many requests recently. Please, be chill.",
                ));
            }
            self.requests.push_back(now);
        }
        match asana_contract().check(method, path, checked) {
            Ok(()) => Ok(()),
            Err(Breach::UnknownOperation(what)) => Err(refusal(
                StatusCode::NOT_FOUND,
                &format!("No matching route for request: {what}"),
            )),
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                Err(refusal(StatusCode::BAD_REQUEST, &listed.join("; ")))
            }
        }
    }

    /// Whether a request to `path` is one [`FakeAsana::fail_requests_ending`] fails.
    fn fails(&mut self, path: &str) -> bool {
        match &mut self.failing {
            Some((ending, count)) if *count > 0 && path.ends_with(ending.as_str()) => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        query: &Value,
        body: &Value,
    ) -> (StatusCode, Value) {
        let segments: Vec<&str> = path.trim_start_matches("/api/1.0/").split('/').collect();
        let opt_fields = query["opt_fields"].as_str().unwrap_or_default();
        let input = &body["data"];
        match (method, segments.as_slice()) {
            ("GET", ["users", "me"]) => data(
                StatusCode::OK,
                project_fields(
                    &json!({"gid": USER, "resource_type": "user", "name": "Priya Planner", "email": "priya@aisleplanners.example", "workspaces": [{"gid": WORKSPACE, "resource_type": "workspace", "name": "Aisle Planner Network"}]}),
                    opt_fields,
                ),
            ),
            ("GET", ["projects", gid]) if *gid == PROJECT => data(
                StatusCode::OK,
                project_fields(
                    &json!({"gid": PROJECT, "resource_type": "project", "name": "Weddings 2027", "custom_field_settings": [{"gid": "1600000000000001", "resource_type": "custom_field_setting", "custom_field": {"gid": REFERENCE_FIELD, "resource_type": "custom_field", "name": "WedSync reference", "resource_subtype": "text"}}]}),
                    opt_fields,
                ),
            ),
            ("GET", ["workspaces", gid, "tasks", "search"]) => self.search(gid, query),
            ("GET", ["tasks", gid]) => match self.tasks.get(*gid) {
                Some(task) => data(StatusCode::OK, project_fields(&task.fields, opt_fields)),
                None => unknown_object(gid),
            },
            ("POST", ["tasks"]) => self.create_task(input, None, opt_fields),
            ("POST", ["tasks", parent, "subtasks"]) => {
                if !self.tasks.contains_key(*parent) {
                    return unknown_object(parent);
                }
                self.create_task(input, Some(parent), opt_fields)
            }
            ("PUT", ["tasks", gid]) => self.update_task(gid, input, opt_fields),
            ("POST", ["tasks", gid, "stories"]) => {
                if !self.tasks.contains_key(*gid) {
                    return unknown_object(gid);
                }
                let text = input["text"].as_str().or(input["html_text"].as_str());
                let Some(text) = text.filter(|text| !text.trim().is_empty()) else {
                    return refusal(StatusCode::BAD_REQUEST, "text: Missing input");
                };
                let story_gid = self.new_gid();
                let story = json!({"gid": story_gid, "resource_type": "story", "resource_subtype": "comment_added", "type": "comment", "text": text, "created_by": {"gid": USER, "resource_type": "user", "name": "Priya Planner"}});
                self.stories.push((gid.to_string(), story.clone()));
                if let Some(task) = self.tasks.get_mut(*gid) {
                    task.changed = Instant::now();
                }
                data(StatusCode::CREATED, story)
            }
            ("POST", ["sections", section, "addTask"]) => {
                if !SECTIONS.iter().any(|(gid, _)| gid == section) {
                    return unknown_object(section);
                }
                let task_gid = input["task"].as_str().unwrap_or_default();
                let Some(task) = self.tasks.get_mut(task_gid) else {
                    return refusal(
                        StatusCode::BAD_REQUEST,
                        &format!("task: Unknown object: {task_gid}"),
                    );
                };
                task.fields["memberships"] = json!([membership(section)]);
                task.changed = Instant::now();
                data(StatusCode::OK, json!({}))
            }
            ("GET", ["webhooks"]) => {
                let resource = query["resource"].as_str();
                let listed: Vec<Value> = self
                    .webhooks
                    .iter()
                    .filter(|hook| resource.is_none_or(|r| r == hook.resource))
                    .map(|hook| json!({"gid": hook.gid, "resource_type": "webhook", "active": true, "resource": {"gid": hook.resource, "name": "Weddings 2027"}, "target": hook.target}))
                    .collect();
                (StatusCode::OK, json!({"data": listed, "next_page": null}))
            }
            ("DELETE", ["webhooks", gid]) => {
                let before = self.webhooks.len();
                self.webhooks.retain(|hook| hook.gid != *gid);
                if self.webhooks.len() == before {
                    return unknown_object(gid);
                }
                data(StatusCode::OK, json!({}))
            }
            _ => unknown_object(segments.last().unwrap_or(&"")),
        }
    }

    fn search(&self, workspace: &str, query: &Value) -> (StatusCode, Value) {
        if workspace != WORKSPACE {
            return unknown_object(workspace);
        }
        if !self.premium {
            return refusal(
                StatusCode::PAYMENT_REQUIRED,
                "Search is only available to premium users.",
            );
        }
        let Some(fields) = query.as_object() else {
            return data(StatusCode::OK, json!([]));
        };
        let mut wanted_reference = None;
        for (name, value) in fields {
            if let Some(field) = name
                .strip_prefix("custom_fields.")
                .and_then(|rest| rest.strip_suffix(".value"))
            {
                if field != REFERENCE_FIELD {
                    return refusal(
                        StatusCode::BAD_REQUEST,
                        &format!("{name}: Unknown custom field: {field}"),
                    );
                }
                wanted_reference = value.as_str();
            } else if name.starts_with("custom_fields.") {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("{name}: Herald's simulator supports custom_fields.<gid>.value only"),
                );
            }
        }
        let project = fields.get("projects.any").and_then(Value::as_str);
        let limit = fields
            .get("limit")
            .and_then(Value::as_str)
            .and_then(|limit| limit.parse::<usize>().ok())
            .unwrap_or(20)
            .min(100);
        let opt_fields = fields
            .get("opt_fields")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let found: Vec<Value> = self
            .tasks
            .values()
            .filter(|task| task.changed.elapsed() >= self.search_lag)
            .filter(|task| {
                project.is_none_or(|project| {
                    task.fields["memberships"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|m| m["project"]["gid"] == project)
                })
            })
            .filter(|task| {
                wanted_reference.is_none_or(|wanted| {
                    task.fields["custom_fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|f| f["gid"] == REFERENCE_FIELD && f["text_value"] == wanted)
                })
            })
            .take(limit)
            .map(|task| project_fields(&task.fields, opt_fields))
            .collect();
        data(StatusCode::OK, json!(found))
    }

    fn create_task(
        &mut self,
        input: &Value,
        parent: Option<&str>,
        opt_fields: &str,
    ) -> (StatusCode, Value) {
        let projects: Vec<&str> = input["projects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let Some(unknown) = projects.iter().find(|project| **project != PROJECT) {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("projects: [0]: Unknown object: {unknown}"),
            );
        }
        if projects.is_empty() && parent.is_none() && input["workspace"].is_null() {
            return refusal(
                StatusCode::BAD_REQUEST,
                "workspace: Missing input: You should specify one of workspace, parent, projects",
            );
        }
        let custom_fields = match self.custom_fields(input, !projects.is_empty()) {
            Ok(fields) => fields,
            Err(refused) => return refused,
        };
        let gid = self.new_gid();
        let fields = json!({
            "gid": gid,
            "resource_type": "task",
            "resource_subtype": "default_task",
            "name": input["name"].as_str().unwrap_or(""),
            "notes": input["notes"].as_str().unwrap_or(""),
            "due_on": input["due_on"],
            "completed": false,
            "completed_by": null,
            "parent": parent.map(|parent| json!({"gid": parent, "resource_type": "task"})),
            "memberships": if projects.is_empty() { json!([]) } else { json!([membership(SECTIONS[0].0)]) },
            "custom_fields": if projects.is_empty() { json!([]) } else { json!([custom_fields]) },
        });
        self.tasks.insert(
            gid,
            Task {
                fields: fields.clone(),
                changed: Instant::now(),
            },
        );
        data(StatusCode::CREATED, project_fields(&fields, opt_fields))
    }

    fn update_task(&mut self, gid: &str, input: &Value, opt_fields: &str) -> (StatusCode, Value) {
        let in_project = self.tasks.get(gid).is_some_and(|task| {
            task.fields["memberships"]
                .as_array()
                .is_some_and(|memberships| !memberships.is_empty())
        });
        let custom_fields = match input.get("custom_fields") {
            Some(_) => match self.custom_fields(input, in_project) {
                Ok(fields) => Some(fields),
                Err(refused) => return refused,
            },
            None => None,
        };
        let Some(task) = self.tasks.get_mut(gid) else {
            return unknown_object(gid);
        };
        for name in ["name", "notes", "due_on", "completed"] {
            if let Some(value) = input.get(name) {
                task.fields[name] = value.clone();
            }
        }
        if let Some(custom_fields) = custom_fields {
            task.fields["custom_fields"] = json!([custom_fields]);
        }
        task.changed = Instant::now();
        data(StatusCode::OK, project_fields(&task.fields, opt_fields))
    }

    /// The reference field's value as a task holds it, from a request's `custom_fields`: only
    /// the project's field, only on a task in the project, only text.
    fn custom_fields(&self, input: &Value, in_project: bool) -> Result<Value, (StatusCode, Value)> {
        let mut value = None;
        for (field, given) in input["custom_fields"].as_object().into_iter().flatten() {
            if field != REFERENCE_FIELD || !in_project {
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("custom_fields: Custom field with ID {field} is not on given object"),
                ));
            }
            value = Some(given.as_str().ok_or_else(|| {
                refusal(
                    StatusCode::BAD_REQUEST,
                    "custom_fields: text custom fields take a string",
                )
            })?);
        }
        Ok(reference_value(value))
    }

    fn new_gid(&mut self) -> String {
        let gid = self.next_gid;
        self.next_gid += 1;
        gid.to_string()
    }
}

fn unknown_object(gid: &str) -> (StatusCode, Value) {
    refusal(StatusCode::NOT_FOUND, &format!("Unknown object: {gid}"))
}

/// An object as Asana answers it: the compact fields, and the top-level fields `opt_fields`
/// names (`memberships.section` names `memberships`).
fn project_fields(object: &Value, opt_fields: &str) -> Value {
    let mut kept = Map::new();
    let wanted: Vec<&str> = opt_fields
        .split(',')
        .map(|field| field.split('.').next().unwrap_or_default())
        .filter(|field| !field.is_empty())
        .collect();
    for (name, value) in object.as_object().into_iter().flatten() {
        let compact = matches!(
            name.as_str(),
            "gid" | "resource_type" | "name" | "resource_subtype"
        );
        if compact || wanted.contains(&name.as_str()) {
            kept.insert(name.clone(), value.clone());
        }
    }
    Value::Object(kept)
}

// === the conformance suite's view ===

/// The token the simulated workspace accepts (not a real credential).
const SIMULATED_TOKEN: &str = "2/1000000000000001/simulated-asana-pat:0a1b2c3d";

impl Simulation for super::Asana {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let workspace = FakeAsana::start(addr, SIMULATED_TOKEN).await?;
            Ok(Box::new(workspace) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeAsana {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_TOKEN.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "token = {secret}, workspace = \"{WORKSPACE}\", project = \"{PROJECT}\", reference_field = \"{REFERENCE_FIELD}\", base_url = \"{}\"",
            self.base_url()
        )
    }

    /// The base sample names its wedding: Asana keeps a task for it.
    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        self.base_url()
    }

    fn about(&self) -> String {
        "a premium workspace: a project with sections and a reference field, tasks, stories, webhooks".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        let input = &request.body["data"];
        input["name"]
            .as_str()
            .or(input["text"].as_str())
            .map(|text| format!("{text:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            500,
            &[],
            json!({"errors": [{"message": "Server Error", "phrase": "6 sad squid snuggle softly"}]}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"errors": [{"message": "Not Authorized", "help": HELP}]}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"errors": [{"message": "You have made too many requests recently. Please, be chill.", "help": HELP}]}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"errors": [{"message": "due_on: Invalid date: \"2027-02-30\"", "help": HELP}]}),
            ),
            "Invalid date",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_knows_the_operations_herald_calls() {
        let contract = asana_contract();
        assert_eq!(
            contract.check(
                "POST",
                "/api/1.0/tasks",
                &json!({"data": {"name": "Sam & Alex", "due_on": "2027-06-12", "projects": [PROJECT], "custom_fields": {REFERENCE_FIELD: "wedding/w-1"}}})
            ),
            Ok(())
        );
        assert!(matches!(
            contract.check(
                "PUT",
                "/api/1.0/tasks/1",
                &json!({"data": {"projects": [PROJECT]}})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check(
                "POST",
                "/api/1.0/tasks",
                &json!({"data": {"due_on": "12/06/2027"}})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("POST", "/api/1.0/sections/1/addTask", &json!({"data": {}})),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("DELETE", "/api/1.0/tasks/1", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
    }

    #[test]
    fn answers_hold_the_compact_fields_and_those_asked_for() {
        let task = json!({"gid": "1", "resource_type": "task", "name": "n", "due_on": "2027-06-12", "completed": false, "memberships": []});
        assert_eq!(
            project_fields(&task, "due_on,memberships.section"),
            json!({"gid": "1", "resource_type": "task", "name": "n", "due_on": "2027-06-12", "memberships": []})
        );
        assert_eq!(
            project_fields(&task, ""),
            json!({"gid": "1", "resource_type": "task", "name": "n"})
        );
    }
}
