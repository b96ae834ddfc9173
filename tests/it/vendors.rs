//! The conformance suite: every vendor in `vendors::all()`, against its own simulator, over real
//! HTTP. A vendor gets all of it by being registered: delivered end to end with as many requests
//! as the limiter was charged; a 5xx retried; a refused credential reloaded and tried once more;
//! a 429's `Retry-After` honoured; a validation error dead-lettered with the vendor's own message;
//! a vendor that stays down opens the circuit, which closes once it is back; and a burst at the
//! vendor's default rate stays inside what the vendor publishes (no 429). The simulators check
//! every request against the vendor's contract, so a delivery is also a contract check.

use std::time::{Duration, Instant};

use herald::connectors::{ConnectorKit, OutboundClient};
use herald::sandbox::any_local_port;
use herald::vendors::{self, ConnectorTarget, RunningSimulator, Vendor};
use serde_json::Value;

use crate::harness::{all_delivered, dead_lettered, eventually, full_config, route, Harness};

/// Retry fast, open the circuit after three failures, probe every second.
const RESILIENCE: &str = "breaker = { failure_threshold = 3, open_for = \"1s\" }\n\
    retry = { max_attempts = 100, initial = \"20ms\", max_delay = \"100ms\" }\n\
    rate_limit = { per_second = 100, burst = 50 }";

#[tokio::test]
async fn every_registered_vendor_conforms() {
    // The vendors are checked side by side; a failure names its vendor.
    let checks: Vec<_> = vendors::all()
        .iter()
        .map(|&vendor| tokio::spawn(conforms(vendor)))
        .collect();
    for check in checks {
        check.await.unwrap();
    }
}

#[tokio::test]
async fn every_registered_vendors_default_rate_stays_inside_what_the_vendor_publishes() {
    let checks: Vec<_> = vendors::all()
        .iter()
        .map(|&vendor| tokio::spawn(keeps_to_its_default_rate(vendor)))
        .collect();
    for check in checks {
        check.await.unwrap();
    }
}

/// The vendor's simulator, started, and the configuration of one integration (`vendor`, in
/// organization `studio`, routed everything) that reaches it with `overrides`.
struct VendorUnderTest {
    simulator: Box<dyn RunningSimulator>,
    body: String,
    _credential: tempfile::NamedTempFile,
}

impl VendorUnderTest {
    async fn start(vendor: &'static dyn Vendor, overrides: &str) -> Self {
        let kind = vendor.kind();
        let simulator = vendor
            .simulation()
            .unwrap_or_else(|| panic!("{kind} ships no simulator"))
            .start(any_local_port())
            .await
            .unwrap();
        let credential = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(credential.path(), simulator.credential()).unwrap();
        let settings =
            simulator.settings(&format!("{{ file = \"{}\" }}", credential.path().display()));
        let body = format!(
            "[[organizations]]\nid = \"studio\"\n[[integrations]]\nid = \"vendor\"\norganization = \"studio\"\n\
             kind = \"{kind}\"\nsettings = {{ {settings} }}\n{overrides}\n{}",
            route("studio", &["vendor"], "")
        );
        Self {
            simulator,
            body,
            _credential: credential,
        }
    }
}

async fn conforms(vendor: &'static dyn Vendor) {
    let kind = vendor.kind();
    let VendorUnderTest {
        simulator,
        body,
        _credential,
    } = VendorUnderTest::start(vendor, RESILIENCE).await;
    let herald = Harness::start(&body, "studio").await;
    let vendor_check = VendorCheck {
        kind,
        herald: &herald,
        simulator: &*simulator,
    };

    // Delivered end to end, with exactly the requests the limiter was charged for.
    let sample = simulator.sample_notification("first");
    let charged = first_delivery_charge(&body, &sample);
    let record = vendor_check.send(sample, all_delivered).await;
    assert_eq!(record["targets"][0]["attempts"], 1, "{kind}: {record}");
    assert_eq!(
        simulator.recorder().len(),
        charged,
        "{kind}: the simulator recorded {} requests, the limiter was charged {charged}",
        simulator.recorder().len()
    );

    // A 5xx is retried.
    simulator.faults().script_next(simulator.outage());
    let record = vendor_check.send_sample("outage", all_delivered).await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{kind}: {record}");

    // A refused credential is reloaded and tried once more.
    simulator
        .faults()
        .script_next(simulator.credential_refused());
    let record = vendor_check.send_sample("refused", all_delivered).await;
    assert_eq!(record["targets"][0]["attempts"], 2, "{kind}: {record}");

    // A rate limit's wait (a 429's Retry-After of one second; Salesforce's 403, whose wait is
    // Herald's) passes before the next request.
    let limit = simulator.rate_limited();
    let limit_status = limit.status;
    simulator.faults().script_next(limit);
    vendor_check.send_sample("limited", all_delivered).await;
    let requests = simulator.recorder().all();
    let limited = requests
        .iter()
        .position(|request| request.status == limit_status)
        .unwrap_or_else(|| panic!("{kind}: the {limit_status} was not recorded"));
    let waited = requests[limited + 1]
        .at
        .duration_since(requests[limited].at);
    assert!(
        waited >= Duration::from_millis(990),
        "{kind}: the next request came {waited:?} after the 429"
    );

    // A validation error is dead-lettered at once, with the vendor's own message.
    let (refusal, phrase) = simulator.validation_error();
    simulator.faults().script_next(refusal);
    let record = vendor_check.send_sample("invalid", dead_lettered).await;
    let target = &record["targets"][0];
    assert_eq!(target["attempts"], 1, "{kind}: {record}");
    let error = target["lastError"].as_str().unwrap_or_default();
    assert!(error.contains(phrase), "{kind}: {error:?} lost {phrase:?}");

    // A vendor that stays down opens the circuit; back, everything is delivered and it closes.
    let outage = simulator.outage();
    simulator.faults().go_down(outage.status, outage.body);
    let before = simulator.recorder().len();
    for n in 0..4 {
        vendor_check.post(&format!("down-{n}")).await;
    }
    eventually(Duration::from_secs(10), "the vendor to be tried", || {
        simulator.recorder().len() >= before + 3
    })
    .await;
    vendor_check.wait_for_circuit("open").await;
    simulator.faults().come_back();
    for n in 0..4 {
        herald
            .wait_for_notification(&format!("down-{n}"), Duration::from_secs(15), all_delivered)
            .await;
    }
    vendor_check.wait_for_circuit("closed").await;
}

/// Issue 6's item 14 for every vendor: with no `rate_limit` in the configuration, a burst long
/// enough to drain the default bucket (and to span the vendor's published window, where it has
/// one) draws no 429 from a simulator holding to the vendor's published limits, and the requests
/// that reached the vendor never outran the default bucket.
async fn keeps_to_its_default_rate(vendor: &'static dyn Vendor) {
    let kind = vendor.kind();
    let rate = &vendor.describe().default_rate;
    let VendorUnderTest {
        simulator,
        body,
        _credential,
    } = VendorUnderTest::start(vendor, "").await;
    simulator.hold_to_published_limits();
    let herald = Harness::start(&body, "studio").await;

    // Three seconds past the bucket, and the published window and its bucket over again.
    let burst = f64::from(rate.burst);
    let wanted = (burst + 3.0 * rate.per_second).max(
        rate.window
            .as_ref()
            .map_or(0.0, |window| f64::from(window.requests) + burst),
    ) as usize;
    let charge = first_delivery_charge(&body, &simulator.sample_notification("charge"));
    let mut sent = 0;
    while simulator.recorder().len() < wanted {
        let wave: Vec<Value> = (sent..sent
            + (wanted - simulator.recorder().len()).div_ceil(charge))
            .map(|n| simulator.sample_notification(&format!("burst-{n}")))
            .collect();
        let (status, answer) = herald
            .post(
                "/v1/notifications/batch",
                &serde_json::json!({"notifications": wave}),
            )
            .await;
        assert_eq!(status, 202, "{kind}: {answer}");
        let patience = Duration::from_secs_f64(wanted as f64 / rate.per_second + 30.0);
        for n in sent..sent + wave.len() {
            herald
                .wait_for_notification(&format!("burst-{n}"), patience, all_delivered)
                .await;
        }
        sent += wave.len();
    }

    let requests = simulator.recorder().all();
    let limited = requests
        .iter()
        .filter(|request| request.status == 429)
        .count();
    assert_eq!(
        limited,
        0,
        "{kind}: {limited} of {} requests drew a 429",
        requests.len()
    );
    // Any stretch of requests fits the default bucket (one more for the two clocks' jitter),
    for (first, early) in requests.iter().enumerate() {
        for (last, late) in requests.iter().enumerate().skip(first) {
            let span = late.at.duration_since(early.at).as_secs_f64();
            let allowed = burst + rate.per_second * span + 1.0;
            assert!(
                (last - first + 1) as f64 <= allowed,
                "{kind}: {} requests in {span:.3} s outran the default bucket ({allowed:.1})",
                last - first + 1
            );
        }
    }
    // and any stretch of the published window holds no more than the vendor allows.
    if let Some(window) = &rate.window {
        let period = Duration::from_secs(window.seconds);
        for (first, early) in requests.iter().enumerate() {
            let inside = requests[first..]
                .iter()
                .take_while(|late| late.at.duration_since(early.at) < period)
                .count();
            assert!(
                inside <= window.requests as usize,
                "{kind}: {inside} requests inside {period:?}, published limit {}",
                window.requests
            );
        }
    }
}

/// What the limiter is charged for a vendor's first delivery of `notification`: the connector's
/// own count, from a connector built as the daemon builds it.
fn first_delivery_charge(body: &str, notification: &Value) -> usize {
    let data = tempfile::tempdir().unwrap();
    let config = herald::config::parse(&full_config(data.path(), body), "conformance").unwrap();
    let integration = config.integration("vendor").unwrap();
    let kit = ConnectorKit {
        client: OutboundClient::new(true).unwrap(),
        vault: None,
        installation_id: "conformance".into(),
        store: std::sync::Arc::new(herald::store::SqliteStore::open(data.path()).unwrap()),
    };
    let target = ConnectorTarget {
        integration_id: &integration.id,
        timeout: integration.timeout,
    };
    let connector = integration.settings.build(&target, &kit).unwrap();
    let notification = serde_json::from_value(notification.clone()).unwrap();
    connector.requests_per_delivery(&notification) as usize
}

struct VendorCheck<'a> {
    kind: &'static str,
    herald: &'a Harness,
    simulator: &'a dyn RunningSimulator,
}

impl VendorCheck<'_> {
    async fn post(&self, notification_id: &str) {
        let notification = self.simulator.sample_notification(notification_id);
        let (status, answer) = self.herald.post("/v1/notifications", &notification).await;
        assert_eq!(status, 202, "{}: {answer}", self.kind);
    }

    async fn send_sample(&self, notification_id: &str, settled: fn(&Value) -> bool) -> Value {
        self.send(self.simulator.sample_notification(notification_id), settled)
            .await
    }

    async fn send(&self, notification: Value, settled: fn(&Value) -> bool) -> Value {
        let id = notification["notificationId"].as_str().unwrap().to_owned();
        let (status, answer) = self.herald.post("/v1/notifications", &notification).await;
        assert_eq!(status, 202, "{}: {answer}", self.kind);
        self.herald
            .wait_for_notification(&id, Duration::from_secs(15), settled)
            .await
    }

    async fn wait_for_circuit(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, health) = self.herald.get("/v1/integrations/vendor/health").await;
            if health["circuitState"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the circuit never became {state}: {health}",
                self.kind
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
