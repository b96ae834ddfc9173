//! PagerDuty: the on-call pager of an emergency desk. Each notification opens (or adds to) an
//! incident through the Events API v2 with a `dedup_key` of its own, the incident is
//! acknowledged or resolved when the notification is acknowledged on another channel, and
//! acknowledgements made in PagerDuty come back through its v3 webhooks.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{dedup_key, PagerDutyConnector};
pub use settings::{PagerDutySettings, PagerDutyWebhook};
pub use simulator::FakePagerDuty;

use super::inbound::InboundHandler;
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct PagerDuty;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "pagerduty",
    name: "PagerDuty",
    integration_type: IntegrationType::EmergencyServices,
    authentication: "integration-key (Events API v2)",
    default_rate: DefaultRate {
        per_second: 1.5,
        burst: 10,
        source: "PagerDuty's Events API takes about 120 events a minute per integration key over a 60-second look-back (429 beyond); 1.5/s is 90 a minute",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "POST /v2/enqueue event_action trigger with dedup_key herald/<notificationId>, severity from the priority, the wedding in custom_details, link actions as links",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "incident.acknowledged and incident.resolved webhooks, recorded as acknowledgements",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "not possible: the Events API has no read, and sending an event opens an incident",
        },
    ],
    inbound: &["POST /inbound/pagerduty/{integration}/webhooks: v3 webhooks signed with X-PagerDuty-Signature; an incident acknowledged or resolved in PagerDuty acknowledges its notification"],
    takes: None,
};

impl Vendor for PagerDuty {
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
        let pagerduty: PagerDutySettings = deserialize_settings(settings)?;
        settings::check_pagerduty(&pagerduty)?;
        Ok(Arc::new(pagerduty))
    }
}

impl VendorSettings for PagerDutySettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        let mut secrets = vec![&self.routing_key];
        if let Some(webhook) = &self.webhook {
            secrets.push(&webhook.secret);
            secrets.push(&webhook.api_token);
        }
        secrets
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(PagerDutyConnector::new(
            self,
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
            "[[integrations]]\nid = \"pager\"\norganization = \"studio\"\nkind = \"pagerduty\"\nsettings = {{ routing_key = {{ env = \"PD\" }}{settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        for good in [
            "",
            ", source = \"Kew Gardens desk\", component = \"marquee\"",
            ", webhook = { secret = { env = \"PDS\" }, api_token = { env = \"PDT\" } }",
        ] {
            assert!(parse_with_studio(&integration(good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            (", source = \" \"", "settings.source"),
            (", events_url = \"events\"", "settings.events_url"),
            (
                ", webhook = { secret = { env = \"PDS\" } }",
                "settings.webhook",
            ),
            (", severity = \"critical\"", "settings"),
        ] {
            let err = parse_with_studio(&integration(settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }
}
