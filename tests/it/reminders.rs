//! Slack reminder sequences (the seed's createAutomatedMessageSequences): delivering a
//! `booking_confirmed` notification schedules the configured reminders with
//! `chat.scheduleMessage`, relative to the wedding date; past or too-distant ones are skipped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::sandbox::any_local_port;
use herald::vendors::slack::FakeSlack;
use serde_json::json;

use crate::harness::{all_delivered, notification, route, Harness, SLACK_TOKEN};

#[tokio::test]
async fn a_confirmed_booking_schedules_the_reminder_sequence() {
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["bookings"])
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"team\"\norganization = \"studio\"\nkind = \"slack\"\n\
         settings = {{ base_url = \"{}\", channel = \"#bookings\", token = {{ file = \"{{secrets}}/slack\" }}, reminders = [\
           {{ days_before = 30, at = \"09:00\", text_template = \"A month to go for {{{{ weddingContext.venue }}}}\" }},\
           {{ days_before = 1, at = \"17:30\", text_template = \"Tomorrow: {{{{ title }}}}\" }},\
           {{ days_before = 90, at = \"09:00\", text_template = \"Three months to go\" }}\
         ] }}\n\
         rate_limit = {{ per_second = 100, burst = 10 }}\n{}",
        slack.base_url(),
        route("studio", &["team"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    // A wedding 60 days from now: the 30- and 1-day reminders are ahead, the 90-day one is past.
    let wedding = SystemTime::now() + Duration::from_secs(60 * 24 * 3600);
    let date = humantime::format_rfc3339_seconds(wedding).to_string()[..10].to_owned();
    let mut confirmed = notification("booked-1", "normal");
    confirmed["type"] = json!("booking_confirmed");
    confirmed["title"] = json!("Kew Gardens wedding confirmed");
    confirmed["weddingContext"]["weddingDate"] = json!(date);
    herald.post("/v1/notifications", &confirmed).await;
    let record = herald
        .wait_for_notification("booked-1", Duration::from_secs(10), all_delivered)
        .await;

    let midnight = humantime::parse_rfc3339(&format!("{date}T00:00:00Z"))
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let scheduled = slack.scheduled("#bookings");
    assert_eq!(scheduled.len(), 2, "{scheduled:?}");
    assert_eq!(
        (scheduled[0].1, scheduled[0].2.as_str()),
        (
            midnight - 30 * 86_400 + 9 * 3600,
            "A month to go for Kew Gardens"
        )
    );
    assert_eq!(
        (scheduled[1].1, scheduled[1].2.as_str()),
        (
            midnight - 86_400 + 17 * 3600 + 30 * 60,
            "Tomorrow: Kew Gardens wedding confirmed"
        )
    );
    let details = &record["targets"][0]["details"];
    assert_eq!(details["scheduledReminders"].as_array().unwrap().len(), 2);
    assert_eq!(
        details["scheduledReminders"][0]["scheduledMessageId"],
        scheduled[0].0.as_str()
    );
    assert_eq!(
        details["skippedReminders"],
        json!([{"daysBefore": 90, "reason": "already past"}])
    );

    // Other notification types post without scheduling anything.
    herald
        .post("/v1/notifications", &notification("moved-1", "normal"))
        .await;
    herald
        .wait_for_notification("moved-1", Duration::from_secs(10), all_delivered)
        .await;
    assert_eq!(slack.scheduled("#bookings").len(), 2);
}
