//! Dynamics 365 Sales on Dataverse: contacts found or created by email, a task per contact and a
//! note, opportunities moved between sales stages and won or lost, an on-demand workflow run per
//! contact; through an Entra ID app's client credentials.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{Dynamics365Connector, MAX_CONTACTS};
pub use settings::{is_guid, Dynamics365Settings};
pub use simulator::FakeDataverse;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Dynamics365;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "dynamics365",
    name: "Dynamics 365",
    integration_type: IntegrationType::Crm,
    authentication: "oauth2-client-credentials (Entra ID)",
    default_rate: DefaultRate {
        per_second: 10.0,
        burst: 20,
        source: "Dataverse's service protection allows 6,000 requests per user (the app's application user) per web server over a sliding 5 minutes, 20 minutes of execution time and 52 concurrent requests; 10/s with a burst of 20 is 3,000 per 5 minutes, half the window",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncNotificationToContacts",
            implemented_by: "GET contacts with $filter on emailaddress1 OR-ing the emails, then POST contacts (Prefer: return=representation) for the missing",
        },
        SeedOperation {
            name: "createNotificationActivities",
            implemented_by: "POST tasks regarding each contact, and POST annotations (a note) on the opportunity or the first contact",
        },
        SeedOperation {
            name: "updateDealPipeline",
            implemented_by: "PATCH opportunities(id) with salesstage (If-Match: *), then the WinOpportunity or LoseOpportunity action",
        },
        SeedOperation {
            name: "triggerAutomationWorkflows",
            implemented_by: "POST workflows(id)/Microsoft.Dynamics.CRM.ExecuteWorkflow for each contact, with workflow_id (an on-demand classic workflow)",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET WhoAmI (the application user, business unit and organization)",
        },
    ],
    inbound: &[],
    takes: Some("has(notification.contacts)"),
};

impl Vendor for Dynamics365 {
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
        let dynamics: Dynamics365Settings = deserialize_settings(settings)?;
        settings::check_dynamics365(&dynamics)?;
        Ok(Arc::new(dynamics))
    }
}

impl VendorSettings for Dynamics365Settings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.client_secret]
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(Dynamics365Connector::new(
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
            "[[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"dynamics365\"\nsettings = {{ {settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let app = "tenant_id = \"contoso.onmicrosoft.com\", client_id = \"00000000-0000-0000-0000-000000000001\", client_secret = { env = \"D365_SECRET\" }";
        assert!(parse_with_studio(&integration(&format!(
            "environment_url = \"https://contoso.crm4.dynamics.com\", {app}, workflow_id = \"9a1b2c3d-0000-4e5f-8a9b-0c1d2e3f4a5b\""
        )))
        .is_ok());
        let cases = [
            (format!("environment_url = \"contoso\", {app}"), "integrations[0].settings.environment_url"),
            (
                format!("environment_url = \"https://contoso.crm.dynamics.com\", {app}, authority = \"login\""),
                "integrations[0].settings.authority",
            ),
            (
                "environment_url = \"https://contoso.crm.dynamics.com\", tenant_id = \"a b\", client_id = \"c\", client_secret = { env = \"S\" }".to_owned(),
                "integrations[0].settings.tenant_id",
            ),
            (
                format!("environment_url = \"https://contoso.crm.dynamics.com\", {app}, workflow_id = \"welcome\""),
                "integrations[0].settings.workflow_id",
            ),
            (
                "environment_url = \"https://contoso.crm.dynamics.com\", tenant_id = \"t\", client_id = \"c\"".to_owned(),
                "client_secret",
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
}
