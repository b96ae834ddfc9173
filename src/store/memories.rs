//! What a connector remembers between deliveries and across restarts (the weddings a weather
//! watch follows): small JSON values per integration and key, each with the time it lapses.
//!
//! Both dialects side by side: what each store reads, and the statement each writer runs in the
//! shared group commit (`queue.rs`). A lapsed memory is never read again and is cleared the next
//! time its integration writes one.

use rusqlite::params;

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{StoreError, StoreFuture, UnixMillis};

/// One remembered value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    pub key: String,
    /// JSON, as the connector wrote it.
    pub value: String,
    pub lapses_at: UnixMillis,
}

/// Connectors' memories per integration.
pub trait Memories: Queued {
    /// Keeps `value` under `key` until `lapses_at` (replacing what was there); with no value,
    /// forgets the key. Durable when it answers.
    fn remember(
        &self,
        integration_id: &str,
        key: &str,
        value: Option<String>,
        lapses_at: UnixMillis,
    ) -> StoreFuture<'_, ()> {
        self.queues()
            .remember(integration_id, key, value, lapses_at)
    }
    /// Every memory of the integration that has not lapsed at `now`, by key.
    fn memories(&self, integration_id: &str, now: UnixMillis) -> StoreFuture<'_, Vec<Memory>>;
}

/// The statement [`Memories`] needs from a writer, run inside its group's transaction.
pub(super) trait MemoryStatements {
    async fn remember(
        &mut self,
        integration_id: &str,
        key: &str,
        value: Option<&str>,
        lapses_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError>;
}

// === SQLite ===

impl Memories for SqliteStore {
    fn memories(&self, integration_id: &str, now: UnixMillis) -> StoreFuture<'_, Vec<Memory>> {
        let integration_id = integration_id.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT key, value, lapses_at FROM connector_memories
                 WHERE integration_id = ?1 AND lapses_at > ?2 ORDER BY key",
            )?;
            let rows = statement
                .query_map(params![integration_id, now], |r| {
                    Ok(Memory {
                        key: r.get(0)?,
                        value: r.get(1)?,
                        lapses_at: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }
}

impl MemoryStatements for SqliteWriter {
    async fn remember(
        &mut self,
        integration_id: &str,
        key: &str,
        value: Option<&str>,
        lapses_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "DELETE FROM connector_memories WHERE integration_id = ?1 AND (key = ?2 OR lapses_at <= ?3)",
            params![integration_id, key, now],
        )?;
        if let Some(value) = value {
            self.connection.execute(
                "INSERT INTO connector_memories (integration_id, key, value, lapses_at) VALUES (?1, ?2, ?3, ?4)",
                params![integration_id, key, value, lapses_at],
            )?;
        }
        Ok(())
    }
}

// === PostgreSQL ===

impl Memories for PostgresStore {
    fn memories(&self, integration_id: &str, now: UnixMillis) -> StoreFuture<'_, Vec<Memory>> {
        let integration_id = integration_id.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader
                .query(
                    "SELECT key, value, lapses_at FROM connector_memories
                     WHERE integration_id = $1 AND lapses_at > $2 ORDER BY key",
                    &[&integration_id, &now],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| Memory {
                    key: row.get(0),
                    value: row.get(1),
                    lapses_at: row.get(2),
                })
                .collect())
        })
    }
}

impl MemoryStatements for PostgresWriter {
    async fn remember(
        &mut self,
        integration_id: &str,
        key: &str,
        value: Option<&str>,
        lapses_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "DELETE FROM connector_memories WHERE integration_id = $1 AND (key = $2 OR lapses_at <= $3)",
                &[&integration_id, &key, &now],
            )
            .await?;
        if let Some(value) = value {
            self.client
                .execute(
                    "INSERT INTO connector_memories (integration_id, key, value, lapses_at) VALUES ($1, $2, $3, $4)",
                    &[&integration_id, &key, &value, &lapses_at],
                )
                .await?;
        }
        Ok(())
    }
}
