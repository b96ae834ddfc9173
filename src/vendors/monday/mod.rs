//! monday.com: a wedding is an item on the organization's weddings board (created or found by
//! the wedding's id), its date and status columns kept in step, the notification posted as an
//! update, contacts kept on a contacts board, people told through monday's notifications; over
//! the GraphQL API with an API token.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{MondayConnector, API_VERSION, MAX_CONTACTS};
pub use settings::MondaySettings;
pub use simulator::{ColumnKind, FakeMonday};

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Monday;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "monday",
    name: "monday.com",
    integration_type: IntegrationType::Crm,
    authentication: "api-token (Authorization header, API-Version 2026-10)",
    default_rate: DefaultRate {
        per_second: 1.0,
        burst: 10,
        source: "monday.com limits by complexity (10M points a minute for personal tokens, 1M on free and trial plans; Herald reads what is left from every answer and holds requests until it resets), 2,000 mutations a minute, and daily calls by plan (1,000 on Basic and Standard, 10,000 on Pro); 1/s with a burst of 10 stays inside a minute's mutations, and the daily calls are the plan's to raise",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "items_page_by_column_values on the contacts board's email column (one query for every email), then create_item for the missing",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "create_update on the wedding's item (found by items_page_by_column_values on wedding_column, or created with create_item)",
        },
        SeedOperation {
            name: "updateDealPipeline",
            implemented_by: "change_multiple_column_values: the status column's label (metadata.mondayStatus) and the date column (the wedding date)",
        },
        SeedOperation {
            name: "triggerAutomationWorkflows",
            implemented_by: "no API call runs an automation: the column changes start the board's own automations, and create_notification tells notify_user_ids of high and emergency notifications",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "query me (the user the token acts as, and its account)",
        },
    ],
    inbound: &[],
    takes: Some("has(notification.weddingContext) && has(notification.weddingContext.weddingId)"),
};

impl Vendor for Monday {
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
        let monday: MondaySettings = deserialize_settings(settings)?;
        settings::check_monday(&monday)?;
        Ok(Arc::new(monday))
    }
}

impl VendorSettings for MondaySettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.api_token]
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(MondayConnector::new(
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
            "[[integrations]]\nid = \"board\"\norganization = \"studio\"\nkind = \"monday\"\nsettings = {{ api_token = {{ env = \"MONDAY_TOKEN\" }}, {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        assert!(parse_with_studio(&integration(
            "board_id = \"1234567890\", wedding_column = \"text_wedding\", date_column = \"date4\", status_column = \"status\", contacts_board_id = \"987\", contacts_email_column = \"email\", notify_user_ids = [\"4012689\"]"
        ))
        .is_ok());
        let cases = [
            (
                "board_id = \"weddings\", wedding_column = \"text\"",
                "integrations[0].settings.board_id",
            ),
            (
                "board_id = \"1\", wedding_column = \"Wedding ID\"",
                "integrations[0].settings.wedding_column",
            ),
            (
                "board_id = \"1\", wedding_column = \"text\", status_column = \"\"",
                "integrations[0].settings.status_column",
            ),
            (
                "board_id = \"1\", wedding_column = \"text\", contacts_board_id = \"2\"",
                "integrations[0].settings.contacts_email_column",
            ),
            (
                "board_id = \"1\", wedding_column = \"text\", notify_user_ids = [\"1\", \"sam\"]",
                "integrations[0].settings.notify_user_ids[1]",
            ),
            (
                "board_id = \"1\", wedding_column = \"text\", api_url = \"monday\"",
                "integrations[0].settings.api_url",
            ),
            ("board_id = \"1\"", "wedding_column"),
        ];
        for (settings, field) in cases {
            let err = parse_with_studio(&integration(settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
    }
}
