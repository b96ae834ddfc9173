//! Discord: a channel webhook's message per notification (an embed, WedSync's text escaped,
//! mentions locked down to the roles configured for urgent ones), its rate-limit bucket kept to,
//! and reactions read back as engagement.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::DiscordConnector;
pub use settings::DiscordSettings;
pub use simulator::FakeDiscord;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;
use settings::is_snowflake;

pub struct Discord;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "discord",
    name: "Discord",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "webhook-url",
    default_rate: DefaultRate {
        per_second: 1.0,
        burst: 2,
        source: "Discord publishes no per-webhook figure (its buckets are reported in X-RateLimit-* headers, which Herald keeps to) and 50 requests a second globally; one a second with a burst of 2 stays well inside",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "POST /webhooks/{id}/{token}?wait=true with an embed; allowed_mentions locked down",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "not in Discord's API: a webhook cannot schedule a message",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "roles pinged only for high and emergency notifications (mention_role_ids); quiet_hours in the server's time zone: silent messages (SUPPRESS_NOTIFICATIONS) below breaks_through",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "GET /webhooks/{id}/{token}/messages/{message_id}: the message's reactions",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "GET /webhooks/{id}/{token}",
        },
    ],
    inbound: &[],
    takes: None,
};

impl Vendor for Discord {
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
        let discord: DiscordSettings = deserialize_settings(settings)?;
        settings::check_discord(&discord)?;
        Ok(Arc::new(discord))
    }
}

impl VendorSettings for DiscordSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.webhook_url]
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(DiscordConnector::new(
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
            "[[integrations]]\nid = \"chat\"\norganization = \"studio\"\nkind = \"discord\"\nsettings = {{ webhook_url = {{ env = \"DISCORD_WEBHOOK\" }}{settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        assert!(parse_with_studio(&integration(
            ", username = \"Wedding desk\", mention_role_ids = [\"112233445566778899\"]"
        ))
        .is_ok());
        for (settings, field) in [
            (
                ", username = \"Discord bot\"",
                "integrations[0].settings.username",
            ),
            (
                ", thread_id = \"general\"",
                "integrations[0].settings.thread_id",
            ),
            (
                ", mention_role_ids = [\"@planners\"]",
                "integrations[0].settings.mention_role_ids[0]",
            ),
            (
                ", api_url = \"discord.com\"",
                "integrations[0].settings.api_url",
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
