//! Telegram (the seed's `CommunicationPlatformConnector`) through the Bot API
//! (`POST {api}/bot<token>/<method>`, answers `{ok, result}` or `{ok: false, error_code,
//! description, parameters}`): one `sendMessage` per notification.
//!
//! - The text is HTML (`parse_mode: HTML`): the title in bold, the message, the wedding in
//!   italics, everything WedSync wrote escaped (`&`, `<`, `>`), so it cannot break the parse or
//!   add markup.
//! - Buttons are an inline keyboard: a link action is a URL button; any other action, and an
//!   "Acknowledge" button on high and emergency notifications without actions of their own, a
//!   callback button whose `callback_data` (at most 64 bytes) is `ack|<action>|<notification>`.
//!   A button whose data would not fit is left out and named in the receipt's details.
//! - A 429 waits `parameters.retry_after`; `setWebhook` makes Telegram send updates to Herald
//!   (`inbound.rs`).

use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use super::TelegramSettings;
use crate::connectors::http::{transport_error, OutboundClient};
use crate::connectors::quiet_hours::QuietHours;
use crate::connectors::{
    cut_marked, escape_html, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Priority, WeddingNotification};

/// Telegram's longest `callback_data`, in bytes.
const CALLBACK_DATA_BYTES: usize = 64;
/// Telegram's longest message text, in characters after entities are parsed; WedSync's text is
/// cut well inside it.
const MESSAGE_LENGTH: usize = 3500;

pub struct TelegramConnector {
    integration_id: String,
    api: Url,
    bot_token: ReloadableSecret,
    chat_id: String,
    webhook: Option<(String, ReloadableSecret)>,
    quiet_hours: Option<QuietHours>,
    client: OutboundClient,
    timeout: Duration,
}

/// The callback data of a button acknowledging `notification` with `action`, if it fits.
pub fn callback_data(action: &str, notification: &str) -> Option<String> {
    let data = format!("ack|{action}|{notification}");
    (data.len() <= CALLBACK_DATA_BYTES && !action.contains('|')).then_some(data)
}

/// The action and notification a button's callback data names.
pub fn parse_callback_data(data: &str) -> Option<(String, String)> {
    let rest = data.strip_prefix("ack|")?;
    let (action, notification) = rest.split_once('|')?;
    (!action.is_empty() && !notification.is_empty())
        .then(|| (action.to_owned(), notification.to_owned()))
}

impl TelegramConnector {
    pub fn new(
        settings: &TelegramSettings,
        integration_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client.check_url(settings.api_url.trim_end_matches('/'))?;
        let misconfigured = ConnectorError::Misconfigured;
        Ok(Self {
            integration_id: integration_id.to_owned(),
            api,
            bot_token: ReloadableSecret::load(&settings.bot_token).map_err(misconfigured)?,
            chat_id: settings.chat_id.clone(),
            quiet_hours: settings.quiet_hours.clone(),
            webhook: match &settings.webhook {
                Some(webhook) => Some((
                    webhook.public_url.trim_end_matches('/').to_owned(),
                    ReloadableSecret::load(&webhook.secret_token).map_err(misconfigured)?,
                )),
                None => None,
            },
            client,
            timeout,
        })
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let (keyboard, omitted) = keyboard(notification);
        let mut message = json!({
            "chat_id": self.chat_id,
            "text": message_html(notification),
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        if !keyboard.is_empty() {
            message["reply_markup"] = json!({ "inline_keyboard": [keyboard] });
        }
        let quiet_until = self
            .quiet_hours
            .as_ref()
            .and_then(|quiet| quiet.end_if_quiet_now(notification.priority));
        if quiet_until.is_some() {
            message["disable_notification"] = json!(true);
        }
        let sent = self.call("sendMessage", &message).await?;
        let message_id = sent["message_id"].as_i64().ok_or_else(|| {
            ConnectorError::Unavailable("Telegram answered without the message's id".into())
        })?;
        Ok(Receipt {
            id: message_id.to_string(),
            details: Some(json!({
                "chatId": sent["chat"]["id"],
                "messageId": message_id,
                "buttonsOmitted": omitted,
                "silentUntil": quiet_until,
            })),
        })
    }

    /// The seed's authenticateConnection: the bot the token is (`getMe`).
    async fn check(&self) -> Result<Value, ConnectorError> {
        let me = self.call("getMe", &json!({})).await?;
        Ok(json!({"botId": me["id"], "username": me["username"], "chatId": self.chat_id}))
    }

    /// `setWebhook`: Telegram sends button presses and messages to Herald, with the secret token.
    async fn subscribe(&self) -> Result<Value, ConnectorError> {
        let Some((public_url, secret)) = &self.webhook else {
            return Err(ConnectorError::Rejected {
                code: "no_rest_hooks".into(),
                message: "settings.webhook is not configured for this integration".into(),
            });
        };
        let secret = secret.get();
        if !super::settings::is_secret_token(secret.expose()) {
            return Err(ConnectorError::Misconfigured(
                "webhook.secret_token must be 1-256 of A-Z, a-z, 0-9, _ and -".into(),
            ));
        }
        let url = format!(
            "{public_url}/inbound/telegram/{}/updates",
            self.integration_id
        );
        self.call(
            "setWebhook",
            &json!({"url": url, "secret_token": secret.expose(), "allowed_updates": ["callback_query", "message"]}),
        )
        .await?;
        Ok(json!({"subscriptions": [{"event": "updates", "url": url, "status": "created"}]}))
    }

    /// `answerCallbackQuery`: the button's spinner stops and the person sees `text`.
    pub async fn answer_callback(&self, query_id: &str, text: &str) -> Result<(), ConnectorError> {
        self.call(
            "answerCallbackQuery",
            &json!({"callback_query_id": query_id, "text": text}),
        )
        .await
        .map(|_| ())
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, ConnectorError> {
        let url = self
            .api
            .join(&format!("/bot{}/{method}", self.bot_token.get().expose()))
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        let response = self
            .client
            .client()
            .post(url)
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            // The token is in the path: a transport error names the host, never the URL.
            .map_err(|err| transport_error(err.without_url()))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() && answer["ok"] == true {
            return Ok(answer["result"].clone());
        }
        Err(classify(status, &answer))
    }
}

impl Connector for TelegramConnector {
    fn vendor(&self) -> &'static str {
        "telegram"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Telegram")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    fn subscribe_to_events(&self) -> CheckFuture<'_> {
        Box::pin(self.subscribe())
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.bot_token
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }
}

/// A refusal, classified from `{ok: false, error_code, description, parameters}`.
fn classify(status: reqwest::StatusCode, answer: &Value) -> ConnectorError {
    let code = answer["error_code"]
        .as_u64()
        .unwrap_or(u64::from(status.as_u16()));
    let description = answer["description"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Telegram answered {status}"));
    match code {
        429 => ConnectorError::RateLimited {
            retry_after: answer["parameters"]["retry_after"]
                .as_u64()
                .map(Duration::from_secs)
                .or(Some(Duration::from_secs(1))),
        },
        401 => ConnectorError::Unauthorized(description),
        500..=599 => ConnectorError::Unavailable(format!("{code}: {description}")),
        _ => ConnectorError::Rejected {
            code: code.to_string(),
            message: description,
        },
    }
}

/// The message: the title in bold, the message, the wedding in italics.
fn message_html(notification: &WeddingNotification) -> String {
    let mut text = format!(
        "<b>{}</b>\n{}",
        escape_html(&cut_marked(&notification.title, 300)),
        escape_html(&cut_marked(&notification.message, MESSAGE_LENGTH))
    );
    if let Some(context) = &notification.wedding_context {
        let mut wedding = context.wedding_date.clone();
        for part in [&context.couple_names, &context.venue]
            .into_iter()
            .flatten()
        {
            wedding.push_str(" · ");
            wedding.push_str(part);
        }
        text.push_str(&format!("\n<i>{}</i>", escape_html(&wedding)));
    }
    text
}

/// The inline keyboard's one row, and the actions left out because their data would not fit.
fn keyboard(notification: &WeddingNotification) -> (Vec<Value>, Vec<String>) {
    let mut buttons = Vec::new();
    let mut omitted = Vec::new();
    let mut callback = |label: &str, action: &str, buttons: &mut Vec<Value>| match callback_data(
        action,
        &notification.notification_id,
    ) {
        Some(data) => buttons.push(json!({"text": label, "callback_data": data})),
        None => omitted.push(action.to_owned()),
    };
    for action in notification.actions.iter().take(8) {
        match &action.url {
            Some(url) => buttons.push(json!({"text": action.label, "url": url})),
            None => callback(&action.label, &action.action_id, &mut buttons),
        }
    }
    let asks_for_none = !notification
        .actions
        .iter()
        .any(|action| action.url.is_none());
    if asks_for_none && matches!(notification.priority, Priority::High | Priority::Emergency) {
        callback("Acknowledge", "acknowledge", &mut buttons);
    }
    (buttons, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_fits_telegrams_64_bytes_or_is_left_out() {
        assert_eq!(callback_data("ack", "n-1").as_deref(), Some("ack|ack|n-1"));
        assert_eq!(
            parse_callback_data("ack|on-it|n|with|bars"),
            Some(("on-it".to_owned(), "n|with|bars".to_owned()))
        );
        assert_eq!(callback_data("a", &"n".repeat(60)), None);
        assert_eq!(callback_data("a|b", "n"), None);
        assert_eq!(parse_callback_data("other|x|y"), None);
    }

    #[test]
    fn telegrams_errors_are_classified() {
        use reqwest::StatusCode;
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(
                StatusCode::UNAUTHORIZED,
                &json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
            ),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was kicked from the group chat"})),
            ConnectorError::Rejected { code, message } if code == "403" && message.contains("kicked")
        ));
    }
}
