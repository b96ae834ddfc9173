//! The store contract, run against both backends over real connections: SQLite in a temporary
//! folder and the machine's PostgreSQL (`HERALD_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in a schema of its own.

use std::sync::Arc;

use super::*;
use crate::wedsync::Lane;

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Backend {
    fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        let url = std::env::var("HERALD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
        Backend::Postgres { url, schema }
    }

    /// Opens (or reopens) the store.
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open(dir.path()).unwrap()),
            Backend::Postgres { url, schema } => {
                Arc::new(PostgresStore::connect(url, schema).await.unwrap())
            }
        }
    }

    async fn clean_up(self) {
        if let Backend::Postgres { url, schema } = self {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
        }
    }
}

fn notification(id: &str, targets: &[&str]) -> NewNotification {
    NewNotification {
        organization: "org".into(),
        notification_id: id.into(),
        priority: "normal".into(),
        notification_type: "timeline_change".into(),
        body: format!(r#"{{"notificationId":"{id}"}}"#),
        targets: targets
            .iter()
            .map(|t| PlannedDelivery {
                integration_id: t.to_string(),
                body: None,
            })
            .collect(),
        coordination: Coordination::default(),
    }
}

fn delivery_ids(intake: &Intake) -> Vec<i64> {
    match intake {
        Intake::Accepted(rows) | Intake::Duplicate(rows) => {
            rows.iter().map(|r| r.delivery_id).collect()
        }
    }
}

async fn journal_is_idempotent_per_organization(backend: Backend) {
    let store = backend.open().await;
    let first = store
        .journal(Lane::Normal, vec![notification("n1", &["a", "b"])])
        .await
        .unwrap();
    assert!(matches!(&first[0], Intake::Accepted(rows) if rows.len() == 2));
    let again = store
        .journal(Lane::Normal, vec![notification("n1", &["a", "b", "c"])])
        .await
        .unwrap();
    assert!(
        matches!(&again[0], Intake::Duplicate(_)),
        "a repeat is a duplicate"
    );
    assert_eq!(
        delivery_ids(&again[0]),
        delivery_ids(&first[0]),
        "with the first record's deliveries"
    );
    // Within one batch: the first occurrence wins, the second is its duplicate.
    let batch = store
        .journal(
            Lane::Normal,
            vec![
                notification("n2", &["a"]),
                notification("n2", &["b"]),
                notification("n3", &[]),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(&batch[0], Intake::Accepted(rows) if rows[0].integration_id == "a"));
    assert!(
        matches!(&batch[1], Intake::Duplicate(rows) if rows.len() == 1 && rows[0].integration_id == "a")
    );
    assert!(matches!(&batch[2], Intake::Accepted(rows) if rows.is_empty()));
    let mut other = notification("n1", &["a"]);
    other.organization = "other".into();
    assert!(matches!(
        store.journal(Lane::Emergency, vec![other]).await.unwrap()[0],
        Intake::Accepted(_)
    ));
    backend.clean_up().await;
}

async fn settlements_are_durable_and_dead_letters_are_scoped(backend: Backend) {
    {
        let store = backend.open().await;
        let intake = store
            .journal(
                Lane::Normal,
                vec![notification("n1", &["a"]), notification("n2", &["a"])],
            )
            .await
            .unwrap();
        let (first, second) = (delivery_ids(&intake[0])[0], delivery_ids(&intake[1])[0]);
        store.settle(vec![Settlement::Retrying {
            delivery_id: first,
            attempts: 1,
            next_attempt_at: 42,
            error: "503".into(),
        }]);
        store.settle(vec![Settlement::Delivered {
            delivery_id: first,
            attempts: 2,
            receipt: "r-1".into(),
            details: Some(r#"{"successfulSyncs":2}"#.into()),
            sequenced: false,
        }]);
        store.settle(vec![Settlement::DeadLettered {
            delivery_id: second,
            attempts: 8,
            error: "400 bad".into(),
            sequenced: false,
        }]);
        store.flush().await.unwrap();
        assert!(store.open_deliveries("a").await.unwrap().is_empty());
        let dead = store.dead_letters("org", 10).await.unwrap();
        assert_eq!(
            (dead.len(), dead[0].last_error.as_deref()),
            (1, Some("400 bad"))
        );
        assert!(store.dead_letters("other", 10).await.unwrap().is_empty());
    }
    let reopened = backend.open().await;
    let stored = reopened.notification("org", "n1").await.unwrap().unwrap();
    assert_eq!(
        stored.deliveries[0].state,
        DeliveryState::Delivered,
        "settlements apply in order"
    );
    assert_eq!(
        (
            stored.deliveries[0].attempts,
            stored.deliveries[0].receipt.as_deref()
        ),
        (2, Some("r-1"))
    );
    assert_eq!(
        stored.deliveries[0].details,
        Some(serde_json::json!({"successfulSyncs": 2})),
        "a delivery keeps its structured details"
    );
    assert!(reopened
        .notification("other", "n1")
        .await
        .unwrap()
        .is_none());
    let dead_id = reopened.dead_letters("org", 10).await.unwrap()[0].delivery_id;
    assert!(
        reopened
            .replay("other", dead_id, &Actor::operator())
            .await
            .unwrap()
            .is_none(),
        "another organization cannot replay it"
    );
    let replayed = reopened
        .replay("org", dead_id, &Actor::operator())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (replayed.row.state, replayed.row.attempts),
        (DeliveryState::Pending, 0)
    );
    assert!(replayed.body.contains("n2"));
    assert_eq!(reopened.open_deliveries("a").await.unwrap().len(), 1);
    assert!(
        reopened
            .replay("org", dead_id, &Actor::operator())
            .await
            .unwrap()
            .is_none(),
        "no longer a dead letter"
    );
    backend.clean_up().await;
}

async fn fail_over_hands_the_delivery_to_the_backup(backend: Backend) {
    let store = backend.open().await;
    let mut urgent = notification("n1", &["primary"]);
    urgent.priority = "emergency".into();
    let intake = store.journal(Lane::Emergency, vec![urgent]).await.unwrap();
    let primary = delivery_ids(&intake[0])[0];
    let backup = store
        .fail_over(primary, 2, "circuit open".into(), "backup".into())
        .await
        .unwrap();
    assert_eq!(
        (backup.route.as_str(), backup.failover_of, backup.emergency),
        ("failover", Some(primary), true)
    );
    let stored = store.notification("org", "n1").await.unwrap().unwrap();
    assert_eq!(stored.deliveries[0].state, DeliveryState::FailedOver);
    assert_eq!(
        stored.deliveries[0].attempts, 2,
        "the attempts made here are kept"
    );
    assert_eq!(
        stored.deliveries[0].last_error.as_deref(),
        Some("circuit open")
    );
    assert_eq!(
        store.open_deliveries("backup").await.unwrap()[0]
            .row
            .delivery_id,
        backup.delivery_id
    );
    backend.clean_up().await;
}

async fn api_keys_resolve_to_their_organization(backend: Backend) {
    let store = backend.open().await;
    assert!(store.writer_alive());
    store
        .create_api_key("org", "hash-1", "test", Role::Sender, &Actor::operator())
        .await
        .unwrap();
    let organization_for_key = |hash: &'static str| {
        let store = store.clone();
        async move {
            store
                .key_holder(hash)
                .await
                .unwrap()
                .map(|holder| holder.organization)
        }
    };
    assert_eq!(
        store.key_holder("hash-1").await.unwrap(),
        Some(KeyHolder {
            organization: "org".into(),
            key_id: "hash-1".into(),
            label: "test".into(),
            role: Role::Sender
        })
    );
    assert!(store.key_holder("hash-2").await.unwrap().is_none());
    assert!(
        store
            .create_api_key("other", "hash-1", "clash", Role::Admin, &Actor::operator())
            .await
            .is_err(),
        "a key hash belongs to one organization"
    );
    store.flush().await.unwrap();
    assert_eq!(
        organization_for_key("hash-1").await.as_deref(),
        Some("org"),
        "a failed command leaves its group intact"
    );
    store
        .create_api_key(
            "org",
            "0123456789abcdef-second",
            "ci",
            Role::Viewer,
            &Actor::operator(),
        )
        .await
        .unwrap();
    let keys = store.api_keys("org").await.unwrap();
    let listed: Vec<(&str, &str, Role)> = keys
        .iter()
        .map(|k| (k.id.as_str(), k.label.as_str(), k.role))
        .collect();
    assert!(
        listed.contains(&("hash-1", "test", Role::Sender))
            && listed.contains(&("0123456789abcdef", "ci", Role::Viewer)),
        "{listed:?}"
    );
    assert!(
        !store
            .revoke_api_key("other", "0123456789abcdef", &Actor::operator())
            .await
            .unwrap(),
        "another organization cannot revoke it"
    );
    assert!(store
        .revoke_api_key("org", "0123456789abcdef", &Actor::operator())
        .await
        .unwrap());
    assert!(organization_for_key("0123456789abcdef-second")
        .await
        .is_none());
    assert_eq!(store.api_keys("org").await.unwrap().len(), 1);
    backend.clean_up().await;
}

/// A data folder from before roles (schema 10) keeps its keys working with the power they had.
#[tokio::test]
async fn keys_from_before_roles_are_admin_keys() {
    let dir = tempfile::tempdir().unwrap();
    {
        let connection = rusqlite::Connection::open(dir.path().join("herald.sqlite3")).unwrap();
        for migration in &super::sqlite::MIGRATIONS[..10] {
            connection.execute_batch(migration).unwrap();
        }
        connection.pragma_update(None, "user_version", 10).unwrap();
        connection
            .execute(
                "INSERT INTO api_keys (key_hash, organization, label, created_at) VALUES ('hash-old', 'org', 'wedsync', 1)",
                [],
            )
            .unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(
        store.key_holder("hash-old").await.unwrap().map(|k| k.role),
        Some(Role::Admin)
    );
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_it_knows() {
    let backend = Backend::postgres();
    let Backend::Postgres { url, schema } = &backend else {
        unreachable!()
    };
    drop(backend.open().await);
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "UPDATE {schema}.herald_schema_version SET version = 99"
        ))
        .await
        .unwrap();
    assert!(matches!(
        PostgresStore::connect(url, schema).await,
        Err(StoreError::NewerSchema { found: 99, .. })
    ));
    backend.clean_up().await;
}

async fn a_delivery_carries_its_own_transformed_body(backend: Backend) {
    let store = backend.open().await;
    let mut item = notification("n1", &["plain", "shaped"]);
    item.targets[1].body = Some(r#"{"notificationId":"n1","title":"shaped"}"#.into());
    let intake = store.journal(Lane::Normal, vec![item]).await.unwrap();
    let ids = delivery_ids(&intake[0]);
    assert!(!store.open_deliveries("plain").await.unwrap()[0]
        .body
        .contains("shaped"));
    assert!(store.open_deliveries("shaped").await.unwrap()[0]
        .body
        .contains("shaped"));
    let backup = store
        .fail_over(ids[1], 1, "down".into(), "backup".into())
        .await
        .unwrap();
    let handed_over = store.open_deliveries("backup").await.unwrap();
    assert_eq!(handed_over[0].row.delivery_id, backup.delivery_id);
    assert!(
        handed_over[0].body.contains("shaped"),
        "the backup receives what the primary would have"
    );
    store.settle(vec![Settlement::DeadLettered {
        delivery_id: backup.delivery_id,
        attempts: 1,
        error: "no".into(),
        sequenced: false,
    }]);
    let replayed = store
        .replay("org", backup.delivery_id, &Actor::operator())
        .await
        .unwrap()
        .unwrap();
    assert!(
        replayed.body.contains("shaped"),
        "a replay sends the same body again"
    );
    backend.clean_up().await;
}

async fn acknowledgements_attach_to_an_existing_notification_of_the_organization(backend: Backend) {
    let store = backend.open().await;
    store
        .journal(Lane::Normal, vec![notification("n1", &["chat"])])
        .await
        .unwrap();
    let ack = |organization: &str, notification_id: &str| Acknowledgement {
        organization: organization.into(),
        notification_id: notification_id.into(),
        integration_id: "chat".into(),
        action_id: "ack".into(),
        actor: "U123".into(),
        at: 7,
    };
    assert_eq!(
        store.acknowledge(ack("org", "n1")).await.unwrap(),
        AcknowledgeOutcome::Recorded
    );
    let mut replayed = ack("org", "n1");
    replayed.at = 8;
    assert_eq!(
        store.acknowledge(replayed).await.unwrap(),
        AcknowledgeOutcome::AlreadyRecorded,
        "the same person's same action, again"
    );
    assert_eq!(
        store.acknowledge(ack("org", "missing")).await.unwrap(),
        AcknowledgeOutcome::UnknownNotification
    );
    assert_eq!(
        store.acknowledge(ack("other", "n1")).await.unwrap(),
        AcknowledgeOutcome::UnknownNotification,
        "another organization's notification"
    );
    let stored = store.notification("org", "n1").await.unwrap().unwrap();
    assert_eq!(stored.acknowledgements, vec![ack("org", "n1")]);
    backend.clean_up().await;
}

async fn a_routing_is_kept_once_by_its_id(backend: Backend) {
    let store = backend.open().await;
    let record = |notification_id: &str| RoutingRecord {
        organization: "org".into(),
        routing_id: "r-1".into(),
        notification_id: notification_id.into(),
        delivery_coordination: Some(r#"{"mode":"parallel"}"#.into()),
        accepted_at: 5,
    };
    store.record_routing(record("n1")).await.unwrap();
    store.record_routing(record("n2")).await.unwrap();
    assert_eq!(
        store.routing("org", "r-1").await.unwrap(),
        Some(record("n1")),
        "the first is kept"
    );
    assert_eq!(store.routing("other", "r-1").await.unwrap(), None);
    backend.clean_up().await;
}

async fn the_installation_id_is_random_and_kept(backend: Backend) {
    let store = backend.open().await;
    let id = store.installation_id().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    drop(store);
    assert_eq!(
        backend.open().await.installation_id(),
        id,
        "kept across a reopen"
    );
    let other = Backend::sqlite();
    assert_ne!(other.open().await.installation_id(), id);
    backend.clean_up().await;
}

async fn memories_are_kept_per_integration_until_they_lapse(backend: Backend) {
    let store = backend.open().await;
    let now = now_millis();
    let keys = |memories: Vec<Memory>| -> Vec<(String, String)> {
        memories.into_iter().map(|m| (m.key, m.value)).collect()
    };
    store
        .remember("weather", "w-1", Some("{\"a\":1}".into()), now + 60_000)
        .await
        .unwrap();
    store
        .remember("weather", "w-2", Some("{\"b\":2}".into()), now + 60_000)
        .await
        .unwrap();
    store
        .remember("other", "w-1", Some("{}".into()), now + 60_000)
        .await
        .unwrap();
    store
        .remember("weather", "w-1", Some("{\"a\":3}".into()), now + 60_000)
        .await
        .unwrap();
    store.remember("weather", "w-2", None, 0).await.unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        keys(store.memories("weather", now).await.unwrap()),
        vec![("w-1".to_owned(), "{\"a\":3}".to_owned())],
        "replaced and forgotten, durably"
    );
    assert_eq!(
        store.memories("weather", now + 60_000).await.unwrap(),
        vec![],
        "lapsed"
    );
    assert_eq!(keys(store.memories("other", now).await.unwrap()).len(), 1);
    backend.clean_up().await;
}

async fn sealed_credentials_are_kept_per_integration_and_replaced(backend: Backend) {
    let store = backend.open().await;
    assert_eq!(
        store.credential("crm", "refresh_token").await.unwrap(),
        None
    );
    store
        .put_credential("crm", "refresh_token", vec![1, 2, 3], None)
        .await
        .unwrap();
    store
        .put_credential("other-crm", "refresh_token", vec![9], None)
        .await
        .unwrap();
    store
        .put_credential("crm", "refresh_token", vec![4, 5], None)
        .await
        .unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        store.credential("crm", "refresh_token").await.unwrap(),
        Some(vec![4, 5]),
        "the newer one replaced the first, durably"
    );
    assert_eq!(
        store
            .credential("other-crm", "refresh_token")
            .await
            .unwrap(),
        Some(vec![9])
    );
    backend.clean_up().await;
}

async fn an_oauth_install_finishes_once_and_not_after_it_expires(backend: Backend) {
    let store = backend.open().await;
    let install = PendingInstall {
        integration_id: "crm".into(),
        organization: "org".into(),
        code_verifier: Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into()),
        started_by: Actor {
            key_id: "0123456789abcdef".into(),
            label: "wedsync settings page".into(),
        },
    };
    let now = now_millis();
    store
        .begin_install("hash-1", install.clone(), now + 60_000)
        .await
        .unwrap();
    store
        .begin_install("hash-2", install.clone(), now + 60_000)
        .await
        .unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        store.finish_install("hash-1", now).await.unwrap(),
        Some(install.clone()),
        "kept across a restart, with its PKCE verifier and who started it"
    );
    assert_eq!(
        store.finish_install("hash-1", now).await.unwrap(),
        None,
        "once"
    );
    assert_eq!(store.finish_install("unknown", now).await.unwrap(), None);
    assert_eq!(
        store.finish_install("hash-2", now + 61_000).await.unwrap(),
        None,
        "an expired install does not finish"
    );
    backend.clean_up().await;
}

#[tokio::test]
async fn postgres_reconnects_after_the_server_closes_its_connections() {
    let backend = Backend::postgres();
    let Backend::Postgres { url, schema } = &backend else {
        unreachable!()
    };
    let store = backend.open().await;
    store
        .journal(Lane::Normal, vec![notification("before", &["a"])])
        .await
        .unwrap();
    let before = store.notification("org", "before").await.unwrap().unwrap();
    assert_eq!(before.deliveries.len(), 1);

    // What a server restart or an operator does to Herald's sessions.
    let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("herald-{schema}")],
        )
        .await
        .unwrap();
    assert_eq!(terminated.len(), 2, "the write and the read connection");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let after = store
        .journal(Lane::Emergency, vec![notification("after", &["a"])])
        .await
        .unwrap();
    assert!(
        matches!(after[0], Intake::Accepted(_)),
        "writes resume on a new connection"
    );
    assert!(
        store.notification("org", "after").await.unwrap().is_some(),
        "reads resume on a new connection"
    );
    assert!(store.writer_alive());
    backend.clean_up().await;
}

fn states(stored: &StoredNotification) -> Vec<DeliveryState> {
    stored.deliveries.iter().map(|d| d.state).collect()
}

async fn a_sequence_releases_one_delivery_at_a_time(backend: Backend) {
    use crate::wedsync::{CoordinationMode, ErrorStrategy};
    let store = backend.open().await;
    let mut sequential = notification("seq", &["a", "b", "c"]);
    sequential.coordination.mode = CoordinationMode::Sequential;
    let intake = store.journal(Lane::Normal, vec![sequential]).await.unwrap();
    let ids = delivery_ids(&intake[0]);
    let stored = store.notification("org", "seq").await.unwrap().unwrap();
    use DeliveryState::*;
    assert_eq!(states(&stored), vec![Pending, Held, Held]);
    assert!(
        store.open_deliveries("b").await.unwrap().is_empty(),
        "a held delivery is not open"
    );

    // A retry of the first releases nothing; its delivery releases the second only.
    store.settle(vec![Settlement::Retrying {
        delivery_id: ids[0],
        attempts: 1,
        next_attempt_at: 0,
        error: "503".into(),
    }]);
    store.flush().await.unwrap();
    assert!(store.next_in_sequence(ids[0]).await.unwrap().is_empty());
    store.settle(vec![Settlement::Delivered {
        delivery_id: ids[0],
        attempts: 2,
        receipt: "r".into(),
        details: None,
        sequenced: true,
    }]);
    store.flush().await.unwrap();
    let released = store.next_in_sequence(ids[0]).await.unwrap();
    assert_eq!(
        (
            released.len(),
            released[0].row.delivery_id,
            released[0].row.integration_id.as_str()
        ),
        (1, ids[1], "b")
    );
    assert_eq!(
        released[0].row.coordination.mode,
        CoordinationMode::Sequential
    );
    let stored = store.notification("org", "seq").await.unwrap().unwrap();
    assert_eq!(states(&stored), vec![Delivered, Pending, Held]);

    // A failover carries the sequence: the backup's dead letter releases the third (sequential
    // does not cancel).
    let backup = store
        .fail_over(ids[1], 3, "down".into(), "backup".into())
        .await
        .unwrap();
    assert_eq!(backup.coordination.mode, CoordinationMode::Sequential);
    store.settle(vec![Settlement::DeadLettered {
        delivery_id: backup.delivery_id,
        attempts: 1,
        error: "no".into(),
        sequenced: true,
    }]);
    store.flush().await.unwrap();
    let stored = store.notification("org", "seq").await.unwrap().unwrap();
    assert_eq!(
        states(&stored),
        vec![Delivered, FailedOver, Pending, DeadLettered]
    );
    assert_eq!(
        store.next_in_sequence(backup.delivery_id).await.unwrap()[0]
            .row
            .delivery_id,
        ids[2]
    );

    // All or nothing: the first failure cancels every delivery still held.
    let mut all_or_nothing = notification("aon", &["a", "b", "c"]);
    all_or_nothing.coordination.mode = CoordinationMode::AllOrNothing;
    // Abort in a sequence does the same.
    let mut aborting = notification("abort", &["a", "b"]);
    aborting.coordination = Coordination {
        mode: CoordinationMode::Sequential,
        on_failure: ErrorStrategy::Abort,
    };
    let intake = store
        .journal(Lane::Normal, vec![all_or_nothing, aborting])
        .await
        .unwrap();
    for (id, intake) in [("aon", &intake[0]), ("abort", &intake[1])] {
        store.settle(vec![Settlement::DeadLettered {
            delivery_id: delivery_ids(intake)[0],
            attempts: 1,
            error: "refused".into(),
            sequenced: true,
        }]);
        store.flush().await.unwrap();
        let stored = store.notification("org", id).await.unwrap().unwrap();
        let cancelled = &stored.deliveries[1];
        assert_eq!(
            (
                cancelled.state,
                cancelled.last_error.clone(),
                cancelled.settled_at.is_some()
            ),
            (
                Cancelled,
                Some(cancelled_reason(delivery_ids(intake)[0])),
                true
            ),
            "{id}"
        );
        assert!(
            stored.deliveries[1..].iter().all(|d| d.state == Cancelled),
            "{id}"
        );
    }
    backend.clean_up().await;
}

async fn concurrent_journals_each_get_their_own_outcome(backend: Backend) {
    let store = backend.open().await;
    store
        .journal(Lane::Normal, vec![notification("old", &["a"])])
        .await
        .unwrap();
    // Sent together, so the writer may take them in one group (PostgreSQL journals such a run
    // with one bulk statement): each answer is still that command's own.
    let answers = tokio::join!(
        store.journal(Lane::Normal, vec![notification("c1", &["a", "b"])]),
        store.journal(
            Lane::Normal,
            vec![notification("old", &["a"]), notification("c2", &["a"])]
        ),
        store.journal(Lane::Normal, vec![notification("c1", &["a"])]),
        store.journal(Lane::Normal, vec![notification("c3", &[])]),
    );
    let answers = [answers.0, answers.1, answers.2, answers.3];
    let shapes: Vec<Vec<(bool, usize)>> = answers
        .into_iter()
        .map(|answer| {
            answer
                .unwrap()
                .iter()
                .map(|intake| match intake {
                    Intake::Accepted(rows) => (true, rows.len()),
                    Intake::Duplicate(rows) => (false, rows.len()),
                })
                .collect()
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            vec![(true, 2)],
            vec![(false, 1), (true, 1)],
            vec![(false, 2)],
            vec![(true, 0)],
        ]
    );
    backend.clean_up().await;
}

async fn committed_settlements_are_announced_once_they_change_a_delivery(backend: Backend) {
    use crate::wedsync::CoordinationMode;
    let store = backend.open().await;
    let mut announced = store.settled_deliveries();
    let mut sequential = notification("seq", &["a", "b"]);
    sequential.coordination.mode = CoordinationMode::Sequential;
    let intake = store
        .journal(
            Lane::Normal,
            vec![notification("plain", &["a"]), sequential],
        )
        .await
        .unwrap();
    let (plain, sequenced) = (delivery_ids(&intake[0])[0], delivery_ids(&intake[1]));
    store.settle(vec![
        Settlement::Retrying {
            delivery_id: plain,
            attempts: 1,
            next_attempt_at: 0,
            error: "503".into(),
        },
        Settlement::Delivered {
            delivery_id: sequenced[0],
            attempts: 1,
            receipt: "r".into(),
            details: None,
            sequenced: true,
        },
    ]);
    let settled =
        |id: i64, notification: &str, state: DeliveryState, sequenced: bool| SettledDelivery {
            delivery_id: id,
            organization: "org".into(),
            notification_id: notification.into(),
            state,
            sequenced,
        };
    let first = announced.recv().await.unwrap();
    assert_eq!(
        first.to_vec(),
        vec![
            settled(plain, "plain", DeliveryState::Retrying, false),
            settled(sequenced[0], "seq", DeliveryState::Delivered, true),
        ]
    );
    // Announced after the commit: what it released is there to be read.
    let released = store.next_in_sequence(sequenced[0]).await.unwrap();
    assert_eq!(released[0].row.delivery_id, sequenced[1]);

    // A settlement of a delivery already settled changes nothing and is not announced; the next
    // announcement is the next change.
    store.settle(vec![Settlement::DeadLettered {
        delivery_id: sequenced[0],
        attempts: 2,
        error: "late".into(),
        sequenced: true,
    }]);
    store.settle(vec![Settlement::DeadLettered {
        delivery_id: plain,
        attempts: 2,
        error: "422".into(),
        sequenced: false,
    }]);
    let mut next = Vec::new();
    while next.is_empty() {
        next = announced.recv().await.unwrap().to_vec();
    }
    assert_eq!(
        next,
        vec![settled(plain, "plain", DeliveryState::DeadLettered, false)]
    );
    backend.clean_up().await;
}

async fn interleaved_journals_and_settlements_each_take_effect(backend: Backend) {
    let store = backend.open().await;
    let earlier = store
        .journal(
            Lane::Normal,
            (0..10)
                .map(|n| notification(&format!("earlier-{n}"), &["a"]))
                .collect(),
        )
        .await
        .unwrap();
    // A single post and a delivery outcome, one after the other, as a busy daemon sends them:
    // the writer takes them in one group and runs each kind as one statement.
    let mut answers = Vec::new();
    for (n, intake) in earlier.iter().enumerate() {
        answers.push(store.journal(
            Lane::Normal,
            vec![notification(&format!("later-{n}"), &["a", "b"])],
        ));
        store.settle(vec![Settlement::Delivered {
            delivery_id: delivery_ids(intake)[0],
            attempts: 1,
            receipt: format!("receipt-{n}"),
            details: None,
            sequenced: false,
        }]);
    }
    for answer in answers {
        let intake = answer.await.unwrap();
        assert!(matches!(&intake[0], Intake::Accepted(rows) if rows.len() == 2));
    }
    store.flush().await.unwrap();
    for n in 0..10 {
        let stored = store
            .notification("org", &format!("earlier-{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.deliveries[0].state, DeliveryState::Delivered);
        assert_eq!(
            stored.deliveries[0].receipt.as_deref(),
            Some(format!("receipt-{n}").as_str())
        );
    }
    backend.clean_up().await;
}

async fn a_failing_command_fails_alone_in_its_group(backend: Backend) {
    let store = backend.open().await;
    store
        .create_api_key(
            "org",
            "hash-taken",
            "first",
            Role::Admin,
            &Actor::operator(),
        )
        .await
        .unwrap();
    // Sent together, so the writer takes most of them in one group: the key that is already
    // taken fails the group's first attempt, and only that command hears the failure.
    let before: Vec<_> = (0..20)
        .map(|n| {
            store.journal(
                Lane::Normal,
                vec![notification(&format!("before-{n}"), &["a"])],
            )
        })
        .collect();
    let taken = store.create_api_key(
        "org",
        "hash-taken",
        "second",
        Role::Admin,
        &Actor::operator(),
    );
    let after: Vec<_> = (0..20)
        .map(|n| {
            store.journal(
                Lane::Normal,
                vec![notification(&format!("after-{n}"), &["a"])],
            )
        })
        .collect();
    assert!(taken.await.is_err(), "a key hash is unique");
    for answer in before.into_iter().chain(after) {
        assert!(matches!(answer.await.unwrap()[0], Intake::Accepted(_)));
    }
    for n in 0..20 {
        for id in [format!("before-{n}"), format!("after-{n}")] {
            let stored = store.notification("org", &id).await.unwrap();
            assert_eq!(stored.map(|s| s.deliveries.len()), Some(1), "{id}");
        }
    }
    let labels: Vec<String> = store
        .api_keys("org")
        .await
        .unwrap()
        .into_iter()
        .map(|key| key.label)
        .collect();
    assert_eq!(labels, ["first"]);
    backend.clean_up().await;
}

#[test]
fn a_run_of_settlements_amounts_to_what_applying_them_in_order_leaves() {
    let retrying = |id: i64, attempts: u32| Settlement::Retrying {
        delivery_id: id,
        attempts,
        next_attempt_at: 0,
        error: "503".into(),
    };
    let delivered = |id: i64, attempts: u32| Settlement::Delivered {
        delivery_id: id,
        attempts,
        receipt: "r".into(),
        details: None,
        sequenced: false,
    };
    let run = [
        retrying(1, 1),
        retrying(2, 1),
        delivered(1, 2),
        retrying(1, 3),
        retrying(2, 2),
        delivered(3, 1),
    ];
    let effective: Vec<(i64, &str, i64)> = effective_settlements(&run)
        .into_iter()
        .map(|s| {
            let c = s.columns(0);
            (c.delivery_id, c.state, c.attempts)
        })
        .collect();
    assert_eq!(
        effective,
        vec![(1, "delivered", 2), (2, "retrying", 2), (3, "delivered", 1)]
    );
}

async fn key_changes_are_audited_in_a_chain(backend: Backend) {
    let store = backend.open().await;
    let admin = Actor {
        key_id: "aaaaaaaaaaaaaaaa".into(),
        label: "wedsync".into(),
    };
    store
        .create_api_key("org", "0123456789abcdef-key", "ci", Role::Sender, &admin)
        .await
        .unwrap();
    store
        .create_api_key(
            "other",
            "fedcba9876543210-key",
            "theirs",
            Role::Viewer,
            &Actor::operator(),
        )
        .await
        .unwrap();
    assert!(store
        .revoke_api_key("org", "0123456789abcdef", &admin)
        .await
        .unwrap());
    assert!(
        !store
            .revoke_api_key("org", "0123456789abcdef", &admin)
            .await
            .unwrap(),
        "nothing revoked, nothing recorded"
    );
    let records = store
        .audit_records(
            "org",
            AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    type Summary<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
    let summary: Vec<Summary> = records
        .iter()
        .map(|r| {
            (
                r.action.as_str(),
                r.resource_id.as_str(),
                r.key_label.as_str(),
                r.before.as_deref(),
                r.after.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "key.revoked",
                "0123456789abcdef",
                "wedsync",
                Some(r#"{"label":"ci","role":"sender"}"#),
                None
            ),
            (
                "key.created",
                "0123456789abcdef",
                "wedsync",
                None,
                Some(r#"{"label":"ci","role":"sender"}"#)
            ),
        ],
        "newest first, another organization's record not among them"
    );
    assert_eq!(records[0].prev_hash, records[1].hash, "chained");
    let older = store
        .audit_records(
            "org",
            AuditQuery {
                before_seq: Some(records[0].seq),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(older.len(), 1, "paged by seq");
    let chains = store.audit_chains().await.unwrap();
    assert_eq!(chains.len(), 3);
    for organization in ["org", "other"] {
        let chain: Vec<AuditRecord> = chains
            .iter()
            .filter(|r| r.organization == organization)
            .cloned()
            .collect();
        assert_eq!(verify_chain(&chain), Ok(()), "{organization}");
    }
    backend.clean_up().await;
}

macro_rules! contract {
    ($($case:ident),*) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() { super::$case(super::Backend::sqlite()).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $case() { super::$case(super::Backend::postgres()).await })*
        }
    };
}

contract!(
    journal_is_idempotent_per_organization,
    settlements_are_durable_and_dead_letters_are_scoped,
    fail_over_hands_the_delivery_to_the_backup,
    api_keys_resolve_to_their_organization,
    a_delivery_carries_its_own_transformed_body,
    acknowledgements_attach_to_an_existing_notification_of_the_organization,
    the_installation_id_is_random_and_kept,
    a_routing_is_kept_once_by_its_id,
    sealed_credentials_are_kept_per_integration_and_replaced,
    memories_are_kept_per_integration_until_they_lapse,
    an_oauth_install_finishes_once_and_not_after_it_expires,
    a_sequence_releases_one_delivery_at_a_time,
    concurrent_journals_each_get_their_own_outcome,
    committed_settlements_are_announced_once_they_change_a_delivery,
    a_failing_command_fails_alone_in_its_group,
    interleaved_journals_and_settlements_each_take_effect,
    key_changes_are_audited_in_a_chain
);
