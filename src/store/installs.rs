//! OAuth app installs Herald started and has not seen finish, by the hash of their `state`.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{now_millis, Actor, PendingInstall, StoreError, StoreFuture};

/// OAuth installs in progress.
pub trait Installs: Queued {
    /// Records an install started now, good until `expires_at` (ms); drops expired ones.
    fn begin_install(
        &self,
        state_hash: &str,
        install: PendingInstall,
        expires_at: i64,
    ) -> StoreFuture<'_, ()> {
        self.queues().begin_install(state_hash, install, expires_at)
    }
    /// Takes (once) the install with this state hash, if it has not expired by `now` (ms).
    fn finish_install(
        &self,
        state_hash: &str,
        now: i64,
    ) -> StoreFuture<'_, Option<PendingInstall>> {
        self.queues().finish_install(state_hash, now)
    }
}

/// The statements [`Installs`] needs from a writer, run inside its group's transaction.
pub(super) trait InstallStatements {
    async fn begin_install(
        &mut self,
        state_hash: &str,
        install: &PendingInstall,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    async fn finish_install(
        &mut self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingInstall>, StoreError>;
}

/// Who started an install, as kept; an install started before Herald kept it (schema 15) says so.
fn starter(key_id: Option<String>, label: Option<String>) -> Actor {
    match (key_id, label) {
        (Some(key_id), Some(label)) => Actor { key_id, label },
        _ => Actor {
            key_id: "unknown".to_owned(),
            label: "an install started before Herald recorded who started it".to_owned(),
        },
    }
}

// === SQLite ===

impl Installs for SqliteStore {}

impl InstallStatements for SqliteWriter {
    async fn begin_install(
        &mut self,
        state_hash: &str,
        install: &PendingInstall,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "DELETE FROM oauth_installs WHERE expires_at <= ?1",
            params![now_millis()],
        )?;
        self.connection.execute(
            "INSERT INTO oauth_installs (state_hash, integration_id, organization, expires_at, code_verifier, started_by_key_id, started_by_label) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![state_hash, install.integration_id, install.organization, expires_at, install.code_verifier, install.started_by.key_id, install.started_by.label],
        )?;
        Ok(())
    }

    async fn finish_install(
        &mut self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingInstall>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "DELETE FROM oauth_installs WHERE state_hash = ?1 RETURNING integration_id, organization, expires_at, code_verifier, started_by_key_id, started_by_label",
                params![state_hash],
                |r| {
                    Ok((
                        PendingInstall {
                            integration_id: r.get(0)?,
                            organization: r.get(1)?,
                            code_verifier: r.get(3)?,
                            started_by: starter(r.get(4)?, r.get(5)?),
                        },
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(install, _)| install))
    }
}

// === PostgreSQL ===

impl Installs for PostgresStore {}

impl InstallStatements for PostgresWriter {
    async fn begin_install(
        &mut self,
        state_hash: &str,
        install: &PendingInstall,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "DELETE FROM oauth_installs WHERE expires_at <= $1",
                &[&now_millis()],
            )
            .await?;
        self.client
            .execute(
                "INSERT INTO oauth_installs (state_hash, integration_id, organization, expires_at, code_verifier, started_by_key_id, started_by_label) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&state_hash, &install.integration_id, &install.organization, &expires_at, &install.code_verifier, &install.started_by.key_id, &install.started_by.label],
            )
            .await?;
        Ok(())
    }

    async fn finish_install(
        &mut self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingInstall>, StoreError> {
        let row = self
            .client
            .query_opt(
                "DELETE FROM oauth_installs WHERE state_hash = $1 RETURNING integration_id, organization, expires_at, code_verifier, started_by_key_id, started_by_label",
                &[&state_hash],
            )
            .await?;
        Ok(row
            .filter(|row| row.get::<_, i64>(2) > now)
            .map(|row| PendingInstall {
                integration_id: row.get(0),
                organization: row.get(1),
                code_verifier: row.get(3),
                started_by: starter(row.get(4), row.get(5)),
            }))
    }
}
