//! Telegram's settings: the bot's token, the chat it posts to, where Telegram's updates reach
//! Herald, and their validation.

use serde::Deserialize;

use crate::connectors::quiet_hours::QuietHours;
use crate::secret::SecretRef;
use crate::vendors::{check_quiet_hours, is_http_url, SettingsError};

/// A Telegram bot posting to one chat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// The bot's token from @BotFather (`123456:ABC-...`).
    pub bot_token: SecretRef,
    /// The chat: a numeric id (a group's is negative) or a public channel's `@username`.
    pub chat_id: String,
    /// Telegram's updates (button presses, replies) into Herald: `setWebhook` is made by
    /// `POST /v1/integrations/{id}/subscriptions` with this address and secret token.
    pub webhook: Option<TelegramWebhook>,
    /// Hours in the chat's time zone when notifications below `breaks_through` are sent
    /// silently (`disable_notification`: no sound or push; the seed's manageNotificationPreferences).
    pub quiet_hours: Option<QuietHours>,
    /// The Bot API (`https://api.telegram.org`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

/// Where Telegram's updates reach Herald, and the secret token Telegram sends back with each
/// (`X-Telegram-Bot-Api-Secret-Token`: 1-256 of `A-Z`, `a-z`, `0-9`, `_` and `-`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramWebhook {
    pub public_url: String,
    pub secret_token: SecretRef,
}

fn default_api_url() -> String {
    "https://api.telegram.org".to_owned()
}

/// Whether `chat` is a chat id Telegram takes: an integer, or `@` and a public username.
fn is_chat_id(chat: &str) -> bool {
    let number = chat.strip_prefix('-').unwrap_or(chat);
    let numeric =
        !number.is_empty() && number.len() <= 20 && number.bytes().all(|b| b.is_ascii_digit());
    let username = chat.strip_prefix('@').is_some_and(|name| {
        (5..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    numeric || username
}

/// Whether `token` is a secret token Telegram takes.
pub(super) fn is_secret_token(token: &str) -> bool {
    (1..=256).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn check_telegram(settings: &TelegramSettings) -> Result<(), SettingsError> {
    check_quiet_hours(&settings.quiet_hours)?;
    if !is_chat_id(&settings.chat_id) {
        return Err(SettingsError::new(
            "chat_id",
            format!(
                "{:?} is not a chat id (a number, negative for groups) or a channel's @username",
                settings.chat_id
            ),
        ));
    }
    for (field, address) in [
        ("api_url", Some(settings.api_url.as_str())),
        (
            "webhook.public_url",
            settings
                .webhook
                .as_ref()
                .map(|webhook| webhook.public_url.as_str()),
        ),
    ] {
        if let Some(address) = address.filter(|address| !is_http_url(address)) {
            return Err(SettingsError::new(
                field,
                format!("{address:?} is not an http(s) address"),
            ));
        }
    }
    Ok(())
}
