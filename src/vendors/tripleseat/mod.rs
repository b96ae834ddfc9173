//! Tripleseat: a venue's event moved when the wedding's timeline changes and its status kept in
//! step, every notification a note on the event, through a partner app's OAuth 2 tokens
//! (installed through Herald by a customer admin); and Tripleseat's signed webhooks back into
//! Herald as notifications.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{EventTime, TripleseatConnector};
pub use settings::{TripleseatOAuthSettings, TripleseatSettings, TripleseatWebhooks};
pub use simulator::FakeTripleseat;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, RateWindow, SeedOperation, SettingsError,
    Simulation, Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::{
    install_redirect_uri, InboundHandler, OAuthInstall, NOT_INSTALLABLE,
};
use crate::wedsync::IntegrationType;

pub struct Tripleseat;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "tripleseat",
    name: "Tripleseat",
    integration_type: IntegrationType::BookingSystem,
    authentication: "oauth2-refresh-token",
    default_rate: DefaultRate {
        per_second: 5.0,
        burst: 3,
        source: "Tripleseat allows 10 requests a second on its leads and events endpoints; 5/s with a burst of 3 (a delivery's requests) stays inside it with room for requests leaving later than they were charged",
        window: Some(RateWindow {
            requests: 10,
            seconds: 1,
        }),
    },
    seed_operations: &[
        SeedOperation {
            name: "syncBookingNotifications",
            implemented_by: "POST /v1/events/{id}/notes on the event; GET and PUT /v1/events/{id}.json to move it with the wedding",
        },
        SeedOperation {
            name: "updateBookingStatus",
            implemented_by: "PUT /v1/events/{id}.json with the status (PROSPECT, TENTATIVE, DEFINITE, CLOSED, LOST)",
        },
        SeedOperation {
            name: "triggerBookingWorkflows",
            implemented_by: "not in Tripleseat's API: Tripleseat's own automation runs from the status and date changes Herald makes",
        },
        SeedOperation {
            name: "handleBookingConflicts",
            implemented_by: "not built: Tripleseat refuses a room already taken when the event moves, and the refusal is reported",
        },
        SeedOperation {
            name: "connectToBookingAPI",
            implemented_by: "GET /v1/sites.json",
        },
    ],
    inbound: &[
        "GET /oauth/tripleseat/callback: the end of an app install started through Herald",
        "POST /inbound/tripleseat/{integration}/webhooks: webhooks signed with X-Signature; new leads, bookings and event status or date changes become notifications",
    ],
    takes: Some("has(metadata.tripleseatEventId)"),
};

impl Vendor for Tripleseat {
    fn describe(&self) -> &'static VendorDescription {
        &DESCRIPTION
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn inbound_handler(&self) -> Option<&dyn InboundHandler> {
        Some(self)
    }

    fn oauth_install(&self) -> Option<&dyn OAuthInstall> {
        Some(self)
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let tripleseat: TripleseatSettings = deserialize_settings(settings)?;
        settings::check_tripleseat(&tripleseat)?;
        Ok(Arc::new(tripleseat))
    }
}

impl VendorSettings for TripleseatSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.oauth.client_secret)
            .chain(&self.oauth.refresh_token)
            .chain(self.webhooks.iter().map(|webhooks| &webhooks.signing_key))
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
        Ok(Arc::new(TripleseatConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

impl OAuthInstall for Tripleseat {
    /// Tripleseat's authorization-code flow documents no PKCE.
    fn takes_pkce(&self) -> bool {
        false
    }

    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        _code_challenge: Option<&str>,
    ) -> Result<String, String> {
        let oauth = &settings
            .downcast_ref::<TripleseatSettings>()
            .ok_or(NOT_INSTALLABLE)?
            .oauth;
        let redirect_uri =
            install_redirect_uri(oauth.refresh_token.as_ref(), oauth.redirect_uri.as_ref())?;
        let consent = crate::connectors::oauth::authorization_url(
            &oauth.authorize_url,
            &oauth.client_id,
            redirect_uri,
            &oauth.scopes,
            state,
            None,
        )
        .ok_or_else(|| NOT_INSTALLABLE.to_owned())?;
        let mut consent = url::Url::parse(&consent).map_err(|err| err.to_string())?;
        consent
            .query_pairs_mut()
            .append_pair("response_type", "code");
        Ok(consent.into())
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"venue\"\norganization = \"studio\"\nkind = \"tripleseat\"\nsettings = {{ {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let app = r#"oauth = { client_id = "uid", client_secret = { env = "S" }"#;
        assert!(parse_with_studio(&integration(&format!(
            r#"{app}, refresh_token = {{ env = "R" }} }}, webhooks = {{ signing_key = {{ env = "K" }} }}"#
        )))
        .is_ok());
        for (settings, field) in [
            (
                format!("{app} }}"),
                "integrations[0].settings.oauth.refresh_token",
            ),
            (
                format!(
                    r#"{app}, redirect_uri = "https://herald.example/oauth/tripleseat/callback" }}"#
                ),
                "integrations[0].settings.oauth.scopes",
            ),
            (
                format!(r#"{app}, refresh_token = {{ env = "R" }} }}, api_url = "tripleseat""#),
                "integrations[0].settings.api_url",
            ),
            (
                format!(r#"{app}, redirect_uri = "callback", scopes = ["events:read"] }}"#),
                "integrations[0].settings.oauth.redirect_uri",
            ),
        ] {
            let err = parse_with_studio(&integration(&settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }
}
