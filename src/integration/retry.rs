//! When to try a failed delivery again: exponential backoff with full jitter, bounded by a number
//! of attempts and an age, with the vendor's `Retry-After` honoured (clamped to `max_retry_after`
//! so one odd header cannot park a delivery for days).

use std::time::Duration;

use crate::config::RetryConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    config: RetryConfig,
}

impl RetryPolicy {
    pub fn new(config: RetryConfig) -> Self {
        Self { config }
    }

    /// Decides after `attempts` failed attempts of a delivery that is `age` old. `jitter` is a
    /// number in [0, 1) (random in production, fixed in tests).
    pub fn decide(
        &self,
        attempts: u32,
        age: Duration,
        vendor_wait: Option<Duration>,
        jitter: f64,
    ) -> RetryDecision {
        if attempts >= self.config.max_attempts {
            return RetryDecision::GiveUp;
        }
        let doublings = attempts.saturating_sub(1).min(30);
        let ceiling = self
            .config
            .initial
            .saturating_mul(1 << doublings)
            .min(self.config.max_delay);
        let backoff = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        let delay = match vendor_wait {
            Some(wait) => backoff.max(wait.min(self.config.max_retry_after)),
            None => backoff,
        };
        if age + delay > self.config.max_age {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAfter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(RetryConfig {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_age: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(60),
        })
    }

    #[test]
    fn backoff_doubles_under_full_jitter_up_to_the_cap() {
        let p = policy();
        assert_eq!(
            p.decide(1, Duration::ZERO, None, 0.999_999),
            RetryDecision::RetryAfter(Duration::from_secs(1).mul_f64(0.999_999))
        );
        assert_eq!(
            p.decide(3, Duration::ZERO, None, 0.5),
            RetryDecision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            p.decide(4, Duration::ZERO, None, 1.0),
            RetryDecision::RetryAfter(Duration::from_secs(8))
        );
        assert_eq!(
            p.decide(1, Duration::ZERO, None, 0.0),
            RetryDecision::RetryAfter(Duration::ZERO)
        );
    }

    #[test]
    fn stops_at_max_attempts_and_max_age() {
        let p = policy();
        assert_eq!(
            p.decide(5, Duration::ZERO, None, 0.5),
            RetryDecision::GiveUp
        );
        assert_eq!(
            p.decide(
                2,
                Duration::from_secs(3599),
                Some(Duration::from_secs(5)),
                0.5
            ),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn retry_after_is_a_floor_clamped_to_its_maximum() {
        let p = policy();
        assert_eq!(
            p.decide(1, Duration::ZERO, Some(Duration::from_secs(7)), 0.1),
            RetryDecision::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            p.decide(1, Duration::ZERO, Some(Duration::from_secs(86_400)), 0.1),
            RetryDecision::RetryAfter(Duration::from_secs(60))
        );
    }

    #[test]
    fn any_jitter_stays_within_the_ceiling() {
        let p = policy();
        for attempts in 1..5 {
            for step in 0..200 {
                let jitter = f64::from(step) / 200.0;
                let RetryDecision::RetryAfter(delay) =
                    p.decide(attempts, Duration::ZERO, None, jitter)
                else {
                    panic!()
                };
                assert!(
                    delay <= Duration::from_secs(1 << (attempts - 1)).min(Duration::from_secs(10))
                );
            }
        }
    }
}
