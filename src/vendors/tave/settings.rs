//! Tave's settings: the studio's API key, REST-hook subscriptions and conflict checks, and their
//! validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// Tave / VSCO Workspace API v2 with an API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaveSettings {
    #[serde(default = "default_tave_base_url")]
    pub base_url: String,
    /// The studio's API key (Settings > API Integrations), sent as `X-API-KEY`.
    pub api_key: SecretRef,
    /// Tave events Herald subscribes to, so they reach Herald as notifications.
    pub rest_hooks: Option<TaveRestHooks>,
    /// On a new wedding date, look through the studio's events for confirmed sessions of other
    /// jobs that day (handleBookingConflicts). Off by default: the API has no date filter, so it
    /// pages through the studio's events (up to 1,000).
    #[serde(default)]
    pub check_conflicts: bool,
}

/// The events Tave's REST hooks offer.
pub const TAVE_REST_HOOK_EVENTS: &[&str] = &[
    "contact.created",
    "job.created",
    "order.booked",
    "payment.created",
];

/// Tave REST-hook subscriptions (`POST /v1/integrations/{id}/subscriptions` makes them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaveRestHooks {
    /// Herald's address as Tave reaches it, e.g. `https://herald.example.com`.
    pub public_url: String,
    #[serde(default = "default_tave_rest_hook_events")]
    pub events: Vec<String>,
    /// A long random string. Tave signs nothing it sends, so this secret travels in the address
    /// Herald registers and every call must carry it.
    pub secret: SecretRef,
}

fn default_tave_rest_hook_events() -> Vec<String> {
    ["job.created", "order.booked", "payment.created"]
        .map(str::to_owned)
        .to_vec()
}

fn default_tave_base_url() -> String {
    "https://workspace.vsco.co/api/v2".to_owned()
}

/// The events are Tave's and the public address is an http(s) URL.
pub(super) fn check_tave_rest_hooks(hooks: &TaveRestHooks) -> Result<(), SettingsError> {
    if !is_http_url(&hooks.public_url) {
        return Err(SettingsError::new(
            "rest_hooks.public_url",
            format!("{:?} is not an http(s) address", hooks.public_url),
        ));
    }
    if hooks.events.is_empty() {
        return Err(SettingsError::new(
            "rest_hooks.events",
            "name at least one event",
        ));
    }
    for (index, event) in hooks.events.iter().enumerate() {
        if !TAVE_REST_HOOK_EVENTS.contains(&event.as_str()) {
            return Err(SettingsError::new(
                format!("rest_hooks.events[{index}]"),
                format!(
                    "{event:?} is not a Tave REST-hook event ({})",
                    TAVE_REST_HOOK_EVENTS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
