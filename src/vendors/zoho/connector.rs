//! Zoho CRM (the seed's `CRMIntegrationConnector`) over API v8, with an OAuth client's access
//! token (`Authorization: Zoho-oauthtoken`, refreshed at the data center's accounts server, calls
//! sent to the `api_domain` the token answer names): `syncNotificationToContacts` as one
//! delivery.
//!
//! 1. `GET /crm/v8/Contacts/search` with one criteria OR-ing every contact's email (Zoho takes
//!    ten conditions: the most contacts a notification syncs), then
//!    `POST /crm/v8/Contacts/upsert` (duplicate check on `Email`) for the ones not found: the
//!    search leaves existing contacts untouched, the upsert keeps a contact Zoho's search index
//!    has not caught up with from being created twice.
//! 2. When the metadata names `zohoDealId` and `zohoDealStage`, the deal moves
//!    (`PUT /crm/v8/Deals/{id}`: updateDealPipeline) before anything is written about it, so a
//!    refused stage stops the sync.
//! 3. `POST /crm/v8/Tasks`: a task per contact (`Who_Id`), on the deal when one is named
//!    (`What_Id`), due on the wedding day (createNotificationActivities).
//! 4. `POST /crm/v8/Notes`: the message as a note on the deal, or else on the first contact; it
//!    is reported in the receipt, not retried, since a retry would add the tasks twice.
//!
//! Every write carries the configured `trigger` list, which is how a write runs the
//! organization's workflow rules, approvals or blueprints (triggerAutomationWorkflows). Zoho
//! answers writes record by record, so a 2xx can hold refused records; each is reported with
//! Zoho's code and the field it names.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::ZohoSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::oauth::{InstallGrant, OAuthSession, RefreshToken};
use crate::connectors::{
    first_chars, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::wedsync::{Priority, WeddingNotification};

/// The vault's name for the refresh token of a client installed through Herald.
const KEPT_REFRESH_TOKEN: &str = "zoho_refresh_token";
/// The most contacts of one notification synced: a search criteria takes ten conditions, and a
/// write of up to ten records costs one API credit.
pub const MAX_CONTACTS: usize = 10;
/// The longest text Herald puts in a task's subject or a note's title.
const TITLE_LENGTH: usize = 255;
/// The lengths of a contact's standard name fields.
const FIRST_NAME_LENGTH: usize = 40;
const LAST_NAME_LENGTH: usize = 80;
/// How long a 429 without `Retry-After` is waited out: Zoho's concurrency limit frees as soon as
/// a call in flight ends, and its credits come back as the rolling day moves on.
const UNSAID_WAIT: Duration = Duration::from_secs(2);

pub struct ZohoConnector {
    session: OAuthSession,
    triggers: Vec<String>,
    client: OutboundClient,
    timeout: Duration,
}

/// A contact of the notification as Zoho has it after the sync.
struct Synced {
    email: String,
    id: String,
    created: bool,
}

/// The deal the metadata names and the stage it moves to.
struct DealMove {
    id: String,
    stage: String,
}

/// Zoho's answer to a call: its status and body (`Null` for a 204).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl ZohoConnector {
    pub fn new(
        settings: &ZohoSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<std::sync::Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let oauth = &settings.oauth;
        let token_url = client.check_url(&format!(
            "{}/oauth/v2/token",
            oauth.accounts_server.trim_end_matches('/')
        ))?;
        let session = OAuthSession::new(
            "Zoho",
            token_url,
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
        );
        Ok(Self {
            session,
            triggers: settings.triggers.clone(),
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
                message: "the notification names no contact with an email, so there is nothing to sync in Zoho CRM".into(),
            });
        }
        let deal = deal_move(notification)?;
        let (synced, contact_errors) = self.sync_contacts(notification, &emails).await?;
        if synced.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "contacts_refused".into(),
                message: format!(
                    "Zoho CRM took none of the contacts: {}",
                    joined_errors(&contact_errors)
                ),
            });
        }
        if let Some(deal) = &deal {
            let moved = self
                .write(
                    Method::PUT,
                    &format!("/crm/v8/Deals/{}", deal.id),
                    &json!({"data": [{"Stage": deal.stage}], "trigger": self.triggers}),
                )
                .await?;
            if let Some(Err(refused)) = moved.into_iter().next() {
                return Err(refused);
            }
        }
        let tasks: Vec<Value> = synced
            .iter()
            .map(|contact| task(notification, contact, deal.as_ref()))
            .collect();
        let written = self
            .write(
                Method::POST,
                "/crm/v8/Tasks",
                &json!({"data": tasks, "trigger": self.triggers}),
            )
            .await?;
        let mut task_ids = Vec::new();
        let mut task_errors = Vec::new();
        for (contact, outcome) in synced.iter().zip(written) {
            match outcome {
                Ok(id) => task_ids.push(json!({"contactId": contact.id, "taskId": id})),
                Err(error) => {
                    task_errors.push(json!({"email": contact.email, "error": error.to_string()}))
                }
            }
        }
        if task_ids.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "tasks_refused".into(),
                message: format!(
                    "Zoho CRM took none of the tasks: {}",
                    joined_errors(&task_errors)
                ),
            });
        }
        let (parent_module, parent_id) = match &deal {
            Some(deal) => ("Deals", deal.id.as_str()),
            None => ("Contacts", synced[0].id.as_str()),
        };
        let note = json!({"data": [{
            "Note_Title": first_chars(&notification.title, TITLE_LENGTH),
            "Note_Content": note_content(notification),
            "Parent_Id": {"module": {"api_name": parent_module}, "id": parent_id},
        }]});
        let note = match self.write(Method::POST, "/crm/v8/Notes", &note).await {
            Ok(outcomes) => match outcomes.into_iter().next() {
                Some(Ok(id)) => json!({"id": id, "status": "added", "on": parent_module}),
                Some(Err(error)) => json!({"status": "failed", "error": error.to_string()}),
                None => json!({"status": "failed", "error": "Zoho CRM answered no record"}),
            },
            Err(error) => json!({"status": "failed", "error": error.to_string()}),
        };
        let contact_ids: Vec<&str> = synced.iter().map(|contact| contact.id.as_str()).collect();
        Ok(Receipt {
            id: format!(
                "contacts {}; tasks {}",
                contact_ids.join(","),
                task_ids
                    .iter()
                    .filter_map(|task| task["taskId"].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            details: Some(json!({
                "totalContacts": emails.len(),
                "successfulSyncs": synced.len(),
                "failedSyncs": contact_errors.len(),
                "contacts": synced.iter().map(|c| json!({"email": c.email, "id": c.id, "created": c.created})).collect::<Vec<_>>(),
                "contactErrors": contact_errors,
                "tasks": task_ids,
                "taskErrors": task_errors,
                "note": note,
                "deal": deal.as_ref().map(|deal| json!({"dealId": deal.id, "stage": deal.stage})),
                "triggers": self.triggers,
            })),
        })
    }

    /// The contacts for `emails`: those Zoho has, found by one search, and the rest upserted in
    /// one write; with the ones Zoho refused, each with its error.
    async fn sync_contacts(
        &self,
        notification: &WeddingNotification,
        emails: &[String],
    ) -> Result<(Vec<Synced>, Vec<Value>), ConnectorError> {
        let found = self.find_contacts(emails).await?;
        let missing: Vec<&String> = emails
            .iter()
            .filter(|email| !found.iter().any(|(known, _)| known == *email))
            .collect();
        let mut created = Vec::new();
        let mut errors = Vec::new();
        if !missing.is_empty() {
            let records: Vec<Value> = missing
                .iter()
                .map(|email| contact(notification, email))
                .collect();
            let answer = self
                .exchange(
                    Method::POST,
                    "/crm/v8/Contacts/upsert",
                    &[],
                    Some(&json!({"data": records, "duplicate_check_fields": ["Email"], "trigger": self.triggers})),
                )
                .await?;
            let outcomes = record_outcomes(&answer)?;
            for (email, (outcome, record)) in missing.iter().zip(
                outcomes
                    .into_iter()
                    .zip(answer.body["data"].as_array().into_iter().flatten()),
            ) {
                match outcome {
                    Ok(id) => created.push(((*email).clone(), id, record["action"] != "update")),
                    Err(ConnectorError::Rejected { code, message }) => {
                        errors.push(json!({"email": email, "error": format!("{code}: {message}")}))
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        // In the order the notification names them.
        let synced = emails
            .iter()
            .filter_map(|email| {
                found
                    .iter()
                    .find(|(known, _)| known == email)
                    .map(|(_, id)| Synced {
                        email: email.clone(),
                        id: id.clone(),
                        created: false,
                    })
                    .or_else(|| {
                        created.iter().find(|(known, _, _)| known == email).map(
                            |(_, id, inserted)| Synced {
                                email: email.clone(),
                                id: id.clone(),
                                created: *inserted,
                            },
                        )
                    })
            })
            .collect();
        Ok((synced, errors))
    }

    /// The contacts Zoho has for `emails` (lowercase email, id): one search OR-ing them.
    async fn find_contacts(
        &self,
        emails: &[String],
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        let criteria = email_criteria(emails);
        let answer = self
            .exchange(
                Method::GET,
                "/crm/v8/Contacts/search",
                &[("criteria", criteria.as_str()), ("fields", "Email")],
                None,
            )
            .await?;
        // 204: nothing matched.
        if answer.status == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let answer = succeeded(answer)?;
        let mut found: Vec<(String, String)> = Vec::new();
        for record in answer["data"].as_array().into_iter().flatten() {
            let (Some(email), Some(id)) = (record["Email"].as_str(), record["id"].as_str()) else {
                continue;
            };
            let email = email.trim().to_lowercase();
            if !found.iter().any(|(known, _)| *known == email) {
                found.push((email, id.to_owned()));
            }
        }
        Ok(found)
    }

    /// The seed's establishConnection: who the token acts as (`GET /crm/v8/users?type=CurrentUser`)
    /// and where the organization's data lives.
    async fn establish_connection(&self) -> Result<Value, ConnectorError> {
        let answer = self
            .exchange(
                Method::GET,
                "/crm/v8/users",
                &[("type", "CurrentUser")],
                None,
            )
            .await?;
        let answer = succeeded(answer)?;
        let user = &answer["users"][0];
        Ok(json!({
            "apiDomain": self.session.granted("api_domain"),
            "userId": user["id"],
            "userName": user["full_name"],
            "email": user["email"],
        }))
    }

    /// A write, answered record by record in the order sent.
    async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Vec<Result<String, ConnectorError>>, ConnectorError> {
        let answer = self.exchange(method, path, &[], Some(body)).await?;
        record_outcomes(&answer)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, ConnectorError> {
        let token = self
            .session
            .access_token(&self.client, self.timeout)
            .await?;
        let api_domain = self.session.granted("api_domain").ok_or_else(|| {
            ConnectorError::Unavailable("Zoho's token answer named no api_domain".into())
        })?;
        let mut url = self
            .client
            .check_url(&format!("{}{path}", api_domain.trim_end_matches('/')))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout)
            .header("authorization", format!("Zoho-oauthtoken {token}"));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }
}

impl Connector for ZohoConnector {
    fn vendor(&self) -> &'static str {
        "zoho"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The search, the upsert (made only when a contact is missing, charged always), the tasks,
    /// the note, and the deal's move when asked: one API credit each. Token grants are not API
    /// calls and are not charged.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        4 + u32::from(matches!(deal_move(notification), Ok(Some(_))))
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Zoho CRM")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.establish_connection())
    }

    fn complete_install<'a>(&'a self, grant: &'a InstallGrant) -> CheckFuture<'a> {
        Box::pin(async move {
            self.session
                .complete_install(&self.client, self.timeout, grant)
                .await?;
            Ok(json!({"installed": true, "apiDomain": self.session.granted("api_domain")}))
        })
    }

    /// Zoho refused the access token: forget it (and read the client's secret and a configured
    /// refresh token again), so the retry refreshes first.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.session.reload()
    }
}

/// The answer of a successful call, or the refusal classified.
fn succeeded(answer: Answer) -> Result<Value, ConnectorError> {
    if answer.status.is_success() {
        Ok(answer.body)
    } else {
        Err(classify(answer.status, &answer.headers, &answer.body))
    }
}

/// A write's records, each the id Zoho wrote or Zoho's refusal of that record. Zoho answers a
/// write whose records were all refused with a 400 that still lists them; any other refusal is
/// the whole call's.
fn record_outcomes(answer: &Answer) -> Result<Vec<Result<String, ConnectorError>>, ConnectorError> {
    let listed = answer.body["data"].as_array();
    let per_record = answer.status.is_success() || answer.status == StatusCode::BAD_REQUEST;
    let Some(records) = listed.filter(|_| per_record) else {
        return Err(classify(answer.status, &answer.headers, &answer.body));
    };
    Ok(records
        .iter()
        .map(|record| match record["details"]["id"].as_str() {
            Some(id) if record["status"] == "success" => Ok(id.to_owned()),
            _ => Err(refusal(record)),
        })
        .collect())
}

/// A refused call, classified from Zoho's body `{code, details, message, status: "error"}`.
fn classify(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) -> ConnectorError {
    match (status.as_u16(), body["code"].as_str()) {
        (429, _) => ConnectorError::RateLimited {
            retry_after: retry_after(headers).or(Some(UNSAID_WAIT)),
        },
        // A token Zoho no longer takes: refresh. A scope the client lacks is not fixed by that.
        (401, Some("INVALID_TOKEN" | "AUTHENTICATION_FAILURE")) | (401, None) => {
            ConnectorError::Unauthorized(message_of(body, status))
        }
        (500..=599, _) => {
            ConnectorError::Unavailable(format!("{status}: {}", message_of(body, status)))
        }
        _ => refusal(body),
    }
}

/// Zoho's refusal of a call or of one record, naming the field it blames when it names one.
fn refusal(body: &Value) -> ConnectorError {
    let mut message = body["message"]
        .as_str()
        .unwrap_or("Zoho CRM refused it without saying why")
        .to_owned();
    if let Some(field) = body["details"]["api_name"].as_str() {
        message.push_str(&format!(" ({field})"));
    }
    ConnectorError::Rejected {
        code: body["code"].as_str().unwrap_or("refused").to_owned(),
        message,
    }
}

fn message_of(body: &Value, status: StatusCode) -> String {
    body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Zoho CRM answered {status} without its error body"))
}

fn joined_errors(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|error| error["error"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("; ")
}

/// One criteria matching any of `emails`: `((Email:equals:a)or(Email:equals:b))`, each value's
/// parentheses, commas and backslashes escaped as Zoho's search asks.
fn email_criteria(emails: &[String]) -> String {
    let conditions: Vec<String> = emails
        .iter()
        .map(|email| {
            let mut escaped = String::with_capacity(email.len());
            for c in email.chars() {
                if matches!(c, '(' | ')' | ',' | '\\') {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            format!("(Email:equals:{escaped})")
        })
        .collect();
    match conditions.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("or")),
    }
}

/// A new contact for `email`: the name the notification gives, its last word as `Last_Name`
/// (which Zoho requires), else the email's local part; each cut to the field's length.
fn contact(notification: &WeddingNotification, email: &str) -> Value {
    let name = notification
        .contact_name(email)
        .unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_owned());
    let mut record = json!({"Email": email});
    let cut = |text: &str, length: usize| text.trim().chars().take(length).collect::<String>();
    match name.rsplit_once(' ') {
        Some((first, last)) => {
            record["First_Name"] = json!(cut(first, FIRST_NAME_LENGTH));
            record["Last_Name"] = json!(cut(last, LAST_NAME_LENGTH));
        }
        None => record["Last_Name"] = json!(cut(&name, LAST_NAME_LENGTH)),
    }
    record
}

/// The task for one contact: the title as subject, the message as description, due on the
/// wedding day, priority from the notification's, on the deal when one is named.
fn task(notification: &WeddingNotification, contact: &Synced, deal: Option<&DealMove>) -> Value {
    let mut task = json!({
        "Subject": first_chars(&notification.title, TITLE_LENGTH),
        "Description": note_content(notification),
        "Status": "Not Started",
        "Priority": match notification.priority {
            Priority::Emergency => "Highest",
            Priority::High => "High",
            Priority::Normal => "Normal",
            Priority::Low => "Low",
        },
        "Who_Id": {"id": contact.id},
    });
    if let Some(context) = &notification.wedding_context {
        task["Due_Date"] = json!(context.wedding_date);
    }
    if let Some(deal) = deal {
        task["What_Id"] = json!({"id": deal.id});
        task["$se_module"] = json!("Deals");
    }
    task
}

/// The note and the task description: the message, then the wedding it is about. Zoho keeps
/// them as plain text.
fn note_content(notification: &WeddingNotification) -> String {
    let mut content = notification.message.clone();
    if let Some(context) = &notification.wedding_context {
        let couple = context.couple_names.as_deref().unwrap_or("The wedding");
        content.push_str(&format!("\n\n{couple} on {}", context.wedding_date));
        if let Some(venue) = &context.venue {
            content.push_str(&format!(" at {venue}"));
        }
    }
    content
}

/// The deal to move and its new stage, when the metadata names one: `zohoDealId` (Zoho's
/// numeric record id, as text or a number) with `zohoDealStage` (a value of the Stage picklist);
/// mistakes are refused naming the field.
fn deal_move(notification: &WeddingNotification) -> Result<Option<DealMove>, ConnectorError> {
    let metadata = &notification.metadata;
    let refuse = |message: &str| ConnectorError::Rejected {
        code: "invalid_metadata".into(),
        message: message.to_owned(),
    };
    let stage = metadata.get("zohoDealStage");
    let Some(id) = metadata.get("zohoDealId") else {
        if stage.is_some() {
            return Err(refuse(
                "metadata.zohoDealId must name the deal that zohoDealStage moves",
            ));
        }
        return Ok(None);
    };
    let id = id
        .as_str()
        .map(str::to_owned)
        .or_else(|| id.as_u64().map(|id| id.to_string()))
        .filter(|id| !id.is_empty() && id.len() <= 30 && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| refuse("metadata.zohoDealId is not a Zoho record id (digits)"))?;
    let stage = stage
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|stage| !stage.is_empty() && stage.chars().count() <= 120)
        .ok_or_else(|| {
            refuse("metadata.zohoDealStage must name the stage the deal moves to (a value of its Stage picklist)")
        })?;
    Ok(Some(DealMove {
        id,
        stage: stage.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn with_metadata(metadata: Value) -> WeddingNotification {
        serde_json::from_value(json!({
            "notificationId": "n", "type": "payment_received", "priority": "normal",
            "title": "t", "message": "m", "metadata": metadata
        }))
        .unwrap()
    }

    #[test]
    fn a_deal_move_is_read_from_the_metadata_naming_mistakes() {
        let moved = deal_move(&with_metadata(
            json!({"zohoDealId": "3477061000000419001", "zohoDealStage": " Closed Won "}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            (moved.id.as_str(), moved.stage.as_str()),
            ("3477061000000419001", "Closed Won")
        );
        assert!(deal_move(&with_metadata(json!({}))).unwrap().is_none());
        for (metadata, field) in [
            (json!({"zohoDealStage": "Closed Won"}), "zohoDealId"),
            (
                json!({"zohoDealId": "34x", "zohoDealStage": "Closed Won"}),
                "zohoDealId",
            ),
            (json!({"zohoDealId": 34}), "zohoDealStage"),
            (
                json!({"zohoDealId": "34", "zohoDealStage": ""}),
                "zohoDealStage",
            ),
        ] {
            let Err(ConnectorError::Rejected { message, .. }) =
                deal_move(&with_metadata(metadata.clone()))
            else {
                panic!("{metadata} was taken");
            };
            assert!(message.contains(field), "{metadata}: {message}");
        }
    }

    #[test]
    fn the_search_criteria_ors_the_emails_escaping_what_zoho_reads() {
        assert_eq!(
            email_criteria(&["sam@example.com".into()]),
            "(Email:equals:sam@example.com)"
        );
        assert_eq!(
            email_criteria(&["a@x.com".into(), "b(1),\\@x.com".into()]),
            "((Email:equals:a@x.com)or(Email:equals:b\\(1\\)\\,\\\\@x.com))"
        );
    }

    #[test]
    fn zohos_errors_are_classified() {
        let body = |code: &str, message: &str| json!({"code": code, "details": {}, "message": message, "status": "error"});
        let mut waiting = HeaderMap::new();
        waiting.insert("retry-after", HeaderValue::from_static("7"));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &waiting, &body("TOO_MANY_REQUESTS", "too many requests")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), &Value::Null),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == UNSAID_WAIT
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &body("INVALID_TOKEN", "invalid oauth token")),
            ConnectorError::Unauthorized(message) if message == "invalid oauth token"
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &body("OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")),
            ConnectorError::Rejected { code, .. } if code == "OAUTH_SCOPE_MISMATCH"
        ));
        assert!(matches!(
            classify(
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                &body("INTERNAL_ERROR", "Internal server error occurred.")
            ),
            ConnectorError::Unavailable(_)
        ));
        let records = Answer {
            status: StatusCode::MULTI_STATUS,
            headers: HeaderMap::new(),
            body: json!({"data": [
                {"code": "SUCCESS", "details": {"id": "1"}, "message": "record added", "status": "success"},
                {"code": "INVALID_DATA", "details": {"api_name": "Email", "json_path": "$.data[1].Email"}, "message": "invalid data", "status": "error"}
            ]}),
        };
        let outcomes = record_outcomes(&records).unwrap();
        assert_eq!(outcomes[0].as_ref().unwrap(), "1");
        assert!(matches!(
            &outcomes[1],
            Err(ConnectorError::Rejected { code, message }) if code == "INVALID_DATA" && message == "invalid data (Email)"
        ));
    }

    #[test]
    fn a_contact_is_named_as_the_notification_names_it() {
        let notification: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n", "type": "client_message", "priority": "normal",
            "title": "t", "message": "m",
            "contacts": [{"name": "Sam de Taylor", "email": "sam@example.com"}]
        }))
        .unwrap();
        assert_eq!(
            contact(&notification, "sam@example.com"),
            json!({"Email": "sam@example.com", "First_Name": "Sam de", "Last_Name": "Taylor"})
        );
        assert_eq!(
            contact(&notification, "jo@example.com"),
            json!({"Email": "jo@example.com", "Last_Name": "jo"})
        );
        let long: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n", "type": "client_message", "priority": "normal",
            "title": "t", "message": "m",
            "contacts": [{"name": format!("{} {}", "F".repeat(50), "L".repeat(90)), "email": "l@example.com"}]
        }))
        .unwrap();
        let record = contact(&long, "l@example.com");
        assert_eq!(
            (
                record["First_Name"].as_str().unwrap().len(),
                record["Last_Name"].as_str().unwrap().len()
            ),
            (FIRST_NAME_LENGTH, LAST_NAME_LENGTH)
        );
    }
}
