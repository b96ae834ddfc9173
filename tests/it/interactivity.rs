//! Slack interactivity: a click on a button Herald posted reaches Herald signed with the Slack
//! app's signing secret and acknowledges the notification; unsigned, tampered or stale requests
//! are refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::sandbox::any_local_port;
use herald::vendors::slack::FakeSlack;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, notification, route, Harness, SLACK_TOKEN};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls the notification until it has `count` acknowledgements (ten seconds at most).
async fn acknowledgements_once_there_are(herald: &Harness, count: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let record = herald.get("/v1/notifications/alert-1").await.1;
        let acknowledgements = record["acknowledgements"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if acknowledgements.len() >= count || std::time::Instant::now() > deadline {
            assert_eq!(acknowledgements.len(), count, "{record}");
            return acknowledgements;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_button_click_acknowledges_the_notification() {
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["wedding-day"])
        .await
        .unwrap();
    let signing_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(signing_file.path(), SIGNING_SECRET).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"day-slack\"\norganization = \"studio\"\nkind = \"slack\"\n\
         settings = {{ base_url = \"{}\", channel = \"#wedding-day\", token = {{ file = \"{{secrets}}/slack\" }}, signing_secret = {{ file = \"{}\" }} }}\n\
         rate_limit = {{ per_second = 100, burst = 10 }}\n{}",
        slack.base_url(),
        signing_file.path().display(),
        route("studio", &["day-slack"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    let mut alert = notification("alert-1", "emergency");
    alert["actions"] = json!([{"actionId": "on-it", "label": "I'm on it", "style": "danger"}]);
    herald.post("/v1/notifications", &alert).await;
    herald
        .wait_for_notification("alert-1", Duration::from_secs(10), all_delivered)
        .await;

    let request_url = format!("{}/inbound/slack/day-slack/interactivity", herald.base);
    let status = slack
        .click_button(
            &request_url,
            SIGNING_SECRET,
            "#wedding-day",
            "on-it",
            "U0PLANNER",
            now(),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    // Slack gets its answer first; the acknowledgement is recorded right after.
    let acknowledgements = acknowledgements_once_there_are(&herald, 1).await;
    assert_eq!(acknowledgements[0]["integrationId"], "day-slack");
    assert_eq!(acknowledgements[0]["actionId"], "on-it");
    assert_eq!(acknowledgements[0]["actor"], "U0PLANNER");

    // A request signed with another secret, or outside Slack's five-minute window, is refused
    // and records nothing.
    let forged = slack
        .click_button(
            &request_url,
            "not-the-secret",
            "#wedding-day",
            "on-it",
            "U0MALLORY",
            now(),
        )
        .await
        .unwrap();
    assert_eq!(forged, 401);
    let replayed = slack
        .click_button(
            &request_url,
            SIGNING_SECRET,
            "#wedding-day",
            "on-it",
            "U0MALLORY",
            now() - 600,
        )
        .await
        .unwrap();
    assert_eq!(replayed, 401);
    let unsigned = herald
        .client
        .post(&request_url)
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let refused: serde_json::Value = unsigned.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "invalid_signature", "{refused}");

    // The same click replayed within the window, and a payload stuffed with 10,000 actions,
    // record one acknowledgement per notification, action and person.
    let again = slack
        .click_button(
            &request_url,
            SIGNING_SECRET,
            "#wedding-day",
            "on-it",
            "U0PLANNER",
            now(),
        )
        .await
        .unwrap();
    assert_eq!(again, 200);
    let actions: Vec<_> = (0..10_000)
        .map(|_| json!({"type": "button", "action_id": "on-it", "value": "alert-1"}))
        .collect();
    let stuffed = json!({"type": "block_actions", "user": {"id": "U0STUFFER"}, "actions": actions});
    let body = format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(stuffed.to_string().as_bytes()).collect::<String>()
    );
    let timestamp = now();
    let answer = herald
        .client
        .post(&request_url)
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header(
            "x-slack-signature",
            herald::vendors::slack::sign_slack_request(SIGNING_SECRET, timestamp, body.as_bytes()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // A last, different click is the sentinel: once it is recorded, everything before it is.
    slack
        .click_button(
            &request_url,
            SIGNING_SECRET,
            "#wedding-day",
            "on-it",
            "U0FLORIST",
            now(),
        )
        .await
        .unwrap();
    let acknowledgements = acknowledgements_once_there_are(&herald, 3).await;
    let mut actors: Vec<&str> = acknowledgements
        .iter()
        .map(|a| a["actor"].as_str().unwrap())
        .collect();
    actors.sort();
    assert_eq!(actors, vec!["U0FLORIST", "U0PLANNER", "U0STUFFER"]);

    // Only Slack integrations with a signing secret take interactivity.
    let unknown = herald
        .client
        .post(format!("{}/inbound/slack/nope/interactivity", herald.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // trackCommunicationEngagement: reactions on the message and people's replies in its thread
    // (Herald's own reply with the buttons does not count).
    let ts = slack.messages("wedding-day")[0].0.clone();
    slack.add_reaction(&ts, "eyes", "U0PLANNER");
    slack.add_reaction(&ts, "eyes", "U0FLORIST");
    slack.add_reaction(&ts, "white_check_mark", "U0PLANNER");
    slack.add_reply(&ts, "U0FLORIST", "Flowers can move to 15:00");
    let (status, engagement) = herald.get("/v1/notifications/alert-1/engagement").await;
    assert_eq!(status, StatusCode::OK);
    let read = &engagement["systems"][0]["engagement"];
    assert_eq!(
        read["reactions"],
        json!([{"name": "eyes", "count": 2}, {"name": "white_check_mark", "count": 1}]),
        "{engagement}"
    );
    assert_eq!(
        (read["replies"].as_u64(), read["repliedBy"].clone()),
        (Some(1), json!(["U0FLORIST"]))
    );
    assert_eq!(read["repliesComplete"], true);

    // A long thread is read page by page with Slack's cursors, not just its first page.
    for n in 0..250 {
        slack.add_reply(&ts, &format!("U{n:07}"), "seen");
    }
    let (_, engagement) = herald.get("/v1/notifications/alert-1/engagement").await;
    let read = &engagement["systems"][0]["engagement"];
    assert_eq!(read["replies"], 251, "{engagement}");
    assert_eq!(read["repliesComplete"], true);
    let cursors: Vec<Value> = slack
        .recorder
        .all()
        .into_iter()
        .filter(|r| r.path == "/api/conversations.replies")
        .map(|r| r.body["cursor"].clone())
        .collect();
    assert_eq!(
        cursors,
        [Value::Null, Value::Null, json!("page:200")],
        "one page for the short thread, two for the long one"
    );

    // Posting to a public channel needs no membership (chat:write.public); reading it does.
    slack.remove_bot_from("wedding-day");
    let (_, engagement) = herald.get("/v1/notifications/alert-1/engagement").await;
    let system = &engagement["systems"][0];
    assert_eq!(system["kind"], "rejected", "{engagement}");
    assert!(
        system["error"]
            .as_str()
            .unwrap()
            .contains("not a member of the channel"),
        "{engagement}"
    );
}

/// An app distributed outside the Slack Marketplace reads a thread within Slack's reduced limits:
/// one page of 15 messages (the thread is then not read whole, and says so) and one read a
/// minute; an earlier read is refused by Herald with the wait, without drawing Slack's 429.
#[tokio::test]
async fn an_app_outside_the_marketplace_reads_threads_within_slacks_reduced_limits() {
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["wedding-day"])
        .await
        .unwrap();
    slack.distribute_outside_marketplace();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"day-slack\"\norganization = \"studio\"\nkind = \"slack\"\n\
         settings = {{ base_url = \"{}\", channel = \"#wedding-day\", token = {{ file = \"{{secrets}}/slack\" }}, app_distribution = \"outside_marketplace\" }}\n{}",
        slack.base_url(),
        route("studio", &["day-slack"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    herald
        .post("/v1/notifications", &notification("alert-1", "high"))
        .await;
    herald
        .wait_for_notification("alert-1", Duration::from_secs(10), all_delivered)
        .await;
    let ts = slack.messages("wedding-day")[0].0.clone();
    for n in 0..20 {
        slack.add_reply(&ts, &format!("U{n:07}"), "seen");
    }

    let (_, engagement) = herald.get("/v1/notifications/alert-1/engagement").await;
    let read = &engagement["systems"][0]["engagement"];
    assert_eq!(
        (read["replies"].clone(), read["repliesComplete"].clone()),
        (json!(14), json!(false)),
        "the parent and 14 replies fill the one page: {engagement}"
    );

    let (_, engagement) = herald.get("/v1/notifications/alert-1/engagement").await;
    let system = &engagement["systems"][0];
    assert_eq!(system["kind"], "rate_limited", "{engagement}");
    let wait = system["retryAfterSeconds"].as_u64().unwrap();
    assert!((55..=60).contains(&wait), "{engagement}");

    let limits: Vec<Value> = slack
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/conversations.replies")
        .map(|r| r.body["limit"].clone())
        .collect();
    assert_eq!(limits, [json!("15")], "one read reached Slack");
    assert!(slack
        .requests()
        .iter()
        .all(|r| r.status != StatusCode::TOO_MANY_REQUESTS.as_u16()));
}
