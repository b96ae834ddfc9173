//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): the `webhook-signature`
//! header, `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, with secrets written
//! `whsec_<base64>`. Herald signs with it what it posts to receivers that can check it.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ConnectorError;

/// Decodes a `whsec_<base64>` secret into the HMAC key.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, ConnectorError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64.decode(encoded).map_err(|_| {
        ConnectorError::Misconfigured("the webhook secret must be whsec_ followed by base64".into())
    })
}

/// Returns the `webhook-signature` header value for a message.
pub fn sign_standard_webhook(key: &[u8], message_id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks reference implementations' test suites.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature =
            sign_standard_webhook(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_that_is_not_base64_is_refused() {
        assert!(matches!(
            signing_key("whsec_not base64!"),
            Err(ConnectorError::Misconfigured(_))
        ));
    }
}
