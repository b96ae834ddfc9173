//! The Microsoft 365 calendar end to end against Entra ID and Graph simulated: the wedding made
//! as an all-day event in its time zone that Herald finds again by its extended property, moved
//! by a timeline change, a creation retried with the same transactionId making no second event,
//! the wedding cancelled (Exchange telling the invited couple), and a permission removed by an
//! administrator dead-lettered in Graph's words.

use herald::sandbox::any_local_port;
use herald::vendors::microsoft_calendar::{FakeMicrosoftCalendar, WEDDING_PROPERTY};
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT: &str = "11111111-2222-4333-8444-555555555555";
const SECRET: &str = "studio~entra-secret";
const MAILBOX: &str = "weddings@contoso.com";

struct Environment {
    herald: Harness,
    graph: FakeMicrosoftCalendar,
    _secrets: tempfile::TempDir,
}

async fn start(extra: &str) -> Environment {
    let graph = FakeMicrosoftCalendar::start(any_local_port(), TENANT, CLIENT, SECRET, MAILBOX)
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), SECRET).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"outlook\"\norganization = \"studio\"\nkind = \"microsoft_calendar\"\n\
         settings = {{ tenant_id = \"{TENANT}\", client_id = \"{CLIENT}\", client_secret = {{ file = \"{}/secret\" }}, user = \"{MAILBOX}\", authority = \"{url}\", graph_url = \"{url}\"{extra} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        secrets.path().display(),
        route("studio", &["outlook"], ""),
        url = graph.url(),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        graph,
        _secrets: secrets,
    }
}

fn wedding(id: &str) -> Value {
    let mut n = notification(id, "normal");
    n["weddingContext"] = json!({"weddingId": "w-2027-0612", "weddingDate": "2027-06-12", "venue": "Kew Gardens", "coupleNames": "Sam & Alex", "timezone": "Europe/London"});
    n["contacts"] = json!([{"name": "Sam", "email": "sam@example.com", "role": "couple"}]);
    n
}

#[tokio::test]
async fn the_wedding_is_made_moved_and_cancelled_in_the_mailboxs_calendar() {
    let env = start(", invite_contact_roles = [\"couple\"]").await;
    let record = env.herald.notify(&wedding("ms-1"), all_delivered).await;
    assert_eq!(record["targets"][0]["details"]["change"], "created");
    let events = env.graph.events(None);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["subject"], "Wedding: Sam & Alex at Kew Gardens");
    assert_eq!(event["isAllDay"], true);
    assert_eq!(
        event["start"],
        json!({"dateTime": "2027-06-12T00:00:00", "timeZone": "Europe/London"})
    );
    assert_eq!(event["end"]["dateTime"], "2027-06-13T00:00:00");
    assert_eq!(event["location"]["displayName"], "Kew Gardens");
    assert_eq!(
        event["singleValueExtendedProperties"],
        json!([{"id": WEDDING_PROPERTY, "value": "w-2027-0612"}])
    );
    assert_eq!(
        event["attendees"],
        json!([{"emailAddress": {"address": "sam@example.com", "name": "Sam"}, "type": "required"}])
    );
    assert_eq!(record["targets"][0]["receipt"], event["id"]);

    let mut moved = wedding("ms-2");
    moved["metadata"] = json!({"timelineChanges": {"newWeddingDate": "2027-07-03"}});
    let record = env.herald.notify(&moved, all_delivered).await;
    assert_eq!(record["targets"][0]["details"]["change"], "updated");
    let events = env.graph.events(None);
    assert_eq!(events.len(), 1, "moved, not made again");
    assert_eq!(events[0]["start"]["dateTime"], "2027-07-03T00:00:00");

    let mut cancelled = wedding("ms-3");
    cancelled["type"] = json!("wedding_cancelled");
    let record = env.herald.notify(&cancelled, all_delivered).await;
    assert_eq!(record["targets"][0]["details"]["change"], "cancelled");
    assert!(env.graph.events(None).is_empty());
    assert_eq!(
        env.graph.cancellations(),
        [(
            "sam@example.com".to_owned(),
            "Wedding: Sam & Alex at Kew Gardens".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_retried_creation_makes_no_second_event_and_a_removed_permission_is_refused() {
    let env = start("").await;
    // The first creation's answer is lost after Graph made the event: the search misses it on
    // the retry, and the same transactionId answers the event already made.
    env.graph
        .faults
        .respond_next(200, &[], json!({"value": []}));
    env.herald.notify(&wedding("ms-1"), all_delivered).await;
    env.graph
        .faults
        .respond_next(200, &[], json!({"value": []}));
    let record = env.herald.notify(&wedding("ms-2"), all_delivered).await;
    assert_eq!(record["targets"][0]["details"]["change"], "created");
    assert_eq!(env.graph.events(None).len(), 1, "one event for one wedding");

    env.graph.revoke_calendar_permission();
    let record = env.herald.notify(&wedding("ms-3"), dead_lettered).await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("ErrorAccessDenied"), "{error}");
}
