//! Dubsado: no public API, so reached through the studio's Zapier account. Outbound, a
//! notification is the record of Dubsado's "Create Project" action (the client's first and last
//! name and email, a lead or a job, the wedding's date, the notification as the project's notes)
//! posted to the studio's catch hook; inbound, Dubsado's Zapier triggers (a project as a lead or a
//! job, a contract signed, a payment received...) reach Herald as events.

use serde_json::{json, Map, Value};

use super::automation::{details_text, split_name, Automated, AutomationEvent, AutomationVendor};
use super::{DefaultRate, SeedOperation, VendorDescription};
use crate::wedsync::{Contact, IntegrationType, Priority, WeddingNotification};

/// The registry's entry for Dubsado.
pub const VENDOR: Automated = Automated(&DUBSADO);

/// Dubsado's Zapier app: its "Create Project" action and its triggers.
pub static DUBSADO: AutomationVendor = AutomationVendor {
    description: DESCRIPTION,
    action: "Create Project",
    record,
    required: &["clientFirstName", "clientEmail"],
    events: &[
        AutomationEvent {
            event: "project_lead",
            trigger: "New Project as Lead",
            notification_type: "lead_created",
            priority: Priority::Normal,
            title: "Dubsado: new lead",
        },
        AutomationEvent {
            event: "project_job",
            trigger: "New Project as Job",
            notification_type: "booking_confirmed",
            priority: Priority::High,
            title: "Dubsado: new job",
        },
        AutomationEvent {
            event: "project_status_updated",
            trigger: "Project Status Updated",
            notification_type: "vendor_update",
            priority: Priority::Normal,
            title: "Dubsado: project status updated",
        },
        AutomationEvent {
            event: "contract_signed",
            trigger: "Contract Signed",
            notification_type: "contract_signed",
            priority: Priority::High,
            title: "Dubsado: contract signed",
        },
        AutomationEvent {
            event: "payment_received",
            trigger: "New Payment Received",
            notification_type: "payment_received",
            priority: Priority::Normal,
            title: "Dubsado: payment received",
        },
    ],
};

/// "Create Project"'s inputs: the client's first and last name and email (required), phone,
/// the project's name, status (a confirmed booking is a job, anything else a lead), date and
/// notes.
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
    fields.insert("clientFirstName".into(), json!(first));
    fields.insert("clientLastName".into(), json!(last));
    fields.insert("clientEmail".into(), json!(client.email));
    fields.insert("clientPhone".into(), json!(client.phone));
    fields.insert(
        "projectName".into(),
        json!(couple.map_or_else(
            || notification.title.clone(),
            |couple| format!("{couple} wedding")
        )),
    );
    fields.insert(
        "projectStatus".into(),
        json!(if notification.notification_type == "booking_confirmed" {
            "Job"
        } else {
            "Lead"
        }),
    );
    fields.insert(
        "projectDate".into(),
        json!(context.map(|c| c.wedding_date.clone())),
    );
    fields.insert("projectNotes".into(), json!(details_text(notification)));
    fields
}

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "dubsado",
    name: "Dubsado",
    integration_type: IntegrationType::BookingSystem,
    authentication: "zapier-hook-url",
    default_rate: DefaultRate {
        per_second: 10.0,
        burst: 10,
        source: "Zapier's catch hooks take about 30 requests a second per hook and 10,000 per 5 minutes per account (help.zapier.com, \"Webhooks by Zapier rate limits\"); Dubsado publishes no API of its own",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncBookingNotifications",
            implemented_by: "POST to the studio's Zapier catch hook: the record of Dubsado's Create Project action, which the Zap runs",
        },
        SeedOperation {
            name: "updateBookingStatus",
            implemented_by: "not possible: Dubsado's Zapier app has no action that changes a project",
        },
        SeedOperation {
            name: "triggerBookingWorkflows",
            implemented_by: "the studio's Zap: steps after Create Project are the studio's to add; Dubsado's own workflows start on what happens in Dubsado",
        },
        SeedOperation {
            name: "handleBookingConflicts",
            implemented_by: "not possible: nothing in Dubsado's Zapier app reads a calendar or availability",
        },
        SeedOperation {
            name: "connectToBookingAPI",
            implemented_by: "not possible: Dubsado has no public API, and a catch hook cannot be checked without running the Zap",
        },
    ],
    inbound: &["POST /inbound/dubsado/{integration}/events: Dubsado's Zapier triggers, sent by the studio's Zap with X-Herald-Secret, become notifications"],
    takes: Some("has(notification.contacts)"),
};
