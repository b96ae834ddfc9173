//! Intercom end to end against the simulated workspace: a notification is a message from the
//! studio's teammate to the couple's contact (found by email or created, a lagging search's
//! conflict taken in its stride), the same wedding's next notification a reply in that
//! conversation; the couple's reply comes back through the signed webhook as an
//! acknowledgement, and a forged one is refused; engagement reads the conversation; a revoked
//! token or an email without a subject is dead-lettered in Intercom's words.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::intercom::{sign, FakeIntercom};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const TOKEN: &str = "dG9rOmdvbGRlbi1ob3VyLWludGVyY29t";
const ADMIN: &str = "7001234";
const CLIENT_SECRET: &str = "intercom-client-secret-3e8a";

struct Environment {
    herald: Harness,
    intercom: FakeIntercom,
    _secrets: tempfile::TempDir,
}

async fn start(integration: &str, extra: &str) -> Environment {
    let intercom = FakeIntercom::start(any_local_port(), TOKEN).await.unwrap();
    intercom.add_admin(ADMIN, "Wedding desk");
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), TOKEN).unwrap();
    std::fs::write(secrets.path().join("client"), CLIENT_SECRET).unwrap();
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"intercom\"\n\
         settings = {{ api_url = \"{}\", access_token = {{ file = \"{dir}/token\" }}, admin_id = \"{ADMIN}\", webhook = {{ client_secret = {{ file = \"{dir}/client\" }} }}{extra} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        intercom.api_url(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        intercom,
        _secrets: secrets,
    }
}

fn to_the_couple(id: &str) -> Value {
    let mut n = notification(id, "normal");
    n["title"] = json!("Your timeline is ready");
    n["message"] = json!("Ceremony at 14:00 <Orangery> & drinks at 15:00");
    n["weddingContext"]["coupleNames"] = json!("Priya & Tom");
    n["contacts"] = json!([{"name": "Planner Pat", "role": "planner"}, {"name": "Priya Shah", "email": "Priya@Example.com", "role": "client"}]);
    n["actions"] =
        json!([{"actionId": "open", "label": "See it", "url": "https://wedsync.example/t/9"}]);
    n
}

#[tokio::test]
async fn the_couple_gets_one_conversation_per_wedding_and_their_reply_acknowledges_it() {
    let env = start("couples", "").await;
    let first = env
        .herald
        .notify(&to_the_couple("ic-1"), all_delivered)
        .await;
    let details = &first["targets"][0]["details"];
    assert_eq!(details["replied"], false);
    let conversation = details["conversationId"].as_str().unwrap().to_owned();
    assert_eq!(env.intercom.contacts().len(), 1);
    assert_eq!(env.intercom.contacts()[0]["email"], "priya@example.com");
    assert_eq!(env.intercom.contacts()[0]["name"], "Priya Shah");
    let sent = env
        .intercom
        .recorder
        .all()
        .into_iter()
        .find(|request| request.path == "/messages")
        .unwrap();
    assert_eq!(sent.header("intercom-version"), Some("2.14"));
    assert_eq!(
        sent.body,
        json!({
            "message_type": "email",
            "subject": "Your timeline is ready",
            "body": "<p><strong>Your timeline is ready</strong></p><p>Ceremony at 14:00 &lt;Orangery&gt; &amp; drinks at 15:00</p><p><em>2027-06-12 · Priya &amp; Tom · Kew Gardens</em></p><p><a href=\"https://wedsync.example/t/9\">See it</a></p>",
            "template": "plain",
            "from": {"type": "admin", "id": 7001234},
            "to": {"type": "user", "id": details["contactId"]},
        })
    );

    // The same wedding's next notification is a reply in the conversation.
    let second = env
        .herald
        .notify(&to_the_couple("ic-2"), all_delivered)
        .await;
    assert_eq!(second["targets"][0]["details"]["replied"], true);
    assert_eq!(
        second["targets"][0]["details"]["conversationId"],
        conversation.as_str()
    );
    let parts = env.intercom.conversation(&conversation).unwrap()["conversation_parts"]
        ["total_count"]
        .clone();
    assert_eq!(parts, 2);

    // The couple reads and replies: the reply acknowledges the notification the conversation
    // last carried; a forged reply is refused.
    env.intercom.contact_reads(&conversation);
    let webhook = format!("{}/inbound/intercom/couples/webhooks", env.herald.base);
    let forged = json!({"type": "notification_event", "topic": "conversation.user.replied", "data": {"item": {"type": "conversation", "id": conversation, "source": {"author": {"type": "user", "email": "mallory@example.com"}}}}}).to_string();
    let answer = env
        .herald
        .client
        .post(&webhook)
        .header("x-hub-signature", sign("guessed", forged.as_bytes()))
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        env.intercom
            .contact_replies(
                &webhook,
                CLIENT_SECRET,
                &conversation,
                "Looks perfect, thank you!"
            )
            .await,
        200
    );
    let record = env
        .herald
        .wait_for_notification("ic-2", Duration::from_secs(10), |record| {
            record["acknowledgements"]
                .as_array()
                .is_some_and(|acks| !acks.is_empty())
        })
        .await;
    let acks = record["acknowledgements"].as_array().unwrap();
    assert_eq!(acks.len(), 1, "the forged reply recorded nothing");
    assert_eq!(acks[0]["actor"], "intercom:priya@example.com");
    assert_eq!(acks[0]["actionId"], "reply");
    let (status, engagement) = env.herald.get("/v1/notifications/ic-2/engagement").await;
    assert_eq!(status, 200, "{engagement}");
    assert_eq!(
        engagement["systems"][0]["engagement"],
        json!({"conversationId": conversation, "state": "open", "read": true, "contactReplies": 1})
    );
    // Intercom's setup ping is answered and left.
    let ping = json!({"type": "notification_event", "topic": "ping", "data": {"item": {"type": "ping", "message": "hello"}}}).to_string();
    let answer = env
        .herald
        .client
        .post(&webhook)
        .header("x-hub-signature", sign(CLIENT_SECRET, ping.as_bytes()))
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_contact_the_search_has_not_caught_up_with_is_found_through_the_conflict() {
    let env = start("lagging", "").await;
    env.intercom.lag_search(Duration::from_secs(60));
    let mut other_wedding = to_the_couple("lag-2");
    other_wedding["weddingContext"]["weddingId"] = json!("wed-2");
    env.herald
        .notify(&to_the_couple("lag-1"), all_delivered)
        .await;
    let record = env.herald.notify(&other_wedding, all_delivered).await;
    assert_eq!(env.intercom.contacts().len(), 1, "one contact, not two");
    assert_eq!(
        record["targets"][0]["details"]["contactId"],
        env.intercom.contacts()[0]["id"]
    );
    let creations: Vec<u16> = env
        .intercom
        .recorder
        .all()
        .iter()
        .filter(|request| request.path == "/contacts")
        .map(|request| request.status)
        .collect();
    assert_eq!(creations, vec![200, 409]);
}

#[tokio::test]
async fn refusals_are_dead_lettered_in_intercoms_words() {
    let env = start("no-contact", "").await;
    let record = env
        .herald
        .notify(&notification("nc-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("no contact with one"), "{error}");
    assert!(env.intercom.recorder.all().is_empty());

    let revoked = start("revoked", "").await;
    std::fs::write(revoked._secrets.path().join("token"), "revoked").unwrap();
    let record = revoked
        .herald
        .notify(&to_the_couple("rv-1"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("Access Token Invalid"), "{error}");
}
