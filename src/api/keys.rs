//! `/v1/keys`: an admin creates, lists and revokes the organization's API keys. A new key is in
//! the creation answer and nowhere else; listings show ids, labels, roles and creation times.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{create_api_key, Caller};
use super::error::ErrorBody;
use super::{require_json, ApiError, AppState};
use crate::store::{ApiKeyInfo, Role};
use crate::wedsync::{parse_json, FieldError};

/// The longest label a key may have.
const MAX_LABEL: usize = 100;

/// A key to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NewKey {
    /// Who or what holds it, 1-100 characters.
    #[schema(min_length = 1, max_length = 100)]
    label: String,
    role: Role,
}

/// A new key: the key itself is in this answer and nowhere else.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreatedKey {
    key_id: String,
    /// The bearer token; Herald keeps only its hash.
    key: String,
    label: String,
    role: Role,
    note: &'static str,
}

/// The organization's keys, without the keys themselves.
#[derive(Serialize, ToSchema)]
pub(super) struct KeyList {
    keys: Vec<ApiKeyInfo>,
}

/// Creates an API key of the organization with a role; the key is shown once.
#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    request_body = NewKey,
    responses((status = 201, body = CreatedKey, links(
            ("RevokeKey" = (operation_id = "revoke_key", parameters(("keyId" = "$response.body#/keyId")))),
        ))),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn create_key(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let new: NewKey = parse_json(&body)?;
    let label = new.label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL || label.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "label",
            format!("must be 1-{MAX_LABEL} characters without control characters"),
        )
        .into());
    }
    let (key, key_id) = create_api_key(
        &*state.store,
        &caller.organization,
        label,
        new.role,
        &caller.actor(),
    )
    .await?;
    tracing::info!(organization = %caller.organization, key = %key_id, by = %caller.key_id, role = %new.role, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key_id,
            key,
            label: label.to_owned(),
            role: new.role,
            note: "the key is shown once; Herald keeps only its hash",
        }),
    )
        .into_response())
}

/// The organization's API keys: ids, labels, roles and creation times.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    responses((status = 200, body = KeyList)),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn list_keys(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = state.store.api_keys(&caller.organization).await?;
    Ok(Json(KeyList { keys }))
}

/// Revokes a key of the organization. The organization's last admin key is kept (409): without
/// it nobody could manage the organization through the API.
#[utoipa::path(
    delete,
    path = "/keys/{keyId}",
    tag = "keys",
    params(("keyId" = String, Path)),
    responses(
        (status = 204, description = "Revoked."),
        (status = 409, description = "The organization's last admin key.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let keys = state.store.api_keys(&caller.organization).await?;
    let key = keys
        .iter()
        .find(|key| key.id == key_id)
        .ok_or_else(|| ApiError::NotFound(format!("API key {key_id:?}")))?;
    let admins = keys.iter().filter(|key| key.role == Role::Admin).count();
    if key.role == Role::Admin && admins == 1 {
        return Err(ApiError::Conflict(
            "this is the organization's last admin key; create another admin key first".into(),
        ));
    }
    if !state
        .store
        .revoke_api_key(&caller.organization, &key_id, &caller.actor())
        .await?
    {
        return Err(ApiError::NotFound(format!("API key {key_id:?}")));
    }
    // This node stops honouring the key now; other nodes within the cache's lifetime.
    state.key_cache.retain(|hash, _| !hash.starts_with(&key_id));
    tracing::info!(organization = %caller.organization, key = %key_id, by = %caller.key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
