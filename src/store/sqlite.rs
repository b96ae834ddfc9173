//! The embedded SQLite store: one file in the data folder, WAL mode, `synchronous = FULL`.
//!
//! One writer thread owns the write connection and commits in groups: it takes every command
//! waiting in its queues, runs them in one transaction and answers them after the single fsync,
//! so throughput does not pay an fsync per notification and a 202 still means durable. Emergency
//! writes have their own queue, drained before the normal one. Reads use a small pool of
//! read-only connections on the blocking thread pool; WAL lets them run beside the writer.
//!
//! The writer is a plain thread rather than an actor because every SQLite call blocks; it waits
//! on the shared queues (`queue.rs`) through a small single-threaded runtime of its own.
//!
//! This module owns the connections, the migrations, the mapping of delivery rows and the
//! writer's transaction control; what each concern reads and writes is in its own module beside
//! it (`journal/`, `keys.rs`, `acknowledgements.rs`, `routings.rs`, `credentials.rs`,
//! `installs.rs`, `memories.rs`), next to the other dialect's.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use super::queue::{self, CommandQueues, Queued, Writer, WriterQueues};
use super::{
    coordination_from_columns, parse_details, DeliveryRow, DeliveryState, OpenDelivery, Store,
    StoreError, StoreFuture,
};

/// Each entry upgrades the schema by one version; `PRAGMA user_version` records how far a data
/// folder has come, so a newer Herald opens an older folder by running the rest.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the journal, the delivery mailbox and API keys.
    "CREATE TABLE notifications (
        organization TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        priority TEXT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL,
        accepted_at INTEGER NOT NULL,
        PRIMARY KEY (organization, notification_id)
    ) WITHOUT ROWID;
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        organization TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        integration_id TEXT NOT NULL,
        route TEXT NOT NULL,
        failover_of INTEGER,
        state TEXT NOT NULL,
        emergency INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        next_attempt_at INTEGER,
        last_error TEXT,
        receipt TEXT,
        settled_at INTEGER
    );
    CREATE INDEX deliveries_open ON deliveries (integration_id, id) WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_by_notification ON deliveries (organization, notification_id);
    CREATE INDEX deliveries_dead ON deliveries (organization, id) WHERE state = 'dead_lettered';
    CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,
        organization TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 2: a delivery may carry its own transformed notification (a routing's transformation map).
    "ALTER TABLE deliveries ADD COLUMN body TEXT;",
    // 3: acknowledgements from the target systems (button clicks).
    "CREATE TABLE acknowledgements (
        id INTEGER PRIMARY KEY,
        organization TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        integration_id TEXT NOT NULL,
        action_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX acknowledgements_by_notification ON acknowledgements (organization, notification_id);",
    // 4: a delivered delivery keeps the connector's structured account of what it did.
    "ALTER TABLE deliveries ADD COLUMN details TEXT;",
    // 5: credentials Herald keeps itself (an OAuth install's refresh token), sealed by the vault.
    "CREATE TABLE credentials (
        integration_id TEXT NOT NULL,
        name TEXT NOT NULL,
        sealed BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (integration_id, name)
    );",
    // 6: OAuth installs started and not yet finished, by the hash of their state.
    "CREATE TABLE oauth_installs (
        state_hash TEXT PRIMARY KEY,
        integration_id TEXT NOT NULL,
        organization TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
    // 7: this installation's random id (webhook message ids are unique across installations),
    // and one acknowledgement per notification, integration, action and person.
    "CREATE TABLE installation (id TEXT NOT NULL);
    INSERT INTO installation (id) VALUES (lower(hex(randomblob(16))));
    DELETE FROM acknowledgements WHERE id NOT IN (SELECT min(id) FROM acknowledgements
        GROUP BY organization, notification_id, integration_id, action_id, actor);
    CREATE UNIQUE INDEX acknowledgements_once
        ON acknowledgements (organization, notification_id, integration_id, action_id, actor);",
    // 8: routing requests by their routingId, so a result can be read again.
    "CREATE TABLE routings (
        organization TEXT NOT NULL,
        routing_id TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        delivery_coordination TEXT,
        accepted_at INTEGER NOT NULL,
        PRIMARY KEY (organization, routing_id)
    ) WITHOUT ROWID;",
    // 9: a routing's coordination on each of its deliveries: the position of a sequenced one,
    // the mode and the error strategy (NULL: parallel, failover).
    "ALTER TABLE deliveries ADD COLUMN sequence_position INTEGER;
    ALTER TABLE deliveries ADD COLUMN mode TEXT;
    ALTER TABLE deliveries ADD COLUMN on_failure TEXT;",
    // 10: an OAuth install's PKCE code verifier, for vendors that take PKCE.
    "ALTER TABLE oauth_installs ADD COLUMN code_verifier TEXT;",
    // 11: each API key has a role; keys from before roles keep the power they had.
    "ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';",
    // 12: the audit log, hash-chained per organization.
    "CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        organization TEXT NOT NULL,
        at INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        key_label TEXT NOT NULL,
        action TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        before TEXT,
        after TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_by_organization ON audit_log (organization, seq);",
    // 13: integrations WedSync manages through the API; held deliveries found by integration
    // (removing an integration dead-letters what is queued for it without reading every row).
    "CREATE TABLE integrations (
        integration_id TEXT PRIMARY KEY,
        organization TEXT NOT NULL,
        spec TEXT NOT NULL,
        version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX integrations_by_organization ON integrations (organization, integration_id);
    CREATE INDEX deliveries_held ON deliveries (integration_id) WHERE state = 'held';",
    // 14: definitions WedSync manages through the API that are plain data (routes).
    "CREATE TABLE definitions (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        organization TEXT NOT NULL,
        spec TEXT NOT NULL,
        version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (kind, organization, id)
    );",
    // 15: who started an OAuth install (the audit record of the credential it brings names them).
    "ALTER TABLE oauth_installs ADD COLUMN started_by_key_id TEXT;
    ALTER TABLE oauth_installs ADD COLUMN started_by_label TEXT;",
    // 16: what connectors remember between deliveries (the weddings a weather watch follows).
    "CREATE TABLE connector_memories (
        integration_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        lapses_at INTEGER NOT NULL,
        PRIMARY KEY (integration_id, key)
    );",
];

pub(super) const DELIVERY_COLUMNS: &str = "id, organization, notification_id, integration_id, route, failover_of, state, emergency, attempts, created_at, next_attempt_at, last_error, receipt, settled_at, details, mode, on_failure";

/// A definition's row (`id, organization, spec, version, created_at, updated_at`), as
/// `definitions.rs` and `integrations.rs` select it.
pub(super) fn stored_spec_from_sqlite(r: &Row<'_>) -> rusqlite::Result<super::StoredSpec> {
    Ok(super::StoredSpec {
        id: r.get(0)?,
        organization: r.get(1)?,
        spec: r.get(2)?,
        version: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

pub struct SqliteStore {
    queues: CommandQueues,
    installation_id: String,
    readers: Arc<ReaderPool>,
}

struct ReaderPool {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrating it to the current schema,
    /// and starts the writer thread.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|err| StoreError::Open {
            path: data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let path = data_dir.join("herald.sqlite3");
        let mut writer = Connection::open(&path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        writer.busy_timeout(Duration::from_secs(5))?;
        migrate(&mut writer)?;
        let installation_id: String =
            writer.query_row("SELECT id FROM installation", [], |row| row.get(0))?;
        let (queues, writer_queues) = queue::channel();
        std::thread::Builder::new()
            .name("herald-store-writer".into())
            .spawn(move || run_writer(writer, writer_queues))
            .map_err(|err| StoreError::Open {
                path: path.display().to_string(),
                reason: err.to_string(),
            })?;
        Ok(Self {
            queues,
            installation_id,
            readers: Arc::new(ReaderPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    pub(super) fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let readers = self.readers.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let connection = readers.take()?;
                let result = query(&connection);
                readers.put_back(connection);
                result
            })
            .await
            .map_err(|err| StoreError::Corrupt(format!("read task failed: {err}")))?
        })
    }
}

impl Queued for SqliteStore {
    fn queues(&self) -> &CommandQueues {
        &self.queues
    }
}

impl Store for SqliteStore {
    fn installation_id(&self) -> &str {
        &self.installation_id
    }
}

// === impl ReaderPool ===

impl ReaderPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(connection) = self.idle.lock().expect("reader pool lock").pop() {
            return Ok(connection);
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(5))?;
        Ok(connection)
    }

    fn put_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().expect("reader pool lock");
        if idle.len() < 8 {
            idle.push(connection);
        }
    }
}

// === the writer thread ===

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::NewerSchema {
            found: version,
            known,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "store schema migrated");
    }
    Ok(())
}

fn run_writer(connection: Connection, mut queues: WriterQueues) {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "store writer cannot start");
            return;
        }
    };
    let mut writer = SqliteWriter { connection };
    runtime.block_on(async {
        while let Some(group) = queues.next_group().await {
            queues.commit(&mut writer, group).await;
        }
    });
}

/// The write connection, as the shared group commit drives it. Every call blocks (the writer has
/// its own thread), so these `async` methods never wait.
pub(super) struct SqliteWriter {
    pub(super) connection: Connection,
}

impl Writer for SqliteWriter {
    async fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.connection.execute_batch("BEGIN IMMEDIATE")?)
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.connection.execute_batch("COMMIT")?)
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        Ok(self.connection.execute_batch("ROLLBACK")?)
    }

    async fn savepoint(&mut self) -> Result<(), StoreError> {
        Ok(self.connection.execute_batch("SAVEPOINT command")?)
    }

    async fn release_savepoint(&mut self) -> Result<(), StoreError> {
        Ok(self.connection.execute_batch("RELEASE command")?)
    }

    async fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        Ok(self
            .connection
            .execute_batch("ROLLBACK TO command; RELEASE command")?)
    }
}

/// Open deliveries with the notification each carries, oldest first.
pub(super) fn open_deliveries_where(
    connection: &Connection,
    condition: &str,
    parameters: &[&dyn rusqlite::ToSql],
) -> Result<Vec<OpenDelivery>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {}, COALESCE(d.body, n.body) FROM deliveries d JOIN notifications n
           ON n.organization = d.organization AND n.notification_id = d.notification_id
         WHERE {condition} ORDER BY d.id",
        prefixed_columns("d")
    ))?;
    let rows = statement.query_map(parameters, |r| {
        Ok((delivery_from(r), r.get::<_, String>(17)?))
    })?;
    let mut open = Vec::new();
    for row in rows {
        let (delivery, body) = row?;
        open.push(OpenDelivery {
            row: delivery?,
            body,
        });
    }
    Ok(open)
}

pub(super) fn delivery_by_id(
    connection: &Connection,
    delivery_id: i64,
) -> Result<Option<DeliveryRow>, StoreError> {
    connection
        .query_row(
            &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"),
            params![delivery_id],
            |r| Ok(delivery_from(r)),
        )
        .optional()?
        .transpose()
}

pub(super) fn deliveries_of(
    connection: &Connection,
    organization: &str,
    notification_id: &str,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE organization = ?1 AND notification_id = ?2 ORDER BY id"
    ))?;
    let rows = statement.query_map(params![organization, notification_id], |r| {
        Ok(delivery_from(r))
    })?;
    rows.map(|row| row?).collect()
}

fn prefixed_columns(alias: &str) -> String {
    DELIVERY_COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn delivery_from(row: &Row<'_>) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        delivery_id: row.get(0)?,
        organization: row.get(1)?,
        notification_id: row.get(2)?,
        integration_id: row.get(3)?,
        route: row.get(4)?,
        failover_of: row.get(5)?,
        state: DeliveryState::parse(&row.get::<_, String>(6)?)?,
        emergency: row.get(7)?,
        attempts: row.get(8)?,
        created_at: row.get(9)?,
        next_attempt_at: row.get(10)?,
        last_error: row.get(11)?,
        receipt: row.get(12)?,
        settled_at: row.get(13)?,
        details: parse_details(row.get(14)?)?,
        coordination: coordination_from_columns(row.get(15)?, row.get(16)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("herald.sqlite3")).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        assert!(matches!(
            SqliteStore::open(dir.path()),
            Err(StoreError::NewerSchema { found: 99, .. })
        ));
    }

    #[test]
    fn an_older_schema_is_migrated_forward() {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("herald.sqlite3")).unwrap();
        connection.execute_batch(MIGRATIONS[0]).unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
        drop(connection);
        drop(SqliteStore::open(dir.path()).unwrap());
        let connection = Connection::open(dir.path().join("herald.sqlite3")).unwrap();
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_version_6_folder_keeps_one_of_each_acknowledgement_and_gains_an_installation_id() {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("herald.sqlite3")).unwrap();
        for migration in &MIGRATIONS[..6] {
            connection.execute_batch(migration).unwrap();
        }
        connection.pragma_update(None, "user_version", 6).unwrap();
        for (actor, at) in [("U1", 1), ("U1", 2), ("U1", 3), ("U2", 4)] {
            connection
                .execute(
                    "INSERT INTO acknowledgements (organization, notification_id, integration_id, action_id, actor, at)
                     VALUES ('org', 'n1', 'chat', 'ack', ?1, ?2)",
                    params![actor, at],
                )
                .unwrap();
        }
        drop(connection);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.installation_id().len(), 32);
        drop(store);
        let connection = Connection::open(dir.path().join("herald.sqlite3")).unwrap();
        let kept: Vec<(String, i64)> = connection
            .prepare("SELECT actor, at FROM acknowledgements ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, vec![("U1".to_owned(), 1), ("U2".to_owned(), 4)]);
    }
}
