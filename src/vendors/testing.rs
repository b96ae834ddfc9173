//! Vendors for benches and supervision tests, behind the `testing` feature: they never ship in a
//! release build, and [`super::all`] never lists them ([`super::find`] does).

use std::sync::Arc;

use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SettingsError, Vendor, VendorDescription,
    VendorSettings,
};
use crate::connectors::{
    engagement_unsupported, CheckFuture, Connector, ConnectorError, ConnectorKit, Delivery,
    DeliveryFuture, Receipt,
};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

/// The testing vendors: `null` and `panic`.
pub fn all() -> &'static [&'static dyn Vendor] {
    &[&TestVendor::Null, &TestVendor::Panic]
}

/// A vendor whose connector is built in: [`NullConnector`] or [`PanicConnector`].
#[derive(Debug, Clone, Copy)]
pub enum TestVendor {
    Null,
    Panic,
}

const NULL: VendorDescription = VendorDescription {
    kind: "null",
    name: "Null",
    ..PANIC
};

const PANIC: VendorDescription = VendorDescription {
    kind: "panic",
    name: "Panic",
    integration_type: IntegrationType::Webhook,
    authentication: "none",
    default_rate: DefaultRate {
        per_second: 1_000_000.0,
        burst: 1_000_000,
        source: "no vendor: measures Herald itself",
        window: None,
    },
    seed_operations: &[],
    inbound: &[],
    takes: None,
};

/// The testing vendors take no settings.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

/// A testing integration's settings: which built-in connector it runs.
#[derive(Debug)]
struct BuiltIn(TestVendor);

impl Vendor for TestVendor {
    fn describe(&self) -> &'static VendorDescription {
        match self {
            TestVendor::Null => &NULL,
            TestVendor::Panic => &PANIC,
        }
    }

    fn simulation(&self) -> Option<&dyn super::Simulation> {
        None
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let NoSettings {} = deserialize_settings(settings)?;
        Ok(Arc::new(BuiltIn(*self)))
    }
}

impl VendorSettings for BuiltIn {
    fn secrets(&self) -> Vec<&SecretRef> {
        Vec::new()
    }

    fn build(
        &self,
        _: &ConnectorTarget<'_>,
        _: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(match self.0 {
            TestVendor::Null => Arc::new(NullConnector),
            TestVendor::Panic => Arc::new(PanicConnector),
        })
    }
}

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
        Box::pin(async { Err(engagement_unsupported("test")) })
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
        Box::pin(async { Err(engagement_unsupported("test")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(async { Ok(serde_json::json!({"connector": "panic"})) })
    }
}
