//! Studio Ninja: it publishes no API, no webhooks and no Zapier app, so the closest honest path is
//! the studio's own inbox: each notification an email to the address the studio reads beside
//! Studio Ninja (`../smtp/` does the work).

use super::smtp::Mailed;
use super::{DefaultRate, SeedOperation, VendorDescription};
use crate::wedsync::IntegrationType;

/// The registry's entry for Studio Ninja.
pub const VENDOR: Mailed = Mailed(&DESCRIPTION);

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "studio_ninja",
    name: "Studio Ninja",
    integration_type: IntegrationType::BookingSystem,
    authentication: "smtp-login",
    default_rate: DefaultRate {
        per_second: 0.5,
        burst: 5,
        source: "the studio's mail server's: Exchange Online sends at most 30 messages a minute from one mailbox and Google Workspace about 2,000 a day; one every two seconds with a burst of 5 stays inside both",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "syncBookingNotifications",
            implemented_by: "an email to the studio's inbox (SMTP, STARTTLS): Studio Ninja has no API to write to",
        },
        SeedOperation {
            name: "updateBookingStatus",
            implemented_by: "not possible: Studio Ninja has no API",
        },
        SeedOperation {
            name: "triggerBookingWorkflows",
            implemented_by: "not possible: Studio Ninja's workflows start only inside Studio Ninja",
        },
        SeedOperation {
            name: "handleBookingConflicts",
            implemented_by: "not possible: Studio Ninja has no API",
        },
        SeedOperation {
            name: "connectToBookingAPI",
            implemented_by: "the studio's mail server checked instead: greeting, EHLO and sign-in",
        },
    ],
    inbound: &[],
    takes: None,
};
