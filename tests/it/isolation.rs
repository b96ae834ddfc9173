//! Organization isolation: a key sees only its organization's notifications, dead letters and
//! integrations, on every endpoint; requests without a valid key are refused.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{
    dead_lettered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

#[tokio::test]
async fn every_endpoint_is_scoped_to_the_key_organization() {
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    // Every delivery to the studio's hook is refused permanently, to produce a dead letter.
    receiver
        .faults
        .go_down(422, json!({"error": "unprocessable"}));
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n[[organizations]]\nid = \"venue\"\n{}{}{}{}",
        webhook_integration("studio-hook", "studio", &receiver.url(), ""),
        webhook_integration("venue-hook", "venue", &receiver.url(), ""),
        route("studio", &["studio-hook"], ""),
        route("venue", &["venue-hook"], ""),
    );
    let herald = Harness::start(&body, "studio").await;
    let venue_key = herald.key_for("venue").await;

    assert_eq!(
        herald
            .post("/v1/notifications", &notification("shared-id", "normal"))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let record = herald
        .wait_for_notification("shared-id", Duration::from_secs(10), dead_lettered)
        .await;
    let dead_id = record["targets"][0]["deliveryId"].as_i64().unwrap();

    // Reads of the other organization's data are 404s, not 403s: existence is not revealed.
    assert_eq!(
        herald
            .get_as(&venue_key, "/v1/notifications/shared-id")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        herald
            .get_as(&venue_key, "/v1/integrations/studio-hook/health")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // The actions on an integration are the owner's only.
    for action in ["connection-check", "subscriptions", "oauth/authorize"] {
        let (status, _) = herald
            .post_as(
                &venue_key,
                &format!("/v1/integrations/studio-hook/{action}"),
                &json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    let described = herald
        .get_as(&venue_key, "/v1/integrations/studio-hook")
        .await;
    assert_eq!(described.0, StatusCode::NOT_FOUND);
    assert_eq!(
        herald.get("/v1/integrations/studio-hook").await.0,
        StatusCode::OK
    );
    let (_, integrations) = herald.get_as(&venue_key, "/v1/integrations").await;
    let ids: Vec<&str> = integrations["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["integrationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["venue-hook"]);
    let (_, dead) = herald.get_as(&venue_key, "/v1/dead-letters").await;
    assert!(dead["deadLetters"].as_array().unwrap().is_empty());
    let (_, studio_dead) = herald.get("/v1/dead-letters").await;
    assert_eq!(
        studio_dead["deadLetters"][0]["deliveryId"].as_i64(),
        Some(dead_id)
    );
    let (status, _) = herald
        .post_as(
            &venue_key,
            &format!("/v1/dead-letters/{dead_id}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Writes: the same notificationId is a different notification in another organization, and
    // another organization's integration cannot be targeted, nor its organizationId claimed.
    let (status, answer) = herald
        .post_as(
            &venue_key,
            "/v1/notifications",
            &notification("shared-id", "normal"),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::ACCEPTED, Some("accepted"))
    );
    let routing = json!({"routingId": "r-1", "sourceNotification": notification("r-src", "high"), "targetSystems": [{"integrationId": "studio-hook"}]});
    let (status, answer) = herald.post_as(&venue_key, "/v1/routings", &routing).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["error"]["field"], "targetSystems[0].systemId",
        "named by the seed's name for the field, which integrationId stands for"
    );
    // A routing is read back only by its own organization.
    let own = json!({"routingId": "r-studio", "sourceNotification": notification("r-own", "high"), "targetSystems": [{"systemId": "studio-hook"}]});
    // Waited for, so the answer does not race the delivery (dead-lettered by the 422 at once).
    let (status, answer) = herald.post("/v1/routings?wait=10s", &own).await;
    assert_eq!(
        (status, answer["overallStatus"].as_str()),
        (StatusCode::OK, Some("failed")),
        "{answer}"
    );
    assert_eq!(herald.get("/v1/routings/r-studio").await.0, StatusCode::OK);
    assert_eq!(
        herald.get_as(&venue_key, "/v1/routings/r-studio").await.0,
        StatusCode::NOT_FOUND
    );
    let mut claimed = notification("claimed", "normal");
    claimed["organizationId"] = json!("studio");
    let (status, answer) = herald
        .post_as(&venue_key, "/v1/notifications", &claimed)
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("organizationId"))
    );

    // No key, or a wrong one, is a 401 on every /v1 route.
    for path in [
        "/v1/notifications/shared-id",
        "/v1/dead-letters",
        "/v1/integrations",
        "/v1/integrations/studio-hook",
        "/v1/integrations/studio-hook/health",
        "/v1/routings/r-studio",
    ] {
        let response = herald
            .client
            .get(format!("{}{path}", herald.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a key"
        );
        assert_eq!(
            herald.get_as("hk_not-a-real-key", path).await.0,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong key"
        );
    }
    for path in [
        "/v1/notifications",
        "/v1/notifications/batch",
        "/v1/routings",
        &format!("/v1/dead-letters/{dead_id}/replay"),
    ] {
        assert_eq!(
            herald.post_as("hk_wrong", path, &json!({})).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
}
