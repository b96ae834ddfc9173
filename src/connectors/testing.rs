//! Connectors for benches and supervision tests, behind the `testing` feature: they never ship
//! in a release build.

use super::{Connector, Delivery, DeliveryFuture, Receipt};

/// Accepts every delivery at once, without I/O: measures Herald itself.
pub struct NullConnector;

impl Connector for NullConnector {
    fn vendor(&self) -> &'static str {
        "null"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(async move { Ok(Receipt(format!("null-{}", delivery.delivery_id))) })
    }
}

/// Panics on every delivery: the misbehaving connector supervision must contain.
pub struct PanicConnector;

impl Connector for PanicConnector {
    fn vendor(&self) -> &'static str {
        "panic"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(async move { panic!("connector bug while delivering {}", delivery.delivery_id) })
    }
}
