//! monday.com end to end against the simulator, which validates every document against monday's
//! published 2026-10 schema: the seed's syncNotificationToContacts onto a contacts board, the
//! wedding's item created and then found and changed, a status label set and a wrong one
//! dead-lettered, monday notifications for a high-priority notification, the complexity budget
//! held to and its 429 waited out, and a refused token.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::monday::{ColumnKind, FakeMonday};
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.studio-monday-token";

struct Environment {
    herald: Harness,
    monday: FakeMonday,
    weddings: String,
    _secrets: tempfile::TempDir,
}

fn stages() -> ColumnKind {
    ColumnKind::Status(
        ["Enquiry", "Booked", "Planning", "Done"]
            .map(str::to_owned)
            .to_vec(),
    )
}

/// A monday account with a weddings board (wedding id, date, status): the account and the
/// board's id.
async fn account() -> (FakeMonday, String) {
    let monday = FakeMonday::start(any_local_port(), TOKEN).await.unwrap();
    let weddings = monday.add_board(
        "Weddings",
        &[
            ("text_wedding", ColumnKind::Text),
            ("date4", ColumnKind::Date),
            ("status", stages()),
        ],
    );
    (monday, weddings)
}

/// A Herald whose integration `integration` reaches `account` with `token` and `extra`
/// settings.
async fn start_with(
    integration: &str,
    (monday, weddings): (FakeMonday, String),
    token: &str,
    extra: &str,
) -> Environment {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), token).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"monday\"\n\
         settings = {{ api_url = \"{}\", api_token = {{ file = \"{}/token\" }}, board_id = \"{weddings}\", wedding_column = \"text_wedding\", date_column = \"date4\", status_column = \"status\"{extra} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        monday.api_url(),
        secrets.path().display(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        monday,
        weddings,
        _secrets: secrets,
    }
}

async fn start(integration: &str) -> Environment {
    start_with(integration, account().await, TOKEN, "").await
}

fn with_contacts(id: &str, priority: &str, contacts: &[(&str, &str)]) -> Value {
    let mut n = notification(id, priority);
    n["weddingContext"]["coupleNames"] = json!("Sam & Alex");
    n["contacts"] = json!(contacts
        .iter()
        .map(|(name, email)| json!({"name": name, "email": email, "role": "couple"}))
        .collect::<Vec<_>>());
    n
}

/// The root fields each recorded document asked for, after `complexity`.
fn operations(monday: &FakeMonday) -> Vec<String> {
    monday
        .recorder
        .all()
        .iter()
        .map(|r| {
            let document = r.body["query"].as_str().unwrap_or_default();
            let name = document.split_whitespace().nth(1).unwrap_or_default();
            name.split('(').next().unwrap_or_default().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_wedding_becomes_one_item_found_again_and_changed_with_an_update_each_time() {
    let env = start("monday-item").await;
    let record = env
        .herald
        .notify(&with_contacts("m-1", "normal", &[]), all_delivered)
        .await;
    let items = env.monday.items(&env.weddings);
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.name, "Sam & Alex, 2027-06-12");
    assert_eq!(
        (item.text("text_wedding"), item.text("date4")),
        (Some("wed-1"), Some("2027-06-12"))
    );
    let details = &record["targets"][0]["details"];
    assert_eq!(
        (&details["itemId"], &details["itemCreated"]),
        (&json!(item.id), &json!(true)),
        "{record}"
    );
    let updates = env.monday.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].item_id, item.id);
    assert_eq!(
        updates[0].body,
        "<p><strong>Ceremony moved</strong></p><p>The ceremony now starts at 15:30</p>"
    );
    assert_eq!(
        operations(&env.monday),
        ["FindItems", "CreateItem", "CreateUpdate"]
    );
    // The pinned API version on every request.
    assert!(env
        .monday
        .recorder
        .all()
        .iter()
        .all(|r| r.header("api-version") == Some("2026-10")));

    // The timeline moves: the same item is found, its date changed, a second update.
    let mut moved = with_contacts("m-2", "normal", &[]);
    moved["weddingContext"]["weddingDate"] = json!("2027-06-19");
    moved["metadata"] = json!({"mondayStatus": "Booked"});
    let record = env.herald.notify(&moved, all_delivered).await;
    let items = env.monday.items(&env.weddings);
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].text("date4"), items[0].text("status")),
        (Some("2027-06-19"), Some("Booked"))
    );
    assert_eq!(record["targets"][0]["details"]["itemCreated"], false);
    assert_eq!(
        record["targets"][0]["details"]["columnsChanged"],
        json!(["date4", "status"])
    );
    assert_eq!(env.monday.updates().len(), 2);
    assert_eq!(
        operations(&env.monday)[3..],
        ["FindItems", "ChangeColumns", "CreateUpdate"]
    );

    // What is left of the minute's complexity budget, as monday reported it.
    let window = ["integration=\"monday-item\"", "window=\"1m\""];
    let left: i64 = env
        .herald
        .gauge("herald_vendor_quota_remaining", &window)
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(left, 10_000_000 - 4 * 10_000 - 2 * 1_100);
}

#[tokio::test]
async fn every_contact_is_synced_onto_the_contacts_board_once() {
    let (monday, weddings) = account().await;
    let people = monday.add_board(
        "Contacts",
        &[("email", ColumnKind::Email), ("text", ColumnKind::Text)],
    );
    monday.add_item(
        &people,
        "Sam Taylor",
        json!({"email": {"email": "sam@example.com", "text": "sam@example.com"}}),
    );
    let env = start_with(
        "monday-contacts",
        (monday, weddings),
        TOKEN,
        &format!(", contacts_board_id = \"{people}\", contacts_email_column = \"email\""),
    )
    .await;
    let mut sent = with_contacts(
        "m-c",
        "normal",
        &[
            ("Sam Taylor", "SAM@example.com"),
            ("Alex Morgan", "alex@example.com"),
            ("", "jo@example.com"),
        ],
    );
    sent["title"] = json!("Vows & venue");
    let record = env.herald.notify(&sent, all_delivered).await;
    let details = &record["targets"][0]["details"];
    assert_eq!(
        (
            &details["totalContacts"],
            &details["successfulSyncs"],
            &details["failedSyncs"]
        ),
        (&json!(3), &json!(3), &json!(0)),
        "{record}"
    );
    let created: Vec<bool> = details["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["created"].as_bool().unwrap())
        .collect();
    assert_eq!(created, [false, true, true]);
    let names: Vec<String> = env
        .monday
        .items(&people)
        .iter()
        .map(|item| format!("{} {}", item.name, item.text("email").unwrap_or_default()))
        .collect();
    assert_eq!(
        names,
        [
            "Sam Taylor sam@example.com",
            "Alex Morgan alex@example.com",
            "jo@example.com jo@example.com"
        ]
    );
    // The update is HTML: the title escaped, the contacts named.
    assert_eq!(
        env.monday.updates()[0].body,
        "<p><strong>Vows &amp; venue</strong></p><p>The ceremony now starts at 15:30</p>\
         <p>Contacts: sam@example.com, alex@example.com, jo@example.com</p>"
    );

    // The same contacts again: found, none created.
    let record = env
        .herald
        .notify(
            &with_contacts("m-c2", "normal", &[("Alex Morgan", "alex@example.com")]),
            all_delivered,
        )
        .await;
    assert_eq!(
        record["targets"][0]["details"]["contacts"][0]["created"],
        false
    );
    assert_eq!(env.monday.items(&people).len(), 3);
}

#[tokio::test]
async fn a_label_the_status_column_lacks_is_dead_lettered_with_mondays_words() {
    let env = start("monday-label").await;
    let mut sent = with_contacts("m-lost", "normal", &[]);
    sent["metadata"] = json!({"mondayStatus": "Lost"});
    let record = env.herald.notify(&sent, dead_lettered).await;
    assert_eq!(record["targets"][0]["attempts"], 1);
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.starts_with("request rejected: ColumnValueException: "),
        "{error}"
    );
    assert!(error.contains("label does not exist in column"), "{error}");
    // monday answered HTTP 200: the failure was read from its errors array.
    assert_eq!(env.monday.recorder.all().last().unwrap().status, 200);
    assert!(env.monday.items(&env.weddings).is_empty());
    assert!(env.monday.updates().is_empty());

    // A notification without a wedding has no item to go on: refused before monday is called.
    let requests = env.monday.recorder.all().len();
    let mut loose = notification("m-loose", "normal");
    loose["weddingContext"] = Value::Null;
    let record = env.herald.notify(&loose, dead_lettered).await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("no weddingContext.weddingId"));
    assert_eq!(env.monday.recorder.all().len(), requests);
}

#[tokio::test]
async fn a_high_priority_notification_notifies_the_named_people() {
    let (monday, weddings) = account().await;
    let planner = monday.add_user("Priya Planner", "priya@studio.example");
    let env = start_with(
        "monday-bell",
        (monday, weddings),
        TOKEN,
        &format!(", notify_user_ids = [\"{planner}\", \"999\"]"),
    )
    .await;
    let record = env
        .herald
        .notify(&with_contacts("m-high", "high", &[]), all_delivered)
        .await;
    let item = env.monday.items(&env.weddings)[0].id.clone();
    let sent = env.monday.notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].user_id.as_str(),
            sent[0].target_id.as_str(),
            sent[0].text.as_str()
        ),
        (
            planner.as_str(),
            item.as_str(),
            "Ceremony moved: The ceremony now starts at 15:30"
        )
    );
    // A person the account does not have: reported, the item and update stand.
    let notified = &record["targets"][0]["details"]["notifications"];
    assert_eq!(notified[0]["status"], "sent");
    assert_eq!(notified[1]["userId"], "999");
    assert_eq!(
        notified[1]["error"],
        "request rejected: ResourceNotFoundException: User 999 not found"
    );

    // A normal one notifies no one.
    env.herald
        .notify(&with_contacts("m-normal", "normal", &[]), all_delivered)
        .await;
    assert_eq!(env.monday.notifications().len(), 1);
}

#[tokio::test]
async fn the_complexity_budget_is_held_to_and_its_429_waited_out() {
    let env = start("monday-budget").await;
    env.herald
        .notify(&with_contacts("m-b1", "normal", &[]), all_delivered)
        .await;

    // Less left than a mutation costs: the query goes, then Herald holds the rest until the
    // minute resets instead of sending what monday would refuse.
    env.monday.leave_complexity(5_000, Duration::from_secs(3));
    let record = env
        .herald
        .notify(&with_contacts("m-b2", "normal", &[]), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1, "{record}");
    let record = env
        .herald
        .wait_for_notification("m-b2", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2);
    assert!(env.monday.recorder.all().iter().all(|r| r.status == 200));

    // Spent by someone else: monday's 429 with retry_in_seconds, waited, delivered.
    env.monday.leave_complexity(0, Duration::from_secs(3));
    env.herald
        .notify(&with_contacts("m-b3", "normal", &[]), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    assert_eq!(env.monday.recorder.all().last().unwrap().status, 429);
    env.herald
        .wait_for_notification("m-b3", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(env.monday.updates().len(), 3);
}

#[tokio::test]
async fn a_refused_token_is_read_again_and_then_dead_lettered() {
    let env = start_with("monday-token", account().await, "an-old-token", "").await;
    let record = env
        .herald
        .notify(&with_contacts("m-t", "normal", &[]), dead_lettered)
        .await;
    assert_eq!(
        record["targets"][0]["lastError"],
        "credentials refused: Not Authenticated"
    );
    // One try, the token read again, one more try.
    let statuses: Vec<u16> = env.monday.recorder.all().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401]);
}
