//! Stripe's settings: the account's secret key, the webhook endpoint's signing secret and the
//! tolerance of its timestamps, and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// A Stripe account: its payment events come in, the wedding's facts go out to the couple's
/// customer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    /// A secret key (`sk_live_...`, `sk_test_...`) or a restricted key (`rk_...`) with write
    /// access to customers.
    pub secret_key: SecretRef,
    /// The webhook endpoint Stripe sends payment events to.
    pub webhook: Option<StripeWebhook>,
    /// Stripe's API (`https://api.stripe.com`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

/// The endpoint's signing secret (`whsec_...`, shown in Stripe's dashboard for the endpoint) and
/// how far from now a signed timestamp may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeWebhook {
    pub signing_secret: SecretRef,
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u64,
}

fn default_api_url() -> String {
    "https://api.stripe.com".to_owned()
}

/// Stripe's libraries' default tolerance.
fn default_tolerance() -> u64 {
    300
}

pub(super) fn check_stripe(settings: &StripeSettings) -> Result<(), SettingsError> {
    if let Some(webhook) = &settings.webhook {
        if !(1..=3600).contains(&webhook.tolerance_seconds) {
            return Err(SettingsError::new(
                "webhook.tolerance_seconds",
                "must be 1-3600 seconds (Stripe's libraries use 300)",
            ));
        }
    }
    if !is_http_url(&settings.api_url) {
        return Err(SettingsError::new(
            "api_url",
            format!("{:?} is not an http(s) address", settings.api_url),
        ));
    }
    Ok(())
}
