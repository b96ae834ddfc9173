//! The daemon on the PostgreSQL store: intake, delivery, dead letters and idempotency, and its
//! state across a restart, against the machine's PostgreSQL over a real connection.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    all_delivered, dead_lettered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

fn postgres_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[tokio::test]
async fn the_daemon_keeps_its_state_in_postgres_across_restarts() {
    let schema = format!("herald_it_{}", uuid::Uuid::new_v4().simple());
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("hook", "studio", &receiver.url(), ""),
        route("studio", &["hook"], "")
    );
    // The connection string is a secret: it comes from a file, like any other.
    let url_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(url_file.path(), postgres_url()).unwrap();
    let store = format!(
        "[store]\nkind = \"postgres\"\nurl = {{ file = \"{}\" }}\nschema = \"{schema}\"\n",
        url_file.path().display()
    );

    let herald = Harness::start_on_store(&store, &body, "studio").await;
    receiver
        .faults
        .respond_next(422, &[], json!({"error": "rejected"}));
    let (status, _) = herald
        .post("/v1/notifications", &notification("pg-rejected", "normal"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    herald
        .wait_for_notification("pg-rejected", Duration::from_secs(10), dead_lettered)
        .await;
    let batch: Vec<Value> = (0..200)
        .map(|n| {
            notification(
                &format!("pg-{n}"),
                if n % 50 == 0 { "emergency" } else { "normal" },
            )
        })
        .collect();
    let (status, answer) = herald
        .post("/v1/notifications/batch", &json!({"notifications": batch}))
        .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(200))
    );
    for n in 0..200 {
        herald
            .wait_for_notification(&format!("pg-{n}"), Duration::from_secs(20), all_delivered)
            .await;
    }
    herald.stop().await.expect("a clean shutdown");

    let herald = Harness::start_on_store(&store, &body, "studio").await;
    let record = herald.get("/v1/notifications/pg-7").await.1;
    assert_eq!(record["targets"][0]["state"], "delivered", "{record}");
    let (status, again) = herald
        .post("/v1/notifications", &notification("pg-7", "normal"))
        .await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    let (_, dead) = herald.get("/v1/dead-letters").await;
    let dead_id = dead["deadLetters"][0]["deliveryId"].as_i64().unwrap();
    assert_eq!(
        herald
            .post(&format!("/v1/dead-letters/{dead_id}/replay"), &json!({}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    herald
        .wait_for_notification("pg-rejected", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        receiver.received().len(),
        201,
        "every notification delivered exactly once"
    );
    herald.stop().await.expect("a clean shutdown");

    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
