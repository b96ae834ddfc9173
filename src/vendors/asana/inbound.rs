//! Asana's webhook deliveries (`POST /inbound/asana/{integration}/events`, the target
//! `POST /v1/integrations/{id}/subscriptions` registers on the project).
//!
//! - The handshake: while Herald's `POST /webhooks` is in flight Asana calls the target with an
//!   `X-Hook-Secret`, which is echoed. Nothing is kept from it: the secret Herald verifies with
//!   is the one Asana's answer to that `POST` carries, kept sealed by the connector, so a
//!   handshake anyone else sends changes nothing.
//! - Events: `X-Hook-Signature` is the hex HMAC-SHA256 of the body under that secret (Asana
//!   signs no timestamp, so there is no replay window; a replayed completion is recorded once).
//!   Asana's events are compact, so each task whose `completed` changed is read
//!   (`GET /tasks/{gid}`); a completed action subtask Herald made (its reference
//!   `notification/<id>/<actionId>`) acknowledges that notification, by the person who ticked it.
//!   An empty `events` list is Asana's heartbeat.

use serde::Deserialize;

use super::{Asana, AsanaConnector, AsanaSettings, WEBHOOK_SECRET};
use crate::connectors::ConnectorError;
use crate::vendors::inbound::{
    verify_hex_hmac_sha256, InboundAction, InboundAnswer, InboundError, InboundFuture,
    InboundHandler, InboundRequest,
};

/// The most tasks read for one delivery: Asana batches events, and each read is a request
/// against the token's rate limit.
const MAX_TASKS_PER_DELIVERY: usize = 25;

#[derive(Deserialize)]
struct Delivery {
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    action: String,
    resource: Option<Resource>,
    change: Option<Change>,
}

#[derive(Deserialize)]
struct Resource {
    gid: String,
    #[serde(default)]
    resource_type: String,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
}

impl InboundHandler for Asana {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(events(request))
    }
}

async fn events(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "Asana webhook address of integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "events" {
        return Err(not_found());
    }
    let settings = request
        .settings
        .downcast_ref::<AsanaSettings>()
        .filter(|settings| settings.webhooks.is_some())
        .ok_or_else(not_found)?;
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    if let Some(secret) = header("x-hook-secret") {
        return Ok(InboundAnswer::Handshake(vec![(
            "x-hook-secret",
            secret.to_owned(),
        )]));
    }
    let vault = request.vault.ok_or_else(|| {
        InboundError::Misconfigured("Asana webhooks need security.credentials_key".into())
    })?;
    let secret = vault
        .get(request.integration_id, WEBHOOK_SECRET)
        .await
        .map_err(|err| InboundError::Misconfigured(err.to_string()))?
        .ok_or_else(|| {
            InboundError::SignatureRefused(
                "no webhook was made through Herald for this integration".into(),
            )
        })?;
    let signature = header("x-hook-signature")
        .ok_or_else(|| InboundError::SignatureRefused("X-Hook-Signature is missing".into()))?;
    verify_hex_hmac_sha256(secret.expose(), request.body, signature, "X-Hook-Signature")?;
    let delivery: Delivery = serde_json::from_slice(request.body).map_err(|err| {
        InboundError::Malformed(format!("expected Asana's {{\"events\": [...]}}: {err}"))
    })?;
    let mut completed: Vec<String> = Vec::new();
    for event in &delivery.events {
        let Some(resource) = &event.resource else {
            continue;
        };
        let completion = resource.resource_type == "task"
            && event.action == "changed"
            && event
                .change
                .as_ref()
                .is_some_and(|change| change.field == "completed");
        if completion && !completed.contains(&resource.gid) {
            completed.push(resource.gid.clone());
        }
    }
    if completed.is_empty() {
        return Ok(InboundAnswer::Ignored);
    }
    let connector = AsanaConnector::new(
        settings,
        request.integration_id,
        request.client.clone(),
        None,
        request.timeout,
    )
    .map_err(|err| InboundError::Misconfigured(err.to_string()))?;
    let mut actions = Vec::new();
    for gid in completed.iter().take(MAX_TASKS_PER_DELIVERY) {
        match connector.read_completion(gid).await {
            Ok(Some((notification_id, action_id, actor))) => actions.push(InboundAction {
                notification_id,
                action_id,
                actor,
            }),
            Ok(None) => {}
            // A task deleted since, or one the token cannot see: nothing to acknowledge.
            Err(ConnectorError::Rejected { code, .. }) if code == "404" || code == "403" => {}
            // Asana sends the delivery again when it is not answered 200.
            Err(other) => return Err(InboundError::VendorUnavailable(other.to_string())),
        }
    }
    Ok(if actions.is_empty() {
        InboundAnswer::Ignored
    } else {
        InboundAnswer::Acknowledged(actions)
    })
}
