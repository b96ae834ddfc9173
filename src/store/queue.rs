//! Group commit, shared by both backends: the writer's two queues (emergency first), the
//! commands they carry, the group commit itself ([`commit_group`], over a dialect's [`Writer`]),
//! and the announcement of committed settlements to whoever subscribed.
//!
//! A backend's writer loops on [`WriterQueues::next_group`] and hands each group to
//! [`commit_group`]: nobody hears "done" before the commit is durable, and if the commit fails
//! every command of the group hears that instead.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::wedsync::Lane;

use super::acknowledgements::AcknowledgementStatements;
use super::audit::AuditStatements;
use super::credentials::CredentialStatements;
use super::definitions::{DefinitionChange, DefinitionStatements, Kind};
use super::installs::InstallStatements;
use super::integrations::IntegrationStatements;
use super::journal::JournalStatements;
use super::keys::KeyStatements;
use super::memories::MemoryStatements;
use super::routings::RoutingStatements;

use super::{
    effective_settlements, now_millis, AcknowledgeOutcome, Acknowledgement, Actor, AuditDraft,
    CommittedSettlements, DeliveryRow, Intake, IntegrationChange, NewNotification, PendingInstall,
    Removed, Role, RoutingRecord, Saved, SettledDelivery, Settlement, StoreError, StoreFuture,
    API_KEY_ID_LEN,
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
        by: Actor,
        reply: Answer<Option<DeliveryRow>>,
    },
    CreateApiKey {
        organization: String,
        key_hash: String,
        label: String,
        role: Role,
        by: Actor,
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
        by: Actor,
        reply: Answer<bool>,
    },
    PutCredential {
        integration_id: String,
        name: String,
        sealed: Vec<u8>,
        audit: Option<AuditDraft>,
        reply: Answer<()>,
    },
    ReplaceCredential {
        integration_id: String,
        name: String,
        expected: Vec<u8>,
        sealed: Vec<u8>,
        audit: Option<AuditDraft>,
        reply: Answer<bool>,
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
    SaveIntegration {
        change: Box<IntegrationChange>,
        by: Actor,
        reply: Answer<Saved>,
    },
    RemoveIntegration {
        organization: String,
        integration_id: String,
        audit_before: String,
        by: Actor,
        reply: Answer<Option<Removed>>,
    },
    SaveDefinition {
        change: Box<DefinitionChange>,
        by: Actor,
        reply: Answer<Saved>,
    },
    RemoveDefinition {
        kind: Kind,
        organization: String,
        id: String,
        by: Actor,
        reply: Answer<bool>,
    },
    Remember {
        integration_id: String,
        key: String,
        value: Option<String>,
        lapses_at: i64,
        reply: Answer<()>,
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
            | Command::Remember { reply, .. }
            | Command::Flush(reply) => drop(reply.send(Err(failed()))),
            Command::FinishInstall { reply, .. } => drop(reply.send(Err(failed()))),
            Command::Acknowledge { reply, .. } => drop(reply.send(Err(failed()))),
            Command::RevokeApiKey { reply, .. } | Command::ReplaceCredential { reply, .. } => {
                drop(reply.send(Err(failed())))
            }
            Command::SaveIntegration { reply, .. } => drop(reply.send(Err(failed()))),
            Command::RemoveIntegration { reply, .. } => drop(reply.send(Err(failed()))),
            Command::SaveDefinition { reply, .. } => drop(reply.send(Err(failed()))),
            Command::RemoveDefinition { reply, .. } => drop(reply.send(Err(failed()))),
            Command::Settle(_) => {
                tracing::error!(%reason, "delivery outcomes not recorded (they will be retried after restart)")
            }
        }
    }

    /// Answers the command with its own outcome, once its group committed.
    fn answer(self, outcome: Outcome) {
        match (self, outcome) {
            (Command::Journal { reply, .. }, Outcome::Journal(result)) => drop(reply.send(result)),
            (Command::FailOver { reply, .. }, Outcome::Row(result)) => drop(reply.send(result)),
            (Command::Replay { reply, .. }, Outcome::MaybeRow(result)) => drop(reply.send(result)),
            (
                Command::CreateApiKey { reply, .. }
                | Command::RecordRouting { reply, .. }
                | Command::PutCredential { reply, .. }
                | Command::BeginInstall { reply, .. }
                | Command::Remember { reply, .. }
                | Command::Flush(reply),
                Outcome::Unit(result),
            ) => drop(reply.send(result)),
            (
                Command::RevokeApiKey { reply, .. } | Command::ReplaceCredential { reply, .. },
                Outcome::Flag(result),
            ) => drop(reply.send(result)),
            (Command::Acknowledge { reply, .. }, Outcome::Acknowledged(result)) => {
                drop(reply.send(result))
            }
            (Command::FinishInstall { reply, .. }, Outcome::Install(result)) => {
                drop(reply.send(result))
            }
            (Command::SaveIntegration { reply, .. }, Outcome::Saved(result)) => {
                drop(reply.send(result))
            }
            (Command::RemoveIntegration { reply, .. }, Outcome::Removed(result)) => {
                drop(reply.send(result))
            }
            (Command::SaveDefinition { reply, .. }, Outcome::Saved(result)) => {
                drop(reply.send(result))
            }
            (Command::RemoveDefinition { reply, .. }, Outcome::Flag(result)) => {
                drop(reply.send(result))
            }
            (Command::Settle(_), Outcome::Recorded) => {}
            (command, _) => command.fail("the store paired a command with another's outcome"),
        }
    }

    /// The outcome of this command failing alone with `err`.
    fn failed_outcome(&self, err: StoreError) -> Outcome {
        match self {
            Command::Journal { .. } => Outcome::Journal(Err(err)),
            Command::FailOver { .. } => Outcome::Row(Err(err)),
            Command::Replay { .. } => Outcome::MaybeRow(Err(err)),
            Command::CreateApiKey { .. }
            | Command::RecordRouting { .. }
            | Command::PutCredential { .. }
            | Command::BeginInstall { .. }
            | Command::Remember { .. }
            | Command::Flush(_) => Outcome::Unit(Err(err)),
            Command::RevokeApiKey { .. } | Command::ReplaceCredential { .. } => {
                Outcome::Flag(Err(err))
            }
            Command::Acknowledge { .. } => Outcome::Acknowledged(Err(err)),
            Command::FinishInstall { .. } => Outcome::Install(Err(err)),
            Command::SaveIntegration { .. } => Outcome::Saved(Err(err)),
            Command::RemoveIntegration { .. } => Outcome::Removed(Err(err)),
            Command::SaveDefinition { .. } => Outcome::Saved(Err(err)),
            Command::RemoveDefinition { .. } => Outcome::Flag(Err(err)),
            Command::Settle(_) => {
                tracing::error!(error = %err, "recording delivery outcomes failed");
                Outcome::Recorded
            }
        }
    }

    fn journal_batch(&self) -> Option<&[NewNotification]> {
        match self {
            Command::Journal { batch, .. } => Some(batch),
            _ => None,
        }
    }

    fn settlements(&self) -> Option<&[Settlement]> {
        match self {
            Command::Settle(settlements) => Some(settlements),
            _ => None,
        }
    }
}

/// The sending side, held by the store: the way into its writer. Nothing outside `store` can
/// name it or call its methods.
pub struct CommandQueues {
    emergency: mpsc::UnboundedSender<Command>,
    normal: mpsc::UnboundedSender<Command>,
    announcer: Announcer,
}

/// The receiving side, owned by the backend's writer.
pub(super) struct WriterQueues {
    emergency: mpsc::UnboundedReceiver<Command>,
    normal: mpsc::UnboundedReceiver<Command>,
    announcer: Announcer,
}

/// A store with a writer: how the concern traits' writes (`Journal::journal`,
/// `ApiKeys::create_api_key`...) reach it, the same for every dialect.
pub trait Queued {
    fn queues(&self) -> &CommandQueues;
}

/// Committed settlements, one message per group, to every subscriber still listening. The
/// queues are unbounded so that the writer never waits on a subscriber and no subscriber misses
/// a settlement (a missed one would leave a sequence's next delivery held until a restart).
#[derive(Clone, Default)]
struct Announcer {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<CommittedSettlements>>>>,
}

pub(super) fn channel() -> (CommandQueues, WriterQueues) {
    let (emergency, emergency_rx) = mpsc::unbounded_channel();
    let (normal, normal_rx) = mpsc::unbounded_channel();
    let announcer = Announcer::default();
    (
        CommandQueues {
            emergency,
            normal,
            announcer: announcer.clone(),
        },
        WriterQueues {
            emergency: emergency_rx,
            normal: normal_rx,
            announcer,
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
        by: &Actor,
    ) -> StoreFuture<'_, Option<DeliveryRow>> {
        let (organization, by) = (organization.to_owned(), by.clone());
        self.request(Lane::Normal, |reply| Command::Replay {
            organization,
            delivery_id,
            by,
            reply,
        })
    }

    pub(super) fn create_api_key(
        &self,
        organization: &str,
        key_hash: &str,
        label: &str,
        role: Role,
        by: &Actor,
    ) -> StoreFuture<'_, ()> {
        let (organization, key_hash, label, by) = (
            organization.to_owned(),
            key_hash.to_owned(),
            label.to_owned(),
            by.clone(),
        );
        self.request(Lane::Normal, |reply| Command::CreateApiKey {
            organization,
            key_hash,
            label,
            role,
            by,
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
        audit: Option<AuditDraft>,
    ) -> StoreFuture<'_, ()> {
        let (integration_id, name) = (integration_id.to_owned(), name.to_owned());
        self.request(Lane::Normal, |reply| Command::PutCredential {
            integration_id,
            name,
            sealed,
            audit,
            reply,
        })
    }

    pub(super) fn replace_credential(
        &self,
        integration_id: &str,
        name: &str,
        expected: Vec<u8>,
        sealed: Vec<u8>,
        audit: Option<AuditDraft>,
    ) -> StoreFuture<'_, bool> {
        let (integration_id, name) = (integration_id.to_owned(), name.to_owned());
        self.request(Lane::Normal, |reply| Command::ReplaceCredential {
            integration_id,
            name,
            expected,
            sealed,
            audit,
            reply,
        })
    }

    pub(super) fn remember(
        &self,
        integration_id: &str,
        key: &str,
        value: Option<String>,
        lapses_at: i64,
    ) -> StoreFuture<'_, ()> {
        let (integration_id, key) = (integration_id.to_owned(), key.to_owned());
        self.request(Lane::Normal, |reply| Command::Remember {
            integration_id,
            key,
            value,
            lapses_at,
            reply,
        })
    }

    pub(super) fn revoke_api_key(
        &self,
        organization: &str,
        key_id: &str,
        by: &Actor,
    ) -> StoreFuture<'_, bool> {
        let (organization, key_id, by) = (organization.to_owned(), key_id.to_owned(), by.clone());
        self.request(Lane::Normal, |reply| Command::RevokeApiKey {
            organization,
            key_id,
            by,
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

    pub(super) fn save_integration(
        &self,
        change: IntegrationChange,
        by: &Actor,
    ) -> StoreFuture<'_, Saved> {
        let by = by.clone();
        self.request(Lane::Normal, |reply| Command::SaveIntegration {
            change: Box::new(change),
            by,
            reply,
        })
    }

    pub(super) fn remove_integration(
        &self,
        organization: &str,
        integration_id: &str,
        audit_before: String,
        by: &Actor,
    ) -> StoreFuture<'_, Option<Removed>> {
        let (organization, integration_id, by) = (
            organization.to_owned(),
            integration_id.to_owned(),
            by.clone(),
        );
        self.request(Lane::Normal, |reply| Command::RemoveIntegration {
            organization,
            integration_id,
            audit_before,
            by,
            reply,
        })
    }

    pub(super) fn save_definition(
        &self,
        change: DefinitionChange,
        by: &Actor,
    ) -> StoreFuture<'_, Saved> {
        let by = by.clone();
        self.request(Lane::Normal, |reply| Command::SaveDefinition {
            change: Box::new(change),
            by,
            reply,
        })
    }

    pub(super) fn remove_definition(
        &self,
        kind: Kind,
        organization: &str,
        id: &str,
        by: &Actor,
    ) -> StoreFuture<'_, bool> {
        let (organization, id, by) = (organization.to_owned(), id.to_owned(), by.clone());
        self.request(Lane::Normal, |reply| Command::RemoveDefinition {
            kind,
            organization,
            id,
            by,
            reply,
        })
    }

    pub(super) fn flush(&self) -> StoreFuture<'_, ()> {
        self.request(Lane::Normal, Command::Flush)
    }

    /// Every settlement committed from now on, a group's at a time.
    pub(super) fn subscribe(&self) -> mpsc::UnboundedReceiver<CommittedSettlements> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.announcer
            .subscribers
            .lock()
            .expect("announcer lock")
            .push(sender);
        receiver
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

    /// Commits `group` (see [`commit_group`]) and announces the settlements it committed.
    pub(super) async fn commit<W: Writer>(&self, writer: &mut W, group: Vec<Command>) {
        match commit_group(writer, group).await {
            Ok(settled) if settled.is_empty() => {}
            Ok(settled) => {
                let settled: CommittedSettlements = settled.into();
                self.announcer
                    .subscribers
                    .lock()
                    .expect("announcer lock")
                    .retain(|subscriber| subscriber.send(settled.clone()).is_ok());
            }
            Err(err) => tracing::error!(error = %err, "store group commit failed"),
        }
    }
}

/// One dialect's writer: its transaction control here, and one method per statement through each
/// concern's statements trait (`journal.rs`, `keys.rs`...). Each statement reports its own
/// result; the group commit decides what is committed together and who hears what.
pub(super) trait Writer:
    JournalStatements
    + KeyStatements
    + AcknowledgementStatements
    + RoutingStatements
    + CredentialStatements
    + InstallStatements
    + AuditStatements
    + IntegrationStatements
    + DefinitionStatements
    + MemoryStatements
{
    async fn begin(&mut self) -> Result<(), StoreError>;
    async fn commit(&mut self) -> Result<(), StoreError>;
    async fn rollback(&mut self) -> Result<(), StoreError>;
    async fn savepoint(&mut self) -> Result<(), StoreError>;
    async fn release_savepoint(&mut self) -> Result<(), StoreError>;
    async fn rollback_to_savepoint(&mut self) -> Result<(), StoreError>;
}

/// A command's result, held until its group commits.
enum Outcome {
    Journal(Result<Vec<Intake>, StoreError>),
    Row(Result<DeliveryRow, StoreError>),
    MaybeRow(Result<Option<DeliveryRow>, StoreError>),
    Unit(Result<(), StoreError>),
    Flag(Result<bool, StoreError>),
    Acknowledged(Result<AcknowledgeOutcome, StoreError>),
    Install(Result<Option<PendingInstall>, StoreError>),
    Saved(Result<Saved, StoreError>),
    Removed(Result<Option<Removed>, StoreError>),
    /// A settlement: nobody waits for it (its effect is announced once committed).
    Recorded,
}

/// How the commands of a group are kept apart inside its transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// No savepoints: the group's journals are one statement, its settlements another, and the
    /// first failure abandons the attempt.
    Together,
    /// Each command in its own savepoint, so a failing command fails alone.
    EachCommand,
}

/// Commits one group in one transaction and answers its commands once the commit is durable;
/// returns the deliveries whose settlements it committed.
///
/// The group first runs [`Isolation::Together`]: a group of single posts is then a handful of
/// statements, whatever its size. If any statement fails, nothing of that attempt is kept and
/// the group runs again [`Isolation::EachCommand`], so only the failing commands hear their
/// error. If the commit fails, every command hears that, and nothing is announced.
pub(super) async fn commit_group<W: Writer>(
    writer: &mut W,
    group: Vec<Command>,
) -> Result<Vec<SettledDelivery>, StoreError> {
    let attempt = match writer.begin().await {
        Ok(()) => run(writer, &group, Isolation::Together).await,
        Err(err) => return Err(fail_group(group, err)),
    };
    let (outcomes, settled) = match attempt {
        Ok(done) => done,
        Err(err) => {
            tracing::debug!(error = %err, "group commit retried command by command");
            let again = match writer.rollback().await {
                Ok(()) => writer.begin().await,
                Err(err) => Err(err),
            };
            let retried = match again {
                Ok(()) => run(writer, &group, Isolation::EachCommand).await,
                Err(err) => Err(err),
            };
            match retried {
                Ok(done) => done,
                Err(err) => {
                    // The savepoints themselves failed: the transaction is gone.
                    let _ = writer.rollback().await;
                    return Err(fail_group(group, err));
                }
            }
        }
    };
    if let Err(err) = writer.commit().await {
        return Err(fail_group(group, err));
    }
    for (command, outcome) in group.into_iter().zip(outcomes) {
        command.answer(outcome);
    }
    Ok(settled)
}

fn fail_group(group: Vec<Command>, err: StoreError) -> StoreError {
    let reason = err.to_string();
    group.into_iter().for_each(|command| command.fail(&reason));
    err
}

/// Runs every command of the group; one outcome per command, in the group's order.
async fn run<W: Writer>(
    writer: &mut W,
    group: &[Command],
    isolation: Isolation,
) -> Result<(Vec<Outcome>, Vec<SettledDelivery>), StoreError> {
    match isolation {
        Isolation::Together => run_together(writer, group).await,
        Isolation::EachCommand => run_each(writer, group).await,
    }
}

/// The group's journals as one statement, then its settlements as one statement, then the other
/// commands in order; the first failure is returned instead of the outcomes.
///
/// Journals and settlements commute within a group: an integration settles a delivery only after
/// the journal, failover or replay that made it was answered, which is after that group's commit,
/// so a settlement never names a row its own group creates; and intake only creates rows (a
/// duplicate's answer is a snapshot either way). The other commands keep their order; none of
/// them can name a row a settlement of the same group changes (an integration fails a delivery
/// over instead of settling it, and a dead letter is replayed only once it was committed).
async fn run_together<W: Writer>(
    writer: &mut W,
    group: &[Command],
) -> Result<(Vec<Outcome>, Vec<SettledDelivery>), StoreError> {
    let batches: Vec<&[NewNotification]> =
        group.iter().filter_map(Command::journal_batch).collect();
    let mut journaled = std::collections::VecDeque::with_capacity(batches.len());
    if !batches.is_empty() {
        let combined: Vec<&NewNotification> =
            batches.iter().flat_map(|batch| batch.iter()).collect();
        let mut intakes = writer.journal(&combined).await?.into_iter();
        for batch in &batches {
            journaled.push_back(intakes.by_ref().take(batch.len()).collect::<Vec<_>>());
        }
    }
    let settlements: Vec<Settlement> = group
        .iter()
        .filter_map(Command::settlements)
        .flat_map(|settlements| settlements.iter().cloned())
        .collect();
    let settled = if settlements.is_empty() {
        Vec::new()
    } else {
        writer
            .settle(&effective_settlements(&settlements), now_millis())
            .await?
    };
    let mut outcomes = Vec::with_capacity(group.len());
    for command in group {
        outcomes.push(match command {
            Command::Journal { .. } => {
                Outcome::Journal(Ok(journaled.pop_front().unwrap_or_default()))
            }
            Command::Settle(_) => Outcome::Recorded,
            other => execute(writer, other).await?,
        });
    }
    Ok((outcomes, settled))
}

/// Every command in its own savepoint, in the group's order, so a failing command fails alone.
async fn run_each<W: Writer>(
    writer: &mut W,
    group: &[Command],
) -> Result<(Vec<Outcome>, Vec<SettledDelivery>), StoreError> {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut settled = Vec::new();
    for command in group {
        writer.savepoint().await?;
        let outcome = match command {
            Command::Settle(settlements) => writer
                .settle(&effective_settlements(settlements), now_millis())
                .await
                .map(|changed| {
                    settled.extend(changed);
                    Outcome::Recorded
                }),
            command => execute(writer, command).await,
        };
        match outcome {
            Ok(outcome) => {
                writer.release_savepoint().await?;
                outcomes.push(outcome);
            }
            Err(err) => {
                writer.rollback_to_savepoint().await?;
                outcomes.push(command.failed_outcome(err));
            }
        }
    }
    Ok((outcomes, settled))
}

/// Runs one command other than a settlement; its outcome, or the failure of its statement.
async fn execute<W: Writer>(writer: &mut W, command: &Command) -> Result<Outcome, StoreError> {
    Ok(match command {
        Command::Journal { batch, .. } => {
            let batch: Vec<&NewNotification> = batch.iter().collect();
            Outcome::Journal(Ok(writer.journal(&batch).await?))
        }
        // Settlements are gathered by the callers, which announce what they changed.
        Command::Settle(_) => Outcome::Recorded,
        Command::FailOver {
            delivery_id,
            attempts,
            error,
            backup,
            ..
        } => Outcome::Row(Ok(writer
            .fail_over(*delivery_id, *attempts, error, backup)
            .await?)),
        Command::Replay {
            organization,
            delivery_id,
            by,
            ..
        } => {
            let replayed = writer.replay(organization, *delivery_id).await?;
            if let Some(row) = &replayed {
                writer
                    .append_audit(&AuditDraft {
                        organization: organization.clone(),
                        actor: by.clone(),
                        action: "dead_letter.replayed".to_owned(),
                        resource_type: "delivery".to_owned(),
                        resource_id: delivery_id.to_string(),
                        before: None,
                        after: Some(
                            serde_json::json!({"notificationId": row.notification_id, "integrationId": row.integration_id})
                                .to_string(),
                        ),
                    })
                    .await?;
            }
            Outcome::MaybeRow(Ok(replayed))
        }
        Command::CreateApiKey {
            organization,
            key_hash,
            label,
            role,
            by,
            ..
        } => {
            writer
                .create_api_key(organization, key_hash, label, *role)
                .await?;
            let key_id = key_hash.get(..API_KEY_ID_LEN).unwrap_or(key_hash);
            writer
                .append_audit(&key_change(
                    organization,
                    by,
                    "key.created",
                    key_id,
                    None,
                    Some((label, *role)),
                ))
                .await?;
            Outcome::Unit(Ok(()))
        }
        Command::RecordRouting { routing, .. } => {
            Outcome::Unit(Ok(writer.record_routing(routing).await?))
        }
        Command::Acknowledge {
            acknowledgement, ..
        } => Outcome::Acknowledged(Ok(writer.acknowledge(acknowledgement).await?)),
        Command::RevokeApiKey {
            organization,
            key_id,
            by,
            ..
        } => {
            let revoked = writer.revoke_api_key(organization, key_id).await?;
            if let Some((label, role)) = &revoked {
                writer
                    .append_audit(&key_change(
                        organization,
                        by,
                        "key.revoked",
                        key_id,
                        Some((label, *role)),
                        None,
                    ))
                    .await?;
            }
            Outcome::Flag(Ok(revoked.is_some()))
        }
        Command::PutCredential {
            integration_id,
            name,
            sealed,
            audit,
            ..
        } => {
            writer.put_credential(integration_id, name, sealed).await?;
            if let Some(audit) = audit {
                writer.append_audit(audit).await?;
            }
            Outcome::Unit(Ok(()))
        }
        Command::BeginInstall {
            state_hash,
            install,
            expires_at,
            ..
        } => Outcome::Unit(Ok(writer
            .begin_install(state_hash, install, *expires_at)
            .await?)),
        Command::FinishInstall {
            state_hash, now, ..
        } => Outcome::Install(Ok(writer.finish_install(state_hash, *now).await?)),
        Command::SaveIntegration { change, by, .. } => {
            let saved = writer.save_integration(change).await?;
            if let Saved::Written(written) = &saved {
                writer
                    .append_audit(&AuditDraft {
                        organization: change.organization.clone(),
                        actor: by.clone(),
                        action: if written.version == 1 {
                            "integration.created"
                        } else {
                            "integration.updated"
                        }
                        .to_owned(),
                        resource_type: "integration".to_owned(),
                        resource_id: change.integration_id.clone(),
                        before: change.audit_before.clone(),
                        after: Some(change.audit_after.clone()),
                    })
                    .await?;
            }
            Outcome::Saved(Ok(saved))
        }
        Command::RemoveIntegration {
            organization,
            integration_id,
            audit_before,
            by,
            ..
        } => {
            let removed = writer
                .remove_integration(organization, integration_id)
                .await?;
            if removed.is_some() {
                writer
                    .append_audit(&AuditDraft {
                        organization: organization.clone(),
                        actor: by.clone(),
                        action: "integration.removed".to_owned(),
                        resource_type: "integration".to_owned(),
                        resource_id: integration_id.clone(),
                        before: Some(audit_before.clone()),
                        after: None,
                    })
                    .await?;
            }
            Outcome::Removed(Ok(removed))
        }
        Command::SaveDefinition { change, by, .. } => {
            let saved = writer.save_definition(change).await?;
            if let Saved::Written(written) = &saved {
                let verb = if written.version == 1 {
                    "created"
                } else {
                    "updated"
                };
                writer
                    .append_audit(&AuditDraft {
                        organization: change.organization.clone(),
                        actor: by.clone(),
                        action: format!("{}.{verb}", change.kind.as_str()),
                        resource_type: change.kind.as_str().to_owned(),
                        resource_id: change.id.clone(),
                        before: change.audit_before.clone(),
                        after: Some(change.spec.clone()),
                    })
                    .await?;
            }
            Outcome::Saved(Ok(saved))
        }
        Command::RemoveDefinition {
            kind,
            organization,
            id,
            by,
            ..
        } => {
            let removed = writer.remove_definition(*kind, organization, id).await?;
            if let Some(spec) = &removed {
                writer
                    .append_audit(&AuditDraft {
                        organization: organization.clone(),
                        actor: by.clone(),
                        action: format!("{}.removed", kind.as_str()),
                        resource_type: kind.as_str().to_owned(),
                        resource_id: id.clone(),
                        before: Some(spec.clone()),
                        after: None,
                    })
                    .await?;
            }
            Outcome::Flag(Ok(removed.is_some()))
        }
        Command::ReplaceCredential {
            integration_id,
            name,
            expected,
            sealed,
            audit,
            ..
        } => {
            let replaced = writer
                .replace_credential(integration_id, name, expected, sealed)
                .await?;
            if let (true, Some(audit)) = (replaced, audit) {
                writer.append_audit(audit).await?;
            }
            Outcome::Flag(Ok(replaced))
        }
        Command::Remember {
            integration_id,
            key,
            value,
            lapses_at,
            ..
        } => {
            writer
                .remember(
                    integration_id,
                    key,
                    value.as_deref(),
                    *lapses_at,
                    now_millis(),
                )
                .await?;
            Outcome::Unit(Ok(()))
        }
        Command::Flush(_) => Outcome::Unit(Ok(())),
    })
}

/// The audit record of a key's creation or revocation: the key as it was or became (its label and
/// role; the key itself never exists in the store).
fn key_change(
    organization: &str,
    by: &Actor,
    action: &str,
    key_id: &str,
    before: Option<(&String, Role)>,
    after: Option<(&String, Role)>,
) -> AuditDraft {
    let shown = |key: Option<(&String, Role)>| {
        key.map(|(label, role)| serde_json::json!({"label": label, "role": role}).to_string())
    };
    AuditDraft {
        organization: organization.to_owned(),
        actor: by.clone(),
        action: action.to_owned(),
        resource_type: "key".to_owned(),
        resource_id: key_id.to_owned(),
        before: shown(before),
        after: shown(after),
    }
}
