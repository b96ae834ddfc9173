//! Salesforce's settings: the org's My Domain, the REST API version, and the connected app's
//! credentials (a refresh token, configured or installed through Herald; or the JWT bearer
//! flow's private key); and their validation.

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
    /// A connected app with a refresh token; or, instead, `jwt`.
    pub oauth: Option<SalesforceOAuthSettings>,
    /// A connected app with a certificate, for the server-to-server JWT bearer flow.
    pub jwt: Option<SalesforceJwtSettings>,
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

/// The JWT bearer flow: Herald signs an assertion for `username` with the private key whose
/// certificate is on the connected app (pre-authorized for that user's profile), and trades it
/// for an access token. No refresh token, and no person at any step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceJwtSettings {
    /// The connected app's consumer key (the assertion's `iss`).
    pub client_id: String,
    /// The Salesforce user the integration acts as (`sub`).
    pub username: String,
    /// The private key, PEM PKCS#8 (`BEGIN PRIVATE KEY`).
    pub private_key: SecretRef,
    /// The assertion's `aud`: `https://login.salesforce.com`, or `https://test.salesforce.com`
    /// for a sandbox.
    #[serde(default = "default_audience")]
    pub audience: String,
}

fn default_audience() -> String {
    "https://login.salesforce.com".to_owned()
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
    let oauth = match (&settings.oauth, &settings.jwt) {
        (Some(oauth), None) => oauth,
        (None, Some(jwt)) => {
            if !is_http_url(&jwt.audience) {
                return Err(SettingsError::new(
                    "jwt.audience",
                    format!("{:?} is not an http(s) address", jwt.audience),
                ));
            }
            if jwt.username.trim().is_empty() {
                return Err(SettingsError::new("jwt.username", "must not be empty"));
            }
            return check_task_status(settings);
        }
        _ => {
            return Err(SettingsError::new(
                "oauth",
                "set either oauth (a refresh token) or jwt (the JWT bearer flow)",
            ))
        }
    };
    match (&oauth.refresh_token, &oauth.redirect_uri) {
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
    check_task_status(settings)
}

fn check_task_status(settings: &SalesforceSettings) -> Result<(), SettingsError> {
    if settings.task_status.trim().is_empty() {
        return Err(SettingsError::new("task_status", "must not be empty"));
    }
    Ok(())
}
