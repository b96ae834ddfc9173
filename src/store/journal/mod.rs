//! Accepted notifications and their deliveries: intake, delivery outcomes, failover and replay,
//! and the reads that follow a notification (its record, an integration's open deliveries, the
//! next of a sequence, dead letters).
//!
//! Both dialects side by side (`sqlite.rs`, `postgres.rs`): what each store reads, and the
//! statements each writer runs in the shared group commit (`queue.rs`).

mod postgres;
mod sqlite;

use crate::store::Actor;
use crate::wedsync::Lane;

use super::queue::Queued;
use super::{
    CommittedSettlements, DeliveryRow, Intake, NewNotification, OpenDelivery, SettledDelivery,
    Settlement, StoreError, StoreFuture, StoredNotification, UnixMillis,
};

/// The journal: notifications, one delivery row per target (the integration's durable retry
/// mailbox), their outcomes and dead letters. Writes that answer a client (`journal`) are
/// fsynced before they return; `settle` is fire-and-forget and rides along with the next commit,
/// so delivery bookkeeping never pays an fsync of its own (at worst a crash repeats a delivery:
/// at-least-once).
pub trait Journal: Queued {
    /// Journals notifications and their delivery rows; idempotent on (organization, notificationId).
    fn journal(&self, lane: Lane, batch: Vec<NewNotification>) -> StoreFuture<'_, Vec<Intake>> {
        self.queues().journal(lane, batch)
    }
    /// Records delivery outcomes in the next commit.
    fn settle(&self, settlements: Vec<Settlement>) {
        self.queues().settle(settlements)
    }
    /// Marks a delivery failed over and creates the backup's delivery row; returns the new row.
    fn fail_over(
        &self,
        delivery_id: i64,
        attempts: u32,
        error: String,
        backup: String,
    ) -> StoreFuture<'_, DeliveryRow> {
        self.queues()
            .fail_over(delivery_id, attempts, error, backup)
    }
    /// Puts a dead-lettered delivery of this organization back to pending (audited as done
    /// `by`); returns it, or `None` if the organization has no such dead letter.
    fn replay(
        &self,
        organization: &str,
        delivery_id: i64,
        by: &Actor,
    ) -> StoreFuture<'_, Option<OpenDelivery>>;
    fn notification(
        &self,
        organization: &str,
        notification_id: &str,
    ) -> StoreFuture<'_, Option<StoredNotification>>;
    /// Every pending or retrying delivery of an integration, oldest first.
    fn open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, Vec<OpenDelivery>>;
    /// Whether the integration has a pending or retrying delivery.
    fn has_open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, bool>;
    /// The integrations with a pending or retrying delivery: those whose actors start with
    /// Herald (the others start on their first delivery).
    fn integrations_with_open_deliveries(&self) -> StoreFuture<'_, Vec<String>>;
    /// The open deliveries that come right after this one in its sequenced routing (released
    /// by its settlement; read after that settlement committed).
    fn next_in_sequence(&self, delivery_id: i64) -> StoreFuture<'_, Vec<OpenDelivery>>;
    fn dead_letters(&self, organization: &str, limit: usize) -> StoreFuture<'_, Vec<DeliveryRow>>;
    /// Every delivery whose settlement commits from now on (its state changed: a settlement of
    /// a delivery already settled changes nothing and is not announced), a group at a time.
    fn settled_deliveries(&self) -> tokio::sync::mpsc::UnboundedReceiver<CommittedSettlements> {
        self.queues().subscribe()
    }
}

/// The statements [`Journal`] needs from a writer, run inside its group's transaction.
pub(super) trait JournalStatements {
    /// Journals notifications, idempotent on (organization, notificationId): one outcome per
    /// notification, in order (the first of two with the same key in one batch is accepted).
    /// The batch is borrowed: a group's journal commands are one statement without copying them.
    async fn journal(&mut self, batch: &[&NewNotification]) -> Result<Vec<Intake>, StoreError>;
    /// Applies settlements (one per delivery, see [`super::effective_settlements`]) to deliveries
    /// still open, releasing or cancelling what comes after a sequenced one; answers the
    /// deliveries it changed.
    async fn settle(
        &mut self,
        settlements: &[&Settlement],
        now: UnixMillis,
    ) -> Result<Vec<SettledDelivery>, StoreError>;
    async fn fail_over(
        &mut self,
        delivery_id: i64,
        attempts: u32,
        error: &str,
        backup: &str,
    ) -> Result<DeliveryRow, StoreError>;
    async fn replay(
        &mut self,
        organization: &str,
        delivery_id: i64,
    ) -> Result<Option<DeliveryRow>, StoreError>;
}
