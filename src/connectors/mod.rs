//! What every connector is: the [`Connector`] trait, one attempt ([`Delivery`]), its [`Receipt`]
//! or classified [`ConnectorError`], and the outbound HTTP policy (`http`) they all send through.
//! The connectors themselves live in their vendors' folders (`vendors/<kind>/connector.rs`).
//!
//! Connectors know HTTP and vendor JSON, nothing about actors, queues or retries: the connector
//! classifies (its error's [`Disposition`]), the integration actor decides what to do with it.

pub(crate) mod http;
pub mod oauth;
pub mod quiet_hours;
pub mod standard_webhooks;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use http::{OutboundClient, OutboundError};

use crate::store::{now_millis, Store, UnixMillis};
use crate::vault::Vault;
use crate::wedsync::WeddingNotification;

/// One attempt to deliver one notification to one integration.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub delivery_id: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub notification: Arc<WeddingNotification>,
}

/// What a delivery created: the vendor's id for it (a message `ts`, a webhook message id, the CRM
/// contacts and notes), and for multi-step syncs a structured account of each step (per-contact
/// syncs, sync actions).
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub id: String,
    pub details: Option<serde_json::Value>,
}

impl Receipt {
    /// A receipt that is just the vendor's id.
    pub fn id(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            details: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    #[error("rate limited by vendor")]
    RateLimited { retry_after: Option<Duration> },
    #[error("vendor unavailable: {0}")]
    Unavailable(String),
    #[error("request rejected: {code}: {message}")]
    Rejected { code: String, message: String },
    #[error("credentials refused: {0}")]
    Unauthorized(String),
    #[error("destination refused by outbound policy: {0}")]
    Forbidden(String),
    #[error("connector misconfigured: {0}")]
    Misconfigured(String),
}

/// What the integration actor should do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later; `after` is the vendor's own wait (Retry-After), if it gave one.
    Retry { after: Option<Duration> },
    /// Reload the credential and try once more.
    RefreshCredentials,
    /// Retrying cannot help.
    DeadLetter,
}

impl ConnectorError {
    pub fn disposition(&self) -> Disposition {
        match self {
            ConnectorError::RateLimited { retry_after } => Disposition::Retry {
                after: *retry_after,
            },
            ConnectorError::Unavailable(_) => Disposition::Retry { after: None },
            ConnectorError::Unauthorized(_) => Disposition::RefreshCredentials,
            ConnectorError::Rejected { .. }
            | ConnectorError::Forbidden(_)
            | ConnectorError::Misconfigured(_) => Disposition::DeadLetter,
        }
    }

    /// Whether the failure says the vendor is unhealthy (counts towards opening the circuit).
    /// A validation error or a rate limit is the vendor working as documented.
    pub fn is_vendor_failure(&self) -> bool {
        matches!(self, ConnectorError::Unavailable(_))
    }

    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorError::RateLimited { .. } => "rate_limited",
            ConnectorError::Unavailable(_) => "unavailable",
            ConnectorError::Rejected { .. } => "rejected",
            ConnectorError::Unauthorized(_) => "unauthorized",
            ConnectorError::Forbidden(_) => "forbidden",
            ConnectorError::Misconfigured(_) => "misconfigured",
        }
    }
}

pub type DeliveryFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Receipt, ConnectorError>> + Send + 'a>>;

pub type PollFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<WeddingNotification>, ConnectorError>> + Send + 'a>>;

pub type CheckFuture<'a> =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, ConnectorError>> + Send + 'a>>;

pub trait Connector: Send + Sync + 'static {
    /// A bounded vendor name for metrics and logs (its `kind`).
    fn vendor(&self) -> &'static str;
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a>;
    /// How many requests delivering this notification makes to the vendor, so the rate limiter
    /// can charge them all (vendors count requests, not deliveries).
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32;
    /// Verifies the credential with the vendor's cheapest read and describes the account (the
    /// seed's establishConnection / authenticateConnection / connectToBookingAPI). Sends nothing.
    fn check_connection(&self) -> CheckFuture<'_>;
    /// How people engaged with what a delivery created, from the receipt's `details` (the seed's
    /// trackCommunicationEngagement): a chat message's reactions and thread replies.
    fn engagement<'a>(&'a self, details: &'a serde_json::Value) -> CheckFuture<'a>;
    /// Subscribes to the vendor's events that the configuration names, so they reach Herald's
    /// inbound endpoint (REST hooks). Answers what was subscribed.
    fn subscribe_to_events(&self) -> CheckFuture<'_> {
        let vendor = self.vendor();
        Box::pin(async move {
            Err(ConnectorError::Rejected {
                code: "unsupported".into(),
                message: format!("{vendor} integrations have no event subscriptions in Herald"),
            })
        })
    }
    /// Finishes an OAuth app install through Herald: exchanges the authorization code the
    /// vendor sent back (with the install's PKCE verifier, for a vendor that takes PKCE) for the
    /// account's tokens and keeps them.
    fn complete_install<'a>(&'a self, _grant: &'a oauth::InstallGrant) -> CheckFuture<'a> {
        let vendor = self.vendor();
        Box::pin(async move {
            Err(ConnectorError::Rejected {
                code: "not_installable".into(),
                message: format!("{vendor} integrations are not installed through Herald"),
            })
        })
    }
    /// Reloads the credential from where the configuration says it lives (a rotated token).
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// How often Herald reads the vendor for news (the poller, `polling.rs`), for a vendor that
    /// is read on a schedule rather than heard from; `None` for the rest.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }
    /// Reads the vendor once for news and answers the notifications it amounts to, to be routed
    /// as the organization's own (never back to this integration).
    fn poll(&self) -> PollFuture<'_> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Tells the vendor that a notification it delivered (`details`: its receipt's details) was
    /// acknowledged on another channel, where the vendor keeps a state of its own (a pager's
    /// incident). Answers what was done; `null` where the vendor keeps nothing to change.
    fn acknowledged<'a>(
        &'a self,
        _details: &'a serde_json::Value,
        _notice: &'a AcknowledgementNotice,
    ) -> CheckFuture<'a> {
        Box::pin(async { Ok(serde_json::Value::Null) })
    }
}

/// An acknowledgement recorded for a notification, as the other channels that carry it hear of
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgementNotice {
    pub notification_id: String,
    /// The action (`acknowledge`, `resolve`, a button's action id).
    pub action_id: String,
    pub actor: String,
    /// Where it was made: an integration's id, or `wedsync` for WedSync's API.
    pub via: String,
}

/// What every connector is built with: the outbound HTTP client (with its address policy),
/// when `security.credentials_key` is set the vault, the installation's id (from the store)
/// for ids that must be unique beyond this installation, and the store, where a connector
/// keeps what it must remember ([`ConnectorKit::memory`]).
#[derive(Clone)]
pub struct ConnectorKit {
    pub client: OutboundClient,
    pub vault: Option<Arc<Vault>>,
    pub installation_id: Arc<str>,
    pub store: Arc<dyn Store>,
}

impl ConnectorKit {
    /// The memory of one integration's connector.
    pub fn memory(&self, integration_id: &str) -> ConnectorMemory {
        ConnectorMemory {
            store: self.store.clone(),
            integration_id: integration_id.into(),
        }
    }
}

/// What one integration's connector remembers across deliveries and restarts: JSON values by
/// key, each until the time it lapses, durable in the store ([`crate::store::Memories`]).
#[derive(Clone)]
pub struct ConnectorMemory {
    store: Arc<dyn Store>,
    integration_id: Arc<str>,
}

impl ConnectorMemory {
    /// Keeps `value` under `key` until `lapses_at` (Unix milliseconds), replacing what was there.
    pub async fn remember(
        &self,
        key: &str,
        value: &serde_json::Value,
        lapses_at: UnixMillis,
    ) -> Result<(), ConnectorError> {
        self.store
            .remember(
                &self.integration_id,
                key,
                Some(value.to_string()),
                lapses_at,
            )
            .await
            .map_err(unavailable_store)
    }

    pub async fn forget(&self, key: &str) -> Result<(), ConnectorError> {
        self.store
            .remember(&self.integration_id, key, None, 0)
            .await
            .map_err(unavailable_store)
    }

    /// Everything remembered that has not lapsed, by key; a value that is no longer JSON is
    /// left out.
    pub async fn recall_all(&self) -> Result<Vec<(String, serde_json::Value)>, ConnectorError> {
        let memories = self
            .store
            .memories(&self.integration_id, now_millis())
            .await
            .map_err(unavailable_store)?;
        Ok(memories
            .into_iter()
            .filter_map(|memory| Some((memory.key, serde_json::from_str(&memory.value).ok()?)))
            .collect())
    }
}

fn unavailable_store(error: crate::store::StoreError) -> ConnectorError {
    ConnectorError::Unavailable(format!("Herald's store: {error}"))
}

/// The answer of connectors whose vendor has nothing like engagement to read.
pub(crate) fn engagement_unsupported(vendor: &str) -> ConnectorError {
    ConnectorError::Rejected {
        code: "unsupported".into(),
        message: format!("{vendor} deliveries have no engagement to read"),
    }
}

/// A notification as the HTML body of a CRM or booking note: the title in bold, then the message,
/// both escaped.
pub(crate) fn note_html(notification: &WeddingNotification) -> String {
    format!(
        "<p><strong>{}</strong></p><p>{}</p>",
        escape_html(&notification.title),
        escape_html(&notification.message)
    )
}

pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` with each of `specials` preceded by a backslash: how markdown dialects let text show
/// as written instead of formatting it.
pub(crate) fn backslash_escape(text: &str, specials: &[char]) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if specials.contains(&c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The first `max_chars` characters of `text` (a vendor's field limit, counted in characters).
pub(crate) fn first_chars(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// `text` cut to `max_chars` characters, the cut marked with an ellipsis, for text people read.
pub(crate) fn cut_marked(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut = first_chars(text, max_chars.saturating_sub(1));
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_bodies_escape_html() {
        let notification: WeddingNotification = serde_json::from_value(serde_json::json!({
            "notificationId": "n", "type": "t", "priority": "normal", "title": "<b>Sam & Alex</b>", "message": "1 < 2"
        }))
        .unwrap();
        assert_eq!(
            note_html(&notification),
            "<p><strong>&lt;b&gt;Sam &amp; Alex&lt;/b&gt;</strong></p><p>1 &lt; 2</p>"
        );
    }
}
