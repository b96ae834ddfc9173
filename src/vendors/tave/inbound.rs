//! Tave's REST hooks (`POST /inbound/tave/{integration}/{event}/{secret}`, the address
//! `POST /v1/integrations/{id}/subscriptions` registers). Tave signs nothing, so the hook secret in
//! the address is the proof, compared in constant time. Tave sends only the `targetId` of the
//! event's object; the object is read from Tave's API where it can be
//! ([`TaveConnector::hook_notification`]) and the event becomes a notification of the
//! integration's organization.

use serde_json::{Map, Value};

use super::connector::tave_id;
use super::{Tave, TaveConnector, TaveSettings};
use crate::connectors::ConnectorError;
use crate::secret::same_secret;
use crate::vendors::inbound::{
    InboundAnswer, InboundError, InboundFuture, InboundHandler, InboundRequest,
};

impl InboundHandler for Tave {
    /// 410, so Tave drops a subscription whose integration is gone instead of calling forever.
    fn unknown_integration(&self, integration_id: &str) -> InboundError {
        InboundError::Gone(format!(
            "integration {integration_id:?} takes no Tave events any more"
        ))
    }

    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(async move {
            let (event, settings) = verify(&request)?;
            let payload: Map<String, Value> =
                serde_json::from_slice(request.body).map_err(|err| {
                    InboundError::Malformed(format!("expected a JSON object from Tave: {err}"))
                })?;
            let target_id = payload
                .get("targetId")
                .and_then(Value::as_str)
                .and_then(tave_id)
                .ok_or_else(|| {
                    InboundError::Malformed(
                        "targetId: a Tave REST hook carries the id (a ULID) of its object".into(),
                    )
                })?;
            let connector = TaveConnector::new(
                settings,
                request.integration_id,
                request.client.clone(),
                request.timeout,
            )
            .map_err(|err| InboundError::Misconfigured(err.to_string()))?;
            let notification = connector
                .hook_notification(
                    request.integration_id,
                    request.organization,
                    event,
                    &target_id,
                )
                .await
                .map_err(|err| match err {
                    // Tave announced an object it does not (yet) show: 503, so Tave sends the
                    // hook again rather than the event being lost.
                    ConnectorError::Rejected { code, message } if code == "not-found" => {
                        InboundError::VendorUnavailable(message)
                    }
                    ConnectorError::Rejected { message, .. } => InboundError::Malformed(message),
                    ConnectorError::Misconfigured(reason) => InboundError::Misconfigured(reason),
                    other => InboundError::VendorUnavailable(other.to_string()),
                })?;
            Ok(InboundAnswer::notifications(vec![notification]))
        })
    }
}

/// The event a call names, once its address proves it: a subscribed event and the hook secret.
fn verify<'a>(request: &InboundRequest<'a>) -> Result<(&'a str, &'a TaveSettings), InboundError> {
    let (event, secret) = request.path.split_once('/').unwrap_or((request.path, ""));
    // 410 tells a REST-hook sender to drop the subscription: this address takes no events.
    let gone = || InboundError::Gone(format!("no Tave {event} subscription at this address"));
    let settings = request
        .settings
        .downcast_ref::<TaveSettings>()
        .ok_or_else(gone)?;
    let hooks = settings.rest_hooks.as_ref().ok_or_else(gone)?;
    if !hooks.events.iter().any(|subscribed| subscribed == event) {
        return Err(gone());
    }
    let expected = hooks.secret.read().map_err(InboundError::Misconfigured)?;
    if !same_secret(secret, expected.expose()) {
        return Err(InboundError::SignatureRefused(
            "the hook secret in the address does not match".into(),
        ));
    }
    Ok((event, settings))
}
