//! Dynamics 365 end to end against the Dataverse simulator: the seed's
//! syncNotificationToContacts (contacts found by one query, the missing created, a task each, a
//! note), an opportunity moved, won, and refused without creating one, an on-demand workflow per
//! contact, the client-credentials token got again when it expires, a refused secret, and the
//! service-protection window read from the headers and waited out.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::dynamics365::FakeDataverse;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TENANT: &str = "7a1c9e52-8d3b-4f60-9b2e-1c4d5e6f7a8b";
const CLIENT_ID: &str = "3e9d2b1a-6c5f-4e7d-8a9b-0c1d2e3f4a5b";
const CLIENT_SECRET: &str = "studio~dataverse~app~secret";

struct Environment {
    herald: Harness,
    dataverse: FakeDataverse,
    _secrets: tempfile::TempDir,
}

/// A Herald whose integration `integration` reaches `dataverse` with `secret` as the app's
/// secret and `extra` settings.
async fn start_with(
    integration: &str,
    dataverse: FakeDataverse,
    secret: &str,
    extra: &str,
) -> Environment {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), secret).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"dynamics365\"\n\
         settings = {{ environment_url = \"{url}\", authority = \"{url}\", tenant_id = \"{TENANT}\", client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{}/secret\" }}{extra} }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        secrets.path().display(),
        route("studio", &[integration], ""),
        url = dataverse.environment_url(),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        dataverse,
        _secrets: secrets,
    }
}

async fn dataverse() -> FakeDataverse {
    FakeDataverse::start(any_local_port(), TENANT, CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap()
}

async fn start(integration: &str, extra: &str) -> Environment {
    start_with(integration, dataverse().await, CLIENT_SECRET, extra).await
}

fn with_contacts(id: &str, contacts: &[(&str, &str)]) -> Value {
    let mut n = notification(id, "high");
    n["contacts"] = json!(contacts
        .iter()
        .map(|(name, email)| json!({"name": name, "email": email, "role": "couple"}))
        .collect::<Vec<_>>());
    n
}

fn paths(dataverse: &FakeDataverse) -> Vec<String> {
    dataverse
        .recorder
        .all()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_wedding_notification_syncs_every_contact_into_a_task_each_and_a_note() {
    let env = start("d365-sync", "").await;
    let sam = env
        .dataverse
        .add_contact("Sam", "Taylor", "sam@example.com");
    let sent = with_contacts(
        "d-1",
        &[
            ("Sam Taylor", "SAM@example.com"),
            ("Alex Morgan", "alex@example.com"),
            ("", "o'brien@example.com"),
        ],
    );
    let record = env.herald.notify(&sent, all_delivered).await;
    let details = &record["targets"][0]["details"];
    assert_eq!(
        (&details["totalContacts"], &details["successfulSyncs"]),
        (&json!(3), &json!(3)),
        "{record}"
    );
    assert_eq!(
        details["contacts"][0],
        json!({"email": "sam@example.com", "id": sam, "created": false})
    );

    // One query for the three, quotes doubled; the two missing created with their names.
    let requests = env.dataverse.recorder.all();
    assert_eq!(
        requests[0].body["$filter"],
        "emailaddress1 eq 'sam@example.com' or emailaddress1 eq 'alex@example.com' or emailaddress1 eq 'o''brien@example.com'"
    );
    assert_eq!(
        requests[1].body,
        json!({"emailaddress1": "alex@example.com", "firstname": "Alex", "lastname": "Morgan"})
    );
    assert_eq!(
        requests[2].body,
        json!({"emailaddress1": "o'brien@example.com", "lastname": "o'brien"})
    );
    let contacts: Vec<String> = env
        .dataverse
        .contacts()
        .iter()
        .map(|c| c.id.clone())
        .collect();

    // A task regarding each contact, due on the wedding day, high priority.
    let tasks = env.dataverse.tasks();
    let regarding: Vec<&Value> = tasks
        .iter()
        .map(|t| &t.columns["regardingobjectid_contact_task@odata.bind"])
        .collect();
    assert_eq!(
        regarding,
        contacts
            .iter()
            .map(|id| json!(format!("/contacts({id})")))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (
            &tasks[0].columns["subject"],
            &tasks[0].columns["prioritycode"],
            &tasks[0].columns["scheduledend"]
        ),
        (
            &json!("Ceremony moved"),
            &json!(2),
            &json!("2027-06-12T12:00:00Z")
        )
    );
    // The note is on the first contact.
    let annotations = env.dataverse.annotations();
    assert_eq!(
        annotations[0].columns["objectid_contact@odata.bind"],
        json!(format!("/contacts({sam})"))
    );
    assert_eq!(
        paths(&env.dataverse),
        [
            "GET /api/data/v9.2/contacts",
            "POST /api/data/v9.2/contacts",
            "POST /api/data/v9.2/contacts",
            "POST /api/data/v9.2/tasks",
            "POST /api/data/v9.2/tasks",
            "POST /api/data/v9.2/tasks",
            "POST /api/data/v9.2/annotations"
        ]
    );
    // Creates asked for the row back; every call carried OData's version headers.
    assert!(requests[1..].iter().all(|r| {
        r.header("prefer") == Some("return=representation")
            && r.header("odata-version") == Some("4.0")
    }));

    // What is left of the service-protection window, as Dataverse reported it.
    let window = ["integration=\"d365-sync\"", "window=\"5m\""];
    assert_eq!(
        env.herald
            .gauge("herald_vendor_quota_remaining", &window)
            .await
            .as_deref(),
        Some("5993")
    );
}

#[tokio::test]
async fn an_opportunity_moves_and_is_won_and_a_wrong_id_creates_nothing() {
    let env = start("d365-deal", "").await;
    let opportunity = env.dataverse.add_opportunity("Taylor-Morgan wedding");
    let mut sent = with_contacts("d-won", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] = json!({"dynamicsOpportunityId": opportunity, "dynamicsSalesStage": "close", "dynamicsOpportunityOutcome": "won"});
    let record = env.herald.notify(&sent, all_delivered).await;
    let moved = &env.dataverse.opportunities()[0].columns;
    assert_eq!(
        (
            &moved["salesstage"],
            &moved["statecode"],
            &moved["statuscode"]
        ),
        (&json!(3), &json!(1), &json!(3))
    );
    assert_eq!(
        env.dataverse.annotations()[0].columns["objectid_opportunity@odata.bind"],
        json!(format!("/opportunities({opportunity})"))
    );
    assert_eq!(
        record["targets"][0]["details"]["opportunity"],
        json!({"opportunityId": opportunity, "salesStage": 3, "outcome": "WinOpportunity"})
    );
    let requests = env.dataverse.recorder.all();
    let patch = requests.iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(patch.header("if-match"), Some("*"));
    assert_eq!(
        paths(&env.dataverse)[2..4],
        [
            format!("PATCH /api/data/v9.2/opportunities({opportunity})"),
            "POST /api/data/v9.2/WinOpportunity".to_owned()
        ]
    );

    // An id the environment does not have: refused (If-Match), no opportunity created, no task.
    let mut sent = with_contacts("d-wrong", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] = json!({"dynamicsOpportunityId": "00000000-0000-4000-8000-000000000000", "dynamicsSalesStage": "propose"});
    let record = env.herald.notify(&sent, dead_lettered).await;
    assert_eq!(record["targets"][0]["attempts"], 1);
    assert_eq!(
        record["targets"][0]["lastError"],
        "request rejected: 0x80040217: opportunity With Id = 00000000-0000-4000-8000-000000000000 Does Not Exist"
    );
    assert_eq!(env.dataverse.opportunities().len(), 1);
    assert_eq!(env.dataverse.tasks().len(), 1);

    // Winning it twice: Dataverse refuses, the delivery stops before any task.
    let mut sent = with_contacts("d-again", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] =
        json!({"dynamicsOpportunityId": opportunity, "dynamicsOpportunityOutcome": "won"});
    let record = env.herald.notify(&sent, dead_lettered).await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("already closed"));
    assert_eq!(env.dataverse.tasks().len(), 1);
}

#[tokio::test]
async fn an_on_demand_workflow_runs_for_each_contact_and_its_refusal_is_reported() {
    let dataverse = dataverse().await;
    let workflow = dataverse.add_workflow();
    let env = start_with(
        "d365-flow",
        dataverse,
        CLIENT_SECRET,
        &format!(", workflow_id = \"{workflow}\""),
    )
    .await;
    let sent = with_contacts(
        "d-flow",
        &[
            ("Sam Taylor", "sam@example.com"),
            ("Alex Morgan", "alex@example.com"),
        ],
    );
    let record = env.herald.notify(&sent, all_delivered).await;
    let contacts: Vec<String> = env
        .dataverse
        .contacts()
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(
        env.dataverse.workflow_runs(),
        contacts
            .iter()
            .map(|id| (workflow.clone(), id.clone()))
            .collect::<Vec<_>>()
    );
    let runs = record["targets"][0]["details"]["workflowRuns"]
        .as_array()
        .unwrap();
    assert!(
        runs.iter().all(|run| run["status"] == "started"),
        "{runs:?}"
    );

    // A workflow the environment does not have: the sync is delivered, the runs say why not.
    let missing = start(
        "d365-noflow",
        ", workflow_id = \"11111111-2222-4333-8444-555555555555\"",
    )
    .await;
    let record = missing
        .herald
        .notify(
            &with_contacts("d-noflow", &[("Sam Taylor", "sam@example.com")]),
            all_delivered,
        )
        .await;
    assert_eq!(
        record["targets"][0]["details"]["workflowRuns"][0]["error"],
        "request rejected: 0x80040217: workflow With Id = 11111111-2222-4333-8444-555555555555 Does Not Exist"
    );
}

#[tokio::test]
async fn the_token_is_got_again_when_it_expires_the_window_waited_out_and_a_wrong_secret_refused() {
    let env = start("d365-auth", "").await;
    let sam = [("Sam Taylor", "sam@example.com")];
    env.herald
        .notify(&with_contacts("d-a", &sam), all_delivered)
        .await;
    assert_eq!(env.dataverse.grants(), 1);

    // An expired token: 401, a new client-credentials grant, delivered.
    env.dataverse.expire_access_tokens();
    let record = env
        .herald
        .notify(&with_contacts("d-b", &sam), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");
    assert_eq!(env.dataverse.grants(), 2);

    // The service-protection window filled by others: 429 with Retry-After until their requests
    // age out, waited, delivered.
    env.dataverse.leave_requests(0);
    let record = env
        .herald
        .notify(&with_contacts("d-c", &sam), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1, "{record}");
    assert_eq!(env.dataverse.recorder.all().last().unwrap().status, 429);
    env.herald
        .wait_for_notification("d-c", Duration::from_secs(10), all_delivered)
        .await;

    // A wrong secret: Entra refuses the grant, dead-lettered with its words.
    let refused = start_with("d365-secret", dataverse().await, "wrong secret", "").await;
    let record = refused
        .herald
        .notify(&with_contacts("d-d", &sam), dead_lettered)
        .await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("AADSTS7000215: Invalid client secret provided"));
    assert!(refused.dataverse.recorder.all().is_empty());
}
