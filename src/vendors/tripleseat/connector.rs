//! Tripleseat (the seed's `BookingSystemConnector`) over its v1 API (`/v1/<resource>.json`),
//! with a partner app's OAuth 2 access tokens (refresh-token grant at `/oauth2/token`, client
//! credentials in the form): `syncBookingNotifications` as one delivery about one event.
//!
//! 1. When the notification moves the wedding (the seed's `timelineChanges.newWeddingDate` /
//!    `newWeddingTime`, or a `timeline_change`'s `weddingContext.weddingDate`), the event is read
//!    (`GET /v1/events/{id}.json`) for its start and end, and moved keeping its length.
//! 2. `PUT /v1/events/{id}.json` with `{event: {event_start, event_end, status}}`: the move and
//!    the seed's booking status (`metadata.newStatus` when `updatesBookingStatus`, mapped onto
//!    PROSPECT, TENTATIVE, DEFINITE, CLOSED, LOST) in one update (updateBookingStatus).
//! 3. `POST /v1/events/{id}/notes` with `{note: {body}}`: the notification as a note on the
//!    event, Tripleseat's communication log.
//!
//! A retry after the update repeats the same idempotent update; a note refused is the
//! delivery's failure (the log is the point of it). A 429 waits its `Retry-After`.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Map, Value};

use super::TripleseatSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::oauth::{InstallGrant, OAuthSession, RefreshToken};
use crate::connectors::{
    CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::wedsync::{date_of_day, day_number, WeddingNotification};

/// The vault's name for the refresh token of an app installed through Herald.
const KEPT_REFRESH_TOKEN: &str = "tripleseat_refresh_token";

/// Tripleseat's event statuses, and the seed's status names that mean one of them.
const STATUSES: &[(&str, &str)] = &[
    ("prospect", "PROSPECT"),
    ("inquiry", "PROSPECT"),
    ("lead", "PROSPECT"),
    ("tentative", "TENTATIVE"),
    ("pending", "TENTATIVE"),
    ("definite", "DEFINITE"),
    ("confirmed", "DEFINITE"),
    ("booked", "DEFINITE"),
    ("closed", "CLOSED"),
    ("completed", "CLOSED"),
    ("lost", "LOST"),
    ("cancelled", "LOST"),
    ("canceled", "LOST"),
];

pub struct TripleseatConnector {
    base: Url,
    session: OAuthSession,
    client: OutboundClient,
    timeout: Duration,
}

/// A moment as Tripleseat writes an event's start and end (`MM/DD/YYYY hh:mm AM`): the day
/// counted from 1970-01-01 and the minute of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    day: i64,
    minute: i64,
}

impl EventTime {
    /// Reads `06/12/2027 03:30 PM`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        let (date, time, half) = (parts.next()?, parts.next()?, parts.next()?);
        let mut date_parts = date.split('/');
        let (month, day, year) = (date_parts.next()?, date_parts.next()?, date_parts.next()?);
        let day = day_number(&format!("{year:0>4}-{month:0>2}-{day:0>2}",))?;
        let (hour, minute) = time.split_once(':')?;
        let (hour, minute): (i64, i64) = (hour.parse().ok()?, minute.parse().ok()?);
        if !(1..=12).contains(&hour) || !(0..60).contains(&minute) {
            return None;
        }
        let hour = hour % 12
            + match half.to_ascii_uppercase().as_str() {
                "AM" => 0,
                "PM" => 12,
                _ => return None,
            };
        Some(Self {
            day,
            minute: hour * 60 + minute,
        })
    }

    /// The same moment on `date` (`YYYY-MM-DD`), at `time` (`HH:MM`, 24-hour) when given.
    fn on(self, date: &str, time: Option<(i64, i64)>) -> Option<Self> {
        Some(Self {
            day: day_number(date)?,
            minute: time.map_or(self.minute, |(hour, minute)| hour * 60 + minute),
        })
    }

    /// The day, counted from 1970-01-01.
    pub fn day(self) -> i64 {
        self.day
    }

    /// Minutes since 1970-01-01 00:00 (of the event's own clock).
    pub fn minutes(self) -> i64 {
        self.day * 1440 + self.minute
    }

    fn from_minutes(minutes: i64) -> Self {
        Self {
            day: minutes.div_euclid(1440),
            minute: minutes.rem_euclid(1440),
        }
    }

    /// Writes `06/12/2027 03:30 PM`.
    pub fn format(self) -> Option<String> {
        let date = date_of_day(self.day)?;
        let (year, rest) = date.split_once('-')?;
        let (month, day) = rest.split_once('-')?;
        let (hour, minute) = (self.minute / 60, self.minute % 60);
        let half = if hour < 12 { "AM" } else { "PM" };
        let hour = match hour % 12 {
            0 => 12,
            other => other,
        };
        Some(format!("{month}/{day}/{year} {hour:02}:{minute:02} {half}"))
    }
}

/// `HH:MM` (24-hour) as hour and minute.
fn clock_time(text: &str) -> Option<(i64, i64)> {
    let (hour, minute) = text.trim().split_once(':')?;
    let (hour, minute): (i64, i64) = (hour.parse().ok()?, minute.get(..2)?.parse().ok()?);
    ((0..24).contains(&hour) && (0..60).contains(&minute)).then_some((hour, minute))
}

impl TripleseatConnector {
    pub fn new(
        settings: &TripleseatSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<std::sync::Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = client.check_url(settings.api_url.trim_end_matches('/'))?;
        let token_url = base
            .join("/oauth2/token")
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        let oauth = &settings.oauth;
        let session = OAuthSession::new(
            "Tripleseat",
            token_url,
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
            base,
            session,
            client,
            timeout,
        })
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let event_id = event_id(notification)?;
        let mut change = Map::new();
        let mut fields = Vec::new();
        if let Some(moved) = moved_to(notification)? {
            let event = self
                .call(Method::GET, &format!("/v1/events/{event_id}.json"), None)
                .await?;
            let event = event.get("event").unwrap_or(&event);
            let (start, end) = (
                event["event_start"].as_str().and_then(EventTime::parse),
                event["event_end"].as_str().and_then(EventTime::parse),
            );
            let (Some(start), Some(end)) = (start, end) else {
                return Err(ConnectorError::Unavailable(format!(
                    "Tripleseat answered event {event_id} without a start and end Herald can read"
                )));
            };
            let new_start =
                start
                    .on(&moved.date, moved.time)
                    .ok_or_else(|| ConnectorError::Rejected {
                        code: "invalid_date".into(),
                        message: format!("{} is not a date", moved.date),
                    })?;
            if new_start != start {
                let new_end =
                    EventTime::from_minutes(new_start.minutes() + end.minutes() - start.minutes());
                let (Some(start_text), Some(end_text)) = (new_start.format(), new_end.format())
                else {
                    return Err(ConnectorError::Rejected {
                        code: "invalid_date".into(),
                        message: format!("{} cannot be written as a Tripleseat date", moved.date),
                    });
                };
                change.insert("event_start".into(), json!(start_text));
                change.insert("event_end".into(), json!(end_text));
                fields.extend(["event_start", "event_end"]);
            }
        }
        if let Some(status) = notification.new_booking_status() {
            let status = STATUSES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(status.trim()))
                .map(|(_, status)| *status)
                .ok_or_else(|| ConnectorError::Rejected {
                    code: "unknown_status".into(),
                    message: format!(
                        "metadata.newStatus {status:?} is not a Tripleseat event status (prospect, tentative, definite, closed, lost; or inquiry, pending, confirmed, completed, cancelled)"
                    ),
                })?;
            change.insert("status".into(), json!(status));
            fields.push("status");
        }
        let mut sync_actions = Vec::new();
        let mut actions = Vec::new();
        if !change.is_empty() {
            self.call(
                Method::PUT,
                &format!("/v1/events/{event_id}.json"),
                Some(&json!({ "event": change })),
            )
            .await?;
            actions.push(format!("event {event_id} updated"));
            sync_actions
                .push(json!({"action": "event_update", "eventId": event_id, "fields": fields, "change": change}));
        }
        let note = self
            .call(
                Method::POST,
                &format!("/v1/events/{event_id}/notes"),
                Some(&json!({"note": {"body": note_body(notification)}})),
            )
            .await?;
        let note = note.get("note").unwrap_or(&note);
        let note_id = note["id"]
            .as_u64()
            .map(|id| id.to_string())
            .or_else(|| note["id"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                ConnectorError::Unavailable("Tripleseat saved the note without an id".into())
            })?;
        actions.push(format!("note {note_id}"));
        sync_actions.push(
            json!({"action": "communication_log_note", "eventId": event_id, "noteId": note_id}),
        );
        Ok(Receipt {
            id: actions.join("; "),
            details: Some(json!({"syncActions": sync_actions})),
        })
    }

    /// The seed's connectToBookingAPI: the sites the token sees (`GET /v1/sites.json`).
    async fn connect(&self) -> Result<Value, ConnectorError> {
        let sites = self.call(Method::GET, "/v1/sites.json", None).await?;
        let listed: Vec<Value> = sites
            .as_array()
            .or_else(|| sites["sites"].as_array())
            .into_iter()
            .flatten()
            .map(|site| {
                let site = site.get("site").unwrap_or(site);
                json!({"id": site["id"], "name": site["name"]})
            })
            .collect();
        Ok(json!({"sites": listed, "scope": self.session.granted("scope")}))
    }

    /// A Tripleseat object by id, for the inbound handler (`/v1/events/{id}.json`...).
    pub async fn read(&self, path: &str) -> Result<Value, ConnectorError> {
        self.call(Method::GET, path, None).await
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
            .header("accept", "application/json")
            .bearer_auth(
                self.session
                    .access_token(&self.client, self.timeout)
                    .await?,
            );
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
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.session.forget_access_token();
        }
        Err(classify(status, &headers, &answer, &text))
    }
}

impl Connector for TripleseatConnector {
    fn vendor(&self) -> &'static str {
        "tripleseat"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The event's read when the wedding moves, the update when anything changes, the note.
    /// Token grants are not API calls and are not charged.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        let moves = matches!(moved_to(notification), Ok(Some(_)));
        let updates = moves || notification.new_booking_status().is_some();
        u32::from(moves) + u32::from(updates) + 1
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Tripleseat")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.connect())
    }

    fn complete_install<'a>(&'a self, grant: &'a InstallGrant) -> CheckFuture<'a> {
        Box::pin(async move {
            self.session
                .complete_install(&self.client, self.timeout, grant)
                .await?;
            Ok(json!({"installed": true}))
        })
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.session.reload()
    }
}

/// A refused request, classified by status. Tripleseat documents its statuses (400, 401, 403,
/// 404, 500), not its error body: the body's `error`, `errors` or text is kept as the message.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
    text: &str,
) -> ConnectorError {
    let message = match (&answer["error"], &answer["errors"]) {
        (Value::String(error), _) => error.clone(),
        (_, errors) if !errors.is_null() => errors.to_string(),
        _ if !text.trim().is_empty() => text.chars().take(300).collect(),
        _ => format!("Tripleseat answered {status}"),
    };
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers).or(Some(Duration::from_secs(1))),
        },
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        other => ConnectorError::Rejected {
            code: other.to_string(),
            message,
        },
    }
}

/// The event: `metadata.tripleseatEventId` (Tripleseat's numeric id).
fn event_id(notification: &WeddingNotification) -> Result<u64, ConnectorError> {
    let Some(named) = notification.metadata.get("tripleseatEventId") else {
        return Err(ConnectorError::Rejected {
            code: "no_event".into(),
            message: "metadata.tripleseatEventId does not name the Tripleseat event this notification belongs to".into(),
        });
    };
    named
        .as_u64()
        .or_else(|| named.as_str().and_then(|id| id.trim().parse().ok()))
        .filter(|id| *id > 0)
        .ok_or_else(|| ConnectorError::Rejected {
            code: "invalid_event_id".into(),
            message: format!(
                "metadata.tripleseatEventId: {named} is not a Tripleseat event id (a positive number)"
            ),
        })
}

/// Where the notification moves the wedding.
struct Move {
    date: String,
    time: Option<(i64, i64)>,
}

/// The seed's new date (and time), or a `timeline_change`'s wedding date; a time that is not
/// `HH:MM` is refused naming it.
fn moved_to(notification: &WeddingNotification) -> Result<Option<Move>, ConnectorError> {
    let time = match notification
        .timeline_changes()
        .and_then(|changes| changes.new_wedding_time)
    {
        Some(text) => Some(clock_time(&text).ok_or_else(|| ConnectorError::Rejected {
            code: "invalid_time".into(),
            message: format!(
                "metadata.timelineChanges.newWeddingTime {text:?} is not a time (HH:MM, 24-hour)"
            ),
        })?),
        None => None,
    };
    let date = notification.new_wedding_date().or_else(|| {
        time.and(
            notification
                .wedding_context
                .as_ref()
                .map(|context| context.wedding_date.clone()),
        )
    });
    Ok(date.map(|date| Move { date, time }))
}

/// The note: the title, the message, and the seed's timeline changes Tripleseat has no field for.
fn note_body(notification: &WeddingNotification) -> String {
    let mut body = format!("{}\n\n{}", notification.title, notification.message);
    if let Some(changes) = notification.timeline_changes() {
        if let Some(venue) = &changes.new_venue {
            body.push_str(&format!("\nNew venue: {venue}"));
        }
        if !changes.affected_sessions.is_empty() {
            body.push_str(&format!(
                "\nAffected sessions: {}",
                changes.affected_sessions.join(", ")
            ));
        }
    }
    body.push_str(&format!(
        "\n(WedSync notification {})",
        notification.notification_id
    ));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_read_and_write_tripleseats_format() {
        let start = EventTime::parse("06/12/2027 03:30 PM").unwrap();
        assert_eq!(start.format().as_deref(), Some("06/12/2027 03:30 PM"));
        assert_eq!(
            EventTime::parse("06/12/2027 12:05 AM")
                .unwrap()
                .format()
                .as_deref(),
            Some("06/12/2027 12:05 AM")
        );
        let moved = start.on("2027-06-19", Some((11, 0))).unwrap();
        assert_eq!(moved.format().as_deref(), Some("06/19/2027 11:00 AM"));
        // An event past midnight keeps its length across the day.
        let end = EventTime::parse("06/13/2027 01:00 AM").unwrap();
        let new_end = EventTime::from_minutes(moved.minutes() + end.minutes() - start.minutes());
        assert_eq!(new_end.format().as_deref(), Some("06/19/2027 08:30 PM"));
        for wrong in [
            "2027-06-12 15:30",
            "06/12/2027 15:30 PM",
            "06/31/2027 03:30 PM",
            "06/12/2027 03:30",
        ] {
            assert_eq!(EventTime::parse(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn tripleseats_errors_are_classified() {
        use reqwest::header::{HeaderMap, HeaderValue};
        use reqwest::StatusCode;
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, &Value::Null, ""),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(3)
        ));
        let refused = json!({"errors": {"event_start": ["is invalid"]}});
        assert!(matches!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, &headers, &refused, ""),
            ConnectorError::Rejected { code, message } if code == "422" && message.contains("event_start")
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &headers, &json!({"error": "invalid_token"}), ""),
            ConnectorError::Unauthorized(message) if message == "invalid_token"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &headers, &Value::Null, "<html>"),
            ConnectorError::Unavailable(_)
        ));
    }
}
