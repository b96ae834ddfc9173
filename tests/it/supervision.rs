//! Supervision: a connector that panics takes its actor down, the supervisor restarts it with
//! its mailbox rebuilt from the store, and a crash loop is stopped and reported as down.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

fn config(max_restarts: u32, max_attempts: u32) -> String {
    format!(
        "[supervision]\nmax_restarts = {max_restarts}\nwithin = \"60s\"\nbackoff_initial = \"10ms\"\nbackoff_max = \"50ms\"\n\
         [[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"flaky\"\norganization = \"studio\"\nkind = \"panic\"\nretry = {{ max_attempts = {max_attempts}, initial = \"10ms\", max_delay = \"20ms\" }}\n{}",
        route("studio", &["flaky"], "")
    )
}

fn poison(id: &str) -> serde_json::Value {
    let mut notification = notification(id, "normal");
    notification["metadata"] = json!({"panic": true});
    notification
}

#[tokio::test]
async fn a_panicking_connector_is_restarted_and_deliveries_continue() {
    let herald = Harness::start(&config(10, 3), "studio").await;
    herald.post("/v1/notifications", &poison("poison")).await;
    for n in 0..5 {
        herald
            .post(
                "/v1/notifications",
                &notification(&format!("fine-{n}"), "normal"),
            )
            .await;
    }
    let record = herald
        .wait_for_notification("poison", Duration::from_secs(10), dead_lettered)
        .await;
    assert_eq!(
        record["targets"][0]["attempts"], 3,
        "each panic counted as an attempt, then dead-lettered"
    );
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("connector panicked"));
    for n in 0..5 {
        herald
            .wait_for_notification(&format!("fine-{n}"), Duration::from_secs(10), all_delivered)
            .await;
    }
    // Still serving after three restarts.
    herald
        .post("/v1/notifications", &notification("after", "normal"))
        .await;
    herald
        .wait_for_notification("after", Duration::from_secs(10), all_delivered)
        .await;
    let (_, health) = herald.get("/v1/integrations/flaky/health").await;
    assert!(health["supervisionFailure"].is_null(), "{health}");
}

#[tokio::test]
async fn a_crash_loop_is_bounded_and_shows_as_down() {
    let herald = Harness::start(&config(2, 50), "studio").await;
    for n in 0..3 {
        herald
            .post("/v1/notifications", &poison(&format!("poison-{n}")))
            .await;
    }
    let mut health = serde_json::Value::Null;
    for _ in 0..100 {
        health = herald.get("/v1/integrations/flaky/health").await.1;
        if health["status"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health["status"], "down", "{health}");
    assert!(health["supervisionFailure"]
        .as_str()
        .unwrap()
        .contains("connector panicked"));

    // Given up means given up: no more attempts are made.
    let attempts = |record: &serde_json::Value| record["targets"][0]["attempts"].as_u64().unwrap();
    let before: u64 =
        sum_over_notifications(&herald, &["poison-0", "poison-1", "poison-2"], attempts).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: u64 =
        sum_over_notifications(&herald, &["poison-0", "poison-1", "poison-2"], attempts).await;
    assert_eq!(before, after, "the crash loop stopped");
    assert!(
        before <= 3,
        "at most one start plus two restarts, one attempt each: {before}"
    );
    // Intake still works; the deliveries wait durably for the integration to come back.
    let (status, _) = herald
        .post("/v1/notifications", &notification("queued", "normal"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

async fn sum_over_notifications(
    herald: &Harness,
    ids: &[&str],
    value: impl Fn(&serde_json::Value) -> u64,
) -> u64 {
    let mut sum = 0;
    for id in ids {
        sum += value(&herald.get(&format!("/v1/notifications/{id}")).await.1);
    }
    sum
}
