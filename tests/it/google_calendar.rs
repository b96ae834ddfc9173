//! Google Calendar end to end against its simulator, which checks every event against Google's
//! published discovery document: an account connected through Herald (PKCE, the refresh token
//! sealed), the wedding made as an all-day event in its time zone that Herald finds again by its
//! private property, moved by a timeline change (attendees invited only as configured), an event
//! made by an attempt whose answer was lost patched instead of duplicated, the wedding
//! cancelled, and Google's quota answers waited out.

use herald::sandbox::any_local_port;
use herald::vendors::google_calendar::{event_id, FakeGoogleCalendar};
use serde_json::{json, Value};

use crate::harness::{all_delivered, notification, route, Harness};

const ACCOUNT: &str = "weddings@kew-films.example";
const CLIENT_ID: &str = "42-studio.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-studio-client-secret";
const REFRESH_TOKEN: &str = "1//0studio-refresh-token";

struct Environment {
    herald: Harness,
    google: FakeGoogleCalendar,
    _secrets: tempfile::TempDir,
}

/// Herald with a Google Calendar integration `calendar` whose OAuth settings end with `oauth`
/// and whose other settings are `extra`.
async fn start(oauth: &str, extra: &str, refresh_token: &str) -> Environment {
    let google = FakeGoogleCalendar::start(
        any_local_port(),
        ACCOUNT,
        CLIENT_ID,
        CLIENT_SECRET,
        refresh_token,
    )
    .await
    .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), CLIENT_SECRET).unwrap();
    std::fs::write(secrets.path().join("refresh"), REFRESH_TOKEN).unwrap();
    let dir = secrets.path().display();
    let oauth = oauth.replace("REFRESH_FILE", &format!("{dir}/refresh"));
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"calendar\"\norganization = \"studio\"\nkind = \"google_calendar\"\n\
         settings = {{ oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{dir}/secret\" }}, token_url = \"{url}/token\", authorize_url = \"{url}/o/oauth2/v2/auth\", {oauth} }}, api_url = \"{url}\"{extra} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        route("studio", &["calendar"], ""),
        url = google.url(),
    );
    let herald = Harness::start(&body, "studio").await;
    google.register_redirect_uri(&format!("{}/oauth/google_calendar/callback", herald.base));
    Environment {
        herald,
        google,
        _secrets: secrets,
    }
}

async fn configured(extra: &str) -> Environment {
    start(
        "refresh_token = { file = \"REFRESH_FILE\" }",
        extra,
        REFRESH_TOKEN,
    )
    .await
}

fn wedding(id: &str) -> Value {
    let mut n = notification(id, "normal");
    n["weddingContext"] = json!({"weddingId": "w-2027-0612", "weddingDate": "2027-06-12", "venue": "Kew Gardens", "coupleNames": "Sam & Alex", "timezone": "Europe/London"});
    n["contacts"] = json!([
        {"name": "Sam", "email": "sam@example.com", "role": "couple"},
        {"name": "Jo", "email": "jo@planners.example", "role": "planner"}
    ]);
    n
}

#[tokio::test]
async fn an_account_connected_through_herald_gets_the_wedding_as_an_event() {
    let env = start(
        "redirect_uri = \"{herald}/oauth/google_calendar/callback\"",
        "",
        "",
    )
    .await;
    let (consent, query) = env.herald.start_install("calendar").await;
    assert!(consent.starts_with(&format!("{}/o/oauth2/v2/auth?", env.google.url())));
    assert_eq!(
        (
            query["scope"].as_str(),
            query["access_type"].as_str(),
            query["prompt"].as_str(),
            query["code_challenge_method"].as_str()
        ),
        (
            "https://www.googleapis.com/auth/calendar.events",
            "offline",
            "consent",
            "S256"
        )
    );
    env.herald
        .consent_and_check_sealed(
            &consent,
            "google_calendar",
            "calendar",
            "google_calendar_refresh_token",
            || env.google.refresh_tokens().first().cloned(),
        )
        .await;

    let record = env.herald.notify(&wedding("gc-1"), all_delivered).await;
    let events = env.google.events("primary");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["id"], event_id("w-2027-0612"));
    assert_eq!(event["summary"], "Wedding: Sam & Alex at Kew Gardens");
    assert_eq!(event["location"], "Kew Gardens");
    assert_eq!(
        event["start"],
        json!({"date": "2027-06-12", "timeZone": "Europe/London"})
    );
    assert_eq!(event["end"]["date"], "2027-06-13");
    assert_eq!(
        event["extendedProperties"]["private"]["heraldWeddingId"],
        "w-2027-0612"
    );
    assert!(
        event.get("attendees").is_none(),
        "nobody invited unless configured"
    );
    let target = &record["targets"][0];
    assert_eq!(target["receipt"], event_id("w-2027-0612"));
    assert_eq!(target["details"]["change"], "created");
}

#[tokio::test]
async fn a_timeline_change_moves_the_event_and_a_cancellation_cancels_it() {
    let env = configured(", invite_contact_roles = [\"couple\"], send_updates = \"all\"").await;
    env.herald.notify(&wedding("gc-1"), all_delivered).await;
    let mut moved = wedding("gc-2");
    moved["title"] = json!("Wedding moved to 3 July");
    moved["metadata"] =
        json!({"timelineChanges": {"newWeddingDate": "2027-07-03", "newWeddingTime": "14:00"}});
    let record = env.herald.notify(&moved, all_delivered).await;
    assert_eq!(record["targets"][0]["details"]["change"], "updated");
    let events = env.google.events("primary");
    assert_eq!(events.len(), 1, "moved, not made again: {events:?}");
    let event = &events[0];
    assert_eq!(event["start"]["date"], "2027-07-03");
    assert_eq!(event["end"]["date"], "2027-07-04");
    assert!(event["description"]
        .as_str()
        .unwrap()
        .starts_with("Wedding moved to 3 July\n"));
    assert!(event["description"]
        .as_str()
        .unwrap()
        .ends_with("Ceremony: 14:00 (Europe/London)"));
    assert_eq!(
        event["attendees"],
        json!([{"email": "sam@example.com", "displayName": "Sam"}])
    );
    let id = event_id("w-2027-0612");
    assert_eq!(
        env.google.invitations(),
        [
            ("sam@example.com".to_owned(), id.clone()),
            ("sam@example.com".to_owned(), id.clone())
        ]
    );

    let mut cancelled = wedding("gc-3");
    cancelled["type"] = json!("wedding_cancelled");
    let record = env.herald.notify(&cancelled, all_delivered).await;
    assert_eq!(record["targets"][0]["details"]["change"], "cancelled");
    assert_eq!(env.google.events("primary")[0]["status"], "cancelled");
    // Cancelling again has nothing left to cancel, and says so.
    let mut again = wedding("gc-4");
    again["type"] = json!("wedding_cancelled");
    let record = env.herald.notify(&again, all_delivered).await;
    assert_eq!(
        record["targets"][0]["details"]["change"],
        "nothing_to_cancel"
    );
}

#[tokio::test]
async fn an_event_made_by_a_lost_attempt_is_patched_and_quota_is_waited_out() {
    let env = configured("").await;
    env.herald.notify(&wedding("gc-1"), all_delivered).await;
    // Google's per-user quota refuses once; then the search misses the event (as if the first
    // insert's answer had been lost before Herald saw it): the insert meets Google's 409 and
    // Herald patches the same event.
    env.google.faults.respond_next(
        403,
        &[],
        json!({"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded", "message": "Rate Limit Exceeded"}]}}),
    );
    env.google
        .faults
        .respond_next(200, &[], json!({"kind": "calendar#events", "items": []}));
    let mut moved = wedding("gc-2");
    moved["weddingContext"]["weddingDate"] = json!("2027-06-19");
    let record = env.herald.notify(&moved, all_delivered).await;
    assert_eq!(record["targets"][0]["details"]["change"], "updated");
    let events = env.google.events("primary");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["start"]["date"], "2027-06-19");
    let statuses: Vec<(String, u16)> = env
        .google
        .recorder
        .all()
        .iter()
        .filter(|request| request.path.starts_with("/calendar/"))
        .map(|request| (request.method.clone(), request.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("GET".to_owned(), 200),
            ("POST".to_owned(), 200),
            ("GET".to_owned(), 403),
            ("GET".to_owned(), 200),
            ("POST".to_owned(), 409),
            ("PATCH".to_owned(), 200),
        ]
    );
}
