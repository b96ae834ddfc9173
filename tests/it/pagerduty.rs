//! PagerDuty end to end against its simulator: an incident per notification whose retries never
//! open a second one, acknowledgements made in PagerDuty coming back through signed v3 webhooks
//! (forged ones refused, a rotated secret's two signatures taken), and an acknowledgement made
//! elsewhere (a text reply, WedSync's API) acknowledging and then resolving the incident.

use herald::sandbox::any_local_port;
use herald::vendors::pagerduty::FakePagerDuty;
use herald::vendors::twilio::FakeTwilio;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, eventually, notification, route, Harness};

const ROUTING_KEY: &str = "R0123456789ABCDEF0123456789ABCDE";
const API_TOKEN: &str = "y_rest-api-key-of-the-desk";
const SECRET: &str = "pd-subscription-secret";
const TWILIO_ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "desk-twilio-token";
const NUMBER: &str = "+15005550006";
const DUTY: &str = "+447700900001";

struct Environment {
    herald: Harness,
    pagerduty: FakePagerDuty,
    twilio: FakeTwilio,
    _secrets: tempfile::TempDir,
}

async fn start() -> Environment {
    let pagerduty = FakePagerDuty::start(any_local_port(), ROUTING_KEY, API_TOKEN)
        .await
        .unwrap();
    let twilio = FakeTwilio::start(any_local_port(), TWILIO_ACCOUNT, TWILIO_TOKEN)
        .await
        .unwrap();
    twilio.add_number(NUMBER);
    let secrets = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("routing", ROUTING_KEY),
        ("api", API_TOKEN),
        ("secret", SECRET),
        ("twilio", TWILIO_TOKEN),
    ] {
        std::fs::write(secrets.path().join(name), value).unwrap();
    }
    let dir = secrets.path().display();
    let retry = "retry = { max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }";
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"pager\"\norganization = \"studio\"\nkind = \"pagerduty\"\n\
         settings = {{ routing_key = {{ file = \"{dir}/routing\" }}, events_url = \"{url}\", api_url = \"{url}\", component = \"marquee\", webhook = {{ secret = {{ file = \"{dir}/secret\" }}, api_token = {{ file = \"{dir}/api\" }} }} }}\n{retry}\n\
         [[integrations]]\nid = \"duty-sms\"\norganization = \"studio\"\nkind = \"twilio\"\n\
         settings = {{ api_url = \"{}\", account_sid = \"{TWILIO_ACCOUNT}\", auth_token = {{ file = \"{dir}/twilio\" }}, channel = \"sms\", from = \"{NUMBER}\", to = [\"{DUTY}\"], webhook = {{ public_url = \"{{herald}}\" }} }}\n{retry}\n{}",
        twilio.api_url(),
        route("studio", &["pager", "duty-sms"], ""),
        url = pagerduty.url(),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        pagerduty,
        twilio,
        _secrets: secrets,
    }
}

fn events(env: &Environment, action: &str) -> Vec<Value> {
    env.pagerduty
        .recorder
        .all()
        .into_iter()
        .filter(|request| request.body["event_action"] == action && request.status == 202)
        .map(|request| request.body)
        .collect()
}

#[tokio::test]
async fn an_incident_per_notification_and_a_retry_never_opens_a_second() {
    let env = start().await;
    // PagerDuty's answer is lost once after it took the event: Herald sends it again.
    env.pagerduty.faults.respond_next(
        502,
        &[],
        json!({"status": "error", "message": "Bad Gateway"}),
    );
    let mut n = notification("pd-1", "emergency");
    n["actions"] = json!([{"actionId": "plan", "label": "Wet-weather plan", "url": "https://wedsync.example/plan/1"}]);
    let record = env.herald.notify(&n, all_delivered).await;
    let pager = record["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|target| target["integrationId"] == "pager")
        .unwrap();
    assert_eq!(pager["receipt"], "herald/pd-1");
    assert_eq!(pager["attempts"], 2);
    let triggers = events(&env, "trigger");
    assert_eq!(triggers.len(), 1);
    let event = &triggers[0];
    assert_eq!(
        event["routing_key"], "<routing key>",
        "the key is not recorded"
    );
    assert_eq!(event["dedup_key"], "herald/pd-1");
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["source"], "Kew Gardens");
    assert_eq!(event["payload"]["component"], "marquee");
    assert_eq!(
        event["payload"]["custom_details"]["weddingContext"]["weddingDate"],
        "2027-06-12"
    );
    assert_eq!(
        event["links"],
        json!([{"href": "https://wedsync.example/plan/1", "text": "Wet-weather plan"}])
    );

    // A second trigger with the same key (the same notification sent again by another route,
    // a replayed dead letter) adds to the open incident.
    env.pagerduty.faults.respond_next(500, &[], json!({}));
    let (status, replayed) = env
        .herald
        .post("/v1/notifications", &notification("pd-2", "high"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    env.herald
        .wait_for_notification("pd-2", std::time::Duration::from_secs(10), all_delivered)
        .await;
    let incidents = env.pagerduty.incidents();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    assert_eq!(incidents[0]["incident_key"], "herald/pd-1");
    assert_eq!(incidents[0]["urgency"], "high");
    assert_eq!(incidents[1]["incident_key"], "herald/pd-2");
    assert_eq!(incidents[0]["alert_counts"]["all"], 1);
}

#[tokio::test]
async fn an_acknowledgement_in_pagerduty_comes_back_through_the_signed_webhook() {
    let env = start().await;
    env.pagerduty.subscribe(&format!(
        "{}/inbound/pagerduty/pager/webhooks",
        env.herald.base
    ));
    env.herald
        .notify(&notification("pd-ack", "emergency"), all_delivered)
        .await;
    assert_eq!(
        env.pagerduty
            .act(
                "herald/pd-ack",
                "incident.acknowledged",
                "Jo Planner",
                &["guessed"]
            )
            .await,
        401
    );
    // During a secret rotation PagerDuty signs with both; one matching is enough.
    assert_eq!(
        env.pagerduty
            .act(
                "herald/pd-ack",
                "incident.acknowledged",
                "Jo Planner",
                &["old-secret", SECRET]
            )
            .await,
        200
    );
    assert_eq!(
        env.pagerduty
            .act(
                "herald/pd-ack",
                "incident.acknowledged",
                "Jo Planner",
                &[SECRET]
            )
            .await,
        200
    );
    let record = env
        .herald
        .wait_for_notification("pd-ack", std::time::Duration::from_secs(10), |record| {
            record["acknowledgements"]
                .as_array()
                .is_some_and(|acks| !acks.is_empty())
        })
        .await;
    let acks = record["acknowledgements"].as_array().unwrap();
    assert_eq!(acks.len(), 1, "recorded once: {acks:?}");
    assert_eq!(acks[0]["integrationId"], "pager");
    assert_eq!(acks[0]["actionId"], "acknowledge");
    assert_eq!(acks[0]["actor"], "Jo Planner");
    // Herald was not told back what it heard from PagerDuty itself.
    assert!(events(&env, "acknowledge").is_empty());
}

#[tokio::test]
async fn an_acknowledgement_elsewhere_acknowledges_then_resolves_the_incident() {
    let env = start().await;
    env.herald
        .notify(&notification("pd-sms", "emergency"), all_delivered)
        .await;
    // The duty coordinator replies to the text: PagerDuty's incident is acknowledged.
    let sms_url = format!("{}/inbound/twilio/duty-sms/sms", env.herald.base);
    let (status, _) = env.twilio.text_in(&sms_url, DUTY, NUMBER, "ACK").await;
    assert_eq!(status, 200);
    eventually(
        std::time::Duration::from_secs(10),
        "PagerDuty is told of the text's acknowledgement",
        || env.pagerduty.incidents()[0]["status"] == "acknowledged",
    )
    .await;
    assert_eq!(events(&env, "acknowledge")[0]["dedup_key"], "herald/pd-sms");

    // WedSync resolves it through the API; a bad body is refused by name.
    let path = "/v1/notifications/pd-sms/acknowledge";
    let (status, refused) = env
        .herald
        .post(path, &json!({"actor": "", "action": "resolve"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.to_string().contains("actor"), "{refused}");
    let (status, refused) = env
        .herald
        .post(path, &json!({"actor": "sam", "action": "shrug"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.to_string().contains("action"), "{refused}");
    let (status, unknown) = env
        .herald
        .post(
            "/v1/notifications/nope/acknowledge",
            &json!({"actor": "sam"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    let (status, answer) = env
        .herald
        .post(path, &json!({"actor": "sam@wedsync", "action": "resolve"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"notificationId": "pd-sms", "outcome": "recorded"})
    );
    eventually(
        std::time::Duration::from_secs(10),
        "PagerDuty is told to resolve",
        || env.pagerduty.incidents()[0]["status"] == "resolved",
    )
    .await;
    let (_, again) = env
        .herald
        .post(path, &json!({"actor": "sam@wedsync", "action": "resolve"}))
        .await;
    assert_eq!(again["outcome"], "already_recorded");
    let record = env.herald.get("/v1/notifications/pd-sms").await.1;
    let mut seen: Vec<(String, String)> = record["acknowledgements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ack| {
            (
                ack["integrationId"].as_str().unwrap().to_owned(),
                ack["actionId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("duty-sms".to_owned(), "reply".to_owned()),
            ("wedsync".to_owned(), "resolve".to_owned())
        ]
    );
    assert_eq!(events(&env, "resolve").len(), 1, "told once");
}
