//! Delivery by email through the supplier's own SMTP server (their Microsoft 365, Google
//! Workspace or mail provider's submission port): the fallback every supplier has, and the only
//! honest path to tools that expose nothing else. Settings, the connector (lettre, STARTTLS by
//! default) and the local SMTP sink that plays the server in tests, `herald demo` and
//! `herald sandbox` are shared by the vendors that deliver this way.

mod connector;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

pub use connector::SmtpConnector;
pub use sink::SmtpSink;

use super::{
    deserialize_settings, ConnectorTarget, SettingsError, Simulation, SimulatorFuture, Vendor,
    VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;

/// How long Herald waits after an SMTP server's throttling reply (4.7.x), which carries no
/// wait of its own, unless `throttle_wait` says otherwise.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// The submission port (587): plain connection upgraded with STARTTLS, refused without it.
    #[default]
    Starttls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a server on this machine (a local relay, the sandbox's sink).
    None,
}

/// An integration that delivers by email.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// The SMTP server (`smtp.office365.com`, `smtp.gmail.com`, the provider's host).
    pub smtp_host: String,
    /// 587 by default (STARTTLS), 465 for implicit TLS.
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    /// The account that signs in; with `password`.
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// The studio's inbox (or inboxes) the notifications go to.
    pub to: Vec<String>,
    pub reply_to: Option<String>,
    /// The wait after a throttling reply ("4.7.0 try again later"), `"60s"` by default.
    pub throttle_wait: Option<String>,
}

impl SmtpSettings {
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.tls {
            TlsMode::Tls => 465,
            TlsMode::Starttls | TlsMode::None => 587,
        })
    }

    pub fn throttle_wait(&self) -> Duration {
        self.throttle_wait
            .as_deref()
            .and_then(|wait| crate::config::parse_duration(wait).ok())
            .unwrap_or(DEFAULT_THROTTLE_WAIT)
    }
}

/// Whether `address` is a mailbox lettre takes (`Name <a@b.c>` or `a@b.c`).
fn is_mailbox(address: &str) -> bool {
    address.parse::<lettre::message::Mailbox>().is_ok()
}

/// The settings that can be judged without connecting, each refusal naming its field.
fn check(settings: &SmtpSettings) -> Result<(), SettingsError> {
    let host = settings.smtp_host.trim();
    if host.is_empty() || host.contains(['/', ':', ' ']) {
        return Err(SettingsError::new(
            "smtp_host",
            format!("{host:?} is not a host name (no scheme, port or path)"),
        ));
    }
    if settings.tls == TlsMode::None && !is_loopback(host) {
        return Err(SettingsError::new(
            "tls",
            "\"none\" is only for a server on this machine (localhost, 127.0.0.1, ::1): use starttls or tls",
        ));
    }
    if settings.username.is_some() != settings.password.is_some() {
        return Err(SettingsError::new(
            "password",
            "username and password are given together or not at all",
        ));
    }
    if !is_mailbox(&settings.from) {
        return Err(SettingsError::new(
            "from",
            format!("{:?} is not an email address", settings.from),
        ));
    }
    if settings.to.is_empty() {
        return Err(SettingsError::new("to", "at least one address is needed"));
    }
    if settings.to.len() > 50 {
        return Err(SettingsError::new("to", "at most 50 addresses"));
    }
    for (index, address) in settings.to.iter().enumerate() {
        if !is_mailbox(address) {
            return Err(SettingsError::new(
                format!("to[{index}]"),
                format!("{address:?} is not an email address"),
            ));
        }
    }
    if let Some(reply_to) = settings.reply_to.as_deref().filter(|a| !is_mailbox(a)) {
        return Err(SettingsError::new(
            "reply_to",
            format!("{reply_to:?} is not an email address"),
        ));
    }
    if let Some(wait) = &settings.throttle_wait {
        crate::config::parse_duration(wait)
            .map_err(|err| SettingsError::new("throttle_wait", err))?;
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Settings read for one vendor that delivers by email.
#[derive(Debug)]
pub struct SmtpIntegration {
    pub kind: &'static str,
    pub settings: SmtpSettings,
}

/// A vendor that delivers by email, as the registry lists it: every such vendor reads its
/// settings and is simulated the same way; only its description differs.
pub struct Mailed(pub &'static VendorDescription);

impl Vendor for Mailed {
    fn describe(&self) -> &'static VendorDescription {
        self.0
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn parse_settings(&self, settings: Value) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let settings: SmtpSettings = deserialize_settings(settings)?;
        check(&settings)?;
        Ok(Arc::new(SmtpIntegration {
            kind: self.0.kind,
            settings,
        }))
    }
}

impl Simulation for Mailed {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(SmtpSink::simulated(addr))
    }
}

impl VendorSettings for SmtpIntegration {
    fn secrets(&self) -> Vec<&SecretRef> {
        self.settings.password.iter().collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(SmtpConnector::new(
            self.kind,
            &self.settings,
            kit,
            integration.timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: serde_json::Value) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let mut base = serde_json::json!({
            "smtp_host": "smtp.office365.com",
            "from": "Wedding desk <desk@studio.example>",
            "to": ["team@studio.example"],
        });
        for (key, value) in extra.as_object().unwrap() {
            base[key] = value.clone();
        }
        crate::vendors::email::VENDOR.parse_settings(base)
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        assert!(settings(serde_json::json!({})).is_ok());
        assert!(settings(serde_json::json!({"smtp_host": "127.0.0.1", "tls": "none"})).is_ok());
        for (extra, field) in [
            (
                serde_json::json!({"smtp_host": "smtp://mail.example"}),
                "smtp_host",
            ),
            (serde_json::json!({"tls": "none"}), "tls"),
            (
                serde_json::json!({"username": "desk@studio.example"}),
                "password",
            ),
            (serde_json::json!({"from": "the desk"}), "from"),
            (serde_json::json!({"to": []}), "to"),
            (
                serde_json::json!({"to": ["team@studio.example", "nobody"]}),
                "to[1]",
            ),
            (
                serde_json::json!({"throttle_wait": "soon"}),
                "throttle_wait",
            ),
            (serde_json::json!({"tls": "ssl"}), "tls"),
        ] {
            let refused = settings(extra.clone())
                .err()
                .unwrap_or_else(|| panic!("{extra} was taken"));
            assert!(refused.to_string().contains(field), "{extra}: {refused}");
        }
    }

    #[test]
    fn ports_follow_the_tls_mode_and_throttle_waits_default_to_a_minute() {
        let mut read: SmtpSettings = serde_json::from_value(serde_json::json!({
            "smtp_host": "smtp.example", "from": "a@b.example", "to": ["c@d.example"]
        }))
        .unwrap();
        assert_eq!(read.port(), 587);
        assert_eq!(read.throttle_wait(), Duration::from_secs(60));
        read.tls = TlsMode::Tls;
        assert_eq!(read.port(), 465);
        read.throttle_wait = Some("2s".into());
        assert_eq!(read.throttle_wait(), Duration::from_secs(2));
    }
}
