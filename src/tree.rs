//! Herald's supervision tree, built on the `supervision` crate:
//!
//! ```text
//! root (one-for-one, escalates: a crash loop here stops the daemon)
//! ├── router-emergency
//! ├── router-normal
//! ├── integrations (one-for-one, gives up on a crash-looping integration alone)
//! │   └── one IntegrationActor per integration with work: those with deliveries in the store
//! │       when Herald starts, and any other on its first delivery (it stops when idle)
//! ├── health-monitor
//! └── poller (reads the vendors Herald follows on a schedule: weather alerts)
//! ```
//!
//! The store writer is not in the tree: it is a thread (SQLite blocks), and a failed journal is
//! fatal to the daemon rather than something to restart around.

use std::sync::Arc;

use ractor::{Actor, ActorRef, SpawnErr};
use supervision::{
    ChildSpec, Intensity, OnExhausted, Restart, RestartBackoff, Slot, Strategy, Supervisor,
    SupervisorArgs, SupervisorMsg,
};
use tokio::task::JoinHandle;

use crate::config::SupervisionConfig;
use crate::connectors::ConnectorKit;
use crate::health::{HealthMonitor, HealthMonitorArgs};
use crate::integration::{IntegrationActor, IntegrationArgs, IntegrationRuntime, Registry};
use crate::polling::{Poller, PollerArgs};
use crate::router::{Router, RouterArgs, RouterHandle, RoutingTable};
use crate::store::Store;
use crate::wedsync::Lane;

pub struct TreeArgs {
    pub supervision: SupervisionConfig,
    pub table: Arc<RoutingTable>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub kit: ConnectorKit,
}

/// The running tree.
pub struct Tree {
    pub root: ActorRef<SupervisorMsg>,
    pub root_exit: JoinHandle<()>,
    pub routers: RouterHandle,
    /// The supervisor of the integration actors, where integrations created while Herald runs
    /// are started ([`integration_spec`]).
    pub integrations: Slot<ActorRef<SupervisorMsg>>,
}

/// Starts the tree; returns once every child has started.
pub async fn start(args: TreeArgs) -> Result<Tree, SpawnErr> {
    let routers = RouterHandle {
        emergency: Slot::default(),
        normal: Slot::default(),
    };
    let integrations_slot: Slot<ActorRef<SupervisorMsg>> = Slot::default();
    let children = vec![
        router_spec(
            "router-emergency",
            Lane::Emergency,
            &args,
            routers.emergency.clone(),
        ),
        router_spec("router-normal", Lane::Normal, &args, routers.normal.clone()),
        integrations_spec(&args, integrations_slot.clone()),
        health_spec(&args, integrations_slot.clone()),
        poller_spec(&args, routers.clone()),
    ];
    let (root, root_exit) = Actor::spawn(
        None,
        Supervisor,
        supervisor_args(&args.supervision, OnExhausted::Escalate, children),
    )
    .await?;
    install_starter(&args, integrations_slot.clone());
    Ok(Tree {
        root,
        root_exit,
        routers,
        integrations: integrations_slot,
    })
}

fn supervisor_args(
    config: &SupervisionConfig,
    on_exhausted: OnExhausted,
    children: Vec<ChildSpec>,
) -> SupervisorArgs {
    SupervisorArgs {
        strategy: Strategy::OneForOne,
        intensity: Intensity {
            max_restarts: config.max_restarts,
            within: config.within,
        },
        backoff: RestartBackoff {
            initial: config.backoff_initial,
            max: config.backoff_max,
        },
        on_exhausted,
        children,
    }
}

fn router_spec(
    id: &'static str,
    lane: Lane,
    args: &TreeArgs,
    slot: Slot<ActorRef<crate::router::RouterMsg>>,
) -> ChildSpec {
    let (table, store, registry) = (
        args.table.clone(),
        args.store.clone(),
        args.registry.clone(),
    );
    ChildSpec::new(id, Restart::Permanent, move |supervisor| {
        let router_args = RouterArgs {
            lane,
            table: table.clone(),
            store: store.clone(),
            registry: registry.clone(),
            slot: slot.clone(),
        };
        Box::pin(async move {
            Ok(Actor::spawn_linked(None, Router, router_args, supervisor)
                .await?
                .0
                .get_cell())
        })
    })
}

fn integrations_spec(args: &TreeArgs, slot: Slot<ActorRef<SupervisorMsg>>) -> ChildSpec {
    let (store, registry, kit, supervision) = (
        args.store.clone(),
        args.registry.clone(),
        args.kit.clone(),
        args.supervision,
    );
    ChildSpec::new("integrations", Restart::Permanent, move |supervisor| {
        let (store, registry, kit, slot) =
            (store.clone(), registry.clone(), kit.clone(), slot.clone());
        Box::pin(async move {
            // At each (re)start: the integrations with deliveries waiting in the store. The
            // others start on their first delivery.
            let busy = store
                .integrations_with_open_deliveries()
                .await
                .map_err(|err| SpawnErr::StartupFailed(Box::new(err)))?;
            let children = busy
                .iter()
                .filter_map(|id| registry.runtime(id))
                .map(|runtime| {
                    integration_spec(runtime, store.clone(), registry.clone(), kit.clone())
                })
                .collect();
            let supervisor_args = supervisor_args(&supervision, OnExhausted::GiveUp, children);
            let (integrations, _) =
                Actor::spawn_linked(None, Supervisor, supervisor_args, supervisor).await?;
            slot.set(Some(integrations.clone()));
            Ok(integrations.get_cell())
        })
    })
}

/// Lets the registry start an integration's actor on its first delivery, under the
/// integrations supervisor. The registry holds the starter, so the starter holds the registry
/// weakly.
fn install_starter(args: &TreeArgs, integrations: Slot<ActorRef<SupervisorMsg>>) {
    let (store, registry, kit) = (
        args.store.clone(),
        Arc::downgrade(&args.registry),
        args.kit.clone(),
    );
    args.registry.set_starter(Box::new(move |runtime| {
        let (store, registry, kit, integrations) = (
            store.clone(),
            registry.upgrade(),
            kit.clone(),
            integrations.get(),
        );
        Box::pin(async move {
            let (Some(registry), Some(supervisor)) = (registry, integrations) else {
                return Err("Herald is stopping".to_owned());
            };
            let spec = integration_spec(runtime, store, registry, kit);
            ractor::call!(supervisor, SupervisorMsg::StartChild, spec)
                .map_err(|err| err.to_string())?
        })
    }));
}

/// The child spec of one integration's actor, under the integrations supervisor.
pub fn integration_spec(
    runtime: Arc<IntegrationRuntime>,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    kit: ConnectorKit,
) -> ChildSpec {
    // Transient: restarted when it fails, not when it stops after a quiet period.
    ChildSpec::new(
        runtime.id().to_owned(),
        Restart::Transient,
        move |supervisor| {
            let args = IntegrationArgs {
                runtime: runtime.clone(),
                store: store.clone(),
                registry: registry.clone(),
                kit: kit.clone(),
            };
            Box::pin(async move {
                Ok(
                    Actor::spawn_linked(None, IntegrationActor, args, supervisor)
                        .await?
                        .0
                        .get_cell(),
                )
            })
        },
    )
}

fn health_spec(args: &TreeArgs, integrations: Slot<ActorRef<SupervisorMsg>>) -> ChildSpec {
    let registry = args.registry.clone();
    ChildSpec::new("health-monitor", Restart::Permanent, move |supervisor| {
        let monitor_args = HealthMonitorArgs {
            registry: registry.clone(),
            integrations: integrations.clone(),
        };
        Box::pin(async move {
            Ok(
                Actor::spawn_linked(None, HealthMonitor, monitor_args, supervisor)
                    .await?
                    .0
                    .get_cell(),
            )
        })
    })
}

fn poller_spec(args: &TreeArgs, routers: RouterHandle) -> ChildSpec {
    let (registry, table, kit) = (args.registry.clone(), args.table.clone(), args.kit.clone());
    ChildSpec::new("poller", Restart::Permanent, move |supervisor| {
        let poller_args = PollerArgs {
            registry: registry.clone(),
            table: table.clone(),
            routers: routers.clone(),
            kit: kit.clone(),
        };
        Box::pin(async move {
            Ok(Actor::spawn_linked(None, Poller, poller_args, supervisor)
                .await?
                .0
                .get_cell())
        })
    })
}
