//! Credentials Herald keeps itself (an OAuth install's refresh token), sealed by the vault.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{now_millis, StoreError, StoreFuture};

/// Sealed credentials per integration.
pub trait Credentials: Queued {
    /// Keeps a credential sealed by the vault (replacing one of the same name).
    fn put_credential(
        &self,
        integration_id: &str,
        name: &str,
        sealed: Vec<u8>,
    ) -> StoreFuture<'_, ()> {
        self.queues().put_credential(integration_id, name, sealed)
    }
    /// A sealed credential, if one was kept.
    fn credential(&self, integration_id: &str, name: &str) -> StoreFuture<'_, Option<Vec<u8>>>;
}

/// The statements [`Credentials`] needs from a writer, run inside its group's transaction.
pub(super) trait CredentialStatements {
    async fn put_credential(
        &mut self,
        integration_id: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError>;
}

// === SQLite ===

impl Credentials for SqliteStore {
    fn credential(&self, integration_id: &str, name: &str) -> StoreFuture<'_, Option<Vec<u8>>> {
        let (integration_id, name) = (integration_id.to_owned(), name.to_owned());
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT sealed FROM credentials WHERE integration_id = ?1 AND name = ?2",
                    params![integration_id, name],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }
}

impl CredentialStatements for SqliteWriter {
    async fn put_credential(
        &mut self,
        integration_id: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO credentials (integration_id, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            params![integration_id, name, sealed, now_millis()],
        )?;
        Ok(())
    }
}

// === PostgreSQL ===

impl Credentials for PostgresStore {
    fn credential(&self, integration_id: &str, name: &str) -> StoreFuture<'_, Option<Vec<u8>>> {
        let (integration_id, name) = (integration_id.to_owned(), name.to_owned());
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let row = reader
                .query_opt(
                    "SELECT sealed FROM credentials WHERE integration_id = $1 AND name = $2",
                    &[&integration_id, &name],
                )
                .await?;
            Ok(row.map(|row| row.get(0)))
        })
    }
}

impl CredentialStatements for PostgresWriter {
    async fn put_credential(
        &mut self,
        integration_id: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO credentials (integration_id, name, sealed, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (integration_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                &[&integration_id, &name, &sealed, &now_millis()],
            )
            .await?;
        Ok(())
    }
}
