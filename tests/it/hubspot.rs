//! HubSpot end to end against the CRM simulator: the seed's syncNotificationToContacts (N
//! contacts synced, history kept to 10, a note per contact), the wedding properties created
//! once, batching, and the failure paths (refused token, rate limit, validation error).

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::hubspot::simulator::requests_by_path;
use herald::vendors::hubspot::FakeHubSpot;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";

async fn start(extra: &str) -> (Harness, FakeHubSpot, tempfile::NamedTempFile) {
    start_as("crm", extra).await
}

/// A HubSpot and a Herald whose integration `integration` reaches it. Metrics are one registry
/// per test process, so a test reading a gauge gives its integration an id of its own.
async fn start_as(
    integration: &str,
    extra: &str,
) -> (Harness, FakeHubSpot, tempfile::NamedTempFile) {
    let hubspot = FakeHubSpot::start(any_local_port(), TOKEN, 100)
        .await
        .unwrap();
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), TOKEN).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"hubspot\"\n\
         settings = {{ base_url = \"{}\", token = {{ file = \"{}\" }} }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{extra}\n{}",
        hubspot.base_url(),
        token_file.path().display(),
        route("studio", &[integration], "")
    );
    (Harness::start(&body, "studio").await, hubspot, token_file)
}

fn with_contacts(id: &str, emails: &[&str]) -> Value {
    let mut n = notification(id, "high");
    n["contacts"] = json!(emails
        .iter()
        .map(|e| json!({"email": e, "role": "couple"}))
        .collect::<Vec<_>>());
    n
}

#[tokio::test]
async fn a_wedding_notification_syncs_to_every_contact() {
    let (herald, hubspot, _token) = start("").await;
    let existing = hubspot.add_contact("sam@example.com", json!({"firstname": "Sam"}));
    let emails = ["sam@example.com", "alex@example.com", "planner@example.com"];
    herald
        .post("/v1/notifications", &with_contacts("hs-1", &emails))
        .await;
    let record = herald
        .wait_for_notification("hs-1", Duration::from_secs(10), all_delivered)
        .await;
    let receipt = record["targets"][0]["receipt"].as_str().unwrap();
    assert!(
        receipt.starts_with(&format!("contacts {existing},")),
        "{receipt}"
    );
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
    // The property setup is answered as HubSpot answers a complete batch create: 201.
    let setup: Vec<u16> = hubspot
        .requests()
        .iter()
        .filter(|r| r.path == "/crm/v3/properties/contacts/batch/create")
        .map(|r| r.status)
        .collect();
    assert_eq!(setup, [201]);
    assert_eq!(details["contacts"][0]["email"], "sam@example.com");
    assert_eq!(details["contacts"][0]["contactId"], existing.as_str());

    for email in emails {
        let contact = hubspot
            .contact_by_email(email)
            .unwrap_or_else(|| panic!("{email} synced"));
        assert_eq!(contact.properties["wedding_date"], "2027-06-12");
        assert_eq!(contact.properties["wedding_venue"], "Kew Gardens");
        assert!(contact.properties["last_notification_sent"]
            .as_str()
            .unwrap()
            .starts_with("20"));
        assert!(contact.properties["notification_history"]
            .as_str()
            .unwrap()
            .contains("timeline_change: Ceremony moved"));
    }
    assert_eq!(
        hubspot
            .contact_by_email("sam@example.com")
            .unwrap()
            .properties["firstname"],
        "Sam",
        "existing properties kept"
    );
    let notes = hubspot.notes();
    assert_eq!(notes.len(), 3, "one note per contact");
    assert!(notes.iter().all(|note| note.contact_ids.len() == 1
        && note.properties["hs_note_body"]
            .as_str()
            .unwrap()
            .contains("Ceremony moved")));
    let mut groups = hubspot.properties_in_group("wedding_information");
    groups.sort();
    assert_eq!(
        groups,
        [
            "last_notification_sent",
            "notification_history",
            "notification_preferences",
            "wedding_date",
            "wedding_package_type",
            "wedding_status",
            "wedding_venue"
        ]
    );

    // History keeps the last ten entries, and the properties are set up once per connector.
    for n in 2..=12 {
        herald
            .post(
                "/v1/notifications",
                &with_contacts(&format!("hs-{n}"), &["sam@example.com"]),
            )
            .await;
        herald
            .wait_for_notification(&format!("hs-{n}"), Duration::from_secs(10), all_delivered)
            .await;
    }
    let history = hubspot
        .contact_by_email("sam@example.com")
        .unwrap()
        .properties["notification_history"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(history.lines().count(), 10, "{history}");
    let counts = requests_by_path(&hubspot.requests());
    assert_eq!(counts["/crm/v3/properties/contacts/groups"], 1);
    assert_eq!(
        counts["/crm/v3/objects/contacts/batch/upsert"], 12,
        "one batch call per notification, whatever its contacts"
    );
}

#[tokio::test]
async fn hubspot_failures_are_classified() {
    let (herald, hubspot, token_file) = start("").await;
    // A 429 is retried after backoff; the delivery still arrives.
    hubspot.faults.respond_next(429, &[], json!({"status": "error", "errorType": "RATE_LIMIT", "message": "You have reached your ten_secondly_rolling limit."}));
    herald
        .post(
            "/v1/notifications",
            &with_contacts("limited", &["a@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("limited", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2);

    // A notification with no contact to sync is refused for good, with the reason.
    herald
        .post("/v1/notifications", &notification("nobody", "normal"))
        .await;
    let record = herald
        .wait_for_notification("nobody", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("no contact with an email"));

    // HubSpot's validation error reaches the dead letter with HubSpot's message.
    hubspot.faults.respond_next(400, &[], json!({"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid: wedding_date"}));
    herald
        .post(
            "/v1/notifications",
            &with_contacts("invalid", &["b@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("invalid", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(record["targets"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("VALIDATION_ERROR: Property values were not valid"));

    // A rotated token: the first call still uses the old one and is refused; the connector
    // reloads the file and the retry succeeds.
    hubspot.rotate_token("pat-na1-rotated");
    std::fs::write(token_file.path(), "pat-na1-rotated").unwrap();
    herald
        .post(
            "/v1/notifications",
            &with_contacts("refreshed", &["c@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("refreshed", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        record["targets"][0]["attempts"], 2,
        "reloaded the credential and tried once more"
    );
    let (status, health) = herald.get("/v1/integrations/crm").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["configuration"]["integrationType"], "crm");
}

#[tokio::test]
async fn the_simulator_enforces_hubspot_auth_and_its_ten_second_limit() {
    let hubspot = FakeHubSpot::start(any_local_port(), TOKEN, 3)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let read = |token: &str| {
        client
            .post(format!("{}/crm/v3/objects/contacts/batch/read", hubspot.base_url()))
            .bearer_auth(token)
            .json(&json!({"idProperty": "email", "properties": [], "propertiesWithHistory": [], "inputs": [{"id": "x@example.com"}]}))
            .send()
    };
    let refused = read("pat-wrong").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["category"],
        "INVALID_AUTHENTICATION"
    );
    hubspot.set_daily_limit(1_000);
    for remaining in [2, 1, 0] {
        let answer = read(TOKEN).await.unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::MULTI_STATUS,
            "not found is a 207 with errors"
        );
        let header = |name: &str| answer.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(
            [
                header("x-hubspot-ratelimit-max"),
                header("x-hubspot-ratelimit-remaining"),
                header("x-hubspot-ratelimit-interval-milliseconds"),
                header("x-hubspot-ratelimit-daily"),
                header("x-hubspot-ratelimit-daily-remaining"),
            ],
            [
                "3".to_owned(),
                remaining.to_string(),
                "10000".to_owned(),
                "1000".to_owned(),
                (997 + remaining).to_string(),
            ]
        );
        assert!(answer
            .headers()
            .contains_key("x-hubspot-ratelimit-secondly"));
        assert!(answer
            .headers()
            .contains_key("x-hubspot-ratelimit-secondly-remaining"));
    }
    let limited = read(TOKEN).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.json::<Value>().await.unwrap()["errorType"],
        "RATE_LIMIT"
    );
}

#[tokio::test]
async fn a_deal_affecting_notification_moves_the_deal_and_notes_it() {
    let (herald, hubspot, _token) = start("").await;
    let deal = hubspot.add_deal("Sam & Alex, June 2027", "presentationscheduled");
    let company = hubspot.add_company("Kew Gardens Weddings");
    let mut signed = with_contacts("contract-signed", &["sam@example.com"]);
    signed["metadata"] = json!({"hubspotDealId": deal, "hubspotCompanyId": company, "hubspotDealStage": "contractsent"});
    herald.post("/v1/notifications", &signed).await;
    let record = herald
        .wait_for_notification("contract-signed", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(hubspot.deal(&deal).unwrap()["dealstage"], "contractsent");
    assert_eq!(
        record["targets"][0]["details"]["dealStage"],
        json!({"dealId": deal, "dealstage": "contractsent"})
    );
    let note = hubspot.notes().pop().unwrap();
    assert_eq!(
        (note.deal_ids, note.company_ids),
        (vec![deal.clone()], vec![company]),
        "the note is on the deal and the company too"
    );

    // A stage the pipeline does not have is HubSpot's validation error, dead-lettered with its message.
    let notes_before = hubspot.notes().len();
    let mut wrong = with_contacts("bad-stage", &["sam@example.com"]);
    wrong["metadata"] = json!({"hubspotDealId": deal, "hubspotDealStage": "married"});
    herald.post("/v1/notifications", &wrong).await;
    let record = herald
        .wait_for_notification("bad-stage", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("not a stage of the deal's pipeline"),
        "{record}"
    );
    assert_eq!(
        hubspot.notes().len(),
        notes_before,
        "the refused stage stopped the sync before anything was written"
    );

    // A deal id that is not one, and the seed's affectsDealStage without a stage to move to,
    // are dead-lettered saying so, never delivered without the move they ask for.
    for (id, metadata, reason) in [
        (
            "not-an-id",
            json!({"hubspotDealId": "D-1", "hubspotDealStage": "contractsent"}),
            "metadata.hubspotDealId \"D-1\" is not a HubSpot record id",
        ),
        (
            "no-stage",
            json!({"affectsDealStage": true, "hubspotDealId": deal}),
            "affectsDealStage is true",
        ),
    ] {
        let mut asked = with_contacts(id, &["sam@example.com"]);
        asked["metadata"] = metadata;
        herald.post("/v1/notifications", &asked).await;
        let record = herald
            .wait_for_notification(id, Duration::from_secs(10), dead_lettered)
            .await;
        let error = record["targets"][0]["lastError"].as_str().unwrap();
        assert!(error.contains(reason), "{record}");
    }
    assert_eq!(
        hubspot.notes().len(),
        notes_before,
        "nothing was written for either"
    );
}

#[tokio::test]
async fn an_oauth_app_refreshes_its_access_token_before_expiry_and_when_refused() {
    let hubspot = FakeHubSpot::start(any_local_port(), "pat-unused", 100)
        .await
        .unwrap();
    hubspot.install_oauth_app(
        "client-1",
        "app-secret-1",
        "refresh-1",
        Duration::from_secs(2),
    );
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), "app-secret-1").unwrap();
    std::fs::write(secrets.path().join("refresh"), "refresh-1").unwrap();
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"hubspot\"\n\
         settings = {{ base_url = \"{}\", oauth = {{ client_id = \"client-1\", client_secret = {{ file = \"{dir}/secret\" }}, refresh_token = {{ file = \"{dir}/refresh\" }} }} }}\n\
         retry = {{ initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        hubspot.base_url(),
        route("studio", &["crm"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    for id in ["oauth-1", "oauth-2"] {
        herald
            .post(
                "/v1/notifications",
                &with_contacts(id, &["sam@example.com"]),
            )
            .await;
        herald
            .wait_for_notification(id, Duration::from_secs(10), all_delivered)
            .await;
    }
    assert_eq!(
        hubspot.oauth_grants(),
        1,
        "one access token serves while it is fresh"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    herald
        .post(
            "/v1/notifications",
            &with_contacts("oauth-3", &["sam@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("oauth-3", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        record["targets"][0]["attempts"], 1,
        "refreshed before use, not after a refusal"
    );
    assert_eq!(hubspot.oauth_grants(), 2);

    hubspot.revoke_access_tokens();
    herald
        .post(
            "/v1/notifications",
            &with_contacts("oauth-4", &["sam@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("oauth-4", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        record["targets"][0]["attempts"], 2,
        "refused, refreshed, delivered"
    );
    assert_eq!(hubspot.oauth_grants(), 3);
    let token_calls: Vec<_> = hubspot
        .requests()
        .into_iter()
        .filter(|r| r.path == "/oauth/v3/token")
        .collect();
    assert_eq!(
        token_calls.len(),
        3,
        "HubSpot's v3 token endpoint (v1 is sunset in 2027)"
    );
    assert!(
        token_calls
            .iter()
            .all(|r| r.body == json!({"grant_type": "refresh_token"})),
        "secrets are not recorded"
    );

    // establishConnection reads the access token's portal and scopes through v3 introspection.
    let (status, check) = herald
        .post("/v1/integrations/crm/connection-check", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["account"]["hubId"], 62515);
    assert_eq!(check["account"]["missingScopes"], json!([]));
    let introspections: Vec<_> = hubspot
        .requests()
        .into_iter()
        .filter(|r| r.path == "/oauth/v3/token/introspect")
        .collect();
    assert_eq!(introspections.len(), 1);
    assert_eq!(
        introspections[0].body,
        json!({"token_type_hint": "access_token"}),
        "neither the token nor the client secret is recorded"
    );
    assert_eq!(introspections[0].status, 200);
}

#[tokio::test]
async fn a_request_that_drifts_from_hubspots_contract_is_refused_naming_the_field() {
    let hubspot = FakeHubSpot::start(any_local_port(), TOKEN, 100)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let upsert = |body: Value| {
        client
            .post(format!(
                "{}/crm/v3/objects/contacts/batch/upsert",
                hubspot.base_url()
            ))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    // Property values are strings in HubSpot; a number and an unknown field are drift.
    let drifted = upsert(
        json!({"inputs": [{"id": "sam@example.com", "idProperty": "email",
        "properties": {"email": "sam@example.com", "wedding_guests": 120}, "mode": "merge"}]}),
    )
    .await
    .unwrap();
    assert_eq!(drifted.status(), StatusCode::BAD_REQUEST);
    let answer: Value = drifted.json().await.unwrap();
    assert_eq!(answer["category"], "VALIDATION_ERROR");
    let fields: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["in"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["inputs[0].mode", "inputs[0].properties.wedding_guests"]
    );
    assert!(
        hubspot.contact_by_email("sam@example.com").is_none(),
        "nothing was written"
    );

    let unknown = client
        .post(format!(
            "{}/crm/v3/objects/contacts/merge-all",
            hubspot.base_url()
        ))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let conforming = upsert(
        json!({"inputs": [{"id": "sam@example.com", "idProperty": "email",
        "properties": {"email": "sam@example.com"}}]}),
    )
    .await
    .unwrap();
    assert_eq!(conforming.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_oauth_app_installed_through_herald_keeps_its_refresh_token_sealed() {
    let hubspot = FakeHubSpot::start(any_local_port(), "pat-unused", 100)
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), "app-secret-2").unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"crm\"\norganization = \"studio\"\nkind = \"hubspot\"\n\
         settings = {{ base_url = \"{base}\", oauth = {{ client_id = \"client-2\", client_secret = {{ file = \"{dir}/secret\" }}, redirect_uri = \"{{herald}}/oauth/hubspot/callback\", authorize_url = \"{base}/oauth/authorize\" }} }}\n\
         retry = {{ initial = \"20ms\", max_delay = \"50ms\" }}\n{route}",
        base = hubspot.base_url(),
        dir = secrets.path().display(),
        route = route("studio", &["crm"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    let callback = format!("{}/oauth/hubspot/callback", herald.base);
    hubspot.register_oauth_app(
        "client-2",
        "app-secret-2",
        &callback,
        Duration::from_secs(60),
    );

    // Before the install, a delivery cannot be made and says what to do.
    herald
        .post(
            "/v1/notifications",
            &with_contacts("before-install", &["sam@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("before-install", Duration::from_secs(10), dead_lettered)
        .await;
    assert!(
        record["targets"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("not installed yet"),
        "{record}"
    );

    // The install: Herald's consent link, the person consents, HubSpot sends them back.
    let (status, started) = herald
        .post("/v1/integrations/crm/oauth/authorize", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let consent = started["authorizationUrl"].as_str().unwrap().to_owned();
    let consent_url = url::Url::parse(&consent).unwrap();
    let query: std::collections::HashMap<String, String> =
        consent_url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], "client-2");
    assert_eq!(query["redirect_uri"], callback);
    assert!(query["scope"].contains("crm.objects.contacts.write"));
    assert_eq!(
        query["optional_scope"], "automation",
        "workflow enrolments need it; HubSpot drops it where the portal cannot grant it"
    );
    // PKCE: the consent page gets the S256 challenge of a verifier only Herald knows.
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);

    // Someone who intercepts an authorization code cannot use it without that verifier, even
    // with the app's own credentials.
    let (_, other) = herald
        .post("/v1/integrations/crm/oauth/authorize", &json!({}))
        .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let intercepted = no_redirects
        .get(other["authorizationUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(intercepted.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, code)| code.into_owned())
        .unwrap();
    let stolen = no_redirects
        .post(format!("{}/oauth/v3/token", hubspot.base_url()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "client-2"),
            ("client_secret", "app-secret-2"),
            ("redirect_uri", callback.as_str()),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    let refusal: Value = stolen.json().await.unwrap();
    assert_eq!(refusal["status"], "BAD_AUTH_CODE", "{refusal}");

    let browser = reqwest::Client::new();
    let finished = browser.get(&consent).send().await.unwrap();
    assert_eq!(finished.url().path(), "/oauth/hubspot/callback");
    assert_eq!(finished.status(), StatusCode::OK);
    assert!(finished
        .text()
        .await
        .unwrap()
        .contains("HubSpot is connected to Herald (integration crm)"));

    // The refresh token is kept, sealed: nowhere in the store's files in the clear.
    let refresh_token = hubspot.oauth_refresh_token().expect("the app is installed");
    let store_dir = herald.data.path().join("store");
    for file in std::fs::read_dir(&store_dir).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(refresh_token.len())
                .any(|w| w == refresh_token.as_bytes()),
            "the refresh token is in the store in the clear"
        );
    }

    // The audit log has the new credential, as its fingerprint, and the key that started the
    // install.
    let (status, audit) = herald
        .get("/v1/audit?resourceType=integration&resourceId=crm")
        .await;
    assert_eq!(status, StatusCode::OK);
    let installed = &audit["records"][0];
    assert_eq!(installed["action"], "credential.installed", "{audit}");
    assert_eq!(
        installed["keyId"],
        herald::api::hash_key(&herald.key)[..16],
        "the key that asked for the consent page"
    );
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        refresh_token.as_bytes(),
    ));
    assert_eq!(
        installed["after"],
        json!({"credential": "hubspot_refresh_token", "fingerprint": format!("sha256:{}", &fingerprint[..12])})
    );
    assert!(!audit.to_string().contains(&refresh_token));

    // The dead letter, replayed, now goes through with the installed app.
    let delivery_id = record["targets"][0]["deliveryId"].as_i64().unwrap();
    let (status, _) = herald
        .post(
            &format!("/v1/dead-letters/{delivery_id}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    herald
        .wait_for_notification("before-install", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        hubspot
            .contact_by_email("sam@example.com")
            .map(|contact| contact.properties["wedding_date"].clone()),
        Some(json!("2027-06-12"))
    );

    // A consent link works once.
    let again = browser.get(&consent).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_notification_naming_a_workflow_enrolls_each_contact_in_it() {
    let (herald, hubspot, _token) = start("").await;
    hubspot.add_workflow("4021");
    let mut enrol = with_contacts("wf-1", &["sam+wedding@example.com", "alex@example.com"]);
    enrol["metadata"] = json!({"hubspotWorkflowId": "4021"});
    herald.post("/v1/notifications", &enrol).await;
    let record = herald
        .wait_for_notification("wf-1", Duration::from_secs(10), all_delivered)
        .await;
    let enrollments = &record["targets"][0]["details"]["workflowEnrollments"];
    assert_eq!(enrollments[0]["status"], "enrolled", "{record}");
    assert_eq!(enrollments[1]["status"], "enrolled");
    assert_eq!(
        hubspot.enrolled("4021"),
        ["sam+wedding@example.com", "alex@example.com"]
    );

    // A workflow the portal does not have: the sync stands, the refusal is in the details, and
    // nothing is retried (a retry would write the notes twice).
    let mut unknown = with_contacts("wf-2", &["sam+wedding@example.com"]);
    unknown["metadata"] = json!({"hubspotWorkflowId": 999});
    herald.post("/v1/notifications", &unknown).await;
    let record = herald
        .wait_for_notification("wf-2", Duration::from_secs(10), all_delivered)
        .await;
    let refused = &record["targets"][0]["details"]["workflowEnrollments"][0];
    assert_eq!(refused["status"], "failed");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("Workflow 999 not found"),
        "{refused}"
    );
    assert_eq!(record["targets"][0]["attempts"], 1);
    assert_eq!(hubspot.notes().len(), 3, "two notes, then one");

    // A token without the `automation` scope cannot enrol anyone: HubSpot's 403 MISSING_SCOPES
    // is in the details, never "enrolled".
    hubspot.set_scopes(&[
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.schemas.contacts.write",
        "crm.objects.deals.write",
    ]);
    let mut unscoped = with_contacts("wf-3", &["sam+wedding@example.com"]);
    unscoped["metadata"] = json!({"hubspotWorkflowId": "4021"});
    herald.post("/v1/notifications", &unscoped).await;
    let record = herald
        .wait_for_notification("wf-3", Duration::from_secs(10), all_delivered)
        .await;
    let refused = &record["targets"][0]["details"]["workflowEnrollments"][0];
    assert_eq!(refused["status"], "failed", "{record}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("the token needs a scope it was not granted"),
        "{refused}"
    );
    assert_eq!(hubspot.enrolled("4021").len(), 2, "nobody more");
}

#[tokio::test]
async fn a_v4_flow_id_is_mapped_to_its_v2_workflow_or_refused_with_the_reason() {
    // Enrolment takes v2 workflow ids; WedSync may know a workflow by its v4 flow id.
    let (herald, hubspot, _token) = start("").await;
    hubspot.add_workflow("4021");
    hubspot.add_flow("58890312", Some("4021"));
    hubspot.add_flow("58890313", None);
    let mut mapped = with_contacts("flow-1", &["sam@example.com"]);
    mapped["metadata"] = json!({"hubspotFlowId": "58890312"});
    herald.post("/v1/notifications", &mapped).await;
    let record = herald
        .wait_for_notification("flow-1", Duration::from_secs(10), all_delivered)
        .await;
    let enrolled = &record["targets"][0]["details"]["workflowEnrollments"][0];
    assert_eq!(enrolled["status"], "enrolled", "{record}");
    assert_eq!(hubspot.enrolled("4021"), ["sam@example.com"]);

    let mut unmapped = with_contacts("flow-2", &["alex@example.com"]);
    unmapped["metadata"] = json!({"hubspotFlowId": "58890313"});
    herald.post("/v1/notifications", &unmapped).await;
    let record = herald
        .wait_for_notification("flow-2", Duration::from_secs(10), all_delivered)
        .await;
    let refused = &record["targets"][0]["details"]["workflowEnrollments"][0];
    assert_eq!(refused["status"], "failed");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("flow 58890313 has no v2 workflow id"),
        "{refused}"
    );
    assert_eq!(hubspot.enrolled("4021"), ["sam@example.com"], "nobody more");
}

#[tokio::test]
async fn a_notification_asking_for_actions_becomes_a_hubspot_task() {
    let (herald, hubspot, _token) = start("").await;
    let deal = hubspot.add_deal("Sam & Alex", "appointmentscheduled");
    let mut urgent = with_contacts("task-1", &["sam@example.com", "alex@example.com"]);
    urgent["title"] = json!("Venue needs the final guest count");
    urgent["actions"] = json!([{"actionId": "count", "label": "Send the guest count <today>"}]);
    urgent["metadata"] = json!({"hubspotDealId": deal, "hubspotTaskDue": "2027-06-01T09:00:00Z"});
    herald.post("/v1/notifications", &urgent).await;
    let record = herald
        .wait_for_notification("task-1", Duration::from_secs(10), all_delivered)
        .await;
    let task_detail = &record["targets"][0]["details"]["task"];
    assert_eq!(task_detail["status"], "created", "{record}");
    let tasks = hubspot.tasks();
    assert_eq!(tasks.len(), 1, "one task for the team, not one per contact");
    let task = &tasks[0];
    assert_eq!(task_detail["taskId"], task.id.as_str());
    assert_eq!(
        task.properties["hs_task_subject"],
        "Venue needs the final guest count"
    );
    assert_eq!(task.properties["hs_task_priority"], "HIGH");
    assert_eq!(task.properties["hs_task_status"], "NOT_STARTED");
    assert_eq!(task.properties["hs_timestamp"], "2027-06-01T09:00:00.000Z");
    assert!(task.properties["hs_task_body"]
        .as_str()
        .unwrap()
        .contains("<li>Send the guest count &lt;today&gt;</li>"));
    assert_eq!(task.contact_ids.len(), 2);
    assert_eq!(task.deal_ids, [deal]);

    // Without actions there is nothing to do, so no task.
    herald
        .post(
            "/v1/notifications",
            &with_contacts("task-2", &["sam@example.com"]),
        )
        .await;
    herald
        .wait_for_notification("task-2", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(hubspot.tasks().len(), 1);
}

#[tokio::test]
async fn a_batch_that_partly_fails_is_read_input_by_input() {
    // HubSpot answers a batch create whose inputs partly fail with 207 Multi-Status: the
    // created ones in `results`, the others in `errors`. Alex's activities fail, Sam's do not.
    let (herald, hubspot, _token) = start("").await;
    let alex = hubspot.add_contact("alex@example.com", json!({}));
    hubspot.refuse_activities_for(&alex);
    let mut partly = with_contacts("partly-1", &["sam@example.com", "alex@example.com"]);
    partly["actions"] = json!([{"actionId": "count", "label": "Send the guest count"}]);
    herald.post("/v1/notifications", &partly).await;
    let record = herald
        .wait_for_notification("partly-1", Duration::from_secs(10), all_delivered)
        .await;
    let details = &record["targets"][0]["details"];
    assert_eq!(details["notesRequested"], 2, "{record}");
    assert_eq!(details["notesCreated"], 1);
    assert_eq!(
        details["noteErrors"],
        json!([format!(
            "VALIDATION_ERROR: Contact {alex} cannot take a new note"
        )])
    );
    assert_eq!(hubspot.notes().len(), 1);
    // The task is on both contacts, so its one input fails: reported, never "created" with no id.
    assert_eq!(details["task"]["status"], "failed");
    assert_eq!(
        details["task"]["error"],
        format!("VALIDATION_ERROR: Contact {alex} cannot take a new task")
    );

    // When no note at all is created, the activity did not happen: dead-lettered with HubSpot's
    // reasons, not reported delivered.
    herald
        .post(
            "/v1/notifications",
            &with_contacts("partly-2", &["alex@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("partly-2", Duration::from_secs(10), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("HubSpot created none of the 1 notes")
            && error.contains("cannot take a new note"),
        "{error}"
    );
}

/// A private app's day: HubSpot's daily headers become a gauge, and a spent allowance (a 429
/// with `policyName: DAILY`) waits an hour rather than retrying into the same refusal.
#[tokio::test]
async fn a_private_apps_daily_allowance_is_reported_and_a_spent_one_waits() {
    let (herald, hubspot, _token_file) = start_as("crm-daily", "").await;
    herald
        .post(
            "/v1/notifications",
            &with_contacts("first", &["a@example.com"]),
        )
        .await;
    herald
        .wait_for_notification("first", Duration::from_secs(10), all_delivered)
        .await;
    let used = hubspot.requests().len();
    let labels = ["integration=\"crm-daily\"", "window=\"daily\""];
    assert_eq!(
        herald
            .gauge("herald_vendor_quota_limit", &labels)
            .await
            .as_deref(),
        Some("250000")
    );
    assert_eq!(
        herald.gauge("herald_vendor_quota_remaining", &labels).await,
        Some((250_000 - used).to_string())
    );

    hubspot.set_daily_limit(used);
    herald
        .post(
            "/v1/notifications",
            &with_contacts("spent", &["b@example.com"]),
        )
        .await;
    let record = herald
        .wait_for_notification("spent", Duration::from_secs(10), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    let target = &record["targets"][0];
    let wait_ms = target["nextAttemptAt"].as_i64().unwrap() - target["createdAt"].as_i64().unwrap();
    assert!(
        (3_590_000..=3_610_000).contains(&wait_ms),
        "an hour, not the retry policy's 20 ms: {record}"
    );
    assert_eq!(target["attempts"], 1);
}
