//! Asana end to end against the simulator, which checks every request against the contract
//! written from Asana's OpenAPI description: a wedding's task made once and found again (through
//! the search's lag), its due date and section moved, notifications as comments, actions as
//! subtasks; the webhook made through the handshake, and a ticked subtask recorded as an
//! acknowledgement while forged deliveries are refused; a free workspace's 402, and a task
//! deleted in Asana made again.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::asana::simulator::{PROJECT, REFERENCE_FIELD, SECTIONS, WORKSPACE};
use herald::vendors::asana::FakeAsana;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TOKEN: &str = "2/1000000000000001/1209999999999999:studio-asana";
const BOOKED: &str = SECTIONS[1].0;
const FINAL_DETAILS: &str = SECTIONS[2].0;

struct Environment {
    herald: Harness,
    asana: FakeAsana,
    _secrets: tempfile::TempDir,
}

async fn start(integration: &str) -> Environment {
    let asana = FakeAsana::start(any_local_port(), TOKEN).await.unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), TOKEN).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"asana\"\n\
         settings = {{ base_url = \"{}\", token = {{ file = \"{}/token\" }}, workspace = \"{WORKSPACE}\", project = \"{PROJECT}\", reference_field = \"{REFERENCE_FIELD}\", sections = {{ booking_confirmed = \"{BOOKED}\", final_details = \"{FINAL_DETAILS}\" }}, webhooks = {{ public_url = \"{{herald}}\" }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        asana.base_url(),
        secrets.path().display(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        asana,
        _secrets: secrets,
    }
}

fn about_the_wedding(id: &str, kind: &str, date: &str) -> Value {
    let mut n = notification(id, "normal");
    n["type"] = json!(kind);
    n["weddingContext"]["weddingDate"] = json!(date);
    n["weddingContext"]["coupleNames"] = json!("Sam & Alex");
    n
}

fn reference_of(task: &Value) -> Value {
    task["custom_fields"][0]["text_value"].clone()
}

#[tokio::test]
async fn a_wedding_is_one_task_found_again_dated_and_moved_between_sections() {
    let env = start("planner-asana").await;
    // Asana's search lags changes by up to a minute: the second notification must not make a
    // second task.
    env.asana.set_search_lag(Duration::from_secs(60));
    let booked = env
        .herald
        .notify(
            &about_the_wedding("booked-1", "booking_confirmed", "2027-06-12"),
            all_delivered,
        )
        .await;
    let details = &booked["targets"][0]["details"];
    assert_eq!(details["taskCreated"], true, "{booked}");
    assert_eq!(details["movedToSection"], BOOKED);
    let tasks = env.asana.tasks();
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task["name"], "Sam & Alex · 2027-06-12");
    assert_eq!(task["due_on"], "2027-06-12");
    assert_eq!(reference_of(task), "wedding/wed-1");
    assert_eq!(task["memberships"][0]["section"]["gid"], BOOKED);
    let gid = task["gid"].as_str().unwrap();
    assert_eq!(details["taskGid"], gid);

    let moved = env
        .herald
        .notify(
            &about_the_wedding("details-1", "final_details", "2027-06-19"),
            all_delivered,
        )
        .await;
    let details = &moved["targets"][0]["details"];
    assert_eq!(details["taskCreated"], false, "{moved}");
    assert_eq!(details["dueDateMoved"], true);
    assert_eq!(details["movedToSection"], FINAL_DETAILS);
    let tasks = env.asana.tasks();
    assert_eq!(tasks.len(), 1, "one wedding, one task");
    assert_eq!(tasks[0]["due_on"], "2027-06-19");
    assert_eq!(tasks[0]["memberships"][0]["section"]["gid"], FINAL_DETAILS);
    let stories: Vec<Value> = env
        .asana
        .stories(gid)
        .iter()
        .map(|story| story["text"].clone())
        .collect();
    assert_eq!(
        stories,
        [
            "Ceremony moved\n\nThe ceremony now starts at 15:30",
            "Ceremony moved\n\nThe ceremony now starts at 15:30"
        ]
    );
    // Every request carried the token as a bearer and Asana's envelope.
    let requests = env.asana.recorder.all();
    assert!(requests.iter().all(|r| r.status < 300), "{requests:?}");
    let search = requests
        .iter()
        .find(|r| r.path.ends_with("/tasks/search"))
        .unwrap();
    assert_eq!(search.body["projects.any"], PROJECT);
    assert_eq!(
        search.body[format!("custom_fields.{REFERENCE_FIELD}.value")],
        "wedding/wed-1"
    );
}

#[tokio::test]
async fn actions_become_subtasks_and_ticking_one_acknowledges_its_notification() {
    let env = start("planner-tasks").await;
    let (status, subscribed) = env
        .herald
        .post("/v1/integrations/planner-tasks/subscriptions", &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscribed}");
    assert_eq!(subscribed["subscriptions"][0]["status"], "created");
    let hooks = env.asana.webhooks();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].resource, PROJECT);
    assert_eq!(
        hooks[0].target,
        format!("{}/inbound/asana/planner-tasks/events", env.herald.base)
    );
    assert_eq!(
        hooks[0].filters,
        [json!({"resource_type": "task", "action": "changed", "fields": ["completed"]})]
    );
    // Asked again, Herald keeps the webhook whose secret it holds.
    let (status, again) = env
        .herald
        .post("/v1/integrations/planner-tasks/subscriptions", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["subscriptions"][0]["status"], "existing");
    assert_eq!(env.asana.webhooks().len(), 1);

    let mut n = about_the_wedding("timeline-9", "timeline_change", "2027-06-12");
    n["metadata"] = json!({"asanaDueOn": "2027-05-01"});
    n["actions"] = json!([
        {"actionId": "confirm", "label": "Confirm the new time"},
        {"actionId": "view", "label": "Open the timeline", "url": "https://wedsync.example/t/9"}
    ]);
    let record = env.herald.notify(&n, all_delivered).await;
    let details = &record["targets"][0]["details"];
    let subtask = details["actionTasks"][0]["taskGid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        details["actionTasks"].as_array().unwrap().len(),
        1,
        "{record}"
    );
    let task = env.asana.task(&subtask).unwrap();
    assert_eq!(task["name"], "Confirm the new time: Ceremony moved");
    assert_eq!(task["due_on"], "2027-05-01");
    assert_eq!(task["parent"]["gid"], details["taskGid"]);
    assert_eq!(reference_of(&task), "notification/timeline-9/confirm");
    let story = &env.asana.stories(details["taskGid"].as_str().unwrap())[0];
    assert!(
        story["text"]
            .as_str()
            .unwrap()
            .ends_with("\nOpen the timeline: https://wedsync.example/t/9"),
        "{story}"
    );

    // A forged delivery and an unsigned one are refused; Asana's heartbeat is answered.
    let target = hooks[0].target.clone();
    let forged = json!({"events": [{"action": "changed", "resource": {"gid": subtask, "resource_type": "task"}, "change": {"field": "completed", "action": "changed"}}]}).to_string();
    assert_eq!(env.asana.send_event(&target, "guessed", &forged).await, 401);
    let unsigned = env
        .herald
        .client
        .post(&target)
        .body(forged.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        env.asana
            .send_event(&target, &hooks[0].secret, r#"{"events":[]}"#)
            .await,
        200
    );
    let before = env.herald.get("/v1/notifications/timeline-9").await.1;
    assert_eq!(
        before["acknowledgements"].as_array().map_or(0, Vec::len),
        0,
        "nothing is acknowledged before the tick: {before}"
    );

    // The planner ticks the subtask in Asana.
    assert_eq!(env.asana.complete_task(&subtask, "Jo Planner").await, [200]);
    let acknowledged = env
        .herald
        .wait_for_notification("timeline-9", Duration::from_secs(10), |record| {
            record["acknowledgements"]
                .as_array()
                .is_some_and(|acks| !acks.is_empty())
        })
        .await;
    let acknowledgements = acknowledged["acknowledgements"].as_array().unwrap();
    assert_eq!(acknowledgements.len(), 1, "{acknowledged}");
    assert_eq!(acknowledgements[0]["integrationId"], "planner-tasks");
    assert_eq!(acknowledgements[0]["actionId"], "confirm");
    assert_eq!(acknowledgements[0]["actor"], "Jo Planner");
    // The same signed delivery replayed records nothing new.
    let replay = json!({"events": [{"action": "changed", "resource": {"gid": subtask, "resource_type": "task"}, "change": {"field": "completed", "action": "changed"}}]}).to_string();
    assert_eq!(
        env.asana
            .send_event(&target, &hooks[0].secret, &replay)
            .await,
        200
    );
    let record = env.herald.get("/v1/notifications/timeline-9").await.1;
    assert_eq!(record["acknowledgements"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_seeds_crm_scenario_keeps_every_contact_on_the_weddings_task() {
    let env = start("contacts-asana").await;
    let mut n = about_the_wedding("contacts-1", "timeline_change", "2027-06-12");
    n["contacts"] = json!([
        {"name": "Sam Taylor", "email": "sam@example.com", "role": "couple"},
        {"name": "Alex Morgan", "email": "alex@example.com", "role": "couple"},
        {"email": "planner@example.com", "phone": "+447700900123", "role": "planner"}
    ]);
    let record = env.herald.notify(&n, all_delivered).await;
    let details = &record["targets"][0]["details"];
    assert_eq!(
        (
            details["totalContacts"].as_u64(),
            details["successfulSyncs"].as_u64(),
            details["failedSyncs"].as_u64()
        ),
        (Some(3), Some(3), Some(0)),
        "the seed's successfulSyncs = N: {details}"
    );
    let story = &env.asana.stories(details["taskGid"].as_str().unwrap())[0];
    assert!(
        story["text"].as_str().unwrap().ends_with(
            "Contacts:\nSam Taylor, sam@example.com\nAlex Morgan, alex@example.com\nplanner@example.com, +447700900123"
        ),
        "{story}"
    );
}

#[tokio::test]
async fn a_free_workspace_is_told_the_search_needs_premium() {
    let env = start("free-asana").await;
    env.asana.set_premium(false);
    let record = env
        .herald
        .notify(
            &about_the_wedding("free-1", "timeline_change", "2027-06-12"),
            dead_lettered,
        )
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("402") && error.contains("premium"),
        "{error}"
    );
    assert!(env.asana.tasks().is_empty());
    // A notification naming no wedding is refused before Asana is called.
    let mut unnamed = notification("no-wedding", "normal");
    unnamed["weddingContext"]
        .as_object_mut()
        .unwrap()
        .remove("weddingId");
    let record = env.herald.notify(&unnamed, dead_lettered).await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("no_wedding"),
        "{record}"
    );
    assert_eq!(
        env.asana.recorder.len(),
        1,
        "only the first search reached Asana"
    );
}

#[tokio::test]
async fn a_task_deleted_in_asana_is_made_again() {
    let env = start("deleted-asana").await;
    let first = env
        .herald
        .notify(
            &about_the_wedding("first", "timeline_change", "2027-06-12"),
            all_delivered,
        )
        .await;
    let gone = first["targets"][0]["details"]["taskGid"]
        .as_str()
        .unwrap()
        .to_owned();
    env.asana.delete_task(&gone);
    let second = env
        .herald
        .notify(
            &about_the_wedding("second", "timeline_change", "2027-06-12"),
            all_delivered,
        )
        .await;
    let details = &second["targets"][0]["details"];
    assert_eq!(details["taskCreated"], true, "{second}");
    assert_ne!(details["taskGid"], gone);
    let tasks = env.asana.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(reference_of(&tasks[0]), "wedding/wed-1");
}

#[tokio::test]
async fn an_attempt_retried_part_way_writes_the_comment_and_subtasks_once() {
    let env = start("retried-asana").await;
    env.asana.fail_requests_ending("/subtasks", 1);
    let mut n = about_the_wedding("retried", "timeline_change", "2027-06-12");
    n["actions"] = json!([
        {"actionId": "confirm", "label": "Confirm"},
        {"actionId": "call", "label": "Call the venue"}
    ]);
    let record = env.herald.notify(&n, all_delivered).await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");
    let details = &record["targets"][0]["details"];
    let task = details["taskGid"].as_str().unwrap();
    assert_eq!(env.asana.stories(task).len(), 1, "one comment");
    let references: Vec<Value> = env.asana.tasks().iter().map(reference_of).collect();
    assert_eq!(
        references,
        [
            json!("wedding/wed-1"),
            json!("notification/retried/confirm"),
            json!("notification/retried/call")
        ]
    );
    let failed: Vec<u16> = env
        .asana
        .recorder
        .all()
        .iter()
        .filter(|r| r.path.ends_with("/subtasks"))
        .map(|r| r.status)
        .collect();
    assert_eq!(failed, [500, 201, 201]);
}
