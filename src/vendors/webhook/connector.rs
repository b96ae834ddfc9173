//! The generic outbound webhook, signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>): headers `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, where the
//! secret is written `whsec_<base64>`. The body is `{type, timestamp, data}` with the WedSync
//! notification as `data`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;

use super::WebhookSettings;
use crate::connectors::http::{classify_status, transport_error, OutboundClient};
use crate::connectors::standard_webhooks::{sign_standard_webhook, signing_key};
use crate::connectors::{
    CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;

/// The Standard Webhooks payload shape: `{type, timestamp, data}`.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: &'a crate::wedsync::WeddingNotification,
}

pub struct WebhookConnector {
    url: Url,
    /// With the delivery id, the `webhook-id`: the same for every retry of one delivery, and
    /// never the same for two installations (delivery ids start at 1 in every store).
    installation_id: Arc<str>,
    secret: ReloadableSecret,
    client: OutboundClient,
    timeout: Duration,
}

impl WebhookConnector {
    pub fn new(
        settings: &WebhookSettings,
        installation_id: Arc<str>,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let url = client.check_url(&settings.url)?;
        let secret =
            ReloadableSecret::load(&settings.secret).map_err(ConnectorError::Misconfigured)?;
        signing_key(secret.get().expose())?;
        Ok(Self {
            url,
            installation_id,
            secret,
            client,
            timeout,
        })
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let message_id = format!("msg_{}_{}", self.installation_id, delivery.delivery_id);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let body = serde_json::to_vec(&Envelope {
            kind: &delivery.notification.notification_type,
            timestamp: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            data: &delivery.notification,
        })
        .map_err(|err| {
            ConnectorError::Misconfigured(format!("cannot encode the notification: {err}"))
        })?;
        let key = signing_key(self.secret.get().expose())?;
        let signature = sign_standard_webhook(&key, &message_id, timestamp, &body);
        let response = self
            .client
            .client()
            .post(self.url.clone())
            .timeout(self.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(Receipt::id(message_id));
        }
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Err(classify_status(status, &headers, &text))
    }
}

impl Connector for WebhookConnector {
    fn vendor(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &crate::wedsync::WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a serde_json::Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("webhook")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        // A generic receiver has no read-only endpoint: any request would be a message.
        Box::pin(async {
            Err(ConnectorError::Rejected {
                code: "unsupported".into(),
                message: "a generic webhook cannot be checked without sending it a message".into(),
            })
        })
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.secret.reload().map_err(ConnectorError::Misconfigured)
    }
}
