//! `/v1/dead-letters`: the organization's dead letters, and replaying one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Organization};
use super::{ApiError, ApiQuery, AppState};

use crate::store::DeliveryRow;
use crate::wedsync::{FieldError, WeddingNotification};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// At most this many, 1 to 1,000 (100 by default).
    limit: Option<usize>,
}

/// The organization's dead letters, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeadLetters {
    dead_letters: Vec<DeliveryRow>,
}

/// A replayed dead letter: its delivery, pending again.
#[derive(Serialize, ToSchema)]
pub(super) struct Replayed {
    delivery: DeliveryRow,
}

/// The organization's dead letters: deliveries given up after their retries and failover.
#[utoipa::path(
    get,
    path = "/dead-letters",
    tag = "dead-letters",
    params(ListQuery),
    responses((status = 200, body = DeadLetters)),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn list_dead_letters(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<DeadLetters>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(FieldError::new("limit", "must be between 1 and 1000").into());
    }
    let dead = state.store.dead_letters(&organization, limit).await?;
    Ok(Json(DeadLetters { dead_letters: dead }))
}

/// Sends a dead letter again, with the notification it carried and fresh attempts.
#[utoipa::path(
    post,
    path = "/dead-letters/{deliveryId}/replay",
    tag = "dead-letters",
    params(("deliveryId" = String, Path, description = "The dead letter's `deliveryId`")),
    responses((status = 202, description = "Pending again.", body = Replayed)),
    security(("apiKey" = ["sender"])),
)]
pub(super) async fn replay_dead_letter(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(delivery_id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("dead letter {delivery_id:?}"));
    let id: i64 = delivery_id.parse().map_err(|_| not_found())?;
    let replayed = state
        .store
        .replay(&organization, id, &caller.actor())
        .await?
        .ok_or_else(not_found)?;
    let notification: WeddingNotification =
        serde_json::from_str(&replayed.body).map_err(|err| ApiError::Internal(err.to_string()))?;
    let job = crate::integration::Job::from_row(&replayed.row, Arc::new(notification));
    state
        .registry
        .dispatch(&replayed.row.integration_id, vec![job]);
    Ok((
        StatusCode::ACCEPTED,
        Json(Replayed {
            delivery: replayed.row,
        }),
    )
        .into_response())
}
