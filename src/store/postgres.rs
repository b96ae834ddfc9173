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
//!
//! This module owns the connections, the migrations, the mapping of delivery rows and the
//! writer's transaction control; what each concern reads and writes is in its own module beside
//! it (`journal/`, `keys.rs`, `acknowledgements.rs`, `routings.rs`, `credentials.rs`,
//! `installs.rs`, `memories.rs`), next to the other dialect's.

use tokio_postgres::{Client, NoTls, Row};

use super::queue::{self, CommandQueues, Queued, Writer, WriterQueues};
use super::{
    coordination_from_columns, parse_details, DeliveryRow, DeliveryState, OpenDelivery, Store,
    StoreError,
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
    // 10: an OAuth install's PKCE code verifier, for vendors that take PKCE.
    "ALTER TABLE oauth_installs ADD COLUMN code_verifier TEXT;",
    // 11: each API key has a role; keys from before roles keep the power they had.
    "ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';",
    // 12: the audit log, hash-chained per organization.
    "CREATE TABLE audit_log (
        seq BIGSERIAL PRIMARY KEY,
        organization TEXT NOT NULL,
        at BIGINT NOT NULL,
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
        lapses_at BIGINT NOT NULL,
        PRIMARY KEY (integration_id, key)
    );",
];

/// A definition's row (`id, organization, spec, version, created_at, updated_at`), as
/// `definitions.rs` and `integrations.rs` select it.
pub(super) fn stored_spec_from_postgres(r: &tokio_postgres::Row) -> super::StoredSpec {
    super::StoredSpec {
        id: r.get(0),
        organization: r.get(1),
        spec: r.get(2),
        version: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
    }
}

pub(super) const DELIVERY_COLUMNS: &str = "d.id, d.organization, d.notification_id, d.integration_id, d.route, d.failover_of, d.state, d.emergency, d.attempts, d.created_at, d.next_attempt_at, d.last_error, d.receipt, d.settled_at, d.details, d.mode, d.on_failure";

pub struct PostgresStore {
    queues: CommandQueues,
    installation_id: String,
    pub(super) reader: ReaderConnection,
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
pub(super) struct ReaderConnection {
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
    pub(super) async fn get(&self) -> Result<std::sync::Arc<Client>, StoreError> {
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

impl Queued for PostgresStore {
    fn queues(&self) -> &CommandQueues {
        &self.queues
    }
}

impl Store for PostgresStore {
    fn installation_id(&self) -> &str {
        &self.installation_id
    }
}

// === the writer task ===

impl PostgresStore {
    /// Open deliveries with the notification each carries, oldest first.
    pub(super) async fn open_deliveries_where(
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
pub(super) struct PostgresWriter {
    pub(super) client: Client,
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
}

pub(super) fn delivery_from(row: &Row) -> Result<DeliveryRow, StoreError> {
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
