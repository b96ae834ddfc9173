//! `/v1/integrations`: the organization's integrations as the seed describes them, their health,
//! and what an integration's connector can be asked (connection check, event subscriptions).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::Organization;
use super::{ApiError, AppState};

use crate::connectors::ConnectorError;
use crate::integration::{IntegrationMsg, IntegrationRuntime};
use crate::secret::SecretRef;
use crate::wedsync::{
    CredentialsReference, FailoverConfiguration, IntegrationConfiguration, NotificationMapping,
    SecurityConfiguration,
};

pub(super) async fn list_integrations(
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

pub(super) async fn get_integration(
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
pub(super) fn organization_integration<'a>(
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
pub(super) fn integration_configuration(
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
pub(super) async fn check_connection(
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

/// Subscribes to the vendor's events the integration's configuration names (REST hooks).
/// Run it once after configuring them: the vendor keeps the subscriptions.
pub(super) async fn subscribe_to_events(
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
pub(super) async fn ask_connector(
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

pub(super) async fn integration_health(
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
