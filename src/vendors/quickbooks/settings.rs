//! QuickBooks Online's settings: the company (realm), the Intuit app and the company's refresh
//! token (configured, or connected through Herald), the item invoices are written with, the
//! webhook's verifier token, and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// One QuickBooks Online company.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickBooksSettings {
    /// The company's id (`realmId`, digits).
    pub realm_id: String,
    pub oauth: QuickBooksOAuthSettings,
    /// The product or service invoices are written with (an Item's `Id`); without it, an
    /// invoice WedSync asks for is refused.
    pub invoice_item_id: Option<String>,
    /// Intuit's webhooks into Herald: payments made in QuickBooks.
    pub webhook: Option<QuickBooksWebhook>,
    /// The API (`https://quickbooks.api.intuit.com`; the sandbox is
    /// `https://sandbox-quickbooks.api.intuit.com`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

/// An Intuit app and the company's refresh token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickBooksOAuthSettings {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// A refresh token obtained outside Herald. Without it the company is connected through
    /// Herald and the token kept sealed in the vault (Intuit rotates it; Herald keeps the new one).
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/quickbooks/callback`, registered on the app. Needed to connect through
    /// Herald.
    pub redirect_uri: Option<String>,
    #[serde(default = "default_authorize_url")]
    pub authorize_url: String,
    #[serde(default = "default_token_url")]
    pub token_url: String,
}

/// The webhook's verifier token (from the app's Webhooks page).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickBooksWebhook {
    pub verifier_token: SecretRef,
}

fn default_api_url() -> String {
    "https://quickbooks.api.intuit.com".to_owned()
}

fn default_authorize_url() -> String {
    "https://appcenter.intuit.com/connect/oauth2".to_owned()
}

fn default_token_url() -> String {
    "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer".to_owned()
}

pub(super) fn check_quickbooks(settings: &QuickBooksSettings) -> Result<(), SettingsError> {
    let digits = |text: &str| {
        !text.is_empty() && text.len() <= 32 && text.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(&settings.realm_id) {
        return Err(SettingsError::new(
            "realm_id",
            "must be the company's id (realmId): digits, such as 9130000000000000",
        ));
    }
    if let Some(item) = settings
        .invoice_item_id
        .as_deref()
        .filter(|item| !digits(item))
    {
        return Err(SettingsError::new(
            "invoice_item_id",
            format!("{item:?} is not an Item's Id (digits)"),
        ));
    }
    let oauth = &settings.oauth;
    if oauth.client_id.trim().is_empty() {
        return Err(SettingsError::new("oauth.client_id", "is empty"));
    }
    if oauth.refresh_token.is_none() && oauth.redirect_uri.is_none() {
        return Err(SettingsError::new(
            "oauth",
            "needs refresh_token, or redirect_uri to connect the company through Herald",
        ));
    }
    if settings.webhook.is_some() && oauth.refresh_token.is_some() {
        return Err(SettingsError::new(
            "webhook",
            "needs the company connected through Herald (oauth.redirect_uri, no oauth.refresh_token): Intuit rotates refresh tokens, and only a token Herald keeps sealed stays current for the webhook's reads",
        ));
    }
    for (field, address) in [
        ("oauth.authorize_url", Some(oauth.authorize_url.as_str())),
        ("oauth.token_url", Some(oauth.token_url.as_str())),
        ("oauth.redirect_uri", oauth.redirect_uri.as_deref()),
        ("api_url", Some(settings.api_url.as_str())),
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
