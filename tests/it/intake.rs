//! Durable intake: idempotency, and rejection of bad input with the field named and nothing
//! journaled.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    all_delivered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

async fn start() -> (Harness, WebhookReceiver) {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("hook", "studio", &receiver.url(), ""),
        route("studio", &["hook"], "")
    );
    (Harness::start(&body, "studio").await, receiver)
}

#[tokio::test]
async fn a_repeated_notification_id_returns_the_first_record_and_delivers_once() {
    let (herald, receiver) = start().await;
    let (status, first) = herald
        .post("/v1/notifications", &notification("n-1", "normal"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["status"], "accepted");
    herald
        .wait_for_notification("n-1", Duration::from_secs(10), all_delivered)
        .await;

    let mut changed = notification("n-1", "high");
    changed["title"] = json!("A different title");
    let (status, again) = herald.post("/v1/notifications", &changed).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(
        again["deliveries"][0]["deliveryId"],
        first["deliveries"][0]["deliveryId"]
    );
    assert_eq!(again["deliveries"][0]["state"], "delivered");

    // The same id inside a batch is a duplicate too.
    let (status, batch) = herald.post("/v1/notifications/batch", &json!({"notifications": [notification("n-1", "normal"), notification("n-2", "normal")]})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        (batch["accepted"].as_u64(), batch["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    herald
        .wait_for_notification("n-2", Duration::from_secs(10), all_delivered)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| {
            r.body["data"]["notificationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids.iter().filter(|id| *id == "n-1").count(),
        1,
        "delivered exactly once: {ids:?}"
    );
    let stored = herald.get("/v1/notifications/n-1").await.1;
    assert_eq!(
        stored["notification"]["title"], "Ceremony moved",
        "the first record stands"
    );
    herald.stop().await.expect("a clean shutdown");
}

async fn expect_rejected(
    herald: &Harness,
    path: &str,
    body: String,
    status: StatusCode,
    field: Option<&str>,
    message_part: &str,
) -> Value {
    let (got, answer) = herald.post_raw_as(&herald.key, path, body).await;
    assert_eq!(got, status, "{answer}");
    if let Some(field) = field {
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "message {message:?} should mention {message_part:?}"
    );
    answer
}

#[tokio::test]
async fn bad_input_is_rejected_naming_the_field_and_nothing_is_journaled() {
    let (herald, receiver) = start().await;
    let path = "/v1/notifications";
    expect_rejected(
        &herald,
        path,
        "{\"notificationId\": \"x\",".into(),
        StatusCode::BAD_REQUEST,
        None,
        "malformed JSON",
    )
    .await;

    let mut missing = notification("bad-1", "normal");
    missing.as_object_mut().unwrap().remove("message");
    expect_rejected(
        &herald,
        path,
        missing.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("message"),
        "missing field `message`",
    )
    .await;

    let mut unknown = notification("bad-2", "normal");
    unknown["weddingContext"]["theme"] = json!("rustic");
    expect_rejected(
        &herald,
        path,
        unknown.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("weddingContext.theme"),
        "unknown field `theme`",
    )
    .await;

    let mut wrong_type = notification("bad-3", "normal");
    wrong_type["weddingContext"]["guestCount"] = json!("lots");
    expect_rejected(
        &herald,
        path,
        wrong_type.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("weddingContext.guestCount"),
        "invalid type",
    )
    .await;

    let mut bad_priority = notification("bad-4", "normal");
    bad_priority["priority"] = json!("urgent");
    expect_rejected(
        &herald,
        path,
        bad_priority.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("priority"),
        "unknown variant `urgent`",
    )
    .await;

    let mut bad_date = notification("bad-5", "normal");
    bad_date["weddingContext"]["weddingDate"] = json!("next June");
    expect_rejected(
        &herald,
        path,
        bad_date.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("weddingContext.weddingDate"),
        "YYYY-MM-DD",
    )
    .await;

    // A batch with one bad notification is rejected whole.
    let mut batch: Vec<Value> = (0..10)
        .map(|n| notification(&format!("batch-{n}"), "normal"))
        .collect();
    batch[7]["title"] = json!("");
    expect_rejected(
        &herald,
        "/v1/notifications/batch",
        json!({"notifications": batch}).to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("notifications[7].title"),
        "must not be empty",
    )
    .await;
    batch[7]["title"] = json!(7);
    expect_rejected(
        &herald,
        "/v1/notifications/batch",
        json!({"notifications": batch}).to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("notifications[7].title"),
        "invalid type",
    )
    .await;

    let oversized: Vec<Value> = (0..10_001)
        .map(|n| notification(&format!("big-{n}"), "low"))
        .collect();
    expect_rejected(
        &herald,
        "/v1/notifications/batch",
        json!({"notifications": oversized}).to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("notifications"),
        "at most 10000",
    )
    .await;
    expect_rejected(
        &herald,
        "/v1/notifications/batch",
        json!({"notifications": []}).to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("notifications"),
        "at least one",
    )
    .await;

    for id in [
        "bad-1", "bad-2", "bad-3", "bad-4", "bad-5", "batch-0", "batch-9", "big-0",
    ] {
        let (status, _) = herald.get(&format!("/v1/notifications/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id} must not be journaled");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.recorder.is_empty(), "nothing was delivered");
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_413() {
    let (herald, _receiver) = start().await;
    let mut huge = notification("huge", "normal");
    huge["message"] = json!("x".repeat(17 * 1024 * 1024));
    let (status, answer) = herald.post("/v1/notifications", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(
        herald.get("/v1/notifications/huge").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn webhook_deliveries_carry_a_valid_standard_webhooks_signature_and_show_in_metrics() {
    let (herald, receiver) = start().await;
    herald
        .post("/v1/notifications", &notification("signed", "normal"))
        .await;
    let record = herald
        .wait_for_notification("signed", Duration::from_secs(10), all_delivered)
        .await;
    let received = receiver.received();
    assert_eq!(
        received.len(),
        1,
        "the receiver verified the signature and accepted it"
    );
    let message = &received[0];
    assert_eq!(
        message.header("webhook-id"),
        record["targets"][0]["receipt"].as_str()
    );
    assert!(message
        .header("webhook-signature")
        .unwrap()
        .starts_with("v1,"));
    assert_eq!(message.body["type"], "timeline_change");
    assert_eq!(
        message.body["data"]["weddingContext"]["venue"],
        "Kew Gardens"
    );

    for probe in ["healthz", "readyz"] {
        let response = herald
            .client
            .get(format!("{}/{probe}", herald.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe}");
    }
    let metrics = herald.metrics().await;
    assert!(metrics.contains("herald_deliveries_total{"), "{metrics}");
    assert!(metrics.contains("outcome=\"delivered\""));
    assert!(metrics.contains("herald_intake_total{"));
    assert!(!metrics.contains("signed"), "no notification ids in labels");
    let (status, health) = herald.get("/v1/integrations/hook/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "healthy");
    assert!(health["latencyP50Ms"].as_f64().is_some());
}

#[tokio::test]
async fn with_a_metrics_token_only_a_scrape_carrying_it_reads_the_metrics() {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[server]\nmetrics_token = {{ file = \"{{secrets}}/metrics\" }}\n[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("hook", "studio", &receiver.url(), ""),
        route("studio", &["hook"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    herald
        .post("/v1/notifications", &notification("counted", "normal"))
        .await;
    herald
        .wait_for_notification("counted", Duration::from_secs(10), all_delivered)
        .await;
    std::fs::write(
        herald.data.path().join("secrets").join("metrics"),
        "scrape-token-3f9a",
    )
    .unwrap();
    let scrape = |token: Option<&'static str>| {
        let mut request = herald.client.get(format!("{}/metrics", herald.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        scrape(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        scrape(Some("guessed")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let answer = scrape(Some("scrape-token-3f9a")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer
        .text()
        .await
        .unwrap()
        .contains("herald_deliveries_total{"));
}

#[tokio::test]
async fn webhook_ids_differ_between_installations_posting_to_one_receiver() {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("hook", "studio", &receiver.url(), ""),
        route("studio", &["hook"], "")
    );
    // Two data folders: delivery ids start at 1 in each.
    let first = Harness::start(&body, "studio").await;
    let second = Harness::start(&body, "studio").await;
    for (herald, id) in [(&first, "from-first"), (&second, "from-second")] {
        herald
            .post("/v1/notifications", &notification(id, "normal"))
            .await;
        herald
            .wait_for_notification(id, Duration::from_secs(10), all_delivered)
            .await;
    }
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let ids: Vec<&str> = received
        .iter()
        .map(|m| m.header("webhook-id").unwrap())
        .collect();
    assert_ne!(
        ids[0], ids[1],
        "the receiver must not take one for a repeat of the other"
    );
    for id in ids {
        assert!(id.starts_with("msg_") && id.ends_with("_1"), "{id}");
    }
}

#[tokio::test]
async fn every_example_notification_is_accepted_and_delivered_as_written() {
    let (herald, receiver) = start().await;
    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/notifications");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 27, "{files:?}");
    for file in &files {
        let example: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let (status, answer) = herald.post("/v1/notifications", &example).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {answer}", file.display());
        let id = example["notificationId"].as_str().unwrap();
        herald
            .wait_for_notification(id, Duration::from_secs(10), all_delivered)
            .await;
        let delivered = receiver
            .received()
            .into_iter()
            .find(|message| message.body["data"]["notificationId"] == id)
            .unwrap();
        // Nothing the platform wrote is dropped on the way (the organization is the key's).
        let mut sent = example.clone();
        sent["organizationId"] = json!("studio");
        assert_eq!(delivered.body["data"], sent, "{}", file.display());
    }
}
