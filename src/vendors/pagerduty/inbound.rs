//! PagerDuty's v3 webhooks (`POST /inbound/pagerduty/{integration}/webhooks`, the address of
//! the subscription): `X-PagerDuty-Signature` holds one or more `v1=<hex HMAC-SHA256 of the
//! body under the subscription's secret>` (several while a secret is rotated); one must match.
//! PagerDuty signs no timestamp, so there is no replay window: a replayed acknowledgement is
//! recorded once.
//!
//! `incident.acknowledged` and `incident.resolved` name the incident by PagerDuty's id only, so
//! the incident is read from the REST API (`GET /incidents/{id}`) for its `incident_key`: one
//! of Herald's (`herald/<notificationId>`) acknowledges that notification, by the person the
//! event names (`agent.summary`), with the action `acknowledge` or `resolve`. Other events, and
//! incidents Herald did not open, are answered 200 and left.

use serde_json::Value;

use super::connector::notification_of;
use super::{PagerDuty, PagerDutySettings};
use crate::connectors::http::transport_error;
use crate::vendors::inbound::{
    verify_hex_hmac_sha256, InboundAction, InboundAnswer, InboundError, InboundFuture,
    InboundHandler, InboundRequest,
};

impl InboundHandler for PagerDuty {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(webhook(request))
    }
}

/// Checks `header` (`v1=<hex>,v1=<hex>`): one signature must match.
pub(super) fn verify_signature(
    secret: &str,
    body: &[u8],
    header: &str,
) -> Result<(), InboundError> {
    let matched = header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .any(|signature| {
            verify_hex_hmac_sha256(secret, body, signature, "X-PagerDuty-Signature").is_ok()
        });
    if matched {
        Ok(())
    } else {
        Err(InboundError::SignatureRefused(
            "X-PagerDuty-Signature has no v1 signature of this body under the subscription's secret".into(),
        ))
    }
}

async fn webhook(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "PagerDuty webhook of integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "webhooks" || request.method != "POST" {
        return Err(not_found());
    }
    let settings = request
        .settings
        .downcast_ref::<PagerDutySettings>()
        .ok_or_else(not_found)?;
    let webhook = settings.webhook.as_ref().ok_or_else(not_found)?;
    let secret = webhook.secret.read().map_err(InboundError::Misconfigured)?;
    let header = request
        .headers
        .get("x-pagerduty-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    verify_signature(secret.expose(), request.body, header)?;
    let payload: Value = serde_json::from_slice(request.body).map_err(|err| {
        InboundError::Malformed(format!("expected a PagerDuty v3 webhook payload: {err}"))
    })?;
    let event = &payload["event"];
    let action = match event["event_type"].as_str() {
        Some("incident.acknowledged") => "acknowledge",
        Some("incident.resolved") => "resolve",
        Some(_) => return Ok(InboundAnswer::Ignored),
        None => {
            return Err(InboundError::Malformed(
                "the payload has no event.event_type".into(),
            ))
        }
    };
    let incident_id = event["data"]["id"]
        .as_str()
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| InboundError::Malformed("event.data.id is not an incident id".into()))?;
    let token = webhook
        .api_token
        .read()
        .map_err(InboundError::Misconfigured)?;
    let url = request
        .client
        .check_url(&format!(
            "{}/incidents/{incident_id}",
            settings.api_url.trim_end_matches('/')
        ))
        .map_err(|err| InboundError::Misconfigured(err.to_string()))?;
    let response = request
        .client
        .client()
        .get(url)
        .timeout(request.timeout)
        .header("authorization", format!("Token token={}", token.expose()))
        .header("accept", "application/vnd.pagerduty+json;version=2")
        .send()
        .await
        .map_err(|err| InboundError::VendorUnavailable(transport_error(err).to_string()))?;
    match response.status().as_u16() {
        200 => {}
        // Not an incident this key can see: not one of Herald's.
        404 => return Ok(InboundAnswer::Ignored),
        401 | 403 => {
            return Err(InboundError::Misconfigured(format!(
                "PagerDuty refused webhook.api_token ({})",
                response.status()
            )))
        }
        _ => {
            return Err(InboundError::VendorUnavailable(format!(
                "GET /incidents/{incident_id} answered {}",
                response.status()
            )))
        }
    }
    let incident: Value = response.json().await.map_err(|err| {
        InboundError::VendorUnavailable(format!("the incident could not be read: {err}"))
    })?;
    let Some(notification_id) = incident["incident"]["incident_key"]
        .as_str()
        .and_then(notification_of)
    else {
        return Ok(InboundAnswer::Ignored);
    };
    Ok(InboundAnswer::Acknowledged(vec![InboundAction {
        notification_id: notification_id.to_owned(),
        action_id: action.to_owned(),
        actor: event["agent"]["summary"]
            .as_str()
            .unwrap_or("someone in PagerDuty")
            .to_owned(),
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendors::inbound::hex_hmac_sha256;

    #[test]
    fn any_v1_signature_of_the_body_verifies() {
        let body = br#"{"event":{}}"#;
        let current = hex_hmac_sha256("new-secret", body);
        let old = hex_hmac_sha256("old-secret", body);
        assert!(verify_signature("new-secret", body, &format!("v1={old},v1={current}")).is_ok());
        assert!(verify_signature("old-secret", body, &format!("v1={old}, v1={current}")).is_ok());
        for header in [
            String::new(),
            format!("v1={old}"),
            format!("v0={current}"),
            current.clone(),
        ] {
            assert!(
                verify_signature("new-secret", body, &header).is_err(),
                "{header}"
            );
        }
    }
}
