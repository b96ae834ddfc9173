//! Vendors that publish no API, reached the way their own users reach them: through the
//! supplier's automation platform. Outbound, each notification is posted to the supplier's Zapier
//! "Catch Hook" (or Make custom webhook) as one flat record whose fields are named after the
//! vendor's automation action's inputs, so the Zap maps them one to one; inbound, the Zap that
//! runs on the vendor's trigger posts to Herald's inbound address with the integration's secret,
//! and the event becomes a WedSync notification.
//!
//! What differs per vendor is data ([`AutomationVendor`]): the record its action takes and the
//! triggers it has. The settings, connector, inbound handling and simulated Zap are shared.

mod connector;
mod inbound;
pub mod simulator;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use connector::AutomationConnector;
pub use inbound::handle_event;
pub use simulator::FakeZap;

use super::inbound::{InboundFuture, InboundHandler, InboundRequest};
use super::{
    deserialize_settings, ConnectorTarget, SettingsError, Simulation, SimulatorFuture, Vendor,
    VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::{Contact, Priority, WeddingNotification};

/// The header a Zap's "Webhooks by Zapier" POST (or Make's HTTP module) carries the integration's
/// inbound secret in.
pub const SECRET_HEADER: &str = "x-herald-secret";

/// An integration with a vendor reached through an automation platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationSettings {
    /// The Zap's "Catch Hook" URL (`https://hooks.zapier.com/hooks/catch/<account>/<hook>/`) or
    /// the Make scenario's custom webhook (`https://hook.<zone>.make.com/<token>`): whoever has
    /// the URL can start the automation, so it is kept where secrets are.
    pub hook_url: SecretRef,
    /// When set (`whsec_<base64>`), every delivery carries Standard Webhooks signature headers,
    /// for a Code step that checks them.
    pub signing_secret: Option<SecretRef>,
    /// The secret the vendor's Zaps send with its events (header `X-Herald-Secret`); without it
    /// the integration takes no events.
    pub inbound_secret: Option<SecretRef>,
}

/// What one vendor's automation takes and sends.
#[derive(Debug)]
pub struct AutomationVendor {
    /// What the registry says of the vendor (its kind, name, rate, seed operations).
    pub description: VendorDescription,
    /// The automation action the record is shaped for, as the vendor's Zapier app names it.
    pub action: &'static str,
    /// The record the action's inputs are mapped from, for a notification and its client (a
    /// contact with an email: every action of these vendors needs one).
    pub record: fn(&WeddingNotification, &Contact) -> Map<String, Value>,
    /// The record's fields the action cannot run without.
    pub required: &'static [&'static str],
    /// The vendor's triggers Herald takes, each as the notification it becomes.
    pub events: &'static [AutomationEvent],
}

/// One of the vendor's automation triggers, as Herald takes it inbound.
#[derive(Debug)]
pub struct AutomationEvent {
    /// The `event` value the Zap sends (`project_booked`).
    pub event: &'static str,
    /// The trigger's name in the vendor's Zapier app ("New Project Booked").
    pub trigger: &'static str,
    pub notification_type: &'static str,
    pub priority: Priority,
    /// The notification's title, before the client's or project's name.
    pub title: &'static str,
}

impl AutomationVendor {
    pub fn kind(&self) -> &'static str {
        self.description.kind
    }

    pub fn name(&self) -> &'static str {
        self.description.name
    }
}

/// A vendor reached through an automation platform, as the registry lists it: every such vendor
/// reads its settings, takes its events and is simulated the same way, from its data.
pub struct Automated(pub &'static AutomationVendor);

impl Vendor for Automated {
    fn describe(&self) -> &'static VendorDescription {
        &self.0.description
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn inbound_handler(&self) -> Option<&dyn InboundHandler> {
        Some(self)
    }

    fn parse_settings(&self, settings: Value) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let settings: AutomationSettings = deserialize_settings(settings)?;
        Ok(Arc::new(AutomationIntegration {
            vendor: self.0,
            settings,
        }))
    }
}

impl InboundHandler for Automated {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(async move { handle_event(&request) })
    }
}

impl Simulation for Automated {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(FakeZap::simulated(addr, self.0))
    }
}

/// Settings read for one vendor.
#[derive(Debug)]
pub struct AutomationIntegration {
    pub vendor: &'static AutomationVendor,
    pub settings: AutomationSettings,
}

impl VendorSettings for AutomationIntegration {
    fn secrets(&self) -> Vec<&SecretRef> {
        std::iter::once(&self.settings.hook_url)
            .chain(&self.settings.signing_secret)
            .chain(&self.settings.inbound_secret)
            .collect()
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(AutomationConnector::new(
            self.vendor,
            &self.settings,
            kit.installation_id.clone(),
            kit.client.clone(),
            integration.timeout,
        )?))
    }
}

/// A contact's name as first and last (the last word is the last name), for actions that take
/// them apart.
pub fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    match name.rsplit_once(' ') {
        Some((first, last)) => (first.trim().to_owned(), last.to_owned()),
        None => (name.to_owned(), String::new()),
    }
}

/// The notification as a note's text: title, message and its links, one per line.
pub fn details_text(notification: &WeddingNotification) -> String {
    let mut text = format!("{}\n\n{}", notification.title, notification.message);
    for action in &notification.actions {
        if let Some(url) = &action.url {
            text.push_str(&format!("\n{}: {url}", action.label));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_last_word() {
        assert_eq!(split_name(" Priya  Shah "), ("Priya".into(), "Shah".into()));
        assert_eq!(
            split_name("Mary Ann Jones"),
            ("Mary Ann".into(), "Jones".into())
        );
        assert_eq!(split_name("Cher"), ("Cher".into(), String::new()));
    }
}
