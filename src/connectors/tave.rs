//! Tave / VSCO Workspace (the seed's `BookingSystemConnector`), over the Workspace API v2 with an
//! `X-API-KEY`: `syncBookingNotifications` as one delivery.
//!
//! The job a notification belongs to is named in `metadata.taveJobId`. Sync actions:
//! - a `timeline_change` with a wedding date: `PUT /job/{id}` setting the job's `eventDate`;
//! - `metadata.taveLeadStatusId` (a status update): `PUT /job/{id}` setting `leadStatusId`;
//! - every notification: `POST /note` on the job, the studio's communication log, with the title
//!   and message as `contentHtml`.
//!
//! Both job fields go in one `PUT`, so a timeline change is exactly two actions. The API has no
//! endpoint for "affected sessions" or conflicts as such; those come later through `/event` and
//! notes (see the README). Errors are problem documents `{type, title, detail, status}`; a 429
//! has type `quota-limit` and `Retry-After`.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Map, Value};

use super::http::{retry_after, transport_error, OutboundClient};
use super::{
    note_html, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
    ReloadableSecret,
};
use crate::config::TaveSettings;
use crate::wedsync::WeddingNotification;

pub struct TaveConnector {
    base: Url,
    api_key: ReloadableSecret,
    client: OutboundClient,
    timeout: Duration,
}

impl TaveConnector {
    pub fn new(
        settings: &TaveSettings,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = client.check_url(&format!("{}/", settings.base_url.trim_end_matches('/')))?;
        Ok(Self {
            base,
            api_key: ReloadableSecret::load(&settings.api_key)?,
            client,
            timeout,
        })
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let job_id = job_id(notification).ok_or_else(|| ConnectorError::Rejected {
            code: "no_job".into(),
            message: "metadata.taveJobId does not name the Tave job this notification belongs to"
                .into(),
        })?;
        let mut actions = Vec::new();
        let mut sync_actions = Vec::new();
        let changes = job_changes(notification);
        if !changes.is_empty() {
            let fields: Vec<String> = changes.keys().cloned().collect();
            self.call(
                Method::PUT,
                &format!("job/{job_id}"),
                Some(&Value::Object(changes)),
            )
            .await?;
            actions.push(format!("job {job_id} updated"));
            sync_actions.push(json!({"action": "job_update", "jobId": job_id, "fields": fields}));
        }
        let note = json!({
            "jobId": job_id,
            "contentHtml": note_html(notification),
        });
        let created = self.call(Method::POST, "note", Some(&note)).await?;
        let note_id = created["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| created["id"].as_i64().map(|id| id.to_string()));
        let note_id = note_id.unwrap_or_else(|| "created".into());
        actions.push(format!("note {note_id}"));
        sync_actions
            .push(json!({"action": "communication_log_note", "jobId": job_id, "noteId": note_id}));
        Ok(Receipt {
            id: actions.join("; "),
            details: Some(json!({"syncActions": sync_actions})),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let url = self
            .base
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout)
            .header("x-api-key", self.api_key.get().expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        // Problem documents: {type, title, detail, status}.
        let problem = answer["detail"]
            .as_str()
            .or(answer["title"].as_str())
            .unwrap_or(&text)
            .to_owned();
        Err(match status.as_u16() {
            429 => ConnectorError::RateLimited {
                retry_after: retry_after(&headers),
            },
            401 | 403 => ConnectorError::Unauthorized(problem),
            408 | 500..=599 => ConnectorError::Unavailable(format!("{status}: {problem}")),
            _ => ConnectorError::Rejected {
                code: answer["type"]
                    .as_str()
                    .unwrap_or(status.as_str())
                    .to_owned(),
                message: problem,
            },
        })
    }
}

impl Connector for TaveConnector {
    fn vendor(&self) -> &'static str {
        "tave"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        1 + u32::from(!job_changes(notification).is_empty())
    }

    fn engagement<'a>(&'a self, _: &'a serde_json::Value) -> CheckFuture<'a> {
        Box::pin(async { Err(super::engagement_unsupported("Tave")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        // connectToBookingAPI: the studio the key belongs to.
        Box::pin(async move {
            let studio = self.call(Method::GET, "studio/me", None).await?;
            Ok(
                json!({"studio": studio["name"], "timezone": studio["timezone"], "plan": studio["plan"]}),
            )
        })
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.api_key.reload()
    }
}

/// `metadata.taveJobId`, written as a string or a number.
fn job_id(notification: &WeddingNotification) -> Option<String> {
    match notification.metadata.get("taveJobId")? {
        Value::String(id)
            if !id.trim().is_empty()
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            Some(id.clone())
        }
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The job fields this notification changes.
fn job_changes(notification: &WeddingNotification) -> Map<String, Value> {
    let mut changes = Map::new();
    if notification.notification_type == "timeline_change" {
        if let Some(wedding) = &notification.wedding_context {
            changes.insert("eventDate".into(), json!(wedding.wedding_date));
        }
    }
    if let Some(status) = notification.metadata.get("taveLeadStatusId") {
        changes.insert("leadStatusId".into(), status.clone());
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(kind: &str, metadata: Value) -> WeddingNotification {
        serde_json::from_value(json!({
            "notificationId": "n", "type": kind, "priority": "normal", "title": "t", "message": "m",
            "weddingContext": {"weddingId": "w", "weddingDate": "2027-06-12"}, "metadata": metadata
        }))
        .unwrap()
    }

    #[test]
    fn the_job_id_comes_from_metadata_as_text_or_number() {
        assert_eq!(
            job_id(&notification("t", json!({"taveJobId": "J-123"}))).as_deref(),
            Some("J-123")
        );
        assert_eq!(
            job_id(&notification("t", json!({"taveJobId": 42}))).as_deref(),
            Some("42")
        );
        assert_eq!(
            job_id(&notification("t", json!({"taveJobId": "../studio"}))),
            None,
            "no path tricks"
        );
        assert_eq!(job_id(&notification("t", json!({}))), None);
    }

    #[test]
    fn only_timeline_changes_and_status_updates_touch_the_job() {
        assert_eq!(
            job_changes(&notification("timeline_change", json!({}))),
            json!({"eventDate": "2027-06-12"})
                .as_object()
                .unwrap()
                .clone()
        );
        assert!(job_changes(&notification("client_message", json!({}))).is_empty());
        assert_eq!(
            job_changes(&notification(
                "payment_received",
                json!({"taveLeadStatusId": "booked"})
            ))["leadStatusId"],
            "booked"
        );
    }
}
