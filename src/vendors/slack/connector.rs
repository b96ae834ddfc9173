//! Slack: `POST {base}/chat.postMessage` with a bot token (Bearer) and Block Kit blocks.
//!
//! Slack answers most errors as HTTP 200 with `{"ok": false, "error": "..."}`, so the body is
//! classified first: `ratelimited` waits, token errors refresh the credential, Slack-side faults
//! retry, and everything else (`channel_not_found`, `invalid_blocks`...) is permanent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::Url;
use serde_json::{json, Value};
use sha2::Sha256;

use super::blocks::{action_blocks, escaped_within, slack_blocks, FALLBACK_TEXT_CHARS, MAX_BLOCKS};
use super::{AppDistribution, ReminderSettings, SlackSettings};
use crate::connectors::http::{classify_status, retry_after, transport_error, OutboundClient};
use crate::connectors::quiet_hours::QuietHours;
use crate::connectors::{
    CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::template::Template;
use crate::wedsync::WeddingNotification;

const DEFAULT_TEXT_TEMPLATE: &str = "{{ title }}: {{ message }}";

pub struct SlackConnector {
    post_message: Url,
    auth_test: Url,
    team_info: Url,
    reactions_get: Url,
    conversations_replies: Url,
    token: ReloadableSecret,
    channel: String,
    text_template: Template,
    schedule_message: Url,
    /// Each reminder with its text template, compiled once.
    reminders: Vec<(ReminderSettings, Template)>,
    reminder_types: Vec<String>,
    client: OutboundClient,
    timeout: Duration,
    quiet_hours: Option<QuietHours>,
    /// When Herald's scheduled messages will post, per channel, to keep inside Slack's window.
    schedule: Mutex<SchedulePlanner>,
    thread_reads: ThreadReads,
}

/// How Herald reads a thread (`conversations.replies`) within what Slack allows the app.
struct ThreadReads {
    /// Messages a page and pages a read.
    page_size: &'static str,
    pages: usize,
    /// Slack's least interval between two reads, when the app's distribution has one; and when
    /// this integration last read.
    interval: Option<Duration>,
    last_read: Mutex<Option<Instant>>,
}

impl ThreadReads {
    fn for_distribution(distribution: AppDistribution) -> Self {
        let (page_size, pages, interval) = match distribution {
            // Tier 3; Slack recommends pages of at most 200.
            AppDistribution::Internal | AppDistribution::Marketplace => ("200", 10, None),
            // 1 request a minute, 15 messages at most: one page a read.
            AppDistribution::OutsideMarketplace => ("15", 1, Some(Duration::from_secs(60))),
        };
        Self {
            page_size,
            pages,
            interval,
            last_read: Mutex::new(None),
        }
    }

    /// Takes the right to read now, or says how long until Slack allows the next read (asking
    /// earlier would only draw Slack's `ratelimited`).
    fn take_turn(&self) -> Result<(), ConnectorError> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let mut last_read = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(wait) = last_read.and_then(|at| interval.checked_sub(now.duration_since(at))) {
            return Err(ConnectorError::RateLimited {
                retry_after: Some(wait),
            });
        }
        *last_read = Some(now);
        Ok(())
    }
}

/// How many later slots a scheduled message tries when Slack answers `restricted_too_many`.
const MAX_SLOT_MOVES: usize = 12;

/// Where Herald's scheduled messages go in a channel. Slack takes "no more than 30 messages to
/// post within a 5-minute window to the same channel" (`chat.scheduleMessage`), and quiet hours
/// and reminders ask for the same moments: the end of the period, 09:00 before a wedding date.
/// A message goes at the moment asked for if fewer than 30 of Herald's own fall within five
/// minutes either side of it, otherwise at the first slot 301 seconds on that has room, so no
/// window of five minutes ever holds more than 30 of them. A slot Slack refused (full with
/// messages Herald did not plan) is not tried again. Kept in memory: after a restart Slack's
/// refusals teach it again.
#[derive(Default)]
struct SchedulePlanner {
    taken: HashMap<String, Vec<u64>>,
    refused: HashMap<String, Vec<u64>>,
}

impl SchedulePlanner {
    const PER_WINDOW: usize = 30;
    const WINDOW: u64 = 300;

    /// The first moment from `wanted` on with room in `channel`.
    fn slot(&mut self, channel: &str, wanted: u64, now: u64) -> u64 {
        // What has already posted no longer counts.
        for times in self.taken.values_mut().chain(self.refused.values_mut()) {
            times.retain(|&t| t + Self::WINDOW >= now);
        }
        let taken = self
            .taken
            .get(channel)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let refused = self
            .refused
            .get(channel)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut candidate = wanted;
        loop {
            let around = taken
                .iter()
                .filter(|&&t| t + Self::WINDOW >= candidate && t <= candidate + Self::WINDOW)
                .count();
            if around < Self::PER_WINDOW && !refused.contains(&candidate) {
                return candidate;
            }
            candidate += Self::WINDOW + 1;
        }
    }

    fn taken(&mut self, channel: &str, post_at: u64) {
        self.taken
            .entry(channel.to_owned())
            .or_default()
            .push(post_at);
    }

    fn refused(&mut self, channel: &str, post_at: u64) {
        self.refused
            .entry(channel.to_owned())
            .or_default()
            .push(post_at);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Slack schedules messages at most 120 days ahead.
const SCHEDULE_HORIZON: Duration = Duration::from_secs(120 * 24 * 3600);

impl SlackConnector {
    pub fn new(
        settings: &SlackSettings,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = settings.base_url.trim_end_matches('/');
        let post_message = client.check_url(&format!("{base}/chat.postMessage"))?;
        let auth_test = client.check_url(&format!("{base}/auth.test"))?;
        let team_info = client.check_url(&format!("{base}/team.info"))?;
        let reactions_get = client.check_url(&format!("{base}/reactions.get"))?;
        let conversations_replies = client.check_url(&format!("{base}/conversations.replies"))?;
        let schedule_message = client.check_url(&format!("{base}/chat.scheduleMessage"))?;
        // Reminder times were checked when the configuration loaded; templates are checked
        // again here because a connector is only as safe as what it is given.
        let text_template = Template::compile(
            settings
                .text_template
                .as_deref()
                .unwrap_or(DEFAULT_TEXT_TEMPLATE),
        )
        .map_err(|err| ConnectorError::Misconfigured(format!("text_template: {err}")))?;
        let reminders = settings
            .reminders
            .iter()
            .enumerate()
            .map(|(index, reminder)| {
                Template::compile(&reminder.text_template)
                    .map(|template| (reminder.clone(), template))
                    .map_err(|err| {
                        ConnectorError::Misconfigured(format!(
                            "reminders[{index}].text_template: {err}"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            post_message,
            auth_test,
            team_info,
            reactions_get,
            conversations_replies,
            token: ReloadableSecret::load(&settings.token)
                .map_err(ConnectorError::Misconfigured)?,
            channel: settings.channel.clone(),
            text_template,
            schedule_message,
            reminders,
            reminder_types: settings.reminder_types.clone(),
            quiet_hours: settings.quiet_hours.clone(),
            client,
            timeout,
            schedule: Mutex::new(SchedulePlanner::default()),
            thread_reads: ThreadReads::for_distribution(settings.app_distribution),
        })
    }

    /// `chat.scheduleMessage` of `message` in `channel` at `wanted` (Unix seconds) or, where
    /// Slack's five-minute window there is full, at the first later slot that is not (see
    /// [`SchedulePlanner`]); answers Slack's answer and when the message will post.
    async fn schedule_message(
        &self,
        channel: &str,
        mut message: Value,
        wanted: u64,
    ) -> Result<(Value, u64), ConnectorError> {
        let mut post_at = self.planner().slot(channel, wanted, unix_now());
        for _ in 0..MAX_SLOT_MOVES {
            message["post_at"] = json!(post_at.to_string());
            let request = self
                .client
                .client()
                .post(self.schedule_message.clone())
                .json(&message);
            match self.call(request).await {
                Ok((answer, _)) => {
                    self.planner().taken(channel, post_at);
                    return Ok((answer, post_at));
                }
                // Full with messages Herald did not plan (another app's, or from before a
                // restart): this slot is out, the next one is tried.
                Err(ConnectorError::Rejected { code, .. }) if code == "restricted_too_many" => {
                    self.planner().refused(channel, post_at);
                    post_at = self.planner().slot(channel, wanted, unix_now());
                }
                Err(error) => return Err(error),
            }
        }
        Err(ConnectorError::Rejected {
            code: "restricted_too_many".into(),
            message: format!(
                "Slack refused {MAX_SLOT_MOVES} slots from {wanted} on: the channel's scheduled messages are full"
            ),
        })
    }

    fn planner(&self) -> std::sync::MutexGuard<'_, SchedulePlanner> {
        self.schedule.lock().expect("schedule planner lock")
    }

    /// Whether delivering this notification schedules the reminder sequence.
    fn schedules_reminders(&self, notification: &WeddingNotification) -> bool {
        !self.reminders.is_empty()
            && notification.wedding_context.is_some()
            && self
                .reminder_types
                .contains(&notification.notification_type)
    }

    /// createAutomatedMessageSequences: each reminder `chat.scheduleMessage`d in the channel at its
    /// time before the wedding. Reminders already past, or beyond Slack's 120-day horizon, are
    /// skipped and said so; a refused one is reported, since the message itself is posted.
    async fn schedule_reminders(
        &self,
        channel: &str,
        notification: &WeddingNotification,
    ) -> (Vec<Value>, Vec<Value>) {
        let (mut scheduled, mut skipped) = (Vec::new(), Vec::new());
        let Some(wedding) = &notification.wedding_context else {
            return (scheduled, skipped);
        };
        let now = SystemTime::now();
        for (reminder, template) in &self.reminders {
            let Ok(day) =
                humantime::parse_rfc3339(&format!("{}T{}:00Z", wedding.wedding_date, reminder.at))
            else {
                skipped.push(json!({"daysBefore": reminder.days_before, "reason": "the wedding date is not a calendar date"}));
                continue;
            };
            let post_at = day - Duration::from_secs(u64::from(reminder.days_before) * 24 * 3600);
            if post_at <= now || post_at > now + SCHEDULE_HORIZON {
                let reason = if post_at <= now {
                    "already past"
                } else {
                    "more than 120 days ahead, beyond what Slack schedules"
                };
                skipped.push(json!({"daysBefore": reminder.days_before, "reason": reason}));
                continue;
            }
            let post_at_secs = post_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let text = match template.render(notification).await {
                Ok(text) => text,
                Err(err) => {
                    skipped.push(json!({"daysBefore": reminder.days_before, "reason": format!("text_template: {err}")}));
                    continue;
                }
            };
            let body =
                json!({"channel": channel, "text": escaped_within(&text, FALLBACK_TEXT_CHARS)});
            match self.schedule_message(channel, body, post_at_secs).await {
                Ok((answer, posts_at)) => scheduled.push(json!({
                    "daysBefore": reminder.days_before,
                    "postAt": posts_at,
                    "scheduledMessageId": answer["scheduled_message_id"],
                })),
                Err(error) => skipped
                    .push(json!({"daysBefore": reminder.days_before, "reason": error.to_string()})),
            }
        }
        (scheduled, skipped)
    }

    /// When a notification delivered at `now` must wait for the end of the quiet hours.
    fn held_until(&self, notification: &WeddingNotification, now: SystemTime) -> Option<u64> {
        let quiet = self.quiet_hours.as_ref()?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        quiet.ends_at(notification.priority, now)
    }

    /// manageNotificationPreferences: inside the quiet hours, the message (its action buttons
    /// inline, since there is no thread yet) is scheduled for the period's end.
    async fn hold(
        &self,
        notification: &WeddingNotification,
        text: &str,
        post_at: u64,
    ) -> Result<Receipt, ConnectorError> {
        let mut blocks = slack_blocks(notification);
        let actions = action_blocks(notification, MAX_BLOCKS - blocks.len());
        blocks.extend(actions.blocks);
        let message = json!({
            "channel": self.channel,
            "text": escaped_within(text, FALLBACK_TEXT_CHARS),
            "blocks": blocks,
            "unfurl_links": false,
        });
        let (answer, post_at) = self
            .schedule_message(&self.channel, message, post_at)
            .await?;
        let (Some(id), Some(channel)) = (
            answer["scheduled_message_id"].as_str(),
            answer["channel"].as_str(),
        ) else {
            return Err(ConnectorError::Unavailable(
                "Slack answered ok without a scheduled message id and channel".into(),
            ));
        };
        let mut details = json!({"channel": channel, "scheduledMessageId": id, "postAt": post_at, "heldFor": "quiet_hours"});
        if !actions.dropped.is_empty() {
            details["droppedActions"] = json!(actions.dropped);
        }
        if self.schedules_reminders(notification) {
            let (scheduled, skipped) = self.schedule_reminders(channel, notification).await;
            details["scheduledReminders"] = json!(scheduled);
            details["skippedReminders"] = json!(skipped);
        }
        Ok(Receipt {
            id: id.to_owned(),
            details: Some(details),
        })
    }

    /// Posts the notification, then its action buttons as a reply in the message's thread, so
    /// the channel shows the news and the thread holds what to do about it.
    async fn post(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let text = self
            .text_template
            .render(&**notification)
            .await
            .map_err(|err| match err {
                busy if busy.is_transient() => ConnectorError::Unavailable(busy.to_string()),
                err => ConnectorError::Misconfigured(format!("text_template: {err}")),
            })?;
        if let Some(post_at) = self.held_until(notification, SystemTime::now()) {
            return self.hold(notification, &text, post_at).await;
        }
        let message = json!({
            "channel": self.channel,
            "text": escaped_within(&text, FALLBACK_TEXT_CHARS),
            "blocks": slack_blocks(notification),
            "unfurl_links": false,
        });
        let posted = self.post_message(&message).await?;
        // From here the message is in the channel: what follows is reported, never retried,
        // because retrying the delivery would post the message twice.
        let mut details = json!({"ts": posted.ts, "channel": posted.channel});
        let actions = action_blocks(notification, MAX_BLOCKS);
        if !actions.dropped.is_empty() {
            details["droppedActions"] = json!(actions.dropped);
        }
        if !actions.blocks.is_empty() {
            let reply = json!({
                "channel": posted.channel,
                "thread_ts": posted.ts,
                "text": escaped_within(&format!("Actions for: {}", notification.title), FALLBACK_TEXT_CHARS),
                "blocks": actions.blocks,
            });
            match self.post_message(&reply).await {
                Ok(reply) => details["actionsTs"] = json!(reply.ts),
                Err(error) => {
                    tracing::warn!(channel = %self.channel, %error, "slack action buttons not posted in the thread");
                    details["actionsError"] = json!(error.to_string());
                }
            }
        }
        if self.schedules_reminders(notification) {
            let (scheduled, skipped) = self.schedule_reminders(&posted.channel, notification).await;
            details["scheduledReminders"] = json!(scheduled);
            details["skippedReminders"] = json!(skipped);
        }
        Ok(Receipt {
            id: posted.ts,
            details: Some(details),
        })
    }

    async fn post_message(&self, body: &Value) -> Result<Posted, ConnectorError> {
        let request = self
            .client
            .client()
            .post(self.post_message.clone())
            .json(body);
        let (answer, _) = self.call(request).await?;
        match (answer["ts"].as_str(), answer["channel"].as_str()) {
            (Some(ts), Some(channel)) => Ok(Posted {
                ts: ts.to_owned(),
                channel: channel.to_owned(),
            }),
            _ => Err(ConnectorError::Unavailable(
                "Slack answered ok without a message ts and channel".into(),
            )),
        }
    }

    /// A read-only Web API method.
    async fn read(
        &self,
        url: &Url,
        query: &[(&str, &str)],
    ) -> Result<(Value, reqwest::header::HeaderMap), ConnectorError> {
        self.call(self.client.client().get(url.clone()).query(query))
            .await
    }

    /// Sends a Web API call with the bot token; answers Slack's `ok:true` body with its headers,
    /// or the failure classified (Slack reports most errors as HTTP 200 with `ok:false`).
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(Value, reqwest::header::HeaderMap), ConnectorError> {
        let response = request
            .timeout(self.timeout)
            .bearer_auth(self.token.get().expose())
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(classify_status(status, &headers, &text));
        }
        let answer: Value = serde_json::from_str(&text).map_err(|_| {
            ConnectorError::Unavailable(format!(
                "Slack answered {status} with a body that is not its JSON"
            ))
        })?;
        if answer["ok"] != true {
            return Err(classify_slack_error(
                answer["error"].as_str().unwrap_or("unknown_error"),
                retry_after(&headers),
            ));
        }
        Ok((answer, headers))
    }
}

/// Where Slack put a message.
struct Posted {
    ts: String,
    channel: String,
}

impl SlackConnector {
    /// trackCommunicationEngagement: the reactions on the message (`reactions.get`) and the
    /// people's replies in its thread (`conversations.replies`, not counting Herald's own).
    async fn read_engagement(&self, details: &Value) -> Result<Value, ConnectorError> {
        let (Some(channel), Some(ts)) = (details["channel"].as_str(), details["ts"].as_str())
        else {
            return Err(ConnectorError::Rejected {
                code: "no_message".into(),
                message: "the delivery recorded no Slack message".into(),
            });
        };
        self.thread_reads.take_turn()?;
        let (reactions, _) = self
            .read(
                &self.reactions_get,
                &[("channel", channel), ("timestamp", ts), ("full", "true")],
            )
            .await?;
        // The thread, page by page (Slack's cursor pagination).
        let (mut messages, mut cursor, mut complete) = (Vec::new(), String::new(), false);
        for _ in 0..self.thread_reads.pages {
            let mut query = vec![
                ("channel", channel),
                ("ts", ts),
                ("limit", self.thread_reads.page_size),
            ];
            if !cursor.is_empty() {
                query.push(("cursor", cursor.as_str()));
            }
            let (page, _) = self.read(&self.conversations_replies, &query).await?;
            messages.extend(page["messages"].as_array().into_iter().flatten().cloned());
            cursor = page["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if page["has_more"] != true || cursor.is_empty() {
                complete = true;
                break;
            }
        }
        let replies: Vec<&Value> = messages
            .iter()
            .filter(|m| m["ts"].as_str() != Some(ts))
            .filter(|m| m["bot_id"].is_null())
            .collect();
        let reactions: Vec<Value> = reactions["message"]["reactions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| json!({"name": r["name"], "count": r["count"]}))
            .collect();
        Ok(json!({
            "reactions": reactions,
            "repliesComplete": complete,
            "replies": replies.len(),
            "repliedBy": replies.iter().filter_map(|m| m["user"].as_str()).collect::<Vec<_>>(),
        }))
    }

    /// `auth.test`: who the token is, in which workspace, with which scopes; then `team.info`
    /// (needs `team:read`) for the workspace's name and domain. A token without that scope still
    /// checks out: `workspace` says what could not be read.
    async fn authenticate(&self) -> Result<serde_json::Value, ConnectorError> {
        let (answer, headers) = self.read(&self.auth_test, &[]).await?;
        let workspace = match self.read(&self.team_info, &[]).await {
            Ok((info, _)) => json!({
                "name": info["team"]["name"], "domain": info["team"]["domain"],
                "emailDomain": info["team"]["email_domain"],
            }),
            Err(ConnectorError::Rejected { code, .. }) => json!({"unreadable": code}),
            Err(other) => return Err(other),
        };
        let scopes: Vec<&str> = headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({
            "team": answer["team"], "teamId": answer["team_id"], "user": answer["user"], "userId": answer["user_id"],
            "botId": answer["bot_id"], "url": answer["url"], "scopes": scopes, "channel": self.channel,
            "workspace": workspace,
        }))
    }
}

impl Connector for SlackConnector {
    fn vendor(&self) -> &'static str {
        "slack"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.post(delivery))
    }

    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        // The message, the thread reply holding its buttons, and any reminders it schedules.
        let reminders = if self.schedules_reminders(notification) {
            self.reminders.len() as u32
        } else {
            0
        };
        if self.held_until(notification, SystemTime::now()).is_some() {
            // One scheduled message, its buttons inline.
            return 1 + reminders;
        }
        1 + u32::from(!notification.actions.is_empty()) + reminders
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.authenticate())
    }

    fn engagement<'a>(&'a self, details: &'a Value) -> CheckFuture<'a> {
        Box::pin(self.read_engagement(details))
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.token.reload().map_err(ConnectorError::Misconfigured)
    }
}

/// Why an inbound Slack request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Request-Timestamp or X-Slack-Signature")]
    Missing,
    #[error("request timestamp is more than five minutes away")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// How far an inbound request's timestamp may be from now (Slack's own replay window).
const SIGNATURE_WINDOW_SECS: u64 = 300;

/// Returns Slack's `X-Slack-Signature` for a request: `v0=` + hex HMAC-SHA256 of
/// `v0:{timestamp}:{raw body}` under the app's signing secret.
pub fn sign_slack_request(signing_secret: &str, timestamp: u64, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(
            slack_mac(signing_secret, timestamp, body)
                .finalize()
                .into_bytes()
        )
    )
}

/// Checks an inbound request the way Slack documents: the signature, in constant time, and a
/// timestamp within five minutes of `now_unix`.
pub fn verify_slack_request(
    signing_secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: u64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let timestamp: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Missing)?;
    if now_unix.abs_diff(timestamp) > SIGNATURE_WINDOW_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = signature
        .strip_prefix("v0=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(SignatureError::Mismatch)?;
    slack_mac(signing_secret, timestamp, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

fn slack_mac(signing_secret: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    mac
}

fn classify_slack_error(code: &str, retry_after: Option<Duration>) -> ConnectorError {
    match code {
        "ratelimited" | "rate_limited" => ConnectorError::RateLimited { retry_after },
        "not_authed" | "invalid_auth" | "token_expired" | "token_revoked" | "account_inactive" => {
            ConnectorError::Unauthorized(code.to_owned())
        }
        "internal_error"
        | "fatal_error"
        | "service_unavailable"
        | "request_timeout"
        | "team_added_to_org" => ConnectorError::Unavailable(code.to_owned()),
        "not_in_channel" => ConnectorError::Rejected {
            code: code.to_owned(),
            message: "the app is not a member of the channel: Slack lets it post to a public channel it never joined (chat:write.public) but not read it; invite the app to the channel".into(),
        },
        other => ConnectorError::Rejected {
            code: other.to_owned(),
            message: format!("Slack refused the message: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_slacks_documented_example() {
        // The worked example from Slack's "Verifying requests from Slack".
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign_slack_request(
                "8f742231b10e8888abcd99yyyzzz85a5",
                1531420618,
                body.as_bytes()
            ),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn inbound_requests_are_verified_by_signature_and_timestamp() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let signature = sign_slack_request(secret, 1_700_000_000, body);
        assert!(signature.starts_with("v0=") && signature.len() == 67);
        let verify = |ts: &str, sig: &str, now: u64| {
            verify_slack_request(secret, Some(ts), Some(sig), body, now)
        };
        assert_eq!(verify("1700000000", &signature, 1_700_000_100), Ok(()));
        assert_eq!(
            verify("1700000000", &signature, 1_700_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("1700000000", &signature, 1_699_999_699),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("1700000001", &signature, 1_700_000_001),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        assert_eq!(
            verify("1700000000", "v0=00", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_slack_request(secret, None, Some(&signature), body, 0),
            Err(SignatureError::Missing)
        );
        let tampered = b"payload=%7B%22type%22%3A%22view_submission%22%7D";
        assert_eq!(
            verify_slack_request(
                secret,
                Some("1700000000"),
                Some(&signature),
                tampered,
                1_700_000_000
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn slack_error_codes_are_classified_by_body() {
        assert!(matches!(
            classify_slack_error("ratelimited", Some(Duration::from_secs(3))),
            ConnectorError::RateLimited {
                retry_after: Some(_)
            }
        ));
        assert!(matches!(
            classify_slack_error("invalid_auth", None),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            classify_slack_error("internal_error", None),
            ConnectorError::Unavailable(_)
        ));
        assert!(matches!(
            classify_slack_error("channel_not_found", None),
            ConnectorError::Rejected { .. }
        ));
    }
}
