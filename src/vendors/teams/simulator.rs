//! A Teams Workflows flow's trigger for what the Teams connector calls, behaving as Microsoft's
//! documentation says the "Send webhook alerts to a channel" flow does:
//!
//! - the trigger URL's query (`api-version=1`, `sp=/triggers/manual/run`, `sv=1.0` and the flow's
//!   `sig`) checked: a wrong or missing signature is refused with 401 and Power Automate's
//!   `{error: {code, message}}`, an unknown flow with 404;
//! - the body checked against `contract.json` (a `message` whose attachments are Adaptive Cards)
//!   and every card against Microsoft's published card schema (`contract/`), a card newer than
//!   1.5 refused, a message over Teams' 28 KB refused: 400 naming the field. Teams itself accepts
//!   such a request and its flow run fails later, unseen by the caller; the simulator refuses it
//!   up front so a test sees it;
//! - an accepted request answered 202 with an empty body and the run's id in
//!   `x-ms-workflow-run-id`, and the card posted to the flow's channel ([`FakeTeams::posts`]);
//! - once held to limits, at most 4 requests a second per flow (Graph's per-channel figure; the
//!   flow's own is unpublished), refused with 429 and `Retry-After`.
//!
//! The error codes are Power Automate's as public client code reports them (unverified).
//!
//! And Microsoft Graph for one teammate ([`FakeTeams::graph_app`]): Entra ID's consent page
//! (`/{tenant}/oauth2/v2.0/authorize`, a teammate who consents at once) and token endpoint
//! (authorization code with PKCE, refresh tokens that rotate on every use, `invalid_grant`
//! otherwise; access tokens live an hour); `POST /v1.0/teams/{team}/channels/{channel}/messages`
//! for the teams and channels the teammate is in (404 otherwise), needing the
//! `ChannelMessage.Send` scope (403), the HTML body referencing each attachment by id and each
//! card checked against the schema (400 `BadRequest`), 4 requests a second per channel once held
//! to limits (429 with `Retry-After`); `GET /v1.0/me`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, Schema, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const TRIGGER_PATH: &str =
    "/powerautomate/automations/direct/workflows/{workflow_id}/triggers/manual/paths/invoke";
const CHANNEL_LIMIT: usize = 4;
const CHANNEL_PERIOD: Duration = Duration::from_secs(1);
const MESSAGE_LIMIT_BYTES: usize = 28 * 1024;
/// The newest card version the bundled schema (and Teams) knows.
const NEWEST_CARD: (u64, u64) = (1, 5);

pub struct FakeTeams {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Environment>>,
}

struct Flow {
    sig: String,
    posts: Vec<Value>,
    recent: VecDeque<Instant>,
}

struct Environment {
    flows: BTreeMap<String, Flow>,
    next_run: u64,
    held_to_limits: bool,
    graph: Option<GraphApp>,
}

/// The Entra ID app a teammate consents to, and what Graph keeps for them.
struct GraphApp {
    tenant: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    teammate: String,
    /// (code, PKCE challenge).
    codes: Vec<(String, Option<String>)>,
    refresh_token: Option<String>,
    /// access token -> (expiry, scopes).
    access_tokens: BTreeMap<String, (Instant, String)>,
    /// (team, channel) -> the messages posted there.
    channels: BTreeMap<(String, String), Vec<Value>>,
    recent: BTreeMap<(String, String), VecDeque<Instant>>,
    next_id: u64,
}

const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Environment>>,
    recorder: Recorder,
    faults: Faults,
}

fn envelope_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Microsoft's Adaptive Card schema, read once; a bundled schema that does not load is a bug in
/// this build, so it panics.
fn card_schema() -> &'static Schema<'static> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    static SCHEMA: OnceLock<Schema<'static>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let document = DOCUMENT.get_or_init(|| {
            serde_json::from_str(include_str!("contract/adaptive-card-1.5.schema.json"))
                .expect("the bundled card schema is JSON")
        });
        let definitions = document["definitions"]
            .as_object()
            .expect("the card schema has definitions");
        Schema::new(document, definitions)
            .unwrap_or_else(|err| panic!("the bundled card schema is valid: {err}"))
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"error": {"code": code, "message": message}}))
}

impl FakeTeams {
    pub async fn start(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Environment {
            flows: BTreeMap::new(),
            next_run: 1,
            held_to_limits: false,
            graph: None,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route(TRIGGER_PATH, any(handle))
            .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/{*rest}", any(graph))
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

    /// Adds a flow `id` posting to a channel, signed with `sig`, and answers its trigger URL as
    /// the flow's editor shows it.
    pub fn add_flow(&self, id: &str, sig: &str) -> String {
        self.lock().flows.insert(
            id.to_owned(),
            Flow {
                sig: sig.to_owned(),
                posts: Vec::new(),
                recent: VecDeque::new(),
            },
        );
        format!(
            "{}/powerautomate/automations/direct/workflows/{id}/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}",
            self.server.url()
        )
    }

    /// The cards flow `id` posted to its channel, oldest first.
    pub fn posts(&self, id: &str) -> Vec<Value> {
        self.lock()
            .flows
            .get(id)
            .map(|flow| flow.posts.clone())
            .unwrap_or_default()
    }

    /// The simulator's address: Entra ID's sign-in host (`login_url`) and, under `/v1.0`, Graph.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// An Entra ID app registration in `tenant` that `teammate` consents to, sending them back to
    /// `redirect_uri`; and the teams' channels they are in (`(team id, channel id)`).
    pub fn graph_app(
        &self,
        tenant: &str,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        teammate: &str,
        channels: &[(&str, &str)],
    ) {
        self.lock().graph = Some(GraphApp {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            teammate: teammate.to_owned(),
            codes: Vec::new(),
            refresh_token: None,
            access_tokens: BTreeMap::new(),
            channels: channels
                .iter()
                .map(|(team, channel)| ((team.to_string(), channel.to_string()), Vec::new()))
                .collect(),
            recent: BTreeMap::new(),
            next_id: 1_733_000_000_000,
        });
    }

    /// The teammate's current refresh token (they rotate on every use).
    pub fn graph_refresh_token(&self) -> Option<String> {
        self.lock().graph.as_ref()?.refresh_token.clone()
    }

    /// Access tokens expire now, as an hour passing would make them.
    pub fn expire_graph_access_tokens(&self) {
        if let Some(app) = self.lock().graph.as_mut() {
            for (expiry, _) in app.access_tokens.values_mut() {
                *expiry = Instant::now();
            }
        }
    }

    /// The messages Graph holds in a channel, as Graph answers them.
    pub fn channel_messages(&self, team: &str, channel: &str) -> Vec<Value> {
        self.lock()
            .graph
            .as_ref()
            .and_then(|app| {
                app.channels
                    .get(&(team.to_owned(), channel.to_owned()))
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// The flow's owner deletes the flow.
    pub fn delete_flow(&self, id: &str) {
        self.lock().flows.remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Environment> {
        self.state.lock().expect("teams lock")
    }
}

async fn handle(
    State(app): State<AppState>,
    Path(workflow_id): Path<String>,
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
    let query = fields_of(uri.query().unwrap_or_default().as_bytes());
    let (status, answer) = app.state.lock().expect("teams lock").answer(
        method.as_str(),
        uri.path(),
        &workflow_id,
        &query,
        &parsed,
        body.len(),
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, parsed, status);
    match (status, answer) {
        (StatusCode::ACCEPTED, run) => {
            let mut response = StatusCode::ACCEPTED.into_response();
            if let Some(value) = run.as_str().and_then(|run| HeaderValue::from_str(run).ok()) {
                response.headers_mut().insert("x-ms-workflow-run-id", value);
            }
            response
        }
        (StatusCode::TOO_MANY_REQUESTS, answer) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(answer)).into_response();
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            response
        }
        (status, answer) => (status, axum::Json(answer)).into_response(),
    }
}

/// Entra ID's consent page: the teammate consents at once and is sent back with a code.
async fn authorize(State(app): State<AppState>, Path(tenant): Path<String>, uri: Uri) -> Response {
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut environment = app.state.lock().expect("teams lock");
    let Some(graph) = environment.graph.as_mut() else {
        return (StatusCode::NOT_FOUND, "no app").into_response();
    };
    let asks = |name: &str| query.get(name).map(String::as_str);
    let valid = tenant == graph.tenant
        && asks("client_id") == Some(graph.client_id.as_str())
        && asks("redirect_uri") == Some(graph.redirect_uri.as_str())
        && asks("response_type") == Some("code")
        && asks("scope").is_some_and(|scope| scope.split(' ').any(|s| s == "ChannelMessage.Send"));
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            "AADSTS50011: The redirect URI, client or scope does not match the app registration.",
        )
            .into_response();
    }
    let code = format!("0.AR8A{}", uuid::Uuid::new_v4().simple());
    graph
        .codes
        .push((code.clone(), query.get("code_challenge").cloned()));
    let mut back = url::Url::parse(&graph.redirect_uri).expect("a registered redirect URI");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", asks("state").unwrap_or_default());
    (StatusCode::FOUND, [("location", back.to_string())]).into_response()
}

fn invalid_grant(description: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_grant", "error_description": description, "error_codes": [70000]}),
    )
}

/// Entra ID's token endpoint: the authorization code (with its PKCE verifier) or the refresh
/// token, which rotates on every use.
async fn token(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) = {
        let mut environment = app.state.lock().expect("teams lock");
        match environment.graph.as_mut() {
            Some(graph) if graph.tenant == tenant => graph.grant(&form),
            _ => invalid_grant("AADSTS90002: Tenant not found."),
        }
    };
    let recorded = json!({"grant_type": form.get("grant_type")});
    app.recorder.record(
        "POST",
        &format!("/{tenant}/oauth2/v2.0/token"),
        &headers,
        recorded,
        status,
    );
    (status, axum::Json(answer)).into_response()
}

impl GraphApp {
    fn grant(&mut self, form: &BTreeMap<String, String>) -> (StatusCode, Value) {
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("client_id") != Some(self.client_id.as_str())
            || field("client_secret") != Some(self.client_secret.as_str())
        {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            );
        }
        let granted = match field("grant_type") {
            Some("authorization_code") => {
                let code = field("code").unwrap_or_default();
                match self.codes.iter().position(|(issued, _)| issued == code) {
                    Some(at) if field("redirect_uri") == Some(self.redirect_uri.as_str()) => {
                        let (_, challenge) = self.codes.remove(at);
                        let verified = match (challenge, field("code_verifier")) {
                            (Some(challenge), Some(verifier)) => {
                                URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
                                    == challenge
                            }
                            (None, _) => true,
                            (Some(_), None) => false,
                        };
                        verified
                    }
                    _ => false,
                }
            }
            Some("refresh_token") => {
                self.refresh_token.is_some()
                    && field("refresh_token") == self.refresh_token.as_deref()
            }
            _ => false,
        };
        if !granted {
            return invalid_grant("AADSTS70000: The provided value for the 'code' or 'refresh_token' parameter is not valid.");
        }
        let refresh = format!("1.AR8A-refresh-{}", uuid::Uuid::new_v4().simple());
        self.refresh_token = Some(refresh.clone());
        let access = format!("eyJ0eXAi.{}", uuid::Uuid::new_v4().simple());
        let scope = "ChannelMessage.Send User.Read".to_owned();
        self.access_tokens.insert(
            access.clone(),
            (Instant::now() + ACCESS_TOKEN_LIFETIME, scope.clone()),
        );
        (
            StatusCode::OK,
            json!({"token_type": "Bearer", "scope": scope, "expires_in": 3599, "ext_expires_in": 3599, "access_token": access, "refresh_token": refresh}),
        )
    }

    fn graph_error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
        (
            status,
            json!({"error": {"code": code, "message": message, "innerError": {"date": "2026-12-04T00:00:00", "request-id": "9f1c2d3e-0000-4000-8000-000000000001"}}}),
        )
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        body: &Value,
        held_to_limits: bool,
    ) -> (StatusCode, Value, bool) {
        let Some((expiry, scopes)) = self.access_tokens.get(bearer).cloned() else {
            let (status, body) = Self::graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            );
            return (status, body, false);
        };
        if expiry <= Instant::now() {
            let (status, body) = Self::graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            );
            return (status, body, false);
        }
        let segments: Vec<String> = path
            .trim_start_matches("/v1.0/")
            .split('/')
            .map(|segment| {
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let (status, answer) = match (method, segments.as_slice()) {
            ("GET", ["me"]) => (
                StatusCode::OK,
                json!({"id": "5f7a1c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "displayName": self.teammate, "userPrincipalName": "events@oakhurstmanor.example"}),
            ),
            ("POST", ["teams", team, "channels", channel, "messages"]) => {
                if !scopes
                    .split(' ')
                    .any(|scope| scope == "ChannelMessage.Send")
                {
                    Self::graph_error(StatusCode::FORBIDDEN, "Forbidden", "Missing scope permissions on the request. API requires one of 'ChannelMessage.Send'.")
                } else {
                    let key = (team.to_string(), channel.to_string());
                    if !self.channels.contains_key(&key) {
                        Self::graph_error(StatusCode::NOT_FOUND, "NotFound", "No team or channel found with the given ids, or the user is not a member.")
                    } else {
                        let now = Instant::now();
                        let recent = self.recent.entry(key.clone()).or_default();
                        while recent
                            .front()
                            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
                        {
                            recent.pop_front();
                        }
                        if held_to_limits && recent.len() >= 4 {
                            let (status, body) = Self::graph_error(
                                StatusCode::TOO_MANY_REQUESTS,
                                "TooManyRequests",
                                "Too many requests.",
                            );
                            return (status, body, true);
                        }
                        recent.push_back(now);
                        self.post(&key, body)
                    }
                }
            }
            _ => Self::graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Unsupported request.",
            ),
        };
        (status, answer, false)
    }

    /// A channel message: the body referencing each attachment, each card valid.
    fn post(&mut self, key: &(String, String), body: &Value) -> (StatusCode, Value) {
        let content = body["body"]["content"].as_str().unwrap_or_default();
        if body["body"]["contentType"] != "html" {
            return Self::graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "body.contentType must be html to carry attachments",
            );
        }
        let attachments = body["attachments"].as_array().cloned().unwrap_or_default();
        if attachments.is_empty() {
            return Self::graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The message has no content.",
            );
        }
        let mut problems = Vec::new();
        for (index, attachment) in attachments.iter().enumerate() {
            let id = attachment["id"].as_str().unwrap_or_default();
            if !content.contains(&format!("<attachment id=\"{id}\"></attachment>")) {
                problems.push(format!(
                    "attachments[{index}].id: {id:?} is not referenced by the body"
                ));
            }
            if attachment["contentType"] != "application/vnd.microsoft.card.adaptive" {
                problems.push(format!(
                    "attachments[{index}].contentType: not an Adaptive Card"
                ));
                continue;
            }
            let card: Value = match attachment["content"].as_str().map(serde_json::from_str) {
                Some(Ok(card)) => card,
                _ => {
                    problems.push(format!(
                        "attachments[{index}].content: must be the card as a JSON string"
                    ));
                    continue;
                }
            };
            for problem in card_schema().validate(&card) {
                problems.push(format!("attachments[{index}].content.{problem}"));
            }
        }
        if !problems.is_empty() {
            return Self::graph_error(StatusCode::BAD_REQUEST, "BadRequest", &problems.join("; "));
        }
        self.next_id += 1;
        let id = self.next_id.to_string();
        let message = json!({
            "id": id,
            "messageType": "message",
            "createdDateTime": "2026-12-04T18:00:00Z",
            "webUrl": format!("https://teams.microsoft.com/l/message/{}/{id}", key.1),
            "from": {"user": {"id": "5f7a1c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "displayName": self.teammate}},
            "body": body["body"],
            "attachments": attachments,
            "channelIdentity": {"teamId": key.0, "channelId": key.1},
        });
        if let Some(messages) = self.channels.get_mut(key) {
            messages.push(message.clone());
        }
        (StatusCode::CREATED, message)
    }
}

/// Every Graph call: recorded, scripted faults first, then Graph's answer.
async fn graph(
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
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let (status, answer, throttled) = {
        let mut environment = app.state.lock().expect("teams lock");
        let held = environment.held_to_limits;
        match environment.graph.as_mut() {
            Some(graph) => graph.answer(method.as_str(), uri.path(), &bearer, &parsed, held),
            None => {
                let (status, answer) = GraphApp::graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "No app.",
                );
                (status, answer, false)
            }
        }
    };
    app.recorder
        .record(method.as_str(), uri.path(), &headers, parsed, status);
    let mut response = (status, axum::Json(answer)).into_response();
    if throttled {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

impl Environment {
    /// The trigger's answer: 202 with the run id (as a JSON string), or the error.
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        workflow_id: &str,
        query: &Value,
        body: &Value,
        size: usize,
    ) -> (StatusCode, Value) {
        let Some(flow) = self.flows.get_mut(workflow_id) else {
            return error(
                StatusCode::NOT_FOUND,
                "WorkflowNotFound",
                &format!("The workflow '{workflow_id}' could not be found."),
            );
        };
        if query["sig"] != json!(flow.sig) {
            return error(
                StatusCode::UNAUTHORIZED,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated only by Shared Access scheme.",
            );
        }
        if query["api-version"] != "1"
            || query["sp"] != "/triggers/manual/run"
            || query["sv"] != "1.0"
        {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestParameters",
                "The query must carry api-version=1, sp=/triggers/manual/run and sv=1.0.",
            );
        }
        let now = Instant::now();
        while flow
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= CHANNEL_PERIOD)
        {
            flow.recent.pop_front();
        }
        if self.held_to_limits && flow.recent.len() >= CHANNEL_LIMIT {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "WorkflowTriggerIsThrottled",
                "Rate limit is exceeded. Try again in 1 seconds.",
            );
        }
        flow.recent.push_back(now);
        match envelope_contract().check(method, path, body) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(message)) => {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "TriggerRequestMethodNotValid",
                    &message,
                )
            }
            Err(Breach::Invalid(problems)) => {
                return invalid(problems.iter().map(ToString::to_string).collect())
            }
        }
        if size > MESSAGE_LIMIT_BYTES {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MessageSizeTooBig",
                &format!("The message is {size} bytes; Teams takes at most {MESSAGE_LIMIT_BYTES}."),
            );
        }
        let attachments = body["attachments"].as_array().cloned().unwrap_or_default();
        let mut problems = Vec::new();
        for (index, attachment) in attachments.iter().enumerate() {
            let card = &attachment["content"];
            for problem in card_schema().validate(card) {
                problems.push(format!("attachments[{index}].content.{problem}"));
            }
            if !card["version"].as_str().is_some_and(is_known_version) {
                problems.push(format!(
                    "attachments[{index}].content.version: {} is not a card version Teams renders (1.0 to 1.5)",
                    card["version"]
                ));
            }
        }
        if !problems.is_empty() {
            return invalid(problems);
        }
        flow.posts.extend(
            attachments
                .into_iter()
                .map(|attachment| attachment["content"].clone()),
        );
        let run = format!("0858{:016}CU{:02}", self.next_run, self.next_run % 100);
        self.next_run += 1;
        (StatusCode::ACCEPTED, json!(run))
    }
}

fn invalid(problems: Vec<String>) -> (StatusCode, Value) {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
        &format!("The request content is not valid: {}", problems.join("; ")),
    )
}

/// Whether `version` is an Adaptive Card version from 1.0 to the newest the schema knows.
fn is_known_version(version: &str) -> bool {
    let Some((major, minor)) = version.split_once('.') else {
        return false;
    };
    match (major.parse::<u64>(), minor.parse::<u64>()) {
        (Ok(major), Ok(minor)) => major == 1 && (major, minor) <= NEWEST_CARD,
        _ => false,
    }
}

// === the conformance suite's view ===

/// The flow the simulated environment has for the conformance suite (not a real one).
const SIMULATED_FLOW: &str = "5c7a2f0e9b6d4e1f8a3c2b1d0e9f8a7b";
const SIMULATED_SIG: &str = "simulated-teams-flow-signature-3f9c";

impl Simulation for super::Teams {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let teams = FakeTeams::start(addr).await?;
            teams.add_flow(SIMULATED_FLOW, SIMULATED_SIG);
            Ok(Box::new(teams) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeTeams {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        format!(
            "{}/powerautomate/automations/direct/workflows/{SIMULATED_FLOW}/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIMULATED_SIG}",
            self.server.url()
        )
    }

    fn settings(&self, secret: &str) -> String {
        format!("workflow_url = {secret}")
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        format!(
            "{}/powerautomate/automations/direct/workflows",
            self.server.url()
        )
    }

    fn about(&self) -> String {
        "a channel's Workflows flow: cards checked against the Adaptive Card schema, posted to the channel".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["attachments"][0]["content"]["body"][0]["items"][0]["text"]
            .as_str()
            .map(|title| format!("{title:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            502,
            &[],
            json!({"error": {"code": "BadGateway", "message": "The service is temporarily unavailable."}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": {"code": "DirectApiAuthorizationRequired", "message": "The request must be authenticated only by Shared Access scheme."}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": {"code": "WorkflowTriggerIsThrottled", "message": "Rate limit is exceeded. Try again in 1 seconds."}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"error": {"code": "InvalidRequestContent", "message": "The request content is not valid: attachments[0].content.body[0].type: must be one of [\"TextBlock\"]"}}),
            ),
            "The request content is not valid",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_schema_loads_and_judges_cards() {
        let schema = card_schema();
        let good = json!({"type": "AdaptiveCard", "version": "1.4", "body": [
            {"type": "TextBlock", "text": "hi", "weight": "Bolder", "wrap": true},
            {"type": "FactSet", "facts": [{"title": "Wedding", "value": "2027-06-12"}]}
        ], "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://x.example"}]});
        assert_eq!(schema.validate(&good), vec![]);
        let unknown_property = json!({"type": "AdaptiveCard", "version": "1.4", "body": [
            {"type": "TextBlock", "text": "hi", "colour": "red"}
        ]});
        assert_eq!(
            schema
                .validate(&unknown_property)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["body[0].colour: is not a known field"]
        );
        let fact_without_value = json!({"type": "AdaptiveCard", "version": "1.4", "body": [
            {"type": "FactSet", "facts": [{"title": "Wedding"}]}
        ]});
        assert!(!schema.validate(&fact_without_value).is_empty());
        let open_url_without_url = json!({"type": "AdaptiveCard", "version": "1.4", "body": [],
            "actions": [{"type": "Action.OpenUrl", "title": "Open"}]});
        assert!(!schema.validate(&open_url_without_url).is_empty());
    }

    #[test]
    fn card_versions_are_from_1_0_to_1_5() {
        assert!(is_known_version("1.0"));
        assert!(is_known_version("1.5"));
        assert!(!is_known_version("1.6"));
        assert!(!is_known_version("2.0"));
        assert!(!is_known_version("latest"));
    }
}
