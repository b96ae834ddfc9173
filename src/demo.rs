//! `herald demo`: Herald on the embedded store in a temporary data folder, with local vendor
//! simulators, routing the seed's scenarios end to end over real HTTP:
//!
//! 1. a photography studio's timeline change, to its CRM (HubSpot: the couple's contacts updated
//!    and a note on each), its booking system (Tave: the job's date and a communication-log note)
//!    and its team's Slack;
//! 2. a wedding-day emergency whose primary channel (Slack) is down: after its first failed
//!    attempt the alert fails over to the on-call webhook (`emergency_after_attempts = 1`);
//! 3. a batch of client messages, to show the normal lane working beside it;
//! 4. an order booked in Tave: Herald subscribes to Tave's REST hooks, Tave calls back, and the
//!    booking reaches the team's Slack as a notification of its own.
//!
//! It prints what went where and how long it took, and succeeds only if everything was delivered.
//!
//! `herald demo --all` ([`run_every_vendor`]) instead routes one notification to every vendor in
//! the registry, each through its own simulator, and prints one row per vendor.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config;
use crate::sandbox::any_local_port;
use crate::store::{Actor, Role};
use crate::vendors::hubspot::FakeHubSpot;
use crate::vendors::slack::FakeSlack;
use crate::vendors::tave::FakeTave;
use crate::vendors::webhook::WebhookReceiver;
use crate::vendors::{self, RunningSimulator};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo setup failed: {0}")]
    Setup(String),
    #[error("demo request failed: {0}")]
    Request(String),
    #[error("{0} of {1} deliveries were not delivered")]
    Undelivered(usize, usize),
}

const SLACK_TOKEN: &str = "xoxb-demo-0000000000-herald";
const HUBSPOT_TOKEN: &str = "pat-na1-demo0000-0000-0000-0000-000000000000";
const TAVE_API_KEY: &str = "tave-demo-0000000000000000";
/// The order booked in Tave (Tave's ids are lowercase ULIDs).
const TAVE_ORDER: &str = "01r00000000000000000000001";
const TAVE_JOB: &str = "01j00000000000000020270612";
const TAVE_HOOK_SECRET: &str = "tave-hooks-demo-5f0c2a9e41b7d3";
const WEBHOOK_SECRET: &str = "whsec_ZGVtby1zZWNyZXQtZm9yLWhlcmFsZC1kZW1vLTEyMzQ=";

/// Runs the demo and prints its report to standard output.
/// What `herald demo` delivered, counted at the simulators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Deliveries of every scenario, and how many of them were delivered.
    pub deliveries: usize,
    pub delivered: usize,
    pub slack_messages: usize,
    pub tave_notes: usize,
    pub pager_messages: usize,
    pub hubspot_notes: usize,
}

pub async fn run_demo() -> Result<DemoSummary, DemoError> {
    let setup = |err: &dyn std::fmt::Display| DemoError::Setup(err.to_string());
    let data = tempfile::tempdir().map_err(|e| setup(&e))?;
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["studio-ops"])
        .await
        .map_err(|e| setup(&e))?;
    // The venue team's own workspace, which is having an outage on the wedding day.
    let venue_slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["wedding-day"])
        .await
        .map_err(|e| setup(&e))?;
    venue_slack
        .faults
        .go_down(503, json!({"ok": false, "error": "service_unavailable"}));
    let hubspot = FakeHubSpot::start(any_local_port(), HUBSPOT_TOKEN, 100)
        .await
        .map_err(|e| setup(&e))?;
    let tave = FakeTave::start(any_local_port(), TAVE_API_KEY)
        .await
        .map_err(|e| setup(&e))?;
    tave.add_job(
        TAVE_JOB,
        json!({"name": "Sam & Alex, Kew Gardens", "eventDate": "2027-06-05"}),
    );
    let pager = WebhookReceiver::start(any_local_port(), WEBHOOK_SECRET)
        .await
        .map_err(|e| setup(&e))?;
    let secrets = data.path().join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| setup(&e))?;
    std::fs::write(secrets.join("slack"), SLACK_TOKEN).map_err(|e| setup(&e))?;
    std::fs::write(secrets.join("webhook"), WEBHOOK_SECRET).map_err(|e| setup(&e))?;
    std::fs::write(secrets.join("hubspot"), HUBSPOT_TOKEN).map_err(|e| setup(&e))?;
    std::fs::write(secrets.join("tave"), TAVE_API_KEY).map_err(|e| setup(&e))?;
    std::fs::write(secrets.join("tave-hooks"), TAVE_HOOK_SECRET).map_err(|e| setup(&e))?;

    // Bound first: Tave is told this address to call back.
    let listener = tokio::net::TcpListener::bind(any_local_port())
        .await
        .map_err(|e| setup(&e))?;
    let base = format!("http://{}", listener.local_addr().map_err(|e| setup(&e))?);
    let text = demo_config(
        data.path(),
        &base,
        &slack.base_url(),
        &venue_slack.base_url(),
        &hubspot.base_url(),
        &tave.base_url(),
        &pager.url(),
    );
    let config = config::parse(&text, "demo config").map_err(|e| setup(&e))?;
    let store = crate::open_store(&config).await.map_err(|e| setup(&e))?;
    // Admin: the demo also subscribes to Tave's REST hooks, which manages an integration.
    let (key, _) = crate::api::create_api_key(
        &*store,
        "lumiere-studios",
        "demo",
        Role::Admin,
        &Actor::operator(),
    )
    .await
    .map_err(|e| setup(&e))?;
    drop(store);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::run(config, listener, async move {
        let _ = stopped.await;
    }));

    println!(
        "Herald demo: daemon on {base}, data in {}",
        data.path().display()
    );
    println!(
        "simulators: studio Slack {}, venue Slack {} (down: answers 503), HubSpot {}, Tave {}, on-call webhook {}\n",
        slack.base_url(),
        venue_slack.base_url(),
        hubspot.base_url(),
        tave.base_url(),
        pager.url()
    );

    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = client
            .post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body);
        async move {
            let response = request
                .send()
                .await
                .map_err(|e| DemoError::Request(e.to_string()))?;
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .map_err(|e| DemoError::Request(e.to_string()))?;
            if !status.is_success() {
                return Err(DemoError::Request(format!("{status}: {body}")));
            }
            Ok(body)
        }
    };
    let started = Instant::now();
    post("/v1/notifications", timeline_change()).await?;
    post("/v1/notifications", emergency()).await?;
    let batch: Vec<Value> = (1..=200).map(client_message).collect();
    post("/v1/notifications/batch", json!({"notifications": batch})).await?;

    // Tave's side: Herald subscribes to its REST hooks, then a booking happens in Tave.
    post("/v1/integrations/studio-booking/subscriptions", json!({})).await?;
    let called_back = tave.fire("order.booked", TAVE_ORDER).await;
    if called_back != [200] {
        return Err(DemoError::Request(format!(
            "Tave's REST hook call to Herald answered {called_back:?}"
        )));
    }

    let mut ids = vec![
        "tl-0001".to_owned(),
        "em-0001".to_owned(),
        format!("tave-studio-booking-order.booked-{TAVE_ORDER}"),
    ];
    ids.extend((1..=200).map(|n| format!("cm-{n:04}")));
    let records = wait_until_settled(&client, &base, &key, &ids, Duration::from_secs(30)).await?;
    let elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = daemon.await;

    print_report(&records[..3]);
    let batch_delivered = records[3..]
        .iter()
        .flat_map(|r| r["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["state"] == "delivered")
        .count();
    println!(
        "\nbatch: {batch_delivered} of {} client-message deliveries delivered",
        (records.len() - 3) * 2
    );
    let (deliveries, undelivered) = count_undelivered(&records);
    let summary = DemoSummary {
        deliveries,
        delivered: deliveries - undelivered,
        slack_messages: slack.messages("studio-ops").len(),
        tave_notes: tave.notes().len(),
        pager_messages: pager.received().len(),
        hubspot_notes: hubspot.notes().len(),
    };
    println!(
        "Slack messages in #studio-ops: {}, Tave notes: {}, on-call webhook messages: {}, HubSpot notes: {}",
        summary.slack_messages, summary.tave_notes, summary.pager_messages, summary.hubspot_notes
    );
    println!("all scenarios settled in {} ms", elapsed.as_millis());

    if undelivered > 0 {
        return Err(DemoError::Undelivered(undelivered, deliveries));
    }
    println!("every notification reached every target");
    Ok(summary)
}

fn demo_config(
    data_dir: &std::path::Path,
    herald: &str,
    slack: &str,
    venue_slack: &str,
    hubspot: &str,
    tave: &str,
    pager: &str,
) -> String {
    let secrets = data_dir.join("secrets");
    format!(
        r##"
[server]
listen = "127.0.0.1:0"
[store]
data_dir = "{data}"
[security]
allow_private_destinations = true   # the simulators run on loopback

[[organizations]]
id = "lumiere-studios"
name = "Lumiere Photography Studios"

[[integrations]]
id = "studio-hubspot"
organization = "lumiere-studios"
kind = "hubspot"
settings = {{ base_url = "{hubspot}", token = {{ file = "{secrets}/hubspot" }} }}

[[integrations]]
id = "studio-booking"
organization = "lumiere-studios"
kind = "tave"
settings = {{ base_url = "{tave}", api_key = {{ file = "{secrets}/tave" }}, rest_hooks = {{ public_url = "{herald}", events = ["order.booked", "payment.created"], secret = {{ file = "{secrets}/tave-hooks" }} }} }}
rate_limit = {{ per_second = 100, burst = 20 }}

[[integrations]]
id = "studio-slack"
organization = "lumiere-studios"
kind = "slack"
settings = {{ base_url = "{slack}", channel = "#studio-ops", token = {{ file = "{secrets}/slack" }} }}
rate_limit = {{ per_second = 50, burst = 50 }}

[[integrations]]
id = "wedding-day-slack"
organization = "lumiere-studios"
kind = "slack"
settings = {{ base_url = "{venue_slack}", channel = "#wedding-day", token = {{ file = "{secrets}/slack" }} }}
breaker = {{ failure_threshold = 2, open_for = "30s" }}
retry = {{ initial = "50ms", max_delay = "200ms" }}
failover = {{ targets = ["on-call-webhook"], emergency_after_attempts = 1 }}

[[integrations]]
id = "on-call-webhook"
organization = "lumiere-studios"
kind = "webhook"
settings = {{ url = "{pager}", secret = {{ file = "{secrets}/webhook" }} }}

[[routes]]
organization = "lumiere-studios"
name = "timeline changes to CRM, booking and studio Slack"
types = ["timeline_change"]
targets = ["studio-hubspot", "studio-booking", "studio-slack"]

[[routes]]
organization = "lumiere-studios"
name = "client messages to booking and studio Slack"
types = ["client_message"]
targets = ["studio-booking", "studio-slack"]

[[routes]]
organization = "lumiere-studios"
name = "Tave bookings and payments to studio Slack"
types = ["booking_confirmed", "payment_received"]
when = 'has(metadata.source) && metadata.source == "tave"'
targets = ["studio-slack"]

[[routes]]
organization = "lumiere-studios"
name = "emergencies to the wedding-day channel"
min_priority = "emergency"
targets = ["wedding-day-slack"]
"##,
        data = data_dir.join("store").display(),
        secrets = secrets.display(),
    )
}

fn timeline_change() -> Value {
    json!({
        "notificationId": "tl-0001",
        "type": "timeline_change",
        "priority": "high",
        "title": "Ceremony moved to 15:30",
        "message": "The couple moved the ceremony from 14:00 to 15:30; first look is now at 14:45.",
        "metadata": {"taveJobId": TAVE_JOB},
        "weddingContext": {"weddingId": "wed-2027-0612-kew", "weddingDate": "2027-06-12", "venue": "Kew Gardens", "coupleNames": "Sam & Alex", "vendorName": "Lumiere Photography"},
        "contacts": [{"name": "Sam Taylor", "email": "sam@example.com", "role": "couple"}, {"name": "Alex Morgan", "email": "alex@example.com", "role": "couple"}],
        "actions": [{"actionId": "view-timeline", "label": "Open timeline", "url": "https://app.wedsync.example/timeline/wed-2027-0612-kew", "style": "primary"}]
    })
}

fn emergency() -> Value {
    json!({
        "notificationId": "em-0001",
        "type": "emergency_alert",
        "priority": "emergency",
        "title": "Second shooter unwell",
        "message": "Second shooter for the Kew wedding is ill; a replacement is needed by 13:00.",
        "weddingContext": {"weddingId": "wed-2027-0612-kew", "weddingDate": "2027-06-12", "venue": "Kew Gardens"},
        "actions": [{"actionId": "acknowledge", "label": "I'm on it", "style": "danger"}]
    })
}

fn client_message(n: usize) -> Value {
    json!({
        "notificationId": format!("cm-{n:04}"),
        "type": "client_message",
        "priority": "normal",
        "title": format!("Message from couple #{n}"),
        "message": "Could we add a family group photo after the ceremony?",
        "weddingContext": {"weddingId": format!("wed-{n:04}"), "weddingDate": "2027-07-03"},
        "metadata": {"taveJobId": TAVE_JOB}
    })
}

async fn wait_until_settled(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<Value>, DemoError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let response = client
                .get(format!("{base}/v1/notifications/{id}"))
                .bearer_auth(key)
                .send()
                .await
                .map_err(|e| DemoError::Request(e.to_string()))?;
            // A notification Herald never took is a failed scenario, not one with nothing to do.
            if !response.status().is_success() && Instant::now() >= deadline {
                return Err(DemoError::Request(format!(
                    "notification {id}: {}",
                    response.status()
                )));
            }
            records.push(
                response
                    .json::<Value>()
                    .await
                    .map_err(|e| DemoError::Request(e.to_string()))?,
            );
        }
        let settled = records.iter().all(|record| {
            record["targets"].as_array().is_some_and(|targets| {
                targets.iter().all(|t| {
                    ["delivered", "dead_lettered", "failed_over"]
                        .contains(&t["state"].as_str().unwrap_or(""))
                })
            })
        });
        if settled || Instant::now() >= deadline {
            return Ok(records);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_report(records: &[Value]) {
    let width = records
        .iter()
        .filter_map(|r| r["notificationId"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(6);
    println!(
        "{:<width$} {:<10} {:<18} {:<9} {:<14} {:>8} {:>9}  receipt",
        "notice", "priority", "integration", "route", "state", "attempts", "took ms"
    );
    for record in records {
        let id = record["notificationId"].as_str().unwrap_or("?");
        let priority = record["notification"]["priority"].as_str().unwrap_or("?");
        for target in record["targets"].as_array().into_iter().flatten() {
            let took = match (target["settledAt"].as_i64(), target["createdAt"].as_i64()) {
                (Some(settled), Some(created)) => (settled - created).to_string(),
                _ => "-".to_owned(),
            };
            println!(
                "{:<width$} {:<10} {:<18} {:<9} {:<14} {:>8} {:>9}  {}",
                id,
                priority,
                target["integrationId"].as_str().unwrap_or("?"),
                target["route"].as_str().unwrap_or("?"),
                target["state"].as_str().unwrap_or("?"),
                target["attempts"],
                took,
                target["receipt"]
                    .as_str()
                    .or(target["lastError"].as_str())
                    .unwrap_or("")
            );
        }
    }
}

/// Counts each target chain (a primary and the failover that took it over) as one delivery.
fn count_undelivered(records: &[Value]) -> (usize, usize) {
    let mut total = 0;
    let mut undelivered = 0;
    for record in records {
        let targets = record["targets"].as_array().cloned().unwrap_or_default();
        for primary in targets.iter().filter(|t| t["route"] == "primary") {
            total += 1;
            let mut current = primary.clone();
            loop {
                if current["state"] == "delivered" {
                    break;
                }
                match targets
                    .iter()
                    .find(|t| t["failoverOf"] == current["deliveryId"])
                {
                    Some(next) => current = next.clone(),
                    None => {
                        undelivered += 1;
                        break;
                    }
                }
            }
        }
    }
    (total, undelivered)
}

// === herald demo --all ===

/// How one vendor's notification went in `herald demo --all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorRow {
    pub kind: &'static str,
    /// The delivery's state (`delivered`, or what it became instead).
    pub state: String,
    pub attempts: u64,
    pub receipt: String,
}

/// Routes a sample notification to every registered vendor through its simulator
/// (`POST /v1/routings`, one routing per vendor) and prints one row per vendor. Succeeds only if
/// every vendor delivered.
pub async fn run_every_vendor() -> Result<Vec<VendorRow>, DemoError> {
    let setup = |e: &dyn std::fmt::Display| DemoError::Setup(e.to_string());
    let data = tempfile::tempdir().map_err(|e| setup(&e))?;
    let secrets = data.path().join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| setup(&e))?;
    let mut simulators: Vec<(&'static str, Box<dyn RunningSimulator>)> = Vec::new();
    let mut integrations = String::new();
    for vendor in vendors::all() {
        let kind = vendor.kind();
        let simulation = vendor
            .simulation()
            .ok_or_else(|| DemoError::Setup(format!("{kind} ships no simulator")))?;
        let simulator = simulation
            .start(any_local_port())
            .await
            .map_err(|e| setup(&e))?;
        let credential = secrets.join(kind);
        std::fs::write(&credential, simulator.credential()).map_err(|e| setup(&e))?;
        let settings = simulator.settings(&format!("{{ file = \"{}\" }}", credential.display()));
        integrations.push_str(&format!(
            "[[integrations]]\nid = \"{kind}\"\norganization = \"every-vendor\"\nkind = \"{kind}\"\nsettings = {{ {settings} }}\n\n"
        ));
        simulators.push((kind, simulator));
    }
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[security]\nallow_private_destinations = true\n\n[[organizations]]\nid = \"every-vendor\"\n\n{integrations}",
        data.path().join("store").display()
    );
    let config = config::parse(&text, "demo --all config").map_err(|e| setup(&e))?;
    let store = crate::open_store(&config).await.map_err(|e| setup(&e))?;
    let (key, _) = crate::api::create_api_key(
        &*store,
        "every-vendor",
        "demo",
        Role::Sender,
        &Actor::operator(),
    )
    .await
    .map_err(|e| setup(&e))?;
    drop(store);
    let listener = tokio::net::TcpListener::bind(any_local_port())
        .await
        .map_err(|e| setup(&e))?;
    let base = format!("http://{}", listener.local_addr().map_err(|e| setup(&e))?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::run(config, listener, async move {
        let _ = stopped.await;
    }));

    let width = simulators
        .iter()
        .map(|(kind, _)| kind.len())
        .chain(["vendor".len()])
        .max()
        .unwrap_or_default();
    println!(
        "{:<width$} {:<24} {:<14} {:>8} {:>6}  receipt",
        "vendor", "integrationType", "state", "attempts", "ms"
    );
    let client = reqwest::Client::new();
    let mut rows = Vec::with_capacity(simulators.len());
    for (kind, simulator) in &simulators {
        let routing = json!({
            "routingId": format!("every-vendor-{kind}"),
            "sourceNotification": simulator.sample_notification(&format!("every-vendor-{kind}")),
            "targetSystems": [{"systemId": kind}],
        });
        let answer: Value = client
            .post(format!("{base}/v1/routings?wait=30s"))
            .bearer_auth(&key)
            .json(&routing)
            .send()
            .await
            .map_err(|e| DemoError::Request(e.to_string()))?
            .json()
            .await
            .map_err(|e| DemoError::Request(e.to_string()))?;
        let delivery = &answer["systemResults"][0]["deliveryResults"][0];
        let row = VendorRow {
            kind,
            state: delivery["state"]
                .as_str()
                .unwrap_or("not routed")
                .to_owned(),
            attempts: delivery["attempts"].as_u64().unwrap_or(0),
            receipt: delivery["receipt"]
                .as_str()
                .or(delivery["lastError"].as_str())
                .or(answer["error"]["message"].as_str())
                .unwrap_or_default()
                .to_owned(),
        };
        let integration_type = vendors::find(kind)
            .map(|vendor| vendor.describe().integration_type.as_str())
            .unwrap_or_default();
        println!(
            "{:<width$} {:<24} {:<14} {:>8} {:>6}  {}",
            row.kind,
            integration_type,
            row.state,
            row.attempts,
            answer["processingTime"].as_u64().unwrap_or(0),
            row.receipt
        );
        rows.push(row);
    }
    let _ = stop.send(());
    let _ = daemon.await;
    let undelivered = rows.iter().filter(|row| row.state != "delivered").count();
    if undelivered > 0 {
        return Err(DemoError::Undelivered(undelivered, rows.len()));
    }
    println!(
        "\nevery vendor delivered ({} of {})",
        rows.len(),
        rows.len()
    );
    Ok(rows)
}
