//! Daemon configuration: figment layering (built-in defaults, then the `--config` file, then
//! `HERALD_` environment variables) into `deny_unknown_fields` raw structs, and `validate()` from
//! those into the typed [`Config`] the rest of Herald uses.
//!
//! This module owns every rule about what a valid configuration is, and says which file, field
//! and (where it can find it) line is wrong. It does not open stores or build connectors; it only
//! describes them. Secrets are never in the configuration, only references to where they live.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::secret::SecretRef;
use crate::vendors::{self, DefaultRate, SettingsError, Vendor, VendorSettings};
use crate::wedsync::Priority;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(String),
    #[error("{location}: {field}: {reason}")]
    Invalid {
        location: String,
        field: String,
        reason: String,
    },
    /// Every problem of a file, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

// === raw, as written ===

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub supervision: RawSupervision,
    #[serde(default)]
    pub organizations: Vec<RawOrganization>,
    #[serde(default)]
    pub integrations: Vec<RawIntegration>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// How long a connection may take to send a request's headers, and stay idle between requests.
    pub header_timeout: Option<String>,
    /// How long a request's body may take to arrive.
    pub body_timeout: Option<String>,
    /// With it, `GET /metrics` needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<SecretRef>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub kind: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL connection string, as a secret reference (it may hold a password).
    pub url: Option<SecretRef>,
    pub schema: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    /// Lets connectors call private, loopback and link-local addresses (simulators, on-premise
    /// systems). Off by default: user-supplied URLs must not reach into the network Herald runs in.
    pub allow_private_destinations: Option<bool>,
    /// The key that seals credentials Herald keeps itself (an OAuth install's refresh token):
    /// 32 random bytes in base64.
    pub credentials_key: Option<SecretRef>,
    /// Keys that sealed credentials before the current one: they still open them, until
    /// `herald vault rotate-key` has re-sealed everything under `credentials_key`.
    #[serde(default)]
    pub previous_credentials_keys: Vec<SecretRef>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSupervision {
    pub max_restarts: Option<u32>,
    pub within: Option<String>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    /// How long an integration's actor waits without work before it stops (it starts again on
    /// the next delivery).
    pub idle_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrganization {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntegration {
    pub id: String,
    pub organization: String,
    pub kind: String,
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub breaker: RawBreaker,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub failover: RawFailover,
    pub max_in_flight: Option<usize>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: Option<f64>,
    pub burst: Option<u32>,
    pub emergency_reserve: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failure_threshold: Option<u32>,
    pub open_for: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: Option<u32>,
    pub initial: Option<String>,
    pub max_delay: Option<String>,
    pub max_age: Option<String>,
    pub max_retry_after: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    #[serde(default)]
    pub targets: Vec<String>,
    pub on_circuit_open: Option<bool>,
    pub emergency_after_attempts: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub organization: String,
    pub name: String,
    #[serde(default)]
    pub types: Vec<String>,
    pub min_priority: Option<Priority>,
    /// A CEL condition over `notification`, `wedding` and `metadata`.
    pub when: Option<String>,
    pub targets: Vec<String>,
}

// === validated ===

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub allow_private_destinations: bool,
    /// Seals the credentials the vault keeps; without it Herald keeps none.
    pub credentials_key: Option<SecretRef>,
    /// Earlier keys, which still open what they sealed (a rotation under way).
    pub previous_credentials_keys: Vec<SecretRef>,
    pub supervision: SupervisionConfig,
    pub organizations: Vec<String>,
    pub integrations: Vec<IntegrationConfig>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// The bearer token Prometheus scrapes `/metrics` with; without it `/metrics` is open.
    pub metrics_token: Option<SecretRef>,
}

#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite { data_dir: PathBuf },
    Postgres { url: SecretRef, schema: String },
}

#[derive(Debug, Clone, Copy)]
pub struct SupervisionConfig {
    pub max_restarts: u32,
    pub within: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub idle_after: Duration,
}

#[derive(Debug, Clone)]
pub struct IntegrationConfig {
    pub id: String,
    pub organization: String,
    /// The vendor, from the registry.
    pub vendor: &'static dyn Vendor,
    /// The vendor's settings, validated by the vendor.
    pub settings: Arc<dyn VendorSettings>,
    pub rate_limit: RateLimitConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
    pub failover: FailoverConfig,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub source: Source,
}

/// Where an integration's or a route's definition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The operator's configuration file: read-only through the API.
    Config,
    /// Created through the API and kept in the store, at this version.
    Api {
        version: i64,
        created_at: i64,
        updated_at: i64,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    pub per_second: f64,
    pub burst: u32,
    /// The share of the rate kept for emergencies: normal traffic never uses it.
    pub emergency_reserve: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max_delay: Duration,
    pub max_age: Duration,
    pub max_retry_after: Duration,
}

#[derive(Debug, Clone)]
pub struct FailoverConfig {
    pub targets: Vec<String>,
    pub on_circuit_open: bool,
    /// An emergency whose delivery failed this many times (retryably) goes to the backup at
    /// once instead of being retried here: it cannot wait for the circuit to open.
    pub emergency_after_attempts: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `config-{n}` for the file's nth route; chosen by WedSync (or Herald) for one from the API.
    pub id: String,
    pub organization: String,
    pub name: String,
    pub types: Vec<String>,
    pub min_priority: Option<Priority>,
    pub when: Option<Condition>,
    pub targets: Vec<String>,
    pub source: Source,
}

// === loading ===

/// The prefix of environment variables that override the configuration file. It is not just
/// `HERALD_`, because Herald's own client variables (`HERALD_URL`, `HERALD_API_KEY`, read by
/// `herald send`) must not be taken for configuration keys.
pub const ENV_PREFIX: &str = "HERALD_CONFIG__";

/// Loads built-in defaults, then `file` (if any), then `HERALD_CONFIG__*` environment variables
/// (`HERALD_CONFIG__SERVER__LISTEN=0.0.0.0:8470`), and validates the result.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    let mut text = String::new();
    if let Some(path) = file {
        text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::Load(format!("{}: cannot read: {err}", path.display())))?;
        figment = figment.merge(Toml::string(&text));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    let location = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".to_owned());
    let raw: RawConfig = figment
        .extract()
        .map_err(|err| describe_figment_error(&location, &text, err))?;
    raw.validate(&location, &text)
}

/// Parses and validates a configuration written as TOML, without environment overrides (the
/// demo, tests and `check-config` of generated files use it).
pub fn parse(text: &str, location: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(text))
        .extract()
        .map_err(|err| describe_figment_error(location, text, err))?;
    raw.validate(location, text)
}

fn describe_figment_error(location: &str, text: &str, err: figment::Error) -> ConfigError {
    let mut messages = Vec::new();
    for error in err {
        // One path style for every problem: `integrations[0].retry.max_attempts`.
        let path = error.path.iter().fold(String::new(), |path, key| {
            if key.bytes().all(|b| b.is_ascii_digit()) && !path.is_empty() {
                format!("{path}[{key}]")
            } else if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            }
        });
        let kind = in_plain_words(&error.kind.to_string());
        // A value from the environment is blamed on its variable, not on the file.
        let from_environment = error
            .metadata
            .as_ref()
            .is_some_and(|metadata| metadata.name.contains("environment"));
        if from_environment {
            let variable = format!("{ENV_PREFIX}{}", error.path.join("__").to_uppercase());
            messages.push(format!("environment variable {variable}: {kind}"));
            continue;
        }
        let line = error
            .path
            .last()
            .and_then(|key| line_of(text, &format!("{key} =")).or_else(|| line_of(text, key)));
        let place = match (path.is_empty(), line) {
            (true, _) => location.to_owned(),
            (false, Some(line)) => format!("{location}:{line}: {path}"),
            (false, None) => format!("{location}: {path}"),
        };
        messages.push(format!("{place}: {kind}"));
    }
    ConfigError::Load(messages.join("\n"))
}

/// serde's messages name Rust types (`expected f64`); a configuration's author reads TOML.
fn in_plain_words(message: &str) -> String {
    let mut plain = message.to_owned();
    for (rust, words) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u8", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        plain = plain.replace(rust, words);
    }
    plain
}

/// Finds the line of a field written as `section.key`, `tables[2].key` or `tables[2].a.b`: the
/// table's header (the nth `[[tables]]`), then the key's line within that table.
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let (table, rest) = field.split_once('.')?;
    let key = rest.split(['.', '[']).next()?;
    let (name, nth) = match table.split_once('[') {
        Some((name, index)) => (name, index.trim_end_matches(']').parse::<usize>().ok()?),
        None => (table, 0),
    };
    let header = if table.contains('[') {
        format!("[[{name}]]")
    } else {
        format!("[{name}]")
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.trim() == header)
        .nth(nth)?
        .0;
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, line)| line.trim_start().starts_with('['))
        .map_or(lines.len(), |(i, _)| i);
    (start + 1..end)
        .find(|&i| {
            let line = lines[i].trim_start();
            line.strip_prefix(key)
                .is_some_and(|after| after.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
        .or(Some(start + 1))
}

/// Returns the 1-based line of the first line that contains `needle`, if any.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
}

pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|err| format!("{value:?} is not a duration like \"30s\" ({err})"))
}

// === impl RawIntegration ===

/// Where an integration comes from, which decides where its secrets may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// The operator's configuration file: secrets are read from `env` or `file`, never written
    /// into the file itself.
    File,
    /// WedSync, through the API: secrets arrive as values and are sealed by the vault; `env` and
    /// `file` references are refused (they would let a caller have Herald send the daemon's own
    /// variables or files to an address of the caller's choice).
    Api,
}

impl RawIntegration {
    /// Checks everything about this integration that does not depend on the others (the vendor
    /// and its settings, rates, retries, durations); what the others decide (a unique id, failover
    /// targets that exist) is its caller's. Returns every problem as (field under the
    /// integration, reason), and the integration whenever its vendor and settings could be read
    /// (with defaults where another field was wrong, so the caller can check the others against
    /// it): it is usable only if there is no problem.
    pub fn check(
        &self,
        origin: SecretOrigin,
    ) -> (Option<IntegrationConfig>, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let Some(vendor) = vendors::find(&self.kind) else {
            problems.push(("kind".to_owned(), unknown_kind(&self.kind)));
            return (None, problems);
        };
        let settings = serde_json::to_value(&self.settings)
            .map_err(|err| SettingsError::new("", err.to_string()))
            .and_then(|settings| vendor.parse_settings(settings));
        let settings = match settings {
            Ok(settings) => settings,
            Err(SettingsError { field, reason }) => {
                let field = if field.is_empty() {
                    "settings".to_owned()
                } else {
                    format!("settings.{field}")
                };
                problems.push((field, format!("integration {:?}: {reason}", self.id)));
                return (None, problems);
            }
        };
        let misplaced = settings.secrets().into_iter().any(|secret| match origin {
            SecretOrigin::File => matches!(secret, SecretRef::Value(_)),
            SecretOrigin::Api => !matches!(secret, SecretRef::Value(_)),
        });
        if misplaced {
            problems.push((
                "settings".to_owned(),
                match origin {
                    SecretOrigin::File => "a secret in the configuration file is read from where it lives ({ env = \"VAR\" } or { file = \"path\" }), not written into the file".to_owned(),
                    SecretOrigin::Api => "an integration created through the API takes its secrets as values ({\"value\": \"...\"}), never as env or file references".to_owned(),
                },
            ));
        }
        let mut duration = |field: &str, value: &Option<String>, default: Duration| match value {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|reason| {
                problems.push((field.to_owned(), reason));
                default
            }),
        };
        let retry = RetryConfig {
            max_attempts: self.retry.max_attempts.unwrap_or(8).max(1),
            initial: duration(
                "retry.initial",
                &self.retry.initial,
                Duration::from_millis(500),
            ),
            max_delay: duration(
                "retry.max_delay",
                &self.retry.max_delay,
                Duration::from_secs(300),
            ),
            max_age: duration(
                "retry.max_age",
                &self.retry.max_age,
                Duration::from_secs(24 * 3600),
            ),
            max_retry_after: duration(
                "retry.max_retry_after",
                &self.retry.max_retry_after,
                Duration::from_secs(3600),
            ),
        };
        let breaker = BreakerConfig {
            failure_threshold: self.breaker.failure_threshold.unwrap_or(5).max(1),
            open_for: duration(
                "breaker.open_for",
                &self.breaker.open_for,
                Duration::from_secs(10),
            ),
        };
        let timeout = duration("timeout", &self.timeout, Duration::from_secs(10));
        let DefaultRate {
            per_second, burst, ..
        } = vendor.describe().default_rate;
        let rate_limit = RateLimitConfig {
            per_second: self.rate_limit.per_second.unwrap_or(per_second),
            burst: self.rate_limit.burst.unwrap_or(burst),
            emergency_reserve: self.rate_limit.emergency_reserve.unwrap_or(0.2),
        };
        if !(rate_limit.per_second > 0.0 && rate_limit.per_second.is_finite())
            || rate_limit.burst == 0
        {
            problems.push((
                "rate_limit".to_owned(),
                "per_second and burst must be positive".to_owned(),
            ));
        }
        if !(0.0..1.0).contains(&rate_limit.emergency_reserve) {
            problems.push((
                "rate_limit.emergency_reserve".to_owned(),
                "must be at least 0 and below 1".to_owned(),
            ));
        }
        if self.failover.emergency_after_attempts == Some(0) {
            problems.push((
                "failover.emergency_after_attempts".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        let integration = IntegrationConfig {
            id: self.id.clone(),
            organization: self.organization.clone(),
            vendor,
            settings,
            rate_limit,
            breaker,
            retry,
            failover: FailoverConfig {
                targets: self.failover.targets.clone(),
                on_circuit_open: self.failover.on_circuit_open.unwrap_or(true),
                emergency_after_attempts: self.failover.emergency_after_attempts,
            },
            max_in_flight: self.max_in_flight.unwrap_or(32).max(1),
            timeout,
            source: Source::Config,
        };
        (Some(integration), problems)
    }
}

// === impl RawRoute ===

impl RawRoute {
    /// Checks this route as route `id`: at least one target, each an integration of its
    /// organization (`is_target`), and a condition that compiles. Returns every problem as (field
    /// under the route, reason), and the route if its condition compiled (usable only if there
    /// is no problem).
    pub fn check(
        &self,
        id: &str,
        is_target: impl Fn(&str) -> bool,
    ) -> (Option<RouteConfig>, Vec<(String, String)>) {
        let mut problems = Vec::new();
        if self.targets.is_empty() {
            problems.push((
                "targets".to_owned(),
                "a route needs at least one target".to_owned(),
            ));
        }
        for target in &self.targets {
            if !is_target(target) {
                problems.push((
                    "targets".to_owned(),
                    format!(
                        "{target:?} is not an integration of organization {:?}",
                        self.organization
                    ),
                ));
            }
        }
        let when = match &self.when {
            Some(source) => match Condition::compile(source) {
                Ok(condition) => Some(condition),
                Err(reason) => {
                    problems.push(("when".to_owned(), reason));
                    return (None, problems);
                }
            },
            None => None,
        };
        let route = RouteConfig {
            id: id.to_owned(),
            organization: self.organization.clone(),
            name: self.name.clone(),
            types: self.types.clone(),
            min_priority: self.min_priority,
            when,
            targets: self.targets.clone(),
            source: Source::Config,
        };
        (Some(route), problems)
    }
}

// === impl RawConfig ===

impl RawConfig {
    /// Turns the raw configuration into a [`Config`], or names everything wrong with it (each
    /// section and each integration and route is checked even when an earlier one failed).
    pub fn validate(self, location: &str, text: &str) -> Result<Config, ConfigError> {
        let invalid = |field: String, reason: String| {
            let location = match line_of_field(text, &field) {
                Some(line) => format!("{location}:{line}"),
                None => location.to_owned(),
            };
            ConfigError::Invalid {
                location,
                field,
                reason,
            }
        };
        let duration = |field: &str,
                        value: &Option<String>,
                        default: Duration|
         -> Result<Duration, ConfigError> {
            match value {
                None => Ok(default),
                Some(text) => {
                    parse_duration(text).map_err(|reason| invalid(field.to_owned(), reason))
                }
            }
        };

        // Every problem found, in file order; a section with a problem takes a placeholder so
        // the rest is still checked.
        let problems = RefCell::new(Vec::new());
        let problem = |error: ConfigError| problems.borrow_mut().push(error);
        let duration = |field: &str, value: &Option<String>, default: Duration| -> Duration {
            duration(field, value, default).unwrap_or_else(|error| {
                problem(error);
                default
            })
        };

        let listen_text = self
            .server
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:8470".to_owned());
        let listen = listen_text.parse().unwrap_or_else(|_| {
            problem(invalid(
                "server.listen".into(),
                format!("{listen_text:?} is not an address like 127.0.0.1:8470"),
            ));
            SocketAddr::from(([127, 0, 0, 1], 8470))
        });
        let server = ServerConfig {
            listen,
            shutdown_grace: duration(
                "server.shutdown_grace",
                &self.server.shutdown_grace,
                Duration::from_secs(10),
            ),
            max_body_bytes: self.server.max_body_bytes.unwrap_or(16 * 1024 * 1024),
            header_timeout: duration(
                "server.header_timeout",
                &self.server.header_timeout,
                Duration::from_secs(10),
            ),
            body_timeout: duration(
                "server.body_timeout",
                &self.server.body_timeout,
                Duration::from_secs(30),
            ),
            metrics_token: self.server.metrics_token.clone(),
        };
        let store = match self.store.kind.as_deref().unwrap_or("sqlite") {
            "sqlite" => StoreConfig::Sqlite {
                data_dir: self
                    .store
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("data")),
            },
            "postgres" => {
                let Some(url) = self.store.url.clone() else {
                    problem(invalid(
                        "store.url".into(),
                        "postgres needs url = { env = \"VAR\" } or { file = \"path\" }".into(),
                    ));
                    return Err(ConfigError::Many(problems.into_inner()));
                };
                let schema = self
                    .store
                    .schema
                    .clone()
                    .unwrap_or_else(|| "herald".to_owned());
                let identifier = schema
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                    && schema
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !identifier {
                    problem(invalid(
                        "store.schema".into(),
                        format!("{schema:?} must be a lowercase identifier (a-z, 0-9, _)"),
                    ));
                }
                StoreConfig::Postgres { url, schema }
            }
            other => {
                problem(invalid(
                    "store.kind".into(),
                    format!("unknown store {other:?}; expected sqlite or postgres"),
                ));
                StoreConfig::Sqlite {
                    data_dir: PathBuf::from("data"),
                }
            }
        };
        let supervision = SupervisionConfig {
            max_restarts: self.supervision.max_restarts.unwrap_or(5),
            within: duration(
                "supervision.within",
                &self.supervision.within,
                Duration::from_secs(30),
            ),
            backoff_initial: duration(
                "supervision.backoff_initial",
                &self.supervision.backoff_initial,
                Duration::from_millis(20),
            ),
            backoff_max: duration(
                "supervision.backoff_max",
                &self.supervision.backoff_max,
                Duration::from_secs(2),
            ),
            idle_after: duration(
                "supervision.idle_after",
                &self.supervision.idle_after,
                Duration::from_secs(300),
            ),
        };

        let mut organizations = Vec::new();
        for (index, org) in self.organizations.iter().enumerate() {
            if org.id.is_empty() || organizations.contains(&org.id) {
                problem(invalid(
                    format!("organizations[{index}].id"),
                    format!("{:?} is empty or repeated", org.id),
                ));
                continue;
            }
            organizations.push(org.id.clone());
        }

        let mut integrations = Vec::new();
        let mut ids = HashSet::new();
        for (index, raw) in self.integrations.iter().enumerate() {
            let field = |name: &str| format!("integrations[{index}].{name}");
            if raw.id.is_empty() || !ids.insert(raw.id.clone()) {
                problem(invalid(
                    field("id"),
                    format!("{:?} is empty or repeated", raw.id),
                ));
                continue;
            }
            if !organizations.contains(&raw.organization) {
                problem(invalid(
                    field("organization"),
                    format!("{:?} is not listed in [[organizations]]", raw.organization),
                ));
            }
            let (checked, found) = raw.check(SecretOrigin::File);
            for (name, reason) in found {
                problem(invalid(field(&name), reason));
            }
            if let Some(integration) = checked {
                integrations.push(integration);
            }
        }
        for (index, integration) in integrations.iter().enumerate() {
            for target in &integration.failover.targets {
                match integrations.iter().find(|other| &other.id == target) {
                    None => problem(invalid(
                        format!("integrations[{index}].failover.targets"),
                        format!("{target:?} is not a configured integration"),
                    )),
                    Some(backup)
                        if backup.organization != integration.organization
                            || backup.id == integration.id =>
                    {
                        problem(invalid(
                            format!("integrations[{index}].failover.targets"),
                            format!(
                                "{target:?} must be another integration of the same organization"
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }

        if self.security.credentials_key.is_none() {
            for (index, integration) in integrations.iter().enumerate() {
                if let Some(kept) = integration.settings.keeps_credentials_at() {
                    problem(invalid(
                        format!("integrations[{index}].settings.{kept}"),
                        "Herald keeps a credential for this integration (an app installed through Herald, a secret the vendor chose), so it needs security.credentials_key, which seals it".into(),
                    ));
                }
            }
        }

        let mut routes = Vec::new();
        for (index, raw) in self.routes.iter().enumerate() {
            if !organizations.contains(&raw.organization) {
                problem(invalid(
                    format!("routes[{index}].organization"),
                    format!("{:?} is not listed in [[organizations]]", raw.organization),
                ));
            }
            // Against the integrations as written, so one with a problem of its own is not
            // reported again for every route that names it.
            let (route, found) = raw.check(&format!("config-{index}"), |target| {
                self.integrations
                    .iter()
                    .any(|i| i.id == target && i.organization == raw.organization)
            });
            for (name, reason) in found {
                problem(invalid(format!("routes[{index}].{name}"), reason));
            }
            routes.extend(route);
        }

        let problems = problems.into_inner();
        if !problems.is_empty() {
            return Err(ConfigError::Many(problems));
        }
        Ok(Config {
            server,
            store,
            allow_private_destinations: self.security.allow_private_destinations.unwrap_or(false),
            credentials_key: self.security.credentials_key.clone(),
            previous_credentials_keys: self.security.previous_credentials_keys.clone(),
            supervision,
            organizations,
            integrations,
            routes,
        })
    }
}

/// Why no vendor has this kind, with the kinds there are.
fn unknown_kind(kind: &str) -> String {
    let available: Vec<&str> = vendors::all().iter().map(|vendor| vendor.kind()).collect();
    format!(
        "unknown connector kind {kind:?} (available: {})",
        available.join(", ")
    )
}

impl Config {
    /// What is valid but probably not meant: a route condition naming fields no WedSync
    /// notification has (so the route would never match), each with its field path.
    pub fn warnings(&self) -> Vec<String> {
        self.routes
            .iter()
            .enumerate()
            .filter_map(|(index, route)| {
                let unknown = route.when.as_ref()?.unknown_fields();
                (!unknown.is_empty()).then(|| {
                    format!(
                        "routes[{index}].when: {} {} not a field of a WedSync notification (metadata.* is free-form); the route never matches while it names {}",
                        unknown.join(", "),
                        if unknown.len() == 1 { "is" } else { "are" },
                        if unknown.len() == 1 { "it" } else { "them" },
                    )
                })
            })
            .collect()
    }

    /// Returns the integration with this id.
    pub fn integration(&self, id: &str) -> Option<&IntegrationConfig> {
        self.integrations
            .iter()
            .find(|integration| integration.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<Config, ConfigError> {
        parse(text, "test.toml")
    }

    const BASE: &str = r##"
[[organizations]]
id = "studio"

[[integrations]]
id = "team-hook"
organization = "studio"
kind = "webhook"
settings = { url = "https://hooks.example.com/herald", secret = { env = "HOOK_SECRET" } }
"##;

    #[test]
    fn defaults_fill_in_what_is_not_written() {
        let config = validate(BASE).unwrap();
        let hook = config.integration("team-hook").unwrap();
        let vendor_default = crate::vendors::find("webhook")
            .unwrap()
            .describe()
            .default_rate;
        assert_eq!(
            (hook.rate_limit.per_second, hook.rate_limit.burst),
            (vendor_default.per_second, vendor_default.burst)
        );
        assert_eq!(hook.retry.max_attempts, 8);
        assert!(!config.allow_private_destinations);
    }

    #[test]
    fn a_secret_written_into_the_file_is_refused() {
        let text = BASE.replace(
            "secret = { env = \"HOOK_SECRET\" }",
            "secret = { value = \"whsec_aGVyYWxk\" }",
        );
        assert_ne!(text, BASE);
        let err = validate(&text).unwrap_err().to_string();
        assert!(err.contains("integrations[0].settings: a secret in the configuration file is read from where it lives"), "{err}");
        assert!(
            !err.contains("whsec_aGVyYWxk"),
            "the refusal does not repeat the secret: {err}"
        );
    }

    #[test]
    fn an_unknown_connector_is_reported_with_its_line() {
        let text = format!("{BASE}\n[[integrations]]\nid = \"venue\"\norganization = \"studio\"\nkind = \"carrier_pigeon\"\n");
        let err = validate(&text).unwrap_err().to_string();
        assert!(err.contains("integrations[1].kind"), "{err}");
        assert!(
            err.contains("unknown connector kind \"carrier_pigeon\" (available: asana,"),
            "{err}"
        );
        assert!(
            err.starts_with("test.toml:14:"),
            "the line of the second integration's kind: {err}"
        );
    }

    #[test]
    fn kind_specific_settings_are_checked_by_name() {
        let text = BASE.replace("url = \"https://hooks.example.com/herald\", ", "");
        let err = validate(&text).unwrap_err().to_string();
        assert!(err.contains("missing field `url`"), "{err}");
        let text = BASE.replace("url =", "ur = \"x\", url =");
        let err = validate(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `ur`"), "{err}");
    }

    #[test]
    fn unknown_top_level_keys_and_bad_durations_are_rejected() {
        let err = validate(&format!(
            "{BASE}\n[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("listn"), "{err}");
        let err = validate(&format!("{BASE}\n[server]\nshutdown_grace = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.shutdown_grace") && err.contains("not a duration"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_of_a_file_is_reported_at_once_in_one_path_style() {
        let err = validate(&format!(
            "[server]\nlisten = \"nowhere\"\nshutdown_grace = \"soon\"\n{BASE}retry = {{ initial = \"fast\" }}\n\
             [[routes]]\norganization = \"nobody\"\nname = \"r\"\ntargets = [\"ghost\"]\nwhen = \"wedding.venue ==\"\n"
        ))
        .unwrap_err()
        .to_string();
        let fields: Vec<&str> = err
            .lines()
            .filter_map(|line| line.split(": ").nth(1))
            .collect();
        assert_eq!(
            fields,
            vec![
                "server.listen",
                "server.shutdown_grace",
                "integrations[0].retry.initial",
                "routes[0].organization",
                "routes[0].targets",
                "routes[0].when",
            ],
            "{err}"
        );
        // Type errors name the field in the same style, in words a TOML author reads.
        let err = validate(&format!("{BASE}rate_limit = {{ per_second = \"fast\" }}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("integrations[0].rate_limit.per_second")
                && err.contains("expected a number"),
            "{err}"
        );
    }

    #[test]
    fn routes_and_failover_must_name_integrations_of_the_same_organization() {
        let text = format!(
            "{BASE}\n[[routes]]\norganization = \"studio\"\nname = \"r\"\ntargets = [\"nope\"]\n"
        );
        assert!(validate(&text)
            .unwrap_err()
            .to_string()
            .contains("routes[0].targets"));
        let text = format!("{BASE}\n[[organizations]]\nid = \"other\"\n[[integrations]]\nid = \"hook\"\norganization = \"other\"\nkind = \"webhook\"\nsettings = {{ url = \"https://example.com\", secret = {{ env = \"S\" }} }}\n")
            .replacen("kind = \"webhook\"", "kind = \"webhook\"\nfailover = { targets = [\"hook\"] }", 1);
        assert!(validate(&text)
            .unwrap_err()
            .to_string()
            .contains("same organization"));
    }

    #[test]
    fn the_postgres_store_needs_a_secret_url_and_an_identifier_schema() {
        let err = validate(&format!("{BASE}\n[store]\nkind = \"postgres\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.url"), "{err}");
        let err = validate(&format!(
            "{BASE}\n[store]\nkind = \"postgres\"\nurl = \"postgres://u:p@h/db\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("store.url"),
            "a URL written inline (with its password) is refused: {err}"
        );
        let err = validate(&format!("{BASE}\n[store]\nkind = \"postgres\"\nurl = {{ env = \"DB\" }}\nschema = \"Herald; DROP\"\n")).unwrap_err().to_string();
        assert!(err.contains("store.schema"), "{err}");
        let config = validate(&format!(
            "{BASE}\n[store]\nkind = \"postgres\"\nurl = {{ env = \"DB\" }}\n"
        ))
        .unwrap();
        assert!(
            matches!(config.store, StoreConfig::Postgres { ref schema, .. } if schema == "herald")
        );
    }

    #[test]
    fn route_conditions_are_compiled_when_the_config_loads() {
        let route = |when: &str| {
            format!("{BASE}\n[[routes]]\norganization = \"studio\"\nname = \"r\"\nwhen = '{when}'\ntargets = [\"team-hook\"]\n")
        };
        let source = r#"wedding.venue == "Kew Gardens""#;
        assert_eq!(
            validate(&route(source)).unwrap().routes[0]
                .when
                .as_ref()
                .map(|condition| condition.source()),
            Some(source)
        );
        let err = validate(&route("wedding.venue =="))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("routes[0].when") && err.contains("not a valid CEL expression"),
            "{err}"
        );
        let typo = validate(&route(r#"wedding.venu == "Kew" && has(metadata.anything)"#)).unwrap();
        assert_eq!(
            typo.warnings(),
            vec!["routes[0].when: wedding.venu is not a field of a WedSync notification (metadata.* is free-form); the route never matches while it names it"]
        );
        assert!(validate(&route(r#"wedding.venue == "Kew""#))
            .unwrap()
            .warnings()
            .is_empty());
    }

    #[test]
    fn the_shipped_configurations_load_or_name_the_connector_they_wait_for() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        load(Some(&dir.join("herald.toml"))).unwrap();
        load(Some(&dir.join("examples/emergency-center.toml"))).unwrap();
        load(Some(&dir.join("examples/photo-studio.toml"))).unwrap();
        load(Some(&dir.join("examples/boutique-planner.toml"))).unwrap();
        load(Some(&dir.join("examples/destination-planner.toml"))).unwrap();
        load(Some(&dir.join("examples/hotel-venue-group.toml"))).unwrap();
        load(Some(&dir.join("examples/wedding-collective.toml"))).unwrap();
        load(Some(&dir.join("examples/planner-network.toml"))).unwrap();
        load(Some(&dir.join("examples/venue.toml"))).unwrap();
        load(Some(&dir.join("examples/second-shooters.toml"))).unwrap();
        load(Some(&dir.join("examples/country-house-venue.toml"))).unwrap();
        load(Some(&dir.join("examples/studio-tools.toml"))).unwrap();
        load(Some(&dir.join("examples/enterprise-white-label.toml"))).unwrap();
    }
}
