//! The health monitor: once a second it publishes each integration's mailbox depth, in-flight
//! attempts and circuit state as Prometheus gauges, and records which integrations the
//! supervisor has given up on, so health reports them as down rather than restarting forever.
//! Reading health (`IntegrationRuntime::health`) never waits for this actor.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use supervision::{ChildStatus, Slot, SupervisorMsg};

use crate::integration::Registry;

const TICK: Duration = Duration::from_secs(1);

pub struct HealthMonitor;

pub struct HealthMonitorArgs {
    pub registry: Arc<Registry>,
    pub integrations: Slot<ActorRef<SupervisorMsg>>,
}

pub enum HealthMonitorMsg {
    Tick,
}

impl Actor for HealthMonitor {
    type Msg = HealthMonitorMsg;
    type State = HealthMonitorArgs;
    type Arguments = HealthMonitorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HealthMonitorMsg>,
        args: HealthMonitorArgs,
    ) -> Result<HealthMonitorArgs, ActorProcessingErr> {
        myself.send_interval(TICK, || HealthMonitorMsg::Tick);
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<HealthMonitorMsg>,
        _: HealthMonitorMsg,
        state: &mut HealthMonitorArgs,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        // Only integrations that have delivered carry series: an idle one costs none.
        for runtime in state.registry.runtimes_with_metrics() {
            let integration = runtime.id().to_owned();
            metrics::gauge!("herald_mailbox_depth", "integration" => integration.clone())
                .set(runtime.mailbox_depth.load(Ordering::Relaxed) as f64);
            metrics::gauge!("herald_in_flight", "integration" => integration.clone())
                .set(runtime.in_flight.load(Ordering::Relaxed) as f64);
            metrics::gauge!("herald_circuit_state", "integration" => integration)
                .set(runtime.circuit_state(now).gauge());
        }
        let Some(integrations) = state.integrations.get() else {
            return Ok(());
        };
        let Ok(reports) = ractor::call_t!(integrations, SupervisorMsg::Children, 500) else {
            return Ok(());
        };
        for report in reports {
            let Some(runtime) = state.registry.runtime(&report.id) else {
                continue;
            };
            let failure = match report.status {
                ChildStatus::Failed { reason } => Some(reason),
                _ => None,
            };
            metrics::gauge!("herald_integration_failed", "integration" => report.id.clone())
                .set(if failure.is_some() { 1.0 } else { 0.0 });
            *runtime
                .supervision_failure
                .lock()
                .expect("supervision lock") = failure;
        }
        Ok(())
    }
}
