//! Acknowledgements, wherever they are made: a person acting in a target system (the vendors'
//! inbound calls, `inbound.rs`) or WedSync saying so (`POST
//! /v1/notifications/{notificationId}/acknowledge`). Each is recorded once per (notification,
//! channel, action, person), and the first record of it is told to the other channels that carry
//! the notification and keep a state of their own (a PagerDuty incident is acknowledged or
//! resolved), from their deliveries' receipts.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Organization;
use super::notifications::organization_notification;
use super::{require_json, ApiError, AppState};
use crate::connectors::AcknowledgementNotice;
use crate::integration::IntegrationMsg;
use crate::store::{now_millis, AcknowledgeOutcome, Acknowledgement, DeliveryState};
use crate::wedsync::{parse_json, FieldError};

/// The channel an acknowledgement WedSync makes through the API is recorded under.
pub const WEDSYNC_CHANNEL: &str = "wedsync";

/// WedSync acknowledging a notification on someone's behalf.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AcknowledgeRequest {
    /// Who acknowledged, in WedSync's terms (a user id or name).
    actor: String,
    /// `acknowledge` (the default) or `resolve`: a pager's incident is then resolved, not only
    /// acknowledged.
    #[serde(default)]
    action: Option<String>,
}

/// What the acknowledgement did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AcknowledgeAnswer {
    notification_id: String,
    /// `recorded`, or `already_recorded` when the same person had already acknowledged the
    /// same way (nothing new written, nobody told again).
    outcome: &'static str,
}

/// The seed's synchronizeNotificationStates from WedSync's side: someone acknowledged the
/// notification in WedSync. Recorded as the channel `wedsync`, and told to the other channels.
#[utoipa::path(
    post,
    path = "/notifications/{notificationId}/acknowledge",
    tag = "notifications",
    params(("notificationId" = String, Path, description = "WedSync's id of the notification")),
    request_body = AcknowledgeRequest,
    responses((status = 200, body = AcknowledgeAnswer)),
    security(("apiKey" = ["sender"])),
)]
pub(super) async fn acknowledge_notification(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(notification_id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<AcknowledgeAnswer>, ApiError> {
    require_json(&headers)?;
    let request: AcknowledgeRequest = parse_json(&body)?;
    let actor = request.actor.trim();
    if actor.is_empty() || actor.chars().count() > 128 || actor.chars().any(char::is_control) {
        return Err(FieldError::new(
            "actor",
            "must be 1-128 characters without control characters",
        )
        .into());
    }
    let action = request.action.as_deref().unwrap_or("acknowledge");
    if !matches!(action, "acknowledge" | "resolve") {
        return Err(FieldError::new("action", "must be acknowledge or resolve").into());
    }
    organization_notification(&state, &organization, &notification_id).await?;
    let outcome = record(
        &state,
        Acknowledgement {
            organization: organization.clone(),
            notification_id: notification_id.clone(),
            integration_id: WEDSYNC_CHANNEL.to_owned(),
            action_id: action.to_owned(),
            actor: actor.to_owned(),
            at: now_millis(),
        },
    )
    .await?;
    let outcome = match outcome {
        AcknowledgeOutcome::Recorded => "recorded",
        AcknowledgeOutcome::AlreadyRecorded => "already_recorded",
        AcknowledgeOutcome::UnknownNotification => {
            return Err(ApiError::NotFound(format!(
                "notification {notification_id:?}"
            )))
        }
    };
    Ok(Json(AcknowledgeAnswer {
        notification_id,
        outcome,
    }))
}

/// Records the acknowledgements the vendors' inbound calls carried, after their answer has
/// gone (chat vendors want theirs within seconds).
pub(super) fn record_in_background(state: Arc<AppState>, acknowledgements: Vec<Acknowledgement>) {
    tokio::spawn(async move {
        for acknowledgement in acknowledgements {
            let integration = acknowledgement.integration_id.clone();
            match record(&state, acknowledgement).await {
                Ok(outcome) => {
                    metrics::counter!("herald_inbound_total", "integration" => integration, "outcome" => outcome.as_str()).increment(1);
                }
                Err(err) => {
                    tracing::error!(integration = %integration, error = %err, "acknowledgement not recorded");
                }
            }
        }
    });
}

/// Records one acknowledgement, and when it is new, tells the other channels.
async fn record(
    state: &Arc<AppState>,
    acknowledgement: Acknowledgement,
) -> Result<AcknowledgeOutcome, crate::store::StoreError> {
    let notice = AcknowledgementNotice {
        notification_id: acknowledgement.notification_id.clone(),
        action_id: acknowledgement.action_id.clone(),
        actor: acknowledgement.actor.clone(),
        via: acknowledgement.integration_id.clone(),
    };
    let organization = acknowledgement.organization.clone();
    let outcome = state.store.acknowledge(acknowledgement).await?;
    if outcome == AcknowledgeOutcome::Recorded {
        let state = state.clone();
        tokio::spawn(async move { tell_other_channels(&state, &organization, notice).await });
    }
    Ok(outcome)
}

/// Tells every channel that delivered the notification, but the one it was acknowledged on.
async fn tell_other_channels(
    state: &Arc<AppState>,
    organization: &str,
    notice: AcknowledgementNotice,
) {
    let stored = match state
        .store
        .notification(organization, &notice.notification_id)
        .await
    {
        Ok(Some(stored)) => stored,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(notification = %notice.notification_id, error = %err, "the channels were not told of an acknowledgement");
            return;
        }
    };
    for delivery in stored
        .deliveries
        .iter()
        .filter(|d| d.state == DeliveryState::Delivered && d.integration_id != notice.via)
    {
        let Some(details) = delivery.details.clone() else {
            continue;
        };
        let Some(actor) = state.registry.awake_actor(&delivery.integration_id).await else {
            continue;
        };
        let told = ractor::call_t!(
            actor,
            IntegrationMsg::Acknowledged,
            30_000,
            details,
            notice.clone()
        );
        let outcome = match told {
            Ok(Ok(serde_json::Value::Null)) => continue,
            Ok(Ok(done)) => {
                tracing::info!(integration = %delivery.integration_id, notification = %notice.notification_id, %done, "told of an acknowledgement");
                "told"
            }
            Ok(Err(err)) => {
                tracing::warn!(integration = %delivery.integration_id, notification = %notice.notification_id, error = %err, "could not be told of an acknowledgement");
                "failed"
            }
            Err(_) => {
                tracing::warn!(integration = %delivery.integration_id, notification = %notice.notification_id, "did not answer when told of an acknowledgement");
                "failed"
            }
        };
        metrics::counter!("herald_acknowledgements_relayed_total", "integration" => delivery.integration_id.clone(), "outcome" => outcome).increment(1);
    }
}
