//! The PostgreSQL store, for operators who keep Herald's state in their PostgreSQL (backups,
//! replication, several Herald nodes sharing one database in the future cluster mode).
//!
//! The same group commit as the embedded store: one writer connection takes every waiting
//! command from the shared queues and runs them in one transaction, with bulk `UNNEST` inserts
//! so a batch of 10,000 is a handful of statements, not 20,000 round trips. Reads use a second
//! connection. Everything lives in one schema (`store.schema`), created if missing, with its own
//! version table so a newer Herald migrates it forward.
//!
//! Both connections come back by themselves when the server closes them (a restart, a
//! failover): writes arriving meanwhile are refused (503, the caller retries) rather than lost.
//!
//! Not yet: leasing deliveries between several nodes (every node would load every open
//! delivery); until cluster mode lands, run one Herald node per schema.

use std::collections::{HashMap, HashSet};

use tokio_postgres::{Client, NoTls, Row};

use crate::wedsync::Lane;

use super::queue::{self, CommandQueues, Writer, WriterQueues};
use super::{
    cancelled_reason, coordination_columns, coordination_from_columns, now_millis, parse_details,
    sequenced_start, AcknowledgeOutcome, Acknowledgement, ApiKeyInfo, CommittedSettlements,
    DeliveryRow, DeliveryState, Intake, NewNotification, OpenDelivery, PendingInstall,
    RoutingRecord, SettledDelivery, Settlement, Store, StoreError, StoreFuture, StoredNotification,
    UnixMillis, API_KEY_ID_LEN,
};

const MIGRATIONS: &[&str] = &[
    // 1: the journal, the delivery mailbox and API keys (the same shape as the SQLite store).
    "CREATE TABLE notifications (
        organization TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        priority TEXT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL,
        accepted_at BIGINT NOT NULL,
        PRIMARY KEY (organization, notification_id)
    );
    CREATE TABLE deliveries (
        id BIGSERIAL PRIMARY KEY,
        organization TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        integration_id TEXT NOT NULL,
        route TEXT NOT NULL,
        failover_of BIGINT,
        state TEXT NOT NULL,
        emergency BOOLEAN NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        next_attempt_at BIGINT,
        last_error TEXT,
        receipt TEXT,
        settled_at BIGINT
    );
    CREATE INDEX deliveries_open ON deliveries (integration_id, id) WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_by_notification ON deliveries (organization, notification_id);
    CREATE INDEX deliveries_dead ON deliveries (organization, id) WHERE state = 'dead_lettered';
    CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,
        organization TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );",
    // 2: a delivery may carry its own transformed notification (a routing's transformation map).
    "ALTER TABLE deliveries ADD COLUMN body TEXT;",
    // 3: acknowledgements from the target systems (button clicks).
    "CREATE TABLE acknowledgements (
        id BIGSERIAL PRIMARY KEY,
        organization TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        integration_id TEXT NOT NULL,
        action_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX acknowledgements_by_notification ON acknowledgements (organization, notification_id);",
    // 4: a delivered delivery keeps the connector's structured account of what it did.
    "ALTER TABLE deliveries ADD COLUMN details TEXT;",
    // 5: credentials Herald keeps itself (an OAuth install's refresh token), sealed by the vault.
    "CREATE TABLE credentials (
        integration_id TEXT NOT NULL,
        name TEXT NOT NULL,
        sealed BYTEA NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (integration_id, name)
    );",
    // 6: OAuth installs started and not yet finished, by the hash of their state.
    "CREATE TABLE oauth_installs (
        state_hash TEXT PRIMARY KEY,
        integration_id TEXT NOT NULL,
        organization TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );",
    // 7: this installation's random id (webhook message ids are unique across installations),
    // and one acknowledgement per notification, integration, action and person.
    "CREATE TABLE installation (id TEXT NOT NULL);
    INSERT INTO installation (id) VALUES (replace(gen_random_uuid()::text, '-', ''));
    DELETE FROM acknowledgements a USING acknowledgements b
        WHERE a.id > b.id AND a.organization = b.organization AND a.notification_id = b.notification_id
          AND a.integration_id = b.integration_id AND a.action_id = b.action_id AND a.actor = b.actor;
    CREATE UNIQUE INDEX acknowledgements_once
        ON acknowledgements (organization, notification_id, integration_id, action_id, actor);",
    // 8: routing requests by their routingId, so a result can be read again.
    "CREATE TABLE routings (
        organization TEXT NOT NULL,
        routing_id TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        delivery_coordination TEXT,
        accepted_at BIGINT NOT NULL,
        PRIMARY KEY (organization, routing_id)
    );",
    // 9: a routing's coordination on each of its deliveries: the position of a sequenced one,
    // the mode and the error strategy (NULL: parallel, failover).
    "ALTER TABLE deliveries ADD COLUMN sequence_position BIGINT;
    ALTER TABLE deliveries ADD COLUMN mode TEXT;
    ALTER TABLE deliveries ADD COLUMN on_failure TEXT;",
];

const DELIVERY_COLUMNS: &str = "d.id, d.organization, d.notification_id, d.integration_id, d.route, d.failover_of, d.state, d.emergency, d.attempts, d.created_at, d.next_attempt_at, d.last_error, d.receipt, d.settled_at, d.details, d.mode, d.on_failure";

pub struct PostgresStore {
    queues: CommandQueues,
    installation_id: String,
    reader: ReaderConnection,
}

/// Where the store's connections go: the server, and the schema they work in. Connections carry
/// `application_name = herald-<schema>`, so an operator can see (and a test can cut) them.
#[derive(Clone)]
struct Target {
    url: String,
    schema: String,
}

/// The read connection, replaced by a fresh one when the server closed it (a restart, a
/// failover, an operator terminating it).
struct ReaderConnection {
    target: Target,
    client: std::sync::RwLock<std::sync::Arc<Client>>,
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects, creates `schema` if needed, migrates it and starts the writer task.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Open {
                path: schema.to_owned(),
                reason: "schema must be a lowercase identifier".into(),
            });
        }
        let target = Target {
            url: url.to_owned(),
            schema: schema.to_owned(),
        };
        let mut writer = open_connection(&target).await?;
        migrate(&mut writer, schema).await?;
        let installation_id: String = writer
            .query_one("SELECT id FROM installation", &[])
            .await?
            .get(0);
        let reader = target.connect().await?;
        let (queues, writer_queues) = queue::channel();
        tokio::spawn(run_writer(target.clone(), writer, writer_queues));
        Ok(Self {
            queues,
            installation_id,
            reader: ReaderConnection {
                target,
                client: std::sync::RwLock::new(std::sync::Arc::new(reader)),
            },
        })
    }
}

impl Target {
    /// A connection working in the store's schema.
    async fn connect(&self) -> Result<Client, StoreError> {
        let client = open_connection(self).await?;
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .await?;
        Ok(client)
    }
}

impl ReaderConnection {
    /// The read connection, reconnecting first if the server closed it.
    async fn get(&self) -> Result<std::sync::Arc<Client>, StoreError> {
        let current = self.client.read().expect("reader lock").clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let fresh = std::sync::Arc::new(self.target.connect().await?);
        tracing::warn!("postgres read connection re-established");
        *self.client.write().expect("reader lock") = fresh.clone();
        Ok(fresh)
    }
}

async fn open_connection(target: &Target) -> Result<Client, StoreError> {
    let open_error = |reason: String| StoreError::Open {
        path: "postgres".into(),
        reason,
    };
    let mut config: tokio_postgres::Config = target
        .url
        .parse()
        .map_err(|err: tokio_postgres::Error| open_error(err.to_string()))?;
    config.application_name(format!("herald-{}", target.schema));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| open_error(err.to_string()))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::error!(error = %err, "postgres connection closed");
        }
    });
    Ok(client)
}

async fn migrate(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    let transaction = client.transaction().await?;
    // Several nodes may start at once: one migrates, the others wait and then see its work.
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('herald-migrations'))",
            &[],
        )
        .await?;
    transaction
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema};
             CREATE TABLE IF NOT EXISTS herald_schema_version (version INTEGER NOT NULL);"
        ))
        .await?;
    let version: i32 = transaction
        .query_opt("SELECT version FROM herald_schema_version", &[])
        .await?
        .map_or(0, |row| row.get(0));
    let known = MIGRATIONS.len() as i64;
    if i64::from(version) > known {
        return Err(StoreError::NewerSchema {
            found: version.into(),
            known,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.batch_execute(migration).await?;
        tracing::info!(version = index + 1, "store schema migrated");
    }
    transaction
        .execute("DELETE FROM herald_schema_version", &[])
        .await?;
    transaction
        .execute(
            "INSERT INTO herald_schema_version (version) VALUES ($1)",
            &[&(MIGRATIONS.len() as i32)],
        )
        .await?;
    transaction.commit().await?;
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .await?;
    Ok(())
}

impl Store for PostgresStore {
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
            let reader = self.reader.get().await?;
            let Some(row) = replayed.await? else {
                return Ok(None);
            };
            let body: String = reader
                .query_one(
                    "SELECT COALESCE(d.body, n.body) FROM deliveries d JOIN notifications n
                       ON n.organization = d.organization AND n.notification_id = d.notification_id
                     WHERE d.id = $1",
                    &[&row.delivery_id],
                )
                .await?
                .get(0);
            Ok(Some(OpenDelivery { row, body }))
        })
    }

    fn notification(
        &self,
        organization: &str,
        notification_id: &str,
    ) -> StoreFuture<'_, Option<StoredNotification>> {
        let (organization, notification_id) = (organization.to_owned(), notification_id.to_owned());
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let found = reader.query_opt(
                    "SELECT body, accepted_at FROM notifications WHERE organization = $1 AND notification_id = $2",
                    &[&organization, &notification_id],
                )
                .await?;
            let Some(found) = found else { return Ok(None) };
            let rows = reader.query(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.organization = $1 AND d.notification_id = $2 ORDER BY d.id"),
                    &[&organization, &notification_id],
                )
                .await?;
            let deliveries = rows.iter().map(delivery_from).collect::<Result<_, _>>()?;
            let acknowledgements = reader
                .query(
                    "SELECT integration_id, action_id, actor, at FROM acknowledgements
                     WHERE organization = $1 AND notification_id = $2 ORDER BY id",
                    &[&organization, &notification_id],
                )
                .await?
                .iter()
                .map(|r| Acknowledgement {
                    organization: organization.clone(),
                    notification_id: notification_id.clone(),
                    integration_id: r.get(0),
                    action_id: r.get(1),
                    actor: r.get(2),
                    at: r.get(3),
                })
                .collect();
            Ok(Some(StoredNotification {
                body: found.get(0),
                accepted_at: found.get(1),
                deliveries,
                acknowledgements,
            }))
        })
    }

    fn open_deliveries(&self, integration_id: &str) -> StoreFuture<'_, Vec<OpenDelivery>> {
        let integration_id = integration_id.to_owned();
        Box::pin(async move {
            self.open_deliveries_where(
                "d.integration_id = $1 AND d.state IN ('pending', 'retrying')",
                &[&integration_id],
            )
            .await
        })
    }

    fn next_in_sequence(&self, delivery_id: i64) -> StoreFuture<'_, Vec<OpenDelivery>> {
        Box::pin(async move {
            self.open_deliveries_where(
                "d.state IN ('pending', 'retrying') AND (d.organization, d.notification_id, d.sequence_position) =
                   (SELECT organization, notification_id, sequence_position + 1 FROM deliveries WHERE id = $1)",
                &[&delivery_id],
            )
            .await
        })
    }

    fn dead_letters(&self, organization: &str, limit: usize) -> StoreFuture<'_, Vec<DeliveryRow>> {
        let organization = organization.to_owned();
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let rows = reader.query(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.organization = $1 AND d.state = 'dead_lettered' ORDER BY d.id DESC LIMIT $2"),
                    &[&organization, &(limit as i64)],
                )
                .await?;
            rows.iter().map(delivery_from).collect()
        })
    }

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
        Box::pin(async move {
            let reader = self.reader.get().await?;
            let row = reader
                .query_opt(
                    "SELECT notification_id, delivery_coordination, accepted_at FROM routings
                     WHERE organization = $1 AND routing_id = $2",
                    &[&organization, &routing_id],
                )
                .await?;
            Ok(row.map(|r| RoutingRecord {
                organization,
                routing_id,
                notification_id: r.get(0),
                delivery_coordination: r.get(1),
                accepted_at: r.get(2),
            }))
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

// === the writer task ===

impl PostgresStore {
    /// Open deliveries with the notification each carries, oldest first.
    async fn open_deliveries_where(
        &self,
        condition: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<OpenDelivery>, StoreError> {
        let reader = self.reader.get().await?;
        let rows = reader
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS}, COALESCE(d.body, n.body) FROM deliveries d JOIN notifications n
                       ON n.organization = d.organization AND n.notification_id = d.notification_id
                     WHERE {condition} ORDER BY d.id"
                ),
                parameters,
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(OpenDelivery {
                    row: delivery_from(row)?,
                    body: row.try_get(17)?,
                })
            })
            .collect()
    }
}

async fn run_writer(target: Target, client: Client, mut queues: WriterQueues) {
    let mut writer = PostgresWriter { client };
    while let Some(group) = queues.next_group().await {
        // The server closed the connection (restart, failover): reconnect before this group;
        // while it cannot, the group is refused (callers see 503 and retry), nothing is lost.
        if writer.client.is_closed() {
            match target.connect().await {
                Ok(fresh) => {
                    tracing::warn!("postgres write connection re-established");
                    writer.client = fresh;
                }
                Err(err) => {
                    let reason = err.to_string();
                    tracing::error!(%reason, "postgres unreachable; refusing writes until it is back");
                    group.into_iter().for_each(|command| command.fail(&reason));
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        queues.commit(&mut writer, group).await;
    }
}

/// The write connection, as the shared group commit drives it.
struct PostgresWriter {
    client: Client,
}

impl Writer for PostgresWriter {
    async fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.client.batch_execute("BEGIN").await?)
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.client.batch_execute("COMMIT").await?)
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        Ok(self.client.batch_execute("ROLLBACK").await?)
    }

    async fn savepoint(&mut self) -> Result<(), StoreError> {
        Ok(self.client.batch_execute("SAVEPOINT command").await?)
    }

    async fn release_savepoint(&mut self) -> Result<(), StoreError> {
        Ok(self
            .client
            .batch_execute("RELEASE SAVEPOINT command")
            .await?)
    }

    async fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        Ok(self
            .client
            .batch_execute("ROLLBACK TO SAVEPOINT command; RELEASE SAVEPOINT command")
            .await?)
    }

    async fn journal(&mut self, batch: &[NewNotification]) -> Result<Vec<Intake>, StoreError> {
        journal(&self.client, batch).await
    }

    async fn settle(
        &mut self,
        settlements: &[&Settlement],
        now: UnixMillis,
    ) -> Result<Vec<SettledDelivery>, StoreError> {
        settle(&self.client, settlements, now).await
    }

    async fn fail_over(
        &mut self,
        delivery_id: i64,
        attempts: u32,
        error: &str,
        backup: &str,
    ) -> Result<DeliveryRow, StoreError> {
        let now = now_millis();
        let attempts = attempts as i32;
        self.client
            .execute(
                "UPDATE deliveries SET state = 'failed_over', attempts = GREATEST(attempts, $4), last_error = $2, settled_at = $3 WHERE id = $1",
                &[&delivery_id, &error, &now, &attempts],
            )
            .await?;
        let row = self
            .client
            .query_opt(
                &format!(
                    "WITH inserted AS (
                       INSERT INTO deliveries (organization, notification_id, integration_id, route, failover_of, state, emergency, created_at, body, sequence_position, mode, on_failure)
                       SELECT organization, notification_id, $2, 'failover', id, 'pending', emergency, $3, body, sequence_position, mode, on_failure FROM deliveries WHERE id = $1
                       RETURNING *)
                     SELECT {DELIVERY_COLUMNS} FROM inserted d"
                ),
                &[&delivery_id, &backup, &now],
            )
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("delivery {delivery_id} vanished during failover"))
            })?;
        delivery_from(&row)
    }

    async fn replay(
        &mut self,
        organization: &str,
        delivery_id: i64,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "WITH updated AS (
                       UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = NULL, settled_at = NULL
                       WHERE id = $1 AND organization = $2 AND state = 'dead_lettered' RETURNING *)
                     SELECT {DELIVERY_COLUMNS} FROM updated d"
                ),
                &[&delivery_id, &organization],
            )
            .await?;
        row.as_ref().map(delivery_from).transpose()
    }

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

    async fn record_routing(&mut self, r: &RoutingRecord) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO routings (organization, routing_id, notification_id, delivery_coordination, accepted_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&r.organization, &r.routing_id, &r.notification_id, &r.delivery_coordination, &r.accepted_at],
            )
            .await?;
        Ok(())
    }

    async fn acknowledge(&mut self, a: &Acknowledgement) -> Result<AcknowledgeOutcome, StoreError> {
        let inserted = self
            .client
            .execute(
                "INSERT INTO acknowledgements (organization, notification_id, integration_id, action_id, actor, at)
                 SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS
                   (SELECT 1 FROM notifications WHERE organization = $1 AND notification_id = $2)
                 ON CONFLICT DO NOTHING",
                &[&a.organization, &a.notification_id, &a.integration_id, &a.action_id, &a.actor, &a.at],
            )
            .await?;
        if inserted == 1 {
            return Ok(AcknowledgeOutcome::Recorded);
        }
        let exists = self
            .client
            .query_opt(
                "SELECT 1 FROM notifications WHERE organization = $1 AND notification_id = $2",
                &[&a.organization, &a.notification_id],
            )
            .await?
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
        self.client
            .execute(
                "INSERT INTO credentials (integration_id, name, sealed, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (integration_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                &[&integration_id, &name, &sealed, &now_millis()],
            )
            .await?;
        Ok(())
    }

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
                "INSERT INTO oauth_installs (state_hash, integration_id, organization, expires_at) VALUES ($1, $2, $3, $4)",
                &[&state_hash, &install.integration_id, &install.organization, &expires_at],
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
                "DELETE FROM oauth_installs WHERE state_hash = $1 RETURNING integration_id, organization, expires_at",
                &[&state_hash],
            )
            .await?;
        Ok(row
            .filter(|row| row.get::<_, i64>(2) > now)
            .map(|row| PendingInstall {
                integration_id: row.get(0),
                organization: row.get(1),
            }))
    }
}

async fn journal(tx: &Client, batch: &[NewNotification]) -> Result<Vec<Intake>, StoreError> {
    let now = now_millis();
    let column = |f: fn(&NewNotification) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
    let inserted: HashSet<(String, String)> = tx
        .query(
            "INSERT INTO notifications (organization, notification_id, priority, type, body, accepted_at)
             SELECT o, n, p, t, b, $6 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(o, n, p, t, b)
             ON CONFLICT DO NOTHING RETURNING organization, notification_id",
            &[
                &column(|n| &n.organization),
                &column(|n| &n.notification_id),
                &column(|n| &n.priority),
                &column(|n| &n.notification_type),
                &column(|n| &n.body),
                &now,
            ],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();

    // The first occurrence of an inserted key is accepted; any other is a duplicate.
    let mut claimed = HashSet::new();
    let accepted: Vec<bool> = batch
        .iter()
        .map(|n| {
            let key = (n.organization.clone(), n.notification_id.clone());
            inserted.contains(&key) && claimed.insert(key)
        })
        .collect();

    let (mut organizations, mut ids, mut targets, mut emergencies, mut bodies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut states, mut positions, mut modes, mut on_failures) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (item, _) in batch
        .iter()
        .zip(&accepted)
        .filter(|(_, accepted)| **accepted)
    {
        let (mode, on_failure) = coordination_columns(item.coordination);
        for (position, target) in item.targets.iter().enumerate() {
            let (state, sequence_position) = sequenced_start(item.coordination, position);
            organizations.push(item.organization.as_str());
            ids.push(item.notification_id.as_str());
            targets.push(target.integration_id.as_str());
            emergencies.push(item.priority == "emergency");
            bodies.push(target.body.as_deref());
            states.push(state.as_str());
            positions.push(sequence_position);
            modes.push(mode);
            on_failures.push(on_failure);
        }
    }
    let mut created: HashMap<(String, String, String), DeliveryRow> = HashMap::new();
    if !targets.is_empty() {
        let rows = tx
            .query(
                &format!(
                    "WITH inserted AS (
                       INSERT INTO deliveries (organization, notification_id, integration_id, route, state, emergency, created_at, body, sequence_position, mode, on_failure)
                       SELECT o, n, i, 'primary', s, e, $5, b, p, m, f
                       FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[]) AS u(o, n, i, e, b, s, p, m, f)
                       RETURNING *)
                     SELECT {DELIVERY_COLUMNS} FROM inserted d"
                ),
                &[&organizations, &ids, &targets, &emergencies, &now, &bodies, &states, &positions, &modes, &on_failures],
            )
            .await?;
        for row in &rows {
            let delivery = delivery_from(row)?;
            created.insert(
                (
                    delivery.organization.clone(),
                    delivery.notification_id.clone(),
                    delivery.integration_id.clone(),
                ),
                delivery,
            );
        }
    }

    let duplicate_keys: Vec<(&str, &str)> = batch
        .iter()
        .zip(&accepted)
        .filter(|(_, accepted)| !**accepted)
        .map(|(n, _)| (n.organization.as_str(), n.notification_id.as_str()))
        .collect();
    let mut existing: HashMap<(String, String), Vec<DeliveryRow>> = HashMap::new();
    if !duplicate_keys.is_empty() {
        let (orgs, ids): (Vec<&str>, Vec<&str>) = duplicate_keys.into_iter().unzip();
        let rows = tx
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries d
                     JOIN UNNEST($1::text[], $2::text[]) AS u(o, n) ON d.organization = u.o AND d.notification_id = u.n
                     ORDER BY d.id"
                ),
                &[&orgs, &ids],
            )
            .await?;
        for row in &rows {
            let delivery = delivery_from(row)?;
            let key = (
                delivery.organization.clone(),
                delivery.notification_id.clone(),
            );
            let rows = existing.entry(key).or_default();
            if !rows.iter().any(|r| r.delivery_id == delivery.delivery_id) {
                rows.push(delivery);
            }
        }
    }

    Ok(batch
        .iter()
        .zip(accepted)
        .map(|(item, accepted)| {
            if accepted {
                let rows = item
                    .targets
                    .iter()
                    .filter_map(|target| {
                        created.remove(&(
                            item.organization.clone(),
                            item.notification_id.clone(),
                            target.integration_id.clone(),
                        ))
                    })
                    .collect();
                Intake::Accepted(rows)
            } else {
                Intake::Duplicate(
                    existing
                        .get(&(item.organization.clone(), item.notification_id.clone()))
                        .cloned()
                        .unwrap_or_default(),
                )
            }
        })
        .collect())
}

async fn settle(
    client: &Client,
    settlements: &[&Settlement],
    now: UnixMillis,
) -> Result<Vec<SettledDelivery>, StoreError> {
    // One statement for the whole run (one settlement per delivery).
    let columns: Vec<_> = settlements.iter().map(|s| s.columns(now)).collect();
    let ids: Vec<i64> = columns.iter().map(|c| c.delivery_id).collect();
    let states: Vec<&str> = columns.iter().map(|c| c.state).collect();
    let attempts: Vec<i32> = columns.iter().map(|c| c.attempts as i32).collect();
    let next_attempts: Vec<Option<i64>> = columns.iter().map(|c| c.next_attempt_at).collect();
    let errors: Vec<Option<&str>> = columns.iter().map(|c| c.last_error).collect();
    let receipts: Vec<Option<&str>> = columns.iter().map(|c| c.receipt).collect();
    let settled: Vec<Option<i64>> = columns.iter().map(|c| c.settled_at).collect();
    let details: Vec<Option<&str>> = columns.iter().map(|c| c.details).collect();
    let changed = client
        .query(
            "UPDATE deliveries d SET state = u.state, attempts = u.attempts, next_attempt_at = u.next_attempt_at,
                    last_error = u.last_error, receipt = COALESCE(u.receipt, d.receipt),
                    settled_at = u.settled_at, details = COALESCE(u.details, d.details)
             FROM UNNEST($1::int8[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::int8[], $8::text[])
                  AS u(id, state, attempts, next_attempt_at, last_error, receipt, settled_at, details)
             WHERE d.id = u.id AND d.state IN ('pending', 'retrying')
             RETURNING d.id, d.organization, d.notification_id, d.state",
            &[&ids, &states, &attempts, &next_attempts, &errors, &receipts, &settled, &details],
        )
        .await?;
    let sequenced: HashSet<i64> = settlements
        .iter()
        .filter_map(|settlement| settlement.sequenced_delivery())
        .collect();
    let mut announced = Vec::with_capacity(changed.len());
    for row in &changed {
        let delivery_id: i64 = row.try_get(0)?;
        let is_sequenced = sequenced.contains(&delivery_id);
        if is_sequenced {
            release_or_cancel_next(client, delivery_id, now).await?;
        }
        announced.push(SettledDelivery {
            delivery_id,
            organization: row.try_get(1)?,
            notification_id: row.try_get(2)?,
            state: DeliveryState::parse(row.try_get(3)?)?,
            sequenced: is_sequenced,
        });
    }
    Ok(announced)
}

/// After a sequenced delivery settled: a failure that cancels (all-or-nothing, abort) cancels
/// every delivery of the notification still held; otherwise the next one is released.
async fn release_or_cancel_next(
    client: &Client,
    delivery_id: i64,
    now: UnixMillis,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE deliveries SET state = 'cancelled', settled_at = $2, last_error = $3
             WHERE state = 'held' AND (organization, notification_id) =
               (SELECT organization, notification_id FROM deliveries
                WHERE id = $1 AND state = 'dead_lettered' AND (mode = 'all_or_nothing' OR on_failure = 'abort'))",
            &[&delivery_id, &now, &cancelled_reason(delivery_id)],
        )
        .await?;
    client
        .execute(
            "UPDATE deliveries SET state = 'pending'
             WHERE state = 'held' AND (organization, notification_id, sequence_position) =
               (SELECT organization, notification_id, sequence_position + 1 FROM deliveries
                WHERE id = $1 AND state IN ('delivered', 'dead_lettered'))",
            &[&delivery_id],
        )
        .await?;
    Ok(())
}

fn delivery_from(row: &Row) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        delivery_id: row.try_get(0)?,
        organization: row.try_get(1)?,
        notification_id: row.try_get(2)?,
        integration_id: row.try_get(3)?,
        route: row.try_get(4)?,
        failover_of: row.try_get(5)?,
        state: DeliveryState::parse(row.try_get(6)?)?,
        emergency: row.try_get(7)?,
        attempts: row.try_get::<_, i32>(8)?.max(0) as u32,
        created_at: row.try_get(9)?,
        next_attempt_at: row.try_get(10)?,
        last_error: row.try_get(11)?,
        receipt: row.try_get(12)?,
        settled_at: row.try_get(13)?,
        details: parse_details(row.try_get(14)?)?,
        coordination: coordination_from_columns(row.try_get(15)?, row.try_get(16)?)?,
    })
}
