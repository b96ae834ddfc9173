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

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::wedsync::Lane;

use super::queue::{self, CommandQueues, Writer, WriterQueues};
use super::{
    cancelled_reason, coordination_columns, coordination_from_columns, now_millis, parse_details,
    sequenced_start, AcknowledgeOutcome, Acknowledgement, ApiKeyInfo, CommittedSettlements,
    DeliveryRow, DeliveryState, Intake, NewNotification, OpenDelivery, PendingInstall,
    RoutingRecord, SettledDelivery, Settlement, Store, StoreError, StoreFuture, StoredNotification,
    UnixMillis, API_KEY_ID_LEN,
};

/// Each entry upgrades the schema by one version; `PRAGMA user_version` records how far a data
/// folder has come, so a newer Herald opens an older folder by running the rest.
const MIGRATIONS: &[&str] = &[
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
];

const DELIVERY_COLUMNS: &str = "id, organization, notification_id, integration_id, route, failover_of, state, emergency, attempts, created_at, next_attempt_at, last_error, receipt, settled_at, details, mode, on_failure";

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

    fn read<T: Send + 'static>(
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

impl Store for SqliteStore {
    fn journal(&self, lane: Lane, batch: Vec<NewNotification>) -> StoreFuture<'_, Vec<Intake>> {
        self.queues.journal(lane, batch)
    }

    fn settle(&self, settlements: Vec<Settlement>) {
        self.queues.settle(settlements)
    }

    fn fail_over(
        &self,
        delivery_id: i64,
        attempts: u32,
        error: String,
        backup: String,
    ) -> StoreFuture<'_, DeliveryRow> {
        self.queues.fail_over(delivery_id, attempts, error, backup)
    }

    fn replay(
        &self,
        organization: &str,
        delivery_id: i64,
    ) -> StoreFuture<'_, Option<OpenDelivery>> {
        let replayed = self.queues.replay(organization, delivery_id);
        Box::pin(async move {
            let Some(row) = replayed.await? else {
                return Ok(None);
            };
            let delivery_id = row.delivery_id;
            let body = self
                .read(move |connection| {
                    connection
                        .query_row(
                            "SELECT COALESCE(d.body, n.body) FROM deliveries d JOIN notifications n
                               ON n.organization = d.organization AND n.notification_id = d.notification_id
                             WHERE d.id = ?1",
                            params![delivery_id],
                            |r| r.get::<_, String>(0),
                        )
                        .map_err(StoreError::from)
                })
                .await?;
            Ok(Some(OpenDelivery { row, body }))
        })
    }

    fn notification(
        &self,
        organization: &str,
        notification_id: &str,
    ) -> StoreFuture<'_, Option<StoredNotification>> {
        let (organization, notification_id) = (organization.to_owned(), notification_id.to_owned());
        self.read(move |connection| {
            let found = connection
                .query_row(
                    "SELECT body, accepted_at FROM notifications WHERE organization = ?1 AND notification_id = ?2",
                    params![organization, notification_id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?;
            let Some((body, accepted_at)) = found else { return Ok(None) };
            let deliveries = deliveries_of(connection, &organization, &notification_id)?;
            let mut statement = connection.prepare_cached(
                "SELECT integration_id, action_id, actor, at FROM acknowledgements
                 WHERE organization = ?1 AND notification_id = ?2 ORDER BY id",
            )?;
            let acknowledgements = statement
                .query_map(params![organization, notification_id], |r| {
                    Ok(Acknowledgement {
                        organization: organization.clone(),
                        notification_id: notification_id.clone(),
                        integration_id: r.get(0)?,
                        action_id: r.get(1)?,
                        actor: r.get(2)?,
                        at: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(Some(StoredNotification { body, accepted_at, deliveries, acknowledgements }))
        })
    }

    fn open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, Vec<OpenDelivery>> {
        let integration_id = integration_id.to_owned();
        self.read(move |connection| {
            open_deliveries_where(
                connection,
                "d.integration_id = ?1 AND d.state IN ('pending', 'retrying')",
                params![integration_id],
            )
        })
    }

    fn next_in_sequence(&self, delivery_id: i64) -> StoreFuture<'_, Vec<OpenDelivery>> {
        self.read(move |connection| {
            open_deliveries_where(
                connection,
                "d.state IN ('pending', 'retrying') AND (d.organization, d.notification_id, d.sequence_position) =
                   (SELECT organization, notification_id, sequence_position + 1 FROM deliveries WHERE id = ?1)",
                params![delivery_id],
            )
        })
    }

    fn dead_letters(&self, organization: &str, limit: usize) -> StoreFuture<'_, Vec<DeliveryRow>> {
        let organization = organization.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE organization = ?1 AND state = 'dead_lettered' ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![organization, limit as i64], |r| Ok(delivery_from(r)))?;
            rows.map(|row| row?).collect()
        })
    }

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

    fn create_api_key(
        &self,
        organization: &str,
        key_hash: &str,
        label: &str,
    ) -> StoreFuture<'_, ()> {
        self.queues.create_api_key(organization, key_hash, label)
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

    fn revoke_api_key(&self, organization: &str, key_id: &str) -> StoreFuture<'_, bool> {
        self.queues.revoke_api_key(organization, key_id)
    }

    fn acknowledge(&self, acknowledgement: Acknowledgement) -> StoreFuture<'_, AcknowledgeOutcome> {
        self.queues.acknowledge(acknowledgement)
    }

    fn record_routing(&self, routing: RoutingRecord) -> StoreFuture<'_, ()> {
        self.queues.record_routing(routing)
    }

    fn routing(
        &self,
        organization: &str,
        routing_id: &str,
    ) -> StoreFuture<'_, Option<RoutingRecord>> {
        let (organization, routing_id) = (organization.to_owned(), routing_id.to_owned());
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT notification_id, delivery_coordination, accepted_at FROM routings
                     WHERE organization = ?1 AND routing_id = ?2",
                    params![organization, routing_id],
                    |r| {
                        Ok(RoutingRecord {
                            organization: organization.clone(),
                            routing_id: routing_id.clone(),
                            notification_id: r.get(0)?,
                            delivery_coordination: r.get(1)?,
                            accepted_at: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn installation_id(&self) -> &str {
        &self.installation_id
    }

    fn put_credential(
        &self,
        integration_id: &str,
        name: &str,
        sealed: Vec<u8>,
    ) -> StoreFuture<'_, ()> {
        self.queues.put_credential(integration_id, name, sealed)
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

    fn begin_install(
        &self,
        state_hash: &str,
        install: PendingInstall,
        expires_at: i64,
    ) -> StoreFuture<'_, ()> {
        self.queues.begin_install(state_hash, install, expires_at)
    }

    fn finish_install(
        &self,
        state_hash: &str,
        now: i64,
    ) -> StoreFuture<'_, Option<PendingInstall>> {
        self.queues.finish_install(state_hash, now)
    }

    fn settled_deliveries(&self) -> tokio::sync::mpsc::UnboundedReceiver<CommittedSettlements> {
        self.queues.subscribe()
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.queues.flush()
    }

    fn writer_alive(&self) -> bool {
        self.queues.writer_alive()
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
struct SqliteWriter {
    connection: Connection,
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

    async fn journal(&mut self, batch: &[NewNotification]) -> Result<Vec<Intake>, StoreError> {
        journal(&self.connection, batch)
    }

    async fn settle(
        &mut self,
        settlements: &[&Settlement],
        now: UnixMillis,
    ) -> Result<Vec<SettledDelivery>, StoreError> {
        settle(&self.connection, settlements, now)
    }

    async fn fail_over(
        &mut self,
        delivery_id: i64,
        attempts: u32,
        error: &str,
        backup: &str,
    ) -> Result<DeliveryRow, StoreError> {
        let connection = &self.connection;
        let now = now_millis();
        connection.execute(
            "UPDATE deliveries SET state = 'failed_over', attempts = MAX(attempts, ?4), last_error = ?2, settled_at = ?3 WHERE id = ?1",
            params![delivery_id, error, now, attempts],
        )?;
        connection.execute(
            "INSERT INTO deliveries (organization, notification_id, integration_id, route, failover_of, state, emergency, created_at, body, sequence_position, mode, on_failure)
             SELECT organization, notification_id, ?2, 'failover', id, 'pending', emergency, ?3, body, sequence_position, mode, on_failure FROM deliveries WHERE id = ?1",
            params![delivery_id, backup, now],
        )?;
        delivery_by_id(connection, connection.last_insert_rowid())?.ok_or_else(|| {
            StoreError::Corrupt(format!("delivery {delivery_id} vanished during failover"))
        })
    }

    async fn replay(
        &mut self,
        organization: &str,
        delivery_id: i64,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        let changed = self.connection.execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = NULL, settled_at = NULL
             WHERE id = ?1 AND organization = ?2 AND state = 'dead_lettered'",
            params![delivery_id, organization],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        delivery_by_id(&self.connection, delivery_id)
    }

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

    async fn record_routing(&mut self, r: &RoutingRecord) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO routings (organization, routing_id, notification_id, delivery_coordination, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![r.organization, r.routing_id, r.notification_id, r.delivery_coordination, r.accepted_at],
        )?;
        Ok(())
    }

    async fn acknowledge(&mut self, a: &Acknowledgement) -> Result<AcknowledgeOutcome, StoreError> {
        let inserted = self.connection.execute(
            "INSERT INTO acknowledgements (organization, notification_id, integration_id, action_id, actor, at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS
               (SELECT 1 FROM notifications WHERE organization = ?1 AND notification_id = ?2)
             ON CONFLICT DO NOTHING",
            params![a.organization, a.notification_id, a.integration_id, a.action_id, a.actor, a.at],
        )?;
        if inserted == 1 {
            return Ok(AcknowledgeOutcome::Recorded);
        }
        let exists = self
            .connection
            .query_row(
                "SELECT 1 FROM notifications WHERE organization = ?1 AND notification_id = ?2",
                params![a.organization, a.notification_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        Ok(if exists {
            AcknowledgeOutcome::AlreadyRecorded
        } else {
            AcknowledgeOutcome::UnknownNotification
        })
    }

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
            "INSERT INTO oauth_installs (state_hash, integration_id, organization, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![state_hash, install.integration_id, install.organization, expires_at],
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
                "DELETE FROM oauth_installs WHERE state_hash = ?1 RETURNING integration_id, organization, expires_at",
                params![state_hash],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
            )
            .optional()?
            .filter(|(_, _, expires_at)| *expires_at > now)
            .map(|(integration_id, organization, _)| PendingInstall {
                integration_id,
                organization,
            }))
    }
}

fn journal(connection: &Connection, batch: &[NewNotification]) -> Result<Vec<Intake>, StoreError> {
    let now = now_millis();
    let mut insert_notification = connection.prepare_cached(
        "INSERT INTO notifications (organization, notification_id, priority, type, body, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?;
    let mut insert_delivery = connection.prepare_cached(
        "INSERT INTO deliveries (organization, notification_id, integration_id, route, state, emergency, created_at, body, sequence_position, mode, on_failure)
         VALUES (?1, ?2, ?3, 'primary', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        let inserted = insert_notification.execute(params![
            item.organization,
            item.notification_id,
            item.priority,
            item.notification_type,
            item.body,
            now
        ])?;
        if inserted == 0 {
            outcomes.push(Intake::Duplicate(deliveries_of(
                connection,
                &item.organization,
                &item.notification_id,
            )?));
            continue;
        }
        let emergency = item.priority == "emergency";
        let coordination = item.coordination;
        let (mode, on_failure) = coordination_columns(coordination);
        let mut rows = Vec::with_capacity(item.targets.len());
        for (position, target) in item.targets.iter().enumerate() {
            let (state, sequence_position) = sequenced_start(coordination, position);
            insert_delivery.execute(params![
                item.organization,
                item.notification_id,
                target.integration_id,
                state.as_str(),
                emergency,
                now,
                target.body,
                sequence_position,
                mode,
                on_failure
            ])?;
            rows.push(DeliveryRow {
                delivery_id: connection.last_insert_rowid(),
                organization: item.organization.clone(),
                notification_id: item.notification_id.clone(),
                integration_id: target.integration_id.clone(),
                route: "primary".to_owned(),
                failover_of: None,
                state,
                emergency,
                attempts: 0,
                created_at: now,
                next_attempt_at: None,
                last_error: None,
                receipt: None,
                settled_at: None,
                details: None,
                coordination,
            });
        }
        outcomes.push(Intake::Accepted(rows));
    }
    Ok(outcomes)
}

fn settle(
    connection: &Connection,
    settlements: &[&Settlement],
    now: UnixMillis,
) -> Result<Vec<SettledDelivery>, StoreError> {
    let mut update = connection.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5,
                receipt = COALESCE(?6, receipt), settled_at = ?7, details = COALESCE(?8, details)
         WHERE id = ?1 AND state IN ('pending', 'retrying')
         RETURNING organization, notification_id",
    )?;
    let mut settled = Vec::with_capacity(settlements.len());
    for settlement in settlements {
        let c = settlement.columns(now);
        let changed = update
            .query_row(
                params![
                    c.delivery_id,
                    c.state,
                    c.attempts,
                    c.next_attempt_at,
                    c.last_error,
                    c.receipt,
                    c.settled_at,
                    c.details
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        let Some((organization, notification_id)) = changed else {
            continue;
        };
        let sequenced = settlement.sequenced_delivery().is_some();
        if sequenced {
            release_or_cancel_next(connection, c.delivery_id, now)?;
        }
        settled.push(SettledDelivery {
            delivery_id: c.delivery_id,
            organization,
            notification_id,
            state: DeliveryState::parse(c.state)?,
            sequenced,
        });
    }
    Ok(settled)
}

/// After a sequenced delivery settled: a failure that cancels (all-or-nothing, abort) cancels
/// every delivery of the notification still held; otherwise the next one is released.
fn release_or_cancel_next(
    connection: &Connection,
    delivery_id: i64,
    now: UnixMillis,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "UPDATE deliveries SET state = 'cancelled', settled_at = ?2, last_error = ?3
             WHERE state = 'held' AND (organization, notification_id) =
               (SELECT organization, notification_id FROM deliveries
                WHERE id = ?1 AND state = 'dead_lettered' AND (mode = 'all_or_nothing' OR on_failure = 'abort'))",
        )?
        .execute(params![delivery_id, now, cancelled_reason(delivery_id)])?;
    connection
        .prepare_cached(
            "UPDATE deliveries SET state = 'pending'
             WHERE state = 'held' AND (organization, notification_id, sequence_position) =
               (SELECT organization, notification_id, sequence_position + 1 FROM deliveries
                WHERE id = ?1 AND state IN ('delivered', 'dead_lettered'))",
        )?
        .execute(params![delivery_id])?;
    Ok(())
}

/// Open deliveries with the notification each carries, oldest first.
fn open_deliveries_where(
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

fn delivery_by_id(
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

fn deliveries_of(
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

fn delivery_from(row: &Row<'_>) -> Result<DeliveryRow, StoreError> {
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
