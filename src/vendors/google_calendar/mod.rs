//! Google Calendar: the wedding day as an event on the studio's calendar, made when Herald first
//! hears of the wedding, moved when its date changes and cancelled when the wedding is; the
//! account connected through Herald's install flow (OAuth with PKCE, the refresh token sealed).

mod connector;
mod discovery;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{event_id, GoogleCalendarConnector, WEDDING_PROPERTY};
pub use settings::{GoogleCalendarSettings, GoogleOAuthSettings};
pub use simulator::FakeGoogleCalendar;

use super::inbound::{install_redirect_uri, OAuthInstall, NOT_INSTALLABLE};
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct GoogleCalendar;

/// The scope Herald asks for: events only, not the calendars' settings.
const SCOPE: &str = "https://www.googleapis.com/auth/calendar.events";

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "google_calendar",
    name: "Google Calendar",
    integration_type: IntegrationType::Calendar,
    authentication: "oauth2 (install through Herald, PKCE)",
    default_rate: DefaultRate {
        per_second: 5.0,
        burst: 10,
        source: "the Calendar API's default quota of 600 queries a minute per user (unverified figure); 5/s with a burst of 10 is half of it",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "wedding events (the seed names no calendar operation)",
            implemented_by: "events.list with privateExtendedProperty heraldWeddingId, then events.insert (an id of Herald's, the wedding's time zone, extendedProperties.private) or events.patch; status cancelled when the wedding is",
        },
        SeedOperation {
            name: "attendees (the seed names no calendar operation)",
            implemented_by: "the contacts with invite_contact_roles as attendees; sendUpdates from the configuration (none by default)",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "calendars.get of the configured calendar",
        },
    ],
    inbound: &["GET /oauth/google_calendar/callback: the end of an account connected through Herald"],
    takes: Some("has(notification.weddingContext) && has(notification.weddingContext.weddingId)"),
};

impl Vendor for GoogleCalendar {
    fn describe(&self) -> &'static VendorDescription {
        &DESCRIPTION
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn oauth_install(&self) -> Option<&dyn OAuthInstall> {
        Some(self)
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let google: GoogleCalendarSettings = deserialize_settings(settings)?;
        settings::check_google_calendar(&google)?;
        Ok(Arc::new(google))
    }
}

impl VendorSettings for GoogleCalendarSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.oauth.client_secret)
            .chain(&self.oauth.refresh_token)
            .collect()
    }

    fn keeps_credentials_at(&self) -> Option<&'static str> {
        self.oauth
            .refresh_token
            .is_none()
            .then_some("oauth.refresh_token")
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(GoogleCalendarConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

impl OAuthInstall for GoogleCalendar {
    fn takes_pkce(&self) -> bool {
        true
    }

    /// Google's consent page asking for the events scope, offline access (a refresh token) and
    /// consent every time (Google issues a refresh token only at consent).
    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, String> {
        let oauth = &settings
            .downcast_ref::<GoogleCalendarSettings>()
            .ok_or(NOT_INSTALLABLE)?
            .oauth;
        let redirect_uri =
            install_redirect_uri(oauth.refresh_token.as_ref(), oauth.redirect_uri.as_ref())?;
        let consent = crate::connectors::oauth::authorization_url(
            &oauth.authorize_url,
            &oauth.client_id,
            redirect_uri,
            &[SCOPE.to_owned()],
            state,
            code_challenge,
        )
        .ok_or(NOT_INSTALLABLE)?;
        let mut consent = url::Url::parse(&consent).map_err(|err| err.to_string())?;
        consent
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent");
        Ok(consent.into())
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"calendar\"\norganization = \"studio\"\nkind = \"google_calendar\"\nsettings = {{ {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let oauth = "oauth = { client_id = \"c\", client_secret = { env = \"GS\" }, refresh_token = { env = \"GR\" } }";
        for good in [
            oauth.to_owned(),
            format!("{oauth}, calendar_id = \"weddings@group.calendar.google.com\", send_updates = \"externalOnly\", invite_contact_roles = [\"couple\"], default_time_zone = \"Europe/London\""),
        ] {
            assert!(parse_with_studio(&integration(&good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            (format!("{oauth}, send_updates = \"everyone\""), "settings.send_updates"),
            (format!("{oauth}, default_time_zone = \"London\""), "settings.default_time_zone"),
            (format!("{oauth}, calendar_id = \"\""), "settings.calendar_id"),
            ("oauth = { client_id = \"c\", client_secret = { env = \"GS\" } }".to_owned(), "settings.oauth"),
            ("oauth = { client_id = \"\", client_secret = { env = \"GS\" }, refresh_token = { env = \"GR\" } }".to_owned(), "settings.oauth.client_id"),
        ] {
            let err = parse_with_studio(&integration(&settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }
}
