//! Intercom: each notification a message from the studio's teammate to the couple's contact
//! (found by email or created), later ones about the same wedding replies in that conversation;
//! the couple's replies come back through Intercom's signed webhook as acknowledgements.

mod connector;
mod inbound;
mod memory;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::IntercomConnector;
pub use inbound::sign;
pub use settings::IntercomSettings;
pub use simulator::FakeIntercom;

use super::inbound::InboundHandler;
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Intercom;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "intercom",
    name: "Intercom",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "bearer-token",
    default_rate: DefaultRate {
        per_second: 10.0,
        burst: 10,
        source: "Intercom allows an app 10,000 requests a minute, counted in 10-second windows of 1,666 (its rate-limiting page); 10 a second with a burst of 10 stays far inside",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "POST /messages from the teammate to the couple's contact (POST /contacts/search, else POST /contacts); POST /conversations/{id}/reply for the same wedding's later notifications",
        },
        SeedOperation {
            name: "routeNotificationToChannels",
            implemented_by: "email or in-app (message_type); one conversation per couple and wedding",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "not in Intercom's REST API: Series and campaigns are built in Intercom",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "Intercom's own: a contact unsubscribed from email gets no email message",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "GET /conversations/{id}: its state, whether it was read, the couple's replies",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "GET /me: the teammate and the workspace",
        },
    ],
    inbound: &["POST /inbound/intercom/{integration}/webhooks: webhooks signed with X-Hub-Signature (sha1); the couple's reply in a conversation Herald started acknowledges its notification"],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for Intercom {
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
        let intercom: IntercomSettings = deserialize_settings(settings)?;
        settings::check_intercom(&intercom)?;
        Ok(Arc::new(intercom))
    }
}

impl VendorSettings for IntercomSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.access_token)
            .chain(self.webhook.iter().map(|webhook| &webhook.client_secret))
            .collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(IntercomConnector::new(
            self,
            integration.integration_id,
            &kit.installation_id,
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
            "[[integrations]]\nid = \"couples\"\norganization = \"studio\"\nkind = \"intercom\"\nsettings = {{ access_token = {{ env = \"IC_TOKEN\" }}{settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        assert!(parse_with_studio(&integration(
            ", admin_id = \"7001234\", region = \"eu\", message_type = \"in_app\""
        ))
        .is_ok());
        for (settings, field) in [
            (", admin_id = \"desk\"", "integrations[0].settings.admin_id"),
            (
                ", admin_id = \"7001234\", region = \"uk\"",
                "integrations[0].settings.region",
            ),
            (
                ", admin_id = \"7001234\", message_type = \"sms\"",
                "integrations[0].settings.message_type",
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
