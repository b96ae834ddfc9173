//! Logging (tracing) and the Prometheus recorder.
//!
//! The metrics recorder is process-global, so it is installed once and shared by every daemon
//! in the process (the test suite runs several). Metric names follow
//! `herald_<what>_<unit>{integration, vendor, lane, outcome}`; labels only take values from
//! bounded sets (configured integration ids, never notification ids).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from sub-millisecond intake to slow vendors.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the log subscriber; `filter` is an env-filter directive such as `info,herald=debug`.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // Colours only for a person at a terminal; a file or a log collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .try_init();
}

/// Returns the process's Prometheus handle, installing the recorder on first use. Must be called
/// inside a tokio runtime (it starts the histogram upkeep task).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe_metrics();
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// Gives every metric family its HELP text (Prometheus's `promtool check metrics` wants one),
/// and registers the label-free-of-ids series at zero, so they are scraped from the start
/// rather than appearing with the first event.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "herald_intake_total",
        "Notifications taken in, by lane and outcome (accepted, duplicate)"
    );
    describe_counter!(
        "herald_unrouted_total",
        "Notifications accepted that matched no route and go nowhere, by lane"
    );
    describe_counter!(
        "herald_deliveries_total",
        "Deliveries settled, by integration, vendor, lane and outcome"
    );
    describe_counter!(
        "herald_attempt_failures_total",
        "Failed delivery attempts, by integration, vendor and error kind"
    );
    describe_counter!(
        "herald_vendor_requests_total",
        "Vendor requests delivery attempts were charged for, by integration and vendor (what the rate limiter took)"
    );
    describe_counter!(
        "herald_inbound_total",
        "Inbound vendor calls (interactivity, REST hooks), by integration and outcome"
    );
    describe_gauge!(
        "herald_circuit_state",
        "Circuit breaker state per integration: 0 closed, 1 half-open, 2 open"
    );
    describe_gauge!(
        "herald_in_flight",
        "Delivery attempts in progress per integration"
    );
    describe_gauge!(
        "herald_integration_failed",
        "1 when an integration's actor was given up on after crashing past its restart limit"
    );
    describe_gauge!(
        "herald_vendor_quota_limit",
        "A vendor's allowance for an integration over a window the vendor reports (window: daily)"
    );
    describe_gauge!(
        "herald_vendor_quota_remaining",
        "What is left of a vendor's allowance for an integration, as the vendor last reported it"
    );
    describe_gauge!(
        "herald_mailbox_depth",
        "Deliveries waiting in an integration's mailbox"
    );
    describe_histogram!(
        "herald_attempt_duration_seconds",
        Unit::Seconds,
        "Duration of one delivery attempt against the vendor"
    );
    describe_histogram!(
        "herald_intake_to_delivery_seconds",
        Unit::Seconds,
        "Time from intake to delivery, by integration and lane"
    );
    for lane in ["emergency", "normal"] {
        for outcome in ["accepted", "duplicate"] {
            metrics::counter!("herald_intake_total", "lane" => lane, "outcome" => outcome)
                .increment(0);
        }
        metrics::counter!("herald_unrouted_total", "lane" => lane).increment(0);
    }
}
