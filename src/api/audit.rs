//! `GET /v1/audit`: an admin reads the organization's audit log, newest first, paged by `seq`
//! (`?before=`) and filtered by resource.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Organization;
use super::{ApiError, ApiQuery, AppState};
use crate::store::{AuditQuery, AuditRecord};
use crate::wedsync::FieldError;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only records about this kind of resource (`integration`, `route`, `key`, `delivery`).
    resource_type: Option<String>,
    /// Only records about this resource.
    resource_id: Option<String>,
    /// Records older than this `seq` (the previous page's `nextBefore`).
    before: Option<i64>,
    /// At most this many, 1 to 1,000 (100 by default).
    limit: Option<usize>,
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuditPage {
    records: Vec<AuditRecord>,
    /// Where the next page starts (`?before=`); null on the last page.
    next_before: Option<i64>,
}

/// The organization's audit log: every change to an integration, route, credential or key, and
/// every replay, hash-chained.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(ListQuery),
    responses((status = 200, body = AuditPage)),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn list_audit_records(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<AuditPage>, ApiError> {
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
    Ok(Json(AuditPage {
        records,
        next_before,
    }))
}
