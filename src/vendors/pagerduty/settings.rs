//! PagerDuty's settings: the service's Events API v2 integration key, how incidents are
//! described, where PagerDuty's webhooks reach Herald, and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// A PagerDuty service that Herald opens incidents on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySettings {
    /// The service's Events API v2 integration key (32 characters).
    pub routing_key: SecretRef,
    /// The incident's `payload.source`; default the wedding's venue, else `WedSync`.
    pub source: Option<String>,
    /// `payload.component` and `payload.group`, when the service's event rules use them.
    pub component: Option<String>,
    pub group: Option<String>,
    /// PagerDuty's v3 webhooks into Herald: acknowledgements made in PagerDuty.
    pub webhook: Option<PagerDutyWebhook>,
    /// The Events API (`https://events.pagerduty.com`).
    #[serde(default = "default_events_url")]
    pub events_url: String,
    /// The REST API (`https://api.pagerduty.com`), read to learn which incident a webhook names.
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

/// The webhook subscription's secret (PagerDuty shows it once, when the subscription is made)
/// and a read-only REST API key: a webhook names the incident by PagerDuty's id, and the
/// incident's `incident_key` (Herald's `dedup_key`) is read from the REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyWebhook {
    pub secret: SecretRef,
    pub api_token: SecretRef,
}

fn default_events_url() -> String {
    "https://events.pagerduty.com".to_owned()
}

fn default_api_url() -> String {
    "https://api.pagerduty.com".to_owned()
}

pub(super) fn check_pagerduty(settings: &PagerDutySettings) -> Result<(), SettingsError> {
    for (field, value) in [
        ("source", &settings.source),
        ("component", &settings.component),
        ("group", &settings.group),
    ] {
        if let Some(value) = value {
            if value.trim().is_empty() || value.chars().count() > 255 {
                return Err(SettingsError::new(field, "must be 1-255 characters"));
            }
        }
    }
    for (field, address) in [
        ("events_url", settings.events_url.as_str()),
        ("api_url", settings.api_url.as_str()),
    ] {
        if !is_http_url(address) {
            return Err(SettingsError::new(
                field,
                format!("{address:?} is not an http(s) address"),
            ));
        }
    }
    Ok(())
}
