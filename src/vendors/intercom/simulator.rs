//! Intercom's REST API for one workspace, behaving as Intercom's documentation and published
//! OpenAPI description (2.14) say:
//!
//! - the Bearer token checked (401 `unauthorized`), `Intercom-Version` required to be a version
//!   Intercom has (400 `intercom_version_invalid`), every body checked against `contract.json`
//!   (400 `parameter_invalid` naming the field);
//! - contacts searched by email, created (409 `conflict` "A contact matching those details
//!   already exists with id=..." for an email it has), with the search lagging new contacts
//!   when asked to ([`FakeIntercom::lag_search`]), as Intercom's search does;
//! - messages from a teammate (404 `admin_not_found` for another id) to a contact (404
//!   `not_found`), an email needing a subject (422 `parameter_not_found`), each starting a
//!   conversation; teammate replies in a conversation; conversations read back with their parts;
//! - every answer carrying `X-RateLimit-Limit`, `-Remaining` and `-Reset` for its 10-second
//!   window and, once held to limits, 429 `rate_limit_exceeded` past it (10,000 a minute: 1,666
//!   per 10 seconds);
//! - the couple replying ([`FakeIntercom::contact_replies`]): the conversation grows a part and
//!   the `conversation.user.replied` webhook is posted, signed `X-Hub-Signature` (sha1).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{json, Value};

use super::connector::API_VERSION;
use super::inbound::sign;
use crate::sandbox::contract::{load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const WINDOW: Duration = Duration::from_secs(10);
const WINDOW_LIMIT: u64 = 1666;

pub struct FakeIntercom {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Workspace>>,
    client: reqwest::Client,
}

struct Contact {
    email: String,
    name: Option<String>,
    searchable_from: Instant,
}

struct Conversation {
    contact: String,
    parts: Vec<Value>,
    read: bool,
}

struct Workspace {
    instance: u16,
    token: String,
    admins: BTreeMap<String, String>,
    contacts: BTreeMap<String, Contact>,
    conversations: BTreeMap<String, Conversation>,
    next_id: u64,
    search_lag: Duration,
    window_start: Instant,
    window_used: u64,
    held_to_limits: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Workspace>>,
    recorder: Recorder,
    faults: Faults,
}

fn intercom_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"type": "error.list", "request_id": "b3c5e7a9-0d1f-4a2b-8c3d-5e7f9a1b3c5d", "errors": [{"code": code, "message": message}]}),
    )
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl FakeIntercom {
    pub async fn start(addr: std::net::SocketAddr, token: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Workspace {
            instance: 0,
            token: token.to_owned(),
            admins: BTreeMap::new(),
            contacts: BTreeMap::new(),
            conversations: BTreeMap::new(),
            next_id: 1,
            search_lag: Duration::ZERO,
            window_start: Instant::now(),
            window_used: 0,
            held_to_limits: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/{*rest}", any(handle))
            .with_state(AppState {
                state: state.clone(),
                recorder: recorder.clone(),
                faults: faults.clone(),
            });
        let server = Server::start(app, addr, faults.clone()).await?;
        state.lock().expect("intercom lock").instance = server.addr.port();
        Ok(Self {
            server,
            recorder,
            faults,
            state,
            client: reqwest::Client::new(),
        })
    }

    /// The API's address, as Herald's `api_url`.
    pub fn api_url(&self) -> String {
        self.server.url()
    }

    /// A teammate messages can be sent as.
    pub fn add_admin(&self, id: &str, name: &str) {
        self.lock().admins.insert(id.to_owned(), name.to_owned());
    }

    /// New contacts are found by the search only this long after they are made.
    pub fn lag_search(&self, lag: Duration) {
        self.lock().search_lag = lag;
    }

    /// Every contact: `{id, email, name}`.
    pub fn contacts(&self) -> Vec<Value> {
        self.lock()
            .contacts
            .iter()
            .map(|(id, contact)| json!({"id": id, "email": contact.email, "name": contact.name}))
            .collect()
    }

    /// A conversation as `GET /conversations/{id}` answers it.
    pub fn conversation(&self, id: &str) -> Option<Value> {
        self.lock().conversation_json(id)
    }

    /// The couple reads the conversation.
    pub fn contact_reads(&self, conversation: &str) {
        if let Some(found) = self.lock().conversations.get_mut(conversation) {
            found.read = true;
        }
    }

    /// The couple replies in a conversation: it grows a part, and the `conversation.user.replied`
    /// webhook is posted to `target`, signed with `client_secret`. Answers Herald's status.
    pub async fn contact_replies(
        &self,
        target: &str,
        client_secret: &str,
        conversation: &str,
        body: &str,
    ) -> u16 {
        let item = {
            let mut workspace = self.lock();
            let Some(found) = workspace.conversations.get(conversation) else {
                return 0;
            };
            let contact = found.contact.clone();
            let email = workspace.contacts[&contact].email.clone();
            workspace.next_id += 1;
            let part = json!({"type": "conversation_part", "id": workspace.next_id.to_string(), "part_type": "comment", "body": format!("<p>{body}</p>"), "author": {"type": "user", "id": contact, "email": email}});
            if let Some(found) = workspace.conversations.get_mut(conversation) {
                found.parts.push(part);
            }
            workspace
                .conversation_json(conversation)
                .unwrap_or(Value::Null)
        };
        let event = json!({
            "type": "notification_event",
            "app_id": "wedsync-sim",
            "topic": "conversation.user.replied",
            "id": format!("notif_{}", epoch()),
            "created_at": epoch(),
            "data": {"type": "notification_event_data", "item": item},
        })
        .to_string();
        self.client
            .post(target)
            .header("content-type", "application/json")
            .header("x-hub-signature", sign(client_secret, event.as_bytes()))
            .body(event)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Workspace> {
        self.state.lock().expect("intercom lock")
    }
}

async fn handle(
    State(app): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, parsed, status);
        return response;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let bearer = header("authorization")
        .strip_prefix("Bearer ")
        .unwrap_or_default()
        .to_owned();
    let (status, answer, limits) = app.state.lock().expect("intercom lock").answer(
        method.as_str(),
        uri.path(),
        &bearer,
        &header("intercom-version"),
        &parsed,
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, parsed, status);
    let mut response = (status, axum::Json(answer)).into_response();
    for (name, value) in limits {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

impl Workspace {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{}{:08}", self.instance, self.next_id)
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        version: &str,
        body: &Value,
    ) -> (StatusCode, Value, Vec<(&'static str, String)>) {
        // The 10-second window, reported on every answer.
        let now = Instant::now();
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.window_used = 0;
        }
        let reset = epoch()
            + WINDOW
                .saturating_sub(now.duration_since(self.window_start))
                .as_secs()
                .max(1);
        let over = self.held_to_limits && self.window_used >= WINDOW_LIMIT;
        if !over {
            self.window_used += 1;
        }
        let limits = vec![
            ("x-ratelimit-limit", WINDOW_LIMIT.to_string()),
            (
                "x-ratelimit-remaining",
                WINDOW_LIMIT.saturating_sub(self.window_used).to_string(),
            ),
            ("x-ratelimit-reset", reset.to_string()),
        ];
        let (status, answer) = if over {
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Exceeded rate limit of 1666 in 10_seconds",
            )
        } else {
            self.route(method, path, bearer, version, body)
        };
        (status, answer, limits)
    }

    fn route(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        version: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        if bearer != self.token {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Access Token Invalid",
            );
        }
        if version != API_VERSION {
            return error(
                StatusCode::BAD_REQUEST,
                "intercom_version_invalid",
                &format!("The requested version could not be found: {version:?}"),
            );
        }
        match intercom_contract().check(method, path, body) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(message)) => {
                return error(StatusCode::NOT_FOUND, "not_found", &message)
            }
            Err(Breach::Invalid(problems)) => {
                let said: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return error(
                    StatusCode::BAD_REQUEST,
                    "parameter_invalid",
                    &said.join("; "),
                );
            }
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["me"]) => (
                StatusCode::OK,
                json!({"type": "admin", "id": self.admins.keys().next(), "name": self.admins.values().next(), "email": "desk@goldenhour.example", "app": {"type": "app", "id_code": "wedsync_sim_app", "name": "Golden Hour Weddings", "region": "US", "timezone": "Europe/London"}}),
            ),
            ("POST", ["contacts", "search"]) => {
                let email = body["query"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase();
                let found: Vec<Value> = self
                    .contacts
                    .iter()
                    .filter(|(_, contact)| contact.email == email && contact.searchable_from <= Instant::now())
                    .map(|(id, contact)| json!({"type": "contact", "id": id, "role": "user", "email": contact.email, "name": contact.name}))
                    .collect();
                (
                    StatusCode::OK,
                    json!({"type": "list", "data": found, "total_count": found.len()}),
                )
            }
            ("POST", ["contacts"]) => {
                let email = body["email"].as_str().unwrap_or_default().to_lowercase();
                if let Some((id, _)) = self
                    .contacts
                    .iter()
                    .find(|(_, contact)| contact.email == email)
                {
                    return error(
                        StatusCode::CONFLICT,
                        "conflict",
                        &format!("A contact matching those details already exists with id={id}"),
                    );
                }
                let id = self.id();
                self.contacts.insert(
                    id.clone(),
                    Contact {
                        email: email.clone(),
                        name: body["name"].as_str().map(str::to_owned),
                        searchable_from: Instant::now() + self.search_lag,
                    },
                );
                (
                    StatusCode::OK,
                    json!({"type": "contact", "id": id, "role": body["role"], "email": email, "name": body["name"]}),
                )
            }
            ("POST", ["messages"]) => self.message(body),
            ("POST", ["conversations", conversation, "reply"]) => {
                let conversation = conversation.to_string();
                if !self
                    .admins
                    .contains_key(body["admin_id"].as_str().unwrap_or_default())
                {
                    return error(StatusCode::NOT_FOUND, "admin_not_found", "Admin not found");
                }
                if !self.conversations.contains_key(&conversation) {
                    return error(StatusCode::NOT_FOUND, "not_found", "Resource Not Found");
                }
                let id = self.id();
                let part = json!({"type": "conversation_part", "id": id, "part_type": "comment", "body": body["body"], "author": {"type": "admin", "id": body["admin_id"]}});
                if let Some(found) = self.conversations.get_mut(&conversation) {
                    found.parts.push(part);
                    found.read = false;
                }
                (
                    StatusCode::OK,
                    self.conversation_json(&conversation).unwrap_or(Value::Null),
                )
            }
            ("GET", ["conversations", conversation]) => {
                match self.conversation_json(conversation) {
                    Some(found) => (StatusCode::OK, found),
                    None => error(StatusCode::NOT_FOUND, "not_found", "Resource Not Found"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "not_found", "Resource Not Found"),
        }
    }

    fn message(&mut self, body: &Value) -> (StatusCode, Value) {
        let admin = body["from"]["id"]
            .as_u64()
            .map(|id| id.to_string())
            .unwrap_or_default();
        if !self.admins.contains_key(&admin) {
            return error(StatusCode::NOT_FOUND, "admin_not_found", "Admin not found");
        }
        let contact = body["to"]["id"].as_str().unwrap_or_default().to_owned();
        if !self.contacts.contains_key(&contact) {
            return error(StatusCode::NOT_FOUND, "not_found", "User Not Found");
        }
        let email = body["message_type"] == "email";
        if email
            && body["subject"]
                .as_str()
                .is_none_or(|subject| subject.trim().is_empty())
        {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "parameter_not_found",
                "No subject supplied for email message",
            );
        }
        let (message, conversation) = (self.id(), self.id());
        self.conversations.insert(
            conversation.clone(),
            Conversation {
                contact,
                parts: vec![json!({"type": "conversation_part", "id": message, "part_type": "comment", "body": body["body"], "author": {"type": "admin", "id": admin}})],
                read: false,
            },
        );
        (
            StatusCode::OK,
            json!({"type": "admin_message", "id": message, "created_at": epoch(), "subject": body["subject"], "body": body["body"], "message_type": if email { "email" } else { "inapp" }, "conversation_id": conversation}),
        )
    }

    fn conversation_json(&self, id: &str) -> Option<Value> {
        let found = self.conversations.get(id)?;
        let contact = self.contacts.get(&found.contact)?;
        Some(json!({
            "type": "conversation",
            "id": id,
            "state": "open",
            "open": true,
            "read": found.read,
            "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": found.contact, "email": contact.email}]},
            "conversation_parts": {"type": "conversation_part.list", "conversation_parts": found.parts, "total_count": found.parts.len()},
        }))
    }
}

// === the conformance suite's view ===

/// The workspace the simulated API has for the conformance suite (not a real one).
const SIMULATED_TOKEN: &str = "dG9rOnNpbXVsYXRlZC1pbnRlcmNvbS13b3Jrc3BhY2U=";
const SIMULATED_ADMIN: &str = "7001234";

impl Simulation for super::Intercom {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let intercom = FakeIntercom::start(addr, SIMULATED_TOKEN).await?;
            intercom.add_admin(SIMULATED_ADMIN, "Wedding desk");
            Ok(Box::new(intercom) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeIntercom {
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
            "access_token = {secret}, admin_id = \"{SIMULATED_ADMIN}\", api_url = \"{}\"",
            self.api_url()
        )
    }

    /// The couple as the contact, each sample its own (so each starts its conversation).
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] = json!([{"name": "Priya Shah", "email": format!("priya.{notification_id}@example.com"), "role": "client"}]);
        notification
    }

    fn address(&self) -> String {
        self.api_url()
    }

    fn about(&self) -> String {
        "a workspace: contacts, messages and conversations, 10-second rate windows, reply webhooks"
            .to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["subject"]
            .as_str()
            .or_else(|| request.body["email"].as_str())
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
            json!({"type": "error.list", "request_id": "r-503", "errors": [{"code": "service_unavailable", "message": "Sorry, the API service is temporarily unavailable"}]}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"type": "error.list", "request_id": "r-401", "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"type": "error.list", "request_id": "r-429", "errors": [{"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 1666 in 10_seconds"}]}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                422,
                &[],
                json!({"type": "error.list", "request_id": "r-422", "errors": [{"code": "parameter_not_found", "message": "No subject supplied for email message"}]}),
            ),
            "No subject supplied for email message",
        )
    }
}
