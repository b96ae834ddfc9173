//! Salesforce end to end against the org simulator: the seed's syncNotificationToContacts (N
//! contacts found or created, a Task each), an opportunity's stage move, an expired session
//! refreshed, the allocation read from `Sforce-Limit-Info`, and `REQUEST_LIMIT_EXCEEDED` (a 403)
//! waited out rather than dead-lettered.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::salesforce::FakeSalesforce;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const CLIENT_ID: &str = "3MVG9studio.connected.app";
const CLIENT_SECRET: &str = "consumer-secret-7f3a";
const REFRESH_TOKEN: &str = "5Aep861studio.refresh.token";

struct Org {
    herald: Harness,
    salesforce: FakeSalesforce,
    _secrets: tempfile::TempDir,
}

/// The studio's configuration with `integration`, reaching `salesforce` with `credentials` (the
/// `oauth` or `jwt` setting), `overrides` after it, and a route to it.
fn studio_with_salesforce(
    integration: &str,
    salesforce: &FakeSalesforce,
    credentials: &str,
    overrides: &str,
) -> String {
    format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"salesforce\"\n\
         settings = {{ instance_url = \"{}\", {credentials} }}\n{overrides}\n{}",
        salesforce.instance_url(),
        route("studio", &[integration], "")
    )
}

/// An org and a Herald whose integration `integration` reaches it. Metrics are one registry per
/// test process, so a test reading a gauge gives its integration an id of its own.
async fn start(integration: &str) -> Org {
    let salesforce = FakeSalesforce::start(
        any_local_port(),
        CLIENT_ID,
        Some(CLIENT_SECRET),
        REFRESH_TOKEN,
    )
    .await
    .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), CLIENT_SECRET).unwrap();
    std::fs::write(secrets.path().join("refresh"), REFRESH_TOKEN).unwrap();
    let dir = secrets.path().display();
    let body = studio_with_salesforce(
        integration,
        &salesforce,
        &format!("oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{dir}/secret\" }}, refresh_token = {{ file = \"{dir}/refresh\" }} }}"),
        "retry = { max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }",
    );
    Org {
        herald: Harness::start(&body, "studio").await,
        salesforce,
        _secrets: secrets,
    }
}

fn with_contacts(id: &str, contacts: &[(&str, &str)]) -> Value {
    let mut n = notification(id, "high");
    n["contacts"] = json!(contacts
        .iter()
        .map(|(name, email)| json!({"name": name, "email": email, "role": "couple"}))
        .collect::<Vec<_>>());
    n
}

#[tokio::test]
async fn a_wedding_notification_syncs_to_every_contact_with_a_task_each() {
    let org = start("crm-sync").await;
    let existing = org.salesforce.add_contact("Taylor", "sam@example.com");
    let opportunity = org
        .salesforce
        .add_opportunity("Taylor-Morgan wedding", "Prospecting");
    let mut sent = with_contacts(
        "sf-1",
        &[
            ("Sam Taylor", "SAM@example.com"),
            ("Alex Morgan", "alex@example.com"),
            ("", "o'brien@example.com"),
        ],
    );
    sent["metadata"] =
        json!({"salesforceOpportunityId": opportunity, "salesforceStageName": "Closed Won"});
    org.herald.post("/v1/notifications", &sent).await;
    let record = org
        .herald
        .wait_for_notification("sf-1", Duration::from_secs(10), all_delivered)
        .await;
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
    assert_eq!(details["contacts"][0]["id"], json!(existing));
    assert_eq!(details["contacts"][0]["created"], json!(false));

    // The missing contacts were created with their names, the quote in an email intact.
    let contacts = org.salesforce.contacts();
    let created: Vec<(Option<&str>, &str, &str)> = contacts[1..]
        .iter()
        .map(|c| {
            (
                c.fields.get("FirstName").and_then(Value::as_str),
                c.fields["LastName"].as_str().unwrap(),
                c.fields["Email"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        created,
        [
            (Some("Alex"), "Morgan", "alex@example.com"),
            (None, "o'brien", "o'brien@example.com")
        ]
    );

    // A Task per contact, on the opportunity, which moved first.
    let tasks = org.salesforce.tasks();
    assert_eq!(tasks.len(), 3);
    let who: Vec<&str> = tasks
        .iter()
        .map(|t| t.fields["WhoId"].as_str().unwrap())
        .collect();
    let contact_ids: Vec<&str> = contacts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(who, contact_ids);
    for task in &tasks {
        assert_eq!(task.fields["WhatId"], json!(opportunity));
        assert_eq!(task.fields["Subject"], "Ceremony moved");
        assert_eq!(task.fields["ActivityDate"], "2027-06-12");
        assert_eq!(task.fields["Priority"], "High");
        assert_eq!(task.fields["Status"], "Not Started");
    }
    assert_eq!(
        org.salesforce.opportunity(&opportunity).unwrap().fields["StageName"],
        "Closed Won"
    );
    // The query, the create, the stage move and the Tasks: four API calls for three contacts.
    let paths: Vec<String> = org
        .salesforce
        .recorder
        .all()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            "GET /services/data/v66.0/query".to_owned(),
            "POST /services/data/v66.0/composite/sobjects".to_owned(),
            format!("PATCH /services/data/v66.0/sobjects/Opportunity/{opportunity}"),
            "POST /services/data/v66.0/composite/sobjects".to_owned(),
        ]
    );

    // The allocation Salesforce reported is exported.
    let labels = ["integration=\"crm-sync\"", "window=\"rolling_24h\""];
    assert_eq!(
        org.herald
            .gauge("herald_vendor_quota_limit", &labels)
            .await
            .as_deref(),
        Some("15000")
    );
    assert_eq!(
        org.herald
            .gauge("herald_vendor_quota_remaining", &labels)
            .await
            .as_deref(),
        Some("14996")
    );
}

#[tokio::test]
async fn a_stage_the_org_refuses_stops_the_delivery_before_any_task_is_written() {
    let org = start("crm").await;
    let opportunity = org.salesforce.add_opportunity("Wedding", "Prospecting");
    let mut sent = with_contacts("sf-stage", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] =
        json!({"salesforceOpportunityId": opportunity, "salesforceStageName": "Booked"});
    org.herald.post("/v1/notifications", &sent).await;
    let record = org
        .herald
        .wait_for_notification("sf-stage", Duration::from_secs(10), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
            && error.contains("bad value for restricted picklist field: Booked"),
        "{error}"
    );
    assert_eq!(record["targets"][0]["attempts"], 1);
    assert!(org.salesforce.tasks().is_empty());

    // An id that cannot be an Opportunity's is refused before Salesforce is called.
    let before = org.salesforce.recorder.all().len();
    let mut sent = with_contacts("sf-bad-id", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] =
        json!({"salesforceOpportunityId": "D-1", "salesforceStageName": "Closed Won"});
    org.herald.post("/v1/notifications", &sent).await;
    let record = org
        .herald
        .wait_for_notification("sf-bad-id", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("metadata.salesforceOpportunityId"));
    assert_eq!(org.salesforce.recorder.all().len(), before);
}

#[tokio::test]
async fn an_expired_session_is_refreshed_and_a_spent_allocation_waited_out() {
    let org = start("crm").await;
    org.herald
        .post(
            "/v1/notifications",
            &with_contacts("sf-a", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    org.herald
        .wait_for_notification("sf-a", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(org.salesforce.grants(), 1);

    // The org's session timeout ends the session: 401 INVALID_SESSION_ID, one refresh, delivered.
    org.salesforce.expire_sessions();
    org.herald
        .post(
            "/v1/notifications",
            &with_contacts("sf-b", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    let record = org
        .herald
        .wait_for_notification("sf-b", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");
    assert_eq!(org.salesforce.grants(), 2);

    // A spent allocation is a 403 REQUEST_LIMIT_EXCEEDED: the delivery waits (retrying, not
    // dead-lettered) and the org is not called again at once.
    org.salesforce.set_allocation(100, 100);
    org.herald
        .post(
            "/v1/notifications",
            &with_contacts("sf-c", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    let record = org
        .herald
        .wait_for_notification("sf-c", Duration::from_secs(10), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1, "{record}");
    let refused = org
        .salesforce
        .recorder
        .all()
        .iter()
        .filter(|request| request.status == 403)
        .count();
    assert_eq!(refused, 1);
    let next = record["targets"][0]["nextAttemptAt"].as_i64().unwrap();
    let now = herald::store::now_millis();
    assert!(
        next - now > 500_000,
        "the next attempt is ten minutes out, not {} ms",
        next - now
    );
}

#[tokio::test]
async fn a_named_flow_runs_once_per_contact_and_a_refusal_is_reported_not_retried() {
    let org = start("crm").await;
    org.salesforce
        .add_flow("Wedding_Timeline_Changed", &["recordId"]);
    let mut sent = with_contacts(
        "sf-flow",
        &[
            ("Sam Taylor", "sam@example.com"),
            ("Alex Morgan", "alex@example.com"),
        ],
    );
    sent["metadata"] = json!({"salesforceFlowApiName": "Wedding_Timeline_Changed"});
    org.herald.post("/v1/notifications", &sent).await;
    let record = org
        .herald
        .wait_for_notification("sf-flow", Duration::from_secs(10), all_delivered)
        .await;
    let contacts = org.salesforce.contacts();
    assert_eq!(
        org.salesforce.interviews("Wedding_Timeline_Changed"),
        [
            json!({"recordId": contacts[0].id}),
            json!({"recordId": contacts[1].id})
        ]
    );
    let flow = &record["targets"][0]["details"]["flowInterviews"];
    assert_eq!(flow["flow"], "Wedding_Timeline_Changed");
    assert_eq!(
        flow["interviews"][0],
        json!({"contactId": contacts[0].id, "status": "Finished"})
    );

    // A flow that takes no recordId refuses each interview: reported, the Tasks stay written
    // once, nothing is retried.
    org.salesforce.add_flow("Notify_Planner", &["plannerEmail"]);
    sent["notificationId"] = json!("sf-flow-2");
    sent["metadata"] = json!({"salesforceFlowApiName": "Notify_Planner"});
    org.herald.post("/v1/notifications", &sent).await;
    let record = org
        .herald
        .wait_for_notification("sf-flow-2", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1);
    let interview = &record["targets"][0]["details"]["flowInterviews"]["interviews"][1];
    assert_eq!(interview["status"], "failed");
    assert!(interview["error"]
        .as_str()
        .unwrap()
        .starts_with("INVALID_INPUT: The flow can't run because of an invalid input: recordId"));
    assert_eq!(org.salesforce.tasks().len(), 4);
}

#[tokio::test]
async fn a_connected_app_installed_through_herald_keeps_its_refresh_token_sealed_and_audited() {
    let salesforce = FakeSalesforce::start(
        any_local_port(),
        CLIENT_ID,
        Some(CLIENT_SECRET),
        REFRESH_TOKEN,
    )
    .await
    .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), CLIENT_SECRET).unwrap();
    let body = studio_with_salesforce(
        "crm",
        &salesforce,
        &format!(
            "oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{}/secret\" }}, redirect_uri = \"{{herald}}/oauth/salesforce/callback\" }}",
            secrets.path().display()
        ),
        "",
    );
    let herald = Harness::start(&body, "studio").await;
    let callback = format!("{}/oauth/salesforce/callback", herald.base);
    salesforce.await_install(&callback);

    let (consent, query) = herald.start_install("crm").await;
    assert!(consent.starts_with(&format!(
        "{}/services/oauth2/authorize?",
        salesforce.instance_url()
    )));
    assert_eq!(
        (
            query["response_type"].as_str(),
            query["client_id"].as_str(),
            query["scope"].as_str(),
            query["code_challenge_method"].as_str()
        ),
        ("code", CLIENT_ID, "api refresh_token", "S256")
    );
    // The refresh token is sealed in the store and audited as its fingerprint.
    herald
        .consent_and_check_sealed(
            &consent,
            "salesforce",
            "crm",
            "salesforce_refresh_token",
            || salesforce.refresh_token(),
        )
        .await;

    // Notifications now reach the org with the installed app.
    herald
        .post(
            "/v1/notifications",
            &with_contacts("after-install", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    herald
        .wait_for_notification("after-install", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(salesforce.tasks().len(), 1);
}

#[tokio::test]
async fn the_jwt_bearer_flow_signs_an_assertion_the_org_verifies() {
    let salesforce = FakeSalesforce::start(any_local_port(), CLIENT_ID, None, REFRESH_TOKEN)
        .await
        .unwrap();
    let key_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/salesforce-jwt-test-key.pem");
    let pem = std::fs::read_to_string(&key_file).unwrap();
    let der = herald::connectors::oauth::pkcs8_from_pem(&pem).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    use ring::signature::KeyPair;
    salesforce.trust_certificate("integration@studio.example", key.public_key().as_ref());
    let body = studio_with_salesforce(
        "crm",
        &salesforce,
        &format!(
            "jwt = {{ client_id = \"{CLIENT_ID}\", username = \"integration@studio.example\", private_key = {{ file = \"{}\" }} }}",
            key_file.display()
        ),
        "",
    );
    let herald = Harness::start(&body, "studio").await;
    herald
        .post(
            "/v1/notifications",
            &with_contacts("jwt-1", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    herald
        .wait_for_notification("jwt-1", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(salesforce.grants(), 1);
    assert_eq!(salesforce.tasks().len(), 1);

    // An ended session is a new assertion, not a refresh token.
    salesforce.expire_sessions();
    herald
        .post(
            "/v1/notifications",
            &with_contacts("jwt-2", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    let record = herald
        .wait_for_notification("jwt-2", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2);
    assert_eq!(salesforce.grants(), 2);

    // A user the app is not pre-authorized for is refused with Salesforce's words.
    salesforce.trust_certificate("someone-else@studio.example", key.public_key().as_ref());
    salesforce.expire_sessions();
    herald
        .post(
            "/v1/notifications",
            &with_contacts("jwt-3", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    let record = herald
        .wait_for_notification("jwt-3", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("user hasn't approved this consumer"),
        "{record}"
    );
}
