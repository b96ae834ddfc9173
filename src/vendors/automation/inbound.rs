//! A vendor's events, sent by the supplier's Zap (a "Webhooks by Zapier" POST step after the
//! vendor's trigger) or Make scenario to `POST /inbound/<kind>/<integration>/events`.
//!
//! Automation platforms cannot sign what they send, so the call carries the integration's
//! inbound secret in `X-Herald-Secret` (compared in constant time; 401 without it) over TLS.
//! There is no timestamp to hold a replay window to: a repeated call is the same notification
//! instead, its id derived from the vendor, the event and the vendor's id for it (`eventId`), so
//! intake takes it once.
//!
//! The body is the flat record the Zap maps from the trigger's fields: `event` (one of the
//! vendor's [`AutomationEvent`]s), `eventId`, and any of `clientName`, `clientEmail`,
//! `clientPhone`, `projectName`, `eventDate` (an ISO date or date-time, the wedding's day),
//! `venue`, `amount`, `currency`, `status`, `details`. A field of the wrong kind is refused
//! naming it.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{AutomationEvent, AutomationIntegration, SECRET_HEADER};
use crate::secret::same_secret;
use crate::vendors::inbound::{InboundAnswer, InboundError, InboundRequest};
use crate::wedsync::{is_iso_date, WeddingNotification};

/// The text fields a Zap may send, beyond `event` and `eventId`.
const TEXT_FIELDS: &[&str] = &[
    "clientName",
    "clientEmail",
    "clientPhone",
    "projectName",
    "eventDate",
    "venue",
    "amount",
    "currency",
    "status",
    "details",
];
const LONGEST_FIELD: usize = 2000;

/// Verifies an event call and turns it into the notification it is.
pub fn handle_event(request: &InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let integration = request
        .settings
        .downcast_ref::<AutomationIntegration>()
        .ok_or_else(|| InboundError::NotFound("inbound events of this integration".into()))?;
    let vendor = integration.vendor;
    if request.path != "events" {
        return Err(InboundError::NotFound(format!(
            "{} inbound address {:?} (events are posted to .../events)",
            vendor.name(),
            request.path
        )));
    }
    let secret = integration
        .settings
        .inbound_secret
        .as_ref()
        .ok_or_else(|| {
            InboundError::NotFound(format!(
                "{} events for integration {:?} (it has no inbound_secret)",
                vendor.name(),
                request.integration_id
            ))
        })?
        .read()
        .map_err(InboundError::Misconfigured)?;
    let given = request
        .headers
        .get(SECRET_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if given.is_empty() || !same_secret(given, secret.expose()) {
        return Err(InboundError::SignatureRefused(format!(
            "{SECRET_HEADER} does not carry the integration's inbound secret"
        )));
    }
    let fields: Map<String, Value> = serde_json::from_slice(request.body)
        .map_err(|err| InboundError::Malformed(format!("expected a JSON object: {err}")))?;
    let event_name = text(&fields, "event")?.ok_or_else(|| {
        InboundError::Malformed(format!(
            "event: required, one of {}",
            event_names(vendor.events)
        ))
    })?;
    let event = vendor
        .events
        .iter()
        .find(|event| event.event == event_name)
        .ok_or_else(|| {
            InboundError::Malformed(format!(
                "event: {event_name:?} is not a {} event Herald takes (one of {})",
                vendor.name(),
                event_names(vendor.events)
            ))
        })?;
    let event_id = text(&fields, "eventId")?.ok_or_else(|| {
        InboundError::Malformed(format!(
            "eventId: required, the {} id of what the event is about (so a repeat is recognised)",
            vendor.name()
        ))
    })?;
    for name in TEXT_FIELDS {
        text(&fields, name)?;
    }
    let notification = notification(
        vendor.kind(),
        vendor.name(),
        request.integration_id,
        event,
        event_id,
        &fields,
    )?;
    Ok(InboundAnswer::notifications(vec![notification]))
}

fn event_names(events: &[AutomationEvent]) -> String {
    events
        .iter()
        .map(|event| event.event)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A field as trimmed text (a number is taken as written), `None` when absent or empty;
/// anything else is refused naming the field.
fn text(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, InboundError> {
    let value = match fields.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.trim().to_owned(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => {
            return Err(InboundError::Malformed(format!(
                "{name}: must be text or a number"
            )))
        }
    };
    if value.chars().count() > LONGEST_FIELD {
        return Err(InboundError::Malformed(format!(
            "{name}: at most {LONGEST_FIELD} characters"
        )));
    }
    Ok((!value.is_empty()).then_some(value))
}

fn notification(
    kind: &str,
    name: &str,
    integration_id: &str,
    event: &AutomationEvent,
    event_id: String,
    fields: &Map<String, Value>,
) -> Result<WeddingNotification, InboundError> {
    let get = |field: &str| text(fields, field).ok().flatten();
    let digest = hex::encode(
        &Sha256::digest(format!("{integration_id}\n{}\n{event_id}", event.event))[..12],
    );
    let about = get("projectName")
        .or_else(|| get("clientName"))
        .unwrap_or_else(|| format!("#{event_id}"));
    let mut lines = vec![format!("{} in {name}: {about}.", event.trigger)];
    for (label, field) in [
        ("Client", "clientName"),
        ("Status", "status"),
        ("Amount", "amount"),
        ("Date", "eventDate"),
        ("Venue", "venue"),
    ] {
        if let Some(value) = get(field) {
            let value = match (field, get("currency")) {
                ("amount", Some(currency)) => format!("{value} {currency}"),
                _ => value,
            };
            lines.push(format!("{label}: {value}"));
        }
    }
    if let Some(details) = get("details") {
        lines.push(details);
    }
    let mut metadata = json!({
        "source": kind,
        kind: {"integrationId": integration_id, "event": event.event, "eventId": event_id},
    });
    if let Some(amount) = get("amount") {
        metadata[kind]["amount"] = json!(amount);
        metadata[kind]["currency"] = json!(get("currency"));
    }
    let mut notification = json!({
        "notificationId": format!("{kind}-{digest}"),
        "type": event.notification_type,
        "priority": event.priority.as_str(),
        "title": format!("{}: {about}", event.title),
        "message": lines.join("\n"),
        "metadata": metadata,
    });
    // Zapier writes dates as ISO date-times; the wedding's day is the date part.
    if let Some(date) = get("eventDate").map(|date| date.chars().take(10).collect::<String>()) {
        if !is_iso_date(&date) {
            return Err(InboundError::Malformed(
                "eventDate: must be a date, YYYY-MM-DD (or an ISO date-time)".into(),
            ));
        }
        notification["weddingContext"] = json!({"weddingDate": date});
        if let Some(venue) = get("venue") {
            notification["weddingContext"]["venue"] = json!(venue);
        }
        if let Some(client) = get("clientName") {
            notification["weddingContext"]["coupleNames"] = json!(client);
        }
    }
    let mut contact = Map::new();
    for (field, from) in [
        ("name", "clientName"),
        ("email", "clientEmail"),
        ("phone", "clientPhone"),
    ] {
        if let Some(value) = get(from) {
            contact.insert(field.into(), json!(value));
        }
    }
    if !contact.is_empty() {
        contact.insert("role".into(), json!("client"));
        notification["contacts"] = json!([contact]);
    }
    serde_json::from_value(notification).map_err(|err| {
        InboundError::Malformed(format!("the event does not make a notification: {err}"))
    })
}
