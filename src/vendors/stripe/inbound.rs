//! Stripe's payment events (`POST /inbound/stripe/{integration}/events`, the webhook endpoint's
//! address), verified with `Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]`: the hex
//! HMAC-SHA256, under the endpoint's signing secret, of `<t>.<raw body>`. One `v1` must match
//! (Stripe signs with both secrets while one is rolled), and `t` must be within the tolerance of
//! now (default five minutes), so a captured event cannot be replayed later.
//!
//! - `payment_intent.succeeded` and `invoice.paid` become `payment_received`, `charge.refunded`
//!   `payment_refunded`, `invoice.payment_failed` `payment_failed` (high priority): WedSync
//!   notifications of the integration's organization, routed like any other. Their id is
//!   `stripe-<event id>`, so an event Stripe sends again is a duplicate, not a second
//!   notification.
//! - The wedding comes from the object's metadata as WedSync sets it on the payments it creates
//!   (`wedding_id`, `wedding_date`, `venue`, `couple_names`); the payer from its email and name.
//! - A payment whose metadata names a WedSync notification (`wedsync_notification_id`: a
//!   payment reminder) acknowledges it, as `paid` by the payer.
//!
//! Other event types are answered 200 and left.

use serde_json::{json, Map, Value};

use super::{Stripe, StripeSettings};
use crate::vendors::inbound::{
    verify_hex_hmac_sha256, InboundAction, InboundAnswer, InboundError, InboundFuture,
    InboundHandler, InboundRequest,
};
use crate::wedsync::{is_iso_date, Contact, Priority, WeddingContext, WeddingNotification};

impl InboundHandler for Stripe {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(async move { event(request) })
    }
}

/// Checks a `Stripe-Signature` header against the body, the secret and now.
pub(super) fn verify_signature(
    secret: &str,
    body: &[u8],
    header: &str,
    now: u64,
    tolerance: u64,
) -> Result<(), InboundError> {
    let refused = |why: &str| InboundError::SignatureRefused(format!("Stripe-Signature {why}"));
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| refused("has no timestamp"))?;
    if signatures.is_empty() {
        return Err(refused("has no v1 signature"));
    }
    if now.abs_diff(timestamp) > tolerance {
        return Err(refused("is outside the tolerance of now"));
    }
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let matched = signatures.iter().any(|signature| {
        verify_hex_hmac_sha256(secret, &signed, signature, "Stripe-Signature").is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(refused(
            "does not match the body under the endpoint's secret",
        ))
    }
}

fn event(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "Stripe webhook endpoint of integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "events" || request.method != "POST" {
        return Err(not_found());
    }
    let settings = request
        .settings
        .downcast_ref::<StripeSettings>()
        .ok_or_else(not_found)?;
    let webhook = settings.webhook.as_ref().ok_or_else(not_found)?;
    let secret = webhook
        .signing_secret
        .read()
        .map_err(InboundError::Misconfigured)?;
    let header = request
        .headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    verify_signature(
        secret.expose(),
        request.body,
        header,
        request.now,
        webhook.tolerance_seconds,
    )?;
    let event: Value = serde_json::from_slice(request.body)
        .map_err(|err| InboundError::Malformed(format!("expected a Stripe event: {err}")))?;
    let event_id = event["id"]
        .as_str()
        .filter(|id| id.starts_with("evt_") && id.len() <= 120)
        .ok_or_else(|| InboundError::Malformed("the event has no evt_ id".into()))?;
    let object = &event["data"]["object"];
    let (notification_type, priority, amount_field, what) = match event["type"].as_str() {
        Some("payment_intent.succeeded") => (
            "payment_received",
            Priority::Normal,
            "amount_received",
            "Payment received",
        ),
        Some("invoice.paid") => (
            "payment_received",
            Priority::Normal,
            "amount_paid",
            "Invoice paid",
        ),
        Some("charge.refunded") => (
            "payment_refunded",
            Priority::Normal,
            "amount_refunded",
            "Payment refunded",
        ),
        Some("invoice.payment_failed") => (
            "payment_failed",
            Priority::High,
            "amount_due",
            "Payment failed",
        ),
        _ => return Ok(InboundAnswer::Ignored),
    };
    let text = |value: &Value| {
        value
            .as_str()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let metadata = &object["metadata"];
    let currency = text(&object["currency"]).unwrap_or_default();
    let amount = object[amount_field]
        .as_i64()
        .map(|minor| format_amount(minor, &currency));
    let payer_email = text(&object["receipt_email"])
        .or_else(|| text(&object["customer_email"]))
        .or_else(|| text(&object["billing_details"]["email"]));
    let payer_name = text(&object["customer_name"])
        .or_else(|| text(&object["billing_details"]["name"]))
        .or_else(|| text(&metadata["couple_names"]));
    let wedding_context = text(&metadata["wedding_date"])
        .filter(|date| is_iso_date(date))
        .map(|wedding_date| WeddingContext {
            wedding_id: text(&metadata["wedding_id"])
                .filter(|id| id.len() <= 128 && !id.contains(char::is_whitespace)),
            wedding_date,
            venue: text(&metadata["venue"]),
            vendor_name: None,
            couple_names: text(&metadata["couple_names"]),
            guest_count: None,
            timezone: None,
            venue_location: None,
        });
    let title = match (&amount, &payer_name) {
        (Some(amount), Some(payer)) => format!("{what}: {amount} from {payer}"),
        (Some(amount), None) => format!("{what}: {amount}"),
        _ => what.to_owned(),
    };
    let mut message = format!(
        "Stripe {} {}",
        event["type"].as_str().unwrap_or_default(),
        text(&object["id"]).unwrap_or_default()
    );
    if let Some(description) = text(&object["description"]) {
        message.push_str(&format!(": {description}"));
    }
    if event["type"] == "invoice.payment_failed" {
        if let Some(attempts) = object["attempt_count"].as_u64() {
            message.push_str(&format!(" (attempt {attempts})"));
        }
    }
    let mut details = Map::new();
    details.insert("stripeEventId".into(), json!(event_id));
    details.insert("stripeEventType".into(), event["type"].clone());
    details.insert("stripeObjectId".into(), object["id"].clone());
    details.insert("amount".into(), object[amount_field].clone());
    details.insert("currency".into(), json!(currency));
    details.insert("livemode".into(), event["livemode"].clone());
    let contacts = match payer_email
        .clone()
        .filter(|email| crate::wedsync::is_email(email))
    {
        Some(email) => vec![Contact {
            contact_id: text(&object["customer"]),
            name: payer_name.clone(),
            email: Some(email),
            phone: None,
            role: Some("payer".to_owned()),
        }],
        None => Vec::new(),
    };
    let notification = WeddingNotification {
        notification_id: format!("stripe-{event_id}"),
        organization_id: Some(request.organization.to_owned()),
        notification_type: notification_type.to_owned(),
        priority,
        title: crate::connectors::cut_marked(&title, 500),
        message: crate::connectors::cut_marked(&message, 20_000),
        wedding_context,
        contacts,
        actions: Vec::new(),
        metadata: details,
        created_at: None,
        booking_id: None,
        tave_job_id: None,
    };
    let acknowledged = match (
        notification_type,
        text(&metadata["wedsync_notification_id"]),
    ) {
        ("payment_received", Some(reminder)) => vec![InboundAction {
            notification_id: reminder,
            action_id: "paid".to_owned(),
            actor: payer_email
                .or(payer_name)
                .unwrap_or_else(|| "a Stripe customer".to_owned()),
        }],
        _ => Vec::new(),
    };
    Ok(InboundAnswer::Notifications {
        notifications: vec![notification],
        acknowledged,
    })
}

/// Stripe's currencies without minor units.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// An amount in the currency's smallest unit as people write it (`1,250.00 GBP`).
fn format_amount(minor: i64, currency: &str) -> String {
    let code = currency.to_uppercase();
    let negative = minor < 0;
    let minor = minor.unsigned_abs();
    let (major, cents) = if ZERO_DECIMAL.contains(&currency.to_lowercase().as_str()) {
        (minor, None)
    } else {
        (minor / 100, Some(minor % 100))
    };
    let digits = major.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if negative { "-" } else { "" };
    match cents {
        Some(cents) => format!("{sign}{grouped}.{cents:02} {code}"),
        None => format!("{sign}{grouped} {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendors::inbound::hex_hmac_sha256;

    #[test]
    fn amounts_are_written_as_people_read_them() {
        assert_eq!(format_amount(125_000, "gbp"), "1,250.00 GBP");
        assert_eq!(format_amount(5, "usd"), "0.05 USD");
        assert_eq!(format_amount(1_500_000, "jpy"), "1,500,000 JPY");
    }

    #[test]
    fn signatures_are_checked_with_their_timestamp() {
        let body = br#"{"id":"evt_1"}"#;
        let sign = |secret: &str, t: u64| {
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(body);
            hex_hmac_sha256(secret, &signed)
        };
        let now = 1_800_000_000;
        let header = format!(
            "t={now},v1={},v1={}",
            sign("whsec_old", now),
            sign("whsec_new", now)
        );
        assert!(verify_signature("whsec_new", body, &header, now + 10, 300).is_ok());
        assert!(verify_signature("whsec_old", body, &header, now, 300).is_ok());
        for (secret, header, at, why) in [
            (
                "whsec_new",
                header.clone(),
                now + 301,
                "outside the tolerance",
            ),
            ("whsec_other", header.clone(), now, "does not match"),
            (
                "whsec_new",
                format!("v1={}", sign("whsec_new", now)),
                now,
                "no timestamp",
            ),
            (
                "whsec_new",
                format!("t={now},v0={}", sign("whsec_new", now)),
                now,
                "no v1",
            ),
            // The signature covers the timestamp: another one does not verify.
            (
                "whsec_new",
                format!("t={},v1={}", now + 1, sign("whsec_new", now)),
                now,
                "does not match",
            ),
        ] {
            let err = verify_signature(secret, body, &header, at, 300).unwrap_err();
            assert!(err.to_string().contains(why), "{header}: {err}");
        }
    }
}
