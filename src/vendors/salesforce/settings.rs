//! Salesforce's settings: the org's My Domain, the REST API version, and the connected app's
//! OAuth 2 credentials with the org's refresh token; and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// Salesforce's REST API for one org, through a connected app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceSettings {
    /// The org's My Domain (`https://acme.my.salesforce.com`): REST calls and the token
    /// endpoint both live there.
    pub instance_url: String,
    /// The REST API version, `vXX.X`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub oauth: SalesforceOAuthSettings,
    /// The `Status` of the Task each notification becomes (a value of the org's Task Status
    /// picklist).
    #[serde(default = "default_task_status")]
    pub task_status: String,
}

/// The connected app's consumer key and secret and the org's refresh token, configured or kept
/// by an install through Herald. Salesforce gives access tokens no stated lifetime (they last the
/// org's session timeout, two hours by default): Herald refreshes them every half hour and
/// whenever Salesforce answers `INVALID_SESSION_ID`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceOAuthSettings {
    /// The connected app's consumer key.
    pub client_id: String,
    /// The consumer secret; Salesforce asks for it with a refresh token only when the app's
    /// "Require Secret for Refresh Token Flow" is on, and with an authorization code when
    /// "Require Secret for Web Server Flow" is.
    pub client_secret: Option<SecretRef>,
    /// The org's refresh token, from an authorization done elsewhere. Without it the app is
    /// installed through Herald (`POST /v1/integrations/{id}/oauth/authorize`) and the token is
    /// kept sealed in the vault.
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/salesforce/callback` as the installing person's browser reaches it: the
    /// connected app's callback URL must be the same. Needed to install through Herald.
    pub redirect_uri: Option<String>,
    /// The scopes the install asks for (`refresh_token` is what lets Herald keep the org).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["api".to_owned(), "refresh_token".to_owned()]
}

/// The REST API version Herald is written against (Spring '26).
pub const API_VERSION: &str = "v66.0";

fn default_api_version() -> String {
    API_VERSION.to_owned()
}

fn default_task_status() -> String {
    "Not Started".to_owned()
}

/// The instance is an http(s) address, and the version is written as Salesforce writes it.
pub(super) fn check_salesforce(settings: &SalesforceSettings) -> Result<(), SettingsError> {
    if !is_http_url(&settings.instance_url) {
        return Err(SettingsError::new(
            "instance_url",
            format!(
                "{:?} is not an http(s) address such as https://acme.my.salesforce.com",
                settings.instance_url
            ),
        ));
    }
    let version_ok = settings
        .api_version
        .strip_prefix('v')
        .and_then(|number| number.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) && minor == "0"
        });
    if !version_ok {
        return Err(SettingsError::new(
            "api_version",
            format!(
                "{:?} is not a REST API version such as {API_VERSION}",
                settings.api_version
            ),
        ));
    }
    match (&settings.oauth.refresh_token, &settings.oauth.redirect_uri) {
        (None, None) => {
            return Err(SettingsError::new(
                "oauth.refresh_token",
                "set refresh_token (an org authorized elsewhere), or redirect_uri to install the connected app through Herald",
            ))
        }
        (_, Some(redirect)) if !is_http_url(redirect) => {
            return Err(SettingsError::new(
                "oauth.redirect_uri",
                format!("{redirect:?} is not an http(s) address"),
            ))
        }
        _ => {}
    }
    if settings.task_status.trim().is_empty() {
        return Err(SettingsError::new("task_status", "must not be empty"));
    }
    Ok(())
}
