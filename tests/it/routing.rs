//! `POST /v1/routings`: one notification to named systems, answered with the seed's
//! `RoutingResult` once every target settled; failover shows which path delivered.

use std::time::Duration;

use herald::sandbox::any_local_port;
use herald::vendors::slack::FakeSlack;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{notification, webhook_integration, Harness, SLACK_TOKEN, WEBHOOK_SECRET};

#[tokio::test]
async fn a_routing_waits_for_every_system_and_reports_the_failover_path() {
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["ops"])
        .await
        .unwrap();
    let down_slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["wedding-day"])
        .await
        .unwrap();
    down_slack
        .faults
        .go_down(503, json!({"ok": false, "error": "service_unavailable"}));
    let hook = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let pager = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let slack_integration = |id: &str, base: &str, channel: &str, extra: &str| {
        format!("[[integrations]]\nid = \"{id}\"\norganization = \"studio\"\nkind = \"slack\"\nsettings = {{ base_url = \"{base}\", channel = \"{channel}\", token = {{ file = \"{{secrets}}/slack\" }} }}\n{extra}\n")
    };
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}{}{}",
        slack_integration("ops-slack", &slack.base_url(), "#ops", ""),
        slack_integration("day-slack", &down_slack.base_url(), "#wedding-day", "breaker = { failure_threshold = 2, open_for = \"30s\" }\nretry = { initial = \"10ms\", max_delay = \"20ms\" }\nfailover = { targets = [\"pager\"] }"),
        webhook_integration("crm-hook", "studio", &hook.url(), ""),
        webhook_integration("pager", "studio", &pager.url(), ""),
    );
    let herald = Harness::start(&body, "studio").await;

    let mut alert = notification("alert-1", "emergency");
    alert["type"] = json!("emergency_alert");
    alert["actions"] = json!([{"actionId": "ack", "label": "Acknowledge", "style": "danger"}]);
    let routing = json!({
        "routingId": "route-1",
        "sourceNotification": alert,
        "targetSystems": [{"integrationId": "ops-slack"}, {"integrationId": "day-slack"}, {"integrationId": "crm-hook"}],
        "deliveryCoordination": {"mode": "parallel"},
        "transformationMaps": {"day-slack": {"title": "WEDDING DAY: {{ title }}"}, "crm-hook": {"message": "{{ message }} (venue {{ weddingContext.venue }})"}}
    });
    let (status, result) = herald.post("/v1/routings?wait=10s", &routing).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["routingId"], "route-1");
    assert_eq!(result["overallStatus"], "success", "{result}");
    assert_eq!(result["successCount"], 3);
    assert_eq!(result["failureCount"], 0);
    let systems = result["systemResults"].as_array().unwrap();
    assert_eq!(systems.len(), 3);
    let day = systems
        .iter()
        .find(|s| s["integrationId"] == "day-slack")
        .unwrap();
    let paths: Vec<(&str, &str)> = day["deliveryResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["route"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        paths,
        vec![("primary", "failed_over"), ("failover", "delivered")]
    );
    let paged = pager.received();
    assert_eq!(paged.len(), 1);
    assert_eq!(
        paged[0].body["data"]["title"], "WEDDING DAY: Ceremony moved",
        "the failover carries day-slack's transformation"
    );
    let crm = hook.received();
    assert_eq!(
        crm[0].body["data"]["message"],
        "The ceremony now starts at 15:30 (venue Kew Gardens)"
    );
    assert_eq!(crm[0].body["data"]["title"], "Ceremony moved");
    let posted = slack.messages("ops");
    assert_eq!(
        posted.len(),
        2,
        "the message, then its buttons in its thread"
    );
    assert_eq!(
        posted[0].2.as_array().unwrap().len(),
        3,
        "header, message, wedding context"
    );
    assert_eq!(
        posted[1].2[0]["elements"][0]["action_id"], "ack",
        "Block Kit actions reached Slack"
    );
    let thread_reply = slack
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .nth(1)
        .unwrap();
    assert_eq!(
        thread_reply.body["thread_ts"],
        posted[0].0.as_str(),
        "the buttons are a reply in the message's thread"
    );
    let ops = systems
        .iter()
        .find(|s| s["integrationId"] == "ops-slack")
        .unwrap();
    assert_eq!(
        ops["deliveryResults"][0]["details"]["actionsTs"],
        posted[1].0.as_str()
    );

    assert_eq!(
        posted[0].1, "Ceremony moved: The ceremony now starts at 15:30",
        "untransformed for ops-slack"
    );

    let (status, described) = herald.get("/v1/integrations/day-slack").await;
    assert_eq!(status, StatusCode::OK);
    let configuration = &described["configuration"];
    assert_eq!(
        (
            configuration["system"].as_str(),
            configuration["integrationType"].as_str()
        ),
        (Some("slack"), Some("communication_platform"))
    );
    assert_eq!(
        configuration["failoverConfiguration"]["backupIntegrations"],
        json!(["pager"])
    );
    assert_eq!(configuration["credentials"], json!({"source": "file"}));
    assert_eq!(described["health"]["circuitState"], "open");
    assert!(
        !described.to_string().contains(SLACK_TOKEN),
        "credentials never appear in API answers"
    );

    let (status, answer) = herald.post("/v1/routings", &json!({"routingId": "r-2", "sourceNotification": notification("x", "low"), "targetSystems": [{"integrationId": "crm-hook"}], "errorHandling": {}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["error"]["field"], "errorHandling.strategy",
        "the seed's errorHandling needs its strategy: {answer}"
    );
    let (status, answer) = herald.post("/v1/routings", &json!({"routingId": "r-4", "sourceNotification": notification("z", "low"), "targetSystems": [{"integrationId": "crm-hook"}], "transformationMaps": {"ops-slack": {"title": "x"}}})).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("transformationMaps.ops-slack")
        )
    );
    let (status, answer) = herald.post("/v1/routings", &json!({"routingId": "r-5", "sourceNotification": notification("w", "low"), "targetSystems": [{"integrationId": "crm-hook"}], "transformationMaps": {"crm-hook": {"title": "{{ title | nope }}"}}})).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("transformationMaps.crm-hook.title")
        )
    );
    assert_eq!(
        herald.get("/v1/notifications/w").await.0,
        StatusCode::NOT_FOUND,
        "a rejected routing journals nothing"
    );
    let (status, answer) = herald.post("/v1/routings", &json!({"routingId": "r-3", "sourceNotification": notification("y", "low"), "targetSystems": []})).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("targetSystems"))
    );
}

#[tokio::test]
async fn the_seeds_cross_system_routing_is_routed_as_written_and_read_again_by_its_id() {
    let hook = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let pager = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("crm-hook", "studio", &hook.url(), ""),
        webhook_integration("pager", "studio", &pager.url(), ""),
    );
    let herald = Harness::start(&body, "studio").await;
    let routing = |id: &str, notification_id: &str| {
        json!({
            "routingId": id,
            "sourceNotification": notification(notification_id, "high"),
            "targetSystems": [
                {"systemId": "crm-hook", "systemType": "webhook"},
                {"systemId": "pager", "systemType": "webhook"}
            ],
            "routingRules": [
                {"ruleId": "pager-only-for-emergencies", "condition": "notification.priority == \"emergency\"", "targetSystems": ["pager"]},
                {"ruleId": "everything-else", "condition": "notification.type != \"\""}
            ],
            "transformationMaps": [
                {"targetSystem": "crm-hook", "mappings": {"title": "CRM: {{ title }}"}}
            ],
            "deliveryCoordination": {"coordinatedDelivery": true, "mode": "parallel"},
            "errorHandling": {"strategy": "retry"}
        })
    };
    let (status, result) = herald
        .post("/v1/routings?wait=10s", &routing("route-seed", "seed-1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["overallStatus"], "success", "{result}");
    assert_eq!(
        result["deliveryCoordination"],
        json!({"coordinatedDelivery": true, "mode": "parallel"})
    );
    let systems: Vec<&str> = result["systemResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["systemId"].as_str().unwrap())
        .collect();
    assert_eq!(
        systems,
        vec!["crm-hook"],
        "the pager's rule does not hold for a high priority"
    );
    assert_eq!(
        hook.received()[0].body["data"]["title"],
        "CRM: Ceremony moved"
    );
    assert!(pager.received().is_empty());

    // The result can be read again by its routingId.
    let (status, again) = herald.get("/v1/routings/route-seed").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (
            &again["routingId"],
            &again["overallStatus"],
            &again["deliveryCoordination"]
        ),
        (
            &result["routingId"],
            &result["overallStatus"],
            &result["deliveryCoordination"]
        )
    );
    assert_eq!(again["systemResults"], result["systemResults"]);
    assert_eq!(
        herald.get("/v1/routings/no-such-routing").await.0,
        StatusCode::NOT_FOUND
    );

    // One routingId names one routing.
    let (status, answer) = herald
        .post("/v1/routings", &routing("route-seed", "seed-2"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(
        herald.get("/v1/notifications/seed-2").await.0,
        StatusCode::NOT_FOUND
    );

    // What is not the integration, or not a mode or strategy of the seed, is refused by name.
    for (change, field) in [
        (
            json!({"targetSystems": [{"systemId": "crm-hook", "systemType": "crm"}]}),
            "targetSystems[0].systemType",
        ),
        (
            json!({"deliveryCoordination": {"coordinatedDelivery": true, "mode": "eventually"}}),
            "deliveryCoordination.mode",
        ),
        (
            json!({"errorHandling": {"strategy": "ignore"}}),
            "errorHandling.strategy",
        ),
        (
            json!({"transformationMaps": [{"targetSystem": "elsewhere", "mappings": {"title": "x"}}]}),
            "transformationMaps[0].mappings",
        ),
        (
            json!({"routingRules": [{"condition": "notification.type =="}]}),
            "routingRules[0].condition",
        ),
    ] {
        let mut refused = routing("route-refused", "seed-refused");
        for (key, value) in change.as_object().unwrap() {
            refused[key] = value.clone();
        }
        let (status, answer) = herald.post("/v1/routings", &refused).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{change}: {answer}");
    }
}

/// The seed's `deliveryCoordination.mode` and `errorHandling.strategy`, each over HTTP against
/// webhook receivers: who is called, in which order, how often, and what the result says.
#[tokio::test]
async fn coordination_modes_and_error_strategies_do_what_the_seed_names() {
    let receiver = || WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET);
    let (first, second, third) = (
        receiver().await.unwrap(),
        receiver().await.unwrap(),
        receiver().await.unwrap(),
    );
    let (refusing, flaky, down, pager) = (
        receiver().await.unwrap(),
        receiver().await.unwrap(),
        receiver().await.unwrap(),
        receiver().await.unwrap(),
    );
    refusing
        .faults
        .go_down(422, json!({"error": "unprocessable"}));
    down.faults.go_down(503, json!({"error": "unavailable"}));
    let fast_retries = "retry = { initial = \"10ms\", max_delay = \"20ms\", max_attempts = 3 }";
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}{}{}{}{}{}",
        webhook_integration("first", "studio", &first.url(), ""),
        webhook_integration("second", "studio", &second.url(), ""),
        webhook_integration("third", "studio", &third.url(), ""),
        webhook_integration("refusing", "studio", &refusing.url(), ""),
        webhook_integration("flaky", "studio", &flaky.url(), fast_retries),
        webhook_integration(
            "down",
            "studio",
            &down.url(),
            &format!("{fast_retries}\nfailover = {{ targets = [\"pager\"] }}")
        ),
        webhook_integration("pager", "studio", &pager.url(), ""),
    );
    let herald = Harness::start(&body, "studio").await;
    let route = |id: &str, targets: &[&str], coordination: serde_json::Value| {
        let mut routing = json!({
            "routingId": id,
            "sourceNotification": notification(id, "high"),
            "targetSystems": targets.iter().map(|t| json!({"systemId": t})).collect::<Vec<_>>(),
        });
        for (key, value) in coordination.as_object().unwrap() {
            routing[key] = value.clone();
        }
        routing
    };
    let statuses = |result: &serde_json::Value| -> Vec<(String, String)> {
        result["systemResults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["systemId"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };

    // Sequential: each target is called after the one before it answered. The first answers
    // slowly, so in parallel the others would have been answered first.
    first.faults.set_latency(Duration::from_millis(300));
    let sequential = route(
        "in-order",
        &["first", "second", "third"],
        json!({"deliveryCoordination": {"coordinatedDelivery": true, "mode": "sequential"}}),
    );
    let (status, result) = herald.post("/v1/routings?wait=10s", &sequential).await;
    assert_eq!(
        (status, result["overallStatus"].as_str()),
        (StatusCode::OK, Some("success")),
        "{result}"
    );
    assert_eq!(result["deliveryCoordination"]["mode"], "sequential");
    let answered = |receiver: &WebhookReceiver| receiver.received()[0].at;
    assert!(answered(&first) < answered(&second), "second before first");
    assert!(answered(&second) < answered(&third), "third before second");
    first.faults.set_latency(Duration::ZERO);

    // All or nothing: the refused target cancels the one not yet sent; the one before it stays
    // delivered (a vendor write cannot be taken back).
    let all_or_nothing = route(
        "all-or-nothing",
        &["first", "refusing", "third"],
        json!({"deliveryCoordination": {"coordinatedDelivery": true, "mode": "all_or_nothing"}}),
    );
    let (status, result) = herald.post("/v1/routings?wait=10s", &all_or_nothing).await;
    assert_eq!(
        (status, result["overallStatus"].as_str()),
        (StatusCode::OK, Some("partial")),
        "{result}"
    );
    assert_eq!(
        statuses(&result),
        pairs(&[
            ("first", "delivered"),
            ("refusing", "failed"),
            ("third", "cancelled")
        ])
    );
    let cancelled = &result["systemResults"][2]["deliveryResults"][0];
    assert_eq!(
        (cancelled["state"].as_str(), cancelled["attempts"].as_u64()),
        (Some("cancelled"), Some(0))
    );
    assert!(
        cancelled["lastError"]
            .as_str()
            .unwrap()
            .starts_with("cancelled: delivery "),
        "{cancelled}"
    );
    assert_eq!(
        third.received().len(),
        1,
        "only the sequential routing reached it"
    );

    // dead_letter: the first failure ends the delivery, where retry would have delivered.
    for (strategy, outcome) in [
        ("dead_letter", (Some("dead_lettered"), Some(1))),
        ("retry", (Some("delivered"), Some(2))),
    ] {
        flaky
            .faults
            .respond_next(503, &[], json!({"error": "unavailable"}));
        let routing = route(
            &format!("flaky-{strategy}"),
            &["flaky"],
            json!({"errorHandling": {"strategy": strategy}}),
        );
        let (_, result) = herald.post("/v1/routings?wait=10s", &routing).await;
        let delivery = &result["systemResults"][0]["deliveryResults"][0];
        assert_eq!(
            (delivery["state"].as_str(), delivery["attempts"].as_u64()),
            outcome,
            "{strategy}: {result}"
        );
    }

    // retry never fails over; failover (the default) hands the delivery to the backup.
    let (_, result) = herald
        .post(
            "/v1/routings?wait=10s",
            &route(
                "retry-only",
                &["down"],
                json!({"errorHandling": {"strategy": "retry"}}),
            ),
        )
        .await;
    let deliveries = result["systemResults"][0]["deliveryResults"]
        .as_array()
        .unwrap();
    assert_eq!(
        (
            deliveries.len(),
            deliveries[0]["state"].as_str(),
            deliveries[0]["attempts"].as_u64()
        ),
        (1, Some("dead_lettered"), Some(3)),
        "{result}"
    );
    assert!(pager.received().is_empty());
    let (_, result) = herald
        .post(
            "/v1/routings?wait=10s",
            &route(
                "failed-over",
                &["down"],
                json!({"errorHandling": {"strategy": "failover"}}),
            ),
        )
        .await;
    assert_eq!(result["overallStatus"], "success", "{result}");
    assert_eq!(pager.received().len(), 1);

    // abort: the first failure, not retried (where retry would deliver), cancels the rest of
    // the sequence.
    flaky
        .faults
        .respond_next(503, &[], json!({"error": "unavailable"}));
    let before = flaky.received().len();
    let (_, result) = herald
        .post(
            "/v1/routings?wait=10s",
            &route(
                "aborted",
                &["flaky", "second"],
                json!({"deliveryCoordination": {"mode": "sequential"}, "errorHandling": {"strategy": "abort"}}),
            ),
        )
        .await;
    assert_eq!(
        (result["overallStatus"].as_str(), statuses(&result)),
        (
            Some("failed"),
            pairs(&[("flaky", "failed"), ("second", "cancelled")])
        ),
        "{result}"
    );
    assert_eq!(
        result["systemResults"][0]["deliveryResults"][0]["attempts"], 1,
        "{result}"
    );
    assert_eq!(
        flaky.received().len(),
        before,
        "not retried into a delivery"
    );
    assert_eq!(
        second.received().len(),
        1,
        "only the sequential routing reached it"
    );
}
