//! Herald: the WedSync notification integration orchestrator.
//!
//! WedSync posts notifications (timeline changes, payments, client messages, wedding-day
//! emergencies); Herald journals them durably, routes them to each organization's integrations
//! and delivers them in each vendor's own wire format, retrying, rate limiting, breaking circuits
//! and failing over, with emergencies in a lane of their own end to end.
//!
//! Crate map:
//! - [`wedsync`]: the platform's JSON vocabulary and its validation; [`condition`] (CEL) and
//!   [`template`] (minijinja): what callers write about notifications, checked and bounded.
//! - [`secret`]: where secrets live and how they are read (a leaf, like `wedsync`).
//! - [`config`]: layered configuration and its validation; [`catalog`]: integrations WedSync
//!   creates and removes through the API, applied while Herald runs.
//! - [`store`]: the durable journal and delivery mailbox (SQLite, group commit).
//! - [`router`]: routing rules and the Router actors (plan, journal, dispatch).
//! - [`integration`]: one supervised actor per integration, with its limiter, breaker and retries.
//! - [`connectors`]: what every connector is (the trait, errors, the outbound HTTP policy).
//! - [`vendors`]: the vendor registry, one folder per vendor (settings, connector, simulator).
//! - [`tree`]: the supervision tree; [`health`]: the health monitor actor; [`polling`]: the
//!   poller of the vendors Herald reads on a schedule.
//! - [`api`]: the HTTP API; [`telemetry`]: logs and Prometheus metrics.
//! - [`sandbox`]: what every vendor simulator shares (server, faults, recorder, contract checks);
//!   [`sandbox_command`]: `herald sandbox`; [`demo`]: `herald demo`.

/// The allocator of every binary that links Herald (the daemon, its tests and benchmarks, so the
/// benchmarks measure what runs): glibc's malloc spent about a sixth of a single-post load in
/// allocation and consolidation; mimalloc took single posts from 4,800 to 7,400/s and end to end
/// from 11,000 to 21,000/s on the development machine (README, Dependency notes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod catalog;
pub mod condition;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod health;
pub mod integration;
pub mod polling;
pub mod router;
pub mod sandbox;
pub mod sandbox_command;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod tree;
pub mod vault;
pub mod vendors;
pub mod wedsync;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::TcpListener;

use crate::api::AppState;
use crate::catalog::Catalog;
use crate::config::{Config, StoreConfig};
use crate::connectors::{ConnectorKit, OutboundClient, OutboundError};
use crate::integration::{IntegrationMsg, Registry};
use crate::router::RoutingTable;
use crate::store::{PostgresStore, SqliteStore, Store, StoreError};
use crate::tree::TreeArgs;
use crate::vault::{Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error("security.credentials_key: {0}")]
    CredentialsKey(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A component could not start: the path of supervisors to it (`integrations/hook`) and its
    /// own reason, said once (see [`RunError::from`]). `check-config` names every such problem.
    #[error("{component} could not start: {reason} (`herald check-config` names every unreadable secret and setting)")]
    Start { component: String, reason: String },
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("supervision tree stopped: a component kept crashing past its restart limit")]
    Crashed,
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("integration {0:?} is in the configuration file and was also created through the API; rename the configured one")]
    DuplicateIntegration(String),
}

impl From<ractor::SpawnErr> for RunError {
    /// Reads the chain of start failures down to the component that failed: each supervisor
    /// adds its child's name, and only the innermost error says why (ractor's own messages
    /// repeat everything beneath them, so they are skipped).
    fn from(err: ractor::SpawnErr) -> Self {
        let mut path = vec!["herald".to_owned()];
        let mut reason = err.to_string();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(error) = source {
            if let Some(failed) = error.downcast_ref::<supervision::ChildStartFailed>() {
                path.push(failed.child.clone());
            } else if error.source().is_none() {
                reason = error.to_string();
            }
            source = error.source();
        }
        RunError::Start {
            component: path.join("/"),
            reason,
        }
    }
}

/// Opens the store a configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match &config.store {
        StoreConfig::Sqlite { data_dir } => Ok(Arc::new(SqliteStore::open(data_dir)?)),
        StoreConfig::Postgres { url, schema } => {
            let url = url.read().map_err(|reason| StoreError::Open {
                path: "store.url".into(),
                reason,
            })?;
            Ok(Arc::new(
                PostgresStore::connect(url.expose(), schema).await?,
            ))
        }
    }
}

/// The vault a configuration describes (`security.credentials_key`, and the previous keys a
/// rotation still needs), over `store`; `None` when no key is configured.
pub fn open_vault(config: &Config, store: Arc<dyn Store>) -> Result<Option<Vault>, RunError> {
    let Some(key) = &config.credentials_key else {
        return Ok(None);
    };
    let key = key.read().map_err(RunError::CredentialsKey)?;
    let previous = config
        .previous_credentials_keys
        .iter()
        .map(|key| key.read().map_err(RunError::CredentialsKey))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Vault::new(&key, &previous, store)?))
}

/// Runs Herald on `listener` until `shutdown` resolves, then shuts down cleanly: stops taking
/// requests, lets attempts in flight finish for up to `server.shutdown_grace`, and commits
/// everything else to the store for the next start.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let store = open_store(&config).await?;
    let metrics = telemetry::metrics_handle();
    let client = OutboundClient::new(config.allow_private_destinations)?;
    let vault = open_vault(&config, store.clone())?.map(Arc::new);
    let mut integrations = config.integrations.clone();
    let configured: std::collections::HashSet<String> =
        integrations.iter().map(|i| i.id.clone()).collect();
    for managed in Catalog::load(&*store, vault.as_deref()).await? {
        if configured.contains(&managed.id) {
            return Err(RunError::DuplicateIntegration(managed.id));
        }
        integrations.push(managed);
    }
    let registry = Arc::new(Registry::new(&integrations, config.supervision.idle_after));
    registry.follow_settlements(store.clone());
    let table = Arc::new(RoutingTable::from_config(&config));
    Catalog::load_routes(&*store, &registry, &table).await?;
    let kit = ConnectorKit {
        client: client.clone(),
        vault: vault.clone(),
        installation_id: store.installation_id().into(),
        store: store.clone(),
    };
    // Actors start on their first delivery, so the configuration file's integrations are built
    // once here: an unreadable secret stops Herald now, named, not at some later delivery.
    for integration in &config.integrations {
        let target = vendors::ConnectorTarget {
            integration_id: &integration.id,
            timeout: integration.timeout,
        };
        if let Err(err) = integration.settings.build(&target, &kit) {
            return Err(RunError::Start {
                component: format!("herald/integrations/{}", integration.id),
                reason: format!("integration {}: {err}", integration.id),
            });
        }
    }
    let tree = tree::start(TreeArgs {
        supervision: config.supervision,
        table: table.clone(),
        store: store.clone(),
        registry: registry.clone(),
        kit: kit.clone(),
    })
    .await?;
    let catalog = Arc::new(Catalog::new(
        store.clone(),
        registry.clone(),
        table.clone(),
        kit,
        tree.integrations.clone(),
    ));
    let state = Arc::new(AppState {
        store: store.clone(),
        routers: tree.routers.clone(),
        registry: registry.clone(),
        catalog,
        table,
        metrics,
        key_cache: DashMap::new(),
        limits: api::ServerLimits {
            max_body_bytes: config.server.max_body_bytes,
            header_timeout: config.server.header_timeout,
            body_timeout: config.server.body_timeout,
        },
        allow_private_destinations: config.allow_private_destinations,
        client,
        metrics_token: config.server.metrics_token.clone(),
        vault,
    });
    tracing::info!(address = %listener.local_addr()?, integrations = integrations.len(), "herald is serving");

    let mut root_exit = tree.root_exit;
    let (crashed_tx, crashed_rx) = tokio::sync::oneshot::channel::<bool>();
    let stop = async move {
        let crashed = tokio::select! {
            _ = shutdown => false,
            _ = &mut root_exit => true,
        };
        let _ = crashed_tx.send(crashed);
    };
    let limits = state.limits;
    api::serve(listener, api::routes(state), limits, stop).await?;
    let crashed = crashed_rx.await.unwrap_or(false);

    tracing::info!("intake stopped; draining attempts in flight");
    drain_integrations(&registry, config.server.shutdown_grace).await;
    store.flush().await?;
    tree.root.stop(None);
    tracing::info!("herald stopped");
    if crashed {
        return Err(RunError::Crashed);
    }
    Ok(())
}

/// Asks every integration to stop starting attempts and waits, up to `grace` in all, for those
/// in flight. What is not finished stays pending in the store and is sent after the next start.
async fn drain_integrations(registry: &Registry, grace: Duration) {
    let actors = registry.live_actors();
    let mut waiting = Vec::with_capacity(actors.len());
    for actor in actors {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if actor
            .send_message(IntegrationMsg::Drain(reply.into()))
            .is_ok()
        {
            waiting.push(answer);
        }
    }
    let all = async {
        for answer in waiting {
            let _ = answer.await;
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace ran out; unfinished attempts will be repeated after restart"
        );
    }
}
