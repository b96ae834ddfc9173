//! Inbound calls from the target systems, authenticated by the vendor's own signature scheme
//! rather than an API key: today, Slack interactivity (a click on a button Herald posted).
//!
//! `POST /inbound/slack/{integration}/interactivity` is the Request URL to set in the Slack app.
//! The request is verified with the integration's signing secret (`v0` HMAC-SHA256, five-minute
//! window); a click on one of Herald's buttons records an acknowledgement on the notification,
//! which `GET /v1/notifications/{id}` shows.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::config::ConnectorConfig;
use crate::connectors::verify_slack_request;
use crate::store::{now_millis, Acknowledgement};

/// The part of Slack's `block_actions` payload Herald reads.
#[derive(Deserialize)]
struct BlockActions {
    #[serde(rename = "type")]
    kind: String,
    user: SlackUser,
    #[serde(default)]
    actions: Vec<SlackAction>,
}

#[derive(Deserialize)]
struct SlackUser {
    id: String,
}

#[derive(Deserialize)]
struct SlackAction {
    action_id: String,
    /// Herald puts the notification id in every button's value.
    #[serde(default)]
    value: Option<String>,
}

pub async fn slack_interactivity(
    State(state): State<Arc<AppState>>,
    Path(integration_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|_| ApiError::TooLarge(state.max_body_bytes))?;
    let not_found =
        || ApiError::NotFound(format!("interactivity for integration {integration_id:?}"));
    let runtime = state
        .registry
        .runtime(&integration_id)
        .ok_or_else(not_found)?;
    let ConnectorConfig::Slack(settings) = &runtime.config.connector else {
        return Err(not_found());
    };
    let signing_secret = settings.signing_secret.as_ref().ok_or_else(not_found)?;
    let secret = signing_secret.read().map_err(|reason| {
        tracing::error!(integration = %integration_id, %reason, "slack signing secret unreadable");
        ApiError::Unavailable("interactivity is misconfigured".into())
    })?;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let now = (now_millis() / 1000).max(0) as u64;
    if let Err(reason) = verify_slack_request(
        secret.expose(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        now,
    ) {
        tracing::warn!(integration = %integration_id, %reason, "inbound slack request refused");
        metrics::counter!("herald_inbound_total", "integration" => integration_id.clone(), "outcome" => "refused").increment(1);
        return Err(ApiError::Unauthorized);
    }
    let payload = url::form_urlencoded::parse(&body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| ApiError::Malformed("expected a form body with a payload field".into()))?;
    let payload: BlockActions = serde_json::from_str(&payload)
        .map_err(|err| ApiError::Malformed(format!("payload: {err}")))?;
    if payload.kind != "block_actions" {
        // Other interaction types (shortcuts, view submissions) are not Herald's; Slack only
        // needs a 200 within three seconds.
        return Ok(StatusCode::OK);
    }
    for action in payload.actions {
        let Some(notification_id) = action.value else {
            continue;
        };
        let acknowledged = state
            .store
            .acknowledge(Acknowledgement {
                organization: runtime.config.organization.clone(),
                notification_id,
                integration_id: integration_id.clone(),
                action_id: action.action_id,
                actor: payload.user.id.clone(),
                at: now_millis(),
            })
            .await?;
        let outcome = if acknowledged {
            "acknowledged"
        } else {
            "unknown_notification"
        };
        metrics::counter!("herald_inbound_total", "integration" => integration_id.clone(), "outcome" => outcome).increment(1);
    }
    Ok(StatusCode::OK)
}
