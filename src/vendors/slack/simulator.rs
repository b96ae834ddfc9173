//! A Slack Web API simulator for `chat.postMessage`: bot-token auth answered the way Slack does
//! (HTTP 200 with `ok:false` and `not_authed` / `invalid_auth`), every request checked against
//! Slack's published Web API spec (`invalid_arguments` naming the drift), channel lookup, the
//! Block Kit limits Herald relies on (`invalid_blocks`), and the per-channel message rate with a
//! real 429, `Retry-After` and `{"ok":false,"error":"ratelimited"}`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{json, Value};

use crate::sandbox::contract::{load_swagger_contract, Contract};
use crate::sandbox::ScriptedResponse;
use crate::sandbox::{Faults, RecordedRequest, Recorder, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const BLOCK_TYPES: &[&str] = &[
    "header",
    "section",
    "context",
    "actions",
    "divider",
    "image",
    "rich_text",
    "input",
    "file",
    "video",
];

pub struct FakeSlack {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<SlackState>>,
}

struct SlackState {
    token: String,
    /// Channel name (without '#') to channel id.
    channels: HashMap<String, String>,
    /// Messages per channel id: (ts, text, blocks).
    messages: HashMap<String, Vec<(String, String, Value)>>,
    /// Thread replies by parent ts: (ts, user or bot id, text, from a bot).
    replies: HashMap<String, Vec<(String, String, String, bool)>>,
    /// Reactions by message ts: (name, users).
    reactions: HashMap<String, Vec<(String, Vec<String>)>>,
    /// Scheduled messages: (id, channel id, post_at, text, blocks).
    scheduled: Vec<(String, String, u64, String, Value)>,
    next_ts: u64,
    /// Whether Slack's per-channel message rate is enforced ([`FakeSlack::hold_to_channel_rate`]).
    holds_channel_rate: bool,
    /// Per channel id: the messages it may still take at once, and when that was counted.
    channel_allowance: HashMap<String, (f64, Instant)>,
    /// The scopes the bot token was granted.
    scopes: Vec<String>,
    /// Channels (ids) the bot is not a member of: it may post there only with
    /// `chat:write.public`, and reads nothing there.
    outside: Vec<String>,
    /// Requests per minute each Web API method allows (its tier); and when it was called.
    method_limits: HashMap<String, usize>,
    method_calls: HashMap<String, VecDeque<Instant>>,
    /// The most messages a `conversations.replies` page holds, and its default.
    max_reply_page: usize,
}

/// The tier of each method the simulator serves through [`web_method`], as requests per
/// minute (Tier 3: 50+). `chat.postMessage` is Slack's special tier: about one message per
/// second per channel, enforced on its own; `auth.test` is not limited here.
/// `chat.scheduleMessage`: at most this many messages to one channel within a window of this
/// many seconds.
const SCHEDULED_PER_WINDOW: usize = 30;
const SCHEDULE_WINDOW: u64 = 300;

/// `conversations.replies` pages: Slack's default and most, and what it allows an app
/// distributed outside the Marketplace.
const REPLY_PAGE: usize = 1000;
const NON_MARKETPLACE_PAGE: usize = 15;

const METHOD_TIERS: &[(&str, usize)] = &[
    ("/api/chat.scheduleMessage", 50),
    ("/api/reactions.get", 50),
    ("/api/conversations.replies", 50),
    ("/api/team.info", 50),
];

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<SlackState>>,
    recorder: Recorder,
    faults: Faults,
}

impl FakeSlack {
    /// Starts a workspace whose bot token is `token` and which has the given channels.
    pub async fn start(
        addr: std::net::SocketAddr,
        token: &str,
        channels: &[&str],
    ) -> std::io::Result<Self> {
        let channels = channels
            .iter()
            .enumerate()
            .map(|(index, name)| {
                (
                    name.trim_start_matches('#').to_owned(),
                    format!("C{:08}", index + 1),
                )
            })
            .collect();
        let state = Arc::new(Mutex::new(SlackState {
            token: token.to_owned(),
            channels,
            messages: HashMap::new(),
            replies: HashMap::new(),
            reactions: HashMap::new(),
            scheduled: Vec::new(),
            next_ts: 1_767_225_600_000_100,
            holds_channel_rate: false,
            outside: Vec::new(),
            channel_allowance: HashMap::new(),
            scopes: [
                "chat:write",
                "chat:write.public",
                "reactions:read",
                "channels:history",
                "team:read",
            ]
            .map(str::to_owned)
            .to_vec(),
            method_limits: METHOD_TIERS
                .iter()
                .map(|(method, limit)| (method.to_string(), *limit))
                .collect(),
            method_calls: HashMap::new(),
            max_reply_page: REPLY_PAGE,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route(
                "/api/auth.test",
                axum::routing::get(auth_test).post(auth_test),
            )
            .route("/api/reactions.get", axum::routing::get(reactions_get))
            .route("/api/team.info", axum::routing::get(team_info))
            .route(
                "/api/conversations.replies",
                axum::routing::get(conversations_replies),
            )
            .route("/api/chat.scheduleMessage", post(schedule_message))
            .with_state(app_state);
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
        })
    }

    /// The base URL to configure as the Slack connector's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/api", self.server.url())
    }

    /// Holds every channel to Slack's message rate from now on: about one message per second,
    /// short bursts tolerated (a bucket of [`ChannelRate::BURST`]), answering 429 + Retry-After
    /// beyond it.
    pub fn hold_to_channel_rate(&self) {
        self.state.lock().expect("slack lock").holds_channel_rate = true;
    }

    /// The messages posted to a channel (by name), as (ts, text, blocks).
    pub fn messages(&self, channel: &str) -> Vec<(String, String, Value)> {
        let state = self.state.lock().expect("slack lock");
        let Some(id) = state.channel_id(channel) else {
            return Vec::new();
        };
        state.messages.get(&id).cloned().unwrap_or_default()
    }

    /// Clicks a button of the newest message in `channel` the way Slack does: a `block_actions`
    /// payload, form-encoded and signed with the app's signing secret at `timestamp` (Unix
    /// seconds), posted to the app's Request URL. Returns the status Herald answered.
    pub async fn click_button(
        &self,
        request_url: &str,
        signing_secret: &str,
        channel: &str,
        action_id: &str,
        user_id: &str,
        timestamp: u64,
    ) -> Result<u16, String> {
        let (channel_id, (ts, text, blocks)) = {
            let state = self.state.lock().expect("slack lock");
            let id = state
                .channels
                .get(channel.trim_start_matches('#'))
                .cloned()
                .ok_or("no such channel")?;
            let newest = state
                .messages
                .get(&id)
                .and_then(|m| m.last().cloned())
                .ok_or("no message in the channel")?;
            (id, newest)
        };
        let button = blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|block| block["type"] == "actions")
            .flat_map(|block| block["elements"].as_array().cloned().unwrap_or_default())
            .find(|element| element["action_id"] == action_id)
            .ok_or("the message has no such button")?;
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id, "team_id": "T0HERALD1"},
            "team": {"id": "T0HERALD1", "domain": "herald-sandbox"},
            "channel": {"id": channel_id, "name": channel.trim_start_matches('#')},
            "container": {"type": "message", "message_ts": ts, "channel_id": channel_id},
            "message": {"type": "message", "ts": ts, "text": text},
            "actions": [{
                "type": "button",
                "action_id": action_id,
                "block_id": "herald_actions",
                "value": button["value"],
                "action_ts": format!("{timestamp}.000100"),
            }],
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
            "response_url": format!("{}/actions/response", self.server.url()),
        });
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let signature = super::sign_slack_request(signing_secret, timestamp, body.as_bytes());
        let response = reqwest::Client::new()
            .post(request_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        Ok(response.status().as_u16())
    }

    /// A person reacts to a message (by its ts) with an emoji.
    pub fn add_reaction(&self, ts: &str, name: &str, user: &str) {
        let mut state = self.state.lock().expect("slack lock");
        let reactions = state.reactions.entry(ts.to_owned()).or_default();
        match reactions.iter_mut().find(|(existing, _)| existing == name) {
            Some((_, users)) => users.push(user.to_owned()),
            None => reactions.push((name.to_owned(), vec![user.to_owned()])),
        }
    }

    /// A person replies in a message's thread.
    pub fn add_reply(&self, parent_ts: &str, user: &str, text: &str) {
        let mut state = self.state.lock().expect("slack lock");
        state.next_ts += 1;
        let ts = format!(
            "{}.{:06}",
            state.next_ts / 1_000_000,
            state.next_ts % 1_000_000
        );
        state
            .replies
            .entry(parent_ts.to_owned())
            .or_default()
            .push((ts, user.to_owned(), text.to_owned(), false));
    }

    /// The control sequences Slack would act on (mentions, links) in the messages posted or
    /// scheduled in a channel (by name), in order.
    pub fn control_sequences(&self, channel: &str) -> Vec<String> {
        let state = self.state.lock().expect("slack lock");
        let Some(id) = state.channel_id(channel) else {
            return Vec::new();
        };
        let posted = state.messages.get(&id).into_iter().flatten();
        let scheduled = state
            .scheduled
            .iter()
            .filter(|(_, channel, ..)| *channel == id);
        posted
            .flat_map(|(_, text, blocks)| control_sequences(text, blocks))
            .chain(scheduled.flat_map(|(_, _, _, text, blocks)| control_sequences(text, blocks)))
            .collect()
    }

    /// The messages scheduled in a channel (by name), as (id, post_at, text, blocks).
    pub fn scheduled(&self, channel: &str) -> Vec<(String, u64, String, Value)> {
        let state = self.state.lock().expect("slack lock");
        let Some(id) = state.channel_id(channel) else {
            return Vec::new();
        };
        state
            .scheduled
            .iter()
            .filter(|s| s.1 == id)
            .map(|s| (s.0.clone(), s.2, s.3.clone(), s.4.clone()))
            .collect()
    }

    /// Takes the bot out of a channel (by name): Slack then answers `not_in_channel` to reading
    /// it, and to posting in it without `chat:write.public`.
    pub fn remove_bot_from(&self, channel: &str) {
        let mut state = self.state.lock().expect("slack lock");
        if let Some(id) = state.channel_id(channel) {
            state.outside.push(id);
        }
    }

    /// Grants the bot token exactly these scopes (methods needing others answer `missing_scope`).
    pub fn set_scopes(&self, scopes: &[&str]) {
        self.state.lock().expect("slack lock").scopes =
            scopes.iter().map(|scope| scope.to_string()).collect();
    }

    /// Makes the app one distributed commercially outside the Slack Marketplace: Slack then
    /// allows `conversations.replies` 1 request a minute and pages of at most 15 messages
    /// (`limit` defaults to 15 and is capped there).
    pub fn distribute_outside_marketplace(&self) {
        let mut state = self.state.lock().expect("slack lock");
        state.max_reply_page = NON_MARKETPLACE_PAGE;
        state
            .method_limits
            .insert("/api/conversations.replies".to_owned(), 1);
    }

    /// Sets how many requests per minute a Web API method (`team.info`) allows.
    pub fn set_method_limit(&self, method: &str, per_minute: usize) {
        self.state
            .lock()
            .expect("slack lock")
            .method_limits
            .insert(format!("/api/{method}"), per_minute);
    }

    /// Every request, whatever it was answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }
}

/// `reactions.get?channel=&timestamp=`: the reactions on a message.
async fn reactions_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    web_method(&app, "GET", "/api/reactions.get", &headers, query_fields(&query), |state, _| {
        if query.get("channel").is_some_and(|c| state.outside.contains(c)) {
            return json!({"ok": false, "error": "not_in_channel"});
        }
        let ts = query.get("timestamp").cloned().unwrap_or_default();
        let known = query.get("channel").and_then(|c| state.messages.get(c)).is_some_and(|m| m.iter().any(|(t, _, _)| *t == ts));
        if !known {
            return json!({"ok": false, "error": "message_not_found"});
        }
        let reactions: Vec<Value> = state
            .reactions
            .get(&ts)
            .into_iter()
            .flatten()
            .map(|(name, users)| json!({"name": name, "count": users.len(), "users": users}))
            .collect();
        json!({"ok": true, "type": "message", "channel": query.get("channel"), "message": {"type": "message", "ts": ts, "reactions": reactions}})
    })
    .await
}

/// `team.info`: the workspace (needs `team:read`, checked with every method's scopes).
async fn team_info(
    State(app): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    web_method(&app, "GET", "/api/team.info", &headers, query_fields(&query), |_, _| {
        json!({"ok": true, "team": {"id": "T0HERALD1", "name": "Herald Sandbox", "domain": "herald-sandbox", "email_domain": "herald.example"}})
    })
    .await
}

/// `conversations.replies?channel=&ts=`: a message and its thread.
async fn conversations_replies(
    State(app): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    web_method(&app, "GET", "/api/conversations.replies", &headers, query_fields(&query), |state, _| {
        if query.get("channel").is_some_and(|c| state.outside.contains(c)) {
            return json!({"ok": false, "error": "not_in_channel"});
        }
        let ts = query.get("ts").cloned().unwrap_or_default();
        let Some(parent) = query.get("channel").and_then(|c| state.messages.get(c)).and_then(|m| m.iter().find(|(t, _, _)| *t == ts)) else {
            return json!({"ok": false, "error": "thread_not_found"});
        };
        let mut messages = vec![json!({"type": "message", "ts": parent.0, "thread_ts": parent.0, "text": parent.1, "bot_id": "B0HERALD1"})];
        for (reply_ts, author, text, bot) in state.replies.get(&ts).into_iter().flatten() {
            let mut message = json!({"type": "message", "ts": reply_ts, "thread_ts": ts, "text": text});
            message[if *bot { "bot_id" } else { "user" }] = json!(author);
            messages.push(message);
        }
        // Cursor pagination, as Slack pages: `limit` per page (by default and at most the app's
        // page size), an opaque `next_cursor` while there is more.
        let most = state.max_reply_page;
        let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(most).clamp(1, most);
        let start = query.get("cursor").and_then(|c| c.strip_prefix("page:")).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        let page: Vec<Value> = messages.iter().skip(start).take(limit).cloned().collect();
        let has_more = start + limit < messages.len();
        let next_cursor = if has_more { format!("page:{}", start + limit) } else { String::new() };
        json!({"ok": true, "messages": page, "has_more": has_more, "response_metadata": {"next_cursor": next_cursor}})
    })
    .await
}

/// A Web API method: the token, the published contract (on a query string or a JSON body, as
/// `fields`), the fault script and the recorder, around `answer`.
async fn web_method(
    app: &AppState,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    fields: serde_json::Map<String, Value>,
    answer: impl FnOnce(&mut SlackState, &serde_json::Map<String, Value>) -> Value,
) -> Response {
    let (status, response) = match app.faults.take().await {
        Some(scripted) => scripted.answer(),
        None => {
            let mut state = app.state.lock().expect("slack lock");
            let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
            let violations = slack_contract().check_json(method, path, authorization, &fields);
            let authorized =
                authorization.and_then(|v| v.strip_prefix("Bearer ")) == Some(state.token.as_str());
            if let Some(wait) = authorized.then(|| state.over_tier(path)).flatten() {
                app.recorder.record(
                    method,
                    path,
                    headers,
                    Value::Object(fields),
                    StatusCode::TOO_MANY_REQUESTS,
                );
                let mut limited = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"ok": false, "error": "ratelimited"})),
                )
                    .into_response();
                limited
                    .headers_mut()
                    .insert("retry-after", wait.as_secs().max(1).into());
                return limited;
            }
            let body = if !authorized {
                json!({"ok": false, "error": "invalid_auth"})
            } else if let Some(needed) = state.missing_scope(path) {
                json!({"ok": false, "error": "missing_scope", "needed": needed, "provided": state.scopes.join(",")})
            } else if !violations.is_empty() {
                let messages: Vec<String> = violations
                    .iter()
                    .map(|v| format!("[ERROR] {}", v.0))
                    .collect();
                json!({"ok": false, "error": "invalid_arguments", "response_metadata": {"messages": messages}})
            } else {
                answer(&mut state, &fields)
            };
            (StatusCode::OK, axum::Json(body).into_response())
        }
    };
    app.recorder
        .record(method, path, headers, Value::Object(fields), status);
    response
}

/// Slack's special rate for `chat.postMessage`: "one message per second per channel", with
/// "short bursts" tolerated. Slack publishes no burst figure; the simulator takes
/// [`ChannelRate::BURST`] at once (Herald's default bucket) and takes a message up to
/// [`ChannelRate::JITTER`] early (the clocks of Herald's limiter and of this server differ by
/// that much), carrying it as a debt so that the rate over time stays one per second.
struct ChannelRate;

impl ChannelRate {
    const PER_SECOND: f64 = 1.0;
    const BURST: f64 = 3.0;
    const JITTER: f64 = 0.15;
}

/// The scopes each method of Slack's published spec accepts (any one of them), by path, with the
/// spec's old `chat:write:bot` / `chat:write:user` read as today's bot scope `chat:write`.
fn method_scopes() -> &'static HashMap<String, Vec<String>> {
    static SCOPES: std::sync::OnceLock<HashMap<String, Vec<String>>> = std::sync::OnceLock::new();
    SCOPES.get_or_init(|| {
        let spec: Value = serde_json::from_str(include_str!("contract/slack_web_openapi_v2.json"))
            .unwrap_or(Value::Null);
        let mut scopes = HashMap::new();
        for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
            for operation in operations.as_object().into_iter().flat_map(|o| o.values()) {
                let accepted: Vec<String> = operation["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|scheme| scheme["slackAuth"].as_array())
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|scope| *scope != "none")
                    .map(|scope| match scope {
                        "chat:write:bot" | "chat:write:user" => "chat:write".to_owned(),
                        other => other.to_owned(),
                    })
                    .collect();
                if !accepted.is_empty() {
                    scopes.insert(format!("/api{path}"), accepted);
                }
            }
        }
        scopes
    })
}

impl SlackState {
    /// The scope `path` needs that the token lacks (none of those the spec accepts), if any.
    fn missing_scope(&self, path: &str) -> Option<String> {
        let accepted = method_scopes().get(path)?;
        (!accepted.iter().any(|scope| self.scopes.contains(scope))).then(|| accepted.join(","))
    }
    /// Counts a message to `channel_id` against the channel rate, when it is on; when the channel
    /// is over it, how long until the next message is taken.
    fn over_channel_rate(&mut self, channel_id: &str) -> Option<Duration> {
        if !self.holds_channel_rate {
            return None;
        }
        let now = Instant::now();
        let (allowance, counted_at) = self
            .channel_allowance
            .entry(channel_id.to_owned())
            .or_insert((ChannelRate::BURST, now));
        let refilled = now.duration_since(*counted_at).as_secs_f64() * ChannelRate::PER_SECOND;
        let available = (*allowance + refilled).min(ChannelRate::BURST);
        *counted_at = now;
        *allowance = available;
        if available < 1.0 - ChannelRate::JITTER {
            return Some(Duration::from_secs_f64(
                (1.0 - available) / ChannelRate::PER_SECOND,
            ));
        }
        *allowance -= 1.0;
        None
    }

    /// Counts a call of `method` against its tier; when it is over, how long until a slot frees.
    fn over_tier(&mut self, method: &str) -> Option<Duration> {
        let limit = *self.method_limits.get(method)?;
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let calls = self.method_calls.entry(method.to_owned()).or_default();
        while calls
            .front()
            .is_some_and(|at| now.duration_since(*at) >= minute)
        {
            calls.pop_front();
        }
        if calls.len() >= limit {
            let oldest = *calls.front()?;
            return Some(minute.saturating_sub(now.duration_since(oldest)));
        }
        calls.push_back(now);
        None
    }
}

/// A query string as contract fields (every value is text).
fn query_fields(query: &HashMap<String, String>) -> serde_json::Map<String, Value> {
    query
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// `chat.scheduleMessage`: a message for later, at most 120 days ahead.
async fn schedule_message(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    web_method(&app, "POST", "/api/chat.scheduleMessage", &headers, fields, |state, fields| {
        let requested = fields.get("channel").and_then(Value::as_str).unwrap_or_default();
        let Some(channel) = state.channel_id(requested) else { return json!({"ok": false, "error": "channel_not_found"}) };
        let Some(post_at) = fields.get("post_at").and_then(Value::as_str).and_then(|t| t.parse::<u64>().ok()) else {
            return json!({"ok": false, "error": "invalid_time"});
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        if post_at <= now {
            return json!({"ok": false, "error": "time_in_past"});
        }
        if post_at > now + 120 * 24 * 3600 {
            return json!({"ok": false, "error": "time_too_far"});
        }
        let text = fields.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
        let blocks = fields.get("blocks").cloned().unwrap_or(Value::Null);
        if !blocks.is_null() && !blocks_are_valid(&blocks) {
            return json!({"ok": false, "error": "invalid_blocks"});
        }
        // "You cannot schedule more than 30 messages to post within a 5-minute window to the
        // same channel": no window of five minutes around post_at may already hold 30.
        let times: Vec<u64> = state.scheduled.iter().filter(|s| s.1 == channel).map(|s| s.2).collect();
        let crowded = (post_at.saturating_sub(SCHEDULE_WINDOW)..=post_at).any(|start| {
            times.iter().filter(|t| (start..=start + SCHEDULE_WINDOW).contains(*t)).count() >= SCHEDULED_PER_WINDOW
        });
        if crowded {
            return json!({"ok": false, "error": "restricted_too_many"});
        }
        state.next_ts += 1;
        let id = format!("Q{:010}", state.next_ts % 10_000_000_000);
        state.scheduled.push((id.clone(), channel.clone(), post_at, text.clone(), blocks));
        json!({
            "ok": true, "channel": channel, "scheduled_message_id": id, "post_at": post_at.to_string(),
            "message": {"type": "delayed_message", "text": text, "bot_id": "B0HERALD1"}
        })
    })
    .await
}

/// `auth.test`: who the token is, with the granted scopes in `X-OAuth-Scopes` as Slack sends them.
async fn auth_test(
    State(app): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    let (status, response) = match app.faults.take().await {
        Some(scripted) => scripted.answer(),
        None => {
            let state = app.state.lock().expect("slack lock");
            let scopes = state.scopes.join(",");
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let answer = match token {
                None => json!({"ok": false, "error": "not_authed"}),
                Some(token) if token != state.token => {
                    json!({"ok": false, "error": "invalid_auth"})
                }
                Some(_) => json!({
                    "ok": true, "url": "https://herald-sandbox.slack.com/", "team": "Herald Sandbox", "user": "herald",
                    "team_id": "T0HERALD1", "user_id": "U0HERALD1", "bot_id": "B0HERALD1"
                }),
            };
            let mut response = axum::Json(answer).into_response();
            if let Ok(scopes) = axum::http::HeaderValue::from_str(&scopes) {
                response.headers_mut().insert("x-oauth-scopes", scopes);
            }
            (StatusCode::OK, response)
        }
    };
    app.recorder.record(
        method.as_str(),
        "/api/auth.test",
        &headers,
        Value::Null,
        status,
    );
    response
}

impl SlackState {
    /// A channel's id, from its name (`#weddings` or `weddings`) or its id.
    fn channel_id(&self, requested: &str) -> Option<String> {
        self.channels
            .get(requested.trim_start_matches('#'))
            .cloned()
            .or_else(|| {
                self.channels
                    .values()
                    .find(|id| id.as_str() == requested)
                    .cloned()
            })
    }
}

async fn post_message(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, response) = match app.faults.take().await {
        Some(scripted) => scripted.answer(),
        None => answer(&app.state, &headers, &parsed),
    };
    app.recorder
        .record("POST", "/api/chat.postMessage", &headers, parsed, status);
    response
}

fn answer(state: &Mutex<SlackState>, headers: &HeaderMap, body: &Value) -> (StatusCode, Response) {
    let slack_error = |error: &str| {
        (
            StatusCode::OK,
            axum::Json(json!({"ok": false, "error": error})).into_response(),
        )
    };
    let mut state = state.lock().expect("slack lock");
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        None => return slack_error("not_authed"),
        Some(token) if token != state.token => return slack_error("invalid_auth"),
        Some(_) if state.missing_scope("/api/chat.postMessage").is_some() => {
            return slack_error("missing_scope")
        }
        Some(_) => {}
    }
    let Some(fields) = body.as_object() else {
        return slack_error("invalid_json");
    };
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let violations =
        slack_contract().check_json("POST", "/api/chat.postMessage", authorization, fields);
    if !violations.is_empty() {
        let messages: Vec<String> = violations
            .iter()
            .map(|v| format!("[ERROR] {}", v.0))
            .collect();
        let answer = json!({"ok": false, "error": "invalid_arguments", "response_metadata": {"messages": messages}});
        return (StatusCode::OK, axum::Json(answer).into_response());
    }
    let Some(channel_id) = state.channel_id(body["channel"].as_str().unwrap_or_default()) else {
        return slack_error("channel_not_found");
    };
    if state.outside.contains(&channel_id) && !state.scopes.iter().any(|s| s == "chat:write.public")
    {
        return slack_error("not_in_channel");
    }
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let blocks = body.get("blocks").cloned().unwrap_or(Value::Null);
    if text.is_empty() && blocks.is_null() {
        return slack_error("no_text");
    }
    if !blocks.is_null() && !blocks_are_valid(&blocks) {
        return slack_error("invalid_blocks");
    }
    if let Some(thread) = body["thread_ts"].as_str() {
        let known = state
            .messages
            .get(&channel_id)
            .is_some_and(|messages| messages.iter().any(|(ts, _, _)| ts == thread));
        if !known {
            return slack_error("thread_not_found");
        }
    }
    if let Some(wait) = state.over_channel_rate(&channel_id) {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
        response.headers_mut().insert(
            "retry-after",
            (wait.as_secs_f64().ceil().max(1.0) as u64).into(),
        );
        return (StatusCode::TOO_MANY_REQUESTS, response);
    }
    state.next_ts += 1;
    let ts = format!(
        "{}.{:06}",
        state.next_ts / 1_000_000,
        state.next_ts % 1_000_000
    );
    state
        .messages
        .entry(channel_id.clone())
        .or_default()
        .push((ts.clone(), text.clone(), blocks));
    if let Some(thread) = body["thread_ts"].as_str() {
        state.replies.entry(thread.to_owned()).or_default().push((
            ts.clone(),
            "B0HERALD1".into(),
            text.clone(),
            true,
        ));
    }
    let message = json!({"type": "message", "text": text, "ts": ts, "bot_id": "B0HERALD1"});
    (
        StatusCode::OK,
        axum::Json(json!({"ok": true, "channel": channel_id, "ts": ts, "message": message}))
            .into_response(),
    )
}

/// Checks the Block Kit limits Slack enforces on what Herald sends: at most 50 blocks, known
/// block types, header text at most 150 characters, section text at most 3000, at most 25
/// elements per actions block, button text at most 75.
/// Block Kit's rules as Slack enforces them on a message: at most 50 blocks of known types, block
/// ids unique in the message, a header of 1-150 plain-text characters, section text of 1-3,000,
/// 1-10 context elements, and `actions` blocks of 1-25 buttons whose `action_id`s are unique in
/// the block, each with 1-75 characters of text and a url of at most 3,000.
fn blocks_are_valid(blocks: &Value) -> bool {
    let Some(blocks) = blocks.as_array() else {
        return false;
    };
    let chars = |value: &Value| value.as_str().map(|s| s.chars().count());
    let block_ids: Vec<&str> = blocks
        .iter()
        .filter_map(|block| block["block_id"].as_str())
        .collect();
    let unique_block_ids = block_ids
        .iter()
        .enumerate()
        .all(|(index, id)| !block_ids[..index].contains(id));
    blocks.len() <= 50
        && unique_block_ids
        && blocks.iter().all(|block| {
            let kind = block["type"].as_str().unwrap_or_default();
            BLOCK_TYPES.contains(&kind)
                && match kind {
                    "header" => {
                        block["text"]["type"] == "plain_text"
                            && chars(&block["text"]["text"]).is_some_and(|n| (1..=150).contains(&n))
                    }
                    "section" => {
                        chars(&block["text"]["text"]).is_some_and(|n| (1..=3000).contains(&n))
                    }
                    "context" => block["elements"]
                        .as_array()
                        .is_some_and(|e| (1..=10).contains(&e.len())),
                    "actions" => block["elements"].as_array().is_some_and(|elements| {
                        let action_ids: Vec<&Value> =
                            elements.iter().map(|e| &e["action_id"]).collect();
                        (1..=25).contains(&elements.len())
                            && action_ids
                                .iter()
                                .enumerate()
                                .all(|(index, id)| !action_ids[..index].contains(id))
                            && elements.iter().all(|e| {
                                e["type"] == "button"
                                    && chars(&e["text"]["text"])
                                        .is_some_and(|n| (1..=75).contains(&n))
                                    && chars(&e["url"]).is_none_or(|n| n <= 3000)
                            })
                    }),
                    _ => true,
                }
        })
}

/// The control sequences Slack would act on in a message (`<!channel>`, `<@U123>`,
/// `<https://...|label>`): whatever sits between `<` and `>` in its text and mrkdwn fields. Text
/// escaped as Slack asks has none.
fn control_sequences(text: &str, blocks: &Value) -> Vec<String> {
    let mut texts = vec![text.to_owned()];
    collect_mrkdwn(blocks, &mut texts);
    texts
        .iter()
        .flat_map(|text| {
            text.split('<')
                .skip(1)
                .filter_map(|rest| rest.split_once('>').map(|(inside, _)| inside.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn collect_mrkdwn(value: &Value, texts: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if object.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                texts.extend(
                    object
                        .get("text")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
            }
            object
                .values()
                .for_each(|inner| collect_mrkdwn(inner, texts));
        }
        Value::Array(items) => items.iter().for_each(|inner| collect_mrkdwn(inner, texts)),
        _ => {}
    }
}

/// Slack's published Web API spec (`contract/slack_web_openapi_v2.json`), parsed once.
fn slack_contract() -> &'static Contract {
    static CONTRACT: std::sync::OnceLock<Contract> = std::sync::OnceLock::new();
    CONTRACT
        .get_or_init(|| load_swagger_contract(include_str!("contract/slack_web_openapi_v2.json")))
}

// === the conformance suite's view ===

/// The bot token the simulated workspace accepts (not a real credential).
const SIMULATED_TOKEN: &str = "xoxb-simulated-0000000000-herald";

impl Simulation for super::Slack {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let slack = FakeSlack::start(addr, SIMULATED_TOKEN, &["wedding-team"]).await?;
            Ok(Box::new(slack) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeSlack {
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
            "base_url = \"{}\", channel = \"#wedding-team\", token = {secret}",
            self.base_url()
        )
    }

    /// With an action, so the message and its thread reply (the buttons) are both sent.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["actions"] =
            json!([{"actionId": "confirm", "label": "Confirm the new time", "style": "primary"}]);
        notification
    }

    fn address(&self) -> String {
        self.base_url()
    }

    fn about(&self) -> String {
        "channel #wedding-team".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["text"].as_str().unwrap_or("").to_owned()
    }

    fn hold_to_published_limits(&self) {
        self.hold_to_channel_rate();
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"ok": false, "error": "service_unavailable"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(200, &[], json!({"ok": false, "error": "token_expired"}))
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"ok": false, "error": "ratelimited"}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(200, &[], json!({"ok": false, "error": "invalid_blocks"})),
            "invalid_blocks",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::contract::Violation;
    use serde_json::Map;

    fn check(body: Value, authorization: Option<&str>) -> Vec<Violation> {
        slack_contract().check_json(
            "POST",
            "/api/chat.postMessage",
            authorization,
            body.as_object().unwrap(),
        )
    }

    #[test]
    fn a_well_formed_post_message_passes() {
        let body = json!({"channel": "#weddings", "text": "hi", "blocks": [{"type": "section"}], "unfurl_links": false});
        assert_eq!(check(body, Some("Bearer xoxb-1")), vec![]);
    }

    #[test]
    fn drift_from_the_contract_is_named() {
        assert_eq!(
            check(json!({"text": "hi"}), Some("Bearer xoxb-1")),
            vec![Violation("required parameter `channel` is missing".into())]
        );
        assert_eq!(
            check(
                json!({"channel": "C1", "colour": "red"}),
                Some("Bearer xoxb-1")
            ),
            vec![Violation("unknown parameter `colour`".into())]
        );
        assert_eq!(
            check(
                json!({"channel": "C1", "unfurl_links": "no"}),
                Some("Bearer xoxb-1")
            ),
            vec![Violation(
                "`unfurl_links` must be a boolean, not \"no\"".into()
            )]
        );
        assert_eq!(
            check(json!({"channel": "C1"}), None),
            vec![Violation("required parameter `token` is missing".into())]
        );
        let unknown_method =
            slack_contract().check_json("POST", "/api/chat.sendCarrierPigeon", None, &Map::new());
        assert_eq!(unknown_method.len(), 1);
    }

    #[test]
    fn the_methods_herald_will_need_are_in_the_contract() {
        for (method, path) in [
            ("POST", "/api/chat.postMessage"),
            ("POST", "/api/chat.scheduleMessage"),
            ("GET", "/api/auth.test"),
            ("GET", "/api/conversations.replies"),
        ] {
            assert!(
                slack_contract().has_operation(method, path),
                "{method} {path}"
            );
        }
    }

    #[tokio::test]
    async fn the_slack_simulator_refuses_requests_that_drift_from_slacks_published_contract() {
        let slack = FakeSlack::start(
            crate::sandbox::any_local_port(),
            SIMULATED_TOKEN,
            &["weddings"],
        )
        .await
        .unwrap();
        let post = |body: serde_json::Value| {
            reqwest::Client::new()
                .post(format!("{}/chat.postMessage", slack.base_url()))
                .bearer_auth(SIMULATED_TOKEN)
                .json(&body)
                .send()
        };
        let answer: serde_json::Value =
            post(serde_json::json!({"channel": "#weddings", "txt": "typo"}))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(answer["ok"], false);
        assert_eq!(answer["error"], "invalid_arguments");
        assert_eq!(
            answer["response_metadata"]["messages"][0],
            "[ERROR] unknown parameter `txt`"
        );
        let answer: serde_json::Value =
            post(serde_json::json!({"channel": "#weddings", "text": "fine"}))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(slack.messages("weddings").len(), 1);
    }

    #[tokio::test]
    async fn the_slack_simulator_holds_each_method_to_its_tier() {
        let slack = FakeSlack::start(
            crate::sandbox::any_local_port(),
            SIMULATED_TOKEN,
            &["weddings"],
        )
        .await
        .unwrap();
        slack.set_method_limit("team.info", 2);
        let client = reqwest::Client::new();
        let team_info = || {
            client
                .get(format!("{}/team.info", slack.base_url()))
                .bearer_auth(SIMULATED_TOKEN)
                .send()
        };
        for _ in 0..2 {
            assert_eq!(team_info().await.unwrap().status(), 200);
        }
        let limited = team_info().await.unwrap();
        assert_eq!(limited.status(), 429);
        let wait: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        let body: serde_json::Value = limited.json().await.unwrap();
        assert_eq!(body["error"], "ratelimited");
        // Another method has its own allowance.
        let replies = client
            .get(format!("{}/reactions.get", slack.base_url()))
            .bearer_auth(SIMULATED_TOKEN)
            .query(&[("channel", "C00000001"), ("timestamp", "1.000001")])
            .send()
            .await
            .unwrap();
        assert_eq!(replies.status(), 200);
    }

    /// A workspace with channel #weddings.
    async fn workspace() -> FakeSlack {
        FakeSlack::start(
            crate::sandbox::any_local_port(),
            SIMULATED_TOKEN,
            &["weddings"],
        )
        .await
        .unwrap()
    }

    /// Calls a Web API method with the bot token, a JSON body (POST) or a query (GET), and
    /// answers Slack's body.
    async fn web_api(
        slack: &FakeSlack,
        method: &str,
        body: Option<Value>,
        query: &[(&str, &str)],
    ) -> Value {
        let url = format!("{}/{method}", slack.base_url());
        let client = reqwest::Client::new();
        let request = match body {
            Some(body) => client.post(url).json(&body),
            None => client.get(url).query(query),
        };
        request
            .bearer_auth(SIMULATED_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_slack_simulator_refuses_repeated_action_ids_and_a_crowded_schedule() {
        let slack = workspace().await;
        slack.set_method_limit("chat.scheduleMessage", 100);
        let button = |id: &str| json!({"type": "button", "text": {"type": "plain_text", "text": "Go"}, "action_id": id});
        let repeated = json!([{"type": "actions", "elements": [button("go"), button("go")]}]);
        let apart = json!([
            {"type": "actions", "block_id": "a", "elements": [button("go")]},
            {"type": "actions", "block_id": "b", "elements": [button("go")]}
        ]);
        let post_at = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600)
            .to_string();
        for (method, blocks, error) in [
            ("chat.postMessage", &repeated, Some("invalid_blocks")),
            ("chat.scheduleMessage", &repeated, Some("invalid_blocks")),
            ("chat.postMessage", &apart, None),
        ] {
            let mut body = json!({"channel": "#weddings", "text": "t", "blocks": blocks});
            if method == "chat.scheduleMessage" {
                body["post_at"] = json!(post_at);
            }
            let answer = web_api(&slack, method, Some(body), &[]).await;
            assert_eq!(answer["error"].as_str(), error, "{method}: {answer}");
        }
        // 30 scheduled within five minutes, then the 31st is refused; five minutes on is free.
        let schedule = |at: String| {
            let body = json!({"channel": "#weddings", "text": "t", "post_at": at});
            web_api(&slack, "chat.scheduleMessage", Some(body), &[])
        };
        for _ in 0..30 {
            let answer = schedule(post_at.clone()).await;
            assert_eq!(answer["ok"], true, "{answer}");
        }
        let later = |seconds: u64| (post_at.parse::<u64>().unwrap() + seconds).to_string();
        for (at, expected) in [
            (later(299), Some("restricted_too_many")),
            (later(301), None),
        ] {
            let answer = schedule(at).await;
            assert_eq!(answer["error"].as_str(), expected, "{answer}");
        }
    }

    #[tokio::test]
    async fn every_method_needs_a_scope_its_published_spec_accepts() {
        let slack = workspace().await;
        slack.set_scopes(&["chat:write"]);
        let message = [("channel", "C00000001"), ("timestamp", "1.000001")];
        let thread = [("channel", "C00000001"), ("ts", "1.000001")];
        for (method, query, needed) in [
            ("reactions.get", &message[..], "reactions:read"),
            (
                "conversations.replies",
                &thread[..],
                "channels:history,groups:history,im:history,mpim:history",
            ),
            ("team.info", &[][..], "team:read"),
        ] {
            let answer = web_api(&slack, method, None, query).await;
            assert_eq!(answer["error"], "missing_scope", "{method}: {answer}");
            assert_eq!(answer["needed"], needed, "{method}");
        }
        let post = |scopes: &'static [&'static str]| {
            slack.set_scopes(scopes);
            let body = json!({"channel": "#weddings", "text": "hi"});
            web_api(&slack, "chat.postMessage", Some(body), &[])
        };
        // chat:write is what the spec's chat:write:bot means for a bot token today.
        let posted = post(&["chat:write"]).await;
        assert_eq!(posted["ok"], true, "{posted}");
        assert_eq!(post(&["reactions:read"]).await["error"], "missing_scope");
        // Outside the channel, posting needs chat:write.public.
        slack.remove_bot_from("weddings");
        assert_eq!(post(&["chat:write"]).await["error"], "not_in_channel");
        let public = post(&["chat:write", "chat:write.public"]).await;
        assert_eq!(public["ok"], true, "{public}");
    }
}
