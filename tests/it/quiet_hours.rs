//! Quiet hours (the seed's manageNotificationPreferences), in the recipients' time zone: inside
//! the period Slack schedules a notification for the period's end instead of posting it, Telegram
//! and Discord post it silently; an emergency breaks through everywhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::sandbox::any_local_port;
use herald::vendors::discord::FakeDiscord;
use herald::vendors::slack::FakeSlack;
use herald::vendors::telegram::FakeTelegram;
use serde_json::json;

use crate::harness::{all_delivered, notification, route, Harness, SLACK_TOKEN};

fn time_of_day(minute_of_day: u64) -> String {
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Quiet hours from an hour ago to an hour from now on the wall clock of a zone `offset`
/// minutes ahead of UTC (a zone without daylight saving), as settings; and when they end (Unix
/// seconds).
fn around_now(zone: Option<(&str, u64)>) -> (String, u64) {
    let now = now();
    let minute = ((now % 86_400) / 60 + zone.map_or(0, |(_, offset)| offset)) % 1440;
    let (from, to) = (
        time_of_day((minute + 1440 - 60) % 1440),
        time_of_day((minute + 60) % 1440),
    );
    let zone = zone.map_or(String::new(), |(name, _)| {
        format!(", time_zone = \"{name}\"")
    });
    (
        format!("quiet_hours = {{ from = \"{from}\", to = \"{to}\"{zone} }}"),
        now - now % 60 + 3600,
    )
}

/// A Slack workspace with channel #team and Herald posting to it inside a quiet period from an
/// hour ago to an hour from now (UTC); and when that period ends (Unix seconds).
async fn inside_quiet_hours() -> (FakeSlack, Harness, u64) {
    inside_quiet_hours_of(None).await
}

async fn inside_quiet_hours_of(zone: Option<(&str, u64)>) -> (FakeSlack, Harness, u64) {
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["team"])
        .await
        .unwrap();
    let (quiet, ends) = around_now(zone);
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"team\"\norganization = \"studio\"\nkind = \"slack\"\n\
         settings = {{ base_url = \"{}\", channel = \"#team\", token = {{ file = \"{{secrets}}/slack\" }}, {quiet} }}\n\
         rate_limit = {{ per_second = 100, burst = 10 }}\n{}",
        slack.base_url(),
        route("studio", &["team"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    (slack, herald, ends)
}

#[tokio::test]
async fn inside_quiet_hours_messages_wait_and_emergencies_break_through() {
    let (slack, herald, quiet_ends) = inside_quiet_hours().await;
    let mut routine = notification("routine-1", "high");
    routine["actions"] = json!([{"actionId": "ack", "label": "Acknowledge"}]);
    herald.post("/v1/notifications", &routine).await;
    let record = herald
        .wait_for_notification("routine-1", Duration::from_secs(10), all_delivered)
        .await;
    let details = &record["targets"][0]["details"];
    assert_eq!(details["heldFor"], "quiet_hours", "{record}");
    assert_eq!(details["postAt"], quiet_ends);
    let scheduled = slack.scheduled("#team");
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0].1, quiet_ends);
    assert_eq!(
        record["targets"][0]["receipt"].as_str(),
        Some(scheduled[0].0.as_str()),
        "the receipt is Slack's scheduled message id"
    );
    assert!(slack.messages("#team").is_empty(), "nothing posted now");

    herald
        .post("/v1/notifications", &notification("storm-1", "emergency"))
        .await;
    herald
        .wait_for_notification("storm-1", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(
        slack.messages("#team").len(),
        1,
        "the emergency is posted at once"
    );
}

#[tokio::test]
async fn held_messages_spread_over_slacks_five_minute_windows_and_keep_every_button() {
    // Slack schedules at most 30 messages within five minutes in one channel
    // (restricted_too_many); 35 held at once, each with two buttons WedSync gave one id.
    let (slack, herald, quiet_ends) = inside_quiet_hours().await;
    let batch: Vec<_> = (0..35)
        .map(|n| {
            let mut held = notification(&format!("held-{n}"), "normal");
            held["actions"] = json!([
                {"actionId": "confirm", "label": "Confirm"},
                {"actionId": "confirm", "label": "Confirm for the venue"}
            ]);
            held
        })
        .collect();
    let (status, answer) = herald
        .post("/v1/notifications/batch", &json!({"notifications": batch}))
        .await;
    assert_eq!(status, 202, "{answer}");
    for n in 0..35 {
        herald
            .wait_for_notification(&format!("held-{n}"), Duration::from_secs(20), all_delivered)
            .await;
    }
    let scheduled = slack.scheduled("#team");
    assert_eq!(scheduled.len(), 35);
    let at_the_end = scheduled.iter().filter(|s| s.1 == quiet_ends).count();
    let next_slot = scheduled.iter().filter(|s| s.1 == quiet_ends + 301).count();
    assert_eq!((at_the_end, next_slot), (30, 5));
    let refused = slack
        .recorder
        .all()
        .into_iter()
        .filter(|request| request.path == "/api/chat.scheduleMessage" && request.status != 200)
        .count();
    assert_eq!(refused, 0);
    // Both buttons, each in its own actions block (Slack refuses a repeated action_id in one).
    let blocks = scheduled[0].3.as_array().unwrap();
    let actions: Vec<_> = blocks
        .iter()
        .filter(|block| block["type"] == "actions")
        .map(|block| block["elements"][0]["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["confirm", "confirm"]);
}

#[tokio::test]
async fn wedsync_text_cannot_mention_the_channel_or_disguise_a_link() {
    let (slack, herald, _) = inside_quiet_hours().await;
    let mut hostile = notification("hostile-1", "emergency");
    hostile["message"] =
        json!("<!channel> the plan moved: <https://evil.example|open the timeline>");
    hostile["weddingContext"]["venue"] = json!("<@U0HERALD1> & friends");
    herald.post("/v1/notifications", &hostile).await;
    herald
        .wait_for_notification("hostile-1", Duration::from_secs(10), all_delivered)
        .await;
    let messages = slack.messages("#team");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].2[1]["text"]["text"],
        "&lt;!channel&gt; the plan moved: &lt;https://evil.example|open the timeline&gt;"
    );
    assert_eq!(
        slack.control_sequences("#team"),
        Vec::<String>::new(),
        "Slack would act on nothing in the message"
    );
}

#[tokio::test]
async fn quiet_hours_are_the_recipients_wall_clock() {
    // India is 5 h 30 ahead of UTC all year: the period is an hour either side of now there.
    let (slack, herald, quiet_ends) = inside_quiet_hours_of(Some(("Asia/Kolkata", 330))).await;
    herald
        .post("/v1/notifications", &notification("india-1", "normal"))
        .await;
    let record = herald
        .wait_for_notification("india-1", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(record["targets"][0]["details"]["heldFor"], "quiet_hours");
    assert_eq!(record["targets"][0]["details"]["postAt"], quiet_ends);
    assert!(slack.messages("#team").is_empty());
}

#[tokio::test]
async fn telegram_and_discord_post_silently_inside_quiet_hours() {
    let (quiet, quiet_ends) = around_now(Some(("Asia/Tokyo", 540)));
    let telegram = FakeTelegram::start(any_local_port(), "7001:quiet-bot-token")
        .await
        .unwrap();
    telegram.add_chat("-1001234567890");
    let discord = FakeDiscord::start(any_local_port()).await.unwrap();
    let webhook = discord.add_webhook(
        "1290000000000000555",
        "quiet-token",
        "Wedding desk",
        "1290000000000000001",
    );
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("telegram"), "7001:quiet-bot-token").unwrap();
    std::fs::write(secrets.path().join("discord"), &webhook).unwrap();
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"crew\"\norganization = \"studio\"\nkind = \"telegram\"\n\
         settings = {{ api_url = \"{}\", bot_token = {{ file = \"{dir}/telegram\" }}, chat_id = \"-1001234567890\", {quiet} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         [[integrations]]\nid = \"server\"\norganization = \"studio\"\nkind = \"discord\"\n\
         settings = {{ api_url = \"{}\", webhook_url = {{ file = \"{dir}/discord\" }}, {quiet} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n{}",
        telegram.api_url(),
        discord.api_url(),
        route("studio", &["crew", "server"], ""),
    );
    let herald = Harness::start(&body, "studio").await;
    let routine = herald
        .notify(&notification("hush-1", "high"), all_delivered)
        .await;
    let urgent = herald
        .notify(&notification("siren-1", "emergency"), all_delivered)
        .await;
    let sent = telegram.recorder.all();
    assert_eq!(sent[0].body["disable_notification"], true);
    assert_eq!(
        sent[1].body.get("disable_notification"),
        None,
        "the emergency rings"
    );
    let posted = discord.messages();
    assert_eq!(posted[0]["flags"], 4096, "SUPPRESS_NOTIFICATIONS");
    assert_eq!(posted[1]["flags"], 0);
    let details = |record: &serde_json::Value, system: &str| {
        record["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|target| target["integrationId"] == system)
            .unwrap()["details"]
            .clone()
    };
    assert_eq!(details(&routine, "crew")["silentUntil"], quiet_ends);
    assert_eq!(details(&routine, "server")["silent"], true);
    assert_eq!(
        details(&urgent, "crew")["silentUntil"],
        serde_json::Value::Null
    );
    assert_eq!(details(&urgent, "server")["silent"], false);
}
