//! Slack: Block Kit messages with `chat.postMessage`, action buttons in the message's thread,
//! reminders and quiet hours with `chat.scheduleMessage`, engagement from reactions and replies,
//! and button clicks back through the app's interactivity Request URL.

mod blocks;
mod connector;
mod inbound;
mod settings;
mod simulator;

use std::sync::Arc;

pub use blocks::{action_blocks, escape_mrkdwn, slack_blocks, ActionBlocks};
pub use connector::{sign_slack_request, verify_slack_request, SignatureError, SlackConnector};
pub use settings::{AppDistribution, ReminderSettings, SlackSettings};
pub use simulator::FakeSlack;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::InboundHandler;
use crate::wedsync::IntegrationType;

pub struct Slack;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "slack",
    name: "Slack",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "bearer-token",
    default_rate: DefaultRate {
        per_second: 1.0,
        burst: 3,
        source: "chat.postMessage allows about one message per second per channel, short bursts tolerated",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "chat.postMessage with Block Kit; action buttons in a thread reply",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "chat.scheduleMessage reminders before the wedding date (Slack has no public API for Workflow Builder)",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "quiet hours: chat.scheduleMessage for the end of the period",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "reactions.get and conversations.replies on the delivered message",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "auth.test",
        },
    ],
    inbound: &["POST /inbound/slack/{integration}/interactivity: button clicks acknowledge the notification (v0 signature, five-minute window)"],
    takes: None,
};

impl Vendor for Slack {
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
        let slack: SlackSettings = deserialize_settings(settings)?;
        settings::check_slack(&slack)?;
        Ok(Arc::new(slack))
    }
}

impl VendorSettings for SlackSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.token)
            .chain(&self.signing_secret)
            .collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(SlackConnector::new(
            self,
            kit.client.clone(),
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wedsync::is_time_of_day;

    #[test]
    fn settings_default_to_slacks_api() {
        let settings = Slack
            .parse_settings(serde_json::json!({"channel": "#weddings", "token": {"env": "T"}}))
            .unwrap();
        assert_eq!(
            settings
                .downcast_ref::<SlackSettings>()
                .map(|s| s.base_url.as_str()),
            Some("https://slack.com/api")
        );
    }

    #[test]
    fn reminder_times_and_templates_are_checked_when_the_config_loads() {
        for good in ["00:00", "09:00", "23:59"] {
            assert!(is_time_of_day(good), "{good}");
        }
        for bad in ["24:00", "9:00", "09:60", "noon", "09-00"] {
            assert!(!is_time_of_day(bad), "{bad}");
        }
        let with = |extra: &str| {
            format!("[[organizations]]\nid = \"studio\"\n[[integrations]]\nid = \"slack\"\norganization = \"studio\"\nkind = \"slack\"\nsettings = {{ channel = \"#weddings\", {extra}, token = {{ env = \"SLACK_TOKEN\" }} }}\n")
        };
        let validate = |text: String| crate::config::parse(&text, "test.toml");
        let err = validate(with(
            r#"reminders = [{ days_before = 1, at = "9am", text_template = "x" }]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("settings.reminders[0].at") && err.contains("not a time"),
            "{err}"
        );
        for (quiet, field, reason) in [
            (
                r#"quiet_hours = { from = "10pm", to = "07:00" }"#,
                "settings.quiet_hours.from",
                "not a time",
            ),
            (
                r#"quiet_hours = { from = "07:00", to = "07:00" }"#,
                "settings.quiet_hours.to",
                "must not be empty",
            ),
            (
                r#"quiet_hours = { from = "22:00", to = "07:00", time_zone = "London" }"#,
                "settings.quiet_hours.time_zone",
                "not an IANA time zone",
            ),
        ] {
            let err = validate(with(quiet)).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(reason), "{err}");
        }
        assert!(validate(with(
            r#"quiet_hours = { from = "22:00", to = "07:00", time_zone = "Europe/London", breaks_through = "high" }"#
        ))
        .is_ok());
        let err = validate(with(r#"text_template = "{{ title""#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("settings.text_template") && err.contains("does not compile"),
            "{err}"
        );
    }
}
