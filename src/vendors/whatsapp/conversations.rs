//! What Herald learns about each person's conversation with a business number, kept in memory
//! and shared by the connector and the webhook handler: when the person last wrote (their
//! 24-hour customer-service window), which message Herald sent whom for which notification
//! (so a reply or a status finds its notification, and a retry does not message a person
//! twice), and the latest status of each message.
//!
//! In memory, per process: after a restart every window reads as closed, so the approved
//! template is sent until the person writes again (never a message WhatsApp would refuse), and
//! the statuses of earlier messages are read as unknown. Entries older than a week are dropped.

use std::sync::LazyLock;
use std::time::Duration;

use dashmap::DashMap;

/// The customer-service window, less a minute so a message never leaves at its last second.
pub(super) const WINDOW: Duration = Duration::from_secs(24 * 3600 - 60);
const KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
const PRUNE_ABOVE: usize = 50_000;

/// A message Herald sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sent {
    pub notification_id: String,
    /// The person, as WhatsApp writes them (digits, no `+`).
    pub wa_id: String,
    pub at: u64,
}

#[derive(Default)]
pub(super) struct Conversations {
    /// (phone number id, wa_id) -> when the person last wrote, in seconds since the epoch.
    last_inbound: DashMap<(String, String), u64>,
    /// (phone number id, wa_id) -> the notification last sent to them.
    last_sent: DashMap<(String, String), String>,
    /// wamid -> what it was.
    sent: DashMap<String, Sent>,
    /// (the sending integration, notification id, wa_id) -> the wamid already sent for it. The
    /// integration is named with its installation, so two Herald stores never share one.
    by_notification: DashMap<(String, String, String), String>,
    /// wamid -> (status, when).
    statuses: DashMap<String, (String, u64)>,
}

pub(super) static CONVERSATIONS: LazyLock<Conversations> = LazyLock::new(Conversations::default);

/// `number` as WhatsApp ids people: its digits.
pub(super) fn wa_id(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

impl Conversations {
    /// The person wrote to the number at `at`.
    pub fn wrote(&self, phone: &str, wa_id: &str, at: u64) {
        let key = (phone.to_owned(), wa_id.to_owned());
        let mut entry = self.last_inbound.entry(key).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }

    /// Whether the person's window is open at `now`.
    pub fn window_open(&self, phone: &str, wa_id: &str, now: u64) -> bool {
        self.last_inbound
            .get(&(phone.to_owned(), wa_id.to_owned()))
            .is_some_and(|at| now.saturating_sub(*at) < WINDOW.as_secs())
    }

    /// The integration `sender` sent `wamid` from `phone` to the person for a notification.
    pub fn sent(&self, sender: &str, phone: &str, wamid: &str, sent: Sent) {
        self.prune(sent.at);
        self.by_notification.insert(
            (
                sender.to_owned(),
                sent.notification_id.clone(),
                sent.wa_id.clone(),
            ),
            wamid.to_owned(),
        );
        self.last_sent.insert(
            (phone.to_owned(), sent.wa_id.clone()),
            sent.notification_id.clone(),
        );
        self.sent.insert(wamid.to_owned(), sent);
    }

    /// The message `sender` already sent the person for this notification, if any.
    pub fn already_sent(&self, sender: &str, notification_id: &str, wa_id: &str) -> Option<String> {
        self.by_notification
            .get(&(
                sender.to_owned(),
                notification_id.to_owned(),
                wa_id.to_owned(),
            ))
            .map(|wamid| wamid.clone())
    }

    pub fn message(&self, wamid: &str) -> Option<Sent> {
        self.sent.get(wamid).map(|sent| sent.clone())
    }

    /// The notification last sent to the person.
    pub fn last_sent_to(&self, phone: &str, wa_id: &str) -> Option<String> {
        self.last_sent
            .get(&(phone.to_owned(), wa_id.to_owned()))
            .map(|id| id.clone())
    }

    /// A status WhatsApp reported for a message; an older report never replaces a newer one.
    pub fn status(&self, wamid: &str, status: &str, at: u64) {
        let mut entry = self
            .statuses
            .entry(wamid.to_owned())
            .or_insert_with(|| (status.to_owned(), at));
        if entry.1 <= at {
            *entry = (status.to_owned(), at);
        }
    }

    pub fn status_of(&self, wamid: &str) -> Option<(String, u64)> {
        self.statuses.get(wamid).map(|status| status.clone())
    }

    /// Drops what is older than a week once the maps grow large.
    fn prune(&self, now: u64) {
        if self.sent.len() < PRUNE_ABOVE {
            return;
        }
        let oldest = now.saturating_sub(KEPT.as_secs());
        self.sent.retain(|_, sent| sent.at >= oldest);
        self.statuses.retain(|_, (_, at)| *at >= oldest);
        self.last_inbound.retain(|_, at| *at >= oldest);
        self.by_notification
            .retain(|_, wamid| self.sent.contains_key(wamid.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_open_for_a_day_after_the_person_writes() {
        let conversations = Conversations::default();
        assert!(!conversations.window_open("1", "447700900123", 1_000));
        conversations.wrote("1", "447700900123", 1_000);
        conversations.wrote("1", "447700900123", 900);
        assert!(conversations.window_open("1", "447700900123", 1_000 + 3_600));
        assert!(!conversations.window_open("1", "447700900123", 1_000 + 86_400));
        assert!(!conversations.window_open("2", "447700900123", 1_000 + 3_600));
    }

    #[test]
    fn a_newer_status_wins_and_an_older_one_is_ignored() {
        let conversations = Conversations::default();
        conversations.status("wamid.1", "delivered", 10);
        conversations.status("wamid.1", "read", 12);
        conversations.status("wamid.1", "sent", 9);
        assert_eq!(
            conversations.status_of("wamid.1"),
            Some(("read".to_owned(), 12))
        );
    }
}
