//! Email (and Studio Ninja, which has no API and is reached the same way) end to end against the
//! local SMTP sink: a notification is one message with a plain-text and an HTML part, its subject
//! marked when urgent; a retry sends the same Message-ID; a refused password, an unknown inbox
//! and a throttling reply are acted on as the server means them; the connection check signs in
//! and sends nothing; settings that would send a password in the clear are refused naming the
//! field.

use herald::sandbox::any_local_port;
use herald::vendors::smtp::SmtpSink;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const ACCOUNT: &str = "desk@goldenhour.example";
const PASSWORD: &str = "app-password-7f3k";
const INBOX: &str = "studio@goldenhour.example";

struct Environment {
    herald: Harness,
    sink: SmtpSink,
    _secrets: tempfile::TempDir,
}

async fn start(kind: &str, integration: &str, password: &str, to: &str) -> Environment {
    let sink = SmtpSink::start(any_local_port()).await.unwrap();
    sink.add_account(ACCOUNT, PASSWORD);
    sink.add_mailbox(INBOX);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("password"), password).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"{kind}\"\n\
         settings = {{ smtp_host = \"127.0.0.1\", smtp_port = {}, tls = \"none\", username = \"{ACCOUNT}\", password = {{ file = \"{}/password\" }}, from = \"Golden Hour desk <{ACCOUNT}>\", to = [\"{to}\"], reply_to = \"hello@goldenhour.example\", throttle_wait = \"1s\" }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        sink.addr().port(),
        secrets.path().display(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        sink,
        _secrets: secrets,
    }
}

#[tokio::test]
async fn a_notification_is_one_email_with_plain_and_html_parts() {
    let env = start("email", "inbox", PASSWORD, INBOX).await;
    let mut n = notification("mail-1", "emergency");
    n["title"] = json!("Ceremony moved <indoors>");
    n["message"] = json!("Rain from 14:00 & the marquee is closed.");
    n["weddingContext"]["coupleNames"] = json!("Priya & Tom");
    n["actions"] = json!([{"actionId": "plan", "label": "Run sheet", "url": "https://wedsync.example/r?a=1&b=2"}]);
    let record = env.herald.notify(&n, all_delivered).await;
    let messages = env.sink.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["subject"], "[Emergency] Ceremony moved <indoors>");
    assert_eq!(message["from"], ACCOUNT);
    assert_eq!(message["to"], json!([INBOX]));
    assert_eq!(message["headers"]["reply-to"], "hello@goldenhour.example");
    assert_eq!(
        message["text"],
        "Ceremony moved <indoors>\n\nRain from 14:00 & the marquee is closed.\n\nWedding: 2027-06-12\nCouple: Priya & Tom\nVenue: Kew Gardens\nRun sheet: https://wedsync.example/r?a=1&b=2\n\n-- \nSent by Herald for WedSync · timeline_change · mail-1\n"
    );
    let html = message["html"].as_str().unwrap();
    assert!(html.starts_with("<h2>Ceremony moved &lt;indoors&gt;</h2>\n<p>Rain from 14:00 &amp; the marquee is closed.</p>\n"), "{html}");
    assert!(
        html.contains("<a href=\"https://wedsync.example/r?a=1&amp;b=2\">Run sheet</a>"),
        "{html}"
    );
    let target = &record["targets"][0];
    assert_eq!(target["receipt"], message["messageId"]);
    assert!(target["details"]["serverReply"]
        .as_str()
        .unwrap()
        .starts_with("250 2.0.0 Ok: queued as"));
    assert_eq!(target["details"]["to"], json!([INBOX]));
}

#[tokio::test]
async fn a_retry_sends_the_same_message_id_and_throttling_waits() {
    let env = start("email", "inbox-busy", PASSWORD, INBOX).await;
    env.sink.faults.respond_next(
        451,
        &[],
        json!({"reply": "4.7.500 Server busy. Please try again later."}),
    );
    let record = env
        .herald
        .notify(&notification("busy-1", "normal"), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["attempts"], 2);
    let tried = env.sink.recorder.all();
    assert_eq!(
        tried.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![451, 250]
    );
    assert_eq!(tried[0].body["messageId"], tried[1].body["messageId"]);
    assert!(
        tried[1].at.duration_since(tried[0].at) >= std::time::Duration::from_millis(990),
        "the throttle_wait passed before the retry"
    );
}

#[tokio::test]
async fn a_refused_password_or_an_unknown_inbox_is_dead_lettered_in_the_servers_words() {
    let wrong = start("email", "inbox-password", "an-old-password", INBOX).await;
    let record = wrong
        .herald
        .notify(&notification("auth-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("5.7.8 Authentication credentials invalid"),
        "{error}"
    );
    assert!(wrong.sink.messages().is_empty());

    let unknown = start(
        "email",
        "inbox-unknown",
        PASSWORD,
        "nobody@goldenhour.example",
    )
    .await;
    let record = unknown
        .herald
        .notify(&notification("rcpt-1", "normal"), dead_lettered)
        .await;
    let target = &record["targets"][0];
    assert_eq!(target["attempts"], 1);
    let error = target["lastError"].as_str().unwrap();
    assert!(
        error.contains("5.1.1") && error.contains("User unknown"),
        "{error}"
    );
    assert!(unknown.sink.messages().is_empty());
}

#[tokio::test]
async fn the_connection_check_signs_in_and_sends_nothing() {
    let env = start("studio_ninja", "studio-ninja-inbox", PASSWORD, INBOX).await;
    let (status, check) = env
        .herald
        .post(
            "/v1/integrations/studio-ninja-inbox/connection-check",
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["account"]["signedIn"], true);
    assert_eq!(check["account"]["tls"], "none");
    assert!(env.sink.messages().is_empty());
    // Studio Ninja's notifications reach the studio's inbox the same way.
    env.herald
        .notify(&notification("ninja-1", "high"), all_delivered)
        .await;
    assert_eq!(env.sink.messages()[0]["subject"], "[High] Ceremony moved");
}

#[tokio::test]
async fn settings_that_would_send_a_password_in_the_clear_are_refused() {
    let env = start("email", "inbox", PASSWORD, INBOX).await;
    let create = |settings: Value| {
        json!({
            "integrationId": "remote-clear",
            "integrationType": "communication_platform",
            "system": "email",
            "settings": settings,
        })
    };
    let base = json!({"smtp_host": "smtp.office365.com", "from": ACCOUNT, "to": [INBOX], "username": ACCOUNT, "password": {"value": "p"}});
    for (change, field) in [
        (json!({"tls": "none"}), "settings.tls"),
        (json!({"to": ["not an address"]}), "settings.to[0]"),
        (json!({"smtp_port": 70000}), "settings.smtp_port"),
    ] {
        let mut settings = base.clone();
        for (key, value) in change.as_object().unwrap() {
            settings[key] = value.clone();
        }
        let (status, answer) = env.herald.post("/v1/integrations", &create(settings)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{change}: {answer}");
    }
}
