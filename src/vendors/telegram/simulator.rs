//! Telegram's Bot API for what the Telegram connector calls, behaving as the Bot API
//! documentation (core.telegram.org/bots/api) and the bot FAQ say:
//!
//! - `POST /bot<token>/<method>`: a wrong token is 401 "Unauthorized"; every body is checked
//!   against `contract.json` first (400 "Bad Request: ..." naming the field);
//! - `sendMessage` into the chats the bot is in (400 "chat not found" otherwise) with its text
//!   parsed as HTML the way Telegram parses it: only Telegram's tags, and a tag Telegram does not
//!   know is "can't parse entities"; at most 4,096 characters once parsed; callback data of 1-64
//!   bytes; the stored message keeps its text as people see it and its keyboard;
//! - about one message a second into a chat and 20 a minute into a group (negative ids), refused,
//!   once held to them, with 429 and `parameters.retry_after`;
//! - `setWebhook` with a secret token, and people using the chat: a button pressed
//!   ([`FakeTelegram::press_button`]) or a reply ([`FakeTelegram::reply`]) sent as an Update with
//!   `X-Telegram-Bot-Api-Secret-Token`; `answerCallbackQuery` recorded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{json, Value};

use crate::sandbox::contract::{load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// Telegram's tags in HTML parse mode.
const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
];

pub struct FakeTelegram {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Bot>>,
}

struct Bot {
    token: String,
    chats: BTreeMap<String, VecDeque<Instant>>,
    messages: BTreeMap<i64, Value>,
    next_message: i64,
    next_update: i64,
    webhook: Option<(String, String)>,
    answered_callbacks: Vec<Value>,
    held_to_limits: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Bot>>,
    recorder: Recorder,
    faults: Faults,
}

fn telegram_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn refused(code: u16, description: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

fn ok(result: Value) -> (StatusCode, Value) {
    (StatusCode::OK, json!({"ok": true, "result": result}))
}

impl FakeTelegram {
    /// Starts the Bot API for the bot whose token is `token`.
    pub async fn start(addr: std::net::SocketAddr, token: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Bot {
            token: token.to_owned(),
            chats: BTreeMap::new(),
            messages: BTreeMap::new(),
            next_message: 101,
            next_update: 500_000_001,
            webhook: None,
            answered_callbacks: Vec::new(),
            held_to_limits: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/{bot}/{method}", post(handle))
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

    /// The Bot API's address, Herald's `api_url`.
    pub fn api_url(&self) -> String {
        self.server.url()
    }

    /// Adds the bot to a chat.
    pub fn add_chat(&self, chat_id: &str) {
        self.lock()
            .chats
            .insert(chat_id.to_owned(), VecDeque::new());
    }

    pub fn messages(&self) -> Vec<Value> {
        self.lock().messages.values().cloned().collect()
    }

    /// The address and secret token `setWebhook` registered.
    pub fn webhook(&self) -> Option<(String, String)> {
        self.lock().webhook.clone()
    }

    /// The `answerCallbackQuery` calls the bot made.
    pub fn answered_callbacks(&self) -> Vec<Value> {
        self.lock().answered_callbacks.clone()
    }

    /// `username` presses button `index` of message `message_id`: the Update goes to the
    /// webhook (with `secret`, normally the registered one). Answers the status it got.
    pub async fn press_button(
        &self,
        message_id: i64,
        index: usize,
        username: &str,
        secret: &str,
    ) -> u16 {
        let update = {
            let mut bot = self.lock();
            let message = bot
                .messages
                .get(&message_id)
                .cloned()
                .unwrap_or(Value::Null);
            let data =
                message["reply_markup"]["inline_keyboard"][0][index]["callback_data"].clone();
            let update_id = bot.next_update();
            json!({
                "update_id": update_id,
                "callback_query": {
                    "id": format!("cq-{update_id}"),
                    "from": {"id": 7_000_001, "is_bot": false, "first_name": username, "username": username},
                    "message": message,
                    "chat_instance": "-5021",
                    "data": data,
                }
            })
        };
        self.send_update(&update, secret).await
    }

    /// `username` replies `text` to message `message_id`.
    pub async fn reply(&self, message_id: i64, username: &str, text: &str, secret: &str) -> u16 {
        let update = {
            let mut bot = self.lock();
            let original = bot
                .messages
                .get(&message_id)
                .cloned()
                .unwrap_or(Value::Null);
            let update_id = bot.next_update();
            json!({
                "update_id": update_id,
                "message": {
                    "message_id": update_id,
                    "from": {"id": 7_000_002, "is_bot": false, "first_name": username, "username": username},
                    "chat": original["chat"],
                    "date": 1_800_000_000,
                    "text": text,
                    "reply_to_message": original,
                }
            })
        };
        self.send_update(&update, secret).await
    }

    async fn send_update(&self, update: &Value, secret: &str) -> u16 {
        let Some((url, _)) = self.webhook() else {
            return 0;
        };
        match reqwest::Client::new()
            .post(url)
            .header("x-telegram-bot-api-secret-token", secret)
            .json(update)
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bot> {
        self.state.lock().expect("telegram lock")
    }
}

async fn handle(
    State(app): State<AppState>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    // The token is the credential: recordings name the method only.
    let path = format!("/bot<token>/{method}");
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder.record("POST", &path, &headers, parsed, status);
        return response;
    }
    let (status, answer) = app
        .state
        .lock()
        .expect("telegram lock")
        .answer(&bot, &method, &parsed);
    app.recorder.record("POST", &path, &headers, parsed, status);
    (status, axum::Json(answer)).into_response()
}

impl Bot {
    fn next_update(&mut self) -> i64 {
        self.next_update += 1;
        self.next_update
    }

    fn answer(&mut self, bot: &str, method: &str, body: &Value) -> (StatusCode, Value) {
        if bot.strip_prefix("bot") != Some(self.token.as_str()) {
            return refused(401, "Unauthorized");
        }
        match telegram_contract().check("POST", &format!("/bot{{token}}/{method}"), body) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(_)) => return refused(404, "Not Found"),
            Err(Breach::Invalid(problems)) => {
                let first = &problems[0];
                return refused(
                    400,
                    &format!("Bad Request: {}: {}", first.at, first.message),
                );
            }
        }
        match method {
            "getMe" => ok(
                json!({"id": 6_000_000_001_i64, "is_bot": true, "first_name": "Wedding desk", "username": "wedding_desk_bot"}),
            ),
            "sendMessage" => self.send_message(body),
            "setWebhook" => {
                self.webhook = Some((
                    body["url"].as_str().unwrap_or_default().to_owned(),
                    body["secret_token"].as_str().unwrap_or_default().to_owned(),
                ));
                ok(json!(true))
            }
            "answerCallbackQuery" => {
                self.answered_callbacks.push(body.clone());
                ok(json!(true))
            }
            _ => refused(404, "Not Found"),
        }
    }

    fn send_message(&mut self, body: &Value) -> (StatusCode, Value) {
        let chat = match &body["chat_id"] {
            Value::String(chat) => chat.clone(),
            Value::Number(chat) => chat.to_string(),
            _ => String::new(),
        };
        let held = self.held_to_limits;
        let Some(recent) = self.chats.get_mut(&chat) else {
            return refused(400, "Bad Request: chat not found");
        };
        let (limit, period) = if chat.starts_with('-') {
            (20, Duration::from_secs(60))
        } else {
            (1, Duration::from_secs(1))
        };
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= period)
        {
            recent.pop_front();
        }
        if held && recent.len() >= limit {
            let wait = recent.front().map_or(1, |first| {
                period
                    .saturating_sub(now.duration_since(*first))
                    .as_secs()
                    .max(1)
            });
            return (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {wait}"), "parameters": {"retry_after": wait}}),
            );
        }
        let text = body["text"].as_str().unwrap_or_default();
        let shown = match body["parse_mode"].as_str() {
            Some("HTML") => match parse_html(text) {
                Ok(shown) => shown,
                Err(problem) => {
                    return refused(
                        400,
                        &format!("Bad Request: can't parse entities: {problem}"),
                    )
                }
            },
            _ => text.to_owned(),
        };
        if shown.trim().is_empty() {
            return refused(400, "Bad Request: message text is empty");
        }
        if shown.chars().count() > 4096 {
            return refused(400, "Bad Request: message is too long");
        }
        for button in body["reply_markup"]["inline_keyboard"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row.as_array().into_iter().flatten())
        {
            if let Some(data) = button["callback_data"].as_str() {
                if data.is_empty() || data.len() > 64 {
                    return refused(400, "Bad Request: BUTTON_DATA_INVALID");
                }
            }
        }
        recent.push_back(now);
        let id = self.next_message;
        self.next_message += 1;
        let mut message = json!({
            "message_id": id,
            "from": {"id": 6_000_000_001_i64, "is_bot": true, "first_name": "Wedding desk", "username": "wedding_desk_bot"},
            "chat": {"id": chat.parse::<i64>().map_or(json!(chat), |id| json!(id)), "type": if chat.starts_with('-') { "supergroup" } else { "private" }},
            "date": 1_800_000_000,
            "text": shown,
        });
        if body["reply_markup"].is_object() {
            message["reply_markup"] = body["reply_markup"].clone();
        }
        self.messages.insert(id, message.clone());
        ok(message)
    }
}

/// Text as Telegram shows it after parsing `html`: tags removed, entities unescaped; an error
/// (as Telegram words it) for a tag Telegram does not know or a `<` that starts none.
fn parse_html(html: &str) -> Result<String, String> {
    let mut shown = String::new();
    let mut rest = html;
    while let Some(at) = rest.find(['<', '&']) {
        shown.push_str(&rest[..at]);
        let offset = html.len() - rest.len() + at;
        let tail = &rest[at..];
        if tail.starts_with('<') {
            let Some(end) = tail.find('>') else {
                return Err(format!("Unclosed start tag at byte offset {offset}"));
            };
            let name = tail[1..end]
                .trim_start_matches('/')
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !TAGS.contains(&name.as_str()) {
                return Err(format!(
                    "Unsupported start tag \"{name}\" at byte offset {offset}"
                ));
            }
            rest = &tail[end + 1..];
        } else {
            let entity = [
                ("&lt;", '<'),
                ("&gt;", '>'),
                ("&amp;", '&'),
                ("&quot;", '"'),
            ]
            .into_iter()
            .find(|(name, _)| tail.starts_with(name));
            match entity {
                Some((name, c)) => {
                    shown.push(c);
                    rest = &tail[name.len()..];
                }
                None => {
                    shown.push('&');
                    rest = &tail[1..];
                }
            }
        }
    }
    shown.push_str(rest);
    Ok(shown)
}

// === the conformance suite's view ===

/// The bot token and chat the simulated Bot API accepts (not real ones).
const SIMULATED_TOKEN: &str = "6000000001:AAsimulated-telegram-bot-token-3c4d";
const SIMULATED_CHAT: &str = "-1001234567890";

impl Simulation for super::Telegram {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let telegram = FakeTelegram::start(addr, SIMULATED_TOKEN).await?;
            telegram.add_chat(SIMULATED_CHAT);
            Ok(Box::new(telegram) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeTelegram {
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
            "bot_token = {secret}, chat_id = \"{SIMULATED_CHAT}\", api_url = \"{}\"",
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
        "a bot in the team's group chat: messages, button presses, replies".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["text"]
            .as_str()
            .map(|text| format!("{text:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            502,
            &[],
            json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[],
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"ok": false, "error_code": 400, "description": "Bad Request: can't parse entities: Unsupported start tag \"p\" at byte offset 0"}),
            ),
            "can't parse entities",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_parsed_as_telegram_parses_it() {
        assert_eq!(
            parse_html("<b>Moved</b>\nTom &amp; Jo &lt;3").as_deref(),
            Ok("Moved\nTom & Jo <3")
        );
        assert!(parse_html("<p>hi</p>")
            .unwrap_err()
            .contains("Unsupported start tag \"p\""));
        assert!(parse_html("3 < 4").is_err());
    }
}
