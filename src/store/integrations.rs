//! Integrations WedSync manages through the API: each one's specification (what the
//! configuration file would say, with its secrets replaced by the names of sealed credentials),
//! its version and times. Saving one writes its sealed credentials and its audit record in the
//! same transaction; removing one erases its credentials and dead-letters what was still queued
//! for it ("integration removed"), never dropping it silently. A delivery of it still held in a
//! sequence stays held: when its turn comes, the registry finds no integration and dead-letters
//! it through the normal settlement, so the sequence goes on.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{stored_spec_from_postgres, PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{stored_spec_from_sqlite, SqliteStore, SqliteWriter};
use super::{now_millis, Actor, Saved, StoreError, StoreFuture, StoredSpec};

/// A change to save: the specification, its sealed credentials (name, sealed bytes; they replace
/// the integration's credentials of those names), and the version it replaces (`None`: it must
/// be new).
#[derive(Debug, Clone)]
pub struct IntegrationChange {
    pub integration_id: String,
    pub organization: String,
    pub spec: String,
    pub sealed: Vec<(String, Vec<u8>)>,
    pub replaces_version: Option<i64>,
    /// The specification as the audit shows it before and after (secrets as fingerprints).
    pub audit_before: Option<String>,
    pub audit_after: String,
}

/// What removing an integration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Deliveries that were still queued for it, now dead letters.
    pub dead_lettered: u64,
}

/// The error every delivery still queued for a removed integration is dead-lettered with.
pub const REMOVED_REASON: &str = "integration removed";

/// Integrations managed through the API.
pub trait ManagedIntegrations: Queued {
    /// Every managed integration, for the daemon's start.
    fn managed_integrations(&self) -> StoreFuture<'_, Vec<StoredSpec>>;
    fn managed_integration(&self, integration_id: &str) -> StoreFuture<'_, Option<StoredSpec>>;
    /// Saves a new integration or a change to one, with its credentials and its audit record.
    fn save_integration(&self, change: IntegrationChange, by: &Actor) -> StoreFuture<'_, Saved> {
        self.queues().save_integration(change, by)
    }
    /// Removes the organization's integration, its credentials, and what was queued for it
    /// (dead-lettered); `None` if the organization has no such managed integration.
    fn remove_integration(
        &self,
        organization: &str,
        integration_id: &str,
        audit_before: String,
        by: &Actor,
    ) -> StoreFuture<'_, Option<Removed>> {
        self.queues()
            .remove_integration(organization, integration_id, audit_before, by)
    }
}

/// The statements [`ManagedIntegrations`] needs from a writer, run inside its group's
/// transaction.
pub(super) trait IntegrationStatements {
    async fn save_integration(&mut self, change: &IntegrationChange) -> Result<Saved, StoreError>;
    async fn remove_integration(
        &mut self,
        organization: &str,
        integration_id: &str,
    ) -> Result<Option<Removed>, StoreError>;
}

const COLUMNS: &str = "integration_id, organization, spec, version, created_at, updated_at";

// === SQLite ===

impl ManagedIntegrations for SqliteStore {
    fn managed_integrations(&self) -> StoreFuture<'_, Vec<StoredSpec>> {
        self.read(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {COLUMNS} FROM integrations ORDER BY integration_id"
            ))?;
            let rows = statement
                .query_map([], stored_spec_from_sqlite)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    fn managed_integration(&self, integration_id: &str) -> StoreFuture<'_, Option<StoredSpec>> {
        let integration_id = integration_id.to_owned();
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    &format!("SELECT {COLUMNS} FROM integrations WHERE integration_id = ?1"),
                    params![integration_id],
                    stored_spec_from_sqlite,
                )
                .optional()?)
        })
    }
}

impl IntegrationStatements for SqliteWriter {
    async fn save_integration(&mut self, change: &IntegrationChange) -> Result<Saved, StoreError> {
        let now = now_millis();
        let current: Option<(String, i64)> = self
            .connection
            .query_row(
                "SELECT organization, version FROM integrations WHERE integration_id = ?1",
                params![change.integration_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let written = match (change.replaces_version, current) {
            (None, Some(_)) => return Ok(Saved::Exists),
            (None, None) => self.connection.query_row(
                &format!(
                    "INSERT INTO integrations ({COLUMNS}) VALUES (?1, ?2, ?3, 1, ?4, ?4) RETURNING {COLUMNS}"
                ),
                params![change.integration_id, change.organization, change.spec, now],
                stored_spec_from_sqlite,
            )?,
            (Some(expected), Some((organization, version)))
                if version == expected && organization == change.organization =>
            {
                self.connection.query_row(
                    &format!(
                        "UPDATE integrations SET spec = ?2, version = version + 1, updated_at = ?3
                         WHERE integration_id = ?1 RETURNING {COLUMNS}"
                    ),
                    params![change.integration_id, change.spec, now],
                    stored_spec_from_sqlite,
                )?
            }
            (Some(_), current) => {
                return Ok(Saved::Stale {
                    current: current
                        .filter(|(organization, _)| *organization == change.organization)
                        .map(|(_, version)| version),
                })
            }
        };
        for (name, sealed) in &change.sealed {
            self.connection.execute(
                "INSERT INTO credentials (integration_id, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (integration_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![change.integration_id, name, sealed, now],
            )?;
        }
        Ok(Saved::Written(written))
    }

    async fn remove_integration(
        &mut self,
        organization: &str,
        integration_id: &str,
    ) -> Result<Option<Removed>, StoreError> {
        let deleted = self.connection.execute(
            "DELETE FROM integrations WHERE integration_id = ?1 AND organization = ?2",
            params![integration_id, organization],
        )?;
        if deleted == 0 {
            return Ok(None);
        }
        self.connection.execute(
            "DELETE FROM credentials WHERE integration_id = ?1",
            params![integration_id],
        )?;
        let dead_lettered = self.connection.execute(
            "UPDATE deliveries SET state = 'dead_lettered', last_error = ?2, next_attempt_at = NULL, settled_at = ?3
             WHERE integration_id = ?1 AND state IN ('pending', 'retrying')",
            params![integration_id, REMOVED_REASON, now_millis()],
        )?;
        Ok(Some(Removed {
            dead_lettered: dead_lettered as u64,
        }))
    }
}

// === PostgreSQL ===

impl ManagedIntegrations for PostgresStore {
    fn managed_integrations(&self) -> StoreFuture<'_, Vec<StoredSpec>> {
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader
                .query(
                    &format!("SELECT {COLUMNS} FROM integrations ORDER BY integration_id"),
                    &[],
                )
                .await?;
            Ok(rows.iter().map(stored_spec_from_postgres).collect())
        })
    }

    fn managed_integration(&self, integration_id: &str) -> StoreFuture<'_, Option<StoredSpec>> {
        let integration_id = integration_id.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let row = reader
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM integrations WHERE integration_id = $1"),
                    &[&integration_id],
                )
                .await?;
            Ok(row.as_ref().map(stored_spec_from_postgres))
        })
    }
}

impl IntegrationStatements for PostgresWriter {
    async fn save_integration(&mut self, change: &IntegrationChange) -> Result<Saved, StoreError> {
        let now = now_millis();
        let current = self
            .client
            .query_opt(
                "SELECT organization, version FROM integrations WHERE integration_id = $1 FOR UPDATE",
                &[&change.integration_id],
            )
            .await?
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)));
        let written = match (change.replaces_version, current) {
            (None, Some(_)) => return Ok(Saved::Exists),
            (None, None) => {
                let row = self
                    .client
                    .query_opt(
                        &format!(
                            "INSERT INTO integrations ({COLUMNS}) VALUES ($1, $2, $3, 1, $4, $4)
                             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
                        ),
                        &[&change.integration_id, &change.organization, &change.spec, &now],
                    )
                    .await?;
                // Another node created it since the read above.
                let Some(row) = row else {
                    return Ok(Saved::Exists);
                };
                stored_spec_from_postgres(&row)
            }
            (Some(expected), Some((organization, version)))
                if version == expected && organization == change.organization =>
            {
                stored_spec_from_postgres(
                    &self
                        .client
                        .query_one(
                            &format!(
                                "UPDATE integrations SET spec = $2, version = version + 1, updated_at = $3
                                 WHERE integration_id = $1 RETURNING {COLUMNS}"
                            ),
                            &[&change.integration_id, &change.spec, &now],
                        )
                        .await?,
                )
            }
            (Some(_), current) => {
                return Ok(Saved::Stale {
                    current: current
                        .filter(|(organization, _)| *organization == change.organization)
                        .map(|(_, version)| version),
                })
            }
        };
        for (name, sealed) in &change.sealed {
            self.client
                .execute(
                    "INSERT INTO credentials (integration_id, name, sealed, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (integration_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                    &[&change.integration_id, name, sealed, &now],
                )
                .await?;
        }
        Ok(Saved::Written(written))
    }

    async fn remove_integration(
        &mut self,
        organization: &str,
        integration_id: &str,
    ) -> Result<Option<Removed>, StoreError> {
        let deleted = self
            .client
            .execute(
                "DELETE FROM integrations WHERE integration_id = $1 AND organization = $2",
                &[&integration_id, &organization],
            )
            .await?;
        if deleted == 0 {
            return Ok(None);
        }
        self.client
            .execute(
                "DELETE FROM credentials WHERE integration_id = $1",
                &[&integration_id],
            )
            .await?;
        let dead_lettered = self
            .client
            .execute(
                "UPDATE deliveries SET state = 'dead_lettered', last_error = $2, next_attempt_at = NULL, settled_at = $3
                 WHERE integration_id = $1 AND state IN ('pending', 'retrying')",
                &[&integration_id, &REMOVED_REASON, &now_millis()],
            )
            .await?;
        Ok(Some(Removed { dead_lettered }))
    }
}
