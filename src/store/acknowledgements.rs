//! Acknowledgements: someone acted on a delivered notification in the target system.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{AcknowledgeOutcome, Acknowledgement, StoreError, StoreFuture};

/// Acknowledgements of delivered notifications.
pub trait Acknowledgements: Queued {
    /// Records an acknowledgement once per notification, integration, action and actor; a
    /// repeat, or a notification the organization does not have, writes nothing.
    fn acknowledge(&self, acknowledgement: Acknowledgement) -> StoreFuture<'_, AcknowledgeOutcome> {
        self.queues().acknowledge(acknowledgement)
    }
}

/// The statements [`Acknowledgements`] needs from a writer, run inside its group's transaction.
pub(super) trait AcknowledgementStatements {
    async fn acknowledge(
        &mut self,
        acknowledgement: &Acknowledgement,
    ) -> Result<AcknowledgeOutcome, StoreError>;
}

// === SQLite ===

impl Acknowledgements for SqliteStore {}

impl AcknowledgementStatements for SqliteWriter {
    async fn acknowledge(&mut self, a: &Acknowledgement) -> Result<AcknowledgeOutcome, StoreError> {
        let inserted = self.connection.execute(
            "INSERT INTO acknowledgements (organization, notification_id, integration_id, action_id, actor, at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS
               (SELECT 1 FROM notifications WHERE organization = ?1 AND notification_id = ?2)
             ON CONFLICT DO NOTHING",
            params![a.organization, a.notification_id, a.integration_id, a.action_id, a.actor, a.at],
        )?;
        if inserted == 1 {
            return Ok(AcknowledgeOutcome::Recorded);
        }
        let exists = self
            .connection
            .query_row(
                "SELECT 1 FROM notifications WHERE organization = ?1 AND notification_id = ?2",
                params![a.organization, a.notification_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        Ok(if exists {
            AcknowledgeOutcome::AlreadyRecorded
        } else {
            AcknowledgeOutcome::UnknownNotification
        })
    }
}

// === PostgreSQL ===

impl Acknowledgements for PostgresStore {}

impl AcknowledgementStatements for PostgresWriter {
    async fn acknowledge(&mut self, a: &Acknowledgement) -> Result<AcknowledgeOutcome, StoreError> {
        let inserted = self
            .client
            .execute(
                "INSERT INTO acknowledgements (organization, notification_id, integration_id, action_id, actor, at)
                 SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS
                   (SELECT 1 FROM notifications WHERE organization = $1 AND notification_id = $2)
                 ON CONFLICT DO NOTHING",
                &[&a.organization, &a.notification_id, &a.integration_id, &a.action_id, &a.actor, &a.at],
            )
            .await?;
        if inserted == 1 {
            return Ok(AcknowledgeOutcome::Recorded);
        }
        let exists = self
            .client
            .query_opt(
                "SELECT 1 FROM notifications WHERE organization = $1 AND notification_id = $2",
                &[&a.organization, &a.notification_id],
            )
            .await?
            .is_some();
        Ok(if exists {
            AcknowledgeOutcome::AlreadyRecorded
        } else {
            AcknowledgeOutcome::UnknownNotification
        })
    }
}
