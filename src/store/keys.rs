//! API keys: which organization a key belongs to (by its SHA-256), creating, listing and revoking
//! them.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{now_millis, ApiKeyInfo, StoreError, StoreFuture, API_KEY_ID_LEN};

/// The organizations' API keys, kept by their hash.
pub trait ApiKeys: Queued {
    fn organization_for_key(&self, key_hash: &str) -> StoreFuture<'_, Option<String>>;
    fn create_api_key(
        &self,
        organization: &str,
        key_hash: &str,
        label: &str,
    ) -> StoreFuture<'_, ()> {
        self.queues().create_api_key(organization, key_hash, label)
    }
    /// The organization's API keys (never the keys: their ids, labels and creation times).
    fn api_keys(&self, organization: &str) -> StoreFuture<'_, Vec<ApiKeyInfo>>;
    /// Deletes the organization's key with this id; answers whether there was one.
    fn revoke_api_key(&self, organization: &str, key_id: &str) -> StoreFuture<'_, bool> {
        self.queues().revoke_api_key(organization, key_id)
    }
}

/// The statements [`ApiKeys`] needs from a writer, run inside its group's transaction.
pub(super) trait KeyStatements {
    async fn create_api_key(
        &mut self,
        organization: &str,
        key_hash: &str,
        label: &str,
    ) -> Result<(), StoreError>;
    async fn revoke_api_key(
        &mut self,
        organization: &str,
        key_id: &str,
    ) -> Result<bool, StoreError>;
}

// === SQLite ===

impl ApiKeys for SqliteStore {
    fn organization_for_key(&self, key_hash: &str) -> StoreFuture<'_, Option<String>> {
        let key_hash = key_hash.to_owned();
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT organization FROM api_keys WHERE key_hash = ?1",
                    params![key_hash],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    fn api_keys(&self, organization: &str) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        let organization = organization.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT substr(key_hash, 1, ?2), label, created_at FROM api_keys WHERE organization = ?1 ORDER BY created_at, key_hash",
            )?;
            let keys = statement
                .query_map(params![organization, API_KEY_ID_LEN as i64], |r| {
                    Ok(ApiKeyInfo { id: r.get(0)?, label: r.get(1)?, created_at: r.get(2)? })
                })?
                .collect::<Result<_, _>>()?;
            Ok(keys)
        })
    }
}

impl KeyStatements for SqliteWriter {
    async fn create_api_key(
        &mut self,
        organization: &str,
        key_hash: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO api_keys (key_hash, organization, label, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![key_hash, organization, label, now_millis()],
        )?;
        Ok(())
    }

    async fn revoke_api_key(
        &mut self,
        organization: &str,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self.connection.execute(
            "DELETE FROM api_keys WHERE organization = ?1 AND substr(key_hash, 1, ?3) = ?2",
            params![organization, key_id, API_KEY_ID_LEN as i64],
        )?;
        Ok(deleted > 0)
    }
}

// === PostgreSQL ===

impl ApiKeys for PostgresStore {
    fn organization_for_key(&self, key_hash: &str) -> StoreFuture<'_, Option<String>> {
        let key_hash = key_hash.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let row = reader
                .query_opt(
                    "SELECT organization FROM api_keys WHERE key_hash = $1",
                    &[&key_hash],
                )
                .await?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn api_keys(&self, organization: &str) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        let organization = organization.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader.query(
                    "SELECT substr(key_hash, 1, $2), label, created_at FROM api_keys WHERE organization = $1 ORDER BY created_at, key_hash",
                    &[&organization, &(API_KEY_ID_LEN as i32)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ApiKeyInfo {
                    id: r.get(0),
                    label: r.get(1),
                    created_at: r.get(2),
                })
                .collect())
        })
    }
}

impl KeyStatements for PostgresWriter {
    async fn create_api_key(
        &mut self,
        organization: &str,
        key_hash: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO api_keys (key_hash, organization, label, created_at) VALUES ($1, $2, $3, $4)",
                &[&key_hash, &organization, &label, &now_millis()],
            )
            .await?;
        Ok(())
    }

    async fn revoke_api_key(
        &mut self,
        organization: &str,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .client
            .execute(
                "DELETE FROM api_keys WHERE organization = $1 AND substr(key_hash, 1, $3) = $2",
                &[&organization, &key_id, &(API_KEY_ID_LEN as i32)],
            )
            .await?;
        Ok(deleted > 0)
    }
}
