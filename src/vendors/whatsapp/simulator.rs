//! The WhatsApp Cloud API for one business, behaving as Meta's documentation and published
//! OpenAPI description say:
//!
//! - the Bearer token checked (401, Graph error 190); an unknown phone number id refused (100);
//! - every message checked against `contract.json` (400, error 100 with `error_data.details`);
//! - templates looked up by name and language (404, 132001) and their body variables counted
//!   (400, 132000);
//! - the 24-hour window kept per person from what they send ([`FakeWhatsApp::person_writes`]):
//!   free text or buttons to someone outside it are taken (200) and then fail, as WhatsApp's do,
//!   with error 131047 reported in the message's status;
//! - once held to limits, the pair rate (one message every 6 seconds to one person; 400, 131056)
//!   and 80 messages a second per number (429, 130429);
//! - Meta's webhook: people's messages, button presses and message statuses posted to Herald,
//!   signed `X-Hub-Signature-256` with the app secret.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{json, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::inbound::hex_hmac_sha256;
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const PAIR_PERIOD: Duration = Duration::from_secs(6);
const NUMBER_LIMIT: usize = 80;
const WINDOW_SECONDS: u64 = 24 * 3600;

pub struct FakeWhatsApp {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Business>>,
    client: reqwest::Client,
}

struct Business {
    /// Makes this simulator's message ids its own (the port it listens on).
    instance: u16,
    token: String,
    numbers: BTreeMap<String, String>,
    /// (name, language) -> how many body variables.
    templates: BTreeMap<(String, String), usize>,
    /// wa_id -> when the person last wrote.
    last_inbound: BTreeMap<String, u64>,
    messages: Vec<Value>,
    last_to: BTreeMap<String, Instant>,
    recent: VecDeque<Instant>,
    next_id: u64,
    held_to_limits: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Business>>,
    recorder: Recorder,
    faults: Faults,
}

fn whatsapp_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn graph_error(
    status: StatusCode,
    code: u64,
    message: &str,
    details: Option<&str>,
) -> (StatusCode, Value) {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEfGhIjK"});
    if let Some(details) = details {
        error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
    }
    (status, json!({"error": error}))
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl FakeWhatsApp {
    pub async fn start(addr: std::net::SocketAddr, token: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Business {
            instance: 0,
            token: token.to_owned(),
            numbers: BTreeMap::new(),
            templates: BTreeMap::new(),
            last_inbound: BTreeMap::new(),
            messages: Vec::new(),
            last_to: BTreeMap::new(),
            recent: VecDeque::new(),
            next_id: 1,
            held_to_limits: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/v23.0/{*rest}", any(handle))
            .with_state(AppState {
                state: state.clone(),
                recorder: recorder.clone(),
                faults: faults.clone(),
            });
        let server = Server::start(app, addr, faults.clone()).await?;
        state.lock().expect("whatsapp lock").instance = server.addr.port();
        Ok(Self {
            server,
            recorder,
            faults,
            state,
            client: reqwest::Client::new(),
        })
    }

    /// The Graph API with its version, as Herald's `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/v23.0", self.server.url())
    }

    /// A business phone number the token may send from.
    pub fn add_number(&self, phone_number_id: &str, display: &str) {
        self.lock()
            .numbers
            .insert(phone_number_id.to_owned(), display.to_owned());
    }

    /// An approved template with `variables` body variables.
    pub fn approve_template(&self, name: &str, language: &str, variables: usize) {
        self.lock()
            .templates
            .insert((name.to_owned(), language.to_owned()), variables);
    }

    /// Every message sent, with the simulator's view of it: `id`, `to`, `type`, the request's
    /// `body`, and `status` (`accepted`, or `failed` with `error` when it left a closed window).
    pub fn messages(&self) -> Vec<Value> {
        self.lock().messages.clone()
    }

    /// A person writes `text` to the number (replying to `context`, a message id, when given):
    /// their window opens and Meta's webhook posts it to `target`, signed with `app_secret`.
    /// Answers the status Herald gave.
    pub async fn person_writes(
        &self,
        target: &str,
        app_secret: &str,
        phone_number_id: &str,
        from: &str,
        text: &str,
        context: Option<&str>,
    ) -> u16 {
        let mut message = json!({"type": "text", "text": {"body": text}});
        if let Some(context) = context {
            message["context"] = json!({"from": "15550001234", "id": context});
        }
        self.post_message(target, app_secret, phone_number_id, from, message)
            .await
    }

    /// A person presses a reply button (`id`) on message `context`.
    pub async fn person_presses(
        &self,
        target: &str,
        app_secret: &str,
        phone_number_id: &str,
        from: &str,
        id: &str,
        context: &str,
    ) -> u16 {
        let message = json!({
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": id, "title": "Acknowledge"}},
            "context": {"from": "15550001234", "id": context},
        });
        self.post_message(target, app_secret, phone_number_id, from, message)
            .await
    }

    /// Meta reports a message's status (`delivered`, `read`...) to the webhook.
    pub async fn report_status(
        &self,
        target: &str,
        app_secret: &str,
        phone_number_id: &str,
        wamid: &str,
        status: &str,
    ) -> u16 {
        let recipient = self
            .lock()
            .messages
            .iter()
            .find(|message| message["id"] == wamid)
            .and_then(|message| message["to"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001234", "phone_number_id": phone_number_id},
            "statuses": [{"id": wamid, "status": status, "timestamp": epoch().to_string(), "recipient_id": recipient}],
        });
        self.post_webhook(target, app_secret, value).await
    }

    async fn post_message(
        &self,
        target: &str,
        app_secret: &str,
        phone_number_id: &str,
        from: &str,
        mut message: Value,
    ) -> u16 {
        let now = epoch();
        self.lock().last_inbound.insert(from.to_owned(), now);
        let id = {
            let mut business = self.lock();
            business.next_id += 1;
            format!("wamid.IN{}{:012}", business.instance, business.next_id)
        };
        message["from"] = json!(from);
        message["id"] = json!(id);
        message["timestamp"] = json!(now.to_string());
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001234", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": "Planner"}, "wa_id": from}],
            "messages": [message],
        });
        self.post_webhook(target, app_secret, value).await
    }

    async fn post_webhook(&self, target: &str, app_secret: &str, value: Value) -> u16 {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
        })
        .to_string();
        let signature = format!("sha256={}", hex_hmac_sha256(app_secret, body.as_bytes()));
        self.client
            .post(target)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Business> {
        self.state.lock().expect("whatsapp lock")
    }
}

async fn handle(
    State(app): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = fields_of(uri.query().unwrap_or_default().as_bytes());
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
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
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let (status, answer) = app.state.lock().expect("whatsapp lock").answer(
        method.as_str(),
        uri.path(),
        &bearer,
        &query,
        &parsed,
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    let mut response = (status, axum::Json(answer)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

impl Business {
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        query: &Value,
        body: &Value,
    ) -> (StatusCode, Value) {
        if bearer != self.token {
            return graph_error(
                StatusCode::UNAUTHORIZED,
                190,
                "Invalid OAuth access token - Cannot parse access token",
                None,
            );
        }
        let segments: Vec<&str> = path.trim_start_matches("/v23.0/").split('/').collect();
        let number = segments[0];
        if !self.numbers.contains_key(number) {
            return graph_error(
                StatusCode::BAD_REQUEST,
                100,
                &format!("Unsupported post request. Object with ID '{number}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"),
                None,
            );
        }
        let checked = if method == "GET" { query } else { body };
        match whatsapp_contract().check(method, path, checked) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(message)) => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    100,
                    "Unsupported request",
                    Some(&message),
                )
            }
            Err(Breach::Invalid(problems)) => {
                let details: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    100,
                    "(#100) Invalid parameter",
                    Some(&details.join("; ")),
                );
            }
        }
        match (method, segments.get(1)) {
            ("GET", None) => (
                StatusCode::OK,
                json!({"display_phone_number": self.numbers[number], "verified_name": "Golden Hour Weddings", "quality_rating": "GREEN", "id": number}),
            ),
            ("POST", Some(&"messages")) => self.send(body),
            _ => graph_error(StatusCode::BAD_REQUEST, 100, "Unsupported request", None),
        }
    }

    fn send(&mut self, body: &Value) -> (StatusCode, Value) {
        let to = body["to"].as_str().unwrap_or_default();
        let wa_id: String = to.chars().filter(char::is_ascii_digit).collect();
        let kind = body["type"].as_str().unwrap_or_default().to_owned();
        if kind == "template" {
            let template = &body["template"];
            let key = (
                template["name"].as_str().unwrap_or_default().to_owned(),
                template["language"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            let Some(expected) = self.templates.get(&key).copied() else {
                return graph_error(
                    StatusCode::NOT_FOUND,
                    132001,
                    "Template name does not exist in the translation",
                    Some(&format!(
                        "template name ({}) does not exist in {}",
                        key.0, key.1
                    )),
                );
            };
            let given = template["components"][0]["parameters"]
                .as_array()
                .map_or(0, Vec::len);
            if given != expected {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    132000,
                    "Number of parameters does not match the expected number of params",
                    Some(&format!("body: number of localizable_params ({given}) does not match the expected number of params ({expected})")),
                );
            }
        }
        let now = Instant::now();
        if self.held_to_limits {
            if self
                .last_to
                .get(&wa_id)
                .is_some_and(|at| now.duration_since(*at) < PAIR_PERIOD)
            {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    131056,
                    "(Business Account, Consumer Account) pair rate limit hit",
                    Some("Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."),
                );
            }
            while self
                .recent
                .front()
                .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= NUMBER_LIMIT {
                return graph_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    130429,
                    "Rate limit hit",
                    None,
                );
            }
        }
        self.recent.push_back(now);
        self.last_to.insert(wa_id.clone(), now);
        self.next_id += 1;
        let id = format!("wamid.HBgL{}{:012}", self.instance, self.next_id);
        let window_open = self
            .last_inbound
            .get(&wa_id)
            .is_some_and(|at| epoch().saturating_sub(*at) < WINDOW_SECONDS);
        let mut record =
            json!({"id": id, "to": wa_id, "type": kind, "body": body, "status": "accepted"});
        if kind != "template" && !window_open {
            record["status"] = json!("failed");
            record["error"] = json!({"code": 131047, "title": "Re-engagement message", "message": "More than 24 hours have passed since the recipient last replied to the sender number."});
        }
        self.messages.push(record);
        (
            StatusCode::OK,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}], "messages": [{"id": id}]}),
        )
    }
}

// === the conformance suite's view ===

/// The business the simulated API has for the conformance suite (not a real one).
const SIMULATED_TOKEN: &str = "EAAGsimulatedWhatsAppSystemUserToken42";
const SIMULATED_NUMBER: &str = "106540352242922";

impl Simulation for super::WhatsApp {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let whatsapp = FakeWhatsApp::start(addr, SIMULATED_TOKEN).await?;
            whatsapp.add_number(SIMULATED_NUMBER, "+44 7700 900000");
            whatsapp.approve_template("wedding_alert", "en_GB", 2);
            Ok(Box::new(whatsapp) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeWhatsApp {
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
            "access_token = {secret}, phone_number_id = \"{SIMULATED_NUMBER}\", to = [\"+447700900123\"], template = {{ name = \"wedding_alert\", language = \"en_GB\" }}, api_url = \"{}\"",
            self.api_url()
        )
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        self.api_url()
    }

    fn about(&self) -> String {
        "a business number: templates, the 24-hour window, the pair rate, Meta's webhook".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        let body = &request.body;
        match body["type"].as_str() {
            Some("template") => format!(
                "template {}",
                body["template"]["name"].as_str().unwrap_or_default()
            ),
            Some(kind) => format!("{kind} to {}", body["to"].as_str().unwrap_or_default()),
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
            json!({"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1, "is_transient": true, "fbtrace_id": "AbCdEfGhIjK"}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": {"message": "Error validating access token: Session has expired", "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "AbCdEfGhIjK"}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": {"message": "Rate limit hit", "type": "OAuthException", "code": 130429, "fbtrace_id": "AbCdEfGhIjK"}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                404,
                &[],
                json!({"error": {"message": "Template name does not exist in the translation", "type": "OAuthException", "code": 132001, "error_data": {"messaging_product": "whatsapp", "details": "template name (wedding_alert) does not exist in en_GB"}, "fbtrace_id": "AbCdEfGhIjK"}}),
            ),
            "Template name does not exist in the translation",
        )
    }
}
