//! Microsoft 365 calendar's settings: the Entra ID app (tenant, client id and secret), the
//! mailbox and calendar, who is invited, and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// A mailbox's calendar reached through Microsoft Graph with an app's own permission
/// (`Calendars.ReadWrite`, application).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrosoftCalendarSettings {
    /// The Entra ID tenant: its id (a GUID) or a verified domain.
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    /// The mailbox whose calendar holds the weddings: its user principal name or id.
    pub user: String,
    /// A calendar of the mailbox other than its default one, by id.
    pub calendar_id: Option<String>,
    /// Invite the notification's contacts with these roles as attendees (default nobody).
    #[serde(default)]
    pub invite_contact_roles: Vec<String>,
    /// The time zone of weddings whose `weddingContext` names none (IANA; default UTC).
    pub default_time_zone: Option<String>,
    /// Entra ID's sign-in address and Graph's.
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".to_owned()
}

fn default_graph_url() -> String {
    "https://graph.microsoft.com".to_owned()
}

pub(super) fn check_microsoft_calendar(
    settings: &MicrosoftCalendarSettings,
) -> Result<(), SettingsError> {
    for (field, address) in [
        ("authority", &settings.authority),
        ("graph_url", &settings.graph_url),
    ] {
        if !is_http_url(address) {
            return Err(SettingsError::new(
                field,
                format!("{address:?} is not an http(s) address"),
            ));
        }
    }
    let named = |text: &str, extra: &[u8]| {
        !text.is_empty()
            && text.len() <= 256
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b) || extra.contains(&b))
    };
    if !named(&settings.tenant_id, b"") {
        return Err(SettingsError::new(
            "tenant_id",
            "must be the tenant's id (a GUID) or a verified domain",
        ));
    }
    if settings.client_id.trim().is_empty() {
        return Err(SettingsError::new("client_id", "is empty"));
    }
    if !named(&settings.user, b"@_'+") {
        return Err(SettingsError::new(
            "user",
            "must be the mailbox's user principal name (weddings@contoso.com) or id",
        ));
    }
    if let Some(calendar) = &settings.calendar_id {
        if !named(calendar, b"_=+/") {
            return Err(SettingsError::new("calendar_id", "is not a calendar id"));
        }
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
