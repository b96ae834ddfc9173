//! Integrations are data: an admin creates an integration through the API (the seed's
//! `initializeIntegration`), its secret sealed at once; it delivers without a restart, survives
//! one, and is removed with what was queued for it dead-lettered, never dropped.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::store::Role;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    dead_lettered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

/// The API-created hook's own secret (not the configured one's), so a delivery the receiver
/// accepts proves the sealed value was used.
const API_SECRET: &str = "whsec_YXBpLWNyZWF0ZWQtaW50ZWdyYXRpb24tc2VjcmV0LTAxIQ==";

fn hook(id: &str, url: &str) -> Value {
    json!({
        "integrationId": id,
        "integrationType": "webhook",
        "system": "webhook",
        "settings": {"url": url, "secret": {"value": API_SECRET}},
        "retry": {"initial": "20ms", "maxDelay": "50ms"},
    })
}

/// Posts a routing that sends one notification to `target` only.
async fn route_to(herald: &Harness, id: &str, target: &str) -> (StatusCode, Value) {
    herald
        .post(
            "/v1/routings?wait=10s",
            &json!({
                "routingId": format!("r-{id}"),
                "sourceNotification": notification(id, "normal"),
                "targetSystems": [{"systemId": target}],
            }),
        )
        .await
}

async fn configured(receiver: &WebhookReceiver) -> Harness {
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n[[organizations]]\nid = \"venue\"\n{}{}",
        webhook_integration("configured-hook", "studio", &receiver.url(), ""),
        route("studio", &["configured-hook"], ""),
    );
    Harness::start(&body, "studio").await
}

#[tokio::test]
async fn an_integration_created_through_the_api_delivers_survives_a_restart_and_is_removed_cleanly()
{
    let configured_receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let herald = configured(&configured_receiver).await;

    let (status, created) = herald
        .post(
            "/v1/integrations?verify=true",
            &hook("wedsync-hook", &receiver.url()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (
            created["source"].as_str(),
            created["version"].as_i64(),
            created["organizationId"].as_str()
        ),
        (Some("api"), Some(1), Some("studio"))
    );
    assert_eq!(created["configuration"]["credentials"]["source"], "vault");
    assert_eq!(
        created["connectionCheck"]["ok"], false,
        "a generic webhook cannot be checked without a message: {created}"
    );
    assert!(
        !created.to_string().contains(API_SECRET),
        "the secret is never answered"
    );
    let (_, listed) = herald.get("/v1/integrations").await;
    let ids: Vec<&str> = listed["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["integrationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["configured-hook", "wedsync-hook"]);

    // It delivers at once, signed with its own sealed secret.
    let (status, answer) = route_to(&herald, "first", "wedsync-hook").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["overallStatus"], "success", "{answer}");
    assert_eq!(receiver.received().len(), 1);

    // The secret is sealed at rest: not in the store's files.
    let store = herald.data.path().join("store");
    for file in std::fs::read_dir(&store).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(API_SECRET.len())
                .any(|w| w == API_SECRET.as_bytes()),
            "the secret is in the clear in the data folder"
        );
    }

    // It survives a restart: read back, unsealed, running.
    let herald = herald.restarted().await;
    let (status, again) = herald.get("/v1/integrations/wedsync-hook").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (again["source"].as_str(), again["version"].as_i64()),
        (Some("api"), Some(1))
    );
    let (_, answer) = route_to(&herald, "after-restart", "wedsync-hook").await;
    assert_eq!(answer["overallStatus"], "success", "{answer}");
    assert_eq!(receiver.received().len(), 2);

    // Removed while a delivery waits to be retried: it is dead-lettered with the reason.
    receiver.faults.go_down(503, json!({"error": "down"}));
    // A caller waits on the routing (up to 30 s): the removal answers it at once.
    let waiting = {
        let (client, base, key) = (
            herald.client.clone(),
            herald.base.clone(),
            herald.key.clone(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let answer: Value = client
                .post(format!("{base}/v1/routings?wait=30s"))
                .bearer_auth(key)
                .json(&json!({
                    "routingId": "r-queued",
                    "sourceNotification": notification("queued", "normal"),
                    "targetSystems": [{"systemId": "wedsync-hook"}],
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (answer, started.elapsed())
        })
    };
    herald
        .wait_for_notification("queued", Duration::from_secs(10), |record| {
            record["targets"][0]["state"] == "retrying"
        })
        .await;
    let removed = herald
        .client
        .delete(format!("{}/v1/integrations/wedsync-hook", herald.base))
        .bearer_auth(&herald.key)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    let removed: Value = removed.json().await.unwrap();
    assert_eq!(removed["deadLettered"], 1, "{removed}");
    let record = herald
        .wait_for_notification("queued", Duration::from_secs(10), dead_lettered)
        .await;
    assert_eq!(record["targets"][0]["lastError"], "integration removed");
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer["overallStatus"], "failed", "{answer}");
    assert!(
        waited < Duration::from_secs(20),
        "answered when removed, not at the end of its wait: {waited:?}"
    );
    assert_eq!(
        herald.get("/v1/integrations/wedsync-hook").await.0,
        StatusCode::NOT_FOUND
    );

    // The audit shows both changes, the secret as a fingerprint only.
    let (_, audit) = herald.get("/v1/audit?resourceType=integration").await;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["integration.removed", "integration.created"]);
    let created_record = &audit["records"][1]["after"];
    assert!(
        created_record["settings"]["secret"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{created_record}"
    );
    assert!(!audit.to_string().contains(API_SECRET));

    // After another restart it stays gone.
    let herald = herald.restarted().await;
    assert_eq!(
        herald.get("/v1/integrations/wedsync-hook").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn what_cannot_be_an_integration_is_refused_naming_the_field_and_nothing_is_written() {
    let configured_receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let herald = configured(&configured_receiver).await;
    let url = "https://hooks.example.com/wedsync";
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = hook("refused", url);
        change(&mut body);
        body
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            with(&|b| b["settings"]["secret"] = json!({"env": "HOME"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "settings.secret",
        ),
        (
            with(&|b| b["settings"]["secret"] = json!({"file": "/etc/passwd"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "settings.secret",
        ),
        (
            with(&|b| b["system"] = json!("carrier_pigeon")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "system",
        ),
        (
            with(&|b| b["integrationType"] = json!("crm")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "integrationType",
        ),
        (
            with(&|b| b["organizationId"] = json!("venue")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "organizationId",
        ),
        (
            with(&|b| b["integrationId"] = json!("has spaces")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "integrationId",
        ),
        (
            with(&|b| b["rateLimit"] = json!({"perSecond": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "rateLimit",
        ),
        (
            with(&|b| b["retry"] = json!({"maxDelay": "soon"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "retry.maxDelay",
        ),
        (
            with(&|b| b["failoverConfiguration"] = json!({"backupIntegrations": ["nowhere"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "failoverConfiguration.backupIntegrations",
        ),
        (
            with(&|b| b["settings"]["url"] = json!("not a url")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "settings.url",
        ),
        (
            with(&|b| b["settings"]["colour"] = json!("blue")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "settings.colour",
        ),
        (
            with(&|b| b["securityConfiguration"] = json!({"authentication": "oauth2"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "securityConfiguration.authentication",
        ),
        (
            with(&|b| b["securityConfiguration"] = json!({"privateDestinationsAllowed": false})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "securityConfiguration.privateDestinationsAllowed",
        ),
        (
            with(&|b| b["securityConfiguration"] = json!({"encryption": "aes"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "securityConfiguration.encryption",
        ),
        (
            with(&|b| {
                b["notificationMapping"] = json!([
                    {"types": ["timeline_change"]},
                    {"when": "notification.colour == 'blue'"}
                ])
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "notificationMapping[1].when",
        ),
        (
            with(&|b| b["notificationMapping"] = json!([{"routeId": "config-0"}])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "notificationMapping[0].routeId",
        ),
        (
            with(&|b| b["integrationId"] = json!("configured-hook")),
            StatusCode::CONFLICT,
            "",
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = herald.post("/v1/integrations", &body).await;
        assert_eq!(got, status, "{body}: {answer}");
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        }
    }
    let (_, listed) = herald.get("/v1/integrations").await;
    assert_eq!(
        listed["integrations"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    let (_, audit) = herald.get("/v1/audit?resourceType=integration").await;
    assert_eq!(audit["records"], json!([]), "nothing was recorded");
    let (_, routes) = herald.get("/v1/routes").await;
    assert_eq!(
        routes["routes"].as_array().unwrap().len(),
        1,
        "no route of a refused notificationMapping was created: {routes}"
    );

    // The configured integration is the operator's: read-only here.
    let refused = herald
        .client
        .delete(format!("{}/v1/integrations/configured-hook", herald.base))
        .bearer_auth(&herald.key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);

    // Another organization neither sees nor removes the studio's integration.
    let (status, _) = herald
        .post("/v1/integrations", &hook("studio-only", url))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let venue = herald.key_with_role("venue", Role::Admin).await;
    assert_eq!(
        herald
            .get_as(&venue, "/v1/integrations/studio-only")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let removed = herald
        .client
        .delete(format!("{}/v1/integrations/studio-only", herald.base))
        .bearer_auth(&venue)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NOT_FOUND);
    // And the id is taken for everyone.
    let (status, _) = herald
        .post_as(&venue, "/v1/integrations", &hook("studio-only", url))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_herald_without_a_credentials_key_refuses_secrets() {
    let body = "[[organizations]]\nid = \"studio\"\n";
    let herald = Harness::start_without_vault(body, "studio").await;
    let (status, answer) = herald
        .post(
            "/v1/integrations",
            &hook("hook", "https://hooks.example.com/wedsync"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("security.credentials_key"));
    assert_eq!(
        herald.get("/v1/integrations/hook").await.0,
        StatusCode::NOT_FOUND
    );
}

const ROTATED_SECRET: &str = "whsec_cm90YXRlZC1zZWNyZXQtZm9yLXRoZS1hcGktaG9vay0wMg==";

/// Sends `method path` with the test's admin key, a JSON body and headers.
async fn send(
    herald: &Harness,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    herald
        .request(&herald.key, method, path, headers, body)
        .await
}

#[tokio::test]
async fn a_change_names_the_version_it_changes_and_restarts_the_integration_with_it() {
    let configured_receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let first = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let moved = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let rotated = WebhookReceiver::start(any_local_port(), ROTATED_SECRET)
        .await
        .unwrap();
    let herald = configured(&configured_receiver).await;
    let (status, _) = herald
        .post("/v1/integrations", &hook("hook", &first.url()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, etag, _) = send(
        &herald,
        reqwest::Method::GET,
        "/v1/integrations/hook",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(etag.as_deref(), Some("\"1\""));

    let patch = reqwest::Method::PATCH;
    let to_moved = json!({"settings": {"url": moved.url()}});
    let (status, _, answer) = send(
        &herald,
        patch.clone(),
        "/v1/integrations/hook",
        &[],
        to_moved.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{answer}");
    let (status, etag, answer) = send(
        &herald,
        patch.clone(),
        "/v1/integrations/hook",
        &[("if-match", "\"1\"")],
        to_moved.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (etag.as_deref(), answer["version"].as_i64()),
        (Some("\"2\""), Some(2))
    );
    // The running integration took the new address, with the secret it kept.
    let (_, routed) = route_to(&herald, "moved", "hook").await;
    assert_eq!(routed["overallStatus"], "success", "{routed}");
    assert_eq!((first.received().len(), moved.received().len()), (0, 1));

    // A change to a version that is no longer current, or to what does not change, is refused.
    let (status, _, answer) = send(
        &herald,
        patch.clone(),
        "/v1/integrations/hook",
        &[("if-match", "\"1\"")],
        to_moved.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{answer}");
    assert_eq!(answer["error"]["code"], "version_mismatch");
    for (body, field) in [
        (json!({"version": 2, "system": "slack"}), "system"),
        (
            json!({"version": 2, "rateLimit": {"perSecond": 0}}),
            "rateLimit",
        ),
        (
            json!({"version": 2, "rateLimit": {"perMinute": 5}}),
            "rateLimit.perMinute",
        ),
        (
            json!({"version": 2, "settings": {"secret": {"env": "HOME"}}}),
            "settings.secret",
        ),
        (json!({"version": 2, "colour": "blue"}), "colour"),
    ] {
        let (status, _, answer) = send(
            &herald,
            patch.clone(),
            "/v1/integrations/hook",
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (_, _, now) = send(
        &herald,
        reqwest::Method::GET,
        "/v1/integrations/hook",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(now["version"], 2, "nothing refused was written");

    // A secret is rotated without a version; only secrets are taken there.
    let put = reqwest::Method::PUT;
    let (status, _, answer) = send(
        &herald,
        put.clone(),
        "/v1/integrations/hook/credentials",
        &[],
        json!({"settings": {"url": "https://elsewhere.example.com"}}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("settings.url"))
    );
    let (status, _, answer) = send(
        &herald,
        put,
        "/v1/integrations/hook/credentials",
        &[],
        json!({"settings": {"secret": {"value": ROTATED_SECRET}}}),
    )
    .await;
    assert_eq!(
        (status, answer["version"].as_i64()),
        (StatusCode::OK, Some(3)),
        "{answer}"
    );
    let (status, _, _) = send(
        &herald,
        patch.clone(),
        "/v1/integrations/hook",
        &[],
        json!({"version": 3, "settings": {"url": rotated.url()}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, routed) = route_to(&herald, "rotated", "hook").await;
    assert_eq!(
        routed["overallStatus"], "success",
        "signed with the rotated secret: {routed}"
    );
    assert_eq!(rotated.received().len(), 1);

    // The audit tells the rotation by the fingerprint, never the secret.
    let (_, audit) = herald
        .get("/v1/audit?resourceType=integration&limit=2")
        .await;
    let rotation = &audit["records"][1];
    assert_eq!(rotation["action"], "integration.updated");
    let fingerprint = |side: &str| {
        rotation[side]["settings"]["secret"]["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(fingerprint("before"), fingerprint("after"), "{rotation}");
    assert!(!audit.to_string().contains(ROTATED_SECRET) && !audit.to_string().contains(API_SECRET));

    // The configured integration is the operator's.
    let (status, _, _) = send(
        &herald,
        patch,
        "/v1/integrations/configured-hook",
        &[("if-match", "\"1\"")],
        to_moved,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// The integrations a notification went to, in order.
fn targets_of(record: &Value) -> Vec<String> {
    record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["integrationId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn routes_created_through_the_api_route_at_once_and_survive_a_restart() {
    let configured_receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let herald = configured(&configured_receiver).await;
    let (status, _) = herald
        .post("/v1/integrations", &hook("wedsync-hook", &receiver.url()))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Refused, naming the field: an unknown identifier in the condition, another
    // organization's or no integration as a target, a reserved id.
    for (body, field) in [
        (
            json!({"name": "r", "targets": ["wedsync-hook"], "when": "notification.colour == \"blue\""}),
            "when",
        ),
        (
            json!({"name": "r", "targets": ["wedsync-hook"], "when": "notification.type =="}),
            "when",
        ),
        (json!({"name": "r", "targets": ["nowhere"]}), "targets"),
        (json!({"name": "r", "targets": []}), "targets"),
        (
            json!({"name": "r", "targets": ["wedsync-hook"], "routeId": "config-0"}),
            "routeId",
        ),
        (
            json!({"name": "r", "targets": ["wedsync-hook"], "minPriority": "urgent"}),
            "minPriority",
        ),
    ] {
        let (status, answer) = herald.post("/v1/routes", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (_, answer) = herald
        .post("/v1/routes", &json!({"name": "r", "targets": ["wedsync-hook"], "when": "notification.colour == \"blue\""}))
        .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{answer}"
    );

    let (status, created) = herald
        .post("/v1/routes", &json!({"routeId": "timeline-to-wedsync", "name": "timeline changes to WedSync's hook", "types": ["timeline_change"], "targets": ["wedsync-hook"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (created["source"].as_str(), created["version"].as_i64()),
        (Some("api"), Some(1))
    );

    // Routing takes it at once: the configured route and the new one.
    herald
        .post("/v1/notifications", &notification("both", "normal"))
        .await;
    let record = herald
        .wait_for_notification(
            "both",
            Duration::from_secs(10),
            crate::harness::all_delivered,
        )
        .await;
    assert_eq!(targets_of(&record), ["configured-hook", "wedsync-hook"]);

    // The integration a route sends to cannot be removed from under it.
    let (status, _, answer) = send(
        &herald,
        reqwest::Method::DELETE,
        "/v1/integrations/wedsync-hook",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("route \"timeline-to-wedsync\""),
        "{answer}"
    );

    // A change names its version; a normal notification then no longer takes the route.
    let (status, etag, changed) = send(
        &herald,
        reqwest::Method::PATCH,
        "/v1/routes/timeline-to-wedsync",
        &[("if-match", "\"1\"")],
        json!({"minPriority": "high"}),
    )
    .await;
    assert_eq!(
        (status, etag.as_deref()),
        (StatusCode::OK, Some("\"2\"")),
        "{changed}"
    );
    let (status, _, _) = send(
        &herald,
        reqwest::Method::PATCH,
        "/v1/routes/timeline-to-wedsync",
        &[("if-match", "\"1\"")],
        json!({"minPriority": "low"}),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    herald
        .post("/v1/notifications", &notification("normal-only", "normal"))
        .await;
    let record = herald
        .wait_for_notification(
            "normal-only",
            Duration::from_secs(10),
            crate::harness::all_delivered,
        )
        .await;
    assert_eq!(targets_of(&record), ["configured-hook"]);

    // After a restart the route is read back and routes as it did.
    let herald = herald.restarted().await;
    herald
        .post("/v1/notifications", &notification("urgent", "high"))
        .await;
    let record = herald
        .wait_for_notification(
            "urgent",
            Duration::from_secs(10),
            crate::harness::all_delivered,
        )
        .await;
    assert_eq!(targets_of(&record), ["configured-hook", "wedsync-hook"]);
    let (_, listed) = herald.get("/v1/routes").await;
    let listed: Vec<(&str, &str)> = listed["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["routeId"].as_str().unwrap(),
                r["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("config-0", "config"), ("timeline-to-wedsync", "api")]
    );
    let (_, integration) = herald.get("/v1/integrations/wedsync-hook").await;
    assert_eq!(
        integration["configuration"]["notificationMapping"][0]["routeId"],
        "timeline-to-wedsync"
    );

    // The configuration file's route is read-only; the API's is removed and stops routing.
    let (status, _, _) = send(
        &herald,
        reqwest::Method::DELETE,
        "/v1/routes/config-0",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = send(
        &herald,
        reqwest::Method::DELETE,
        "/v1/routes/timeline-to-wedsync",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        herald.get("/v1/routes/timeline-to-wedsync").await.0,
        StatusCode::NOT_FOUND
    );
    herald
        .post("/v1/notifications", &notification("after-removal", "high"))
        .await;
    let record = herald
        .wait_for_notification(
            "after-removal",
            Duration::from_secs(10),
            crate::harness::all_delivered,
        )
        .await;
    assert_eq!(targets_of(&record), ["configured-hook"]);
    let (_, audit) = herald.get("/v1/audit?resourceType=route").await;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["route.removed", "route.updated", "route.created"]);
}

#[tokio::test]
async fn the_vault_key_rotates_while_herald_runs_and_the_new_key_alone_then_opens_everything() {
    const NEW_KEY: &str = "bmV3LWhlcmFsZC1jcmVkZW50aWFscy1rZXktMzJieXQ=";
    let configured_receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let herald = configured(&configured_receiver).await;
    let (status, _) = herald
        .post("/v1/integrations", &hook("wedsync-hook", &receiver.url()))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // The operator's rotation configuration: the new key current, the old one previous.
    let secrets = herald.data.path().join("secrets");
    std::fs::write(secrets.join("new_credentials_key"), NEW_KEY).unwrap();
    let rotation = herald.data.path().join("rotation.toml");
    std::fs::write(
        &rotation,
        format!(
            "[store]\ndata_dir = \"{}\"\n[security]\ncredentials_key = {{ file = \"{}\" }}\nprevious_credentials_keys = [{{ file = \"{}\" }}]\n",
            herald.data.path().join("store").display(),
            secrets.join("new_credentials_key").display(),
            secrets.join("credentials_key").display(),
        ),
    )
    .unwrap();
    let rotate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["vault", "rotate-key", "--config"])
            .arg(&rotation)
            .output()
            .unwrap()
    };
    let first = rotate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        String::from_utf8_lossy(&first.stdout)
            .starts_with("1 credentials re-sealed under the current key, 0 already under it"),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    let again = rotate();
    assert!(String::from_utf8_lossy(&again.stdout)
        .starts_with("0 credentials re-sealed under the current key, 1 already under it"));

    // Herald restarted with the new key alone opens the integration's secret and delivers.
    std::fs::write(secrets.join("credentials_key"), NEW_KEY).unwrap();
    let herald = herald.restarted().await;
    let (_, answer) = route_to(&herald, "after-rotation", "wedsync-hook").await;
    assert_eq!(answer["overallStatus"], "success", "{answer}");
    assert_eq!(receiver.received().len(), 1);

    // The organization's audit log has the re-sealing, by the operator, once: the same secret
    // (its fingerprint as when it was created) under the new key.
    let (_, audit) = herald
        .get("/v1/audit?resourceType=integration&resourceId=wedsync-hook")
        .await;
    let records = audit["records"].as_array().unwrap();
    let actions: Vec<&str> = records
        .iter()
        .map(|record| record["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["credential.resealed", "integration.created"]);
    assert_eq!(records[0]["keyId"], "cli");
    assert_eq!(records[0]["after"]["credential"], "settings.secret");
    assert_eq!(
        records[0]["after"]["fingerprint"],
        records[1]["after"]["settings"]["secret"]["fingerprint"]
    );
    assert_eq!(
        records[0]["after"]["keyId"].as_str().map(str::len),
        Some(16)
    );
}

#[tokio::test]
async fn an_idle_integration_holds_no_actor_and_its_next_delivery_starts_one() {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[supervision]\nidle_after = \"200ms\"\n[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("hook", "studio", &receiver.url(), ""),
        route("studio", &["hook"], ""),
    );
    let herald = Harness::start(&body, "studio").await;
    assert!(
        !actor_running(&herald).await,
        "nothing to deliver at start: no actor"
    );
    for round in 0..2 {
        let id = format!("n-{round}");
        herald
            .post("/v1/notifications", &notification(&id, "normal"))
            .await;
        herald
            .wait_for_notification(&id, Duration::from_secs(10), crate::harness::all_delivered)
            .await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while actor_running(&herald).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the actor did not stop when idle"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(receiver.received().len(), 2);
    // An API call that needs the connector starts it too.
    let (status, check) = herald
        .post("/v1/integrations/hook/connection-check", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert!(actor_running(&herald).await);
}

async fn actor_running(herald: &Harness) -> bool {
    herald.get("/v1/integrations/hook").await.1["actorRunning"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn the_organizations_integrations_are_listed_a_page_at_a_time_and_filtered() {
    let configured_receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let herald = configured(&configured_receiver).await;
    for id in ["b-hook", "a-hook", "c-hook"] {
        let (status, _) = herald
            .post("/v1/integrations", &hook(id, "https://hooks.example.com/w"))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let ids = |page: &Value| -> Vec<String> {
        page["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["integrationId"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, first) = herald.get("/v1/integrations?limit=2").await;
    assert_eq!(
        (ids(&first), first["nextAfter"].as_str()),
        (
            vec!["a-hook".to_owned(), "b-hook".to_owned()],
            Some("b-hook")
        )
    );
    let (_, second) = herald.get("/v1/integrations?limit=2&after=b-hook").await;
    assert_eq!(
        (ids(&second), second["nextAfter"].clone()),
        (
            vec!["c-hook".to_owned(), "configured-hook".to_owned()],
            Value::Null
        )
    );
    let (_, crms) = herald.get("/v1/integrations?integrationType=crm").await;
    assert!(ids(&crms).is_empty());
    let (_, hooks) = herald.get("/v1/integrations?system=webhook").await;
    assert_eq!(ids(&hooks).len(), 4);
    let venue = herald.key_with_role("venue", Role::Admin).await;
    let (_, theirs) = herald.get_as(&venue, "/v1/integrations").await;
    assert!(
        ids(&theirs).is_empty(),
        "another organization's are not listed"
    );
    let (status, answer) = herald.get("/v1/integrations?limit=0").await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("limit"))
    );
}

/// The daemon as a process of its own, logging everything (`RUST_LOG=debug`), is given a secret
/// through the API, uses it, is refused by the vendor, has it rotated and removed: the secret is
/// in no log line and no metric.
#[tokio::test]
async fn a_secret_given_through_the_api_is_never_logged_nor_in_a_metric() {
    let receiver = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let secrets = crate::harness::write_secrets(data.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = data.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\ndata_dir = \"{}\"\n[security]\nallow_private_destinations = true\ncredentials_key = {{ file = \"{}\" }}\n[supervision]\nidle_after = \"100ms\"\n[[organizations]]\nid = \"studio\"\n",
            data.path().join("store").display(),
            secrets.join("credentials_key").display(),
        ),
    )
    .unwrap();
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["keys", "create", "--organization", "studio", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let daemon = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let call = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let created = call(
        reqwest::Method::POST,
        "/v1/integrations?verify=true",
        hook("hook", &receiver.url()),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let delivered: Value = call(
        reqwest::Method::POST,
        "/v1/routings?wait=10s",
        json!({"routingId": "r-1", "sourceNotification": notification("n-1", "normal"), "targetSystems": [{"systemId": "hook"}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(delivered["overallStatus"], "success", "{delivered}");
    // The vendor refuses the next one; the secret is rotated; the integration goes.
    receiver
        .faults
        .go_down(401, json!({"error": "bad signature"}));
    call(
        reqwest::Method::POST,
        "/v1/routings?wait=10s",
        json!({"routingId": "r-2", "sourceNotification": notification("n-2", "normal"), "targetSystems": [{"systemId": "hook"}]}),
    )
    .await
    .unwrap();
    let rotated = call(
        reqwest::Method::PUT,
        "/v1/integrations/hook/credentials",
        json!({"settings": {"secret": {"value": ROTATED_SECRET}}}),
    )
    .await
    .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("herald_deliveries_total"), "{metrics}");
    let removed = call(
        reqwest::Method::DELETE,
        "/v1/integrations/hook",
        Value::Null,
    )
    .await
    .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);

    // SIGTERM: a clean stop, then everything it said.
    std::process::Command::new("kill")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    let output = daemon.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("DEBUG"),
        "the daemon logged at debug level: {said}"
    );
    for secret in [API_SECRET, ROTATED_SECRET] {
        assert!(!said.contains(secret), "a secret in the log:\n{said}");
        assert!(!metrics.contains(secret), "a secret in the metrics");
        // Nor its base64 body, nor its first characters after the prefix.
        let body = secret.trim_start_matches("whsec_");
        assert!(
            !said.contains(&body[..16]),
            "part of a secret in the log:\n{said}"
        );
    }
}

#[tokio::test]
async fn a_removed_integrations_turn_in_a_sequence_is_dead_lettered_and_the_sequence_goes_on() {
    let first = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let last = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let removed = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration(
            "first",
            "studio",
            &first.url(),
            "retry = { initial = \"20ms\", max_delay = \"50ms\" }"
        ),
        webhook_integration("last", "studio", &last.url(), ""),
    );
    let herald = Harness::start(&body, "studio").await;
    let (status, _) = herald
        .post("/v1/integrations", &hook("middle", &removed.url()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The first target is down, so the middle one waits its turn, held.
    first.faults.go_down(503, json!({"error": "down"}));
    let (status, _) = herald
        .post(
            "/v1/routings?wait=0s",
            &json!({
                "routingId": "in-turn",
                "sourceNotification": notification("in-turn", "normal"),
                "targetSystems": [{"systemId": "first"}, {"systemId": "middle"}, {"systemId": "last"}],
                "deliveryCoordination": {"mode": "sequential"},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    herald
        .wait_for_notification("in-turn", Duration::from_secs(10), |record| {
            record["targets"][0]["state"] == "retrying" && record["targets"][1]["state"] == "held"
        })
        .await;
    let (status, _, answer) = send(
        &herald,
        reqwest::Method::DELETE,
        "/v1/integrations/middle",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    first.faults.come_back();
    let record = herald
        .wait_for_notification("in-turn", Duration::from_secs(10), |record| {
            record["targets"][2]["state"] == "delivered"
        })
        .await;
    let states: Vec<(&str, &str)> = record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["integrationId"].as_str().unwrap(),
                t["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("first", "delivered"),
            ("middle", "dead_lettered"),
            ("last", "delivered")
        ]
    );
    assert_eq!(record["targets"][1]["lastError"], "integration removed");
    assert!(removed.received().is_empty());
}

#[tokio::test]
async fn an_integration_read_back_is_created_again_with_the_routes_of_its_notification_mapping() {
    let configured_receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), API_SECRET)
        .await
        .unwrap();
    let herald = configured(&configured_receiver).await;
    let mut body = hook("mapped-hook", &receiver.url());
    body["notificationMapping"] = json!([
        {"routeId": "urgent-to-mapped", "types": ["timeline_change"], "minPriority": "high"},
        {"route": "big weddings", "when": "wedding.guestCount > 100"}
    ]);
    let (status, created) = herald.post("/v1/integrations", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let mapping = &created["configuration"]["notificationMapping"];
    assert_eq!(mapping.as_array().unwrap().len(), 2, "{created}");
    assert_eq!(mapping[0]["routeId"], "urgent-to-mapped");
    assert_eq!(mapping[0]["route"], "notifications for mapped-hook");
    assert_eq!(mapping[0]["types"], json!(["timeline_change"]));
    assert_eq!(mapping[1]["route"], "big weddings");
    assert_eq!(mapping[1]["when"], "wedding.guestCount > 100");
    assert!(mapping[1]["routeId"].as_str().unwrap().starts_with("rt_"));

    // The routes route: an urgent timeline change reaches the new integration (and the
    // configured one).
    herald
        .post("/v1/notifications", &notification("alarm", "emergency"))
        .await;
    let record = herald
        .wait_for_notification(
            "alarm",
            Duration::from_secs(10),
            crate::harness::all_delivered,
        )
        .await;
    assert_eq!(targets_of(&record), ["configured-hook", "mapped-hook"]);

    // What Herald answered, sent again under another id (as WedSync copies a supplier's setup),
    // is taken: its security configuration as Herald has it, its mappings as new routes.
    let (_, read) = herald.get("/v1/integrations/mapped-hook").await;
    let mut copy = hook("copied-hook", &receiver.url());
    copy["securityConfiguration"] = read["configuration"]["securityConfiguration"].clone();
    copy["notificationMapping"] = json!(read["configuration"]["notificationMapping"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mapping| {
            let mut mapping = mapping.clone();
            mapping.as_object_mut().unwrap().remove("routeId");
            mapping
        })
        .collect::<Vec<_>>());
    let (status, copied) = herald.post("/v1/integrations", &copy).await;
    assert_eq!(status, StatusCode::CREATED, "{copied}");
    assert_eq!(
        copied["configuration"]["notificationMapping"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, routes) = herald.get("/v1/routes").await;
    assert_eq!(routes["routes"].as_array().unwrap().len(), 5, "{routes}");
}
