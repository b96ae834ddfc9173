//! HubSpot's settings: a private app's token or an OAuth app, the webhooks it sends Herald, and
//! their validation.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};
use crate::wedsync::is_notification_type;

/// HubSpot CRM v3 with a private-app access token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotSettings {
    #[serde(default = "default_hubspot_base_url")]
    pub base_url: String,
    /// A private app's access token (`pat-...`); or, instead, `oauth`.
    pub token: Option<SecretRef>,
    /// A public app's OAuth 2 credentials: access tokens come from the refresh token.
    pub oauth: Option<HubSpotOAuthSettings>,
    /// The app's webhook subscriptions delivered to Herald, as WedSync notifications.
    pub webhooks: Option<HubSpotWebhooks>,
}

/// Where HubSpot's webhooks reach Herald and how they are verified: the app's target URL is
/// `<public_url>/inbound/hubspot/<integration>/webhooks`, and its requests are signed with the
/// app's client secret (`X-HubSpot-Signature-v3`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotWebhooks {
    /// Herald as HubSpot reaches it (the signature covers the whole target URL).
    pub public_url: String,
    /// The app's client secret; an OAuth app's `oauth.client_secret` without it.
    pub client_secret: Option<SecretRef>,
    /// The notification type a deal moved to a stage becomes, by the stage's id
    /// (`{ closedwon = "booking_confirmed" }`); other stages become `deal_stage_changed`.
    #[serde(default)]
    pub deal_stages: BTreeMap<String, String>,
}

impl HubSpotSettings {
    /// The secret HubSpot signs webhook requests with.
    pub fn webhook_secret(&self) -> Option<&SecretRef> {
        let webhooks = self.webhooks.as_ref()?;
        webhooks
            .client_secret
            .as_ref()
            .or(self.oauth.as_ref().map(|oauth| &oauth.client_secret))
    }
}

/// The target is an http(s) address, a secret signs, and stages map to notification types.
pub(super) fn check_hubspot_webhooks(settings: &HubSpotSettings) -> Result<(), SettingsError> {
    let Some(webhooks) = &settings.webhooks else {
        return Ok(());
    };
    if !is_http_url(&webhooks.public_url) {
        return Err(SettingsError::new(
            "webhooks.public_url",
            format!(
                "{:?} is not an http(s) address such as https://herald.example.com",
                webhooks.public_url
            ),
        ));
    }
    if settings.webhook_secret().is_none() {
        return Err(SettingsError::new(
            "webhooks.client_secret",
            "a private app's webhooks are signed with its client secret: set it here",
        ));
    }
    for (stage, kind) in &webhooks.deal_stages {
        if !is_notification_type(kind) {
            return Err(SettingsError::new(
                format!("webhooks.deal_stages.{stage}"),
                format!("{kind:?} is not a notification type (lowercase letters, digits, _ and .)"),
            ));
        }
    }
    Ok(())
}

/// HubSpot OAuth 2: the app's client id and secret and the portal's refresh token. Access
/// tokens last 30 minutes; Herald refreshes them before they expire and whenever HubSpot refuses
/// one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotOAuthSettings {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// The portal's refresh token, when the app was installed outside Herald. Without it the
    /// app is installed through Herald (`POST /v1/integrations/{id}/oauth/authorize`) and the
    /// token is kept sealed in the vault.
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/hubspot/callback` as the installing person's browser reaches it; the
    /// app's redirect URL in HubSpot must be the same. Needed to install through Herald.
    pub redirect_uri: Option<String>,
    /// The scopes the install asks for.
    #[serde(default = "default_hubspot_scopes")]
    pub scopes: Vec<String>,
    /// The scopes the install asks for if the portal can grant them (default `automation`, for
    /// workflow enrolments).
    #[serde(default = "default_hubspot_optional_scopes")]
    pub optional_scopes: Vec<String>,
    /// HubSpot's consent page.
    #[serde(default = "default_hubspot_authorize_url")]
    pub authorize_url: String,
}

fn default_hubspot_scopes() -> Vec<String> {
    super::HUBSPOT_SCOPES
        .iter()
        .map(|scope| scope.to_string())
        .collect()
}

fn default_hubspot_optional_scopes() -> Vec<String> {
    super::HUBSPOT_OPTIONAL_SCOPES
        .iter()
        .map(|scope| scope.to_string())
        .collect()
}

fn default_hubspot_authorize_url() -> String {
    "https://app.hubspot.com/oauth/authorize".to_owned()
}

fn default_hubspot_base_url() -> String {
    "https://api.hubapi.com".to_owned()
}

/// An app installed through Herald needs the address HubSpot sends the browser back to.
pub(super) fn check_hubspot_oauth(oauth: &HubSpotOAuthSettings) -> Result<(), SettingsError> {
    for (field, address) in [
        ("oauth.redirect_uri", oauth.redirect_uri.as_deref()),
        ("oauth.authorize_url", Some(oauth.authorize_url.as_str())),
    ] {
        if let Some(address) = address {
            if !is_http_url(address) {
                return Err(SettingsError::new(
                    field,
                    format!("{address:?} is not an http(s) address"),
                ));
            }
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
