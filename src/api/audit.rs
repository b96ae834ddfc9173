//! `GET /v1/audit`: an admin reads the organization's audit log, newest first, paged by `seq`
//! (`?before=`) and filtered by resource.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Organization;
use super::{ApiError, ApiQuery, AppState};
use crate::store::AuditQuery;
use crate::wedsync::FieldError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ListQuery {
    resource_type: Option<String>,
    resource_id: Option<String>,
    /// Records older than this `seq` (the previous page's `nextBefore`).
    before: Option<i64>,
    limit: Option<usize>,
}

pub(super) async fn list_audit_records(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(FieldError::new("limit", "must be between 1 and 1000").into());
    }
    let records = state
        .store
        .audit_records(
            &organization,
            AuditQuery {
                resource_type: query.resource_type,
                resource_id: query.resource_id,
                before_seq: query.before,
                limit,
            },
        )
        .await?;
    let next_before = (records.len() == limit)
        .then(|| records.last().map(|record| record.seq))
        .flatten();
    Ok(Json(json!({"records": records, "nextBefore": next_before})))
}
