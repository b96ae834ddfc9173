//! HubSpot's webhooks into Herald against the simulator: a deal moved to a stage and a new
//! contact, read from HubSpot and routed as WedSync notifications to the organization's other
//! targets (never back to HubSpot), once however often HubSpot repeats the delivery; requests
//! that are forged, unsigned or older than five minutes are refused.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::hubspot::FakeHubSpot;
use herald::vendors::webhook::WebhookReceiver;
use serde_json::{json, Value};

use crate::harness::{eventually, route, webhook_integration, Harness, WEBHOOK_SECRET};

const TOKEN: &str = "pat-na1-99999999-2222-3333-4444-555555555555";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn deal_moves_and_new_contacts_become_notifications_once_and_forgeries_are_refused() {
    let hubspot = FakeHubSpot::start(any_local_port(), TOKEN, 100)
        .await
        .unwrap();
    let portal = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), TOKEN).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"crm-hooks\"\norganization = \"studio\"\nkind = \"hubspot\"\n\
         settings = {{ base_url = \"{}\", token = {{ file = \"{}\" }}, webhooks = {{ public_url = \"{{herald}}\", client_secret = {{ file = \"{{secrets}}/webhook\" }}, deal_stages = {{ closedwon = \"booking_confirmed\" }} }} }}\n\
         {}\n{}",
        hubspot.base_url(),
        token.path().display(),
        webhook_integration("portal", "studio", &portal.url(), ""),
        route("studio", &["crm-hooks", "portal"], ""),
    );
    let herald = Harness::start(&body, "studio").await;
    let target = format!("{}/inbound/hubspot/crm-hooks/webhooks", herald.base);

    let deal = hubspot.add_deal("Sam & Alex, Kew Gardens", "appointmentscheduled");
    let contact = hubspot.add_contact(
        "alex@example.com",
        json!({"firstname": "Alex", "lastname": "Morgan", "wedding_date": "2027-06-12", "wedding_venue": "Kew Gardens"}),
    );
    let events = [
        hubspot.move_deal(&deal, "closedwon"),
        hubspot.creation_event("contact.creation", &contact),
        // A change Herald has no use for is answered and left.
        json!({"eventId": 1, "subscriptionId": 4_105_002, "portalId": 62515, "appId": 3001, "occurredAt": now_ms(), "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 7, "propertyName": "firstname", "propertyValue": "Al", "changeSource": "CRM"}),
    ];
    assert_eq!(
        hubspot
            .send_webhook(&target, WEBHOOK_SECRET, &events, now_ms())
            .await,
        200
    );
    eventually(
        Duration::from_secs(10),
        "two notifications at the portal",
        || portal.received().len() == 2,
    )
    .await;
    let mut received: Vec<Value> = portal
        .received()
        .into_iter()
        .map(|message| message.body["data"].clone())
        .collect();
    received.sort_by_key(|n| n["type"].as_str().unwrap_or_default().to_owned());
    let (booked, contact_created) = (&received[0], &received[1]);
    assert_eq!(booked["type"], "booking_confirmed");
    assert_eq!(
        booked["title"],
        "HubSpot: Sam & Alex, Kew Gardens moved to closedwon"
    );
    assert_eq!(booked["metadata"]["hubspot"]["objectId"], deal);
    assert_eq!(
        booked["metadata"]["hubspot"]["properties"]["dealstage"],
        "closedwon"
    );
    assert_eq!(contact_created["type"], "contact_created");
    assert_eq!(contact_created["title"], "HubSpot: new contact Alex Morgan");
    assert_eq!(
        contact_created["contacts"],
        json!([{"contactId": contact, "name": "Alex Morgan", "email": "alex@example.com", "role": "hubspot_contact"}])
    );
    assert_eq!(
        contact_created["weddingContext"],
        json!({"weddingDate": "2027-06-12", "venue": "Kew Gardens"})
    );
    // Routed to the organization's other targets only: never back into HubSpot.
    let id = booked["notificationId"].as_str().unwrap();
    let record = herald.get(&format!("/v1/notifications/{id}")).await.1;
    let targets: Vec<&str> = record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["integrationId"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["portal"], "{record}");

    // HubSpot repeats a delivery it thinks failed: the same notifications, nothing new.
    assert_eq!(
        hubspot
            .send_webhook(&target, WEBHOOK_SECRET, &events[..2], now_ms())
            .await,
        200
    );
    // Forged, stale and unsigned deliveries are refused.
    assert_eq!(
        hubspot
            .send_webhook(&target, "not-the-secret", &events[..1], now_ms())
            .await,
        401
    );
    assert_eq!(
        hubspot
            .send_webhook(
                &target,
                WEBHOOK_SECRET,
                &events[..1],
                now_ms() - 6 * 60 * 1000
            )
            .await,
        401
    );
    let unsigned = herald
        .client
        .post(&target)
        .body(Value::Array(events[..1].to_vec()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), reqwest::StatusCode::UNAUTHORIZED);
    // The repeat was taken as the same two notifications: nothing more reached the portal.
    assert_eq!(portal.received().len(), 2);
    let inbound = herald
        .metrics()
        .await
        .lines()
        .filter(|line| line.starts_with("herald_inbound_total{") && line.contains("crm-hooks"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        inbound
            .iter()
            .any(|line| line.contains("outcome=\"duplicate\"") && line.ends_with(" 2")),
        "{inbound:?}"
    );
}
