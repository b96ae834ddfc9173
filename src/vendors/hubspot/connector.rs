//! HubSpot CRM (the seed's `CRMIntegrationConnector`), over CRM v3 with a private-app token or
//! an OAuth 2 app (refresh-token grant at `/oauth/v3/token`, refreshed before expiry and on a
//! refused token): `syncNotificationToContacts` as one delivery.
//!
//! 1. Once per connector: the `wedding_information` property group and the wedding properties on
//!    contacts (`POST /crm/v3/properties/contacts/groups`, `.../batch/create`); "already exists"
//!    is fine, anything else fails the delivery.
//! 2. `POST /crm/v3/objects/contacts/batch/read` by email, for each contact's notification history.
//! 3. `POST /crm/v3/objects/contacts/batch/upsert` by email: wedding date and venue,
//!    `last_notification_sent`, and `notification_history` keeping the last 10 entries.
//! 4. `POST /crm/v3/objects/notes/batch/create`: one note per contact, associated with it
//!    (HubSpot-defined association type 202), and with the deal (214) and company (190) named
//!    in `metadata.hubspotDealId` / `metadata.hubspotCompanyId`.
//!
//! When the metadata also names `hubspotDealStage`, the deal moves there first
//! (`PATCH /crm/v3/objects/deals/{id}`: updateDealPipeline), so a refused stage stops the sync
//! before anything is written. Batch endpoints throughout: three requests per notification (four
//! with a deal move) however many contacts it names (up to 100).
//!
//! A notification with actions also becomes a HubSpot task (`create_task`). With
//! `metadata.hubspotWorkflowId`, each contact is then enrolled in that contact-based
//! workflow (triggerAutomationWorkflows; see `enroll`).
//!
//! An OAuth app is installed elsewhere (its refresh token in the configuration) or through
//! Herald: [`authorize_url`] is HubSpot's consent page for the person installing, and
//! [`Connector::complete_install`] exchanges the authorization code HubSpot sends back
//! (`grant_type=authorization_code`) for the portal's tokens, keeping the refresh token sealed in
//! the vault.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::HubSpotSettings;
use crate::connectors::http::{classify_status, retry_after, transport_error, OutboundClient};
use crate::connectors::oauth::{authorization_url, InstallGrant, OAuthSession, RefreshToken};
use crate::connectors::{
    escape_html, note_html, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::wedsync::{Priority, WeddingNotification};

/// The scopes Herald's HubSpot sync and webhooks need (deals are read to name a deal an event is
/// about); an app installed through Herald asks for these unless
/// `oauth.scopes` says otherwise.
pub const HUBSPOT_SCOPES: &[&str] = &[
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
];

/// The scopes asked for as optional (HubSpot's `optional_scope`): workflow enrolments need
/// `automation`, which not every portal can grant; HubSpot drops an optional scope the portal
/// cannot grant and the install still succeeds (the connection check's `workflowsAllowed` says
/// whether it was granted).
pub const HUBSPOT_OPTIONAL_SCOPES: &[&str] = &["automation"];

/// How long Herald waits before trying again once a private app's daily allowance is spent.
/// HubSpot resets it at midnight in the account's time zone, which the API does not tell a
/// private app, so Herald tries hourly (bounded by the integration's `retry.max_retry_after`).
const DAILY_LIMIT_RETRY: Duration = Duration::from_secs(3600);

/// A 429. HubSpot documents its windows in `X-HubSpot-RateLimit-*` headers, not a wait: a
/// `Retry-After`, where one comes, is honoured; a spent daily allowance (`policyName: DAILY`)
/// waits [`DAILY_LIMIT_RETRY`]; the rolling ten seconds leave the wait to the retry policy.
fn rate_limited(headers: &reqwest::header::HeaderMap, body: &str) -> ConnectorError {
    let daily =
        serde_json::from_str::<Value>(body).is_ok_and(|answer| answer["policyName"] == "DAILY");
    ConnectorError::RateLimited {
        retry_after: retry_after(headers).or(daily.then_some(DAILY_LIMIT_RETRY)),
    }
}

/// The property group Herald's contact properties live in.
const WEDDING_GROUP: &str = "wedding_information";

/// Herald's contact properties: (name, label, type, fieldType).
const WEDDING_PROPERTIES: &[(&str, &str, &str, &str)] = &[
    ("wedding_date", "Wedding date", "date", "date"),
    ("wedding_venue", "Wedding venue", "string", "text"),
    ("wedding_package_type", "Wedding package", "string", "text"),
    ("wedding_status", "Wedding status", "string", "text"),
    (
        "last_notification_sent",
        "Last WedSync notification",
        "datetime",
        "date",
    ),
    (
        "notification_preferences",
        "Notification preferences",
        "string",
        "text",
    ),
    (
        "notification_history",
        "Notification history",
        "string",
        "textarea",
    ),
];

/// How many entries `notification_history` keeps.
const HISTORY_ENTRIES: usize = 10;

/// HubSpot takes at most 100 inputs per batch call.
const MAX_BATCH: usize = 100;

/// HubSpot's default association type from a note to a contact.
const NOTE_TO_CONTACT: u32 = 202;
/// HubSpot's default association type from a note to a company.
const NOTE_TO_COMPANY: u32 = 190;
/// HubSpot's default association type from a note to a deal.
const NOTE_TO_DEAL: u32 = 214;
/// HubSpot's default association types from a task to a contact, a company and a deal.
const TASK_TO_CONTACT: u32 = 204;
const TASK_TO_COMPANY: u32 = 192;
const TASK_TO_DEAL: u32 = 216;

pub struct HubSpotConnector {
    integration_id: String,
    base: Url,
    credential: Credential,
    client: OutboundClient,
    timeout: Duration,
    properties_ready: AtomicBool,
    /// Whether the integration takes HubSpot's webhooks, whose events are read (deals too).
    takes_webhooks: bool,
}

/// The scope only an integration taking webhooks needs.
const WEBHOOK_SCOPE: &str = "crm.objects.deals.read";

/// How requests are authorized.
enum Credential {
    PrivateApp(ReloadableSecret),
    OAuth(Box<OAuthSession>),
}

/// The vault's name for the refresh token of an app installed through Herald.
const KEPT_REFRESH_TOKEN: &str = "hubspot_refresh_token";

/// HubSpot's consent page for installing the app, carrying `state` back to the callback; `None`
/// when the app is not installed through Herald (no `redirect_uri`).
pub fn authorize_url(
    settings: &HubSpotSettings,
    state: &str,
    code_challenge: Option<&str>,
) -> Option<String> {
    let oauth = settings.oauth.as_ref()?;
    let consent = authorization_url(
        &oauth.authorize_url,
        &oauth.client_id,
        oauth.redirect_uri.as_ref()?,
        &oauth.scopes,
        state,
        code_challenge,
    )?;
    if oauth.optional_scopes.is_empty() {
        return Some(consent);
    }
    let mut consent = Url::parse(&consent).ok()?;
    consent
        .query_pairs_mut()
        .append_pair("optional_scope", &oauth.optional_scopes.join(" "));
    Some(consent.into())
}

impl HubSpotConnector {
    pub fn new(
        settings: &HubSpotSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = client.check_url(settings.base_url.trim_end_matches('/'))?;
        let credential = match (&settings.token, &settings.oauth) {
            (Some(token), None) => Credential::PrivateApp(
                ReloadableSecret::load(token).map_err(ConnectorError::Misconfigured)?,
            ),
            (None, Some(oauth)) => Credential::OAuth(Box::new(OAuthSession::new(
                "HubSpot",
                base.join("/oauth/v3/token")
                    .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?,
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
            ))),
            _ => {
                return Err(ConnectorError::Misconfigured(
                    "set either token (a private app) or oauth (a public app), not both".into(),
                ))
            }
        };
        Ok(Self {
            integration_id: integration_id.to_owned(),
            base,
            credential,
            client,
            timeout,
            properties_ready: AtomicBool::new(false),
            takes_webhooks: settings.webhooks.is_some(),
        })
    }

    /// The bearer token for the next request: the private app's, or a live OAuth access token.
    async fn bearer(&self) -> Result<String, ConnectorError> {
        match &self.credential {
            Credential::PrivateApp(token) => Ok(token.get().expose().to_owned()),
            Credential::OAuth(session) => session.access_token(&self.client, self.timeout).await,
        }
    }

    /// Exchanges the authorization code of an install through Herald for the portal's tokens
    /// and keeps the refresh token in the vault.
    async fn install(&self, grant: &InstallGrant) -> Result<Value, ConnectorError> {
        let Credential::OAuth(session) = &self.credential else {
            return Err(ConnectorError::Rejected {
                code: "not_installable".into(),
                message: "this integration's HubSpot app is not installed through Herald (it needs oauth.redirect_uri and no oauth.refresh_token)".into(),
            });
        };
        session
            .complete_install(&self.client, self.timeout, grant)
            .await?;
        Ok(json!({"installed": true}))
    }

    async fn sync(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let emails = notification.contact_emails(MAX_BATCH);
        if emails.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "no_contacts".into(),
                message: "the notification names no contact with an email, so there is nothing to sync in HubSpot".into(),
            });
        }
        self.ensure_wedding_properties().await?;
        // The note also goes on the wedding's deal and company when the notification names them.
        let deal = metadata_id(notification, "hubspotDealId")?;
        let company = metadata_id(notification, "hubspotCompanyId")?;
        let workflow = metadata_id(notification, "hubspotWorkflowId")?;
        let flow = metadata_id(notification, "hubspotFlowId")?;
        // updateDealPipeline first: a stage HubSpot refuses stops the sync before anything else
        // is written (and a retry repeats the same, idempotent move).
        let stage = notification
            .metadata
            .get("hubspotDealStage")
            .and_then(Value::as_str);
        // The seed's affectsDealStage asks for a deal move; without the deal and the stage to
        // move it to, the move cannot happen, and is refused rather than skipped.
        if notification.affects_deal_stage() && (deal.is_none() || stage.is_none()) {
            return Err(ConnectorError::Rejected {
                code: "no_deal_stage".into(),
                message: "metadata.affectsDealStage is true, but metadata.hubspotDealId and hubspotDealStage do not both name the deal and the stage to move it to".into(),
            });
        }
        let moved = match (&deal, stage) {
            (Some(deal), Some(stage)) => {
                let (status, answer) = self
                    .request(
                        Method::PATCH,
                        &format!("/crm/v3/objects/deals/{deal}"),
                        Some(&json!({"properties": {"dealstage": stage}})),
                    )
                    .await?;
                if !status.is_success() {
                    return Err(self.error(status, answer));
                }
                Some(json!({"dealId": deal, "dealstage": stage}))
            }
            _ => None,
        };
        let histories = self.read_histories(&emails).await?;
        let entry = history_entry(notification);
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let upserts: Vec<Value> = emails
            .iter()
            .map(|email| {
                let mut properties = json!({
                    "email": email,
                    "last_notification_sent": now,
                    "notification_history": extend_history(histories.get(email).map(String::as_str), &entry),
                });
                if let Some(wedding) = &notification.wedding_context {
                    properties["wedding_date"] = json!(wedding.wedding_date);
                    if let Some(venue) = &wedding.venue {
                        properties["wedding_venue"] = json!(venue);
                    }
                }
                json!({"idProperty": "email", "id": email, "properties": properties})
            })
            .collect();
        let upserted = self
            .post(
                "/crm/v3/objects/contacts/batch/upsert",
                &json!({"inputs": upserts}),
            )
            .await?;
        // Batch results are not promised in input order: match them back by email.
        let ids_by_email: HashMap<String, String> = results(&upserted)
            .filter_map(|r| {
                Some((
                    r["properties"]["email"].as_str()?.to_lowercase(),
                    r["id"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let contact_ids: Vec<String> = emails
            .iter()
            .filter_map(|email| ids_by_email.get(email).cloned())
            .collect();
        if contact_ids.len() != emails.len() {
            return Err(ConnectorError::Rejected {
                code: "partial_upsert".into(),
                message: format!(
                    "HubSpot updated {} of {} contacts: {}",
                    contact_ids.len(),
                    emails.len(),
                    upserted["errors"]
                ),
            });
        }
        let body = note_html(notification);
        let link = |id: &str, association_type: u32| json!({"to": {"id": id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": association_type}]});
        let notes: Vec<Value> = contact_ids
            .iter()
            .map(|contact| {
                let mut associations = vec![link(contact, NOTE_TO_CONTACT)];
                associations.extend(deal.as_deref().map(|id| link(id, NOTE_TO_DEAL)));
                associations.extend(company.as_deref().map(|id| link(id, NOTE_TO_COMPANY)));
                json!({"properties": {"hs_timestamp": now, "hs_note_body": body}, "associations": associations})
            })
            .collect();
        let created = self
            .post(
                "/crm/v3/objects/notes/batch/create",
                &json!({"inputs": notes}),
            )
            .await?;
        let note_ids: Vec<&str> = results(&created).filter_map(|r| r["id"].as_str()).collect();
        // A 207 Multi-Status creates some notes and lists why the others failed. None created
        // means the activity did not happen: refused with HubSpot's reasons. Some created is
        // delivered, and the receipt says how many notes are missing and why.
        let note_errors = batch_errors(&created);
        if note_ids.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "notes_not_created".into(),
                message: format!(
                    "HubSpot created none of the {} notes: {}",
                    notes.len(),
                    note_errors.join("; ")
                ),
            });
        }
        let task = match notification.actions.is_empty() {
            true => None,
            false => {
                let mut associations: Vec<Value> = contact_ids
                    .iter()
                    .map(|contact| link(contact, TASK_TO_CONTACT))
                    .collect();
                associations.extend(deal.as_deref().map(|id| link(id, TASK_TO_DEAL)));
                associations.extend(company.as_deref().map(|id| link(id, TASK_TO_COMPANY)));
                Some(self.create_task(notification, associations).await)
            }
        };
        let enrollments = match (workflow, flow) {
            (Some(workflow), _) => Some(self.enroll(&workflow, &emails).await),
            (None, Some(flow)) => Some(match self.workflow_of_flow(&flow).await {
                Ok(workflow) => self.enroll(&workflow, &emails).await,
                Err(reason) => emails
                    .iter()
                    .map(|email| json!({"email": email, "status": "failed", "error": reason}))
                    .collect(),
            }),
            (None, None) => None,
        };
        let contacts: Vec<Value> = emails
            .iter()
            .zip(&contact_ids)
            .map(|(email, contact)| json!({"email": email, "contactId": contact, "status": "synced"}))
            .collect();
        Ok(Receipt {
            id: format!(
                "contacts {}; notes {}",
                contact_ids.join(","),
                note_ids.join(",")
            ),
            details: Some(json!({
                "notesRequested": contact_ids.len(),
                "notesCreated": note_ids.len(),
                "noteErrors": note_errors,
                "totalContacts": emails.len(),
                "successfulSyncs": contacts.len(),
                "failedSyncs": emails.len() - contacts.len(),
                "contacts": contacts,
                "noteIds": note_ids,
                "dealStage": moved,
                "task": task,
                "workflowEnrollments": enrollments,
            })),
        })
    }

    /// createNotificationActivities beyond the notes: a notification that asks for actions
    /// becomes one HubSpot task for the team (`POST /crm/v3/objects/tasks/batch/create`), its
    /// subject the title, its body the message and the actions, its priority the
    /// notification's, due at `metadata.hubspotTaskDue` (RFC 3339) or a day from now, on every
    /// contact and on the deal and company. Like an enrolment, it is written after the notes, so
    /// a refusal is reported (`details.task`), not retried.
    async fn create_task(
        &self,
        notification: &WeddingNotification,
        associations: Vec<Value>,
    ) -> Value {
        let due = notification
            .metadata
            .get("hubspotTaskDue")
            .and_then(Value::as_str)
            .and_then(|due| humantime::parse_rfc3339_weak(due).ok())
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(24 * 3600));
        let priority = match notification.priority {
            Priority::Emergency | Priority::High => "HIGH",
            Priority::Normal => "MEDIUM",
            Priority::Low => "LOW",
        };
        let actions: Vec<String> = notification
            .actions
            .iter()
            .map(|action| format!("<li>{}</li>", escape_html(&action.label)))
            .collect();
        let body = format!("{}<ul>{}</ul>", note_html(notification), actions.concat());
        let task = json!({"properties": {
            "hs_timestamp": humantime::format_rfc3339_millis(due).to_string(),
            "hs_task_subject": notification.title, "hs_task_body": body,
            "hs_task_status": "NOT_STARTED", "hs_task_priority": priority, "hs_task_type": "TODO",
        }, "associations": associations});
        match self
            .post(
                "/crm/v3/objects/tasks/batch/create",
                &json!({"inputs": [task]}),
            )
            .await
        {
            Ok(created) => match results(&created).next().and_then(|r| r["id"].as_str()) {
                Some(id) => json!({"status": "created", "taskId": id}),
                // A 207 whose one input failed.
                None => json!({"status": "failed", "error": batch_errors(&created).join("; ")}),
            },
            Err(error) => json!({"status": "failed", "error": error.to_string()}),
        }
    }

    /// triggerAutomationWorkflows, as far as HubSpot's public API goes: enrols each contact in
    /// the contact-based workflow named by `metadata.hubspotWorkflowId` (`POST
    /// /automation/v2/workflows/{id}/enrollments/contacts/{email}`, one request per contact;
    /// there is no batch enrolment, and the token needs the `automation` scope). It runs after
    /// the notes are written, so a refusal is reported per contact, not retried: a retry would
    /// write the notes again.
    async fn enroll(&self, workflow: &str, emails: &[String]) -> Vec<Value> {
        let mut enrollments = Vec::with_capacity(emails.len());
        for email in emails {
            let path = format!(
                "/automation/v2/workflows/{workflow}/enrollments/contacts/{}",
                utf8_percent_encode(email, NON_ALPHANUMERIC)
            );
            let outcome = match self.request(Method::POST, &path, None).await {
                Ok((status, _)) if status.is_success() => {
                    json!({"email": email, "status": "enrolled"})
                }
                Ok((status, answer)) => {
                    json!({"email": email, "status": "failed", "error": self.error(status, answer).to_string()})
                }
                Err(error) => {
                    json!({"email": email, "status": "failed", "error": error.to_string()})
                }
            };
            enrollments.push(outcome);
        }
        enrollments
    }

    /// The v2 workflow id of a v4 flow (`metadata.hubspotFlowId`), from `POST
    /// /automation/v4/workflow-id-mappings/batch/read`: enrolment takes v2 ids, and a flow made in
    /// the v4 editor has none. Answers why not, when it cannot be mapped.
    async fn workflow_of_flow(&self, flow: &str) -> Result<String, String> {
        let body = json!({"inputs": [{"type": "FLOW_ID", "flowId": flow}]});
        let answer = self
            .post("/automation/v4/workflow-id-mappings/batch/read", &body)
            .await
            .map_err(|error| format!("the v2 id of flow {flow} could not be read: {error}"))?;
        let workflow = results(&answer)
            .find(|mapping| mapping["flowId"].to_string().trim_matches('"') == flow)
            .and_then(|mapping| match &mapping["workflowId"] {
                Value::Number(id) => Some(id.to_string()),
                Value::String(id) => Some(id.clone()),
                _ => None,
            });
        workflow.ok_or_else(|| {
                format!("flow {flow} has no v2 workflow id (a flow made in the v4 editor), so no contact can be enrolled in it through HubSpot's public API")
            })
    }

    /// The cheapest read that proves the token: one contact (needs `crm.objects.contacts.read`).
    async fn establish_connection(&self) -> Result<Value, ConnectorError> {
        let (status, answer) = self
            .request(Method::GET, "/crm/v3/objects/contacts?limit=1", None)
            .await?;
        if !status.is_success() {
            return Err(self.error(status, answer));
        }
        let mut account = json!({
            "contactsReadable": true,
            "weddingPropertiesReady": self.properties_ready.load(Ordering::Acquire),
        });
        // What the credential may do: a check that cannot read it still passes, saying why.
        match self.token_info().await {
            Ok(info) => {
                // The private-app answer is camelCase, the OAuth one snake_case.
                account["hubId"] = info
                    .get("hubId")
                    .or(info.get("hub_id"))
                    .cloned()
                    .unwrap_or_default();
                // A list (`scopes`), or RFC 7662's space-separated `scope`.
                let scopes: Option<Vec<&str>> = match (&info["scopes"], &info["scope"]) {
                    (Value::Array(scopes), _) => {
                        Some(scopes.iter().filter_map(Value::as_str).collect())
                    }
                    (_, Value::String(scope)) => Some(scope.split_whitespace().collect()),
                    _ => None,
                };
                match scopes {
                    Some(scopes) => {
                        let missing: Vec<&str> = HUBSPOT_SCOPES
                            .iter()
                            .copied()
                            .filter(|needed| self.takes_webhooks || *needed != WEBHOOK_SCOPE)
                            .filter(|needed| !scopes.contains(needed))
                            .collect();
                        account["scopes"] = json!(scopes);
                        account["missingScopes"] = json!(missing);
                        account["workflowsAllowed"] = json!(scopes.contains(&"automation"));
                    }
                    None => {
                        account["scopesUnreadable"] =
                            json!("HubSpot's answer about the token names no scopes")
                    }
                }
            }
            Err(error) => account["scopesUnreadable"] = json!(error.to_string()),
        }
        Ok(account)
    }

    /// The token's portal and scopes: a private app's from `POST
    /// /oauth/v2/private-apps/get/access-token-info`, an OAuth access token's from `POST
    /// /oauth/v3/token/introspect` (the v1 `GET /oauth/v1/access-tokens/{token}` is deprecated,
    /// sunset on 16 February 2027).
    async fn token_info(&self) -> Result<Value, ConnectorError> {
        let (status, answer) = match &self.credential {
            Credential::PrivateApp(token) => {
                let body = json!({"tokenKey": token.get().expose()});
                self.send("/oauth/v2/private-apps/get/access-token-info", &body)
                    .await?
            }
            Credential::OAuth(session) => {
                let url = self
                    .base
                    .join("/oauth/v3/token/introspect")
                    .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
                let answer = session.introspect(&self.client, self.timeout, url).await?;
                if answer["active"] != true {
                    return Err(ConnectorError::Unauthorized(
                        "HubSpot says the access token is not active".into(),
                    ));
                }
                (reqwest::StatusCode::OK, answer)
            }
        };
        if !status.is_success() {
            return Err(self.error(status, answer));
        }
        Ok(answer)
    }

    /// Creates the property group and properties once; existing ones are fine.
    async fn ensure_wedding_properties(&self) -> Result<(), ConnectorError> {
        if self.properties_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let group =
            json!({"name": WEDDING_GROUP, "label": "Wedding information", "displayOrder": -1});
        self.post_allowing_conflict("/crm/v3/properties/contacts/groups", &group)
            .await?;
        let inputs: Vec<Value> = WEDDING_PROPERTIES
            .iter()
            .map(|(name, label, kind, field)| json!({"name": name, "label": label, "type": kind, "fieldType": field, "groupName": WEDDING_GROUP}))
            .collect();
        let created = self
            .post_allowing_conflict(
                "/crm/v3/properties/contacts/batch/create",
                &json!({"inputs": inputs}),
            )
            .await?;
        let other_errors: Vec<&Value> = created["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["category"] != "OBJECT_ALREADY_EXISTS")
            .collect();
        if !other_errors.is_empty() {
            return Err(ConnectorError::Rejected {
                code: "property_setup".into(),
                message: format!("creating wedding properties failed: {other_errors:?}"),
            });
        }
        self.properties_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Objects of `object_type` (`deals`, `contacts`) by id with `properties`, for the inbound
    /// handler: one `batch/read` (at most 100 ids). Objects HubSpot no longer has are absent.
    pub async fn read_objects(
        &self,
        object_type: &str,
        ids: &[String],
        properties: &[&str],
    ) -> Result<HashMap<String, Value>, ConnectorError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let inputs: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        let body = json!({"properties": properties, "propertiesWithHistory": [], "inputs": inputs});
        let answer = self
            .post(&format!("/crm/v3/objects/{object_type}/batch/read"), &body)
            .await?;
        Ok(results(&answer)
            .filter_map(|object| {
                let id = object["id"].as_str()?.to_owned();
                Some((id, object["properties"].clone()))
            })
            .collect())
    }

    /// Each existing contact's `notification_history`, by email.
    async fn read_histories(
        &self,
        emails: &[String],
    ) -> Result<HashMap<String, String>, ConnectorError> {
        let inputs: Vec<Value> = emails.iter().map(|email| json!({"id": email})).collect();
        let body = json!({"idProperty": "email", "properties": ["email", "notification_history"], "propertiesWithHistory": [], "inputs": inputs});
        let answer = self
            .post("/crm/v3/objects/contacts/batch/read", &body)
            .await?;
        Ok(results(&answer)
            .filter_map(|contact| {
                let email = contact["properties"]["email"].as_str()?.to_lowercase();
                let history = contact["properties"]["notification_history"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                Some((email, history))
            })
            .collect())
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, ConnectorError> {
        let (status, answer) = self.send(path, body).await?;
        if status.is_success() {
            return Ok(answer);
        }
        Err(self.error(status, answer))
    }

    /// Like `post`, but a 409 ("already exists") is an answer, not an error.
    async fn post_allowing_conflict(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<Value, ConnectorError> {
        let (status, answer) = self.send(path, body).await?;
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            return Ok(answer);
        }
        Err(self.error(status, answer))
    }

    async fn send(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(reqwest::StatusCode, Value), ConnectorError> {
        self.request(Method::POST, path, Some(body)).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), ConnectorError> {
        let url = self
            .base
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout)
            .bearer_auth(self.bearer().await?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        self.report_daily_allowance(&headers);
        let text = response.text().await.map_err(transport_error)?;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(rate_limited(&headers, &text));
        }
        match serde_json::from_str(&text) {
            Ok(answer) => Ok((status, answer)),
            // 204 No Content (a workflow enrolment) answers nothing.
            Err(_) if status.is_success() && text.is_empty() => Ok((status, Value::Null)),
            Err(_) if status.is_success() => Err(ConnectorError::Unavailable(format!(
                "HubSpot answered {status} without JSON"
            ))),
            Err(_) => Err(classify_status(status, &headers, &text)),
        }
    }

    /// A private app's daily allowance, from `X-HubSpot-RateLimit-Daily` and `-Daily-Remaining`
    /// (OAuth calls have no daily limit and carry neither), as the
    /// `herald_vendor_quota_remaining` and `herald_vendor_quota_limit` gauges.
    fn report_daily_allowance(&self, headers: &reqwest::header::HeaderMap) {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let (Some(limit), Some(remaining)) = (
            read("x-hubspot-ratelimit-daily"),
            read("x-hubspot-ratelimit-daily-remaining"),
        ) else {
            return;
        };
        let labels = [
            ("integration", self.integration_id.clone()),
            ("window", "daily".to_owned()),
        ];
        metrics::gauge!("herald_vendor_quota_limit", &labels).set(limit);
        metrics::gauge!("herald_vendor_quota_remaining", &labels).set(remaining);
    }

    fn error(&self, status: reqwest::StatusCode, answer: Value) -> ConnectorError {
        // HubSpot's error body: {status: "error", message, correlationId, category, errors, ...}.
        let message = answer["message"]
            .as_str()
            .unwrap_or("HubSpot refused the request")
            .to_owned();
        let category = answer["category"]
            .as_str()
            .or(answer["errorType"].as_str())
            .unwrap_or("")
            .to_owned();
        match status.as_u16() {
            // A token without a scope is not a refused credential: reloading it changes nothing.
            403 if category == "MISSING_SCOPES" => ConnectorError::Rejected {
                code: category,
                message: format!("{message} (the token needs a scope it was not granted)"),
            },
            401 | 403 => ConnectorError::Unauthorized(format!("{category}: {message}")),
            408 | 500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
            _ => ConnectorError::Rejected {
                code: if category.is_empty() {
                    status.as_u16().to_string()
                } else {
                    category
                },
                message,
            },
        }
    }
}

impl Connector for HubSpotConnector {
    fn vendor(&self) -> &'static str {
        "hubspot"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        // Read histories, upsert contacts, create notes, and move the deal when asked;
        let moves_deal = matches!(metadata_id(notification, "hubspotDealId"), Ok(Some(_)))
            && notification.metadata.contains_key("hubspotDealStage");
        // and one enrolment per contact when a workflow is named (a v4 flow is mapped first).
        let named = |key| matches!(metadata_id(notification, key), Ok(Some(_)));
        let enrollments = match (named("hubspotWorkflowId"), named("hubspotFlowId")) {
            (true, _) => notification.contact_emails(MAX_BATCH).len() as u32,
            (false, true) => 1 + notification.contact_emails(MAX_BATCH).len() as u32,
            (false, false) => 0,
        };
        // and the task when the notification asks for actions; and until they exist, the two
        // that create the wedding properties.
        let property_setup = if self.properties_ready.load(Ordering::Acquire) {
            0
        } else {
            2
        };
        3 + u32::from(moves_deal)
            + enrollments
            + u32::from(!notification.actions.is_empty())
            + property_setup
    }

    fn engagement<'a>(&'a self, _: &'a serde_json::Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("HubSpot")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.establish_connection())
    }

    fn complete_install<'a>(&'a self, grant: &'a InstallGrant) -> CheckFuture<'a> {
        Box::pin(self.install(grant))
    }

    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        match &self.credential {
            Credential::PrivateApp(token) => token.reload().map_err(ConnectorError::Misconfigured),
            // HubSpot refused the access token: forget it, so the retry refreshes first (with
            // the app secret and refresh token read again, in case they were rotated).
            Credential::OAuth(session) => session.reload(),
        }
    }
}

/// A HubSpot object id from the notification's metadata (digits only: it goes into a path).
/// A HubSpot record id named in the metadata (digits, written as a string or a number). One
/// that is there but is not an id is refused: the step it asks for must not silently vanish.
fn metadata_id(
    notification: &WeddingNotification,
    key: &str,
) -> Result<Option<String>, ConnectorError> {
    let Some(value) = notification.metadata.get(key) else {
        return Ok(None);
    };
    let id = match value {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        _ => String::new(),
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConnectorError::Rejected {
            code: "invalid_id".into(),
            message: format!("metadata.{key} {value} is not a HubSpot record id (its digits)"),
        });
    }
    Ok(Some(id))
}

fn results(answer: &Value) -> impl Iterator<Item = &Value> {
    answer["results"].as_array().into_iter().flatten()
}

/// The messages of a batch answer's `errors` (a 207 Multi-Status lists the inputs that failed).
fn batch_errors(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|error| {
            let category = error["category"].as_str().unwrap_or("error");
            let message = error["message"].as_str().unwrap_or("no message");
            format!("{category}: {message}")
        })
        .collect()
}

fn history_entry(notification: &WeddingNotification) -> String {
    let at = notification
        .created_at
        .clone()
        .unwrap_or_else(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    format!(
        "{at} {} {}: {}",
        notification.priority, notification.notification_type, notification.title
    )
}

/// Puts `entry` first and keeps the newest [`HISTORY_ENTRIES`] lines.
fn extend_history(previous: Option<&str>, entry: &str) -> String {
    std::iter::once(entry)
        .chain(
            previous
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim().is_empty()),
        )
        .take(HISTORY_ENTRIES)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_ten_entries() {
        let mut history: Option<String> = None;
        for n in 0..12 {
            history = Some(extend_history(history.as_deref(), &format!("entry {n}")));
        }
        let lines: Vec<&str> = history.as_deref().unwrap().lines().collect();
        assert_eq!(lines.len(), 10);
        assert_eq!((lines[0], lines[9]), ("entry 11", "entry 2"));
    }

    #[test]
    fn contacts_are_deduplicated_by_email() {
        let notification: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n", "type": "t", "priority": "normal", "title": "t", "message": "m",
            "contacts": [{"email": "Sam@Example.com"}, {"email": "sam@example.com "}, {"name": "no email"}, {"email": "alex@example.com"}]
        }))
        .unwrap();
        assert_eq!(
            notification.contact_emails(MAX_BATCH),
            vec!["sam@example.com", "alex@example.com"]
        );
    }
}
