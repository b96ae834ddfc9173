//! Integrations as data: the integrations WedSync creates and removes through the API, for each
//! of its suppliers, while Herald runs.
//!
//! An integration from the API is checked exactly as one from the configuration file
//! ([`RawIntegration::check`]), with one difference: its secrets arrive as values (`{"value":
//! "..."}`), never as `env` or `file` references. Each value is sealed by the vault before
//! anything is written, and the store keeps the specification with `{"sealed": name}` in its
//! place, the sealed credential, and the audit record (secrets as fingerprints), in one
//! transaction. The integration then joins the registry, like the configured ones (its actor
//! starts on its first delivery), and at every later start of Herald the specification is read
//! back and unsealed in memory. Removing one stops its actor after the attempts in flight, erases its
//! credentials and dead-letters what was still queued for it, with the reason.
//!
//! Integrations from the configuration file are the operator's and read-only here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde_json::{json, Map, Value};
use supervision::{Slot, SupervisorMsg};

use crate::config::{
    IntegrationConfig, RawIntegration, RawRoute, RouteConfig, SecretOrigin, Source,
};
use crate::connectors::ConnectorKit;
use crate::integration::{IntegrationMsg, IntegrationRuntime, Registry};
use crate::router::RoutingTable;
use crate::secret::Secret;
use crate::store::{
    Actor, DefinitionChange, IntegrationChange, Kind, Removed, Saved, Settlement, Store,
    StoreError, StoredSpec, REMOVED_REASON,
};
use crate::vault::{Vault, VaultError};
use crate::vendors::ConnectorTarget;
use crate::wedsync::FieldError;

/// Routes to create with an integration, each with the id WedSync gave it, if any.
pub type NewRoutes = Vec<(Option<String>, RawRoute)>;

/// The longest integration id.
const MAX_ID: usize = 128;

/// How long removing an integration waits for its attempts in flight.
const REMOVE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The id is taken (by an integration of any organization: ids are unique in a Herald).
    #[error("integration id {0:?} is taken; choose another")]
    Taken(String),
    #[error("integration {0:?} not found")]
    NotFound(String),
    /// An integration from the configuration file.
    #[error("integration {0:?} is configured in Herald's configuration file and is read-only through the API")]
    ReadOnly(String),
    /// Something else depends on it: (what, what depends on it).
    #[error("{0} is used by {1}; change that first")]
    InUse(String, String),
    #[error("route {0:?} not found")]
    RouteNotFound(String),
    #[error(
        "route {0:?} is configured in Herald's configuration file and is read-only through the API"
    )]
    RouteReadOnly(String),
    #[error("route id {0:?} is taken in this organization; choose another")]
    RouteTaken(String),
    /// A change to a version that is no longer the current one.
    #[error("the integration is at version {current}; read it again and send that version")]
    Stale { current: i64 },
    /// Secrets arrived, and this Herald has no key to seal them with.
    #[error("this Herald keeps no secrets: its operator has not set security.credentials_key, which seals the credentials of integrations created through the API")]
    NoVault,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A stored integration that cannot be brought back (at start).
    #[error("stored integration {0:?}: {1}")]
    Unreadable(String, String),
}

/// Integrations managed through the API, applied to the running daemon.
pub struct Catalog {
    store: Arc<dyn Store>,
    vault: Option<Arc<Vault>>,
    registry: Arc<Registry>,
    table: Arc<RoutingTable>,
    kit: ConnectorKit,
    integrations: Slot<ActorRef<SupervisorMsg>>,
}

impl Catalog {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        table: Arc<RoutingTable>,
        kit: ConnectorKit,
        integrations: Slot<ActorRef<SupervisorMsg>>,
    ) -> Self {
        Self {
            store,
            vault: kit.vault.clone(),
            registry,
            table,
            kit,
            integrations,
        }
    }

    /// Creates an integration of `raw.organization` and starts it. Nothing is written unless
    /// every check passed; its secrets are sealed before they reach the store.
    pub async fn create(
        &self,
        raw: RawIntegration,
        by: &Actor,
    ) -> Result<IntegrationConfig, CatalogError> {
        self.create_with_routes(raw, Vec::new(), by).await
    }

    /// Creates an integration and routes that send to it (the seed's `notificationMapping`),
    /// each given with its id or none (Herald makes one). Everything is checked before anything
    /// is written: a route that would be refused (its `when`, a taken id) refuses the whole
    /// request, its field under `notificationMapping[n]`. The integration and each route are
    /// then written one after the other.
    pub async fn create_with_routes(
        &self,
        raw: RawIntegration,
        routes: NewRoutes,
        by: &Actor,
    ) -> Result<IntegrationConfig, CatalogError> {
        check_id(&raw.id)?;
        if self.registry.runtime(&raw.id).is_some() {
            return Err(CatalogError::Taken(raw.id));
        }
        let mut checked_routes = Vec::with_capacity(routes.len());
        for (index, (id, route)) in routes.into_iter().enumerate() {
            let within = |err: FieldError| {
                FieldError::new(
                    format!("notificationMapping[{index}].{}", err.field),
                    err.reason,
                )
            };
            let id = match id {
                Some(id) => {
                    check_route_id(&id)
                        .map_err(|err| within(FieldError::new("routeId", err.reason)))?;
                    let taken = self
                        .table
                        .routes(&route.organization)
                        .iter()
                        .any(|r| r.id == id)
                        || checked_routes
                            .iter()
                            .any(|(taken, _): &(String, RawRoute)| *taken == id);
                    if taken {
                        return Err(
                            within(FieldError::new("routeId", "is taken; choose another")).into(),
                        );
                    }
                    id
                }
                None => format!("rt_{}", uuid::Uuid::new_v4().simple()),
            };
            match self.check_route(&route, &id, Some(&raw.id)) {
                Ok(_) => checked_routes.push((id, route)),
                Err(CatalogError::Invalid(err)) => return Err(within(err).into()),
                Err(other) => return Err(other),
            }
        }
        let prepared = self.prepare(raw)?;
        let id = prepared.config.id.clone();
        let written = match self.save(&prepared, None, None, by).await? {
            Saved::Written(written) => written,
            Saved::Exists | Saved::Stale { .. } => return Err(CatalogError::Taken(id)),
        };
        let mut config = prepared.config;
        config.source = source_of(&written);
        // Its actor starts on its first delivery.
        self.registry.add(config.clone());
        for (id, route) in checked_routes {
            self.create_route(route, Some(id), by).await?;
        }
        Ok(config)
    }

    /// Changes an integration created through the API: `patch` is a JSON merge patch (RFC 7386)
    /// over its specification in the configuration file's form (secrets as `{"value": ...}`),
    /// applied to `version` if given (412 otherwise, see [`CatalogError::Stale`]). The new
    /// specification is checked as a new one would be; the actor then restarts with it after
    /// its attempts in flight, and what is queued for it is sent by the new one, each delivery
    /// with the notification it was rendered with.
    pub async fn update(
        &self,
        organization: &str,
        integration_id: &str,
        patch: Value,
        version: Option<i64>,
        by: &Actor,
    ) -> Result<IntegrationConfig, CatalogError> {
        let (runtime, stored) = self.managed(organization, integration_id).await?;
        if let Some(expected) = version {
            if expected != stored.version {
                return Err(CatalogError::Stale {
                    current: stored.version,
                });
            }
        }
        let mut current = self.unsealed(&stored).await?;
        let audit_before = audit_of(&current);
        merge_patch(&mut current, &patch);
        let raw: RawIntegration =
            serde_json::from_value(current).map_err(|err| FieldError::new("", err.to_string()))?;
        if raw.id != integration_id
            || raw.organization != organization
            || raw.kind != runtime.vendor()
        {
            return Err(FieldError::new(
                "system",
                "an integration's id, organization and system do not change; create another integration",
            )
            .into());
        }
        let prepared = self.prepare(raw)?;
        let written = match self
            .save(&prepared, Some(stored.version), Some(audit_before), by)
            .await?
        {
            Saved::Written(written) => written,
            Saved::Stale {
                current: Some(current),
            } => return Err(CatalogError::Stale { current }),
            Saved::Stale { current: None } | Saved::Exists => {
                return Err(CatalogError::NotFound(integration_id.to_owned()))
            }
        };
        let mut config = prepared.config;
        config.source = source_of(&written);
        // The new settings first, so a delivery from now on is for them; then the old actor
        // stops after its attempts in flight, and if anything waits in the store for the
        // integration, an actor with the new settings starts for it.
        self.registry.add(config.clone());
        self.stop_actor(integration_id).await;
        if self.store.has_open_deliveries(integration_id).await? {
            self.registry.wake(integration_id);
        }
        Ok(config)
    }

    /// Checks an integration from the API, builds its connector once (so a connector that
    /// cannot be built, an address the outbound policy refuses, is refused now rather than
    /// crashing an actor), and seals its secrets.
    fn prepare(&self, mut raw: RawIntegration) -> Result<Prepared, CatalogError> {
        let mut settings = Value::Object(raw.settings.clone().into_iter().collect());
        let mut secrets = Vec::new();
        take_secrets(&mut settings, "settings", &mut secrets)?;
        let (checked, problems) = raw.check(SecretOrigin::Api);
        if let Some((field, reason)) = problems.into_iter().next() {
            return Err(FieldError::new(api_field(&field), reason).into());
        }
        let Some(config) = checked else {
            return Err(FieldError::new("settings", "could not be read").into());
        };
        self.check_failover(&config)?;
        config
            .settings
            .build(
                &ConnectorTarget {
                    integration_id: &config.id,
                    timeout: config.timeout,
                },
                &self.kit,
            )
            .map_err(|err| FieldError::new("settings", err.to_string()))?;
        let mut sealed = Vec::with_capacity(secrets.len());
        for (name, secret) in &secrets {
            let vault = self.vault.as_ref().ok_or(CatalogError::NoVault)?;
            sealed.push((name.clone(), vault.seal(&raw.id, name, secret)?));
        }
        if let Value::Object(map) = settings {
            raw.settings = map.into_iter().collect();
        }
        Ok(Prepared {
            audit_after: audit_view(&raw, &secrets),
            raw,
            config,
            sealed,
        })
    }

    /// Writes a prepared integration (new when `replaces` is `None`) with its audit record.
    async fn save(
        &self,
        prepared: &Prepared,
        replaces: Option<i64>,
        audit_before: Option<String>,
        by: &Actor,
    ) -> Result<Saved, CatalogError> {
        let raw = &prepared.raw;
        let spec = serde_json::to_string(raw).map_err(|err| {
            CatalogError::Unreadable(raw.id.clone(), format!("cannot encode: {err}"))
        })?;
        Ok(self
            .store
            .save_integration(
                IntegrationChange {
                    integration_id: raw.id.clone(),
                    organization: raw.organization.clone(),
                    spec,
                    sealed: prepared.sealed.clone(),
                    replaces_version: replaces,
                    audit_before,
                    audit_after: prepared.audit_after.clone(),
                },
                by,
            )
            .await?)
    }

    /// The organization's integration created through the API, as it runs and as it is stored.
    async fn managed(
        &self,
        organization: &str,
        integration_id: &str,
    ) -> Result<(Arc<IntegrationRuntime>, StoredSpec), CatalogError> {
        let not_found = || CatalogError::NotFound(integration_id.to_owned());
        let runtime = self
            .registry
            .runtime(integration_id)
            .filter(|runtime| runtime.config.organization == organization)
            .ok_or_else(not_found)?;
        if runtime.config.source == Source::Config {
            return Err(CatalogError::ReadOnly(integration_id.to_owned()));
        }
        let stored = self
            .store
            .managed_integration(integration_id)
            .await?
            .ok_or_else(not_found)?;
        Ok((runtime, stored))
    }

    /// A stored specification with its secrets opened (`{"value": ...}` again), in memory.
    async fn unsealed(&self, stored: &StoredSpec) -> Result<Value, CatalogError> {
        let mut spec: Value = serde_json::from_str(&stored.spec)
            .map_err(|err| CatalogError::Unreadable(stored.id.clone(), err.to_string()))?;
        if let Some(settings) = spec.get_mut("settings") {
            let mut names = Vec::new();
            sealed_names(settings, &mut names);
            let mut sealed = HashMap::new();
            for name in names {
                if let Some(value) = self.store.credential(&stored.id, &name).await? {
                    sealed.insert(name, value);
                }
            }
            unseal(self.vault.as_deref(), &stored.id, settings, |name| {
                sealed.remove(name)
            })?;
        }
        Ok(spec)
    }

    /// Stops an integration's actor after its attempts in flight (up to ten seconds) and
    /// forgets it; what is queued for it stays in the store.
    async fn stop_actor(&self, integration_id: &str) {
        if let Some(actor) = self.registry.actor(integration_id) {
            let drained = ractor::call_t!(
                actor,
                IntegrationMsg::Drain,
                REMOVE_GRACE.as_millis() as u64
            );
            if drained.is_err() {
                tracing::warn!(integration = %integration_id, "attempts still in flight when the integration's actor stopped");
            }
        }
        if let Some(supervisor) = self.integrations.get() {
            let _ = supervisor.send_message(SupervisorMsg::RemoveChild(integration_id.to_owned()));
        }
        self.registry.forget_actor(integration_id);
    }

    /// Removes the organization's integration: its actor stops after its attempts in flight
    /// (up to ten seconds), then its credentials are erased and what was queued for it is
    /// dead-lettered ("integration removed").
    pub async fn remove(
        &self,
        organization: &str,
        integration_id: &str,
        by: &Actor,
    ) -> Result<Removed, CatalogError> {
        let (_, stored) = self.managed(organization, integration_id).await?;
        let what = format!("integration {integration_id:?}");
        if let Some(backed_up) = self.registry.runtimes().into_iter().find(|other| {
            other.id() != integration_id
                && other
                    .config
                    .failover
                    .targets
                    .iter()
                    .any(|target| target == integration_id)
        }) {
            return Err(CatalogError::InUse(
                what,
                format!("integration {:?} (its failover)", backed_up.id()),
            ));
        }
        if let Some(route) = self
            .table
            .routes_targeting(organization, integration_id)
            .first()
        {
            return Err(CatalogError::InUse(what, format!("route {:?}", route.id)));
        }
        let audit_before = audit_of(&self.unsealed(&stored).await?);
        // Gone from the registry first: a delivery dispatched from now on is dead-lettered.
        self.registry.remove(integration_id);
        self.stop_actor(integration_id).await;
        // What was queued is dead-lettered as any failed delivery is (so a sequenced routing
        // moves on or cancels, and whoever waits on a routing hears of it); the removal below
        // dead-letters anything left (a delivery still held in a sequence).
        let queued: Vec<Settlement> = self
            .store
            .open_deliveries(integration_id)
            .await?
            .iter()
            .map(|open| Settlement::DeadLettered {
                delivery_id: open.row.delivery_id,
                attempts: open.row.attempts,
                error: REMOVED_REASON.to_owned(),
                sequenced: open.row.coordination.is_sequenced(),
            })
            .collect();
        let settled = queued.len() as u64;
        if !queued.is_empty() {
            self.store.settle(queued);
            self.store.flush().await?;
        }
        let mut removed = self
            .store
            .remove_integration(organization, integration_id, audit_before, by)
            .await?
            .ok_or_else(|| CatalogError::NotFound(integration_id.to_owned()))?;
        removed.dead_lettered += settled;
        tracing::info!(integration = %integration_id, dead_lettered = removed.dead_lettered, "integration removed");
        Ok(removed)
    }

    /// Creates a route of `raw.organization` (id `id`, or one Herald makes) and routes by it at
    /// once. Its targets must be the organization's integrations and its condition must compile.
    pub async fn create_route(
        &self,
        raw: RawRoute,
        id: Option<String>,
        by: &Actor,
    ) -> Result<RouteConfig, CatalogError> {
        let id = match id {
            Some(id) => {
                check_route_id(&id)?;
                id
            }
            None => format!("rt_{}", uuid::Uuid::new_v4().simple()),
        };
        let route = self.check_route(&raw, &id, None)?;
        let spec = encode(&raw)?;
        let written = match self
            .store
            .save_definition(
                DefinitionChange {
                    kind: Kind::Route,
                    organization: raw.organization.clone(),
                    id: id.clone(),
                    spec,
                    replaces_version: None,
                    audit_before: None,
                },
                by,
            )
            .await?
        {
            Saved::Written(written) => written,
            Saved::Exists | Saved::Stale { .. } => return Err(CatalogError::RouteTaken(id)),
        };
        let route = RouteConfig {
            source: source_of(&written),
            ..route
        };
        self.table.put(route.clone());
        Ok(route)
    }

    /// Changes a route created through the API: a JSON merge patch over its specification in
    /// the configuration file's form, applied to `version` (412 otherwise).
    pub async fn update_route(
        &self,
        organization: &str,
        id: &str,
        patch: Value,
        version: i64,
        by: &Actor,
    ) -> Result<RouteConfig, CatalogError> {
        let current = self.managed_route(organization, id)?;
        let Source::Api {
            version: current_version,
            ..
        } = current.source
        else {
            return Err(CatalogError::RouteReadOnly(id.to_owned()));
        };
        if version != current_version {
            return Err(CatalogError::Stale {
                current: current_version,
            });
        }
        let mut spec = serde_json::to_value(raw_route(&current))
            .map_err(|err| CatalogError::Unreadable(id.to_owned(), err.to_string()))?;
        let audit_before = spec.to_string();
        merge_patch(&mut spec, &patch);
        let raw: RawRoute =
            serde_json::from_value(spec).map_err(|err| FieldError::new("", err.to_string()))?;
        if raw.organization != organization {
            return Err(FieldError::new("organizationId", "does not change").into());
        }
        let route = self.check_route(&raw, id, None)?;
        let written = match self
            .store
            .save_definition(
                DefinitionChange {
                    kind: Kind::Route,
                    organization: organization.to_owned(),
                    id: id.to_owned(),
                    spec: encode(&raw)?,
                    replaces_version: Some(version),
                    audit_before: Some(audit_before),
                },
                by,
            )
            .await?
        {
            Saved::Written(written) => written,
            Saved::Stale {
                current: Some(current),
            } => return Err(CatalogError::Stale { current }),
            Saved::Stale { current: None } | Saved::Exists => {
                return Err(CatalogError::RouteNotFound(id.to_owned()))
            }
        };
        let route = RouteConfig {
            source: source_of(&written),
            ..route
        };
        self.table.put(route.clone());
        Ok(route)
    }

    /// Removes a route created through the API; notifications stop taking it at once.
    pub async fn remove_route(
        &self,
        organization: &str,
        id: &str,
        by: &Actor,
    ) -> Result<(), CatalogError> {
        let current = self.managed_route(organization, id)?;
        if current.source == Source::Config {
            return Err(CatalogError::RouteReadOnly(id.to_owned()));
        }
        if !self
            .store
            .remove_definition(Kind::Route, organization, id, by)
            .await?
        {
            return Err(CatalogError::RouteNotFound(id.to_owned()));
        }
        self.table.remove(organization, id);
        Ok(())
    }

    /// The organization's route with this id.
    pub fn managed_route(&self, organization: &str, id: &str) -> Result<RouteConfig, CatalogError> {
        self.table
            .routes(organization)
            .iter()
            .find(|route| route.id == id)
            .cloned()
            .ok_or_else(|| CatalogError::RouteNotFound(id.to_owned()))
    }

    /// Checks a route against the organization's integrations as they are now. A condition
    /// naming what no WedSync notification has is refused here (the configuration file only
    /// warns of it): such a route would never match.
    /// Checks a route as route `id`; its targets must be integrations of its organization, or
    /// `being_created` (an integration created together with it).
    fn check_route(
        &self,
        raw: &RawRoute,
        id: &str,
        being_created: Option<&str>,
    ) -> Result<RouteConfig, CatalogError> {
        let (route, problems) = raw.check(id, |target| {
            being_created == Some(target)
                || self
                    .registry
                    .runtime(target)
                    .is_some_and(|runtime| runtime.config.organization == raw.organization)
        });
        if let Some((field, reason)) = problems.into_iter().next() {
            return Err(FieldError::new(api_route_field(&field), reason).into());
        }
        let route = route.ok_or_else(|| FieldError::new("when", "does not compile"))?;
        let unknown = route
            .when
            .as_ref()
            .map(|when| when.unknown_fields())
            .unwrap_or_default();
        if !unknown.is_empty() {
            return Err(FieldError::new(
                "when",
                format!(
                    "{} is not a field of a WedSync notification (metadata.* is free-form), so the route would never match",
                    unknown.join(", ")
                ),
            )
            .into());
        }
        Ok(route)
    }

    /// The routes kept in the store, for the daemon's start, into `table`. A target that no
    /// longer exists (an integration removed from the configuration file) is left out of the
    /// route, said in the log: the route keeps routing to the others.
    pub async fn load_routes(
        store: &dyn Store,
        registry: &Registry,
        table: &RoutingTable,
    ) -> Result<(), CatalogError> {
        for stored in store.definitions(Kind::Route).await? {
            let mut raw: RawRoute = serde_json::from_str(&stored.spec)
                .map_err(|err| CatalogError::Unreadable(stored.id.clone(), err.to_string()))?;
            raw.targets.retain(|target| {
                let exists = registry
                    .runtime(target)
                    .is_some_and(|runtime| runtime.config.organization == raw.organization);
                if !exists {
                    tracing::error!(route = %stored.id, %target, "a route targets an integration that no longer exists; it routes to its other targets");
                }
                exists
            });
            let (route, problems) = raw.check(&stored.id, |_| true);
            match (route, problems.first()) {
                (Some(route), None) => table.put(RouteConfig {
                    source: source_of(&stored),
                    ..route
                }),
                (_, problem) => {
                    tracing::error!(route = %stored.id, ?problem, "stored route cannot route; it is skipped")
                }
            }
        }
        Ok(())
    }

    /// The integrations kept in the store, unsealed and checked, for the daemon's start.
    pub async fn load(
        store: &dyn Store,
        vault: Option<&Vault>,
    ) -> Result<Vec<IntegrationConfig>, CatalogError> {
        let mut loaded = Vec::new();
        // Every sealed credential in one read, rather than one read per secret.
        let mut sealed: HashMap<(String, String), Vec<u8>> = store
            .all_credentials()
            .await?
            .into_iter()
            .map(|(integration, name, sealed)| ((integration, name), sealed))
            .collect();
        for stored in store.managed_integrations().await? {
            let unreadable = |reason: String| CatalogError::Unreadable(stored.id.clone(), reason);
            let mut raw: RawIntegration =
                serde_json::from_str(&stored.spec).map_err(|err| unreadable(err.to_string()))?;
            let mut settings = Value::Object(raw.settings.clone().into_iter().collect());
            unseal(vault, &stored.id, &mut settings, |name| {
                sealed.remove(&(stored.id.clone(), name.to_owned()))
            })?;
            if let Value::Object(map) = settings {
                raw.settings = map.into_iter().collect();
            }
            let (checked, problems) = raw.check(SecretOrigin::Api);
            if let Some((field, reason)) = problems.into_iter().next() {
                return Err(unreadable(format!("{field}: {reason}")));
            }
            let mut config = checked.ok_or_else(|| unreadable("settings".into()))?;
            config.source = source_of(&stored);
            loaded.push(config);
        }
        Ok(loaded)
    }

    /// Failover targets are other integrations of the same organization.
    fn check_failover(&self, config: &IntegrationConfig) -> Result<(), CatalogError> {
        for target in &config.failover.targets {
            let ours = self
                .registry
                .runtime(target)
                .is_some_and(|backup| backup.config.organization == config.organization);
            if !ours || target == &config.id {
                return Err(FieldError::new(
                    "failoverConfiguration.backupIntegrations",
                    format!("{target:?} is not another integration of this organization"),
                )
                .into());
            }
        }
        Ok(())
    }
}

/// An integration from the API, checked and with its secrets sealed, ready to be written.
struct Prepared {
    /// The specification as stored: secrets as `{"sealed": name}`.
    raw: RawIntegration,
    config: IntegrationConfig,
    sealed: Vec<(String, Vec<u8>)>,
    /// The specification as the audit shows it (secrets as fingerprints).
    audit_after: String,
}

/// Applies a JSON merge patch (RFC 7386): objects merge key by key, `null` removes a key, and
/// anything else replaces what was there.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, change) in changes {
            if change.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

fn source_of(stored: &StoredSpec) -> Source {
    Source::Api {
        version: stored.version,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    }
}

/// An integration id: 1-128 letters, digits, `-`, `_` or `.` (it appears in paths and metrics).
fn check_id(id: &str) -> Result<(), FieldError> {
    check_identifier("integrationId", id)
}

/// A route id: as an integration id, and not `config-...` (the configuration file's routes).
fn check_route_id(id: &str) -> Result<(), FieldError> {
    check_identifier("routeId", id)?;
    if id.starts_with("config-") {
        return Err(FieldError::new(
            "routeId",
            "config-... names the configuration file's routes; choose another",
        ));
    }
    Ok(())
}

fn check_identifier(field: &str, id: &str) -> Result<(), FieldError> {
    let fine = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be 1-{MAX_ID} letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// A route's field as the API names it.
fn api_route_field(field: &str) -> String {
    match field {
        "min_priority" => "minPriority".to_owned(),
        other => other.to_owned(),
    }
}

/// A route in the configuration file's form, as stored.
fn raw_route(route: &RouteConfig) -> RawRoute {
    RawRoute {
        organization: route.organization.clone(),
        name: route.name.clone(),
        types: route.types.clone(),
        min_priority: route.min_priority,
        when: route.when.as_ref().map(|when| when.source().to_owned()),
        targets: route.targets.clone(),
    }
}

fn encode(raw: &impl serde::Serialize) -> Result<String, CatalogError> {
    serde_json::to_string(raw)
        .map_err(|err| CatalogError::Unreadable(String::new(), err.to_string()))
}

/// Takes every secret value out of `settings` (an object `{"value": "..."}`), leaving
/// `{"sealed": name}` in its place, where `name` is its path (`settings.token`). An `env` or
/// `file` reference is refused, naming where it is.
fn take_secrets(
    value: &mut Value,
    path: &str,
    secrets: &mut Vec<(String, Secret)>,
) -> Result<(), FieldError> {
    match value {
        Value::Object(map) if map.len() == 1 && (map.contains_key("env") || map.contains_key("file")) => {
            Err(FieldError::new(
                path,
                "an integration created through the API takes its secrets as values ({\"value\": \"...\"}), not as env or file references",
            ))
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("value") => {
            let secret: Secret = serde_json::from_value(map["value"].clone())
                .map_err(|err| FieldError::new(format!("{path}.value"), err.to_string()))?;
            secrets.push((path.to_owned(), secret));
            *value = json!({"sealed": path});
            Ok(())
        }
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                take_secrets(inner, &format!("{path}.{key}"), secrets)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (index, inner) in items.iter_mut().enumerate() {
                take_secrets(inner, &format!("{path}[{index}]"), secrets)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Puts each sealed secret of a stored specification back as its value, opened by the vault;
/// `sealed` gives the stored sealed value of each name.
fn unseal(
    vault: Option<&Vault>,
    integration_id: &str,
    settings: &mut Value,
    mut sealed: impl FnMut(&str) -> Option<Vec<u8>>,
) -> Result<(), CatalogError> {
    let mut names = Vec::new();
    sealed_names(settings, &mut names);
    for name in names {
        let vault = vault.ok_or(CatalogError::NoVault)?;
        let sealed = sealed(&name).ok_or_else(|| {
            CatalogError::Unreadable(
                integration_id.to_owned(),
                format!("its {name} is not in the store"),
            )
        })?;
        let secret = vault.open(integration_id, &name, sealed)?;
        replace_sealed(settings, &name, &secret);
    }
    Ok(())
}

fn sealed_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) if map.len() == 1 => match map.get("sealed") {
            Some(Value::String(name)) => names.push(name.clone()),
            _ => map.values().for_each(|inner| sealed_names(inner, names)),
        },
        Value::Object(map) => map.values().for_each(|inner| sealed_names(inner, names)),
        Value::Array(items) => items.iter().for_each(|inner| sealed_names(inner, names)),
        _ => {}
    }
}

fn replace_sealed(value: &mut Value, name: &str, secret: &Secret) {
    match value {
        Value::Object(map)
            if map.len() == 1 && map.get("sealed").and_then(Value::as_str) == Some(name) =>
        {
            *value = json!({"value": secret.expose()});
        }
        Value::Object(map) => map
            .values_mut()
            .for_each(|inner| replace_sealed(inner, name, secret)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|inner| replace_sealed(inner, name, secret)),
        _ => {}
    }
}

/// A specification with its secrets as values, as the audit log shows it.
fn audit_of(spec: &Value) -> String {
    let mut spec = spec.clone();
    let mut secrets = Vec::new();
    if let Some(settings) = spec.get_mut("settings") {
        // A stored specification's secrets were checked when they were written.
        let _ = take_secrets(settings, "settings", &mut secrets);
    }
    match serde_json::from_value::<RawIntegration>(spec.clone()) {
        Ok(raw) => audit_view(&raw, &secrets),
        Err(_) => spec.to_string(),
    }
}

/// The specification as the audit log shows it: each secret as a fingerprint (the first 12 hex
/// digits of its SHA-256), enough to tell that a credential changed and nothing more.
fn audit_view(raw: &RawIntegration, secrets: &[(String, Secret)]) -> String {
    let mut view = serde_json::to_value(raw).unwrap_or(Value::Null);
    if let Some(settings) = view.get_mut("settings") {
        for (name, secret) in secrets {
            replace_fingerprint(settings, name, &secret.fingerprint());
        }
    }
    view.to_string()
}

fn replace_fingerprint(value: &mut Value, name: &str, fingerprint: &str) {
    match value {
        Value::Object(map)
            if map.len() == 1 && map.get("sealed").and_then(Value::as_str) == Some(name) =>
        {
            let mut shown = Map::new();
            shown.insert("sealed".into(), json!(name));
            shown.insert("fingerprint".into(), json!(fingerprint));
            *value = Value::Object(shown);
        }
        Value::Object(map) => map
            .values_mut()
            .for_each(|inner| replace_fingerprint(inner, name, fingerprint)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|inner| replace_fingerprint(inner, name, fingerprint)),
        _ => {}
    }
}

/// A field of the configuration's `[[integrations]]` entry as the API names it (camelCase; the
/// failover section is the seed's `failoverConfiguration`); the vendor's own settings keep their
/// names.
pub fn api_field(field: &str) -> String {
    if field == "settings" || field.starts_with("settings.") || field.starts_with("settings[") {
        return field.to_owned();
    }
    match field {
        "id" => return "integrationId".to_owned(),
        "organization" => return "organizationId".to_owned(),
        "kind" => return "system".to_owned(),
        _ => {}
    }
    let field = field
        .replacen(
            "failover.targets",
            "failoverConfiguration.backupIntegrations",
            1,
        )
        .replacen("failover.", "failoverConfiguration.", 1);
    field
        .split('.')
        .map(|segment| {
            let mut camel = String::with_capacity(segment.len());
            let mut upper = false;
            for c in segment.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    camel.extend(c.to_uppercase());
                    upper = false;
                } else {
                    camel.push(c);
                }
            }
            camel
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_taken_out_where_they_are_and_references_refused() {
        let mut settings = json!({
            "url": "https://hooks.example.com/wedsync",
            "secret": {"value": "whsec_abc"},
            "oauth": {"client_secret": {"value": " s3cret "}}
        });
        let mut secrets = Vec::new();
        take_secrets(&mut settings, "settings", &mut secrets).unwrap();
        let names: Vec<(&str, &str)> = secrets
            .iter()
            .map(|(name, secret)| (name.as_str(), secret.expose()))
            .collect();
        assert_eq!(
            names,
            [
                ("settings.oauth.client_secret", "s3cret"),
                ("settings.secret", "whsec_abc")
            ]
        );
        assert_eq!(settings["secret"], json!({"sealed": "settings.secret"}));
        assert!(!settings.to_string().contains("whsec_abc"));
        let mut names = Vec::new();
        sealed_names(&settings, &mut names);
        assert_eq!(names, ["settings.oauth.client_secret", "settings.secret"]);
        replace_sealed(
            &mut settings,
            "settings.secret",
            &Secret::new("whsec_abc".into()),
        );
        assert_eq!(settings["secret"], json!({"value": "whsec_abc"}));

        for (reference, field) in [
            (json!({"token": {"env": "HOME"}}), "settings.token"),
            (
                json!({"list": [{"file": "/etc/passwd"}]}),
                "settings.list[0]",
            ),
            (json!({"token": {"value": "  "}}), "settings.token.value"),
        ] {
            let mut settings = reference;
            let err = take_secrets(&mut settings, "settings", &mut Vec::new()).unwrap_err();
            assert_eq!(err.field, field);
        }
    }

    #[test]
    fn fields_are_named_as_the_api_names_them() {
        for (internal, api) in [
            ("rate_limit.per_second", "rateLimit.perSecond"),
            ("rate_limit.emergency_reserve", "rateLimit.emergencyReserve"),
            ("retry.max_retry_after", "retry.maxRetryAfter"),
            (
                "failover.targets",
                "failoverConfiguration.backupIntegrations",
            ),
            (
                "failover.emergency_after_attempts",
                "failoverConfiguration.emergencyAfterAttempts",
            ),
            ("settings.base_url", "settings.base_url"),
            ("kind", "system"),
            ("timeout", "timeout"),
        ] {
            assert_eq!(api_field(internal), api);
        }
    }
}
