//! Tripleseat end to end against the simulator, which checks every request against the contract
//! written from Tripleseat's support articles: the seed's booking change (an event moved keeping
//! its length and a note: exactly two sync actions), status updates and a refused status, a move
//! into a booked room dead-lettered with Tripleseat's words, expired access tokens refreshed, the
//! partner app installed through Herald by a customer admin, and Tripleseat's signed webhooks
//! routed to the venue's caterer once, forged ones refused.

use herald::sandbox::any_local_port;
use herald::vendors::tripleseat::simulator::CLIENT_ID;
use herald::vendors::tripleseat::FakeTripleseat;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

use crate::harness::{
    all_delivered, dead_lettered, eventually, notification, route, webhook_integration, Harness,
    WEBHOOK_SECRET,
};

const SECRET: &str = "ts-client-secret-0b1c";
const REFRESH: &str = "ts-refresh-configured-9f8e";
const SIGNING_KEY: &str = "ts-signing-key-4d5e";

struct Environment {
    herald: Harness,
    tripleseat: FakeTripleseat,
    _secrets: tempfile::TempDir,
}

/// How the partner app is authorized.
enum App {
    /// Elsewhere: its refresh token configured.
    Configured,
    /// Through Herald: a redirect URI and the approved scopes.
    Installed,
}

/// A Herald whose integration `integration` reaches a Tripleseat customer, with `extra` TOML
/// (routes, other integrations).
async fn start_with(integration: &str, app: App, extra: &str) -> Environment {
    let tripleseat = FakeTripleseat::start(any_local_port(), SECRET, REFRESH)
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("secret", SECRET),
        ("refresh", REFRESH),
        ("signing", SIGNING_KEY),
    ] {
        std::fs::write(secrets.path().join(name), value).unwrap();
    }
    let dir = secrets.path().display();
    let authorized = match app {
        App::Configured => format!("refresh_token = {{ file = \"{dir}/refresh\" }}"),
        App::Installed => format!(
            "redirect_uri = \"{{herald}}/oauth/tripleseat/callback\", scopes = [\"events:read\", \"events:write\"], authorize_url = \"{}/oauth2/authorize\"",
            tripleseat.api_url()
        ),
    };
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"tripleseat\"\n\
         settings = {{ api_url = \"{}\", oauth = {{ client_id = \"{CLIENT_ID}\", client_secret = {{ file = \"{dir}/secret\" }}, {authorized} }}, webhooks = {{ signing_key = {{ file = \"{dir}/signing\" }} }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{extra}",
        tripleseat.api_url(),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        tripleseat,
        _secrets: secrets,
    }
}

async fn start(integration: &str) -> Environment {
    start_with(
        integration,
        App::Configured,
        &route("studio", &[integration], ""),
    )
    .await
}

fn about_event(id: &str, event: u64, metadata: Value) -> Value {
    let mut n = notification(id, "normal");
    let mut all = json!({"tripleseatEventId": event});
    for (key, value) in metadata.as_object().into_iter().flatten() {
        all[key] = value.clone();
    }
    n["metadata"] = all;
    n
}

#[tokio::test]
async fn the_seeds_booking_change_moves_the_event_and_notes_it_in_two_sync_actions() {
    let env = start("venue").await;
    let event = env.tripleseat.add_event(
        "Taylor & Morgan wedding",
        "06/05/2027 02:00 PM",
        "06/06/2027 12:30 AM",
        "DEFINITE",
        7,
    );
    let mut n = about_event(
        "moved-1",
        event,
        json!({"timelineChanges": {"newWeddingDate": "2027-06-12", "newWeddingTime": "15:30", "newVenue": "The Orangery"}}),
    );
    n["weddingContext"]["weddingDate"] = json!("2027-06-12");
    let routing = json!({
        "routingId": "ts-1",
        "sourceNotification": n,
        "targetSystems": [{"integrationId": "venue"}]
    });
    let (status, result) = env.herald.post("/v1/routings?wait=10s", &routing).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["overallStatus"], "success");
    let delivered = &result["systemResults"][0]["deliveryResults"][0];
    let actions = delivered["details"]["syncActions"].as_array().unwrap();
    assert_eq!(
        actions.len(),
        2,
        "the seed's booking change: exactly 2 syncActions: {result}"
    );
    assert_eq!(actions[0]["action"], "event_update");
    assert_eq!(actions[0]["fields"], json!(["event_start", "event_end"]));
    assert_eq!(actions[1]["action"], "communication_log_note");
    // Moved to the new day and time, ten and a half hours long as before (past midnight).
    let moved = env.tripleseat.event(event).unwrap();
    assert_eq!(moved["event_start"], "06/12/2027 03:30 PM");
    assert_eq!(moved["event_end"], "06/13/2027 02:00 AM");
    let notes = env.tripleseat.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].event_id, event);
    assert_eq!(
        notes[0].body,
        "Ceremony moved\n\nThe ceremony now starts at 15:30\nNew venue: The Orangery\n(WedSync notification moved-1)"
    );
    assert_eq!(
        delivered["receipt"],
        format!("event {event} updated; note {}", notes[0].id)
    );
    // Three API requests (the read, the update, the note) and one token grant, not recorded.
    let paths: Vec<String> = env
        .tripleseat
        .recorder
        .all()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            format!("GET /v1/events/{event}.json"),
            format!("PUT /v1/events/{event}.json"),
            format!("POST /v1/events/{event}/notes"),
        ]
    );
    assert_eq!(env.tripleseat.grants(), 1);
}

#[tokio::test]
async fn statuses_are_set_refused_named_and_a_booked_room_is_tripleseats_refusal() {
    let env = start("venue-status").await;
    let event = env.tripleseat.add_event(
        "Patel wedding",
        "09/04/2027 01:00 PM",
        "09/04/2027 11:00 PM",
        "TENTATIVE",
        3,
    );
    let mut confirmed = about_event(
        "confirm-1",
        event,
        json!({"updatesBookingStatus": true, "newStatus": "confirmed"}),
    );
    confirmed["type"] = json!("booking_update");
    let record = env.herald.notify(&confirmed, all_delivered).await;
    assert_eq!(
        record["targets"][0]["details"]["syncActions"][0]["change"],
        json!({"status": "DEFINITE"})
    );
    assert_eq!(env.tripleseat.event(event).unwrap()["status"], "DEFINITE");

    let mut unknown = about_event(
        "confirm-2",
        event,
        json!({"updatesBookingStatus": true, "newStatus": "signed"}),
    );
    unknown["type"] = json!("booking_update");
    let record = env.herald.notify(&unknown, dead_lettered).await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("\"signed\" is not a Tripleseat event status"),
        "{error}"
    );

    // Another definite event holds room 3 on the 11th: Tripleseat refuses the move, and
    // Herald keeps its words.
    env.tripleseat.add_event(
        "Rehearsal dinner",
        "09/11/2027 12:00 PM",
        "09/11/2027 04:00 PM",
        "DEFINITE",
        3,
    );
    let mut clash = about_event("clash-1", event, json!({}));
    clash["weddingContext"]["weddingDate"] = json!("2027-09-11");
    let record = env.herald.notify(&clash, dead_lettered).await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("already booked for Rehearsal dinner"),
        "{error}"
    );
    assert_eq!(
        env.tripleseat.event(event).unwrap()["event_start"],
        "09/04/2027 01:00 PM"
    );
    assert_eq!(
        env.tripleseat.notes().len(),
        1,
        "only the confirmation was noted"
    );
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_and_the_attempt_goes_on() {
    let env = start("venue-tokens").await;
    let event = env.tripleseat.add_event(
        "Nguyen wedding",
        "05/01/2027 03:00 PM",
        "05/01/2027 11:00 PM",
        "DEFINITE",
        1,
    );
    let mut first = about_event("note-1", event, json!({}));
    first["type"] = json!("client_message");
    env.herald.notify(&first, all_delivered).await;
    assert_eq!(env.tripleseat.grants(), 1);
    env.tripleseat.expire_access_tokens();
    let mut second = about_event("note-2", event, json!({}));
    second["type"] = json!("client_message");
    // Tripleseat refuses the expired token; Herald refreshes it and tries again at once.
    let record = env.herald.notify(&second, all_delivered).await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{record}");
    assert_eq!(env.tripleseat.grants(), 2);
    assert_eq!(env.tripleseat.notes().len(), 2);
}

#[tokio::test]
async fn a_customer_admin_installs_the_app_through_herald() {
    let env = start_with(
        "venue-install",
        App::Installed,
        &route("studio", &["venue-install"], ""),
    )
    .await;
    env.tripleseat
        .await_install(&format!("{}/oauth/tripleseat/callback", env.herald.base));
    let (consent, query) = env.herald.start_install("venue-install").await;
    assert!(consent.starts_with(&format!("{}/oauth2/authorize?", env.tripleseat.api_url())));
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "events:read events:write");
    env.herald
        .consent_and_check_sealed(
            &consent,
            "tripleseat",
            "venue-install",
            "tripleseat_refresh_token",
            || {
                env.tripleseat
                    .refresh_token()
                    .filter(|token| token != REFRESH)
            },
        )
        .await;
    let event = env.tripleseat.add_event(
        "Okafor wedding",
        "07/17/2027 02:00 PM",
        "07/17/2027 10:00 PM",
        "DEFINITE",
        2,
    );
    let mut n = about_event("after-install", event, json!({}));
    n["type"] = json!("client_message");
    env.herald.notify(&n, all_delivered).await;
    assert_eq!(env.tripleseat.notes().len(), 1);
}

#[tokio::test]
async fn tripleseats_signed_webhooks_reach_the_caterer_once_and_forgeries_are_refused() {
    let caterer = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let extra = format!(
        "{}\n{}",
        webhook_integration("catering", "studio", &caterer.url(), ""),
        route("studio", &["venue-hooks", "catering"], ""),
    );
    let env = start_with("venue-hooks", App::Configured, &extra).await;
    let target = format!(
        "{}/inbound/tripleseat/venue-hooks/webhooks",
        env.herald.base
    );
    let lead = json!({"id": 88123, "first_name": "Priya", "last_name": "Shah", "email_address": "priya.shah@example.com", "phone_number": "+447700900456", "event_date": "09/04/2027", "guest_count": 120, "status": "new"});
    assert_eq!(
        env.tripleseat
            .send_webhook(&target, SIGNING_KEY, "CREATE_LEAD", lead.clone())
            .await,
        200
    );
    eventually(Duration::from_secs(10), "the lead at the caterer", || {
        caterer.received().len() == 1
    })
    .await;
    let delivered = caterer.received()[0].body["data"].clone();
    assert_eq!(delivered["type"], "lead_created");
    assert_eq!(delivered["title"], "Tripleseat: new lead Priya Shah");
    assert_eq!(
        delivered["contacts"],
        json!([{"name": "Priya Shah", "email": "priya.shah@example.com", "phone": "+447700900456", "role": "lead"}])
    );
    assert_eq!(
        delivered["weddingContext"],
        json!({"weddingDate": "2027-09-04", "coupleNames": "Priya Shah"})
    );
    // The same POST re-sent is the same notification; a forged or unsigned one is refused.
    assert_eq!(
        env.tripleseat
            .send_webhook(&target, SIGNING_KEY, "CREATE_LEAD", lead.clone())
            .await,
        200
    );
    assert_eq!(
        env.tripleseat
            .send_webhook(&target, "guessed-key", "CREATE_LEAD", lead.clone())
            .await,
        401
    );
    let unsigned = env
        .herald
        .client
        .post(&target)
        .body(json!({"webhook_trigger_type": "CREATE_LEAD", "object": lead}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // A status change of an event: booking_confirmed, with the event's id where a Tripleseat
    // connector reads it; a trigger Herald has no use for is answered and left.
    let event = json!({"id": 40555, "name": "Shah & Rao wedding", "event_start": "09/04/2027 02:00 PM", "event_end": "09/04/2027 11:00 PM", "status": "DEFINITE"});
    assert_eq!(
        env.tripleseat
            .send_webhook(&target, SIGNING_KEY, "STATUS_CHANGE_EVENT", event)
            .await,
        200
    );
    assert_eq!(
        env.tripleseat
            .send_webhook(&target, SIGNING_KEY, "CREATE_ROOM", json!({"id": 9}))
            .await,
        200
    );
    eventually(
        Duration::from_secs(10),
        "the booking at the caterer",
        || caterer.received().len() == 2,
    )
    .await;
    let booked = caterer.received()[1].body["data"].clone();
    assert_eq!(booked["type"], "booking_confirmed");
    assert_eq!(booked["metadata"]["tripleseatEventId"], "40555");
    assert_eq!(booked["weddingContext"]["weddingDate"], "2027-09-04");
    // Nothing went back to Tripleseat, and only the two reached the caterer.
    assert!(env.tripleseat.recorder.all().is_empty());
    assert_eq!(caterer.received().len(), 2);
}

#[tokio::test]
async fn refresh_tokens_tripleseat_rotates_are_used_and_an_installed_apps_survive_a_restart() {
    // A configured app: the rotated token is used from then on.
    let env = start("venue-rotating").await;
    env.tripleseat.rotate_refresh_tokens();
    let event = env.tripleseat.add_event(
        "Ito wedding",
        "08/21/2027 03:00 PM",
        "08/21/2027 11:00 PM",
        "DEFINITE",
        4,
    );
    for n in 0..3 {
        let mut note = about_event(&format!("rotating-{n}"), event, json!({}));
        note["type"] = json!("client_message");
        env.herald.notify(&note, all_delivered).await;
        env.tripleseat.expire_access_tokens();
    }
    assert_eq!(
        env.tripleseat.grants(),
        3,
        "three refreshes, each with the token the last one issued"
    );
    assert_eq!(env.tripleseat.notes().len(), 3);

    // An app installed through Herald: the rotated token is sealed in the vault in place of the
    // installed one, so Herald still reaches Tripleseat after a restart.
    let env = start_with(
        "venue-kept",
        App::Installed,
        &route("studio", &["venue-kept"], ""),
    )
    .await;
    env.tripleseat
        .await_install(&format!("{}/oauth/tripleseat/callback", env.herald.base));
    let (consent, _) = env.herald.start_install("venue-kept").await;
    assert_eq!(
        reqwest::get(&consent).await.unwrap().status(),
        StatusCode::OK
    );
    env.tripleseat.rotate_refresh_tokens();
    let event = env.tripleseat.add_event(
        "Mensah wedding",
        "10/02/2027 02:00 PM",
        "10/02/2027 10:00 PM",
        "DEFINITE",
        5,
    );
    env.tripleseat.expire_access_tokens();
    let mut first = about_event("kept-1", event, json!({}));
    first["type"] = json!("client_message");
    env.herald.notify(&first, all_delivered).await;
    let Environment {
        herald,
        tripleseat,
        _secrets,
    } = env;
    let herald = herald.restarted().await;
    tripleseat.expire_access_tokens();
    let mut second = about_event("kept-2", event, json!({}));
    second["type"] = json!("client_message");
    herald.notify(&second, all_delivered).await;
    assert_eq!(tripleseat.notes().len(), 2);
}
