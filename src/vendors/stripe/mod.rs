//! Stripe: payment events into Herald (a payment received, refunded or failed becomes a WedSync
//! notification routed like any other, and a payment for a reminder acknowledges it), and the
//! wedding's facts out onto the couple's Stripe customer.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::StripeConnector;
pub use settings::{StripeSettings, StripeWebhook};
pub use simulator::FakeStripe;

use super::inbound::InboundHandler;
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Stripe;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "stripe",
    name: "Stripe",
    integration_type: IntegrationType::PaymentProcessor,
    authentication: "bearer secret key",
    default_rate: DefaultRate {
        per_second: 10.0,
        burst: 10,
        source: "Stripe allows 100 read and 100 write requests a second in live mode and 25 in test mode; 10/s with a burst of 10 stays inside test mode's in any second",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "GET /v1/customers?email= for the first contact with an email, else POST /v1/customers; the wedding (id, date, venue) and the last notification in the customer's metadata (POST /v1/customers/{id}), each write with an Idempotency-Key",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /v1/account",
        },
    ],
    inbound: &["POST /inbound/stripe/{integration}/events: events signed with Stripe-Signature (five-minute tolerance); payment_intent.succeeded, invoice.paid, charge.refunded and invoice.payment_failed become payment_received, payment_refunded and payment_failed notifications"],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for Stripe {
    fn describe(&self) -> &'static VendorDescription {
        &DESCRIPTION
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn inbound_handler(&self) -> Option<&dyn InboundHandler> {
        Some(self)
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let stripe: StripeSettings = deserialize_settings(settings)?;
        settings::check_stripe(&stripe)?;
        Ok(Arc::new(stripe))
    }
}

impl VendorSettings for StripeSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.secret_key)
            .chain(self.webhook.iter().map(|webhook| &webhook.signing_secret))
            .collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(StripeConnector::new(
            self,
            kit.installation_id.clone(),
            kit.client.clone(),
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"payments\"\norganization = \"studio\"\nkind = \"stripe\"\nsettings = {{ secret_key = {{ env = \"SK\" }}{settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        for good in [
            "",
            ", webhook = { signing_secret = { env = \"WHSEC\" } }",
            ", webhook = { signing_secret = { env = \"WHSEC\" }, tolerance_seconds = 60 }",
        ] {
            assert!(parse_with_studio(&integration(good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            (
                ", webhook = { signing_secret = { env = \"WHSEC\" }, tolerance_seconds = 0 }",
                "settings.webhook.tolerance_seconds",
            ),
            (", api_url = \"stripe\"", "settings.api_url"),
            (
                ", webhook = { secret = { env = \"WHSEC\" } }",
                "settings.webhook",
            ),
        ] {
            let err = parse_with_studio(&integration(settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }
}
