//! The durable journal: accepted notifications, one delivery row per target (which doubles as the
//! integration's durable retry mailbox), dead letters and API keys.
//!
//! [`Store`] is the seam, with two backends: `sqlite`, the embedded default (one data folder, WAL),
//! and `postgres`, for operators who keep their state in PostgreSQL. Both commit in groups through
//! the same queues and group commit (`queue`), each supplying its statements; the writer
//! announces the settlements it committed ([`Store::settled_deliveries`]) to whoever follows them.
//! The store knows rows and states; it does not decide when to retry or where to route.

mod acknowledgements;
mod audit;
mod credentials;
mod definitions;
mod installs;
mod integrations;
mod journal;
mod keys;
mod memories;
mod postgres;
mod queue;
mod routings;
mod sqlite;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::wedsync::{Coordination, CoordinationMode, ErrorStrategy};

pub use acknowledgements::Acknowledgements;
pub use audit::{verify_chain, Actor, Audit, AuditDraft, AuditQuery, AuditRecord, ChainBreak};
pub use credentials::Credentials;
pub use definitions::{DefinitionChange, Definitions, Kind};
pub use installs::Installs;
pub use integrations::{IntegrationChange, ManagedIntegrations, Removed, REMOVED_REASON};
pub use journal::Journal;
pub use keys::ApiKeys;
pub use memories::{Memories, Memory};
pub use postgres::PostgresStore;
pub use routings::Routings;
pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch; every timestamp in the store uses it.
pub type UnixMillis = i64;

pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store failure: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cannot open data folder {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("data folder schema version {found} is newer than this Herald understands ({known}); upgrade Herald")]
    NewerSchema { found: i64, known: i64 },
    #[error("store failure: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("store writer has stopped")]
    WriterGone,
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A validated notification and the targets the router chose for it.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub organization: String,
    pub notification_id: String,
    pub priority: String,
    pub notification_type: String,
    /// The notification as JSON, organization filled in.
    pub body: String,
    /// The targets in order: a sequenced coordination sends them one after the other.
    pub targets: Vec<PlannedDelivery>,
    pub coordination: Coordination,
}

/// One target of a new notification.
#[derive(Debug, Clone)]
pub struct PlannedDelivery {
    pub integration_id: String,
    /// The notification as this target sees it (a routing's transformation map), when it differs
    /// from the notification's own body.
    pub body: Option<String>,
}

/// What intake did with one notification.
#[derive(Debug, Clone)]
pub enum Intake {
    /// Journaled now, with these delivery rows.
    Accepted(Vec<DeliveryRow>),
    /// The organization already had this `notificationId`; nothing was written.
    Duplicate(Vec<DeliveryRow>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for the delivery before it in a sequenced routing to settle.
    Held,
    Pending,
    Retrying,
    Delivered,
    DeadLettered,
    /// Given up on this integration and handed to a backup (see the backup's row).
    FailedOver,
    /// Never sent: a delivery before it in an all-or-nothing (or aborting) routing failed.
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Held => "held",
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Delivered => "delivered",
            DeliveryState::DeadLettered => "dead_lettered",
            DeliveryState::FailedOver => "failed_over",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "held" => DeliveryState::Held,
            "pending" => DeliveryState::Pending,
            "retrying" => DeliveryState::Retrying,
            "delivered" => DeliveryState::Delivered,
            "dead_lettered" => DeliveryState::DeadLettered,
            "failed_over" => DeliveryState::FailedOver,
            "cancelled" => DeliveryState::Cancelled,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown delivery state {other:?}"
                )))
            }
        })
    }

    /// Whether nothing more will happen to the delivery without an operator (replay).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered
                | DeliveryState::DeadLettered
                | DeliveryState::FailedOver
                | DeliveryState::Cancelled
        )
    }
}

/// One target of one notification: a row in the durable mailbox.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRow {
    pub delivery_id: i64,
    #[serde(skip)]
    pub organization: String,
    pub notification_id: String,
    pub integration_id: String,
    /// `primary`, or `failover` for a delivery handed over from another integration.
    pub route: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_of: Option<i64>,
    pub state: DeliveryState,
    pub emergency: bool,
    pub attempts: u32,
    #[schema(value_type = i64)]
    pub created_at: UnixMillis,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub next_attempt_at: Option<UnixMillis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The vendor's id for what it created (a message ts, a webhook message id...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub settled_at: Option<UnixMillis>,
    /// The connector's structured account of what the delivery did (per-contact syncs, actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    #[serde(skip)]
    pub coordination: Coordination,
}

/// A delivery still to be made, with the notification it carries (its own transformed body, or
/// the notification's).
#[derive(Debug, Clone)]
pub struct OpenDelivery {
    pub row: DeliveryRow,
    pub body: String,
}

/// A stored notification and all its deliveries.
#[derive(Debug, Clone)]
pub struct StoredNotification {
    pub body: String,
    pub accepted_at: UnixMillis,
    pub deliveries: Vec<DeliveryRow>,
    pub acknowledgements: Vec<Acknowledgement>,
}

/// An API key as Herald can describe it: the first 16 hex digits of its hash as its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    #[serde(rename = "keyId")]
    pub id: String,
    pub label: String,
    pub role: Role,
    #[schema(value_type = i64)]
    pub created_at: UnixMillis,
}

/// A definition WedSync manages through the API (an integration, a route), as stored: its
/// specification as JSON (the configuration file's form; an integration's secrets replaced by
/// `{"sealed": name}`), its version (1 when created, one more with each change) and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpec {
    pub id: String,
    pub organization: String,
    pub spec: String,
    pub version: i64,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// What saving a definition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written: the definition as it now is.
    Written(StoredSpec),
    /// A new definition whose id is taken.
    Exists,
    /// A change to a version that is no longer the current one (the current one, or none).
    Stale { current: Option<i64> },
}

/// Who holds an API key: its organization, the key's id and label (who did something, in the
/// audit), and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    pub organization: String,
    pub key_id: String,
    pub label: String,
    pub role: Role,
}

impl KeyHolder {
    /// The key as the author of a change, in the audit log.
    pub fn actor(&self) -> Actor {
        Actor {
            key_id: self.key_id.clone(),
            label: self.label.clone(),
        }
    }
}

/// What an API key may do. Each role may do what the ones below it may: `viewer` reads,
/// `sender` also sends notifications and routings and replays dead letters, `admin` also
/// manages integrations, routes, credentials and keys.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Sender,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Sender, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Sender => "sender",
            Role::Admin => "admin",
        }
    }

    /// The role named `text` (`admin`, `sender`, `viewer`).
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The length of an API key's id (a prefix of its SHA-256).
pub const API_KEY_ID_LEN: usize = 16;

/// An OAuth app install Herald started and has not seen finish: whose it is. Kept by the hash
/// of its `state`, so any node can finish it and the store never holds the state itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInstall {
    pub integration_id: String,
    pub organization: String,
    /// The install's PKCE code verifier, for a vendor that takes PKCE. Kept for the install's
    /// ten minutes and taken once with it; without the authorization code, which only the
    /// registered redirect receives, it is worth nothing.
    pub code_verifier: Option<String>,
    /// Who started it (the API key that asked for the consent page).
    pub started_by: Actor,
}

/// Someone acted on a delivered notification in the target system (a button click).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement {
    #[serde(skip)]
    pub organization: String,
    #[serde(skip)]
    pub notification_id: String,
    pub integration_id: String,
    pub action_id: String,
    /// Who acted, in the target system's terms (a chat user id).
    pub actor: String,
    #[schema(value_type = i64)]
    pub at: UnixMillis,
}

/// A routing request (`POST /v1/routings`), kept so its result can be read again by its
/// `routingId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingRecord {
    pub organization: String,
    pub routing_id: String,
    pub notification_id: String,
    /// The request's `deliveryCoordination`, as JSON, to echo in the result.
    pub delivery_coordination: Option<String>,
    pub accepted_at: UnixMillis,
}

/// What became of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcknowledgeOutcome {
    Recorded,
    /// The same person already acknowledged the same action: nothing written.
    AlreadyRecorded,
    /// The organization has no such notification: nothing written.
    UnknownNotification,
}

impl AcknowledgeOutcome {
    /// A bounded label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AcknowledgeOutcome::Recorded => "acknowledged",
            AcknowledgeOutcome::AlreadyRecorded => "duplicate",
            AcknowledgeOutcome::UnknownNotification => "unknown_notification",
        }
    }
}

/// A state change of one delivery, written in the next group commit.
#[derive(Debug, Clone)]
pub enum Settlement {
    Delivered {
        delivery_id: i64,
        attempts: u32,
        receipt: String,
        /// The receipt's structured details, as JSON text.
        details: Option<String>,
        /// Part of a sequenced routing: the commit also releases the next delivery.
        sequenced: bool,
    },
    Retrying {
        delivery_id: i64,
        attempts: u32,
        next_attempt_at: UnixMillis,
        error: String,
    },
    DeadLettered {
        delivery_id: i64,
        attempts: u32,
        error: String,
        /// Part of a sequenced routing: the commit also releases the next delivery, or cancels
        /// the held ones if the routing cancels on failure.
        sequenced: bool,
    },
}

/// A delivery whose settlement has committed, as the store's writer announces it
/// ([`Store::settled_deliveries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledDelivery {
    pub delivery_id: i64,
    pub organization: String,
    pub notification_id: String,
    pub state: DeliveryState,
    /// Part of a sequenced routing: the settlement released the next delivery, or cancelled the
    /// held ones ([`Store::next_in_sequence`] reads what it released).
    pub sequenced: bool,
}

/// The settlements one group commit made durable, as the writer announces them.
pub type CommittedSettlements = std::sync::Arc<[SettledDelivery]>;

/// A coordination's stored columns (`mode`, `on_failure`); the defaults are stored as NULL.
pub(crate) fn coordination_columns(
    coordination: Coordination,
) -> (Option<&'static str>, Option<&'static str>) {
    (
        (coordination.mode != CoordinationMode::Parallel).then(|| coordination.mode.as_str()),
        (coordination.on_failure != ErrorStrategy::Failover)
            .then(|| coordination.on_failure.as_str()),
    )
}

/// Reads a coordination back from its stored columns.
pub(crate) fn coordination_from_columns(
    mode: Option<String>,
    on_failure: Option<String>,
) -> Result<Coordination, StoreError> {
    let mode = match mode.as_deref() {
        None => CoordinationMode::Parallel,
        Some(text) => CoordinationMode::parse(text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown coordination mode {text:?}")))?,
    };
    let on_failure = match on_failure.as_deref() {
        None => ErrorStrategy::Failover,
        Some(text) => ErrorStrategy::parse(text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown error strategy {text:?}")))?,
    };
    Ok(Coordination { mode, on_failure })
}

/// The state and sequence position a journaled delivery starts with: in a sequenced routing
/// every target but the first is held until the one before it settles.
pub(crate) fn sequenced_start(
    coordination: Coordination,
    position: usize,
) -> (DeliveryState, Option<i64>) {
    match (coordination.is_sequenced(), position) {
        (false, _) => (DeliveryState::Pending, None),
        (true, 0) => (DeliveryState::Pending, Some(0)),
        (true, position) => (DeliveryState::Held, Some(position as i64)),
    }
}

/// Why a held delivery was cancelled.
pub(crate) fn cancelled_reason(failed_delivery_id: i64) -> String {
    format!("cancelled: delivery {failed_delivery_id} before it in the routing failed")
}

/// Reads a stored `details` column.
pub(crate) fn parse_details(text: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|err| StoreError::Corrupt(format!("delivery details: {err}")))
    })
    .transpose()
}

/// What a run of settlements amounts to, one per delivery, in the order the deliveries first
/// appear: the first that ends the delivery (delivered, dead-lettered) if any, since nothing
/// updates a settled row; otherwise the last retry. Applied together, they leave every row as
/// applying them one by one would.
pub(crate) fn effective_settlements(settlements: &[Settlement]) -> Vec<&Settlement> {
    let mut chosen: Vec<&Settlement> = Vec::with_capacity(settlements.len());
    let mut index_of: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for settlement in settlements {
        let id = settlement.delivery_id();
        match index_of.get(&id) {
            None => {
                index_of.insert(id, chosen.len());
                chosen.push(settlement);
            }
            Some(&index) => {
                if !chosen[index].ends_delivery() {
                    chosen[index] = settlement;
                }
            }
        }
    }
    chosen
}

/// The column values a settlement writes, the same for every backend.
pub(crate) struct SettledColumns<'a> {
    pub delivery_id: i64,
    pub state: &'static str,
    pub attempts: i64,
    pub next_attempt_at: Option<UnixMillis>,
    pub last_error: Option<&'a str>,
    pub receipt: Option<&'a str>,
    pub settled_at: Option<UnixMillis>,
    pub details: Option<&'a str>,
}

impl Settlement {
    pub(crate) fn delivery_id(&self) -> i64 {
        match self {
            Settlement::Delivered { delivery_id, .. }
            | Settlement::Retrying { delivery_id, .. }
            | Settlement::DeadLettered { delivery_id, .. } => *delivery_id,
        }
    }

    /// Whether it settles the delivery for good (delivered or dead-lettered).
    fn ends_delivery(&self) -> bool {
        !matches!(self, Settlement::Retrying { .. })
    }

    /// The delivery whose settlement may release or cancel the next ones of its routing.
    pub(crate) fn sequenced_delivery(&self) -> Option<i64> {
        match self {
            Settlement::Delivered {
                delivery_id,
                sequenced: true,
                ..
            }
            | Settlement::DeadLettered {
                delivery_id,
                sequenced: true,
                ..
            } => Some(*delivery_id),
            _ => None,
        }
    }

    pub(crate) fn columns(&self, now: UnixMillis) -> SettledColumns<'_> {
        match self {
            Settlement::Delivered {
                delivery_id,
                attempts,
                receipt,
                details,
                ..
            } => SettledColumns {
                delivery_id: *delivery_id,
                state: DeliveryState::Delivered.as_str(),
                attempts: i64::from(*attempts),
                next_attempt_at: None,
                last_error: None,
                receipt: Some(receipt),
                settled_at: Some(now),
                details: details.as_deref(),
            },
            Settlement::Retrying {
                delivery_id,
                attempts,
                next_attempt_at,
                error,
            } => SettledColumns {
                delivery_id: *delivery_id,
                state: DeliveryState::Retrying.as_str(),
                attempts: i64::from(*attempts),
                next_attempt_at: Some(*next_attempt_at),
                last_error: Some(error),
                receipt: None,
                settled_at: None,
                details: None,
            },
            Settlement::DeadLettered {
                delivery_id,
                attempts,
                error,
                ..
            } => SettledColumns {
                delivery_id: *delivery_id,
                state: DeliveryState::DeadLettered.as_str(),
                attempts: i64::from(*attempts),
                next_attempt_at: None,
                last_error: Some(error),
                receipt: None,
                settled_at: Some(now),
                details: None,
            },
        }
    }
}

/// The durable store, one trait per concern (each in its own module, with both dialects side by
/// side), and what belongs to the store as a whole.
pub trait Store:
    Journal
    + ApiKeys
    + Acknowledgements
    + Routings
    + Credentials
    + Installs
    + Audit
    + ManagedIntegrations
    + Definitions
    + Memories
    + Send
    + Sync
    + 'static
{
    /// This installation's random id, made when its store was created: what makes ids Herald
    /// hands out (webhook message ids) unique across installations.
    fn installation_id(&self) -> &str;
    /// Resolves once everything written before it is committed.
    fn flush(&self) -> StoreFuture<'_, ()> {
        self.queues().flush()
    }
    /// Whether the writer is alive. It is not restarted in place: if it dies, `/healthz` fails
    /// so the process supervisor (systemd, Kubernetes) restarts Herald, and the journal carries
    /// everything accepted across that restart.
    fn writer_alive(&self) -> bool {
        self.queues().writer_alive()
    }
}

#[cfg(test)]
mod tests;
