//! The weather watch's settings: who Herald says it is to the National Weather Service, how long
//! before a wedding its watch starts, how often it reads the alerts, which severities count, and
//! their validation.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::vendors::{is_http_url, SettingsError};

/// The National Weather Service's API, which asks every caller to name itself.
pub const NWS_API: &str = "https://api.weather.gov";

/// The shortest interval between two reads of api.weather.gov for one venue.
pub const NWS_POLL_FLOOR: Duration = Duration::from_secs(60);

/// The CAP severities, most severe first.
pub const SEVERITIES: [&str; 5] = ["Extreme", "Severe", "Moderate", "Minor", "Unknown"];

/// Weather alerts for an organization's weddings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeatherSettings {
    /// An email address or website the NWS can reach the operator at, sent in the `User-Agent`
    /// as the NWS asks of every application.
    pub contact: String,
    /// How long before the wedding day the watch starts (default 7 days, at most 16).
    #[serde(default = "default_lead_time", deserialize_with = "duration")]
    pub lead_time: Duration,
    /// How often each venue's alerts are read (default 2 minutes; at least a minute on
    /// api.weather.gov).
    #[serde(default = "default_poll_interval", deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// The alert severities that become emergencies (default `Extreme` and `Severe`).
    #[serde(default = "default_severities")]
    pub severities: Vec<String>,
    /// The API's address (`https://api.weather.gov`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::config::parse_duration(&text).map_err(serde::de::Error::custom)
}

fn default_lead_time() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(120)
}

fn default_severities() -> Vec<String> {
    vec!["Extreme".to_owned(), "Severe".to_owned()]
}

fn default_api_url() -> String {
    NWS_API.to_owned()
}

pub(super) fn check_weather(settings: &WeatherSettings) -> Result<(), SettingsError> {
    let contact = settings.contact.trim();
    if contact.is_empty()
        || contact.chars().count() > 200
        || contact.chars().any(|c| c.is_control())
        || !(contact.contains('@') || is_http_url(contact))
    {
        return Err(SettingsError::new(
            "contact",
            "must be an email address or an http(s) address the NWS can reach you at (at most 200 characters)",
        ));
    }
    if !is_http_url(&settings.api_url) {
        return Err(SettingsError::new(
            "api_url",
            format!("{:?} is not an http(s) address", settings.api_url),
        ));
    }
    if settings.lead_time < Duration::from_secs(3600)
        || settings.lead_time > Duration::from_secs(16 * 86_400)
    {
        return Err(SettingsError::new(
            "lead_time",
            "must be from 1 hour to 16 days (alerts are rarely issued further ahead)",
        ));
    }
    let floor = if settings.api_url.trim_end_matches('/') == NWS_API {
        NWS_POLL_FLOOR
    } else {
        Duration::from_secs(1)
    };
    if settings.poll_interval < floor || settings.poll_interval > Duration::from_secs(3600) {
        return Err(SettingsError::new(
            "poll_interval",
            format!(
                "must be from {} to 1 hour",
                humantime::format_duration(floor)
            ),
        ));
    }
    if settings.severities.is_empty() {
        return Err(SettingsError::new(
            "severities",
            "must name at least one severity",
        ));
    }
    for (index, severity) in settings.severities.iter().enumerate() {
        if !SEVERITIES.contains(&severity.as_str()) {
            return Err(SettingsError::new(
                format!("severities[{index}]"),
                format!("{severity:?} is not one of {}", SEVERITIES.join(", ")),
            ));
        }
    }
    Ok(())
}
