//! `/v1/notifications`: single and batch intake, a notification's record, and how people engaged
//! with what its deliveries created.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::Organization;
use super::{require_json, ApiError, AppState};

use crate::connectors::ConnectorError;
use crate::router::{Accepted, Submission};
use crate::store::DeliveryState;
use crate::wedsync::{parse_json, FieldError, NotificationBatch, WeddingNotification, MAX_BATCH};

pub(super) async fn post_notification(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let notification: WeddingNotification = parse_json(&body)?;
    notification.validate("", &organization)?;
    let submission = Submission::routed(notification);
    let accepted = state
        .routers
        .accept(&organization, vec![submission])
        .await?;
    let accepted = accepted
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("router answered nothing".into()))?;
    let status = if accepted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(accepted_json(&accepted))).into_response())
}

pub(super) async fn post_batch(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let batch: NotificationBatch = parse_json(&body)?;
    if batch.notifications.is_empty() {
        return Err(FieldError::new("notifications", "must hold at least one notification").into());
    }
    if batch.notifications.len() > MAX_BATCH {
        return Err(FieldError::new(
            "notifications",
            format!(
                "holds {} notifications; at most {MAX_BATCH} per batch",
                batch.notifications.len()
            ),
        )
        .into());
    }
    // Validate everything first: a batch is accepted whole or not at all.
    for (index, notification) in batch.notifications.iter().enumerate() {
        notification.validate(&format!("notifications[{index}]"), &organization)?;
    }
    let submissions = batch
        .notifications
        .into_iter()
        .map(Submission::routed)
        .collect();
    let accepted = state.routers.accept(&organization, submissions).await?;
    let duplicates = accepted.iter().filter(|a| a.duplicate).count();
    let results: Vec<Value> = accepted.iter().map(accepted_json).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": results.len() - duplicates, "duplicates": duplicates, "notifications": results})),
    )
        .into_response())
}

pub(super) fn accepted_json(accepted: &Accepted) -> Value {
    let mut answer = json!({
        "notificationId": accepted.notification_id,
        "status": if accepted.duplicate { "duplicate" } else { "accepted" },
        "deliveries": accepted.deliveries,
    });
    if accepted.deliveries.is_empty() {
        answer["warnings"] = json!([
            "no route of the organization matched this notification: it is kept but delivered nowhere"
        ]);
    }
    answer
}

pub(super) async fn get_notification(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(notification_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = organization_notification(&state, &organization, &notification_id).await?;
    let notification: Value =
        serde_json::from_str(&stored.body).map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(Json(json!({
        "notificationId": notification_id,
        "acceptedAt": stored.accepted_at,
        "notification": notification,
        "targets": stored.deliveries,
        "acknowledgements": stored.acknowledgements,
    })))
}

/// The organization's notification with this id; another organization's is a 404.
pub(super) async fn organization_notification(
    state: &AppState,
    organization: &str,
    notification_id: &str,
) -> Result<crate::store::StoredNotification, ApiError> {
    state
        .store
        .notification(organization, notification_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("notification {notification_id:?}")))
}

/// The seed's trackCommunicationEngagement: for each delivered target whose vendor can tell, how
/// people reacted and replied, read from the vendor now.
pub(super) async fn notification_engagement(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(notification_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = organization_notification(&state, &organization, &notification_id).await?;
    let mut systems = Vec::new();
    for delivery in stored
        .deliveries
        .iter()
        .filter(|d| d.state == DeliveryState::Delivered)
    {
        let Some(details) = delivery.details.clone() else {
            continue;
        };
        let Some(actor) = state.registry.awake_actor(&delivery.integration_id).await else {
            continue;
        };
        let read = ractor::call_t!(
            actor,
            crate::integration::IntegrationMsg::Engagement,
            30_000,
            details
        );
        let entry = match read {
            Ok(Ok(engagement)) => {
                json!({"integrationId": delivery.integration_id, "deliveryId": delivery.delivery_id, "engagement": engagement})
            }
            Ok(Err(error)) => {
                let mut entry = json!({"integrationId": delivery.integration_id, "deliveryId": delivery.delivery_id, "error": error.to_string(), "kind": error.kind()});
                if let ConnectorError::RateLimited {
                    retry_after: Some(wait),
                } = error
                {
                    entry["retryAfterSeconds"] = json!(wait.as_secs_f64().ceil() as u64);
                }
                entry
            }
            Err(_) => {
                json!({"integrationId": delivery.integration_id, "deliveryId": delivery.delivery_id, "error": "integration did not answer"})
            }
        };
        systems.push(entry);
    }
    Ok(Json(
        json!({"notificationId": notification_id, "systems": systems}),
    ))
}
