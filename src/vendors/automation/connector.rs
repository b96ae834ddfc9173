//! The delivery to an automation platform's hook: one `POST` of a flat JSON record (Zapier and
//! Make turn each top-level field into a value the next step maps), signed with Standard Webhooks
//! headers when a signing secret is set.
//!
//! - The record: the notification's own fields (`notificationId`, `type`, `priority`, `title`,
//!   `message`, the wedding's `weddingId`, `weddingDate`, `venue`, `coupleNames`, `links`) and
//!   the vendor's action's inputs from [`AutomationVendor::record`], checked for the inputs the
//!   action needs before anything is sent: a notification the action could not run on is refused
//!   with the missing field named, never reported delivered.
//! - Answers: Zapier's `{status: "success", id, request_id}` (the `id` is the receipt), Make's
//!   `Accepted`; 429 waits `Retry-After`; 410 (the Zap or scenario is off or deleted) and every
//!   other refusal are dead-lettered; 5xx are retried.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde_json::{json, Value};

use super::{AutomationSettings, AutomationVendor};
use crate::connectors::http::{classify_status, transport_error, OutboundClient};
use crate::connectors::standard_webhooks::{sign_standard_webhook, signing_key};
use crate::connectors::{
    engagement_unsupported, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::WeddingNotification;

pub struct AutomationConnector {
    vendor: &'static AutomationVendor,
    hook_url: ReloadableSecret,
    signing_secret: Option<ReloadableSecret>,
    /// With the delivery id, the signed message's id: never the same for two installations.
    installation_id: Arc<str>,
    client: OutboundClient,
    timeout: Duration,
}

/// Why `url` is not a hook Herald can post to, in words that say what to use.
pub(super) fn check_hook_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url.trim()).map_err(|_| "hook_url is not a URL".to_owned())?;
    let host = parsed.host_str().unwrap_or_default();
    let zapier = parsed.path().starts_with("/hooks/catch/")
        && parsed.path().trim_end_matches('/').len() > "/hooks/catch/".len();
    let make = host.starts_with("hook.") && host.ends_with(".make.com") && parsed.path().len() > 1;
    if zapier || make {
        Ok(())
    } else {
        Err("hook_url is neither a Zapier catch hook (https://hooks.zapier.com/hooks/catch/<account>/<hook>/) nor a Make custom webhook (https://hook.<zone>.make.com/<token>)".into())
    }
}

impl AutomationConnector {
    pub fn new(
        vendor: &'static AutomationVendor,
        settings: &AutomationSettings,
        installation_id: Arc<str>,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let hook_url =
            ReloadableSecret::load(&settings.hook_url).map_err(ConnectorError::Misconfigured)?;
        check_hook_url(hook_url.get().expose()).map_err(ConnectorError::Misconfigured)?;
        let signing_secret = settings
            .signing_secret
            .as_ref()
            .map(|secret| {
                let loaded =
                    ReloadableSecret::load(secret).map_err(ConnectorError::Misconfigured)?;
                signing_key(loaded.get().expose())?;
                Ok::<_, ConnectorError>(loaded)
            })
            .transpose()?;
        Ok(Self {
            vendor,
            hook_url,
            signing_secret,
            installation_id,
            client,
            timeout,
        })
    }

    /// The record the vendor's action is mapped from, or why the action could not run on it.
    pub(super) fn record(
        vendor: &AutomationVendor,
        notification: &WeddingNotification,
    ) -> Result<Value, ConnectorError> {
        let client =
            notification
                .first_contact_with_email()
                .ok_or_else(|| ConnectorError::Rejected {
                    code: "no_client".into(),
                    message: format!(
                "{}'s {} needs the client's email, and the notification has no contact with one",
                vendor.name(),
                vendor.action
            ),
                })?;
        let context = notification.wedding_context.as_ref();
        let links: Vec<String> = notification
            .actions
            .iter()
            .filter_map(|action| {
                action
                    .url
                    .as_ref()
                    .map(|url| format!("{}: {url}", action.label))
            })
            .collect();
        let mut record = json!({
            "notificationId": notification.notification_id,
            "type": notification.notification_type,
            "priority": notification.priority.as_str(),
            "title": notification.title,
            "message": notification.message,
            "weddingId": context.and_then(|c| c.wedding_id.clone()),
            "weddingDate": context.map(|c| c.wedding_date.clone()),
            "venue": context.and_then(|c| c.venue.clone()),
            "coupleNames": context.and_then(|c| c.couple_names.clone()),
            "links": links.join("\n"),
        });
        let fields = record.as_object_mut().expect("an object");
        for (name, value) in (vendor.record)(notification, client) {
            fields.insert(name, value);
        }
        if let Some(missing) = vendor.required.iter().find(|name| {
            fields
                .get(**name)
                .and_then(Value::as_str)
                .is_none_or(|value| value.trim().is_empty())
        }) {
            return Err(ConnectorError::Rejected {
                code: "missing_field".into(),
                message: format!(
                    "{}'s {} needs {missing}, which the notification does not give",
                    vendor.name(),
                    vendor.action
                ),
            });
        }
        Ok(record)
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let record = Self::record(self.vendor, &delivery.notification)?;
        let body = serde_json::to_vec(&record).map_err(|err| {
            ConnectorError::Misconfigured(format!("cannot encode the record: {err}"))
        })?;
        let secret = self.hook_url.get();
        check_hook_url(secret.expose()).map_err(ConnectorError::Misconfigured)?;
        let url = self.client.check_url(secret.expose().trim())?;
        let message_id = format!("msg_{}_{}", self.installation_id, delivery.delivery_id);
        let mut request = self
            .client
            .client()
            .post(url)
            .timeout(self.timeout)
            .header("content-type", "application/json");
        if let Some(signing) = &self.signing_secret {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let key = signing_key(signing.get().expose())?;
            request = request
                .header("webhook-id", &message_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header(
                    "webhook-signature",
                    sign_standard_webhook(&key, &message_id, timestamp, &body),
                );
        }
        let response = request.body(body).send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(match status.as_u16() {
                410 => ConnectorError::Rejected {
                    code: "410".into(),
                    message: format!(
                        "the automation is off or deleted (410): turn the Zap or scenario on, or give the integration its new hook URL; {}",
                        text.chars().take(200).collect::<String>()
                    ),
                },
                _ => classify_status(status, &headers, &text),
            });
        }
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if answer["status"]
            .as_str()
            .is_some_and(|said| said != "success")
        {
            return Err(ConnectorError::Rejected {
                code: answer["status"].as_str().unwrap_or_default().to_owned(),
                message: format!("the hook answered {text}"),
            });
        }
        let id = answer["id"]
            .as_str()
            .or_else(|| answer["request_id"].as_str())
            .map_or_else(|| message_id.clone(), str::to_owned);
        Ok(Receipt {
            id,
            details: Some(json!({
                "action": self.vendor.action,
                "client": record["clientEmail"].as_str().or(record["email"].as_str()),
                "requestId": answer["request_id"],
            })),
        })
    }
}

impl Connector for AutomationConnector {
    fn vendor(&self) -> &'static str {
        self.vendor.kind()
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        let name = self.vendor.name();
        Box::pin(async move { Err(engagement_unsupported(name)) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        // A catch hook has no read operation: anything posted to it runs the automation.
        let name = self.vendor.name();
        Box::pin(async move {
            Err(ConnectorError::Rejected {
                code: "unsupported".into(),
                message: format!(
                    "{name}'s automation hook cannot be checked without running the automation"
                ),
            })
        })
    }

    /// A new Zap (or a new signing secret) is a new value where the secret lives.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.hook_url
            .reload()
            .map_err(ConnectorError::Misconfigured)?;
        if let Some(signing) = &self.signing_secret {
            signing.reload().map_err(ConnectorError::Misconfigured)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zapier_catch_hooks_and_make_webhooks_are_taken() {
        for url in [
            "https://hooks.zapier.com/hooks/catch/1234567/abcdef1/",
            "https://hooks.zapier.com/hooks/catch/abcdef1/",
            "https://hook.eu1.make.com/a1b2c3d4e5",
        ] {
            assert_eq!(check_hook_url(url), Ok(()), "{url}");
        }
        for url in [
            "https://hooks.zapier.com/hooks/catch/",
            "https://example.com/webhook",
            "https://hook.eu1.make.com/",
            "zapier",
        ] {
            assert!(check_hook_url(url).is_err(), "{url}");
        }
    }
}
