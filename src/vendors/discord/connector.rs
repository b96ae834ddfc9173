//! Discord (the seed's `CommunicationPlatformConnector`) through a channel webhook: one message
//! per notification, `POST /webhooks/{id}/{token}?wait=true` so Discord answers the message it
//! made (its id is the receipt).
//!
//! - The message is an embed (title, the message, the wedding as fields, a colour by priority,
//!   the notification id in the footer); WedSync's text is escaped so it cannot format or mention
//!   anything, and `allowed_mentions` is locked down: nobody is pinged unless the configuration
//!   names roles for high and emergency notifications, and then only those roles.
//! - Rate limits: requests to the webhook go one at a time, and every answer's
//!   `X-RateLimit-Remaining` and `-Reset-After` (the webhook's bucket) are kept; when the bucket
//!   is spent the next request waits for its reset (up to a few seconds) or is retried after it,
//!   so Discord never has to refuse one. A 429 waits the body's `retry_after` (the global limit
//!   too).
//! - Engagement: the message read back (`GET /webhooks/{id}/{token}/messages/{message_id}`)
//!   for its reactions.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::{is_snowflake, DiscordSettings};
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::quiet_hours::QuietHours;
use crate::connectors::{
    backslash_escape, cut_marked, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Priority, WeddingNotification};

/// How long a request waits for a spent bucket to reset before it is retried instead.
const LONGEST_HOLD: Duration = Duration::from_secs(5);
const TITLE_LENGTH: usize = 256;
const DESCRIPTION_LENGTH: usize = 4096;
const FIELD_LENGTH: usize = 1024;
/// The message flag that posts without a push or a sound (`1 << 12`).
pub(super) const SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;

pub struct DiscordConnector {
    integration_id: String,
    api: Url,
    webhook_url: ReloadableSecret,
    thread_id: Option<String>,
    username: Option<String>,
    mention_role_ids: Vec<String>,
    quiet_hours: Option<QuietHours>,
    client: OutboundClient,
    timeout: Duration,
    /// The webhook's bucket as Discord last reported it: requests left, and when it resets.
    bucket: Mutex<Option<(u64, Instant)>>,
    /// One request to the webhook at a time, so each answer's bucket is known before the next
    /// request leaves (and the channel shows messages in the order they were sent).
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// A webhook's id and token, read from its URL
/// (`https://discord.com/api/webhooks/<id>/<token>`, any API version or Discord host).
fn webhook_parts(url: &str) -> Option<(String, String)> {
    let url = Url::parse(url.trim()).ok()?;
    let segments: Vec<&str> = url.path_segments()?.collect();
    let at = segments.iter().position(|segment| *segment == "webhooks")?;
    let (id, token) = (segments.get(at + 1)?, segments.get(at + 2)?);
    (is_snowflake(id) && !token.is_empty() && segments.len() == at + 3)
        .then(|| (id.to_string(), token.to_string()))
}

impl DiscordConnector {
    pub fn new(
        settings: &DiscordSettings,
        integration_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client.check_url(&format!("{}/", settings.api_url.trim_end_matches('/')))?;
        let webhook_url =
            ReloadableSecret::load(&settings.webhook_url).map_err(ConnectorError::Misconfigured)?;
        if webhook_parts(webhook_url.get().expose()).is_none() {
            return Err(ConnectorError::Misconfigured(
                "webhook_url is not a Discord webhook URL (https://discord.com/api/webhooks/<id>/<token>)".into(),
            ));
        }
        Ok(Self {
            integration_id: integration_id.to_owned(),
            api,
            webhook_url,
            thread_id: settings.thread_id.clone(),
            username: settings.username.clone(),
            mention_role_ids: settings.mention_role_ids.clone(),
            quiet_hours: settings.quiet_hours.clone(),
            client,
            timeout,
            bucket: Mutex::new(None),
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }

    /// The webhook's address under the API, with `rest` after it.
    fn webhook(&self, rest: &str) -> Result<Url, ConnectorError> {
        let (id, token) = webhook_parts(self.webhook_url.get().expose()).ok_or_else(|| {
            ConnectorError::Misconfigured("webhook_url is not a Discord webhook URL".into())
        })?;
        self.api
            .join(&format!("webhooks/{id}/{token}{rest}"))
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let mut url = self.webhook("")?;
        url.query_pairs_mut().append_pair("wait", "true");
        if let Some(thread) = &self.thread_id {
            url.query_pairs_mut().append_pair("thread_id", thread);
        }
        let message = self.message(notification);
        let answer = self.call(Method::POST, url, Some(&message)).await?;
        let id = answer["id"].as_str().ok_or_else(|| {
            ConnectorError::Unavailable("Discord answered without the message's id".into())
        })?;
        Ok(Receipt {
            id: id.to_owned(),
            details: Some(json!({
                "messageId": id,
                "channelId": answer["channel_id"],
                "mentionedRoles": message["allowed_mentions"]["roles"],
                "silent": message["flags"] == json!(SUPPRESS_NOTIFICATIONS),
            })),
        })
    }

    /// The webhook message a notification becomes.
    fn message(&self, notification: &WeddingNotification) -> Value {
        let pressing = matches!(notification.priority, Priority::High | Priority::Emergency);
        let roles: Vec<&String> = if pressing {
            self.mention_role_ids.iter().collect()
        } else {
            Vec::new()
        };
        let mut description = escape_markdown(&notification.message);
        let links: Vec<String> = notification
            .actions
            .iter()
            .filter_map(|action| {
                action
                    .url
                    .as_ref()
                    .map(|url| format!("[{}](<{url}>)", escape_markdown(&action.label)))
            })
            .collect();
        if !links.is_empty() {
            description.push_str("\n\n");
            description.push_str(&links.join(" · "));
        }
        let mut fields = Vec::new();
        if let Some(context) = &notification.wedding_context {
            let mut add = |name: &str, value: &str| {
                fields.push(json!({"name": name, "value": cut_marked(&escape_markdown(value), FIELD_LENGTH), "inline": true}));
            };
            add("Wedding", &context.wedding_date);
            if let Some(couple) = &context.couple_names {
                add("Couple", couple);
            }
            if let Some(venue) = &context.venue {
                add("Venue", venue);
            }
        }
        let mut embed = json!({
            "title": cut_marked(&escape_markdown(&notification.title), TITLE_LENGTH),
            "description": cut_marked(&description, DESCRIPTION_LENGTH),
            "color": match notification.priority {
                Priority::Emergency => 0xD0_30_30,
                Priority::High => 0xE6_7E_22,
                Priority::Normal => 0x34_98_DB,
                Priority::Low => 0x95_A5_A6,
            },
            "fields": fields,
            "footer": {"text": cut_marked(&format!("WedSync · {} · {}", notification.notification_type, notification.notification_id), 2048)},
        });
        if let Some(at) = &notification.created_at {
            embed["timestamp"] = json!(at);
        }
        let mut message = json!({
            "embeds": [embed],
            "allowed_mentions": {"parse": [], "roles": roles},
        });
        if !roles.is_empty() {
            let pings: Vec<String> = roles.iter().map(|role| format!("<@&{role}>")).collect();
            message["content"] = json!(format!(
                "{} {}",
                pings.join(" "),
                notification.priority.as_str()
            ));
        }
        if let Some(username) = &self.username {
            message["username"] = json!(username);
        }
        if self
            .quiet_hours
            .as_ref()
            .is_some_and(|quiet| quiet.end_if_quiet_now(notification.priority).is_some())
        {
            message["flags"] = json!(SUPPRESS_NOTIFICATIONS);
        }
        message
    }

    /// Reactions on a delivered message (the seed's trackCommunicationEngagement).
    async fn reactions(&self, details: &Value) -> Result<Value, ConnectorError> {
        let id = details["messageId"]
            .as_str()
            .filter(|id| is_snowflake(id))
            .ok_or_else(|| ConnectorError::Rejected {
                code: "no_message".into(),
                message: "the delivery has no Discord message id".into(),
            })?;
        let mut url = self.webhook(&format!("/messages/{id}"))?;
        if let Some(thread) = &self.thread_id {
            url.query_pairs_mut().append_pair("thread_id", thread);
        }
        let message = self.call(Method::GET, url, None).await?;
        let reactions: Vec<Value> = message["reactions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|reaction| json!({"emoji": reaction["emoji"]["name"], "count": reaction["count"]}))
            .collect();
        Ok(json!({"messageId": id, "reactions": reactions}))
    }

    /// The webhook's name and channel (`GET /webhooks/{id}/{token}`): the seed's
    /// authenticateConnection.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let webhook = self.call(Method::GET, self.webhook("")?, None).await?;
        Ok(json!({
            "webhookId": webhook["id"],
            "name": webhook["name"],
            "channelId": webhook["channel_id"],
            "guildId": webhook["guild_id"],
        }))
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let _turn = self.one_at_a_time.lock().await;
        self.wait_for_bucket().await?;
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        self.keep_bucket(&headers);
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }

    /// Holds a request while the bucket is spent: until its reset when that is near, else
    /// refuses it as rate limited until then (nothing sent).
    async fn wait_for_bucket(&self) -> Result<(), ConnectorError> {
        let wait = match *self.bucket.lock().expect("discord bucket") {
            Some((0, reset_at)) => reset_at.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        };
        if wait.is_zero() {
            return Ok(());
        }
        if wait > LONGEST_HOLD {
            return Err(ConnectorError::RateLimited {
                retry_after: Some(wait),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// The bucket an answer reports (`X-RateLimit-Remaining`, `-Reset-After`), kept and exported
    /// as `herald_vendor_quota_remaining{window="bucket"}`.
    fn keep_bucket(&self, headers: &reqwest::header::HeaderMap) {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<f64>().ok())
        };
        let (Some(remaining), Some(reset_after)) = (
            read("x-ratelimit-remaining"),
            read("x-ratelimit-reset-after"),
        ) else {
            return;
        };
        let labels = [
            ("integration", self.integration_id.clone()),
            ("window", "bucket".to_owned()),
        ];
        metrics::gauge!("herald_vendor_quota_remaining", &labels).set(remaining);
        if let Some(limit) = read("x-ratelimit-limit") {
            metrics::gauge!("herald_vendor_quota_limit", &labels).set(limit);
        }
        let reset_at = Instant::now() + Duration::from_secs_f64(reset_after.clamp(0.0, 3600.0));
        *self.bucket.lock().expect("discord bucket") = Some((remaining.max(0.0) as u64, reset_at));
    }
}

impl Connector for DiscordConnector {
    fn vendor(&self) -> &'static str {
        "discord"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, details: &'a Value) -> CheckFuture<'a> {
        Box::pin(self.reactions(details))
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    /// A regenerated webhook URL is a new value where the secret lives.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.webhook_url
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }
}

/// A refused request, classified from Discord's `{code, message, errors}` (and the 429's
/// `{message, retry_after, global}`).
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let message = answer["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Discord answered {status}"));
    let detail = if answer["errors"].is_object() {
        format!("{message}: {}", answer["errors"])
    } else {
        message.clone()
    };
    match status.as_u16() {
        429 => {
            let body = answer["retry_after"]
                .as_f64()
                .map(|seconds| Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0)));
            ConnectorError::RateLimited {
                retry_after: match (body, retry_after(headers)) {
                    (Some(body), Some(header)) => Some(body.max(header)),
                    (body, header) => body.or(header),
                },
            }
        }
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        _ => ConnectorError::Rejected {
            code: answer["code"]
                .as_u64()
                .map_or_else(|| status.as_u16().to_string(), |code| code.to_string()),
            message: detail,
        },
    }
}

/// Discord's markdown and mention characters.
const MARKDOWN_SPECIALS: &[char] = &[
    '\\', '*', '_', '~', '`', '|', '>', '#', '-', '[', ']', '(', ')', '<', '@',
];

/// `text` with Discord's markdown and mention characters escaped, so WedSync's words show as
/// written.
fn escape_markdown(text: &str) -> String {
    backslash_escape(text, MARKDOWN_SPECIALS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::StatusCode;

    #[test]
    fn webhook_urls_give_their_id_and_token() {
        assert_eq!(
            webhook_parts("https://discord.com/api/webhooks/1234567890/abc-DEF_1"),
            Some(("1234567890".to_owned(), "abc-DEF_1".to_owned()))
        );
        assert!(webhook_parts("https://discord.com/api/v10/webhooks/1/t").is_some());
        assert_eq!(
            webhook_parts("https://discord.com/api/webhooks/abc/t"),
            None
        );
        assert_eq!(webhook_parts("https://discord.com/api/webhooks/1"), None);
        assert_eq!(
            webhook_parts("https://discord.com/api/webhooks/1/t/slack"),
            None
        );
        assert_eq!(webhook_parts("not a url"), None);
    }

    #[test]
    fn wedsync_text_cannot_format_or_mention() {
        assert_eq!(
            escape_markdown("@everyone **now** <@&1> [x](y)"),
            "\\@everyone \\*\\*now\\*\\* \\<\\@&1\\> \\[x\\]\\(y\\)"
        );
    }

    #[test]
    fn discords_errors_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("1"));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, &json!({"message": "You are being rate limited.", "retry_after": 2.5, "global": false, "code": 0})),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_millis(2500)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &json!({"message": "Invalid Webhook Token", "code": 50027})),
            ConnectorError::Unauthorized(message) if message == "Invalid Webhook Token"
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &HeaderMap::new(), &json!({"message": "Unknown Webhook", "code": 10015})),
            ConnectorError::Rejected { code, .. } if code == "10015"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &json!({"message": "Invalid Form Body", "code": 50035, "errors": {"embeds": {"0": {"title": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}]}}}}})),
            ConnectorError::Rejected { code, message } if code == "50035" && message.contains("256 or fewer")
        ));
    }
}
