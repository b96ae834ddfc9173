//! `/v1/routes`: the organization's routing rules (which notifications go to which
//! integrations), the configuration file's read-only and WedSync's own, created, changed and
//! removed through [`crate::catalog`] and applied to routing at once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use super::auth::{Caller, Organization};
use super::error::ErrorBody;
use super::{
    changed_version, check_organization_id, require_json, versioned_answer, ApiError, AppState,
    Provenance,
};
use crate::config::{RawRoute, RouteConfig};
use crate::wedsync::{parse_json, FieldError, Priority};

/// A route as WedSync sends it to create one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({
    "name": "big weddings' timeline changes",
    "types": ["timeline_change"],
    "minPriority": "normal",
    "when": "wedding.guestCount > 100",
    "targets": ["studio-webhook"]
}))]
pub(super) struct RouteRequest {
    /// Chosen by WedSync (1-128 letters, digits, `-`, `_` or `.`; not `config-...`), or made by
    /// Herald (`rt_...`) when left out.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,128}$")]
    route_id: Option<String>,
    organization_id: Option<String>,
    name: String,
    /// Notification types it takes; all when empty or left out.
    #[serde(default)]
    types: Vec<String>,
    min_priority: Option<Priority>,
    /// A CEL condition over `notification`, `wedding` and `metadata`.
    when: Option<String>,
    /// The organization's integrations it delivers to.
    #[schema(min_items = 1)]
    targets: Vec<String>,
}

/// A change (`PATCH`): a JSON merge patch of `name`, `types`, `minPriority`, `when` and
/// `targets`, and the `version` it changes unless `If-Match` names it.
pub(super) struct RouteChange;

impl utoipa::PartialSchema for RouteChange {
    fn schema() -> RefOr<Schema> {
        super::openapi::change_schema(RouteRequest::schema(), "the route's version", &[])
    }
}

impl ToSchema for RouteChange {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        RouteRequest::schemas(schemas);
    }
}

/// A route as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Route {
    route_id: String,
    organization_id: String,
    name: String,
    types: Vec<String>,
    min_priority: Option<Priority>,
    when: Option<String>,
    targets: Vec<String>,
    #[serde(flatten)]
    provenance: Provenance,
}

impl From<&RouteConfig> for Route {
    fn from(route: &RouteConfig) -> Self {
        Route {
            route_id: route.id.clone(),
            organization_id: route.organization.clone(),
            name: route.name.clone(),
            types: route.types.clone(),
            min_priority: route.min_priority,
            when: route.when.as_ref().map(|when| when.source().to_owned()),
            targets: route.targets.clone(),
            provenance: route.source.into(),
        }
    }
}

/// The organization's routes.
#[derive(Serialize, ToSchema)]
pub(super) struct RouteList {
    routes: Vec<Route>,
}

/// A route as an answer, with its version as the `ETag`.
fn route_answer(route: &RouteConfig, status: StatusCode) -> Response {
    versioned_answer(status, Route::from(route), route.source)
}

/// The organization's routes: the configuration file's (`config-1`...) and its own.
#[utoipa::path(
    get,
    path = "/routes",
    tag = "routes",
    responses((status = 200, body = RouteList)),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn list_routes(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
) -> Json<RouteList> {
    let routes = state
        .table
        .routes(&organization)
        .iter()
        .map(Route::from)
        .collect();
    Json(RouteList { routes })
}

/// One of the organization's routes.
#[utoipa::path(
    get,
    path = "/routes/{routeId}",
    tag = "routes",
    params(("routeId" = String, Path)),
    responses((status = 200, body = Route, headers(("ETag" = String, description = "The version, for one made through the API")))),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn get_route(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(route_id): Path<String>,
) -> Result<Response, ApiError> {
    let route = state.catalog.managed_route(&organization, &route_id)?;
    Ok(route_answer(&route, StatusCode::OK))
}

/// Creates a route of the key's organization: its targets must be the organization's
/// integrations, its `when` must compile (a 422 names `when` and the problem). Notifications
/// take it from the next one on.
#[utoipa::path(
    post,
    path = "/routes",
    tag = "routes",
    request_body = RouteRequest,
    responses(
        (status = 201, body = Route, headers(("ETag" = String, description = "The version")), links(
            ("GetRoute" = (operation_id = "get_route", parameters(("routeId" = "$response.body#/routeId")))),
            ("ChangeRoute" = (operation_id = "change_route", parameters(("routeId" = "$response.body#/routeId")))),
            ("RemoveRoute" = (operation_id = "remove_route", parameters(("routeId" = "$response.body#/routeId")))),
        )),
        (status = 409, description = "The `routeId` is taken.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn create_route(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let request: RouteRequest = parse_json(&body)?;
    check_organization_id(request.organization_id.as_deref(), &caller.organization)?;
    let raw = RawRoute {
        organization: caller.organization.clone(),
        name: request.name,
        types: request.types,
        min_priority: request.min_priority,
        when: request.when,
        targets: request.targets,
    };
    let route = state
        .catalog
        .create_route(raw, request.route_id, &caller.actor())
        .await?;
    Ok(route_answer(&route, StatusCode::CREATED))
}

/// Changes a route created through the API: a merge patch of `name`, `types`, `minPriority`,
/// `when` and `targets`, naming the version it changes (`If-Match` or `version`).
#[utoipa::path(
    patch,
    path = "/routes/{routeId}",
    tag = "routes",
    params(
        ("routeId" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag read, instead of `version`"),
    ),
    request_body = RouteChange,
    responses(
        (status = 200, body = Route, headers(("ETag" = String, description = "The new version"))),
        (status = 409, description = "The configuration file's routes are read-only.", body = ErrorBody),
        (status = 412, description = "The version named is no longer the current one.", body = ErrorBody),
        (status = 428, description = "The change names no version.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn change_route(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(route_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let Value::Object(fields) = parse_json::<Value>(&body)? else {
        return Err(FieldError::new("", "must be a JSON object").into());
    };
    let mut patch = serde_json::Map::new();
    let mut body_version = None;
    for (key, value) in fields {
        match key.as_str() {
            "version" => {
                body_version = Some(value.as_i64().ok_or_else(|| {
                    FieldError::new("version", "must be the route's version, a number")
                })?)
            }
            "name" | "types" | "when" | "targets" => drop(patch.insert(key, value)),
            "minPriority" => drop(patch.insert("min_priority".into(), value)),
            "routeId" | "organizationId" => {
                return Err(FieldError::new(key, "does not change; create another route").into())
            }
            _ => return Err(FieldError::new(key, "is not a field of a route").into()),
        }
    }
    let version = changed_version(&headers, body_version)?;
    let route = state
        .catalog
        .update_route(
            &caller.organization,
            &route_id,
            Value::Object(patch),
            version,
            &caller.actor(),
        )
        .await?;
    Ok(route_answer(&route, StatusCode::OK))
}

/// Removes a route created through the API; notifications stop taking it at once.
#[utoipa::path(
    delete,
    path = "/routes/{routeId}",
    tag = "routes",
    params(("routeId" = String, Path)),
    responses(
        (status = 204, description = "Removed."),
        (status = 409, description = "The configuration file's routes are read-only.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn remove_route(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(route_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .catalog
        .remove_route(&caller.organization, &route_id, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
