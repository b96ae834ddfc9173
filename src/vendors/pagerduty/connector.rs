//! PagerDuty (the seed's emergency on-call pager) through the Events API v2
//! (`POST {events}/v2/enqueue`, the service's integration key in the body; `202 {status,
//! message, dedup_key}`, `400 {status: "invalid event", message, errors}`): one `trigger` per
//! notification, and `acknowledge` or `resolve` when the notification is acknowledged on
//! another channel.
//!
//! - The `dedup_key` is derived from the notification (`herald/<notificationId>`): a retry, or the
//!   same notification sent again, adds to the open incident instead of opening a second one.
//! - The summary is the title and message inside PagerDuty's 1,024 characters; the severity
//!   follows the priority (emergency `critical`, high `error`, normal `warning`, low `info`);
//!   the wedding, the contacts and the ids go in `custom_details`, link actions in `links`.
//! - 429 (about 120 events a minute per integration key) waits, Retry-After when sent; 5xx are
//!   retried; a 400 is dead-lettered with PagerDuty's errors.

use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use super::PagerDutySettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    cut_marked, AcknowledgementNotice, CheckFuture, Connector, ConnectorError, Delivery,
    DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Priority, WeddingNotification};

/// PagerDuty's longest summary, in characters.
const SUMMARY_CHARS: usize = 1024;

pub struct PagerDutyConnector {
    events: Url,
    routing_key: ReloadableSecret,
    source: Option<String>,
    component: Option<String>,
    group: Option<String>,
    client: OutboundClient,
    timeout: Duration,
}

/// The incident key Herald uses for a notification.
pub fn dedup_key(notification_id: &str) -> String {
    format!("herald/{notification_id}")
}

/// The notification an incident key of Herald's names.
pub(super) fn notification_of(dedup_key: &str) -> Option<&str> {
    dedup_key
        .strip_prefix("herald/")
        .filter(|id| !id.is_empty())
}

fn severity(priority: Priority) -> &'static str {
    match priority {
        Priority::Emergency => "critical",
        Priority::High => "error",
        Priority::Normal => "warning",
        Priority::Low => "info",
    }
}

impl PagerDutyConnector {
    pub fn new(
        settings: &PagerDutySettings,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let events = client.check_url(settings.events_url.trim_end_matches('/'))?;
        let routing_key =
            ReloadableSecret::load(&settings.routing_key).map_err(ConnectorError::Misconfigured)?;
        check_routing_key(routing_key.get().expose())?;
        Ok(Self {
            events,
            routing_key,
            source: settings.source.clone(),
            component: settings.component.clone(),
            group: settings.group.clone(),
            client,
            timeout,
        })
    }

    /// The trigger event of a notification.
    fn trigger(&self, notification: &WeddingNotification) -> Value {
        let summary = cut_marked(
            &format!("{}: {}", notification.title, notification.message),
            SUMMARY_CHARS,
        );
        let source = self
            .source
            .clone()
            .or_else(|| {
                notification
                    .wedding_context
                    .as_ref()
                    .and_then(|context| context.venue.clone())
            })
            .unwrap_or_else(|| "WedSync".to_owned());
        let mut payload = json!({
            "summary": summary,
            "source": cut_marked(&source, 255),
            "severity": severity(notification.priority),
            "class": notification.notification_type,
            "custom_details": {
                "notificationId": notification.notification_id,
                "type": notification.notification_type,
                "priority": notification.priority,
                "message": notification.message,
                "weddingContext": notification.wedding_context,
                "contacts": notification.contacts,
            },
        });
        if let Some(created_at) = &notification.created_at {
            payload["timestamp"] = json!(created_at);
        }
        for (name, value) in [("component", &self.component), ("group", &self.group)] {
            if let Some(value) = value {
                payload[name] = json!(value);
            }
        }
        let links: Vec<Value> = notification
            .actions
            .iter()
            .filter_map(|action| {
                action
                    .url
                    .as_ref()
                    .map(|url| json!({"href": url, "text": action.label}))
            })
            .collect();
        let mut event = json!({
            "event_action": "trigger",
            "dedup_key": dedup_key(&notification.notification_id),
            "payload": payload,
            "client": "WedSync via Herald",
        });
        if !links.is_empty() {
            event["links"] = json!(links);
        }
        event
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let answer = self.enqueue(self.trigger(&delivery.notification)).await?;
        let key = answer["dedup_key"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| dedup_key(&delivery.notification.notification_id));
        Ok(Receipt {
            id: key.clone(),
            details: Some(json!({"dedupKey": key, "message": answer["message"]})),
        })
    }

    /// Acknowledges (or, for the action `resolve`, resolves) the incident of a delivery.
    async fn follow(
        &self,
        details: &Value,
        notice: &AcknowledgementNotice,
    ) -> Result<Value, ConnectorError> {
        let Some(key) = details["dedupKey"].as_str() else {
            return Ok(Value::Null);
        };
        let action = if notice.action_id == "resolve" {
            "resolve"
        } else {
            "acknowledge"
        };
        self.enqueue(json!({"event_action": action, "dedup_key": key}))
            .await?;
        Ok(json!({"dedupKey": key, "eventAction": action}))
    }

    async fn enqueue(&self, mut event: Value) -> Result<Value, ConnectorError> {
        event["routing_key"] = json!(self.routing_key.get().expose());
        let url = self
            .events
            .join("/v2/enqueue")
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        let response = self
            .client
            .client()
            .post(url)
            .timeout(self.timeout)
            .json(&event)
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

/// An integration key is 32 characters of letters and digits.
fn check_routing_key(key: &str) -> Result<(), ConnectorError> {
    if key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ConnectorError::Misconfigured(
            "routing_key must be the service's Events API v2 integration key (32 letters and digits)".into(),
        ))
    }
}

impl Connector for PagerDutyConnector {
    fn vendor(&self) -> &'static str {
        "pagerduty"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("PagerDuty")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(async {
            Err(ConnectorError::Rejected {
                code: "unsupported".into(),
                message: "PagerDuty's Events API has no read: an integration key is only checked by sending an event, which opens an incident".into(),
            })
        })
    }

    fn acknowledged<'a>(
        &'a self,
        details: &'a Value,
        notice: &'a AcknowledgementNotice,
    ) -> CheckFuture<'a> {
        Box::pin(self.follow(details, notice))
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.routing_key
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }
}

/// A refusal, classified from `{status, message, errors}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let message = answer["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("PagerDuty answered {status}"));
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        // The Events API answers a key it does not know with 400; a 401 or 403 (from the REST
        // API's gateway) reads the key again.
        401 | 403 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        code => {
            let errors: Vec<&str> = answer["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            ConnectorError::Rejected {
                code: code.to_string(),
                message: if errors.is_empty() {
                    message
                } else {
                    format!("{message}: {}", errors.join("; "))
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_name_their_notification() {
        assert_eq!(dedup_key("n-1"), "herald/n-1");
        assert_eq!(notification_of("herald/n-1"), Some("n-1"));
        assert_eq!(notification_of("other/n-1"), None);
        assert_eq!(notification_of("herald/"), None);
    }

    #[test]
    fn pagerdutys_errors_are_classified() {
        use reqwest::header::HeaderMap;
        use reqwest::StatusCode;
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &HeaderMap::new(),
                &Value::Null
            ),
            ConnectorError::RateLimited { retry_after: None }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.severity' is invalid"]})),
            ConnectorError::Rejected { code, message } if code == "400" && message == "Event object is invalid: 'payload.severity' is invalid"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), &Value::Null),
            ConnectorError::Unavailable(_)
        ));
        assert!(check_routing_key("R0123456789abcdef0123456789abcde").is_ok());
        assert!(check_routing_key("short").is_err());
    }
}
