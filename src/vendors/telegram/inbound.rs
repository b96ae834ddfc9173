//! Telegram's updates (`POST /inbound/telegram/{integration}/updates`, the address `setWebhook`
//! registers): Telegram signs nothing, so the secret token it sends back in
//! `X-Telegram-Bot-Api-Secret-Token` is the proof, compared in constant time (it has no
//! timestamp either: a press repeated is recorded once).
//!
//! - A press on one of Herald's callback buttons (`callback_query`, data
//!   `ack|<action>|<notification>`) acknowledges that notification with that action, by the
//!   person who pressed it; Telegram is told (`answerCallbackQuery`) so the button stops spinning.
//! - A reply to one of Herald's messages (`message.reply_to_message`, which carries the original
//!   message's buttons) acknowledges its notification with the action `reply`.
//!
//! Anything else (other messages, a press on a button that is not Herald's) is answered 200 and
//! left.

use serde_json::Value;

use super::connector::parse_callback_data;
use super::{Telegram, TelegramConnector, TelegramSettings};
use crate::secret::same_secret;
use crate::vendors::inbound::{
    InboundAction, InboundAnswer, InboundError, InboundFuture, InboundHandler, InboundRequest,
};

impl InboundHandler for Telegram {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(update(request))
    }
}

async fn update(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "Telegram webhook of integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "updates" {
        return Err(not_found());
    }
    let settings = request
        .settings
        .downcast_ref::<TelegramSettings>()
        .ok_or_else(not_found)?;
    let webhook = settings.webhook.as_ref().ok_or_else(not_found)?;
    let expected = webhook
        .secret_token
        .read()
        .map_err(InboundError::Misconfigured)?;
    let given = request
        .headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !same_secret(given, expected.expose()) {
        return Err(InboundError::SignatureRefused(
            "X-Telegram-Bot-Api-Secret-Token does not match".into(),
        ));
    }
    let update: Value = serde_json::from_slice(request.body).map_err(|err| {
        InboundError::Malformed(format!("expected a Telegram Update object: {err}"))
    })?;
    let actor = |from: &Value| {
        from["username"]
            .as_str()
            .map(|name| format!("@{name}"))
            .or_else(|| from["id"].as_i64().map(|id| id.to_string()))
            .unwrap_or_else(|| "someone on Telegram".to_owned())
    };
    if let Some(query) = update.get("callback_query") {
        let Some((action_id, notification_id)) =
            query["data"].as_str().and_then(parse_callback_data)
        else {
            return Ok(InboundAnswer::Ignored);
        };
        if let Some(query_id) = query["id"].as_str() {
            // Best effort: the press is recorded whether or not Telegram hears back.
            if let Ok(connector) = TelegramConnector::new(
                settings,
                request.integration_id,
                request.client.clone(),
                request.timeout,
            ) {
                if let Err(err) = connector.answer_callback(query_id, "Acknowledged").await {
                    tracing::warn!(integration = %request.integration_id, error = %err, "answerCallbackQuery failed");
                }
            }
        }
        return Ok(InboundAnswer::Acknowledged(vec![InboundAction {
            notification_id,
            action_id,
            actor: actor(&query["from"]),
        }]));
    }
    let message = &update["message"];
    let replied_to = message["reply_to_message"]["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().into_iter().flatten())
        .find_map(|button| {
            button["callback_data"]
                .as_str()
                .and_then(parse_callback_data)
        });
    Ok(match replied_to {
        Some((_, notification_id)) => InboundAnswer::Acknowledged(vec![InboundAction {
            notification_id,
            action_id: "reply".to_owned(),
            actor: actor(&message["from"]),
        }]),
        None => InboundAnswer::Ignored,
    })
}
