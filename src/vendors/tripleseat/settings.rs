//! Tripleseat's settings: the partner app's OAuth 2 credentials (a refresh token configured, or
//! the app installed through Herald by a customer admin), the webhook signing key, and their
//! validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// Tripleseat for one customer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripleseatSettings {
    pub oauth: TripleseatOAuthSettings,
    /// Tripleseat's webhooks into Herald (`/inbound/tripleseat/<integration>/webhooks`), signed
    /// with the endpoint's signing key.
    pub webhooks: Option<TripleseatWebhooks>,
    /// Tripleseat's API (`https://api.tripleseat.com`): `/v1/...` and the token endpoint
    /// `/oauth2/token`.
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

/// A Tripleseat partner app (Settings > Tripleseat API & Webhooks, or the partnership team):
/// its client id and secret, and the customer's refresh token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripleseatOAuthSettings {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// The refresh token of an app authorized outside Herald. Without it a customer admin
    /// installs the app through Herald (`POST /v1/integrations/{id}/oauth/authorize`) and the
    /// token is kept sealed in the vault.
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/tripleseat/callback` as the admin's browser reaches it: the redirect URI
    /// registered with the app, exactly. Needed to install through Herald.
    pub redirect_uri: Option<String>,
    /// The scopes the app was approved for (`events:read`...), asked for on the consent page:
    /// Tripleseat refuses scopes an app was not approved for, so Herald asks for none of its own.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Tripleseat's consent page.
    #[serde(default = "default_authorize_url")]
    pub authorize_url: String,
}

/// The signing key of the webhook endpoint (Settings > API/Webhooks) whose target is Herald.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripleseatWebhooks {
    pub signing_key: SecretRef,
}

fn default_api_url() -> String {
    "https://api.tripleseat.com".to_owned()
}

fn default_authorize_url() -> String {
    "https://login.tripleseat.com/oauth2/authorize".to_owned()
}

/// The addresses are http(s); the app has a refresh token, or a redirect URI and scopes to be
/// installed with.
pub(super) fn check_tripleseat(settings: &TripleseatSettings) -> Result<(), SettingsError> {
    let oauth = &settings.oauth;
    for (field, address) in [
        ("api_url", Some(settings.api_url.as_str())),
        ("oauth.authorize_url", Some(oauth.authorize_url.as_str())),
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
        return Err(SettingsError::new(
            "oauth.client_id",
            "the app's client id (its UID in Tripleseat) is empty",
        ));
    }
    match (&oauth.refresh_token, &oauth.redirect_uri) {
        (None, None) => Err(SettingsError::new(
            "oauth.refresh_token",
            "set refresh_token (an app authorized elsewhere), or redirect_uri to install the app through Herald",
        )),
        (None, Some(_)) if oauth.scopes.is_empty() => Err(SettingsError::new(
            "oauth.scopes",
            "an install through Herald asks for the scopes the app was approved for: list them",
        )),
        _ => Ok(()),
    }
}
