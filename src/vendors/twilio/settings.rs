//! Twilio's settings: the account, whether the integration texts or calls, who it reaches, where
//! Twilio's callbacks reach Herald, and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};
use crate::wedsync::is_e164;

/// A Twilio account sending text messages or placing calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    /// The account's SID (`AC` and 32 hex digits).
    pub account_sid: String,
    /// The account's auth token: Herald's HTTP Basic password, and the key Twilio signs its
    /// callbacks with.
    pub auth_token: SecretRef,
    /// `sms` (a text per person) or `voice` (a call per person that reads the alert).
    pub channel: Channel,
    /// The sending number in E.164 (`+15017122661`); a call needs one.
    pub from: Option<String>,
    /// A Messaging Service (`MG` and 32 hex digits) to text from instead of `from`.
    pub messaging_service_sid: Option<String>,
    /// People reached with every notification, in E.164.
    #[serde(default)]
    pub to: Vec<String>,
    /// Also reach the notification's contacts with these roles (`planner`), by their phone,
    /// which must then be in E.164.
    #[serde(default)]
    pub contact_roles: Vec<String>,
    /// How long Twilio may queue a text before giving up, in seconds (1-36000; Twilio's default
    /// is 36000).
    pub validity_period: Option<u32>,
    /// Where Twilio's callbacks reach Herald (status callbacks, replies, key presses).
    pub webhook: Option<TwilioWebhook>,
    /// The language a call's alert is read in (`<Say language>`).
    #[serde(default = "default_language")]
    pub language: String,
    /// Twilio's REST API (`https://api.twilio.com`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Voice,
}

/// Herald's public address as Twilio calls it (a proxy's, if one is in front): the signatures
/// Twilio sends cover the full URL, so it must be the one Twilio used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioWebhook {
    pub public_url: String,
}

fn default_api_url() -> String {
    "https://api.twilio.com".to_owned()
}

fn default_language() -> String {
    "en-US".to_owned()
}

/// Whether `sid` is a Twilio SID with this two-letter prefix.
pub(super) fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn check_twilio(settings: &TwilioSettings) -> Result<(), SettingsError> {
    if !is_sid(&settings.account_sid, "AC") {
        return Err(SettingsError::new(
            "account_sid",
            "must be the account's SID: AC and 32 hexadecimal digits",
        ));
    }
    if let Some(from) = settings.from.as_ref().filter(|from| !is_e164(from)) {
        return Err(SettingsError::new(
            "from",
            format!("{from:?} is not a phone number in E.164 form such as +15017122661"),
        ));
    }
    if let Some(service) = &settings.messaging_service_sid {
        if !is_sid(service, "MG") {
            return Err(SettingsError::new(
                "messaging_service_sid",
                "must be a Messaging Service SID: MG and 32 hexadecimal digits",
            ));
        }
        if settings.channel == Channel::Voice {
            return Err(SettingsError::new(
                "messaging_service_sid",
                "calls are placed from a number: set from instead",
            ));
        }
    }
    if settings.from.is_none()
        && !(settings.channel == Channel::Sms && settings.messaging_service_sid.is_some())
    {
        return Err(SettingsError::new(
            "from",
            match settings.channel {
                Channel::Sms => "a text needs a sender: from or messaging_service_sid",
                Channel::Voice => "a call needs the number it is placed from",
            },
        ));
    }
    for (index, number) in settings.to.iter().enumerate() {
        if !is_e164(number) {
            return Err(SettingsError::new(
                format!("to[{index}]"),
                format!("{number:?} is not a phone number in E.164 form such as +447700900123"),
            ));
        }
    }
    if settings.to.is_empty() && settings.contact_roles.is_empty() {
        return Err(SettingsError::new(
            "to",
            "name the people to reach: to, contact_roles, or both",
        ));
    }
    if let Some(period) = settings.validity_period {
        if !(1..=36_000).contains(&period) {
            return Err(SettingsError::new(
                "validity_period",
                "must be 1-36000 seconds",
            ));
        }
        if settings.channel == Channel::Voice {
            return Err(SettingsError::new(
                "validity_period",
                "is a text's queue life; calls have none",
            ));
        }
    }
    if settings.language.is_empty()
        || settings.language.len() > 12
        || !settings
            .language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(SettingsError::new(
            "language",
            "must be a language tag such as en-US or en-GB",
        ));
    }
    for (field, address) in [
        ("api_url", Some(settings.api_url.as_str())),
        (
            "webhook.public_url",
            settings
                .webhook
                .as_ref()
                .map(|webhook| webhook.public_url.as_str()),
        ),
    ] {
        if let Some(address) = address.filter(|address| !is_http_url(address)) {
            return Err(SettingsError::new(
                field,
                format!("{address:?} is not an http(s) address"),
            ));
        }
    }
    Ok(())
}
