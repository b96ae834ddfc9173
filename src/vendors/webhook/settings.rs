//! The webhook vendor's settings: where to post and the Standard Webhooks signing secret.

use serde::Deserialize;

use crate::secret::SecretRef;

/// A generic outbound webhook signed per the Standard Webhooks spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    /// The signing secret, `whsec_` + base64, as Standard Webhooks defines it.
    pub secret: SecretRef,
}
