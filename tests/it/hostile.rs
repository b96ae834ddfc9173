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

// === connections and bodies ===

/// Herald with one-second header and body timeouts and a 1 MiB body limit.
async fn impatient() -> Harness {
    let body = format!(
        "[server]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\nmax_body_bytes = 1048576\n[[organizations]]\nid = \"studio\"\n{}",
        webhook_integration("crm-hook", "studio", "http://127.0.0.1:9/unused", "")
    );
    Harness::start(&body, "studio").await
}

/// Sends `request` on a fresh connection and returns everything the server sent before it
/// closed the connection. A server that never closes fails the test after a minute.
async fn exchange(herald: &Harness, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = herald.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server kept the connection open")
    .unwrap_or_default();
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test]
async fn a_body_announced_too_large_is_refused_before_it_is_sent() {
    let herald = impatient().await;
    let request = format!(
        "POST /v1/notifications HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000000000000\r\nconnection: close\r\n\r\n",
        herald.key
    );
    let answer = exchange(&herald, request.as_bytes()).await;
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 413 Payload Too Large",
        "{answer}"
    );
    assert!(answer.contains("\"too_large\""), "{answer}");
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let herald = impatient().await;
    // Headers that never finish, and a connection that never sends anything: closed.
    let partial = exchange(&herald, b"POST /v1/notifications HTTP/1.1\r\nhost: x\r\n").await;
    assert!(!partial.contains("202"), "{partial}");
    let silent = exchange(&herald, b"").await;
    assert_eq!(silent, "");
    // A body that stops arriving, announced or chunked with an absurd chunk size: 408.
    let auth = format!("authorization: Bearer {}\r\n", herald.key);
    for request in [
        format!("POST /v1/notifications HTTP/1.1\r\nhost: x\r\n{auth}content-length: 100\r\n\r\n{{\"notif"),
        format!("POST /v1/notifications HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n{{\"notif"),
    ] {
        let answer = exchange(&herald, request.as_bytes()).await;
        assert_eq!(status_line(&answer), "HTTP/1.1 408 Request Timeout", "{answer}");
        assert!(answer.contains("\"timeout\""), "{answer}");
    }
    assert_alive(&herald).await;
}

// === every error is the JSON error shape ===

#[tokio::test]
async fn framework_errors_answer_the_json_error_shape() {
    let herald = studio().await;
    let (status, answer) = herald.get("/v1/dead-letters?limit=abc").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "limit", "{answer}");
    let (status, answer) = herald.get("/v1/dead-letters?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "limit", "{answer}");
    let routing = routing_with_title("waits", "{{ title }}");
    let (status, answer) = herald.post("/v1/routings?wait=1s&wait=2s", &routing).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "wait", "{answer}");
    let (status, answer) = herald.post("/v1/routings?wait=10m", &routing).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "wait", "{answer}");

    let (status, answer) = herald.get("/v1/notifications/%FF").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "bad_request", "{answer}");

    let (status, answer) = herald.get("/v1/notifications").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer["error"]["code"], "method_not_allowed", "{answer}");

    let (status, answer) = herald.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["code"], "not_found", "{answer}");
}

// === intake names what is wrong ===

#[tokio::test]
async fn type_errors_and_impossible_values_are_422_naming_the_field() {
    let herald = studio().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/v1/notifications", json!({"priority": 5}), "priority"),
        ("/v1/notifications", json!({"priority": true}), "priority"),
        ("/v1/notifications", json!({"priority": null}), "priority"),
        ("/v1/notifications", json!({"priority": [1]}), "priority"),
        (
            "/v1/notifications",
            json!({"createdAt": "yesterday"}),
            "createdAt",
        ),
        (
            "/v1/notifications",
            json!({"weddingContext": {"weddingId": "w", "weddingDate": "2027-02-30"}}),
            "weddingContext.weddingDate",
        ),
        (
            "/v1/notifications",
            json!({"weddingContext": {"weddingId": "w", "weddingDate": "0000-01-01"}}),
            "weddingContext.weddingDate",
        ),
        (
            "/v1/notifications",
            json!({"weddingContext": {"weddingId": "w", "weddingDate": "2027-06-12", "timezone": "somewhere"}}),
            "weddingContext.timezone",
        ),
        (
            "/v1/notifications",
            json!({"contacts": [{"email": "not-an-email"}]}),
            "contacts[0].email",
        ),
        (
            "/v1/notifications",
            json!({"contacts": [{"phone": "call me"}]}),
            "contacts[0].phone",
        ),
        (
            "/v1/notifications",
            json!({"metadata": {"notes": "x".repeat(70_000)}}),
            "metadata",
        ),
    ];
    for (index, (path, change, field)) in cases.into_iter().enumerate() {
        let mut body = notification(&format!("typed-{index}"), "normal");
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, answer) = herald.post(path, &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{change}: {answer}");
    }
    let batch = json!({"notifications": [notification("b-0", "normal"), {"notificationId": "b-1", "type": "t", "priority": 5, "title": "a", "message": "b"}]});
    let (status, answer) = herald.post("/v1/notifications/batch", &batch).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "notifications[1].priority");

    let refused = herald
        .client
        .post(format!("{}/v1/notifications", herald.base))
        .bearer_auth(&herald.key)
        .header("content-type", "text/plain")
        .body(notification("plain", "normal").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "unsupported_media_type");
}

// === operating it ===

#[tokio::test]
async fn every_metric_family_is_described() {
    let herald = studio().await;
    let text = herald.metrics().await;
    let families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(families.contains(&"herald_intake_total"), "{text}");
    assert!(families.contains(&"herald_unrouted_total"), "{text}");
    for family in families {
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("# HELP {family} "))),
            "{family} has no HELP text"
        );
    }
}

#[tokio::test]
async fn a_notification_that_matches_no_route_is_accepted_with_a_warning() {
    let herald = studio().await;
    let (status, answer) = herald
        .post("/v1/notifications", &notification("nowhere", "normal"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["deliveries"], json!([]));
    let warning = answer["warnings"][0].as_str().unwrap();
    assert!(warning.contains("no route"), "{warning}");
}

#[test]
fn the_clients_variables_do_not_break_the_daemon_and_a_wrong_variable_is_named() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/herald.toml");
    let check = |variables: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        command.args(["check-config", config]);
        for (name, value) in variables {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let with_client_variables = check(&[
        ("HERALD_URL", "http://127.0.0.1:8470"),
        ("HERALD_API_KEY", "hk_x"),
    ]);
    assert!(
        with_client_variables.status.success(),
        "{}",
        String::from_utf8_lossy(&with_client_variables.stderr)
    );
    let wrong = check(&[("HERALD_CONFIG__SERVER__MAX_BODY_BYTES", "lots")]);
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        said.contains("environment variable HERALD_CONFIG__SERVER__MAX_BODY_BYTES")
            && said.contains("a whole number")
            && !said.contains("herald.toml:"),
        "{said}"
    );
}

#[test]
fn a_fresh_daemon_exports_intake_series_and_sighup_shuts_it_down_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = data.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\ndata_dir = \"{}\"\n[[organizations]]\nid = \"studio\"\n",
            data.path().join("store").display()
        ),
    )
    .unwrap();
    let daemon = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A process of its own, so no other test has counted anything yet.
    let metrics = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    for series in [
        "herald_intake_total{lane=\"normal\",outcome=\"accepted\"} 0",
        "herald_unrouted_total{lane=\"emergency\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} missing: {metrics}");
    }
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = daemon.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("SIGHUP"), "{log}");
    assert!(log.contains("herald stopped"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when not on a terminal: {log}"
    );
}

#[tokio::test]
async fn herald_send_checks_the_whole_file_before_sending_any_of_it() {
    let herald = studio().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.json");
    let mut batch: Vec<Value> = (0..1201)
        .map(|n| notification(&format!("file-{n}"), "normal"))
        .collect();
    batch[1200]["priority"] = json!("urgent");
    let send = |file: std::path::PathBuf, base: String, key: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .arg("send")
                .arg(&file)
                .args(["--url", &base, "--key", &key])
                .output()
                .unwrap()
        })
    };
    std::fs::write(&file, json!({"notifications": batch}).to_string()).unwrap();
    let refused = send(file.clone(), herald.base.clone(), herald.key.clone())
        .await
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("notifications[1200].priority"), "{said}");
    assert!(said.contains("was not sent"), "{said}");
    let (status, _) = herald.get("/v1/notifications/file-0").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of the file was sent"
    );

    batch[1200]["priority"] = json!("high");
    std::fs::write(&file, json!({"notifications": batch}).to_string()).unwrap();
    let sent = send(file, herald.base.clone(), herald.key.clone())
        .await
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        "1201 accepted, 0 duplicates"
    );
}

#[test]
fn a_missing_secret_at_start_is_said_once_with_the_integration_and_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[[organizations]]\nid = \"studio\"\n\
             [[integrations]]\nid = \"hook\"\norganization = \"studio\"\nkind = \"webhook\"\n\
             settings = {{ url = \"https://example.com/hook\", secret = {{ env = \"HERALD_TEST_UNSET_SECRET\" }} }}\n",
            data.path().join("store").display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("HERALD_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        said.matches("HERALD_TEST_UNSET_SECRET").count(),
        1,
        "{said}"
    );
    assert!(said.contains("integrations/hook"), "{said}");
    assert!(said.contains("check-config"), "{said}");
    assert!(!said.contains("Actor panicked"), "{said}");
}

#[tokio::test]
async fn herald_send_follow_shows_each_target_until_everything_settled() {
    let good = herald::vendors::webhook::WebhookReceiver::start(
        herald::sandbox::any_local_port(),
        crate::harness::WEBHOOK_SECRET,
    )
    .await
    .unwrap();
    let refusing = herald::vendors::webhook::WebhookReceiver::start(
        herald::sandbox::any_local_port(),
        crate::harness::WEBHOOK_SECRET,
    )
    .await
    .unwrap();
    // The second receiver refuses everything for good (a 400 is not retried).
    refusing
        .faults
        .go_down(400, json!({"error": "no such hook"}));
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n{}{}{}",
        webhook_integration("good-hook", "studio", &good.url(), ""),
        webhook_integration("refusing-hook", "studio", &refusing.url(), ""),
        crate::harness::route("studio", &["good-hook", "refusing-hook"], "")
    );
    let herald = Harness::start(&body, "studio").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.json");
    let batch: Vec<Value> = (0..30)
        .map(|n| notification(&format!("follow-{n}"), "normal"))
        .collect();
    std::fs::write(&file, json!({"notifications": batch}).to_string()).unwrap();
    let (base, key) = (herald.base.clone(), herald.key.clone());
    let followed = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("send")
            .arg(&file)
            .args(["--url", &base, "--key", &key, "--follow"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let shown = String::from_utf8_lossy(&followed.stdout);
    let said = String::from_utf8_lossy(&followed.stderr);
    assert!(
        !followed.status.success(),
        "dead letters make it fail: {shown}"
    );
    assert!(said.contains("30 deliveries were dead-lettered"), "{said}");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines,
        vec![
            "30 accepted, 0 duplicates",
            "good-hook: 30 delivered, 0 in progress, 0 failed over, 0 dead-lettered",
            "refusing-hook: 0 delivered, 0 in progress, 0 failed over, 30 dead-lettered",
        ],
        "{said}"
    );
}
