//! Pipedrive CRM: persons found or created by email, an activity per notification with every
//! person a participant, a note, deals moved between stages or won and lost; through a personal
//! API token or an OAuth app.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{PipedriveConnector, MAX_CONTACTS};
pub use settings::{PipedriveOAuthSettings, PipedriveSettings};
pub use simulator::FakePipedrive;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, RateWindow, SeedOperation, SettingsError,
    Simulation, Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::{install_redirect_uri, OAuthInstall, NOT_INSTALLABLE};
use crate::wedsync::IntegrationType;

pub struct Pipedrive;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "pipedrive",
    name: "Pipedrive",
    integration_type: IntegrationType::Crm,
    authentication: "api-token or oauth2-refresh-token",
    default_rate: DefaultRate {
        per_second: 6.0,
        burst: 6,
        source: "Pipedrive's Essential plan allows 20 requests per 2-second window per API token (80 per OAuth token, more on higher plans), on top of a daily token budget per company; 6/s with a burst of 6 stays inside the smallest window",
        window: Some(RateWindow {
            requests: 20,
            seconds: 2,
        }),
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "GET /api/v2/persons/search (exact email) per contact, then POST /api/v2/persons for the missing",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "POST /api/v2/activities: one activity with every person a participant, on the deal when named; and POST /api/v1/notes with the message",
        },
        SeedOperation {
            name: "updateDealPipeline",
            implemented_by: "PATCH /api/v2/deals/{id} with stage_id and/or status (won, lost)",
        },
        SeedOperation {
            name: "triggerAutomationWorkflows",
            implemented_by: "not in Pipedrive's API: an automation triggered by \"activity added\" of the configured activity_type runs from the activity Herald adds",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /api/v1/users/me (the user and company the credential acts as)",
        },
    ],
    inbound: &["GET /oauth/pipedrive/callback: the end of an app install started through Herald"],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for Pipedrive {
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
        let pipedrive: PipedriveSettings = deserialize_settings(settings)?;
        settings::check_pipedrive(&pipedrive)?;
        Ok(Arc::new(pipedrive))
    }
}

impl VendorSettings for PipedriveSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        let oauth = self
            .oauth
            .iter()
            .flat_map(|oauth| std::iter::once(&oauth.client_secret).chain(&oauth.refresh_token));
        self.api_token.iter().chain(oauth).collect()
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
        Ok(Arc::new(PipedriveConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

impl OAuthInstall for Pipedrive {
    /// Pipedrive's authorization-code flow has no PKCE.
    fn takes_pkce(&self) -> bool {
        false
    }

    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        _code_challenge: Option<&str>,
    ) -> Result<String, String> {
        let oauth = settings
            .downcast_ref::<PipedriveSettings>()
            .and_then(|settings| settings.oauth.as_ref())
            .ok_or(NOT_INSTALLABLE)?;
        let redirect_uri =
            install_redirect_uri(oauth.refresh_token.as_ref(), oauth.redirect_uri.as_ref())?;
        crate::connectors::oauth::authorization_url(
            &format!("{}/oauth/authorize", oauth.server.trim_end_matches('/')),
            &oauth.client_id,
            redirect_uri,
            &[],
            state,
            None,
        )
        .ok_or_else(|| NOT_INSTALLABLE.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"pipedrive\"\nsettings = {{ {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let token = "api_token = { env = \"PIPEDRIVE_TOKEN\" }";
        assert!(parse_with_studio(&integration(&format!(
            "api_domain = \"https://acme.pipedrive.com\", {token}"
        )))
        .is_ok());
        let app = "oauth = { client_id = \"c\", client_secret = { env = \"S\" }";
        let cases = [
            (format!("api_domain = \"acme\", {token}"), "integrations[0].settings.api_domain"),
            (
                format!("api_domain = \"https://acme.pipedrive.com\", activity_type = \"to do\", {token}"),
                "integrations[0].settings.activity_type",
            ),
            ("api_domain = \"https://acme.pipedrive.com\"".to_owned(), "integrations[0].settings.api_token"),
            (
                format!("api_domain = \"https://acme.pipedrive.com\", {token}, {app}, redirect_uri = \"https://herald.example/oauth/pipedrive/callback\" }}"),
                "integrations[0].settings.api_token",
            ),
            (
                format!("api_domain = \"https://acme.pipedrive.com\", {app} }}"),
                "integrations[0].settings.oauth.refresh_token",
            ),
            (
                format!("api_domain = \"https://acme.pipedrive.com\", {app}, redirect_uri = \"callback\" }}"),
                "integrations[0].settings.oauth.redirect_uri",
            ),
        ];
        for (settings, field) in cases {
            let err = parse_with_studio(&integration(&settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }
}
