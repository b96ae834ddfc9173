//! Email: each notification as an email to the studio's inbox through its own SMTP server, the
//! channel every supplier has (`../smtp/` does the work).

use super::smtp::Mailed;
use super::{DefaultRate, SeedOperation, VendorDescription};
use crate::wedsync::IntegrationType;

/// The registry's entry for Email.
pub const VENDOR: Mailed = Mailed(&DESCRIPTION);

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "email",
    name: "Email",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "smtp-login",
    default_rate: DefaultRate {
        per_second: 0.5,
        burst: 5,
        source: "Exchange Online sends at most 30 messages a minute from one mailbox and Google Workspace about 2,000 a day; one every two seconds with a burst of 5 stays inside both",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "SMTP (STARTTLS): a plain-text and an HTML part, the subject marked for urgent notifications",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "not in SMTP: a server sends what it is given at once",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "the recipients are the integration's `to`; each reader's mail rules are their own",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "not possible without tracking pixels, which Herald does not add",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "the server's greeting, EHLO and sign-in, sending nothing",
        },
    ],
    inbound: &[],
    takes: None,
};
