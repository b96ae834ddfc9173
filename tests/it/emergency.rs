//! The emergency lane: an emergency posted behind 100,000 queued normal notifications to the
//! same integration reaches the vendor before that backlog drains.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    eventually, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_overtakes_a_backlog_of_100_000() {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"venue\"\n{}{}",
        webhook_integration(
            "sink",
            "venue",
            &receiver.url(),
            "rate_limit = { per_second = 200, burst = 20, emergency_reserve = 0.2 }"
        ),
        route("venue", &["sink"], "")
    );
    let herald = Harness::start(&body, "venue").await;
    for chunk in 0..10 {
        let batch: Vec<Value> = (0..10_000)
            .map(|n| notification(&format!("bulk-{chunk}-{n}"), "low"))
            .collect();
        let (status, answer) = herald
            .post("/v1/notifications/batch", &json!({"notifications": batch}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["accepted"], 10_000);
    }
    let (_, health) = herald.get("/v1/integrations/sink/health").await;
    let backlog = health["mailboxDepth"].as_u64().unwrap();
    assert!(backlog > 90_000, "the backlog is queued: {backlog}");

    let mut alert = notification("fire-alarm", "emergency");
    alert["type"] = json!("emergency_alert");
    let delivered_before = receiver.recorder.len();
    let (status, _) = herald.post("/v1/notifications", &alert).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let is_alert =
        |r: &herald::sandbox::RecordedRequest| r.body["data"]["notificationId"] == "fire-alarm";
    eventually(Duration::from_secs(30), "the emergency to arrive", || {
        receiver.received().iter().any(is_alert)
    })
    .await;
    let received = receiver.received();
    let position = received.iter().position(is_alert).unwrap();
    // The normal lane delivers 160/s here; the emergency must not wait its turn behind the
    // backlog. Allow what the normal lane sends in about a second around the post.
    let overtaken_by = position.saturating_sub(delivered_before);
    assert!(
        overtaken_by < 200,
        "{overtaken_by} normal notifications arrived after the emergency was posted and before it, with ~{backlog} queued"
    );
    let (_, health) = herald.get("/v1/integrations/sink/health").await;
    assert!(
        health["mailboxDepth"].as_u64().unwrap() > 80_000,
        "the backlog had not drained: {health}"
    );
    let record = herald.get("/v1/notifications/fire-alarm").await.1;
    assert_eq!(record["targets"][0]["emergency"], true);
}

#[tokio::test]
async fn an_emergency_moves_to_the_backup_after_its_first_failure_while_normal_traffic_retries() {
    let primary = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    primary.faults.go_down(503, json!({"error": "maintenance"}));
    let backup = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    // The circuit would take ten failures to open: the emergency must not wait for that.
    let body = format!(
        "[[organizations]]\nid = \"venue\"\n{}{}{}",
        webhook_integration(
            "primary",
            "venue",
            &primary.url(),
            "breaker = { failure_threshold = 10, open_for = \"30s\" }\nretry = { initial = \"200ms\", max_delay = \"1s\" }\nfailover = { targets = [\"backup\"], emergency_after_attempts = 1 }"
        ),
        webhook_integration("backup", "venue", &backup.url(), ""),
        route("venue", &["primary"], "")
    );
    let herald = Harness::start(&body, "venue").await;
    herald
        .post("/v1/notifications", &notification("routine", "normal"))
        .await;
    herald
        .post("/v1/notifications", &notification("storm", "emergency"))
        .await;
    let record = herald
        .wait_for_notification("storm", Duration::from_secs(10), |r| {
            r["targets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["state"] == "delivered"))
        })
        .await;
    let paths: Vec<(&str, &str, u64)> = record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["integrationId"].as_str().unwrap(),
                t["state"].as_str().unwrap(),
                t["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [("primary", "failed_over", 1), ("backup", "delivered", 1)],
        "{record}"
    );
    let (_, routine) = herald.get("/v1/notifications/routine").await;
    assert_eq!(
        (
            routine["targets"].as_array().unwrap().len(),
            routine["targets"][0]["state"].as_str()
        ),
        (1, Some("retrying")),
        "normal traffic keeps retrying the primary: {routine}"
    );
    let (_, described) = herald.get("/v1/integrations/primary").await;
    assert_eq!(
        described["configuration"]["failoverConfiguration"]["emergencyAfterAttempts"],
        1
    );
}
