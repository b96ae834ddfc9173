//! HoneyBook: no public API, so reached through the studio's Zapier account. Outbound, a
//! notification is the record of HoneyBook's "Create Project" action (the client's name and
//! email, the wedding's date and venue, the notification as the project's details) posted to the
//! studio's catch hook; inbound, HoneyBook's Zapier triggers (a project booked, a payment paid...)
//! reach Herald as events.

use serde_json::{json, Map, Value};

use super::automation::{details_text, Automated, AutomationEvent, AutomationVendor};
use super::{DefaultRate, SeedOperation, VendorDescription};
use crate::wedsync::{Contact, IntegrationType, Priority, WeddingNotification};

/// The registry's entry for HoneyBook.
pub const VENDOR: Automated = Automated(&HONEYBOOK);

/// HoneyBook's Zapier app: its "Create Project" action and its triggers.
pub static HONEYBOOK: AutomationVendor = AutomationVendor {
    description: DESCRIPTION,
    action: "Create Project",
    record,
    required: &["clientFullName", "clientEmail"],
    events: &[
        AutomationEvent {
            event: "client_created",
            trigger: "Client Created",
            notification_type: "lead_created",
            priority: Priority::Normal,
            title: "HoneyBook: new client",
        },
        AutomationEvent {
            event: "project_booked",
            trigger: "New Project Booked",
            notification_type: "booking_confirmed",
            priority: Priority::High,
            title: "HoneyBook: project booked",
        },
        AutomationEvent {
            event: "project_stage_changed",
            trigger: "Project Stage Changed",
            notification_type: "vendor_update",
            priority: Priority::Normal,
            title: "HoneyBook: project stage changed",
        },
        AutomationEvent {
            event: "meeting_scheduled",
            trigger: "Meeting Scheduled",
            notification_type: "meeting_scheduled",
            priority: Priority::Normal,
            title: "HoneyBook: meeting scheduled",
        },
        AutomationEvent {
            event: "payment_paid",
            trigger: "New Payment Paid",
            notification_type: "payment_received",
            priority: Priority::Normal,
            title: "HoneyBook: payment paid",
        },
    ],
};

/// "Create Project"'s inputs: the client's full name and email (required), phone, project
/// name, type and date, location and details.
fn record(notification: &WeddingNotification, client: &Contact) -> Map<String, Value> {
    let context = notification.wedding_context.as_ref();
    let couple = context.and_then(|c| c.couple_names.clone());
    let mut fields = Map::new();
    fields.insert(
        "clientFullName".into(),
        json!(client.name.clone().or(couple.clone())),
    );
    fields.insert("clientEmail".into(), json!(client.email));
    fields.insert("clientPhone".into(), json!(client.phone));
    fields.insert(
        "projectName".into(),
        json!(couple.map_or_else(
            || notification.title.clone(),
            |couple| format!("{couple} wedding")
        )),
    );
    fields.insert("projectType".into(), json!("Wedding"));
    fields.insert(
        "projectDate".into(),
        json!(context.map(|c| c.wedding_date.clone())),
    );
    fields.insert(
        "location".into(),
        json!(context.and_then(|c| c.venue.clone())),
    );
    fields.insert("projectDetails".into(), json!(details_text(notification)));
    fields
}

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "honeybook",
    name: "HoneyBook",
    integration_type: IntegrationType::BookingSystem,
    authentication: "zapier-hook-url",
    default_rate: DefaultRate {
        per_second: 10.0,
        burst: 10,
        source: "Zapier's catch hooks take about 30 requests a second per hook and 10,000 per 5 minutes per account (help.zapier.com, \"Webhooks by Zapier rate limits\"); HoneyBook publishes no API of its own",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncBookingNotifications",
            implemented_by: "POST to the studio's Zapier catch hook: the record of HoneyBook's Create Project action, which the Zap runs",
        },
        SeedOperation {
            name: "updateBookingStatus",
            implemented_by: "not possible: HoneyBook's Zapier app has no action that changes a project",
        },
        SeedOperation {
            name: "triggerBookingWorkflows",
            implemented_by: "the studio's Zap: steps after Create Project are the studio's to add; HoneyBook's own automations start on what happens in HoneyBook",
        },
        SeedOperation {
            name: "handleBookingConflicts",
            implemented_by: "not possible: nothing in HoneyBook's Zapier app reads a calendar or availability",
        },
        SeedOperation {
            name: "connectToBookingAPI",
            implemented_by: "not possible: HoneyBook has no public API, and a catch hook cannot be checked without running the Zap",
        },
    ],
    inbound: &["POST /inbound/honeybook/{integration}/events: HoneyBook's Zapier triggers, sent by the studio's Zap with X-Herald-Secret, become notifications"],
    takes: Some("has(notification.contacts)"),
};
