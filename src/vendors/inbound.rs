//! What vendors send Herald, as the vendors read it: a call to `/inbound/<kind>/<integration>/...`
//! is verified by the vendor's own scheme and turned into an [`InboundAnswer`] (people acted on
//! delivered notifications, or the vendor's event as a notification). The API mounts the route,
//! finds the integration and acts on the answer (records the acknowledgements, routes the
//! notification). A handler verifies the call and may read the vendor's API (with the outbound
//! policy's client) when the vendor's event carries only an id.
//!
//! OAuth app installs through Herald ([`OAuthInstall`]) are the other thing vendors send back:
//! the vendor's consent page is the vendor's to build; the state, the callback
//! (`/oauth/<kind>/callback`) and the code exchange's bookkeeping are Herald's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;

use super::VendorSettings;
use crate::connectors::OutboundClient;
use crate::secret::SecretRef;
use crate::vault::Vault;
use crate::wedsync::WeddingNotification;

/// One inbound call to an integration.
pub struct InboundRequest<'a> {
    pub integration_id: &'a str,
    pub organization: &'a str,
    pub settings: &'a dyn VendorSettings,
    /// `POST`, or `GET` for a vendor's subscription check (WhatsApp's `hub.challenge`).
    pub method: &'a str,
    /// The path after `/inbound/<kind>/<integration>/` (`interactivity`, `order.booked/<secret>`).
    pub path: &'a str,
    /// The query string, without its `?` (empty when there is none).
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Now, in seconds since the Unix epoch (signature windows).
    pub now: u64,
    /// The outbound policy's client and the integration's timeout, for a handler that reads the
    /// vendor's API to know what an event is about.
    pub client: &'a OutboundClient,
    pub timeout: Duration,
    /// The vault, when `security.credentials_key` is set: where a secret the vendor chose
    /// (Asana's webhook secret) is kept.
    pub vault: Option<&'a Arc<Vault>>,
}

/// What a handler answers, once it has verified (and, where needed, looked up) the call.
pub type InboundFuture<'a> =
    Pin<Box<dyn Future<Output = Result<InboundAnswer, InboundError>> + Send + 'a>>;

/// What an inbound call amounts to.
#[derive(Debug)]
pub enum InboundAnswer {
    /// People acted on notifications Herald delivered (button clicks), to record once each.
    Acknowledged(Vec<InboundAction>),
    /// The vendor's events as notifications of the integration's organization, to route to its
    /// other targets (a vendor that batches events sends several in one call), and the earlier
    /// notifications those events answer (a payment for a reminder), to record.
    Notifications {
        notifications: Vec<WeddingNotification>,
        acknowledged: Vec<InboundAction>,
    },
    /// A call Herald has no use for (an interaction type it does not send): answered 200.
    Ignored,
    /// The vendor confirming the address before it sends events (Asana's `X-Hook-Secret`):
    /// answered 200 with these headers.
    Handshake(Vec<(&'static str, String)>),
    /// The vendor's subscription check that wants its challenge back as the body (WhatsApp's
    /// `hub.challenge`): answered 200, `text/plain`.
    Challenge(String),
    /// A call the vendor wants a document back for (Twilio's TwiML: a text back to the person,
    /// what a call says next), with the acknowledgements it carried (none, for a reply that
    /// acknowledges nothing): answered 200 with `body` as `content_type`.
    Reply {
        acknowledged: Vec<InboundAction>,
        content_type: &'static str,
        body: String,
    },
}

impl InboundAnswer {
    /// The vendor's events as notifications, answering none.
    pub fn notifications(notifications: Vec<WeddingNotification>) -> Self {
        InboundAnswer::Notifications {
            notifications,
            acknowledged: Vec::new(),
        }
    }
}

/// Someone acted on a delivered notification in the vendor's system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundAction {
    pub notification_id: String,
    pub action_id: String,
    /// Who acted, in the vendor's terms (a Slack user id).
    pub actor: String,
}

/// Why an inbound call is refused. The API answers each with its status and the JSON error shape.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// This integration takes no such call (404).
    #[error("{0} not found")]
    NotFound(String),
    /// The address no longer takes calls (410: a REST-hook sender drops the subscription).
    #[error("{0}")]
    Gone(String),
    /// The vendor's signature (or the secret in the address) does not verify (401).
    #[error("signature refused: {0}")]
    SignatureRefused(String),
    /// The body is not what the vendor sends (400).
    #[error("malformed: {0}")]
    Malformed(String),
    /// The integration's inbound secret cannot be read (503); the reason is logged, not answered.
    #[error("inbound calls of this integration are misconfigured")]
    Misconfigured(String),
    /// The vendor's API, read to know what the event is about, did not answer (503: the vendor
    /// sends the event again later).
    #[error("the vendor could not be read: {0}")]
    VendorUnavailable(String),
}

/// A vendor's handler of its inbound calls.
pub trait InboundHandler: Send + Sync {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a>;

    /// The answer to a call for an integration Herald does not have (removed from the
    /// configuration): 404, unless the vendor's senders need another word to stop calling.
    fn unknown_integration(&self, integration_id: &str) -> InboundError {
        InboundError::NotFound(format!(
            "inbound address for integration {integration_id:?}"
        ))
    }
}

/// A vendor whose apps are installed through Herald with OAuth 2 authorization codes.
pub trait OAuthInstall: Send + Sync {
    /// Whether the vendor takes PKCE (RFC 7636, S256): Herald then makes a verifier for each
    /// install, puts its challenge on the consent page and sends it with the code.
    fn takes_pkce(&self) -> bool;

    /// The vendor's consent page for this integration, carrying `state` (and `code_challenge`
    /// when the vendor takes PKCE); or why the integration is not installed through Herald (a
    /// private-app token, a refresh token configured).
    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, String>;
}

/// The redirect URI of an app installed through Herald: one with `oauth.redirect_uri` and no
/// configured `oauth.refresh_token`; anything else is refused with the same words for every
/// vendor.
pub fn install_redirect_uri<'a>(
    refresh_token: Option<&SecretRef>,
    redirect_uri: Option<&'a String>,
) -> Result<&'a str, String> {
    match (refresh_token, redirect_uri) {
        (None, Some(redirect_uri)) => Ok(redirect_uri),
        _ => Err(NOT_INSTALLABLE.to_owned()),
    }
}

/// Why an integration's app is not installed through Herald.
pub const NOT_INSTALLABLE: &str =
    "not an app installed through Herald (oauth.redirect_uri and no oauth.refresh_token)";

/// The hex HMAC-SHA256 of `body` under `key`: how Asana (`X-Hook-Signature`) and Tripleseat
/// (`X-Signature`) sign what they send (their simulators sign with it).
pub fn hex_hmac_sha256(key: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks that `signature` (the vendor's `header`) is the hex HMAC-SHA256 of `body` under `key`,
/// in constant time.
pub fn verify_hex_hmac_sha256(
    key: &str,
    body: &[u8],
    signature: &str,
    header: &str,
) -> Result<(), InboundError> {
    use hmac::Mac;
    let refused = || InboundError::SignatureRefused(format!("{header} does not match"));
    let given = hex::decode(signature.trim()).map_err(|_| refused())?;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).map_err(|_| refused())?;
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_signatures_verify_only_for_the_body_and_key_signed() {
        let body = br#"{"events":[]}"#;
        let signature = hex_hmac_sha256("s3cret", body);
        assert_eq!(signature.len(), 64);
        assert!(verify_hex_hmac_sha256("s3cret", body, &signature, "X-Sig").is_ok());
        for (key, body, signature) in [
            ("other", &body[..], signature.as_str()),
            ("s3cret", &br#"{"events":[{}]}"#[..], signature.as_str()),
            ("s3cret", &body[..], "not hex"),
        ] {
            let refused = verify_hex_hmac_sha256(key, body, signature, "X-Sig").unwrap_err();
            assert_eq!(
                refused.to_string(),
                "signature refused: X-Sig does not match"
            );
        }
    }
}
