pub mod config;
pub mod store;
pub mod wedsync;
