//! Weather alerts end to end against the NWS simulator: a wedding routed to a weather
//! integration is watched from its lead time; a severe alert in force on its day at its venue
//! becomes one emergency routed to the organization's other targets (never back to the watch),
//! once per alert whatever its updates and Herald's restarts; milder, distant and earlier alerts
//! are not; a watch ends with the wedding's cancellation; a wedding without a place, or with one
//! the NWS does not cover, is refused by name.

use std::time::Duration;

use herald::sandbox::{any_local_port, RecordedRequest};
use herald::vendors::weather::simulator::{IssuedAlert, SAMPLE_VENUE};
use herald::vendors::weather::FakeNationalWeatherService;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    all_delivered, dead_lettered, eventually, webhook_integration, Harness, WEBHOOK_SECRET,
};

const FAR_AWAY: (f64, f64) = (44.98, -93.27);

struct Environment {
    herald: Harness,
    nws: FakeNationalWeatherService,
    desk: WebhookReceiver,
}

async fn start() -> Environment {
    let nws = FakeNationalWeatherService::start(any_local_port())
        .await
        .unwrap();
    let desk = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"weather\"\norganization = \"studio\"\nkind = \"weather\"\n\
         settings = {{ contact = \"weather-desk@studio.example\", api_url = \"{}\", poll_interval = \"1s\", lead_time = \"7days\" }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n\
         {}\
         [[routes]]\norganization = \"studio\"\nname = \"watch the weddings\"\ntypes = [\"booking_confirmed\", \"timeline_change\", \"wedding_cancelled\"]\ntargets = [\"weather\"]\n\
         [[routes]]\norganization = \"studio\"\nname = \"emergencies to the desk\"\nmin_priority = \"emergency\"\ntargets = [\"desk\", \"weather\"]\n",
        nws.url(),
        webhook_integration("desk", "studio", &desk.url(), ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        nws,
        desk,
    }
}

/// The day `days` from today (UTC), `YYYY-MM-DD`.
fn in_days(days: i64) -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_add(jiff::Span::new().days(days))
        .unwrap()
        .to_string()
}

fn booking(id: &str, wedding_id: &str, date: &str, place: Option<(f64, f64)>) -> Value {
    let mut booking = json!({
        "notificationId": id,
        "type": "booking_confirmed",
        "priority": "normal",
        "title": "Booking confirmed",
        "message": "The barn is booked.",
        "weddingContext": {"weddingId": wedding_id, "weddingDate": date, "venue": "Cedar Barn", "coupleNames": "Sam & Alex"},
        "contacts": [{"name": "Priya", "phone": "+17045550123", "role": "planner"}]
    });
    if let Some((latitude, longitude)) = place {
        booking["weddingContext"]["venueLocation"] =
            json!({"latitude": latitude, "longitude": longitude});
    }
    booking
}

/// The emergencies the desk received, in order.
fn emergencies(env: &Environment) -> Vec<Value> {
    env.desk
        .received()
        .into_iter()
        .map(|request| request.body["data"].clone())
        .collect()
}

fn alert_reads(env: &Environment) -> Vec<RecordedRequest> {
    env.nws
        .recorder
        .all()
        .into_iter()
        .filter(|request| request.path.starts_with("/alerts/active?"))
        .collect()
}

/// Waits until the simulator has answered two more alert reads than it had: the first may have
/// been under way when the caller's change was made, the second began after it, and a poll
/// reads its venues before it hands over what it found (polls of one integration never overlap,
/// so the second read also means the first one's emergencies were handed over).
async fn two_more_polls(env: &Environment) {
    let before = alert_reads(env).len();
    eventually(Duration::from_secs(10), "two more polls", || {
        alert_reads(env).len() >= before + 2
    })
    .await;
}

/// `hour` o'clock on `date` at the sample venue (America/New_York), as an RFC 3339 instant.
fn local(date: &str, hour: i8) -> String {
    let day: jiff::civil::Date = date.parse().unwrap();
    day.at(hour, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::get("America/New_York").unwrap())
        .unwrap()
        .timestamp()
        .to_string()
}

#[tokio::test]
async fn a_severe_alert_on_the_wedding_day_becomes_one_emergency_for_the_organizations_other_targets(
) {
    let env = start().await;
    let date = in_days(2);
    let (onset, ends) = (local(&date, 13), local(&date, 20));
    let (eve_onset, eve_ends) = (local(&in_days(1), 8), local(&in_days(1), 20));
    env.nws.issue(IssuedAlert::around(
        "urn:oid:2.49.0.1.840.0.wind",
        "Wind Advisory",
        "Moderate",
        SAMPLE_VENUE,
        (&onset, &ends),
    ));
    env.nws.issue(IssuedAlert::around(
        "urn:oid:2.49.0.1.840.0.far",
        "Blizzard Warning",
        "Extreme",
        FAR_AWAY,
        (&onset, &ends),
    ));
    env.nws.issue(IssuedAlert::around(
        "urn:oid:2.49.0.1.840.0.eve",
        "Flash Flood Warning",
        "Severe",
        SAMPLE_VENUE,
        (&eve_onset, &eve_ends),
    ));
    env.nws.issue(IssuedAlert::around(
        "urn:oid:2.49.0.1.840.0.storm",
        "Severe Thunderstorm Warning",
        "Severe",
        SAMPLE_VENUE,
        (&onset, &ends),
    ));

    let record = env
        .herald
        .notify(
            &booking("booked", "w-barn", &date, Some(SAMPLE_VENUE)),
            all_delivered,
        )
        .await;
    let target = &record["targets"][0];
    assert_eq!(target["integrationId"], "weather");
    assert_eq!(target["receipt"], "watching:w-barn");
    assert_eq!(target["details"]["point"], "35.2271,-80.8431");
    assert_eq!(target["details"]["timeZone"], "America/New_York");
    assert_eq!(target["details"]["forecastZone"], "NCZ071");
    assert_eq!(target["details"]["until"], local(&in_days(3), 0));

    eventually(Duration::from_secs(10), "the storm's emergency", || {
        !emergencies(&env).is_empty()
    })
    .await;
    let emergency = emergencies(&env).remove(0);
    assert_eq!(emergency["type"], "weather_alert");
    assert_eq!(emergency["priority"], "emergency");
    assert_eq!(
        emergency["title"],
        format!("Severe Thunderstorm Warning at Cedar Barn for the wedding on {date}")
    );
    assert_eq!(
        emergency["metadata"]["alertId"],
        "urn:oid:2.49.0.1.840.0.storm"
    );
    assert_eq!(emergency["metadata"]["severity"], "Severe");
    assert_eq!(emergency["weddingContext"]["weddingId"], "w-barn");
    assert_eq!(emergency["weddingContext"]["timezone"], "America/New_York");
    assert_eq!(
        emergency["weddingContext"]["venueLocation"],
        json!({"latitude": 35.2271, "longitude": -80.8431})
    );
    assert_eq!(emergency["contacts"][0]["phone"], "+17045550123");
    assert!(
        emergency["message"]
            .as_str()
            .unwrap()
            .contains("Move marquees and guests indoors."),
        "{emergency}"
    );
    // Journaled as the organization's, in the emergency lane, to the desk and not back to the
    // watch that raised it.
    let id = emergency["notificationId"].as_str().unwrap();
    let record = env
        .herald
        .wait_for_notification(id, Duration::from_secs(10), all_delivered)
        .await;
    let targets = record["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{record}");
    assert_eq!(targets[0]["integrationId"], "desk");
    assert_eq!(targets[0]["emergency"], true);

    // Asked politely: the contact in the User-Agent, and after the first answer only what
    // changed since it.
    two_more_polls(&env).await;
    let reads = alert_reads(&env);
    assert!(reads.iter().all(|read| read
        .header("user-agent")
        .is_some_and(|agent| agent.contains("weather-desk@studio.example"))));
    assert_eq!(
        reads[0].path,
        "/alerts/active?point=35.2271,-80.8431&status=actual"
    );
    assert!(reads[1..]
        .iter()
        .all(|read| read.header("if-modified-since").is_some()));
    assert!(reads.iter().any(|read| read.status == 304), "{reads:?}");

    // An update of the storm's warning is the same alert: no second emergency.
    env.nws.issue(IssuedAlert {
        id: "urn:oid:2.49.0.1.840.0.storm-update".into(),
        message_type: "Update".into(),
        references: vec![("urn:oid:2.49.0.1.840.0.storm".into(), local(&in_days(0), 9))],
        ..IssuedAlert::around(
            "unused",
            "Severe Thunderstorm Warning",
            "Severe",
            SAMPLE_VENUE,
            (&onset, &ends),
        )
    });
    two_more_polls(&env).await;
    assert_eq!(emergencies(&env).len(), 1);

    // A new, extreme alert is another emergency.
    env.nws.issue(IssuedAlert::around(
        "urn:oid:2.49.0.1.840.0.tornado",
        "Tornado Warning",
        "Extreme",
        SAMPLE_VENUE,
        (&onset, &ends),
    ));
    eventually(Duration::from_secs(10), "the tornado's emergency", || {
        emergencies(&env).len() == 2
    })
    .await;
    assert_eq!(
        emergencies(&env)[1]["metadata"]["alertId"],
        "urn:oid:2.49.0.1.840.0.tornado"
    );
    two_more_polls(&env).await;
    assert_eq!(emergencies(&env).len(), 2);
}

#[tokio::test]
async fn watches_outlive_a_restart_alerts_are_told_once_and_a_cancelled_wedding_is_not_watched() {
    let env = start().await;
    let date = in_days(3);
    env.herald
        .notify(
            &booking("booked", "w-barn", &date, Some(SAMPLE_VENUE)),
            all_delivered,
        )
        .await;
    // A wedding a month away is watched from its lead time, not before.
    let later_venue = (35.5, -80.5);
    env.herald
        .notify(
            &booking("later", "w-later", &in_days(30), Some(later_venue)),
            all_delivered,
        )
        .await;
    env.nws.issue(IssuedAlert::around(
        "urn:oid:2.49.0.1.840.0.heat",
        "Extreme Heat Warning",
        "Extreme",
        SAMPLE_VENUE,
        (&local(&date, 10), &local(&date, 19)),
    ));
    eventually(Duration::from_secs(10), "the heat emergency", || {
        emergencies(&env).len() == 1
    })
    .await;

    let Environment { herald, nws, desk } = env;
    let herald = herald.restarted().await;
    let env = Environment { herald, nws, desk };
    // After the restart the watch is still there and the alert is read again in full; the
    // journal knows the emergency already.
    two_more_polls(&env).await;
    assert_eq!(emergencies(&env).len(), 1);
    let metrics = env.herald.metrics().await;
    let duplicates: u64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("herald_polled_total{integration=\"weather\",outcome=\"duplicate\"} ")
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or_default();
    assert!(duplicates >= 1, "{metrics}");
    assert!(
        alert_reads(&env)
            .iter()
            .all(|read| !read.path.contains("35.5,-80.5")),
        "the wedding a month away was read before its lead time"
    );

    // Cancelled: the watch ends, the venue is no longer read.
    let mut cancelled = booking("cancelled", "w-barn", &date, None);
    cancelled["type"] = json!("wedding_cancelled");
    let record = env.herald.notify(&cancelled, all_delivered).await;
    assert_eq!(record["targets"][0]["receipt"], "stopped:w-barn");
    let reads = alert_reads(&env).len();
    env.herald
        .notify(
            &booking("nearby", "w-nearby", &date, Some(FAR_AWAY)),
            all_delivered,
        )
        .await;
    eventually(
        Duration::from_secs(10),
        "the other venue to be read",
        || {
            alert_reads(&env)[reads..]
                .iter()
                .any(|read| read.path.contains("44.98,-93.27"))
        },
    )
    .await;
    two_more_polls(&env).await;
    let after_cancel: Vec<RecordedRequest> = alert_reads(&env).split_off(reads);
    let first_far = after_cancel
        .iter()
        .position(|read| read.path.contains("44.98,-93.27"))
        .unwrap();
    assert!(
        after_cancel[first_far..]
            .iter()
            .all(|read| !read.path.contains("35.2271,-80.8431")),
        "the cancelled wedding's venue was still read"
    );
}

#[tokio::test]
async fn a_wedding_without_a_place_or_outside_the_nws_is_refused_by_name() {
    let env = start().await;
    let date = in_days(5);
    let record = env
        .herald
        .notify(&booking("nowhere", "w-1", &date, None), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("weddingContext.venueLocation"), "{error}");

    let record = env
        .herald
        .notify(
            &booking("london", "w-2", &date, Some((51.5072, -0.1276))),
            dead_lettered,
        )
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("Data Unavailable For Requested Point: Unable to provide data for requested point 51.5072,-0.1276"),
        "{error}"
    );
    assert_eq!(record["targets"][0]["attempts"], 1);

    let record = env
        .herald
        .notify(
            &booking("past", "w-3", &in_days(-2), Some(SAMPLE_VENUE)),
            dead_lettered,
        )
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("is over"), "{error}");

    let (status, answer) = env
        .herald
        .post(
            "/v1/notifications",
            &booking("pole", "w-4", &date, Some((91.0, 0.0))),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(
        answer["error"]["field"], "weddingContext.venueLocation.latitude",
        "{answer}"
    );
}
