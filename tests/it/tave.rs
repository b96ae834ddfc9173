//! Tave / VSCO Workspace end to end against its simulator: the seed's booking change (exactly two
//! sync actions), client messages as communication-log notes, and the failure paths.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::tave::FakeTave;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    all_delivered, dead_lettered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

const API_KEY: &str = "tave-live-0123456789abcdef";

async fn start() -> (Harness, FakeTave, tempfile::NamedTempFile) {
    start_with("").await
}

/// Herald with one Tave integration; `settings` adds to its settings.
async fn start_with(settings: &str) -> (Harness, FakeTave, tempfile::NamedTempFile) {
    let tave = FakeTave::start(any_local_port(), API_KEY).await.unwrap();
    tave.add_job(
        "01j00000000000000020270612",
        json!({"name": "Sam & Alex", "eventDate": "2027-06-05"}),
    );
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), API_KEY).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"booking\"\norganization = \"studio\"\nkind = \"tave\"\n\
         settings = {{ base_url = \"{}\", api_key = {{ file = \"{}\" }}{settings} }}\n\
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
        "sourceNotification": for_job("tl-1", "timeline_change", json!("01j00000000000000020270612")),
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
        receipt.starts_with("job 01j00000000000000020270612 updated; note "),
        "{receipt}"
    );
    assert_eq!(
        tave.job("01j00000000000000020270612").unwrap()["eventDate"],
        "2027-06-12"
    );
    let notes = tave.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0].job_id.as_deref(),
        Some("01j00000000000000020270612")
    );
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
            &for_job(
                "cm-1",
                "client_message",
                json!("01j00000000000000020270612"),
            ),
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
async fn a_new_wedding_date_moves_the_jobs_sessions_on_the_old_date() {
    let (herald, tave, _key) = start().await;
    // The job is on 2027-06-05 (see `start`): its ceremony and reception that day move, the
    // engagement shoot in May stays, another job's session is not touched.
    tave.add_event("01e000000000000000cer3m0ny", json!({"jobId": "01j00000000000000020270612", "name": "Ceremony", "startDate": "2027-06-05", "endDate": "2027-06-05", "confirmed": true}));
    tave.add_event("01e00000000000000000recept", json!({"jobId": "01j00000000000000020270612", "name": "Reception", "startDate": "2027-06-05", "endDate": "2027-06-06"}));
    tave.add_event("01e0000000000000engagement", json!({"jobId": "01j00000000000000020270612", "name": "Engagement shoot", "startDate": "2027-05-01", "endDate": "2027-05-01"}));
    tave.add_event("01e0000000000000000th3rj0b", json!({"jobId": "01j0000000000000000000th3r", "name": "Ceremony", "startDate": "2027-06-05", "endDate": "2027-06-05"}));
    herald
        .post(
            "/v1/notifications",
            &for_job(
                "tl-sessions",
                "timeline_change",
                json!("01j00000000000000020270612"),
            ),
        )
        .await;
    let record = herald
        .wait_for_notification("tl-sessions", Duration::from_secs(10), all_delivered)
        .await;
    let actions: Vec<(String, String)> = record["targets"][0]["details"]["syncActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["eventId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("job_update".to_owned(), String::new()),
            (
                "session_update".to_owned(),
                "01e00000000000000000recept".to_owned()
            ),
            (
                "session_update".to_owned(),
                "01e000000000000000cer3m0ny".to_owned()
            ),
            ("communication_log_note".to_owned(), String::new()),
        ],
        "{record}"
    );
    let ceremony = tave.event("01e000000000000000cer3m0ny").unwrap();
    assert_eq!(
        (ceremony["startDate"].as_str(), ceremony["endDate"].as_str()),
        (Some("2027-06-12"), Some("2027-06-12"))
    );
    let reception = tave.event("01e00000000000000000recept").unwrap();
    assert_eq!(
        (
            reception["startDate"].as_str(),
            reception["endDate"].as_str()
        ),
        (Some("2027-06-12"), Some("2027-06-13")),
        "a session that ran past midnight keeps its length"
    );
    assert_eq!(
        tave.event("01e0000000000000engagement").unwrap()["startDate"],
        "2027-05-01"
    );
    assert_eq!(
        tave.event("01e0000000000000000th3rj0b").unwrap()["startDate"],
        "2027-06-05"
    );
}

#[tokio::test]
async fn a_new_date_taken_by_another_booking_is_recorded_as_a_conflict_with_free_days_nearby() {
    let (herald, tave, _key) = start_with(", check_conflicts = true").await;
    tave.add_event("01e0000000000000000000smth", json!({"jobId": "01j0000000000000000000smth", "name": "Smith wedding", "startDate": "2027-06-12", "confirmed": true}));
    tave.add_event("01e000000000000000000j0nes", json!({"jobId": "01j000000000000000000j0nes", "name": "Jones wedding", "startDate": "2027-06-11", "confirmed": true}));
    tave.add_event("01e0000000000000000000penc", json!({"jobId": "01j0000000000000000000penc", "name": "Pencilled in", "startDate": "2027-06-13", "confirmed": false}));
    herald
        .post(
            "/v1/notifications",
            &for_job(
                "tl-conflict",
                "timeline_change",
                json!("01j00000000000000020270612"),
            ),
        )
        .await;
    let record = herald
        .wait_for_notification("tl-conflict", Duration::from_secs(10), all_delivered)
        .await;
    let actions = record["targets"][0]["details"]["syncActions"]
        .as_array()
        .unwrap();
    let check = actions
        .iter()
        .find(|a| a["action"] == "conflict_check")
        .expect("a conflict check");
    assert_eq!(
        check["conflicts"],
        json!([{"eventId": "01e0000000000000000000smth", "jobId": "01j0000000000000000000smth", "name": "Smith wedding"}])
    );
    assert_eq!(
        check["alternatives"],
        json!(["2027-06-13", "2027-06-14", "2027-06-10"]),
        "a pencilled-in session does not take a day"
    );
    assert_eq!(
        (check["eventsChecked"].as_u64(), check["complete"].as_bool()),
        (Some(3), Some(true))
    );
    let notes = tave.notes();
    assert!(
        notes[0]
            .content_html
            .contains("Date conflict:</strong> 2027-06-12 already has Smith wedding (job 01j0000000000000000000smth)"),
        "{}",
        notes[0].content_html
    );
}

#[tokio::test]
async fn a_status_update_can_move_the_stage_and_start_a_tave_workflow() {
    let (herald, tave, _key) = start().await;
    let mut booked = for_job(
        "booked-2",
        "booking_confirmed",
        json!("01j00000000000000020270612"),
    );
    booked["metadata"] = json!({"taveJobId": "01j00000000000000020270612", "taveJobStage": "booked", "taveWorkflowId": "01wfweddingday"});
    herald.post("/v1/notifications", &booked).await;
    let record = herald
        .wait_for_notification("booked-2", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        record["targets"][0]["details"]["syncActions"][0]["fields"],
        json!(["stage", "workflowId"]),
        "{record}"
    );
    let job = tave.job("01j00000000000000020270612").unwrap();
    assert_eq!(
        (job["stage"].as_str(), job["workflowId"].as_str()),
        (Some("booked"), Some("01wfweddingday"))
    );

    // A stage Tave does not have is refused with its validation problem, named.
    let mut wrong = for_job(
        "booked-3",
        "booking_confirmed",
        json!("01j00000000000000020270612"),
    );
    wrong["metadata"] =
        json!({"taveJobId": "01j00000000000000020270612", "taveJobStage": "signed"});
    herald.post("/v1/notifications", &wrong).await;
    let record = herald
        .wait_for_notification("booked-3", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("stage: must be one of"),
        "{record}"
    );
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
        .wait_for_notification("no-job", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("metadata.taveJobId"));

    herald
        .post(
            "/v1/notifications",
            &for_job(
                "missing",
                "timeline_change",
                json!("01j00000000000000000000404"),
            ),
        )
        .await;
    let record = herald
        .wait_for_notification("missing", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("Job 01j00000000000000000000404 was not found."),
        "{record}"
    );
    assert_eq!(
        record["targets"][0]["attempts"], 1,
        "a 404 problem is not retried"
    );

    // Tave's ids are ULIDs: a number can never name a job, and is refused before Tave is asked.
    let asked = tave.requests().len();
    herald
        .post(
            "/v1/notifications",
            &for_job("numeric", "timeline_change", json!(2027)),
        )
        .await;
    let record = herald
        .wait_for_notification("numeric", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("invalid_job_id: metadata.taveJobId: 2027 is not a Tave id"),
        "{record}"
    );
    assert_eq!(tave.requests().len(), asked, "nothing reached Tave");

    // quota-limit with Retry-After: 1 is honoured.
    tave.faults.respond_next(429, &[("retry-after", "1")], json!({"type": "quota-limit", "title": "Too Many Requests", "status": 429, "detail": "API quota exceeded"}));
    herald
        .post(
            "/v1/notifications",
            &for_job(
                "quota",
                "client_message",
                json!("01j00000000000000020270612"),
            ),
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

    // A connection dropped mid-answer is a transport failure: retried, then delivered.
    tave.faults.drop_next(1);
    herald
        .post(
            "/v1/notifications",
            &for_job(
                "dropped",
                "client_message",
                json!("01j00000000000000020270612"),
            ),
        )
        .await;
    let record = herald
        .wait_for_notification("dropped", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");

    // A revoked key: refused, reloaded from its file (still wrong), refused again, dead-lettered.
    std::fs::write(key_file.path(), "tave-revoked").unwrap();
    tave.faults.respond_next(401, &[], json!({"type": "unauthorized", "title": "Unauthorized", "status": 401, "detail": "A valid X-API-KEY header is required."}));
    herald
        .post(
            "/v1/notifications",
            &for_job(
                "revoked",
                "client_message",
                json!("01j00000000000000020270612"),
            ),
        )
        .await;
    let record = herald
        .wait_for_notification("revoked", Duration::from_secs(10), dead_lettered)
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
    tave.add_job("01j00000000000000000000001", json!({"name": "Sam & Alex"}));
    let client = reqwest::Client::new();
    let put = |body: Value| {
        client
            .put(format!(
                "{}/job/01j00000000000000000000001",
                tave.base_url()
            ))
            .header("x-api-key", API_KEY)
            .json(&body)
            .send()
    };
    let drifted = put(json!({"eventDate": "12/06/2027", "venue": "Kew"}))
        .await
        .unwrap();
    // The API's validation problem: 400, `detail` mapping each field to what is wrong.
    assert_eq!(drifted.status(), StatusCode::BAD_REQUEST);
    let problem: Value = drifted.json().await.unwrap();
    assert_eq!(problem["type"], "validation-error");
    assert_eq!(
        problem["detail"],
        json!({"eventDate": ["is not a valid date"], "venue": ["is not a known field"]})
    );
    assert_eq!(
        tave.job("01j00000000000000000000001")
            .unwrap()
            .get("eventDate"),
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
    assert_eq!(note.status(), StatusCode::BAD_REQUEST);
    let problem: Value = note.json().await.unwrap();
    assert_eq!(problem["detail"], json!({"jobId": ["is required"]}));

    // A note on a contact needs a contact the studio has.
    tave.add_contact("01c000000000000000000005am", json!({"firstName": "Sam"}));
    for (contact, status) in [
        ("01c00000000000000000n0b0dy", StatusCode::BAD_REQUEST),
        ("01c000000000000000000005am", StatusCode::CREATED),
    ] {
        let note = client
            .post(format!("{}/note", tave.base_url()))
            .header("x-api-key", API_KEY)
            .json(&json!({"contentHtml": "<p>hi</p>", "contactId": contact}))
            .send()
            .await
            .unwrap();
        assert_eq!(note.status(), status, "{contact}");
    }

    let accepted = put(json!({"eventDate": "2027-06-12"})).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
}

#[tokio::test]
async fn tave_rest_hooks_bring_bookings_and_payments_to_the_studios_other_systems() {
    const HOOK_SECRET: &str = "hook-secret-7f3a9c1e5b2d4f60";
    let tave = FakeTave::start(any_local_port(), API_KEY).await.unwrap();
    let feed = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("key"), API_KEY).unwrap();
    std::fs::write(secrets.path().join("hook"), HOOK_SECRET).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"booking\"\norganization = \"studio\"\nkind = \"tave\"\n\
         settings = {{ base_url = \"{}\", api_key = {{ file = \"{}/key\" }}, rest_hooks = {{ public_url = \"{{herald}}\", events = [\"order.booked\", \"payment.created\"], secret = {{ file = \"{}/hook\" }} }} }}\n\
         {}{}",
        tave.base_url(),
        secrets.path().display(),
        secrets.path().display(),
        webhook_integration("team-feed", "studio", &feed.url(), ""),
        // The studio's route sends bookings everywhere, Tave included: a Tave event must not be
        // sent back to Tave.
        route(
            "studio",
            &["team-feed", "booking"],
            "types = [\"booking_confirmed\", \"payment_received\"]"
        ),
    );
    let herald = Harness::start(&body, "studio").await;

    let (status, subscribed) = herald
        .post("/v1/integrations/booking/subscriptions", &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscribed}");
    let events: Vec<&str> = subscribed["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["order.booked", "payment.created"]);
    assert!(subscribed["subscriptions"][0]["hookId"].is_string());
    assert!(
        !subscribed.to_string().contains(HOOK_SECRET),
        "the answer never shows the hook secret"
    );
    let hooks = tave.rest_hooks();
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        hooks[0].url,
        format!(
            "{}/inbound/tave/booking/order.booked/{HOOK_SECRET}",
            herald.base
        )
    );
    assert!(tave
        .requests()
        .iter()
        .all(|r| !r.body.to_string().contains(HOOK_SECRET)));
    // Asked again, Herald finds the subscriptions Tave already has and makes none.
    let (status, again) = herald
        .post("/v1/integrations/booking/subscriptions", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["subscriptions"][0]["status"], "existing");
    assert_eq!(
        again["subscriptions"][0]["hookId"],
        subscribed["subscriptions"][0]["hookId"]
    );
    assert_eq!(tave.rest_hooks().len(), 2, "no second subscription");

    // Tave records a payment. Its hook carries only the payment's id (as Tave's do); Herald reads
    // the payment for its job, and the event reaches the team feed once, even when Tave
    // delivers it twice.
    let payment = "01hq3v8kzp4x6d2m9w5t7r1c0a";
    tave.add_payment(
        payment,
        json!({"jobId": "01j00000000000000020270612", "amount": 1500}),
    );
    assert_eq!(tave.fire("payment.created", payment).await, [200]);
    assert_eq!(tave.fire("payment.created", payment).await, [200]);
    let record = herald
        .wait_for_notification(
            &format!("tave-booking-payment.created-{payment}"),
            Duration::from_secs(10),
            all_delivered,
        )
        .await;
    let targets: Vec<&str> = record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["integrationId"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["team-feed"], "never back to Tave");
    let received = feed.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["data"]["type"], "payment_received");
    assert_eq!(
        received[0].body["data"]["metadata"]["taveJobId"], "01j00000000000000020270612",
        "the job comes from reading the payment"
    );
    let reads = tave
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == format!("/api/v2/payment/{payment}"))
        .count();
    assert_eq!(reads, 2, "one read per hook call");
    // An order Tave documents no read for is named by its id.
    assert_eq!(
        tave.fire("order.booked", "01hq3v8kzp4x6d2m9w5t7r1c0b")
            .await,
        [200]
    );
    let record = herald
        .wait_for_notification(
            "tave-booking-order.booked-01hq3v8kzp4x6d2m9w5t7r1c0b",
            Duration::from_secs(10),
            all_delivered,
        )
        .await;
    assert_eq!(
        record["notification"]["metadata"]["taveObjectId"], "01hq3v8kzp4x6d2m9w5t7r1c0b",
        "{record}"
    );
    // A payment Tave cannot find answers 503, so Tave sends the hook again later.
    let client = reqwest::Client::new();
    let unknown = client
        .post(format!(
            "{}/inbound/tave/booking/payment.created/{HOOK_SECRET}",
            herald.base
        ))
        .json(&json!({"targetId": "01hq3v8kzp4x6d2m9w5t7r1c0c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(tave.notes().is_empty(), "nothing was written back to Tave");

    // A caller without the secret is refused and nothing is journaled.
    let forged = client
        .post(format!(
            "{}/inbound/tave/booking/payment.created/guessed",
            herald.base
        ))
        .json(&json!({"id": "PAY-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = herald
        .get("/v1/notifications/tave-booking-payment.created-PAY-1")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An event the configuration does not subscribe to is Gone, which tells Tave to drop it.
    let unsubscribed = client
        .post(format!(
            "{}/inbound/tave/booking/job.created/{HOOK_SECRET}",
            herald.base
        ))
        .json(&json!({"id": "01j00000000000000000000009"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsubscribed.status(), StatusCode::GONE);
    // So is an integration Herald no longer has (removed from the configuration).
    let removed = client
        .post(format!(
            "{}/inbound/tave/removed-booking/order.booked/{HOOK_SECRET}",
            herald.base
        ))
        .json(&json!({"id": "ord-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::GONE);

    // Subscriptions are Tave's: a webhook integration has none.
    let (status, refused) = herald
        .post("/v1/integrations/team-feed/subscriptions", &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
}

#[tokio::test]
async fn the_seeds_booking_notification_is_acted_on_as_written() {
    let (herald, tave, _key) = start().await;
    // The seed's BookingNotification: the job at the top level, the changes in its words.
    let mut seed = notification("seed-booking", "high");
    seed["type"] = json!("booking_update");
    seed["bookingId"] = json!("B-77");
    seed["taveJobId"] = json!("01j00000000000000020270612");
    seed["metadata"] = json!({
        "timelineChanges": {"newWeddingDate": "2027-07-03", "newWeddingTime": "15:30", "newVenue": "Syon Park", "affectedSessions": ["S-1"]},
        "updatesBookingStatus": true,
        "newStatus": "confirmed"
    });
    let (status, answer) = herald.post("/v1/notifications", &seed).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let record = herald
        .wait_for_notification("seed-booking", Duration::from_secs(10), all_delivered)
        .await;
    let job = tave.job("01j00000000000000020270612").unwrap();
    assert_eq!(
        (job["eventDate"].as_str(), job["stage"].as_str()),
        (Some("2027-07-03"), Some("booked"))
    );
    let actions: Vec<&str> = record["targets"][0]["details"]["syncActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["job_update", "timeline_noted", "communication_log_note"],
        "{record}"
    );
    let note = tave.notes().pop().unwrap();
    assert!(
        note.content_html.contains("New time: 15:30")
            && note.content_html.contains("New venue: Syon Park"),
        "{}",
        note.content_html
    );

    // A status Tave has no stage for is dead-lettered with the reason, not delivered as a note.
    let mut unknown = seed.clone();
    unknown["notificationId"] = json!("seed-unknown-status");
    unknown["metadata"] = json!({"updatesBookingStatus": true, "newStatus": "on_hold"});
    herald.post("/v1/notifications", &unknown).await;
    let record = herald
        .wait_for_notification(
            "seed-unknown-status",
            Duration::from_secs(10),
            dead_lettered,
        )
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("metadata.newStatus \"on_hold\""),
        "{record}"
    );

    // The seed's fields are typed: a date that is not one is refused at intake, by name.
    let mut wrong = seed.clone();
    wrong["notificationId"] = json!("seed-bad-date");
    wrong["metadata"]["timelineChanges"]["newWeddingDate"] = json!("2027-02-30");
    let (status, answer) = herald.post("/v1/notifications", &wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["error"]["field"],
        "metadata.timelineChanges.newWeddingDate"
    );
}
