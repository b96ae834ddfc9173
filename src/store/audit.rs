//! The audit log: an append-only record of every change to an organization's keys (and, as they
//! become data, its integrations, routes and credentials), each with who made it (the API key's
//! id and label, or the operator's CLI), what, when, and the resource before and after (secrets
//! never: a caller puts a fingerprint in their place).
//!
//! Records are hash-chained per organization: each record's `hash` covers its own fields and the
//! `prev_hash` of the record before it, so changing or deleting a record breaks the chain at the
//! next one ([`verify_chain`], `herald audit verify`). A record is appended by the writer in the
//! same transaction as the change it describes: there is no change without its record.
//!
//! Both dialects side by side: what each store reads, and the statement each writer runs in the
//! shared group commit (`queue.rs`).

use rusqlite::params;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::postgres::{PostgresStore, PostgresWriter};
use super::sqlite::{SqliteStore, SqliteWriter};
use super::{now_millis, StoreError, StoreFuture, UnixMillis};

/// Who made a change: an API key (its id and label) or the operator at the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub key_id: String,
    pub label: String,
}

impl Actor {
    /// The operator, through `herald` on the command line.
    pub fn operator() -> Self {
        Self {
            key_id: "cli".to_owned(),
            label: "herald command line".to_owned(),
        }
    }
}

/// A change about to be recorded: everything but its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub organization: String,
    pub actor: Actor,
    /// What happened, `<resource>.<verb>` (`key.created`, `key.revoked`).
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    /// The resource before and after, as JSON text, secrets replaced by fingerprints.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(skip)]
    pub organization: String,
    #[schema(value_type = i64)]
    pub at: UnixMillis,
    pub key_id: String,
    pub key_label: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    /// The resource before the change, secrets as fingerprints.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<String>,
    /// The resource after the change, secrets as fingerprints.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// A stored JSON text shown as the JSON it is.
fn as_json<S: serde::Serializer>(text: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    let value: Option<serde_json::Value> = text
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or(serde_json::Value::String(text.into())));
    value.serialize(serializer)
}

/// Which records a listing shows: newest first, before `before_seq` when given.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub before_seq: Option<i64>,
    pub limit: usize,
}

/// The `prev_hash` of an organization's first record.
pub const GENESIS: &str = "";

/// The hash of a record: SHA-256 over the previous record's hash and every field of this one,
/// each prefixed with its length, so no two different records hash alike.
pub fn chain_hash(prev_hash: &str, draft: &AuditDraft, at: UnixMillis) -> String {
    let mut hasher = Sha256::new();
    let at = at.to_string();
    let fields: [&str; 8] = [
        prev_hash,
        &draft.organization,
        &at,
        &draft.actor.key_id,
        &draft.actor.label,
        &draft.action,
        &draft.resource_type,
        &draft.resource_id,
    ];
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    for optional in [&draft.before, &draft.after] {
        match optional {
            Some(text) => {
                hasher.update([1]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update([0]),
        }
    }
    hex::encode(hasher.finalize())
}

/// Where an organization's chain is broken, if it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("organization {organization:?}: audit record {seq} {problem}")]
pub struct ChainBreak {
    pub organization: String,
    pub seq: i64,
    pub problem: &'static str,
}

/// Checks a chain of records (one organization's, in `seq` order): each links to the one before
/// and hashes to what it says.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), ChainBreak> {
    let mut prev = GENESIS.to_owned();
    for record in records {
        let broken = |problem| ChainBreak {
            organization: record.organization.clone(),
            seq: record.seq,
            problem,
        };
        if record.prev_hash != prev {
            return Err(broken(
                "does not follow the record before it (a record was changed or deleted)",
            ));
        }
        let draft = AuditDraft {
            organization: record.organization.clone(),
            actor: Actor {
                key_id: record.key_id.clone(),
                label: record.key_label.clone(),
            },
            action: record.action.clone(),
            resource_type: record.resource_type.clone(),
            resource_id: record.resource_id.clone(),
            before: record.before.clone(),
            after: record.after.clone(),
        };
        if chain_hash(&record.prev_hash, &draft, record.at) != record.hash {
            return Err(broken("was changed after it was written"));
        }
        prev = record.hash.clone();
    }
    Ok(())
}

/// The audit log.
pub trait Audit {
    /// The organization's records matching `query`, newest first.
    fn audit_records(
        &self,
        organization: &str,
        query: AuditQuery,
    ) -> StoreFuture<'_, Vec<AuditRecord>>;
    /// Every record of every organization, in each organization's order (`herald audit verify`).
    fn audit_chains(&self) -> StoreFuture<'_, Vec<AuditRecord>>;
}

/// The statement [`Audit`] needs from a writer: append a record at the end of its
/// organization's chain, inside the transaction of the change it records.
pub(super) trait AuditStatements {
    async fn append_audit(&mut self, draft: &AuditDraft) -> Result<(), StoreError>;
}

const RECORD_COLUMNS: &str = "seq, organization, at, key_id, key_label, action, resource_type, resource_id, before, after, prev_hash, hash";

// === SQLite ===

fn sqlite_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        organization: r.get(1)?,
        at: r.get(2)?,
        key_id: r.get(3)?,
        key_label: r.get(4)?,
        action: r.get(5)?,
        resource_type: r.get(6)?,
        resource_id: r.get(7)?,
        before: r.get(8)?,
        after: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

impl Audit for SqliteStore {
    fn audit_records(
        &self,
        organization: &str,
        query: AuditQuery,
    ) -> StoreFuture<'_, Vec<AuditRecord>> {
        let organization = organization.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_log WHERE organization = ?1
                 AND (?2 IS NULL OR resource_type = ?2) AND (?3 IS NULL OR resource_id = ?3)
                 AND (?4 IS NULL OR seq < ?4) ORDER BY seq DESC LIMIT ?5"
            ))?;
            let records = statement
                .query_map(
                    params![
                        organization,
                        query.resource_type,
                        query.resource_id,
                        query.before_seq,
                        query.limit as i64
                    ],
                    sqlite_record,
                )?
                .collect::<Result<_, _>>()?;
            Ok(records)
        })
    }

    fn audit_chains(&self) -> StoreFuture<'_, Vec<AuditRecord>> {
        self.read(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_log ORDER BY organization, seq"
            ))?;
            let records = statement
                .query_map([], sqlite_record)?
                .collect::<Result<_, _>>()?;
            Ok(records)
        })
    }
}

impl AuditStatements for SqliteWriter {
    async fn append_audit(&mut self, draft: &AuditDraft) -> Result<(), StoreError> {
        // The writer is the only one appending, inside its transaction: the last record read
        // here is still the last when this one is inserted.
        let prev: String = self
            .connection
            .query_row(
                "SELECT hash FROM audit_log WHERE organization = ?1 ORDER BY seq DESC LIMIT 1",
                params![draft.organization],
                |r| r.get(0),
            )
            .or_else(|err| match err {
                rusqlite::Error::QueryReturnedNoRows => Ok(GENESIS.to_owned()),
                other => Err(other),
            })?;
        let at = now_millis();
        let hash = chain_hash(&prev, draft, at);
        self.connection.execute(
            "INSERT INTO audit_log (organization, at, key_id, key_label, action, resource_type, resource_id, before, after, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                draft.organization, at, draft.actor.key_id, draft.actor.label, draft.action,
                draft.resource_type, draft.resource_id, draft.before, draft.after, prev, hash
            ],
        )?;
        Ok(())
    }
}

// === PostgreSQL ===

fn postgres_record(r: &tokio_postgres::Row) -> AuditRecord {
    AuditRecord {
        seq: r.get(0),
        organization: r.get(1),
        at: r.get(2),
        key_id: r.get(3),
        key_label: r.get(4),
        action: r.get(5),
        resource_type: r.get(6),
        resource_id: r.get(7),
        before: r.get(8),
        after: r.get(9),
        prev_hash: r.get(10),
        hash: r.get(11),
    }
}

impl Audit for PostgresStore {
    fn audit_records(
        &self,
        organization: &str,
        query: AuditQuery,
    ) -> StoreFuture<'_, Vec<AuditRecord>> {
        let organization = organization.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader
                .query(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM audit_log WHERE organization = $1
                         AND ($2::TEXT IS NULL OR resource_type = $2) AND ($3::TEXT IS NULL OR resource_id = $3)
                         AND ($4::BIGINT IS NULL OR seq < $4) ORDER BY seq DESC LIMIT $5"
                    ),
                    &[
                        &organization,
                        &query.resource_type,
                        &query.resource_id,
                        &query.before_seq,
                        &(query.limit as i64),
                    ],
                )
                .await?;
            Ok(rows.iter().map(postgres_record).collect())
        })
    }

    fn audit_chains(&self) -> StoreFuture<'_, Vec<AuditRecord>> {
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader
                .query(
                    &format!("SELECT {RECORD_COLUMNS} FROM audit_log ORDER BY organization, seq"),
                    &[],
                )
                .await?;
            Ok(rows.iter().map(postgres_record).collect())
        })
    }
}

impl AuditStatements for PostgresWriter {
    async fn append_audit(&mut self, draft: &AuditDraft) -> Result<(), StoreError> {
        // Several nodes may append to one organization's chain: the lock, held to the end of the
        // transaction, makes each read the last record another node committed.
        self.client
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&draft.organization],
            )
            .await?;
        let prev: String = self
            .client
            .query_opt(
                "SELECT hash FROM audit_log WHERE organization = $1 ORDER BY seq DESC LIMIT 1",
                &[&draft.organization],
            )
            .await?
            .map(|row| row.get(0))
            .unwrap_or_else(|| GENESIS.to_owned());
        let at = now_millis();
        let hash = chain_hash(&prev, draft, at);
        self.client
            .execute(
                "INSERT INTO audit_log (organization, at, key_id, key_label, action, resource_type, resource_id, before, after, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &draft.organization, &at, &draft.actor.key_id, &draft.actor.label, &draft.action,
                    &draft.resource_type, &draft.resource_id, &draft.before, &draft.after, &prev, &hash,
                ],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(action: &str) -> AuditDraft {
        AuditDraft {
            organization: "studio".into(),
            actor: Actor::operator(),
            action: action.into(),
            resource_type: "key".into(),
            resource_id: "0123456789abcdef".into(),
            before: None,
            after: Some(r#"{"role":"admin"}"#.into()),
        }
    }

    fn chain(actions: &[&str]) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        actions
            .iter()
            .enumerate()
            .map(|(index, action)| {
                let draft = draft(action);
                let hash = chain_hash(&prev, &draft, 1_000 + index as i64);
                let record = AuditRecord {
                    seq: index as i64 + 1,
                    organization: draft.organization,
                    at: 1_000 + index as i64,
                    key_id: draft.actor.key_id,
                    key_label: draft.actor.label,
                    action: draft.action,
                    resource_type: draft.resource_type,
                    resource_id: draft.resource_id,
                    before: draft.before,
                    after: draft.after,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                record
            })
            .collect()
    }

    #[test]
    fn a_changed_or_deleted_record_breaks_the_chain_where_it_was() {
        let records = chain(&["key.created", "key.created", "key.revoked"]);
        assert_eq!(verify_chain(&records), Ok(()));

        let mut changed = records.clone();
        changed[1].after = Some(r#"{"role":"viewer"}"#.into());
        assert_eq!(
            verify_chain(&changed).map_err(|b| (b.seq, b.problem)),
            Err((2, "was changed after it was written"))
        );

        let mut deleted = records.clone();
        deleted.remove(1);
        assert_eq!(verify_chain(&deleted).map_err(|b| b.seq), Err(3));

        // Fields cannot trade bytes: moving text between two fields changes the hash.
        let mut shifted = draft("key.created");
        shifted.actor.label = "herald command lin".into();
        shifted.action = "ekey.created".into();
        assert_ne!(
            chain_hash(GENESIS, &shifted, 1),
            chain_hash(GENESIS, &draft("key.created"), 1)
        );
    }
}
