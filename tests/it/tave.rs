//! Tave / VSCO Workspace end to end against its simulator: the seed's booking change (exactly two
//! sync actions), client messages as communication-log notes, and the failure paths.

use std::time::Duration;

use herald::sandbox::{any_local_port, FakeTave};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, notification, route, Harness};

const API_KEY: &str = "tave-live-0123456789abcdef";

async fn start() -> (Harness, FakeTave, tempfile::NamedTempFile) {
    let tave = FakeTave::start(any_local_port(), API_KEY).await.unwrap();
    tave.add_job(
        "J-2027-0612",
        json!({"name": "Sam & Alex", "eventDate": "2027-06-05"}),
    );
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), API_KEY).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"booking\"\norganization = \"studio\"\nkind = \"tave\"\n\
         settings = {{ base_url = \"{}\", api_key = {{ file = \"{}\" }} }}\n\
         rate_limit = {{ per_second = 50, burst = 10 }}\n\
         retry = {{ max_attempts = 4, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        tave.base_url(),
        key_file.path().display(),
        route("studio", &["booking"], "")
    );
    (Harness::start(&body, "studio").await, tave, key_file)
}

fn for_job(id: &str, kind: &str, job: Value) -> Value {
    let mut n = notification(id, "normal");
    n["type"] = json!(kind);
    n["metadata"] = json!({"taveJobId": job});
    n
}

#[tokio::test]
async fn a_booking_change_is_two_sync_actions() {
    let (herald, tave, _key) = start().await;
    let routing = json!({
        "routingId": "tave-1",
        "sourceNotification": for_job("tl-1", "timeline_change", json!("J-2027-0612")),
        "targetSystems": [{"integrationId": "booking"}]
    });
    let (status, result) = herald.post("/v1/routings?wait=10s", &routing).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["overallStatus"], "success");
    let receipt = result["systemResults"][0]["deliveryResults"][0]["receipt"]
        .as_str()
        .unwrap()
        .to_owned();
    let sync_actions = result["systemResults"][0]["deliveryResults"][0]["details"]["syncActions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        sync_actions.len(),
        2,
        "the seed's booking change: exactly 2 syncActions: {result}"
    );
    assert_eq!(
        (
            sync_actions[0]["action"].as_str(),
            sync_actions[1]["action"].as_str()
        ),
        (Some("job_update"), Some("communication_log_note"))
    );
    assert!(
        receipt.starts_with("job J-2027-0612 updated; note "),
        "{receipt}"
    );
    assert_eq!(tave.job("J-2027-0612").unwrap()["eventDate"], "2027-06-12");
    let notes = tave.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].job_id.as_deref(), Some("J-2027-0612"));
    assert!(notes[0].content_html.contains("Ceremony moved"));
    assert!(
        tave.requests()
            .iter()
            .all(|r| r.header("x-api-key").is_none()),
        "recordings never keep the key"
    );

    // A client message goes to the communication log only.
    herald
        .post(
            "/v1/notifications",
            &for_job("cm-1", "client_message", json!("J-2027-0612")),
        )
        .await;
    let record = herald
        .wait_for_notification("cm-1", Duration::from_secs(10), all_delivered)
        .await;
    assert!(record["targets"][0]["receipt"]
        .as_str()
        .unwrap()
        .starts_with("note "));
    assert_eq!(tave.notes().len(), 2);
}

#[tokio::test]
async fn tave_failures_are_classified() {
    let (herald, tave, key_file) = start().await;
    herald
        .post(
            "/v1/notifications",
            &for_job("no-job", "timeline_change", Value::Null),
        )
        .await;
    let record = herald
        .wait_for_notification("no-job", Duration::from_secs(10), |r| {
            r["targets"][0]["state"] == "dead_lettered"
        })
        .await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("metadata.taveJobId"));

    herald
        .post(
            "/v1/notifications",
            &for_job("missing", "timeline_change", json!("J-404")),
        )
        .await;
    let record = herald
        .wait_for_notification("missing", Duration::from_secs(10), |r| {
            r["targets"][0]["state"] == "dead_lettered"
        })
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("Job J-404 was not found."),
        "{record}"
    );
    assert_eq!(
        record["targets"][0]["attempts"], 1,
        "a 404 problem is not retried"
    );

    // quota-limit with Retry-After: 1 is honoured.
    tave.faults.respond_next(429, &[("retry-after", "1")], json!({"type": "quota-limit", "title": "Too Many Requests", "status": 429, "detail": "API quota exceeded"}));
    herald
        .post(
            "/v1/notifications",
            &for_job("quota", "client_message", json!("J-2027-0612")),
        )
        .await;
    herald
        .wait_for_notification("quota", Duration::from_secs(10), all_delivered)
        .await;
    let calls: Vec<_> = tave
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v2/note")
        .collect();
    let (limited, retried) = (&calls[calls.len() - 2], &calls[calls.len() - 1]);
    assert_eq!(limited.status, 429);
    assert!(
        retried.at.duration_since(limited.at) >= Duration::from_millis(990),
        "retried before Retry-After"
    );

    // A revoked key: refused, reloaded from its file (still wrong), refused again, dead-lettered.
    std::fs::write(key_file.path(), "tave-revoked").unwrap();
    tave.faults.respond_next(401, &[], json!({"type": "unauthorized", "title": "Unauthorized", "status": 401, "detail": "A valid X-API-KEY header is required."}));
    herald
        .post(
            "/v1/notifications",
            &for_job("revoked", "client_message", json!("J-2027-0612")),
        )
        .await;
    let record = herald
        .wait_for_notification("revoked", Duration::from_secs(10), |r| {
            r["targets"][0]["state"] == "dead_lettered"
        })
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2);
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("X-API-KEY"));
}

#[tokio::test]
async fn a_request_that_drifts_from_taves_contract_is_refused_naming_the_field() {
    let tave = FakeTave::start(any_local_port(), API_KEY).await.unwrap();
    tave.add_job("J-1", json!({"name": "Sam & Alex"}));
    let client = reqwest::Client::new();
    let put = |body: Value| {
        client
            .put(format!("{}/job/J-1", tave.base_url()))
            .header("x-api-key", API_KEY)
            .json(&body)
            .send()
    };
    let drifted = put(json!({"eventDate": "12/06/2027", "venue": "Kew"}))
        .await
        .unwrap();
    assert_eq!(drifted.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = drifted.json().await.unwrap();
    assert_eq!(problem["type"], "validation-error");
    assert_eq!(
        problem["detail"],
        "eventDate: is not a valid date; venue: is not a known field"
    );
    assert_eq!(problem["violations"][1]["propertyPath"], "venue");
    assert_eq!(
        tave.job("J-1").unwrap().get("eventDate"),
        None,
        "nothing was written"
    );

    let note = client
        .post(format!("{}/note", tave.base_url()))
        .header("x-api-key", API_KEY)
        .json(&json!({"contentHtml": "<p>hi</p>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = note.json().await.unwrap();
    assert_eq!(problem["detail"], "jobId: is required");

    let accepted = put(json!({"eventDate": "2027-06-12"})).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
}
