//! Credentials Herald keeps itself (an OAuth install's refresh token), sealed by the vault.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{now_millis, AuditDraft, StoreError, StoreFuture};

/// Sealed credentials per integration.
pub trait Credentials: Queued {
    /// Keeps a credential sealed by the vault (replacing one of the same name).
    /// With `audit`, its record is appended in the same transaction.
    fn put_credential(
        &self,
        integration_id: &str,
        name: &str,
        sealed: Vec<u8>,
        audit: Option<AuditDraft>,
    ) -> StoreFuture<'_, ()> {
        self.queues()
            .put_credential(integration_id, name, sealed, audit)
    }
    /// A sealed credential, if one was kept.
    fn credential(&self, integration_id: &str, name: &str) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// Every kept credential: (integration, name, sealed), for re-sealing under a new key.
    fn all_credentials(&self) -> StoreFuture<'_, Vec<(String, String, Vec<u8>)>>;
    /// Replaces a sealed credential with `sealed` if it is still `expected`; whether it was.
    /// With `audit`, a replacement is recorded in the same transaction.
    fn replace_credential(
        &self,
        integration_id: &str,
        name: &str,
        expected: Vec<u8>,
        sealed: Vec<u8>,
        audit: Option<AuditDraft>,
    ) -> StoreFuture<'_, bool> {
        self.queues()
            .replace_credential(integration_id, name, expected, sealed, audit)
    }
}

/// The statements [`Credentials`] needs from a writer, run inside its group's transaction.
pub(super) trait CredentialStatements {
    async fn put_credential(
        &mut self,
        integration_id: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError>;
    async fn replace_credential(
        &mut self,
        integration_id: &str,
        name: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
}

// === SQLite ===

impl Credentials for SqliteStore {
    fn all_credentials(&self) -> StoreFuture<'_, Vec<(String, String, Vec<u8>)>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare("SELECT integration_id, name, sealed FROM credentials ORDER BY integration_id, name")?;
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

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

    async fn replace_credential(
        &mut self,
        integration_id: &str,
        name: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let replaced = self.connection.execute(
            "UPDATE credentials SET sealed = ?4, updated_at = ?5
             WHERE integration_id = ?1 AND name = ?2 AND sealed = ?3",
            params![integration_id, name, expected, sealed, now_millis()],
        )?;
        Ok(replaced == 1)
    }
}

// === PostgreSQL ===

impl Credentials for PostgresStore {
    fn all_credentials(&self) -> StoreFuture<'_, Vec<(String, String, Vec<u8>)>> {
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader
                .query(
                    "SELECT integration_id, name, sealed FROM credentials ORDER BY integration_id, name",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect())
        })
    }

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

    async fn replace_credential(
        &mut self,
        integration_id: &str,
        name: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let replaced = self
            .client
            .execute(
                "UPDATE credentials SET sealed = $4, updated_at = $5
                 WHERE integration_id = $1 AND name = $2 AND sealed = $3",
                &[&integration_id, &name, &expected, &sealed, &now_millis()],
            )
            .await?;
        Ok(replaced == 1)
    }
}
