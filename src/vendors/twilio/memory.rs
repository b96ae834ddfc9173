//! What Herald remembers of the texts and calls it made, kept in memory and shared by the
//! connector and the callback handler: which message or call went to whom for which
//! notification (so a retry never texts or calls a person twice, and a reply finds the alerts it
//! answers), and the latest status Twilio reported for each.
//!
//! In memory, per process: after a restart a retry of a delivery that had partly gone out
//! reaches its people again, and a reply to an earlier alert acknowledges nothing (Twilio's
//! reply carries no reference to the message it answers; the person is told so). Entries older
//! than a week are dropped.

use std::sync::LazyLock;
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;

/// How long a reply keyword acknowledges what was sent to the person.
pub(super) const REPLY_WINDOW: Duration = Duration::from_secs(24 * 3600);
const KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
const PRUNE_ABOVE: usize = 50_000;

/// An alert a person was sent and has not acknowledged by reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Open {
    pub notification_id: String,
    pub at: u64,
}

/// The latest status of a message or call, from its status callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub at: u64,
}

/// The memory's entries are scoped by an integration's account and API (`scope`), so two
/// integrations (or two test daemons against two simulators) never share one.
#[derive(Default)]
pub(super) struct Memory {
    /// (scope, notification id, person) -> the message or call SID already created for it.
    sent: DashMap<(String, String, String), (String, u64)>,
    /// (scope, person) -> the alerts sent to them not yet acknowledged by reply.
    open: DashMap<(String, String), Vec<Open>>,
    /// SID -> its latest status.
    statuses: DashMap<String, Status>,
}

/// The scope of an integration's entries: its API, account and id.
pub(super) fn scope(api_url: &str, account_sid: &str, integration_id: &str) -> String {
    format!(
        "{}|{account_sid}|{integration_id}",
        api_url.trim_end_matches('/')
    )
}

pub(super) static MEMORY: LazyLock<Memory> = LazyLock::new(Memory::default);

impl Memory {
    /// The SID already created for this notification and person, if any.
    pub fn sent_before(&self, scope: &str, notification: &str, person: &str) -> Option<String> {
        self.sent
            .get(&(scope.to_owned(), notification.to_owned(), person.to_owned()))
            .map(|entry| entry.0.clone())
    }

    /// `sid` went to `person` for `notification` at `at`.
    pub fn sent(&self, scope: &str, notification: &str, person: &str, sid: &str, at: u64) {
        self.prune(at);
        self.sent.insert(
            (scope.to_owned(), notification.to_owned(), person.to_owned()),
            (sid.to_owned(), at),
        );
        let mut open = self
            .open
            .entry((scope.to_owned(), person.to_owned()))
            .or_default();
        if !open.iter().any(|one| one.notification_id == notification) {
            open.push(Open {
                notification_id: notification.to_owned(),
                at,
            });
        }
    }

    /// The alerts sent to `person` within the reply window before `now`, taken: a reply
    /// acknowledges each once.
    pub fn take_open(&self, scope: &str, person: &str, now: u64) -> Vec<Open> {
        self.open
            .remove(&(scope.to_owned(), person.to_owned()))
            .map(|(_, open)| {
                open.into_iter()
                    .filter(|one| now.saturating_sub(one.at) < REPLY_WINDOW.as_secs())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn record_status(&self, sid: &str, status: Status) {
        self.statuses.insert(sid.to_owned(), status);
    }

    pub fn status(&self, sid: &str) -> Option<Status> {
        self.statuses.get(sid).map(|status| status.clone())
    }

    fn prune(&self, now: u64) {
        if self.sent.len() < PRUNE_ABOVE {
            return;
        }
        let fresh = |at: u64| now.saturating_sub(at) < KEPT.as_secs();
        self.sent.retain(|_, (_, at)| fresh(*at));
        self.open.retain(|_, open| {
            open.retain(|one| fresh(one.at));
            !open.is_empty()
        });
        self.statuses.retain(|_, status| fresh(status.at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_takes_each_open_alert_once_within_the_window() {
        let memory = Memory::default();
        memory.sent("s", "n-1", "+447700900123", "SM1", 1_000);
        memory.sent("s", "n-2", "+447700900123", "SM2", 90_000);
        memory.sent("s", "n-2", "+447700900123", "SM2", 90_000);
        memory.sent("other", "n-3", "+447700900123", "SM3", 90_000);
        assert_eq!(
            memory.sent_before("s", "n-1", "+447700900123").as_deref(),
            Some("SM1")
        );
        let open = memory.take_open("s", "+447700900123", 90_500);
        assert_eq!(
            open,
            [Open {
                notification_id: "n-2".into(),
                at: 90_000
            }]
        );
        assert!(memory.take_open("s", "+447700900123", 90_600).is_empty());
        assert_eq!(memory.take_open("other", "+447700900123", 90_600).len(), 1);
    }
}
