//! OTP-style supervision for ractor actors.
//!
//! This crate owns the restart *mechanism*: a [`Supervisor`] actor that starts its children from
//! [`ChildSpec`]s, watches them, and restarts them by a [`Strategy`] (one-for-one, one-for-all,
//! rest-for-one), with a restart intensity limit ("at most N restarts within T") and exponential
//! backoff between restarts. When a child exhausts its intensity the supervisor either escalates
//! (it fails itself, so its own parent decides) or gives the child up and reports it as failed.
//!
//! It knows nothing about Herald's actors: the concrete tree lives in the application (`tree.rs`).
//! Intensity is counted per child rather than per supervisor (OTP counts per supervisor), so one
//! crash-looping integration among thousands is given up on alone instead of taking its siblings
//! down with it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use tokio::time::Instant;

/// Which children restart when one of them exits abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that exited.
    OneForOne,
    /// Every child, in start order.
    OneForAll,
    /// The child that exited and every child started after it.
    RestForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always, whether it failed or stopped.
    Permanent,
    /// Only when it failed (panic or error), not when it stopped normally.
    Transient,
    /// Never.
    Temporary,
}

/// What the supervisor does when a child restarts more often than its [`Intensity`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    /// Fail the supervisor itself, handing the decision to its parent.
    Escalate,
    /// Leave the child stopped and report it as [`ChildStatus::Failed`].
    GiveUp,
}

/// The restart intensity limit: at most `max_restarts` within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    pub max_restarts: u32,
    pub within: Duration,
}

/// Exponential backoff between consecutive restarts of one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBackoff {
    pub initial: Duration,
    pub max: Duration,
}

impl RestartBackoff {
    /// Returns the delay before the `nth` restart (1-based) within the current intensity window.
    pub fn delay_for(&self, nth: u32) -> Duration {
        let doublings = nth.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// A future that spawns one child linked to the given supervisor cell.
pub type StartFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

/// How to start (and restart) one child.
#[derive(Clone)]
pub struct ChildSpec {
    pub id: String,
    pub restart: Restart,
    start: Arc<dyn Fn(ActorCell) -> StartFuture + Send + Sync>,
}

impl ChildSpec {
    /// Builds a spec whose `start` spawns the child linked to the supervisor cell it is given.
    pub fn new<F>(id: impl Into<String>, restart: Restart, start: F) -> Self
    where
        F: Fn(ActorCell) -> StartFuture + Send + Sync + 'static,
    {
        Self {
            id: id.into(),
            restart,
            start: Arc::new(start),
        }
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .finish()
    }
}

/// A child's state as reported by [`SupervisorMsg::Children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildStatus {
    Running,
    /// Waiting for its restart backoff to elapse.
    Restarting,
    /// Stopped normally and not restarted (transient or temporary children).
    Stopped,
    /// Given up on after exhausting its restart intensity.
    Failed {
        reason: String,
    },
}

/// One child's report.
#[derive(Debug, Clone)]
pub struct ChildReport {
    pub id: String,
    pub status: ChildStatus,
    /// Restarts within the current intensity window.
    pub recent_restarts: u32,
    /// Restarts since the supervisor started.
    pub total_restarts: u64,
    /// The running incarnation, if any.
    pub cell: Option<ActorCell>,
}

/// A supervisor could not start one of its children. The child's own error is the `source`,
/// not part of the message, so a chain of supervisors reads as a path to the child that failed
/// rather than the same text nested once per level.
#[derive(Debug)]
pub struct ChildStartFailed {
    pub child: String,
    source: SpawnErr,
}

impl fmt::Display for ChildStartFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "child {} failed to start", self.child)
    }
}

impl std::error::Error for ChildStartFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How the supervisor behaves, and the children it starts with.
pub struct SupervisorArgs {
    pub strategy: Strategy,
    pub intensity: Intensity,
    pub backoff: RestartBackoff,
    pub on_exhausted: OnExhausted,
    pub children: Vec<ChildSpec>,
}

pub enum SupervisorMsg {
    /// Adds and starts a child; answers once it has started (or failed to). A child that
    /// stopped normally (a transient one that finished) is started again, with this spec.
    StartChild(ChildSpec, RpcReplyPort<Result<(), String>>),
    /// Stops a child and forgets it.
    RemoveChild(String),
    /// Reports every child's status.
    Children(RpcReplyPort<Vec<ChildReport>>),
    /// Restarts a child whose backoff elapsed (sent by the supervisor to itself).
    RestartDue(String),
}

/// The supervisor actor. Spawn it with [`SupervisorArgs`].
pub struct Supervisor;

pub struct SupervisorState {
    strategy: Strategy,
    intensity: Intensity,
    backoff: RestartBackoff,
    on_exhausted: OnExhausted,
    children: Vec<Child>,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    status: ChildStatus,
    restart_times: VecDeque<Instant>,
    total_restarts: u64,
}

/// A shared, replaceable reference to whichever incarnation of an actor is live: a child sets
/// it when it starts, and callers read it instead of holding one incarnation's `ActorRef`.
pub struct Slot<T>(Arc<std::sync::RwLock<Option<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self(Arc::new(std::sync::RwLock::new(None)))
    }
}

impl<T: Clone> Slot<T> {
    pub fn get(&self) -> Option<T> {
        self.0.read().expect("slot lock").clone()
    }

    pub fn set(&self, value: Option<T>) {
        *self.0.write().expect("slot lock") = value;
    }
}

// === impl Supervisor ===

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            strategy: args.strategy,
            intensity: args.intensity,
            backoff: args.backoff,
            on_exhausted: args.on_exhausted,
            children: Vec::with_capacity(args.children.len()),
        };
        for spec in args.children {
            let cell =
                (spec.start)(myself.get_cell())
                    .await
                    .map_err(|source| ChildStartFailed {
                        child: spec.id.clone(),
                        source,
                    })?;
            state.children.push(Child::running(spec, cell));
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::StartChild(spec, reply) => {
                let existing = state.position(&spec.id);
                if let Some(index) = existing {
                    if state.children[index].status != ChildStatus::Stopped {
                        let _ =
                            reply.send(Err(format!("a child named {} exists already", spec.id)));
                        return Ok(());
                    }
                }
                let outcome = match (spec.start)(myself.get_cell()).await {
                    Ok(cell) => {
                        let child = Child::running(spec, cell);
                        match existing {
                            Some(index) => state.children[index] = child,
                            None => state.children.push(child),
                        }
                        Ok(())
                    }
                    Err(err) => Err(format!("child {} failed to start: {err}", spec.id)),
                };
                let _ = reply.send(outcome);
            }
            SupervisorMsg::RemoveChild(id) => {
                if let Some(index) = state.position(&id) {
                    let child = state.children.remove(index);
                    if let Some(cell) = child.cell {
                        cell.stop(None);
                    }
                }
            }
            SupervisorMsg::Children(reply) => {
                let now = Instant::now();
                let reports = state
                    .children
                    .iter_mut()
                    .map(|child| {
                        child.forget_restarts_before(now, state.intensity.within);
                        ChildReport {
                            id: child.spec.id.clone(),
                            status: child.status.clone(),
                            recent_restarts: child.restart_times.len() as u32,
                            total_restarts: child.total_restarts,
                            cell: child.cell.clone(),
                        }
                    })
                    .collect();
                let _ = reply.send(reports);
            }
            SupervisorMsg::RestartDue(id) => state.restart_child(&myself, &id).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failed, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, false, reason.unwrap_or_else(|| "stopped".to_owned()))
            }
            _ => return Ok(()),
        };
        // Events from a cell we no longer track (one we stopped on purpose during a
        // one-for-all restart, or a removed child) are expected and ignored.
        let Some(index) = state.children.iter().position(|c| c.is_cell(&cell)) else {
            return Ok(());
        };
        state.children[index].cell = None;
        let should_restart = match state.children[index].spec.restart {
            Restart::Permanent => true,
            Restart::Transient => failed,
            Restart::Temporary => false,
        };
        let id = state.children[index].spec.id.clone();
        if !should_restart {
            if state.children[index].spec.restart == Restart::Temporary {
                state.children.remove(index);
            } else {
                state.children[index].status = ChildStatus::Stopped;
            }
            return Ok(());
        }
        tracing::warn!(child = %id, %reason, "supervised child exited; restarting");
        let now = Instant::now();
        let child = &mut state.children[index];
        child.forget_restarts_before(now, state.intensity.within);
        if child.restart_times.len() as u32 >= state.intensity.max_restarts {
            return match state.on_exhausted {
                OnExhausted::Escalate => Err(format!(
                    "child {id} restarted {} times within {:?}; escalating: {reason}",
                    child.restart_times.len(),
                    state.intensity.within
                )
                .into()),
                OnExhausted::GiveUp => {
                    tracing::error!(child = %id, %reason, "restart intensity exhausted; giving up on child");
                    child.status = ChildStatus::Failed { reason };
                    Ok(())
                }
            };
        }
        child.restart_times.push_back(now);
        child.total_restarts += 1;
        let delay = state.backoff.delay_for(child.restart_times.len() as u32);
        let affected = state.affected_by(index);
        for &i in &affected {
            let sibling = &mut state.children[i];
            sibling.status = ChildStatus::Restarting;
            if let Some(cell) = sibling.cell.take() {
                cell.stop(Some(format!("restarting with {id}")));
            }
        }
        for i in affected {
            let child_id = state.children[i].spec.id.clone();
            myself.send_after(delay, move || SupervisorMsg::RestartDue(child_id));
        }
        Ok(())
    }
}

// === impl SupervisorState ===

impl SupervisorState {
    fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|child| child.spec.id == id)
    }

    /// Returns the indexes of the children the strategy restarts when `index` exits, in start order.
    fn affected_by(&self, index: usize) -> Vec<usize> {
        match self.strategy {
            Strategy::OneForOne => vec![index],
            Strategy::OneForAll => (0..self.children.len()).collect(),
            Strategy::RestForOne => (index..self.children.len()).collect(),
        }
    }

    async fn restart_child(&mut self, myself: &ActorRef<SupervisorMsg>, id: &str) {
        let Some(index) = self.position(id) else {
            return;
        };
        let child = &mut self.children[index];
        if child.cell.is_some() || child.status != ChildStatus::Restarting {
            return;
        }
        match (child.spec.start)(myself.get_cell()).await {
            Ok(cell) => {
                tracing::info!(child = %id, "supervised child restarted");
                child.cell = Some(cell);
                child.status = ChildStatus::Running;
            }
            Err(err) => {
                // A failed start counts against the intensity like a crash does.
                let now = Instant::now();
                child.forget_restarts_before(now, self.intensity.within);
                if child.restart_times.len() as u32 >= self.intensity.max_restarts {
                    tracing::error!(child = %id, error = %err, "child cannot be restarted; giving up");
                    child.status = ChildStatus::Failed {
                        reason: format!("failed to start: {err}"),
                    };
                    if self.on_exhausted == OnExhausted::Escalate {
                        myself.stop(Some(format!("child {id} cannot be restarted: {err}")));
                    }
                    return;
                }
                child.restart_times.push_back(now);
                child.total_restarts += 1;
                let delay = self.backoff.delay_for(child.restart_times.len() as u32);
                let child_id = id.to_owned();
                myself.send_after(delay, move || SupervisorMsg::RestartDue(child_id));
            }
        }
    }
}

// === impl Child ===

impl Child {
    fn running(spec: ChildSpec, cell: ActorCell) -> Self {
        Self {
            spec,
            cell: Some(cell),
            status: ChildStatus::Running,
            restart_times: VecDeque::new(),
            total_restarts: 0,
        }
    }

    fn is_cell(&self, cell: &ActorCell) -> bool {
        self.cell
            .as_ref()
            .is_some_and(|own| own.get_id() == cell.get_id())
    }

    fn forget_restarts_before(&mut self, now: Instant, within: Duration) {
        while self
            .restart_times
            .front()
            .is_some_and(|t| now.duration_since(*t) > within)
        {
            self.restart_times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
