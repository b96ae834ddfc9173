//! HoneyBook, Dubsado and Pixifi, which publish no API, end to end through a simulated Zapier
//! account: each notification is the record the vendor's Zapier action is mapped from, posted to
//! the studio's catch hook (signed when a signing secret is set), and the Zap runs the action; a
//! notification the action could not run on is refused before anything is sent; a deleted hook
//! is dead-lettered with what to do. The vendor's triggers come back through the Zap's POST with
//! the integration's secret and reach the studio's other systems once; a wrong secret, an unknown
//! event or a malformed date is refused naming why.

use std::time::Duration;

use herald::connectors::standard_webhooks::{sign_standard_webhook, signing_key};
use herald::sandbox::any_local_port;
use herald::vendors::automation::{AutomationVendor, FakeZap};
use herald::vendors::dubsado::DUBSADO;
use herald::vendors::honeybook::HONEYBOOK;
use herald::vendors::pixifi::PIXIFI;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    all_delivered, dead_lettered, eventually, notification, route, webhook_integration, Harness,
    WEBHOOK_SECRET,
};

const ACCOUNT: &str = "8812345";
const HOOK: &str = "u7x2k9q";
const INBOUND_SECRET: &str = "studio-zap-secret-4c1d";
const SIGNING_SECRET: &str = "whsec_c3R1ZGlvLXphcC1zaWduaW5nLWtleS0wMQ==";

struct Environment {
    herald: Harness,
    zap: FakeZap,
    _secrets: tempfile::TempDir,
}

async fn start(
    vendor: &'static AutomationVendor,
    integration: &str,
    settings: &str,
    extra: &str,
) -> Environment {
    let zap = FakeZap::start(any_local_port(), vendor).await.unwrap();
    let url = zap.add_hook(ACCOUNT, HOOK);
    let secrets = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("hook", url.as_str()),
        ("inbound", INBOUND_SECRET),
        ("signing", SIGNING_SECRET),
    ] {
        std::fs::write(secrets.path().join(name), value).unwrap();
    }
    let dir = secrets.path().display();
    let settings = settings.replace("DIR", &dir.to_string());
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"{}\"\n\
         settings = {{ hook_url = {{ file = \"{dir}/hook\" }}, inbound_secret = {{ file = \"{dir}/inbound\" }}{settings} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{extra}",
        vendor.kind(),
    );
    let body = if extra.is_empty() {
        format!("{body}{}", route("studio", &[integration], ""))
    } else {
        body
    };
    Environment {
        herald: Harness::start(&body, "studio").await,
        zap,
        _secrets: secrets,
    }
}

fn booking(id: &str) -> Value {
    let mut n = notification(id, "normal");
    n["type"] = json!("booking_confirmed");
    n["title"] = json!("Booking confirmed");
    n["message"] = json!("Priya & Tom booked the full-day package");
    n["weddingContext"]["coupleNames"] = json!("Priya & Tom");
    n["contacts"] = json!([
        {"name": "Planner Pat", "role": "planner"},
        {"name": "Priya Shah", "email": "priya@example.com", "phone": "+447700900123", "role": "client"}
    ]);
    n["actions"] = json!([{"actionId": "contract", "label": "Contract", "url": "https://wedsync.example/c/1"}]);
    n
}

#[tokio::test]
async fn a_booking_is_honeybooks_create_project_record_and_the_zap_runs_it() {
    let env = start(&HONEYBOOK, "honeybook-zap", "", "").await;
    let record = env.herald.notify(&booking("hb-1"), all_delivered).await;
    let runs = env.zap.runs(ACCOUNT, HOOK);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Ok(()));
    assert_eq!(
        runs[0].record,
        json!({
            "notificationId": "hb-1",
            "type": "booking_confirmed",
            "priority": "normal",
            "title": "Booking confirmed",
            "message": "Priya & Tom booked the full-day package",
            "weddingId": "wed-1",
            "weddingDate": "2027-06-12",
            "venue": "Kew Gardens",
            "coupleNames": "Priya & Tom",
            "links": "Contract: https://wedsync.example/c/1",
            "clientFullName": "Priya Shah",
            "clientEmail": "priya@example.com",
            "clientPhone": "+447700900123",
            "projectName": "Priya & Tom wedding",
            "projectType": "Wedding",
            "projectDate": "2027-06-12",
            "location": "Kew Gardens",
            "projectDetails": "Booking confirmed\n\nPriya & Tom booked the full-day package\nContract: https://wedsync.example/c/1",
        })
    );
    assert!(
        runs[0].headers.is_empty(),
        "unsigned without a signing secret"
    );
    let target = &record["targets"][0];
    assert_eq!(target["receipt"], "00000001-5a1e-4c0d-9b7a-000000000001");
    assert_eq!(target["details"]["action"], "Create Project");
    assert_eq!(target["details"]["client"], "priya@example.com");
}

#[tokio::test]
async fn a_signed_dubsado_project_is_a_job_for_a_booking_and_a_lead_otherwise() {
    let env = start(
        &DUBSADO,
        "dubsado-zap",
        ", signing_secret = { file = \"DIR/signing\" }",
        "",
    )
    .await;
    let (herald, zap) = (&env.herald, &env.zap);
    herald.notify(&booking("ds-1"), all_delivered).await;
    let mut message = booking("ds-2");
    message["type"] = json!("client_message");
    herald.notify(&message, all_delivered).await;
    let runs = zap.runs(ACCOUNT, HOOK);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].record["clientFirstName"], "Priya");
    assert_eq!(runs[0].record["clientLastName"], "Shah");
    assert_eq!(runs[0].record["projectStatus"], "Job");
    assert_eq!(runs[1].record["projectStatus"], "Lead");
    // The Standard Webhooks signature over the exact body the hook caught.
    let sent = &zap.recorder.all()[0];
    let headers = &runs[0].headers;
    let body = serde_json::to_vec(&sent.body).unwrap();
    let expected = sign_standard_webhook(
        &signing_key(SIGNING_SECRET).unwrap(),
        &headers["webhook-id"],
        headers["webhook-timestamp"].parse().unwrap(),
        &body,
    );
    assert_eq!(headers["webhook-signature"], expected);
}

#[tokio::test]
async fn a_notification_pixifis_action_cannot_take_is_refused_and_nothing_is_sent() {
    let env = start(&PIXIFI, "pixifi-zap", "", "").await;
    let mut n = notification("px-1", "normal");
    n["contacts"] = json!([{"name": "Priya Shah", "phone": "+447700900123"}]);
    let record = env.herald.notify(&n, dead_lettered).await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("Pixifi's Create Lead needs the client's email"),
        "{error}"
    );
    assert!(env.zap.recorder.all().is_empty());
    // With the client's email it is a lead, first and last name apart.
    env.herald.notify(&booking("px-2"), all_delivered).await;
    let runs = env.zap.runs(ACCOUNT, HOOK);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].record["firstName"], "Priya");
    assert_eq!(runs[0].record["lastName"], "Shah");
    assert_eq!(runs[0].record["email"], "priya@example.com");
    assert_eq!(runs[0].record["eventLocation"], "Kew Gardens");
}

#[tokio::test]
async fn a_deleted_zap_is_dead_lettered_and_one_turned_off_does_not_run() {
    let env = start(&HONEYBOOK, "honeybook-zap", "", "").await;
    env.zap.turn(ACCOUNT, HOOK, false);
    // Zapier answers success for a Zap that is off; the run never happens, which only the
    // Zap's owner can see.
    env.herald.notify(&booking("off-1"), all_delivered).await;
    assert!(env.zap.runs(ACCOUNT, HOOK).is_empty());
    env.zap.delete_hook(ACCOUNT, HOOK);
    let record = env.herald.notify(&booking("gone-1"), dead_lettered).await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("the automation is off or deleted (410)"),
        "{error}"
    );
}

#[tokio::test]
async fn honeybooks_triggers_reach_the_studios_other_systems_once_and_forgeries_are_refused() {
    let other = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let extra = format!(
        "{}\n{}",
        webhook_integration("studio-hook", "studio", &other.url(), ""),
        route("studio", &["honeybook-zap", "studio-hook"], ""),
    );
    let env = start(&HONEYBOOK, "honeybook-zap", "", &extra).await;
    let address = format!("{}/inbound/honeybook/honeybook-zap/events", env.herald.base);
    let post = |secret: &str, body: Value| {
        env.herald
            .client
            .post(&address)
            .header("x-herald-secret", secret)
            .json(&body)
            .send()
    };
    let booked = json!({
        "event": "project_booked", "eventId": "prj_5521", "projectName": "Shah & Rao wedding",
        "clientName": "Priya Shah", "clientEmail": "priya@example.com",
        "eventDate": "2027-09-04T00:00:00-05:00", "venue": "Kew Gardens", "amount": 2400, "currency": "GBP"
    });
    let answer = post(INBOUND_SECRET, booked.clone()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let accepted: Value = answer.json().await.unwrap();
    let id = accepted["notifications"][0]["notificationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("honeybook-"), "{id}");
    eventually(
        Duration::from_secs(10),
        "the booking at the studio's hook",
        || other.received().len() == 1,
    )
    .await;
    let delivered = other.received()[0].body["data"].clone();
    assert_eq!(delivered["type"], "booking_confirmed");
    assert_eq!(delivered["priority"], "high");
    assert_eq!(
        delivered["title"],
        "HoneyBook: project booked: Shah & Rao wedding"
    );
    assert_eq!(
        delivered["message"],
        "New Project Booked in HoneyBook: Shah & Rao wedding.\nClient: Priya Shah\nAmount: 2400 GBP\nDate: 2027-09-04T00:00:00-05:00\nVenue: Kew Gardens"
    );
    assert_eq!(
        delivered["weddingContext"],
        json!({"weddingDate": "2027-09-04", "venue": "Kew Gardens", "coupleNames": "Priya Shah"})
    );
    assert_eq!(
        delivered["contacts"],
        json!([{"name": "Priya Shah", "email": "priya@example.com", "role": "client"}])
    );
    assert_eq!(delivered["metadata"]["honeybook"]["eventId"], "prj_5521");
    // The Zap replayed is the same notification; nothing went back to the Zap.
    let again: Value = post(INBOUND_SECRET, booked.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["notifications"][0]["notificationId"], id.as_str());
    assert_eq!(again["notifications"][0]["status"], "duplicate");
    // Refused, naming why: a wrong or missing secret, an event HoneyBook has no trigger for, a
    // date that is not one.
    assert_eq!(
        post("guessed", booked.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let unsigned = env
        .herald
        .client
        .post(&address)
        .json(&booked)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    for (body, says) in [
        (
            json!({"event": "invoice_sent", "eventId": "1"}),
            "event: \"invoice_sent\" is not a HoneyBook event",
        ),
        (json!({"event": "payment_paid"}), "eventId: required"),
        (
            json!({"event": "payment_paid", "eventId": "p1", "eventDate": "next June"}),
            "eventDate: must be a date",
        ),
        (
            json!({"event": "payment_paid", "eventId": "p1", "amount": {"value": 1}}),
            "amount: must be text or a number",
        ),
    ] {
        let answer = post(INBOUND_SECRET, body.clone()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{body}");
        let said: Value = answer.json().await.unwrap();
        let said = said["error"]["message"].as_str().unwrap();
        assert!(said.contains(says), "{body}: {said}");
    }
    assert!(env.zap.recorder.all().is_empty());
    assert_eq!(other.received().len(), 1);
}
