//! Twilio end to end against its simulator: a text to the configured number and to the
//! planner among the notification's contacts, its status callbacks read back as engagement, a
//! reply `ACK` acknowledging every open alert of that person once (and told so); a call whose
//! TwiML reads the alert and a key press acknowledging it; forged callbacks refused; a contact's
//! phone that is not E.164 refused by name; and a retry after a partial failure not texting
//! anyone twice.

use herald::sandbox::any_local_port;
use herald::vendors::twilio::FakeTwilio;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "studio-twilio-auth-token";
const NUMBER: &str = "+15005550006";
const DESK: &str = "+447700900001";
const PLANNER: &str = "+447700900002";

struct Environment {
    herald: Harness,
    twilio: FakeTwilio,
    _secrets: tempfile::TempDir,
}

async fn start(integration: &str, channel: &str) -> Environment {
    let twilio = FakeTwilio::start(any_local_port(), ACCOUNT, TOKEN)
        .await
        .unwrap();
    twilio.add_number(NUMBER);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), TOKEN).unwrap();
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"twilio\"\n\
         settings = {{ api_url = \"{}\", account_sid = \"{ACCOUNT}\", auth_token = {{ file = \"{dir}/token\" }}, channel = \"{channel}\", from = \"{NUMBER}\", to = [\"{DESK}\"], contact_roles = [\"planner\"], webhook = {{ public_url = \"{{herald}}\" }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        twilio.api_url(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        twilio,
        _secrets: secrets,
    }
}

fn with_planner(id: &str, priority: &str, planner_phone: &str) -> Value {
    let mut n = notification(id, priority);
    n["title"] = json!("Marquee <down> & out");
    n["contacts"] = json!([
        {"name": "Jo", "role": "planner", "phone": planner_phone},
        {"name": "Sam", "role": "couple", "phone": "+447700900099"}
    ]);
    n
}

async fn acknowledgements(herald: &Harness, id: &str, count: usize) -> Vec<Value> {
    herald
        .wait_for_notification(id, std::time::Duration::from_secs(10), |record| {
            record["acknowledgements"]
                .as_array()
                .is_some_and(|acks| acks.len() >= count)
        })
        .await["acknowledgements"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn texts_reach_each_person_and_a_reply_acknowledges_their_open_alerts_once() {
    let env = start("sms-desk", "sms").await;
    let record = env
        .herald
        .notify(&with_planner("sms-1", "emergency", PLANNER), all_delivered)
        .await;
    env.herald
        .notify(&with_planner("sms-2", "high", PLANNER), all_delivered)
        .await;
    let messages = env.twilio.messages();
    let to: Vec<&str> = messages.iter().map(|m| m["to"].as_str().unwrap()).collect();
    // The configured desk and the planner, never the couple (not a configured role).
    assert_eq!(to, [DESK, PLANNER, DESK, PLANNER]);
    assert_eq!(
        messages[0]["body"],
        "EMERGENCY: Marquee <down> & out\nThe ceremony now starts at 15:30\nWedding: 2027-06-12, Kew Gardens\nReply ACK to acknowledge."
    );
    assert_eq!(
        messages[0]["status_callback"],
        format!("{}/inbound/twilio/sms-desk/status?n=sms-1", env.herald.base)
    );
    let details = &record["targets"][0]["details"];
    assert_eq!(details["reached"][1]["to"], PLANNER);
    assert_eq!(record["targets"][0]["receipt"], messages[0]["sid"]);

    // Status callbacks are the delivery's engagement.
    let first = messages[0]["sid"].as_str().unwrap();
    let second = messages[1]["sid"].as_str().unwrap();
    assert_eq!(
        env.twilio.report_status(first, "delivered", None).await,
        200
    );
    assert_eq!(
        env.twilio
            .report_status(second, "undelivered", Some("30003"))
            .await,
        200
    );
    let (status, engagement) = env.herald.get("/v1/notifications/sms-1/engagement").await;
    assert_eq!(status, 200, "{engagement}");
    let reached = &engagement["systems"][0]["engagement"]["reached"];
    assert_eq!(reached[0]["status"]["status"], "delivered");
    assert_eq!(reached[1]["status"]["status"], "undelivered");
    assert_eq!(reached[1]["status"]["errorCode"], "30003");

    // A forged reply is refused; the planner's "ok thanks" acknowledges both alerts, once.
    let sms_url = format!("{}/inbound/twilio/sms-desk/sms", env.herald.base);
    let forged = reqwest::Client::new()
        .post(&sms_url)
        .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")
        .form(&[("From", PLANNER), ("To", NUMBER), ("Body", "ACK")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let (status, twiml) = env
        .twilio
        .text_in(&sms_url, PLANNER, NUMBER, "ok thanks")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        twiml,
        "<Response><Message>Acknowledged 2 alerts. Thank you.</Message></Response>"
    );
    for id in ["sms-1", "sms-2"] {
        let acks = acknowledgements(&env.herald, id, 1).await;
        assert_eq!(acks.len(), 1, "{id}: {acks:?}");
        assert_eq!(acks[0]["actionId"], "reply");
        assert_eq!(acks[0]["actor"], PLANNER);
        assert_eq!(acks[0]["integrationId"], "sms-desk");
    }
    // Nothing is left open for the planner; another text is not a keyword and gets no answer.
    let (_, again) = env.twilio.text_in(&sms_url, PLANNER, NUMBER, "ACK").await;
    assert_eq!(
        again,
        "<Response><Message>There is no open alert from this number to acknowledge.</Message></Response>"
    );
    let (_, chat) = env
        .twilio
        .text_in(&sms_url, DESK, NUMBER, "who is this?")
        .await;
    assert_eq!(chat, "<Response/>");
    assert_eq!(
        acknowledgements(&env.herald, "sms-1", 1).await.len(),
        1,
        "the desk's chat acknowledged nothing"
    );
}

#[tokio::test]
async fn a_call_reads_the_alert_and_a_key_press_acknowledges_it() {
    let env = start("voice-desk", "voice").await;
    let mut n = notification("call-1", "emergency");
    n["title"] = json!("Storm <warning> & wind");
    env.herald.notify(&n, all_delivered).await;
    let calls = env.twilio.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["to"], DESK);
    let gather = format!(
        "{}/inbound/twilio/voice-desk/gather?n=call-1",
        env.herald.base
    );
    assert_eq!(
        calls[0]["twiml"],
        format!(
            "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"10\" action=\"{gather}\" method=\"POST\"><Say language=\"en-US\">EMERGENCY alert from WedSync. Storm &lt;warning&gt; &amp; wind. The ceremony now starts at 15:30. The wedding: 2027-06-12, Kew Gardens.</Say><Say language=\"en-US\">Press 1 to acknowledge this alert.</Say></Gather><Say language=\"en-US\">No key was pressed. Goodbye.</Say></Response>"
        )
    );
    let sid = calls[0]["sid"].as_str().unwrap();
    let (status, twiml) = env.twilio.press_key(sid, "7").await;
    assert_eq!(status, 200);
    assert!(twiml.contains("does not acknowledge"), "{twiml}");
    let (status, twiml) = env.twilio.press_key(sid, "1").await;
    assert_eq!(status, 200);
    assert_eq!(
        twiml,
        "<Response><Say>The alert is acknowledged. Thank you. Goodbye.</Say></Response>"
    );
    let acks = acknowledgements(&env.herald, "call-1", 1).await;
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["actionId"], "keypress");
    assert_eq!(acks[0]["actor"], DESK);
    assert_eq!(env.twilio.report_status(sid, "completed", None).await, 200);
}

#[tokio::test]
async fn a_contact_phone_twilio_cannot_reach_is_refused_by_name() {
    let env = start("sms-desk", "sms").await;
    let record = env
        .herald
        .notify(
            &with_planner("bad-1", "high", "07700 900002"),
            dead_lettered,
        )
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("contacts[0].phone \"07700 900002\" is not in E.164 form"),
        "{error}"
    );
    assert!(env.twilio.messages().is_empty(), "nothing half-sent");
}

#[tokio::test]
async fn a_retry_after_a_partial_failure_texts_nobody_twice() {
    let env = start("sms-desk", "sms").await;
    // The desk's text is created; the planner's is refused once with Twilio's 20429.
    env.twilio.faults.respond_next(
        201,
        &[],
        json!({"sid": "SM00000000000000000000000000000fa1", "status": "queued"}),
    );
    env.twilio.faults.respond_next(
        429,
        &[],
        json!({"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}),
    );
    let record = env
        .herald
        .notify(&with_planner("retry-1", "high", PLANNER), all_delivered)
        .await;
    let sent: Vec<(String, u16)> = env
        .twilio
        .recorder
        .all()
        .iter()
        .map(|request| {
            (
                request.body["To"].as_str().unwrap().to_owned(),
                request.status,
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            (DESK.to_owned(), 201),
            (PLANNER.to_owned(), 429),
            (PLANNER.to_owned(), 201)
        ]
    );
    let reached = &record["targets"][0]["details"]["reached"];
    assert_eq!(reached[0]["sid"], "SM00000000000000000000000000000fa1");
    assert_eq!(reached[0]["status"], "sent before");
    assert_eq!(reached[1]["to"], PLANNER);
}
