//! Asana (a project tool in the seed's `CRMIntegrationConnector` role) over its REST API
//! (`/api/1.0`, bodies and answers wrapped in `data`), with a personal access token or a service
//! account's token: one delivery per notification about a wedding.
//!
//! 1. The wedding's task in the project, found by the reference custom field
//!    (`wedding/<weddingId>`) with the workspace's task search, or created
//!    (`POST /tasks`: named for the couple, due on the wedding day, the reference set). The
//!    search is a premium feature and eventually consistent (10 to 60 seconds), so the tasks this
//!    connector found or made are remembered by wedding.
//! 2. A moved wedding date moves the task's due date (`PUT /tasks/{gid}`); a notification type
//!    mapped to a section moves the task there (`POST /sections/{gid}/addTask`): sections are the
//!    pipeline's stages (updateDealPipeline), and Asana rules that fire on "moved to section" or a
//!    changed due date run from them (triggerAutomationWorkflows: Asana's API starts no rule).
//! 3. The notification as a comment on the task (`POST /tasks/{gid}/stories`, the
//!    createNotificationActivities), with its contacts and links written in it: Asana keeps no
//!    contacts and Herald invites nobody into a workspace (syncNotificationToContacts).
//! 4. Each of the notification's actions that is not a link becomes a subtask in the project
//!    (`POST /tasks/{gid}/subtasks`, the reference `notification/<id>/<actionId>`), due on
//!    `metadata.asanaDueOn` or the wedding day: ticking it in Asana is the acknowledgement
//!    (`inbound.rs`).
//!
//! The comment and the subtasks a delivery made are remembered by notification, so an attempt
//! retried after a later step failed does not write them twice (within this process). A 429
//! waits its `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::{AsanaSettings, WEBHOOK_SECRET};
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    first_chars, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::{ReloadableSecret, Secret};
use crate::vault::Vault;
use crate::wedsync::{is_iso_date, NotificationAction, Priority, WeddingNotification};

/// The longest task name Herald writes (Asana's own limit is larger; a name is a line).
const NAME_LENGTH: usize = 200;
/// Subtasks made for one notification at most: each is a request.
pub const MAX_ACTION_TASKS: usize = 10;
/// Entries remembered (weddings' tasks, delivered notifications) before the memory is emptied
/// and rebuilt from Asana's answers.
const REMEMBERED: usize = 10_000;

pub struct AsanaConnector {
    integration_id: String,
    base: Url,
    token: ReloadableSecret,
    workspace: String,
    project: String,
    reference_field: String,
    sections: std::collections::BTreeMap<String, String>,
    webhook_target: Option<String>,
    vault: Option<Arc<Vault>>,
    client: OutboundClient,
    timeout: Duration,
    /// Wedding reference to its task's gid, for the tasks found or made here.
    wedding_tasks: Mutex<HashMap<String, String>>,
    /// Notification id to what its deliveries wrote so far.
    written: Mutex<HashMap<String, Written>>,
}

/// What the attempts of one notification wrote.
#[derive(Debug, Clone, Default)]
struct Written {
    story: Option<String>,
    /// Action id to its subtask's gid.
    action_tasks: HashMap<String, String>,
}

/// A wedding's task as the search or the create answered it.
struct WeddingTask {
    gid: String,
    due_on: Option<String>,
    section: Option<String>,
    /// Found in this connector's memory rather than in Asana's answer.
    remembered: bool,
}

/// Escapes `/` and `%` in a reference's parts, so `wedding/<id>` reads back unambiguously.
fn escape_part(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

fn unescape_part(part: &str) -> String {
    part.replace("%2F", "/").replace("%25", "%")
}

/// The reference of a wedding's task.
pub fn wedding_reference(wedding_id: &str) -> String {
    format!("wedding/{}", escape_part(wedding_id))
}

/// The reference of an action's subtask.
pub fn action_reference(notification_id: &str, action_id: &str) -> String {
    format!(
        "notification/{}/{}",
        escape_part(notification_id),
        escape_part(action_id)
    )
}

/// The notification and action an action subtask's reference names.
pub fn parse_action_reference(reference: &str) -> Option<(String, String)> {
    let rest = reference.strip_prefix("notification/")?;
    let (notification, action) = rest.split_once('/')?;
    if notification.is_empty() || action.is_empty() || action.contains('/') {
        return None;
    }
    Some((unescape_part(notification), unescape_part(action)))
}

impl AsanaConnector {
    pub fn new(
        settings: &AsanaSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = client.check_url(&format!("{}/", settings.base_url.trim_end_matches('/')))?;
        Ok(Self {
            integration_id: integration_id.to_owned(),
            base,
            token: ReloadableSecret::load(&settings.token)
                .map_err(ConnectorError::Misconfigured)?,
            workspace: settings.workspace.clone(),
            project: settings.project.clone(),
            reference_field: settings.reference_field.clone(),
            sections: settings.sections.clone(),
            webhook_target: settings.webhooks.as_ref().map(|webhooks| {
                format!(
                    "{}/inbound/asana/{integration_id}/events",
                    webhooks.public_url.trim_end_matches('/')
                )
            }),
            vault,
            client,
            timeout,
            wedding_tasks: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        })
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let (context, wedding_id) = notification
            .wedding_context
            .as_ref()
            .and_then(|context| context.wedding_id.as_deref().map(|id| (context, id)))
            .ok_or_else(|| ConnectorError::Rejected {
                code: "no_wedding".into(),
                message: "weddingContext.weddingId is missing: Asana keeps one task per wedding"
                    .into(),
            })?;
        let action_due_on = action_due_on(notification)?;
        let reference = wedding_reference(wedding_id);
        let (task, created) = match self.find_wedding_task(&reference).await? {
            Some(task) => (task, false),
            None => (
                self.create_wedding_task(notification, &reference).await?,
                true,
            ),
        };
        match self
            .write(notification, &task, created, action_due_on.as_deref())
            .await
        {
            // The remembered task was deleted in Asana: forget it, and the retry searches again.
            Err(ConnectorError::Rejected { code, message }) if code == "404" && task.remembered => {
                self.lock_tasks().remove(&reference);
                Err(ConnectorError::Unavailable(format!(
                    "the wedding's task {} is gone from Asana ({message}); it is found or made again on the next attempt",
                    task.gid
                )))
            }
            Err(other) => Err(other),
            Ok(mut details) => {
                details["dueOn"] = json!(context.wedding_date);
                let story = details["storyGid"].as_str().unwrap_or_default().to_owned();
                Ok(Receipt {
                    id: format!("task {}; story {story}", task.gid),
                    details: Some(details),
                })
            }
        }
    }

    /// Everything after the wedding's task is known: its date and section, the comment, the
    /// action subtasks. Answers the receipt's details.
    async fn write(
        &self,
        notification: &WeddingNotification,
        task: &WeddingTask,
        created: bool,
        action_due_on: Option<&str>,
    ) -> Result<Value, ConnectorError> {
        let wedding_date = notification
            .wedding_context
            .as_ref()
            .map(|context| context.wedding_date.as_str())
            .unwrap_or_default();
        let mut due_moved = false;
        if !created && task.due_on.as_deref() != Some(wedding_date) {
            self.call(
                Method::PUT,
                &format!("tasks/{}", task.gid),
                &[],
                Some(json!({"due_on": wedding_date})),
            )
            .await?;
            due_moved = true;
        }
        let mut section_moved = None;
        if let Some(section) = self.sections.get(&notification.notification_type) {
            if task.section.as_ref() != Some(section) {
                self.call(
                    Method::POST,
                    &format!("sections/{section}/addTask"),
                    &[],
                    Some(json!({"task": task.gid})),
                )
                .await?;
                section_moved = Some(section.clone());
            }
        }
        let mut written = self.written_for(&notification.notification_id);
        let story = match &written.story {
            Some(story) => story.clone(),
            None => {
                let story = self
                    .call(
                        Method::POST,
                        &format!("tasks/{}/stories", task.gid),
                        &[],
                        Some(json!({"text": story_text(notification)})),
                    )
                    .await?;
                let gid = gid_of(&story)?;
                written.story = Some(gid.clone());
                self.remember_written(&notification.notification_id, &written);
                gid
            }
        };
        let due_on = action_due_on.unwrap_or(wedding_date);
        let mut action_tasks = Vec::new();
        for action in task_actions(notification) {
            let gid = match written.action_tasks.get(&action.action_id) {
                Some(gid) => gid.clone(),
                None => {
                    let subtask = self
                        .call(
                            Method::POST,
                            &format!("tasks/{}/subtasks", task.gid),
                            &[],
                            Some(json!({
                                "name": first_chars(&format!("{}: {}", action.label, notification.title), NAME_LENGTH),
                                "notes": notification.message,
                                "due_on": due_on,
                                "projects": [self.project],
                                "custom_fields": {
                                    self.reference_field.as_str(): action_reference(&notification.notification_id, &action.action_id)
                                },
                            })),
                        )
                        .await?;
                    let gid = gid_of(&subtask)?;
                    written
                        .action_tasks
                        .insert(action.action_id.clone(), gid.clone());
                    self.remember_written(&notification.notification_id, &written);
                    gid
                }
            };
            action_tasks
                .push(json!({"actionId": action.action_id, "taskGid": gid, "dueOn": due_on}));
        }
        // The seed's syncNotificationToContacts, as far as Asana goes: each contact is kept in
        // the comment on the wedding's task (Asana has no contacts to sync to).
        let total = notification.contacts.len();
        let kept = contact_lines(notification).len();
        Ok(json!({
            "totalContacts": total,
            "successfulSyncs": kept,
            "failedSyncs": total - kept,
            "contactsKeptIn": "comment",
            "taskGid": task.gid,
            "taskCreated": created,
            "dueDateMoved": due_moved,
            "movedToSection": section_moved,
            "storyGid": story,
            "actionTasks": action_tasks,
        }))
    }

    /// The wedding's task: remembered, or the oldest the search finds with the reference.
    async fn find_wedding_task(
        &self,
        reference: &str,
    ) -> Result<Option<WeddingTask>, ConnectorError> {
        let remembered = self.lock_tasks().get(reference).cloned();
        if let Some(gid) = remembered {
            // Remembered tasks are read, not searched: the read is consistent, the search is not.
            let task = self
                .call(
                    Method::GET,
                    &format!("tasks/{gid}"),
                    &[(
                        "opt_fields",
                        "due_on,memberships.project,memberships.section",
                    )],
                    None,
                )
                .await;
            match task {
                Ok(task) => {
                    return Ok(Some(WeddingTask {
                        remembered: true,
                        ..self.wedding_task(&task["data"])?
                    }))
                }
                Err(ConnectorError::Rejected { code, .. }) if code == "404" => {
                    self.lock_tasks().remove(reference);
                }
                Err(other) => return Err(other),
            }
        }
        let field = format!("custom_fields.{}.value", self.reference_field);
        let found = self
            .call(
                Method::GET,
                &format!("workspaces/{}/tasks/search", self.workspace),
                &[
                    ("projects.any", self.project.as_str()),
                    (field.as_str(), reference),
                    (
                        "opt_fields",
                        "name,due_on,memberships.project,memberships.section",
                    ),
                    ("sort_by", "created_at"),
                    ("sort_ascending", "true"),
                    ("limit", "1"),
                ],
                None,
            )
            .await?;
        let Some(task) = found["data"].as_array().and_then(|tasks| tasks.first()) else {
            return Ok(None);
        };
        let task = self.wedding_task(task)?;
        self.remember_task(reference, &task.gid);
        Ok(Some(task))
    }

    async fn create_wedding_task(
        &self,
        notification: &WeddingNotification,
        reference: &str,
    ) -> Result<WeddingTask, ConnectorError> {
        let context = notification.wedding_context.as_ref();
        let date = context.map(|c| c.wedding_date.as_str()).unwrap_or_default();
        let who = context
            .and_then(|c| c.couple_names.clone())
            .unwrap_or_else(|| {
                format!(
                    "Wedding {}",
                    context.and_then(|c| c.wedding_id.as_deref()).unwrap_or("")
                )
            });
        let mut notes = format!("WedSync wedding on {date}");
        if let Some(venue) = context.and_then(|c| c.venue.as_deref()) {
            notes.push_str(&format!(" at {venue}"));
        }
        notes.push_str(
            ". Herald keeps this task: WedSync notifications arrive as comments, actions as subtasks.",
        );
        let created = self
            .call(
                Method::POST,
                "tasks",
                &[(
                    "opt_fields",
                    "due_on,memberships.project,memberships.section",
                )],
                Some(json!({
                    "name": first_chars(&format!("{who} · {date}"), NAME_LENGTH),
                    "notes": notes,
                    "due_on": date,
                    "projects": [self.project],
                    "custom_fields": {self.reference_field.as_str(): reference},
                })),
            )
            .await?;
        let task = self.wedding_task(&created["data"])?;
        self.remember_task(reference, &task.gid);
        Ok(task)
    }

    /// A task of Asana's answer, with its section in this project.
    fn wedding_task(&self, task: &Value) -> Result<WeddingTask, ConnectorError> {
        let section = task["memberships"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|membership| membership["project"]["gid"].as_str() == Some(&self.project))
            .and_then(|membership| membership["section"]["gid"].as_str())
            .map(str::to_owned);
        let gid = task["gid"].as_str().ok_or_else(|| {
            ConnectorError::Unavailable("Asana answered a task without its gid".into())
        })?;
        Ok(WeddingTask {
            gid: gid.to_owned(),
            due_on: task["due_on"].as_str().map(str::to_owned),
            section,
            remembered: false,
        })
    }

    /// The seed's establishConnection: who the token is, and that it sees the workspace and the
    /// project (`GET /users/me`, `GET /projects/{gid}`).
    async fn establish_connection(&self) -> Result<Value, ConnectorError> {
        let me = self
            .call(
                Method::GET,
                "users/me",
                &[("opt_fields", "name,email,workspaces.name")],
                None,
            )
            .await?;
        let user = &me["data"];
        let workspace = user["workspaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|workspace| workspace["gid"].as_str() == Some(&self.workspace))
            .ok_or_else(|| ConnectorError::Rejected {
                code: "workspace".into(),
                message: format!(
                    "the token's user is not a member of workspace {}",
                    self.workspace
                ),
            })?;
        let project = self
            .call(
                Method::GET,
                &format!("projects/{}", self.project),
                &[("opt_fields", "name,custom_field_settings.custom_field")],
                None,
            )
            .await?;
        let has_field = project["data"]["custom_field_settings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|setting| setting["custom_field"]["gid"].as_str() == Some(&self.reference_field));
        if !has_field {
            return Err(ConnectorError::Rejected {
                code: "reference_field".into(),
                message: format!(
                    "custom field {} is not on project {}: add it to the project so Herald can find its tasks",
                    self.reference_field, self.project
                ),
            });
        }
        Ok(json!({
            "userGid": user["gid"],
            "userName": user["name"],
            "workspace": {"gid": self.workspace, "name": workspace["name"]},
            "project": {"gid": self.project, "name": project["data"]["name"]},
            "referenceField": self.reference_field,
        }))
    }

    /// A webhook on the project for completed tasks, to Herald's inbound address; Asana's
    /// secret from the answer kept sealed in the vault. A webhook Asana already has to this
    /// address is kept when its secret is; otherwise it is made again.
    async fn subscribe(&self) -> Result<Value, ConnectorError> {
        let (Some(target), Some(vault)) = (&self.webhook_target, &self.vault) else {
            return Err(ConnectorError::Rejected {
                code: "no_rest_hooks".into(),
                message: "settings.webhooks is not configured for this integration".into(),
            });
        };
        let existing = self
            .call(
                Method::GET,
                "webhooks",
                &[
                    ("workspace", self.workspace.as_str()),
                    ("resource", self.project.as_str()),
                    ("opt_fields", "target,active"),
                ],
                None,
            )
            .await?;
        let kept_secret = vault
            .get(&self.integration_id, WEBHOOK_SECRET)
            .await
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        let ours: Vec<&Value> = existing["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|hook| hook["target"].as_str() == Some(target))
            .collect();
        if let (Some(hook), Some(_)) = (ours.first(), &kept_secret) {
            if hook["active"].as_bool() != Some(false) {
                return Ok(json!({"subscriptions": [{
                    "webhookGid": hook["gid"], "resource": self.project, "target": target, "status": "existing"
                }]}));
            }
        }
        // A webhook whose secret Herald no longer has cannot be verified: replace it.
        for hook in ours {
            if let Some(gid) = hook["gid"].as_str() {
                self.call(Method::DELETE, &format!("webhooks/{gid}"), &[], None)
                    .await?;
            }
        }
        let created = self
            .call(
                Method::POST,
                "webhooks",
                &[],
                Some(json!({
                    "resource": self.project,
                    "target": target,
                    "filters": [{"resource_type": "task", "action": "changed", "fields": ["completed"]}],
                })),
            )
            .await?;
        let secret = created["X-Hook-Secret"]
            .as_str()
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| {
                ConnectorError::Unavailable(
                    "Asana made the webhook without answering its X-Hook-Secret".into(),
                )
            })?;
        vault
            .put(
                &self.integration_id,
                WEBHOOK_SECRET,
                &Secret::new(secret.to_owned()),
                None,
            )
            .await
            .map_err(|err| {
                ConnectorError::Unavailable(format!("the secret was not kept: {err}"))
            })?;
        Ok(json!({"subscriptions": [{
            "webhookGid": created["data"]["gid"], "resource": self.project, "target": target, "status": "created"
        }]}))
    }

    /// A task as the inbound handler reads it: whether it is complete, who completed it, and
    /// its reference.
    pub async fn read_completion(
        &self,
        task_gid: &str,
    ) -> Result<Option<(String, String, String)>, ConnectorError> {
        let task = self
            .call(
                Method::GET,
                &format!("tasks/{task_gid}"),
                &[(
                    "opt_fields",
                    "completed,completed_by.name,custom_fields.text_value",
                )],
                None,
            )
            .await?;
        let task = &task["data"];
        if task["completed"].as_bool() != Some(true) {
            return Ok(None);
        }
        let reference = task["custom_fields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|field| field["gid"].as_str() == Some(&self.reference_field))
            .and_then(|field| field["text_value"].as_str());
        let Some((notification, action)) = reference.and_then(parse_action_reference) else {
            return Ok(None);
        };
        let by = &task["completed_by"];
        let actor = by["name"]
            .as_str()
            .or(by["gid"].as_str())
            .unwrap_or("someone in Asana")
            .to_owned();
        Ok(Some((notification, action, actor)))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        data: Option<Value>,
    ) -> Result<Value, ConnectorError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout)
            .bearer_auth(self.token.get().expose());
        if let Some(data) = data {
            request = request.json(&json!({ "data": data }));
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }

    fn written_for(&self, notification_id: &str) -> Written {
        self.written
            .lock()
            .expect("asana memory")
            .get(notification_id)
            .cloned()
            .unwrap_or_default()
    }

    fn remember_written(&self, notification_id: &str, written: &Written) {
        let mut memory = self.written.lock().expect("asana memory");
        if memory.len() >= REMEMBERED {
            memory.clear();
        }
        memory.insert(notification_id.to_owned(), written.clone());
    }

    fn remember_task(&self, reference: &str, gid: &str) {
        let mut tasks = self.lock_tasks();
        if tasks.len() >= REMEMBERED {
            tasks.clear();
        }
        tasks.insert(reference.to_owned(), gid.to_owned());
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.wedding_tasks.lock().expect("asana memory")
    }
}

impl Connector for AsanaConnector {
    fn vendor(&self) -> &'static str {
        "asana"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// The search (or read), the create or date move (charged whether or not the date moved),
    /// the section move when the type maps to one, the comment, and a request per action subtask.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        3 + u32::from(self.sections.contains_key(&notification.notification_type))
            + task_actions(notification).count() as u32
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Asana")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.establish_connection())
    }

    fn subscribe_to_events(&self) -> CheckFuture<'_> {
        Box::pin(self.subscribe())
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.token.reload().map_err(ConnectorError::Misconfigured)
    }
}

/// A refused request, classified from Asana's status and `{errors: [{message, help, phrase}]}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let messages: Vec<&str> = answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["message"].as_str())
        .collect();
    let message = if messages.is_empty() {
        format!("Asana answered {status} without its error body")
    } else {
        messages.join("; ")
    };
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 => ConnectorError::Unauthorized(message),
        500..=599 => {
            let phrase = answer["errors"][0]["phrase"]
                .as_str()
                .map(|phrase| format!(" (phrase {phrase:?} for Asana's support)"))
                .unwrap_or_default();
            ConnectorError::Unavailable(format!("{status}: {message}{phrase}"))
        }
        402 => ConnectorError::Rejected {
            code: "402".into(),
            message: format!("{message} (Asana's task search needs a premium workspace or team)"),
        },
        other => ConnectorError::Rejected {
            code: other.to_string(),
            message,
        },
    }
}

fn gid_of(answer: &Value) -> Result<String, ConnectorError> {
    answer["data"]["gid"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            ConnectorError::Unavailable("Asana answered without the object's gid".into())
        })
}

/// The actions that become subtasks: those without a link (a link is written in the comment).
fn task_actions(notification: &WeddingNotification) -> impl Iterator<Item = &NotificationAction> {
    notification
        .actions
        .iter()
        .filter(|action| action.url.is_none())
        .take(MAX_ACTION_TASKS)
}

/// `metadata.asanaDueOn`, the action subtasks' due date when WedSync names one.
fn action_due_on(notification: &WeddingNotification) -> Result<Option<String>, ConnectorError> {
    match notification.metadata.get("asanaDueOn") {
        None => Ok(None),
        Some(Value::String(date)) if is_iso_date(date) => Ok(Some(date.clone())),
        Some(other) => Err(ConnectorError::Rejected {
            code: "invalid_metadata".into(),
            message: format!("metadata.asanaDueOn must be a date (YYYY-MM-DD), not {other}"),
        }),
    }
}

/// The notification's contacts as lines of the comment (name, email, phone); a contact naming
/// none of them has no line.
fn contact_lines(notification: &WeddingNotification) -> Vec<String> {
    notification
        .contacts
        .iter()
        .map(|contact| {
            [
                contact.name.as_deref(),
                contact.email.as_deref(),
                contact.phone.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        })
        .filter(|line| !line.is_empty())
        .collect()
}

/// The comment: the title, the message, the priority when it is pressing, the contacts and
/// the links.
fn story_text(notification: &WeddingNotification) -> String {
    let mut text = format!("{}\n\n{}", notification.title, notification.message);
    if matches!(notification.priority, Priority::High | Priority::Emergency) {
        text.push_str(&format!("\n\nPriority: {}", notification.priority.as_str()));
    }
    let contacts = contact_lines(notification);
    if !contacts.is_empty() {
        text.push_str("\n\nContacts:\n");
        text.push_str(&contacts.join("\n"));
    }
    for action in &notification.actions {
        if let Some(url) = &action.url {
            text.push_str(&format!("\n{}: {url}", action.label));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::StatusCode;

    #[test]
    fn references_read_back_whatever_the_ids_hold() {
        assert_eq!(wedding_reference("w-1"), "wedding/w-1");
        let reference = action_reference("n/1%2F", "ack/now");
        assert_eq!(reference, "notification/n%2F1%252F/ack%2Fnow");
        assert_eq!(
            parse_action_reference(&reference),
            Some(("n/1%2F".to_owned(), "ack/now".to_owned()))
        );
        assert_eq!(parse_action_reference("wedding/w-1"), None);
        assert_eq!(parse_action_reference("notification/n-1"), None);
        assert_eq!(parse_action_reference("notification/n-1/a/b"), None);
    }

    #[test]
    fn asanas_errors_are_classified() {
        let body = |message: &str| json!({"errors": [{"message": message, "help": "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors"}]});
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, &body("You have made too many requests recently.")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &headers, &body("Not Authorized")),
            ConnectorError::Unauthorized(message) if message == "Not Authorized"
        ));
        assert!(matches!(
            classify(StatusCode::PAYMENT_REQUIRED, &headers, &body("Payment Required")),
            ConnectorError::Rejected { code, message } if code == "402" && message.contains("premium")
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &headers, &body("due_on: Invalid date")),
            ConnectorError::Rejected { code, message } if code == "400" && message == "due_on: Invalid date"
        ));
        let mut server_error = body("Server Error");
        server_error["errors"][0]["phrase"] = json!("6 sad squid snuggle softly");
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &headers, &server_error),
            ConnectorError::Unavailable(message) if message.contains("6 sad squid snuggle softly")
        ));
    }

    #[test]
    fn the_comment_carries_contacts_and_links_and_subtasks_the_rest() {
        let notification: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n-1", "type": "timeline_change", "priority": "high",
            "title": "Ceremony moved", "message": "Now 15:30",
            "contacts": [{"name": "Sam Taylor", "email": "sam@example.com"}],
            "actions": [
                {"actionId": "ack", "label": "Confirm the new time"},
                {"actionId": "view", "label": "Open the timeline", "url": "https://wedsync.example/t/1"}
            ]
        }))
        .unwrap();
        assert_eq!(
            story_text(&notification),
            "Ceremony moved\n\nNow 15:30\n\nPriority: high\n\nContacts:\nSam Taylor, sam@example.com\nOpen the timeline: https://wedsync.example/t/1"
        );
        let actions: Vec<&str> = task_actions(&notification)
            .map(|action| action.action_id.as_str())
            .collect();
        assert_eq!(actions, ["ack"]);
    }
}
