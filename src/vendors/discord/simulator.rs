//! Discord's channel webhooks for what the Discord connector calls, behaving as Discord's API
//! documentation and published OpenAPI description say:
//!
//! - every request (under `/api/v10`) checked against `contract.json` first (400 "Invalid Form
//!   Body", code 50035, with Discord's nested `errors` naming the field);
//! - the webhook's token in the path (401 "Invalid Webhook Token", 50027; 404 "Unknown Webhook",
//!   10015); an empty message (50006), embeds over 6,000 characters in all, and names containing
//!   "discord" or "clyde" refused as Discord refuses them;
//! - `?wait=true` answered with the message (200), without it 204; mentions resolved as Discord
//!   resolves them: a ping happens only where `allowed_mentions` allows it;
//! - each webhook's bucket (5 requests per 2 seconds) reported in `X-RateLimit-Limit`,
//!   `-Remaining`, `-Reset-After` and `-Bucket` on every answer and, once held to it, refused
//!   with 429 `{message, retry_after, global: false}` and `Retry-After`;
//! - a webhook message's flags limited to SUPPRESS_EMBEDS and SUPPRESS_NOTIFICATIONS (a silent
//!   message), kept with the message;
//! - messages read back with their reactions ([`FakeDiscord::react`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{json, Map, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, SchemaError, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const BUCKET_SIZE: usize = 5;
const BUCKET_PERIOD: Duration = Duration::from_secs(2);
const MAX_EMBED_CHARACTERS: usize = 6000;

pub struct FakeDiscord {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Guild>>,
}

struct Webhook {
    token: String,
    name: String,
    channel_id: String,
    recent: VecDeque<Instant>,
}

struct Guild {
    webhooks: BTreeMap<String, Webhook>,
    messages: BTreeMap<String, Value>,
    next_id: u64,
    held_to_limits: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Guild>>,
    recorder: Recorder,
    faults: Faults,
}

fn discord_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn error(status: StatusCode, code: u64, message: &str) -> (StatusCode, Value) {
    (status, json!({"message": message, "code": code}))
}

/// Discord's "Invalid Form Body" with its errors nested by field (`embeds.0.title._errors`).
fn invalid_form(problems: &[(String, String, String)]) -> (StatusCode, Value) {
    let mut errors = Value::Object(Map::new());
    for (at, code, message) in problems {
        let mut node = &mut errors;
        for part in at
            .replace('[', ".")
            .replace(']', "")
            .split('.')
            .filter(|part| !part.is_empty())
        {
            node = node
                .as_object_mut()
                .map(|object| object.entry(part.to_owned()).or_insert_with(|| json!({})))
                .expect("an object");
        }
        let list = node
            .as_object_mut()
            .map(|object| object.entry("_errors").or_insert_with(|| json!([])))
            .expect("an object");
        if let Some(list) = list.as_array_mut() {
            list.push(json!({"code": code, "message": message}));
        }
    }
    (
        StatusCode::BAD_REQUEST,
        json!({"message": "Invalid Form Body", "code": 50035, "errors": errors}),
    )
}

impl FakeDiscord {
    pub async fn start(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Guild {
            webhooks: BTreeMap::new(),
            messages: BTreeMap::new(),
            next_id: 1_300_000_000_000_000_001,
            held_to_limits: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/api/v10/{*rest}", any(handle))
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

    /// The API as Herald's `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v10", self.server.url())
    }

    /// Adds a webhook named `name` to channel `channel_id` with `id` and `token`, and answers
    /// the URL Discord shows for it.
    pub fn add_webhook(&self, id: &str, token: &str, name: &str, channel_id: &str) -> String {
        self.lock().webhooks.insert(
            id.to_owned(),
            Webhook {
                token: token.to_owned(),
                name: name.to_owned(),
                channel_id: channel_id.to_owned(),
                recent: VecDeque::new(),
            },
        );
        format!("https://discord.com/api/webhooks/{id}/{token}")
    }

    /// Every message the webhooks posted, as Discord answers them.
    pub fn messages(&self) -> Vec<Value> {
        self.lock().messages.values().cloned().collect()
    }

    /// A member reacts to a message with `emoji`.
    pub fn react(&self, message_id: &str, emoji: &str) {
        if let Some(message) = self.lock().messages.get_mut(message_id) {
            let reactions = message["reactions"].as_array_mut();
            if let Some(reactions) = reactions {
                match reactions.iter_mut().find(|r| r["emoji"]["name"] == emoji) {
                    Some(reaction) => {
                        reaction["count"] = json!(reaction["count"].as_u64().unwrap_or(0) + 1)
                    }
                    None => reactions.push(
                        json!({"emoji": {"id": null, "name": emoji}, "count": 1, "me": false}),
                    ),
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Guild> {
        self.state.lock().expect("discord lock")
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
    let (status, answer, limits) = app.state.lock().expect("discord lock").answer(
        method.as_str(),
        uri.path(),
        &query,
        &parsed,
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, axum::Json(answer)).into_response()
    };
    for (name, value) in limits {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

impl Guild {
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        query: &Value,
        body: &Value,
    ) -> (StatusCode, Value, Vec<(&'static str, String)>) {
        let segments: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
        let ["webhooks", id, token, rest @ ..] = segments.as_slice() else {
            let (status, body) = error(StatusCode::NOT_FOUND, 0, "404: Not Found");
            return (status, body, Vec::new());
        };
        let Some(webhook) = self.webhooks.get_mut(*id) else {
            let (status, body) = error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
            return (status, body, Vec::new());
        };
        if webhook.token != *token {
            let (status, body) = error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
            return (status, body, Vec::new());
        }
        // The webhook's bucket, reported on every answer.
        let now = Instant::now();
        while webhook
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= BUCKET_PERIOD)
        {
            webhook.recent.pop_front();
        }
        let reset_after = webhook.recent.front().map_or(BUCKET_PERIOD, |first| {
            BUCKET_PERIOD.saturating_sub(now.duration_since(*first))
        });
        let over = self.held_to_limits && webhook.recent.len() >= BUCKET_SIZE;
        if !over {
            webhook.recent.push_back(now);
        }
        let mut limits = vec![
            ("x-ratelimit-limit", BUCKET_SIZE.to_string()),
            (
                "x-ratelimit-remaining",
                BUCKET_SIZE.saturating_sub(webhook.recent.len()).to_string(),
            ),
            (
                "x-ratelimit-reset-after",
                format!("{:.3}", reset_after.as_secs_f64()),
            ),
            ("x-ratelimit-bucket", format!("webhook-{id}")),
        ];
        if over {
            limits.push(("retry-after", reset_after.as_secs().max(1).to_string()));
            return (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": "You are being rate limited.", "retry_after": reset_after.as_secs_f64(), "global": false}),
                limits,
            );
        }
        let checked = if method == "GET" { query } else { body };
        match discord_contract().check(method, path, checked) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(_)) => {
                let (status, body) =
                    error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed");
                return (status, body, limits);
            }
            Err(Breach::Invalid(problems)) => {
                let listed: Vec<(String, String, String)> = problems
                    .iter()
                    .map(|SchemaError { at, message }| {
                        (at.clone(), "BASE_TYPE_INVALID".to_owned(), message.clone())
                    })
                    .collect();
                let (status, body) = invalid_form(&listed);
                return (status, body, limits);
            }
        }
        let (webhook_name, channel) = (webhook.name.clone(), webhook.channel_id.clone());
        let (status, answer) = match (method, rest) {
            ("GET", []) => (
                StatusCode::OK,
                json!({"id": id, "type": 1, "name": webhook_name, "channel_id": channel, "guild_id": "1100000000000000001", "token": token}),
            ),
            ("GET", ["messages", message]) => match self.messages.get(*message) {
                Some(found) => (StatusCode::OK, found.clone()),
                None => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
            },
            ("POST", []) => self.execute(id, &channel, query, body),
            _ => error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed"),
        };
        (status, answer, limits)
    }

    fn execute(
        &mut self,
        webhook_id: &str,
        channel: &str,
        query: &Value,
        body: &Value,
    ) -> (StatusCode, Value) {
        let content = body["content"].as_str().unwrap_or_default();
        let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
        if content.trim().is_empty() && embeds.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                50006,
                "Cannot send an empty message",
            );
        }
        if let Some(name) = body["username"].as_str() {
            let lower = name.to_lowercase();
            if lower.contains("discord") || lower.contains("clyde") {
                return invalid_form(&[(
                    "username".into(),
                    "USERNAME_INVALID_CONTAINS".into(),
                    "Username cannot contain \"discord\"".into(),
                )]);
            }
        }
        let size: usize = embeds
            .iter()
            .map(|embed| {
                let text = |value: &Value| value.as_str().map_or(0, |text| text.chars().count());
                text(&embed["title"])
                    + text(&embed["description"])
                    + text(&embed["footer"]["text"])
                    + text(&embed["author"]["name"])
                    + embed["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|field| text(&field["name"]) + text(&field["value"]))
                        .sum::<usize>()
            })
            .sum();
        if size > MAX_EMBED_CHARACTERS {
            return invalid_form(&[(
                "embeds".into(),
                "MAX_EMBED_SIZE_EXCEEDED".into(),
                "Embed size exceeds maximum size of 6000".into(),
            )]);
        }
        // A webhook may set only SUPPRESS_EMBEDS (1 << 2) and SUPPRESS_NOTIFICATIONS (1 << 12).
        let flags = body["flags"].as_u64().unwrap_or(0);
        if flags & !((1 << 2) | (1 << 12)) != 0 {
            return invalid_form(&[(
                "flags".into(),
                "MESSAGE_FLAGS_INVALID".into(),
                "Invalid flags for a webhook message".into(),
            )]);
        }
        // Mentions: only what allowed_mentions allows pings (without it, everything parsed).
        let allowed = &body["allowed_mentions"];
        let parse: Vec<&str> = match allowed.get("parse").and_then(Value::as_array) {
            Some(parse) => parse.iter().filter_map(Value::as_str).collect(),
            None if allowed.is_object() => Vec::new(),
            None => vec!["users", "roles", "everyone"],
        };
        let allowed_roles: Vec<&str> = allowed["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mentioned_roles: Vec<String> = content
            .split("<@&")
            .skip(1)
            .filter_map(|rest| rest.split_once('>').map(|(id, _)| id.to_owned()))
            .filter(|role| parse.contains(&"roles") || allowed_roles.contains(&role.as_str()))
            .collect();
        let mention_everyone = parse.contains(&"everyone")
            && (content.contains("@everyone") || content.contains("@here"));
        let id = self.next_id.to_string();
        self.next_id += 1;
        let message = json!({
            "id": id,
            "type": 0,
            "channel_id": query["thread_id"].as_str().unwrap_or(channel),
            "webhook_id": webhook_id,
            "content": content,
            "embeds": embeds,
            "mention_roles": mentioned_roles,
            "mention_everyone": mention_everyone,
            "flags": flags,
            "author": {"id": webhook_id, "username": body["username"].as_str().unwrap_or("Captain Hook"), "bot": true},
            "reactions": [],
        });
        self.messages.insert(id, message.clone());
        if query["wait"] == "true" {
            (StatusCode::OK, message)
        } else {
            (StatusCode::NO_CONTENT, Value::Null)
        }
    }
}

// === the conformance suite's view ===

/// The webhook the simulated server has for the conformance suite (not a real one).
const SIMULATED_WEBHOOK_ID: &str = "1290000000000000042";
const SIMULATED_WEBHOOK_URL: &str =
    "https://discord.com/api/webhooks/1290000000000000042/simulated-discord-webhook-token-7a8b";

impl Simulation for super::Discord {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let discord = FakeDiscord::start(addr).await?;
            discord.add_webhook(
                SIMULATED_WEBHOOK_ID,
                "simulated-discord-webhook-token-7a8b",
                "Wedding desk",
                "1290000000000000001",
            );
            Ok(Box::new(discord) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeDiscord {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_WEBHOOK_URL.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!("webhook_url = {secret}, api_url = \"{}\"", self.api_url())
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        self.api_url()
    }

    fn about(&self) -> String {
        "a server's channel webhook: messages, reactions, its rate-limit bucket".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["embeds"][0]["title"]
            .as_str()
            .map(|title| format!("{title:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(502, &[], json!({"message": "502: Bad Gateway", "code": 0}))
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"message": "Invalid Webhook Token", "code": 50027}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[
                ("retry-after", "1"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", "1.000"),
            ],
            json!({"message": "You are being rate limited.", "retry_after": 1.0, "global": false}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"message": "Invalid Form Body", "code": 50035, "errors": {"embeds": {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}]}}}),
            ),
            "Embed size exceeds maximum size of 6000",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_errors_nest_as_discords_do() {
        let (_, body) = invalid_form(&[(
            "embeds[0].title".into(),
            "BASE_TYPE_MAX_LENGTH".into(),
            "Must be 256 or fewer in length.".into(),
        )]);
        assert_eq!(
            body["errors"],
            json!({"embeds": {"0": {"title": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}]}}}})
        );
    }

    #[test]
    fn the_contract_holds_discords_limits() {
        let contract = discord_contract();
        let path = "/api/v10/webhooks/1/t";
        assert_eq!(
            contract.check(
                "POST",
                path,
                &json!({"content": "hi", "allowed_mentions": {"parse": []}})
            ),
            Ok(())
        );
        assert!(matches!(
            contract.check(
                "POST",
                path,
                &json!({"embeds": [{"title": "x".repeat(257)}]})
            ),
            Err(Breach::Invalid(_))
        ));
        assert!(matches!(
            contract.check("POST", path, &json!({"content": "hi", "components": []})),
            Err(Breach::Invalid(_))
        ));
    }
}
