//! Slack's interactivity Request URL (`POST /inbound/slack/{integration}/interactivity`): verified
//! with the app's signing secret (`v0` HMAC-SHA256 over the timestamp and body, five-minute
//! window); a click on one of Herald's buttons acknowledges the notification the button carries.

use serde::Deserialize;

use super::{verify_slack_request, Slack, SlackSettings};
use crate::vendors::inbound::{
    InboundAction, InboundAnswer, InboundError, InboundFuture, InboundHandler, InboundRequest,
};

/// The most actions read from one interactivity payload (a click sends one).
const MAX_ACTIONS_PER_PAYLOAD: usize = 5;

/// The part of Slack's `block_actions` payload Herald reads.
#[derive(Deserialize)]
struct BlockActions {
    #[serde(rename = "type")]
    kind: String,
    user: SlackUser,
    #[serde(default)]
    actions: Vec<SlackAction>,
}

#[derive(Deserialize)]
struct SlackUser {
    id: String,
}

#[derive(Deserialize)]
struct SlackAction {
    action_id: String,
    /// Herald puts the notification id in every button's value.
    #[serde(default)]
    value: Option<String>,
}

impl InboundHandler for Slack {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(std::future::ready(interactivity(request)))
    }
}

/// A button click (a `block_actions` payload) verified by Slack's v0 signature.
fn interactivity(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "interactivity for integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "interactivity" {
        return Err(not_found());
    }
    let signing_secret = request
        .settings
        .downcast_ref::<SlackSettings>()
        .and_then(|settings| settings.signing_secret.as_ref())
        .ok_or_else(not_found)?;
    let secret = signing_secret.read().map_err(InboundError::Misconfigured)?;
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    verify_slack_request(
        secret.expose(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        request.body,
        request.now,
    )
    .map_err(|reason| InboundError::SignatureRefused(reason.to_string()))?;
    let payload = url::form_urlencoded::parse(request.body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| {
            InboundError::Malformed("expected a form body with a payload field".into())
        })?;
    let payload: BlockActions = serde_json::from_str(&payload)
        .map_err(|err| InboundError::Malformed(format!("payload: {err}")))?;
    if payload.kind != "block_actions" {
        // Other interaction types (shortcuts, view submissions) are not Herald's; Slack only
        // needs a 200 within three seconds.
        return Ok(InboundAnswer::Ignored);
    }
    // A click carries one action; a payload with more is read only as far as a real one
    // goes, and each (notification, action) once.
    let mut actions: Vec<InboundAction> = payload
        .actions
        .into_iter()
        .take(MAX_ACTIONS_PER_PAYLOAD)
        .filter_map(|action| {
            Some(InboundAction {
                notification_id: action.value?,
                action_id: action.action_id,
                actor: payload.user.id.clone(),
            })
        })
        .collect();
    actions.sort_by(|a, b| {
        (&a.notification_id, &a.action_id).cmp(&(&b.notification_id, &b.action_id))
    });
    actions.dedup_by(|a, b| a.notification_id == b.notification_id && a.action_id == b.action_id);
    Ok(InboundAnswer::Acknowledged(actions))
}
