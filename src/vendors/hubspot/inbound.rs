//! HubSpot's webhooks (`POST /inbound/hubspot/{integration}/webhooks`, the app's target URL):
//! CRM changes in the portal become WedSync notifications of the integration's organization.
//!
//! - Verified by `X-HubSpot-Signature-v3`: base64 of the HMAC-SHA256, under the app's client
//!   secret, of the method, the target URL as HubSpot called it (`webhooks.public_url` and the
//!   path), the body and `X-HubSpot-Request-Timestamp` (milliseconds), refused when that timestamp
//!   is more than five minutes from now.
//! - HubSpot sends up to 100 events in one request, each naming only the object: a new deal
//!   (`deal.creation`), a deal moved to another stage (`deal.propertyChange` of `dealstage`) and a
//!   new contact (`contact.creation`) are read in one `batch/read` per object type and become
//!   `deal_created`, the stage's type from `webhooks.deal_stages` (else `deal_stage_changed`) and
//!   `contact_created`. Other events are answered 200 and left.
//! - A notification's id is derived from the event (portal, type, object, property, time), so a
//!   delivery HubSpot repeats is the same notification.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{HubSpot, HubSpotConnector, HubSpotSettings};
use crate::connectors::ConnectorError;
use crate::secret::same_secret;
use crate::vendors::inbound::{
    InboundAnswer, InboundError, InboundFuture, InboundHandler, InboundRequest,
};
use crate::wedsync::{is_iso_date, WeddingNotification};

/// How far `X-HubSpot-Request-Timestamp` may be from now.
const WINDOW_SECONDS: u64 = 300;
/// The most events HubSpot puts in one request.
const MAX_EVENTS: usize = 100;
const DEAL_PROPERTIES: &[&str] = &["dealname", "dealstage", "pipeline", "amount", "closedate"];
const CONTACT_PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "wedding_date",
    "wedding_venue",
];

/// One event of HubSpot's webhook payload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    subscription_type: String,
    object_id: Value,
    #[serde(default)]
    portal_id: Value,
    #[serde(default)]
    occurred_at: Value,
    #[serde(default)]
    property_name: Option<String>,
    #[serde(default)]
    property_value: Option<String>,
}

/// What Herald makes of an event.
enum Change {
    DealCreated,
    DealStage(String),
    ContactCreated,
}

impl InboundHandler for HubSpot {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(webhooks(request))
    }
}

async fn webhooks(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "HubSpot webhook address of integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "webhooks" {
        return Err(not_found());
    }
    let settings = request
        .settings
        .downcast_ref::<HubSpotSettings>()
        .ok_or_else(not_found)?;
    let (Some(webhooks), Some(secret)) = (&settings.webhooks, settings.webhook_secret()) else {
        return Err(not_found());
    };
    let secret = secret.read().map_err(InboundError::Misconfigured)?;
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let timestamp = header("x-hubspot-request-timestamp")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            InboundError::SignatureRefused("X-HubSpot-Request-Timestamp is missing".into())
        })?;
    if (timestamp / 1000).abs_diff(request.now) > WINDOW_SECONDS {
        return Err(InboundError::SignatureRefused(
            "X-HubSpot-Request-Timestamp is more than five minutes from now".into(),
        ));
    }
    let signature = header("x-hubspot-signature-v3").ok_or_else(|| {
        InboundError::SignatureRefused("X-HubSpot-Signature-v3 is missing".into())
    })?;
    let uri = format!(
        "{}/inbound/hubspot/{}/{}",
        webhooks.public_url.trim_end_matches('/'),
        request.integration_id,
        request.path
    );
    let expected = sign_v3(secret.expose(), "POST", &uri, request.body, timestamp);
    if !same_secret(signature.trim(), &expected) {
        return Err(InboundError::SignatureRefused(
            "X-HubSpot-Signature-v3 does not match".into(),
        ));
    }
    let events: Vec<Event> = serde_json::from_slice(request.body).map_err(|err| {
        InboundError::Malformed(format!("expected HubSpot's array of events: {err}"))
    })?;
    if events.len() > MAX_EVENTS {
        return Err(InboundError::Malformed(format!(
            "{} events in one request; HubSpot sends at most {MAX_EVENTS}",
            events.len()
        )));
    }
    let changes: Vec<(&Event, String, Change)> = events
        .iter()
        .filter_map(|event| {
            let id = object_id(&event.object_id)?;
            let change = match event.subscription_type.as_str() {
                "deal.creation" => Change::DealCreated,
                "deal.propertyChange" if event.property_name.as_deref() == Some("dealstage") => {
                    Change::DealStage(event.property_value.clone().unwrap_or_default())
                }
                "contact.creation" => Change::ContactCreated,
                _ => return None,
            };
            Some((event, id, change))
        })
        .collect();
    if changes.is_empty() {
        return Ok(InboundAnswer::Ignored);
    }
    let ids = |contacts: bool| -> Vec<String> {
        let mut ids: Vec<String> = changes
            .iter()
            .filter(|(_, _, change)| matches!(change, Change::ContactCreated) == contacts)
            .map(|(_, id, _)| id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let connector = HubSpotConnector::new(
        settings,
        request.integration_id,
        request.client.clone(),
        request.vault.cloned(),
        request.timeout,
    )
    .map_err(|err| InboundError::Misconfigured(err.to_string()))?;
    let unavailable = |err: ConnectorError| InboundError::VendorUnavailable(err.to_string());
    let deals = connector
        .read_objects("deals", &ids(false), DEAL_PROPERTIES)
        .await
        .map_err(unavailable)?;
    let contacts = connector
        .read_objects("contacts", &ids(true), CONTACT_PROPERTIES)
        .await
        .map_err(unavailable)?;
    let notifications = changes
        .iter()
        .map(|(event, id, change)| {
            let object = match change {
                Change::ContactCreated => contacts.get(id),
                _ => deals.get(id),
            };
            notification(request.integration_id, settings, event, id, change, object)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            InboundError::Malformed(format!("the event makes no notification: {err}"))
        })?;
    Ok(InboundAnswer::notifications(notifications))
}

/// An event's object id, which HubSpot sends as a number.
fn object_id(value: &Value) -> Option<String> {
    match value {
        Value::Number(number) => Some(number.to_string()),
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            Some(text.clone())
        }
        _ => None,
    }
}

/// The WedSync notification an event becomes, named from the object HubSpot answered (absent
/// when it was deleted since).
fn notification(
    integration_id: &str,
    settings: &HubSpotSettings,
    event: &Event,
    id: &str,
    change: &Change,
    object: Option<&Value>,
) -> Result<WeddingNotification, serde_json::Error> {
    let property = |name: &str| {
        object
            .and_then(|object| object[name].as_str())
            .filter(|value| !value.trim().is_empty())
    };
    let key = format!(
        "{integration_id}\n{}\n{}\n{id}\n{}\n{}",
        event.portal_id,
        event.subscription_type,
        event.property_name.as_deref().unwrap_or(""),
        event.occurred_at
    );
    let notification_id = format!(
        "hubspot-{}",
        hex::encode(&Sha256::digest(key.as_bytes())[..12])
    );
    let deal = property("dealname").map_or_else(|| format!("deal {id}"), str::to_owned);
    let (kind, title, message) = match change {
        Change::DealCreated => (
            "deal_created".to_owned(),
            format!("HubSpot: new deal {deal}"),
            format!("A deal was created in HubSpot: {deal}."),
        ),
        Change::DealStage(stage) => (
            settings
                .webhooks
                .as_ref()
                .and_then(|webhooks| webhooks.deal_stages.get(stage))
                .cloned()
                .unwrap_or_else(|| "deal_stage_changed".to_owned()),
            format!("HubSpot: {deal} moved to {stage}"),
            format!("The deal {deal} moved to the stage {stage} in HubSpot."),
        ),
        Change::ContactCreated => {
            let name = [property("firstname"), property("lastname")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let who = if name.is_empty() {
                property("email").map_or_else(|| format!("contact {id}"), str::to_owned)
            } else {
                name
            };
            (
                "contact_created".to_owned(),
                format!("HubSpot: new contact {who}"),
                format!("A contact was added in HubSpot: {who}."),
            )
        }
    };
    let object_type = match change {
        Change::ContactCreated => "contact",
        _ => "deal",
    };
    let mut notification = json!({
        "notificationId": notification_id,
        "type": kind,
        "priority": "normal",
        "title": title,
        "message": message,
        "metadata": {
            "source": "hubspot",
            "hubspot": {
                "integrationId": integration_id,
                "subscriptionType": event.subscription_type,
                "portalId": event.portal_id,
                "objectType": object_type,
                "objectId": id,
                "propertyName": event.property_name,
                "propertyValue": event.property_value,
                "occurredAt": event.occurred_at,
                "properties": object.cloned().unwrap_or(Value::Null),
            }
        },
    });
    if let Change::ContactCreated = change {
        let mut contact = json!({"contactId": id, "role": "hubspot_contact"});
        for (field, name) in [("email", "email"), ("phone", "phone")] {
            if let Some(value) = property(name) {
                contact[field] = json!(value);
            }
        }
        let name = [property("firstname"), property("lastname")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            contact["name"] = json!(name);
        }
        notification["contacts"] = json!([contact]);
        if let Some(date) = property("wedding_date").filter(|date| is_iso_date(date)) {
            notification["weddingContext"] = json!({"weddingDate": date});
            if let Some(venue) = property("wedding_venue") {
                notification["weddingContext"]["venue"] = json!(venue);
            }
        }
    }
    serde_json::from_value(notification)
}

/// HubSpot's v3 signature: base64 of HMAC-SHA256(secret, method + URI + body + timestamp), the
/// URI with the characters HubSpot decodes before signing decoded.
pub fn sign_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: u64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(method.as_bytes());
    mac.update(decode_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp_ms.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL-encoded characters HubSpot's validation guide says to decode in the URI.
fn decode_uri(uri: &str) -> String {
    const DECODED: &[(&str, &str)] = &[
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    let mut decoded = uri.to_owned();
    for (encoded, plain) in DECODED {
        decoded = decoded
            .replace(encoded, plain)
            .replace(&encoded.to_lowercase(), plain);
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v3_signature_covers_method_uri_body_and_timestamp() {
        let signature = sign_v3(
            "secret",
            "POST",
            "https://h.example/inbound/hubspot/crm/webhooks",
            b"[]",
            1_700_000_000_000,
        );
        assert_eq!(signature.len(), 44, "base64 of 32 bytes");
        assert_eq!(
            signature,
            sign_v3(
                "secret",
                "POST",
                "https%3A%2F%2Fh.example%2Finbound/hubspot/crm/webhooks",
                b"[]",
                1_700_000_000_000
            ),
            "encoded characters HubSpot decodes sign the same"
        );
        for other in [
            sign_v3(
                "other",
                "POST",
                "https://h.example/inbound/hubspot/crm/webhooks",
                b"[]",
                1_700_000_000_000,
            ),
            sign_v3(
                "secret",
                "GET",
                "https://h.example/inbound/hubspot/crm/webhooks",
                b"[]",
                1_700_000_000_000,
            ),
            sign_v3(
                "secret",
                "POST",
                "https://h.example/inbound/hubspot/other/webhooks",
                b"[]",
                1_700_000_000_000,
            ),
            sign_v3(
                "secret",
                "POST",
                "https://h.example/inbound/hubspot/crm/webhooks",
                b"[{}]",
                1_700_000_000_000,
            ),
            sign_v3(
                "secret",
                "POST",
                "https://h.example/inbound/hubspot/crm/webhooks",
                b"[]",
                1_700_000_000_001,
            ),
        ] {
            assert_ne!(other, signature);
        }
    }
}
