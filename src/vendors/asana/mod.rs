//! Asana: a task per wedding in the planner network's project (due on the wedding day, moved
//! between sections as its stages), each notification a comment on it, each action a subtask,
//! and Asana's signed webhooks turning a ticked subtask into an acknowledgement.

mod connector;
mod inbound;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::AsanaConnector;
pub use settings::{AsanaSettings, AsanaWebhooks};
pub use simulator::FakeAsana;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, RateWindow, SeedOperation, SettingsError,
    Simulation, Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::vendors::inbound::InboundHandler;
use crate::wedsync::IntegrationType;

/// The vault's name for the secret of the webhook Herald made on the project.
const WEBHOOK_SECRET: &str = "asana_webhook_secret";

pub struct Asana;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "asana",
    name: "Asana",
    integration_type: IntegrationType::Crm,
    authentication: "bearer-token",
    default_rate: DefaultRate {
        per_second: 2.2,
        burst: 10,
        source: "Asana allows 150 requests per minute per token on free workspaces (1,500 on paid ones: raise rate_limit there); 2.2/s with a burst of 10 stays inside the smaller",
        window: Some(RateWindow {
            requests: 150,
            seconds: 60,
        }),
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "Asana keeps no contacts: they are written in the comment on the wedding's task (counted as synced there), and nobody is invited into the workspace",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "POST /tasks/{gid}/stories on the wedding's task (found by GET /workspaces/{gid}/tasks/search on the reference custom field, or made with POST /tasks); POST /tasks/{gid}/subtasks per action",
        },
        SeedOperation {
            name: "updateDealPipeline",
            implemented_by: "POST /sections/{gid}/addTask to the section the notification type maps to; PUT /tasks/{gid} with the wedding's due_on",
        },
        SeedOperation {
            name: "triggerAutomationWorkflows",
            implemented_by: "not in Asana's API: project rules triggered by a task moved to a section or a changed due date run from Herald's changes",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /users/me (the workspace is the token's) and GET /projects/{gid} (the reference field is on it)",
        },
    ],
    inbound: &["POST /inbound/asana/{integration}/events: the X-Hook-Secret handshake, then signed events; a ticked action subtask acknowledges its notification"],
    takes: Some("has(notification.weddingContext) && has(notification.weddingContext.weddingId)"),
};

impl Vendor for Asana {
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
        let asana: AsanaSettings = deserialize_settings(settings)?;
        settings::check_asana(&asana)?;
        Ok(Arc::new(asana))
    }
}

impl VendorSettings for AsanaSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.token]
    }

    /// Asana chooses the webhook's secret; Herald keeps it sealed.
    fn keeps_credentials_at(&self) -> Option<&'static str> {
        self.webhooks.as_ref().map(|_| "webhooks")
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(AsanaConnector::new(
            self,
            integration.integration_id,
            kit.client.clone(),
            kit.vault.clone(),
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"planner-asana\"\norganization = \"studio\"\nkind = \"asana\"\nsettings = {{ token = {{ env = \"ASANA_PAT\" }}, {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let ids = "workspace = \"1\", project = \"2\", reference_field = \"3\"";
        assert!(parse_with_studio(&integration(&format!(
            "{ids}, sections = {{ booking_confirmed = \"4\" }}"
        )))
        .is_ok());
        let cases = [
            (
                "workspace = \"acme\", project = \"2\", reference_field = \"3\"".to_owned(),
                "integrations[0].settings.workspace",
            ),
            (
                "workspace = \"1\", project = \"2\"".to_owned(),
                "reference_field",
            ),
            (
                format!("{ids}, sections = {{ booking_confirmed = \"Booked\" }}"),
                "integrations[0].settings.sections.booking_confirmed",
            ),
            (
                format!("{ids}, base_url = \"app.asana.com\""),
                "integrations[0].settings.base_url",
            ),
            (
                format!("{ids}, webhooks = {{ public_url = \"herald\" }}"),
                "integrations[0].settings.webhooks.public_url",
            ),
        ];
        for (settings, field) in cases {
            let err = parse_with_studio(&integration(&settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }

    #[test]
    fn webhooks_need_the_vault() {
        let err = parse_with_studio(&integration(
            "workspace = \"1\", project = \"2\", reference_field = \"3\", webhooks = { public_url = \"https://herald.example.com\" }",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("credentials_key"), "{err}");
    }
}
