//! Telegram end to end against the Bot API simulator, which parses HTML as Telegram does: a
//! message whose WedSync text cannot break the parse, its actions as buttons, the webhook set
//! with a secret token, a button press and a reply recorded as acknowledgements (the press
//! answered), an update without the secret refused, and a group's pace kept to.

use herald::sandbox::any_local_port;
use herald::vendors::telegram::FakeTelegram;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TOKEN: &str = "6000000002:AAtest-bot-token-for-the-studio";
const CHAT: &str = "-1009876543210";
const SECRET: &str = "studio-telegram-secret_1";

struct Environment {
    herald: Harness,
    telegram: FakeTelegram,
    _secrets: tempfile::TempDir,
}

async fn start(integration: &str) -> Environment {
    start_in(integration, true).await
}

/// A bot in the chat when `joined`, and a Herald posting there.
async fn start_in(integration: &str, joined: bool) -> Environment {
    let telegram = FakeTelegram::start(any_local_port(), TOKEN).await.unwrap();
    if joined {
        telegram.add_chat(CHAT);
    }
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), TOKEN).unwrap();
    std::fs::write(secrets.path().join("secret"), SECRET).unwrap();
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"telegram\"\n\
         settings = {{ api_url = \"{}\", bot_token = {{ file = \"{dir}/token\" }}, chat_id = \"{CHAT}\", webhook = {{ public_url = \"{{herald}}\", secret_token = {{ file = \"{dir}/secret\" }} }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        telegram.api_url(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        telegram,
        _secrets: secrets,
    }
}

fn message_of(env: &Environment, record: &Value) -> Value {
    let id: i64 = record["targets"][0]["receipt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    env.telegram
        .messages()
        .into_iter()
        .find(|message| message["message_id"] == id)
        .unwrap()
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
async fn a_message_with_buttons_and_a_press_and_a_reply_acknowledge_it() {
    let env = start("team-chat").await;
    let (status, subscribed) = env
        .herald
        .post("/v1/integrations/team-chat/subscriptions", &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscribed}");
    let (url, secret) = env.telegram.webhook().unwrap();
    assert_eq!(
        url,
        format!("{}/inbound/telegram/team-chat/updates", env.herald.base)
    );
    assert_eq!(secret, SECRET);

    let mut n = notification("tg-1", "high");
    n["title"] = json!("Ceremony <moved> & shortened");
    n["actions"] = json!([
        {"actionId": "on-it", "label": "On it"},
        {"actionId": "open", "label": "Timeline", "url": "https://wedsync.example/t/1"}
    ]);
    let record = env.herald.notify(&n, all_delivered).await;
    let message = message_of(&env, &record);
    // As people see it: WedSync's text as written, the wedding underneath.
    assert_eq!(
        message["text"],
        "Ceremony <moved> & shortened\nThe ceremony now starts at 15:30\n2027-06-12 · Kew Gardens"
    );
    assert_eq!(
        message["reply_markup"]["inline_keyboard"],
        json!([[{"text": "On it", "callback_data": "ack|on-it|tg-1"}, {"text": "Timeline", "url": "https://wedsync.example/t/1"}]])
    );
    let message_id = message["message_id"].as_i64().unwrap();

    // An update without the secret token is refused and records nothing.
    assert_eq!(
        env.telegram
            .press_button(message_id, 0, "mallory", "guessed")
            .await,
        401
    );
    // The planner presses "On it", and the coordinator replies to the message.
    assert_eq!(
        env.telegram
            .press_button(message_id, 0, "jo_planner", SECRET)
            .await,
        200
    );
    assert_eq!(
        env.telegram
            .reply(message_id, "sam_coord", "Covered", SECRET)
            .await,
        200
    );
    let acks = acknowledgements(&env.herald, "tg-1", 2).await;
    let mut seen: Vec<(String, String)> = acks
        .iter()
        .map(|ack| {
            (
                ack["actionId"].as_str().unwrap().to_owned(),
                ack["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("on-it".to_owned(), "@jo_planner".to_owned()),
            ("reply".to_owned(), "@sam_coord".to_owned())
        ]
    );
    // Only the genuine press was answered (the refused one was update 500000002).
    assert_eq!(
        env.telegram.answered_callbacks(),
        [json!({"callback_query_id": "cq-500000003", "text": "Acknowledged"})]
    );
    // The same press again is recorded once.
    assert_eq!(
        env.telegram
            .press_button(message_id, 0, "jo_planner", SECRET)
            .await,
        200
    );
    let record = env.herald.get("/v1/notifications/tg-1").await.1;
    assert_eq!(
        record["acknowledgements"].as_array().unwrap().len(),
        2,
        "{record}"
    );
}

#[tokio::test]
async fn an_emergency_without_actions_gets_an_acknowledge_button_and_a_normal_one_none() {
    let env = start("team-urgent").await;
    let record = env
        .herald
        .notify(&notification("tg-urgent", "emergency"), all_delivered)
        .await;
    assert_eq!(
        message_of(&env, &record)["reply_markup"]["inline_keyboard"],
        json!([[{"text": "Acknowledge", "callback_data": "ack|acknowledge|tg-urgent"}]])
    );
    let record = env
        .herald
        .notify(&notification("tg-normal", "normal"), all_delivered)
        .await;
    assert!(message_of(&env, &record).get("reply_markup").is_none());
    // An id too long for Telegram's 64 bytes of callback data: the message goes, the button
    // does not, and the receipt says so.
    let long = format!("tg-{}", "x".repeat(70));
    let record = env
        .herald
        .notify(&notification(&long, "emergency"), all_delivered)
        .await;
    assert_eq!(
        record["targets"][0]["details"]["buttonsOmitted"],
        json!(["acknowledge"])
    );
}

#[tokio::test]
async fn a_chat_the_bot_is_not_in_is_telegrams_refusal() {
    let env = start_in("team-kicked", false).await;
    let record = env
        .herald
        .notify(&notification("tg-kicked", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("chat not found"), "{error}");
    assert!(env.telegram.messages().is_empty());
}
