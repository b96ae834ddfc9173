//! Google Calendar (the seed's calendar) through the Calendar API v3 (`{api}/calendar/v3/...`,
//! an OAuth 2 bearer token; errors `{error: {code, message, errors: [{domain, reason}]}}`): one
//! all-day event per wedding on the configured calendar, kept in step with WedSync.
//!
//! - Herald finds its event of a wedding by the private extended property `heraldWeddingId`
//!   (`events.list?privateExtendedProperty=`), and creates it (`events.insert`) with an id of its
//!   own derived from the wedding, so a retry after a lost answer meets Google's 409
//!   `duplicate` and patches instead of making a second event.
//! - A notification about the wedding makes or updates the event (`events.patch`) as
//!   `vendors::wedding_event` says (the day in the wedding's time zone, the venue, the latest
//!   notification, the invited contacts); a cancelling one sets its status to `cancelled`.
//! - `sendUpdates` is the configuration's: Google emails attendees only when it says so.
//! - 403 `usageLimits` reasons and 429 wait; 401 refreshes the access token; 5xx are retried.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};
use sha2::Digest;

use super::GoogleCalendarSettings;
use crate::connectors::http::{retry_after, send_json, OutboundClient};
use crate::connectors::oauth::{InstallGrant, OAuthSession, RefreshToken};
use crate::connectors::{
    CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::vendors::wedding_event::{cancels, wedding_id, WeddingEvent};
use crate::wedsync::WeddingNotification;

/// Where an install through Herald keeps the account's refresh token.
const KEPT_REFRESH_TOKEN: &str = "google_calendar_refresh_token";
/// The private extended property that names the wedding of Herald's events.
pub const WEDDING_PROPERTY: &str = "heraldWeddingId";

pub struct GoogleCalendarConnector {
    session: OAuthSession,
    api: Url,
    calendar_id: String,
    invite_roles: Vec<String>,
    send_updates: String,
    default_time_zone: String,
    client: OutboundClient,
    timeout: Duration,
}

/// The id Herald gives a wedding's event: base32hex (`a-v`, `0-9`), as Google requires of ids
/// clients choose.
pub fn event_id(wedding_id: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(wedding_id.as_bytes()));
    format!("herald{}", &digest[..32])
}

/// What a delivery did to the wedding's event.
enum Change {
    Created,
    Updated,
    Cancelled,
    NothingToCancel,
}

impl Change {
    fn as_str(&self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Cancelled => "cancelled",
            Change::NothingToCancel => "nothing_to_cancel",
        }
    }
}

impl GoogleCalendarConnector {
    pub fn new(
        settings: &GoogleCalendarSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<std::sync::Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let oauth = &settings.oauth;
        let session = OAuthSession::new(
            "Google Calendar",
            client.check_url(&oauth.token_url)?,
            oauth.client_id.clone(),
            Some(
                ReloadableSecret::load(&oauth.client_secret)
                    .map_err(ConnectorError::Misconfigured)?,
            ),
            RefreshToken::configured_or_kept(
                oauth.refresh_token.as_ref(),
                oauth.redirect_uri.as_ref(),
                vault,
                integration_id,
                KEPT_REFRESH_TOKEN,
            )?,
        );
        Ok(Self {
            session,
            api: client.check_url(settings.api_url.trim_end_matches('/'))?,
            calendar_id: settings.calendar_id.clone(),
            invite_roles: settings
                .invite_contact_roles
                .iter()
                .map(|role| role.to_lowercase())
                .collect(),
            send_updates: settings.send_updates.clone(),
            default_time_zone: settings
                .default_time_zone
                .clone()
                .unwrap_or_else(|| "UTC".to_owned()),
            client,
            timeout,
        })
    }

    /// `calendar/v3/calendars/{calendarId}/...` with each segment escaped.
    fn url(&self, rest: &[&str]) -> Result<Url, ConnectorError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|()| ConnectorError::Misconfigured("api_url cannot take a path".into()))?
            .extend(["calendar", "v3", "calendars", self.calendar_id.as_str()])
            .extend(rest);
        Ok(url)
    }

    /// The event's fields in Google's terms.
    fn fields(event: &WeddingEvent) -> Value {
        let mut fields = json!({
            "summary": event.summary,
            "description": event.description,
            "start": {"date": event.day.to_string(), "timeZone": event.time_zone},
            "end": {"date": event.next_day.to_string(), "timeZone": event.time_zone},
            "status": "confirmed",
        });
        if let Some(location) = &event.location {
            fields["location"] = json!(location);
        }
        if !event.attendees.is_empty() {
            fields["attendees"] = json!(event
                .attendees
                .iter()
                .map(|(email, name)| match name {
                    Some(name) => json!({"email": email, "displayName": name}),
                    None => json!({ "email": email }),
                })
                .collect::<Vec<_>>());
        }
        fields
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let wedding_id = wedding_id(notification)?;
        let id = event_id(&wedding_id);
        let mut list = self.url(&["events"])?;
        list.query_pairs_mut()
            .append_pair(
                "privateExtendedProperty",
                &format!("{WEDDING_PROPERTY}={wedding_id}"),
            )
            .append_pair("showDeleted", "true")
            .append_pair("maxResults", "5");
        let found = self.call(Method::GET, list, None).await?;
        let existing = found["items"][0].clone();
        let (change, event) = if cancels(notification) {
            match existing["id"].as_str() {
                Some(found) if existing["status"] != "cancelled" => (
                    Change::Cancelled,
                    self.patch(found, &json!({"status": "cancelled"})).await?,
                ),
                _ => (Change::NothingToCancel, existing),
            }
        } else {
            let fields = Self::fields(&WeddingEvent::of(
                notification,
                &self.default_time_zone,
                &self.invite_roles,
            )?);
            match existing["id"].as_str() {
                Some(found) => (Change::Updated, self.patch(found, &fields).await?),
                None => {
                    let mut event = fields.clone();
                    event["id"] = json!(id);
                    event["extendedProperties"] =
                        json!({"private": {WEDDING_PROPERTY: wedding_id}});
                    let mut insert = self.url(&["events"])?;
                    insert
                        .query_pairs_mut()
                        .append_pair("sendUpdates", &self.send_updates);
                    match self.call(Method::POST, insert, Some(&event)).await {
                        Ok(created) => (Change::Created, created),
                        // Made by an earlier attempt whose answer was lost.
                        Err(ConnectorError::Rejected { code, .. }) if code == "duplicate" => {
                            (Change::Updated, self.patch(&id, &fields).await?)
                        }
                        Err(err) => return Err(err),
                    }
                }
            }
        };
        let event_id = event["id"].as_str().unwrap_or(&id).to_owned();
        Ok(Receipt {
            id: event_id.clone(),
            details: Some(json!({
                "eventId": event_id,
                "change": change.as_str(),
                "date": event["start"]["date"],
                "htmlLink": event["htmlLink"],
            })),
        })
    }

    async fn patch(&self, event_id: &str, fields: &Value) -> Result<Value, ConnectorError> {
        let mut url = self.url(&["events", event_id])?;
        url.query_pairs_mut()
            .append_pair("sendUpdates", &self.send_updates);
        self.call(Method::PATCH, url, Some(fields)).await
    }

    /// The seed's establishConnection: the calendar the account can write.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let calendar = self.call(Method::GET, self.url(&[])?, None).await?;
        Ok(json!({
            "calendarId": calendar["id"],
            "summary": calendar["summary"],
            "timeZone": calendar["timeZone"],
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
        send_json(request, body).await?.map_err(|refusal| {
            if refusal.status == reqwest::StatusCode::UNAUTHORIZED {
                self.session.forget_access_token();
            }
            classify(refusal.status, &refusal.headers, &refusal.body)
        })
    }
}

impl Connector for GoogleCalendarConnector {
    fn vendor(&self) -> &'static str {
        "google_calendar"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The search and the write; token grants are not calendar requests. A creation that meets
    /// an event another delivery of the same wedding made a moment before costs one request
    /// more (the patch), uncharged: two notifications of one wedding at once are rare.
    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        2
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Google Calendar")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    fn complete_install<'a>(&'a self, grant: &'a InstallGrant) -> CheckFuture<'a> {
        Box::pin(async move {
            self.session
                .complete_install(&self.client, self.timeout, grant)
                .await?;
            Ok(json!({"installed": true, "scope": self.session.granted("scope")}))
        })
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.session.reload()
    }
}

/// A refusal, classified from `{error: {code, message, errors: [{domain, reason}]}}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let error = &answer["error"];
    let message = error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Google answered {status}"));
    let reason = error["errors"][0]["reason"].as_str().unwrap_or_default();
    let domain = error["errors"][0]["domain"].as_str().unwrap_or_default();
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        403 if domain == "usageLimits"
            || matches!(
                reason,
                "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded"
            ) =>
        {
            ConnectorError::RateLimited {
                retry_after: retry_after(headers),
            }
        }
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        code => ConnectorError::Rejected {
            code: if reason.is_empty() {
                code.to_string()
            } else {
                reason.to_owned()
            },
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_base32hex_and_the_weddings_own() {
        let id = event_id("w-2027-0612");
        assert_eq!(id.len(), 38);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)));
        assert_eq!(id, event_id("w-2027-0612"));
        assert_ne!(id, event_id("w-2027-0613"));
    }

    #[test]
    fn googles_errors_are_classified() {
        use reqwest::header::HeaderMap;
        use reqwest::StatusCode;
        let error = |code: u16, domain: &str, reason: &str| json!({"error": {"code": code, "message": reason, "errors": [{"domain": domain, "reason": reason, "message": reason}]}});
        assert!(matches!(
            classify(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                &error(403, "usageLimits", "rateLimitExceeded")
            ),
            ConnectorError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &HeaderMap::new(),
                &error(429, "usageLimits", "rateLimitExceeded")
            ),
            ConnectorError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &HeaderMap::new(), &error(403, "global", "forbidden")),
            ConnectorError::Rejected { code, .. } if code == "forbidden"
        ));
        assert!(matches!(
            classify(StatusCode::CONFLICT, &HeaderMap::new(), &error(409, "global", "duplicate")),
            ConnectorError::Rejected { code, .. } if code == "duplicate"
        ));
        assert!(matches!(
            classify(
                StatusCode::UNAUTHORIZED,
                &HeaderMap::new(),
                &error(401, "global", "authError")
            ),
            ConnectorError::Unauthorized(_)
        ));
    }
}
