//! Herald's load harness: the daemon, the load generator and the sinks in one process on the same
//! cores, over real loopback HTTP, on the embedded store in a temporary folder.
//!
//! ```sh
//! cargo bench --bench load                 # every scenario
//! cargo bench --bench load -- intake e2e   # some of them
//! ```
//!
//! Scenarios: `intake` and `intake-postgres` (durable acceptance rate on each store), `e2e`
//! (deliveries per second to a signed-webhook sink), `latency` (intake-to-sink latency at 50 notifications/s), `emergency` (emergency
//! intake-to-sink latency behind a 100,000 backlog), `idle` (RSS of 10,000 idle integrations),
//! `single` and `single-postgres` (one notification per `POST /v1/notifications` over 64
//! keep-alive connections to a webhook sink, as WedSync mostly sends them: accepted/s and
//! delivered/s, on SQLite and on the machine's PostgreSQL, `HERALD_BENCH_POSTGRES_URL` or
//! `postgres://postgres@127.0.0.1:5432/test`), `integrations` (integrations as data at scale:
//! creating 100,000 through the API, the RSS holding them idle, the start time with them, and a
//! cold integration's first delivery; `HERALD_BENCH_INTEGRATIONS` sets how many).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald::sandbox::{any_local_port, RecordedRequest};
use herald::store::{Actor, Role};
use herald::vendors::webhook::WebhookReceiver;
use serde_json::{json, Value};

const SECRET: &str = "whsec_YmVuY2gtc2VjcmV0LWZvci1oZXJhbGQtbG9hZC10ZXN0cw==";

struct Daemon {
    base: String,
    key: String,
    client: reqwest::Client,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(body: &str) -> Daemon {
    start_on(Store::Sqlite, body).await
}

/// Where a bench daemon keeps its state.
#[derive(Clone, Copy)]
enum Store {
    Sqlite,
    /// A schema of its own on the machine's PostgreSQL.
    Postgres,
}

async fn start_on(store: Store, body: &str) -> Daemon {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("secret"), SECRET).unwrap();
    let store = match store {
        Store::Sqlite => format!(
            "[store]\ndata_dir = \"{}\"\n",
            data.path().join("store").display()
        ),
        Store::Postgres => {
            let url = std::env::var("HERALD_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            std::fs::write(data.path().join("postgres-url"), url).unwrap();
            format!(
                "[store]\nkind = \"postgres\"\nurl = {{ file = \"{}\" }}\nschema = \"herald_bench_{}\"\n",
                data.path().join("postgres-url").display(),
                std::process::id()
            )
        }
    };
    let text = format!(
        "{store}[security]\nallow_private_destinations = true\n[[organizations]]\nid = \"bench\"\n{}",
        body.replace("{secret}", &data.path().join("secret").display().to_string())
    );
    let config = herald::config::parse(&text, "bench").unwrap();
    let store = herald::open_store(&config).await.unwrap();
    let (key, _) =
        herald::api::create_api_key(&*store, "bench", "bench", Role::Sender, &Actor::operator())
            .await
            .unwrap();
    drop(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(herald::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    Daemon {
        base,
        key,
        client,
        _data: data,
        _stop: stop,
    }
}

fn sink(id: &str, url: &str, extra: &str) -> String {
    format!("[[integrations]]\nid = \"{id}\"\norganization = \"bench\"\nkind = \"webhook\"\nsettings = {{ url = \"{url}\", secret = {{ file = \"{{secret}}\" }} }}\n{extra}\n[[routes]]\norganization = \"bench\"\nname = \"{id}\"\ntargets = [\"{id}\"]\n")
}

fn notification(id: &str, priority: &str) -> Value {
    json!({
        "notificationId": id,
        "type": "timeline_change",
        "priority": priority,
        "title": "Ceremony moved",
        "message": "The ceremony now starts at 15:30; the first look moves to 14:45.",
        "weddingContext": {"weddingId": "wed-2027-0612", "weddingDate": "2027-06-12", "venue": "Kew Gardens"}
    })
}

impl Daemon {
    async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }

    async fn post_batches(
        &self,
        prefix: &str,
        total: usize,
        batch: usize,
        concurrency: usize,
        priority: &str,
    ) {
        let chunks: Vec<(usize, usize)> = (0..total)
            .step_by(batch)
            .map(|start| (start, (start + batch).min(total)))
            .collect();
        for group in chunks.chunks(concurrency) {
            let mut requests = Vec::with_capacity(group.len());
            for &(start, end) in group {
                let notifications: Vec<Value> = (start..end)
                    .map(|n| notification(&format!("{prefix}-{n}"), priority))
                    .collect();
                let request = self
                    .client
                    .post(format!("{}/v1/notifications/batch", self.base))
                    .bearer_auth(&self.key)
                    .json(&json!({"notifications": notifications}));
                requests.push(tokio::spawn(async move {
                    request.send().await.unwrap().status()
                }));
            }
            for request in requests {
                assert!(request.await.unwrap().is_success());
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1)]
}

fn arrivals(receiver: &WebhookReceiver) -> HashMap<String, Instant> {
    receiver
        .received()
        .iter()
        .filter_map(|r: &RecordedRequest| {
            r.body["data"]["notificationId"]
                .as_str()
                .map(|id| (id.to_owned(), r.at))
        })
        .collect()
}

async fn wait_for_count(receiver: &WebhookReceiver, count: usize, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if receiver.recorder.len() >= count {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} arrived",
            receiver.recorder.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Durable acceptance: batches of 1,000 from 8 concurrent clients, routed to a null connector.
async fn intake(store: Store, label: &str) {
    let daemon = start_on(store, "[[integrations]]\nid = \"null\"\norganization = \"bench\"\nkind = \"null\"\n[[routes]]\norganization = \"bench\"\nname = \"all\"\ntargets = [\"null\"]\n").await;
    daemon.post_batches("warm", 10_000, 1000, 8, "normal").await;
    let total = 200_000;
    let started = Instant::now();
    daemon.post_batches("n", total, 1000, 8, "normal").await;
    let elapsed = started.elapsed();
    println!("{label}: {total} notifications accepted durably in {:.2} s = {:.0}/s (batches of 1,000, 8 concurrent, each with one delivery row)", elapsed.as_secs_f64(), total as f64 / elapsed.as_secs_f64());
}

/// End to end: 50,000 notifications to a Standard Webhooks sink that verifies every signature.
async fn e2e() {
    let receiver = WebhookReceiver::start(any_local_port(), SECRET)
        .await
        .unwrap();
    let daemon = start(&sink(
        "sink",
        &receiver.url(),
        "rate_limit = { per_second = 1000000, burst = 100000 }\nmax_in_flight = 128",
    ))
    .await;
    let total = 50_000;
    let started = Instant::now();
    daemon.post_batches("e", total, 1000, 4, "normal").await;
    let accepted = started.elapsed();
    let finished = wait_for_count(&receiver, total, Duration::from_secs(300)).await;
    let elapsed = finished - started;
    println!(
        "e2e: {total} deliveries (HTTP POST, HMAC signed and verified) in {:.2} s = {:.0}/s (intake finished after {:.2} s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        accepted.as_secs_f64()
    );
}

/// Single notifications, one per request, from 64 clients on keep-alive connections, to a
/// signed-webhook sink: how fast they are accepted, and how fast they are delivered.
async fn single(store: Store, label: &str) {
    let receiver = WebhookReceiver::start(any_local_port(), SECRET)
        .await
        .unwrap();
    let daemon = start_on(
        store,
        &sink(
            "sink",
            &receiver.url(),
            "rate_limit = { per_second = 1000000, burst = 100000 }\nmax_in_flight = 128",
        ),
    )
    .await;
    let (clients, per_client) = (64, 500);
    let total = clients * per_client;
    let started = Instant::now();
    let mut senders = Vec::with_capacity(clients);
    for client in 0..clients {
        let (http, base, key) = (
            daemon.client.clone(),
            daemon.base.clone(),
            daemon.key.clone(),
        );
        senders.push(tokio::spawn(async move {
            for n in 0..per_client {
                let status = http
                    .post(format!("{base}/v1/notifications"))
                    .bearer_auth(&key)
                    .json(&notification(&format!("s-{client}-{n}"), "normal"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert!(status.is_success(), "{status}");
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let accepted = started.elapsed();
    let finished = wait_for_count(&receiver, total, Duration::from_secs(300)).await;
    let delivered = finished - started;
    println!(
        "{label}: {total} single POSTs from {clients} keep-alive clients accepted in {:.2} s = {:.0}/s; all delivered after {:.2} s = {:.0}/s",
        accepted.as_secs_f64(),
        total as f64 / accepted.as_secs_f64(),
        delivered.as_secs_f64(),
        total as f64 / delivered.as_secs_f64()
    );
    if let Store::Postgres = store {
        drop(daemon);
        drop_bench_schema().await;
    }
}

/// Drops the schema a PostgreSQL bench daemon kept its state in.
async fn drop_bench_schema() {
    let url = std::env::var("HERALD_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS herald_bench_{} CASCADE",
            std::process::id()
        ))
        .await
        .unwrap();
}

/// Intake-to-sink latency at a steady 50 notifications per second, one request each.
async fn latency() {
    let receiver = WebhookReceiver::start(any_local_port(), SECRET)
        .await
        .unwrap();
    let daemon = start(&sink("sink", &receiver.url(), "")).await;
    let count = 1000;
    let mut sent = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..count {
        tick.tick().await;
        let id = format!("l-{n}");
        sent.insert(id.clone(), Instant::now());
        daemon
            .post("/v1/notifications", &notification(&id, "normal"))
            .await;
    }
    wait_for_count(&receiver, count, Duration::from_secs(30)).await;
    report_latency("latency at 50/s", &sent, &arrivals(&receiver));
}

/// Emergencies behind a backlog of 100,000 normal notifications to the same integration.
async fn emergency() {
    let receiver = WebhookReceiver::start(any_local_port(), SECRET)
        .await
        .unwrap();
    let daemon = start(&sink(
        "sink",
        &receiver.url(),
        "rate_limit = { per_second = 2000, burst = 200, emergency_reserve = 0.2 }",
    ))
    .await;
    daemon.post_batches("bulk", 100_000, 10_000, 2, "low").await;
    let mut sent = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for n in 0..200 {
        tick.tick().await;
        let id = format!("sos-{n}");
        sent.insert(id.clone(), Instant::now());
        daemon
            .post("/v1/notifications", &notification(&id, "emergency"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrived = arrivals(&receiver);
    let backlog_delivered = arrived.keys().filter(|id| id.starts_with("bulk")).count();
    report_latency("emergency behind 100,000 backlog", &sent, &arrived);
    println!(
        "  (normal deliveries made meanwhile: {backlog_delivered}; the backlog was still draining)"
    );
}

fn report_latency(name: &str, sent: &HashMap<String, Instant>, arrived: &HashMap<String, Instant>) {
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| arrived.get(id).map(|arrival| arrival.duration_since(*at)))
        .collect();
    latencies.sort();
    println!(
        "{name}: {} of {} arrived; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from the client's send to the sink's receipt)",
        latencies.len(),
        sent.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0
    );
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// Resident memory of 10,000 idle configured integrations (webhook connectors, each with its
/// own limiter, breaker and runtime; an actor only once it has something to deliver).
async fn idle() {
    let before = rss_mib();
    let mut body = String::new();
    for n in 0..10_000 {
        body.push_str(&format!(
            "[[integrations]]\nid = \"hook-{n}\"\norganization = \"bench\"\nkind = \"webhook\"\nsettings = {{ url = \"http://127.0.0.1:9/hooks/{n}\", secret = {{ file = \"{{secret}}\" }} }}\n"
        ));
    }
    let started = Instant::now();
    let daemon = start(&body).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let response = daemon
            .client
            .get(format!("{}/v1/integrations", daemon.base))
            .bearer_auth(&daemon.key)
            .send()
            .await;
        if let Ok(response) = response {
            if response.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "daemon did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_mib();
    println!(
        "idle: 10,000 configured integrations, idle (no actor until a delivery), up in {:.2} s; process RSS {after:.0} MiB ({:.0} MiB before the daemon started)",
        started.elapsed().as_secs_f64(),
        before
    );
}

/// Integrations as data at scale: `HERALD_BENCH_INTEGRATIONS` (default 100,000) webhook
/// integrations created through `POST /v1/integrations` from 64 clients (each secret sealed);
/// the daemon's RSS holding them idle; its start time with them in the store; and the latency
/// of a first delivery to a cold integration against a second one to the same, now warm.
async fn integrations() {
    let count: usize = std::env::var("HERALD_BENCH_INTEGRATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let receiver = WebhookReceiver::start(any_local_port(), SECRET)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let key_file = data.path().join("credentials-key");
    std::fs::write(&key_file, "YmVuY2gtaGVyYWxkLWNyZWRlbnRpYWxzLWtleS0zMmI=").unwrap();
    let text = format!(
        "[store]\ndata_dir = \"{}\"\n[security]\nallow_private_destinations = true\ncredentials_key = {{ file = \"{}\" }}\n[[organizations]]\nid = \"bench\"\n",
        data.path().join("store").display(),
        key_file.display()
    );
    let config = herald::config::parse(&text, "bench").unwrap();
    let store = herald::open_store(&config).await.unwrap();
    let (key, _) =
        herald::api::create_api_key(&*store, "bench", "bench", Role::Admin, &Actor::operator())
            .await
            .unwrap();
    drop(store);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    let before = rss_mib();
    let serve = |config: herald::config::Config| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(herald::run(config, listener, async move {
            let _ = stopped.await;
        }));
        (base, stop, daemon)
    };
    let (base, stop, daemon) = serve(config.clone()).await;

    let started = Instant::now();
    let url = receiver.url();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (client, base, key, url, next) = (
                client.clone(),
                base.clone(),
                key.clone(),
                url.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let body = json!({
                        "integrationId": format!("hook-{n}"),
                        "system": "webhook",
                        "settings": {"url": format!("{url}?n={n}"), "secret": {"value": SECRET}},
                    });
                    let status = client
                        .post(format!("{base}/v1/integrations"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    assert_eq!(status, reqwest::StatusCode::CREATED);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let created = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rss_mib();
    println!(
        "integrations: {count} created through the API in {:.1} s = {:.0}/s; RSS holding them idle {held:.0} MiB ({:.1} KiB each above the {before:.0} MiB before the daemon)",
        created.as_secs_f64(),
        count as f64 / created.as_secs_f64(),
        (held - before) * 1024.0 / count as f64
    );

    // Restart: how long until the API answers with every integration read back.
    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
    let restarting = Instant::now();
    let (base, _stop, _daemon) = serve(config).await;
    loop {
        let response = client
            .get(format!("{base}/v1/integrations/hook-{}", count - 1))
            .bearer_auth(&key)
            .send()
            .await;
        if response.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "integrations: the daemon started with {count} stored integrations in {:.2} s; RSS {:.0} MiB",
        restarting.elapsed().as_secs_f64(),
        rss_mib()
    );

    // First delivery to a cold integration, then to the same one warm: routing results with
    // `?wait=`, timed from the request to the answer (which comes once the sink took it).
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for (round, latencies) in [(0, &mut cold), (1, &mut warm)] {
        for n in (0..count).step_by((count / 200).max(1)).take(200) {
            let sent = Instant::now();
            let answer: Value = client
                .post(format!("{base}/v1/routings?wait=10s"))
                .bearer_auth(&key)
                .json(&json!({
                    "routingId": format!("r-{round}-{n}"),
                    "sourceNotification": notification(&format!("n-{round}-{n}"), "normal"),
                    "targetSystems": [{"systemId": format!("hook-{n}")}],
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(answer["overallStatus"], "success", "{answer}");
            latencies.push(sent.elapsed());
        }
    }
    cold.sort();
    warm.sort();
    println!(
        "integrations: first delivery to a cold integration p50 {:.2} ms p99 {:.2} ms; to a warm one p50 {:.2} ms p99 {:.2} ms",
        percentile(&cold, 0.5).as_secs_f64() * 1000.0,
        percentile(&cold, 0.99).as_secs_f64() * 1000.0,
        percentile(&warm, 0.5).as_secs_f64() * 1000.0,
        percentile(&warm, 0.99).as_secs_f64() * 1000.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = [
        "intake",
        "intake-postgres",
        "e2e",
        "latency",
        "emergency",
        "idle",
        "single",
        "single-postgres",
        "integrations",
    ];
    let chosen: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        all.iter()
            .copied()
            .filter(|s| args.iter().any(|a| a == s))
            .collect()
    };
    if chosen.len() > 1 {
        // Each scenario runs in a fresh process, so memory and load from one never reach the next.
        let me = std::env::current_exe().unwrap();
        for scenario in chosen {
            let status = std::process::Command::new(&me)
                .arg(scenario)
                .status()
                .unwrap();
            assert!(status.success(), "scenario {scenario} failed");
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match chosen.first().copied() {
            Some("intake") => intake(Store::Sqlite, "intake").await,
            Some("intake-postgres") => intake(Store::Postgres, "intake-postgres").await,
            Some("e2e") => e2e().await,
            Some("latency") => latency().await,
            Some("emergency") => emergency().await,
            Some("idle") => idle().await,
            Some("single") => single(Store::Sqlite, "single").await,
            Some("single-postgres") => single(Store::Postgres, "single-postgres").await,
            Some("integrations") => integrations().await,
            _ => eprintln!("unknown scenario; choose from {all:?}"),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
}
