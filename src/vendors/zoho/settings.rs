//! Zoho CRM's settings: the OAuth client (its data center's accounts server, and a refresh token
//! configured or installed through Herald), the workflow triggers Herald's writes fire, and their
//! validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// Zoho CRM for one organization.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZohoSettings {
    pub oauth: ZohoOAuthSettings,
    /// The automation Zoho runs on the records Herald writes (contacts, the deal's move, tasks):
    /// the `trigger` of each write. Empty runs none.
    #[serde(default = "default_triggers")]
    pub triggers: Vec<String>,
}

/// A Zoho API console client (server-based or self client) and the organization's refresh
/// token. Access tokens come from the accounts server of the account's data center, and API
/// calls go to the `api_domain` each token answer names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZohoOAuthSettings {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// The refresh token of a client authorized outside Herald (a self client's grant). Without
    /// it the client is installed through Herald and the token kept sealed in the vault.
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/zoho/callback` as the installing person's browser reaches it, registered
    /// as the client's redirect URI. Needed to install through Herald.
    pub redirect_uri: Option<String>,
    /// The accounts server of the organization's data center: `https://accounts.zoho.com` (US),
    /// `.eu`, `.in`, `.com.au`, `.jp`, `.ca`, `.sa` or `.com.cn`.
    #[serde(default = "default_accounts_server")]
    pub accounts_server: String,
}

/// The automation a write may fire, as Zoho names it.
pub const TRIGGERS: &[&str] = &[
    "workflow",
    "approval",
    "blueprint",
    "pathfinder",
    "orchestration",
];

fn default_triggers() -> Vec<String> {
    vec!["workflow".to_owned()]
}

fn default_accounts_server() -> String {
    "https://accounts.zoho.com".to_owned()
}

/// The addresses are http(s), the client has a refresh token or a way to get one, and the
/// triggers are Zoho's.
pub(super) fn check_zoho(settings: &ZohoSettings) -> Result<(), SettingsError> {
    let oauth = &settings.oauth;
    for (field, address) in [
        (
            "oauth.accounts_server",
            Some(oauth.accounts_server.as_str()),
        ),
        ("oauth.redirect_uri", oauth.redirect_uri.as_deref()),
    ] {
        if let Some(address) = address.filter(|address| !is_http_url(address)) {
            return Err(SettingsError::new(
                field,
                format!("{address:?} is not an http(s) address"),
            ));
        }
    }
    if oauth.client_id.trim().is_empty() {
        return Err(SettingsError::new("oauth.client_id", "is empty"));
    }
    if oauth.refresh_token.is_none() && oauth.redirect_uri.is_none() {
        return Err(SettingsError::new(
            "oauth.refresh_token",
            "set refresh_token (a client authorized elsewhere), or redirect_uri to install the client through Herald",
        ));
    }
    if let Some(unknown) = settings
        .triggers
        .iter()
        .find(|trigger| !TRIGGERS.contains(&trigger.as_str()))
    {
        return Err(SettingsError::new(
            "triggers",
            format!("{unknown:?} is not one of {}", TRIGGERS.join(", ")),
        ));
    }
    Ok(())
}
