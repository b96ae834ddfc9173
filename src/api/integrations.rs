//! `/v1/integrations`: the organization's integrations as the seed describes them, their health,
//! creating and removing them (the seed's `initializeIntegration`, through [`crate::catalog`]),
//! and what an integration's connector can be asked (connection check, event subscriptions).

use std::sync::Arc;
use std::time::Instant;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Organization};
use super::error::ErrorBody;
use super::{require_json, ApiError, ApiQuery, AppState};
use crate::catalog::NewRoutes;
use crate::config::{RawBreaker, RawFailover, RawIntegration, RawRateLimit, RawRetry, RawRoute};

use crate::connectors::ConnectorError;
use crate::integration::{IntegrationHealth, IntegrationMsg, IntegrationRuntime};
use crate::secret::SecretRef;
use crate::wedsync::{
    parse_json, CredentialsReference, FailoverConfiguration, FieldError, IntegrationConfiguration,
    IntegrationType, NotificationMapping, Priority, SecurityConfiguration,
};

/// The seed's `IntegrationConfiguration` as WedSync sends it to create an integration: the
/// vendor (`system`, a registry kind), its `settings` (the vendor's own settings, secrets as
/// `{"value": "..."}`), and Herald's overrides of the vendor's defaults.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({
    "integrationId": "studio-webhook",
    "system": "webhook",
    "settings": {
        "url": "https://hooks.example-studio.com/wedsync",
        "secret": {"value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    },
    "retry": {"maxAttempts": 5, "maxDelay": "10m"}
}))]
pub(super) struct IntegrationRequest {
    /// Unique in this Herald: 1-128 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,128}$")]
    integration_id: String,
    /// The key's organization; given, it must be that one.
    organization_id: Option<String>,
    /// Given, it must be the vendor's type.
    integration_type: Option<IntegrationType>,
    /// The vendor: a kind `herald vendors` lists.
    system: String,
    /// The vendor's own settings, in its configuration-file names (`base_url`); each secret as
    /// `{"value": "..."}`, sealed at once and never shown again.
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: BTreeMap<String, Value>,
    #[serde(default)]
    rate_limit: RateLimitRequest,
    #[serde(default)]
    breaker: BreakerRequest,
    #[serde(default)]
    retry: RetryRequest,
    #[serde(default)]
    failover_configuration: FailoverRequest,
    /// Deliveries attempted at once.
    max_in_flight: Option<usize>,
    /// How long one vendor call may take (`10s`).
    timeout: Option<String>,
    /// Routes that send notifications here, created with it; afterwards they are routes like
    /// any other (`/v1/routes`).
    #[serde(default)]
    notification_mapping: Vec<MappingRequest>,
    /// Taken only as Herald has it, so an integration read back can be sent again: how Herald
    /// authenticates is the vendor's, and private destinations are the operator's setting.
    security_configuration: Option<SecurityRequest>,
}

/// One route created with an integration: the seed's `NotificationMapping`, as Herald answers it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MappingRequest {
    /// Chosen by WedSync (1-128 letters, digits, `-`, `_` or `.`; not `config-...`), or made by
    /// Herald (`rt_...`) when left out.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,128}$")]
    route_id: Option<String>,
    /// The route's name; `notifications for <integrationId>` when left out.
    route: Option<String>,
    /// Notification types it takes; all when empty or left out.
    #[serde(default)]
    types: Vec<String>,
    min_priority: Option<Priority>,
    /// A CEL condition over `notification`, `wedding` and `metadata`.
    when: Option<String>,
}

/// The seed's `SecurityConfiguration`, as Herald answers it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecurityRequest {
    /// Must be the vendor's (`herald vendors`).
    authentication: Option<String>,
    /// Must be the operator's `security.allow_private_destinations`.
    private_destinations_allowed: Option<bool>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RateLimitRequest {
    per_second: Option<f64>,
    burst: Option<u32>,
    emergency_reserve: Option<f64>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BreakerRequest {
    failure_threshold: Option<u32>,
    open_for: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetryRequest {
    max_attempts: Option<u32>,
    initial: Option<String>,
    max_delay: Option<String>,
    max_age: Option<String>,
    max_retry_after: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FailoverRequest {
    #[serde(default)]
    backup_integrations: Vec<String>,
    on_circuit_open: Option<bool>,
    emergency_after_attempts: Option<u32>,
}

impl IntegrationRequest {
    /// The configuration file's form of the same integration, for `organization`, and the routes
    /// to create with it (their ids, if given). `allow_private_destinations` is the operator's
    /// setting, which a `securityConfiguration` must repeat.
    fn into_raw(
        self,
        organization: &str,
        allow_private_destinations: bool,
    ) -> Result<(RawIntegration, NewRoutes), FieldError> {
        super::check_organization_id(self.organization_id.as_deref(), organization)?;
        if let Some(security) = &self.security_configuration {
            let vendor = crate::vendors::find(&self.system).map(|vendor| vendor.describe());
            if let (Some(given), Some(vendor)) = (&security.authentication, vendor) {
                if given != vendor.authentication {
                    return Err(FieldError::new(
                        "securityConfiguration.authentication",
                        format!(
                            "{} integrations authenticate with {}; it is the vendor's, not chosen per integration",
                            self.system, vendor.authentication
                        ),
                    ));
                }
            }
            if security
                .private_destinations_allowed
                .is_some_and(|given| given != allow_private_destinations)
            {
                return Err(FieldError::new(
                    "securityConfiguration.privateDestinationsAllowed",
                    format!(
                        "is {allow_private_destinations}: the operator's security.allow_private_destinations, not chosen per integration"
                    ),
                ));
            }
        }
        let routes = self
            .notification_mapping
            .into_iter()
            .map(|mapping| {
                let route = RawRoute {
                    organization: organization.to_owned(),
                    name: mapping
                        .route
                        .unwrap_or_else(|| format!("notifications for {}", self.integration_id)),
                    types: mapping.types,
                    min_priority: mapping.min_priority,
                    when: mapping.when,
                    targets: vec![self.integration_id.clone()],
                };
                (mapping.route_id, route)
            })
            .collect();
        if let (Some(given), Some(vendor)) =
            (self.integration_type, crate::vendors::find(&self.system))
        {
            let actual = vendor.describe().integration_type;
            if given != actual {
                return Err(FieldError::new(
                    "integrationType",
                    format!("{} is a {} system", self.system, actual.as_str()),
                ));
            }
        }
        let raw = RawIntegration {
            id: self.integration_id,
            organization: organization.to_owned(),
            kind: self.system,
            settings: self.settings,
            rate_limit: RawRateLimit {
                per_second: self.rate_limit.per_second,
                burst: self.rate_limit.burst,
                emergency_reserve: self.rate_limit.emergency_reserve,
            },
            breaker: RawBreaker {
                failure_threshold: self.breaker.failure_threshold,
                open_for: self.breaker.open_for,
            },
            retry: RawRetry {
                max_attempts: self.retry.max_attempts,
                initial: self.retry.initial,
                max_delay: self.retry.max_delay,
                max_age: self.retry.max_age,
                max_retry_after: self.retry.max_retry_after,
            },
            failover: RawFailover {
                targets: self.failover_configuration.backup_integrations,
                on_circuit_open: self.failover_configuration.on_circuit_open,
                emergency_after_attempts: self.failover_configuration.emergency_after_attempts,
            },
            max_in_flight: self.max_in_flight,
            timeout: self.timeout,
        };
        Ok((raw, routes))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CreateQuery {
    /// Check the credential with the vendor once the integration runs.
    verify: Option<bool>,
}

/// A change (`PATCH`): a JSON merge patch of the fields `POST` takes (those naming the
/// integration, its vendor and organization may only repeat their values), and the `version`
/// it changes unless `If-Match` names it.
pub(super) struct IntegrationChange;

impl utoipa::PartialSchema for IntegrationChange {
    fn schema() -> RefOr<Schema> {
        super::openapi::change_schema(
            IntegrationRequest::schema(),
            "the integration's version",
            &["notificationMapping", "securityConfiguration"],
        )
    }
}

impl ToSchema for IntegrationChange {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        IntegrationRequest::schemas(schemas);
    }
}

/// The seed's `IntegrationInstance`: what the integration is, where it comes from, its
/// configuration and its health.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct IntegrationInstance {
    integration_id: String,
    organization_id: String,
    integration_type: IntegrationType,
    system: &'static str,
    /// `healthy`, `degraded` or `down`.
    status: &'static str,
    /// Whether an actor runs for it now: an integration with nothing to deliver has none, and
    /// its next delivery starts one.
    actor_running: bool,
    configuration: IntegrationConfiguration,
    health: IntegrationHealth,
    #[serde(flatten)]
    provenance: super::Provenance,
    /// With `?verify=true`: the vendor's answer to the credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_check: Option<ConnectionCheck>,
}

/// The vendor's answer to an integration's credential, as data: a refused credential is
/// `ok: false` with the reason.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConnectionCheck {
    ok: bool,
    /// The account the credential belongs to, as the vendor describes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    account: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The error's kind (`unauthorized`, `unavailable`, `rate_limited`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

impl From<Result<Value, ConnectorError>> for ConnectionCheck {
    fn from(checked: Result<Value, ConnectorError>) -> Self {
        match checked {
            Ok(account) => ConnectionCheck {
                ok: true,
                account: Some(account),
                error: None,
                kind: None,
            },
            Err(error) => ConnectionCheck {
                ok: false,
                account: None,
                error: Some(error.to_string()),
                kind: Some(error.kind()),
            },
        }
    }
}

/// `POST .../connection-check`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckedConnection {
    integration_id: String,
    #[serde(flatten)]
    check: ConnectionCheck,
}

/// A page of the organization's integrations, with their health.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct IntegrationPage {
    integrations: Vec<IntegrationHealth>,
    /// Where the next page starts (`?after=`); null on the last page.
    next_after: Option<String>,
}

/// What removing an integration did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RemovedIntegration {
    integration_id: String,
    removed: bool,
    /// Deliveries still queued for it, dead-lettered as "integration removed".
    dead_lettered: u64,
}

/// `PUT .../credentials`: the secrets to replace, where the settings have them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CredentialsRotation {
    /// Only secrets, each as `{"value": "..."}`, at their place in the settings.
    #[schema(value_type = Object)]
    settings: Value,
}

/// The vendor refused or failed a subscription.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubscriptionFailed {
    integration_id: String,
    error: String,
    kind: &'static str,
}

/// The seed's `initializeIntegration`: creates an integration of the key's organization and
/// starts it; 201 with the `IntegrationInstance` (with `connectionCheck` when `?verify=true`).
#[utoipa::path(
    post,
    path = "/integrations",
    tag = "integrations",
    params(CreateQuery),
    request_body = IntegrationRequest,
    responses(
        (status = 201, body = IntegrationInstance, headers(("ETag" = String, description = "The version")), links(
            ("GetIntegration" = (operation_id = "get_integration", parameters(("integrationId" = "$response.body#/integrationId")))),
            ("ChangeIntegration" = (operation_id = "change_integration", parameters(("integrationId" = "$response.body#/integrationId")))),
            ("RemoveIntegration" = (operation_id = "remove_integration", parameters(("integrationId" = "$response.body#/integrationId")))),
            ("IntegrationHealth" = (operation_id = "integration_health", parameters(("integrationId" = "$response.body#/integrationId")))),
            ("CheckConnection" = (operation_id = "check_connection", parameters(("integrationId" = "$response.body#/integrationId")))),
            ("RotateCredentials" = (operation_id = "rotate_credentials", parameters(("integrationId" = "$response.body#/integrationId")))),
        )),
        (status = 409, description = "The id is taken, or Herald has no vault for secrets.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn create_integration(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    ApiQuery(query): ApiQuery<CreateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let request: IntegrationRequest = parse_json(&body)?;
    let (raw, routes) = request.into_raw(&caller.organization, state.allow_private_destinations)?;
    let config = state
        .catalog
        .create_with_routes(raw, routes, &caller.actor())
        .await?;
    let runtime = organization_integration(&state, &caller.organization, &config.id)?;
    let mut answer = integration_instance(&state, &runtime);
    if query.verify == Some(true) {
        let checked = ask_connector(
            &state,
            &caller.organization,
            &config.id,
            IntegrationMsg::CheckConnection,
        )
        .await?;
        answer.connection_check = Some(checked.into());
    }
    Ok(super::versioned_answer(
        StatusCode::CREATED,
        answer,
        runtime.config.source,
    ))
}

/// A section a change may touch: its API name, its name in the configuration file's form, and
/// its fields (API name, file name).
type ChangeableSection = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The sections a change may touch.
const CHANGEABLE: &[ChangeableSection] = &[
    (
        "rateLimit",
        "rate_limit",
        &[
            ("perSecond", "per_second"),
            ("burst", "burst"),
            ("emergencyReserve", "emergency_reserve"),
        ],
    ),
    (
        "breaker",
        "breaker",
        &[
            ("failureThreshold", "failure_threshold"),
            ("openFor", "open_for"),
        ],
    ),
    (
        "retry",
        "retry",
        &[
            ("maxAttempts", "max_attempts"),
            ("initial", "initial"),
            ("maxDelay", "max_delay"),
            ("maxAge", "max_age"),
            ("maxRetryAfter", "max_retry_after"),
        ],
    ),
    (
        "failoverConfiguration",
        "failover",
        &[
            ("backupIntegrations", "targets"),
            ("onCircuitOpen", "on_circuit_open"),
            ("emergencyAfterAttempts", "emergency_after_attempts"),
        ],
    ),
];

/// A change (`PATCH`) as WedSync sends it, as a merge patch over the configuration file's form;
/// and the version it names in its body, if it does.
fn change_as_patch(
    body: Value,
    current: &IntegrationRuntime,
) -> Result<(Value, Option<i64>), FieldError> {
    let Value::Object(fields) = body else {
        return Err(FieldError::new("", "must be a JSON object"));
    };
    let mut patch = serde_json::Map::new();
    let mut version = None;
    for (key, value) in fields {
        match key.as_str() {
            "version" => {
                version = Some(value.as_i64().ok_or_else(|| {
                    FieldError::new("version", "must be the integration's version, a number")
                })?)
            }
            "settings" => {
                if !value.is_object() {
                    return Err(FieldError::new("settings", "must be an object"));
                }
                patch.insert("settings".into(), value);
            }
            "maxInFlight" => drop(patch.insert("max_in_flight".into(), value)),
            "timeout" => drop(patch.insert("timeout".into(), value)),
            "integrationId" | "system" | "organizationId" | "integrationType" => {
                let same = match key.as_str() {
                    "integrationId" => value == json!(current.id()),
                    "system" => value == json!(current.vendor()),
                    "organizationId" => value == json!(current.config.organization),
                    _ => value == json!(current.config.vendor.describe().integration_type),
                };
                if !same {
                    return Err(FieldError::new(
                        key,
                        "does not change; create another integration instead",
                    ));
                }
            }
            section => {
                let Some((_, raw_name, known)) =
                    CHANGEABLE.iter().find(|(api, ..)| *api == section)
                else {
                    return Err(FieldError::new(
                        section,
                        "is not something a change can set",
                    ));
                };
                let inner = match value {
                    Value::Object(inner) => inner,
                    Value::Null => {
                        patch.insert((*raw_name).into(), Value::Null);
                        continue;
                    }
                    _ => return Err(FieldError::new(section, "must be an object")),
                };
                let mut renamed = serde_json::Map::new();
                for (name, value) in inner {
                    let Some((_, raw)) = known.iter().find(|(api, _)| *api == name) else {
                        return Err(FieldError::new(
                            format!("{section}.{name}"),
                            "is not a known field",
                        ));
                    };
                    renamed.insert((*raw).into(), value);
                }
                patch.insert((*raw_name).into(), Value::Object(renamed));
            }
        }
    }
    Ok((Value::Object(patch), version))
}

/// Changes an integration created through the API (a JSON merge patch of the fields `POST`
/// takes), naming the version it changes (`If-Match` or `version`: 428 without, 412 for a
/// version that is no longer current). The actor restarts with the new settings.
#[utoipa::path(
    patch,
    path = "/integrations/{integrationId}",
    tag = "integrations",
    params(
        ("integrationId" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag read, instead of `version`"),
    ),
    request_body = IntegrationChange,
    responses(
        (status = 200, body = IntegrationInstance, headers(("ETag" = String, description = "The new version"))),
        (status = 409, description = "The configuration file's integrations are read-only.", body = ErrorBody),
        (status = 412, description = "The version named is no longer the current one.", body = ErrorBody),
        (status = 428, description = "The change names no version.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn change_integration(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(integration_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let runtime = organization_integration(&state, &caller.organization, &integration_id)?;
    let body: Value = parse_json(&body)?;
    let (patch, body_version) = change_as_patch(body, &runtime)?;
    let version = super::changed_version(&headers, body_version)?;
    state
        .catalog
        .update(
            &caller.organization,
            &integration_id,
            patch,
            Some(version),
            &caller.actor(),
        )
        .await?;
    instance_answer(
        &state,
        &caller.organization,
        &integration_id,
        StatusCode::OK,
    )
}

/// Rotates an integration's secrets without downtime: `{"settings": {...}}` with only secrets
/// (`{"value": ...}`) where the settings have them; attempts in flight finish with the old
/// ones, the next uses the new. No version is needed: a rotation applies to the current one.
#[utoipa::path(
    put,
    path = "/integrations/{integrationId}/credentials",
    tag = "integrations",
    params(("integrationId" = String, Path)),
    request_body = CredentialsRotation,
    responses(
        (status = 200, body = IntegrationInstance, headers(("ETag" = String, description = "The new version"))),
        (status = 409, description = "The configuration file's integrations are read-only.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn rotate_credentials(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(integration_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    organization_integration(&state, &caller.organization, &integration_id)?;
    let rotation: CredentialsRotation = parse_json(&body)?;
    only_secrets(&rotation.settings, "settings")?;
    state
        .catalog
        .update(
            &caller.organization,
            &integration_id,
            json!({"settings": rotation.settings}),
            None,
            &caller.actor(),
        )
        .await?;
    instance_answer(
        &state,
        &caller.organization,
        &integration_id,
        StatusCode::OK,
    )
}

/// Checks that every leaf of `value` is a secret (`{"value": "..."}`).
fn only_secrets(value: &Value, path: &str) -> Result<(), FieldError> {
    match value {
        Value::Object(map) if map.len() == 1 && map.get("value").is_some_and(Value::is_string) => Ok(()),
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                only_secrets(inner, &format!("{path}.{key}"))?;
            }
            Ok(())
        }
        _ => Err(FieldError::new(
            path,
            "only secrets ({\"value\": \"...\"}) are rotated here; change other settings with PATCH",
        )),
    }
}

/// The integration as an answer, with its version as the `ETag`.
fn instance_answer(
    state: &AppState,
    organization: &str,
    integration_id: &str,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let runtime = organization_integration(state, organization, integration_id)?;
    Ok(super::versioned_answer(
        status,
        integration_instance(state, &runtime),
        runtime.config.source,
    ))
}

/// Removes an integration created through the API: 200 with how many deliveries still queued
/// for it were dead-lettered ("integration removed").
#[utoipa::path(
    delete,
    path = "/integrations/{integrationId}",
    tag = "integrations",
    params(("integrationId" = String, Path)),
    responses(
        (status = 200, body = RemovedIntegration),
        (status = 409, description = "A route or another integration's failover uses it, or it is the configuration file's.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn remove_integration(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(integration_id): Path<String>,
) -> Result<Json<RemovedIntegration>, ApiError> {
    let removed = state
        .catalog
        .remove(&caller.organization, &integration_id, &caller.actor())
        .await?;
    Ok(Json(RemovedIntegration {
        integration_id,
        removed: true,
        dead_lettered: removed.dead_lettered as u64,
    }))
}

/// The seed's `IntegrationInstance`: what the integration is, where it comes from, its version
/// and times (for one created through the API), its configuration and its health.
fn integration_instance(state: &AppState, runtime: &IntegrationRuntime) -> IntegrationInstance {
    let health = runtime.health(Instant::now());
    IntegrationInstance {
        integration_id: runtime.id().to_owned(),
        organization_id: runtime.config.organization.clone(),
        integration_type: runtime.config.vendor.describe().integration_type,
        system: runtime.vendor(),
        status: health.status,
        actor_running: state.registry.actor(runtime.id()).is_some(),
        configuration: integration_configuration(state, runtime),
        health,
        provenance: runtime.config.source.into(),
        connection_check: None,
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only integrations of this vendor (a registry kind).
    system: Option<String>,
    /// Only integrations of this type.
    integration_type: Option<IntegrationType>,
    /// Integrations whose id sorts after this one (the previous page's `nextAfter`).
    after: Option<String>,
    /// At most this many, 1 to 1,000 (100 by default).
    limit: Option<usize>,
}

/// The organization's integrations with their health, by id, a page at a time (`limit`, at
/// most 1,000, default 100; `nextAfter` names where the next page starts while there is one),
/// filtered by `system` and `integrationType`.
#[utoipa::path(
    get,
    path = "/integrations",
    tag = "integrations",
    params(ListQuery),
    responses((status = 200, body = IntegrationPage)),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn list_integrations(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<IntegrationPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(FieldError::new("limit", "must be between 1 and 1000").into());
    }
    let mut chosen: Vec<_> = state
        .registry
        .runtimes()
        .into_iter()
        .filter(|runtime| runtime.config.organization == organization)
        .filter(|runtime| {
            query
                .system
                .as_deref()
                .is_none_or(|system| runtime.vendor() == system)
        })
        .filter(|runtime| {
            query
                .integration_type
                .is_none_or(|kind| runtime.config.vendor.describe().integration_type == kind)
        })
        .filter(|runtime| {
            query
                .after
                .as_deref()
                .is_none_or(|after| runtime.id() > after)
        })
        .collect();
    chosen.sort_by(|a, b| a.id().cmp(b.id()));
    let more = chosen.len() > limit;
    chosen.truncate(limit);
    let now = Instant::now();
    let next_after = more.then(|| chosen.last().map(|runtime| runtime.id().to_owned()));
    let integrations: Vec<_> = chosen.iter().map(|runtime| runtime.health(now)).collect();
    Ok(Json(IntegrationPage {
        integrations,
        next_after: next_after.flatten(),
    }))
}

/// The seed's `IntegrationInstance` of one of the organization's integrations.
#[utoipa::path(
    get,
    path = "/integrations/{integrationId}",
    tag = "integrations",
    params(("integrationId" = String, Path)),
    responses((status = 200, body = IntegrationInstance, headers(("ETag" = String, description = "The version, for one made through the API")))),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn get_integration(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(integration_id): Path<String>,
) -> Result<Response, ApiError> {
    instance_answer(&state, &organization, &integration_id, StatusCode::OK)
}

/// The organization's integration with this id; another organization's is a 404.
pub(super) fn organization_integration(
    state: &AppState,
    organization: &str,
    integration_id: &str,
) -> Result<Arc<IntegrationRuntime>, ApiError> {
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
        Some(SecretRef::Value(_)) => "vault",
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
            .into_iter()
            .map(|route| NotificationMapping {
                route_id: route.id.clone(),
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
#[utoipa::path(
    post,
    path = "/integrations/{integrationId}/connection-check",
    tag = "integrations",
    params(("integrationId" = String, Path)),
    responses((status = 200, body = CheckedConnection)),
    security(("apiKey" = ["admin"])),
)]
pub(super) async fn check_connection(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(integration_id): Path<String>,
) -> Result<Json<CheckedConnection>, ApiError> {
    let checked = ask_connector(
        &state,
        &organization,
        &integration_id,
        IntegrationMsg::CheckConnection,
    )
    .await?;
    Ok(Json(CheckedConnection {
        integration_id,
        check: checked.into(),
    }))
}

/// Subscribes to the vendor's events the integration's configuration names (REST hooks).
/// Run it once after configuring them: the vendor keeps the subscriptions.
#[utoipa::path(
    post,
    path = "/integrations/{integrationId}/subscriptions",
    tag = "integrations",
    params(("integrationId" = String, Path)),
    responses(
        (status = 201, description = "A subscription was made now; `subscriptions` lists them with their `status`.", body = Object),
        (status = 200, description = "The vendor had them all already.", body = Object),
        (status = 409, description = "The vendor has no subscriptions Herald can make.", body = ErrorBody),
        (status = 502, description = "The vendor refused or failed.", body = SubscriptionFailed),
    ),
    security(("apiKey" = ["admin"])),
)]
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
            if let (Some(answer), Some(listed)) =
                (answer.as_object_mut(), subscriptions.as_object())
            {
                answer.extend(listed.clone());
            }
            // 201 when a subscription was made now, 200 when the vendor had them all already.
            let created = answer["subscriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["status"] == "created");
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(answer)).into_response()
        }
        Err(ConnectorError::Rejected { code, message })
            if code == "unsupported" || code == "no_rest_hooks" =>
        {
            return Err(ApiError::Conflict(message))
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(SubscriptionFailed {
                integration_id,
                error: error.to_string(),
                kind: error.kind(),
            }),
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
    let actor = state
        .registry
        .awake_actor(integration_id)
        .await
        .ok_or_else(|| {
            ApiError::Unavailable(format!("integration {integration_id:?} is not running"))
        })?;
    ractor::call_t!(actor, message, 30_000).map_err(|_| {
        ApiError::Unavailable(format!("integration {integration_id:?} did not answer"))
    })
}

/// The seed's `monitorIntegrationHealth` for one integration.
#[utoipa::path(
    get,
    path = "/integrations/{integrationId}/health",
    tag = "integrations",
    params(("integrationId" = String, Path)),
    responses((status = 200, body = IntegrationHealth)),
    security(("apiKey" = ["viewer"])),
)]
pub(super) async fn integration_health(
    State(state): State<Arc<AppState>>,
    Extension(Organization(organization)): Extension<Organization>,
    Path(integration_id): Path<String>,
) -> Result<Json<IntegrationHealth>, ApiError> {
    let runtime = organization_integration(&state, &organization, &integration_id)?;
    Ok(Json(runtime.health(Instant::now())))
}
