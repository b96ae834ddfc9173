//! Microsoft Teams' settings: the Workflows flow that posts to the channel (its trigger URL is
//! the credential), and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;

/// A Teams channel reached through a Workflows (Power Automate) flow made from the "Send
/// webhook alerts to a channel" template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsSettings {
    /// The flow's "HTTP URL" (`https://....environment.api.powerplatform.com/powerautomate/
    /// automations/direct/workflows/<id>/triggers/manual/paths/invoke?...&sig=...`): its `sig`
    /// is the credential, so the URL is kept where secrets are.
    pub workflow_url: SecretRef,
}
