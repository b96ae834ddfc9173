//! The poller: reads the vendors Herald follows on a schedule instead of hearing from them
//! (weather alerts), and routes what they report as the organization's own notifications.
//!
//! Once a second it looks at every integration whose vendor is polled, builds its connector once
//! per version of the integration, and starts a poll of each one whose interval has passed and
//! that is not still being read. A poll runs in a task of its own, so a slow vendor holds up
//! neither the others nor the tick; what it answers is validated and accepted through the
//! routers like an inbound event (emergencies through the emergency lane), never routed back to
//! the integration it came from. Duplicates (the same alert read again) are the journal's to
//! recognize: a notification id is accepted once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::connectors::{Connector, ConnectorKit};
use crate::integration::{IntegrationRuntime, Registry};
use crate::router::{RouterHandle, RoutingTable};
use crate::vendors::ConnectorTarget;

const TICK: Duration = Duration::from_secs(1);

pub struct Poller;

pub struct PollerArgs {
    pub registry: Arc<Registry>,
    pub table: Arc<RoutingTable>,
    pub routers: RouterHandle,
    pub kit: ConnectorKit,
}

pub enum PollerMsg {
    Tick,
    /// A poll finished (whatever it found is already accepted or logged).
    Finished {
        integration_id: String,
    },
}

pub struct PollerState {
    args: PollerArgs,
    followed: HashMap<String, Followed>,
}

/// One polled integration: the version it was built from, its connector, and when it is next due.
struct Followed {
    runtime: Arc<IntegrationRuntime>,
    connector: Arc<dyn Connector>,
    interval: Duration,
    next_due: Instant,
    polling: bool,
}

impl Actor for Poller {
    type Msg = PollerMsg;
    type State = PollerState;
    type Arguments = PollerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PollerMsg>,
        args: PollerArgs,
    ) -> Result<PollerState, ActorProcessingErr> {
        myself.send_interval(TICK, || PollerMsg::Tick);
        Ok(PollerState {
            args,
            followed: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PollerMsg>,
        message: PollerMsg,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PollerMsg::Tick => {
                state.follow_the_registry();
                state.start_due_polls(&myself);
            }
            PollerMsg::Finished { integration_id } => {
                if let Some(followed) = state.followed.get_mut(&integration_id) {
                    followed.polling = false;
                    followed.next_due = Instant::now() + followed.interval;
                }
            }
        }
        Ok(())
    }
}

impl PollerState {
    /// Follows the polled integrations as they are now: new ones and new versions are built (and
    /// due at once), removed ones dropped.
    fn follow_the_registry(&mut self) {
        let polled: Vec<Arc<IntegrationRuntime>> = self
            .args
            .registry
            .runtimes()
            .into_iter()
            .filter(|runtime| runtime.config.vendor.polled())
            .collect();
        self.followed
            .retain(|id, _| polled.iter().any(|runtime| runtime.id() == id));
        for runtime in polled {
            let current = self
                .followed
                .get(runtime.id())
                .is_some_and(|followed| Arc::ptr_eq(&followed.runtime, &runtime));
            if current {
                continue;
            }
            let target = ConnectorTarget {
                integration_id: runtime.id(),
                timeout: runtime.config.timeout,
            };
            let connector = match runtime.config.settings.build(&target, &self.args.kit) {
                Ok(connector) => connector,
                Err(error) => {
                    tracing::error!(integration = %runtime.id(), %error, "cannot poll the integration");
                    continue;
                }
            };
            let Some(interval) = connector.poll_interval() else {
                continue;
            };
            self.followed.insert(
                runtime.id().to_owned(),
                Followed {
                    runtime,
                    connector,
                    interval,
                    next_due: Instant::now(),
                    polling: false,
                },
            );
        }
    }

    fn start_due_polls(&mut self, myself: &ActorRef<PollerMsg>) {
        let now = Instant::now();
        for (integration_id, followed) in &mut self.followed {
            if followed.polling || followed.next_due > now {
                continue;
            }
            followed.polling = true;
            let poll = Poll {
                integration_id: integration_id.clone(),
                organization: followed.runtime.config.organization.clone(),
                connector: followed.connector.clone(),
                table: self.args.table.clone(),
                routers: self.args.routers.clone(),
            };
            let myself = myself.clone();
            tokio::spawn(async move {
                let integration_id = poll.integration_id.clone();
                poll.run().await;
                let _ = myself.send_message(PollerMsg::Finished { integration_id });
            });
        }
    }
}

/// One poll of one integration.
struct Poll {
    integration_id: String,
    organization: String,
    connector: Arc<dyn Connector>,
    table: Arc<RoutingTable>,
    routers: RouterHandle,
}

impl Poll {
    async fn run(self) {
        let count = |outcome: &'static str, n: usize| {
            metrics::counter!("herald_polled_total", "integration" => self.integration_id.clone(), "outcome" => outcome)
                .increment(n as u64);
        };
        let notifications = match self.connector.poll().await {
            Ok(notifications) => notifications,
            Err(error) => {
                tracing::warn!(integration = %self.integration_id, %error, "poll failed; next interval tries again");
                count("poll_failed", 1);
                return;
            }
        };
        if notifications.is_empty() {
            return;
        }
        let submissions = match self.table.from_vendor(
            &self.organization,
            &self.integration_id,
            notifications,
        ) {
            Ok(submissions) => submissions,
            Err(error) => {
                tracing::error!(integration = %self.integration_id, %error, "polled notification refused");
                count("refused", 1);
                return;
            }
        };
        match self.routers.accept(&self.organization, submissions).await {
            Ok(accepted) => {
                let duplicates = accepted.iter().filter(|one| one.duplicate).count();
                count("accepted", accepted.len() - duplicates);
                count("duplicate", duplicates);
            }
            Err(error) => {
                tracing::warn!(integration = %self.integration_id, %error, "polled notifications not accepted; next interval tries again");
                count("not_accepted", 1);
            }
        }
    }
}
