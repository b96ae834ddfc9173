//! Durability across process death: the `herald` binary is killed with SIGKILL while it holds
//! thousands of accepted, undelivered notifications; after a restart every one reaches the
//! receiver. And SIGTERM shuts down cleanly, leaving the rest for the next start.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald::sandbox::any_local_port;
use herald::vendors::webhook::WebhookReceiver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{full_config, notification, route, webhook_integration, WEBHOOK_SECRET};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16, url: &str, rate: &str) -> std::path::PathBuf {
    let body = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"5s\"\n[[organizations]]\nid = \"studio\"\n{}{}",
        webhook_integration("hook", "studio", url, &format!("rate_limit = {rate}\nmax_in_flight = 4")),
        route("studio", &["hook"], "")
    );
    let path = dir.join(format!("herald-{port}.toml"));
    std::fs::write(&path, full_config(dir, &body)).unwrap();
    path
}

/// Runs `herald keys <args> --organization studio --config <config>` and returns its output.
fn keys(config: &Path, args: &[&str]) -> String {
    let output = Command::new(HERALD)
        .arg("keys")
        .args(args)
        .args(["--organization", "studio", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn create_key(config: &Path) -> String {
    keys(config, &["create"])
}

fn spawn(config: &Path) -> Child {
    Command::new(HERALD)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if response.status() == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("herald on port {port} did not become ready");
}

fn delivered_ids(receiver: &WebhookReceiver) -> HashSet<String> {
    receiver
        .received()
        .iter()
        .filter_map(|r| r.body["data"]["notificationId"].as_str().map(str::to_owned))
        .collect()
}

async fn post_batch(client: &reqwest::Client, port: u16, key: &str, prefix: &str, count: usize) {
    let batch: Vec<Value> = (0..count)
        .map(|n| notification(&format!("{prefix}-{n}"), "normal"))
        .collect();
    let response = client
        .post(format!("http://127.0.0.1:{port}/v1/notifications/batch"))
        .bearer_auth(key)
        .json(&json!({"notifications": batch}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_notifications_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let port = free_port();
    // Slow delivery, so thousands are still undelivered when the process dies.
    let slow = write_config(
        dir.path(),
        port,
        &receiver.url(),
        "{ per_second = 20, burst = 1 }",
    );
    let key = create_key(&slow);
    let spare = create_key(&slow);
    let listed = keys(&slow, &["list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        !listed.contains(&key) && !listed.contains(&spare),
        "keys are never shown again"
    );
    let spare_id = listed
        .lines()
        .map(|line| line.split_whitespace().next().unwrap())
        .find(|id| herald::api::hash_key(&spare).starts_with(id))
        .unwrap();
    keys(&slow, &["revoke", spare_id]);
    let mut daemon = spawn(&slow);
    wait_ready(&client, port).await;
    let refused = client
        .get(format!("http://127.0.0.1:{port}/v1/dead-letters"))
        .bearer_auth(&spare)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "a revoked key is refused"
    );
    for chunk in 0..3 {
        post_batch(&client, port, &key, &format!("k{chunk}"), 1000).await;
    }
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    let before = delivered_ids(&receiver).len();
    assert!(
        before < 3000,
        "the kill came before delivery finished ({before} delivered)"
    );

    let port = free_port();
    let fast = write_config(
        dir.path(),
        port,
        &receiver.url(),
        "{ per_second = 5000, burst = 100 }",
    );
    let mut daemon = spawn(&fast);
    wait_ready(&client, port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected: HashSet<String> = (0..3)
        .flat_map(|chunk| (0..1000).map(move |n| format!("k{chunk}-{n}")))
        .collect();
    loop {
        let delivered = delivered_ids(&receiver);
        if expected.is_subset(&delivered) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 3000 delivered after restart",
            expected.intersection(&delivered).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_the_rest_is_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .unwrap();
    receiver.faults.set_latency(Duration::from_millis(300));
    let client = reqwest::Client::new();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &receiver.url(),
        "{ per_second = 20, burst = 1 }",
    );
    let key = create_key(&config);
    let mut daemon = spawn(&config);
    wait_ready(&client, port).await;
    // Through the CLI a user would use: `herald send FILE.json`.
    let batch: Vec<Value> = (0..200)
        .map(|n| notification(&format!("t-{n}"), "normal"))
        .collect();
    let file = dir.path().join("batch.json");
    std::fs::write(&file, json!({"notifications": batch}).to_string()).unwrap();
    let sent = Command::new(HERALD)
        .arg("send")
        .arg(&file)
        .args(["--url", &format!("http://127.0.0.1:{port}"), "--key", &key])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        "200 accepted, 0 duplicates"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped_at = Instant::now();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = daemon.wait().unwrap();
    assert!(exit.success(), "herald exited with {exit:?} after SIGTERM");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(6),
        "shutdown is bounded by the grace period"
    );
    let answered = receiver.recorder.len();
    assert!(
        answered < 200,
        "stopped before delivering everything ({answered})"
    );

    receiver.faults.set_latency(Duration::ZERO);
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &receiver.url(),
        "{ per_second = 5000, burst = 100 }",
    );
    let mut daemon = spawn(&config);
    wait_ready(&client, port).await;
    let expected: HashSet<String> = (0..200).map(|n| format!("t-{n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !expected.is_subset(&delivered_ids(&receiver)) {
        assert!(
            Instant::now() < deadline,
            "not everything was delivered after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
