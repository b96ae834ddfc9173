//! The vendor registry: every system Herald delivers to, one folder each, listed once in
//! [`all`].
//!
//! A vendor's folder holds everything about it: its settings (parsed and validated by the vendor
//! itself), its documented default rate, its connector, its simulator and its README (what the
//! vendor's API allows and what it does not). The rest of Herald reaches a vendor only through
//! the [`Vendor`] and [`VendorSettings`] traits: configuration asks the registry to parse an
//! integration's `settings`, the integration actor asks the settings to build a connector, and
//! the API, the CLI and the docs read the registry. Adding a vendor is a new folder and one line
//! in [`all`].

pub mod asana;
pub mod automation;
pub mod discord;
pub mod dubsado;
pub mod dynamics365;
pub mod email;
pub mod google_calendar;
pub mod honeybook;
pub mod hubspot;
pub mod inbound;
pub mod intercom;
pub mod microsoft_calendar;
pub mod monday;
pub mod pagerduty;
pub mod pipedrive;
pub mod pixifi;
pub mod quickbooks;
pub mod salesforce;
pub mod slack;
pub mod smtp;
pub mod stripe;
pub mod studio_ninja;
pub mod tave;
pub mod teams;
pub mod telegram;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tripleseat;
pub mod twilio;
pub mod weather;
pub mod webhook;
pub mod wedding_event;
pub mod whatsapp;
pub mod zoho;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;
use inbound::{InboundHandler, OAuthInstall};

/// Every vendor this build of Herald delivers to, in the order they are listed to people.
pub fn all() -> &'static [&'static dyn Vendor] {
    &[
        &asana::Asana,
        &discord::Discord,
        &dubsado::VENDOR,
        &dynamics365::Dynamics365,
        &email::VENDOR,
        &google_calendar::GoogleCalendar,
        &honeybook::VENDOR,
        &hubspot::HubSpot,
        &intercom::Intercom,
        &microsoft_calendar::MicrosoftCalendar,
        &monday::Monday,
        &pagerduty::PagerDuty,
        &pipedrive::Pipedrive,
        &pixifi::VENDOR,
        &quickbooks::QuickBooks,
        &salesforce::Salesforce,
        &slack::Slack,
        &stripe::Stripe,
        &studio_ninja::VENDOR,
        &tave::Tave,
        &teams::Teams,
        &telegram::Telegram,
        &tripleseat::Tripleseat,
        &twilio::Twilio,
        &weather::Weather,
        &webhook::Webhook,
        &whatsapp::WhatsApp,
        &zoho::Zoho,
    ]
}

/// The vendor registered under `kind`. With the `testing` feature, the connectors that exist for
/// benches and supervision tests (`null`, `panic`) are found too, though [`all`] never lists them.
pub fn find(kind: &str) -> Option<&'static dyn Vendor> {
    let registered = all().iter().copied();
    #[cfg(feature = "testing")]
    let registered = registered.chain(testing::all().iter().copied());
    registered.into_iter().find(|vendor| vendor.kind() == kind)
}

/// The registry as people read it (`herald vendors`): each vendor with its type, authentication,
/// default rate and where the figure comes from, the seed operations it implements and what it
/// sends Herald.
pub fn describe_all() -> String {
    let mut text = String::new();
    for vendor in all() {
        let d = vendor.describe();
        let rate = d.default_rate;
        text.push_str(&format!(
            "{}  ({}, {})\n  default rate: {}/s, burst {}: {}\n",
            d.kind,
            d.integration_type.as_str(),
            d.authentication,
            rate.per_second,
            rate.burst,
            rate.source
        ));
        for operation in d.seed_operations {
            text.push_str(&format!(
                "  {}: {}\n",
                operation.name, operation.implemented_by
            ));
        }
        for inbound in d.inbound {
            text.push_str(&format!("  inbound {inbound}\n"));
        }
    }
    text
}

/// The registry as the README's vendor table (`herald vendors --markdown`); a test keeps the
/// README's copy equal to it.
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| kind | integrationType | authentication | default rate | seed operations | inbound |\n|---|---|---|---|---|---|\n",
    );
    for vendor in all() {
        let d = vendor.describe();
        let operations: Vec<String> = d
            .seed_operations
            .iter()
            .map(|operation| format!("`{}`: {}", operation.name, operation.implemented_by))
            .collect();
        let inbound: Vec<String> = d.inbound.iter().map(|line| format!("`{line}`")).collect();
        table.push_str(&format!(
            "| [`{kind}`](src/vendors/{kind}/README.md) | `{}` | {} | {}/s, burst {} ({}) | {} | {} |\n",
            d.integration_type.as_str(),
            d.authentication,
            d.default_rate.per_second,
            d.default_rate.burst,
            d.default_rate.source,
            operations.join("; "),
            if inbound.is_empty() { "none".to_owned() } else { inbound.join("; ") },
            kind = d.kind,
        ));
    }
    table
}

/// A vendor: what it is ([`VendorDescription`]) and how it reads an integration's settings. One
/// implementation per folder.
pub trait Vendor: Send + Sync + 'static {
    fn describe(&self) -> &'static VendorDescription;
    /// Parses and validates an integration's `settings`; errors name the settings key.
    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError>;

    /// The vendor's simulator, for the conformance suite and `herald demo --all`. Every vendor in
    /// [`all`] has one (a test says so); the testing vendors have none.
    fn simulation(&self) -> Option<&dyn Simulation>;

    /// The vendor's handler of what it sends Herald (`/inbound/<kind>/...`), if it sends anything.
    fn inbound_handler(&self) -> Option<&dyn InboundHandler> {
        None
    }

    /// Whether Herald reads the vendor on a schedule (its connectors' [`Connector::poll`]).
    fn polled(&self) -> bool {
        false
    }

    /// How the vendor's apps are installed through Herald with OAuth, if they are.
    fn oauth_install(&self) -> Option<&dyn OAuthInstall> {
        None
    }

    /// The integration `kind` in configuration and the API (`slack`), also the metrics label.
    fn kind(&self) -> &'static str {
        self.describe().kind
    }
}

pub type SimulatorFuture<'a> =
    Pin<Box<dyn Future<Output = std::io::Result<Box<dyn RunningSimulator>>> + Send + 'a>>;

/// Starts a vendor's simulator with credentials it accepts.
pub trait Simulation: Send + Sync {
    fn start(&self, addr: SocketAddr) -> SimulatorFuture<'_>;
}

/// A running simulator as the conformance suite drives it: what reaches it, how to break it in the
/// vendor's own words, and what the vendor delivers. It stops when dropped.
pub trait RunningSimulator: Send + Sync {
    fn faults(&self) -> &Faults;
    fn recorder(&self) -> &Recorder;
    /// The credential the simulator accepts, to be kept where `settings`' secret points.
    fn credential(&self) -> String;
    /// An integration's `settings` (the inside of a TOML inline table) that reach this simulator,
    /// reading the credential from `secret` (a TOML secret reference, `{ file = "..." }`).
    fn settings(&self, secret: &str) -> String;
    /// A notification with this id that the vendor delivers.
    fn sample_notification(&self, notification_id: &str) -> serde_json::Value;
    /// The address Herald's settings point at, and a few words on what the simulator holds.
    fn address(&self) -> String;
    fn about(&self) -> String;
    /// One recorded request in a few words, for `herald sandbox`'s log of what arrived.
    fn describe_request(&self, request: &RecordedRequest) -> String;
    /// Holds the simulator to the vendor's published rate limits from now on, answering beyond
    /// them with the vendor's own 429. Where the simulator always holds to them, or the vendor
    /// publishes none, there is nothing to turn on.
    fn hold_to_published_limits(&self);
    /// The vendor's answer while it is down (a 5xx).
    fn outage(&self) -> ScriptedResponse;
    /// The vendor refusing the credential (expired, revoked): Herald reloads it and tries once more.
    fn credential_refused(&self) -> ScriptedResponse;
    /// The vendor's rate-limit answer: a 429 with `Retry-After: 1`, or, for a vendor that answers
    /// rate limits otherwise (Salesforce's 403), its own answer, after which Herald waits at least
    /// a second.
    fn rate_limited(&self) -> ScriptedResponse;
    /// The vendor refusing the request as invalid, and a phrase of its message that Herald's dead
    /// letter must keep.
    fn validation_error(&self) -> (ScriptedResponse, &'static str);
}

/// Parses a configuration of one organization, `studio`, with `integration` (a TOML
/// `[[integrations]]` table) added: how the vendors' settings tests check their validation.
#[cfg(test)]
pub(crate) fn parse_with_studio(
    integration: &str,
) -> Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::parse(
        &format!("[[organizations]]\nid = \"studio\"\n{integration}"),
        "test.toml",
    )
}

/// The notification every simulator's sample starts from: a timeline change of one wedding.
pub fn base_sample_notification(notification_id: &str) -> serde_json::Value {
    serde_json::json!({
        "notificationId": notification_id,
        "type": "timeline_change",
        "priority": "normal",
        "title": "Ceremony moved",
        "message": "The ceremony now starts at 15:30",
        "weddingContext": {"weddingId": "w-sample", "weddingDate": "2027-06-12", "venue": "Kew Gardens"}
    })
}

/// What a vendor is, as the registry lists it (`herald vendors`, the API, the docs).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VendorDescription {
    pub kind: &'static str,
    /// The vendor's name as people write it (`HubSpot`).
    pub name: &'static str,
    /// The seed's `IntegrationType` of the vendor.
    pub integration_type: IntegrationType,
    /// How Herald authenticates to the vendor, in a few words (`bearer-token`).
    pub authentication: &'static str,
    /// The vendor's documented rate, used unless an integration's `rate_limit` overrides it.
    pub default_rate: DefaultRate,
    /// The seed's operations this vendor implements, each with the vendor calls it maps to.
    pub seed_operations: &'static [SeedOperation],
    /// What the vendor can send Herald (signed webhooks, OAuth callbacks), each as
    /// `METHOD path: what it does`; empty when it sends nothing.
    pub inbound: &'static [&'static str],
    /// The notifications the vendor can act on, as a route condition (CEL), when it cannot act
    /// on every one (a CRM needs contacts); `herald sandbox` routes by it.
    pub takes: Option<&'static str>,
}

impl fmt::Debug for dyn Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// One integration's settings for its vendor, already validated.
pub trait VendorSettings: Any + fmt::Debug + Send + Sync {
    /// The secrets the connector reads when it starts.
    fn secrets(&self) -> Vec<&SecretRef>;
    /// Where, under `settings`, a credential is named that Herald itself must keep sealed (an
    /// OAuth app installed through Herald, a webhook secret the vendor chose): such an
    /// integration needs `security.credentials_key`.
    fn keeps_credentials_at(&self) -> Option<&'static str> {
        None
    }
    /// Builds the integration's connector.
    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError>;
}

impl dyn VendorSettings {
    /// The settings as the vendor's own type, for the vendor's inbound handlers.
    pub fn downcast_ref<T: VendorSettings>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref()
    }
}

/// What a connector is built for: the integration's id and its per-attempt timeout.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorTarget<'a> {
    pub integration_id: &'a str,
    pub timeout: Duration,
}

/// A vendor's default rate and where the figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultRate {
    pub per_second: f64,
    pub burst: u32,
    /// The vendor's published limit the figure stays inside, or why there is none.
    pub source: &'static str,
    /// That limit as a window, where the vendor publishes an exact one: a test holds the default
    /// rate inside it.
    pub window: Option<RateWindow>,
}

/// A vendor's published limit: at most `requests` in any `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateWindow {
    pub requests: u32,
    pub seconds: u64,
}

/// One of the seed's connector operations and what the vendor does for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedOperation {
    /// The seed's name (`syncNotificationToContacts`).
    pub name: &'static str,
    /// The vendor calls it maps to, or what is done instead.
    pub implemented_by: &'static str,
}

/// A problem with an integration's settings: the key under `settings` (empty for the settings
/// as a whole) and the reason, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    pub field: String,
    pub reason: String,
}

impl SettingsError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks a vendor's `quiet_hours`, naming the field (`quiet_hours.time_zone`).
pub(crate) fn check_quiet_hours(
    quiet: &Option<crate::connectors::quiet_hours::QuietHours>,
) -> Result<(), SettingsError> {
    match quiet {
        Some(quiet) => quiet
            .check()
            .map_err(|err| SettingsError::new(format!("quiet_hours.{}", err.field), err.reason)),
        None => Ok(()),
    }
}

/// Deserializes settings into the vendor's type; a mistake is named by its path (`reminders[0].at`).
pub fn deserialize_settings<T: DeserializeOwned>(
    settings: serde_json::Value,
) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(settings).map_err(|err| {
        let path = err.path().to_string();
        SettingsError::new(
            if path == "." { String::new() } else { path },
            err.into_inner().to_string(),
        )
    })
}

/// Whether `address` is an absolute http(s) URL with a host.
pub fn is_http_url(address: &str) -> bool {
    url::Url::parse(address)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendor_ships_a_simulator() {
        for vendor in all() {
            assert!(vendor.simulation().is_some(), "{}", vendor.kind());
        }
    }

    #[test]
    fn kinds_are_unique_and_found_by_kind() {
        let kinds: Vec<&str> = all().iter().map(|vendor| vendor.kind()).collect();
        assert_eq!(
            kinds,
            [
                "asana",
                "discord",
                "dubsado",
                "dynamics365",
                "email",
                "google_calendar",
                "honeybook",
                "hubspot",
                "intercom",
                "microsoft_calendar",
                "monday",
                "pagerduty",
                "pipedrive",
                "pixifi",
                "quickbooks",
                "salesforce",
                "slack",
                "stripe",
                "studio_ninja",
                "tave",
                "teams",
                "telegram",
                "tripleseat",
                "twilio",
                "weather",
                "webhook",
                "whatsapp",
                "zoho"
            ]
        );
        for kind in kinds {
            assert_eq!(find(kind).map(|vendor| vendor.kind()), Some(kind));
        }
        assert!(find("carrier_pigeon").is_none());
    }

    #[test]
    fn the_readme_lists_the_registry() {
        let readme = include_str!("../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README's vendor table differs from the registry; replace it with `herald vendors --markdown`:\n{table}"
        );
    }

    #[test]
    fn each_vendor_folder_has_a_readme() {
        for vendor in all() {
            let path = format!(
                "{}/src/vendors/{}/README.md",
                env!("CARGO_MANIFEST_DIR"),
                vendor.kind()
            );
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                text.contains("## What the vendor's API does not allow"),
                "{path} says what the vendor's API does not allow"
            );
        }
    }
}
