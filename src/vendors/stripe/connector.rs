//! Stripe (the seed's payment processor), outward: the wedding's facts kept on the couple's
//! Stripe customer, so invoices and payments the studio makes in Stripe carry the right wedding.
//! Stripe's API is form-encoded with a bearer secret key; errors are `{error: {type, code,
//! message, param}}`.
//!
//! - The customer is found by the notification's first contact with an email
//!   (`GET /v1/customers?email=`), else created (`POST /v1/customers` with the email and name).
//! - Its metadata takes `wedsync_wedding_id`, `wedsync_wedding_date`, `wedsync_venue` and the
//!   last notification's id and title (`POST /v1/customers/{id}`, or at creation), each inside
//!   Stripe's 500 characters.
//! - Every write carries an `Idempotency-Key` of the delivery and step: a retry after a lost
//!   answer gets Stripe's first answer back instead of a second customer.
//! - 429 waits (Stripe sends no Retry-After: Herald's backoff), 401 reads the key again, 5xx are
//!   retried, other refusals are dead-lettered with Stripe's message and parameter.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use super::StripeSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    first_chars, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::WeddingNotification;

/// Stripe's longest metadata value, in characters.
const METADATA_CHARS: usize = 500;

pub struct StripeConnector {
    api: Url,
    secret_key: ReloadableSecret,
    installation_id: Arc<str>,
    client: OutboundClient,
    timeout: Duration,
}

impl StripeConnector {
    pub fn new(
        settings: &StripeSettings,
        installation_id: Arc<str>,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client.check_url(settings.api_url.trim_end_matches('/'))?;
        let secret_key =
            ReloadableSecret::load(&settings.secret_key).map_err(ConnectorError::Misconfigured)?;
        let key = secret_key.get();
        if !(key.expose().starts_with("sk_") || key.expose().starts_with("rk_")) {
            return Err(ConnectorError::Misconfigured(
                "secret_key must be a secret (sk_...) or restricted (rk_...) key; a publishable key cannot write".into(),
            ));
        }
        Ok(Self {
            api,
            secret_key,
            installation_id,
            client,
            timeout,
        })
    }

    /// The customer's metadata for a notification: the wedding and the last notification.
    fn metadata(notification: &WeddingNotification) -> Vec<(String, String)> {
        let mut metadata = Vec::new();
        let mut put = |key: &str, value: &str| {
            metadata.push((
                format!("metadata[{key}]"),
                first_chars(value, METADATA_CHARS),
            ));
        };
        if let Some(context) = &notification.wedding_context {
            if let Some(id) = &context.wedding_id {
                put("wedsync_wedding_id", id);
            }
            put("wedsync_wedding_date", &context.wedding_date);
            if let Some(venue) = &context.venue {
                put("wedsync_venue", venue);
            }
        }
        put(
            "wedsync_last_notification_id",
            &notification.notification_id,
        );
        put("wedsync_last_notification", &notification.title);
        metadata
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let contact =
            notification
                .first_contact_with_email()
                .ok_or_else(|| {
                    ConnectorError::Rejected {
                code: "no_contact".into(),
                message:
                    "a Stripe customer is found by email: the notification has no contact with one"
                        .into(),
            }
                })?;
        let email = contact.email.clone().unwrap_or_default();
        let mut list = self.url("/v1/customers")?;
        list.query_pairs_mut()
            .append_pair("email", &email)
            .append_pair("limit", "1");
        let found = self.answer(self.client.client().get(list)).await?;
        let mut form = Self::metadata(notification);
        let existing = found["data"][0]["id"].as_str().map(str::to_owned);
        let (customer, created) = match existing {
            Some(id) => {
                let url = self.url(&format!("/v1/customers/{id}"))?;
                (self.write(url, &form, delivery, "update").await?, false)
            }
            None => {
                form.push(("email".into(), email.clone()));
                if let Some(name) = &contact.name {
                    form.push(("name".into(), first_chars(name, 256)));
                }
                let url = self.url("/v1/customers")?;
                (self.write(url, &form, delivery, "create").await?, true)
            }
        };
        let id = customer["id"].as_str().unwrap_or_default().to_owned();
        if id.is_empty() {
            return Err(ConnectorError::Unavailable(
                "Stripe answered without the customer's id".into(),
            ));
        }
        Ok(Receipt {
            id: id.clone(),
            details: Some(json!({"customerId": id, "created": created, "email": email})),
        })
    }

    async fn write(
        &self,
        url: Url,
        form: &[(String, String)],
        delivery: &Delivery,
        step: &str,
    ) -> Result<Value, ConnectorError> {
        let key = format!(
            "herald-{}-{}-{step}",
            self.installation_id, delivery.delivery_id
        );
        self.answer(
            self.client
                .client()
                .post(url)
                .header("idempotency-key", key)
                .form(form),
        )
        .await
    }

    /// The seed's authenticateConnection: the account the key belongs to.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let account = self
            .answer(self.client.client().get(self.url("/v1/account")?))
            .await?;
        Ok(json!({
            "accountId": account["id"],
            "name": account["business_profile"]["name"],
            "country": account["country"],
        }))
    }

    fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        self.api
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<Value, ConnectorError> {
        let response = request
            .bearer_auth(self.secret_key.get().expose())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }
}

impl Connector for StripeConnector {
    fn vendor(&self) -> &'static str {
        "stripe"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        2
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Stripe")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.secret_key
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }
}

/// A refusal, classified from `{error: {type, code, message, param}}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let error = &answer["error"];
    let mut message = error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Stripe answered {status}"));
    if let Some(param) = error["param"].as_str() {
        message = format!("{param}: {message}");
    }
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        code => ConnectorError::Rejected {
            code: error["code"]
                .as_str()
                .or(error["type"].as_str())
                .map_or_else(|| code.to_string(), str::to_owned),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_errors_are_classified() {
        use reqwest::header::HeaderMap;
        use reqwest::StatusCode;
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &HeaderMap::new(),
                &json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}})
            ),
            ConnectorError::RateLimited { retry_after: None }
        ));
        assert!(matches!(
            classify(
                StatusCode::UNAUTHORIZED,
                &HeaderMap::new(),
                &json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****abcd"}})
            ),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &json!({"error": {"type": "invalid_request_error", "code": "email_invalid", "param": "email", "message": "Invalid email address: x"}})),
            ConnectorError::Rejected { code, message } if code == "email_invalid" && message == "email: Invalid email address: x"
        ));
    }
}
