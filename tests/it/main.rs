//! Herald's integration tests: one binary, each module a capability, every test over real HTTP
//! against the daemon and the vendor simulators in `herald::sandbox`.

mod harness;
mod hostile;

mod acceptance;
mod asana;
mod audit;
mod automation_vendors;
mod breaker;
mod contract;
mod demo;
mod discord;
mod durability;
mod dynamics365;
mod email;
mod emergency;
mod google_calendar;
mod hubspot;
mod hubspot_webhooks;
mod intake;
mod interactivity;
mod intercom;
mod isolation;
mod managed_integrations;
mod microsoft_calendar;
mod monday;
mod pagerduty;
mod pipedrive;
mod postgres;
mod properties;
mod quiet_hours;
mod reminders;
mod roles;
mod routing;
mod salesforce;
mod sandbox;
mod stripe;
mod supervision;
mod tave;
mod teams;
mod telegram;
mod tripleseat;
mod twilio;
mod vendors;
mod whatsapp;
mod zoho;
