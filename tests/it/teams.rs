//! Microsoft Teams end to end against the simulated Workflows flow, which checks every card
//! against Microsoft's published Adaptive Card schema: a notification is one card posted to the
//! flow's channel with WedSync's text unable to format it, links as buttons and the actions a
//! flow cannot carry named; the flow's run id is the receipt; a deleted flow or a wrong signature
//! is dead-lettered in Power Automate's words; a retired Office 365 webhook is refused when an
//! integration is created.

use herald::sandbox::any_local_port;
use herald::vendors::teams::FakeTeams;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{all_delivered, dead_lettered, notification, route, Harness};

const FLOW: &str = "8d2f4c6a1b3e4f5a9c7d0e2b4a6c8e0f";
const SIG: &str = "wedding-day-flow-sig_Q3x";

struct Environment {
    herald: Harness,
    teams: FakeTeams,
    _secrets: tempfile::TempDir,
}

async fn start_with(integration: &str, url: Option<&str>) -> Environment {
    let teams = FakeTeams::start(any_local_port()).await.unwrap();
    let shown = teams.add_flow(FLOW, SIG);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("flow"), url.unwrap_or(&shown)).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"{integration}\"\norganization = \"studio\"\nkind = \"teams\"\n\
         settings = {{ workflow_url = {{ file = \"{}/flow\" }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{}",
        secrets.path().display(),
        route("studio", &[integration], ""),
    );
    Environment {
        herald: Harness::start(&body, "studio").await,
        teams,
        _secrets: secrets,
    }
}

#[tokio::test]
async fn a_notification_is_one_card_in_the_channel_whose_text_cannot_format_it() {
    let env = start_with("wedding-day", None).await;
    let mut n = notification("card-1", "emergency");
    n["title"] = json!("Ceremony **moved** indoors");
    n["message"] = json!("Rain from 14:00: [see plan](x) - marquee closed");
    n["weddingContext"]["coupleNames"] = json!("Sam & Alex");
    n["actions"] = json!([
        {"actionId": "open", "label": "Open timeline", "url": "https://wedsync.example/t/1"},
        {"actionId": "ack", "label": "Acknowledge"}
    ]);
    let record = env.herald.notify(&n, all_delivered).await;
    let posts = env.teams.posts(FLOW);
    assert_eq!(posts.len(), 1);
    let card = &posts[0];
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["body"][0],
        json!({
            "type": "Container", "style": "attention", "bleed": true,
            "items": [
                {"type": "TextBlock", "text": "Ceremony \\*\\*moved\\*\\* indoors", "weight": "Bolder", "size": "Medium", "wrap": true},
                {"type": "TextBlock", "text": "emergency · timeline\\_change", "isSubtle": true, "size": "Small", "spacing": "None", "wrap": true}
            ]
        })
    );
    assert_eq!(
        card["body"][1]["text"],
        "Rain from 14:00: \\[see plan\\]\\(x\\) \\- marquee closed"
    );
    assert_eq!(
        card["body"][2],
        json!({"type": "FactSet", "facts": [
            {"title": "Wedding", "value": "2027\\-06\\-12"},
            {"title": "Couple", "value": "Sam & Alex"},
            {"title": "Venue", "value": "Kew Gardens"}
        ]})
    );
    assert_eq!(
        card["actions"],
        json!([{"type": "Action.OpenUrl", "title": "Open timeline", "url": "https://wedsync.example/t/1"}])
    );
    let target = &record["targets"][0];
    let run = target["details"]["runId"].as_str().unwrap();
    assert!(run.starts_with("0858"), "{run}");
    assert_eq!(target["receipt"], run);
    assert_eq!(target["details"]["accepted"], 202);
    assert_eq!(target["details"]["actionsLeftOut"], json!(["Acknowledge"]));
    let sent = &env.teams.recorder.all()[0];
    assert_eq!(
        sent.path,
        format!("/powerautomate/automations/direct/workflows/{FLOW}/triggers/manual/paths/invoke")
    );
    assert_eq!(sent.body["type"], "message");
    assert_eq!(
        sent.body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(sent.body["attachments"][0]["contentUrl"], Value::Null);
}

#[tokio::test]
async fn the_simulated_flow_refuses_a_card_teams_could_not_render() {
    let teams = FakeTeams::start(any_local_port()).await.unwrap();
    let url = teams.add_flow(FLOW, SIG);
    let client = reqwest::Client::new();
    let message = |card: Value| json!({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": card}]});
    for (card, says) in [
        (
            json!({"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "FactSet", "facts": [{"title": "Wedding"}]}]}),
            "attachments[0].content.body[0].facts[0].value: is required",
        ),
        (
            json!({"type": "AdaptiveCard", "version": "1.6", "body": []}),
            "attachments[0].content.version: \"1.6\" is not a card version Teams renders",
        ),
    ] {
        let answer = client.post(&url).json(&message(card)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "InvalidRequestContent");
        let said = body["error"]["message"].as_str().unwrap();
        assert!(said.contains(says), "{said}");
    }
    assert!(teams.posts(FLOW).is_empty(), "nothing refused was posted");
}

#[tokio::test]
async fn a_deleted_flow_or_a_wrong_signature_is_dead_lettered_in_power_automates_words() {
    let deleted = start_with("deleted-flow", None).await;
    deleted.teams.delete_flow(FLOW);
    let record = deleted
        .herald
        .notify(&notification("gone-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("WorkflowNotFound"), "{error}");

    let teams = FakeTeams::start(any_local_port()).await.unwrap();
    let wrong = teams.add_flow(FLOW, SIG).replace(SIG, "an-old-signature");
    let unsigned = start_with("wrong-sig", Some(&wrong)).await;
    let record = unsigned
        .herald
        .notify(&notification("sig-1", "normal"), dead_lettered)
        .await;
    let error = record["targets"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("DirectApiAuthorizationRequired"), "{error}");
    assert!(teams.posts(FLOW).is_empty());
    let statuses: Vec<u16> = teams.recorder.all().iter().map(|r| r.status).collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|status| *status == 401),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_retired_office_365_webhook_is_refused_naming_what_to_use_instead() {
    let env = start_with("wedding-day", None).await;
    let (status, answer) = env
        .herald
        .post(
            "/v1/integrations",
            &json!({
                "integrationId": "old-connector",
                "integrationType": "communication_platform",
                "system": "teams",
                "settings": {"workflow_url": {"value": "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d"}},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "settings");
    let said = answer["error"]["message"].as_str().unwrap();
    assert!(
        said.contains("retired") && said.contains("Send webhook alerts to a channel"),
        "{said}"
    );
}
