//! Microsoft Teams: an Adaptive Card per notification posted to a channel by the supplier's
//! Workflows flow (Office 365 connector webhooks are retired), each card checked by the
//! simulator against Microsoft's published card schema.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::TeamsConnector;
pub use settings::TeamsSettings;
pub use simulator::FakeTeams;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Teams;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "teams",
    name: "Microsoft Teams",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "workflow-url",
    default_rate: DefaultRate {
        per_second: 1.0,
        burst: 3,
        source: "Microsoft publishes no figure for a Workflows trigger; Graph allows an app at most 4 requests a second on one channel, and one a second with a burst of 3 never makes more than 4 in any second",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "POST to the flow's trigger URL: an Adaptive Card (1.4) the flow posts to its channel",
        },
        SeedOperation {
            name: "routeNotificationToChannels",
            implemented_by: "one flow per channel: each Teams integration is one channel's flow",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "not possible through a flow's trigger: it posts at once",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "not possible: each member's Teams notification settings are their own",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "not possible: the flow answers 202 and nothing can read its post back",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "not possible without posting: a flow's trigger has no read operation",
        },
    ],
    inbound: &[],
    takes: None,
};

impl Vendor for Teams {
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
        let teams: TeamsSettings = deserialize_settings(settings)?;
        Ok(Arc::new(teams))
    }
}

impl VendorSettings for TeamsSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.workflow_url]
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(TeamsConnector::new(
            self,
            kit.client.clone(),
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    #[test]
    fn settings_take_the_flows_url_and_nothing_else() {
        let integration = |settings: &str| {
            format!(
                "[[integrations]]\nid = \"chat\"\norganization = \"studio\"\nkind = \"teams\"\nsettings = {{ {settings} }}\n"
            )
        };
        assert!(parse_with_studio(&integration("workflow_url = { env = \"TEAMS_FLOW\" }")).is_ok());
        let unknown = parse_with_studio(&integration(
            "workflow_url = { env = \"TEAMS_FLOW\" }, channel = \"general\"",
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            unknown.contains("integrations[0].settings.channel"),
            "{unknown}"
        );
        let missing = parse_with_studio(&integration(""))
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("workflow_url"), "{missing}");
    }
}
