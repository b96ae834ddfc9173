//! Group commit, shared by both backends: the writer's two queues (emergency first), the
//! commands they carry, and the answers sent once a group's transaction has committed.
//!
//! A backend's writer loops on [`WriterQueues::next_group`], runs the group in one transaction,
//! and hands its [`Reply`]s to [`answer`]: nobody hears "done" before the commit is durable, and
//! if the commit fails every command of the group hears that instead.

use tokio::sync::{mpsc, oneshot};

use crate::wedsync::Lane;

use super::{
    AcknowledgeOutcome, Acknowledgement, DeliveryRow, Intake, NewNotification, PendingInstall,
    RoutingRecord, Settlement, StoreError, StoreFuture,
};

/// The most normal commands one group takes; a bound on how long an emergency can wait.
const MAX_GROUP: usize = 2048;

pub(super) type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Command {
    Journal {
        batch: Vec<NewNotification>,
        reply: Answer<Vec<Intake>>,
    },
    Settle(Vec<Settlement>),
    FailOver {
        delivery_id: i64,
        attempts: u32,
        error: String,
        backup: String,
        reply: Answer<DeliveryRow>,
    },
    Replay {
        organization: String,
        delivery_id: i64,
        reply: Answer<Option<DeliveryRow>>,
    },
    CreateApiKey {
        organization: String,
        key_hash: String,
        label: String,
        reply: Answer<()>,
    },
    RecordRouting {
        routing: RoutingRecord,
        reply: Answer<()>,
    },
    Acknowledge {
        acknowledgement: Acknowledgement,
        reply: Answer<AcknowledgeOutcome>,
    },
    RevokeApiKey {
        organization: String,
        key_id: String,
        reply: Answer<bool>,
    },
    PutCredential {
        integration_id: String,
        name: String,
        sealed: Vec<u8>,
        reply: Answer<()>,
    },
    BeginInstall {
        state_hash: String,
        install: PendingInstall,
        expires_at: i64,
        reply: Answer<()>,
    },
    FinishInstall {
        state_hash: String,
        now: i64,
        reply: Answer<Option<PendingInstall>>,
    },
    Flush(Answer<()>),
}

impl Command {
    /// Answers the command with a failure of its whole group (nothing of the group was written).
    pub(super) fn fail(self, reason: &str) {
        let failed = || StoreError::CommitFailed(reason.to_owned());
        match self {
            Command::Journal { reply, .. } => drop(reply.send(Err(failed()))),
            Command::FailOver { reply, .. } => drop(reply.send(Err(failed()))),
            Command::Replay { reply, .. } => drop(reply.send(Err(failed()))),
            Command::CreateApiKey { reply, .. }
            | Command::RecordRouting { reply, .. }
            | Command::PutCredential { reply, .. }
            | Command::BeginInstall { reply, .. }
            | Command::Flush(reply) => drop(reply.send(Err(failed()))),
            Command::FinishInstall { reply, .. } => drop(reply.send(Err(failed()))),
            Command::Acknowledge { reply, .. } => drop(reply.send(Err(failed()))),
            Command::RevokeApiKey { reply, .. } => drop(reply.send(Err(failed()))),
            Command::Settle(_) => {
                tracing::error!(%reason, "delivery outcomes not recorded (they will be retried after restart)")
            }
        }
    }
}

/// A command's result, held until its group commits.
pub(super) enum Reply {
    Journal(Answer<Vec<Intake>>, Result<Vec<Intake>, StoreError>),
    Row(Answer<DeliveryRow>, Result<DeliveryRow, StoreError>),
    MaybeRow(
        Answer<Option<DeliveryRow>>,
        Result<Option<DeliveryRow>, StoreError>,
    ),
    Unit(Answer<()>, Result<(), StoreError>),
    Flag(Answer<bool>, Result<bool, StoreError>),
    Acknowledged(
        Answer<AcknowledgeOutcome>,
        Result<AcknowledgeOutcome, StoreError>,
    ),
    Install(
        Answer<Option<PendingInstall>>,
        Result<Option<PendingInstall>, StoreError>,
    ),
}

/// The sending side, held by the store.
pub(super) struct CommandQueues {
    emergency: mpsc::UnboundedSender<Command>,
    normal: mpsc::UnboundedSender<Command>,
}

/// The receiving side, owned by the backend's writer.
pub(super) struct WriterQueues {
    emergency: mpsc::UnboundedReceiver<Command>,
    normal: mpsc::UnboundedReceiver<Command>,
}

pub(super) fn channel() -> (CommandQueues, WriterQueues) {
    let (emergency, emergency_rx) = mpsc::unbounded_channel();
    let (normal, normal_rx) = mpsc::unbounded_channel();
    (
        CommandQueues { emergency, normal },
        WriterQueues {
            emergency: emergency_rx,
            normal: normal_rx,
        },
    )
}

/// The write half of [`super::Store`], the same for every backend: each write is a command for
/// the backend's writer.
impl CommandQueues {
    pub(super) fn journal(
        &self,
        lane: Lane,
        batch: Vec<NewNotification>,
    ) -> StoreFuture<'_, Vec<Intake>> {
        self.request(lane, |reply| Command::Journal { batch, reply })
    }

    pub(super) fn settle(&self, settlements: Vec<Settlement>) {
        if self
            .send(Lane::Normal, Command::Settle(settlements))
            .is_err()
        {
            tracing::error!("store writer has stopped; delivery outcomes not recorded (they will be retried after restart)");
        }
    }

    pub(super) fn fail_over(
        &self,
        delivery_id: i64,
        attempts: u32,
        error: String,
        backup: String,
    ) -> StoreFuture<'_, DeliveryRow> {
        self.request(Lane::Emergency, |reply| Command::FailOver {
            delivery_id,
            attempts,
            error,
            backup,
            reply,
        })
    }

    pub(super) fn replay(
        &self,
        organization: &str,
        delivery_id: i64,
    ) -> StoreFuture<'_, Option<DeliveryRow>> {
        let organization = organization.to_owned();
        self.request(Lane::Normal, |reply| Command::Replay {
            organization,
            delivery_id,
            reply,
        })
    }

    pub(super) fn create_api_key(
        &self,
        organization: &str,
        key_hash: &str,
        label: &str,
    ) -> StoreFuture<'_, ()> {
        let (organization, key_hash, label) = (
            organization.to_owned(),
            key_hash.to_owned(),
            label.to_owned(),
        );
        self.request(Lane::Normal, |reply| Command::CreateApiKey {
            organization,
            key_hash,
            label,
            reply,
        })
    }

    pub(super) fn begin_install(
        &self,
        state_hash: &str,
        install: PendingInstall,
        expires_at: i64,
    ) -> StoreFuture<'_, ()> {
        let state_hash = state_hash.to_owned();
        self.request(Lane::Normal, |reply| Command::BeginInstall {
            state_hash,
            install,
            expires_at,
            reply,
        })
    }

    pub(super) fn finish_install(
        &self,
        state_hash: &str,
        now: i64,
    ) -> StoreFuture<'_, Option<PendingInstall>> {
        let state_hash = state_hash.to_owned();
        self.request(Lane::Normal, |reply| Command::FinishInstall {
            state_hash,
            now,
            reply,
        })
    }

    pub(super) fn put_credential(
        &self,
        integration_id: &str,
        name: &str,
        sealed: Vec<u8>,
    ) -> StoreFuture<'_, ()> {
        let (integration_id, name) = (integration_id.to_owned(), name.to_owned());
        self.request(Lane::Normal, |reply| Command::PutCredential {
            integration_id,
            name,
            sealed,
            reply,
        })
    }

    pub(super) fn revoke_api_key(&self, organization: &str, key_id: &str) -> StoreFuture<'_, bool> {
        let (organization, key_id) = (organization.to_owned(), key_id.to_owned());
        self.request(Lane::Normal, |reply| Command::RevokeApiKey {
            organization,
            key_id,
            reply,
        })
    }

    pub(super) fn record_routing(&self, routing: RoutingRecord) -> StoreFuture<'_, ()> {
        self.request(Lane::Normal, |reply| Command::RecordRouting {
            routing,
            reply,
        })
    }

    pub(super) fn acknowledge(
        &self,
        acknowledgement: Acknowledgement,
    ) -> StoreFuture<'_, AcknowledgeOutcome> {
        self.request(Lane::Normal, |reply| Command::Acknowledge {
            acknowledgement,
            reply,
        })
    }

    pub(super) fn flush(&self) -> StoreFuture<'_, ()> {
        self.request(Lane::Normal, Command::Flush)
    }

    /// Whether the backend's writer is still taking commands.
    pub(super) fn writer_alive(&self) -> bool {
        !self.normal.is_closed() && !self.emergency.is_closed()
    }

    fn send(&self, lane: Lane, command: Command) -> Result<(), StoreError> {
        let queue = match lane {
            Lane::Emergency => &self.emergency,
            Lane::Normal => &self.normal,
        };
        queue.send(command).map_err(|_| StoreError::WriterGone)
    }

    /// Sends a command that answers, and returns the answer's future.
    fn request<T: Send + 'static>(
        &self,
        lane: Lane,
        command: impl FnOnce(Answer<T>) -> Command,
    ) -> StoreFuture<'_, T> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(lane, command(reply));
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| StoreError::WriterGone)?
        })
    }
}

impl WriterQueues {
    /// Waits for work and returns the next group: every emergency waiting, and, unless the group
    /// was started by an emergency, up to [`MAX_GROUP`] normal commands. `None` once the store is
    /// dropped.
    pub(super) async fn next_group(&mut self) -> Option<Vec<Command>> {
        let (first, urgent) = tokio::select! {
            biased;
            Some(command) = self.emergency.recv() => (command, true),
            Some(command) = self.normal.recv() => (command, false),
            else => return None,
        };
        let mut group = vec![first];
        while let Ok(command) = self.emergency.try_recv() {
            group.push(command);
        }
        // An emergency commits on its own, so it never waits behind a large normal group.
        if !urgent {
            while group.len() < MAX_GROUP {
                match self.normal.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
        }
        Some(group)
    }
}

/// Sends every reply of a group once its commit is known. If the commit failed, nothing of the
/// group is durable, so every command hears that failure instead of its own result.
pub(super) fn answer(replies: Vec<Reply>, commit: Result<(), String>) {
    let failed = |reason: &String| StoreError::CommitFailed(reason.clone());
    for reply in replies {
        match (reply, &commit) {
            (Reply::Journal(tx, result), Ok(())) => drop(tx.send(result)),
            (Reply::Journal(tx, _), Err(reason)) => drop(tx.send(Err(failed(reason)))),
            (Reply::Row(tx, result), Ok(())) => drop(tx.send(result)),
            (Reply::Row(tx, _), Err(reason)) => drop(tx.send(Err(failed(reason)))),
            (Reply::MaybeRow(tx, result), Ok(())) => drop(tx.send(result)),
            (Reply::MaybeRow(tx, _), Err(reason)) => drop(tx.send(Err(failed(reason)))),
            (Reply::Unit(tx, result), Ok(())) => drop(tx.send(result)),
            (Reply::Unit(tx, _), Err(reason)) => drop(tx.send(Err(failed(reason)))),
            (Reply::Flag(tx, result), Ok(())) => drop(tx.send(result)),
            (Reply::Flag(tx, _), Err(reason)) => drop(tx.send(Err(failed(reason)))),
            (Reply::Acknowledged(tx, result), Ok(())) => drop(tx.send(result)),
            (Reply::Acknowledged(tx, _), Err(reason)) => drop(tx.send(Err(failed(reason)))),
            (Reply::Install(tx, result), Ok(())) => drop(tx.send(result)),
            (Reply::Install(tx, _), Err(reason)) => drop(tx.send(Err(failed(reason)))),
        }
    }
}
