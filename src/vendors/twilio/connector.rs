//! Twilio (the seed's emergency channel) through its REST API (`/2010-04-01/Accounts/{sid}/...`,
//! HTTP Basic with the account SID and auth token, form bodies, JSON answers; errors
//! `{code, message, more_info, status}`): a text (`Messages.json`) or a call (`Calls.json`) to
//! each person the integration reaches, one request each.
//!
//! - A text is the priority, title, message and wedding, cut inside Twilio's 1,600 characters,
//!   and, when Twilio's callbacks reach Herald, "Reply ACK to acknowledge".
//! - A call reads the alert with `<Say>` inside a `<Gather>` whose action is Herald's callback:
//!   pressing 1 acknowledges. The TwiML is escaped XML inside Twilio's 4,000 characters.
//! - Each message or call asks for status callbacks (`StatusCallback`), which `inbound.rs`
//!   records for the delivery's engagement.
//! - A retry skips the people already reached for the notification (`memory.rs`): Twilio has
//!   no idempotency key, so a repeated request would text or call them again.
//! - 429 and error 20429 wait (Retry-After when Twilio sends one); 20003 reloads the token.

use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use super::memory::{scope, MEMORY};
use super::settings::{Channel, TwilioSettings};
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    cut_marked, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::store::now_millis;
use crate::wedsync::{is_e164, Priority, WeddingNotification};

/// Twilio's longest text body, in characters.
const BODY_CHARS: usize = 1600;
/// Twilio's longest `Twiml` parameter, in characters (error 32018).
const TWIML_CHARS: usize = 4000;

pub struct TwilioConnector {
    integration_id: String,
    scope: String,
    api: Url,
    account_sid: String,
    auth_token: ReloadableSecret,
    channel: Channel,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    to: Vec<String>,
    contact_roles: Vec<String>,
    validity_period: Option<u32>,
    /// `{public_url}/inbound/twilio/{integration}`, when Twilio's callbacks reach Herald.
    callbacks: Option<String>,
    language: String,
    client: OutboundClient,
    timeout: Duration,
}

impl TwilioConnector {
    pub fn new(
        settings: &TwilioSettings,
        integration_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client.check_url(settings.api_url.trim_end_matches('/'))?;
        Ok(Self {
            integration_id: integration_id.to_owned(),
            scope: scope(&settings.api_url, &settings.account_sid, integration_id),
            api,
            account_sid: settings.account_sid.clone(),
            auth_token: ReloadableSecret::load(&settings.auth_token)
                .map_err(ConnectorError::Misconfigured)?,
            channel: settings.channel,
            from: settings.from.clone(),
            messaging_service_sid: settings.messaging_service_sid.clone(),
            to: settings.to.clone(),
            contact_roles: settings
                .contact_roles
                .iter()
                .map(|role| role.to_lowercase())
                .collect(),
            validity_period: settings.validity_period,
            callbacks: settings.webhook.as_ref().map(|webhook| {
                format!(
                    "{}/inbound/twilio/{integration_id}",
                    webhook.public_url.trim_end_matches('/')
                )
            }),
            language: settings.language.clone(),
            client,
            timeout,
        })
    }

    /// The people this notification reaches: the configured numbers, then the contacts with
    /// the configured roles. A contact's phone that is not E.164 is refused, naming it.
    fn people(&self, notification: &WeddingNotification) -> Result<Vec<String>, ConnectorError> {
        let mut people = self.to.clone();
        for (index, contact) in notification.contacts.iter().enumerate() {
            let wanted = contact
                .role
                .as_ref()
                .is_some_and(|role| self.contact_roles.contains(&role.to_lowercase()));
            let Some(phone) = contact.phone.as_ref().filter(|_| wanted) else {
                continue;
            };
            if !is_e164(phone) {
                return Err(ConnectorError::Rejected {
                    code: "invalid_phone".into(),
                    message: format!(
                        "contacts[{index}].phone {phone:?} is not in E.164 form (+ and country code, such as +447700900123): Twilio cannot reach it"
                    ),
                });
            }
            if !people.contains(phone) {
                people.push(phone.clone());
            }
        }
        if people.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "no_recipients".into(),
                message: format!(
                    "no contact of the notification has a phone and one of the roles {:?}",
                    self.contact_roles
                ),
            });
        }
        Ok(people)
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let people = self.people(notification)?;
        let mut reached = Vec::with_capacity(people.len());
        for person in &people {
            if let Some(sid) =
                MEMORY.sent_before(&self.scope, &notification.notification_id, person)
            {
                reached.push(json!({"to": person, "sid": sid, "status": "sent before"}));
                continue;
            }
            let created = match self.channel {
                Channel::Sms => self.text(notification, person).await?,
                Channel::Voice => self.call(notification, person).await?,
            };
            let sid = created["sid"].as_str().unwrap_or_default().to_owned();
            if sid.is_empty() {
                return Err(ConnectorError::Unavailable(
                    "Twilio answered without the resource's SID".into(),
                ));
            }
            MEMORY.sent(
                &self.scope,
                &notification.notification_id,
                person,
                &sid,
                now_seconds(),
            );
            reached.push(json!({"to": person, "sid": sid, "status": created["status"]}));
        }
        let first = reached[0]["sid"].as_str().unwrap_or_default().to_owned();
        Ok(Receipt {
            id: first,
            details: Some(json!({
                "channel": match self.channel { Channel::Sms => "sms", Channel::Voice => "voice" },
                "reached": reached,
                "acknowledgeable": self.callbacks.is_some(),
            })),
        })
    }

    fn status_callback(&self, notification: &WeddingNotification) -> Option<String> {
        self.callbacks
            .as_ref()
            .map(|base| callback_url(base, "status", &notification.notification_id))
    }

    async fn text(
        &self,
        notification: &WeddingNotification,
        person: &str,
    ) -> Result<Value, ConnectorError> {
        let mut form = vec![
            ("To", person.to_owned()),
            ("Body", text_body(notification, self.callbacks.is_some())),
        ];
        match (&self.messaging_service_sid, &self.from) {
            (Some(service), _) => form.push(("MessagingServiceSid", service.clone())),
            (None, Some(from)) => form.push(("From", from.clone())),
            (None, None) => {}
        }
        if let Some(callback) = self.status_callback(notification) {
            form.push(("StatusCallback", callback));
        }
        if let Some(period) = self.validity_period {
            form.push(("ValidityPeriod", period.to_string()));
        }
        self.post("Messages.json", &form).await
    }

    async fn call(
        &self,
        notification: &WeddingNotification,
        person: &str,
    ) -> Result<Value, ConnectorError> {
        let gather = self
            .callbacks
            .as_ref()
            .map(|base| callback_url(base, "gather", &notification.notification_id));
        let mut form = vec![
            ("To", person.to_owned()),
            ("From", self.from.clone().unwrap_or_default()),
            (
                "Twiml",
                twiml(notification, gather.as_deref(), &self.language),
            ),
        ];
        if let Some(callback) = self.status_callback(notification) {
            form.push(("StatusCallback", callback));
        }
        self.post("Calls.json", &form).await
    }

    async fn post(&self, resource: &str, form: &[(&str, String)]) -> Result<Value, ConnectorError> {
        let url = self.url(&format!(
            "/2010-04-01/Accounts/{}/{resource}",
            self.account_sid
        ))?;
        let request = self.client.client().post(url).form(form);
        self.answer(request).await
    }

    /// The seed's authenticateConnection: the account the credentials are.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let url = self.url(&format!("/2010-04-01/Accounts/{}.json", self.account_sid))?;
        let account = self.answer(self.client.client().get(url)).await?;
        Ok(json!({
            "accountSid": account["sid"],
            "friendlyName": account["friendly_name"],
            "status": account["status"],
            "channel": match self.channel { Channel::Sms => "sms", Channel::Voice => "voice" },
            "callbacks": self.callbacks.is_some(),
        }))
    }

    /// The statuses Twilio's callbacks reported for what a delivery created.
    async fn engagement_of(&self, details: &Value) -> Result<Value, ConnectorError> {
        let reached: Vec<Value> = details["reached"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|one| {
                let sid = one["sid"].as_str().unwrap_or_default();
                json!({"to": one["to"], "sid": sid, "status": MEMORY.status(sid)})
            })
            .collect();
        Ok(json!({ "reached": reached }))
    }

    fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        self.api
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<Value, ConnectorError> {
        let response = request
            .basic_auth(&self.account_sid, Some(self.auth_token.get().expose()))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }
}

fn now_seconds() -> u64 {
    (now_millis() / 1000).max(0) as u64
}

/// A callback address of this integration for one notification.
fn callback_url(base: &str, path: &str, notification_id: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("n", notification_id)
        .finish();
    format!("{base}/{path}?{query}")
}

impl Connector for TwilioConnector {
    fn vendor(&self) -> &'static str {
        "twilio"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        self.people(notification)
            .map_or(1, |people| people.len().max(1) as u32)
    }

    fn engagement<'a>(&'a self, details: &'a Value) -> CheckFuture<'a> {
        Box::pin(self.engagement_of(details))
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        tracing::debug!(integration = %self.integration_id, "reloading Twilio's auth token");
        self.auth_token
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }
}

/// A refusal, classified from Twilio's `{code, message, more_info, status}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let code = answer["code"].as_u64();
    let message = answer["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Twilio answered {status}"));
    match (status.as_u16(), code) {
        (429, _) | (_, Some(20429)) => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        (401, _) | (_, Some(20003)) => ConnectorError::Unauthorized(message),
        (500..=599, _) => ConnectorError::Unavailable(format!("{status}: {message}")),
        (status, code) => ConnectorError::Rejected {
            code: code.map_or_else(|| status.to_string(), |code| code.to_string()),
            message,
        },
    }
}

fn priority_word(priority: Priority) -> Option<&'static str> {
    match priority {
        Priority::Emergency => Some("EMERGENCY"),
        Priority::High => Some("URGENT"),
        _ => None,
    }
}

/// The wedding in a few words: its date, couple and venue.
fn wedding_line(notification: &WeddingNotification) -> Option<String> {
    notification.wedding_context.as_ref().map(|context| {
        let mut line = context.wedding_date.clone();
        for part in [&context.couple_names, &context.venue]
            .into_iter()
            .flatten()
        {
            line.push_str(", ");
            line.push_str(part);
        }
        line
    })
}

/// A text: the priority and title, the message, the wedding, and how to acknowledge, inside
/// Twilio's 1,600 characters (the message is what gets cut).
pub(super) fn text_body(notification: &WeddingNotification, replies: bool) -> String {
    let head = match priority_word(notification.priority) {
        Some(word) => format!("{word}: {}", cut_marked(&notification.title, 200)),
        None => cut_marked(&notification.title, 200),
    };
    let mut tail = String::new();
    if let Some(wedding) = wedding_line(notification) {
        tail.push_str(&format!("\nWedding: {}", cut_marked(&wedding, 200)));
    }
    if replies {
        tail.push_str("\nReply ACK to acknowledge.");
    }
    let room = BODY_CHARS - head.chars().count() - tail.chars().count() - 1;
    format!("{head}\n{}{tail}", cut_marked(&notification.message, room))
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A call's TwiML: the alert read out, and with a `gather` address, a key press to acknowledge;
/// without one, the alert read twice. The message is cut until the whole fits Twilio's 4,000
/// characters.
pub(super) fn twiml(
    notification: &WeddingNotification,
    gather: Option<&str>,
    language: &str,
) -> String {
    let say = |text: &str| {
        format!(
            "<Say language=\"{}\">{}</Say>",
            escape_xml(language),
            escape_xml(text)
        )
    };
    let spoken = |message: &str| {
        let mut text = format!(
            "{} alert from WedSync. {}. {message}",
            priority_word(notification.priority).unwrap_or("A"),
            notification.title
        );
        if let Some(wedding) = wedding_line(notification) {
            text.push_str(&format!(". The wedding: {wedding}."));
        }
        text
    };
    let document = |message: &str| {
        match gather {
        Some(action) => format!(
            "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"10\" action=\"{}\" method=\"POST\">{}{}</Gather>{}</Response>",
            escape_xml(action),
            say(&spoken(message)),
            say("Press 1 to acknowledge this alert."),
            say("No key was pressed. Goodbye."),
        ),
        None => format!(
            "<Response>{}<Pause length=\"1\"/>{}</Response>",
            say(&spoken(message)),
            say(&spoken(message)),
        ),
    }
    };
    let fits = |chars: usize| {
        let document = document(&cut_marked(&notification.message, chars));
        (document.chars().count() <= TWIML_CHARS).then_some(document)
    };
    if let Some(whole) = fits(notification.message.chars().count()) {
        return whole;
    }
    // The longest cut of the message that fits (escaping makes some characters longer).
    let (mut fitting, mut too_long) = (0, notification.message.chars().count());
    while too_long - fitting > 1 {
        let middle = (fitting + too_long) / 2;
        match fits(middle) {
            Some(_) => fitting = middle,
            None => too_long = middle,
        }
    }
    fits(fitting).unwrap_or_else(|| document(""))
}

/// The action address of a call's `<Gather>`, unescaped: where Twilio posts the key pressed.
pub(super) fn twiml_gather_action(twiml: &str) -> Option<String> {
    let gather = &twiml[twiml.find("<Gather ")?..];
    let gather = &gather[..gather.find('>')?];
    let start = gather.find(" action=\"")? + " action=\"".len();
    let action = &gather[start..];
    let action = &action[..action.find('"')?];
    Some(
        action
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(message: &str) -> WeddingNotification {
        serde_json::from_value(json!({
            "notificationId": "n-1", "type": "emergency", "priority": "emergency",
            "title": "Marquee <down> & out", "message": message,
            "weddingContext": {"weddingDate": "2027-06-12", "venue": "Kew Gardens"}
        }))
        .unwrap()
    }

    #[test]
    fn texts_fit_twilios_1600_characters() {
        let short = text_body(&notification("Move guests indoors"), true);
        assert_eq!(
            short,
            "EMERGENCY: Marquee <down> & out\nMove guests indoors\nWedding: 2027-06-12, Kew Gardens\nReply ACK to acknowledge."
        );
        let long = text_body(&notification(&"x".repeat(5000)), false);
        assert_eq!(long.chars().count(), BODY_CHARS);
        assert!(long.ends_with("…\nWedding: 2027-06-12, Kew Gardens"));
    }

    #[test]
    fn twiml_is_escaped_and_fits_4000_characters() {
        let twiml_text = twiml(
            &notification("Move guests indoors"),
            Some("https://herald.example/inbound/twilio/calls/gather?n=n-1&x=1"),
            "en-GB",
        );
        assert_eq!(
            twiml_gather_action(&twiml_text).as_deref(),
            Some("https://herald.example/inbound/twilio/calls/gather?n=n-1&x=1")
        );
        assert_eq!(
            twiml_text,
            "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"10\" action=\"https://herald.example/inbound/twilio/calls/gather?n=n-1&amp;x=1\" method=\"POST\"><Say language=\"en-GB\">EMERGENCY alert from WedSync. Marquee &lt;down&gt; &amp; out. Move guests indoors. The wedding: 2027-06-12, Kew Gardens.</Say><Say language=\"en-GB\">Press 1 to acknowledge this alert.</Say></Gather><Say language=\"en-GB\">No key was pressed. Goodbye.</Say></Response>"
        );
        let long = twiml(&notification(&"&".repeat(9000)), None, "en-US");
        assert!(long.chars().count() <= TWIML_CHARS, "{}", long.len());
        assert!(long.chars().count() > TWIML_CHARS - 20);
        assert!(long.ends_with("</Say></Response>"));
    }

    #[test]
    fn twilios_errors_are_classified() {
        use reqwest::header::HeaderMap;
        use reqwest::StatusCode;
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, &json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &json!({"code": 20003, "message": "Authenticate", "status": 401})),
            ConnectorError::Unauthorized(message) if message == "Authenticate"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &json!({"code": 21211, "message": "Invalid 'To' Phone Number: +4", "status": 400})),
            ConnectorError::Rejected { code, message } if code == "21211" && message.contains("Invalid 'To'")
        ));
        assert!(matches!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                &HeaderMap::new(),
                &Value::Null
            ),
            ConnectorError::Unavailable(_)
        ));
    }
}
