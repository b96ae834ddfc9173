//! Zoho CRM end to end against the organization simulator: the seed's
//! syncNotificationToContacts (contacts found by one search, the missing upserted, a task each,
//! a note), a deal's stage move and a refused one, the trigger list on every write, an expired
//! token refreshed at the accounts server and calls sent to the `api_domain` it names, a missing
//! scope refused, spent credits waited out, and a client installed through Herald.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::zoho::{FakeZoho, SCOPES};
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const CLIENT_ID: &str = "1000.STUDIOCLIENT42";
const CLIENT_SECRET: &str = "zoho-client-secret-9f";
const REFRESH_TOKEN: &str = "1000.studio-refresh-token";

struct Organization {
    herald: Harness,
    zoho: FakeZoho,
    _secrets: tempfile::TempDir,
}

/// The studio's configuration with integration `integration` reaching `zoho` with `oauth` (the
/// inside of the `oauth` table) and `extra` settings, and a route to it.
fn studio_with_zoho(integration: &str, zoho: &FakeZoho, oauth: &str, extra: &str) -> String {
    format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"zoho\"\n\
         settings = {{ oauth = {{ client_id = \"{CLIENT_ID}\", accounts_server = \"{}\", {oauth} }}{extra} }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        zoho.accounts_server(),
        route("studio", &[integration], "")
    )
}

/// An organization whose client is granted `scopes`, and a Herald reaching it with the client's
/// refresh token and `extra` settings.
async fn start(integration: &str, scopes: &[&str], extra: &str) -> Organization {
    let zoho = FakeZoho::start(any_local_port()).await.unwrap();
    zoho.install_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, scopes);
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().display();
    std::fs::write(secrets.path().join("secret"), CLIENT_SECRET).unwrap();
    std::fs::write(secrets.path().join("refresh"), REFRESH_TOKEN).unwrap();
    let oauth = format!(
        "client_secret = {{ file = \"{dir}/secret\" }}, refresh_token = {{ file = \"{dir}/refresh\" }}"
    );
    let body = studio_with_zoho(integration, &zoho, &oauth, extra);
    Organization {
        herald: Harness::start(&body, "studio").await,
        zoho,
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

fn paths(zoho: &FakeZoho) -> Vec<String> {
    zoho.recorder
        .all()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_wedding_notification_syncs_every_contact_into_a_task_each_and_a_note() {
    let org = start("zoho-sync", SCOPES, "").await;
    let sam = org.zoho.add_contact("Sam", "Taylor", "sam@example.com");
    let sent = with_contacts(
        "z-1",
        &[
            ("Sam Taylor", "SAM@example.com"),
            ("Alex Morgan", "alex@example.com"),
            ("", "jo@example.com"),
        ],
    );
    let record = org.herald.notify(&sent, all_delivered).await;
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
    assert_eq!(
        details["contacts"][0],
        json!({"email": "sam@example.com", "id": sam, "created": false})
    );

    // One search OR-ing the three emails, one upsert of the two it did not find.
    let requests = org.zoho.recorder.all();
    assert_eq!(
        requests[0].body["criteria"],
        "((Email:equals:sam@example.com)or(Email:equals:alex@example.com)or(Email:equals:jo@example.com))"
    );
    assert_eq!(
        requests[1].body["data"],
        json!([
            {"Email": "alex@example.com", "First_Name": "Alex", "Last_Name": "Morgan"},
            {"Email": "jo@example.com", "Last_Name": "jo"}
        ])
    );
    let contacts = org.zoho.contacts();
    assert_eq!(contacts.len(), 3);
    let (alex, jo) = (contacts[1].id.clone(), contacts[2].id.clone());

    // A task per synced contact, due on the wedding day, each write firing the workflow rules.
    let tasks = org.zoho.tasks();
    let who: Vec<&Value> = tasks.iter().map(|t| &t.fields["Who_Id"]["id"]).collect();
    assert_eq!(who, [&json!(sam), &json!(alex), &json!(jo)]);
    let task = &tasks[0].fields;
    assert_eq!(
        (
            &task["Subject"],
            &task["Priority"],
            &task["Due_Date"],
            &task["Status"]
        ),
        (
            &json!("Ceremony moved"),
            &json!("High"),
            &json!("2027-06-12"),
            &json!("Not Started")
        )
    );
    assert_eq!(task["$triggered"], json!(["workflow"]));
    assert_eq!(contacts[1].fields["$triggered"], json!(["workflow"]));

    // The note is on the first contact, in plain text.
    let notes = org.zoho.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0].fields["Parent_Id"],
        json!({"module": {"api_name": "Contacts"}, "id": sam})
    );
    assert_eq!(
        notes[0].fields["Note_Content"],
        "The ceremony now starts at 15:30\n\nThe wedding on 2027-06-12 at Kew Gardens"
    );
    assert_eq!(
        paths(&org.zoho),
        [
            "GET /crm/v8/Contacts/search",
            "POST /crm/v8/Contacts/upsert",
            "POST /crm/v8/Tasks",
            "POST /crm/v8/Notes"
        ]
    );
    assert_eq!(org.zoho.grants(), 1);

    // What Herald spent of the organization's credits, as Zoho reports none.
    let spent = ["integration=\"zoho-sync\"", "vendor=\"zoho\""];
    assert_eq!(
        org.herald
            .gauge("herald_vendor_requests_total", &spent)
            .await
            .as_deref(),
        Some("4")
    );
}

#[tokio::test]
async fn a_deal_moves_before_the_tasks_and_a_refused_stage_stops_the_sync() {
    let org = start(
        "zoho-deal",
        SCOPES,
        ", triggers = [\"workflow\", \"blueprint\"]",
    )
    .await;
    let deal = org.zoho.add_deal("Taylor-Morgan wedding", "Qualification");
    let mut sent = with_contacts("z-won", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] = json!({"zohoDealId": deal, "zohoDealStage": "Closed Won"});
    let record = org.herald.notify(&sent, all_delivered).await;
    let moved = org.zoho.deal(&deal).unwrap().fields;
    assert_eq!(
        (&moved["Stage"], &moved["$triggered"]),
        (&json!("Closed Won"), &json!(["workflow", "blueprint"]))
    );
    let task = &org.zoho.tasks()[0].fields;
    assert_eq!(
        (&task["What_Id"], &task["$se_module"]),
        (&json!({"id": deal}), &json!("Deals"))
    );
    assert_eq!(
        org.zoho.notes()[0].fields["Parent_Id"],
        json!({"module": {"api_name": "Deals"}, "id": deal})
    );
    assert_eq!(
        record["targets"][0]["details"]["deal"],
        json!({"dealId": deal, "stage": "Closed Won"})
    );
    assert_eq!(
        paths(&org.zoho)[2..],
        [
            "PUT /crm/v8/Deals/".to_owned() + &deal,
            "POST /crm/v8/Tasks".into(),
            "POST /crm/v8/Notes".into()
        ]
    );

    // A stage the picklist lacks: dead-lettered with Zoho's words, no task written.
    let mut sent = with_contacts("z-stage", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] = json!({"zohoDealId": deal, "zohoDealStage": "Booked"});
    let record = org.herald.notify(&sent, dead_lettered).await;
    assert_eq!(record["targets"][0]["attempts"], 1);
    assert_eq!(
        record["targets"][0]["lastError"],
        "request rejected: INVALID_DATA: invalid data (Stage)"
    );
    assert_eq!(org.zoho.tasks().len(), 1);

    // Metadata that cannot name a deal is refused before Zoho is called.
    let before = org.zoho.recorder.len();
    let mut sent = with_contacts("z-bad", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] = json!({"zohoDealStage": "Closed Won"});
    let record = org.herald.notify(&sent, dead_lettered).await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("metadata.zohoDealId"));
    assert_eq!(org.zoho.recorder.len(), before);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_a_missing_scope_refused_and_spent_credits_waited_out() {
    let org = start("zoho-auth", SCOPES, "").await;
    let sam = [("Sam Taylor", "sam@example.com")];
    org.herald
        .notify(&with_contacts("z-a", &sam), all_delivered)
        .await;
    assert_eq!(org.zoho.grants(), 1);

    // An expired access token: 401 INVALID_TOKEN, one refresh, delivered.
    org.zoho.expire_access_tokens();
    let record = org
        .herald
        .notify(&with_contacts("z-b", &sam), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");
    assert_eq!(org.zoho.grants(), 2);

    // Spent credits: a 429 waited out, not dead-lettered.
    org.zoho.set_credits_left(0);
    let record = org
        .herald
        .notify(&with_contacts("z-spent", &sam), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1, "{record}");
    assert_eq!(org.zoho.recorder.all().last().unwrap().status, 429);
    org.zoho.set_credits_left(100);
    org.herald
        .wait_for_notification("z-spent", Duration::from_secs(10), all_delivered)
        .await;

    // A client not granted tasks is refused the task: a 401 a new token cannot fix.
    let limited = start(
        "zoho-scopes",
        &[
            "ZohoCRM.modules.contacts.ALL",
            "ZohoCRM.modules.notes.CREATE",
        ],
        "",
    )
    .await;
    let record = limited
        .herald
        .notify(&with_contacts("z-c", &sam), dead_lettered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1);
    assert_eq!(
        record["targets"][0]["lastError"],
        "request rejected: OAUTH_SCOPE_MISMATCH: invalid oauth scope to access this URL"
    );
    assert_eq!(limited.zoho.grants(), 1);
}

#[tokio::test]
async fn a_client_installed_through_herald_keeps_its_refresh_token_sealed() {
    let zoho = FakeZoho::start(any_local_port()).await.unwrap();
    zoho.install_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, SCOPES);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), CLIENT_SECRET).unwrap();
    let body = studio_with_zoho(
        "crm",
        &zoho,
        &format!(
            "client_secret = {{ file = \"{}/secret\" }}, redirect_uri = \"{{herald}}/oauth/zoho/callback\"",
            secrets.path().display()
        ),
        "",
    );
    let herald = Harness::start(&body, "studio").await;
    zoho.await_install(&format!("{}/oauth/zoho/callback", herald.base));

    let (consent, query) = herald.start_install("crm").await;
    assert!(consent.starts_with(&format!("{}/oauth/v2/auth?", zoho.accounts_server())));
    assert_eq!(
        (
            query["client_id"].as_str(),
            query["scope"].as_str(),
            query["response_type"].as_str(),
            query["access_type"].as_str(),
            query["prompt"].as_str()
        ),
        (
            CLIENT_ID,
            SCOPES.join(",").as_str(),
            "code",
            "offline",
            "consent"
        )
    );
    herald
        .consent_and_check_sealed(&consent, "zoho", "crm", "zoho_refresh_token", || {
            zoho.refresh_token().filter(|token| token != REFRESH_TOKEN)
        })
        .await;

    let sam = [("Sam Taylor", "sam@example.com")];
    herald
        .notify(&with_contacts("after-install", &sam), all_delivered)
        .await;
    assert_eq!(zoho.tasks().len(), 1);
}
