//! WhatsApp (the seed's `CommunicationPlatformConnector`) through the Cloud API: one message per
//! configured person per notification, `POST /{phone_number_id}/messages`.
//!
//! - **The 24-hour window.** A person who wrote to the number in the last 24 hours gets the
//!   notification as free text (`*title*`, the message, the wedding, the links), or, when it is
//!   high or emergency, as a reply-button message with an Acknowledge button; anyone else gets the
//!   approved template, its body variables filled from the notification, because WhatsApp allows
//!   nothing else then. The windows are learnt from the webhook ([`super::conversations`]).
//! - **Retries** message nobody twice: a person already sent the notification in this process is
//!   skipped, and the receipt lists one message per person.
//! - **Limits**: WhatsApp's pair rate (about one message every 6 seconds to one person, error
//!   131056) and its throughput (80 messages a second per number, 130429) are rate limits; the
//!   default rate keeps to the pair rate.
//! - **Errors** are Graph's `{error: {message, type, code, error_subcode, error_data}}`: 190 (and
//!   HTTP 401) a refused token; 131000 and transient errors retried; 131026 (undeliverable), 132000
//!   and 132001 (the template's variables, or the template itself) and the rest dead-lettered with
//!   Meta's words.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::conversations::{wa_id, Sent, CONVERSATIONS};
use super::WhatsAppSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    cut_marked, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Priority, WeddingNotification};

const TEXT_LENGTH: usize = 4096;
const BUTTON_BODY_LENGTH: usize = 1024;
const TEMPLATE_PARAMETER_LENGTH: usize = 1024;
/// WhatsApp's pair rate: about one message every 6 seconds to one person.
const PAIR_WAIT: Duration = Duration::from_secs(6);

pub struct WhatsAppConnector {
    /// This integration in this installation: what a retry's memory is kept under.
    sender: String,
    api: Url,
    token: ReloadableSecret,
    phone_number_id: String,
    to: Vec<String>,
    template_name: String,
    template_language: String,
    template_parameters: Vec<String>,
    client: OutboundClient,
    timeout: Duration,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The callback data of a notification's Acknowledge button.
pub(super) fn ack_button_id(notification_id: &str) -> String {
    format!("ack|{notification_id}")
}

impl WhatsAppConnector {
    pub fn new(
        settings: &WhatsAppSettings,
        integration_id: &str,
        installation_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client.check_url(&format!("{}/", settings.api_url.trim_end_matches('/')))?;
        let token = ReloadableSecret::load(&settings.access_token)
            .map_err(ConnectorError::Misconfigured)?;
        Ok(Self {
            sender: format!("{installation_id}/{integration_id}"),
            api,
            token,
            phone_number_id: settings.phone_number_id.clone(),
            to: settings.to.clone(),
            template_name: settings.template.name.clone(),
            template_language: settings.template.language.clone(),
            template_parameters: settings.template.parameters.clone(),
            client,
            timeout,
        })
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let mut messages = Vec::with_capacity(self.to.len());
        for number in &self.to {
            let person = wa_id(number);
            if let Some(wamid) =
                CONVERSATIONS.already_sent(&self.sender, &notification.notification_id, &person)
            {
                messages.push(json!({"to": number, "messageId": wamid, "sentBefore": true}));
                continue;
            }
            let (kind, body) = if CONVERSATIONS.window_open(&self.phone_number_id, &person, now()) {
                self.free_form(number, notification)
            } else {
                ("template", self.template(number, notification))
            };
            let answer = self
                .call(
                    Method::POST,
                    &format!("{}/messages", self.phone_number_id),
                    Some(&body),
                )
                .await?;
            let wamid = answer["messages"][0]["id"].as_str().ok_or_else(|| {
                ConnectorError::Unavailable("WhatsApp answered without the message's id".into())
            })?;
            CONVERSATIONS.sent(
                &self.sender,
                &self.phone_number_id,
                wamid,
                Sent {
                    notification_id: notification.notification_id.clone(),
                    wa_id: answer["contacts"][0]["wa_id"]
                        .as_str()
                        .map_or_else(|| person.clone(), str::to_owned),
                    at: now(),
                },
            );
            messages.push(json!({"to": number, "messageId": wamid, "kind": kind}));
        }
        Ok(Receipt {
            id: messages
                .first()
                .and_then(|message| message["messageId"].as_str())
                .unwrap_or_default()
                .to_owned(),
            details: Some(json!({"phoneNumberId": self.phone_number_id, "messages": messages})),
        })
    }

    /// A message inside the person's window: text, or reply buttons for urgent notifications.
    fn free_form(&self, to: &str, notification: &WeddingNotification) -> (&'static str, Value) {
        let text = text_of(notification);
        if matches!(notification.priority, Priority::High | Priority::Emergency) {
            let body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": cut_marked(&text, BUTTON_BODY_LENGTH)},
                    "action": {"buttons": [{"type": "reply", "reply": {"id": ack_button_id(&notification.notification_id), "title": "Acknowledge"}}]},
                },
            });
            return ("interactive", body);
        }
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"body": cut_marked(&text, TEXT_LENGTH), "preview_url": false},
        });
        ("text", body)
    }

    /// The approved template, its body variables filled from the notification.
    fn template(&self, to: &str, notification: &WeddingNotification) -> Value {
        let context = notification.wedding_context.as_ref();
        let parameters: Vec<Value> = self
            .template_parameters
            .iter()
            .map(|field| {
                let value = match field.as_str() {
                    "title" => Some(notification.title.clone()),
                    "message" => Some(notification.message.clone()),
                    "weddingDate" => context.map(|c| c.wedding_date.clone()),
                    "venue" => context.and_then(|c| c.venue.clone()),
                    "coupleNames" => context.and_then(|c| c.couple_names.clone()),
                    "priority" => Some(notification.priority.as_str().to_owned()),
                    _ => Some(notification.notification_type.clone()),
                };
                json!({"type": "text", "text": template_text(value.as_deref().unwrap_or("-"))})
            })
            .collect();
        let mut template = json!({
            "name": self.template_name,
            "language": {"code": self.template_language},
        });
        if !parameters.is_empty() {
            template["components"] = json!([{"type": "body", "parameters": parameters}]);
        }
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": template,
        })
    }

    /// The business number's name and quality: the seed's authenticateConnection.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let number = self
            .call(
                Method::GET,
                &format!(
                    "{}?fields=display_phone_number,verified_name,quality_rating",
                    self.phone_number_id
                ),
                None,
            )
            .await?;
        Ok(json!({
            "phoneNumberId": number["id"],
            "displayPhoneNumber": number["display_phone_number"],
            "verifiedName": number["verified_name"],
            "qualityRating": number["quality_rating"],
        }))
    }

    /// Each message's latest status as WhatsApp reported it (sent, delivered, read, failed).
    fn statuses(&self, details: &Value) -> Result<Value, ConnectorError> {
        let messages = details["messages"]
            .as_array()
            .ok_or_else(|| ConnectorError::Rejected {
                code: "no_message".into(),
                message: "the delivery has no WhatsApp messages".into(),
            })?;
        let read: Vec<Value> = messages
            .iter()
            .map(|message| {
                let status = message["messageId"]
                    .as_str()
                    .and_then(|wamid| CONVERSATIONS.status_of(wamid));
                json!({
                    "to": message["to"],
                    "messageId": message["messageId"],
                    "status": status.as_ref().map(|(status, _)| status.clone()),
                    "at": status.map(|(_, at)| at),
                })
            })
            .collect();
        Ok(json!({"messages": read}))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let url = self
            .api
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout)
            .bearer_auth(self.token.get().expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }
}

/// A notification as a WhatsApp text: the title in bold, the message, the wedding, the links.
fn text_of(notification: &WeddingNotification) -> String {
    let mut text = format!("*{}*\n{}", notification.title.trim(), notification.message);
    if let Some(context) = &notification.wedding_context {
        let mut wedding = vec![context.wedding_date.clone()];
        wedding.extend(context.couple_names.clone());
        wedding.extend(context.venue.clone());
        text.push_str(&format!("\n\n_{}_", wedding.join(" · ")));
    }
    for action in &notification.actions {
        if let Some(url) = &action.url {
            text.push_str(&format!("\n{}: {url}", action.label));
        }
    }
    text
}

/// A template variable's text: WhatsApp refuses new lines, tabs and more than four spaces in a
/// row in one (132018), so they become single spaces.
fn template_text(value: &str) -> String {
    let flat = value.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = if flat.is_empty() {
        "-".to_owned()
    } else {
        flat
    };
    cut_marked(&flat, TEMPLATE_PARAMETER_LENGTH)
}

impl Connector for WhatsAppConnector {
    fn vendor(&self) -> &'static str {
        "whatsapp"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        self.to.len() as u32
    }

    fn engagement<'a>(&'a self, details: &'a Value) -> CheckFuture<'a> {
        Box::pin(async move { self.statuses(details) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    /// A new system-user token is a new value where the secret lives.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.token.reload().map_err(ConnectorError::Misconfigured)
    }
}

/// A refused call, classified from Graph's error.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let error = &answer["error"];
    let code = error["code"].as_u64();
    let mut message = error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("WhatsApp answered {status}"));
    if let Some(details) = error["error_data"]["details"].as_str() {
        message = format!("{message}: {details}");
    }
    match (status.as_u16(), code) {
        (401, _) | (_, Some(190)) => ConnectorError::Unauthorized(message),
        (_, Some(131056)) => ConnectorError::RateLimited {
            retry_after: Some(retry_after(headers).unwrap_or(PAIR_WAIT)),
        },
        (429, _) | (_, Some(4 | 80007 | 130429)) => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        (500..=599, _) | (_, Some(1 | 2 | 131000 | 131016)) => {
            ConnectorError::Unavailable(format!("{status}: {message}"))
        }
        _ if error["is_transient"] == true => ConnectorError::Unavailable(message),
        _ => ConnectorError::Rejected {
            code: code.map_or_else(|| status.as_u16().to_string(), |code| code.to_string()),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;
    use reqwest::StatusCode;

    #[test]
    fn graphs_errors_are_classified() {
        let error = |code: u64, message: &str| json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "A1"}});
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &error(190, "Invalid OAuth access token")),
            ConnectorError::Unauthorized(message) if message == "Invalid OAuth access token"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &error(131056, "(Business Account, Consumer Account) pair rate limit hit")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == PAIR_WAIT
        ));
        assert!(matches!(
            classify(
                StatusCode::BAD_REQUEST,
                &HeaderMap::new(),
                &error(130429, "Rate limit hit")
            ),
            ConnectorError::RateLimited { .. }
        ));
        let mut missing = error(132001, "Template name does not exist in the translation");
        missing["error"]["error_data"] = json!({"messaging_product": "whatsapp", "details": "template name (wedding_alert) does not exist in en_GB"});
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &HeaderMap::new(), &missing),
            ConnectorError::Rejected { code, message } if code == "132001" && message.ends_with("does not exist in en_GB")
        ));
        assert!(matches!(
            classify(
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                &error(131000, "Something went wrong")
            ),
            ConnectorError::Unavailable(_)
        ));
    }

    #[test]
    fn template_variables_are_one_line() {
        assert_eq!(
            template_text("Rain\nfrom 14:00\t  and\n\nwind"),
            "Rain from 14:00 and wind"
        );
        assert_eq!(template_text("  "), "-");
    }
}
