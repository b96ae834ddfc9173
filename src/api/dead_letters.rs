//! `/v1/dead-letters`: the organization's dead letters, and replaying one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Caller, Organization};
use super::{ApiError, ApiQuery, AppState};

use crate::wedsync::{FieldError, WeddingNotification};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

pub(super) async fn list_dead_letters(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(FieldError::new("limit", "must be between 1 and 1000").into());
    }
    let dead = state.store.dead_letters(&organization, limit).await?;
    Ok(Json(json!({"deadLetters": dead})))
}

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
        Json(json!({"delivery": replayed.row})),
    )
        .into_response())
}
