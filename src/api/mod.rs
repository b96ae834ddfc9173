//! The internal HTTP API WedSync calls (axum), in WedSync's own camelCase vocabulary.
//!
//! Every `/v1` route is authenticated by an organization's API key and sees only that
//! organization's data (anything else is a 404). The API knows router messages, the store's
//! read side and integration health; it knows nothing about vendors.

mod acknowledgements;
mod audit;
mod auth;
mod dead_letters;
mod error;
mod inbound;
mod install;
mod integrations;
mod keys;
mod notifications;
mod openapi;
mod ops;
mod routes;
mod routings;
mod server;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// The vault, for inbound handlers that read a secret the vendor chose.
    pub vault: Option<Arc<crate::vault::Vault>>,
}

/// The `/v1` routes, each registered with its OpenAPI operation (so none is served without
/// being in the document).
fn v1_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(notifications::post_notification))
        .routes(routes!(notifications::post_batch))
        .routes(routes!(notifications::get_notification))
        .routes(routes!(notifications::notification_engagement))
        .routes(routes!(acknowledgements::acknowledge_notification))
        .routes(routes!(routings::post_routing))
        .routes(routes!(routings::get_routing))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::replay_dead_letter))
        .routes(routes!(
            integrations::list_integrations,
            integrations::create_integration
        ))
        .routes(routes!(
            integrations::get_integration,
            integrations::change_integration,
            integrations::remove_integration
        ))
        .routes(routes!(integrations::rotate_credentials))
        .routes(routes!(install::start_install))
        .routes(routes!(integrations::subscribe_to_events))
        .routes(routes!(integrations::check_connection))
        .routes(routes!(integrations::integration_health))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(audit::list_audit_records))
        .routes(routes!(routes::list_routes, routes::create_route))
        .routes(routes!(
            routes::get_route,
            routes::change_route,
            routes::remove_route
        ))
}

/// The `/v1` routes under `/v1`, and the OpenAPI document describing them.
fn documented(
    v1: OpenApiRouter<Arc<AppState>>,
) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/v1", v1)
        .split_for_parts();
    openapi::add_common_errors(&mut document);
    (router, document)
}

/// The API's OpenAPI document (what `GET /openapi.json` answers).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented(v1_routes()).1
}

/// Builds the API's routes.
pub fn routes(state: Arc<AppState>) -> Router {
    let limits = Arc::new(state.limits);
    let (v1, document) = documented(
        v1_routes().route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        )),
    );
    let document = axum::body::Bytes::from(
        serde_json::to_vec(&document).expect("an OpenAPI document serializes"),
    );
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::prometheus))
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    document,
                )
            }),
        )
        .route(
            "/inbound/{kind}/{integrationId}/{*rest}",
            post(inbound::receive).get(inbound::receive),
        )
        .route("/oauth/{kind}/callback", get(install::finish_install))
        .merge(v1)
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

/// Where a definition (an integration, a route) comes from, in its answer: `config` (the
/// configuration file's, read-only) or `api`, with the version and times of one made through
/// the API.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Provenance {
    source: SourceName,
    /// 1 when created, one more with each change; a change names the version it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<i64>,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum SourceName {
    Config,
    Api,
}

impl From<crate::config::Source> for Provenance {
    fn from(source: crate::config::Source) -> Self {
        match source {
            crate::config::Source::Config => Provenance {
                source: SourceName::Config,
                version: None,
                created_at: None,
                updated_at: None,
            },
            crate::config::Source::Api {
                version,
                created_at,
                updated_at,
            } => Provenance {
                source: SourceName::Api,
                version: Some(version),
                created_at: Some(created_at),
                updated_at: Some(updated_at),
            },
        }
    }
}

/// A definition as an answer, with its version (one made through the API) as the `ETag`.
fn versioned_answer(
    status: axum::http::StatusCode,
    shown: impl serde::Serialize,
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
