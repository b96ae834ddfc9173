//! Intuit's webhooks (`POST /inbound/quickbooks/{integration}/webhooks`), verified with
//! `intuit-signature`: the base64 HMAC-SHA256 of the raw body under the app's verifier token.
//! Intuit signs no timestamp, so there is no replay window; a replayed event is a notification
//! Herald already has (its id is the payment's), answered as a duplicate.
//!
//! A payment created in the integration's company (`dataChangeEvent` entity `Payment`,
//! operation `Create`) is read from the API (the event names only its id) and becomes a
//! `payment_received` notification of the integration's organization, routed like any other.
//! Other entities, operations and companies are left.

use base64::Engine;
use hmac::Mac;
use serde_json::{json, Map, Value};

use super::{QuickBooks, QuickBooksConnector, QuickBooksSettings};
use crate::secret::same_secret;
use crate::vendors::inbound::{
    InboundAnswer, InboundError, InboundFuture, InboundHandler, InboundRequest,
};
use crate::wedsync::{Priority, WeddingNotification};

impl InboundHandler for QuickBooks {
    fn handle<'a>(&'a self, request: InboundRequest<'a>) -> InboundFuture<'a> {
        Box::pin(webhook(request))
    }
}

/// `intuit-signature` of a body: how Intuit signs (its simulator signs with it).
pub fn intuit_signature(verifier_token: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(verifier_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn webhook(request: InboundRequest<'_>) -> Result<InboundAnswer, InboundError> {
    let not_found = || {
        InboundError::NotFound(format!(
            "QuickBooks webhook of integration {:?}",
            request.integration_id
        ))
    };
    if request.path != "webhooks" || request.method != "POST" {
        return Err(not_found());
    }
    let settings = request
        .settings
        .downcast_ref::<QuickBooksSettings>()
        .ok_or_else(not_found)?;
    let webhook = settings.webhook.as_ref().ok_or_else(not_found)?;
    let token = webhook
        .verifier_token
        .read()
        .map_err(InboundError::Misconfigured)?;
    let given = request
        .headers
        .get("intuit-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !same_secret(given, &intuit_signature(token.expose(), request.body)) {
        return Err(InboundError::SignatureRefused(
            "intuit-signature does not match the body under the verifier token".into(),
        ));
    }
    let payload: Value = serde_json::from_slice(request.body).map_err(|err| {
        InboundError::Malformed(format!("expected Intuit's eventNotifications: {err}"))
    })?;
    let payments: Vec<String> = payload["eventNotifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| event["realmId"] == settings.realm_id.as_str())
        .flat_map(|event| {
            event["dataChangeEvent"]["entities"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter(|entity| entity["name"] == "Payment" && entity["operation"] == "Create")
        .filter_map(|entity| entity["id"].as_str().map(str::to_owned))
        .filter(|id| !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit()))
        .take(20)
        .collect();
    if payments.is_empty() {
        return Ok(InboundAnswer::Ignored);
    }
    let connector = QuickBooksConnector::new(
        settings,
        request.integration_id,
        "inbound".into(),
        request.client.clone(),
        request.vault.cloned(),
        request.timeout,
    )
    .map_err(|err| InboundError::Misconfigured(err.to_string()))?;
    let mut notifications = Vec::with_capacity(payments.len());
    for id in payments {
        let payment = connector
            .payment(&id)
            .await
            .map_err(|err| InboundError::VendorUnavailable(err.to_string()))?;
        let amount = payment["TotalAmt"].as_f64().unwrap_or_default();
        let customer = payment["CustomerRef"]["name"]
            .as_str()
            .unwrap_or("a customer");
        let currency = payment["CurrencyRef"]["value"].as_str().unwrap_or_default();
        let mut metadata = Map::new();
        metadata.insert("quickbooksPaymentId".into(), json!(id));
        metadata.insert(
            "quickbooksCustomerId".into(),
            payment["CustomerRef"]["value"].clone(),
        );
        metadata.insert("amount".into(), json!(amount));
        metadata.insert("currency".into(), json!(currency));
        notifications.push(WeddingNotification {
            notification_id: format!("quickbooks-{}-payment-{id}", settings.realm_id),
            organization_id: Some(request.organization.to_owned()),
            notification_type: "payment_received".to_owned(),
            priority: Priority::Normal,
            title: crate::connectors::cut_marked(
                &format!("Payment received in QuickBooks: {amount:.2} {currency} from {customer}"),
                500,
            ),
            message: format!(
                "QuickBooks payment {id} of {} recorded on {}",
                customer,
                payment["TxnDate"].as_str().unwrap_or("an unknown date")
            ),
            wedding_context: None,
            contacts: Vec::new(),
            actions: Vec::new(),
            metadata,
            created_at: None,
            booking_id: None,
            tave_job_id: None,
        });
    }
    Ok(InboundAnswer::notifications(notifications))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_base64_hmac_sha256_of_the_body() {
        let signature = intuit_signature("verifier", br#"{"eventNotifications":[]}"#);
        assert_eq!(signature.len(), 44);
        assert_eq!(
            signature,
            intuit_signature("verifier", br#"{"eventNotifications":[]}"#)
        );
        assert_ne!(
            signature,
            intuit_signature("other", br#"{"eventNotifications":[]}"#)
        );
    }
}
