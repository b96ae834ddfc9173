//! Integration instances: one supervised actor per configured integration, owning its connector,
//! rate limiter, circuit breaker and durable retry mailbox.
//!
//! [`IntegrationRuntime`] holds what must outlive one incarnation of the actor (breaker, limiter,
//! health figures), so a restart keeps them; the mailbox itself is rebuilt from the store. The
//! [`Registry`] is how the rest of Herald reaches the live actors. Policy lives in plain structs
//! (`limiter`, `breaker`, `retry`, `recovery`, `mailbox`) that take `now` and do no I/O; `actor`
//! is the glue.

pub mod actor;
pub mod breaker;
pub mod limiter;
pub mod mailbox;
pub mod metrics;
pub mod recovery;
pub mod retry;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ractor::ActorRef;
use serde::Serialize;
use tokio::sync::Notify;

pub use actor::{IntegrationActor, IntegrationArgs, IntegrationMsg};
pub use breaker::{Breaker, CircuitState};
pub use limiter::Limiter;
pub use mailbox::{Job, Mailbox};
pub use retry::{RetryDecision, RetryPolicy};

use crate::config::IntegrationConfig;
use crate::store::{now_millis, DeliveryRow, OpenDelivery, SettledDelivery, Store, UnixMillis};
use crate::wedsync::WeddingNotification;

/// How many recent attempts the error rate and latency percentiles are computed over.
const HEALTH_WINDOW: usize = 512;

/// The part of an integration that survives its actor's restarts.
pub struct IntegrationRuntime {
    pub config: IntegrationConfig,
    /// Registered on the first delivery: an idle integration costs no metric series.
    metrics: OnceLock<metrics::IntegrationMetrics>,
    pub breaker: Mutex<Breaker>,
    pub limiter: Mutex<Limiter>,
    health: Mutex<HealthStats>,
    /// Jobs in the mailbox, queued or out on an attempt (kept by the actor).
    pub mailbox_depth: AtomicUsize,
    pub in_flight: AtomicUsize,
    /// Set by the health monitor when the supervisor gave up on this integration's actor.
    pub supervision_failure: Mutex<Option<String>>,
}

#[derive(Default)]
struct HealthStats {
    last_success_at: Option<UnixMillis>,
    last_failure_at: Option<UnixMillis>,
    last_error: Option<String>,
    /// Recent attempts: (succeeded, latency).
    recent: VecDeque<(bool, Duration)>,
}

/// The seed's `monitorIntegrationHealth` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationHealth {
    pub integration_id: String,
    pub vendor: &'static str,
    /// `healthy`, `degraded` or `down`.
    pub status: &'static str,
    pub circuit_state: CircuitState,
    #[schema(value_type = Option<i64>)]
    pub last_success_at: Option<UnixMillis>,
    #[schema(value_type = Option<i64>)]
    pub last_failure_at: Option<UnixMillis>,
    pub last_error: Option<String>,
    /// Failed share of the recent attempts, 0 to 1.
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub mailbox_depth: usize,
    pub in_flight: usize,
    pub supervision_failure: Option<String>,
}

// === impl IntegrationRuntime ===

impl IntegrationRuntime {
    pub fn new(config: IntegrationConfig) -> Self {
        let now = Instant::now();
        Self {
            metrics: OnceLock::new(),
            breaker: Mutex::new(Breaker::new(config.breaker)),
            limiter: Mutex::new(Limiter::new(&config.rate_limit, now)),
            health: Mutex::new(HealthStats::default()),
            mailbox_depth: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            supervision_failure: Mutex::new(None),
            config,
        }
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn vendor(&self) -> &'static str {
        self.config.vendor.kind()
    }

    /// Whether the integration has delivered (or tried to) since Herald started: only those
    /// carry metric series.
    pub fn has_metrics(&self) -> bool {
        self.metrics.get().is_some()
    }

    pub fn metrics(&self) -> &metrics::IntegrationMetrics {
        self.metrics
            .get_or_init(|| metrics::IntegrationMetrics::new(&self.config.id, self.vendor()))
    }

    pub fn circuit_state(&self, now: Instant) -> CircuitState {
        self.breaker.lock().expect("breaker lock").state(now)
    }

    /// Records one attempt's outcome for health reporting.
    pub fn record_attempt(&self, succeeded: bool, latency: Duration, error: Option<String>) {
        let mut health = self.health.lock().expect("health lock");
        let now = now_millis();
        if succeeded {
            health.last_success_at = Some(now);
        } else {
            health.last_failure_at = Some(now);
            health.last_error = error;
        }
        if health.recent.len() == HEALTH_WINDOW {
            health.recent.pop_front();
        }
        health.recent.push_back((succeeded, latency));
    }

    pub fn health(&self, now: Instant) -> IntegrationHealth {
        let circuit_state = self.circuit_state(now);
        let supervision_failure = self
            .supervision_failure
            .lock()
            .expect("supervision lock")
            .clone();
        let health = self.health.lock().expect("health lock");
        let attempts = health.recent.len();
        let failures = health.recent.iter().filter(|(ok, _)| !ok).count();
        let error_rate = if attempts == 0 {
            0.0
        } else {
            failures as f64 / attempts as f64
        };
        let mut latencies: Vec<Duration> =
            health.recent.iter().map(|(_, latency)| *latency).collect();
        latencies.sort_unstable();
        let percentile = |p: f64| -> Option<f64> {
            let index = ((latencies.len() as f64 * p).ceil() as usize).checked_sub(1)?;
            latencies.get(index).map(|d| d.as_secs_f64() * 1000.0)
        };
        let status = if supervision_failure.is_some() || circuit_state == CircuitState::Open {
            "down"
        } else if circuit_state == CircuitState::HalfOpen || error_rate > 0.1 {
            "degraded"
        } else {
            "healthy"
        };
        IntegrationHealth {
            integration_id: self.config.id.clone(),
            vendor: self.vendor(),
            status,
            circuit_state,
            last_success_at: health.last_success_at,
            last_failure_at: health.last_failure_at,
            last_error: health.last_error.clone(),
            error_rate,
            latency_p50_ms: percentile(0.5),
            latency_p99_ms: percentile(0.99),
            mailbox_depth: self.mailbox_depth.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            supervision_failure,
        }
    }
}

/// Where the live integration actors and their runtimes are found. Integrations come and go
/// while Herald runs (WedSync manages them through the API), and an integration with nothing to
/// deliver has no actor: its actor starts on its first delivery ([`Registry::wake`]) and stops
/// after `idle_after` without work; its runtime (breaker, limiter, health) stays here.
pub struct Registry {
    runtimes: DashMap<String, Arc<IntegrationRuntime>>,
    actors: DashMap<String, ActorRef<IntegrationMsg>>,
    settle_waiters: DashMap<(String, String), Arc<Notify>>,
    /// How an integration's actor is started on demand (set by the supervision tree).
    starter: OnceLock<Starter>,
    /// The store, once settlements are followed: deliveries for an integration Herald no longer
    /// has are dead-lettered there.
    store: OnceLock<Arc<dyn Store>>,
    /// Integrations whose actor is being started.
    waking: DashMap<String, ()>,
    idle_after: Duration,
}

/// Starts an integration's actor under its supervisor; the error says why it did not start.
pub type Starter = Box<
    dyn Fn(
            Arc<IntegrationRuntime>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// How long [`Registry::awake_actor`] waits for a woken actor.
const WAKE_WAIT: Duration = Duration::from_secs(5);

// === impl Registry ===

impl Registry {
    /// The registry of `integrations`, whose actors stop after `idle_after` without work.
    pub fn new(integrations: &[IntegrationConfig], idle_after: Duration) -> Self {
        let runtimes = integrations
            .iter()
            .map(|config| {
                (
                    config.id.clone(),
                    Arc::new(IntegrationRuntime::new(config.clone())),
                )
            })
            .collect();
        Self {
            runtimes,
            actors: DashMap::new(),
            settle_waiters: DashMap::new(),
            starter: OnceLock::new(),
            store: OnceLock::new(),
            waking: DashMap::new(),
            idle_after,
        }
    }

    /// How long an integration's actor waits without work before it stops.
    pub fn idle_after(&self) -> Duration {
        self.idle_after
    }

    /// Installs how actors are started on demand; the first one installed stays.
    pub fn set_starter(&self, starter: Starter) {
        let _ = self.starter.set(starter);
    }

    /// Starts the integration's actor if it is not running (or already starting). Its mailbox
    /// is read from the store when it starts, so whatever was journaled for it is sent.
    pub fn wake(self: &Arc<Self>, integration_id: &str) {
        if self.actors.contains_key(integration_id)
            || self.waking.insert(integration_id.to_owned(), ()).is_some()
        {
            return;
        }
        let (Some(runtime), Some(_)) = (self.runtime(integration_id), self.starter.get()) else {
            self.waking.remove(integration_id);
            return;
        };
        let registry = self.clone();
        tokio::spawn(async move {
            let id = runtime.id().to_owned();
            // An actor that just stopped for idleness may still be on its way out: its
            // supervisor takes the new start once it has seen it stop.
            for _ in 0..200 {
                let Some(starter) = registry.starter.get() else {
                    break;
                };
                match starter(runtime.clone()).await {
                    Err(reason) if reason.contains("exists already") => {
                        tokio::time::sleep(Duration::from_millis(10)).await
                    }
                    Err(reason) => {
                        tracing::error!(integration = %id, %reason, "integration did not start; its deliveries wait in the store");
                        break;
                    }
                    Ok(()) => break,
                }
            }
            registry.waking.remove(&id);
        });
    }

    /// The integration's actor, started if it was not running (waiting up to five seconds for
    /// it); `None` for an integration Herald does not have or whose actor did not start.
    pub async fn awake_actor(
        self: &Arc<Self>,
        integration_id: &str,
    ) -> Option<ActorRef<IntegrationMsg>> {
        self.runtime(integration_id)?;
        let deadline = Instant::now() + WAKE_WAIT;
        loop {
            if let Some(actor) = self.actor(integration_id) {
                return Some(actor);
            }
            self.wake(integration_id);
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn runtime(&self, integration_id: &str) -> Option<Arc<IntegrationRuntime>> {
        self.runtimes
            .get(integration_id)
            .map(|entry| entry.value().clone())
    }

    pub fn runtimes(&self) -> Vec<Arc<IntegrationRuntime>> {
        self.runtimes
            .iter()
            .map(|entry| entry.value().clone())
            .collect()
    }

    /// The runtimes of integrations that have delivered since Herald started (those with metric
    /// series), without copying the others.
    pub fn runtimes_with_metrics(&self) -> Vec<Arc<IntegrationRuntime>> {
        self.runtimes
            .iter()
            .filter(|entry| entry.value().has_metrics())
            .map(|entry| entry.value().clone())
            .collect()
    }

    /// Adds (or replaces, keeping nothing of the old one) an integration's runtime.
    pub fn add(&self, config: IntegrationConfig) -> Arc<IntegrationRuntime> {
        let runtime = Arc::new(IntegrationRuntime::new(config));
        self.runtimes
            .insert(runtime.id().to_owned(), runtime.clone());
        runtime
    }

    /// Dead-letters jobs whose integration is gone, through the normal settlement (a sequence
    /// goes on, or cancels, as after any failure).
    fn dead_letter_orphans(&self, integration_id: &str, jobs: Vec<Job>) {
        let Some(store) = self.store.get() else {
            return;
        };
        tracing::warn!(integration = %integration_id, deliveries = jobs.len(), "deliveries for an integration Herald no longer has are dead-lettered");
        store.settle(
            jobs.into_iter()
                .map(|job| crate::store::Settlement::DeadLettered {
                    delivery_id: job.delivery_id,
                    attempts: job.attempts,
                    error: crate::store::REMOVED_REASON.to_owned(),
                    sequenced: job.coordination.is_sequenced(),
                })
                .collect(),
        );
    }

    /// Forgets an integration: deliveries for it are dead-lettered from now on.
    pub fn remove(&self, integration_id: &str) {
        self.runtimes.remove(integration_id);
    }

    /// Forgets the integration's actor, which was stopped.
    pub fn forget_actor(&self, integration_id: &str) {
        self.actors.remove(integration_id);
    }

    /// Hands jobs to the integration's live actor, or starts it (it reads them from the store,
    /// where they are rows). If it is between incarnations the jobs are not lost either: the
    /// next incarnation loads them when it starts.
    /// Jobs for an integration Herald no longer has (removed through the API, or from the
    /// configuration file) are dead-lettered with the reason instead.
    pub fn dispatch(self: &Arc<Self>, integration_id: &str, jobs: Vec<Job>) {
        if !self.runtimes.contains_key(integration_id) {
            self.dead_letter_orphans(integration_id, jobs);
            return;
        }
        let Some(actor) = self.actors.get(integration_id).map(|entry| entry.clone()) else {
            self.wake(integration_id);
            return;
        };
        if actor.send_message(IntegrationMsg::Enqueue(jobs)).is_err() {
            tracing::debug!(integration = %integration_id, "integration restarting; its jobs wait in the store");
        }
    }

    /// The integration's live actor, if it is running.
    pub fn actor(&self, integration_id: &str) -> Option<ActorRef<IntegrationMsg>> {
        self.actors.get(integration_id).map(|entry| entry.clone())
    }

    pub fn live_actors(&self) -> Vec<ActorRef<IntegrationMsg>> {
        self.actors
            .iter()
            .map(|entry| entry.value().clone())
            .collect()
    }

    fn register(&self, integration_id: &str, actor: ActorRef<IntegrationMsg>) {
        self.actors.insert(integration_id.to_owned(), actor);
    }

    fn unregister(&self, integration_id: &str, actor: &ActorRef<IntegrationMsg>) {
        self.actors.remove_if(integration_id, |_, current| {
            current.get_id() == actor.get_id()
        });
    }

    /// Returns a handle that is notified whenever a delivery of this notification settles.
    pub fn watch_settlements(&self, organization: &str, notification_id: &str) -> Arc<Notify> {
        self.settle_waiters
            .entry((organization.to_owned(), notification_id.to_owned()))
            .or_default()
            .clone()
    }

    pub fn stop_watching(&self, organization: &str, notification_id: &str) {
        self.settle_waiters
            .remove(&(organization.to_owned(), notification_id.to_owned()));
    }

    fn notify_settled(&self, delivery: &SettledDelivery) {
        if self.settle_waiters.is_empty() {
            return;
        }
        if let Some(waiter) = self.settle_waiters.get(&(
            delivery.organization.clone(),
            delivery.notification_id.clone(),
        )) {
            waiter.notify_waiters();
        }
    }

    /// Follows the settlements the store commits, until the store is gone: wakes whoever waits
    /// on a notification whose delivery settled (a routing's `?wait=`), and hands the delivery a
    /// sequenced routing released to its integration. Subscribed before it returns, so nothing
    /// committed after the call is missed.
    pub fn follow_settlements(self: &Arc<Self>, store: Arc<dyn Store>) {
        let _ = self.store.set(store.clone());
        let mut committed = store.settled_deliveries();
        let registry = self.clone();
        tokio::spawn(async move {
            while let Some(group) = committed.recv().await {
                for delivery in group.iter() {
                    if delivery.state.is_settled() {
                        registry.notify_settled(delivery);
                    }
                    if delivery.sequenced {
                        registry
                            .send_next_in_sequence(&*store, delivery.delivery_id)
                            .await;
                    }
                }
            }
        });
    }

    /// Hands the deliveries released by a sequenced delivery's committed settlement to their
    /// integration. If that fails, or Herald stops first, they are loaded with their
    /// integration's mailbox at the next start.
    async fn send_next_in_sequence(self: &Arc<Self>, store: &dyn Store, delivery_id: i64) {
        match store.next_in_sequence(delivery_id).await {
            Ok(released) => {
                for open in released {
                    match Job::from_open(&open) {
                        Ok(job) => self.dispatch(&open.row.integration_id, vec![job]),
                        Err(err) => {
                            tracing::error!(delivery = open.row.delivery_id, error = %err, "stored notification unreadable; its integration dead-letters it at its next start")
                        }
                    }
                }
            }
            Err(err) => {
                tracing::error!(delivery = delivery_id, error = %err, "the next delivery of the sequence was not read; it is sent at the next start")
            }
        }
    }
}

impl Job {
    /// The job for a freshly journaled (or replayed, or handed-over) delivery row.
    pub fn from_row(row: &DeliveryRow, notification: Arc<WeddingNotification>) -> Self {
        Job {
            delivery_id: row.delivery_id,
            notification,
            attempts: row.attempts,
            created_at: row.created_at,
            emergency: row.emergency,
            is_failover: row.route == "failover",
            credentials_refreshed: false,
            coordination: row.coordination,
        }
    }

    /// The job for an open delivery read back from the store, with the notification it carries.
    pub fn from_open(open: &OpenDelivery) -> Result<Self, serde_json::Error> {
        let notification: WeddingNotification = serde_json::from_str(&open.body)?;
        Ok(Self::from_row(&open.row, Arc::new(notification)))
    }
}
