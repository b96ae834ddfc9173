pub mod config;
pub mod connectors;
pub mod store;
pub mod wedsync;
