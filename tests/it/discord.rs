//! Discord end to end against the simulator, which checks every request against the contract
//! written from Discord's OpenAPI description and resolves mentions as Discord does: an embed per
//! notification with WedSync's text unable to format or ping, only the configured roles pinged
//! for urgent notifications, reactions read back as engagement, the webhook's bucket kept to with
//! no 429, and a revoked or deleted webhook dead-lettered with Discord's words.

use herald::sandbox::any_local_port;
use herald::vendors::discord::FakeDiscord;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const WEBHOOK_ID: &str = "1290000000000000777";
const TOKEN: &str = "wedding-desk-webhook-token-xyz";
const ROLE: &str = "1290000000000000999";

struct Environment {
    herald: Harness,
    discord: FakeDiscord,
    _secrets: tempfile::TempDir,
}

async fn start_with(integration: &str, url: Option<&str>, extra: &str) -> Environment {
    let discord = FakeDiscord::start(any_local_port()).await.unwrap();
    let shown = discord.add_webhook(WEBHOOK_ID, TOKEN, "Wedding desk", "1290000000000000001");
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("webhook"), url.unwrap_or(&shown)).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"discord\"\n\
         settings = {{ api_url = \"{}\", webhook_url = {{ file = \"{}/webhook\" }}, username = \"Wedding desk\", mention_role_ids = [\"{ROLE}\"]{extra} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        discord.api_url(),
        secrets.path().display(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        discord,
        _secrets: secrets,
    }
}

async fn start(integration: &str) -> Environment {
    start_with(integration, None, "").await
}

fn message_of(env: &Environment, record: &Value) -> Value {
    let id = record["targets"][0]["receipt"].as_str().unwrap();
    env.discord
        .messages()
        .into_iter()
        .find(|message| message["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn a_notification_is_an_embed_whose_text_cannot_format_or_ping() {
    let env = start("desk").await;
    let mut n = notification("plain-1", "normal");
    n["title"] = json!("Timeline **moved** for @everyone");
    n["message"] = json!("Ceremony at 15:30 <@&1290000000000000999> [see](https://x.example)");
    n["weddingContext"]["coupleNames"] = json!("Sam & Alex");
    n["actions"] = json!([{"actionId": "open", "label": "Open timeline", "url": "https://wedsync.example/t/1"}]);
    let record = env.herald.notify(&n, all_delivered).await;
    let message = message_of(&env, &record);
    let embed = &message["embeds"][0];
    assert_eq!(embed["title"], "Timeline \\*\\*moved\\*\\* for \\@everyone");
    assert_eq!(
        embed["description"],
        "Ceremony at 15:30 \\<\\@&1290000000000000999\\> \\[see\\]\\(https://x.example\\)\n\n[Open timeline](<https://wedsync.example/t/1>)"
    );
    assert_eq!(
        embed["fields"],
        json!([
            {"name": "Wedding", "value": "2027\\-06\\-12", "inline": true},
            {"name": "Couple", "value": "Sam & Alex", "inline": true},
            {"name": "Venue", "value": "Kew Gardens", "inline": true}
        ])
    );
    assert_eq!(
        embed["footer"]["text"],
        "WedSync · timeline_change · plain-1"
    );
    // A normal notification pings nobody, whatever its text says.
    assert_eq!(message["mention_roles"], json!([]));
    assert_eq!(message["mention_everyone"], false);
    assert_eq!(message["content"], "");
    assert_eq!(message["author"]["username"], "Wedding desk");
    let sent = &env.discord.recorder.all()[0];
    assert_eq!(sent.path, format!("/api/v10/webhooks/{WEBHOOK_ID}/{TOKEN}"));
    assert_eq!(
        sent.body["allowed_mentions"],
        json!({"parse": [], "roles": []})
    );
}

#[tokio::test]
async fn an_emergency_pings_only_the_configured_role_and_reactions_are_its_engagement() {
    let env = start("desk-urgent").await;
    let record = env
        .herald
        .notify(&notification("urgent-1", "emergency"), all_delivered)
        .await;
    let message = message_of(&env, &record);
    assert_eq!(message["content"], format!("<@&{ROLE}> emergency"));
    assert_eq!(message["mention_roles"], json!([ROLE]));
    assert_eq!(message["mention_everyone"], false);
    assert_eq!(
        record["targets"][0]["details"]["mentionedRoles"],
        json!([ROLE])
    );
    let id = message["id"].as_str().unwrap();
    env.discord.react(id, "✅");
    env.discord.react(id, "✅");
    env.discord.react(id, "👀");
    let (status, engagement) = env
        .herald
        .get("/v1/notifications/urgent-1/engagement")
        .await;
    assert_eq!(status, 200, "{engagement}");
    assert_eq!(
        engagement["systems"][0]["engagement"]["reactions"],
        json!([{"emoji": "✅", "count": 2}, {"emoji": "👀", "count": 1}])
    );
}

#[tokio::test]
async fn the_webhooks_bucket_is_kept_to_without_a_429() {
    let env = start("desk-busy").await;
    use herald::vendors::RunningSimulator;
    env.discord.hold_to_published_limits();
    let batch: Vec<Value> = (0..12)
        .map(|n| notification(&format!("busy-{n}"), "normal"))
        .collect();
    let (status, answer) = env
        .herald
        .post("/v1/notifications/batch", &json!({"notifications": batch}))
        .await;
    assert_eq!(status, 202, "{answer}");
    for n in 0..12 {
        env.herald
            .wait_for_notification(
                &format!("busy-{n}"),
                std::time::Duration::from_secs(30),
                all_delivered,
            )
            .await;
    }
    let statuses: Vec<u16> = env
        .discord
        .recorder
        .all()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200; 12], "every request fit the bucket");
}

#[tokio::test]
async fn a_revoked_or_deleted_webhook_is_dead_lettered_with_discords_words() {
    let revoked = start_with(
        "desk-revoked",
        Some(&format!(
            "https://discord.com/api/webhooks/{WEBHOOK_ID}/regenerated-token"
        )),
        "",
    )
    .await;
    let record = revoked
        .herald
        .notify(&notification("revoked-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("Invalid Webhook Token"), "{error}");

    let deleted = start_with(
        "desk-deleted",
        Some(&format!(
            "https://discord.com/api/webhooks/1290000000000000123/{TOKEN}"
        )),
        "",
    )
    .await;
    let record = deleted
        .herald
        .notify(&notification("deleted-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("10015") && error.contains("Unknown Webhook"),
        "{error}"
    );
}
