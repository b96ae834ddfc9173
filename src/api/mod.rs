//! The internal HTTP API WedSync calls (axum), in WedSync's own camelCase vocabulary.
//!
//! Every `/v1` route is authenticated by an organization's API key and sees only that
//! organization's data (anything else is a 404). The API knows router messages, the store's
//! read side and integration health; it knows nothing about vendors.

mod auth;
mod error;
mod inbound;
mod install;
mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{json, Value};

pub use auth::{create_api_key, hash_key, Organization};
pub use error::ApiError;
pub use server::{serve, ServerLimits};

use crate::connectors::ConnectorError;
use crate::integration::{IntegrationMsg, IntegrationRuntime, Registry};
use crate::router::{Accepted, RouterHandle, RoutingTable, Submission};
use crate::secret::SecretRef;
use crate::store::{DeliveryRow, DeliveryState, RoutingRecord, Store};
use crate::wedsync::{
    parse_json, Coordination, CredentialsReference, CrossSystemRouting, DeliveryCoordination,
    DeliveryResult, FailoverConfiguration, FieldError, IntegrationConfiguration, NotificationBatch,
    NotificationMapping, RoutingResult, SecurityConfiguration, SystemResult, WeddingNotification,
    MAX_BATCH,
};

/// The longest `?wait=` a routing request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub routers: RouterHandle,
    pub registry: Arc<Registry>,
    pub table: Arc<RoutingTable>,
    pub metrics: PrometheusHandle,
    /// Key hash to (organization, when it was looked up).
    pub key_cache: DashMap<String, (String, std::time::Instant)>,
    pub limits: ServerLimits,
    pub allow_private_destinations: bool,
    /// The bearer token `/metrics` asks for, if any.
    pub metrics_token: Option<SecretRef>,
}

/// Builds the API's routes.
pub fn routes(state: Arc<AppState>) -> Router {
    let limits = Arc::new(state.limits);
    let v1 = Router::new()
        .route("/notifications", post(post_notification))
        .route("/notifications/batch", post(post_batch))
        .route("/notifications/{notification_id}", get(get_notification))
        .route(
            "/notifications/{notification_id}/engagement",
            get(notification_engagement),
        )
        .route("/routings", post(post_routing))
        .route("/routings/{routing_id}", get(get_routing))
        .route("/dead-letters", get(list_dead_letters))
        .route(
            "/dead-letters/{delivery_id}/replay",
            post(replay_dead_letter),
        )
        .route("/integrations", get(list_integrations))
        .route("/integrations/{integration_id}", get(get_integration))
        .route(
            "/integrations/{integration_id}/oauth/authorize",
            post(install::start_install),
        )
        .route(
            "/integrations/{integration_id}/subscriptions",
            post(subscribe_to_events),
        )
        .route(
            "/integrations/{integration_id}/connection-check",
            post(check_connection),
        )
        .route(
            "/integrations/{integration_id}/health",
            get(integration_health),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
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

// === intake ===

async fn post_notification(
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

async fn post_batch(
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

fn accepted_json(accepted: &Accepted) -> Value {
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

async fn get_notification(
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
async fn organization_notification(
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

/// The seed's trackCommunicationEngagement: for each delivered target that can tell (Slack
/// today), how people reacted and replied, read from the vendor now.
async fn notification_engagement(
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
        let Some(actor) = state.registry.actor(&delivery.integration_id) else {
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
                json!({"integrationId": delivery.integration_id, "deliveryId": delivery.delivery_id, "error": error.to_string(), "kind": error.kind()})
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

// === routings ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingQuery {
    wait: Option<String>,
}

async fn post_routing(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    ApiQuery(query): ApiQuery<RoutingQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let started = Instant::now();
    let wait = match &query.wait {
        None => Duration::ZERO,
        Some(text) => {
            let wait = crate::config::parse_duration(text)
                .map_err(|reason| FieldError::new("wait", reason))?;
            if wait > MAX_WAIT {
                return Err(FieldError::new(
                    "wait",
                    format!("{text} is longer than the longest wait, {MAX_WAIT:?}"),
                )
                .into());
            }
            wait
        }
    };
    let routing: CrossSystemRouting = parse_json(&body)?;
    routing.validate(&organization)?;
    for (index, target) in routing.target_systems.iter().enumerate() {
        let Some(expected) = &target.system_type else {
            continue;
        };
        let actual = state
            .registry
            .runtime(&target.system_id)
            .filter(|runtime| runtime.config.organization == organization)
            .map(|runtime| runtime.config.vendor.describe().integration_type.as_str());
        if actual.is_some_and(|actual| actual != expected) {
            return Err(FieldError::new(
                format!("targetSystems[{index}].systemType"),
                format!(
                    "{expected:?} is not the integration's type ({:?})",
                    actual.unwrap_or_default()
                ),
            )
            .into());
        }
    }
    let targets = state.table.explicit_targets(
        &organization,
        &routing.source_notification,
        &routing.target_systems,
        &routing.routing_rules,
    )?;
    let mut transformed = HashMap::new();
    for transformation in &routing.transformation_maps.0 {
        let target = &transformation.target_system;
        if !routing
            .target_systems
            .iter()
            .any(|t| &t.system_id == target)
        {
            return Err(FieldError::new(
                &transformation.field,
                format!("{target:?} is not one of targetSystems"),
            )
            .into());
        }
        transformed.insert(
            target.clone(),
            transformation
                .map
                .apply(&routing.source_notification, &transformation.field)
                .await?,
        );
    }
    // A routingId names one routing: the same id for another notification is refused before
    // anything is accepted.
    let notification_id = routing.source_notification.notification_id.clone();
    if let Some(existing) = state
        .store
        .routing(&organization, &routing.routing_id)
        .await?
    {
        if existing.notification_id != notification_id {
            return Err(ApiError::Conflict(format!(
                "routingId {:?} already routed notification {:?}",
                routing.routing_id, existing.notification_id
            )));
        }
    }
    let coordination_json = routing
        .delivery_coordination
        .as_ref()
        .map(|c| serde_json::to_string(c).unwrap_or_default());
    let watch = state
        .registry
        .watch_settlements(&organization, &notification_id);
    let submission = Submission {
        notification: routing.source_notification,
        explicit_targets: Some(targets),
        transformed,
        coordination: Coordination {
            mode: routing
                .delivery_coordination
                .as_ref()
                .map(|coordination| coordination.mode)
                .unwrap_or_default(),
            on_failure: routing
                .error_handling
                .as_ref()
                .map(|handling| handling.strategy)
                .unwrap_or_default(),
        },
    };
    let accepted = state.routers.accept(&organization, vec![submission]).await;
    let result = match accepted {
        Ok(_) => {
            state
                .store
                .record_routing(RoutingRecord {
                    organization: organization.clone(),
                    routing_id: routing.routing_id.clone(),
                    notification_id: notification_id.clone(),
                    delivery_coordination: coordination_json,
                    accepted_at: crate::store::now_millis(),
                })
                .await?;
            wait_for_routing(
                &state,
                &organization,
                &notification_id,
                (&routing.routing_id, routing.delivery_coordination.as_ref()),
                watch,
                started,
                wait,
            )
            .await
        }
        Err(err) => Err(err.into()),
    };
    state
        .registry
        .stop_watching(&organization, &notification_id);
    let result = result?;
    let status = if result.overall_status == "pending" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(result)).into_response())
}

/// Waits until every delivery of the notification settled or `wait` ran out, then builds the
/// seed's `RoutingResult` from the store.
async fn wait_for_routing(
    state: &AppState,
    organization: &str,
    notification_id: &str,
    routing: (&str, Option<&DeliveryCoordination>),
    watch: Arc<tokio::sync::Notify>,
    started: Instant,
    wait: Duration,
) -> Result<RoutingResult, ApiError> {
    let deadline = tokio::time::Instant::from_std(started + wait);
    loop {
        // Armed before reading, so a settlement between the read and the wait is not missed.
        let notified = watch.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Settlements are written in the next group commit; wait for it so the read sees them.
        state.store.flush().await?;
        let stored = state
            .store
            .notification(organization, notification_id)
            .await?
            .ok_or_else(|| ApiError::Internal("routed notification not found".into()))?;
        let result = routing_result(routing, &stored.deliveries, started.elapsed());
        if result.overall_status != "pending" || tokio::time::Instant::now() >= deadline {
            return Ok(result);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn routing_result(
    (routing_id, coordination): (&str, Option<&DeliveryCoordination>),
    deliveries: &[DeliveryRow],
    elapsed: Duration,
) -> RoutingResult {
    let mut system_results: Vec<SystemResult> = Vec::new();
    let mut system_of: HashMap<i64, usize> = HashMap::new();
    for row in deliveries {
        // A failover row belongs to the system of the delivery it took over from.
        let system = match row
            .failover_of
            .and_then(|primary| system_of.get(&primary).copied())
        {
            Some(index) => index,
            None => {
                system_results.push(SystemResult {
                    system_id: row.integration_id.clone(),
                    integration_id: row.integration_id.clone(),
                    status: String::new(),
                    delivery_results: Vec::new(),
                });
                system_results.len() - 1
            }
        };
        system_of.insert(row.delivery_id, system);
        system_results[system]
            .delivery_results
            .push(DeliveryResult {
                delivery_id: row.delivery_id,
                integration_id: row.integration_id.clone(),
                route: row.route.clone(),
                state: row.state.as_str().to_owned(),
                attempts: row.attempts,
                receipt: row.receipt.clone(),
                last_error: row.last_error.clone(),
                details: row.details.clone(),
            });
    }
    let mut success_count = 0;
    let mut failure_count = 0;
    for system in &mut system_results {
        let states: Vec<&str> = system
            .delivery_results
            .iter()
            .map(|d| d.state.as_str())
            .collect();
        system.status = if states.contains(&DeliveryState::Delivered.as_str()) {
            success_count += 1;
            "delivered"
        } else if states
            .iter()
            .all(|state| DeliveryState::parse(state).is_ok_and(|state| state.is_settled()))
        {
            failure_count += 1;
            if states
                .iter()
                .all(|&state| state == DeliveryState::Cancelled.as_str())
            {
                "cancelled"
            } else {
                "failed"
            }
        } else {
            "pending"
        }
        .to_owned();
    }
    let overall_status = if system_results.iter().any(|s| s.status == "pending") {
        "pending"
    } else if failure_count == 0 {
        "success"
    } else if success_count == 0 {
        "failed"
    } else {
        "partial"
    };
    RoutingResult {
        routing_id: routing_id.to_owned(),
        overall_status: overall_status.to_owned(),
        system_results,
        success_count,
        failure_count,
        processing_time: elapsed.as_millis() as u64,
        delivery_coordination: coordination.cloned(),
    }
}

/// `GET /v1/routings/{routingId}`: the routing's result now, as `POST /v1/routings` answers it
/// (`pending` until every target settled). `processingTime` runs from intake to the last
/// settlement, or to now while it is pending.
async fn get_routing(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(routing_id): Path<String>,
) -> Result<Json<RoutingResult>, ApiError> {
    let record = state
        .store
        .routing(&organization, &routing_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("routing {routing_id:?}")))?;
    let stored = organization_notification(&state, &organization, &record.notification_id).await?;
    let coordination: Option<DeliveryCoordination> = record
        .delivery_coordination
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    let pending_or_latest = stored
        .deliveries
        .iter()
        .map(|row| row.settled_at)
        .try_fold(record.accepted_at, |latest, settled| {
            settled.map(|at| latest.max(at))
        })
        .unwrap_or_else(crate::store::now_millis);
    let elapsed = Duration::from_millis((pending_or_latest - record.accepted_at).max(0) as u64);
    Ok(Json(routing_result(
        (&routing_id, coordination.as_ref()),
        &stored.deliveries,
        elapsed,
    )))
}

// === dead letters ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list_dead_letters(
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

async fn replay_dead_letter(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(delivery_id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("dead letter {delivery_id:?}"));
    let id: i64 = delivery_id.parse().map_err(|_| not_found())?;
    let replayed = state
        .store
        .replay(&organization, id)
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

// === integrations and health ===

async fn list_integrations(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
) -> Json<Value> {
    let now = Instant::now();
    let mut integrations: Vec<_> = state
        .registry
        .runtimes()
        .filter(|runtime| runtime.config.organization == organization)
        .map(|runtime| runtime.health(now))
        .collect();
    integrations.sort_by(|a, b| a.integration_id.cmp(&b.integration_id));
    Json(json!({"integrations": integrations}))
}

async fn get_integration(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(integration_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let runtime = organization_integration(&state, &organization, &integration_id)?;
    Ok(Json(json!({
        "configuration": integration_configuration(&state, runtime),
        "health": runtime.health(Instant::now()),
    })))
}

/// The organization's integration with this id; another organization's is a 404.
fn organization_integration<'a>(
    state: &'a AppState,
    organization: &str,
    integration_id: &str,
) -> Result<&'a Arc<IntegrationRuntime>, ApiError> {
    state
        .registry
        .runtime(integration_id)
        .filter(|runtime| runtime.config.organization == organization)
        .ok_or_else(|| ApiError::NotFound(format!("integration {integration_id:?}")))
}

/// Describes an integration in the seed's `IntegrationConfiguration` vocabulary.
fn integration_configuration(
    state: &AppState,
    runtime: &IntegrationRuntime,
) -> IntegrationConfiguration {
    let config = &runtime.config;
    let source = match config.settings.secrets().first() {
        Some(SecretRef::File(_)) => "file",
        _ => "env",
    };
    IntegrationConfiguration {
        integration_id: config.id.clone(),
        organization_id: config.organization.clone(),
        integration_type: config.vendor.describe().integration_type,
        system: runtime.vendor(),
        credentials: CredentialsReference { source },
        notification_mapping: state
            .table
            .routes_targeting(&config.organization, &config.id)
            .map(|route| NotificationMapping {
                route: route.name.clone(),
                types: route.types.clone(),
                min_priority: route.min_priority,
                when: route.when.as_ref().map(|c| c.source().to_owned()),
            })
            .collect(),
        failover_configuration: FailoverConfiguration {
            backup_integrations: config.failover.targets.clone(),
            on_circuit_open: config.failover.on_circuit_open,
            emergency_after_attempts: config.failover.emergency_after_attempts,
        },
        security_configuration: SecurityConfiguration {
            authentication: config.vendor.describe().authentication,
            private_destinations_allowed: state.allow_private_destinations,
        },
    }
}

/// Verifies the integration's credential against the vendor, now (the seed's
/// establishConnection). The answer is data: a refused credential is `ok: false` with the reason.
async fn check_connection(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(integration_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let checked = ask_connector(
        &state,
        &organization,
        &integration_id,
        IntegrationMsg::CheckConnection,
    )
    .await?;
    Ok(Json(match checked {
        Ok(account) => json!({"integrationId": integration_id, "ok": true, "account": account}),
        Err(error) => {
            json!({"integrationId": integration_id, "ok": false, "error": error.to_string(), "kind": error.kind()})
        }
    }))
}

/// Subscribes to the vendor's events the integration's configuration names (Tave's REST hooks).
/// Run it once after configuring them: the vendor keeps the subscriptions.
async fn subscribe_to_events(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(integration_id): Path<String>,
) -> Result<Response, ApiError> {
    let subscribed = ask_connector(
        &state,
        &organization,
        &integration_id,
        IntegrationMsg::SubscribeToEvents,
    )
    .await?;
    Ok(match subscribed {
        Ok(subscriptions) => {
            let mut answer = json!({"integrationId": integration_id});
            if let (Some(answer), Some(listed)) = (answer.as_object_mut(), subscriptions.as_object()) {
                answer.extend(listed.clone());
            }
            // 201 when a subscription was made now, 200 when the vendor had them all already.
            let created = answer["subscriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["status"] == "created");
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(answer)).into_response()
        }
        Err(ConnectorError::Rejected { code, message }) if code == "unsupported" || code == "no_rest_hooks" => {
            return Err(ApiError::Conflict(message))
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"integrationId": integration_id, "error": error.to_string(), "kind": error.kind()})),
        )
            .into_response(),
    })
}

/// Asks an integration's actor for something its connector answers (with the vendor's help).
async fn ask_connector(
    state: &AppState,
    organization: &str,
    integration_id: &str,
    message: impl FnOnce(ractor::RpcReplyPort<Result<Value, ConnectorError>>) -> IntegrationMsg,
) -> Result<Result<Value, ConnectorError>, ApiError> {
    organization_integration(state, organization, integration_id)?;
    let actor = state.registry.actor(integration_id).ok_or_else(|| {
        ApiError::Unavailable(format!("integration {integration_id:?} is not running"))
    })?;
    ractor::call_t!(actor, message, 30_000).map_err(|_| {
        ApiError::Unavailable(format!("integration {integration_id:?} did not answer"))
    })
}

async fn integration_health(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(integration_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let runtime = organization_integration(&state, &organization, &integration_id)?;
    Ok(Json(
        serde_json::to_value(runtime.health(Instant::now()))
            .map_err(|err| ApiError::Internal(err.to_string()))?,
    ))
}

/// Liveness: the process answers and its store writer is alive.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.store.writer_alive() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "store writer stopped"})),
        )
            .into_response()
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let store_ok = tokio::time::timeout(Duration::from_secs(2), state.store.flush())
        .await
        .is_ok_and(|r| r.is_ok());
    let routers_ok =
        state.routers.emergency.get().is_some() && state.routers.normal.get().is_some();
    let status = if store_ok && routers_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"store": store_ok, "routers": routers_ok})),
    )
        .into_response()
}

/// Prometheus text. With `server.metrics_token` set, only a scrape carrying it as a bearer token
/// gets it (Prometheus: `authorization: {credentials_file: ...}`).
async fn prometheus(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(token) = &state.metrics_token {
        let expected = match token.read() {
            Ok(expected) => expected,
            Err(reason) => {
                tracing::error!(%reason, "metrics token unreadable");
                return ApiError::Unavailable("metrics are misconfigured".into()).into_response();
            }
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| crate::secret::same_secret(given, expected.expose())) {
            return ApiError::Unauthorized("metrics token").into_response();
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
