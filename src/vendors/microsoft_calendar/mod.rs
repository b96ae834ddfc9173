//! The Microsoft 365 calendar: the wedding day as an event in a studio mailbox's calendar
//! through Microsoft Graph, with the app's own permission (Entra ID client credentials); made,
//! moved and cancelled as Google Calendar's are.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::{transaction_id, MicrosoftCalendarConnector, WEDDING_PROPERTY};
pub use settings::MicrosoftCalendarSettings;
pub use simulator::FakeMicrosoftCalendar;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct MicrosoftCalendar;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "microsoft_calendar",
    name: "Microsoft 365 calendar",
    integration_type: IntegrationType::Calendar,
    authentication: "oauth2-client-credentials (Entra ID)",
    default_rate: DefaultRate {
        per_second: 4.0,
        burst: 4,
        source: "Outlook's Graph limits: 10,000 requests per 10 minutes per app and mailbox and 4 concurrent requests; 4/s is 2,400 per 10 minutes",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "wedding events (the seed names no calendar operation)",
            implemented_by: "GET /users/{user}/events with $filter on Herald's single-value extended property, then POST /users/{user}/events (transactionId, the wedding's time zone, all day) or PATCH /users/{user}/events/{id}; DELETE when the wedding is cancelled",
        },
        SeedOperation {
            name: "attendees (the seed names no calendar operation)",
            implemented_by: "the contacts with invite_contact_roles as required attendees; Exchange sends the invitations and cancellations",
        },
        SeedOperation {
            name: "establishConnection",
            implemented_by: "GET /users/{user}/calendar (or calendars/{id})",
        },
    ],
    inbound: &[],
    takes: Some("has(notification.weddingContext) && has(notification.weddingContext.weddingId)"),
};

impl Vendor for MicrosoftCalendar {
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
        let microsoft: MicrosoftCalendarSettings = deserialize_settings(settings)?;
        settings::check_microsoft_calendar(&microsoft)?;
        Ok(Arc::new(microsoft))
    }
}

impl VendorSettings for MicrosoftCalendarSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        vec![&self.client_secret]
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(MicrosoftCalendarConnector::new(
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
            "[[integrations]]\nid = \"calendar\"\norganization = \"studio\"\nkind = \"microsoft_calendar\"\nsettings = {{ tenant_id = \"contoso.onmicrosoft.com\", client_id = \"c\", client_secret = {{ env = \"MS\" }}{settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        for good in [
            ", user = \"weddings@contoso.com\"",
            ", user = \"weddings@contoso.com\", calendar_id = \"AAMkAGI2TG93AAA=\", invite_contact_roles = [\"couple\"], default_time_zone = \"America/New_York\"",
        ] {
            assert!(parse_with_studio(&integration(good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            (", user = \"weddings at contoso\"", "settings.user"),
            ("", "settings"),
            (
                ", user = \"w@contoso.com\", default_time_zone = \"Eastern\"",
                "settings.default_time_zone",
            ),
            (
                ", user = \"w@contoso.com\", graph_url = \"graph\"",
                "settings.graph_url",
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
