//! Roles: an API key is an `admin`, a `sender` or a `viewer`; a key without the role a call needs
//! gets 403 naming it. Admins manage the organization's keys through the API (`/v1/keys`): a new
//! key is shown once, a revoked key stops working at once, the last admin key stays, and one
//! organization never sees another's keys. The API's OpenAPI document lists exactly these calls, each
//! with the role it needs.

use std::collections::BTreeSet;

use herald::sandbox::any_local_port;
use herald::store::Role;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{notification, route, webhook_integration, Harness, WEBHOOK_SECRET};

async fn two_organizations() -> (Harness, WebhookReceiver) {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n[[organizations]]\nid = \"venue\"\n{}{}{}{}",
        webhook_integration("studio-hook", "studio", &receiver.url(), ""),
        webhook_integration("venue-hook", "venue", &receiver.url(), ""),
        route("studio", &["studio-hook"], ""),
        route("venue", &["venue-hook"], ""),
    );
    (Harness::start(&body, "studio").await, receiver)
}

/// Sends `method path` with `key` and a JSON body; the status and the JSON answer.
async fn call(
    herald: &Harness,
    key: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let (status, _, answer) = herald.request(key, method, path, &[], body).await;
    (status, answer)
}

/// Every `/v1` call there is, with the role it needs.
fn every_call() -> Vec<(Method, &'static str, Role)> {
    vec![
        (Method::POST, "/v1/notifications", Role::Sender),
        (Method::POST, "/v1/notifications/batch", Role::Sender),
        (Method::GET, "/v1/notifications/any", Role::Viewer),
        (
            Method::GET,
            "/v1/notifications/any/engagement",
            Role::Viewer,
        ),
        (
            Method::POST,
            "/v1/notifications/any/acknowledge",
            Role::Sender,
        ),
        (Method::POST, "/v1/routings", Role::Sender),
        (Method::GET, "/v1/routings/any", Role::Viewer),
        (Method::GET, "/v1/dead-letters", Role::Viewer),
        (Method::POST, "/v1/dead-letters/1/replay", Role::Sender),
        (Method::GET, "/v1/integrations", Role::Viewer),
        (Method::POST, "/v1/integrations", Role::Admin),
        (Method::DELETE, "/v1/integrations/studio-hook", Role::Admin),
        (Method::PATCH, "/v1/integrations/studio-hook", Role::Admin),
        (
            Method::PUT,
            "/v1/integrations/studio-hook/credentials",
            Role::Admin,
        ),
        (Method::GET, "/v1/integrations/studio-hook", Role::Viewer),
        (
            Method::GET,
            "/v1/integrations/studio-hook/health",
            Role::Viewer,
        ),
        (
            Method::POST,
            "/v1/integrations/studio-hook/oauth/authorize",
            Role::Admin,
        ),
        (
            Method::POST,
            "/v1/integrations/studio-hook/subscriptions",
            Role::Admin,
        ),
        (
            Method::POST,
            "/v1/integrations/studio-hook/connection-check",
            Role::Admin,
        ),
        (Method::POST, "/v1/keys", Role::Admin),
        (Method::GET, "/v1/keys", Role::Admin),
        (Method::DELETE, "/v1/keys/0000000000000000", Role::Admin),
        (Method::GET, "/v1/audit", Role::Admin),
        (Method::GET, "/v1/routes", Role::Viewer),
        (Method::POST, "/v1/routes", Role::Admin),
        (Method::GET, "/v1/routes/any", Role::Viewer),
        (Method::PATCH, "/v1/routes/any", Role::Admin),
        (Method::DELETE, "/v1/routes/any", Role::Admin),
    ]
}

#[tokio::test]
async fn a_key_without_the_role_a_call_needs_is_refused_naming_the_role() {
    let (herald, _receiver) = two_organizations().await;
    for held in Role::ALL {
        let key = herald.key_with_role("studio", held).await;
        for (method, path, needed) in every_call() {
            let (status, answer) = call(&herald, &key, method.clone(), path, json!({})).await;
            if held >= needed {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{held} {method} {path}: {answer}"
                );
                assert_ne!(
                    answer["error"]["message"], "route not found",
                    "{method} {path} is served"
                );
                assert_ne!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{held} {method} {path}: {answer}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{held} {method} {path}: {answer}"
                );
                assert_eq!(answer["error"]["code"], "forbidden");
                assert_eq!(
                    answer["error"]["requiredRole"],
                    needed.as_str(),
                    "{method} {path}"
                );
                assert_eq!(
                    answer["error"]["message"],
                    format!("this call needs an API key with the {needed} role; this key is a {held} key")
                );
            }
        }
    }
    // The calls listed above are the API's OpenAPI document's operations, each with the role
    // it needs as its security scope, and the table the daemon enforces agrees.
    let listed: BTreeSet<(String, String, String)> = every_call()
        .into_iter()
        .map(|(method, path, needed)| {
            let template = path
                .replace("/notifications/any", "/notifications/{notificationId}")
                .replace("/routings/any", "/routings/{routingId}")
                .replace("/routes/any", "/routes/{routeId}")
                .replace("/dead-letters/1", "/dead-letters/{deliveryId}")
                .replace("/integrations/studio-hook", "/integrations/{integrationId}")
                .replace("/keys/0000000000000000", "/keys/{keyId}");
            assert_eq!(
                herald::api::required_role(&method, &template),
                needed,
                "{method} {path}"
            );
            (method.to_string(), template, needed.as_str().to_owned())
        })
        .collect();
    let document: Value = reqwest::get(format!("{}/openapi.json", herald.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let scopes = &operation["security"][0]["apiKey"];
            assert_eq!(scopes.as_array().map(Vec::len), Some(1), "{method} {path}");
            documented.insert((
                method.to_uppercase(),
                path.clone(),
                scopes[0].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(documented, listed);
    // A sender sends; a viewer reads what was sent and may not send.
    let sender = herald.key_with_role("studio", Role::Sender).await;
    let viewer = herald.key_with_role("studio", Role::Viewer).await;
    let (status, _) = herald
        .post_as(
            &sender,
            "/v1/notifications",
            &notification("by-sender", "normal"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        herald
            .get_as(&viewer, "/v1/notifications/by-sender")
            .await
            .0,
        StatusCode::OK
    );
    let (status, answer) = herald
        .post_as(
            &viewer,
            "/v1/notifications",
            &notification("by-viewer", "normal"),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["requiredRole"]),
        (StatusCode::FORBIDDEN, &json!("sender"))
    );
    assert_eq!(
        herald.get("/v1/notifications/by-viewer").await.0,
        StatusCode::NOT_FOUND,
        "nothing was taken"
    );
}

#[tokio::test]
async fn an_admin_manages_the_organizations_keys() {
    let (herald, _receiver) = two_organizations().await;
    let admin = herald.key.clone();

    // Bad input is named.
    for (body, field) in [
        (json!({"label": "ci", "role": "owner"}), "role"),
        (json!({"role": "sender"}), "label"),
        (json!({"label": "  ", "role": "sender"}), "label"),
        (
            json!({"label": "ci", "role": "sender", "scopes": []}),
            "scopes",
        ),
    ] {
        let (status, answer) = call(&herald, &admin, Method::POST, "/v1/keys", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }

    // A new key is shown once, works at once with its role, and is listed without its value.
    let (status, created) = call(
        &herald,
        &admin,
        Method::POST,
        "/v1/keys",
        json!({"label": "wedsync sender", "role": "sender"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    assert_eq!(
        (created["label"].as_str(), created["role"].as_str()),
        (Some("wedsync sender"), Some("sender"))
    );
    let (status, _) = herald
        .post_as(
            &key,
            "/v1/notifications",
            &notification("from-new-key", "normal"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, listed) = call(&herald, &admin, Method::GET, "/v1/keys", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !listed.to_string().contains(&key),
        "the key is never shown again: {listed}"
    );
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyId"] == key_id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (entry["label"].as_str(), entry["role"].as_str()),
        (Some("wedsync sender"), Some("sender"))
    );
    assert_eq!(
        listed["keys"].as_array().unwrap().len(),
        2,
        "the test's admin key and the new one"
    );

    // Another organization's admin neither sees nor revokes it.
    let venue_admin = herald.key_for("venue").await;
    let (_, venue_keys) = call(&herald, &venue_admin, Method::GET, "/v1/keys", Value::Null).await;
    assert_eq!(
        venue_keys["keys"].as_array().unwrap().len(),
        1,
        "{venue_keys}"
    );
    let (status, _) = call(
        &herald,
        &venue_admin,
        Method::DELETE,
        &format!("/v1/keys/{key_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Revoked, it stops working on this node at once.
    let (status, _) = call(
        &herald,
        &admin,
        Method::DELETE,
        &format!("/v1/keys/{key_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = herald
        .post_as(
            &key,
            "/v1/notifications",
            &notification("after-revoke", "normal"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &herald,
        &admin,
        Method::DELETE,
        &format!("/v1/keys/{key_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone is gone");

    // The organization's last admin key stays; with a second admin, the first may go.
    let admin_id = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "admin")
        .unwrap()["keyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, answer) = call(
        &herald,
        &admin,
        Method::DELETE,
        &format!("/v1/keys/{admin_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (_, second) = call(
        &herald,
        &admin,
        Method::POST,
        "/v1/keys",
        json!({"label": "second admin", "role": "admin"}),
    )
    .await;
    let (status, _) = call(
        &herald,
        &admin,
        Method::DELETE,
        &format!("/v1/keys/{admin_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&herald, &admin, Method::GET, "/v1/keys", Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &herald,
        second["key"].as_str().unwrap(),
        Method::GET,
        "/v1/keys",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
