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

const TENANT: &str = "oakhurstmanor.onmicrosoft.com";
const GRAPH_CLIENT: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
const GRAPH_SECRET: &str = "entra-client-secret~7Qx";
const TEAM: &str = "02bd9fd6-8f93-4758-87c3-1fb73740a315";
const CHANNEL: &str = "19:09fc54a3141a45d0bc769cf506d2e079@thread.tacv2";

#[tokio::test]
async fn through_graph_a_teammate_installs_the_app_and_cards_are_posted_as_them() {
    let teams = FakeTeams::start(any_local_port()).await.unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("graph"), GRAPH_SECRET).unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n\
         [[integrations]]\nid = \"events-channel\"\norganization = \"studio\"\nkind = \"teams\"\n\
         settings = {{ graph = {{ tenant_id = \"{TENANT}\", team_id = \"{TEAM}\", channel_id = \"{CHANNEL}\", api_url = \"{0}/v1.0\", oauth = {{ client_id = \"{GRAPH_CLIENT}\", client_secret = {{ file = \"{1}/graph\" }}, redirect_uri = \"{{herald}}/oauth/teams/callback\", login_url = \"{0}\" }} }} }}\n\
         rate_limit = {{ per_second = 100, burst = 50 }}\n\
         retry = {{ max_attempts = 5, initial = \"20ms\", max_delay = \"50ms\" }}\n{2}",
        teams.url(),
        secrets.path().display(),
        route("studio", &["events-channel"], ""),
    );
    let herald = Harness::start(&body, "studio").await;
    teams.graph_app(
        TENANT,
        GRAPH_CLIENT,
        GRAPH_SECRET,
        &format!("{}/oauth/teams/callback", herald.base),
        "Events team (Oakhurst)",
        &[(TEAM, CHANNEL)],
    );
    let (consent, query) = herald.start_install("events-channel").await;
    assert!(consent.starts_with(&format!("{}/{TENANT}/oauth2/v2.0/authorize?", teams.url())));
    assert_eq!(
        query["scope"],
        "ChannelMessage.Send User.Read offline_access"
    );
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    herald
        .consent_and_check_sealed(
            &consent,
            "teams",
            "events-channel",
            "teams_graph_refresh_token",
            || teams.graph_refresh_token(),
        )
        .await;

    let mut n = notification("graph-1", "high");
    n["title"] = json!("Marquee **closed**");
    let record = herald.notify(&n, all_delivered).await;
    let posted = teams.channel_messages(TEAM, CHANNEL);
    assert_eq!(posted.len(), 1);
    let target = &record["targets"][0];
    assert_eq!(target["receipt"], posted[0]["id"]);
    assert_eq!(target["details"]["postedAs"], "Events team (Oakhurst)");
    let attachment = &posted[0]["attachments"][0];
    assert_eq!(
        posted[0]["body"]["content"],
        format!(
            "<attachment id=\"{}\"></attachment>",
            attachment["id"].as_str().unwrap()
        )
    );
    let card: Value = serde_json::from_str(attachment["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        card["body"][0]["items"][0]["text"],
        "Marquee \\*\\*closed\\*\\*"
    );
    assert_eq!(card["body"][0]["style"], "warning");

    // An hour later the access token has expired: a refresh (whose token rotates) and the card
    // goes; the connection check names the teammate.
    teams.expire_graph_access_tokens();
    let before = teams.graph_refresh_token();
    herald
        .notify(&notification("graph-2", "normal"), all_delivered)
        .await;
    assert_eq!(teams.channel_messages(TEAM, CHANNEL).len(), 2);
    assert_ne!(
        teams.graph_refresh_token(),
        before,
        "the refresh token rotated"
    );
    let (status, check) = herald
        .post(
            "/v1/integrations/events-channel/connection-check",
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(check["account"]["postedAs"], "Events team (Oakhurst)");
}

#[tokio::test]
async fn graph_settings_are_checked_naming_the_field() {
    let env = start_with("wedding-day", None).await;
    let base = json!({"tenant_id": TENANT, "team_id": TEAM, "channel_id": CHANNEL, "oauth": {"client_id": GRAPH_CLIENT, "client_secret": {"value": "s"}, "redirect_uri": "https://herald.example/oauth/teams/callback"}});
    for (change, field) in [
        (json!({"team_id": "Wedding team"}), "settings.graph.team_id"),
        (
            json!({"channel_id": "general"}),
            "settings.graph.channel_id",
        ),
        (
            json!({"oauth": {"client_id": GRAPH_CLIENT, "client_secret": {"value": "s"}, "redirect_uri": "https://herald.example/cb", "scopes": ["User.Read"]}}),
            "settings.graph.oauth.scopes",
        ),
    ] {
        let mut graph = base.clone();
        for (key, value) in change.as_object().unwrap() {
            graph[key] = value.clone();
        }
        let (status, answer) = env
            .herald
            .post(
                "/v1/integrations",
                &json!({"integrationId": "graph-bad", "integrationType": "communication_platform", "system": "teams", "settings": {"graph": graph}}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{change}: {answer}");
    }
}
