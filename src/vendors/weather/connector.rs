//! The weather watch's connector. A delivery starts (or moves, or stops) the watch of one
//! wedding: the venue's point is looked up at the NWS (`GET /points/{lat},{lon}`, which also
//! says whether the NWS covers it and the venue's time zone) and the watch is remembered in the
//! store until the wedding day is over. A poll reads the active alerts of every watched venue
//! (`GET /alerts/active?point=...&status=actual`, conditional on the last answer's
//! `Last-Modified`) and answers an emergency for each alert severe enough, in force on the
//! wedding day, that this wedding has not been told of.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::settings::WeatherSettings;
use crate::connectors::http::{classify_status, transport_error};
use crate::connectors::{
    cut_marked, engagement_unsupported, CheckFuture, Connector, ConnectorError, ConnectorMemory,
    Delivery, DeliveryFuture, OutboundClient, PollFuture, Receipt,
};
use crate::vendors::wedding_event::{self, WeddingEvent};
use crate::wedsync::{Contact, VenueLocation, WeddingContext, WeddingNotification};

/// The longest alert text put in a notification's message.
const MESSAGE_CHARS: usize = 4000;

pub struct WeatherConnector {
    client: OutboundClient,
    api: String,
    user_agent: String,
    lead_time: Duration,
    poll_interval: Duration,
    severities: Vec<String>,
    timeout: Duration,
    memory: ConnectorMemory,
    /// Per venue point, the last alerts answer (to ask only for what changed since).
    venues: Mutex<HashMap<String, VenueAlerts>>,
}

#[derive(Clone, Default)]
struct VenueAlerts {
    last_modified: Option<String>,
    features: Vec<Value>,
}

/// One watched wedding, as remembered in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Watch {
    wedding: WeddingContext,
    #[serde(default)]
    contacts: Vec<Contact>,
    /// `lat,lon` as the NWS takes it (four decimals).
    point: String,
    /// The wedding day in the venue's time zone, in Unix seconds: [start, end).
    day_start: i64,
    day_end: i64,
    /// From when the venue's alerts are read, in Unix seconds.
    watch_from: i64,
}

impl WeatherConnector {
    pub fn new(
        settings: &WeatherSettings,
        client: OutboundClient,
        memory: ConnectorMemory,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client
            .check_url(settings.api_url.trim_end_matches('/'))?
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            client,
            api,
            user_agent: format!(
                "Herald/{} (WedSync notification orchestrator, {})",
                env!("CARGO_PKG_VERSION"),
                settings.contact.trim()
            ),
            lead_time: settings.lead_time,
            poll_interval: settings.poll_interval,
            severities: settings.severities.clone(),
            timeout,
            memory,
            venues: Mutex::new(HashMap::new()),
        })
    }

    /// `GET` of `path_and_query` with the NWS's headers: the answer, `None` for a 304.
    async fn get(
        &self,
        path_and_query: &str,
        if_modified_since: Option<&str>,
    ) -> Result<Option<(Value, Option<String>)>, ConnectorError> {
        let mut request = self
            .client
            .client()
            .get(format!("{}{path_and_query}", self.api))
            .header("user-agent", &self.user_agent)
            .header("accept", "application/geo+json")
            .timeout(self.timeout);
        if let Some(since) = if_modified_since {
            request = request.header("if-modified-since", since);
        }
        let response = request.send().await.map_err(transport_error)?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(classify(status, &headers, &body));
        }
        Ok(Some((body, last_modified(&headers))))
    }

    /// Starts, moves or stops the watch of the notification's wedding.
    async fn watch(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let wedding_id = wedding_event::wedding_id(notification)?;
        if wedding_event::cancels(notification) {
            self.memory.forget(&wedding_id).await?;
            return Ok(Receipt {
                id: format!("stopped:{wedding_id}"),
                details: Some(json!({"weddingId": wedding_id, "watching": false})),
            });
        }
        let event = WeddingEvent::of(notification, "UTC", &[])?;
        let mut wedding = notification
            .wedding_context
            .clone()
            .expect("a wedding id is in a wedding context");
        wedding.wedding_date = event.day.to_string();
        if let Some(venue) = event.location {
            wedding.venue = Some(venue);
        }
        let location = wedding
            .venue_location
            .ok_or_else(|| ConnectorError::Rejected {
                code: "no_venue_location".into(),
                message: "the venue's weather is read by its place: the notification has no weddingContext.venueLocation".into(),
            })?;
        let point = point_of(location);
        let Some((answer, _)) = self.get(&format!("/points/{point}"), None).await? else {
            return Err(ConnectorError::Unavailable(
                "the NWS answered 304 to an unconditional request".into(),
            ));
        };
        let properties = &answer["properties"];
        let time_zone = wedding
            .timezone
            .clone()
            .or_else(|| properties["timeZone"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "UTC".to_owned());
        let (day_start, day_end) = wedding_day(event.day, &time_zone)?;
        let now = jiff::Timestamp::now().as_second();
        if day_end <= now {
            return Err(ConnectorError::Rejected {
                code: "wedding_over".into(),
                message: format!(
                    "the wedding day {} ({time_zone}) is over: there is no weather left to watch",
                    event.day
                ),
            });
        }
        let watch_from = day_start - self.lead_time.as_secs() as i64;
        if wedding.timezone.is_none() {
            wedding.timezone = Some(time_zone.clone());
        }
        // A later notification without contacts (a moved date) keeps the people to tell.
        let mut contacts = notification.contacts.clone();
        if contacts.is_empty() {
            if let Some(before) = self.watched(&wedding_id).await? {
                contacts = before.contacts;
            }
        }
        let watch = Watch {
            wedding,
            contacts,
            point: point.clone(),
            day_start,
            day_end,
            watch_from,
        };
        let remembered = serde_json::to_value(&watch).expect("a watch is JSON");
        self.memory
            .remember(&wedding_id, &remembered, day_end * 1000)
            .await?;
        let last_segment = |key: &str| {
            properties[key]
                .as_str()
                .and_then(|url| url.rsplit('/').next())
                .map(str::to_owned)
        };
        Ok(Receipt {
            id: format!("watching:{wedding_id}"),
            details: Some(json!({
                "weddingId": wedding_id,
                "watching": true,
                "point": point,
                "timeZone": time_zone,
                "from": timestamp(watch_from),
                "until": timestamp(day_end),
                "forecastOffice": properties["gridId"],
                "forecastZone": last_segment("forecastZone"),
                "county": last_segment("county"),
            })),
        })
    }

    /// Every wedding watched (whether or not its watch has started), by wedding id.
    async fn watches(&self) -> Result<Vec<(String, Watch)>, ConnectorError> {
        Ok(self
            .memory
            .recall_all()
            .await?
            .into_iter()
            .filter_map(|(key, value)| Some((key, serde_json::from_value(value).ok()?)))
            .collect())
    }

    async fn watched(&self, wedding_id: &str) -> Result<Option<Watch>, ConnectorError> {
        Ok(self
            .watches()
            .await?
            .into_iter()
            .find(|(key, _)| key == wedding_id)
            .map(|(_, watch)| watch))
    }

    /// Reads the alerts of every venue watched now; answers every emergency in force, each time:
    /// the journal accepts a notification id once, so one the routers could not take is handed
    /// over again at the next poll, and one they took is not delivered twice.
    async fn read_alerts(&self) -> Result<Vec<WeddingNotification>, ConnectorError> {
        let now = jiff::Timestamp::now().as_second();
        let mut by_point: BTreeMap<String, Vec<Watch>> = BTreeMap::new();
        for (_, watch) in self.watches().await? {
            if watch.watch_from <= now && now < watch.day_end {
                by_point.entry(watch.point.clone()).or_default().push(watch);
            }
        }
        let mut notifications = Vec::new();
        let mut failure = None;
        for (point, watches) in by_point {
            let alerts = match self.venue_alerts(&point).await {
                Ok(alerts) => alerts,
                Err(error) => {
                    tracing::warn!(%point, %error, "weather alerts not read");
                    failure = Some(error);
                    continue;
                }
            };
            for watch in &watches {
                for feature in &alerts {
                    if let Some(notification) = self.emergency(watch, feature) {
                        notifications.push(notification);
                    }
                }
            }
        }
        match failure {
            Some(error) if notifications.is_empty() => Err(error),
            _ => Ok(notifications),
        }
    }

    /// The active alerts at `point`: read again only if they changed since the last answer.
    async fn venue_alerts(&self, point: &str) -> Result<Vec<Value>, ConnectorError> {
        let known = self
            .venues
            .lock()
            .expect("venues lock")
            .get(point)
            .cloned()
            .unwrap_or_default();
        let path = format!("/alerts/active?point={point}&status=actual");
        match self.get(&path, known.last_modified.as_deref()).await? {
            None => Ok(known.features),
            Some((answer, last_modified)) => {
                let features = answer["features"].as_array().cloned().unwrap_or_default();
                self.venues.lock().expect("venues lock").insert(
                    point.to_owned(),
                    VenueAlerts {
                        last_modified,
                        features: features.clone(),
                    },
                );
                Ok(features)
            }
        }
    }

    /// The emergency `feature` is for the watched wedding, if it is one: actual, not a
    /// cancellation, of a severity that counts, and in force at some time of the wedding day.
    fn emergency(&self, watch: &Watch, feature: &Value) -> Option<WeddingNotification> {
        let alert = &feature["properties"];
        let text = |key: &str| alert[key].as_str().filter(|value| !value.is_empty());
        if text("status") != Some("Actual") || text("messageType") == Some("Cancel") {
            return None;
        }
        let severity = text("severity")?;
        if !self.severities.iter().any(|counted| counted == severity) {
            return None;
        }
        let starts = text("onset").or(text("effective")).and_then(seconds);
        let ends = text("ends").or(text("expires")).and_then(seconds);
        if starts.is_some_and(|start| start >= watch.day_end)
            || ends.is_some_and(|end| end <= watch.day_start)
        {
            return None;
        }
        let alert_id = first_issue(alert)?;
        let wedding_id = watch.wedding.wedding_id.as_deref()?;
        let digest = Sha256::digest(format!("{wedding_id}\n{alert_id}").as_bytes());
        let event = text("event").unwrap_or("Weather alert");
        let venue = watch.wedding.venue.as_deref().unwrap_or("the venue");
        let mut message = text("headline").unwrap_or(event).to_owned();
        for part in [text("description"), text("instruction")]
            .into_iter()
            .flatten()
        {
            message.push_str("\n\n");
            message.push_str(part);
        }
        let notification = json!({
            "notificationId": format!("nws-{}", &hex::encode(digest)[..32]),
            "type": "weather_alert",
            "priority": "emergency",
            "title": cut_marked(&format!("{event} at {venue} for the wedding on {}", watch.wedding.wedding_date), 500),
            "message": cut_marked(&message, MESSAGE_CHARS),
            "weddingContext": watch.wedding,
            "contacts": watch.contacts,
            "metadata": {
                "source": "nws",
                "alertId": alert_id,
                "messageId": alert["id"],
                "event": event,
                "severity": severity,
                "urgency": alert["urgency"],
                "certainty": alert["certainty"],
                "onset": alert["onset"],
                "ends": alert["ends"],
                "expires": alert["expires"],
                "areaDesc": alert["areaDesc"],
                "senderName": alert["senderName"],
            },
        });
        match serde_json::from_value(notification) {
            Ok(notification) => Some(notification),
            Err(error) => {
                tracing::error!(%error, "a weather alert did not make a notification");
                None
            }
        }
    }
}

impl Connector for WeatherConnector {
    fn vendor(&self) -> &'static str {
        "weather"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.watch(delivery))
    }

    /// The point's lookup; stopping a watch asks the NWS nothing.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        u32::from(!wedding_event::cancels(notification))
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let Some((answer, _)) = self.get("/alerts/active/count", None).await? else {
                return Err(ConnectorError::Unavailable("unexpected 304".into()));
            };
            Ok(json!({"activeAlerts": answer["total"], "userAgent": self.user_agent}))
        })
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(engagement_unsupported("NWS weather alert")) })
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(self.poll_interval)
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(self.read_alerts())
    }
}

/// The NWS's problem answer (`application/problem+json`: `type`, `title`, `status`, `detail`)
/// as an error: a point it has no data for is refused, a caller it cannot identify is a refused
/// credential, 429 and 5xx are waited out.
fn classify(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) -> ConnectorError {
    let title = body["title"].as_str().unwrap_or_else(|| status.as_str());
    let problem = match body["detail"].as_str() {
        Some(detail) => format!("{title}: {detail}"),
        None => title.to_owned(),
    };
    match status.as_u16() {
        401 | 403 | 429 | 500..=599 => classify_status(status, headers, &problem),
        _ => ConnectorError::Rejected {
            code: body["type"]
                .as_str()
                .and_then(|kind| kind.rsplit('/').next())
                .unwrap_or(status.as_str())
                .to_owned(),
            message: problem,
        },
    }
}

fn last_modified(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("last-modified")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The point as the NWS takes it: at most four decimals (it redirects anything finer).
fn point_of(location: VenueLocation) -> String {
    let trim = |degrees: f64| {
        let text = format!("{degrees:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            "0".to_owned()
        } else {
            text.to_owned()
        }
    };
    format!("{},{}", trim(location.latitude), trim(location.longitude))
}

/// The wedding day in `time_zone`, in Unix seconds: [its first instant, the next day's first).
fn wedding_day(day: jiff::civil::Date, time_zone: &str) -> Result<(i64, i64), ConnectorError> {
    let invalid = |why: String| ConnectorError::Rejected {
        code: "invalid_time_zone".into(),
        message: why,
    };
    let zone = jiff::tz::TimeZone::get(time_zone)
        .map_err(|_| invalid(format!("{time_zone:?} is not a time zone Herald knows")))?;
    let first_instant = |day: jiff::civil::Date| {
        day.to_zoned(zone.clone())
            .map(|zoned| zoned.timestamp().as_second())
            .map_err(|error| invalid(format!("{day} in {time_zone}: {error}")))
    };
    let next = day
        .tomorrow()
        .map_err(|error| invalid(format!("{day}: {error}")))?;
    Ok((first_instant(day)?, first_instant(next)?))
}

/// An RFC 3339 timestamp (with its offset) in Unix seconds.
fn seconds(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|at| at.as_second())
}

fn timestamp(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|at| at.to_string())
        .unwrap_or_default()
}

/// The id of the alert's first issue: an update or an upgrade of the same alert references the
/// messages before it, so a wedding is told of an alert once, not of each of its updates.
fn first_issue(alert: &Value) -> Option<String> {
    let earliest = alert["references"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|reference| {
            Some((
                reference["sent"].as_str().and_then(seconds)?,
                reference["identifier"].as_str()?,
            ))
        })
        .min();
    match earliest {
        Some((_, identifier)) => Some(identifier.to_owned()),
        None => alert["id"].as_str().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_have_at_most_four_decimals() {
        let point = |latitude, longitude| {
            point_of(VenueLocation {
                latitude,
                longitude,
            })
        };
        assert_eq!(point(35.22712345, -80.84313), "35.2271,-80.8431");
        assert_eq!(point(39.0, -77.10000), "39,-77.1");
        assert_eq!(point(-0.00001, 0.0), "0,0");
    }

    #[test]
    fn the_wedding_day_is_the_venues_day() {
        let day: jiff::civil::Date = "2027-06-12".parse().unwrap();
        let (start, end) = wedding_day(day, "America/Chicago").unwrap();
        assert_eq!(timestamp(start), "2027-06-12T05:00:00Z");
        assert_eq!(timestamp(end), "2027-06-13T05:00:00Z");
        // The day clocks go forward is 23 hours long.
        let (start, end) = wedding_day("2027-03-14".parse().unwrap(), "America/New_York").unwrap();
        assert_eq!(end - start, 23 * 3600);
    }

    #[test]
    fn an_update_is_known_by_the_alert_it_updates() {
        let update = json!({
            "id": "urn:oid:2.49.0.1.840.0.c",
            "references": [
                {"identifier": "urn:oid:2.49.0.1.840.0.b", "sent": "2027-06-11T16:00:00-05:00"},
                {"identifier": "urn:oid:2.49.0.1.840.0.a", "sent": "2027-06-11T15:00:00-05:00"}
            ]
        });
        assert_eq!(
            first_issue(&update).as_deref(),
            Some("urn:oid:2.49.0.1.840.0.a")
        );
        assert_eq!(
            first_issue(&json!({"id": "urn:oid:2.49.0.1.840.0.d", "references": []})).as_deref(),
            Some("urn:oid:2.49.0.1.840.0.d")
        );
    }
}
