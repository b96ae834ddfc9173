//! monday.com (the seed's `CRMIntegrationConnector`) over its GraphQL API, version 2026-10: a
//! wedding is an item on the organization's weddings board, and `syncNotificationToContacts`
//! is one delivery.
//!
//! 1. With a contacts board: `items_page_by_column_values` once for every contact's email, and
//!    `create_item` on that board for each one missing (syncNotificationToContacts).
//! 2. `items_page_by_column_values` for the wedding's item (its id in `wedding_column`); it is
//!    created (`create_item`, with the wedding date and status) when missing, else its date and
//!    status are changed (`change_multiple_column_values`, updateDealPipeline). These steps are
//!    idempotent, so a retry repeats them safely.
//! 3. `create_update` on the item: the notification as an update (createNotificationActivities).
//!    Once written, later refusals are reported, not retried.
//! 4. For high and emergency notifications, `create_notification` to each of `notify_user_ids`
//!    (triggerAutomationWorkflows' closest honest form: monday's automations start from the
//!    column changes of step 2, and the API has no call that runs one).
//!
//! Every document asks for `complexity { query after reset_in_x_seconds }`: what is left of the
//! minute's complexity budget is the `herald_vendor_quota_remaining{window="1m"}` gauge, and a
//! request is not sent while the budget left is below the dearest query seen, until it resets.
//! monday answers application errors with HTTP 200 and an `errors` array: they are classified by
//! `extensions.code`, whatever the status.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

use super::MondaySettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    first_chars, note_html, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Priority, WeddingContext, WeddingNotification};

/// The API version the bundled schema (and every request) is.
pub const API_VERSION: &str = "2026-10";
/// The most contacts of one notification synced onto the contacts board.
pub const MAX_CONTACTS: usize = 25;
/// The longest item name monday keeps (`ItemNameTooLongException` beyond).
const ITEM_NAME_LENGTH: usize = 255;
/// The longest notification text Herald sends.
const NOTIFICATION_LENGTH: usize = 500;
/// How long a rate limit without its own wait waits.
const UNSAID_WAIT: Duration = Duration::from_secs(10);

/// Items of a board whose column holds one of the values (the email, the wedding id).
const FIND_ITEMS: &str = "query FindItems($board: ID!, $column: String!, $values: [String]!, $limit: Int!) {
  complexity { query after reset_in_x_seconds }
  items_page_by_column_values(board_id: $board, columns: [{column_id: $column, column_values: $values}], limit: $limit) {
    items { id name column_values(ids: [$column]) { id text } }
  }
}";

const CREATE_ITEM: &str =
    "mutation CreateItem($board: ID!, $group: String, $name: String!, $columns: JSON) {
  complexity { query after reset_in_x_seconds }
  create_item(board_id: $board, group_id: $group, item_name: $name, column_values: $columns) { id }
}";

const CHANGE_COLUMNS: &str = "mutation ChangeColumns($board: ID!, $item: ID!, $columns: JSON!) {
  complexity { query after reset_in_x_seconds }
  change_multiple_column_values(board_id: $board, item_id: $item, column_values: $columns) { id }
}";

const CREATE_UPDATE: &str = "mutation CreateUpdate($item: ID!, $body: String!) {
  complexity { query after reset_in_x_seconds }
  create_update(item_id: $item, body: $body) { id }
}";

const CREATE_NOTIFICATION: &str = "mutation Notify($user: ID!, $item: ID!, $text: String!) {
  complexity { query after reset_in_x_seconds }
  create_notification(user_id: $user, target_id: $item, target_type: Project, text: $text) { id }
}";

const ME: &str = "query Me {
  complexity { query after reset_in_x_seconds }
  me { id name email account { id name slug } }
}";

pub struct MondayConnector {
    integration_id: String,
    endpoint: Url,
    token: ReloadableSecret,
    settings: MondaySettings,
    client: OutboundClient,
    timeout: Duration,
    budget: Mutex<Option<Budget>>,
}

/// The minute's complexity budget as the last answer reported it.
#[derive(Debug, Clone, Copy)]
struct Budget {
    left: i64,
    resets_at: Instant,
    /// The most a query of this connector has cost.
    dearest: i64,
}

/// A contact of the notification as the contacts board has it after the sync.
struct Synced {
    email: String,
    item_id: String,
    created: bool,
}

impl MondayConnector {
    pub fn new(
        settings: &MondaySettings,
        integration_id: &str,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        Ok(Self {
            integration_id: integration_id.to_owned(),
            endpoint: client.check_url(&settings.api_url)?,
            token: ReloadableSecret::load(&settings.api_token)
                .map_err(ConnectorError::Misconfigured)?,
            settings: settings.clone(),
            client,
            timeout,
            budget: Mutex::new(None),
        })
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let (wedding, wedding_id) = notification
            .wedding_context
            .as_ref()
            .and_then(|context| Some((context, context.wedding_id.as_deref()?)))
            .ok_or_else(|| ConnectorError::Rejected {
                code: "no_wedding".into(),
                message: "the notification has no weddingContext.weddingId: monday.com keeps one item per wedding".into(),
            })?;
        let status = self.status_label(notification)?;
        let (contacts, contact_errors) = match (
            &self.settings.contacts_board_id,
            &self.settings.contacts_email_column,
        ) {
            (Some(board), Some(column)) => self.sync_contacts(notification, board, column).await?,
            _ => (Vec::new(), Vec::new()),
        };

        let board = &self.settings.board_id;
        let found = self
            .find_items(
                board,
                &self.settings.wedding_column,
                &[wedding_id.to_owned()],
                1,
            )
            .await?;
        let mut columns = serde_json::Map::new();
        if let Some(date_column) = &self.settings.date_column {
            columns.insert(date_column.clone(), json!({"date": wedding.wedding_date}));
        }
        if let (Some(status_column), Some(label)) = (&self.settings.status_column, status) {
            columns.insert(status_column.clone(), json!({"label": label}));
        }
        let (item_id, created) = match found.first() {
            Some((_, item_id)) => {
                if !columns.is_empty() {
                    self.graphql(
                        CHANGE_COLUMNS,
                        json!({"board": board, "item": item_id, "columns": Value::Object(columns.clone()).to_string()}),
                    )
                    .await?;
                }
                (item_id.clone(), false)
            }
            None => {
                columns.insert(self.settings.wedding_column.clone(), json!(wedding_id));
                let created = self
                    .graphql(
                        CREATE_ITEM,
                        json!({
                            "board": board,
                            "group": self.settings.group_id,
                            "name": item_name(wedding, wedding_id),
                            "columns": Value::Object(columns.clone()).to_string(),
                        }),
                    )
                    .await?;
                (answered_id(&created["create_item"], "create_item")?, true)
            }
        };

        let update = self
            .graphql(
                CREATE_UPDATE,
                json!({"item": item_id, "body": update_body(notification, &contacts)}),
            )
            .await?;
        let update_id = answered_id(&update["create_update"], "create_update")?;

        let mut notified = Vec::new();
        if matches!(notification.priority, Priority::High | Priority::Emergency) {
            let text: String = format!("{}: {}", notification.title, notification.message)
                .chars()
                .take(NOTIFICATION_LENGTH)
                .collect();
            for user in &self.settings.notify_user_ids {
                let sent = self
                    .graphql(
                        CREATE_NOTIFICATION,
                        json!({"user": user, "item": item_id, "text": text}),
                    )
                    .await;
                notified.push(match sent {
                    Ok(answer) => json!({"userId": user, "status": "sent", "id": answer["create_notification"]["id"]}),
                    Err(error) => json!({"userId": user, "status": "failed", "error": error.to_string()}),
                });
            }
        }

        Ok(Receipt {
            id: format!("item {item_id}; update {update_id}"),
            details: Some(json!({
                "itemId": item_id,
                "itemCreated": created,
                "columnsChanged": columns.keys().collect::<Vec<_>>(),
                "updateId": update_id,
                "totalContacts": contacts.len() + contact_errors.len(),
                "successfulSyncs": contacts.len(),
                "failedSyncs": contact_errors.len(),
                "contacts": contacts.iter().map(|c| json!({"email": c.email, "itemId": c.item_id, "created": c.created})).collect::<Vec<_>>(),
                "contactErrors": contact_errors,
                "notifications": notified,
            })),
        })
    }

    /// `metadata.mondayStatus`: the status label the wedding's item moves to.
    fn status_label<'n>(
        &self,
        notification: &'n WeddingNotification,
    ) -> Result<Option<&'n str>, ConnectorError> {
        let refuse = |message: &str| ConnectorError::Rejected {
            code: "invalid_metadata".into(),
            message: message.to_owned(),
        };
        let Some(status) = notification.metadata.get("mondayStatus") else {
            return Ok(None);
        };
        let label = status
            .as_str()
            .map(str::trim)
            .filter(|label| !label.is_empty())
            .ok_or_else(|| refuse("metadata.mondayStatus must be a status label (text)"))?;
        if self.settings.status_column.is_none() {
            return Err(refuse(
                "metadata.mondayStatus needs the integration's status_column: the column it sets",
            ));
        }
        Ok(Some(label))
    }

    /// The contacts board's items for the notification's emails, the missing created; a
    /// refusal of one contact is reported with the others synced.
    async fn sync_contacts(
        &self,
        notification: &WeddingNotification,
        board: &str,
        email_column: &str,
    ) -> Result<(Vec<Synced>, Vec<Value>), ConnectorError> {
        let emails = notification.contact_emails(MAX_CONTACTS);
        if emails.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let found = self.find_items(board, email_column, &emails, 100).await?;
        let mut synced = Vec::new();
        let mut errors = Vec::new();
        for email in emails {
            if let Some((_, item_id)) = found.iter().find(|(known, _)| *known == email) {
                synced.push(Synced {
                    email,
                    item_id: item_id.clone(),
                    created: false,
                });
                continue;
            }
            let name = notification
                .contact_name(&email)
                .unwrap_or_else(|| email.clone());
            let created = self
                .graphql(
                    CREATE_ITEM,
                    json!({
                        "board": board,
                        "name": first_chars(&name, ITEM_NAME_LENGTH),
                        "columns": json!({email_column: {"email": email, "text": email}}).to_string(),
                    }),
                )
                .await;
            match created.and_then(|answer| answered_id(&answer["create_item"], "create_item")) {
                Ok(item_id) => synced.push(Synced {
                    email,
                    item_id,
                    created: true,
                }),
                Err(ConnectorError::Rejected { code, message }) => {
                    errors.push(json!({"email": email, "error": format!("{code}: {message}")}))
                }
                Err(other) => return Err(other),
            }
        }
        Ok((synced, errors))
    }

    /// The items of `board` whose `column` holds one of `values`: (the column's text,
    /// lowercased, item id).
    async fn find_items(
        &self,
        board: &str,
        column: &str,
        values: &[String],
        limit: u32,
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        let data = self
            .graphql(
                FIND_ITEMS,
                json!({"board": board, "column": column, "values": values, "limit": limit}),
            )
            .await?;
        let items = data["items_page_by_column_values"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(items
            .iter()
            .filter_map(|item| {
                let text = item["column_values"]
                    .as_array()?
                    .iter()
                    .find(|value| value["id"] == column)?["text"]
                    .as_str()?
                    .trim()
                    .to_lowercase();
                Some((text, item["id"].as_str()?.to_owned()))
            })
            .collect())
    }

    /// The seed's establishConnection: `me`, the user the token acts as, and its account.
    async fn establish_connection(&self) -> Result<Value, ConnectorError> {
        let data = self.graphql(ME, json!({})).await?;
        let me = &data["me"];
        Ok(json!({
            "userId": me["id"],
            "name": me["name"],
            "email": me["email"],
            "account": me["account"],
            "boardId": self.settings.board_id,
            "apiVersion": API_VERSION,
        }))
    }

    /// One GraphQL document: its `data`, or the failure its answer reports.
    async fn graphql(&self, document: &str, variables: Value) -> Result<Value, ConnectorError> {
        if let Some(wait) = self.budget_wait() {
            return Err(ConnectorError::RateLimited {
                retry_after: Some(wait),
            });
        }
        let response = self
            .client
            .client()
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .header("authorization", self.token.get().expose())
            .header("api-version", API_VERSION)
            .json(&json!({"query": document, "variables": variables}))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(complexity) = answer["data"].get("complexity") {
            self.record_budget(complexity);
        }
        if let Some(failure) = classify(status, &headers, &answer) {
            return Err(failure);
        }
        Ok(answer["data"].clone())
    }

    /// How long to hold the next request: while the budget left is below the dearest query
    /// seen, until the budget resets.
    fn budget_wait(&self) -> Option<Duration> {
        let budget = (*self.budget.lock().expect("budget lock"))?;
        let now = Instant::now();
        (budget.left < budget.dearest && now < budget.resets_at).then(|| budget.resets_at - now)
    }

    fn record_budget(&self, complexity: &Value) {
        let (Some(left), Some(cost), Some(reset)) = (
            complexity["after"].as_i64(),
            complexity["query"].as_i64(),
            complexity["reset_in_x_seconds"].as_i64(),
        ) else {
            return;
        };
        let mut budget = self.budget.lock().expect("budget lock");
        let dearest = budget.map_or(cost, |known| known.dearest.max(cost));
        *budget = Some(Budget {
            left,
            resets_at: Instant::now() + Duration::from_secs(reset.max(0) as u64),
            dearest,
        });
        metrics::gauge!("herald_vendor_quota_remaining", "integration" => self.integration_id.clone(), "window" => "1m")
            .set(left as f64);
    }
}

impl Connector for MondayConnector {
    fn vendor(&self) -> &'static str {
        "monday"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// With a contacts board, its query and a create per contact (made only when missing,
    /// charged always); the wedding's query and its create or change; the update; a
    /// notification per person for high and emergency notifications.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        let contacts = if self.settings.contacts_board_id.is_some() {
            let emails = notification.contact_emails(MAX_CONTACTS).len() as u32;
            u32::from(emails > 0) + emails
        } else {
            0
        };
        let notified = if matches!(notification.priority, Priority::High | Priority::Emergency) {
            self.settings.notify_user_ids.len() as u32
        } else {
            0
        };
        contacts + 3 + notified
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("monday.com")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.establish_connection())
    }

    /// monday refused the token: read it again (a token regenerated in monday is a new one).
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.token.reload().map_err(ConnectorError::Misconfigured)
    }
}

/// A failed answer, classified: the first of the `errors` array by its `extensions.code` (monday
/// answers application errors with 200), else the HTTP status. `None` when it succeeded.
fn classify(status: StatusCode, headers: &HeaderMap, answer: &Value) -> Option<ConnectorError> {
    if status == StatusCode::UNAUTHORIZED {
        return Some(ConnectorError::Unauthorized(
            first_message(answer).unwrap_or_else(|| "monday.com refused the API token".to_owned()),
        ));
    }
    let error = answer["errors"]
        .as_array()
        .and_then(|errors| errors.first());
    let Some(error) = error else {
        return match status.as_u16() {
            200..=299 if answer["data"].is_object() => None,
            200..=299 => Some(ConnectorError::Unavailable(
                "monday.com answered without data or errors".to_owned(),
            )),
            429 => Some(ConnectorError::RateLimited {
                retry_after: retry_after(headers).or(Some(UNSAID_WAIT)),
            }),
            500..=599 => Some(ConnectorError::Unavailable(status.to_string())),
            _ => Some(ConnectorError::Rejected {
                code: status.as_u16().to_string(),
                message: format!("monday.com answered {status}"),
            }),
        };
    };
    // An error is a string in monday's older shapes, an object in GraphQL's.
    let message = error["message"]
        .as_str()
        .or(error.as_str())
        .unwrap_or("monday.com reported an error")
        .to_owned();
    let extensions = &error["extensions"];
    let code = extensions["code"]
        .as_str()
        .or(answer["error_code"].as_str())
        .unwrap_or_default()
        .to_owned();
    let told_wait = extensions["retry_in_seconds"]
        .as_u64()
        .map(Duration::from_secs)
        .or_else(|| retry_after(headers));
    let failure = match code.as_str() {
        "COMPLEXITY_BUDGET_EXHAUSTED"
        | "ComplexityException"
        | "maxConcurrencyExceeded"
        | "IP_RATE_LIMIT_EXCEEDED"
        | "RATE_LIMIT_EXCEEDED" => ConnectorError::RateLimited {
            retry_after: told_wait.or(Some(UNSAID_WAIT)),
        },
        "DAILY_LIMIT_EXCEEDED" => ConnectorError::RateLimited {
            retry_after: told_wait.or(Some(until_midnight_utc())),
        },
        _ if message == "Rate Limit Exceeded" || status == StatusCode::TOO_MANY_REQUESTS => {
            ConnectorError::RateLimited {
                retry_after: told_wait.or(Some(UNSAID_WAIT)),
            }
        }
        _ if status.is_server_error()
            || extensions["status_code"].as_u64().is_some_and(|s| s >= 500) =>
        {
            ConnectorError::Unavailable(format!("{code}: {message}"))
        }
        "" => ConnectorError::Rejected {
            code: "graphql_error".into(),
            message,
        },
        _ => ConnectorError::Rejected { code, message },
    };
    Some(failure)
}

fn first_message(answer: &Value) -> Option<String> {
    answer["errors"][0]["message"]
        .as_str()
        .or(answer["error_message"].as_str())
        .map(str::to_owned)
}

/// The daily call limit resets at midnight UTC.
fn until_midnight_utc() -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Duration::from_secs(86_400 - now % 86_400)
}

/// The id a mutation answered, or the vendor's answer is broken.
fn answered_id(object: &Value, mutation: &str) -> Result<String, ConnectorError> {
    object["id"].as_str().map(str::to_owned).ok_or_else(|| {
        ConnectorError::Unavailable(format!("monday.com answered {mutation} without an id"))
    })
}

/// The wedding's item name: the couple and the date, or the wedding's id.
fn item_name(wedding: &WeddingContext, wedding_id: &str) -> String {
    let name = match &wedding.couple_names {
        Some(couple) => format!("{couple}, {}", wedding.wedding_date),
        None => format!("Wedding {wedding_id}, {}", wedding.wedding_date),
    };
    first_chars(&name, ITEM_NAME_LENGTH)
}

/// The update: the notification (title, message) as HTML, then the synced contacts.
fn update_body(notification: &WeddingNotification, contacts: &[Synced]) -> String {
    let mut body = note_html(notification);
    if !contacts.is_empty() {
        let listed: Vec<String> = contacts
            .iter()
            .map(|c| crate::connectors::escape_html(&c.email))
            .collect();
        body.push_str(&format!("<p>Contacts: {}</p>", listed.join(", ")));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn failure(status: StatusCode, headers: &HeaderMap, answer: Value) -> ConnectorError {
        classify(status, headers, &answer).expect("a failure")
    }

    #[test]
    fn a_200_with_errors_is_a_failure_classified_by_its_code() {
        let none = HeaderMap::new();
        let error = |code: &str, message: &str| json!({"data": {"create_item": null}, "errors": [{"message": message, "extensions": {"code": code}}]});
        assert!(matches!(
            failure(StatusCode::OK, &none, error("ColumnValueException", "invalid value - label does not exist in column")),
            ConnectorError::Rejected { code, message } if code == "ColumnValueException" && message.starts_with("invalid value")
        ));
        assert!(matches!(
            failure(StatusCode::OK, &none, json!({"errors": [{"message": "Complexity budget exhausted", "extensions": {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": 7}}]})),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(7)
        ));
        let mut waiting = HeaderMap::new();
        waiting.insert("retry-after", HeaderValue::from_static("3"));
        assert!(matches!(
            failure(StatusCode::TOO_MANY_REQUESTS, &waiting, json!({"errors": [{"message": "Rate Limit Exceeded"}]})),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(3)
        ));
        assert!(matches!(
            failure(StatusCode::OK, &none, error("DAILY_LIMIT_EXCEEDED", "Daily limit exceeded")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait <= Duration::from_secs(86_400)
        ));
        // The older shape: the code at the top, the errors as strings.
        assert!(matches!(
            failure(
                StatusCode::TOO_MANY_REQUESTS,
                &none,
                json!({"error_code": "ComplexityException", "errors": ["Complexity budget exhausted"]})
            ),
            ConnectorError::RateLimited { .. }
        ));
        assert!(matches!(
            failure(StatusCode::UNAUTHORIZED, &none, json!({"errors": [{"message": "Not Authenticated"}]})),
            ConnectorError::Unauthorized(message) if message == "Not Authenticated"
        ));
        assert!(matches!(
            failure(StatusCode::INTERNAL_SERVER_ERROR, &none, Value::Null),
            ConnectorError::Unavailable(_)
        ));
        assert!(matches!(
            failure(
                StatusCode::OK,
                &none,
                json!({"errors": [{"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR", "status_code": 500}}]})
            ),
            ConnectorError::Unavailable(_)
        ));
        assert!(matches!(
            failure(StatusCode::OK, &none, Value::Null),
            ConnectorError::Unavailable(_)
        ));
        assert!(classify(StatusCode::OK, &none, &json!({"data": {"me": {"id": "1"}}})).is_none());
    }

    #[test]
    fn an_item_is_named_by_the_couple_and_the_date() {
        let wedding: WeddingContext = serde_json::from_value(
            json!({"weddingId": "w-1", "weddingDate": "2027-06-12", "coupleNames": "Sam & Alex"}),
        )
        .unwrap();
        assert_eq!(item_name(&wedding, "w-1"), "Sam & Alex, 2027-06-12");
        let unnamed: WeddingContext =
            serde_json::from_value(json!({"weddingId": "w-2", "weddingDate": "2027-07-01"}))
                .unwrap();
        assert_eq!(item_name(&unnamed, "w-2"), "Wedding w-2, 2027-07-01");
    }
}
