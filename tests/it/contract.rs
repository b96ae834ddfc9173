//! The OpenAPI document WedSync codes against: served at `/openapi.json` without a key, the same
//! document `herald openapi` prints, and its request examples are accepted as they are and do
//! what they say (an integration, a route that sends to it, a notification the route takes).

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::Harness;

/// The example of a component schema, as the document gives it.
fn example<'a>(document: &'a Value, schema: &str) -> &'a Value {
    let example = &document["components"]["schemas"][schema]["example"];
    assert!(example.is_object(), "{schema} has an example");
    example
}

#[tokio::test]
async fn the_documents_examples_create_an_integration_and_a_route_and_deliver_a_notification() {
    let herald = Harness::start("[[organizations]]\nid = \"studio\"\n", "studio").await;
    let response = reqwest::get(format!("{}/openapi.json", herald.base))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let document: Value = response.json().await.unwrap();
    assert_eq!(
        document,
        serde_json::to_value(herald::api::openapi_document()).unwrap()
    );
    assert_eq!(document["openapi"], "3.1.0");

    let (status, integration) = herald
        .post("/v1/integrations", example(&document, "IntegrationRequest"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    assert_eq!(integration["integrationId"], "studio-webhook");
    assert_eq!(integration["source"], "api");

    let (status, route) = herald
        .post("/v1/routes", example(&document, "RouteRequest"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    assert_eq!(route["targets"], serde_json::json!(["studio-webhook"]));

    let (status, accepted) = herald
        .post(
            "/v1/notifications",
            example(&document, "WeddingNotification"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    let deliveries = accepted["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{accepted}");
    assert_eq!(deliveries[0]["integrationId"], "studio-webhook");
    assert_eq!(deliveries[0]["route"], "primary");
}
