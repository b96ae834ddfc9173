//! Hostile input an API key can send: templates that would crash or hang the daemon, and
//! requests built to hold its connections. Each is refused with the field named, and the
//! daemon keeps answering.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{notification, webhook_integration, Harness};

async fn studio() -> Harness {
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}",
        webhook_integration("crm-hook", "studio", "http://127.0.0.1:9/unused", "")
    );
    Harness::start(&body, "studio").await
}

fn routing_with_title(id: &str, template: &str) -> Value {
    json!({
        "routingId": id,
        "sourceNotification": notification(id, "normal"),
        "targetSystems": [{"integrationId": "crm-hook"}],
        "transformationMaps": {"crm-hook": {"title": template}}
    })
}

async fn assert_alive(herald: &Harness) {
    let health = herald
        .client
        .get(format!("{}/healthz", herald.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn templates_that_would_overflow_the_stack_are_refused_naming_the_field() {
    let herald = studio().await;
    for (index, template) in [
        format!("{{{{ {}1 }}}}", "-".repeat(10_000)),
        format!("{{{{ {}true }}}}", "not ".repeat(2_000)),
        format!("{{{{ title{} }}}}", "|upper".repeat(1_300)),
    ]
    .iter()
    .enumerate()
    {
        let (status, answer) = herald
            .post(
                "/v1/routings",
                &routing_with_title(&format!("deep-{index}"), template),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(
            answer["error"]["field"], "transformationMaps.crm-hook.title",
            "{answer}"
        );
    }
    assert_alive(&herald).await;
}

#[tokio::test]
async fn templates_that_would_run_forever_or_fill_memory_are_refused() {
    let herald = studio().await;
    let mut many = notification("many", "normal");
    many["metadata"] = json!({"items": vec![1; 1000]});
    let cases = [
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
            None,
            "range",
        ),
        ("{{ [1] * 100000000 }}", None, "`*`"),
        (
            "{% for a in metadata.items %}{% for b in metadata.items %}{% for c in metadata.items %}{% endfor %}{% endfor %}{% endfor %}",
            Some(many.clone()),
            "fuel",
        ),
        (
            "{% for a in metadata.items %}{% for b in metadata.items %}{{ title }}{% endfor %}{% endfor %}",
            Some(many),
            "exceeds",
        ),
    ];
    for (index, (template, source, reason)) in cases.into_iter().enumerate() {
        let id = format!("loop-{index}");
        let mut routing = routing_with_title(&id, template);
        if let Some(mut source) = source {
            source["notificationId"] = json!(id);
            routing["sourceNotification"] = source;
        }
        let (status, answer) = herald.post("/v1/routings", &routing).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{template}: {answer}"
        );
        assert_eq!(
            answer["error"]["field"],
            "transformationMaps.crm-hook.title"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{template}: {message}");
        // Refused means nothing was written.
        let (status, _) = herald.get(&format!("/v1/notifications/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_alive(&herald).await;
}
