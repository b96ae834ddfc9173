//! WhatsApp (Cloud API): a message per notification to each configured person from the studio's
//! business number, free text or reply buttons inside the person's 24-hour window and the
//! approved template outside it; the webhook's replies and button presses recorded as
//! acknowledgements and its statuses read back as engagement.

mod connector;
mod conversations;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::WhatsAppConnector;
pub use settings::WhatsAppSettings;
pub use simulator::FakeWhatsApp;

use super::inbound::InboundHandler;
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct WhatsApp;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "whatsapp",
    name: "WhatsApp",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "bearer-token",
    default_rate: DefaultRate {
        per_second: 0.16,
        burst: 1,
        source: "WhatsApp's pair rate: about one message every 6 seconds to the same person (error 131056); a number's throughput (80 messages a second) is far above it",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "POST /{phone-number-id}/messages: text, or reply buttons for urgent notifications, inside the person's 24-hour window; the approved template outside it",
        },
        SeedOperation {
            name: "routeNotificationToChannels",
            implemented_by: "one message per configured person (to)",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "not in the Cloud API: a message is sent at once",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "the 24-hour window decides free text or template; each person mutes or blocks the number themselves",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "each message's latest status from the webhook (sent, delivered, read, failed)",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "GET /{phone-number-id}: the number's display name and quality rating",
        },
    ],
    inbound: &[
        "GET /inbound/whatsapp/{integration}/webhooks: Meta's subscription check (hub.verify_token, hub.challenge echoed)",
        "POST /inbound/whatsapp/{integration}/webhooks: messages and statuses signed with X-Hub-Signature-256; a button press, a reply or ACK/OK/1 acknowledges",
    ],
    takes: None,
};

impl Vendor for WhatsApp {
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
        let whatsapp: WhatsAppSettings = deserialize_settings(settings)?;
        settings::check_whatsapp(&whatsapp)?;
        Ok(Arc::new(whatsapp))
    }
}

impl VendorSettings for WhatsAppSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.access_token)
            .chain(
                self.webhook
                    .iter()
                    .flat_map(|webhook| [&webhook.app_secret, &webhook.verify_token]),
            )
            .collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(WhatsAppConnector::new(
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
            "[[integrations]]\nid = \"crew\"\norganization = \"studio\"\nkind = \"whatsapp\"\nsettings = {{ access_token = {{ env = \"WA_TOKEN\" }}, template = {{ name = \"wedding_alert\", language = \"en_GB\" }}{settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        assert!(parse_with_studio(&integration(
            ", phone_number_id = \"106540352242922\", to = [\"+447700900123\"]"
        ))
        .is_ok());
        for (settings, field) in [
            (
                ", phone_number_id = \"+447700900000\", to = [\"+447700900123\"]",
                "integrations[0].settings.phone_number_id",
            ),
            (
                ", phone_number_id = \"1065\", to = [\"07700900123\"]",
                "integrations[0].settings.to[0]",
            ),
            (
                ", phone_number_id = \"1065\", to = []",
                "integrations[0].settings.to",
            ),
        ] {
            let err = parse_with_studio(&integration(settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
        let parameters = parse_with_studio(
            "[[integrations]]\nid = \"crew\"\norganization = \"studio\"\nkind = \"whatsapp\"\nsettings = { access_token = { env = \"WA_TOKEN\" }, phone_number_id = \"1065\", to = [\"+447700900123\"], template = { name = \"wedding_alert\", language = \"en_GB\", parameters = [\"title\", \"guests\"] } }\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            parameters.contains("integrations[0].settings.template.parameters[1]"),
            "{parameters}"
        );
    }
}
