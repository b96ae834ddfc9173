//! The Microsoft 365 calendar (the seed's calendar) through Microsoft Graph v1.0
//! (`/users/{user}/events`, an app's client-credentials token; errors `{error: {code,
//! message}}`): one all-day event per wedding in the mailbox's calendar.
//!
//! - Herald finds its event of a wedding by a single-value extended property of its own
//!   (`$filter=singleValueExtendedProperties/Any(...)`), creates it (`POST .../events` with a
//!   `transactionId` derived from the wedding, so a retry after a lost answer does not make a
//!   second event) or patches it (`PATCH /events/{id}`); a cancelled wedding deletes the event
//!   (Graph sends the attendees the organizer's cancellation).
//! - 429 waits Graph's `Retry-After`; 401 gets a new token; 5xx are retried.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};
use sha2::Digest;

use super::MicrosoftCalendarSettings;
use crate::connectors::http::{retry_after, send_json, OutboundClient};
use crate::connectors::oauth::ClientCredentialsSession;
use crate::connectors::{
    CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vendors::wedding_event::{cancels, wedding_id, WeddingEvent};
use crate::wedsync::WeddingNotification;

/// The extended property that names the wedding of Herald's events (a property set of
/// Herald's own).
pub const WEDDING_PROPERTY: &str =
    "String {5b2c3f0e-8d1a-4c7e-9a54-3e6f2b1d7c90} Name heraldWeddingId";

pub struct MicrosoftCalendarConnector {
    session: ClientCredentialsSession,
    /// `{graph}/v1.0/users/{user}`.
    mailbox: Url,
    calendar_id: Option<String>,
    invite_roles: Vec<String>,
    default_time_zone: String,
    client: OutboundClient,
    timeout: Duration,
}

/// The `transactionId` of a wedding's event: the same for every attempt to create it.
pub fn transaction_id(wedding_id: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(
        format!("herald/{wedding_id}").as_bytes(),
    ));
    format!(
        "{}-{}-{}-{}-{}",
        &digest[..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

impl MicrosoftCalendarConnector {
    pub fn new(
        settings: &MicrosoftCalendarSettings,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let token_url = client.check_url(&format!(
            "{}/{}/oauth2/v2.0/token",
            settings.authority.trim_end_matches('/'),
            settings.tenant_id
        ))?;
        let graph = settings.graph_url.trim_end_matches('/');
        let mut mailbox = client.check_url(graph)?;
        mailbox
            .path_segments_mut()
            .map_err(|()| ConnectorError::Misconfigured("graph_url cannot take a path".into()))?
            .extend(["v1.0", "users", settings.user.as_str()]);
        Ok(Self {
            session: ClientCredentialsSession::new(
                "Microsoft 365 calendar",
                token_url,
                settings.client_id.clone(),
                ReloadableSecret::load(&settings.client_secret)
                    .map_err(ConnectorError::Misconfigured)?,
                format!("{graph}/.default"),
            ),
            mailbox,
            calendar_id: settings.calendar_id.clone(),
            invite_roles: settings
                .invite_contact_roles
                .iter()
                .map(|role| role.to_lowercase())
                .collect(),
            default_time_zone: settings
                .default_time_zone
                .clone()
                .unwrap_or_else(|| "UTC".to_owned()),
            client,
            timeout,
        })
    }

    fn url(&self, rest: &[&str]) -> Result<Url, ConnectorError> {
        let mut url = self.mailbox.clone();
        url.path_segments_mut()
            .map_err(|()| ConnectorError::Misconfigured("graph_url cannot take a path".into()))?
            .extend(rest);
        Ok(url)
    }

    /// The events of the configured calendar (the default one unless named).
    fn events(&self) -> Result<Url, ConnectorError> {
        match &self.calendar_id {
            Some(calendar) => self.url(&["calendars", calendar, "events"]),
            None => self.url(&["events"]),
        }
    }

    /// The event's fields in Graph's terms.
    fn fields(event: &WeddingEvent) -> Value {
        let midnight = |day: jiff::civil::Date| format!("{day}T00:00:00");
        let mut fields = json!({
            "subject": event.summary,
            "body": {"contentType": "text", "content": event.description},
            "start": {"dateTime": midnight(event.day), "timeZone": event.time_zone},
            "end": {"dateTime": midnight(event.next_day), "timeZone": event.time_zone},
            "isAllDay": true,
            "showAs": "busy",
        });
        if let Some(location) = &event.location {
            fields["location"] = json!({"displayName": location});
        }
        fields["attendees"] = json!(event
            .attendees
            .iter()
            .map(|(email, name)| {
                let mut address = json!({"address": email});
                if let Some(name) = name {
                    address["name"] = json!(name);
                }
                json!({"emailAddress": address, "type": "required"})
            })
            .collect::<Vec<_>>());
        fields
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let wedding = wedding_id(notification)?;
        let mut find = self.events()?;
        find.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!(
                    "singleValueExtendedProperties/Any(ep: ep/id eq '{WEDDING_PROPERTY}' and ep/value eq '{}')",
                    wedding.replace('\'', "''")
                ),
            )
            .append_pair("$select", "id,subject,start,isCancelled");
        let found = self.call(Method::GET, find, None).await?;
        let existing = found["value"][0]["id"].as_str().map(str::to_owned);
        let (change, event) = if cancels(notification) {
            match existing {
                Some(id) => {
                    self.call(Method::DELETE, self.url(&["events", &id])?, None)
                        .await?;
                    ("cancelled", json!({"id": id}))
                }
                None => ("nothing_to_cancel", Value::Null),
            }
        } else {
            let fields = Self::fields(&WeddingEvent::of(
                notification,
                &self.default_time_zone,
                &self.invite_roles,
            )?);
            match existing {
                Some(id) => (
                    "updated",
                    self.call(Method::PATCH, self.url(&["events", &id])?, Some(&fields))
                        .await?,
                ),
                None => {
                    let mut created = fields.clone();
                    created["transactionId"] = json!(transaction_id(&wedding));
                    created["singleValueExtendedProperties"] =
                        json!([{"id": WEDDING_PROPERTY, "value": wedding}]);
                    (
                        "created",
                        self.call(Method::POST, self.events()?, Some(&created))
                            .await?,
                    )
                }
            }
        };
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        Ok(Receipt {
            id: if id.is_empty() {
                wedding.clone()
            } else {
                id.clone()
            },
            details: Some(json!({
                "eventId": event["id"],
                "change": change,
                "start": event["start"],
                "webLink": event["webLink"],
            })),
        })
    }

    /// The seed's establishConnection: the calendar the app can write.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let url = match &self.calendar_id {
            Some(calendar) => self.url(&["calendars", calendar])?,
            None => self.url(&["calendar"])?,
        };
        let calendar = self.call(Method::GET, url, None).await?;
        Ok(json!({
            "calendarId": calendar["id"],
            "name": calendar["name"],
            "canEdit": calendar["canEdit"],
        }))
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let token = self
            .session
            .access_token(&self.client, self.timeout)
            .await?;
        let request = self
            .client
            .client()
            .request(method, url)
            .bearer_auth(token)
            .timeout(self.timeout);
        send_json(request, body)
            .await?
            .map_err(|refusal| classify(refusal.status, &refusal.headers, &refusal.body))
    }
}

impl Connector for MicrosoftCalendarConnector {
    fn vendor(&self) -> &'static str {
        "microsoft_calendar"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The search and the write; token grants are not Graph requests.
    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        2
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async {
            Err(crate::connectors::engagement_unsupported(
                "Microsoft 365 calendar",
            ))
        })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.session.reload()
    }
}

/// A refusal, classified from `{error: {code, message}}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let code = answer["error"]["code"].as_str().unwrap_or_default();
    let message = answer["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Graph answered {status}"));
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        other => ConnectorError::Rejected {
            code: if code.is_empty() {
                other.to_string()
            } else {
                code.to_owned()
            },
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_the_weddings_own() {
        let id = transaction_id("w-1");
        assert_eq!(id.len(), 36);
        assert_eq!(id, transaction_id("w-1"));
        assert_ne!(id, transaction_id("w-2"));
    }

    #[test]
    fn graphs_errors_are_classified() {
        use reqwest::header::HeaderMap;
        use reqwest::StatusCode;
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, &json!({"error": {"code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}})),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &HeaderMap::new(), &json!({"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}})),
            ConnectorError::Rejected { code, .. } if code == "ErrorAccessDenied"
        ));
        assert!(matches!(
            classify(
                StatusCode::UNAUTHORIZED,
                &HeaderMap::new(),
                &json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}})
            ),
            ConnectorError::Unauthorized(_)
        ));
    }
}
