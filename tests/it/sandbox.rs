//! `herald sandbox`: the simulators on fixed ports, the configuration it prints works as printed,
//! and it shows every request it receives.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald::sandbox::{
    SANDBOX_HUBSPOT_TOKEN, SANDBOX_SLACK_TOKEN, SANDBOX_TAVE_API_KEY, SANDBOX_TAVE_JOB,
    SANDBOX_WEBHOOK_SECRET,
};

use crate::harness::{all_delivered, notification, Harness};

/// A base port whose next four ports are free. It is chosen below Linux's ephemeral range
/// (32768 and up), where the other tests' simulators (bound to port 0) never land, so no test
/// running alongside can take one of them between this check and the sandbox binding it.
fn free_port_base() -> u16 {
    let start = 20_000 + (std::process::id() % 2_000) as u16 * 5;
    (0..400)
        .map(|step| 20_000 + (start - 20_000 + step * 5) % 12_000)
        .find(|base| {
            (1..=4).all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)).is_ok())
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
fn lines_until_all_seen(
    lines: &mpsc::Receiver<String>,
    needles: &[&str],
    timeout: Duration,
) -> Vec<String> {
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
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_serves_what_its_printed_configuration_describes() {
    let base = free_port_base();
    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["sandbox", "--port-base", &base.to_string()])
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
    let url_after = |line: String| line.split_whitespace().nth(1).unwrap().to_owned();
    let slack_url = url_after(next_line_containing(
        &lines,
        "  Slack ",
        Duration::from_secs(20),
    ));
    let hook_url = url_after(next_line_containing(
        &lines,
        "  Webhook ",
        Duration::from_secs(5),
    ));
    let hubspot_url = url_after(next_line_containing(
        &lines,
        "  HubSpot ",
        Duration::from_secs(5),
    ));
    let tave_url = url_after(next_line_containing(
        &lines,
        "  Tave ",
        Duration::from_secs(5),
    ));
    assert_eq!(slack_url, format!("http://127.0.0.1:{}/api", base + 1));
    next_line_containing(&lines, "Requests appear below", Duration::from_secs(5));

    let secrets = tempfile::tempdir().unwrap();
    for (file, value) in [
        ("token", SANDBOX_SLACK_TOKEN),
        ("secret", SANDBOX_WEBHOOK_SECRET),
        ("hubspot", SANDBOX_HUBSPOT_TOKEN),
        ("tave", SANDBOX_TAVE_API_KEY),
    ] {
        std::fs::write(secrets.path().join(file), value).unwrap();
    }
    let body = format!(
        "[[organizations]]\nid = \"my-studio\"\n\
         [[integrations]]\nid = \"sandbox-slack\"\norganization = \"my-studio\"\nkind = \"slack\"\n\
         settings = {{ base_url = \"{slack_url}\", channel = \"#weddings\", token = {{ file = \"{dir}/token\" }} }}\n\
         [[integrations]]\nid = \"sandbox-webhook\"\norganization = \"my-studio\"\nkind = \"webhook\"\n\
         settings = {{ url = \"{hook_url}\", secret = {{ file = \"{dir}/secret\" }} }}\n\
         [[integrations]]\nid = \"sandbox-hubspot\"\norganization = \"my-studio\"\nkind = \"hubspot\"\n\
         settings = {{ base_url = \"{hubspot_url}\", token = {{ file = \"{dir}/hubspot\" }} }}\n\
         [[integrations]]\nid = \"sandbox-tave\"\norganization = \"my-studio\"\nkind = \"tave\"\n\
         settings = {{ base_url = \"{tave_url}\", api_key = {{ file = \"{dir}/tave\" }} }}\n\
         [[routes]]\norganization = \"my-studio\"\nname = \"everything\"\n\
         targets = [\"sandbox-slack\", \"sandbox-webhook\", \"sandbox-hubspot\", \"sandbox-tave\"]\n",
        dir = secrets.path().display()
    );
    let herald = Harness::start(&body, "my-studio").await;
    let mut sample = notification("sb-1", "high");
    sample["contacts"] = serde_json::json!([{"email": "sam@example.com"}]);
    sample["metadata"] = serde_json::json!({"taveJobId": SANDBOX_TAVE_JOB});
    herald.post("/v1/notifications", &sample).await;
    herald
        .wait_for_notification("sb-1", Duration::from_secs(10), all_delivered)
        .await;
    let printed = lines_until_all_seen(
        &lines,
        &[
            "slack   POST /api/chat.postMessage -> 200: Ceremony moved",
            "webhook POST /hooks -> 204: timeline_change (sb-1)",
            "hubspot POST /crm/v3/objects/notes/batch/create -> 201: 1 inputs",
            "tave    POST /api/v2/note -> 201: job J-SANDBOX-1",
        ],
        Duration::from_secs(5),
    );
    assert!(
        printed
            .iter()
            .any(|line| line.starts_with("tave    PUT /api/v2/job/J-SANDBOX-1 -> 200")),
        "{printed:?}"
    );
    sandbox.kill().unwrap();
    sandbox.wait().unwrap();
}

#[tokio::test]
async fn the_slack_simulator_refuses_requests_that_drift_from_slacks_published_contract() {
    let slack = herald::sandbox::FakeSlack::start(
        herald::sandbox::any_local_port(),
        SANDBOX_SLACK_TOKEN,
        &["weddings"],
    )
    .await
    .unwrap();
    let post = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(format!("{}/chat.postMessage", slack.base_url()))
            .bearer_auth(SANDBOX_SLACK_TOKEN)
            .json(&body)
            .send()
    };
    let answer: serde_json::Value =
        post(serde_json::json!({"channel": "#weddings", "txt": "typo"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"], "invalid_arguments");
    assert_eq!(
        answer["response_metadata"]["messages"][0],
        "[ERROR] unknown parameter `txt`"
    );
    let answer: serde_json::Value =
        post(serde_json::json!({"channel": "#weddings", "text": "fine"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(slack.messages("weddings").len(), 1);
}

#[tokio::test]
async fn the_slack_simulator_holds_each_method_to_its_tier() {
    let slack = herald::sandbox::FakeSlack::start(
        herald::sandbox::any_local_port(),
        SANDBOX_SLACK_TOKEN,
        &["weddings"],
    )
    .await
    .unwrap();
    slack.set_method_limit("team.info", 2);
    let client = reqwest::Client::new();
    let team_info = || {
        client
            .get(format!("{}/team.info", slack.base_url()))
            .bearer_auth(SANDBOX_SLACK_TOKEN)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(team_info().await.unwrap().status(), 200);
    }
    let limited = team_info().await.unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "ratelimited");
    // Another method has its own allowance.
    let replies = client
        .get(format!("{}/reactions.get", slack.base_url()))
        .bearer_auth(SANDBOX_SLACK_TOKEN)
        .query(&[("channel", "C00000001"), ("timestamp", "1.000001")])
        .send()
        .await
        .unwrap();
    assert_eq!(replies.status(), 200);
}
