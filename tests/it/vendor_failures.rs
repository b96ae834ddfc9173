//! The failure paths every vendor connector must survive, each against its own simulator
//! speaking the vendor's error bodies: a 5xx is retried, a vendor that stays down opens the
//! circuit (and everything arrives once it is back), and for Slack an expired token and a 429.

use std::time::{Duration, Instant};

use herald::sandbox::{any_local_port, Faults, Recorder};
use herald::vendors::hubspot::FakeHubSpot;
use herald::vendors::slack::FakeSlack;
use herald::vendors::tave::FakeTave;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, eventually, notification, route, Harness, SLACK_TOKEN};

/// Retry fast, open the circuit after three failures, probe every second.
const RESILIENCE: &str = "breaker = { failure_threshold = 3, open_for = \"1s\" }\n\
    retry = { max_attempts = 100, initial = \"20ms\", max_delay = \"100ms\" }\n\
    rate_limit = { per_second = 100, burst = 50 }";

/// One 5xx is retried; then the vendor goes down, the circuit opens, and when the vendor comes
/// back every notification is delivered.
async fn retried_then_circuit_opens(
    herald: &Harness,
    faults: &Faults,
    recorder: &Recorder,
    make: impl Fn(&str) -> Value,
    outage: Value,
) {
    faults.respond_next(503, &[], outage.clone());
    herald.post("/v1/notifications", &make("blip")).await;
    let record = herald
        .wait_for_notification("blip", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        record["targets"][0]["attempts"], 2,
        "a 5xx is retried: {record}"
    );

    faults.go_down(503, outage);
    let before = recorder.len();
    for n in 0..4 {
        herald
            .post("/v1/notifications", &make(&format!("outage-{n}")))
            .await;
    }
    eventually(Duration::from_secs(10), "the circuit to open", || {
        recorder.len() >= before + 3
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = herald.get("/v1/integrations/vendor/health").await;
        if health["circuitState"] == "open" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the circuit never opened: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    faults.come_back();
    for n in 0..4 {
        herald
            .wait_for_notification(
                &format!("outage-{n}"),
                Duration::from_secs(15),
                all_delivered,
            )
            .await;
    }
    let (_, health) = herald.get("/v1/integrations/vendor/health").await;
    assert_eq!(health["circuitState"], "closed", "{health}");
}

fn config(kind: &str, settings: &str) -> String {
    format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"vendor\"\norganization = \"studio\"\nkind = \"{kind}\"\n\
         settings = {{ {settings} }}\n{RESILIENCE}\n{}",
        route("studio", &["vendor"], "")
    )
}

#[tokio::test]
async fn hubspot_retries_a_5xx_and_opens_its_circuit_while_down() {
    let hubspot = FakeHubSpot::start(any_local_port(), "pat-na1-failures", 1000)
        .await
        .unwrap();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "pat-na1-failures").unwrap();
    let settings = format!(
        "base_url = \"{}\", token = {{ file = \"{}\" }}",
        hubspot.base_url(),
        token.path().display()
    );
    let herald = Harness::start(&config("hubspot", &settings), "studio").await;
    let make = |id: &str| {
        let mut n = notification(id, "normal");
        n["contacts"] = json!([{"email": "sam@example.com"}]);
        n
    };
    let outage = json!({"status": "error", "message": "internal error", "category": "INTERNAL_ERROR", "correlationId": "c0ffee"});
    retried_then_circuit_opens(&herald, &hubspot.faults, &hubspot.recorder, make, outage).await;
}

#[tokio::test]
async fn tave_retries_a_5xx_and_opens_its_circuit_while_down() {
    let tave = FakeTave::start(any_local_port(), "tave-failures")
        .await
        .unwrap();
    tave.add_job("J-1", json!({"name": "Sam & Alex"}));
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), "tave-failures").unwrap();
    let settings = format!(
        "base_url = \"{}\", api_key = {{ file = \"{}\" }}",
        tave.base_url(),
        key.path().display()
    );
    let herald = Harness::start(&config("tave", &settings), "studio").await;
    let make = |id: &str| {
        let mut n = notification(id, "normal");
        n["type"] = json!("client_message");
        n["metadata"] = json!({"taveJobId": "J-1"});
        n
    };
    let outage = json!({"type": "unknown", "title": "Service Unavailable", "detail": "maintenance", "status": 503});
    retried_then_circuit_opens(&herald, &tave.faults, &tave.recorder, make, outage).await;
}

async fn slack() -> (Harness, FakeSlack) {
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["team"])
        .await
        .unwrap();
    let settings = format!(
        "base_url = \"{}\", channel = \"#team\", token = {{ file = \"{{secrets}}/slack\" }}",
        slack.base_url()
    );
    (
        Harness::start(&config("slack", &settings), "studio").await,
        slack,
    )
}

#[tokio::test]
async fn slack_retries_a_5xx_and_opens_its_circuit_while_down() {
    let (herald, slack) = slack().await;
    let make = |id: &str| notification(id, "normal");
    let outage = json!({"ok": false, "error": "service_unavailable"});
    retried_then_circuit_opens(&herald, &slack.faults, &slack.recorder, make, outage).await;
}

#[tokio::test]
async fn slack_reloads_an_expired_token_and_honours_its_retry_after() {
    let (herald, slack) = slack().await;
    // Slack answers errors as HTTP 200 with ok:false: an expired token is reloaded, then retried.
    slack
        .faults
        .respond_next(200, &[], json!({"ok": false, "error": "token_expired"}));
    herald
        .post("/v1/notifications", &notification("expired", "normal"))
        .await;
    let record = herald
        .wait_for_notification("expired", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");

    slack.faults.respond_next(
        429,
        &[("retry-after", "1")],
        json!({"ok": false, "error": "ratelimited"}),
    );
    herald
        .post("/v1/notifications", &notification("limited", "normal"))
        .await;
    herald
        .wait_for_notification("limited", Duration::from_secs(10), all_delivered)
        .await;
    let posts: Vec<_> = slack
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/chat.postMessage")
        .collect();
    let (limited, retried) = (&posts[posts.len() - 2], &posts[posts.len() - 1]);
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS.as_u16());
    assert!(
        retried.at.duration_since(limited.at) >= Duration::from_millis(990),
        "retried before Slack's Retry-After"
    );
}
