//! API keys: who holds a key (by its SHA-256: its organization, id, label and role), creating,
//! listing and revoking them.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{
    now_millis, Actor, ApiKeyInfo, KeyHolder, Role, StoreError, StoreFuture, API_KEY_ID_LEN,
};

/// The organizations' API keys, kept by their hash.
pub trait ApiKeys: Queued {
    /// Who holds the key with this hash, if anyone.
    fn key_holder(&self, key_hash: &str) -> StoreFuture<'_, Option<KeyHolder>>;
    fn create_api_key(
        &self,
        organization: &str,
        key_hash: &str,
        label: &str,
        role: Role,
        by: &Actor,
    ) -> StoreFuture<'_, ()> {
        self.queues()
            .create_api_key(organization, key_hash, label, role, by)
    }
    /// The organization's API keys (never the keys: their ids, labels, roles and creation
    /// times).
    fn api_keys(&self, organization: &str) -> StoreFuture<'_, Vec<ApiKeyInfo>>;
    /// Deletes the organization's key with this id; answers whether there was one.
    fn revoke_api_key(
        &self,
        organization: &str,
        key_id: &str,
        by: &Actor,
    ) -> StoreFuture<'_, bool> {
        self.queues().revoke_api_key(organization, key_id, by)
    }
}

/// The statements [`ApiKeys`] needs from a writer, run inside its group's transaction.
pub(super) trait KeyStatements {
    async fn create_api_key(
        &mut self,
        organization: &str,
        key_hash: &str,
        label: &str,
        role: Role,
    ) -> Result<(), StoreError>;
    /// Deletes the key; the label and role it had, if there was one.
    async fn revoke_api_key(
        &mut self,
        organization: &str,
        key_id: &str,
    ) -> Result<Option<(String, Role)>, StoreError>;
}

/// A stored role; a name Herald does not know means the store was changed outside Herald.
fn parse_role(text: &str) -> Result<Role, StoreError> {
    Role::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("an API key has the unknown role {text:?}")))
}

// === SQLite ===

impl ApiKeys for SqliteStore {
    fn key_holder(&self, key_hash: &str) -> StoreFuture<'_, Option<KeyHolder>> {
        let key_hash = key_hash.to_owned();
        self.read(move |connection| {
            let row = connection
                .query_row(
                    "SELECT organization, substr(key_hash, 1, ?2), label, role FROM api_keys WHERE key_hash = ?1",
                    params![key_hash, API_KEY_ID_LEN as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?)),
                )
                .optional()?;
            row.map(|(organization, key_id, label, role)| {
                Ok(KeyHolder { organization, key_id, label, role: parse_role(&role)? })
            })
            .transpose()
        })
    }

    fn api_keys(&self, organization: &str) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        let organization = organization.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT substr(key_hash, 1, ?2), label, role, created_at FROM api_keys WHERE organization = ?1 ORDER BY created_at, key_hash",
            )?;
            let rows = statement
                .query_map(params![organization, API_KEY_ID_LEN as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<(String, String, String, i64)>, _>>()?;
            rows.into_iter()
                .map(|(id, label, role, created_at)| {
                    Ok(ApiKeyInfo { id, label, role: parse_role(&role)?, created_at })
                })
                .collect()
        })
    }
}

impl KeyStatements for SqliteWriter {
    async fn create_api_key(
        &mut self,
        organization: &str,
        key_hash: &str,
        label: &str,
        role: Role,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO api_keys (key_hash, organization, label, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key_hash, organization, label, role.as_str(), now_millis()],
        )?;
        Ok(())
    }

    async fn revoke_api_key(
        &mut self,
        organization: &str,
        key_id: &str,
    ) -> Result<Option<(String, Role)>, StoreError> {
        let deleted = self
            .connection
            .query_row(
                "DELETE FROM api_keys WHERE organization = ?1 AND substr(key_hash, 1, ?3) = ?2
                 RETURNING label, role",
                params![organization, key_id, API_KEY_ID_LEN as i64],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        deleted
            .map(|(label, role)| Ok((label, parse_role(&role)?)))
            .transpose()
    }
}

// === PostgreSQL ===

impl ApiKeys for PostgresStore {
    fn key_holder(&self, key_hash: &str) -> StoreFuture<'_, Option<KeyHolder>> {
        let key_hash = key_hash.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let row = reader
                .query_opt(
                    "SELECT organization, substr(key_hash, 1, $2), label, role FROM api_keys WHERE key_hash = $1",
                    &[&key_hash, &(API_KEY_ID_LEN as i32)],
                )
                .await?;
            row.map(|row| {
                Ok(KeyHolder {
                    organization: row.get(0),
                    key_id: row.get(1),
                    label: row.get(2),
                    role: parse_role(row.get(3))?,
                })
            })
            .transpose()
        })
    }

    fn api_keys(&self, organization: &str) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        let organization = organization.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader.query(
                    "SELECT substr(key_hash, 1, $2), label, role, created_at FROM api_keys WHERE organization = $1 ORDER BY created_at, key_hash",
                    &[&organization, &(API_KEY_ID_LEN as i32)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ApiKeyInfo {
                        id: r.get(0),
                        label: r.get(1),
                        role: parse_role(r.get(2))?,
                        created_at: r.get(3),
                    })
                })
                .collect()
        })
    }
}

impl KeyStatements for PostgresWriter {
    async fn create_api_key(
        &mut self,
        organization: &str,
        key_hash: &str,
        label: &str,
        role: Role,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO api_keys (key_hash, organization, label, role, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&key_hash, &organization, &label, &role.as_str(), &now_millis()],
            )
            .await?;
        Ok(())
    }

    async fn revoke_api_key(
        &mut self,
        organization: &str,
        key_id: &str,
    ) -> Result<Option<(String, Role)>, StoreError> {
        let deleted = self
            .client
            .query_opt(
                "DELETE FROM api_keys WHERE organization = $1 AND substr(key_hash, 1, $3) = $2
                 RETURNING label, role",
                &[&organization, &key_id, &(API_KEY_ID_LEN as i32)],
            )
            .await?;
        deleted
            .map(|row| Ok((row.get(0), parse_role(row.get(1))?)))
            .transpose()
    }
}
