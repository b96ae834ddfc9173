//! The audit log: every key change and every replay is a record of who did what and when, read
//! by admins at `GET /v1/audit`; the records are hash-chained, and `herald audit verify` finds a
//! record changed behind Herald's back.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::store::Role;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    dead_lettered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

#[tokio::test]
async fn key_changes_and_replays_are_recorded_and_a_tampered_record_is_found() {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    receiver
        .faults
        .go_down(422, json!({"error": "unprocessable"}));
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n[[organizations]]\nid = \"venue\"\n{}{}",
        webhook_integration("hook", "studio", &receiver.url(), ""),
        route("studio", &["hook"], ""),
    );
    let herald = Harness::start(&body, "studio").await;

    // An admin makes a sender key; the sender replays a dead letter; the admin revokes the key.
    let (status, created) = herald
        .post("/v1/keys", &json!({"label": "wedsync", "role": "sender"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let sender = created["key"].as_str().unwrap().to_owned();
    let sender_id = created["keyId"].as_str().unwrap().to_owned();
    herald
        .post_as(
            &sender,
            "/v1/notifications",
            &notification("refused", "normal"),
        )
        .await;
    let record = herald
        .wait_for_notification("refused", Duration::from_secs(10), dead_lettered)
        .await;
    let delivery = record["targets"][0]["deliveryId"].as_i64().unwrap();
    let (status, _) = herald
        .post_as(
            &sender,
            &format!("/v1/dead-letters/{delivery}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let revoked = herald
        .client
        .delete(format!("{}/v1/keys/{sender_id}", herald.base))
        .bearer_auth(&herald.key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    let (status, audit) = herald.get("/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let records = audit["records"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["resourceId"].as_str().unwrap(),
                r["keyLabel"].as_str().unwrap(),
            )
        })
        .collect();
    let delivery = delivery.to_string();
    assert_eq!(
        summary,
        [
            ("key.revoked", sender_id.as_str(), "test"),
            ("dead_letter.replayed", delivery.as_str(), "wedsync"),
            ("key.created", sender_id.as_str(), "test"),
            (
                "key.created",
                records[3]["resourceId"].as_str().unwrap(),
                "herald command line"
            ),
        ],
        "{audit}"
    );
    assert_eq!(
        records[0]["before"],
        json!({"label": "wedsync", "role": "sender"})
    );
    assert_eq!(
        records[2]["after"],
        json!({"label": "wedsync", "role": "sender"})
    );
    assert!(
        !audit.to_string().contains(&sender),
        "the key itself is never recorded"
    );
    // Paged and filtered.
    let (_, page) = herald.get("/v1/audit?limit=2").await;
    let next = page["nextBefore"].as_i64().unwrap();
    let (_, rest) = herald
        .get(&format!("/v1/audit?limit=2&before={next}"))
        .await;
    let older: Vec<&Value> = rest["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["action"])
        .collect();
    assert_eq!(
        older,
        [&json!("key.created"), &json!("key.created")],
        "{rest}"
    );
    let (_, replays) = herald.get("/v1/audit?resourceType=delivery").await;
    assert_eq!(replays["records"].as_array().unwrap().len(), 1);
    // Another organization's admin sees none of it.
    let venue = herald.key_with_role("venue", Role::Admin).await;
    let (_, theirs) = herald.get_as(&venue, "/v1/audit").await;
    let theirs: Vec<&str> = theirs["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(theirs, ["key.created"], "only the venue's own key");

    // The chain holds; a record changed in the data folder is named by `herald audit verify`.
    let config = herald.data.path().join("verify.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{}\"\n",
            herald.data.path().join("store").display()
        ),
    )
    .unwrap();
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let intact = verify();
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&intact.stdout).trim(),
        "5 audit records of 2 organizations: every chain is intact"
    );
    let replay_seq = records[1]["seq"].as_i64().unwrap();
    let file = rusqlite::Connection::open(herald.data.path().join("store/herald.sqlite3")).unwrap();
    file.execute(
        "UPDATE audit_log SET key_label = 'someone else' WHERE seq = ?1",
        [replay_seq],
    )
    .unwrap();
    let tampered = verify();
    assert!(!tampered.status.success());
    assert!(
        String::from_utf8_lossy(&tampered.stderr).contains(&format!(
            "organization \"studio\": audit record {replay_seq} was changed after it was written"
        )),
        "{}",
        String::from_utf8_lossy(&tampered.stderr)
    );
}
