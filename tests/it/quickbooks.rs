//! QuickBooks Online end to end against Intuit simulated: a company connected through Herald
//! (the rotating refresh token sealed), the couple found or created as a customer, a memo on the
//! customer, an invoice and a payment recorded when WedSync says so (a retried payment not
//! recorded twice), a malformed amount refused by name, and a payment made in QuickBooks coming
//! back through Intuit's signed webhook as a payment notification once.

use herald::sandbox::any_local_port;
use herald::vendors::quickbooks::FakeQuickBooks;
use herald::vendors::webhook::WebhookReceiver;
use serde_json::{json, Value};

use crate::harness::{
    all_delivered, notification, route, webhook_integration, Harness, WEBHOOK_SECRET,
};

const REALM: &str = "9130000000000777";
const CLIENT_ID: &str = "ABstudioIntuitApp";
const CLIENT_SECRET: &str = "studio-intuit-secret";
const VERIFIER: &str = "studio-verifier-token";

struct Environment {
    herald: Harness,
    quickbooks: FakeQuickBooks,
    receiver: WebhookReceiver,
    _secrets: tempfile::TempDir,
}

/// Herald with QuickBooks, the company to be connected through Herald (which the webhook
/// needs: Intuit rotates refresh tokens).
async fn start() -> Environment {
    let quickbooks = FakeQuickBooks::start(any_local_port(), REALM, CLIENT_ID, CLIENT_SECRET, "")
        .await
        .unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    for (name, value) in [("secret", CLIENT_SECRET), ("verifier", VERIFIER)] {
        std::fs::write(secrets.path().join(name), value).unwrap();
    }
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"books\"\norganization = \"studio\"\nkind = \"quickbooks\"\n\
         settings = {{ realm_id = \"{REALM}\", invoice_item_id = \"1\", api_url = \"{url}\", webhook = {{ verifier_token = {{ file = \"{dir}/verifier\" }} }}, oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{dir}/secret\" }}, token_url = \"{url}/oauth2/v1/tokens/bearer\", authorize_url = \"{url}/connect/oauth2\", redirect_uri = \"{{herald}}/oauth/quickbooks/callback\" }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}{}",
        webhook_integration("studio-hook", "studio", &receiver.url(), ""),
        route("studio", &["books", "studio-hook"], ""),
        url = quickbooks.url(),
    );
    let herald = Harness::start(&body, "studio").await;
    quickbooks.register_redirect_uri(&format!("{}/oauth/quickbooks/callback", herald.base));
    Environment {
        herald,
        quickbooks,
        receiver,
        _secrets: secrets,
    }
}

fn for_sam(id: &str, metadata: Value) -> Value {
    let mut n = notification(id, "normal");
    n["type"] = json!("payment_received");
    n["title"] = json!("Deposit for Sam & Alex");
    n["contacts"] = json!([{"name": "Sam", "email": "sam@example.com", "role": "couple"}]);
    n["metadata"] = metadata;
    n
}

fn target<'a>(record: &'a Value, integration: &str) -> &'a Value {
    record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|target| target["integrationId"] == integration)
        .unwrap()
}

#[tokio::test]
async fn a_company_connected_through_herald_gets_the_couple_a_memo_an_invoice_and_a_payment() {
    let env = start().await;
    let (consent, query) = env.herald.start_install("books").await;
    assert!(consent.starts_with(&format!("{}/connect/oauth2?", env.quickbooks.url())));
    assert_eq!(query["scope"], "com.intuit.quickbooks.accounting");
    env.herald
        .consent_and_check_sealed(
            &consent,
            "quickbooks",
            "books",
            "quickbooks_refresh_token",
            || env.quickbooks.refresh_token(),
        )
        .await;

    let record = env
        .herald
        .notify(&for_sam("qb-1", json!({})), all_delivered)
        .await;
    let books = target(&record, "books");
    assert_eq!(books["details"]["recorded"], "memo");
    assert_eq!(books["details"]["customerCreated"], true);
    let customers = env.quickbooks.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["DisplayName"], "Sam (sam@example.com)");
    assert_eq!(
        customers[0]["Notes"],
        "Deposit for Sam & Alex: The ceremony now starts at 15:30"
    );

    let record = env
        .herald
        .notify(
            &for_sam("qb-2", json!({"quickbooksInvoice": {"amount": 1250.5, "description": "Balance for the wedding film"}})),
            all_delivered,
        )
        .await;
    assert_eq!(
        target(&record, "books")["details"]["customerCreated"],
        false
    );
    let invoices = env.quickbooks.invoices();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["CustomerRef"]["value"], customers[0]["Id"]);
    assert_eq!(invoices[0]["Line"][0]["Amount"], 1250.5);
    assert_eq!(
        invoices[0]["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"],
        "1"
    );

    env.herald
        .notify(
            &for_sam("qb-3", json!({"quickbooksPayment": {"amount": 500}})),
            all_delivered,
        )
        .await;
    assert_eq!(env.quickbooks.payments().len(), 1);
    assert_eq!(env.quickbooks.payments()[0]["TotalAmt"], 500.0);
    // The memo was added at the top of the notes the next time.
    let record = env
        .herald
        .notify(&for_sam("qb-4", json!({})), all_delivered)
        .await;
    assert_eq!(target(&record, "books")["details"]["recorded"], "memo");
    let notes = env.quickbooks.customers()[0]["Notes"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(notes.lines().count(), 2, "{notes}");

    let record = env
        .herald
        .notify(
            &for_sam("qb-5", json!({"quickbooksPayment": {"amount": "lots"}})),
            |record| target(record, "books")["state"] == "dead_lettered",
        )
        .await;
    let error = target(&record, "books")["lastError"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("metadata.quickbooksPayment.amount"),
        "{error}"
    );
}

#[tokio::test]
async fn a_payment_made_in_quickbooks_comes_back_once_through_the_signed_webhook() {
    let env = start().await;
    let (consent, _) = env.herald.start_install("books").await;
    assert_eq!(reqwest::get(&consent).await.unwrap().status(), 200);
    env.herald
        .notify(&for_sam("qb-1", json!({})), all_delivered)
        .await;
    let customer = env.quickbooks.customers()[0]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let payment = env.quickbooks.receive_payment(&customer, 750.0);
    let url = format!("{}/inbound/quickbooks/books/webhooks", env.herald.base);

    let (status, _) = env
        .quickbooks
        .notify(&url, REALM, &[("Payment", &payment, "Create")], "guessed")
        .await;
    assert_eq!(status, 401);
    let (status, answer) = env
        .quickbooks
        .notify(
            &url,
            REALM,
            &[
                ("Payment", &payment, "Create"),
                ("Customer", &customer, "Update"),
            ],
            VERIFIER,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = format!("quickbooks-{REALM}-payment-{payment}");
    assert_eq!(answer["notifications"][0]["notificationId"], id.as_str());
    assert_eq!(answer["notifications"].as_array().unwrap().len(), 1);
    let record = env
        .herald
        .wait_for_notification(&id, std::time::Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["notification"]["type"], "payment_received");
    assert_eq!(
        record["notification"]["title"],
        "Payment received in QuickBooks: 750.00 USD from Sam (sam@example.com)"
    );
    let targets: Vec<&str> = record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|target| target["integrationId"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["studio-hook"], "never back to QuickBooks");
    // Intuit sends it again: a duplicate; another company's events are left.
    let (_, again) = env
        .quickbooks
        .notify(&url, REALM, &[("Payment", &payment, "Create")], VERIFIER)
        .await;
    assert_eq!(again["notifications"][0]["status"], "duplicate");
    let (status, other) = env
        .quickbooks
        .notify(&url, "1234", &[("Payment", &payment, "Create")], VERIFIER)
        .await;
    assert_eq!((status, other), (200, Value::Null));
    assert!(env
        .receiver
        .received()
        .iter()
        .any(|message| message.body["data"]["notificationId"] == id.as_str()));
}
