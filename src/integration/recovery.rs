//! What a failed attempt leads to: tried again here, the credential reloaded and tried once more,
//! handed to a backup integration, or dead-lettered.
//!
//! A pure decision over the job (its attempts, lane, whether it is already a backup's, its
//! routing's error strategy), the connector's classification of the failure, and the
//! integration's retry and failover policy. It does no I/O and takes the jitter as a number, so
//! every path is tested here; the actor carries the decision out.

use std::time::Duration;

use super::mailbox::Job;
use super::retry::{RetryDecision, RetryPolicy};
use crate::config::FailoverConfig;
use crate::connectors::{ConnectorError, Disposition};
use crate::wedsync::{ErrorStrategy, Lane};

/// What becomes of a delivery after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Try again here after this long.
    RetryAfter(Duration),
    /// Reload the credential, then try again at once (once per delivery).
    RefreshCredentials,
    /// The delivery ends here.
    End(Ending),
}

/// How a delivery that cannot succeed here ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Handed to a backup integration.
    FailOver { reason: String },
    /// Nothing more happens without an operator (a replay).
    DeadLetter { reason: String },
}

/// An integration's policy for failed attempts.
pub struct RecoveryPolicy<'a> {
    pub retry: &'a RetryPolicy,
    pub failover: &'a FailoverConfig,
}

impl RecoveryPolicy<'_> {
    /// Decides after a failed attempt of `job` (its `attempts` already count it), which is `age`
    /// old. `jitter` is in [0, 1): random in production.
    pub fn after_failure(
        &self,
        job: &Job,
        error: &ConnectorError,
        age: Duration,
        jitter: f64,
    ) -> Recovery {
        match error.disposition() {
            // The routing asked for no retries: the first failure ends the delivery.
            Disposition::Retry { .. } if !job.coordination.on_failure.retries() => {
                Recovery::End(Ending::DeadLetter {
                    reason: format!("failed, and the routing does not retry: {error}"),
                })
            }
            Disposition::Retry { after } => {
                // An emergency cannot wait for the circuit to open: after this many failed
                // attempts it moves to the backup at once.
                let emergency_moves_on = job.lane() == Lane::Emergency
                    && self.may_fail_over(job)
                    && self
                        .failover
                        .emergency_after_attempts
                        .is_some_and(|after| job.attempts >= after);
                if emergency_moves_on {
                    return Recovery::End(Ending::FailOver {
                        reason: format!("an emergency failed {} attempt(s): {error}", job.attempts),
                    });
                }
                match self.retry.decide(job.attempts, age, after, jitter) {
                    RetryDecision::RetryAfter(delay) => Recovery::RetryAfter(delay),
                    RetryDecision::GiveUp => Recovery::End(self.give_up(
                        job,
                        format!("gave up after {} attempts: {error}", job.attempts),
                    )),
                }
            }
            Disposition::RefreshCredentials if !job.credentials_refreshed => {
                Recovery::RefreshCredentials
            }
            Disposition::RefreshCredentials | Disposition::DeadLetter => {
                Recovery::End(self.give_up(job, error.to_string()))
            }
        }
    }

    /// Ends a delivery that cannot succeed here: a backup takes it if one may, otherwise it is
    /// dead-lettered.
    pub fn give_up(&self, job: &Job, reason: String) -> Ending {
        if self.may_fail_over(job) {
            Ending::FailOver { reason }
        } else {
            Ending::DeadLetter { reason }
        }
    }

    /// Whether a backup integration may take this delivery: there is one, the delivery is not
    /// already a backup's, and its routing's error strategy allows failover.
    pub fn may_fail_over(&self, job: &Job) -> bool {
        !job.is_failover
            && !self.failover.targets.is_empty()
            && job.coordination.on_failure == ErrorStrategy::Failover
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RetryConfig;
    use crate::wedsync::{Coordination, WeddingNotification};

    fn retry() -> RetryPolicy {
        RetryPolicy::new(RetryConfig {
            max_attempts: 3,
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(300),
        })
    }

    fn failover(targets: &[&str], emergency_after_attempts: Option<u32>) -> FailoverConfig {
        FailoverConfig {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            on_circuit_open: false,
            emergency_after_attempts,
        }
    }

    fn job(attempts: u32) -> Job {
        let notification: WeddingNotification = serde_json::from_value(serde_json::json!({
            "notificationId": "n", "type": "t", "priority": "normal", "title": "t", "message": "m"
        }))
        .unwrap();
        Job {
            delivery_id: 1,
            notification: Arc::new(notification),
            attempts,
            created_at: 0,
            emergency: false,
            is_failover: false,
            credentials_refreshed: false,
            coordination: Coordination::default(),
        }
    }

    fn unavailable() -> ConnectorError {
        ConnectorError::Unavailable("503".into())
    }

    fn decide(failover: &FailoverConfig, job: &Job, error: &ConnectorError) -> Recovery {
        let retry = retry();
        RecoveryPolicy {
            retry: &retry,
            failover,
        }
        .after_failure(job, error, Duration::ZERO, 0.5)
    }

    #[test]
    fn a_vendor_failure_is_retried_with_backoff_until_the_attempts_run_out() {
        let none = failover(&[], None);
        assert_eq!(
            decide(&none, &job(1), &unavailable()),
            Recovery::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(
            decide(&none, &job(2), &unavailable()),
            Recovery::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            decide(&none, &job(3), &unavailable()),
            Recovery::End(Ending::DeadLetter {
                reason: "gave up after 3 attempts: vendor unavailable: 503".into()
            })
        );
        // With a backup, giving up here hands it over instead.
        assert_eq!(
            decide(&failover(&["pager"], None), &job(3), &unavailable()),
            Recovery::End(Ending::FailOver {
                reason: "gave up after 3 attempts: vendor unavailable: 503".into()
            })
        );
    }

    #[test]
    fn the_vendors_wait_is_honoured() {
        let limited = ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            decide(&failover(&[], None), &job(1), &limited),
            Recovery::RetryAfter(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_refused_credential_is_reloaded_once() {
        let refused = ConnectorError::Unauthorized("401".into());
        let none = failover(&[], None);
        assert_eq!(
            decide(&none, &job(1), &refused),
            Recovery::RefreshCredentials
        );
        let mut refreshed = job(2);
        refreshed.credentials_refreshed = true;
        assert_eq!(
            decide(&none, &refreshed, &refused),
            Recovery::End(Ending::DeadLetter {
                reason: "credentials refused: 401".into()
            })
        );
    }

    #[test]
    fn a_rejection_is_not_retried() {
        let rejected = ConnectorError::Rejected {
            code: "VALIDATION_ERROR".into(),
            message: "Property values were not valid".into(),
        };
        assert_eq!(
            decide(&failover(&[], None), &job(1), &rejected),
            Recovery::End(Ending::DeadLetter {
                reason: "request rejected: VALIDATION_ERROR: Property values were not valid".into()
            })
        );
    }

    #[test]
    fn an_emergency_moves_to_the_backup_after_its_attempts() {
        let quick = failover(&["pager"], Some(2));
        let mut emergency = job(1);
        emergency.emergency = true;
        assert_eq!(
            decide(&quick, &emergency, &unavailable()),
            Recovery::RetryAfter(Duration::from_millis(500))
        );
        emergency.attempts = 2;
        assert_eq!(
            decide(&quick, &emergency, &unavailable()),
            Recovery::End(Ending::FailOver {
                reason: "an emergency failed 2 attempt(s): vendor unavailable: 503".into()
            })
        );
        // A normal notification waits its retries out.
        assert_eq!(
            decide(&quick, &job(2), &unavailable()),
            Recovery::RetryAfter(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_backups_delivery_is_never_handed_on() {
        let mut handed_over = job(3);
        handed_over.is_failover = true;
        handed_over.emergency = true;
        assert_eq!(
            decide(&failover(&["pager"], Some(1)), &handed_over, &unavailable()),
            Recovery::End(Ending::DeadLetter {
                reason: "gave up after 3 attempts: vendor unavailable: 503".into()
            })
        );
    }

    #[test]
    fn the_routings_error_strategy_decides_retries_and_failover() {
        let backup = failover(&["pager"], None);
        let with = |on_failure: ErrorStrategy, attempts: u32| {
            let mut job = job(attempts);
            job.coordination.on_failure = on_failure;
            job
        };
        for strategy in [ErrorStrategy::DeadLetter, ErrorStrategy::Abort] {
            assert_eq!(
                decide(&backup, &with(strategy, 1), &unavailable()),
                Recovery::End(Ending::DeadLetter {
                    reason: "failed, and the routing does not retry: vendor unavailable: 503"
                        .into()
                }),
                "{strategy:?}"
            );
        }
        assert_eq!(
            decide(&backup, &with(ErrorStrategy::Retry, 1), &unavailable()),
            Recovery::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(
            decide(&backup, &with(ErrorStrategy::Retry, 3), &unavailable()),
            Recovery::End(Ending::DeadLetter {
                reason: "gave up after 3 attempts: vendor unavailable: 503".into()
            }),
            "retry never fails over"
        );
    }
}
