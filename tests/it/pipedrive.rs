//! Pipedrive end to end against the company simulator: the seed's syncNotificationToContacts
//! (N contacts found or created, one activity with every person a participant, a note), a deal's
//! stage move and a refused one, the 2-second window and the day's writes read from the headers,
//! and an OAuth app (HTTP Basic at the token endpoint, an expired token refreshed, a missing
//! scope refused, an install through Herald).

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::pipedrive::FakePipedrive;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const API_TOKEN: &str = "8f2c0d7a5e-studio-api-token";
const CLIENT_ID: &str = "b3f7e9a1c2d4";
const CLIENT_SECRET: &str = "pipedrive-app-secret-41";
const REFRESH_TOKEN: &str = "1234:5678:pipedrive-refresh";
const SCOPES: &[&str] = &[
    "base",
    "contacts:full",
    "activities:full",
    "deals:full",
    "search:read",
];

struct Company {
    herald: Harness,
    pipedrive: FakePipedrive,
    _secrets: tempfile::TempDir,
}

/// The studio's configuration with integration `integration` reaching `pipedrive` with
/// `credentials` (the `api_token` or `oauth` setting), and a route to it.
fn studio_with_pipedrive(
    integration: &str,
    pipedrive: &FakePipedrive,
    credentials: &str,
) -> String {
    format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"pipedrive\"\n\
         settings = {{ api_domain = \"{}\", {credentials} }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\", max_retry_after = \"24h\" }}\n{}",
        pipedrive.api_domain(),
        route("studio", &[integration], "")
    )
}

/// A company and a Herald whose integration `integration` reaches it with the API token, or
/// with the OAuth app granted `scopes`. Metrics are one registry per test process, so a test
/// reading a gauge gives its integration an id of its own.
async fn start(integration: &str, oauth_scopes: Option<&[&str]>) -> Company {
    let pipedrive = FakePipedrive::start(any_local_port(), API_TOKEN)
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().display();
    std::fs::write(secrets.path().join("token"), API_TOKEN).unwrap();
    std::fs::write(secrets.path().join("secret"), CLIENT_SECRET).unwrap();
    std::fs::write(secrets.path().join("refresh"), REFRESH_TOKEN).unwrap();
    let credentials = match oauth_scopes {
        None => format!("api_token = {{ file = \"{dir}/token\" }}"),
        Some(scopes) => {
            pipedrive.install_app(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, scopes);
            format!(
                "oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{dir}/secret\" }}, refresh_token = {{ file = \"{dir}/refresh\" }}, server = \"{}\" }}",
                pipedrive.api_domain()
            )
        }
    };
    let body = studio_with_pipedrive(integration, &pipedrive, &credentials);
    Company {
        herald: Harness::start(&body, "studio").await,
        pipedrive,
        _secrets: secrets,
    }
}

fn with_contacts(id: &str, contacts: &[(&str, &str)]) -> Value {
    let mut n = notification(id, "high");
    n["title"] = json!("Final timeline <v3> & seating");
    n["contacts"] = json!(contacts
        .iter()
        .map(|(name, email)| json!({"name": name, "email": email, "role": "couple"}))
        .collect::<Vec<_>>());
    n
}

fn paths(pipedrive: &FakePipedrive) -> Vec<String> {
    pipedrive
        .recorder
        .all()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_wedding_notification_syncs_every_contact_into_one_activity_and_a_note() {
    let company = start("pd-sync", None).await;
    let existing = company
        .pipedrive
        .add_person("Sam Taylor", "sam@example.com");
    let sent = with_contacts(
        "pd-1",
        &[
            ("Sam Taylor", "SAM@example.com"),
            ("Alex Morgan", "alex@example.com"),
            ("", "jo@example.com"),
        ],
    );
    company.herald.post("/v1/notifications", &sent).await;
    let record = company
        .herald
        .wait_for_notification("pd-1", Duration::from_secs(10), all_delivered)
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
    assert_eq!(
        details["contacts"][0],
        json!({"email": "sam@example.com", "id": existing, "created": false})
    );

    // The missing persons were created with their names (or the email's local part).
    let persons = company.pipedrive.persons();
    let created: Vec<(&str, &str)> = persons[1..]
        .iter()
        .map(|p| {
            (
                p.fields["name"].as_str().unwrap(),
                p.fields["emails"][0]["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        created,
        [
            ("Alex Morgan", "alex@example.com"),
            ("jo", "jo@example.com")
        ]
    );

    // One activity: every person a participant, the first primary, due on the wedding day.
    let activities = company.pipedrive.activities();
    assert_eq!(activities.len(), 1);
    let activity = &activities[0].fields;
    let ids: Vec<u64> = persons.iter().map(|p| p.id).collect();
    assert_eq!(
        activity["participants"],
        json!([
            {"person_id": ids[0], "primary": true},
            {"person_id": ids[1], "primary": false},
            {"person_id": ids[2], "primary": false}
        ])
    );
    assert_eq!(activity["subject"], "Final timeline <v3> & seating");
    assert_eq!(activity["type"], "task");
    assert_eq!(activity["due_date"], "2027-06-12");
    assert_eq!(activity["priority"], 3);

    // The note is on the first person, its markup escaped.
    let notes = company.pipedrive.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].fields["person_id"], json!(ids[0]));
    assert!(notes[0].fields["content"]
        .as_str()
        .unwrap()
        .starts_with("<b>Final timeline &lt;v3&gt; &amp; seating</b><br>"));

    // Three searches, two creates, the activity and the note.
    assert_eq!(
        paths(&company.pipedrive),
        [
            "GET /api/v2/persons/search",
            "GET /api/v2/persons/search",
            "POST /api/v2/persons",
            "GET /api/v2/persons/search",
            "POST /api/v2/persons",
            "POST /api/v2/activities",
            "POST /api/v1/notes"
        ]
    );

    // The token's 2-second window and the day's writes left, as Pipedrive reported them.
    let window = ["integration=\"pd-sync\"", "window=\"2s\""];
    assert_eq!(
        company
            .herald
            .gauge("herald_vendor_quota_limit", &window)
            .await
            .as_deref(),
        Some("20")
    );
    let daily = ["integration=\"pd-sync\"", "window=\"daily\""];
    assert_eq!(
        company
            .herald
            .gauge("herald_vendor_quota_remaining", &daily)
            .await
            .as_deref(),
        Some("9996")
    );
}

#[tokio::test]
async fn a_deal_moves_before_the_activity_and_a_refused_stage_stops_the_sync() {
    let company = start("pd-deal", None).await;
    let deal = company.pipedrive.add_deal("Taylor-Morgan wedding", 1);
    let mut sent = with_contacts("pd-won", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] =
        json!({"pipedriveDealId": deal, "pipedriveStageId": 4, "pipedriveDealStatus": "won"});
    company.herald.post("/v1/notifications", &sent).await;
    let record = company
        .herald
        .wait_for_notification("pd-won", Duration::from_secs(10), all_delivered)
        .await;
    let moved = company.pipedrive.deal(deal).unwrap().fields;
    assert_eq!(
        (&moved["stage_id"], &moved["status"]),
        (&json!(4), &json!("won"))
    );
    assert_eq!(
        company.pipedrive.activities()[0].fields["deal_id"],
        json!(deal)
    );
    assert_eq!(company.pipedrive.notes()[0].fields["deal_id"], json!(deal));
    assert_eq!(
        record["targets"][0]["details"]["deal"],
        json!({"dealId": deal, "change": {"stage_id": 4, "status": "won"}})
    );

    // A stage the company does not have: dead-lettered with Pipedrive's words, nothing written.
    let mut sent = with_contacts("pd-stage", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] = json!({"pipedriveDealId": deal, "pipedriveStageId": 99});
    company.herald.post("/v1/notifications", &sent).await;
    let record = company
        .herald
        .wait_for_notification("pd-stage", Duration::from_secs(10), dead_lettered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1);
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("Stage 99 not found"));
    assert_eq!(company.pipedrive.activities().len(), 1);

    // Metadata that cannot name a deal is refused before Pipedrive is called.
    let before = company.pipedrive.recorder.len();
    let mut sent = with_contacts("pd-bad", &[("Sam Taylor", "sam@example.com")]);
    sent["metadata"] = json!({"pipedriveStageId": 2});
    company.herald.post("/v1/notifications", &sent).await;
    let record = company
        .herald
        .wait_for_notification("pd-bad", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("metadata.pipedriveDealId"));
    assert_eq!(company.pipedrive.recorder.len(), before);
}

#[tokio::test]
async fn an_oauth_app_refreshes_an_expired_token_and_a_missing_scope_is_not_retried() {
    let company = start("pd-oauth", Some(SCOPES)).await;
    company
        .herald
        .post(
            "/v1/notifications",
            &with_contacts("pd-a", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    company
        .herald
        .wait_for_notification("pd-a", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(company.pipedrive.grants(), 1);

    // An expired access token: 401, one refresh, delivered.
    company.pipedrive.expire_access_tokens();
    company
        .herald
        .post(
            "/v1/notifications",
            &with_contacts("pd-b", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    let record = company
        .herald
        .wait_for_notification("pd-b", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");
    assert_eq!(company.pipedrive.grants(), 2);

    // An app without activities:full is refused the activity: a 403 a new token cannot fix.
    let limited = start("pd-scopes", Some(&["base", "contacts:full", "search:read"])).await;
    limited
        .herald
        .post(
            "/v1/notifications",
            &with_contacts("pd-c", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    let record = limited
        .herald
        .wait_for_notification("pd-c", Duration::from_secs(10), dead_lettered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1);
    assert_eq!(
        record["targets"][0]["lastError"].as_str().unwrap(),
        "request rejected: 403: Scope and URL mismatch"
    );
}

#[tokio::test]
async fn a_spent_daily_budget_is_waited_out_until_midnight_not_dead_lettered() {
    let company = start("pd-budget", None).await;
    company.pipedrive.set_tokens_left(30);
    company
        .herald
        .post(
            "/v1/notifications",
            &with_contacts("pd-spent", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    let record = company
        .herald
        .wait_for_notification("pd-spent", Duration::from_secs(10), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    assert_eq!(record["targets"][0]["attempts"], 1, "{record}");
    assert_eq!(company.pipedrive.recorder.all()[0].status, 429);
    let next = record["targets"][0]["nextAttemptAt"].as_i64().unwrap();
    let past_midnight = next.rem_euclid(86_400_000);
    assert!(
        next > herald::store::now_millis()
            && !(5_000..=86_400_000 - 5_000).contains(&past_midnight),
        "the next attempt is at midnight UTC, not {next}"
    );
}

#[tokio::test]
async fn an_app_installed_through_herald_keeps_its_refresh_token_sealed() {
    let pipedrive = FakePipedrive::start(any_local_port(), API_TOKEN)
        .await
        .unwrap();
    pipedrive.install_app(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, SCOPES);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), CLIENT_SECRET).unwrap();
    let body = studio_with_pipedrive(
        "crm",
        &pipedrive,
        &format!(
            "oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{}/secret\" }}, redirect_uri = \"{{herald}}/oauth/pipedrive/callback\", server = \"{}\" }}",
            secrets.path().display(),
            pipedrive.api_domain()
        ),
    );
    let herald = Harness::start(&body, "studio").await;
    pipedrive.await_install(&format!("{}/oauth/pipedrive/callback", herald.base));

    let (consent, query) = herald.start_install("crm").await;
    assert!(consent.starts_with(&format!("{}/oauth/authorize?", pipedrive.api_domain())));
    assert_eq!(query["client_id"], CLIENT_ID);
    assert!(!query.contains_key("scope") && !query.contains_key("code_challenge"));
    herald
        .consent_and_check_sealed(
            &consent,
            "pipedrive",
            "crm",
            "pipedrive_refresh_token",
            || {
                pipedrive
                    .refresh_token()
                    .filter(|token| token != REFRESH_TOKEN)
            },
        )
        .await;

    herald
        .post(
            "/v1/notifications",
            &with_contacts("after-install", &[("Sam Taylor", "sam@example.com")]),
        )
        .await;
    herald
        .wait_for_notification("after-install", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(pipedrive.activities().len(), 1);
}
