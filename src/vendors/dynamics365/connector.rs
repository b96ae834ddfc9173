//! Dynamics 365 (the seed's `CRMIntegrationConnector`) over the Dataverse Web API v9.2, with an
//! Entra ID app's client-credentials token for the environment: `syncNotificationToContacts` as
//! one delivery.
//!
//! 1. `GET contacts?$filter=emailaddress1 eq '...' or ...` once for every contact's email, and
//!    `POST contacts` (`Prefer: return=representation`) for each one missing.
//! 2. When the metadata names `dynamicsOpportunityId`: `PATCH opportunities(id)` with its
//!    `salesstage` (with `If-Match: *`, so a wrong id is refused instead of creating an
//!    opportunity), then the `WinOpportunity` or `LoseOpportunity` action when it says so; a
//!    refusal stops the sync before anything is written about it (updateDealPipeline).
//! 3. `POST tasks` for each contact, regarding that contact, due on the wedding day
//!    (createNotificationActivities), and `POST annotations` (a note) on the opportunity or the
//!    first contact. Once a task is written, later refusals are reported, not retried: a retry
//!    would repeat the tasks already written.
//! 4. With `workflow_id`, the `ExecuteWorkflow` action for each contact
//!    (triggerAutomationWorkflows), its refusals reported.
//!
//! Every answer's `x-ms-ratelimit-burst-remaining-xrm-requests` (what is left of the
//! service-protection window) is the `herald_vendor_quota_remaining{window="5m"}` gauge; a 429
//! waits its `Retry-After`.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::Dynamics365Settings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::oauth::ClientCredentialsSession;
use crate::connectors::{
    first_chars, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Priority, WeddingNotification};

/// The most contacts of one notification synced: each is a create (when missing), a task and a
/// workflow run, one request each.
pub const MAX_CONTACTS: usize = 20;
/// The longest task subject Dataverse keeps.
const SUBJECT_LENGTH: usize = 200;
/// The longest task description Dataverse keeps.
const DESCRIPTION_LENGTH: usize = 2000;
/// How long a 429 without `Retry-After` waits (Dataverse always sends one).
const UNSAID_WAIT: Duration = Duration::from_secs(5);

pub struct Dynamics365Connector {
    integration_id: String,
    /// `{environment_url}/api/data/v9.2/`.
    api: Url,
    session: ClientCredentialsSession,
    workflow_id: Option<String>,
    client: OutboundClient,
    timeout: Duration,
}

/// A contact of the notification as Dataverse has it after the sync.
struct Synced {
    email: String,
    id: String,
    created: bool,
}

/// The opportunity the metadata names and what happens to it.
struct OpportunityMove {
    id: String,
    /// `salesstage`: 0 qualify, 1 develop, 2 propose, 3 close.
    sales_stage: Option<u8>,
    /// `WinOpportunity` or `LoseOpportunity`.
    outcome: Option<&'static str>,
}

impl Dynamics365Connector {
    pub fn new(
        settings: &Dynamics365Settings,
        integration_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let environment = settings.environment_url.trim_end_matches('/');
        let api = client.check_url(&format!("{environment}/api/data/v9.2/"))?;
        let token_url = client.check_url(&format!(
            "{}/{}/oauth2/v2.0/token",
            settings.authority.trim_end_matches('/'),
            settings.tenant_id
        ))?;
        let session = ClientCredentialsSession::new(
            "Dynamics 365",
            token_url,
            settings.client_id.clone(),
            ReloadableSecret::load(&settings.client_secret)
                .map_err(ConnectorError::Misconfigured)?,
            format!("{environment}/.default"),
        );
        Ok(Self {
            integration_id: integration_id.to_owned(),
            api,
            session,
            workflow_id: settings.workflow_id.clone(),
            client,
            timeout,
        })
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let emails = notification.contact_emails(MAX_CONTACTS);
        if emails.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "no_contacts".into(),
                message: "the notification names no contact with an email, so there is nothing to sync in Dynamics 365".into(),
            });
        }
        let opportunity = opportunity_move(notification)?;
        let found = self.find_contacts(&emails).await?;
        let mut synced = Vec::new();
        let mut contact_errors = Vec::new();
        for email in &emails {
            if let Some((_, id)) = found.iter().find(|(known, _)| known == email) {
                synced.push(Synced {
                    email: email.clone(),
                    id: id.clone(),
                    created: false,
                });
                continue;
            }
            match self.create(notification, email).await {
                Ok(id) => synced.push(Synced {
                    email: email.clone(),
                    id,
                    created: true,
                }),
                Err(ConnectorError::Rejected { code, message }) => contact_errors
                    .push(json!({"email": email, "error": format!("{code}: {message}")})),
                Err(other) => return Err(other),
            }
        }
        if synced.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "contacts_refused".into(),
                message: format!(
                    "Dynamics 365 took none of the contacts: {}",
                    contact_errors
                        .iter()
                        .map(|e| e["error"].as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        if let Some(opportunity) = &opportunity {
            self.move_opportunity(notification, opportunity).await?;
        }
        let mut tasks = Vec::new();
        let mut task_errors = Vec::new();
        for contact in &synced {
            let task = task(notification, &contact.id);
            match self.insert("tasks", "activityid", &task).await {
                Ok(id) => tasks.push(json!({"contactId": contact.id, "taskId": id})),
                // Nothing written yet: the whole delivery is retried or refused.
                Err(error) if tasks.is_empty() => return Err(error),
                Err(error) => {
                    task_errors.push(json!({"email": contact.email, "error": error.to_string()}))
                }
            }
        }
        let (bind, parent) = match &opportunity {
            Some(opportunity) => (
                "objectid_opportunity@odata.bind",
                format!("/opportunities({})", opportunity.id),
            ),
            None => (
                "objectid_contact@odata.bind",
                format!("/contacts({})", synced[0].id),
            ),
        };
        let mut annotation = json!({
            "subject": first_chars(&notification.title, 500),
            "notetext": note_text(notification),
        });
        annotation[bind] = json!(parent);
        let note = match self
            .insert("annotations", "annotationid", &annotation)
            .await
        {
            Ok(id) => json!({"id": id, "status": "added"}),
            Err(error) => json!({"status": "failed", "error": error.to_string()}),
        };
        let workflow_runs = match &self.workflow_id {
            Some(workflow) => Some(self.run_workflow(workflow, &synced).await),
            None => None,
        };
        Ok(Receipt {
            id: format!(
                "contacts {}; tasks {}",
                synced
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                tasks
                    .iter()
                    .filter_map(|t| t["taskId"].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            details: Some(json!({
                "totalContacts": emails.len(),
                "successfulSyncs": synced.len(),
                "failedSyncs": contact_errors.len(),
                "contacts": synced.iter().map(|c| json!({"email": c.email, "id": c.id, "created": c.created})).collect::<Vec<_>>(),
                "contactErrors": contact_errors,
                "tasks": tasks,
                "taskErrors": task_errors,
                "note": note,
                "opportunity": opportunity.as_ref().map(|o| json!({
                    "opportunityId": o.id,
                    "salesStage": o.sales_stage,
                    "outcome": o.outcome,
                })),
                "workflowRuns": workflow_runs,
            })),
        })
    }

    /// The contacts Dataverse has for `emails` (lowercase email, id), by their primary email:
    /// one query OR-ing them.
    async fn find_contacts(
        &self,
        emails: &[String],
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        let filter = emails
            .iter()
            .map(|email| format!("emailaddress1 eq '{}'", email.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" or ");
        let answer = self
            .send(
                Method::GET,
                "contacts",
                &[("$select", "contactid,emailaddress1"), ("$filter", &filter)],
                None,
            )
            .await?;
        let mut found: Vec<(String, String)> = Vec::new();
        for contact in answer["value"].as_array().into_iter().flatten() {
            if let (Some(email), Some(id)) = (
                contact["emailaddress1"].as_str(),
                contact["contactid"].as_str(),
            ) {
                let email = email.trim().to_lowercase();
                if !found.iter().any(|(known, _)| *known == email) {
                    found.push((email, id.to_owned()));
                }
            }
        }
        Ok(found)
    }

    /// A new contact for `email`, named as the notification names it (its last word the
    /// `lastname`), or by the email's local part.
    async fn create(
        &self,
        notification: &WeddingNotification,
        email: &str,
    ) -> Result<String, ConnectorError> {
        let name = notification
            .contact_name(email)
            .unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_owned());
        let mut contact = json!({"emailaddress1": email});
        match name.rsplit_once(' ') {
            Some((first, last)) => {
                contact["firstname"] = json!(first_chars(first.trim(), 50));
                contact["lastname"] = json!(first_chars(last, 50));
            }
            None => contact["lastname"] = json!(first_chars(&name, 50)),
        }
        self.insert("contacts", "contactid", &contact).await
    }

    /// The stage move (`PATCH` with `If-Match: *`) and the win or loss, in that order.
    async fn move_opportunity(
        &self,
        notification: &WeddingNotification,
        opportunity: &OpportunityMove,
    ) -> Result<(), ConnectorError> {
        if let Some(stage) = opportunity.sales_stage {
            self.send(
                Method::PATCH,
                &format!("opportunities({})", opportunity.id),
                &[],
                Some(&json!({"salesstage": stage})),
            )
            .await?;
        }
        if let Some(action) = opportunity.outcome {
            let status = if action == "WinOpportunity" { 3 } else { 4 };
            self.send(
                Method::POST,
                action,
                &[],
                Some(&json!({
                    "Status": status,
                    "OpportunityClose": {
                        "subject": first_chars(&notification.title, 200),
                        "opportunityid@odata.bind": format!("/opportunities({})", opportunity.id),
                    },
                })),
            )
            .await?;
        }
        Ok(())
    }

    /// The on-demand workflow for each contact: each run's id, or why Dataverse refused it.
    async fn run_workflow(&self, workflow: &str, contacts: &[Synced]) -> Vec<Value> {
        let mut runs = Vec::new();
        for contact in contacts {
            let run = self
                .send(
                    Method::POST,
                    &format!("workflows({workflow})/Microsoft.Dynamics.CRM.ExecuteWorkflow"),
                    &[],
                    Some(&json!({"EntityId": contact.id})),
                )
                .await;
            runs.push(match run {
                Ok(answer) => json!({"contactId": contact.id, "status": "started", "asyncOperationId": answer["Id"]}),
                Err(error) => json!({"contactId": contact.id, "status": "failed", "error": error.to_string()}),
            });
        }
        runs
    }

    /// Creates a row of `entity_set` and answers its `key` (`contactid`, `activityid`...).
    async fn insert(
        &self,
        entity_set: &str,
        key: &str,
        row: &Value,
    ) -> Result<String, ConnectorError> {
        let created = self
            .send(Method::POST, entity_set, &[("$select", key)], Some(row))
            .await?;
        created[key].as_str().map(str::to_owned).ok_or_else(|| {
            ConnectorError::Unavailable(format!(
                "Dynamics 365 created the {entity_set} row without its {key}"
            ))
        })
    }

    /// The seed's establishConnection: `WhoAmI`, the application user the app acts as.
    async fn establish_connection(&self) -> Result<Value, ConnectorError> {
        let me = self.send(Method::GET, "WhoAmI", &[], None).await?;
        Ok(json!({
            "environment": self.api.as_str().trim_end_matches("api/data/v9.2/").trim_end_matches('/'),
            "userId": me["UserId"],
            "businessUnitId": me["BusinessUnitId"],
            "organizationId": me["OrganizationId"],
        }))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let mut url = self
            .api
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let token = self
            .session
            .access_token(&self.client, self.timeout)
            .await?;
        let mut request = self
            .client
            .client()
            .request(method.clone(), url)
            .timeout(self.timeout)
            .bearer_auth(token)
            .header("accept", "application/json")
            .header("odata-maxversion", "4.0")
            .header("odata-version", "4.0");
        if method == Method::POST && query.iter().any(|(name, _)| *name == "$select") {
            request = request.header("prefer", "return=representation");
        }
        if method == Method::PATCH {
            // Without it a PATCH to a missing row creates one.
            request = request.header("if-match", "*");
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        self.report_limits(&headers);
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }

    /// What is left of the service-protection window, as the `herald_vendor_quota_remaining`
    /// gauge.
    fn report_limits(&self, headers: &reqwest::header::HeaderMap) {
        let remaining = headers
            .get("x-ms-ratelimit-burst-remaining-xrm-requests")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(remaining) = remaining {
            metrics::gauge!("herald_vendor_quota_remaining", "integration" => self.integration_id.clone(), "window" => "5m")
                .set(remaining);
        }
    }
}

impl Connector for Dynamics365Connector {
    fn vendor(&self) -> &'static str {
        "dynamics365"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The query, then per contact a create (made only when missing, charged always) and a task
    /// (and a workflow run, with `workflow_id`), the note, and the opportunity's stage move and
    /// outcome when asked. Token grants are not API calls and are not charged.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        let contacts = notification.contact_emails(MAX_CONTACTS).len().max(1) as u32;
        let per_contact = 2 + u32::from(self.workflow_id.is_some());
        let opportunity = match opportunity_move(notification) {
            Ok(Some(o)) => u32::from(o.sales_stage.is_some()) + u32::from(o.outcome.is_some()),
            _ => 0,
        };
        2 + per_contact * contacts + opportunity
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Dynamics 365")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.establish_connection())
    }

    /// Dataverse refused the token: get another (reading the app's secret again).
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.session.reload()
    }
}

/// A refused call, classified from Dataverse's body `{error: {code, message}}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let message = answer["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Dynamics 365 answered {status} without its error body"));
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers).or(Some(UNSAID_WAIT)),
        },
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        _ => ConnectorError::Rejected {
            code: answer["error"]["code"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.as_u16().to_string()),
            message,
        },
    }
}

/// The task for one contact: the title as subject, the message as description, due at noon UTC
/// on the wedding day, priority from the notification's.
fn task(notification: &WeddingNotification, contact_id: &str) -> Value {
    let mut task = json!({
        "subject": first_chars(&notification.title, SUBJECT_LENGTH),
        "description": first_chars(&note_text(notification), DESCRIPTION_LENGTH),
        "prioritycode": match notification.priority {
            Priority::Emergency | Priority::High => 2,
            Priority::Normal => 1,
            Priority::Low => 0,
        },
        "regardingobjectid_contact_task@odata.bind": format!("/contacts({contact_id})"),
    });
    if let Some(context) = &notification.wedding_context {
        task["scheduledend"] = json!(format!("{}T12:00:00Z", context.wedding_date));
    }
    task
}

/// The message, then the wedding it is about, as plain text.
fn note_text(notification: &WeddingNotification) -> String {
    let mut text = notification.message.clone();
    if let Some(context) = &notification.wedding_context {
        let couple = context.couple_names.as_deref().unwrap_or("The wedding");
        text.push_str(&format!("\n\n{couple} on {}", context.wedding_date));
        if let Some(venue) = &context.venue {
            text.push_str(&format!(" at {venue}"));
        }
    }
    text
}

/// The opportunity to move and how, when the metadata names one: `dynamicsOpportunityId` (a
/// GUID) with `dynamicsSalesStage` (`qualify`, `develop`, `propose`, `close`) and/or
/// `dynamicsOpportunityOutcome` (`won`, `lost`); mistakes are refused naming the field.
fn opportunity_move(
    notification: &WeddingNotification,
) -> Result<Option<OpportunityMove>, ConnectorError> {
    let metadata = &notification.metadata;
    let refuse = |message: &str| ConnectorError::Rejected {
        code: "invalid_metadata".into(),
        message: message.to_owned(),
    };
    let stage = metadata.get("dynamicsSalesStage");
    let outcome = metadata.get("dynamicsOpportunityOutcome");
    let Some(id) = metadata.get("dynamicsOpportunityId") else {
        if stage.is_some() || outcome.is_some() {
            return Err(refuse("metadata.dynamicsOpportunityId must name the opportunity that dynamicsSalesStage or dynamicsOpportunityOutcome moves"));
        }
        return Ok(None);
    };
    let id = id
        .as_str()
        .filter(|id| super::settings::is_guid(id))
        .ok_or_else(|| {
            refuse("metadata.dynamicsOpportunityId is not an opportunity's id (a GUID)")
        })?;
    let sales_stage = match stage {
        None => None,
        Some(stage) => Some(
            ["qualify", "develop", "propose", "close"]
                .iter()
                .position(|known| stage.as_str() == Some(known))
                .map(|n| n as u8)
                .ok_or_else(|| {
                    refuse("metadata.dynamicsSalesStage must be qualify, develop, propose or close")
                })?,
        ),
    };
    let outcome = match outcome.map(|o| o.as_str()) {
        None => None,
        Some(Some("won")) => Some("WinOpportunity"),
        Some(Some("lost")) => Some("LoseOpportunity"),
        Some(_) => {
            return Err(refuse(
                "metadata.dynamicsOpportunityOutcome must be won or lost",
            ))
        }
    };
    if sales_stage.is_none() && outcome.is_none() {
        return Err(refuse("metadata.dynamicsOpportunityId needs dynamicsSalesStage or dynamicsOpportunityOutcome to say what happens to it"));
    }
    Ok(Some(OpportunityMove {
        id: id.to_owned(),
        sales_stage,
        outcome,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::StatusCode;

    fn with_metadata(metadata: Value) -> WeddingNotification {
        serde_json::from_value(json!({
            "notificationId": "n", "type": "payment_received", "priority": "normal",
            "title": "t", "message": "m", "metadata": metadata
        }))
        .unwrap()
    }

    const OPPORTUNITY: &str = "7d2e4c1a-93b0-4f8e-a1c2-5b6d7e8f9a0b";

    #[test]
    fn an_opportunity_move_is_read_from_the_metadata_naming_mistakes() {
        let moved = opportunity_move(&with_metadata(
            json!({"dynamicsOpportunityId": OPPORTUNITY, "dynamicsSalesStage": "propose", "dynamicsOpportunityOutcome": "won"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            (moved.id.as_str(), moved.sales_stage, moved.outcome),
            (OPPORTUNITY, Some(2), Some("WinOpportunity"))
        );
        assert!(opportunity_move(&with_metadata(json!({})))
            .unwrap()
            .is_none());
        for (metadata, field) in [
            (
                json!({"dynamicsSalesStage": "close"}),
                "dynamicsOpportunityId",
            ),
            (
                json!({"dynamicsOpportunityId": "42", "dynamicsSalesStage": "close"}),
                "dynamicsOpportunityId",
            ),
            (
                json!({"dynamicsOpportunityId": OPPORTUNITY, "dynamicsSalesStage": "won"}),
                "dynamicsSalesStage",
            ),
            (
                json!({"dynamicsOpportunityId": OPPORTUNITY, "dynamicsOpportunityOutcome": "closed"}),
                "dynamicsOpportunityOutcome",
            ),
            (
                json!({"dynamicsOpportunityId": OPPORTUNITY}),
                "dynamicsSalesStage or dynamicsOpportunityOutcome",
            ),
        ] {
            let Err(ConnectorError::Rejected { message, .. }) =
                opportunity_move(&with_metadata(metadata.clone()))
            else {
                panic!("{metadata} was taken");
            };
            assert!(message.contains(field), "{metadata}: {message}");
        }
    }

    #[test]
    fn dataverses_errors_are_classified() {
        let body = |code: &str, message: &str| json!({"error": {"code": code, "message": message}});
        let mut waiting = HeaderMap::new();
        waiting.insert("retry-after", HeaderValue::from_static("3"));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &waiting, &body("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &Value::Null),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &HeaderMap::new(), &body("0x80040217", "opportunity With Id = x Does Not Exist")),
            ConnectorError::Rejected { code, .. } if code == "0x80040217"
        ));
        assert!(matches!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                &HeaderMap::new(),
                &Value::Null
            ),
            ConnectorError::Unavailable(_)
        ));
    }
}
