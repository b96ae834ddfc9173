//! Stripe end to end against its simulator: payment events signed with `Stripe-Signature`
//! becoming WedSync notifications routed to the organization's other systems once per event
//! (a retried event a duplicate), a payment for a reminder acknowledging it, stale, forged and
//! rolled signatures, and the wedding written onto the couple's customer without a second
//! customer on a retry.

use herald::sandbox::any_local_port;
use herald::vendors::stripe::FakeStripe;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    all_delivered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

const KEY: &str = "sk_test_studioStripeKey0001";
const SIGNING: &str = "whsec_studio_endpoint_secret";

struct Environment {
    herald: Harness,
    stripe: FakeStripe,
    receiver: WebhookReceiver,
    _secrets: tempfile::TempDir,
}

async fn start() -> Environment {
    let stripe = FakeStripe::start(any_local_port(), KEY).await.unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("key"), KEY).unwrap();
    std::fs::write(secrets.path().join("signing"), SIGNING).unwrap();
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"payments\"\norganization = \"studio\"\nkind = \"stripe\"\n\
         settings = {{ api_url = \"{}\", secret_key = {{ file = \"{dir}/key\" }}, webhook = {{ signing_secret = {{ file = \"{dir}/signing\" }} }} }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}{}",
        stripe.api_url(),
        webhook_integration("studio-hook", "studio", &receiver.url(), ""),
        route("studio", &["payments", "studio-hook"], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        stripe,
        receiver,
        _secrets: secrets,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn payment_intent(reminder: Option<&str>) -> Value {
    let mut metadata = json!({"wedding_id": "w-2027-0612", "wedding_date": "2027-06-12", "venue": "Kew Gardens", "couple_names": "Sam & Alex"});
    if let Some(reminder) = reminder {
        metadata["wedsync_notification_id"] = json!(reminder);
    }
    json!({
        "id": "pi_3QxWedding0001",
        "object": "payment_intent",
        "amount": 125000,
        "amount_received": 125000,
        "currency": "gbp",
        "customer": "cus_Q0000000000001",
        "description": "Balance for the wedding film",
        "receipt_email": "sam@example.com",
        "status": "succeeded",
        "metadata": metadata,
    })
}

#[tokio::test]
async fn a_payment_event_becomes_a_notification_once_and_acknowledges_its_reminder() {
    let env = start().await;
    let url = format!("{}/inbound/stripe/payments/events", env.herald.base);
    // The reminder WedSync sent earlier, delivered to the studio's webhook.
    let mut reminder = notification("reminder-1", "normal");
    reminder["type"] = json!("payment_due");
    reminder["contacts"] = json!([{"name": "Sam", "email": "sam@example.com", "role": "couple"}]);
    env.herald.notify(&reminder, all_delivered).await;

    let (status, answer) = env
        .stripe
        .send_event(
            &url,
            "evt_1QxPaid0001",
            "payment_intent.succeeded",
            payment_intent(Some("reminder-1")),
            &[SIGNING],
            now(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["notifications"][0]["notificationId"],
        "stripe-evt_1QxPaid0001"
    );
    assert_eq!(answer["notifications"][0]["status"], "accepted");
    let record = env
        .herald
        .wait_for_notification(
            "stripe-evt_1QxPaid0001",
            std::time::Duration::from_secs(10),
            all_delivered,
        )
        .await;
    let targets: Vec<&str> = record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|target| target["integrationId"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["studio-hook"],
        "routed to the others, never back to Stripe"
    );
    let delivered = env.receiver.received();
    let posted = &delivered
        .iter()
        .find(|m| m.body["data"]["notificationId"] == "stripe-evt_1QxPaid0001")
        .expect("the studio's webhook got the payment")
        .body["data"];
    assert_eq!(posted["type"], "payment_received");
    assert_eq!(
        posted["title"],
        "Payment received: 1,250.00 GBP from Sam & Alex"
    );
    assert_eq!(posted["weddingContext"]["weddingDate"], "2027-06-12");
    assert_eq!(posted["contacts"][0]["email"], "sam@example.com");
    assert_eq!(posted["metadata"]["stripeObjectId"], "pi_3QxWedding0001");

    // Stripe retries the same event: a duplicate, nothing routed again.
    let (status, again) = env
        .stripe
        .send_event(
            &url,
            "evt_1QxPaid0001",
            "payment_intent.succeeded",
            payment_intent(Some("reminder-1")),
            &[SIGNING],
            now(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["notifications"][0]["status"], "duplicate");

    // The reminder is acknowledged as paid, by the payer.
    let acknowledged = env
        .herald
        .wait_for_notification("reminder-1", std::time::Duration::from_secs(10), |record| {
            record["acknowledgements"]
                .as_array()
                .is_some_and(|acks| !acks.is_empty())
        })
        .await;
    let acks = acknowledged["acknowledgements"].as_array().unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["integrationId"], "payments");
    assert_eq!(acks[0]["actionId"], "paid");
    assert_eq!(acks[0]["actor"], "sam@example.com");

    // A failed invoice is a high-priority payment_failed; other events are left.
    let invoice = json!({"id": "in_1QxFailed", "object": "invoice", "amount_due": 50000, "currency": "usd", "customer_email": "alex@example.com", "customer_name": "Alex", "attempt_count": 2, "metadata": {}});
    let (status, failed) = env
        .stripe
        .send_event(
            &url,
            "evt_1QxFailed001",
            "invoice.payment_failed",
            invoice,
            &[SIGNING],
            now(),
        )
        .await;
    assert_eq!(status, 200, "{failed}");
    let failed = env
        .herald
        .wait_for_notification(
            "stripe-evt_1QxFailed001",
            std::time::Duration::from_secs(10),
            all_delivered,
        )
        .await;
    assert_eq!(failed["notification"]["priority"], "high");
    assert_eq!(failed["notification"]["type"], "payment_failed");
    assert_eq!(
        failed["notification"]["title"],
        "Payment failed: 500.00 USD from Alex"
    );
    let (status, ignored) = env
        .stripe
        .send_event(
            &url,
            "evt_1QxOther0001",
            "customer.created",
            json!({"id": "cus_1"}),
            &[SIGNING],
            now(),
        )
        .await;
    assert_eq!((status, ignored), (200, Value::Null));
}

#[tokio::test]
async fn stale_forged_and_rolled_signatures() {
    let env = start().await;
    let url = format!("{}/inbound/stripe/payments/events", env.herald.base);
    for (id, secrets, at, expected) in [
        ("evt_1QxForged", vec!["whsec_guessed"], now(), 401),
        ("evt_1QxStale", vec![SIGNING], now() - 301, 401),
        ("evt_1QxFuture", vec![SIGNING], now() + 400, 401),
        (
            "evt_1QxRolled",
            vec!["whsec_old_secret", SIGNING],
            now(),
            200,
        ),
    ] {
        let (status, answer) = env
            .stripe
            .send_event(
                &url,
                id,
                "payment_intent.succeeded",
                payment_intent(None),
                &secrets,
                at,
            )
            .await;
        assert_eq!(status, expected, "{id}: {answer}");
        let (status, _) = env
            .herald
            .get(&format!("/v1/notifications/stripe-{id}"))
            .await;
        let kept = if expected == 200 {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, kept, "{id}");
    }
}

#[tokio::test]
async fn the_wedding_goes_onto_the_couples_customer_once() {
    let env = start().await;
    let existing = env.stripe.add_customer("alex@example.com", "Alex");
    // The first write's answer is lost: the retry with the same Idempotency-Key gets Stripe's
    // first answer instead of a second customer.
    let mut n = notification("cust-1", "normal");
    n["contacts"] = json!([{"name": "Sam", "email": "sam@example.com", "role": "couple"}]);
    env.stripe.faults.respond_next(
        200,
        &[],
        json!({"object": "list", "url": "/v1/customers", "has_more": false, "data": []}),
    );
    env.herald.notify(&n, all_delivered).await;
    let customers = env.stripe.customers();
    assert_eq!(customers.len(), 2, "{customers:?}");
    let sam = &customers[1];
    assert_eq!(sam["email"], "sam@example.com");
    assert_eq!(sam["metadata"]["wedsync_wedding_date"], "2027-06-12");
    assert_eq!(sam["metadata"]["wedsync_venue"], "Kew Gardens");
    assert_eq!(sam["metadata"]["wedsync_last_notification_id"], "cust-1");

    let mut moved = notification("cust-2", "normal");
    moved["contacts"] = json!([{"name": "Alex", "email": "alex@example.com", "role": "couple"}]);
    moved["weddingContext"]["weddingDate"] = json!("2027-07-03");
    let record = env.herald.notify(&moved, all_delivered).await;
    assert_eq!(record["targets"][0]["receipt"], existing);
    let alex = env
        .stripe
        .customers()
        .into_iter()
        .find(|c| c["id"] == existing)
        .unwrap();
    assert_eq!(alex["metadata"]["wedsync_wedding_date"], "2027-07-03");
    assert_eq!(alex["name"], "Alex");
}
