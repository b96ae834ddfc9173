//! Google Calendar's settings: the OAuth client and the account's refresh token (configured, or
//! installed through Herald), the calendar, who is invited, who Google tells, and their
//! validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// One Google calendar that holds the weddings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleCalendarSettings {
    pub oauth: GoogleOAuthSettings,
    /// The calendar (`primary`, or a calendar's id such as `...@group.calendar.google.com`).
    #[serde(default = "default_calendar")]
    pub calendar_id: String,
    /// Invite the notification's contacts with these roles (`couple`, `planner`) as attendees.
    /// Empty (the default) invites nobody.
    #[serde(default)]
    pub invite_contact_roles: Vec<String>,
    /// Whom Google emails about a change: `all`, `externalOnly` or `none` (the default).
    #[serde(default = "default_send_updates")]
    pub send_updates: String,
    /// The time zone of weddings whose `weddingContext` names none (IANA; default UTC).
    pub default_time_zone: Option<String>,
    /// The API (`https://www.googleapis.com`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

/// A Google Cloud OAuth client (web application) and the account's refresh token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleOAuthSettings {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// A refresh token obtained outside Herald. Without it the account is connected through
    /// Herald and the token kept sealed in the vault.
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/google_calendar/callback` as the installing person's browser reaches it,
    /// registered on the client. Needed to install through Herald.
    pub redirect_uri: Option<String>,
    /// Google's consent page and token endpoint.
    #[serde(default = "default_authorize_url")]
    pub authorize_url: String,
    #[serde(default = "default_token_url")]
    pub token_url: String,
}

fn default_calendar() -> String {
    "primary".to_owned()
}

fn default_send_updates() -> String {
    "none".to_owned()
}

fn default_api_url() -> String {
    "https://www.googleapis.com".to_owned()
}

fn default_authorize_url() -> String {
    "https://accounts.google.com/o/oauth2/v2/auth".to_owned()
}

fn default_token_url() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

pub(super) fn check_google_calendar(
    settings: &GoogleCalendarSettings,
) -> Result<(), SettingsError> {
    let oauth = &settings.oauth;
    if oauth.client_id.trim().is_empty() {
        return Err(SettingsError::new("oauth.client_id", "is empty"));
    }
    if oauth.refresh_token.is_none() && oauth.redirect_uri.is_none() {
        return Err(SettingsError::new(
            "oauth",
            "needs refresh_token, or redirect_uri to connect the account through Herald",
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
    if settings.calendar_id.trim().is_empty() || settings.calendar_id.len() > 255 {
        return Err(SettingsError::new(
            "calendar_id",
            "must be 1-255 characters",
        ));
    }
    if !matches!(
        settings.send_updates.as_str(),
        "all" | "externalOnly" | "none"
    ) {
        return Err(SettingsError::new(
            "send_updates",
            "must be all, externalOnly or none",
        ));
    }
    if let Some(zone) = &settings.default_time_zone {
        if !crate::wedsync::is_time_zone_name(zone) {
            return Err(SettingsError::new(
                "default_time_zone",
                format!("{zone:?} is not an IANA time zone such as Europe/London"),
            ));
        }
    }
    Ok(())
}
