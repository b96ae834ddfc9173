//! Twilio's callbacks (`POST /inbound/twilio/{integration}/...` under `webhook.public_url`),
//! each signed with `X-Twilio-Signature`: the base64 HMAC-SHA1, under the account's auth token,
//! of the full URL Twilio called followed by every form parameter's name and value, sorted by
//! name. Twilio signs no timestamp, so there is no replay window; what a replay could do is
//! record an acknowledgement twice, and acknowledgements are recorded once each.
//!
//! - `status?n=<notification>`: a message's or call's status callback, kept for the delivery's
//!   engagement (`undelivered`, `failed`, `busy`, `no-answer` are logged as warnings).
//! - `sms`: a text to the sending number (its "A message comes in" webhook). A reply whose
//!   first word is `ACK`, `OK` or `1` acknowledges every alert sent to that person in the last
//!   24 hours that they have not acknowledged yet, and the person is told how many; any other
//!   text gets no answer.
//! - `gather?n=<notification>`: the key pressed during a call; 1 acknowledges the alert and the
//!   call says so.

use base64::Engine;
use hmac::Mac;
use serde_json::Value;

use super::memory::{scope, Status, MEMORY};
use super::{Twilio, TwilioSettings};
use crate::sandbox::contract::fields_of;
use crate::secret::same_secret;
use crate::vendors::inbound::{
    InboundAction, InboundAnswer, InboundError, InboundFuture, InboundHandler, InboundRequest,
};

/// The words that, first in a reply, acknowledge.
const REPLY_KEYWORDS: &[&str] = &["ACK", "OK", "1"];
const TWIML: &str = "text/xml; charset=utf-8";

impl InboundHandler for Twilio {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(async move { callback(request) })
    }
}

/// `X-Twilio-Signature` of a form POST to `url`: how Twilio signs (its simulator signs with it).
pub fn twilio_signature(auth_token: &str, url: &str, form: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = form.iter().collect();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn callback(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "Twilio callback {:?} of integration {:?}",
            request.path, request.integration_id
        ))
    };
    if !matches!(request.path, "status" | "sms" | "gather") || request.method != "POST" {
        return Err(not_found());
    }
    let settings = request
        .settings
        .downcast_ref::<TwilioSettings>()
        .ok_or_else(not_found)?;
    let webhook = settings.webhook.as_ref().ok_or_else(not_found)?;
    let token = settings
        .auth_token
        .read()
        .map_err(InboundError::Misconfigured)?;
    let mut url = format!(
        "{}/inbound/twilio/{}/{}",
        webhook.public_url.trim_end_matches('/'),
        request.integration_id,
        request.path
    );
    if !request.query.is_empty() {
        url.push('?');
        url.push_str(request.query);
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(request.body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let given = request
        .headers
        .get("x-twilio-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !same_secret(given, &twilio_signature(token.expose(), &url, &form)) {
        return Err(InboundError::SignatureRefused(
            "X-Twilio-Signature does not match the URL and parameters".into(),
        ));
    }
    let fields = fields_of(request.body);
    let field = |name: &str| fields[name].as_str().unwrap_or_default().to_owned();
    let notification = fields_of(request.query.as_bytes())["n"]
        .as_str()
        .map(str::to_owned);
    let scope = scope(
        &settings.api_url,
        &settings.account_sid,
        request.integration_id,
    );
    match request.path {
        "status" => {
            let (sid, status) = match fields.get("MessageSid") {
                Some(Value::String(sid)) => (sid.clone(), field("MessageStatus")),
                _ => (field("CallSid"), field("CallStatus")),
            };
            if sid.is_empty() || status.is_empty() {
                return Err(InboundError::Malformed(
                    "a status callback names MessageSid and MessageStatus, or CallSid and CallStatus".into(),
                ));
            }
            let error_code = Some(field("ErrorCode")).filter(|code| !code.is_empty());
            if matches!(
                status.as_str(),
                "undelivered" | "failed" | "busy" | "no-answer" | "canceled"
            ) {
                tracing::warn!(integration = %request.integration_id, %sid, %status, error_code = ?error_code, notification = ?notification, "Twilio could not reach the person");
            }
            MEMORY.record_status(
                &sid,
                Status {
                    status,
                    error_code,
                    at: request.now,
                },
            );
            Ok(InboundAnswer::Ignored)
        }
        "sms" => {
            let person = field("From");
            let first_word = field("Body")
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_uppercase();
            if person.is_empty() || !REPLY_KEYWORDS.contains(&first_word.as_str()) {
                return Ok(reply(Vec::new(), "<Response/>".to_owned()));
            }
            let open = MEMORY.take_open(&scope, &person, request.now);
            let answer = match open.len() {
                0 => "There is no open alert from this number to acknowledge.".to_owned(),
                1 => "Acknowledged. Thank you.".to_owned(),
                count => format!("Acknowledged {count} alerts. Thank you."),
            };
            let acknowledged = open
                .into_iter()
                .map(|one| InboundAction {
                    notification_id: one.notification_id,
                    action_id: "reply".to_owned(),
                    actor: person.clone(),
                })
                .collect();
            Ok(reply(
                acknowledged,
                format!("<Response><Message>{answer}</Message></Response>"),
            ))
        }
        _ => {
            let notification = notification.ok_or_else(|| {
                InboundError::Malformed("the gather address names its notification (n)".into())
            })?;
            if field("Digits") != "1" {
                return Ok(reply(
                    Vec::new(),
                    "<Response><Say>That key does not acknowledge the alert. Goodbye.</Say></Response>".to_owned(),
                ));
            }
            // On a call Herald placed, the person is the number called.
            let person = if field("Direction").starts_with("outbound") {
                field("To")
            } else {
                field("From")
            };
            Ok(reply(
                vec![InboundAction {
                    notification_id: notification,
                    action_id: "keypress".to_owned(),
                    actor: person,
                }],
                "<Response><Say>The alert is acknowledged. Thank you. Goodbye.</Say></Response>"
                    .to_owned(),
            ))
        }
    }
}

fn reply(acknowledged: Vec<InboundAction>, body: String) -> InboundAnswer {
    InboundAnswer::Reply {
        acknowledged,
        content_type: TWIML,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_url_and_the_sorted_parameters() {
        let form = vec![
            ("To".to_owned(), "+15005550006".to_owned()),
            ("Body".to_owned(), "ACK".to_owned()),
        ];
        let signature = twilio_signature("token", "https://h.example/sms?x=1", &form);
        let mut reversed = form.clone();
        reversed.reverse();
        assert_eq!(
            twilio_signature("token", "https://h.example/sms?x=1", &reversed),
            signature
        );
        assert_ne!(
            twilio_signature("token", "https://h.example/sms?x=2", &form),
            signature
        );
        assert_ne!(
            twilio_signature("other", "https://h.example/sms?x=1", &form),
            signature
        );
        // base64 of a 20-byte SHA-1 MAC.
        assert_eq!(signature.len(), 28);
    }
}
