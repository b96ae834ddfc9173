//! `/v1/routings`: the seed's `CrossSystemRouting` (explicit targets, rules, transformations,
//! coordination), answered with its `RoutingResult` once settled or when the wait runs out, and
//! read again by its `routingId`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Organization;
use super::error::ErrorBody;
use super::notifications::organization_notification;
use super::{require_json, ApiError, ApiQuery, AppState};

use crate::router::Submission;
use crate::store::{DeliveryRow, DeliveryState, RoutingRecord};
use crate::wedsync::{
    parse_json, Coordination, CrossSystemRouting, DeliveryCoordination, DeliveryResult, FieldError,
    OverallStatus, RoutingResult, SystemResult, SystemStatus,
};

/// The longest `?wait=` a routing request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RoutingQuery {
    /// How long to wait for every target to settle before answering (`5s`, at most `60s`);
    /// no wait by default.
    wait: Option<String>,
}

/// The seed's `routeNotificationCrossSystem`: one notification to the systems it names, with
/// rules, transformations and coordination. Answers the `RoutingResult` once every target
/// settled (200) or when the wait runs out (202, `overallStatus: pending`).
#[utoipa::path(
    post,
    path = "/routings",
    tag = "routings",
    params(RoutingQuery),
    request_body = CrossSystemRouting,
    responses(
        (status = 200, description = "Every target settled.", body = RoutingResult, links(
            ("GetRouting" = (operation_id = "get_routing", parameters(("routingId" = "$response.body#/routingId")))),
        )),
        (status = 202, description = "Some target is still on its way.", body = RoutingResult),
        (status = 409, description = "The `routingId` already routed another notification.", body = ErrorBody),
    ),
    security(("apiKey" = ["sender"])),
)]
pub(super) async fn post_routing(
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
        &routing.source_notification,
        &routing.target_systems,
        &routing.routing_rules,
        |id| {
            state
                .registry
                .runtime(id)
                .is_some_and(|runtime| runtime.config.organization == organization)
        },
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
    let status = if result.overall_status == OverallStatus::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(result)).into_response())
}

/// Waits until every delivery of the notification settled or `wait` ran out, then builds the
/// seed's `RoutingResult` from the store.
pub(super) async fn wait_for_routing(
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
        // Armed before reading, so a settlement committed between the read and the wait is not
        // missed (the registry is woken by the store's writer once a settlement is committed).
        let notified = watch.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let stored = state
            .store
            .notification(organization, notification_id)
            .await?
            .ok_or_else(|| ApiError::Internal("routed notification not found".into()))?;
        let result = routing_result(routing, &stored.deliveries, started.elapsed());
        if result.overall_status != OverallStatus::Pending
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(result);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The seed's `RoutingResult` from the routing's delivery rows: one system per target, a
/// failover's rows under the system they took over from.
pub(super) fn routing_result(
    (routing_id, coordination): (&str, Option<&DeliveryCoordination>),
    deliveries: &[DeliveryRow],
    elapsed: Duration,
) -> RoutingResult {
    let mut system_results: Vec<SystemResult> = Vec::new();
    let mut states: Vec<Vec<DeliveryState>> = Vec::new();
    let mut system_of: HashMap<i64, usize> = HashMap::new();
    for row in deliveries {
        let system = match row
            .failover_of
            .and_then(|primary| system_of.get(&primary).copied())
        {
            Some(index) => index,
            None => {
                system_results.push(SystemResult {
                    system_id: row.integration_id.clone(),
                    integration_id: row.integration_id.clone(),
                    status: SystemStatus::Pending,
                    delivery_results: Vec::new(),
                });
                states.push(Vec::new());
                system_results.len() - 1
            }
        };
        system_of.insert(row.delivery_id, system);
        states[system].push(row.state);
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
    for (system, states) in system_results.iter_mut().zip(&states) {
        system.status = system_status(states);
    }
    let count = |status: SystemStatus| {
        system_results
            .iter()
            .filter(|system| system.status == status)
            .count()
    };
    let success_count = count(SystemStatus::Delivered);
    let failure_count = count(SystemStatus::Failed) + count(SystemStatus::Cancelled);
    let overall_status = if count(SystemStatus::Pending) > 0 {
        OverallStatus::Pending
    } else if failure_count == 0 {
        OverallStatus::Success
    } else if success_count == 0 {
        OverallStatus::Failed
    } else {
        OverallStatus::Partial
    };
    RoutingResult {
        routing_id: routing_id.to_owned(),
        overall_status,
        system_results,
        success_count,
        failure_count,
        processing_time: elapsed.as_millis() as u64,
        delivery_coordination: coordination.cloned(),
    }
}

/// A system's status from the states of its deliveries (its primary and any failovers).
fn system_status(states: &[DeliveryState]) -> SystemStatus {
    if states.contains(&DeliveryState::Delivered) {
        SystemStatus::Delivered
    } else if !states.iter().all(|state| state.is_settled()) {
        SystemStatus::Pending
    } else if states
        .iter()
        .all(|&state| state == DeliveryState::Cancelled)
    {
        SystemStatus::Cancelled
    } else {
        SystemStatus::Failed
    }
}

/// `GET /v1/routings/{routingId}`: the routing's result now, as `POST /v1/routings` answers it
/// (`pending` until every target settled). `processingTime` runs from intake to the last
/// settlement, or to now while it is pending.
#[utoipa::path(
    get,
    path = "/routings/{routingId}",
    tag = "routings",
    params(("routingId" = String, Path, description = "The routing's id, as WedSync gave it")),
    responses((status = 200, body = RoutingResult)),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn get_routing(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeliveryState::*;
    use crate::wedsync::Coordination;

    fn row(
        delivery_id: i64,
        integration: &str,
        state: DeliveryState,
        failover_of: Option<i64>,
    ) -> DeliveryRow {
        DeliveryRow {
            delivery_id,
            organization: "studio".into(),
            notification_id: "n".into(),
            integration_id: integration.into(),
            route: if failover_of.is_some() {
                "failover"
            } else {
                "primary"
            }
            .into(),
            failover_of,
            state,
            emergency: false,
            attempts: 1,
            created_at: 0,
            next_attempt_at: None,
            last_error: None,
            receipt: None,
            settled_at: None,
            details: None,
            coordination: Coordination::default(),
        }
    }

    fn result(rows: &[DeliveryRow]) -> RoutingResult {
        routing_result(("r", None), rows, Duration::from_millis(7))
    }

    fn statuses(result: &RoutingResult) -> Vec<(&str, SystemStatus)> {
        result
            .system_results
            .iter()
            .map(|system| (system.system_id.as_str(), system.status))
            .collect()
    }

    #[test]
    fn a_failover_counts_for_the_system_it_took_over_from() {
        let result = result(&[
            row(1, "chat", FailedOver, None),
            row(2, "hook", Delivered, None),
            row(3, "pager", Delivered, Some(1)),
        ]);
        assert_eq!(
            statuses(&result),
            vec![
                ("chat", SystemStatus::Delivered),
                ("hook", SystemStatus::Delivered)
            ]
        );
        assert_eq!(result.system_results[0].delivery_results.len(), 2);
        assert_eq!(
            (
                result.overall_status,
                result.success_count,
                result.failure_count,
                result.processing_time
            ),
            (OverallStatus::Success, 2, 0, 7)
        );
    }

    #[test]
    fn the_overall_status_waits_for_every_system() {
        let pending = result(&[row(1, "a", Delivered, None), row(2, "b", Held, None)]);
        assert_eq!(pending.overall_status, OverallStatus::Pending);
        let retrying = result(&[
            row(1, "a", FailedOver, None),
            row(2, "b", Retrying, Some(1)),
        ]);
        assert_eq!(statuses(&retrying), vec![("a", SystemStatus::Pending)]);
    }

    #[test]
    fn failures_and_cancellations_make_it_partial_or_failed() {
        let partial = result(&[
            row(1, "a", Delivered, None),
            row(2, "b", DeadLettered, None),
            row(3, "c", Cancelled, None),
        ]);
        assert_eq!(
            statuses(&partial),
            vec![
                ("a", SystemStatus::Delivered),
                ("b", SystemStatus::Failed),
                ("c", SystemStatus::Cancelled)
            ]
        );
        assert_eq!(
            (
                partial.overall_status,
                partial.success_count,
                partial.failure_count
            ),
            (OverallStatus::Partial, 1, 2)
        );
        let failed = result(&[
            row(1, "a", FailedOver, None),
            row(2, "b", DeadLettered, Some(1)),
        ]);
        assert_eq!(
            (failed.overall_status, statuses(&failed)),
            (OverallStatus::Failed, vec![("a", SystemStatus::Failed)])
        );
    }
}
