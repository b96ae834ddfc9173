//! The integration's circuit breaker: closed until `failure_threshold` consecutive vendor
//! failures, then open for `open_for` (no calls reach the vendor), then half-open with exactly one
//! probe in flight; the probe's outcome closes or re-opens it.
//!
//! Only vendor failures (5xx, timeouts, connection errors) count: a validation error or a 429 is
//! the vendor working as documented. Driven by the `now` the caller passes.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// The value of the `herald_circuit_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Phase::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// Admits one call, or says how long until the breaker could admit one.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        match self.phase {
            Phase::Closed { .. } => Ok(()),
            Phase::Open { until } if now < until => Err(until - now),
            Phase::Open { .. }
            | Phase::HalfOpen {
                probe_in_flight: false,
            } => {
                self.phase = Phase::HalfOpen {
                    probe_in_flight: true,
                };
                Ok(())
            }
            // The probe's outcome decides; check again a little later.
            Phase::HalfOpen {
                probe_in_flight: true,
            } => Err(self.config.open_for.min(Duration::from_millis(250))),
        }
    }

    pub fn record_success(&mut self) {
        self.phase = Phase::Closed {
            consecutive_failures: 0,
        };
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.phase = match self.phase {
            Phase::Closed {
                consecutive_failures,
            } if consecutive_failures + 1 < self.config.failure_threshold => Phase::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            _ => Phase::Open {
                until: now + self.config.open_for,
            },
        };
    }

    /// Releases a half-open probe whose call ended without telling us about the vendor's health
    /// (a validation error or a rate limit), so another probe may go.
    pub fn record_neutral(&mut self) {
        if let Phase::HalfOpen { .. } = self.phase {
            self.phase = Phase::HalfOpen {
                probe_in_flight: false,
            };
        }
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        match self.phase {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { until } if now < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let now = Instant::now();
        let mut breaker = breaker();
        breaker.record_failure(now);
        breaker.record_failure(now);
        breaker.record_success();
        breaker.record_failure(now);
        breaker.record_failure(now);
        assert_eq!(
            breaker.state(now),
            CircuitState::Closed,
            "a success resets the count"
        );
        breaker.record_failure(now);
        assert_eq!(breaker.state(now), CircuitState::Open);
        assert_eq!(
            breaker.admit(now + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let now = Instant::now();
        let mut breaker = breaker();
        (0..3).for_each(|_| breaker.record_failure(now));
        let later = now + Duration::from_secs(10);
        assert_eq!(breaker.state(later), CircuitState::HalfOpen);
        assert!(breaker.admit(later).is_ok(), "the probe");
        assert!(
            breaker.admit(later).is_err(),
            "no second call while the probe is out"
        );
        breaker.record_failure(later);
        assert_eq!(
            breaker.state(later),
            CircuitState::Open,
            "a failed probe re-opens"
        );
        let again = later + Duration::from_secs(10);
        assert!(breaker.admit(again).is_ok());
        breaker.record_success();
        assert_eq!(breaker.state(again), CircuitState::Closed);
        assert!(breaker.admit(again).is_ok() && breaker.admit(again).is_ok());
    }

    #[test]
    fn a_neutral_probe_outcome_allows_another_probe() {
        let now = Instant::now();
        let mut breaker = breaker();
        (0..3).for_each(|_| breaker.record_failure(now));
        let later = now + Duration::from_secs(10);
        breaker.admit(later).unwrap();
        breaker.record_neutral();
        assert!(breaker.admit(later).is_ok());
    }
}
