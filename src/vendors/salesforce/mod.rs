//! Salesforce CRM: contacts found or created by email, a Task per notification and contact,
//! Opportunity stage moves, through a connected app's refresh token; the org's API allocation
//! read from every answer.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{soql_literal, SalesforceConnector, MAX_RECORDS};
pub use settings::{SalesforceOAuthSettings, SalesforceSettings, API_VERSION};
pub use simulator::FakeSalesforce;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::{install_redirect_uri, OAuthInstall, NOT_INSTALLABLE};
use crate::wedsync::IntegrationType;

pub struct Salesforce;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "salesforce",
    name: "Salesforce",
    integration_type: IntegrationType::Crm,
    authentication: "oauth2-refresh-token or jwt-bearer",
    default_rate: DefaultRate {
        per_second: 5.0,
        burst: 10,
        source: "Salesforce publishes no per-second rate: a rolling 24-hour allocation per org (read from Sforce-Limit-Info) and at most 25 concurrent calls of 20 s or more; 5/s keeps one integration near 430,000 calls a day, so lower it for a small org",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "GET /query (SOQL by email), then POST /composite/sobjects for the missing contacts",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "POST /composite/sobjects: a Task per contact (WhoId the contact, WhatId the opportunity)",
        },
        SeedOperation {
            name: "updateDealPipeline",
            implemented_by: "PATCH /sobjects/Opportunity/{id} with the StageName",
        },
        SeedOperation {
            name: "triggerAutomationWorkflows",
            implemented_by: "POST /actions/custom/flow/{name}: the autolaunched Flow in metadata.salesforceFlowApiName, once per contact (recordId)",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /limits (the org's daily API allocation)",
        },
    ],
    inbound: &["GET /oauth/salesforce/callback: the end of a connected-app install started through Herald"],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for Salesforce {
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
        let salesforce: SalesforceSettings = deserialize_settings(settings)?;
        settings::check_salesforce(&salesforce)?;
        Ok(Arc::new(salesforce))
    }
}

impl VendorSettings for SalesforceSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        let oauth = self
            .oauth
            .iter()
            .flat_map(|oauth| oauth.client_secret.iter().chain(&oauth.refresh_token));
        oauth
            .chain(self.jwt.iter().map(|jwt| &jwt.private_key))
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
        Ok(Arc::new(SalesforceConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

impl OAuthInstall for Salesforce {
    /// Salesforce's web-server flow takes PKCE's S256 challenge.
    fn takes_pkce(&self) -> bool {
        true
    }

    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, String> {
        let settings = settings
            .downcast_ref::<SalesforceSettings>()
            .ok_or(NOT_INSTALLABLE)?;
        let oauth = settings.oauth.as_ref().ok_or(NOT_INSTALLABLE)?;
        let redirect_uri =
            install_redirect_uri(oauth.refresh_token.as_ref(), oauth.redirect_uri.as_ref())?;
        let consent = crate::connectors::oauth::authorization_url(
            &format!(
                "{}/services/oauth2/authorize",
                settings.instance_url.trim_end_matches('/')
            ),
            &oauth.client_id,
            redirect_uri,
            &oauth.scopes,
            state,
            code_challenge,
        )
        .ok_or(NOT_INSTALLABLE)?;
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
            "[[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"salesforce\"\nsettings = {{ {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let oauth = "oauth = { client_id = \"3MVG9\", refresh_token = { env = \"SF_REFRESH\" } }";
        assert!(parse_with_studio(&integration(&format!(
            "instance_url = \"https://acme.my.salesforce.com\", {oauth}"
        )))
        .is_ok());
        let cases = [
            (
                format!("instance_url = \"acme\", {oauth}"),
                "integrations[0].settings.instance_url",
            ),
            (
                format!("instance_url = \"https://acme.my.salesforce.com\", api_version = \"66\", {oauth}"),
                "integrations[0].settings.api_version",
            ),
            (
                "instance_url = \"https://acme.my.salesforce.com\", oauth = { client_id = \"3MVG9\" }".to_owned(),
                "integrations[0].settings.oauth",
            ),
            (
                "instance_url = \"https://acme.my.salesforce.com\"".to_owned(),
                "integrations[0].settings.oauth",
            ),
            (
                "instance_url = \"https://acme.my.salesforce.com\", jwt = { client_id = \"3MVG9\", username = \"herald@acme.com\", private_key = { env = \"K\" }, audience = \"login\" }".to_owned(),
                "integrations[0].settings.jwt.audience",
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
