pub mod config;
pub mod connectors;
pub mod integration;
pub mod store;
pub mod wedsync;
