//! What Herald remembers of its Intercom conversations, in memory and per process, shared by the
//! connector and the webhook handler: each wedding's conversation with the couple (so later
//! notifications are replies in it), which notification a conversation last carried (so the
//! couple's reply acknowledges it), and what each notification's delivery made (so a retry sends
//! nothing twice). After a restart a wedding's next notification starts a new conversation.

use std::sync::LazyLock;

use dashmap::DashMap;

use crate::connectors::Receipt;

#[derive(Default)]
pub(super) struct Memory {
    /// (sender, contact id, wedding id) -> conversation id.
    conversations: DashMap<(String, String, String), String>,
    /// (integration id, conversation id) -> the notification it last carried.
    carried: DashMap<(String, String), String>,
    /// (sender, notification id) -> what its delivery made.
    delivered: DashMap<(String, String), Receipt>,
}

pub(super) static MEMORY: LazyLock<Memory> = LazyLock::new(Memory::default);

/// Beyond this many deliveries remembered, the oldest are no longer needed for retries: the
/// map is cleared (a retry after that sends again, as after a restart).
const REMEMBERED: usize = 100_000;

impl Memory {
    pub fn conversation(&self, sender: &str, contact: &str, wedding: &str) -> Option<String> {
        self.conversations
            .get(&(sender.to_owned(), contact.to_owned(), wedding.to_owned()))
            .map(|id| id.clone())
    }

    pub fn started(&self, sender: &str, contact: &str, wedding: &str, conversation: &str) {
        self.conversations.insert(
            (sender.to_owned(), contact.to_owned(), wedding.to_owned()),
            conversation.to_owned(),
        );
    }

    pub fn about(&self, integration: &str, conversation: &str, notification: &str) {
        self.carried.insert(
            (integration.to_owned(), conversation.to_owned()),
            notification.to_owned(),
        );
    }

    /// The notification a conversation of this integration last carried.
    pub fn notification_in(&self, integration: &str, conversation: &str) -> Option<String> {
        self.carried
            .get(&(integration.to_owned(), conversation.to_owned()))
            .map(|id| id.clone())
    }

    pub fn already_sent(&self, sender: &str, notification: &str) -> Option<Receipt> {
        self.delivered
            .get(&(sender.to_owned(), notification.to_owned()))
            .map(|receipt| receipt.clone())
    }

    pub fn sent(&self, sender: &str, notification: &str, receipt: &Receipt) {
        if self.delivered.len() >= REMEMBERED {
            self.delivered.clear();
        }
        self.delivered.insert(
            (sender.to_owned(), notification.to_owned()),
            receipt.clone(),
        );
    }
}
