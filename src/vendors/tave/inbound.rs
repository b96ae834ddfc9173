//! Tave's REST hooks (`POST /inbound/tave/{integration}/{event}/{secret}`, the address
//! `POST /v1/integrations/{id}/subscriptions` registers). Tave signs nothing, so the hook secret in
//! the address is the proof, compared in constant time. The event becomes a notification of the
//! integration's organization.

use serde_json::{Map, Value};

use super::{event_notification, Tave, TaveSettings};
use crate::secret::same_secret;
use crate::vendors::inbound::{InboundAnswer, InboundError, InboundHandler, InboundRequest};

impl InboundHandler for Tave {
    /// 410, so Tave drops a subscription whose integration is gone instead of calling forever.
    fn unknown_integration(&self, integration_id: &str) -> InboundError {
        InboundError::Gone(format!(
            "integration {integration_id:?} takes no Tave events any more"
        ))
    }

    fn handle(&self, request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
        let (event, secret) = request.path.split_once('/').unwrap_or((request.path, ""));
        // 410 tells a REST-hook sender to drop the subscription: this address takes no events.
        let gone = || InboundError::Gone(format!("no Tave {event} subscription at this address"));
        let hooks = request
            .settings
            .downcast_ref::<TaveSettings>()
            .and_then(|settings| settings.rest_hooks.as_ref())
            .ok_or_else(gone)?;
        if !hooks.events.iter().any(|subscribed| subscribed == event) {
            return Err(gone());
        }
        let expected = hooks.secret.read().map_err(InboundError::Misconfigured)?;
        if !same_secret(secret, expected.expose()) {
            return Err(InboundError::SignatureRefused(
                "the hook secret in the address does not match".into(),
            ));
        }
        let payload: Map<String, Value> = serde_json::from_slice(request.body).map_err(|err| {
            InboundError::Malformed(format!("expected a JSON object from Tave: {err}"))
        })?;
        let notification = event_notification(
            request.integration_id,
            request.organization,
            event,
            &payload,
        )
        .map_err(|err| InboundError::Malformed(format!("tave event: {err}")))?;
        Ok(InboundAnswer::Notification(Box::new(notification)))
    }
}
