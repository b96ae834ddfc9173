//! `/v1/notifications`: single and batch intake, a notification's record, and how people engaged
//! with what its deliveries created.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::Organization;
use super::{require_json, ApiError, AppState};

use crate::connectors::ConnectorError;
use crate::router::{Accepted, Submission};
use crate::store::{Acknowledgement, DeliveryRow, DeliveryState};
use crate::wedsync::{parse_json, FieldError, NotificationBatch, WeddingNotification, MAX_BATCH};

/// What intake did with one notification.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationAccepted {
    notification_id: String,
    status: IntakeStatus,
    /// One per target integration the organization's routes chose (none when no route matched).
    deliveries: Vec<DeliveryRow>,
    /// Present when the notification is kept but goes nowhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// `accepted`: journaled now. `duplicate`: the organization already had this `notificationId`;
/// nothing new was written and the deliveries are the first one's.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum IntakeStatus {
    Accepted,
    Duplicate,
}

impl From<&Accepted> for NotificationAccepted {
    fn from(accepted: &Accepted) -> Self {
        let warnings = if accepted.deliveries.is_empty() {
            vec![
                "no route of the organization matched this notification: it is kept but delivered nowhere"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        };
        NotificationAccepted {
            notification_id: accepted.notification_id.clone(),
            status: if accepted.duplicate {
                IntakeStatus::Duplicate
            } else {
                IntakeStatus::Accepted
            },
            deliveries: accepted.deliveries.clone(),
            warnings,
        }
    }
}

/// What intake did with a batch, accepted whole.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchAccepted {
    /// Notifications journaled now.
    accepted: usize,
    /// Notifications the organization already had.
    duplicates: usize,
    notifications: Vec<NotificationAccepted>,
}

/// A notification as Herald keeps it, with where each of its deliveries stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationRecord {
    notification_id: String,
    /// When Herald accepted it (Unix milliseconds).
    accepted_at: i64,
    /// The notification as it was accepted.
    #[schema(value_type = WeddingNotification)]
    notification: Value,
    targets: Vec<DeliveryRow>,
    acknowledgements: Vec<Acknowledgement>,
}

/// How people engaged with what a notification's deliveries created, per delivered target.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationEngagement {
    notification_id: String,
    systems: Vec<SystemEngagement>,
}

/// One delivered target's engagement as its vendor reports it, or why it could not be read.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SystemEngagement {
    integration_id: String,
    delivery_id: i64,
    /// The vendor's account: reactions, replies, clicks (its shape depends on the vendor).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    engagement: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The error's kind (`rate_limited`, `unavailable`, `rejected`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// For `rate_limited`: when the vendor allows the next read.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

/// The seed's `sendNotification`: accepts one notification for the organization's routes
/// (202), or answers the first intake of a `notificationId` seen before (200).
#[utoipa::path(
    post,
    path = "/notifications",
    tag = "notifications",
    request_body = WeddingNotification,
    responses(
        (status = 202, description = "Journaled; deliveries are on their way.", body = NotificationAccepted, links(
            ("GetNotification" = (operation_id = "get_notification", parameters(("notificationId" = "$response.body#/notificationId")))),
            ("NotificationEngagement" = (operation_id = "notification_engagement", parameters(("notificationId" = "$response.body#/notificationId")))),
        )),
        (status = 200, description = "A duplicate `notificationId`: nothing new was written.", body = NotificationAccepted),
    ),
    security(("apiKey" = ["sender"])),
)]
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
    Ok((status, Json(NotificationAccepted::from(&accepted))).into_response())
}

/// Accepts up to 10,000 notifications at once, whole or not at all (the first invalid one is
/// named, `notifications[3].priority`).
#[utoipa::path(
    post,
    path = "/notifications/batch",
    tag = "notifications",
    request_body = NotificationBatch,
    responses((status = 202, description = "Every notification is journaled (or was already).", body = BatchAccepted)),
    security(("apiKey" = ["sender"])),
)]
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
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAccepted {
            accepted: accepted.len() - duplicates,
            duplicates,
            notifications: accepted.iter().map(NotificationAccepted::from).collect(),
        }),
    )
        .into_response())
}

/// A notification of the organization and where each of its deliveries stands.
#[utoipa::path(
    get,
    path = "/notifications/{notificationId}",
    tag = "notifications",
    params(("notificationId" = String, Path, description = "WedSync's id of the notification")),
    responses((status = 200, body = NotificationRecord)),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn get_notification(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(notification_id): Path<String>,
) -> Result<Json<NotificationRecord>, ApiError> {
    let stored = organization_notification(&state, &organization, &notification_id).await?;
    let notification: Value =
        serde_json::from_str(&stored.body).map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(Json(NotificationRecord {
        notification_id,
        accepted_at: stored.accepted_at,
        notification,
        targets: stored.deliveries,
        acknowledgements: stored.acknowledgements,
    }))
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
#[utoipa::path(
    get,
    path = "/notifications/{notificationId}/engagement",
    tag = "notifications",
    params(("notificationId" = String, Path, description = "WedSync's id of the notification")),
    responses((status = 200, body = NotificationEngagement)),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn notification_engagement(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(notification_id): Path<String>,
) -> Result<Json<NotificationEngagement>, ApiError> {
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
        let mut entry = SystemEngagement {
            integration_id: delivery.integration_id.clone(),
            delivery_id: delivery.delivery_id,
            engagement: None,
            error: None,
            kind: None,
            retry_after_seconds: None,
        };
        match read {
            Ok(Ok(engagement)) => entry.engagement = Some(engagement),
            Ok(Err(error)) => {
                if let ConnectorError::RateLimited {
                    retry_after: Some(wait),
                } = &error
                {
                    entry.retry_after_seconds = Some(wait.as_secs_f64().ceil() as u64);
                }
                entry.kind = Some(error.kind());
                entry.error = Some(error.to_string());
            }
            Err(_) => entry.error = Some("integration did not answer".into()),
        }
        systems.push(entry);
    }
    Ok(Json(NotificationEngagement {
        notification_id,
        systems,
    }))
}
