//! Pixifi: no public API, so reached through the studio's Zapier account. Outbound, a
//! notification is the record of Pixifi's "Create Lead" action (the client's first and last name
//! and email, the wedding's date and venue, the notification as the lead's notes) posted to the
//! studio's catch hook; inbound, Pixifi's Zapier triggers (a new lead, a contract signed and
//! accepted) reach Herald as events.

use serde_json::{json, Map, Value};

use super::automation::{details_text, split_name, Automated, AutomationEvent, AutomationVendor};
use super::{DefaultRate, SeedOperation, VendorDescription};
use crate::wedsync::{Contact, IntegrationType, Priority, WeddingNotification};

/// The registry's entry for Pixifi.
pub const VENDOR: Automated = Automated(&PIXIFI);

/// Pixifi's Zapier app: its "Create Lead" action and the triggers Herald takes.
pub static PIXIFI: AutomationVendor = AutomationVendor {
    description: DESCRIPTION,
    action: "Create Lead",
    record,
    required: &["firstName", "email"],
    events: &[
        AutomationEvent {
            event: "lead_created",
            trigger: "New Lead",
            notification_type: "lead_created",
            priority: Priority::Normal,
            title: "Pixifi: new lead",
        },
        AutomationEvent {
            event: "contract_signed",
            trigger: "Contract Signed and Accepted",
            notification_type: "booking_confirmed",
            priority: Priority::High,
            title: "Pixifi: contract signed and accepted",
        },
    ],
};

/// "Create Lead"'s inputs: the client's first and last name and email (required), phone, the
/// event's type, date and venue, and notes.
fn record(notification: &WeddingNotification, client: &Contact) -> Map<String, Value> {
    let context = notification.wedding_context.as_ref();
    let couple = context.and_then(|c| c.couple_names.clone());
    let (first, last) = split_name(
        client
            .name
            .as_deref()
            .or(couple.as_deref())
            .unwrap_or_default(),
    );
    let mut fields = Map::new();
    fields.insert("firstName".into(), json!(first));
    fields.insert("lastName".into(), json!(last));
    fields.insert("email".into(), json!(client.email));
    fields.insert("phone".into(), json!(client.phone));
    fields.insert("eventType".into(), json!("Wedding"));
    fields.insert(
        "eventDate".into(),
        json!(context.map(|c| c.wedding_date.clone())),
    );
    fields.insert(
        "eventLocation".into(),
        json!(context.and_then(|c| c.venue.clone())),
    );
    fields.insert("notes".into(), json!(details_text(notification)));
    fields
}

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "pixifi",
    name: "Pixifi",
    integration_type: IntegrationType::BookingSystem,
    authentication: "zapier-hook-url",
    default_rate: DefaultRate {
        per_second: 10.0,
        burst: 10,
        source: "Zapier's catch hooks take about 30 requests a second per hook and 10,000 per 5 minutes per account (help.zapier.com, \"Webhooks by Zapier rate limits\"); Pixifi publishes no API of its own",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncBookingNotifications",
            implemented_by: "POST to the studio's Zapier catch hook: the record of Pixifi's Create Lead action, which the Zap runs",
        },
        SeedOperation {
            name: "updateBookingStatus",
            implemented_by: "not possible: Pixifi's Zapier app has no action that changes a lead or a booking",
        },
        SeedOperation {
            name: "triggerBookingWorkflows",
            implemented_by: "the studio's Zap: steps after Create Lead are the studio's to add; Pixifi's own workflows start on what happens in Pixifi",
        },
        SeedOperation {
            name: "handleBookingConflicts",
            implemented_by: "not possible: nothing in Pixifi's Zapier app reads a calendar or availability",
        },
        SeedOperation {
            name: "connectToBookingAPI",
            implemented_by: "not possible: Pixifi has no public API, and a catch hook cannot be checked without running the Zap",
        },
    ],
    inbound: &["POST /inbound/pixifi/{integration}/events: Pixifi's Zapier triggers, sent by the studio's Zap with X-Herald-Secret, become notifications"],
    takes: Some("has(notification.contacts)"),
};
