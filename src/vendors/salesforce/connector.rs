//! Salesforce (the seed's `CRMIntegrationConnector`) over the REST API of one org, with a
//! connected app's refresh token (the refresh-token grant at `/services/oauth2/token`, refreshed
//! every half hour and on `INVALID_SESSION_ID`), configured or kept in the vault by an install
//! through Herald ([`Connector::complete_install`]): `syncNotificationToContacts` as one delivery.
//!
//! 1. `GET /query` with `SELECT Id, Email FROM Contact WHERE Email IN (...)`: the contacts the
//!    org already has for the notification's emails.
//! 2. `POST /composite/sobjects` (sObject Collections, up to 200 records, one API call): the
//!    missing contacts created (`LastName` from the contact's name, or the email's local part).
//! 3. When the metadata names `salesforceOpportunityId` and `salesforceStageName`, the
//!    opportunity moves there (`PATCH /sobjects/Opportunity/{id}`: updateDealPipeline), before
//!    any activity is written, so a refused stage stops the sync.
//! 4. `POST /composite/sobjects`: one `Task` per synced contact (createNotificationActivities:
//!    `WhoId` the contact, `WhatId` the opportunity, `ActivityDate` the wedding day).
//! 5. When the metadata names `salesforceFlowApiName`, that autolaunched Flow runs once per
//!    synced contact, its `recordId` input the contact (`POST /actions/custom/flow/{name}`, one
//!    request for all: triggerAutomationWorkflows). Each interview's outcome is reported in the
//!    receipt, not retried: a retry would write the Tasks twice.
//!
//! Every answer's `Sforce-Limit-Info` (`api-usage=used/limit`, the org's rolling 24-hour
//! allocation) becomes the `herald_vendor_quota_*` gauges. Salesforce refuses a spent allocation,
//! and too many concurrent long-running calls, with HTTP 403 `REQUEST_LIMIT_EXCEEDED` (not a 429
//! and without `Retry-After`): both are rate limiting here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::SalesforceSettings;
use crate::connectors::http::{transport_error, OutboundClient};
use crate::connectors::oauth::{InstallGrant, JwtBearerSession, OAuthSession, RefreshToken};
use crate::connectors::{
    first_chars, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::wedsync::{Priority, WeddingNotification};

/// The vault's name for the refresh token of a connected app installed through Herald.
const KEPT_REFRESH_TOKEN: &str = "salesforce_refresh_token";

/// The most records one sObject Collections request takes.
pub const MAX_RECORDS: usize = 200;
/// The longest Task `Subject` Salesforce stores.
const SUBJECT_LENGTH: usize = 255;
/// The longest Task `Description` (a long text area of 32,000 characters).
const DESCRIPTION_LENGTH: usize = 32_000;
/// How long to wait after `REQUEST_LIMIT_EXCEEDED` for concurrent long-running calls: they are
/// calls of 20 seconds or more, and one finishing frees a place.
const CONCURRENCY_WAIT: Duration = Duration::from_secs(2);
/// How long to wait after the org's rolling 24-hour allocation ran out: calls of a day ago age
/// out of it continuously, and Salesforce says no more.
const ALLOCATION_WAIT: Duration = Duration::from_secs(600);

pub struct SalesforceConnector {
    integration_id: String,
    base: Url,
    /// `/services/data/vXX.X`.
    data: String,
    task_status: String,
    session: Credential,
    client: OutboundClient,
    timeout: Duration,
}

/// How Herald gets access tokens for the org.
enum Credential {
    RefreshToken(Box<OAuthSession>),
    Jwt(Box<JwtBearerSession>),
}

impl Credential {
    async fn access_token(
        &self,
        client: &OutboundClient,
        timeout: Duration,
    ) -> Result<String, ConnectorError> {
        match self {
            Credential::RefreshToken(session) => session.access_token(client, timeout).await,
            Credential::Jwt(session) => session.access_token(client, timeout).await,
        }
    }

    fn reload(&self) -> Result<(), ConnectorError> {
        match self {
            Credential::RefreshToken(session) => session.reload(),
            Credential::Jwt(session) => session.reload(),
        }
    }
}

/// A contact of the notification as Salesforce has it after the sync.
struct Synced {
    email: String,
    id: String,
    created: bool,
}

impl SalesforceConnector {
    pub fn new(
        settings: &SalesforceSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = client.check_url(settings.instance_url.trim_end_matches('/'))?;
        let misconfigured = |err: String| ConnectorError::Misconfigured(err);
        let token_url = base
            .join("/services/oauth2/token")
            .map_err(|err| misconfigured(err.to_string()))?;
        let session = match (&settings.oauth, &settings.jwt) {
            (Some(oauth), None) => Credential::RefreshToken(Box::new(OAuthSession::new(
                "Salesforce",
                token_url,
                oauth.client_id.clone(),
                match &oauth.client_secret {
                    Some(secret) => Some(ReloadableSecret::load(secret).map_err(misconfigured)?),
                    None => None,
                },
                RefreshToken::configured_or_kept(
                    oauth.refresh_token.as_ref(),
                    oauth.redirect_uri.as_ref(),
                    vault,
                    integration_id,
                    KEPT_REFRESH_TOKEN,
                )?,
            ))),
            (None, Some(jwt)) => {
                let mut claims = serde_json::Map::new();
                claims.insert("iss".into(), json!(jwt.client_id));
                claims.insert("sub".into(), json!(jwt.username));
                claims.insert("aud".into(), json!(jwt.audience.trim_end_matches('/')));
                Credential::Jwt(Box::new(JwtBearerSession::new(
                    "Salesforce",
                    token_url,
                    claims,
                    ReloadableSecret::load(&jwt.private_key).map_err(misconfigured)?,
                )?))
            }
            _ => return Err(misconfigured("set either oauth or jwt, not both".into())),
        };
        Ok(Self {
            integration_id: integration_id.to_owned(),
            base,
            data: format!("/services/data/{}", settings.api_version),
            task_status: settings.task_status.clone(),
            session,
            client,
            timeout,
        })
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let emails = notification.contact_emails(MAX_RECORDS);
        if emails.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "no_contacts".into(),
                message: "the notification names no contact with an email, so there is nothing to sync in Salesforce".into(),
            });
        }
        let opportunity = opportunity_move(notification)?;
        let flow = flow_name(notification)?;
        let (synced, failed) = self.sync_contacts(notification, &emails).await?;
        if synced.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "contacts_refused".into(),
                message: format!(
                    "Salesforce created none of the contacts: {}",
                    failed
                        .iter()
                        .map(|f| f["error"].as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        let stage = match &opportunity {
            Some((id, stage)) => {
                self.request(
                    Method::PATCH,
                    &format!("{}/sobjects/Opportunity/{id}", self.data),
                    Some(&json!({"StageName": stage})),
                )
                .await?;
                Some(json!({"opportunityId": id, "stageName": stage}))
            }
            None => None,
        };
        let what_id = opportunity.as_ref().map(|(id, _)| id.as_str());
        let tasks: Vec<Value> = synced
            .iter()
            .map(|contact| self.task(notification, &contact.id, what_id))
            .collect();
        let saved = self.create_records(&tasks).await?;
        let mut task_ids = Vec::new();
        let mut task_errors = Vec::new();
        for (contact, result) in synced.iter().zip(&saved) {
            match result {
                Ok(id) => task_ids.push(id.clone()),
                Err(error) => task_errors.push(json!({"contactId": contact.id, "error": error})),
            }
        }
        if task_ids.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "tasks_refused".into(),
                message: format!(
                    "Salesforce created no Task: {}",
                    task_errors
                        .iter()
                        .map(|e| e["error"].as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        let flow = match flow {
            Some(name) => Some(self.run_flow(&name, &synced).await),
            None => None,
        };
        let contact_ids: Vec<&str> = synced.iter().map(|c| c.id.as_str()).collect();
        Ok(Receipt {
            id: format!(
                "contacts {}; tasks {}",
                contact_ids.join(","),
                task_ids.join(",")
            ),
            details: Some(json!({
                "totalContacts": emails.len(),
                "successfulSyncs": synced.len(),
                "failedSyncs": failed.len(),
                "contacts": synced.iter().map(|c| json!({"email": c.email, "id": c.id, "created": c.created})).collect::<Vec<_>>(),
                "contactErrors": failed,
                "taskIds": task_ids,
                "taskErrors": task_errors,
                "opportunityStage": stage,
                "flowInterviews": flow,
            })),
        })
    }

    /// The contacts the org has for `emails`, the missing ones created; and those it refused,
    /// each with Salesforce's reason.
    async fn sync_contacts(
        &self,
        notification: &WeddingNotification,
        emails: &[String],
    ) -> Result<(Vec<Synced>, Vec<Value>), ConnectorError> {
        let listed = emails
            .iter()
            .map(|email| format!("'{}'", soql_literal(email)))
            .collect::<Vec<_>>()
            .join(", ");
        let query = format!("SELECT Id, Email FROM Contact WHERE Email IN ({listed})");
        let mut url = self.url(&format!("{}/query", self.data))?;
        url.query_pairs_mut().append_pair("q", &query);
        let (_, answer) = self.send(Method::GET, url, None).await?;
        let mut known: HashMap<String, String> = HashMap::new();
        for record in answer["records"].as_array().into_iter().flatten() {
            if let (Some(id), Some(email)) = (record["Id"].as_str(), record["Email"].as_str()) {
                known
                    .entry(email.to_lowercase())
                    .or_insert_with(|| id.to_owned());
            }
        }
        let missing: Vec<&String> = emails.iter().filter(|e| !known.contains_key(*e)).collect();
        let mut created: HashMap<&str, Result<String, String>> = HashMap::new();
        if !missing.is_empty() {
            let records: Vec<Value> = missing
                .iter()
                .map(|email| new_contact(notification, email))
                .collect();
            let saved = self.create_records(&records).await?;
            for (email, result) in missing.iter().zip(saved) {
                created.insert(email.as_str(), result);
            }
        }
        let mut synced = Vec::new();
        let mut failed = Vec::new();
        for email in emails {
            match (known.get(email), created.remove(email.as_str())) {
                (Some(id), _) => synced.push(Synced {
                    email: email.clone(),
                    id: id.clone(),
                    created: false,
                }),
                (None, Some(Ok(id))) => synced.push(Synced {
                    email: email.clone(),
                    id,
                    created: true,
                }),
                (None, Some(Err(error))) => failed.push(json!({"email": email, "error": error})),
                (None, None) => failed
                    .push(json!({"email": email, "error": "Salesforce answered nothing for it"})),
            }
        }
        Ok((synced, failed))
    }

    /// The Task a notification becomes for one contact.
    fn task(&self, notification: &WeddingNotification, who: &str, what: Option<&str>) -> Value {
        let mut task = json!({
            "attributes": {"type": "Task"},
            "Subject": first_chars(&notification.title, SUBJECT_LENGTH),
            "Description": first_chars(&notification.message, DESCRIPTION_LENGTH),
            "WhoId": who,
            "Status": self.task_status,
            "Priority": match notification.priority {
                Priority::Emergency | Priority::High => "High",
                Priority::Normal => "Normal",
                Priority::Low => "Low",
            },
        });
        if let Some(context) = &notification.wedding_context {
            task["ActivityDate"] = json!(context.wedding_date);
        }
        if let Some(what) = what {
            task["WhatId"] = json!(what);
        }
        task
    }

    /// Creates `records` with one sObject Collections request (`allOrNone: false`): each
    /// record's new id, or Salesforce's reason for refusing it, in order.
    async fn create_records(
        &self,
        records: &[Value],
    ) -> Result<Vec<Result<String, String>>, ConnectorError> {
        let (_, answer) = self
            .request(
                Method::POST,
                &format!("{}/composite/sobjects", self.data),
                Some(&json!({"allOrNone": false, "records": records})),
            )
            .await?;
        let results = answer.as_array().cloned().unwrap_or_default();
        if results.len() != records.len() {
            return Err(ConnectorError::Unavailable(format!(
                "Salesforce answered {} results for {} records",
                results.len(),
                records.len()
            )));
        }
        Ok(results
            .iter()
            .map(
                |result| match (result["success"].as_bool(), result["id"].as_str()) {
                    (Some(true), Some(id)) => Ok(id.to_owned()),
                    _ => Err(result["errors"]
                        .as_array()
                        .and_then(|errors| errors.first())
                        .map(|error| {
                            format!(
                                "{}: {}",
                                error["statusCode"].as_str().unwrap_or("ERROR"),
                                error["message"].as_str().unwrap_or("refused")
                            )
                        })
                        .unwrap_or_else(|| "Salesforce saved the record without an id".into())),
                },
            )
            .collect())
    }

    /// Runs the autolaunched Flow `name` once per contact (`recordId`), in one request: each
    /// interview's status, or why it failed (a refused request is reported for the whole run).
    async fn run_flow(&self, name: &str, contacts: &[Synced]) -> Value {
        let inputs: Vec<Value> = contacts
            .iter()
            .map(|contact| json!({"recordId": contact.id}))
            .collect();
        let answer = self
            .request(
                Method::POST,
                &format!("{}/actions/custom/flow/{name}", self.data),
                Some(&json!({"inputs": inputs})),
            )
            .await;
        let results = match answer {
            Ok((_, Value::Array(results))) if results.len() == contacts.len() => results,
            Ok((_, other)) => {
                return json!({"flow": name, "status": "failed", "error": format!("Salesforce answered {other} for {} inputs", contacts.len())})
            }
            Err(error) => {
                return json!({"flow": name, "status": "failed", "error": error.to_string()})
            }
        };
        let interviews: Vec<Value> = contacts
            .iter()
            .zip(&results)
            .map(|(contact, result)| {
                if result["isSuccess"].as_bool() == Some(true) {
                    json!({"contactId": contact.id, "status": result["outputValues"]["Flow__InterviewStatus"]})
                } else {
                    let error = &result["errors"][0];
                    json!({"contactId": contact.id, "status": "failed", "error": format!(
                        "{}: {}",
                        error["statusCode"].as_str().unwrap_or("ERROR"),
                        error["message"].as_str().unwrap_or("refused")
                    )})
                }
            })
            .collect();
        json!({"flow": name, "interviews": interviews})
    }

    /// The org's daily allocation, as the seed's establishConnection: `GET /limits`.
    async fn establish_connection(&self) -> Result<Value, ConnectorError> {
        let (_, limits) = self
            .request(Method::GET, &format!("{}/limits", self.data), None)
            .await?;
        Ok(json!({
            "instanceUrl": self.base.as_str().trim_end_matches('/'),
            "apiVersion": self.data.trim_start_matches("/services/data/"),
            "dailyApiRequests": {
                "max": limits["DailyApiRequests"]["Max"],
                "remaining": limits["DailyApiRequests"]["Remaining"],
            },
        }))
    }

    fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        self.base
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), ConnectorError> {
        let url = self.url(path)?;
        self.send(method, url, body).await
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), ConnectorError> {
        let token = self
            .session
            .access_token(&self.client, self.timeout)
            .await?;
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout)
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        self.report_allocation(response.headers());
        let text = response.text().await.map_err(transport_error)?;
        if status.is_success() {
            return match serde_json::from_str(&text) {
                Ok(answer) => Ok((status, answer)),
                // 204 No Content: an update.
                Err(_) if text.is_empty() => Ok((status, Value::Null)),
                Err(_) => Err(ConnectorError::Unavailable(format!(
                    "Salesforce answered {status} without JSON"
                ))),
            };
        }
        Err(classify(status, &text))
    }

    /// `Sforce-Limit-Info: api-usage=18/15000` as the `herald_vendor_quota_*` gauges.
    fn report_allocation(&self, headers: &reqwest::header::HeaderMap) {
        let Some((used, limit)) = headers
            .get("sforce-limit-info")
            .and_then(|value| value.to_str().ok())
            .and_then(api_usage)
        else {
            return;
        };
        let labels = [
            ("integration", self.integration_id.clone()),
            ("window", "rolling_24h".to_owned()),
        ];
        metrics::gauge!("herald_vendor_quota_limit", &labels).set(limit);
        metrics::gauge!("herald_vendor_quota_remaining", &labels).set((limit - used).max(0.0));
    }
}

impl Connector for SalesforceConnector {
    fn vendor(&self) -> &'static str {
        "salesforce"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The query, the create (made only when a contact is missing, charged always), the Tasks,
    /// the opportunity's move and the Flow when asked. Token grants are not API calls and are
    /// not charged.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        3 + u32::from(matches!(opportunity_move(notification), Ok(Some(_))))
            + u32::from(matches!(flow_name(notification), Ok(Some(_))))
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Salesforce")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.establish_connection())
    }

    fn complete_install<'a>(&'a self, grant: &'a InstallGrant) -> CheckFuture<'a> {
        Box::pin(async move {
            let Credential::RefreshToken(session) = &self.session else {
                return Err(ConnectorError::Rejected {
                    code: "not_installable".into(),
                    message: "this integration uses the JWT bearer flow: nothing to install".into(),
                });
            };
            session
                .complete_install(&self.client, self.timeout, grant)
                .await?;
            Ok(json!({"installed": true}))
        })
    }

    /// Salesforce refused the access token (`INVALID_SESSION_ID`): forget it, so the retry
    /// refreshes first, with the app secret and refresh token read again.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.session.reload()
    }
}

/// A refused request, classified from Salesforce's error body, `[{message, errorCode, fields}]`.
fn classify(status: reqwest::StatusCode, text: &str) -> ConnectorError {
    let errors: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let first = errors.as_array().and_then(|errors| errors.first());
    let code = first
        .and_then(|error| error["errorCode"].as_str())
        .unwrap_or("")
        .to_owned();
    let message = first
        .and_then(|error| error["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Salesforce answered {status}"));
    match (status.as_u16(), code.as_str()) {
        (401, _) => ConnectorError::Unauthorized(format!("{code}: {message}")),
        (403, "REQUEST_LIMIT_EXCEEDED") => ConnectorError::RateLimited {
            retry_after: Some(if message.starts_with("ConcurrentRequests") {
                CONCURRENCY_WAIT
            } else {
                ALLOCATION_WAIT
            }),
        },
        (status, _) if status >= 500 => ConnectorError::Unavailable(format!("{code}: {message}")),
        _ => ConnectorError::Rejected {
            code: if code.is_empty() {
                status.to_string()
            } else {
                code
            },
            message,
        },
    }
}

/// `used/limit` from `api-usage=used/limit` (the header may carry other entries).
fn api_usage(header: &str) -> Option<(f64, f64)> {
    header.split(',').find_map(|entry| {
        let usage = entry.trim().strip_prefix("api-usage=")?;
        let (used, limit) = usage.split_once('/')?;
        Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
    })
}

/// A string as a SOQL literal's inside: backslashes and single quotes escaped.
pub fn soql_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The opportunity to move and where, when the metadata names both; an id that cannot be an
/// opportunity's (15 or 18 letters and digits starting `006`) is refused, naming the field.
fn opportunity_move(
    notification: &WeddingNotification,
) -> Result<Option<(String, String)>, ConnectorError> {
    let metadata = &notification.metadata;
    let (Some(id), Some(stage)) = (
        metadata.get("salesforceOpportunityId"),
        metadata.get("salesforceStageName"),
    ) else {
        return Ok(None);
    };
    let refuse = |message: &str| ConnectorError::Rejected {
        code: "invalid_metadata".into(),
        message: message.to_owned(),
    };
    let id = id
        .as_str()
        .filter(|id| {
            (id.len() == 15 || id.len() == 18)
                && id.starts_with("006")
                && id.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .ok_or_else(|| refuse("metadata.salesforceOpportunityId is not an Opportunity id (15 or 18 letters and digits starting 006)"))?;
    let stage = stage
        .as_str()
        .filter(|stage| !stage.trim().is_empty())
        .ok_or_else(|| refuse("metadata.salesforceStageName must be a stage's name"))?;
    Ok(Some((id.to_owned(), stage.to_owned())))
}

/// The autolaunched Flow the metadata names (`salesforceFlowApiName`): an API name (letters,
/// digits and single underscores, starting with a letter), since it goes into the path.
fn flow_name(notification: &WeddingNotification) -> Result<Option<String>, ConnectorError> {
    let Some(name) = notification.metadata.get("salesforceFlowApiName") else {
        return Ok(None);
    };
    name.as_str()
        .filter(|name| {
            name.len() <= 80
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.contains("__")
                && !name.ends_with('_')
        })
        .map(|name| Some(name.to_owned()))
        .ok_or_else(|| ConnectorError::Rejected {
            code: "invalid_metadata".into(),
            message: "metadata.salesforceFlowApiName is not a Flow's API name (letters, digits and single underscores, starting with a letter)".into(),
        })
}

/// A new Contact for `email`: its name from the notification's contact (the last word as
/// `LastName`, which Salesforce requires), or the email's local part.
fn new_contact(notification: &WeddingNotification, email: &str) -> Value {
    let name = notification.contact_name(email);
    let (first, last) = match name.as_deref().map(|name| name.rsplit_once(' ')) {
        Some(Some((first, last))) => (Some(first.trim()), last.to_owned()),
        Some(None) => (None, name.clone().unwrap_or_default()),
        None => (None, email.split('@').next().unwrap_or(email).to_owned()),
    };
    let mut contact = json!({
        "attributes": {"type": "Contact"},
        "LastName": first_chars(&last, 80),
        "Email": email,
    });
    if let Some(first) = first.filter(|first| !first.is_empty()) {
        contact["FirstName"] = json!(first_chars(first, 40));
    }
    contact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soql_literal_cannot_close_its_quotes() {
        assert_eq!(soql_literal("o'brien@example.com"), "o\\'brien@example.com");
        assert_eq!(soql_literal("a\\'b"), "a\\\\\\'b");
    }

    #[test]
    fn the_allocation_is_read_from_sforce_limit_info() {
        assert_eq!(api_usage("api-usage=18/15000"), Some((18.0, 15000.0)));
        assert_eq!(
            api_usage("per-app-api-usage=2/250(appName=x), api-usage=7/100"),
            Some((7.0, 100.0))
        );
        assert_eq!(api_usage("api-usage=lots"), None);
    }

    #[test]
    fn request_limit_exceeded_is_rate_limiting_whatever_its_status() {
        let concurrent = r#"[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert!(matches!(
            classify(reqwest::StatusCode::FORBIDDEN, concurrent),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == CONCURRENCY_WAIT
        ));
        let spent =
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert!(matches!(
            classify(reqwest::StatusCode::FORBIDDEN, spent),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == ALLOCATION_WAIT
        ));
        let expired =
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        assert!(matches!(
            classify(reqwest::StatusCode::UNAUTHORIZED, expired),
            ConnectorError::Unauthorized(_)
        ));
        let denied = r#"[{"message":"insufficient access rights on object id","errorCode":"INSUFFICIENT_ACCESS_OR_READONLY"}]"#;
        assert!(matches!(
            classify(reqwest::StatusCode::FORBIDDEN, denied),
            ConnectorError::Rejected { code, .. } if code == "INSUFFICIENT_ACCESS_OR_READONLY"
        ));
    }
}
