//! QuickBooks Online: the couple as a customer of the studio's company, invoices and payments
//! recorded when WedSync says so and a memo on the customer otherwise, and payments made in
//! QuickBooks back into Herald through Intuit's signed webhooks.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::QuickBooksConnector;
pub use inbound::intuit_signature;
pub use settings::{QuickBooksOAuthSettings, QuickBooksSettings, QuickBooksWebhook};
pub use simulator::FakeQuickBooks;

use super::inbound::{install_redirect_uri, InboundHandler, OAuthInstall, NOT_INSTALLABLE};
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct QuickBooks;

/// The scope Herald asks for.
const SCOPE: &str = "com.intuit.quickbooks.accounting";

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "quickbooks",
    name: "QuickBooks Online",
    integration_type: IntegrationType::PaymentProcessor,
    authentication: "oauth2 (refresh tokens rotate; install through Herald)",
    default_rate: DefaultRate {
        per_second: 4.0,
        burst: 5,
        source: "Intuit allows 500 requests a minute and 10 a second per company and app; 4/s with a burst of 5 stays inside both",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "GET /query (Customer by PrimaryEmailAddr), else POST /customer with a unique DisplayName",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "POST /invoice (metadata.quickbooksInvoice) or POST /payment (metadata.quickbooksPayment) with a requestid; otherwise the notification at the top of the customer's Notes (sparse update with SyncToken)",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /companyinfo/{realmId}",
        },
    ],
    inbound: &[
        "POST /inbound/quickbooks/{integration}/webhooks: Intuit's webhooks signed with intuit-signature; a payment created in QuickBooks becomes a payment_received notification",
        "GET /oauth/quickbooks/callback: the end of a company connected through Herald",
    ],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for QuickBooks {
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
        let quickbooks: QuickBooksSettings = deserialize_settings(settings)?;
        settings::check_quickbooks(&quickbooks)?;
        Ok(Arc::new(quickbooks))
    }
}

impl VendorSettings for QuickBooksSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.oauth.client_secret)
            .chain(&self.oauth.refresh_token)
            .chain(self.webhook.iter().map(|webhook| &webhook.verifier_token))
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
        Ok(Arc::new(QuickBooksConnector::new(
            self,
            integration.integration_id,
            kit.installation_id.clone(),
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

impl OAuthInstall for QuickBooks {
    /// Intuit documents no PKCE for server-side apps.
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
            .downcast_ref::<QuickBooksSettings>()
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
            None,
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
            "[[integrations]]\nid = \"books\"\norganization = \"studio\"\nkind = \"quickbooks\"\nsettings = {{ {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let oauth = "oauth = { client_id = \"c\", client_secret = { env = \"QS\" }, refresh_token = { env = \"QR\" } }";
        for good in [
            format!("realm_id = \"9130000000000000\", {oauth}"),
            format!("realm_id = \"9130000000000000\", invoice_item_id = \"12\", {oauth}"),
        ] {
            assert!(parse_with_studio(&integration(&good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            (
                format!("realm_id = \"company\", {oauth}"),
                "settings.realm_id",
            ),
            (
                format!("realm_id = \"1\", invoice_item_id = \"Wedding film\", {oauth}"),
                "settings.invoice_item_id",
            ),
            (
                "realm_id = \"1\", oauth = { client_id = \"c\", client_secret = { env = \"QS\" } }"
                    .to_owned(),
                "settings.oauth",
            ),
            (
                format!("realm_id = \"1\", api_url = \"qbo\", {oauth}"),
                "settings.api_url",
            ),
            (
                format!("realm_id = \"1\", webhook = {{ verifier_token = {{ env = \"QV\" }} }}, {oauth}"),
                "settings.webhook",
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
