//! `herald sandbox`: the simulators on fixed ports, the configuration it writes runs as it is,
//! and it shows every request it receives.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{all_delivered, notification};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// A base port followed by a free port for every registered vendor. It is chosen below Linux's ephemeral range
/// (32768 and up), where the other tests' simulators (bound to port 0) never land, so no test
/// running alongside can take one of them between this check and the sandbox binding it.
fn free_port_base() -> u16 {
    let start = 20_000 + (std::process::id() % 2_000) as u16 * 5;
    (0..400)
        .map(|step| 20_000 + (start - 20_000 + step * 5) % 12_000)
        .find(|base| {
            (1..=herald::vendors::all().len() as u16)
                .all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)).is_ok())
        })
        .expect("no free port range below the ephemeral ports")
}

fn next_line_containing(lines: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("the sandbox never printed a line containing {needle:?}"),
        }
    }
}

/// Reads printed lines until every needle has appeared in one of them; returns what was read.
fn lines_until_all_seen(lines: &mpsc::Receiver<String>, needles: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut printed: Vec<String> = Vec::new();
    while !needles
        .iter()
        .all(|needle| printed.iter().any(|line| line.contains(needle)))
    {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => printed.push(line),
            Err(_) => {
                panic!("the sandbox did not print all of {needles:?}; it printed {printed:?}")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_the_sandbox_writes_runs_as_it_is() {
    let base = free_port_base();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    let mut sandbox = Command::new(HERALD)
        .args([
            "sandbox",
            "--port-base",
            &base.to_string(),
            "--write-config",
        ])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = sandbox.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    // Every registered vendor's simulator, on the ports after the base in the registry's order.
    let slack_port = base
        + 1
        + herald::vendors::all()
            .iter()
            .position(|vendor| vendor.kind() == "slack")
            .unwrap() as u16;
    let slack_url = next_line_containing(&lines, "  Slack ", Duration::from_secs(20))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(slack_url, format!("http://127.0.0.1:{slack_port}/api"));
    next_line_containing(&lines, "Requests appear below", Duration::from_secs(5));

    // As a new user would: check it, make a key, serve it, send the example.
    let checked = Command::new(HERALD)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&checked.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let created = Command::new(HERALD)
        .args(["keys", "create", "--organization", "my-studio", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Command::new(HERALD)
        .args(["serve", "--config"])
        .arg(&config)
        .env("HERALD_CONFIG__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "herald serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let example = dir.path().join("sandbox-notification.json");
    let sent = Command::new(HERALD)
        .arg("send")
        .arg(&example)
        .args(["--url", &url, "--key", &key])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // A minimal notification goes where it fits (chats, the webhook, and monday.com and Asana,
    // whose item or task per wedding needs only the wedding's id), not to a CRM that needs contacts or a booking
    // system that needs a job.
    let minimal = notification("sb-minimal", "normal");
    let posted = client
        .post(format!("{url}/v1/notifications"))
        .bearer_auth(&key)
        .json(&minimal)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), reqwest::StatusCode::ACCEPTED);
    // The full example reaches every registered vendor; the minimal one only those that take a
    // notification without contacts or a booking.
    let every_vendor: Vec<String> = herald::vendors::all()
        .iter()
        .map(|vendor| format!("sandbox-{}", vendor.kind()))
        .collect();
    let every_vendor: Vec<&str> = every_vendor.iter().map(String::as_str).collect();
    for (id, targets) in [
        ("sandbox-1", every_vendor),
        (
            "sb-minimal",
            vec![
                "sandbox-asana",
                "sandbox-discord",
                "sandbox-email",
                "sandbox-google_calendar",
                "sandbox-microsoft_calendar",
                "sandbox-monday",
                "sandbox-pagerduty",
                "sandbox-slack",
                "sandbox-studio_ninja",
                "sandbox-teams",
                "sandbox-telegram",
                "sandbox-twilio",
                "sandbox-webhook",
                "sandbox-whatsapp",
            ],
        ),
    ] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let record = loop {
            let record: serde_json::Value = client
                .get(format!("{url}/v1/notifications/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if all_delivered(&record) || Instant::now() > deadline {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(all_delivered(&record), "{record}");
        let mut delivered_to: Vec<&str> = record["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["integrationId"].as_str().unwrap())
            .collect();
        delivered_to.sort();
        assert_eq!(delivered_to, targets, "{record}");
    }
    lines_until_all_seen(
        &lines,
        &[
            "slack    POST /api/chat.postMessage -> 200: Ceremony moved",
            "webhook  POST /hooks -> 204: timeline_change (sandbox-1)",
            "hubspot  POST /crm/v3/objects/notes/batch/create -> 201: 2 inputs",
            "tave     POST /api/v2/note -> 201: job 01jsm0k3x7c9v2b8n4q6w1e5r0",
        ],
        Duration::from_secs(5),
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    sandbox.kill().unwrap();
    sandbox.wait().unwrap();
}

#[tokio::test]
async fn a_simulators_faults_are_scripted_from_outside() {
    let receiver = herald::vendors::webhook::WebhookReceiver::start(
        herald::sandbox::any_local_port(),
        crate::harness::WEBHOOK_SECRET,
    )
    .await
    .unwrap();
    let base = receiver.url().trim_end_matches("/hooks").to_owned();
    let client = reqwest::Client::new();
    let control = |script: serde_json::Value| {
        client
            .post(format!("{base}{}", herald::sandbox::FAULTS_PATH))
            .json(&script)
            .send()
    };
    let hook = || client.post(receiver.url()).body("{}").send();

    let answer: serde_json::Value = control(serde_json::json!({
        "respondNext": {"status": 503, "headers": {"retry-after": "7"}, "body": {"error": "maintenance"}}
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(answer["scripted"], 1);
    let scripted = hook().await.unwrap();
    assert_eq!(
        (
            scripted.status().as_u16(),
            scripted.headers()["retry-after"].to_str().unwrap()
        ),
        (503, "7")
    );
    // Unscripted again: the receiver's own answer (401, the request is not signed).
    assert_eq!(hook().await.unwrap().status(), 401);

    control(serde_json::json!({"goDown": {"status": 502}}))
        .await
        .unwrap();
    assert_eq!(hook().await.unwrap().status(), 502);
    assert_eq!(hook().await.unwrap().status(), 502);
    let answer: serde_json::Value = control(serde_json::json!({"comeBack": true}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["down"], serde_json::Value::Null);
    assert_eq!(hook().await.unwrap().status(), 401);

    let refused = control(serde_json::json!({"explode": true})).await.unwrap();
    assert_eq!(refused.status(), 422);
    // The control calls are not requests to the vendor.
    assert_eq!(receiver.recorder.len(), 5);
}
