//! Telegram: a bot's message per notification in one chat (HTML, WedSync's text escaped), its
//! actions as inline-keyboard buttons, and Telegram's updates (a button pressed, a reply) back
//! into Herald as acknowledgements.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::TelegramConnector;
pub use settings::{TelegramSettings, TelegramWebhook};
pub use simulator::FakeTelegram;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::InboundHandler;
use crate::wedsync::IntegrationType;

pub struct Telegram;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "telegram",
    name: "Telegram",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "bot-token",
    default_rate: DefaultRate {
        per_second: 0.3,
        burst: 1,
        source: "Telegram's bot FAQ: about one message a second into a chat and 20 a minute into a group; 0.3/s stays inside both",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "sendMessage with parse_mode HTML and an inline keyboard of the actions",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "not in the Bot API: a bot cannot schedule a message",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "quiet_hours in the chat's time zone: sendMessage with disable_notification (no sound or push) below breaks_through; each member mutes the chat themselves",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "button presses and replies, recorded as acknowledgements (the Bot API reports no reads)",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "getMe",
        },
    ],
    inbound: &["POST /inbound/telegram/{integration}/updates: updates with the secret token; a button pressed or a reply acknowledges the notification"],
    takes: None,
};

impl Vendor for Telegram {
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
        let telegram: TelegramSettings = deserialize_settings(settings)?;
        settings::check_telegram(&telegram)?;
        Ok(Arc::new(telegram))
    }
}

impl VendorSettings for TelegramSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.bot_token)
            .chain(self.webhook.iter().map(|webhook| &webhook.secret_token))
            .collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(TelegramConnector::new(
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

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"bot\"\norganization = \"studio\"\nkind = \"telegram\"\nsettings = {{ bot_token = {{ env = \"TG\" }}, {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        for good in [
            "chat_id = \"-1001234567890\"",
            "chat_id = \"@wedding_desk\"",
            "chat_id = \"42\"",
        ] {
            assert!(parse_with_studio(&integration(good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            ("chat_id = \"wedding desk\"", "integrations[0].settings.chat_id"),
            ("chat_id = \"@ab\"", "integrations[0].settings.chat_id"),
            (
                "chat_id = \"42\", webhook = { public_url = \"herald\", secret_token = { env = \"S\" } }",
                "integrations[0].settings.webhook.public_url",
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
