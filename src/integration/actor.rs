//! The integration actor: the glue between the mailbox, the breaker and limiter, the connector
//! and the store.
//!
//! HTTP calls run in spawned tasks that report back as messages, so `Drain`, emergencies and
//! new work never wait behind a slow vendor. A connector that panics fails the actor on purpose
//! (its state is suspect): the supervisor restarts it and the new incarnation rebuilds its
//! mailbox from the store, where the panicking attempt was counted first, so a poison message
//! ends up dead-lettered instead of crash-looping forever.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::Rng;

use super::mailbox::{Job, Mailbox};
use super::metrics::Outcome;
use super::recovery::{Ending, Recovery, RecoveryPolicy};
use super::retry::RetryPolicy;
use super::{IntegrationRuntime, Registry};
use crate::connectors::{Connector, ConnectorError, ConnectorKit, Delivery, Disposition, Receipt};
use crate::store::{now_millis, Settlement, Store};
use crate::vendors::ConnectorTarget;
use crate::wedsync::Lane;

pub struct IntegrationActor;

pub struct IntegrationArgs {
    pub runtime: Arc<IntegrationRuntime>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub kit: ConnectorKit,
}

pub enum IntegrationMsg {
    /// New deliveries (fresh, replayed or handed over).
    Enqueue(Vec<Job>),
    /// Start whatever attempts are due and allowed.
    Pump,
    AttemptDone {
        delivery_id: i64,
        result: Result<Receipt, ConnectorError>,
        latency: Duration,
    },
    AttemptPanicked {
        delivery_id: i64,
        message: String,
    },
    /// Stop starting attempts; answer once none is in flight (shutdown).
    Drain(RpcReplyPort<()>),
    /// Stop if there has been nothing to do for the registry's `idle_after` (sent to itself).
    IdleCheck,
    /// Verify the credential with the vendor's cheapest read (answered from a spawned task).
    CheckConnection(RpcReplyPort<Result<serde_json::Value, ConnectorError>>),
    /// Finish an OAuth app install with the authorization code the vendor sent back and the
    /// install's PKCE verifier, if it has one (spawned task).
    CompleteInstall(
        crate::connectors::oauth::InstallGrant,
        RpcReplyPort<Result<serde_json::Value, ConnectorError>>,
    ),
    /// Subscribe to the vendor's events the configuration names (spawned task).
    SubscribeToEvents(RpcReplyPort<Result<serde_json::Value, ConnectorError>>),
    /// Read how people engaged with a delivery, from its receipt details (spawned task).
    Engagement(
        serde_json::Value,
        RpcReplyPort<Result<serde_json::Value, ConnectorError>>,
    ),
    /// Tell the vendor a delivered notification was acknowledged elsewhere, from the
    /// delivery's receipt details (spawned task).
    Acknowledged(
        serde_json::Value,
        crate::connectors::AcknowledgementNotice,
        RpcReplyPort<Result<serde_json::Value, ConnectorError>>,
    ),
}

pub struct IntegrationState {
    runtime: Arc<IntegrationRuntime>,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    connector: Arc<dyn Connector>,
    mailbox: Mailbox,
    retry: RetryPolicy,
    wake_at: Option<Instant>,
    draining: Option<Vec<RpcReplyPort<()>>>,
    /// Since when there has been nothing queued or in flight, and whether an `IdleCheck` is on
    /// its way.
    idle_since: Option<Instant>,
    idle_check_pending: bool,
}

// === impl IntegrationActor ===

impl Actor for IntegrationActor {
    type Msg = IntegrationMsg;
    type State = IntegrationState;
    type Arguments = IntegrationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IntegrationMsg>,
        args: IntegrationArgs,
    ) -> Result<IntegrationState, ActorProcessingErr> {
        let IntegrationArgs {
            runtime,
            store,
            registry,
            kit,
        } = args;
        let target = ConnectorTarget {
            integration_id: runtime.id(),
            timeout: runtime.config.timeout,
        };
        let connector = runtime
            .config
            .settings
            .build(&target, &kit)
            .map_err(|err| format!("integration {}: {err}", runtime.id()))?;
        // Register before loading, so nothing journaled in between is missed: it is either in
        // the load or sent to this incarnation (the mailbox drops the duplicate).
        registry.register(runtime.id(), myself.clone());
        let mut mailbox = Mailbox::default();
        let now = Instant::now();
        let now_ms = now_millis();
        for open in store.open_deliveries(runtime.id()).await? {
            let job = match Job::from_open(&open) {
                Ok(job) => job,
                Err(err) => {
                    tracing::error!(integration = %runtime.id(), delivery = open.row.delivery_id, error = %err, "stored notification unreadable; dead-lettering");
                    store.settle(vec![Settlement::DeadLettered {
                        delivery_id: open.row.delivery_id,
                        attempts: open.row.attempts,
                        error: format!("stored notification unreadable: {err}"),
                        sequenced: open.row.coordination.is_sequenced(),
                    }]);
                    continue;
                }
            };
            let wait_ms = open
                .row
                .next_attempt_at
                .map_or(0, |at| (at - now_ms).max(0) as u64);
            mailbox.insert(job, now + Duration::from_millis(wait_ms));
        }
        if mailbox.queued() > 0 {
            tracing::info!(integration = %runtime.id(), recovered = mailbox.queued(), "mailbox rebuilt from the store");
        }
        runtime
            .mailbox_depth
            .store(mailbox.queued(), Ordering::Relaxed);
        runtime.in_flight.store(0, Ordering::Relaxed);
        myself.send_message(IntegrationMsg::Pump)?;
        Ok(IntegrationState {
            retry: RetryPolicy::new(runtime.config.retry),
            runtime,
            store,
            registry,
            connector,
            mailbox,
            wake_at: None,
            draining: None,
            idle_since: None,
            idle_check_pending: false,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<IntegrationMsg>,
        state: &mut IntegrationState,
    ) -> Result<(), ActorProcessingErr> {
        state.registry.unregister(state.runtime.id(), &myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<IntegrationMsg>,
        message: IntegrationMsg,
        state: &mut IntegrationState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            IntegrationMsg::Enqueue(jobs) => {
                let now = Instant::now();
                for job in jobs {
                    state.mailbox.insert(job, now);
                }
            }
            IntegrationMsg::Pump => {}
            IntegrationMsg::AttemptDone {
                delivery_id,
                result,
                latency,
            } => state.settle(delivery_id, result, latency),
            IntegrationMsg::AttemptPanicked {
                delivery_id,
                message,
            } => {
                if let Some(job) = state.mailbox.end_lease(delivery_id) {
                    let error =
                        ConnectorError::Unavailable(format!("connector panicked: {message}"));
                    state
                        .runtime
                        .record_attempt(false, Duration::ZERO, Some(error.to_string()));
                    state.recover(job_after_attempt(job), error, Instant::now());
                }
                // Make sure the attempt is counted in the store before the restart reads it.
                state.store.flush().await?;
                return Err(format!(
                    "integration {}: connector panicked: {message}",
                    state.runtime.id()
                )
                .into());
            }
            IntegrationMsg::Drain(reply) => state.draining.get_or_insert_with(Vec::new).push(reply),
            IntegrationMsg::IdleCheck => {
                state.idle_check_pending = false;
                let idle_after = state.registry.idle_after();
                if state
                    .idle_since
                    .is_some_and(|since| since.elapsed() >= idle_after)
                {
                    state.stop_idle(&myself);
                    return Ok(());
                }
            }
            IntegrationMsg::CheckConnection(reply) => {
                let connector = state.connector.clone();
                tokio::spawn(async move {
                    let _ = reply.send(connector.check_connection().await);
                });
            }
            IntegrationMsg::CompleteInstall(grant, reply) => {
                let connector = state.connector.clone();
                tokio::spawn(async move {
                    let installed = connector.complete_install(&grant).await;
                    let _ = reply.send(installed);
                });
            }
            IntegrationMsg::SubscribeToEvents(reply) => {
                let connector = state.connector.clone();
                tokio::spawn(async move {
                    let _ = reply.send(connector.subscribe_to_events().await);
                });
            }
            IntegrationMsg::Engagement(details, reply) => {
                let connector = state.connector.clone();
                tokio::spawn(async move {
                    let _ = reply.send(connector.engagement(&details).await);
                });
            }
            IntegrationMsg::Acknowledged(details, notice, reply) => {
                let connector = state.connector.clone();
                tokio::spawn(async move {
                    let _ = reply.send(connector.acknowledged(&details, &notice).await);
                });
            }
        }
        state.pump(&myself);
        Ok(())
    }
}

fn job_after_attempt(mut job: Job) -> Job {
    job.attempts += 1;
    job
}

// === impl IntegrationState ===

impl IntegrationState {
    /// Starts every attempt that is due and that the breaker, limiter and concurrency allow.
    fn pump(&mut self, myself: &ActorRef<IntegrationMsg>) {
        let now = Instant::now();
        if self.wake_at.is_some_and(|at| at <= now) {
            self.wake_at = None;
        }
        if let Some(waiters) = &mut self.draining {
            if self.mailbox.leased() == 0 {
                waiters.drain(..).for_each(|reply| drop(reply.send(())));
            }
            self.publish_depth();
            return;
        }
        let max_in_flight = self.runtime.config.max_in_flight;
        // Emergencies may exceed the concurrency limit by a reserve of their own.
        let emergency_reserve = (max_in_flight / 4).max(1);
        while let Some(lane) = self.mailbox.peek_due(now) {
            let in_flight = self.mailbox.leased();
            if in_flight >= max_in_flight
                && (lane == Lane::Normal
                    || self.mailbox.leased_in(Lane::Emergency) >= emergency_reserve)
            {
                break; // the next AttemptDone pumps again
            }
            let admitted = self
                .runtime
                .breaker
                .lock()
                .expect("breaker lock")
                .admit(now);
            if let Err(wait) = admitted {
                if self.runtime.config.failover.on_circuit_open {
                    self.hand_due_jobs_to_backup(now, "circuit open");
                }
                self.wake(myself, now + wait);
                break;
            }
            let requests = self.mailbox.peek_next(lane).map_or(1, |job| {
                self.connector.requests_per_delivery(&job.notification)
            });
            let acquired = self
                .runtime
                .limiter
                .lock()
                .expect("limiter lock")
                .try_acquire(lane, now, requests);
            if let Err(wait) = acquired {
                self.runtime
                    .breaker
                    .lock()
                    .expect("breaker lock")
                    .record_neutral();
                self.wake(myself, now + wait);
                break;
            }
            self.runtime.metrics().count_vendor_requests(requests);
            let job = self.mailbox.lease_next(lane).expect("peeked a due job");
            self.spawn_attempt(myself, job);
        }
        if let Some(next) = self.mailbox.next_due() {
            if next > now {
                self.wake(myself, next);
            }
        }
        self.note_idleness(myself);
        self.publish_depth();
    }

    /// Notes whether there is work; with none, makes sure an `IdleCheck` comes.
    fn note_idleness(&mut self, myself: &ActorRef<IntegrationMsg>) {
        let idle =
            self.mailbox.queued() == 0 && self.mailbox.leased() == 0 && self.draining.is_none();
        if !idle {
            self.idle_since = None;
            return;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        if !self.idle_check_pending {
            self.idle_check_pending = true;
            let due =
                (since + self.registry.idle_after()).saturating_duration_since(Instant::now());
            myself.send_after(due, || IntegrationMsg::IdleCheck);
        }
    }

    /// Stops this actor after a quiet period: it leaves the registry first, so a delivery from
    /// now on starts a new one; one journaled just before is found in the store and starts it too.
    fn stop_idle(&self, myself: &ActorRef<IntegrationMsg>) {
        let id = self.runtime.id().to_owned();
        self.registry.unregister(&id, myself);
        let (store, registry) = (self.store.clone(), self.registry.clone());
        tokio::spawn(async move {
            if store.has_open_deliveries(&id).await.unwrap_or(true) {
                registry.wake(&id);
            }
        });
        tracing::debug!(integration = %self.runtime.id(), "integration idle; its actor stops until the next delivery");
        myself.stop(Some("idle".to_owned()));
    }

    fn publish_depth(&self) {
        let depth = self.mailbox.queued() + self.mailbox.leased();
        self.runtime.mailbox_depth.store(depth, Ordering::Relaxed);
        self.runtime
            .in_flight
            .store(self.mailbox.leased(), Ordering::Relaxed);
    }

    /// Schedules a `Pump` at `at`, unless one is already due sooner.
    fn wake(&mut self, myself: &ActorRef<IntegrationMsg>, at: Instant) {
        if self.wake_at.is_some_and(|existing| existing <= at) {
            return;
        }
        self.wake_at = Some(at);
        myself.send_after(at.saturating_duration_since(Instant::now()), || {
            IntegrationMsg::Pump
        });
    }

    fn spawn_attempt(&self, myself: &ActorRef<IntegrationMsg>, job: Job) {
        let connector = self.connector.clone();
        let myself = myself.clone();
        let delivery = Delivery {
            delivery_id: job.delivery_id,
            attempt: job.attempts + 1,
            notification: job.notification,
        };
        // The connector's own timeout bounds the call; this one only guards against a connector
        // that ignores it.
        let backstop = self.runtime.config.timeout + Duration::from_secs(5);
        tokio::spawn(async move {
            let started = Instant::now();
            let delivery_id = delivery.delivery_id;
            let attempt = tokio::spawn(async move {
                match tokio::time::timeout(backstop, connector.deliver(&delivery)).await {
                    Ok(result) => result,
                    Err(_) => Err(ConnectorError::Unavailable(
                        "attempt exceeded its timeout".into(),
                    )),
                }
            });
            let message = match attempt.await {
                Ok(result) => IntegrationMsg::AttemptDone {
                    delivery_id,
                    result,
                    latency: started.elapsed(),
                },
                Err(join_error) => IntegrationMsg::AttemptPanicked {
                    delivery_id,
                    message: panic_text(join_error),
                },
            };
            // If the actor is gone, the delivery is still a row in the store; the next
            // incarnation sends it again (at-least-once).
            let _ = myself.send_message(message);
        });
    }

    fn settle(
        &mut self,
        delivery_id: i64,
        result: Result<Receipt, ConnectorError>,
        latency: Duration,
    ) {
        let Some(job) = self.mailbox.end_lease(delivery_id) else {
            return;
        };
        let job = job_after_attempt(job);
        let now = Instant::now();
        let metrics = self.runtime.metrics();
        metrics.record_attempt_duration(latency.as_secs_f64());
        match result {
            Ok(receipt) => {
                self.runtime
                    .breaker
                    .lock()
                    .expect("breaker lock")
                    .record_success();
                self.runtime.record_attempt(true, latency, None);
                let age_ms = (now_millis() - job.created_at).max(0) as f64;
                metrics.record_intake_to_delivery(job.lane(), age_ms / 1000.0);
                metrics.count(job.lane(), Outcome::Delivered);
                self.store.settle(vec![Settlement::Delivered {
                    delivery_id,
                    attempts: job.attempts,
                    receipt: receipt.id,
                    details: receipt.details.map(|details| details.to_string()),
                    sequenced: job.coordination.is_sequenced(),
                }]);
            }
            Err(error) => {
                tracing::warn!(integration = %self.runtime.id(), delivery = delivery_id, attempt = job.attempts, error = %error, "delivery attempt failed");
                metrics.count_failure(error.kind());
                self.runtime
                    .record_attempt(false, latency, Some(error.to_string()));
                {
                    let mut breaker = self.runtime.breaker.lock().expect("breaker lock");
                    if error.is_vendor_failure() {
                        breaker.record_failure(now);
                    } else {
                        breaker.record_neutral();
                    }
                }
                if let Disposition::Retry { after: Some(wait) } = error.disposition() {
                    let hold = wait.min(self.runtime.config.retry.max_retry_after);
                    self.runtime
                        .limiter
                        .lock()
                        .expect("limiter lock")
                        .hold_until(now + hold);
                }
                self.recover(job, error, now);
            }
        }
    }

    /// Carries out what the recovery policy decides after a failed attempt.
    fn recover(&mut self, job: Job, error: ConnectorError, now: Instant) {
        let age = Duration::from_millis((now_millis() - job.created_at).max(0) as u64);
        let decision = self
            .recovery()
            .after_failure(&job, &error, age, rand::thread_rng().gen());
        match decision {
            Recovery::RetryAfter(delay) => self.requeue(job, &error, delay, now),
            Recovery::RefreshCredentials => match self.connector.refresh_credentials() {
                Ok(()) => {
                    let mut job = job;
                    job.credentials_refreshed = true;
                    self.requeue(job, &error, Duration::ZERO, now);
                }
                Err(refresh_error) => {
                    let reason =
                        format!("{error}; reloading the credential failed: {refresh_error}");
                    let ending = self.recovery().give_up(&job, reason);
                    self.end(job, ending);
                }
            },
            Recovery::End(ending) => self.end(job, ending),
        }
    }

    /// Ends a delivery here as decided: handed to a backup, or dead-lettered.
    fn end(&mut self, job: Job, ending: Ending) {
        match ending {
            Ending::FailOver { reason } => self.fail_over(job, reason),
            Ending::DeadLetter { reason } => self.dead_letter(job, reason),
        }
    }

    fn recovery(&self) -> RecoveryPolicy<'_> {
        RecoveryPolicy {
            retry: &self.retry,
            failover: &self.runtime.config.failover,
        }
    }

    fn requeue(&mut self, job: Job, error: &ConnectorError, delay: Duration, now: Instant) {
        self.runtime.metrics().count(job.lane(), Outcome::Retrying);
        self.store.settle(vec![Settlement::Retrying {
            delivery_id: job.delivery_id,
            attempts: job.attempts,
            next_attempt_at: now_millis() + delay.as_millis() as i64,
            error: error.to_string(),
        }]);
        self.mailbox.requeue(job, now + delay);
    }

    fn dead_letter(&mut self, job: Job, reason: String) {
        tracing::error!(integration = %self.runtime.id(), delivery = job.delivery_id, %reason, "delivery dead-lettered");
        self.runtime
            .metrics()
            .count(job.lane(), Outcome::DeadLettered);
        self.store.settle(vec![Settlement::DeadLettered {
            delivery_id: job.delivery_id,
            attempts: job.attempts,
            error: reason,
            sequenced: job.coordination.is_sequenced(),
        }]);
    }

    fn hand_due_jobs_to_backup(&mut self, now: Instant, reason: &str) {
        if self.runtime.config.failover.targets.is_empty() {
            return;
        }
        for job in self.mailbox.take_due(now) {
            if !self.recovery().may_fail_over(&job) {
                // A backup's delivery, or one whose routing forbids failover: it waits for this
                // circuit instead of bouncing on.
                self.mailbox
                    .requeue(job, now + self.runtime.config.breaker.open_for);
            } else {
                self.fail_over(job, reason.to_owned());
            }
        }
    }

    fn fail_over(&mut self, job: Job, reason: String) {
        let now = Instant::now();
        let targets = &self.runtime.config.failover.targets;
        // Prefer a backup whose own circuit is not open.
        let backup = targets
            .iter()
            .find(|id| {
                self.registry
                    .runtime(id)
                    .is_some_and(|r| r.circuit_state(now) != super::CircuitState::Open)
            })
            .unwrap_or(&targets[0])
            .clone();
        tracing::warn!(integration = %self.runtime.id(), delivery = job.delivery_id, %backup, %reason, "failing over");
        self.runtime
            .metrics()
            .count(job.lane(), Outcome::FailedOver);
        let store = self.store.clone();
        let registry = self.registry.clone();
        tokio::spawn(async move {
            match store
                .fail_over(job.delivery_id, job.attempts, reason, backup.clone())
                .await
            {
                Ok(row) => registry.dispatch(&backup, vec![Job::from_row(&row, job.notification)]),
                Err(err) => {
                    tracing::error!(delivery = job.delivery_id, error = %err, "failover not recorded; the delivery is retried here after restart")
                }
            }
        });
    }
}

fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic with a non-text payload".to_owned()),
        Err(error) => format!("attempt task cancelled: {error}"),
    }
}
