//! Tave / VSCO Workspace: a job's communication-log note per notification, the wedding date,
//! stage and workflow on the job, sessions moved with the date, conflict checks, and Tave's REST
//! hooks back into Herald as notifications.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{event_notification, rest_hook_path, TaveConnector};
pub use settings::{TaveRestHooks, TaveSettings, TAVE_REST_HOOK_EVENTS};
pub use simulator::FakeTave;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::InboundHandler;
use crate::wedsync::IntegrationType;

pub struct Tave;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "tave",
    name: "Tave",
    integration_type: IntegrationType::BookingSystem,
    authentication: "api-key",
    default_rate: DefaultRate {
        per_second: 2.0,
        burst: 5,
        source: "Tave publishes no figure, only a 429 quota-limit: modest, and Retry-After is honoured",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncBookingNotifications",
            implemented_by: "POST /note on the job's communication log; PUT /job/{id} for the date, stage and workflow",
        },
        SeedOperation {
            name: "updateBookingStatus",
            implemented_by: "PUT /job/{id} with the stage or lead status",
        },
        SeedOperation {
            name: "triggerBookingWorkflows",
            implemented_by: "the job's workflowId (the API starts no workflow run)",
        },
        SeedOperation {
            name: "handleBookingConflicts",
            implemented_by: "with check_conflicts, GET /event paged for confirmed sessions that day",
        },
        SeedOperation {
            name: "connectToBookingAPI",
            implemented_by: "GET /studio/me",
        },
    ],
    inbound: &["POST /inbound/tave/{integration}/{event}/{secret}: REST hooks (contact.created, job.created, order.booked, payment.created) become notifications"],
    takes: Some("has(notification.taveJobId) || has(metadata.taveJobId)"),
};

impl Vendor for Tave {
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
        let tave: TaveSettings = deserialize_settings(settings)?;
        if let Some(hooks) = &tave.rest_hooks {
            settings::check_tave_rest_hooks(hooks)?;
        }
        Ok(Arc::new(tave))
    }
}

impl VendorSettings for TaveSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.api_key)
            .chain(self.rest_hooks.iter().map(|hooks| &hooks.secret))
            .collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(TaveConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendors::parse_with_studio;

    #[test]
    fn tave_rest_hooks_name_tave_events_and_an_http_address() {
        let tave = |hooks: &str| {
            format!("[[integrations]]\nid = \"studio-tave\"\norganization = \"studio\"\nkind = \"tave\"\nsettings = {{ api_key = {{ env = \"K\" }}, rest_hooks = {{ {hooks} }} }}\n")
        };
        let config = parse_with_studio(&tave(
            r#"public_url = "https://herald.example.com", secret = { env = "H" }"#,
        ))
        .unwrap();
        let settings = config.integration("studio-tave").unwrap().settings.clone();
        let settings = settings.downcast_ref::<TaveSettings>().unwrap();
        assert_eq!(
            settings.rest_hooks.as_ref().unwrap().events,
            ["job.created", "order.booked", "payment.created"]
        );
        for (hooks, field, reason) in [
            (
                r#"public_url = "herald.example.com", secret = { env = "H" }"#,
                "settings.rest_hooks.public_url",
                "not an http(s) address",
            ),
            (
                r#"public_url = "https://h.example", events = ["job.created", "invoice.paid"], secret = { env = "H" }"#,
                "settings.rest_hooks.events[1]",
                "not a Tave REST-hook event",
            ),
            (
                r#"public_url = "https://h.example""#,
                "settings.rest_hooks",
                "secret",
            ),
        ] {
            let err = parse_with_studio(&tave(hooks)).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(reason), "{err}");
        }
    }
}
