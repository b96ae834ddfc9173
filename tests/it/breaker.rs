//! Retries, the circuit breaker, rate limits and dead letters, against a webhook receiver that
//! misbehaves on script.

use std::time::{Duration, Instant};

use herald::sandbox::any_local_port;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{
    all_delivered, dead_lettered, eventually, notification, route, webhook_integration, Harness,
    WEBHOOK_SECRET,
};

async fn start(extra: &str) -> (Harness, WebhookReceiver) {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("hook", "studio", &receiver.url(), extra),
        route("studio", &["hook"], "")
    );
    (Harness::start(&body, "studio").await, receiver)
}

#[tokio::test]
async fn a_vendor_answering_503_opens_the_circuit_then_everything_is_delivered() {
    let (herald, receiver) = start(
        "breaker = { failure_threshold = 3, open_for = \"1s\" }\nretry = { max_attempts = 100, initial = \"20ms\", max_delay = \"100ms\" }",
    )
    .await;
    receiver
        .faults
        .go_down(503, json!({"error": "maintenance"}));
    for n in 0..5 {
        herald
            .post(
                "/v1/notifications",
                &notification(&format!("outage-{n}"), "normal"),
            )
            .await;
    }
    let down_since = Instant::now();
    eventually(Duration::from_secs(5), "the circuit to open", || {
        receiver.recorder.len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let calls_during_outage = receiver.recorder.len();
    // Without a breaker, five deliveries retrying every ~60 ms for 2.5 s would make ~200 calls.
    // With it: three failures, then one half-open probe per second.
    assert!(
        calls_during_outage <= 3 + 4,
        "{calls_during_outage} calls reached a vendor whose circuit was open"
    );
    let (_, health) = herald.get("/v1/integrations/hook/health").await;
    assert_eq!(health["circuitState"], "open", "{health}");
    assert_eq!(health["status"], "down");

    receiver.faults.come_back();
    for n in 0..5 {
        herald
            .wait_for_notification(
                &format!("outage-{n}"),
                Duration::from_secs(10),
                all_delivered,
            )
            .await;
    }
    let (_, health) = herald.get("/v1/integrations/hook/health").await;
    assert_eq!(health["circuitState"], "closed");
    assert!(down_since.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_rate_limit_is_never_exceeded() {
    let (herald, receiver) = start("rate_limit = { per_second = 10, burst = 1, emergency_reserve = 0.0 }\nretry = { initial = \"10ms\", max_delay = \"50ms\" }").await;
    receiver
        .faults
        .respond_next(429, &[("retry-after", "2")], json!({"error": "slow down"}));
    herald
        .post("/v1/notifications", &notification("limited-0", "normal"))
        .await;
    herald
        .wait_for_notification("limited-0", Duration::from_secs(10), all_delivered)
        .await;
    let calls = receiver.recorder.all();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, 429);
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(
        waited >= Duration::from_millis(1990),
        "called again after {waited:?}, before Retry-After: 2"
    );

    let batch: Vec<_> = (1..=30)
        .map(|n| notification(&format!("limited-{n}"), "normal"))
        .collect();
    let (status, _) = herald
        .post("/v1/notifications/batch", &json!({"notifications": batch}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for n in 1..=30 {
        herald
            .wait_for_notification(
                &format!("limited-{n}"),
                Duration::from_secs(15),
                all_delivered,
            )
            .await;
    }
    let arrivals: Vec<Instant> = receiver
        .recorder
        .all()
        .iter()
        .skip(2)
        .map(|r| r.at)
        .collect();
    assert_eq!(arrivals.len(), 30);
    // 10 per second with a burst of 1: no one-second window may hold more than 10 calls
    // (one extra allowed for scheduling jitter at the window's edges).
    for (index, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[index..]
            .iter()
            .take_while(|at| at.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 11,
            "{in_window} calls within one second at 10/s"
        );
    }
    let span = arrivals.last().unwrap().duration_since(arrivals[0]);
    assert!(
        span >= Duration::from_millis(2700),
        "30 calls at 10/s took only {span:?}"
    );
}

#[tokio::test]
async fn a_permanent_rejection_is_dead_lettered_with_the_vendor_message_and_can_be_replayed() {
    let (herald, receiver) = start("").await;
    receiver
        .faults
        .respond_next(422, &[], json!({"error": "venue field is required"}));
    herald
        .post("/v1/notifications", &notification("rejected", "normal"))
        .await;
    let record = herald
        .wait_for_notification("rejected", Duration::from_secs(10), dead_lettered)
        .await;
    assert_eq!(
        record["targets"][0]["attempts"], 1,
        "a validation error is not retried"
    );
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("venue field is required"));
    let (_, dead) = herald.get("/v1/dead-letters").await;
    let delivery_id = dead["deadLetters"][0]["deliveryId"].as_i64().unwrap();

    let (status, _) = herald
        .post(
            &format!("/v1/dead-letters/{delivery_id}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    herald
        .wait_for_notification("rejected", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(receiver.received().len(), 1);
    let (status, _) = herald
        .post(
            &format!("/v1/dead-letters/{delivery_id}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a delivered delivery is no longer a dead letter"
    );
}

#[tokio::test]
async fn a_refused_credential_is_reloaded_and_tried_once_more() {
    let (herald, receiver) = start("").await;
    receiver
        .faults
        .respond_next(401, &[], json!({"error": "bad signature"}));
    herald
        .post("/v1/notifications", &notification("auth-once", "normal"))
        .await;
    let record = herald
        .wait_for_notification("auth-once", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2);

    receiver
        .faults
        .respond_next(401, &[], json!({"error": "bad signature"}));
    receiver
        .faults
        .respond_next(401, &[], json!({"error": "bad signature"}));
    herald
        .post("/v1/notifications", &notification("auth-twice", "normal"))
        .await;
    let record = herald
        .wait_for_notification("auth-twice", Duration::from_secs(10), dead_lettered)
        .await;
    assert_eq!(
        record["targets"][0]["attempts"], 2,
        "tried once after reloading, then given up"
    );
}
