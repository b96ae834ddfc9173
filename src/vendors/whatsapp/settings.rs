//! WhatsApp's settings: the business phone number Herald sends from, its system-user token, the
//! people it sends to, the approved template used outside the customer-service window, and the
//! webhook's secrets; and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// A WhatsApp Business phone number on the Cloud API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSettings {
    /// A system user's access token with `whatsapp_business_messaging` (Business Settings >
    /// System users): sent as a Bearer token.
    pub access_token: SecretRef,
    /// The business phone number's id (WhatsApp Manager > API Setup), not the number itself.
    pub phone_number_id: String,
    /// The people who get the notifications (the planner's phone, the venue manager's), in E.164
    /// (`+447700900123`).
    pub to: Vec<String>,
    /// The approved message template sent when a person has not written to the number in the
    /// last 24 hours (WhatsApp allows nothing else then).
    pub template: TemplateSettings,
    /// Inbound: the webhook that tells Herald about replies, button presses and delivery and read
    /// statuses (and opens each person's 24-hour window).
    pub webhook: Option<WebhookSettings>,
    /// The Graph API with its version (`https://graph.facebook.com/v23.0`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    /// The template's name as approved in WhatsApp Manager.
    pub name: String,
    /// Its language code (`en_GB`, `en_US`, `es`).
    pub language: String,
    /// What fills the body's variables `{{1}}`, `{{2}}`..., in order: `title`, `message`,
    /// `weddingDate`, `venue`, `coupleNames`, `priority`, `type`.
    #[serde(default = "default_parameters")]
    pub parameters: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The app's secret (App Settings > Basic): every delivery is signed with it
    /// (`X-Hub-Signature-256`).
    pub app_secret: SecretRef,
    /// The verify token typed into the app's webhook settings, echoed back by Meta's
    /// subscription check.
    pub verify_token: SecretRef,
}

fn default_api_url() -> String {
    "https://graph.facebook.com/v23.0".to_owned()
}

fn default_parameters() -> Vec<String> {
    vec!["title".to_owned(), "message".to_owned()]
}

/// The notification fields a template variable can be filled from.
pub(super) const TEMPLATE_FIELDS: &[&str] = &[
    "title",
    "message",
    "weddingDate",
    "venue",
    "coupleNames",
    "priority",
    "type",
];

/// Whether `number` is written in E.164: `+`, then 8 to 15 digits, the first not 0.
pub(super) fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

pub(super) fn check_whatsapp(settings: &WhatsAppSettings) -> Result<(), SettingsError> {
    let id = &settings.phone_number_id;
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SettingsError::new(
            "phone_number_id",
            format!("{id:?} is not a phone number id (digits, from WhatsApp Manager > API Setup)"),
        ));
    }
    if settings.to.is_empty() {
        return Err(SettingsError::new("to", "at least one number is needed"));
    }
    for (index, number) in settings.to.iter().enumerate() {
        if !is_e164(number) {
            return Err(SettingsError::new(
                format!("to[{index}]"),
                format!(
                    "{number:?} is not an E.164 number (+ and the country code, 8 to 15 digits)"
                ),
            ));
        }
    }
    if settings.to.len() > 20 {
        return Err(SettingsError::new("to", "at most 20 numbers"));
    }
    let template = &settings.template;
    if template.name.is_empty()
        || template.name.len() > 512
        || !template
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(SettingsError::new(
            "template.name",
            "a template name is lowercase letters, digits and underscores",
        ));
    }
    if template.language.is_empty() || template.language.len() > 10 {
        return Err(SettingsError::new(
            "template.language",
            "a language code such as en_GB or es",
        ));
    }
    for (index, parameter) in template.parameters.iter().enumerate() {
        if !TEMPLATE_FIELDS.contains(&parameter.as_str()) {
            return Err(SettingsError::new(
                format!("template.parameters[{index}]"),
                format!("{parameter:?} is not one of {}", TEMPLATE_FIELDS.join(", ")),
            ));
        }
    }
    if !is_http_url(&settings.api_url) {
        return Err(SettingsError::new(
            "api_url",
            format!("{:?} is not an http(s) address", settings.api_url),
        ));
    }
    Ok(())
}
