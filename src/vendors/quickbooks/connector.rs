//! QuickBooks Online (the seed's payment processor and books) through the Accounting API
//! (`{api}/v3/company/{realmId}/...?minorversion=75`, an OAuth 2 bearer token; errors
//! `{Fault: {Error: [{Message, Detail, code, element}], type}}`): the couple as a customer,
//! and what WedSync says to record.
//!
//! - The customer is found by the notification's first contact with an email (a query on
//!   `PrimaryEmailAddr`), else created (`DisplayName` "<name> (<email>)", unique as QuickBooks
//!   requires).
//! - `metadata.quickbooksInvoice {amount, description}` writes an invoice (one line of the
//!   configured item); `metadata.quickbooksPayment {amount}` records a payment; anything else is
//!   a memo: the notification added at the top of the customer's `Notes` (a sparse update with
//!   its `SyncToken`), inside QuickBooks' 2,000 characters.
//! - Every write carries a `requestid` of the delivery and step, QuickBooks' idempotency key: a
//!   retry after a lost answer is not a second invoice or payment.
//! - 429 waits (Herald's backoff), 401 refreshes the token (Intuit rotates refresh tokens; the
//!   OAuth session keeps the new one), 5xx are retried.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::QuickBooksSettings;
use crate::connectors::http::{retry_after, send_json, OutboundClient};
use crate::connectors::oauth::{ClientAuthentication, InstallGrant, OAuthSession, RefreshToken};
use crate::connectors::{
    cut_marked, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::wedsync::WeddingNotification;

/// Where an install through Herald keeps the company's refresh token.
const KEPT_REFRESH_TOKEN: &str = "quickbooks_refresh_token";
const MINOR_VERSION: &str = "75";
/// QuickBooks' longest customer `Notes`.
const NOTES_CHARS: usize = 2000;

pub struct QuickBooksConnector {
    session: OAuthSession,
    /// `{api}/v3/company/{realmId}`.
    company: Url,
    invoice_item_id: Option<String>,
    installation_id: Arc<str>,
    client: OutboundClient,
    timeout: Duration,
}

/// What WedSync asked QuickBooks to record.
#[derive(Debug, PartialEq)]
enum Record {
    Invoice { amount: f64, description: String },
    Payment { amount: f64 },
    Memo,
}

/// The record a notification asks for, from its metadata; a malformed request is refused
/// naming the field.
fn record_of(notification: &WeddingNotification) -> Result<Record, ConnectorError> {
    let amount = |key: &str| -> Result<f64, ConnectorError> {
        notification.metadata[key]["amount"]
            .as_f64()
            .filter(|amount| amount.is_finite() && *amount > 0.0 && *amount < 1e12)
            .ok_or_else(|| ConnectorError::Rejected {
                code: "invalid_amount".into(),
                message: format!(
                    "metadata.{key}.amount must be a positive number (the currency's major unit)"
                ),
            })
    };
    if notification.metadata.contains_key("quickbooksInvoice") {
        return Ok(Record::Invoice {
            amount: amount("quickbooksInvoice")?,
            description: notification.metadata["quickbooksInvoice"]["description"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| notification.title.clone()),
        });
    }
    if notification.metadata.contains_key("quickbooksPayment") {
        return Ok(Record::Payment {
            amount: amount("quickbooksPayment")?,
        });
    }
    Ok(Record::Memo)
}

impl QuickBooksConnector {
    pub fn new(
        settings: &QuickBooksSettings,
        integration_id: &str,
        installation_id: Arc<str>,
        client: OutboundClient,
        vault: Option<Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let oauth = &settings.oauth;
        let session = OAuthSession::new(
            "QuickBooks",
            client.check_url(&oauth.token_url)?,
            oauth.client_id.clone(),
            Some(
                ReloadableSecret::load(&oauth.client_secret)
                    .map_err(ConnectorError::Misconfigured)?,
            ),
            RefreshToken::configured_or_kept(
                oauth.refresh_token.as_ref(),
                oauth.redirect_uri.as_ref(),
                vault,
                integration_id,
                KEPT_REFRESH_TOKEN,
            )?,
        )
        .with_client_authentication(ClientAuthentication::HttpBasic);
        let mut company = client.check_url(settings.api_url.trim_end_matches('/'))?;
        company
            .path_segments_mut()
            .map_err(|()| ConnectorError::Misconfigured("api_url cannot take a path".into()))?
            .extend(["v3", "company", settings.realm_id.as_str()]);
        Ok(Self {
            session,
            company,
            invoice_item_id: settings.invoice_item_id.clone(),
            installation_id,
            client,
            timeout,
        })
    }

    fn url(&self, rest: &[&str]) -> Result<Url, ConnectorError> {
        let mut url = self.company.clone();
        url.path_segments_mut()
            .map_err(|()| ConnectorError::Misconfigured("api_url cannot take a path".into()))?
            .extend(rest);
        url.query_pairs_mut()
            .append_pair("minorversion", MINOR_VERSION);
        Ok(url)
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let record = record_of(notification)?;
        if matches!(record, Record::Invoice { .. }) && self.invoice_item_id.is_none() {
            return Err(ConnectorError::Misconfigured(
                "an invoice needs settings.invoice_item_id (the product or service it is for)"
                    .into(),
            ));
        }
        let contact = notification.first_contact_with_email().ok_or_else(|| {
            ConnectorError::Rejected {
                code: "no_contact".into(),
                message: "a QuickBooks customer is found by email: the notification has no contact with one".into(),
            }
        })?;
        let email = contact.email.clone().unwrap_or_default();
        let mut query = self.url(&["query"])?;
        query.query_pairs_mut().append_pair(
            "query",
            &format!(
                "select * from Customer where PrimaryEmailAddr = '{}'",
                email.replace('\\', "\\\\").replace('\'', "\\'")
            ),
        );
        let found = self.call(Method::GET, query, None).await?;
        let (customer, created) = match found["QueryResponse"]["Customer"][0].clone() {
            Value::Null => {
                let name = contact.name.clone().unwrap_or_else(|| email.clone());
                let body = json!({
                    "DisplayName": cut_marked(&format!("{name} ({email})"), 500),
                    "PrimaryEmailAddr": {"Address": email},
                });
                let created = self
                    .write(&["customer"], &body, delivery, "customer")
                    .await?;
                (created["Customer"].clone(), true)
            }
            existing => (existing, false),
        };
        let id = customer["Id"].as_str().unwrap_or_default().to_owned();
        if id.is_empty() {
            return Err(ConnectorError::Unavailable(
                "QuickBooks answered without the customer's Id".into(),
            ));
        }
        let reference = json!({"value": id});
        let (kind, written) = match record {
            Record::Invoice {
                amount,
                description,
            } => {
                let body = json!({
                    "CustomerRef": reference,
                    "Line": [{
                        "Amount": amount,
                        "Description": cut_marked(&description, 4000),
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": self.invoice_item_id}},
                    }],
                    "PrivateNote": cut_marked(&notification.title, 4000),
                });
                let written = self.write(&["invoice"], &body, delivery, "invoice").await?;
                ("invoice", written["Invoice"]["Id"].clone())
            }
            Record::Payment { amount } => {
                let body = json!({
                    "CustomerRef": reference,
                    "TotalAmt": amount,
                    "PrivateNote": cut_marked(&notification.title, 4000),
                });
                let written = self.write(&["payment"], &body, delivery, "payment").await?;
                ("payment", written["Payment"]["Id"].clone())
            }
            Record::Memo => {
                let line = format!("{}: {}", notification.title, notification.message);
                let notes = match customer["Notes"].as_str().filter(|notes| !notes.is_empty()) {
                    Some(earlier) => format!("{line}\n{earlier}"),
                    None => line,
                };
                let body = json!({
                    "Id": id,
                    "SyncToken": customer["SyncToken"],
                    "sparse": true,
                    "Notes": crate::connectors::first_chars(&notes, NOTES_CHARS),
                });
                self.write(&["customer"], &body, delivery, "memo").await?;
                ("memo", Value::Null)
            }
        };
        Ok(Receipt {
            id: format!("customer {id}; {kind}"),
            details: Some(json!({
                "customerId": id,
                "customerCreated": created,
                "recorded": kind,
                "recordId": written,
            })),
        })
    }

    async fn write(
        &self,
        resource: &[&str],
        body: &Value,
        delivery: &Delivery,
        step: &str,
    ) -> Result<Value, ConnectorError> {
        let mut url = self.url(resource)?;
        url.query_pairs_mut().append_pair(
            "requestid",
            &format!(
                "herald-{}-{}-{step}",
                &self.installation_id[..self.installation_id.len().min(16)],
                delivery.delivery_id
            ),
        );
        self.call(Method::POST, url, Some(body)).await
    }

    /// A payment of the company, read for a webhook that names only its id.
    pub async fn payment(&self, id: &str) -> Result<Value, ConnectorError> {
        let answer = self
            .call(Method::GET, self.url(&["payment", id])?, None)
            .await?;
        Ok(answer["Payment"].clone())
    }

    /// The seed's establishConnection: the company the token opens.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let realm = self
            .company
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .unwrap_or_default()
            .to_owned();
        let info = self
            .call(Method::GET, self.url(&["companyinfo", &realm])?, None)
            .await?;
        Ok(json!({
            "realmId": realm,
            "companyName": info["CompanyInfo"]["CompanyName"],
            "country": info["CompanyInfo"]["Country"],
        }))
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let token = self
            .session
            .access_token(&self.client, self.timeout)
            .await?;
        let request = self
            .client
            .client()
            .request(method, url)
            .bearer_auth(token)
            .header("accept", "application/json")
            .timeout(self.timeout);
        send_json(request, body).await?.map_err(|refusal| {
            if refusal.status == reqwest::StatusCode::UNAUTHORIZED {
                self.session.forget_access_token();
            }
            classify(refusal.status, &refusal.headers, &refusal.body)
        })
    }
}

impl Connector for QuickBooksConnector {
    fn vendor(&self) -> &'static str {
        "quickbooks"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The query, the customer's creation (charged always) and the record; token grants are not
    /// API requests.
    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        3
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("QuickBooks")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    fn complete_install<'a>(&'a self, grant: &'a InstallGrant) -> CheckFuture<'a> {
        Box::pin(async move {
            self.session
                .complete_install(&self.client, self.timeout, grant)
                .await?;
            Ok(json!({"installed": true}))
        })
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.session.reload()
    }
}

/// A refusal, classified from `{Fault: {Error: [{Message, Detail, code}], type}}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let error = &answer["Fault"]["Error"][0];
    let message = match (error["Message"].as_str(), error["Detail"].as_str()) {
        (Some(message), Some(detail)) => format!("{message}: {detail}"),
        (Some(message), None) => message.to_owned(),
        _ => format!("QuickBooks answered {status}"),
    };
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        code => ConnectorError::Rejected {
            code: error["code"]
                .as_str()
                .map_or_else(|| code.to_string(), str::to_owned),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(metadata: Value) -> WeddingNotification {
        serde_json::from_value(json!({
            "notificationId": "n", "type": "payment_received", "priority": "normal",
            "title": "Deposit", "message": "Paid", "metadata": metadata
        }))
        .unwrap()
    }

    #[test]
    fn what_wedsync_asks_to_record_is_read_from_the_metadata() {
        assert_eq!(
            record_of(&notification(
                json!({"quickbooksInvoice": {"amount": 1250.5, "description": "Balance"}})
            ))
            .unwrap(),
            Record::Invoice {
                amount: 1250.5,
                description: "Balance".into()
            }
        );
        assert_eq!(
            record_of(&notification(json!({"quickbooksPayment": {"amount": 500}}))).unwrap(),
            Record::Payment { amount: 500.0 }
        );
        assert_eq!(record_of(&notification(json!({}))).unwrap(), Record::Memo);
        assert!(matches!(
            record_of(&notification(json!({"quickbooksPayment": {"amount": -5}}))),
            Err(ConnectorError::Rejected { message, .. }) if message.starts_with("metadata.quickbooksPayment.amount")
        ));
    }

    #[test]
    fn quickbooks_errors_are_classified() {
        use reqwest::header::HeaderMap;
        use reqwest::StatusCode;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &json!({"Fault": {"Error": [{"Message": "Duplicate Name Exists Error", "Detail": "The name supplied already exists.", "code": "6240"}], "type": "ValidationFault"}})),
            ConnectorError::Rejected { code, message } if code == "6240" && message.starts_with("Duplicate Name")
        ));
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &HeaderMap::new(),
                &Value::Null
            ),
            ConnectorError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(
                StatusCode::UNAUTHORIZED,
                &HeaderMap::new(),
                &json!({"Fault": {"Error": [{"Message": "message=AuthenticationFailed", "code": "3200"}], "type": "AUTHENTICATION"}})
            ),
            ConnectorError::Unauthorized(_)
        ));
    }
}
