//! Pipedrive's settings: the company's API domain, and an API token or an OAuth app (a refresh
//! token, configured or installed through Herald); the activity type notifications become; and
//! their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// Pipedrive's API for one company.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipedriveSettings {
    /// The company's address (`https://acme.pipedrive.com`); with OAuth, the `api_domain` the
    /// token answer names.
    pub api_domain: String,
    /// A user's personal API token (Settings, Personal preferences, API), sent as `x-api-token`;
    /// or, instead, `oauth`.
    pub api_token: Option<SecretRef>,
    /// A Marketplace or private app's OAuth 2 credentials.
    pub oauth: Option<PipedriveOAuthSettings>,
    /// The activity type (its `key_string`) each notification becomes; `task` exists in every
    /// company, and a Pipedrive automation triggered by "activity added" of a type of its own is
    /// how a notification starts one.
    #[serde(default = "default_activity_type")]
    pub activity_type: String,
}

/// Pipedrive OAuth 2: the app's client id and secret (sent as HTTP Basic, the only way
/// Pipedrive's token endpoint takes them) and the company's refresh token. The app's scopes are
/// chosen in Pipedrive's Developer Hub, not on the consent page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipedriveOAuthSettings {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// The refresh token of an app installed outside Herald. Without it the app is installed
    /// through Herald (`POST /v1/integrations/{id}/oauth/authorize`) and the token kept sealed in
    /// the vault.
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/pipedrive/callback` as the installing person's browser reaches it: the
    /// app's callback URL in the Developer Hub must be the same. Needed to install through Herald.
    pub redirect_uri: Option<String>,
    /// Pipedrive's OAuth server (consent page and token endpoint).
    #[serde(default = "default_oauth_server")]
    pub server: String,
}

fn default_activity_type() -> String {
    "task".to_owned()
}

fn default_oauth_server() -> String {
    "https://oauth.pipedrive.com".to_owned()
}

/// The addresses are http(s), exactly one credential is set, and an app has a refresh token or
/// a way to get one.
pub(super) fn check_pipedrive(settings: &PipedriveSettings) -> Result<(), SettingsError> {
    if !is_http_url(&settings.api_domain) {
        return Err(SettingsError::new(
            "api_domain",
            format!(
                "{:?} is not an http(s) address such as https://acme.pipedrive.com",
                settings.api_domain
            ),
        ));
    }
    let type_ok = !settings.activity_type.is_empty()
        && settings.activity_type.len() <= 100
        && settings
            .activity_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !type_ok {
        return Err(SettingsError::new(
            "activity_type",
            format!(
                "{:?} is not an activity type's key (letters, digits and underscores, such as task)",
                settings.activity_type
            ),
        ));
    }
    let oauth = match (&settings.api_token, &settings.oauth) {
        (Some(_), None) => return Ok(()),
        (None, Some(oauth)) => oauth,
        _ => {
            return Err(SettingsError::new(
                "api_token",
                "set either api_token (a personal API token) or oauth (an app), not both",
            ))
        }
    };
    for (field, address) in [
        ("oauth.server", Some(oauth.server.as_str())),
        ("oauth.redirect_uri", oauth.redirect_uri.as_deref()),
    ] {
        if let Some(address) = address.filter(|address| !is_http_url(address)) {
            return Err(SettingsError::new(
                field,
                format!("{address:?} is not an http(s) address"),
            ));
        }
    }
    if oauth.refresh_token.is_none() && oauth.redirect_uri.is_none() {
        return Err(SettingsError::new(
            "oauth.refresh_token",
            "set refresh_token (an app installed elsewhere), or redirect_uri to install the app through Herald",
        ));
    }
    Ok(())
}
