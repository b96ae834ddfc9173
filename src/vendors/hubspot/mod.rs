//! HubSpot CRM: contacts upserted by email with the wedding's properties, a note per contact
//! (and on the deal and company), deal stage moves, workflow enrolments, the OAuth app
//! installed through Herald, and the app's signed webhooks back into Herald as notifications.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{authorize_url, HubSpotConnector, HUBSPOT_OPTIONAL_SCOPES, HUBSPOT_SCOPES};
pub use settings::{HubSpotOAuthSettings, HubSpotSettings, HubSpotWebhooks};
pub use simulator::FakeHubSpot;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, RateWindow, SeedOperation, SettingsError,
    Simulation, Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::{InboundHandler, OAuthInstall};
use crate::wedsync::IntegrationType;

pub struct HubSpot;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "hubspot",
    name: "HubSpot",
    integration_type: IntegrationType::Crm,
    authentication: "bearer-token",
    // A GCRA lets through at most burst + rate x 10 s in any 10 seconds: 10 + 9 x 10 = 100.
    default_rate: DefaultRate {
        per_second: 9.0,
        burst: 10,
        source: "100 requests per 10 seconds for private apps on Free and Starter (190 on Professional and Enterprise: raise it in the configuration)",
        window: Some(RateWindow {
            requests: 100,
            seconds: 10,
        }),
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "contacts/batch/read and contacts/batch/upsert by email",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "notes/batch/create, associated with contacts, deal and company",
        },
        SeedOperation {
            name: "updateDealPipeline",
            implemented_by: "PATCH /crm/v3/objects/deals/{id} with the dealstage",
        },
        SeedOperation {
            name: "triggerAutomationWorkflows",
            implemented_by: "enrolment of each contact in an existing contact workflow (the API starts no workflow run as such)",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /crm/v3/objects/contacts?limit=1, then what the token may do",
        },
    ],
    inbound: &[
        "GET /oauth/hubspot/callback: the end of an OAuth app install started through Herald",
        "POST /inbound/hubspot/{integration}/webhooks: the app's webhooks (X-HubSpot-Signature-v3); new deals, deal stage moves and new contacts become notifications",
    ],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for HubSpot {
    fn describe(&self) -> &'static VendorDescription {
        &DESCRIPTION
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn oauth_install(&self) -> Option<&dyn OAuthInstall> {
        Some(self)
    }

    fn inbound_handler(&self) -> Option<&dyn InboundHandler> {
        Some(self)
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let hubspot: HubSpotSettings = deserialize_settings(settings)?;
        match (&hubspot.token, &hubspot.oauth) {
            (Some(_), None) => {}
            (None, Some(oauth)) => settings::check_hubspot_oauth(oauth)?,
            _ => {
                return Err(SettingsError::new(
                    "token",
                    "set either token (a private app) or oauth (a public app)",
                ))
            }
        }
        settings::check_hubspot_webhooks(&hubspot)?;
        Ok(Arc::new(hubspot))
    }
}

impl VendorSettings for HubSpotSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        self.token
            .iter()
            .chain(self.oauth.iter().flat_map(|oauth| {
                std::iter::once(&oauth.client_secret).chain(&oauth.refresh_token)
            }))
            .chain(
                self.webhooks
                    .iter()
                    .filter_map(|webhooks| webhooks.client_secret.as_ref()),
            )
            .collect()
    }

    fn keeps_credentials_at(&self) -> Option<&'static str> {
        self.oauth
            .as_ref()
            .filter(|oauth| oauth.refresh_token.is_none())
            .map(|_| "oauth.refresh_token")
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(HubSpotConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

impl OAuthInstall for HubSpot {
    /// HubSpot's v3 token endpoint takes `code_verifier`.
    fn takes_pkce(&self) -> bool {
        true
    }

    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, String> {
        let not_installable = || {
            "not an OAuth app installed through Herald (an oauth app with redirect_uri and no refresh_token)".to_owned()
        };
        let settings = settings
            .downcast_ref::<HubSpotSettings>()
            .ok_or_else(not_installable)?;
        if settings
            .oauth
            .as_ref()
            .is_none_or(|oauth| oauth.refresh_token.is_some())
        {
            return Err(not_installable());
        }
        authorize_url(settings, state, code_challenge).ok_or_else(not_installable)
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    #[test]
    fn webhooks_need_an_address_a_signing_secret_and_notification_types() {
        let hubspot = |settings: &str| {
            format!("[[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"hubspot\"\nsettings = {{ {settings} }}\n")
        };
        let token = r#"token = { env = "T" }"#;
        let oauth = r#"oauth = { client_id = "c", client_secret = { env = "S" }, refresh_token = { env = "R" } }"#;
        assert!(parse_with_studio(&hubspot(&format!(
            r#"{oauth}, webhooks = {{ public_url = "https://herald.example.com" }}"#
        )))
        .is_ok());
        for (settings, field) in [
            (
                format!(r#"{token}, webhooks = {{ public_url = "https://herald.example.com" }}"#),
                "integrations[0].settings.webhooks.client_secret",
            ),
            (
                format!(
                    r#"{token}, webhooks = {{ public_url = "herald", client_secret = {{ env = "C" }} }}"#
                ),
                "integrations[0].settings.webhooks.public_url",
            ),
            (
                format!(
                    r#"{token}, webhooks = {{ public_url = "https://h.example", client_secret = {{ env = "C" }}, deal_stages = {{ closedwon = "Booked!" }} }}"#
                ),
                "integrations[0].settings.webhooks.deal_stages.closedwon",
            ),
        ] {
            let err = parse_with_studio(&hubspot(&settings))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }

    #[test]
    fn hubspot_takes_a_token_or_an_oauth_app() {
        let hubspot = |settings: &str| {
            format!("[[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"hubspot\"\nsettings = {{ {settings} }}\n")
        };
        assert!(parse_with_studio(&hubspot(r#"token = { env = "T" }"#)).is_ok());
        assert!(parse_with_studio(&hubspot(r#"oauth = { client_id = "c", client_secret = { env = "S" }, refresh_token = { env = "R" } }"#)).is_ok());
        let err = parse_with_studio(&hubspot("")).unwrap_err().to_string();
        assert!(
            err.contains("settings.token") && err.contains("either token"),
            "{err}"
        );

        // Installed through Herald: a redirect address, and a key to seal what it keeps.
        let install = r#"oauth = { client_id = "c", client_secret = { env = "S" }, redirect_uri = "https://herald.example.com/oauth/hubspot/callback" }"#;
        let sealed = |integration: String| {
            format!(
                "[security]\ncredentials_key = {{ env = \"HERALD_CREDENTIALS_KEY\" }}\n{integration}"
            )
        };
        assert!(parse_with_studio(&sealed(hubspot(install))).is_ok());
        let err = parse_with_studio(&hubspot(install))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("integrations[0].settings.oauth.refresh_token")
                && err.contains("security.credentials_key"),
            "{err}"
        );
        let err = parse_with_studio(&sealed(hubspot(
            r#"oauth = { client_id = "c", client_secret = { env = "S" } }"#,
        )))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("settings.oauth.refresh_token") && err.contains("redirect_uri"),
            "{err}"
        );
        let err = parse_with_studio(&sealed(hubspot(
            r#"oauth = { client_id = "c", client_secret = { env = "S" }, redirect_uri = "/callback" }"#,
        )))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("settings.oauth.redirect_uri") && err.contains("not an http(s) address"),
            "{err}"
        );
    }
}
