//! An integration's Prometheus handles, registered once when the integration is created so the
//! delivery path only increments them (no label hashing or allocation per delivery).

use metrics::{Counter, Histogram};

use crate::wedsync::Lane;

/// What happened to a delivery, as counted by `herald_deliveries_total{outcome}`.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Delivered,
    Retrying,
    DeadLettered,
    FailedOver,
}

const OUTCOMES: [(Outcome, &str); 4] = [
    (Outcome::Delivered, "delivered"),
    (Outcome::Retrying, "retrying"),
    (Outcome::DeadLettered, "dead_lettered"),
    (Outcome::FailedOver, "failed_over"),
];

const LANES: [(Lane, &str); 2] = [(Lane::Emergency, "emergency"), (Lane::Normal, "normal")];

pub struct IntegrationMetrics {
    integration: String,
    /// Indexed by lane, then outcome.
    deliveries: Vec<Vec<Counter>>,
    /// Indexed by lane.
    intake_to_delivery: Vec<Histogram>,
    attempt_duration: Histogram,
    vendor_requests: Counter,
}

impl IntegrationMetrics {
    pub fn new(integration: &str, vendor: &'static str) -> Self {
        let deliveries = LANES
            .iter()
            .map(|(_, lane)| {
                OUTCOMES
                    .iter()
                    .map(|(_, outcome)| {
                        metrics::counter!("herald_deliveries_total", "integration" => integration.to_owned(), "vendor" => vendor, "lane" => *lane, "outcome" => *outcome)
                    })
                    .collect()
            })
            .collect();
        let intake_to_delivery = LANES
            .iter()
            .map(|(_, lane)| metrics::histogram!("herald_intake_to_delivery_seconds", "integration" => integration.to_owned(), "lane" => *lane))
            .collect();
        Self {
            integration: integration.to_owned(),
            deliveries,
            intake_to_delivery,
            attempt_duration: metrics::histogram!("herald_attempt_duration_seconds", "integration" => integration.to_owned(), "vendor" => vendor),
            vendor_requests: metrics::counter!("herald_vendor_requests_total", "integration" => integration.to_owned(), "vendor" => vendor),
        }
    }

    pub fn count(&self, lane: Lane, outcome: Outcome) {
        self.deliveries[lane_index(lane)][outcome as usize].increment(1);
    }

    pub fn record_intake_to_delivery(&self, lane: Lane, seconds: f64) {
        self.intake_to_delivery[lane_index(lane)].record(seconds);
    }

    /// The vendor requests an attempt was charged for (what the limiter took), so a vendor that
    /// counts a daily allowance without reporting it can be watched against Herald's own spend.
    pub fn count_vendor_requests(&self, requests: u32) {
        self.vendor_requests.increment(u64::from(requests));
    }

    pub fn record_attempt_duration(&self, seconds: f64) {
        self.attempt_duration.record(seconds);
    }

    /// Failures are the uncommon path: registered when they happen, by error kind.
    pub fn count_failure(&self, kind: &'static str) {
        metrics::counter!("herald_attempt_failures_total", "integration" => self.integration.clone(), "kind" => kind).increment(1);
    }
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Emergency => 0,
        Lane::Normal => 1,
    }
}
