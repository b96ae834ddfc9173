//! The WedSync vocabulary: the JSON objects the platform sends and receives, in its own camelCase
//! field names, so the TypeScript side can post its `WeddingNotification` and `CrossSystemRouting`
//! objects as they are.
//!
//! This module owns parsing and validation of those objects (every rejection names the field and
//! says why). It does not know how they are routed, stored or delivered.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::template::{Template, TemplateError};

/// The largest batch `POST /v1/notifications/batch` accepts.
pub const MAX_BATCH: usize = 10_000;

/// The largest `metadata` accepted, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// How deep `metadata` may nest (objects and arrays).
pub const MAX_METADATA_DEPTH: usize = 8;

/// The fields of a [`WeddingNotification`], as WedSync writes them.
pub const NOTIFICATION_FIELDS: &[&str] = &[
    "notificationId",
    "organizationId",
    "type",
    "priority",
    "title",
    "message",
    "weddingContext",
    "contacts",
    "actions",
    "metadata",
    "createdAt",
    "bookingId",
    "taveJobId",
];

/// The fields of a [`WeddingContext`], as WedSync writes them.
pub const WEDDING_CONTEXT_FIELDS: &[&str] = &[
    "weddingId",
    "weddingDate",
    "venue",
    "vendorName",
    "coupleNames",
    "guestCount",
    "timezone",
    "venueLocation",
];

/// Which lane a notification travels: emergencies are journaled, queued and attempted ahead
/// of everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Emergency,
    Normal,
}

/// The seed's `IntegrationType`: what kind of system an integration connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationType {
    Crm,
    BookingSystem,
    CommunicationPlatform,
    Calendar,
    PaymentProcessor,
    EmergencyServices,
    /// A generic signed webhook (Herald's own addition to the seed's list).
    Webhook,
}

impl IntegrationType {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::Crm => "crm",
            IntegrationType::BookingSystem => "booking_system",
            IntegrationType::CommunicationPlatform => "communication_platform",
            IntegrationType::Calendar => "calendar",
            IntegrationType::PaymentProcessor => "payment_processor",
            IntegrationType::EmergencyServices => "emergency_services",
            IntegrationType::Webhook => "webhook",
        }
    }
}

/// How urgent a notification is. `Emergency` travels in the emergency lane end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Emergency,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Emergency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Emergency => "emergency",
        }
    }

    pub fn is_emergency(self) -> bool {
        self == Priority::Emergency
    }
}

impl<'de> Deserialize<'de> for Priority {
    /// From its name only; anything else (a number, `true`, `null`) is named as a wrong type
    /// rather than left to serde's enum handling, which reports it as a JSON syntax error.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const NAMES: &[&str] = &["low", "normal", "high", "emergency"];
        let name = String::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("must be one of \"low\", \"normal\", \"high\", \"emergency\"")
        })?;
        Priority::ALL
            .into_iter()
            .find(|priority| priority.as_str() == name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, NAMES))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification as WedSync sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "notificationId": "n-2027-06-12-timeline",
    "type": "timeline_change",
    "priority": "high",
    "title": "Ceremony moved to 15:30",
    "message": "The ceremony starts 30 minutes later.",
    "weddingContext": {
        "weddingId": "w-2027-06-12",
        "weddingDate": "2027-06-12",
        "venue": "Hedingham Castle",
        "guestCount": 120,
        "timezone": "Europe/London"
    },
    "contacts": [{"name": "Amelia Hart", "email": "amelia@example.com", "role": "couple"}]
}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeddingNotification {
    /// The idempotency key within an organization.
    #[schema(min_length = 1, max_length = 128, pattern = r"^\S+$")]
    pub notification_id: String,
    /// Optional in requests (the API key decides the organization); when present it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// What happened: `timeline_change`, `payment_received`, `client_message`, `emergency_alert`...
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z0-9_.]{1,64}$")]
    pub notification_type: String,
    pub priority: Priority,
    #[schema(min_length = 1, max_length = 500)]
    pub title: String,
    #[schema(min_length = 1, max_length = 20000)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wedding_context: Option<WeddingContext>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Contact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<NotificationAction>,
    /// Anything else WedSync knows (at most 64 KiB as JSON, nested at most 8 deep).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// An RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// The seed's `BookingNotification`: the booking this notification is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<String>,
    /// The seed's `BookingNotification`: the booking system's job it belongs to (the seed's name
    /// for the field; also accepted, for older senders, in `metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tave_job_id: Option<String>,
}

/// The wedding a notification is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeddingContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wedding_id: Option<String>,
    /// ISO 8601 date, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub wedding_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub couple_names: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_count: Option<u32>,
    /// IANA time zone of the wedding, e.g. `Europe/London`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Where the venue is, for what depends on the place (weather alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_location: Option<VenueLocation>,
}

/// A point on the Earth in WGS 84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VenueLocation {
    /// Degrees north of the equator, -90 to 90.
    pub latitude: f64,
    /// Degrees east of Greenwich, -180 to 180.
    pub longitude: f64,
}

/// A person the notification concerns (a couple, a planner, a vendor contact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A button or link the recipient can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationAction {
    pub action_id: String,
    /// The seed names the notification an action belongs to; it must be this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
    /// The seed's action type (`acknowledge`, `approve`, `link`...): carried to the vendors
    /// that show it, never interpreted by Herald.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `primary`, `danger` or `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
}

/// `POST /v1/notifications/batch` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationBatch {
    pub notifications: Vec<WeddingNotification>,
}

/// `POST /v1/routings` body: one notification routed to named systems, the seed's
/// `routeNotificationCrossSystem`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossSystemRouting {
    #[schema(min_length = 1, max_length = 128, pattern = r"^\S+$")]
    pub routing_id: String,
    pub source_notification: WeddingNotification,
    pub target_systems: Vec<TargetSystem>,
    /// Optional extra conditions: a target is used only if every rule applying to it matches.
    #[serde(default)]
    pub routing_rules: Vec<RoutingRule>,
    #[serde(default)]
    pub delivery_coordination: Option<DeliveryCoordination>,
    /// How to rewrite the notification's text per target system.
    /// An array of `{targetSystem, mappings: {title, message}}` (the seed's form), or an object
    /// keyed by target system.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub transformation_maps: TransformationMaps,
    #[serde(default)]
    pub error_handling: Option<ErrorHandling>,
}

impl CrossSystemRouting {
    /// Checks what serde cannot: the routing's id and its notification (named under
    /// `sourceNotification`).
    pub fn validate(&self, organization: &str) -> Result<(), FieldError> {
        check_identifier("routingId", &self.routing_id)?;
        self.source_notification
            .validate("sourceNotification", organization)
    }
}

/// A routing's transformation maps, written either as the seed writes them, an array of
/// `{targetSystem, mappings: {title, message}}`, or keyed by target (`{"crm": {title}}`).
#[derive(Debug, Clone, Default)]
pub struct TransformationMaps(pub Vec<TargetTransformation>);

/// One target's transformation, with where it was written (for errors).
#[derive(Debug, Clone)]
pub struct TargetTransformation {
    pub target_system: String,
    /// `transformationMaps[0].mappings` or `transformationMaps.crm`.
    pub field: String,
    pub map: TransformationMap,
}

/// The seed's form of one transformation map.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SeedTransformationMap {
    target_system: String,
    mappings: TransformationMap,
}

impl<'de> Deserialize<'de> for TransformationMaps {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Maps;
        impl<'de> serde::de::Visitor<'de> for Maps {
            type Value = TransformationMaps;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an array of {targetSystem, mappings} or an object keyed by target system",
                )
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut maps = Vec::new();
                while let Some(seed) = seq.next_element::<SeedTransformationMap>()? {
                    maps.push(TargetTransformation {
                        field: format!("transformationMaps[{}].mappings", maps.len()),
                        target_system: seed.target_system,
                        map: seed.mappings,
                    });
                }
                Ok(TransformationMaps(maps))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut maps = Vec::new();
                while let Some((target, transformation)) =
                    map.next_entry::<String, TransformationMap>()?
                {
                    maps.push(TargetTransformation {
                        field: format!("transformationMaps.{target}"),
                        target_system: target,
                        map: transformation,
                    });
                }
                Ok(TransformationMaps(maps))
            }
        }
        deserializer.deserialize_any(Maps)
    }
}

/// How one target sees the notification: minijinja templates for its title and message, with
/// every field of the notification in scope (`{{ title }}`, `{{ weddingContext.venue }}`...).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformationMap {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl TransformationMap {
    /// Returns the notification as this target sees it. `field` is where the map was written
    /// (`transformationMaps.crm`), for errors. Each template is checked and rendered within
    /// the bounds of [`crate::template`].
    pub async fn apply(
        &self,
        notification: &WeddingNotification,
        field: &str,
    ) -> Result<WeddingNotification, TransformError> {
        let mut transformed = notification.clone();
        if let Some(title) = &self.title {
            transformed.title =
                render_field(title, notification, &format!("{field}.title")).await?;
        }
        if let Some(message) = &self.message {
            transformed.message =
                render_field(message, notification, &format!("{field}.message")).await?;
        }
        check_text(&format!("{field}.title"), &transformed.title, 1, 500)?;
        check_text(&format!("{field}.message"), &transformed.message, 1, 20_000)?;
        Ok(transformed)
    }
}

async fn render_field(
    source: &str,
    notification: &WeddingNotification,
    field: &str,
) -> Result<String, TransformError> {
    let failed = |err: TemplateError| {
        if err.is_transient() {
            TransformError::Busy(err)
        } else {
            TransformError::Invalid(FieldError::new(field, err.to_string()))
        }
    };
    Template::compile(source)
        .map_err(failed)?
        .render(notification)
        .await
        .map_err(failed)
}

/// Why a transformation map could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The map's template or its result is wrong (named by field).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Every template renderer was busy: the same request may succeed later.
    #[error(transparent)]
    Busy(TemplateError),
}

/// One target of a [`CrossSystemRouting`]: an integration of the organization, by id.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSystem {
    /// The integration's id (`integrationId`, Herald's earlier name, is accepted too).
    #[serde(alias = "integrationId")]
    pub system_id: String,
    /// The seed's `IntegrationType` (`crm`, `booking`, `communication`...); when given it must
    /// be the integration's.
    #[serde(default)]
    pub system_type: Option<String>,
}

/// A rule of a routing: it applies to the systems it names (all when it names none), and a
/// system is used only if every rule applying to it holds.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingRule {
    #[serde(default)]
    pub rule_id: Option<String>,
    /// A CEL condition over the notification, as in a route's `when`.
    #[serde(default)]
    pub condition: Option<String>,
    /// The systemIds it applies to.
    #[serde(default)]
    pub target_systems: Vec<String>,
    /// Herald's earlier form: the one integration it applies to.
    #[serde(default)]
    pub integration_id: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub min_priority: Option<Priority>,
}

impl RoutingRule {
    /// The systems this rule names, in the seed's or Herald's earlier form; empty means all.
    pub fn named_systems(&self) -> impl Iterator<Item = &String> {
        self.target_systems.iter().chain(&self.integration_id)
    }

    /// Whether the rule applies to this system: it names it, or names none.
    pub fn applies_to(&self, system: &str) -> bool {
        let mut named = self.named_systems().peekable();
        named.peek().is_none() || named.any(|name| name == system)
    }
}

/// How the routing's deliveries relate to each other; echoed in the `RoutingResult`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryCoordination {
    #[serde(default)]
    pub coordinated_delivery: bool,
    #[serde(default)]
    pub mode: CoordinationMode,
}

/// The seed's `deliveryCoordination.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CoordinationMode {
    /// Every target is sent at once.
    #[default]
    Parallel,
    /// One target after the other, in the order of `targetSystems`: each is sent once the one
    /// before it settled (delivered, or dead-lettered after its retries and failover).
    Sequential,
    /// Sequential, and a target that fails cancels the targets not yet sent.
    AllOrNothing,
}

impl CoordinationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CoordinationMode::Parallel => "parallel",
            CoordinationMode::Sequential => "sequential",
            CoordinationMode::AllOrNothing => "all_or_nothing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Parallel, Self::Sequential, Self::AllOrNothing]
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

/// How the deliveries of one notification depend on each other (a routing's
/// `deliveryCoordination` and `errorHandling`); the store keeps it on each delivery row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coordination {
    pub mode: CoordinationMode,
    pub on_failure: ErrorStrategy,
}

impl Coordination {
    /// Whether the targets are sent one after the other: all but the first are journaled
    /// `held`, and each settlement releases the next.
    pub fn is_sequenced(self) -> bool {
        self.mode != CoordinationMode::Parallel
    }
}

/// What to do when a target fails: the seed's `errorHandling`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorHandling {
    pub strategy: ErrorStrategy,
}

/// The seed's `errorHandling.strategy`: what a failed delivery of a routing does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStrategy {
    /// Retried by the integration's retry policy, then dead-lettered (never failed over).
    Retry,
    /// Retried, then handed to the integration's failover targets if it has any (what every
    /// routed notification does).
    #[default]
    Failover,
    /// Dead-lettered at the first failure: no retry, no failover.
    DeadLetter,
    /// Dead-lettered at the first failure, and the routing's targets not yet sent are cancelled.
    Abort,
}

impl ErrorStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorStrategy::Retry => "retry",
            ErrorStrategy::Failover => "failover",
            ErrorStrategy::DeadLetter => "dead_letter",
            ErrorStrategy::Abort => "abort",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Retry, Self::Failover, Self::DeadLetter, Self::Abort]
            .into_iter()
            .find(|strategy| strategy.as_str() == text)
    }

    /// Whether a failed attempt is retried before the delivery is given up.
    pub fn retries(self) -> bool {
        matches!(self, ErrorStrategy::Retry | ErrorStrategy::Failover)
    }
}

/// How one target of a routing ended up, the seed's `RoutingResult.systemResults[]`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemResult {
    /// The seed's name for the target; `integrationId` says the same.
    pub system_id: String,
    pub integration_id: String,
    pub status: SystemStatus,
    pub delivery_results: Vec<DeliveryResult>,
}

/// Where a routing stands with one target system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemStatus {
    /// The system has it (directly or through a failover).
    Delivered,
    /// Every delivery towards it ended without delivering (dead-lettered).
    Failed,
    /// Never sent: an all-or-nothing or aborting routing failed before its turn.
    Cancelled,
    /// Still on its way (held, pending or retrying).
    Pending,
}

/// Where a routing stands overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverallStatus {
    /// Every system has it.
    Success,
    /// Some systems have it, and the others never will.
    Partial,
    /// No system has it, and none will.
    Failed,
    /// Some system's delivery is still on its way (the wait ran out).
    Pending,
}

/// One delivery attempt chain (primary or failover) towards a system.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryResult {
    pub delivery_id: i64,
    pub integration_id: String,
    pub route: String,
    pub state: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What the connector did, step by step (per-contact syncs, sync actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// The seed's `RoutingResult`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingResult {
    pub routing_id: String,
    pub overall_status: OverallStatus,
    pub system_results: Vec<SystemResult>,
    pub success_count: usize,
    pub failure_count: usize,
    /// Milliseconds from intake to the moment the result was taken.
    pub processing_time: u64,
    /// The routing's `deliveryCoordination`, as the seed's result echoes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_coordination: Option<DeliveryCoordination>,
}

/// How an integration is set up, the seed's `IntegrationConfiguration`, as Herald reports it.
/// Credentials appear only as where they are kept, never as values.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationConfiguration {
    pub integration_id: String,
    pub organization_id: String,
    /// `communication`, `crm`, `booking`... (the seed's categories); `webhook` for generic ones.
    pub integration_type: IntegrationType,
    /// The vendor's kind, as `vendors::all()` lists it.
    pub system: &'static str,
    pub credentials: CredentialsReference,
    /// The routes that send notifications here.
    pub notification_mapping: Vec<NotificationMapping>,
    pub failover_configuration: FailoverConfiguration,
    pub security_configuration: SecurityConfiguration,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsReference {
    /// `env` or `file` (the configuration file's references), or `vault` (sealed by Herald: an
    /// integration created through the API).
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationMapping {
    pub route_id: String,
    /// The route's name.
    pub route: String,
    pub types: Vec<String>,
    pub min_priority: Option<Priority>,
    /// The route's CEL condition, as written.
    pub when: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverConfiguration {
    pub backup_integrations: Vec<String>,
    pub on_circuit_open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emergency_after_attempts: Option<u32>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityConfiguration {
    /// How Herald authenticates to the vendor: `bearer-token`, `standard-webhooks-hmac-sha256`.
    pub authentication: &'static str,
    pub private_destinations_allowed: bool,
}

/// A rejected object: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// === impl WeddingNotification ===

impl WeddingNotification {
    /// The emails of the notification's contacts, lowercased, each once, in order, at most
    /// `limit` (what a CRM syncs in one batch).
    pub fn contact_emails(&self, limit: usize) -> Vec<String> {
        let mut emails: Vec<String> = Vec::new();
        for email in self.contacts.iter().filter_map(|c| c.email.as_deref()) {
            let email = email.trim().to_lowercase();
            if email.contains('@') && !emails.contains(&email) {
                emails.push(email);
            }
        }
        emails.truncate(limit);
        emails
    }

    /// The name the notification gives the contact with `email` (trimmed, if not blank).
    pub fn contact_name(&self, email: &str) -> Option<String> {
        self.contacts
            .iter()
            .find(|contact| {
                contact
                    .email
                    .as_deref()
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case(email))
            })
            .and_then(|contact| contact.name.as_deref())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
    }

    /// Checks what serde cannot: lengths, formats and the organization. `prefix` is the field path
    /// of this notification inside the request (`notifications[3]` in a batch).
    pub fn validate(&self, prefix: &str, organization: &str) -> Result<(), FieldError> {
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            }
        };
        check_identifier(&field("notificationId"), &self.notification_id)?;
        if let Some(org) = &self.organization_id {
            if org != organization {
                return Err(FieldError::new(
                    field("organizationId"),
                    "does not match the organization of the API key",
                ));
            }
        }
        if !is_notification_type(&self.notification_type) {
            return Err(FieldError::new(
                field("type"),
                "must be 1-64 characters of a-z, 0-9, '_' or '.'",
            ));
        }
        check_text(&field("title"), &self.title, 1, 500)?;
        check_text(&field("message"), &self.message, 1, 20_000)?;
        if let Some(created_at) = &self.created_at {
            if !is_rfc3339_timestamp(created_at) {
                return Err(FieldError::new(
                    field("createdAt"),
                    "must be an RFC 3339 timestamp such as 2027-06-12T09:30:00Z",
                ));
            }
        }
        if let Some(context) = &self.wedding_context {
            if let Some(wedding_id) = &context.wedding_id {
                check_identifier(&field("weddingContext.weddingId"), wedding_id)?;
            }
            if !is_iso_date(&context.wedding_date) {
                return Err(FieldError::new(
                    field("weddingContext.weddingDate"),
                    "must be a calendar date in the form YYYY-MM-DD (years 1900-9999)",
                ));
            }
            if let Some(zone) = &context.timezone {
                if !is_time_zone_name(zone) {
                    return Err(FieldError::new(
                        field("weddingContext.timezone"),
                        "must be an IANA time zone name such as Europe/London, or UTC",
                    ));
                }
            }
            if let Some(location) = &context.venue_location {
                if !(-90.0..=90.0).contains(&location.latitude) {
                    return Err(FieldError::new(
                        field("weddingContext.venueLocation.latitude"),
                        "must be degrees from -90 to 90",
                    ));
                }
                if !(-180.0..=180.0).contains(&location.longitude) {
                    return Err(FieldError::new(
                        field("weddingContext.venueLocation.longitude"),
                        "must be degrees from -180 to 180",
                    ));
                }
            }
        }
        for (index, contact) in self.contacts.iter().enumerate() {
            if let Some(email) = &contact.email {
                if !is_email(email) {
                    return Err(FieldError::new(
                        field(&format!("contacts[{index}].email")),
                        "must be an email address such as planner@example.com",
                    ));
                }
            }
            if let Some(phone) = &contact.phone {
                if !is_phone_number(phone) {
                    return Err(FieldError::new(
                        field(&format!("contacts[{index}].phone")),
                        "must be a phone number of 7 to 15 digits, best in E.164 form such as +447700900123",
                    ));
                }
            }
        }
        check_metadata(&field("metadata"), &self.metadata)?;
        check_seed_metadata(&field("metadata"), &self.metadata)?;
        for (name, id) in [
            ("bookingId", &self.booking_id),
            ("taveJobId", &self.tave_job_id),
        ] {
            if let Some(id) = id {
                check_identifier(&field(name), id)?;
            }
        }
        for (index, action) in self.actions.iter().enumerate() {
            check_identifier(
                &field(&format!("actions[{index}].actionId")),
                &action.action_id,
            )?;
            if action
                .notification_id
                .as_ref()
                .is_some_and(|id| *id != self.notification_id)
            {
                return Err(FieldError::new(
                    field(&format!("actions[{index}].notificationId")),
                    "must be the id of the notification the action is in",
                ));
            }
            if let Some(kind) = &action.action_type {
                check_identifier(&field(&format!("actions[{index}].type")), kind)?;
            }
            check_text(
                &field(&format!("actions[{index}].label")),
                &action.label,
                1,
                75,
            )?;
            if let Some(url) = &action.url {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(FieldError::new(
                        field(&format!("actions[{index}].url")),
                        "must be an http(s) URL",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Returns the organization this notification belongs to, once validated.
    pub fn with_organization(mut self, organization: &str) -> Self {
        self.organization_id = Some(organization.to_owned());
        self
    }
}

fn check_identifier(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > 128 {
        return Err(FieldError::new(field, "must be 1-128 characters"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(FieldError::new(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let length = value.chars().count();
    if length < min || value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if length > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// The day `date` (`YYYY-MM-DD`) is, counted from 1970-01-01; `None` if it is not a date.
pub fn day_number(date: &str) -> Option<i64> {
    if !is_iso_date(date) {
        return None;
    }
    let at = humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).ok()?;
    let seconds = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    Some(seconds.div_euclid(86_400))
}

/// The date (`YYYY-MM-DD`) of day `day` counted from 1970-01-01 (days from 1970 on).
pub fn date_of_day(day: i64) -> Option<String> {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(day).ok()? * 86_400);
    Some(humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned())
}

/// `date` moved by `days` (`YYYY-MM-DD`).
pub fn shift_by(date: &str, days: i64) -> Option<String> {
    date_of_day(day_number(date)? + days)
}

/// `date` moved by the days from `old` to `new` (all `YYYY-MM-DD`); `None` if one is not a date.
pub fn shift_date(date: &str, old: &str, new: &str) -> Option<String> {
    shift_by(date, day_number(new)? - day_number(old)?)
}

/// Whether `kind` is a notification `type`: 1-64 characters of a-z, 0-9, `_` or `.`.
pub fn is_notification_type(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// Whether `value` is a calendar date written `YYYY-MM-DD`: a day that exists (no 30 February),
/// in the years 1900 to 9999.
pub fn is_iso_date(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return false;
    };
    let numeric = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
    if !(numeric(year, 4) && numeric(month, 2) && numeric(day, 2)) {
        return false;
    }
    let (year, month, day): (u32, u32, u32) = (
        year.parse().unwrap_or(0),
        month.parse().unwrap_or(0),
        day.parse().unwrap_or(0),
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=9999).contains(&year) && (1..=days_in_month).contains(&day)
}

/// Whether `value` is an RFC 3339 timestamp: a calendar date, `T`, `hh:mm:ss` with optional
/// fraction, and `Z` or an offset `+hh:mm`.
pub fn is_rfc3339_timestamp(value: &str) -> bool {
    let Some((date, time)) = value.split_once(['T', 't']) else {
        return false;
    };
    if !is_iso_date(date) {
        return false;
    }
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(index) => time.split_at(index),
        None => return false,
    };
    let two_digits = |s: &str, max: u32| {
        s.len() == 2
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| n <= max)
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, "1"));
    let hms: Vec<&str> = whole.split(':').collect();
    let clock_ok = matches!(hms.as_slice(), [h, m, s] if two_digits(h, 23) && two_digits(m, 59) && two_digits(s, 60))
        && !fraction.is_empty()
        && fraction.bytes().all(|b| b.is_ascii_digit());
    let offset_ok = offset.eq_ignore_ascii_case("z")
        || matches!(offset[1..].split_once(':'), Some((h, m)) if two_digits(h, 23) && two_digits(m, 59));
    clock_ok && offset_ok
}

/// Whether `value` looks like an IANA time zone name (`Europe/London`, `America/Argentina/Salta`)
/// or `UTC`. Herald carries no time-zone database, so the name's shape is what is checked.
pub fn is_time_zone_name(value: &str) -> bool {
    if value == "UTC" {
        return true;
    }
    value.len() <= 64
        && value.contains('/')
        && value.split('/').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

/// Whether `value` is an email address: one `@`, a local part, a domain with a dot, no spaces.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    value.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `value` is a phone number: an optional `+`, then 7 to 15 digits, with spaces, dots,
/// dashes and parentheses allowed between them.
pub fn is_phone_number(value: &str) -> bool {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let rest = value.strip_prefix('+').unwrap_or(value);
    (7..=15).contains(&digits)
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')'))
}

/// Whether `value` is a phone number in E.164 form (`+` and 2-15 digits, the first not 0): the
/// form SMS and voice vendors take.
pub fn is_e164(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// What the seed's `BookingNotification` says changed, from `metadata.timelineChanges`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineChanges {
    pub new_wedding_date: Option<String>,
    pub new_wedding_time: Option<String>,
    pub new_venue: Option<String>,
    pub affected_sessions: Vec<String>,
}

impl WeddingNotification {
    /// The first contact with an email: the person a vendor that addresses people by email
    /// (a couple's client record, a conversation) reaches.
    pub fn first_contact_with_email(&self) -> Option<&Contact> {
        self.contacts.iter().find(|contact| {
            contact
                .email
                .as_deref()
                .is_some_and(|email| !email.trim().is_empty())
        })
    }
}

impl WeddingNotification {
    /// The seed's `metadata.timelineChanges` (checked at intake), if the notification has one.
    pub fn timeline_changes(&self) -> Option<TimelineChanges> {
        let changes = self.metadata.get("timelineChanges")?;
        let text = |key: &str| changes.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(TimelineChanges {
            new_wedding_date: text("newWeddingDate"),
            new_wedding_time: text("newWeddingTime"),
            new_venue: text("newVenue"),
            affected_sessions: changes
                .get("affectedSessions")
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The wedding's new date: the seed's `timelineChanges.newWeddingDate`, or for a
    /// `timeline_change` the date in its `weddingContext`.
    pub fn new_wedding_date(&self) -> Option<String> {
        self.timeline_changes()
            .and_then(|changes| changes.new_wedding_date)
            .or_else(|| {
                (self.notification_type == "timeline_change")
                    .then(|| {
                        self.wedding_context
                            .as_ref()
                            .map(|w| w.wedding_date.clone())
                    })
                    .flatten()
            })
    }

    /// The seed's booking status change: `metadata.newStatus` when `metadata.updatesBookingStatus`.
    pub fn new_booking_status(&self) -> Option<&str> {
        let updates = self.metadata.get("updatesBookingStatus")?.as_bool()?;
        updates
            .then(|| self.metadata.get("newStatus").and_then(Value::as_str))
            .flatten()
    }

    /// The seed's flag that the notification moves a deal in the CRM.
    pub fn affects_deal_stage(&self) -> bool {
        self.metadata
            .get("affectsDealStage")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// The seed's own keys inside `metadata` have types; the rest of `metadata` is free-form.
fn check_seed_metadata(field: &str, metadata: &Map<String, Value>) -> Result<(), FieldError> {
    let named = |key: &str| format!("{field}.{key}");
    for flag in ["updatesBookingStatus", "affectsDealStage"] {
        if metadata.get(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(FieldError::new(named(flag), "must be true or false"));
        }
    }
    if let Some(status) = metadata.get("newStatus") {
        if !status
            .as_str()
            .is_some_and(|s| !s.trim().is_empty() && s.len() <= 64)
        {
            return Err(FieldError::new(
                named("newStatus"),
                "must be a status name of 1-64 characters",
            ));
        }
    }
    if metadata.get("updatesBookingStatus") == Some(&Value::Bool(true))
        && !metadata.contains_key("newStatus")
    {
        return Err(FieldError::new(
            named("newStatus"),
            "is required when updatesBookingStatus is true: it names the new status",
        ));
    }
    let Some(changes) = metadata.get("timelineChanges") else {
        return Ok(());
    };
    let changes_field = named("timelineChanges");
    let Some(changes) = changes.as_object() else {
        return Err(FieldError::new(changes_field, "must be an object"));
    };
    let inner = |key: &str| format!("{changes_field}.{key}");
    for (key, value) in changes {
        let text = value.as_str();
        let wrong = match key.as_str() {
            "newWeddingDate" => (!text.is_some_and(is_iso_date))
                .then_some("must be a calendar date in the form YYYY-MM-DD"),
            "newWeddingTime" => {
                (!text.is_some_and(is_time_of_day)).then_some("must be a time of day like 15:30")
            }
            "newVenue" => (!text
                .is_some_and(|venue| !venue.trim().is_empty() && venue.chars().count() <= 500))
            .then_some("must be the venue's name (1-500 characters)"),
            "affectedSessions" => (!value.as_array().is_some_and(|ids| {
                ids.iter().all(|id| {
                    id.as_str()
                        .is_some_and(|id| check_identifier("", id).is_ok())
                })
            }))
            .then_some("must be a list of session ids"),
            _ => Some("is not one of newWeddingDate, newWeddingTime, newVenue, affectedSessions"),
        };
        if let Some(reason) = wrong {
            return Err(FieldError::new(inner(key), reason));
        }
    }
    Ok(())
}

/// Whether `text` is a time of day written `HH:MM` (24-hour).
pub fn is_time_of_day(text: &str) -> bool {
    let Some((hours, minutes)) = text.split_once(':') else {
        return false;
    };
    let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
    two_digits(hours) && two_digits(minutes) && hours < "24" && minutes < "60"
}

fn check_metadata(field: &str, metadata: &Map<String, Value>) -> Result<(), FieldError> {
    fn depth(value: &Value) -> usize {
        match value {
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let deepest = 1 + metadata.values().map(depth).max().unwrap_or(0);
    if deepest > MAX_METADATA_DEPTH {
        return Err(FieldError::new(
            field,
            format!("nests {deepest} deep; at most {MAX_METADATA_DEPTH}"),
        ));
    }
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        return Err(FieldError::new(
            field,
            format!("is {size} bytes of JSON; at most {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(())
}

/// Parses a JSON request body into `T`, naming the offending field when it fails.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = parsed.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // serde reports some type errors (an enum given a number) as syntax errors; the body
        // is only malformed if it is not JSON at all.
        let well_formed = || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        if (inner.is_syntax() || inner.is_eof()) && !well_formed() {
            ParseError::Malformed(inner.to_string())
        } else if inner.is_syntax() {
            let field = if path == "." { String::new() } else { path };
            ParseError::Invalid(FieldError::new(field, "has the wrong type"))
        } else {
            let reason = strip_position(&inner.to_string());
            let parent = if path == "." { String::new() } else { path };
            // serde reports a missing field at its parent; name the field itself.
            let field = match missing_field_name(&reason) {
                Some(name) if parent.is_empty() => name.to_owned(),
                Some(name) => format!("{parent}.{name}"),
                None => parent,
            };
            ParseError::Invalid(FieldError::new(field, reason))
        }
    })?;
    deserializer
        .end()
        .map_err(|err| ParseError::Malformed(err.to_string()))?;
    Ok(value)
}

fn missing_field_name(reason: &str) -> Option<&str> {
    reason.strip_prefix("missing field `")?.split('`').next()
}

/// serde_json appends " at line 1 column 42"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error(transparent)]
    Invalid(FieldError),
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_date_moves_by_the_days_between_two_others() {
        assert_eq!(
            shift_date("2027-06-06", "2027-06-05", "2027-06-12").as_deref(),
            Some("2027-06-13")
        );
        assert_eq!(
            shift_date("2027-03-01", "2027-02-28", "2027-02-27").as_deref(),
            Some("2027-02-28")
        );
        assert_eq!(
            shift_date("2028-01-01", "2027-12-31", "2027-12-31").as_deref(),
            Some("2028-01-01")
        );
        assert_eq!(shift_date("someday", "2027-12-31", "2028-01-02"), None);
        assert_eq!(day_number("1970-01-02"), Some(1));
        assert_eq!(
            date_of_day(day_number("2028-02-29").unwrap()).as_deref(),
            Some("2028-02-29")
        );
    }

    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "notificationId": "n-1",
            "type": "timeline_change",
            "priority": "high",
            "title": "Ceremony moved",
            "message": "The ceremony now starts at 15:30",
            "weddingContext": {"weddingId": "w-1", "weddingDate": "2027-06-12", "venue": "Kew Gardens"}
        })
    }

    fn parse(value: serde_json::Value) -> Result<WeddingNotification, ParseError> {
        parse_json(value.to_string().as_bytes())
    }

    #[test]
    fn accepts_the_platform_shape() {
        let notification = parse(sample()).unwrap();
        assert_eq!(notification.priority, Priority::High);
        assert_eq!(
            notification.wedding_context.unwrap().venue.as_deref(),
            Some("Kew Gardens")
        );
    }

    #[test]
    fn a_venue_location_is_read_and_kept_on_the_globe() {
        let mut value = sample();
        value["weddingContext"]["venueLocation"] =
            serde_json::json!({"latitude": 35.2271, "longitude": -80.8431});
        let notification = parse(value.clone()).unwrap();
        assert_eq!(
            notification.wedding_context.unwrap().venue_location,
            Some(VenueLocation {
                latitude: 35.2271,
                longitude: -80.8431
            })
        );
        value["weddingContext"]["venueLocation"]["longitude"] = serde_json::json!(-180.5);
        let err = parse(value.clone())
            .unwrap()
            .validate("", "org")
            .unwrap_err();
        assert_eq!(err.field, "weddingContext.venueLocation.longitude");
        value["weddingContext"]["venueLocation"] = serde_json::json!({"latitude": 35.2});
        let ParseError::Invalid(err) = parse(value).unwrap_err() else {
            panic!("expected a field error")
        };
        assert_eq!(err.field, "weddingContext.venueLocation.longitude");
        assert!(err.reason.contains("missing"), "{}", err.reason);
    }

    #[test]
    fn unknown_fields_are_named() {
        let mut value = sample();
        value["weddingContext"]["colour"] = "blue".into();
        let ParseError::Invalid(err) = parse(value).unwrap_err() else {
            panic!("expected a field error")
        };
        assert_eq!(err.field, "weddingContext.colour");
        assert!(
            err.reason.contains("unknown field `colour`"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_are_named() {
        let mut value = sample();
        value["priority"] = "urgent".into();
        let ParseError::Invalid(err) = parse(value).unwrap_err() else {
            panic!()
        };
        assert_eq!(err.field, "priority");
        let mut value = sample();
        value.as_object_mut().unwrap().remove("title");
        let ParseError::Invalid(err) = parse(value).unwrap_err() else {
            panic!()
        };
        assert_eq!(err.field, "title");
        assert!(
            err.reason.contains("missing field `title`"),
            "{}",
            err.reason
        );
        let mut value = sample();
        value["weddingContext"]
            .as_object_mut()
            .unwrap()
            .remove("weddingDate");
        let ParseError::Invalid(err) = parse(value).unwrap_err() else {
            panic!()
        };
        assert_eq!(err.field, "weddingContext.weddingDate");
    }

    #[test]
    fn wrong_types_in_well_formed_json_are_named_field_errors() {
        for wrong in [
            json_value(5),
            json_value(true),
            Value::Null,
            json_value(vec![1]),
        ] {
            let mut value = sample();
            value["priority"] = wrong.clone();
            let ParseError::Invalid(err) = parse(value).unwrap_err() else {
                panic!("{wrong} is a field error")
            };
            assert_eq!(err.field, "priority");
            assert!(err.reason.contains("\"emergency\""), "{}", err.reason);
        }
        let mut value = sample();
        value["weddingContext"]["guestCount"] = "many".into();
        let ParseError::Invalid(err) = parse(value).unwrap_err() else {
            panic!()
        };
        assert_eq!(err.field, "weddingContext.guestCount");
        let batch = serde_json::json!({"notifications": [sample(), {"notificationId": "x", "type": "t", "priority": 5, "title": "a", "message": "b"}]});
        let ParseError::Invalid(err) =
            parse_json::<NotificationBatch>(batch.to_string().as_bytes()).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(err.field, "notifications[1].priority");
    }

    fn json_value(value: impl Serialize) -> Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn malformed_json_is_not_a_field_error() {
        assert!(matches!(
            parse_json::<WeddingNotification>(b"{\"notificationId\": "),
            Err(ParseError::Malformed(_))
        ));
        let trailing = format!("{} trailing", sample());
        assert!(matches!(
            parse_json::<WeddingNotification>(trailing.as_bytes()),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn validation_names_the_field_with_its_batch_position() {
        let mut value = sample();
        value["weddingContext"]["weddingDate"] = "12/06/2027".into();
        let notification = parse(value).unwrap();
        let err = notification
            .validate("notifications[3]", "org")
            .unwrap_err();
        assert_eq!(err.field, "notifications[3].weddingContext.weddingDate");
        let mut value = sample();
        value["organizationId"] = "someone-else".into();
        assert_eq!(
            parse(value).unwrap().validate("", "org").unwrap_err().field,
            "organizationId"
        );
        let mut value = sample();
        value["title"] = "   ".into();
        assert_eq!(
            parse(value).unwrap().validate("", "org").unwrap_err().field,
            "title"
        );
    }

    #[tokio::test]
    async fn transformation_maps_rewrite_title_and_message_from_templates() {
        let notification = parse(sample()).unwrap();
        let map = TransformationMap {
            title: Some("[{{ weddingContext.venue }}] {{ title }}".into()),
            message: None,
        };
        let transformed = map
            .apply(&notification, "transformationMaps.crm")
            .await
            .unwrap();
        assert_eq!(transformed.title, "[Kew Gardens] Ceremony moved");
        assert_eq!(transformed.message, notification.message);
        let broken = TransformationMap {
            title: None,
            message: Some("{{ message | nosuchfilter }}".into()),
        };
        assert_eq!(
            field_of(broken.apply(&notification, "transformationMaps.crm").await),
            "transformationMaps.crm.message"
        );
        let empty = TransformationMap {
            title: Some("{{ nothing }}".into()),
            message: None,
        };
        assert_eq!(
            field_of(empty.apply(&notification, "transformationMaps.crm").await),
            "transformationMaps.crm.title"
        );
    }

    fn field_of(result: Result<WeddingNotification, TransformError>) -> String {
        match result {
            Err(TransformError::Invalid(err)) => err.field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn dates_are_checked_for_shape_and_range() {
        assert!(is_iso_date("2027-06-12"));
        assert!(is_iso_date("2028-02-29"));
        assert!(!is_iso_date("2027-02-29"));
        assert!(!is_iso_date("2027-02-30"));
        assert!(!is_iso_date("2027-04-31"));
        assert!(!is_iso_date("0000-01-01"));
        assert!(!is_iso_date("2027-13-12"));
        assert!(!is_iso_date("2027-6-12"));
        assert!(!is_iso_date("tomorrow"));
    }

    #[test]
    fn timestamps_zones_emails_and_phones_are_checked() {
        assert!(is_rfc3339_timestamp("2027-06-12T09:30:00Z"));
        assert!(is_rfc3339_timestamp("2027-06-12T09:30:00.123+01:00"));
        assert!(!is_rfc3339_timestamp("yesterday"));
        assert!(!is_rfc3339_timestamp("2027-06-12"));
        assert!(!is_rfc3339_timestamp("2027-06-12T25:30:00Z"));
        assert!(!is_rfc3339_timestamp("2027-06-12T09:30:00"));
        assert!(is_time_zone_name("Europe/London"));
        assert!(is_time_zone_name("America/Argentina/Salta"));
        assert!(is_time_zone_name("UTC"));
        assert!(!is_time_zone_name("london"));
        assert!(!is_time_zone_name("Europe/London; DROP"));
        assert!(is_email("planner@example.com"));
        assert!(!is_email("planner"));
        assert!(!is_email("a b@example.com"));
        assert!(!is_email("a@localhost"));
        assert!(is_phone_number("+44 7700 900123"));
        assert!(is_phone_number("(555) 010-0199"));
        assert!(!is_phone_number("call me"));
        assert!(!is_phone_number("12"));
    }

    #[test]
    fn the_seeds_metadata_keys_are_typed() {
        for (metadata, field) in [
            (
                serde_json::json!({"timelineChanges": "soon"}),
                "metadata.timelineChanges",
            ),
            (
                serde_json::json!({"timelineChanges": {"newWeddingTime": "3pm"}}),
                "metadata.timelineChanges.newWeddingTime",
            ),
            (
                serde_json::json!({"timelineChanges": {"newVenue": " "}}),
                "metadata.timelineChanges.newVenue",
            ),
            (
                serde_json::json!({"timelineChanges": {"affectedSessions": [1]}}),
                "metadata.timelineChanges.affectedSessions",
            ),
            (
                serde_json::json!({"timelineChanges": {"newDj": "x"}}),
                "metadata.timelineChanges.newDj",
            ),
            (
                serde_json::json!({"updatesBookingStatus": "yes"}),
                "metadata.updatesBookingStatus",
            ),
            (
                serde_json::json!({"updatesBookingStatus": true}),
                "metadata.newStatus",
            ),
            (
                serde_json::json!({"affectsDealStage": 1}),
                "metadata.affectsDealStage",
            ),
        ] {
            let mut value = sample();
            value["metadata"] = metadata.clone();
            let err = parse(value).unwrap().validate("", "org").unwrap_err();
            assert_eq!(err.field, field, "{metadata}");
        }
        let mut value = sample();
        value["metadata"] = serde_json::json!({"timelineChanges": {"newWeddingDate": "2027-07-03", "newWeddingTime": "15:30", "newVenue": "Syon Park", "affectedSessions": ["S-1"]}, "updatesBookingStatus": true, "newStatus": "confirmed", "affectsDealStage": false});
        let notification = parse(value).unwrap();
        notification.validate("", "org").unwrap();
        assert_eq!(
            notification.new_wedding_date().as_deref(),
            Some("2027-07-03")
        );
        assert_eq!(notification.new_booking_status(), Some("confirmed"));
        assert!(!notification.affects_deal_stage());
    }

    #[test]
    fn metadata_is_bounded_in_size_and_depth() {
        let mut value = sample();
        value["metadata"] =
            serde_json::json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": [1]}}}}}}}});
        let err = parse(value).unwrap().validate("", "org").unwrap_err();
        assert_eq!(err.field, "metadata");
        let mut value = sample();
        value["metadata"] = serde_json::json!({"notes": "x".repeat(MAX_METADATA_BYTES)});
        let err = parse(value).unwrap().validate("", "org").unwrap_err();
        assert_eq!(err.field, "metadata");
        assert!(err.reason.contains("at most 65536"), "{}", err.reason);
    }
}
