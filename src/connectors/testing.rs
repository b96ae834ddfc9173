//! Connectors for benches and supervision tests, behind the `testing` feature: they never ship
//! in a release build.

use super::{CheckFuture, Connector, Delivery, DeliveryFuture, Receipt};

/// Accepts every delivery at once, without I/O: measures Herald itself.
pub struct NullConnector;

impl Connector for NullConnector {
    fn vendor(&self) -> &'static str {
        "null"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(async move { Ok(Receipt::id(format!("null-{}", delivery.delivery_id))) })
    }

    fn requests_per_delivery(&self, _: &crate::wedsync::WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a serde_json::Value) -> CheckFuture<'a> {
        Box::pin(async { Err(super::engagement_unsupported("test")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(async { Ok(serde_json::json!({"connector": "null"})) })
    }
}

/// Panics on notifications whose metadata has `"panic": true` and accepts the rest: the
/// misbehaving connector supervision must contain.
pub struct PanicConnector;

impl Connector for PanicConnector {
    fn vendor(&self) -> &'static str {
        "panic"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(async move {
            if delivery.notification.metadata.get("panic") == Some(&serde_json::Value::Bool(true)) {
                panic!("connector bug while delivering {}", delivery.delivery_id);
            }
            Ok(Receipt::id(format!("ok-{}", delivery.delivery_id)))
        })
    }

    fn requests_per_delivery(&self, _: &crate::wedsync::WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a serde_json::Value) -> CheckFuture<'a> {
        Box::pin(async { Err(super::engagement_unsupported("test")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(async { Ok(serde_json::json!({"connector": "panic"})) })
    }
}
