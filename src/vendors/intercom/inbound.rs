//! Intercom's webhooks, `POST /inbound/intercom/{integration}/webhooks`, signed
//! `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body with the app's client secret>` (no
//! timestamp; a replay is recognised by what it carries: an acknowledgement is recorded once per
//! notification, action and person). A `conversation.user.replied` on a conversation Herald
//! started is the couple's reply: it acknowledges the notification the conversation last carried,
//! by `intercom:<their email>`. Intercom's `ping` and every other topic are answered and left.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

use super::memory::MEMORY;
use super::IntercomSettings;
use crate::vendors::inbound::{
    InboundAction, InboundAnswer, InboundError, InboundFuture, InboundHandler, InboundRequest,
};

impl InboundHandler for super::Intercom {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(async move { handle(&request) })
    }
}

/// The `X-Hub-Signature` value Intercom sends with `body`.
pub fn sign(client_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(client_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

fn handle(request: &InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let settings = request
        .settings
        .downcast_ref::<IntercomSettings>()
        .ok_or_else(|| InboundError::NotFound("Intercom webhook".into()))?;
    let webhook = settings
        .webhook
        .as_ref()
        .filter(|_| request.path == "webhooks" && request.method == "POST")
        .ok_or_else(|| {
            InboundError::NotFound(format!(
                "Intercom webhook of integration {:?}",
                request.integration_id
            ))
        })?;
    let secret = webhook
        .client_secret
        .read()
        .map_err(InboundError::Misconfigured)?;
    let given = request
        .headers
        .get("x-hub-signature")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("sha1="))
        .and_then(|value| hex::decode(value.trim()).ok())
        .unwrap_or_default();
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| InboundError::SignatureRefused("X-Hub-Signature does not match".into()))?;
    mac.update(request.body);
    mac.verify_slice(&given)
        .map_err(|_| InboundError::SignatureRefused("X-Hub-Signature does not match".into()))?;
    let event: Value = serde_json::from_slice(request.body)
        .map_err(|err| InboundError::Malformed(format!("expected Intercom's JSON: {err}")))?;
    if event["topic"] != "conversation.user.replied" {
        return Ok(InboundAnswer::Ignored);
    }
    let item = &event["data"]["item"];
    let Some(notification_id) = item["id"]
        .as_str()
        .and_then(|conversation| MEMORY.notification_in(request.integration_id, conversation))
    else {
        return Ok(InboundAnswer::Ignored);
    };
    let author = item["conversation_parts"]["conversation_parts"]
        .as_array()
        .and_then(|parts| parts.last())
        .map(|part| &part["author"])
        .unwrap_or(&item["source"]["author"]);
    let who = author["email"]
        .as_str()
        .or_else(|| author["id"].as_str())
        .unwrap_or("contact");
    Ok(InboundAnswer::Acknowledged(vec![InboundAction {
        notification_id,
        action_id: "reply".into(),
        actor: format!("intercom:{who}"),
    }]))
}
