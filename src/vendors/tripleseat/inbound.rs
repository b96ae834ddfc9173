//! Tripleseat's webhooks (`POST /inbound/tripleseat/{integration}/webhooks`, the target URL of a
//! webhook endpoint in Settings > API/Webhooks): verified by `X-Signature`, the hex HMAC-SHA256
//! of the raw body under the endpoint's signing key (Tripleseat signs no timestamp, so there is
//! no replay window: a delivery repeated is recognised by its body and becomes the same
//! notification). The body is `{webhook_trigger_type, object}` with the whole lead or event, so
//! nothing is read back: a new lead, a lead converted to a booking, a new event, an event's
//! status or date changed become notifications of the integration's organization.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{EventTime, Tripleseat, TripleseatSettings};
use crate::vendors::inbound::{
    verify_hex_hmac_sha256, InboundAnswer, InboundError, InboundFuture, InboundHandler,
    InboundRequest,
};
use crate::wedsync::{date_of_day, WeddingNotification};

impl InboundHandler for Tripleseat {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(std::future::ready(webhook(request)))
    }
}

fn webhook(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "Tripleseat webhook address of integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "webhooks" {
        return Err(not_found());
    }
    let webhooks = request
        .settings
        .downcast_ref::<TripleseatSettings>()
        .and_then(|settings| settings.webhooks.as_ref())
        .ok_or_else(not_found)?;
    let key = webhooks
        .signing_key
        .read()
        .map_err(InboundError::Misconfigured)?;
    let signature = request
        .headers
        .get("x-signature")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| InboundError::SignatureRefused("X-Signature is missing".into()))?;
    verify_hex_hmac_sha256(key.expose(), request.body, signature, "X-Signature")?;
    let payload: Map<String, Value> = serde_json::from_slice(request.body).map_err(|err| {
        InboundError::Malformed(format!(
            "expected Tripleseat's {{webhook_trigger_type, object}}: {err}"
        ))
    })?;
    let trigger = payload
        .get("webhook_trigger_type")
        .and_then(Value::as_str)
        .ok_or_else(|| InboundError::Malformed("webhook_trigger_type is missing".into()))?;
    let object = payload.get("object").cloned().unwrap_or(Value::Null);
    let object = object
        .get("lead")
        .or(object.get("event"))
        .cloned()
        .unwrap_or(object);
    let Some(kind) = notification_type(trigger, &object) else {
        return Ok(InboundAnswer::Ignored);
    };
    let digest = hex::encode(&Sha256::digest(request.body)[..10]);
    let notification = notification(request.integration_id, trigger, kind, &object, &digest)
        .map_err(|err| {
            InboundError::Malformed(format!("the webhook makes no notification: {err}"))
        })?;
    Ok(InboundAnswer::notifications(vec![notification]))
}

/// The WedSync type of a trigger Herald acts on; `None` for the others (rooms, documents...).
fn notification_type(trigger: &str, object: &Value) -> Option<&'static str> {
    Some(match trigger {
        "CREATE_LEAD" | "CREATE_INTERNAL_LEAD" => "lead_created",
        "CONVERT_LEAD_TO_BOOKING" | "CREATE_EVENT" => "booking_created",
        "LEAD_TURNED_DOWN" => "lead_turned_down",
        "CHANGE_EVENT_DATETIME" => "timeline_change",
        "STATUS_CHANGE_EVENT" => match object["status"]
            .as_str()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("DEFINITE") => "booking_confirmed",
            Some("LOST") => "booking_cancelled",
            _ => "booking_status_changed",
        },
        _ => return None,
    })
}

/// The date of a lead's `event_date` or an event's start (`MM/DD/YYYY`, or the ISO date
/// Tripleseat adds), as `YYYY-MM-DD`.
fn wedding_date(object: &Value) -> Option<String> {
    if let Some(iso) = object["event_date_iso8601"]
        .as_str()
        .filter(|d| crate::wedsync::is_iso_date(d))
    {
        return Some(iso.to_owned());
    }
    let text = object["event_start"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            object["event_date"]
                .as_str()
                .map(|date| format!("{date} 12:00 PM"))
        })?;
    let time = EventTime::parse(&text)?;
    date_of_day(time.day())
}

fn notification(
    integration_id: &str,
    trigger: &str,
    kind: &str,
    object: &Value,
    digest: &str,
) -> Result<WeddingNotification, serde_json::Error> {
    let text = |name: &str| {
        object[name]
            .as_str()
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let id = object["id"]
        .as_u64()
        .map(|id| id.to_string())
        .or_else(|| text("id").map(str::to_owned));
    let person = [text("first_name"), text("last_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let what = text("name")
        .map(str::to_owned)
        .or_else(|| (!person.is_empty()).then(|| person.clone()))
        .unwrap_or_else(|| format!("#{}", id.as_deref().unwrap_or("?")));
    let is_lead = trigger.contains("LEAD");
    let (title, message) = match kind {
        "lead_created" => (
            format!("Tripleseat: new lead {what}"),
            format!("A lead came in through Tripleseat: {what}."),
        ),
        "lead_turned_down" => (
            format!("Tripleseat: lead turned down {what}"),
            format!("The lead {what} was turned down in Tripleseat."),
        ),
        "booking_created" => (
            format!("Tripleseat: new booking {what}"),
            format!("{what} is booked in Tripleseat."),
        ),
        "timeline_change" => (
            format!("Tripleseat: {what} moved"),
            format!(
                "The event {what} now starts {}.",
                text("event_start").unwrap_or("at a new time")
            ),
        ),
        _ => (
            format!(
                "Tripleseat: {what} is {}",
                text("status").unwrap_or("changed").to_ascii_lowercase()
            ),
            format!(
                "The event {what} is now {} in Tripleseat.",
                text("status").unwrap_or("changed")
            ),
        ),
    };
    let mut metadata = json!({
        "source": "tripleseat",
        "tripleseat": {
            "integrationId": integration_id,
            "trigger": trigger,
            "objectType": if is_lead { "lead" } else { "event" },
            "objectId": id,
            "status": text("status"),
        }
    });
    let mut notification = json!({
        "notificationId": format!("tripleseat-{digest}"),
        "type": kind,
        "priority": "normal",
        "title": title,
        "message": message,
    });
    if let (false, Some(id)) = (is_lead, &id) {
        // The event's id where a Tripleseat connector looks for it, so a route can send the
        // notification to another Tripleseat integration of the organization.
        metadata["tripleseatEventId"] = json!(id);
    }
    notification["metadata"] = metadata;
    if let Some(date) = wedding_date(object) {
        notification["weddingContext"] = json!({"weddingDate": date});
        if let Some(name) = text("name").or((!person.is_empty()).then_some(person.as_str())) {
            notification["weddingContext"]["coupleNames"] = json!(name);
        }
    }
    let mut contact = Map::new();
    if !person.is_empty() {
        contact.insert("name".into(), json!(person));
    }
    for (field, name) in [("email", "email_address"), ("phone", "phone_number")] {
        if let Some(value) = text(name) {
            contact.insert(field.into(), json!(value));
        }
    }
    if !contact.is_empty() {
        contact.insert(
            "role".into(),
            json!(if is_lead { "lead" } else { "contact" }),
        );
        notification["contacts"] = json!([contact]);
    }
    serde_json::from_value(notification)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_become_notification_types() {
        let event = |status: &str| json!({"status": status});
        assert_eq!(
            notification_type("CREATE_LEAD", &Value::Null),
            Some("lead_created")
        );
        assert_eq!(
            notification_type("STATUS_CHANGE_EVENT", &event("DEFINITE")),
            Some("booking_confirmed")
        );
        assert_eq!(
            notification_type("STATUS_CHANGE_EVENT", &event("LOST")),
            Some("booking_cancelled")
        );
        assert_eq!(
            notification_type("STATUS_CHANGE_EVENT", &event("TENTATIVE")),
            Some("booking_status_changed")
        );
        assert_eq!(notification_type("CREATE_ROOM", &Value::Null), None);
        assert_eq!(
            wedding_date(&json!({"event_date": "06/12/2027"})).as_deref(),
            Some("2027-06-12")
        );
        assert_eq!(
            wedding_date(&json!({"event_start": "09/04/2027 02:00 PM"})).as_deref(),
            Some("2027-09-04")
        );
    }
}
