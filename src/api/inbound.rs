//! Inbound calls from the target systems, authenticated by the vendor's own scheme rather than
//! an API key.
//!
//! - `POST /inbound/slack/{integration}/interactivity` is the Request URL to set in the Slack app.
//!   The request is verified with the integration's signing secret (`v0` HMAC-SHA256, five-minute
//!   window); a click on one of Herald's buttons records an acknowledgement on the notification,
//!   which `GET /v1/notifications/{id}` shows.
//! - `POST /inbound/tave/{integration}/{event}/{secret}` receives Tave's REST hooks (the address
//!   `POST /v1/integrations/{id}/subscriptions` registers). Tave signs nothing, so the hook secret
//!   in the address is the proof, compared in constant time. The event becomes a notification of
//!   the integration's organization, routed by its routes to every target but Tave itself.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{ApiError, AppState};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use super::accepted_json;
use super::auth::same_secret;
use crate::router::Submission;
use crate::store::{now_millis, Acknowledgement};
use crate::vendors::slack::{verify_slack_request, SlackSettings};
use crate::vendors::tave::{event_notification as tave_event_notification, TaveSettings};

/// The most actions read from one interactivity payload (a click sends one).
const MAX_ACTIONS_PER_PAYLOAD: usize = 5;

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
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let not_found =
        || ApiError::NotFound(format!("interactivity for integration {integration_id:?}"));
    let runtime = state
        .registry
        .runtime(&integration_id)
        .ok_or_else(not_found)?;
    let settings = runtime
        .config
        .settings
        .downcast_ref::<SlackSettings>()
        .ok_or_else(not_found)?;
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
        return Err(ApiError::SignatureRefused(reason.to_string()));
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
    // A click carries one action; a payload with more is read only as far as a real one goes,
    // and each (notification, action, person) is recorded once however often it is replayed
    // within the signature's window. Slack wants its answer within three seconds, so the
    // recording happens after it.
    let organization = runtime.config.organization.clone();
    let mut acknowledgements: Vec<Acknowledgement> = payload
        .actions
        .into_iter()
        .take(MAX_ACTIONS_PER_PAYLOAD)
        .filter_map(|action| {
            Some(Acknowledgement {
                organization: organization.clone(),
                notification_id: action.value?,
                integration_id: integration_id.clone(),
                action_id: action.action_id,
                actor: payload.user.id.clone(),
                at: now_millis(),
            })
        })
        .collect();
    acknowledgements.sort_by(|a, b| {
        (&a.notification_id, &a.action_id).cmp(&(&b.notification_id, &b.action_id))
    });
    acknowledgements
        .dedup_by(|a, b| a.notification_id == b.notification_id && a.action_id == b.action_id);
    let store = state.store.clone();
    tokio::spawn(async move {
        for acknowledgement in acknowledgements {
            let integration = acknowledgement.integration_id.clone();
            match store.acknowledge(acknowledgement).await {
                Ok(outcome) => {
                    metrics::counter!("herald_inbound_total", "integration" => integration, "outcome" => outcome.as_str()).increment(1);
                }
                Err(err) => {
                    tracing::error!(integration = %integration, error = %err, "acknowledgement not recorded");
                }
            }
        }
    });
    Ok(StatusCode::OK)
}

pub async fn tave_rest_hook(
    State(state): State<Arc<AppState>>,
    Path((integration_id, event, secret)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let outcome = |outcome: &'static str| {
        metrics::counter!("herald_inbound_total", "integration" => integration_id.clone(), "outcome" => outcome).increment(1);
    };
    // 410 tells a REST-hook sender to drop the subscription: this address no longer takes events.
    let gone = || ApiError::Gone(format!("no Tave {event} subscription at this address"));
    let runtime = state.registry.runtime(&integration_id).ok_or_else(gone)?;
    let Some(settings) = runtime.config.settings.downcast_ref::<TaveSettings>() else {
        return Err(gone());
    };
    let hooks = settings.rest_hooks.as_ref().ok_or_else(gone)?;
    if !hooks.events.contains(&event) {
        return Err(gone());
    }
    let expected = hooks.secret.read().map_err(|reason| {
        tracing::error!(integration = %integration_id, %reason, "tave hook secret unreadable");
        ApiError::Unavailable("REST hooks are misconfigured".into())
    })?;
    if !same_secret(&secret, expected.expose()) {
        tracing::warn!(integration = %integration_id, %event, "inbound tave call with a wrong secret refused");
        outcome("refused");
        return Err(ApiError::SignatureRefused(
            "the hook secret in the address does not match".into(),
        ));
    }
    let payload: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|err| ApiError::Malformed(format!("expected a JSON object from Tave: {err}")))?;
    let organization = runtime.config.organization.clone();
    let notification = tave_event_notification(&integration_id, &organization, &event, &payload)
        .map_err(|err| ApiError::Internal(format!("tave event as a notification: {err}")))?;
    notification.validate("", &organization)?;
    let targets: Vec<String> = state
        .table
        .targets(&organization, &notification)
        .into_iter()
        .filter(|target| target != &integration_id)
        .collect();
    let submission = Submission {
        explicit_targets: Some(targets),
        ..Submission::routed(notification)
    };
    let accepted = state
        .routers
        .accept(&organization, vec![submission])
        .await?;
    let accepted = accepted
        .first()
        .ok_or_else(|| ApiError::Internal("router answered nothing".into()))?;
    outcome(if accepted.duplicate {
        "duplicate"
    } else {
        "accepted"
    });
    Ok((StatusCode::OK, Json(accepted_json(accepted))).into_response())
}
