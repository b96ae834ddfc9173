//! Slack quiet hours (the seed's manageNotificationPreferences): inside the channel's quiet
//! period a notification is scheduled for the period's end instead of posted; an emergency
//! breaks through.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::sandbox::any_local_port;
use herald::vendors::slack::FakeSlack;
use serde_json::json;

use crate::harness::{all_delivered, notification, route, Harness, SLACK_TOKEN};

fn time_of_day(minute_of_day: u64) -> String {
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

#[tokio::test]
async fn inside_quiet_hours_messages_wait_and_emergencies_break_through() {
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["team"])
        .await
        .unwrap();
    // A quiet period from an hour ago to an hour from now (UTC).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let minute = (now % 86_400) / 60;
    let (from, to) = (
        time_of_day((minute + 1440 - 60) % 1440),
        time_of_day((minute + 60) % 1440),
    );
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"team\"\norganization = \"studio\"\nkind = \"slack\"\n\
         settings = {{ base_url = \"{}\", channel = \"#team\", token = {{ file = \"{{secrets}}/slack\" }}, quiet_hours = {{ from = \"{from}\", to = \"{to}\" }} }}\n\
         rate_limit = {{ per_second = 100, burst = 10 }}\n{}",
        slack.base_url(),
        route("studio", &["team"], "")
    );
    let herald = Harness::start(&body, "studio").await;

    let mut routine = notification("routine-1", "high");
    routine["actions"] = json!([{"actionId": "ack", "label": "Acknowledge"}]);
    herald.post("/v1/notifications", &routine).await;
    let record = herald
        .wait_for_notification("routine-1", Duration::from_secs(10), all_delivered)
        .await;
    let details = &record["targets"][0]["details"];
    let quiet_ends = now - now % 60 + 3600;
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
