//! Tave / VSCO Workspace (the seed's `BookingSystemConnector`), over the Workspace API v2 with an
//! `X-API-KEY`: `syncBookingNotifications` as one delivery.
//!
//! The job a notification belongs to is its `taveJobId` (the seed's `BookingNotification`), or
//! `metadata.taveJobId`. Sync actions:
//! - a new wedding date (the seed's `metadata.timelineChanges.newWeddingDate`, or the date of a
//!   `timeline_change`'s wedding): `PUT /job/{id}` setting the job's `eventDate`;
//! - the seed's `metadata.updatesBookingStatus` with `newStatus`, or `metadata.taveJobStage`, and
//!   `taveLeadStatusId` (updateBookingStatus), and `taveWorkflowId` (triggerBookingWorkflows:
//!   the Tave workflow the job follows): `PUT /job/{id}` setting `stage`, `leadStatusId`,
//!   `workflowId`;
//! - every notification: `POST /note` on the job, the studio's communication log, with the title
//!   and message as `contentHtml`. The seed's other timeline changes (`newWeddingTime`,
//!   `newVenue`, `affectedSessions`) have no field Herald may write in Tave's Job schema, so
//!   they are written into that note and reported as a `timeline_noted` sync action.
//!
//! The job fields go in one `PUT`. A new wedding date also moves the job's sessions (its
//! `/event`s) that were on the old date: the job is read first for that date, and each moved
//! session is a sync action of its own, so a booking change of a job without sessions is exactly
//! two actions. With `check_conflicts`, the new date is checked against other jobs' confirmed
//! sessions (handleBookingConflicts) and a clash is recorded in the note. Errors are problem
//! documents `{type, title, detail, status}`; a 429 has type `quota-limit` and `Retry-After`.
//!
//! With `rest_hooks` configured, [`Connector::subscribe_to_events`] subscribes to each event with
//! `POST /rest-hook {event, url}`; the url is Herald's inbound address for that event (see
//! [`rest_hook_path`]), which carries the hook secret because Tave signs nothing it sends.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::TaveSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    escape_html, note_html, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::{ReloadableSecret, SecretRef};
use crate::wedsync::{is_iso_date, shift_by, shift_date, WeddingNotification};

pub struct TaveConnector {
    base: Url,
    api_key: ReloadableSecret,
    client: OutboundClient,
    timeout: Duration,
    integration_id: String,
    rest_hooks: Option<RestHooks>,
    check_conflicts: bool,
}

/// The REST-hook subscriptions the configuration asks for.
struct RestHooks {
    public_url: String,
    events: Vec<String>,
    /// Read when subscribing: the inbound endpoint reads the same reference on every call.
    secret: SecretRef,
}

/// The path of Herald's inbound endpoint for one Tave event of one integration, secret included.
pub fn rest_hook_path(integration_id: &str, event: &str, secret: &str) -> String {
    format!("/inbound/tave/{integration_id}/{event}/{secret}")
}

impl TaveConnector {
    pub fn new(
        settings: &TaveSettings,
        integration_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = client.check_url(&format!("{}/", settings.base_url.trim_end_matches('/')))?;
        let rest_hooks = settings.rest_hooks.as_ref().map(|hooks| RestHooks {
            public_url: hooks.public_url.trim_end_matches('/').to_owned(),
            events: hooks.events.clone(),
            secret: hooks.secret.clone(),
        });
        Ok(Self {
            base,
            api_key: ReloadableSecret::load(&settings.api_key)
                .map_err(ConnectorError::Misconfigured)?,
            client,
            timeout,
            integration_id: integration_id.to_owned(),
            rest_hooks,
            check_conflicts: settings.check_conflicts,
        })
    }

    /// One `POST /rest-hook` per configured event. The answer lists Tave's hook ids and the
    /// address without its secret.
    async fn subscribe(&self) -> Result<Value, ConnectorError> {
        let Some(hooks) = &self.rest_hooks else {
            return Err(ConnectorError::Rejected {
                code: "no_rest_hooks".into(),
                message: "settings.rest_hooks is not configured for this integration".into(),
            });
        };
        let secret = hooks.secret.read().map_err(ConnectorError::Misconfigured)?;
        // Subscriptions Tave already has to this very address are kept, not made twice.
        let (existing, _) = self.list("rest-hook", "", SUBSCRIPTION_PAGES).await?;
        let mut subscriptions = Vec::new();
        for event in &hooks.events {
            let url = format!(
                "{}{}",
                hooks.public_url,
                rest_hook_path(&self.integration_id, event, secret.expose())
            );
            let kept = existing.iter().find(|hook| {
                hook["event"].as_str() == Some(event) && hook["url"].as_str() == Some(&url)
            });
            let (hook_id, status) = match kept {
                Some(hook) => (hook["id"].clone(), "existing"),
                None => {
                    let created = self
                        .call(
                            Method::POST,
                            "rest-hook",
                            Some(&json!({"event": event, "url": url})),
                        )
                        .await?;
                    (created["id"].clone(), "created")
                }
            };
            let shown = format!(
                "{}{}",
                hooks.public_url,
                rest_hook_path(&self.integration_id, event, "<secret>")
            );
            subscriptions
                .push(json!({"event": event, "hookId": hook_id, "url": shown, "status": status}));
        }
        Ok(json!({"subscriptions": subscriptions}))
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let job_id = job_id(notification)?;
        let mut actions = Vec::new();
        let mut sync_actions = Vec::new();
        let changes = job_changes(notification)?;
        // A new wedding date moves the job's sessions on the old date with it: read the old
        // date before writing the new one.
        let moved_date = match changes.get("eventDate").and_then(Value::as_str) {
            Some(new_date) => {
                let job = self
                    .call(Method::GET, &format!("job/{job_id}"), None)
                    .await?;
                job["eventDate"]
                    .as_str()
                    .filter(|old| *old != new_date)
                    .map(|old| (old.to_owned(), new_date.to_owned()))
            }
            None => None,
        };
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
        let mut note_body = note_html(notification);
        if let Some((record, fields)) = noted_timeline_changes(notification) {
            note_body.push_str(&record);
            sync_actions
                .push(json!({"action": "timeline_noted", "jobId": job_id, "fields": fields}));
        }
        if let Some((old, new)) = &moved_date {
            for event_id in self.move_sessions(&job_id, old, new).await? {
                actions.push(format!("session {event_id} moved"));
                sync_actions.push(json!({"action": "session_update", "eventId": event_id, "from": old, "to": new}));
            }
            if self.check_conflicts {
                let check = self.find_conflicts(&job_id, new).await?;
                // The conflict record is the note itself: the studio sees it in the job's log.
                if let Some(record) = check.note_html(new) {
                    note_body.push_str(&record);
                }
                sync_actions.push(check.sync_action(new));
            }
        }
        let note = json!({
            "jobId": job_id,
            "contentHtml": note_body,
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

    /// The job's sessions (`GET /event?jobId=`, every page) that were on `old`, moved to `new`
    /// (`PUT /event/{id}`; the end date moves by as many days, so a session keeps its length).
    /// Answers the moved ids.
    async fn move_sessions(
        &self,
        job_id: &str,
        old: &str,
        new: &str,
    ) -> Result<Vec<String>, ConnectorError> {
        let (events, _) = self
            .list("event", &format!("jobId={job_id}&"), JOB_EVENT_PAGES)
            .await?;
        let mut moved = Vec::new();
        for event in events {
            let Some(id) = event["id"].as_str() else {
                continue;
            };
            if event["startDate"].as_str() != Some(old) {
                continue;
            }
            let mut change = json!({"startDate": new});
            if let Some(end) = event["endDate"]
                .as_str()
                .and_then(|end| shift_date(end, old, new))
            {
                change["endDate"] = json!(end);
            }
            self.call(Method::PUT, &format!("event/{id}"), Some(&change))
                .await?;
            moved.push(id.to_owned());
        }
        Ok(moved)
    }

    /// `GET /{resource}?{filter}`, page after page of 100 (the API's `{type, items, meta}`
    /// collections), up to `max_pages`; answers the items and whether every page was read.
    async fn list(
        &self,
        resource: &str,
        filter: &str,
        max_pages: u32,
    ) -> Result<(Vec<Value>, bool), ConnectorError> {
        let mut items = Vec::new();
        for page in 1..=max_pages {
            let listed = self
                .call(
                    Method::GET,
                    &format!("{resource}?{filter}pageSize=100&page={page}&sortBy=id"),
                    None,
                )
                .await?;
            if let Some(Value::Array(page_items)) = listed.get("items") {
                items.extend(page_items.iter().cloned());
            }
            let pages = listed["meta"]["totalPages"].as_u64().unwrap_or(1);
            if u64::from(page) >= pages {
                return Ok((items, true));
            }
        }
        Ok((items, false))
    }

    /// handleBookingConflicts: pages through the studio's events (the API has no date filter;
    /// at most [`CONFLICT_PAGES`] pages) for confirmed sessions of other jobs on `date`, and
    /// the free days nearest to it.
    async fn find_conflicts(
        &self,
        job_id: &str,
        date: &str,
    ) -> Result<ConflictCheck, ConnectorError> {
        let (events, complete) = self.list("event", "", CONFLICT_PAGES).await?;
        let mut check = ConflictCheck {
            events_checked: events.len(),
            complete,
            ..ConflictCheck::default()
        };
        for event in &events {
            let other_job = event["jobId"].as_str() != Some(job_id);
            let (Some(day), true, true) = (
                event["startDate"].as_str(),
                other_job,
                event["confirmed"] == true,
            ) else {
                continue;
            };
            if day == date {
                check.conflicts.push(
                    json!({"eventId": event["id"], "jobId": event["jobId"], "name": event["name"]}),
                );
            }
            check.busy_days.insert(day.to_owned());
        }
        Ok(check)
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
        // Problem documents: {type, title, detail, status}; a validation error's `detail` maps
        // each field to what is wrong with it.
        let problem = match &answer["detail"] {
            Value::String(detail) => detail.clone(),
            Value::Object(fields) => fields
                .iter()
                .map(|(field, why)| match why {
                    Value::Array(reasons) => {
                        let reasons: Vec<&str> = reasons.iter().filter_map(Value::as_str).collect();
                        format!("{field}: {}", reasons.join(", "))
                    }
                    other => format!("{field}: {other}"),
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => answer["title"].as_str().unwrap_or(&text).to_owned(),
        };
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
        // The note, the job update, and for a new date the job read and the sessions' first
        // page (moving sessions costs one more each, not known in advance).
        let changes = job_changes(notification).unwrap_or_default();
        let new_date = u32::from(changes.contains_key("eventDate"));
        1 + u32::from(!changes.is_empty())
            + 2 * new_date
            + new_date * u32::from(self.check_conflicts)
    }

    fn engagement<'a>(&'a self, _: &'a serde_json::Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Tave")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        // connectToBookingAPI: the studio the key belongs to.
        Box::pin(async move {
            let studio = self.call(Method::GET, "studio/me", None).await?;
            Ok(
                json!({"studio": studio["name"], "timezone": studio["timezoneId"], "plan": studio["plan"]}),
            )
        })
    }

    fn subscribe_to_events(&self) -> CheckFuture<'_> {
        Box::pin(self.subscribe())
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.api_key.reload().map_err(ConnectorError::Misconfigured)
    }
}

/// A Tave REST-hook delivery as a WedSync notification of the integration's organization, so
/// the organization's routes carry it on (a booked order to the team's Slack channel, for
/// example). Its id is derived from the event and Tave's object id, so a delivery Tave repeats
/// is recognised as the same notification.
pub fn event_notification(
    integration_id: &str,
    organization: &str,
    event: &str,
    payload: &Map<String, Value>,
) -> Result<WeddingNotification, serde_json::Error> {
    let object_id = match payload.get("id").and_then(Value::as_str).and_then(tave_id) {
        Some(id) => id,
        // No usable id: the body itself identifies the delivery.
        None => {
            hex::encode(&Sha256::digest(Value::Object(payload.clone()).to_string().as_bytes())[..8])
        }
    };
    let (kind, label) = match event {
        "job.created" => ("booking_created", "A new job was created"),
        "order.booked" => ("booking_confirmed", "An order was booked"),
        "payment.created" => ("payment_received", "A payment was recorded"),
        _ => ("contact_created", "A new contact was added"),
    };
    let name = payload
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.trim().is_empty());
    let job_id = match event {
        "job.created" => Some(object_id.clone()),
        _ => payload
            .get("jobId")
            .and_then(Value::as_str)
            .and_then(tave_id),
    };
    let message = match (name, &job_id) {
        (Some(name), _) => format!("{label} in Tave: {name}."),
        (None, Some(job)) => format!("{label} in Tave for job {job}."),
        (None, None) => format!("{label} in Tave."),
    };
    let mut notification = json!({
        "notificationId": format!("tave-{integration_id}-{event}-{object_id}"),
        "organizationId": organization,
        "type": kind,
        "priority": "normal",
        "title": format!("Tave: {}", event.replace('.', " ")),
        "message": message,
        "metadata": {"source": "tave", "taveIntegrationId": integration_id, "taveEvent": event, "taveObjectId": object_id, "taveJobId": job_id},
    });
    // A new job with its event date is a wedding Herald can name.
    if let (Some(job), Some(date)) = (&job_id, payload.get("eventDate").and_then(Value::as_str)) {
        if event == "job.created" && is_iso_date(date) {
            notification["weddingContext"] = json!({"weddingId": job, "weddingDate": date});
        }
    }
    serde_json::from_value(notification)
}

impl TaveConnector {
    /// What a REST hook is about, as a notification. Tave sends only the id of the object an
    /// event concerns (`{"targetId": ...}`: VSCO's spec says "only the targetId will be
    /// provided"), so the object is read where the API documents a read: a new job with `GET
    /// /job/{id}` (its name and wedding date), a payment with `GET /payment/{id}` (its job). No
    /// read of a contact or an order is documented: those events name their object by its id.
    pub async fn hook_notification(
        &self,
        integration_id: &str,
        organization: &str,
        event: &str,
        target_id: &str,
    ) -> Result<WeddingNotification, ConnectorError> {
        let read = match event {
            "job.created" => Some(format!("job/{target_id}")),
            "payment.created" => Some(format!("payment/{target_id}")),
            _ => None,
        };
        let mut object = match read {
            Some(path) => match self.call(Method::GET, &path, None).await? {
                Value::Object(object) => object,
                other => {
                    return Err(ConnectorError::Unavailable(format!(
                        "Tave answered {path} with {other}, not an object"
                    )))
                }
            },
            None => Map::new(),
        };
        object.insert("id".into(), Value::String(target_id.to_owned()));
        event_notification(integration_id, organization, event, &object).map_err(|err| {
            ConnectorError::Rejected {
                code: "unreadable_event".into(),
                message: format!("tave {event} {target_id}: {err}"),
            }
        })
    }
}

/// How many pages of 100 events a conflict check reads at most.
const CONFLICT_PAGES: u32 = 10;
/// How many pages of a job's own events are read at most (2,000 sessions).
const JOB_EVENT_PAGES: u32 = 20;
/// How many pages of the studio's REST-hook subscriptions are read at most.
const SUBSCRIPTION_PAGES: u32 = 10;

/// What a conflict check found.
#[derive(Default)]
struct ConflictCheck {
    conflicts: Vec<Value>,
    /// Days with a confirmed session of another job.
    busy_days: std::collections::BTreeSet<String>,
    events_checked: usize,
    /// Whether every page was read.
    complete: bool,
}

impl ConflictCheck {
    /// Up to three days within a week of `date`, nearest first, with no confirmed session.
    fn alternatives(&self, date: &str) -> Vec<String> {
        (1..=7)
            .flat_map(|days: i64| [days, -days])
            .filter_map(|offset| {
                let target = shift_by(date, offset)?;
                (!self.busy_days.contains(&target)).then_some(target)
            })
            .take(3)
            .collect()
    }

    fn sync_action(&self, date: &str) -> Value {
        json!({
            "action": "conflict_check", "date": date, "conflicts": self.conflicts,
            "alternatives": if self.conflicts.is_empty() { Vec::new() } else { self.alternatives(date) },
            "eventsChecked": self.events_checked, "complete": self.complete,
        })
    }

    /// The conflict record for the job's communication log, if there is a conflict.
    fn note_html(&self, date: &str) -> Option<String> {
        if self.conflicts.is_empty() {
            return None;
        }
        let taken: Vec<String> = self
            .conflicts
            .iter()
            .map(|c| {
                format!(
                    "{} (job {})",
                    c["name"].as_str().unwrap_or("a session"),
                    c["jobId"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let free = self.alternatives(date);
        let free = if free.is_empty() {
            "none within a week".to_owned()
        } else {
            free.join(", ")
        };
        Some(format!(
            "<p><strong>Date conflict:</strong> {} already has {}. Free nearby: {}.</p>",
            escape_html(date),
            escape_html(&taken.join(", ")),
            escape_html(&free)
        ))
    }
}

/// Crockford's base 32, in which a ULID is written: digits and letters without i, l, o, u.
const ULID_ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A Tave id as Tave writes it, or `None` if `id` cannot be one. Tave's ids are ULIDs in
/// lowercase (26 characters of Crockford's base 32, the first at most 7); a ULID is read
/// without regard to case, so an uppercase one is taken and written in lowercase.
pub(super) fn tave_id(id: &str) -> Option<String> {
    let id = id.to_ascii_lowercase();
    let well_formed = id.len() == 26
        && id.as_bytes()[0] <= b'7'
        && id.bytes().all(|b| ULID_ALPHABET.contains(&b));
    well_formed.then_some(id)
}

/// The job: the notification's `taveJobId`, or `metadata.taveJobId`; refused when absent or
/// not a Tave id (a number never is one).
fn job_id(notification: &WeddingNotification) -> Result<String, ConnectorError> {
    let (field, named) = match &notification.tave_job_id {
        Some(id) => ("taveJobId", Value::String(id.clone())),
        None => match notification.metadata.get("taveJobId") {
            Some(id) => ("metadata.taveJobId", id.clone()),
            None => {
                return Err(ConnectorError::Rejected {
                    code: "no_job".into(),
                    message: "taveJobId does not name the Tave job this notification belongs to"
                        .into(),
                })
            }
        },
    };
    named
        .as_str()
        .and_then(tave_id)
        .ok_or_else(|| ConnectorError::Rejected {
            code: "invalid_job_id".into(),
            message: format!(
                "{field}: {named} is not a Tave id (Tave's ids are ULIDs: 26 letters and digits such as 01j5x3k9q2m8r4t6v7w0y1z2a3)"
            ),
        })
}

/// Tave's job stages, and the seed's status names that mean one of them.
const STAGES: &[(&str, &str)] = &[
    ("lead", "lead"),
    ("inquiry", "lead"),
    ("booked", "booked"),
    ("confirmed", "booked"),
    ("fulfillment", "fulfillment"),
    ("in_progress", "fulfillment"),
    ("completed", "completed"),
];

/// The job fields this notification changes; a status Tave has no stage for is refused (the
/// delivery is dead-lettered saying so, never delivered without it).
fn job_changes(notification: &WeddingNotification) -> Result<Map<String, Value>, ConnectorError> {
    let mut changes = Map::new();
    if let Some(date) = notification.new_wedding_date() {
        changes.insert("eventDate".into(), json!(date));
    }
    if let Some(status) = notification.new_booking_status() {
        let stage = STAGES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(status.trim()))
            .map(|(_, stage)| *stage)
            .ok_or_else(|| ConnectorError::Rejected {
                code: "unknown_status".into(),
                message: format!(
                    "metadata.newStatus {status:?} is not a Tave job stage (lead, booked, fulfillment, completed; or inquiry, confirmed, in_progress)"
                ),
            })?;
        changes.insert("stage".into(), json!(stage));
    }
    // updateBookingStatus (the lead status, or the job's stage) and triggerBookingWorkflows
    // (the Tave workflow the job follows), named in the metadata, in the same update.
    for (key, field) in [
        ("taveLeadStatusId", "leadStatusId"),
        ("taveJobStage", "stage"),
        ("taveWorkflowId", "workflowId"),
    ] {
        if let Some(value) = notification.metadata.get(key) {
            changes.insert(field.into(), value.clone());
        }
    }
    Ok(changes)
}

/// The seed's timeline changes that Tave's Job schema has no field for, as a paragraph of the
/// communication-log note, and their names for the sync action.
fn noted_timeline_changes(
    notification: &WeddingNotification,
) -> Option<(String, Vec<&'static str>)> {
    let changes = notification.timeline_changes()?;
    let mut lines = Vec::new();
    let mut fields = Vec::new();
    if let Some(time) = &changes.new_wedding_time {
        lines.push(format!("New time: {}", escape_html(time)));
        fields.push("newWeddingTime");
    }
    if let Some(venue) = &changes.new_venue {
        lines.push(format!("New venue: {}", escape_html(venue)));
        fields.push("newVenue");
    }
    if !changes.affected_sessions.is_empty() {
        lines.push(format!(
            "Affected sessions: {}",
            escape_html(&changes.affected_sessions.join(", "))
        ));
        fields.push("affectedSessions");
    }
    (!lines.is_empty()).then(|| (format!("<p>{}</p>", lines.join("<br>")), fields))
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

    const JOB: &str = "01j5x3k9q2m8r4t6v7w0y1z2a3";

    #[test]
    fn the_job_id_is_a_tave_ulid() {
        let job = |metadata: Value| job_id(&notification("t", metadata));
        assert_eq!(job(json!({"taveJobId": JOB})).unwrap(), JOB);
        assert_eq!(
            job(json!({"taveJobId": JOB.to_uppercase()})).unwrap(),
            JOB,
            "a ULID is read without regard to case"
        );
        let refusal = |metadata: Value| match job(metadata) {
            Err(ConnectorError::Rejected { code, message }) => format!("{code}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(
            refusal(json!({"taveJobId": 42}))
                .starts_with("invalid_job_id: metadata.taveJobId: 42 is not a Tave id"),
            "a number never names a Tave job"
        );
        for wrong in [
            "../studio",
            "J-123",
            "81j5x3k9q2m8r4t6v7w0y1z2a3",
            "01j5x3k9q2m8r4t6v7w0y1z2au",
        ] {
            assert!(
                refusal(json!({"taveJobId": wrong})).starts_with("invalid_job_id:"),
                "{wrong}"
            );
        }
        assert!(refusal(json!({})).starts_with("no_job:"));
    }

    #[test]
    fn only_timeline_changes_and_status_updates_touch_the_job() {
        assert_eq!(
            job_changes(&notification("timeline_change", json!({}))).unwrap(),
            json!({"eventDate": "2027-06-12"})
                .as_object()
                .unwrap()
                .clone()
        );
        assert!(job_changes(&notification("client_message", json!({})))
            .unwrap()
            .is_empty());
        assert_eq!(
            job_changes(&notification(
                "payment_received",
                json!({"taveLeadStatusId": "booked"})
            ))
            .unwrap()["leadStatusId"],
            "booked"
        );
        let booked = job_changes(&notification(
            "booking_confirmed",
            json!({"taveJobStage": "booked", "taveWorkflowId": "01wf"}),
        ))
        .unwrap();
        assert_eq!(
            (booked["stage"].as_str(), booked["workflowId"].as_str()),
            (Some("booked"), Some("01wf"))
        );
    }

    #[test]
    fn the_seeds_booking_fields_are_acted_on() {
        let seed = notification(
            "booking_update",
            json!({
                "timelineChanges": {"newWeddingDate": "2027-07-03", "newWeddingTime": "15:30", "newVenue": "Kew <Gardens>", "affectedSessions": ["S-1"]},
                "updatesBookingStatus": true, "newStatus": "confirmed"
            }),
        );
        let changes = job_changes(&seed).unwrap();
        assert_eq!(
            Value::Object(changes),
            json!({"eventDate": "2027-07-03", "stage": "booked"})
        );
        let (record, fields) = noted_timeline_changes(&seed).unwrap();
        assert_eq!(
            record,
            "<p>New time: 15:30<br>New venue: Kew &lt;Gardens&gt;<br>Affected sessions: S-1</p>"
        );
        assert_eq!(
            fields,
            vec!["newWeddingTime", "newVenue", "affectedSessions"]
        );
        let unknown = notification(
            "booking_update",
            json!({"updatesBookingStatus": true, "newStatus": "on_hold"}),
        );
        assert!(matches!(
            job_changes(&unknown),
            Err(ConnectorError::Rejected { code, .. }) if code == "unknown_status"
        ));
        let mut top_level = notification("t", json!({"taveJobId": "J-old"}));
        top_level.tave_job_id = Some(JOB.into());
        assert_eq!(job_id(&top_level).unwrap(), JOB);
    }

    #[test]
    fn tave_events_become_notifications_with_stable_ids() {
        let payload = |value: Value| value.as_object().cloned().unwrap();
        let job = event_notification(
            "booking",
            "studio",
            "job.created",
            &payload(json!({"id": JOB, "name": "Sam & Alex", "eventDate": "2027-06-12"})),
        )
        .unwrap();
        assert_eq!(
            job.notification_id,
            format!("tave-booking-job.created-{JOB}")
        );
        assert_eq!(job.notification_type, "booking_created");
        assert_eq!(job.message, "A new job was created in Tave: Sam & Alex.");
        assert_eq!(job.wedding_context.unwrap().wedding_date, "2027-06-12");
        assert_eq!(job.metadata["taveJobId"], JOB);

        let payment = event_notification(
            "booking",
            "studio",
            "payment.created",
            &payload(json!({"id": "01J5X3K9Q2M8R4T6V7W0Y1Z2PM", "jobId": JOB})),
        )
        .unwrap();
        assert_eq!(payment.notification_type, "payment_received");
        assert_eq!(
            payment.notification_id,
            "tave-booking-payment.created-01j5x3k9q2m8r4t6v7w0y1z2pm"
        );
        assert_eq!(
            payment.message,
            format!("A payment was recorded in Tave for job {JOB}.")
        );
        assert!(payment.wedding_context.is_none());

        // An id that cannot go into a notification id as it is: the body names the delivery,
        // the same body the same way every time.
        let odd = payload(json!({"id": 314}));
        let first = event_notification("booking", "studio", "order.booked", &odd).unwrap();
        let again = event_notification("booking", "studio", "order.booked", &odd).unwrap();
        assert_eq!(first.notification_id, again.notification_id);
        assert!(!first.notification_id.contains(' '));
        first.validate("", "studio").unwrap();
    }

    #[test]
    fn alternatives_are_the_nearest_free_days() {
        let mut check = ConflictCheck::default();
        for busy in ["2027-06-12", "2027-06-13", "2027-06-11", "2027-06-14"] {
            check.busy_days.insert(busy.into());
        }
        assert_eq!(
            check.alternatives("2027-06-12"),
            ["2027-06-10", "2027-06-15", "2027-06-09"]
        );
        assert!(
            check.note_html("2027-06-12").is_none(),
            "no conflict, no record"
        );
        check
            .conflicts
            .push(json!({"eventId": "e", "jobId": "J-1", "name": "Smith <wedding>"}));
        assert_eq!(
            check.note_html("2027-06-12").unwrap(),
            "<p><strong>Date conflict:</strong> 2027-06-12 already has Smith &lt;wedding&gt; (job J-1). Free nearby: 2027-06-10, 2027-06-15, 2027-06-09.</p>"
        );
    }
}
