//! WhatsApp end to end against the simulated Cloud API and Meta's webhook: the approved template
//! to someone who has not written in 24 hours, free text (or an Acknowledge button when urgent)
//! once they have; a press, a reply or "OK" recorded as the acknowledgement; statuses read back
//! as engagement; forged webhooks and a wrong verify token refused; Meta's refusals (an unknown
//! template, a revoked token) dead-lettered in Meta's words; and a retry that never messages a
//! person twice.

use herald::sandbox::any_local_port;
use herald::vendors::whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TOKEN: &str = "EAAGweddingdeskSystemUserToken";
const APP_SECRET: &str = "meta-app-secret-5b1c";
const VERIFY_TOKEN: &str = "golden-hour-verify-7";
const PLANNER: &str = "447700900123";
const MANAGER: &str = "447700900456";

struct Environment {
    herald: Harness,
    whatsapp: FakeWhatsApp,
    number: String,
    _secrets: tempfile::TempDir,
}

/// Each test its own business number, so what one learns of people's windows is its own.
async fn start(integration: &str, number: &str, to: &[&str], template: &str) -> Environment {
    let whatsapp = FakeWhatsApp::start(any_local_port(), TOKEN).await.unwrap();
    whatsapp.add_number(number, "+44 7700 900000");
    whatsapp.approve_template("wedding_alert", "en_GB", 2);
    let secrets = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("token", TOKEN),
        ("app", APP_SECRET),
        ("verify", VERIFY_TOKEN),
    ] {
        std::fs::write(secrets.path().join(name), value).unwrap();
    }
    let dir = secrets.path().display();
    let to: Vec<String> = to.iter().map(|n| format!("\"+{n}\"")).collect();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"whatsapp\"\n\
         settings = {{ api_url = \"{}\", access_token = {{ file = \"{dir}/token\" }}, phone_number_id = \"{number}\", to = [{}], template = {{ name = \"{template}\", language = \"en_GB\" }}, webhook = {{ app_secret = {{ file = \"{dir}/app\" }}, verify_token = {{ file = \"{dir}/verify\" }} }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        whatsapp.api_url(),
        to.join(", "),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        whatsapp,
        number: number.to_owned(),
        _secrets: secrets,
    }
}

impl Environment {
    fn webhook(&self, integration: &str) -> String {
        format!(
            "{}/inbound/whatsapp/{integration}/webhooks",
            self.herald.base
        )
    }

    fn sent_to(&self, wa_id: &str) -> Vec<Value> {
        self.whatsapp
            .messages()
            .into_iter()
            .filter(|message| message["to"] == wa_id)
            .collect()
    }
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
async fn the_template_goes_out_until_the_person_writes_then_text_and_an_acknowledge_button() {
    let env = start("crew", "100000000000101", &[PLANNER], "wedding_alert").await;
    let mut n = notification("wa-1", "normal");
    n["title"] = json!("Ceremony moved");
    n["message"] = json!("Now at 15:30,\nin the Orangery");
    let record = env.herald.notify(&n, all_delivered).await;
    let sent = env.sent_to(PLANNER);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "template");
    assert_eq!(sent[0]["status"], "accepted");
    assert_eq!(
        sent[0]["body"]["template"],
        json!({"name": "wedding_alert", "language": {"code": "en_GB"}, "components": [{"type": "body", "parameters": [
            {"type": "text", "text": "Ceremony moved"},
            {"type": "text", "text": "Now at 15:30, in the Orangery"}
        ]}]})
    );
    assert_eq!(
        record["targets"][0]["details"]["messages"],
        json!([{"to": format!("+{PLANNER}"), "messageId": sent[0]["id"], "kind": "template"}])
    );

    // The planner writes: their window opens, and the next notifications are free-form.
    assert_eq!(
        env.whatsapp
            .person_writes(
                &env.webhook("crew"),
                APP_SECRET,
                &env.number,
                PLANNER,
                "Thanks, seen",
                None
            )
            .await,
        200
    );
    let mut update = notification("wa-2", "normal");
    update["actions"] =
        json!([{"actionId": "open", "label": "Timeline", "url": "https://wedsync.example/t/2"}]);
    env.herald.notify(&update, all_delivered).await;
    let text = &env.sent_to(PLANNER)[1];
    assert_eq!(text["type"], "text");
    assert_eq!(text["status"], "accepted", "inside the window");
    assert_eq!(
        text["body"]["text"]["body"],
        "*Ceremony moved*\nThe ceremony now starts at 15:30\n\n_2027-06-12 · Kew Gardens_\nTimeline: https://wedsync.example/t/2"
    );
    env.herald
        .notify(&notification("wa-3", "emergency"), all_delivered)
        .await;
    let urgent = env.sent_to(PLANNER)[2].clone();
    assert_eq!(urgent["type"], "interactive");
    assert_eq!(
        urgent["body"]["interactive"]["action"]["buttons"],
        json!([{"type": "reply", "reply": {"id": "ack|wa-3", "title": "Acknowledge"}}])
    );

    // The press acknowledges wa-3; a reply to the template acknowledges wa-1; "OK" on its own
    // acknowledges the last one sent (wa-3 again: recorded once).
    let urgent_id = urgent["id"].as_str().unwrap();
    let webhook = env.webhook("crew");
    assert_eq!(
        env.whatsapp
            .person_presses(
                &webhook,
                APP_SECRET,
                &env.number,
                PLANNER,
                "ack|wa-3",
                urgent_id
            )
            .await,
        200
    );
    assert_eq!(
        env.whatsapp
            .person_writes(
                &webhook,
                APP_SECRET,
                &env.number,
                PLANNER,
                "On my way",
                sent[0]["id"].as_str()
            )
            .await,
        200
    );
    assert_eq!(
        env.whatsapp
            .person_writes(&webhook, APP_SECRET, &env.number, PLANNER, " ok ", None)
            .await,
        200
    );
    let acks = acknowledgements(&env.herald, "wa-3", 1).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["actor"], format!("whatsapp:+{PLANNER}"));
    assert_eq!(acks[0]["actionId"], "acknowledge");
    let acks = acknowledgements(&env.herald, "wa-1", 1).await;
    assert_eq!(acks[0]["actor"], format!("whatsapp:+{PLANNER}"));
    let (_, wa2) = env.herald.get("/v1/notifications/wa-2").await;
    assert_eq!(
        wa2["acknowledgements"],
        json!([]),
        "nobody acknowledged wa-2"
    );
}

#[tokio::test]
async fn statuses_are_engagement_and_forged_or_unverified_webhooks_are_refused() {
    let env = start(
        "statuses",
        "100000000000102",
        &[PLANNER, MANAGER],
        "wedding_alert",
    )
    .await;
    let record = env
        .herald
        .notify(&notification("st-1", "normal"), all_delivered)
        .await;
    let messages = record["targets"][0]["details"]["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(messages.len(), 2, "one message per person");
    let webhook = env.webhook("statuses");
    let first = messages[0]["messageId"].as_str().unwrap();
    assert_eq!(
        env.whatsapp
            .report_status(&webhook, APP_SECRET, &env.number, first, "delivered")
            .await,
        200
    );
    assert_eq!(
        env.whatsapp
            .report_status(&webhook, APP_SECRET, &env.number, first, "read")
            .await,
        200
    );
    // A forged status is refused and changes nothing.
    assert_eq!(
        env.whatsapp
            .report_status(&webhook, "guessed-secret", &env.number, first, "failed")
            .await,
        401
    );
    let (status, engagement) = env.herald.get("/v1/notifications/st-1/engagement").await;
    assert_eq!(status, 200, "{engagement}");
    let read = &engagement["systems"][0]["engagement"]["messages"];
    assert_eq!(read[0]["to"], format!("+{PLANNER}"));
    assert_eq!(read[0]["status"], "read");
    assert_eq!(read[1]["to"], format!("+{MANAGER}"));
    assert_eq!(
        read[1]["status"],
        Value::Null,
        "nothing reported for the manager yet"
    );

    // Meta's subscription check: the challenge comes back only with the verify token.
    let check = |token: &str| {
        env.herald
            .client
            .get(format!(
                "{webhook}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
            ))
            .send()
    };
    let answer = check(VERIFY_TOKEN).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "1158201444");
    assert_eq!(
        check("guessed").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let unsigned = env
        .herald
        .client
        .post(&webhook)
        .json(&json!({"object": "whatsapp_business_account", "entry": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_template_or_a_revoked_token_is_dead_lettered_in_metas_words() {
    let env = start("no-template", "100000000000103", &[PLANNER], "wedding_alrt").await;
    let record = env
        .herald
        .notify(&notification("tpl-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("132001")
            && error.contains("template name (wedding_alrt) does not exist in en_GB"),
        "{error}"
    );

    let revoked = start("revoked", "100000000000104", &[PLANNER], "wedding_alert").await;
    std::fs::write(revoked._secrets.path().join("token"), "EAAGrevoked").unwrap();
    let record = revoked
        .herald
        .notify(&notification("tok-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("Invalid OAuth access token"), "{error}");
    assert!(revoked.whatsapp.messages().is_empty());
}

#[tokio::test]
async fn a_retry_messages_nobody_twice() {
    let env = start(
        "retry",
        "100000000000105",
        &[PLANNER, MANAGER],
        "wedding_alert",
    )
    .await;
    // The planner's message goes through; the manager's fails once (Meta's transient error). The
    // retry sends only the manager's.
    let record = {
        let faults = &env.whatsapp.faults;
        faults.respond_next(
            200,
            &[],
            json!({"messaging_product": "whatsapp", "contacts": [{"input": format!("+{PLANNER}"), "wa_id": PLANNER}], "messages": [{"id": "wamid.SCRIPTED1"}]}),
        );
        faults.respond_next(
            500,
            &[],
            json!({"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1, "is_transient": true}}),
        );
        env.herald
            .notify(&notification("rt-1", "normal"), all_delivered)
            .await
    };
    let target = &record["targets"][0];
    assert_eq!(target["attempts"], 2);
    let messages = target["details"]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["messageId"], "wamid.SCRIPTED1");
    assert_eq!(messages[0]["sentBefore"], true);
    assert_eq!(messages[1]["to"], format!("+{MANAGER}"));
    let to_planner = env
        .whatsapp
        .recorder
        .all()
        .iter()
        .filter(|request| request.body["to"] == format!("+{PLANNER}"))
        .count();
    assert_eq!(to_planner, 1, "the planner was messaged once");
}
