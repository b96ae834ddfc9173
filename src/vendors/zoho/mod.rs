//! Zoho CRM: contacts found or upserted by email, a task per contact, a note, deals moved
//! between stages, every write firing the organization's workflow rules; through an OAuth client
//! of the organization's data center.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{ZohoConnector, MAX_CONTACTS};
pub use settings::{ZohoOAuthSettings, ZohoSettings, TRIGGERS};
pub use simulator::FakeZoho;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::{install_redirect_uri, OAuthInstall, NOT_INSTALLABLE};
use crate::wedsync::IntegrationType;

pub struct Zoho;

/// What Herald asks the installing person to grant: the four modules it writes and the current
/// user it reads.
pub const SCOPES: &[&str] = &[
    "ZohoCRM.modules.contacts.ALL",
    "ZohoCRM.modules.deals.ALL",
    "ZohoCRM.modules.tasks.ALL",
    "ZohoCRM.modules.notes.ALL",
    "ZohoCRM.users.READ",
];

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "zoho",
    name: "Zoho CRM",
    integration_type: IntegrationType::Crm,
    authentication: "oauth2-refresh-token (the data center's accounts server)",
    default_rate: DefaultRate {
        per_second: 0.5,
        burst: 20,
        source: "Zoho CRM counts API credits per rolling 24 hours (50,000 plus 250 to 2,000 per user licence on paid editions, 5,000 on Free) and caps concurrent calls (5 to 25 by edition); it publishes no per-second rate. 0.5/s is 43,200 calls a day, inside the smallest paid allowance, with a burst of 20",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "GET /crm/v8/Contacts/search (one criteria OR-ing the emails), then POST /crm/v8/Contacts/upsert (duplicate check on Email) for the missing",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "POST /crm/v8/Tasks: a task per contact (Who_Id), on the deal when named; and POST /crm/v8/Notes with the message",
        },
        SeedOperation {
            name: "updateDealPipeline",
            implemented_by: "PUT /crm/v8/Deals/{id} with Stage",
        },
        SeedOperation {
            name: "triggerAutomationWorkflows",
            implemented_by: "the trigger array (workflow, approval, blueprint, pathfinder, orchestration) on every write Herald makes",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /crm/v8/users?type=CurrentUser (the user the token acts as), at the api_domain the token answer names",
        },
    ],
    inbound: &["GET /oauth/zoho/callback: the end of a client install started through Herald"],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for Zoho {
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
        let zoho: ZohoSettings = deserialize_settings(settings)?;
        settings::check_zoho(&zoho)?;
        Ok(Arc::new(zoho))
    }
}

impl VendorSettings for ZohoSettings {
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
        Ok(Arc::new(ZohoConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

impl OAuthInstall for Zoho {
    /// Zoho's authorization-code flow for server-based clients has no PKCE.
    fn takes_pkce(&self) -> bool {
        false
    }

    /// Zoho's consent page at the data center's accounts server, asking for offline access (a
    /// refresh token) and consent every time (Zoho issues a refresh token only then).
    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        _code_challenge: Option<&str>,
    ) -> Result<String, String> {
        let oauth = &settings
            .downcast_ref::<ZohoSettings>()
            .ok_or(NOT_INSTALLABLE)?
            .oauth;
        let redirect_uri =
            install_redirect_uri(oauth.refresh_token.as_ref(), oauth.redirect_uri.as_ref())?;
        let consent = crate::connectors::oauth::authorization_url(
            &format!(
                "{}/oauth/v2/auth",
                oauth.accounts_server.trim_end_matches('/')
            ),
            &oauth.client_id,
            redirect_uri,
            &[],
            state,
            None,
        )
        .ok_or(NOT_INSTALLABLE)?;
        let mut consent = url::Url::parse(&consent).map_err(|err| err.to_string())?;
        consent
            .query_pairs_mut()
            .append_pair("scope", &SCOPES.join(","))
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
            "[[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"zoho\"\nsettings = {{ {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let client = "client_id = \"1000.ABC\", client_secret = { env = \"ZOHO_SECRET\" }";
        assert!(parse_with_studio(&integration(&format!(
            "oauth = {{ {client}, refresh_token = {{ env = \"ZOHO_REFRESH\" }}, accounts_server = \"https://accounts.zoho.eu\" }}"
        )))
        .is_ok());
        let cases = [
            (format!("oauth = {{ {client} }}"), "integrations[0].settings.oauth.refresh_token"),
            (
                format!("oauth = {{ {client}, redirect_uri = \"callback\" }}"),
                "integrations[0].settings.oauth.redirect_uri",
            ),
            (
                format!("oauth = {{ {client}, refresh_token = {{ env = \"R\" }}, accounts_server = \"accounts.zoho.eu\" }}"),
                "integrations[0].settings.oauth.accounts_server",
            ),
            (
                format!("oauth = {{ {client}, refresh_token = {{ env = \"R\" }} }}, triggers = [\"workflow\", \"macro\"]"),
                "integrations[0].settings.triggers",
            ),
            ("triggers = []".to_owned(), "oauth"),
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
