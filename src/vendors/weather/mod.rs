//! Weather alerts from the US National Weather Service: Herald watches each wedding routed to a
//! weather integration, from a lead time before the day through the day itself, reads the
//! active alerts at its venue's point, and turns each severe alert in force on the wedding day
//! into one emergency notification of the organization, routed through the emergency lane to
//! its other targets.

mod connector;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::WeatherConnector;
pub use settings::WeatherSettings;
pub use simulator::FakeNationalWeatherService;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Weather;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "weather",
    name: "National Weather Service alerts",
    integration_type: IntegrationType::EmergencyServices,
    authentication: "none (a User-Agent naming the operator, as the NWS asks)",
    default_rate: DefaultRate {
        per_second: 1.0,
        burst: 5,
        source: "the NWS publishes no figure (its API refuses excess for a few seconds); a watch costs one request, each venue's alerts one per poll_interval (at least a minute)",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "weather watch (the seed names no weather operation)",
            implemented_by: "starts (or moves, or stops on a cancellation) the watch of the notification's wedding: GET /points/{lat},{lon} for the venue's coverage and time zone, the watch kept in the store until the day is over",
        },
        SeedOperation {
            name: "weather alerts (the seed names no weather operation)",
            implemented_by: "GET /alerts/active?point=...&status=actual per watched venue every poll_interval (If-Modified-Since); each alert of a configured severity in force on the wedding day becomes one weather_alert emergency (priority emergency), routed to the organization's other targets",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "not possible: alerts are broadcast, nobody answers the NWS",
        },
    ],
    inbound: &[],
    takes: Some("has(wedding.weddingId) && has(wedding.venueLocation)"),
};

impl Vendor for Weather {
    fn describe(&self) -> &'static VendorDescription {
        &DESCRIPTION
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn polled(&self) -> bool {
        true
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let weather: WeatherSettings = deserialize_settings(settings)?;
        settings::check_weather(&weather)?;
        Ok(Arc::new(weather))
    }
}

impl VendorSettings for WeatherSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        Vec::new()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(WeatherConnector::new(
            self,
            kit.client.clone(),
            kit.memory(integration.integration_id),
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    fn integration(settings: &str) -> String {
        format!(
            "[[integrations]]\nid = \"weather\"\norganization = \"studio\"\nkind = \"weather\"\nsettings = {{ contact = \"ops@studio.example\"{settings} }}\n"
        )
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        for good in [
            "",
            ", lead_time = \"3days\", poll_interval = \"5m\", severities = [\"Extreme\"]",
            ", api_url = \"http://127.0.0.1:9000\", poll_interval = \"1s\"",
        ] {
            assert!(parse_with_studio(&integration(good)).is_ok(), "{good}");
        }
        for (settings, field) in [
            (", poll_interval = \"10s\"", "settings.poll_interval"),
            (", poll_interval = \"soon\"", "settings.poll_interval"),
            (", lead_time = \"30days\"", "settings.lead_time"),
            (
                ", severities = [\"Severe\", \"Bad\"]",
                "settings.severities[1]",
            ),
            (", severities = []", "settings.severities"),
            (", api_url = \"weather.gov\"", "settings.api_url"),
        ] {
            let err = parse_with_studio(&integration(settings))
                .err()
                .unwrap_or_else(|| panic!("{settings} was taken"))
                .to_string();
            assert!(err.contains(field), "{settings}: {err}");
        }
        let err = parse_with_studio(
            "[[integrations]]\nid = \"weather\"\norganization = \"studio\"\nkind = \"weather\"\nsettings = { contact = \"Herald\" }\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("settings.contact"), "{err}");
    }
}
