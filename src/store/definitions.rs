//! Definitions WedSync manages through the API that are plain data, each of a [`Kind`]: routes
//! today (and the workflows and escalation policies later issues add). Each is a specification
//! in the configuration file's form with a version; saving or removing one writes its audit
//! record in the same transaction.
//!
//! Both dialects side by side: what each store reads, and the statements each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::{params, OptionalExtension};

use super::postgres::{stored_spec_from_postgres, PostgresStore, PostgresWriter};
use super::queue::Queued;
use super::sqlite::{stored_spec_from_sqlite, SqliteStore, SqliteWriter};
use super::{now_millis, Actor, Saved, StoreError, StoreFuture, StoredSpec};

/// What a definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Route,
}

impl Kind {
    /// The name kept in the store and the audit log (`route`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Route => "route",
        }
    }
}

/// A definition to save, in place of `replaces_version` (`None`: it must be new).
#[derive(Debug, Clone)]
pub struct DefinitionChange {
    pub kind: Kind,
    pub organization: String,
    pub id: String,
    pub spec: String,
    pub replaces_version: Option<i64>,
    /// The specification before, for the audit (a change's).
    pub audit_before: Option<String>,
}

/// Definitions managed through the API.
pub trait Definitions: Queued {
    /// Every definition of a kind, of every organization (the daemon's start), oldest first.
    fn definitions(&self, kind: Kind) -> StoreFuture<'_, Vec<StoredSpec>>;
    /// Saves a new definition or a change to one, with its audit record.
    fn save_definition(&self, change: DefinitionChange, by: &Actor) -> StoreFuture<'_, Saved> {
        self.queues().save_definition(change, by)
    }
    /// Removes the organization's definition, with its audit record; whether there was one.
    fn remove_definition(
        &self,
        kind: Kind,
        organization: &str,
        id: &str,
        by: &Actor,
    ) -> StoreFuture<'_, bool> {
        self.queues().remove_definition(kind, organization, id, by)
    }
}

/// The statements [`Definitions`] needs from a writer, run inside its group's transaction.
pub(super) trait DefinitionStatements {
    async fn save_definition(&mut self, change: &DefinitionChange) -> Result<Saved, StoreError>;
    /// Deletes it; its specification, if there was one.
    async fn remove_definition(
        &mut self,
        kind: Kind,
        organization: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError>;
}

const COLUMNS: &str = "id, organization, spec, version, created_at, updated_at";

// === SQLite ===

impl Definitions for SqliteStore {
    fn definitions(&self, kind: Kind) -> StoreFuture<'_, Vec<StoredSpec>> {
        self.read(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {COLUMNS} FROM definitions WHERE kind = ?1 ORDER BY created_at, organization, id"
            ))?;
            let rows = statement
                .query_map(params![kind.as_str()], stored_spec_from_sqlite)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }
}

impl DefinitionStatements for SqliteWriter {
    async fn save_definition(&mut self, change: &DefinitionChange) -> Result<Saved, StoreError> {
        let now = now_millis();
        let kind = change.kind.as_str();
        let current: Option<i64> = self
            .connection
            .query_row(
                "SELECT version FROM definitions WHERE kind = ?1 AND organization = ?2 AND id = ?3",
                params![kind, change.organization, change.id],
                |r| r.get(0),
            )
            .optional()?;
        let written = match (change.replaces_version, current) {
            (None, Some(_)) => return Ok(Saved::Exists),
            (None, None) => self.connection.query_row(
                &format!(
                    "INSERT INTO definitions (kind, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5) RETURNING {COLUMNS}"
                ),
                params![kind, change.id, change.organization, change.spec, now],
                stored_spec_from_sqlite,
            )?,
            (Some(expected), Some(version)) if version == expected => self.connection.query_row(
                &format!(
                    "UPDATE definitions SET spec = ?4, version = version + 1, updated_at = ?5
                     WHERE kind = ?1 AND organization = ?2 AND id = ?3 RETURNING {COLUMNS}"
                ),
                params![kind, change.organization, change.id, change.spec, now],
                stored_spec_from_sqlite,
            )?,
            (Some(_), current) => return Ok(Saved::Stale { current }),
        };
        Ok(Saved::Written(written))
    }

    async fn remove_definition(
        &mut self,
        kind: Kind,
        organization: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "DELETE FROM definitions WHERE kind = ?1 AND organization = ?2 AND id = ?3 RETURNING spec",
                params![kind.as_str(), organization, id],
                |r| r.get(0),
            )
            .optional()?)
    }
}

// === PostgreSQL ===

impl Definitions for PostgresStore {
    fn definitions(&self, kind: Kind) -> StoreFuture<'_, Vec<StoredSpec>> {
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM definitions WHERE kind = $1 ORDER BY created_at, organization, id"
                    ),
                    &[&kind.as_str()],
                )
                .await?;
            Ok(rows.iter().map(stored_spec_from_postgres).collect())
        })
    }
}

impl DefinitionStatements for PostgresWriter {
    async fn save_definition(&mut self, change: &DefinitionChange) -> Result<Saved, StoreError> {
        let now = now_millis();
        let kind = change.kind.as_str();
        let current: Option<i64> = self
            .client
            .query_opt(
                "SELECT version FROM definitions WHERE kind = $1 AND organization = $2 AND id = $3 FOR UPDATE",
                &[&kind, &change.organization, &change.id],
            )
            .await?
            .map(|row| row.get(0));
        let written = match (change.replaces_version, current) {
            (None, Some(_)) => return Ok(Saved::Exists),
            (None, None) => {
                let row = self
                    .client
                    .query_opt(
                        &format!(
                            "INSERT INTO definitions (kind, {COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5, $5)
                             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
                        ),
                        &[&kind, &change.id, &change.organization, &change.spec, &now],
                    )
                    .await?;
                // Another node created it since the read above.
                let Some(row) = row else {
                    return Ok(Saved::Exists);
                };
                stored_spec_from_postgres(&row)
            }
            (Some(expected), Some(version)) if version == expected => stored_spec_from_postgres(
                &self
                    .client
                    .query_one(
                        &format!(
                            "UPDATE definitions SET spec = $4, version = version + 1, updated_at = $5
                             WHERE kind = $1 AND organization = $2 AND id = $3 RETURNING {COLUMNS}"
                        ),
                        &[&kind, &change.organization, &change.id, &change.spec, &now],
                    )
                    .await?,
            ),
            (Some(_), current) => return Ok(Saved::Stale { current }),
        };
        Ok(Saved::Written(written))
    }

    async fn remove_definition(
        &mut self,
        kind: Kind,
        organization: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .client
            .query_opt(
                "DELETE FROM definitions WHERE kind = $1 AND organization = $2 AND id = $3 RETURNING spec",
                &[&kind.as_str(), &organization, &id],
            )
            .await?
            .map(|row| row.get(0)))
    }
}
