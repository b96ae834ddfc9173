//! The generic outbound webhook, signed per Standard Webhooks: the smallest vendor, and the
//! example `docs` point to for adding one (settings, connector, simulator, registration).

mod connector;
mod settings;
mod simulator;

use std::sync::Arc;

pub use connector::WebhookConnector;
pub use settings::WebhookSettings;
pub use simulator::WebhookReceiver;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Webhook;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "webhook",
    name: "Webhook",
    integration_type: IntegrationType::Webhook,
    authentication: "standard-webhooks-hmac-sha256",
    default_rate: DefaultRate {
        per_second: 100.0,
        burst: 100,
        source:
            "a receiver Herald knows nothing about: generous, the operator sets the real figure",
        window: None,
    },
    seed_operations: &[SeedOperation {
        name: "routeNotification",
        implemented_by: "POST url with {type, timestamp, data}, signed (webhook-id, webhook-timestamp, webhook-signature)",
    }],
    inbound: &[],
    takes: None,
};

impl Vendor for Webhook {
    fn describe(&self) -> &'static VendorDescription {
        &DESCRIPTION
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let settings = deserialize_settings::<WebhookSettings>(settings)?;
        if !super::is_http_url(&settings.url) {
            return Err(SettingsError::new(
                "url",
                format!("{:?} is not an http(s) address", settings.url),
            ));
        }
        Ok(Arc::new(settings))
    }
}

impl VendorSettings for WebhookSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.secret]
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(WebhookConnector::new(
            self,
            kit.installation_id.clone(),
            kit.client.clone(),
            integration.timeout,
        )?))
    }
}
