//! The internal HTTP API WedSync calls (axum), in WedSync's own camelCase vocabulary.
//!
//! Every `/v1` route is authenticated by an organization's API key and sees only that
//! organization's data (anything else is a 404). The API knows router messages, the store's
//! read side and integration health; it knows nothing about vendors.

mod audit;
mod auth;
mod dead_letters;
mod error;
mod inbound;
mod install;
mod integrations;
mod keys;
mod notifications;
mod ops;
mod routes;
mod routings;
mod server;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;

pub use auth::{create_api_key, hash_key, required_role, Caller, Organization};
pub use error::ApiError;
pub use server::{serve, ServerLimits};

use crate::integration::Registry;
use crate::router::{RouterHandle, RoutingTable};
use crate::secret::SecretRef;
use crate::store::Store;
use crate::wedsync::FieldError;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub routers: RouterHandle,
    pub registry: Arc<Registry>,
    /// Integrations WedSync creates and removes through the API.
    pub catalog: Arc<crate::catalog::Catalog>,
    pub table: Arc<RoutingTable>,
    pub metrics: PrometheusHandle,
    /// Key hash to (who holds it, when it was looked up).
    pub key_cache: DashMap<String, (crate::store::KeyHolder, std::time::Instant)>,
    pub limits: ServerLimits,
    pub allow_private_destinations: bool,
    /// The outbound policy's client, for inbound handlers that read the vendor's API.
    pub client: crate::connectors::OutboundClient,
    /// The bearer token `/metrics` asks for, if any.
    pub metrics_token: Option<SecretRef>,
}

/// Builds the API's routes.
pub fn routes(state: Arc<AppState>) -> Router {
    let limits = Arc::new(state.limits);
    let v1 = Router::new()
        .route("/notifications", post(notifications::post_notification))
        .route("/notifications/batch", post(notifications::post_batch))
        .route(
            "/notifications/{notification_id}",
            get(notifications::get_notification),
        )
        .route(
            "/notifications/{notification_id}/engagement",
            get(notifications::notification_engagement),
        )
        .route("/routings", post(routings::post_routing))
        .route("/routings/{routing_id}", get(routings::get_routing))
        .route("/dead-letters", get(dead_letters::list_dead_letters))
        .route(
            "/dead-letters/{delivery_id}/replay",
            post(dead_letters::replay_dead_letter),
        )
        .route(
            "/integrations",
            get(integrations::list_integrations).post(integrations::create_integration),
        )
        .route(
            "/integrations/{integration_id}",
            get(integrations::get_integration)
                .patch(integrations::change_integration)
                .delete(integrations::remove_integration),
        )
        .route(
            "/integrations/{integration_id}/credentials",
            put(integrations::rotate_credentials),
        )
        .route(
            "/integrations/{integration_id}/oauth/authorize",
            post(install::start_install),
        )
        .route(
            "/integrations/{integration_id}/subscriptions",
            post(integrations::subscribe_to_events),
        )
        .route(
            "/integrations/{integration_id}/connection-check",
            post(integrations::check_connection),
        )
        .route(
            "/integrations/{integration_id}/health",
            get(integrations::integration_health),
        )
        .route("/keys", post(keys::create_key).get(keys::list_keys))
        .route("/keys/{key_id}", delete(keys::revoke_key))
        .route("/audit", get(audit::list_audit_records))
        .route(
            "/routes",
            get(routes::list_routes).post(routes::create_route),
        )
        .route(
            "/routes/{route_id}",
            get(routes::get_route)
                .patch(routes::change_route)
                .delete(routes::remove_route),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::prometheus))
        .route(
            "/inbound/{kind}/{integration_id}/{*rest}",
            post(inbound::receive),
        )
        .route("/oauth/{kind}/callback", get(install::finish_install))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(error::errors_as_json))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            server::read_body_within_limits,
        ))
        .with_state(state)
}

/// The version a change names: `If-Match` (`"3"`, or `W/"3"`) or the body's `version`, which
/// must agree; 428 when it names none (a change must say what it changes).
fn changed_version(
    headers: &axum::http::HeaderMap,
    body_version: Option<i64>,
) -> Result<i64, ApiError> {
    let header = match headers.get(axum::http::header::IF_MATCH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .map(|text| text.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("If-Match must be the ETag you read, such as \"3\"".into())
                })?,
        ),
    };
    match (header, body_version) {
        (Some(header), Some(body)) if header != body => {
            Err(FieldError::new("version", "differs from the If-Match header").into())
        }
        (header, body) => header.or(body).ok_or_else(|| {
            ApiError::PreconditionRequired(
                "name the version you change: If-Match with the ETag you read, or \"version\""
                    .into(),
            )
        }),
    }
}

/// Refuses an `organizationId` in a request that is not the API key's organization.
fn check_organization_id(given: Option<&str>, organization: &str) -> Result<(), FieldError> {
    match given {
        Some(given) if given != organization => Err(FieldError::new(
            "organizationId",
            "must be the organization of the API key (or left out)",
        )),
        _ => Ok(()),
    }
}

/// Where a definition (an integration, a route) comes from, in its answer: `source`, and for one
/// made through the API its `version`, `createdAt` and `updatedAt`.
fn show_source(shown: &mut serde_json::Value, source: crate::config::Source) {
    match source {
        crate::config::Source::Config => shown["source"] = serde_json::json!("config"),
        crate::config::Source::Api {
            version,
            created_at,
            updated_at,
        } => {
            shown["source"] = serde_json::json!("api");
            shown["version"] = serde_json::json!(version);
            shown["createdAt"] = serde_json::json!(created_at);
            shown["updatedAt"] = serde_json::json!(updated_at);
        }
    }
}

/// A definition as an answer, with its version (one made through the API) as the `ETag`.
fn versioned_answer(
    status: axum::http::StatusCode,
    shown: serde_json::Value,
    source: crate::config::Source,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = (status, axum::Json(shown)).into_response();
    if let crate::config::Source::Api { version, .. } = source {
        if let Ok(etag) = axum::http::HeaderValue::from_str(&format!("\"{version}\"")) {
            response
                .headers_mut()
                .insert(axum::http::header::ETAG, etag);
        }
    }
    response
}

/// A query string parsed into `T`, a refusal naming the parameter (`limit`, `wait`) otherwise.
struct ApiQuery<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|err| {
                let field = err.path().to_string();
                let reason = err.into_inner().to_string();
                let field = match reason.strip_prefix("duplicate field `") {
                    Some(rest) => rest.split('`').next().unwrap_or("").to_owned(),
                    None if field == "." => "query".to_owned(),
                    None => field,
                };
                FieldError::new(field, format!("in the query string: {reason}")).into()
            })
    }
}

/// Refuses a body that does not say it is JSON (`application/json`, any parameters).
fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(content_type))
    }
}
