//! Twilio: an emergency channel that reaches people's phones. A text (SMS) or a call that reads
//! the alert to each person the integration reaches; Twilio's callbacks back into Herald: status
//! callbacks as the delivery's engagement, a reply `ACK` or a key press as acknowledgements.

mod connector;
mod inbound;
mod memory;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::TwilioConnector;
pub use inbound::twilio_signature;
pub use settings::{Channel, TwilioSettings};
pub use simulator::FakeTwilio;

use super::inbound::InboundHandler;
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Twilio;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "twilio",
    name: "Twilio",
    integration_type: IntegrationType::EmergencyServices,
    authentication: "http-basic (account SID, auth token)",
    default_rate: DefaultRate {
        per_second: 1.0,
        burst: 10,
        source: "a long code sends about one text a second and Twilio queues the rest (for up to ValidityPeriod); 1/s keeps the queue empty, the burst lets an emergency reach ten people at once",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "POST /2010-04-01/Accounts/{sid}/Messages.json (channel sms) or Calls.json with TwiML that reads the alert (channel voice), one per person",
        },
        SeedOperation {
            name: "routeNotificationToChannels",
            implemented_by: "the configured numbers (to) and the notification's contacts with the configured roles",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "each message's or call's latest status from Twilio's status callbacks",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "GET /2010-04-01/Accounts/{sid}.json",
        },
    ],
    inbound: &[
        "POST /inbound/twilio/{integration}/status: status callbacks signed with X-Twilio-Signature",
        "POST /inbound/twilio/{integration}/sms: texts to the number; ACK, OK or 1 acknowledges the person's open alerts",
        "POST /inbound/twilio/{integration}/gather: the key pressed during a call; 1 acknowledges",
    ],
    takes: None,
};

impl Vendor for Twilio {
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
        let twilio: TwilioSettings = deserialize_settings(settings)?;
        settings::check_twilio(&twilio)?;
        Ok(Arc::new(twilio))
    }
}

impl VendorSettings for TwilioSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.auth_token]
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(TwilioConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"sms\"\norganization = \"studio\"\nkind = \"twilio\"\nsettings = {{ account_sid = \"{ACCOUNT}\", auth_token = {{ env = \"TW\" }}, {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        for good in [
            "channel = \"sms\", from = \"+15005550006\", to = [\"+447700900123\"]",
            "channel = \"sms\", messaging_service_sid = \"MG0123456789abcdef0123456789abcdef\", contact_roles = [\"planner\"]",
            "channel = \"voice\", from = \"+15005550006\", to = [\"+447700900123\"], language = \"en-GB\", webhook = { public_url = \"https://herald.example\" }",
        ] {
            assert!(parse_with_studio(&integration(good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            ("channel = \"sms\", from = \"07700900123\", to = [\"+447700900123\"]", "settings.from"),
            ("channel = \"sms\", from = \"+15005550006\", to = [\"+44 7700 900123\"]", "settings.to[0]"),
            ("channel = \"sms\", from = \"+15005550006\"", "settings.to"),
            ("channel = \"voice\", messaging_service_sid = \"MG0123456789abcdef0123456789abcdef\", to = [\"+447700900123\"]", "settings.messaging_service_sid"),
            ("channel = \"voice\", to = [\"+447700900123\"]", "settings.from"),
            ("channel = \"sms\", from = \"+15005550006\", to = [\"+447700900123\"], validity_period = 0", "settings.validity_period"),
            ("channel = \"fax\", from = \"+15005550006\", to = [\"+447700900123\"]", "settings.channel"),
            ("channel = \"sms\", from = \"+15005550006\", to = [\"+447700900123\"], webhook = { public_url = \"herald\" }", "settings.webhook.public_url"),
        ] {
            let err = parse_with_studio(&integration(settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
        let err = parse_with_studio(
            &integration("channel = \"sms\", from = \"+15005550006\", to = [\"+447700900123\"]")
                .replace(ACCOUNT, "AC12"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("settings.account_sid"), "{err}");
    }
}
