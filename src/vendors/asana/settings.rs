//! Asana's settings: the token, the workspace and project a planner network works in, the text
//! custom field Herald keeps its references in, the sections notification types move a wedding
//! to, and where Asana's webhooks reach Herald; and their validation.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};
use crate::wedsync::is_notification_type;

/// Asana's API as one workspace's project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsanaSettings {
    /// A personal access token or a service account's token, sent as `Authorization: Bearer`.
    pub token: SecretRef,
    /// The workspace (or organization) gid: the search endpoint is the workspace's.
    pub workspace: String,
    /// The project each wedding is a task in.
    pub project: String,
    /// The gid of a text custom field on the project, where Herald writes `wedding/<weddingId>`
    /// on a wedding's task and `notification/<notificationId>/<actionId>` on an action's, so it
    /// finds them again (custom fields are an Asana premium feature).
    pub reference_field: String,
    /// The section (a board column, a list heading) each notification type moves the wedding's
    /// task to: `{ booking_confirmed = "<section gid>" }`.
    #[serde(default)]
    pub sections: BTreeMap<String, String>,
    /// Asana's webhooks on the project, so a ticked action task acknowledges its notification.
    pub webhooks: Option<AsanaWebhooks>,
    /// Asana's API (`https://app.asana.com/api/1.0`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

/// Where Asana's webhook deliveries reach Herald: `public_url` is Herald as Asana reaches it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsanaWebhooks {
    pub public_url: String,
}

fn default_base_url() -> String {
    "https://app.asana.com/api/1.0".to_owned()
}

/// Whether `gid` looks like an Asana gid: digits only.
fn is_gid(gid: &str) -> bool {
    !gid.is_empty() && gid.len() <= 32 && gid.bytes().all(|b| b.is_ascii_digit())
}

/// The gids are gids, the section map names notification types, the addresses are http(s).
pub(super) fn check_asana(settings: &AsanaSettings) -> Result<(), SettingsError> {
    for (field, gid) in [
        ("workspace", &settings.workspace),
        ("project", &settings.project),
        ("reference_field", &settings.reference_field),
    ] {
        if !is_gid(gid) {
            return Err(SettingsError::new(
                field,
                format!("{gid:?} is not an Asana gid (digits, as in the object's URL)"),
            ));
        }
    }
    for (notification_type, section) in &settings.sections {
        if !is_notification_type(notification_type) {
            return Err(SettingsError::new(
                format!("sections.{notification_type}"),
                "not a notification type (lowercase letters, digits, _ and .)",
            ));
        }
        if !is_gid(section) {
            return Err(SettingsError::new(
                format!("sections.{notification_type}"),
                format!("{section:?} is not a section's gid (digits)"),
            ));
        }
    }
    if !is_http_url(&settings.base_url) {
        return Err(SettingsError::new(
            "base_url",
            format!("{:?} is not an http(s) address", settings.base_url),
        ));
    }
    if let Some(webhooks) = &settings.webhooks {
        if !is_http_url(&webhooks.public_url) {
            return Err(SettingsError::new(
                "webhooks.public_url",
                format!(
                    "{:?} is not an http(s) address such as https://herald.example.com",
                    webhooks.public_url
                ),
            ));
        }
    }
    Ok(())
}
