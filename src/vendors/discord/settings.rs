//! Discord's settings: the channel webhook (its URL is the credential), who is mentioned for
//! urgent notifications, and their validation.

use serde::Deserialize;

use crate::connectors::quiet_hours::QuietHours;
use crate::secret::SecretRef;
use crate::vendors::{check_quiet_hours, is_http_url, SettingsError};

/// A Discord channel webhook (Server Settings > Integrations > Webhooks > Copy Webhook URL).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    /// The webhook's URL, `https://discord.com/api/webhooks/<id>/<token>`: its token is the
    /// credential, so the URL is kept where secrets are.
    pub webhook_url: SecretRef,
    /// A thread of the webhook's channel (a forum post) to post in.
    pub thread_id: Option<String>,
    /// The name the messages show (1-80 characters; Discord refuses names containing "discord"
    /// or "clyde").
    pub username: Option<String>,
    /// Roles mentioned (pinged) in high and emergency notifications; nobody else ever is.
    #[serde(default)]
    pub mention_role_ids: Vec<String>,
    /// Hours in the server's time zone when notifications below `breaks_through` are posted as
    /// silent messages (`SUPPRESS_NOTIFICATIONS`: no push or sound; the seed's
    /// manageNotificationPreferences).
    pub quiet_hours: Option<QuietHours>,
    /// Discord's API (`https://discord.com/api/v10`): the webhook's id and token are called there.
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

fn default_api_url() -> String {
    "https://discord.com/api/v10".to_owned()
}

/// Whether `id` is a Discord snowflake: digits.
pub(super) fn is_snowflake(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// The username Discord takes, the snowflakes are snowflakes, the address is http(s).
pub(super) fn check_discord(settings: &DiscordSettings) -> Result<(), SettingsError> {
    check_quiet_hours(&settings.quiet_hours)?;
    if let Some(name) = &settings.username {
        let lower = name.to_lowercase();
        if name.trim().is_empty() || name.chars().count() > 80 {
            return Err(SettingsError::new("username", "must be 1 to 80 characters"));
        }
        if lower.contains("discord") || lower.contains("clyde") {
            return Err(SettingsError::new(
                "username",
                "Discord refuses webhook names containing \"discord\" or \"clyde\"",
            ));
        }
    }
    if let Some(thread) = settings.thread_id.as_deref().filter(|id| !is_snowflake(id)) {
        return Err(SettingsError::new(
            "thread_id",
            format!("{thread:?} is not a Discord id (digits)"),
        ));
    }
    for (index, role) in settings.mention_role_ids.iter().enumerate() {
        if !is_snowflake(role) {
            return Err(SettingsError::new(
                format!("mention_role_ids[{index}]"),
                format!("{role:?} is not a Discord role id (digits)"),
            ));
        }
    }
    if settings.mention_role_ids.len() > 100 {
        return Err(SettingsError::new(
            "mention_role_ids",
            "Discord takes at most 100 roles to mention",
        ));
    }
    if !is_http_url(&settings.api_url) {
        return Err(SettingsError::new(
            "api_url",
            format!("{:?} is not an http(s) address", settings.api_url),
        ));
    }
    Ok(())
}
