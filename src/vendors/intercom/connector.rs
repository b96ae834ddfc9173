//! Intercom (the seed's `CommunicationPlatformConnector`) to the couple: each notification is a
//! message from the studio's teammate to the couple's contact (found by email or created), and
//! later notifications about the same wedding are replies in that conversation, so the couple
//! sees one thread per wedding. `Intercom-Version: 2.14` is pinned on every request.
//!
//! - Contacts: `POST /contacts/search` by email, else `POST /contacts` (role `user`); a 409
//!   "already exists with id=..." (the search lags a fresh contact) takes that id.
//! - The message: `POST /messages` (an email from the teammate, or in-app), the notification as
//!   HTML with WedSync's text escaped; or `POST /conversations/{id}/reply` as the teammate when
//!   the wedding's conversation is known.
//! - Rate limits: Intercom counts per 10-second window and reports it in `X-RateLimit-Limit`,
//!   `-Remaining` and `-Reset` (when the window resets, in epoch seconds), exported as
//!   `herald_vendor_quota_remaining{window="10s"}`; a 429 waits until the reset.
//! - Errors: `{type: "error.list", request_id, errors: [{code, message}]}`: 401 `unauthorized`
//!   reads the token again; 5xx retried; the rest dead-lettered with Intercom's code and message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::memory::MEMORY;
use super::settings::MessageType;
use super::IntercomSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    cut_marked, escape_html, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Contact, WeddingNotification};

/// The API version Herald is written against.
pub(super) const API_VERSION: &str = "2.14";
const SUBJECT_LENGTH: usize = 255;

pub struct IntercomConnector {
    /// This integration in this installation: what a retry's memory is kept under.
    sender: String,
    integration_id: String,
    api: Url,
    token: ReloadableSecret,
    admin_id: String,
    message_type: MessageType,
    client: OutboundClient,
    timeout: Duration,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl IntercomConnector {
    pub fn new(
        settings: &IntercomSettings,
        integration_id: &str,
        installation_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client.check_url(&format!("{}/", settings.api_url().trim_end_matches('/')))?;
        let token = ReloadableSecret::load(&settings.access_token)
            .map_err(ConnectorError::Misconfigured)?;
        Ok(Self {
            sender: format!("{installation_id}/{integration_id}"),
            integration_id: integration_id.to_owned(),
            api,
            token,
            admin_id: settings.admin_id.clone(),
            message_type: settings.message_type,
            client,
            timeout,
        })
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        if let Some(receipt) = MEMORY.already_sent(&self.sender, &notification.notification_id) {
            return Ok(receipt);
        }
        let couple = notification
            .first_contact_with_email()
            .ok_or_else(|| ConnectorError::Rejected {
                code: "no_contact".into(),
                message: "Intercom messages a contact by email, and the notification has no contact with one".into(),
            })?;
        let contact_id = self.contact(couple).await?;
        let wedding = notification
            .wedding_context
            .as_ref()
            .and_then(|context| context.wedding_id.clone())
            .unwrap_or_default();
        let body = body_of(notification);
        let (conversation_id, message_id, replied) = match MEMORY.conversation(
            &self.sender,
            &contact_id,
            &wedding,
        ) {
            Some(conversation) => {
                self.call(
                        Method::POST,
                        &format!("conversations/{conversation}/reply"),
                        Some(&json!({"message_type": "comment", "type": "admin", "admin_id": self.admin_id, "body": body})),
                    )
                    .await?;
                (Some(conversation), None, true)
            }
            None => {
                let message = self.message(&contact_id, notification, &body);
                let answer = self.call(Method::POST, "messages", Some(&message)).await?;
                (
                    answer["conversation_id"].as_str().map(str::to_owned),
                    answer["id"].as_str().map(str::to_owned),
                    false,
                )
            }
        };
        if let Some(conversation) = &conversation_id {
            MEMORY.started(&self.sender, &contact_id, &wedding, conversation);
            MEMORY.about(
                &self.integration_id,
                conversation,
                &notification.notification_id,
            );
        }
        let receipt = Receipt {
            id: message_id
                .clone()
                .or_else(|| conversation_id.clone())
                .unwrap_or_else(|| contact_id.clone()),
            details: Some(json!({
                "contactId": contact_id,
                "conversationId": conversation_id,
                "messageId": message_id,
                "replied": replied,
            })),
        };
        MEMORY.sent(&self.sender, &notification.notification_id, &receipt);
        Ok(receipt)
    }

    /// The contact with the couple's email: found, or created.
    async fn contact(&self, couple: &Contact) -> Result<String, ConnectorError> {
        let email = couple.email.as_deref().unwrap_or_default().trim();
        let found = self
            .call(
                Method::POST,
                "contacts/search",
                Some(&json!({"query": {"field": "email", "operator": "=", "value": email}})),
            )
            .await?;
        if let Some(id) = found["data"][0]["id"].as_str() {
            return Ok(id.to_owned());
        }
        let mut contact = json!({"role": "user", "email": email});
        if let Some(name) = &couple.name {
            contact["name"] = json!(name);
        }
        if let Some(phone) = &couple.phone {
            contact["phone"] = json!(phone);
        }
        match self.call(Method::POST, "contacts", Some(&contact)).await {
            Ok(created) => created["id"].as_str().map(str::to_owned).ok_or_else(|| {
                ConnectorError::Unavailable("Intercom answered without the contact's id".into())
            }),
            // The search lags a contact made moments ago; Intercom names it in the conflict.
            Err(ConnectorError::Rejected { code, message }) if code == "conflict" => message
                .rsplit_once("id=")
                .map(|(_, id)| id.trim().to_owned())
                .filter(|id| !id.is_empty())
                .ok_or(ConnectorError::Rejected { code, message }),
            Err(err) => Err(err),
        }
    }

    fn message(&self, contact_id: &str, notification: &WeddingNotification, body: &str) -> Value {
        let admin: u64 = self.admin_id.parse().unwrap_or_default();
        let mut message = json!({
            "body": body,
            "template": "plain",
            "from": {"type": "admin", "id": admin},
            "to": {"type": "user", "id": contact_id},
        });
        match self.message_type {
            MessageType::Email => {
                message["message_type"] = json!("email");
                message["subject"] = json!(cut_marked(&notification.title, SUBJECT_LENGTH));
            }
            MessageType::InApp => message["message_type"] = json!("in_app"),
        }
        message
    }

    /// The workspace and the token's teammate: the seed's authenticateConnection.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let me = self.call(Method::GET, "me", None).await?;
        Ok(json!({
            "admin": me["name"],
            "app": me["app"]["name"],
            "appId": me["app"]["id_code"],
            "region": me["app"]["region"],
        }))
    }

    /// The conversation's state, whether the couple read it, and how often they replied.
    async fn engagement_of(&self, details: &Value) -> Result<Value, ConnectorError> {
        let conversation =
            details["conversationId"]
                .as_str()
                .ok_or_else(|| ConnectorError::Rejected {
                    code: "no_conversation".into(),
                    message: "the delivery has no Intercom conversation".into(),
                })?;
        let read = self
            .call(Method::GET, &format!("conversations/{conversation}"), None)
            .await?;
        let replies = read["conversation_parts"]["conversation_parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|part| part["author"]["type"] == "user" || part["author"]["type"] == "lead")
            .count();
        Ok(json!({
            "conversationId": conversation,
            "state": read["state"],
            "read": read["read"],
            "contactReplies": replies,
        }))
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
            .bearer_auth(self.token.get().expose())
            .header("intercom-version", API_VERSION)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        self.keep_quota(&headers);
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }

    /// `X-RateLimit-Remaining` and `-Limit` as `herald_vendor_quota_remaining{window="10s"}`.
    fn keep_quota(&self, headers: &reqwest::header::HeaderMap) {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<f64>().ok())
        };
        let labels = [
            ("integration", self.integration_id.clone()),
            ("window", "10s".to_owned()),
        ];
        if let Some(remaining) = read("x-ratelimit-remaining") {
            metrics::gauge!("herald_vendor_quota_remaining", &labels).set(remaining);
        }
        if let Some(limit) = read("x-ratelimit-limit") {
            metrics::gauge!("herald_vendor_quota_limit", &labels).set(limit);
        }
    }
}

/// The notification as the message's HTML: title, message, the wedding, the links; WedSync's
/// text escaped.
fn body_of(notification: &WeddingNotification) -> String {
    let mut body = format!(
        "<p><strong>{}</strong></p><p>{}</p>",
        escape_html(&notification.title),
        escape_html(&notification.message).replace('\n', "<br>")
    );
    if let Some(context) = &notification.wedding_context {
        let mut wedding = vec![context.wedding_date.clone()];
        wedding.extend(context.couple_names.clone());
        wedding.extend(context.venue.clone());
        body.push_str(&format!(
            "<p><em>{}</em></p>",
            escape_html(&wedding.join(" · "))
        ));
    }
    for action in &notification.actions {
        if let Some(url) = &action.url {
            body.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p>",
                escape_html(url).replace('"', "&quot;"),
                escape_html(&action.label)
            ));
        }
    }
    body
}

impl Connector for IntercomConnector {
    fn vendor(&self) -> &'static str {
        "intercom"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    /// The contact's search, its creation when it is new, and the message.
    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        3
    }

    fn engagement<'a>(&'a self, details: &'a Value) -> CheckFuture<'a> {
        Box::pin(self.engagement_of(details))
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    /// A new access token is a new value where the secret lives.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.token.reload().map_err(ConnectorError::Misconfigured)
    }
}

/// A refused call, classified from Intercom's error list.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let first = &answer["errors"][0];
    let code = first["code"]
        .as_str()
        .map_or_else(|| status.as_u16().to_string(), str::to_owned);
    let message = first["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Intercom answered {status}"));
    match status.as_u16() {
        429 => {
            let until_reset = headers
                .get("x-ratelimit-reset")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(|reset| Duration::from_secs(reset.saturating_sub(now()).clamp(1, 60)));
            ConnectorError::RateLimited {
                retry_after: retry_after(headers).or(until_reset),
            }
        }
        401 => ConnectorError::Unauthorized(format!("{code}: {message}")),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        _ => ConnectorError::Rejected { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::StatusCode;

    fn error(code: &str, message: &str) -> Value {
        json!({"type": "error.list", "request_id": "r1", "errors": [{"code": code, "message": message}]})
    }

    #[test]
    fn intercoms_errors_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&(now() + 5).to_string()).unwrap(),
        );
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, &error("rate_limit_exceeded", "Exceeded rate limit")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait >= Duration::from_secs(4) && wait <= Duration::from_secs(5)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &error("unauthorized", "Access Token Invalid")),
            ConnectorError::Unauthorized(message) if message == "unauthorized: Access Token Invalid"
        ));
        assert!(matches!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), &error("parameter_not_found", "No subject supplied for email message")),
            ConnectorError::Rejected { code, .. } if code == "parameter_not_found"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), &Value::Null),
            ConnectorError::Unavailable(_)
        ));
    }

    #[test]
    fn wedsync_text_cannot_write_html() {
        let notification: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n", "type": "t", "priority": "normal",
            "title": "<b>Sam</b> & Alex", "message": "a\nb"
        }))
        .unwrap();
        assert_eq!(
            body_of(&notification),
            "<p><strong>&lt;b&gt;Sam&lt;/b&gt; &amp; Alex</strong></p><p>a<br>b</p>"
        );
    }
}
