//! The conformance suite: every vendor in `vendors::all()`, against its own simulator, over real
//! HTTP. A vendor gets all of it by being registered: delivered end to end with as many requests
//! as the limiter was charged; a 5xx retried; a refused credential reloaded and tried once more;
//! a 429's `Retry-After` honoured; a validation error dead-lettered with the vendor's own message;
//! a vendor that stays down opens the circuit, which closes once it is back. The simulators check
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

async fn conforms(vendor: &'static dyn Vendor) {
    let kind = vendor.kind();
    let simulator = vendor
        .simulation()
        .unwrap_or_else(|| panic!("{kind} ships no simulator"))
        .start(any_local_port())
        .await
        .unwrap();
    let credential = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(credential.path(), simulator.credential()).unwrap();
    let settings = simulator.settings(&format!("{{ file = \"{}\" }}", credential.path().display()));
    let body = format!(
        "[[organizations]]\nid = \"studio\"\n[[integrations]]\nid = \"vendor\"\norganization = \"studio\"\n\
         kind = \"{kind}\"\nsettings = {{ {settings} }}\n{RESILIENCE}\n{}",
        route("studio", &["vendor"], "")
    );
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

    // A 429's Retry-After (one second) passes before the next request.
    simulator.faults().script_next(simulator.rate_limited());
    vendor_check.send_sample("limited", all_delivered).await;
    let requests = simulator.recorder().all();
    let limited = requests
        .iter()
        .position(|request| request.status == 429)
        .unwrap_or_else(|| panic!("{kind}: the 429 was not recorded"));
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
