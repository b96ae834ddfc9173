//! Intercom's settings: the workspace's access token and region, the teammate the messages come
//! from, how they are sent, and the webhook's secret; and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// An Intercom workspace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntercomSettings {
    /// The app's access token (Developer Hub > your app > Authentication), sent as a Bearer
    /// token.
    pub access_token: SecretRef,
    /// The teammate (admin) the messages are sent as: their id, digits.
    pub admin_id: String,
    /// Where the workspace is hosted: `us` (api.intercom.io), `eu` or `au`.
    #[serde(default)]
    pub region: Region,
    /// `email` (the default: an email from the teammate, which the couple can answer) or
    /// `in_app` (shown in the Messenger when the couple next opens it).
    #[serde(default)]
    pub message_type: MessageType,
    /// Inbound: the app's client secret, which signs its webhooks (`X-Hub-Signature`).
    pub webhook: Option<WebhookSettings>,
    /// Overrides the region's API address (the sandbox's simulator).
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    #[default]
    Us,
    Eu,
    Au,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    #[default]
    Email,
    InApp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub client_secret: SecretRef,
}

impl IntercomSettings {
    /// The API's address: the override, or the region's host.
    pub fn api_url(&self) -> String {
        self.api_url.clone().unwrap_or_else(|| {
            match self.region {
                Region::Us => "https://api.intercom.io",
                Region::Eu => "https://api.eu.intercom.io",
                Region::Au => "https://api.au.intercom.io",
            }
            .to_owned()
        })
    }
}

pub(super) fn check_intercom(settings: &IntercomSettings) -> Result<(), SettingsError> {
    let admin = &settings.admin_id;
    if admin.is_empty() || admin.len() > 20 || !admin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SettingsError::new(
            "admin_id",
            format!("{admin:?} is not a teammate id (digits: GET /admins lists them)"),
        ));
    }
    if let Some(url) = settings.api_url.as_deref().filter(|url| !is_http_url(url)) {
        return Err(SettingsError::new(
            "api_url",
            format!("{url:?} is not an http(s) address"),
        ));
    }
    Ok(())
}
