//! Slack: Block Kit messages with `chat.postMessage`, action buttons in the message's thread,
//! reminders and quiet hours with `chat.scheduleMessage`, engagement from reactions and replies,
//! and button clicks back through the app's interactivity Request URL.

mod connector;
mod inbound;
mod settings;
mod simulator;

use std::sync::Arc;

pub use connector::{
    sign_slack_request, slack_action_blocks, slack_blocks, verify_slack_request, SignatureError,
    SlackConnector,
};
pub use settings::{QuietHours, ReminderSettings, SlackSettings};
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
