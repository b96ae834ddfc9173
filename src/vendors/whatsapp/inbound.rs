//! WhatsApp's webhook, `/inbound/whatsapp/{integration}/webhooks`:
//!
//! - `GET` is Meta's subscription check: `hub.mode=subscribe` with the configured verify token
//!   is answered with `hub.challenge` as the body; anything else is refused.
//! - `POST` carries messages and statuses, signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256
//!   of the body with the app secret>` (no timestamp: Meta signs the body only, so a replay is
//!   recognised by what it carries instead: an acknowledgement is recorded once per notification,
//!   action and person, and a status only ever moves forward). For this integration's number:
//!   - a message from a person opens their 24-hour window;
//!   - a press of a notification's Acknowledge button, a reply to one of Herald's messages, or a
//!     message that is just `ACK`, `OK` or `1` (the notification last sent to them) acknowledges
//!     the notification, by `whatsapp:+<number>`;
//!   - statuses (sent, delivered, read, failed) are kept for engagement.

use serde_json::Value;

use super::connector::ack_button_id;
use super::conversations::CONVERSATIONS;
use super::WhatsAppSettings;
use crate::secret::same_secret;
use crate::vendors::inbound::{
    verify_hex_hmac_sha256, InboundAction, InboundAnswer, InboundError, InboundFuture,
    InboundHandler, InboundRequest,
};

const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Replies that acknowledge the notification last sent to the person.
const KEYWORDS: &[&str] = &["ack", "ok", "1"];

impl InboundHandler for super::WhatsApp {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(async move { handle(&request) })
    }
}

fn handle(request: &InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let settings = request
        .settings
        .downcast_ref::<WhatsAppSettings>()
        .ok_or_else(|| InboundError::NotFound("WhatsApp webhook".into()))?;
    let webhook = settings
        .webhook
        .as_ref()
        .filter(|_| request.path == "webhooks")
        .ok_or_else(|| {
            InboundError::NotFound(format!(
                "WhatsApp webhook of integration {:?}",
                request.integration_id
            ))
        })?;
    if request.method == "GET" {
        let query = |name: &str| {
            url::form_urlencoded::parse(request.query.as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        };
        let token = webhook
            .verify_token
            .read()
            .map_err(InboundError::Misconfigured)?;
        if query("hub.mode") != "subscribe"
            || !same_secret(&query("hub.verify_token"), token.expose())
        {
            return Err(InboundError::SignatureRefused(
                "hub.verify_token does not match the integration's verify_token".into(),
            ));
        }
        return Ok(InboundAnswer::Challenge(query("hub.challenge")));
    }
    let secret = webhook
        .app_secret
        .read()
        .map_err(InboundError::Misconfigured)?;
    let signature = request
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("sha256="))
        .unwrap_or_default();
    verify_hex_hmac_sha256(
        secret.expose(),
        request.body,
        signature,
        "X-Hub-Signature-256",
    )?;
    let payload: Value = serde_json::from_slice(request.body)
        .map_err(|err| InboundError::Malformed(format!("expected WhatsApp's JSON: {err}")))?;
    let phone = &settings.phone_number_id;
    let mut actions = Vec::new();
    for change in payload["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["changes"].as_array().into_iter().flatten())
        .filter(|change| change["field"] == "messages")
    {
        let value = &change["value"];
        if value["metadata"]["phone_number_id"] != phone.as_str() {
            continue;
        }
        for message in value["messages"].as_array().into_iter().flatten() {
            let Some(from) = message["from"].as_str() else {
                continue;
            };
            let at = timestamp(&message["timestamp"]);
            CONVERSATIONS.wrote(phone, from, at);
            if let Some(notification_id) = acknowledged(phone, from, message) {
                actions.push(InboundAction {
                    notification_id,
                    action_id: "acknowledge".into(),
                    actor: format!("whatsapp:+{from}"),
                });
            }
        }
        for status in value["statuses"].as_array().into_iter().flatten() {
            if let (Some(wamid), Some(said)) = (status["id"].as_str(), status["status"].as_str()) {
                CONVERSATIONS.status(wamid, said, timestamp(&status["timestamp"]));
            }
        }
    }
    if actions.is_empty() {
        Ok(InboundAnswer::Ignored)
    } else {
        Ok(InboundAnswer::Acknowledged(actions))
    }
}

/// WhatsApp's timestamps are seconds since the epoch, written as text.
fn timestamp(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .or_else(|| value.as_u64())
        .unwrap_or(0)
}

/// The notification a person's message acknowledges, if it acknowledges one.
fn acknowledged(phone: &str, from: &str, message: &Value) -> Option<String> {
    let pressed = message["interactive"]["button_reply"]["id"]
        .as_str()
        .or_else(|| message["button"]["payload"].as_str());
    if let Some(notification_id) = pressed.and_then(|id| id.strip_prefix("ack|")) {
        // Only a button on a message Herald sent this person for that notification.
        return message["context"]["id"]
            .as_str()
            .and_then(|replied_to| CONVERSATIONS.message(replied_to))
            .filter(|sent| {
                sent.wa_id == from
                    && sent.notification_id == notification_id
                    && pressed == Some(ack_button_id(notification_id).as_str())
            })
            .map(|sent| sent.notification_id);
    }
    if let Some(replied_to) = message["context"]["id"].as_str() {
        return CONVERSATIONS
            .message(replied_to)
            .filter(|sent| sent.wa_id == from)
            .map(|sent| sent.notification_id);
    }
    let text = message["text"]["body"].as_str()?.trim().to_lowercase();
    KEYWORDS
        .contains(&text.as_str())
        .then(|| CONVERSATIONS.last_sent_to(phone, from))
        .flatten()
}
