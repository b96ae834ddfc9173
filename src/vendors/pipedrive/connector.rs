//! Pipedrive (the seed's `CRMIntegrationConnector`) over API v2 (notes still on v1), with a
//! personal API token (`x-api-token`) or an OAuth app's access token (refreshed by the
//! refresh-token grant, the app's credentials as HTTP Basic): `syncNotificationToContacts` as
//! one delivery.
//!
//! 1. `GET /api/v2/persons/search?term=<email>&fields=email&exact_match=true` per contact
//!    email (Pipedrive has no batch lookup), and `POST /api/v2/persons` for each one missing.
//! 2. When the metadata names `pipedriveDealId` and `pipedriveStageId` or `pipedriveDealStatus`,
//!    the deal moves (`PATCH /api/v2/deals/{id}`: updateDealPipeline) before anything is written
//!    about it, so a refused move stops the sync.
//! 3. `POST /api/v2/activities`: one activity of the configured type for the notification, every
//!    synced person a participant (the first primary), on the deal when one is named, due on the
//!    wedding day (createNotificationActivities). Pipedrive automations triggered by "activity
//!    added" start from it: Pipedrive's API cannot start an automation (triggerAutomationWorkflows).
//! 4. `POST /api/v1/notes`: the message as a note on the deal, or else on the first person. The
//!    note is reported in the receipt, not retried: a retry would add the activity twice.
//!
//! Persons found again by search make a retry after a failure safe up to the activity. Pipedrive
//! answers every request with `x-ratelimit-limit`/`-remaining` (its 2-second window per token)
//! and, to API-token requests, `x-daily-requests-left`: the `herald_vendor_quota_*` gauges. A 429
//! waits its `Retry-After`, else the window's `x-ratelimit-reset`.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::PipedriveSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::oauth::{ClientAuthentication, InstallGrant, OAuthSession, RefreshToken};
use crate::connectors::{
    CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::wedsync::{Priority, WeddingNotification};

/// The vault's name for the refresh token of an app installed through Herald.
const KEPT_REFRESH_TOKEN: &str = "pipedrive_refresh_token";
/// The most contacts of one notification synced: each is a search (Pipedrive's costliest call
/// against the company's daily token budget) and maybe a create.
pub const MAX_CONTACTS: usize = 20;
/// The longest activity subject Pipedrive keeps.
const SUBJECT_LENGTH: usize = 255;
/// Pipedrive's rate-limit window, waited out after a 429 that says nothing else.
const WINDOW: Duration = Duration::from_secs(2);

pub struct PipedriveConnector {
    integration_id: String,
    base: Url,
    activity_type: String,
    credential: Credential,
    client: OutboundClient,
    timeout: Duration,
}

/// How requests are authenticated.
enum Credential {
    ApiToken(ReloadableSecret),
    OAuth(Box<OAuthSession>),
}

/// A contact of the notification as Pipedrive has it after the sync.
struct Synced {
    email: String,
    id: u64,
    created: bool,
}

/// The deal the metadata names and what to change on it.
struct DealMove {
    id: u64,
    change: Value,
}

impl PipedriveConnector {
    pub fn new(
        settings: &PipedriveSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<std::sync::Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let base = client.check_url(settings.api_domain.trim_end_matches('/'))?;
        let misconfigured = |err: String| ConnectorError::Misconfigured(err);
        let credential = match (&settings.api_token, &settings.oauth) {
            (Some(token), None) => {
                Credential::ApiToken(ReloadableSecret::load(token).map_err(misconfigured)?)
            }
            (None, Some(oauth)) => {
                let token_url = client.check_url(&format!(
                    "{}/oauth/token",
                    oauth.server.trim_end_matches('/')
                ))?;
                Credential::OAuth(Box::new(
                    OAuthSession::new(
                        "Pipedrive",
                        token_url,
                        oauth.client_id.clone(),
                        Some(ReloadableSecret::load(&oauth.client_secret).map_err(misconfigured)?),
                        RefreshToken::configured_or_kept(
                            oauth.refresh_token.as_ref(),
                            oauth.redirect_uri.as_ref(),
                            vault,
                            integration_id,
                            KEPT_REFRESH_TOKEN,
                        )?,
                    )
                    .with_client_authentication(ClientAuthentication::HttpBasic),
                ))
            }
            _ => return Err(misconfigured("set either api_token or oauth".into())),
        };
        Ok(Self {
            integration_id: integration_id.to_owned(),
            base,
            activity_type: settings.activity_type.clone(),
            credential,
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
                message: "the notification names no contact with an email, so there is nothing to sync in Pipedrive".into(),
            });
        }
        let deal = deal_move(notification)?;
        let mut synced = Vec::new();
        let mut failed = Vec::new();
        for email in &emails {
            if let Some(id) = self.find_person(email).await? {
                synced.push(Synced {
                    email: email.clone(),
                    id,
                    created: false,
                });
                continue;
            }
            // A person Pipedrive refuses (its email, say) fails that contact, not the sync.
            match self.create_person(notification, email).await {
                Ok(id) => synced.push(Synced {
                    email: email.clone(),
                    id,
                    created: true,
                }),
                Err(ConnectorError::Rejected { code, message }) => {
                    failed.push(json!({"email": email, "error": format!("{code}: {message}")}))
                }
                Err(other) => return Err(other),
            }
        }
        let Some(primary) = synced.first().map(|person| person.id) else {
            return Err(ConnectorError::Rejected {
                code: "contacts_refused".into(),
                message: format!(
                    "Pipedrive took none of the contacts: {}",
                    failed
                        .iter()
                        .map(|f| f["error"].as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        };
        if let Some(deal) = &deal {
            self.request(
                Method::PATCH,
                &format!("/api/v2/deals/{}", deal.id),
                Some(&deal.change),
            )
            .await?;
        }
        let activity = self
            .request(
                Method::POST,
                "/api/v2/activities",
                Some(&self.activity(notification, &synced, deal.as_ref())),
            )
            .await?;
        let activity_id = activity["data"]["id"].as_u64().ok_or_else(|| {
            ConnectorError::Unavailable("Pipedrive saved the activity without an id".into())
        })?;
        let mut note = json!({"content": note_content(notification)});
        match &deal {
            Some(deal) => note["deal_id"] = json!(deal.id),
            None => note["person_id"] = json!(primary),
        }
        let note = match self
            .request(Method::POST, "/api/v1/notes", Some(&note))
            .await
        {
            Ok(answer) => json!({"id": answer["data"]["id"], "status": "added"}),
            Err(error) => json!({"status": "failed", "error": error.to_string()}),
        };
        let person_ids: Vec<String> = synced.iter().map(|p| p.id.to_string()).collect();
        Ok(Receipt {
            id: format!("persons {}; activity {activity_id}", person_ids.join(",")),
            details: Some(json!({
                "totalContacts": emails.len(),
                "successfulSyncs": synced.len(),
                "failedSyncs": failed.len(),
                "contacts": synced.iter().map(|p| json!({"email": p.email, "id": p.id, "created": p.created})).collect::<Vec<_>>(),
                "contactErrors": failed,
                "activityId": activity_id,
                "note": note,
                "deal": deal.as_ref().map(|deal| json!({"dealId": deal.id, "change": deal.change})),
            })),
        })
    }

    /// The person Pipedrive has for `email`: an exact, case-insensitive search of emails.
    async fn find_person(&self, email: &str) -> Result<Option<u64>, ConnectorError> {
        let mut url = self.url("/api/v2/persons/search")?;
        url.query_pairs_mut()
            .append_pair("term", email)
            .append_pair("fields", "email")
            .append_pair("exact_match", "true")
            .append_pair("limit", "1");
        let found = self.send(Method::GET, url, None).await?;
        Ok(found["data"]["items"][0]["item"]["id"].as_u64())
    }

    /// A new person for `email`, named as the notification names the contact (or by the email's
    /// local part).
    async fn create_person(
        &self,
        notification: &WeddingNotification,
        email: &str,
    ) -> Result<u64, ConnectorError> {
        let name = notification
            .contact_name(email)
            .unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_owned());
        let created = self
            .request(
                Method::POST,
                "/api/v2/persons",
                Some(&json!({
                    "name": name,
                    "emails": [{"value": email, "primary": true, "label": "work"}],
                })),
            )
            .await?;
        created["data"]["id"].as_u64().ok_or_else(|| {
            ConnectorError::Unavailable("Pipedrive saved the person without an id".into())
        })
    }

    /// The activity a notification becomes.
    fn activity(
        &self,
        notification: &WeddingNotification,
        persons: &[Synced],
        deal: Option<&DealMove>,
    ) -> Value {
        let mut activity = json!({
            "subject": notification.title.chars().take(SUBJECT_LENGTH).collect::<String>(),
            "type": self.activity_type,
            "note": html_escape(&notification.message),
            "done": false,
            "priority": match notification.priority {
                Priority::Emergency | Priority::High => 3,
                Priority::Normal => 2,
                Priority::Low => 1,
            },
            "person_id": persons[0].id,
            "participants": persons
                .iter()
                .enumerate()
                .map(|(n, person)| json!({"person_id": person.id, "primary": n == 0}))
                .collect::<Vec<_>>(),
        });
        if let Some(context) = &notification.wedding_context {
            activity["due_date"] = json!(context.wedding_date);
        }
        if let Some(deal) = deal {
            activity["deal_id"] = json!(deal.id);
        }
        activity
    }

    /// The seed's establishConnection: who the credential is and which company
    /// (`GET /api/v1/users/me`).
    async fn establish_connection(&self) -> Result<Value, ConnectorError> {
        let me = self.request(Method::GET, "/api/v1/users/me", None).await?;
        let user = &me["data"];
        Ok(json!({
            "apiDomain": self.base.as_str().trim_end_matches('/'),
            "companyId": user["company_id"],
            "companyName": user["company_name"],
            "companyDomain": user["company_domain"],
            "userId": user["id"],
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
    ) -> Result<Value, ConnectorError> {
        let url = self.url(path)?;
        self.send(method, url, body).await
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let mut request = self
            .client
            .client()
            .request(method, url)
            .timeout(self.timeout);
        request = match &self.credential {
            Credential::ApiToken(token) => request.header("x-api-token", token.get().expose()),
            Credential::OAuth(session) => {
                request.bearer_auth(session.access_token(&self.client, self.timeout).await?)
            }
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        self.report_limits(&headers);
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() && answer["success"].as_bool() == Some(true) {
            return Ok(answer);
        }
        Err(classify(status, &headers, &answer))
    }

    /// The token's 2-second window (`x-ratelimit-limit`, `-remaining`) and, for an API token, the
    /// day's remaining writes (`x-daily-requests-left`), as the `herald_vendor_quota_*` gauges.
    fn report_limits(&self, headers: &reqwest::header::HeaderMap) {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let labels = |window: &str| {
            [
                ("integration", self.integration_id.clone()),
                ("window", window.to_owned()),
            ]
        };
        if let (Some(limit), Some(remaining)) =
            (read("x-ratelimit-limit"), read("x-ratelimit-remaining"))
        {
            metrics::gauge!("herald_vendor_quota_limit", &labels("2s")).set(limit);
            metrics::gauge!("herald_vendor_quota_remaining", &labels("2s")).set(remaining);
        }
        if let Some(left) = read("x-daily-requests-left") {
            metrics::gauge!("herald_vendor_quota_remaining", &labels("daily")).set(left);
        }
    }
}

impl Connector for PipedriveConnector {
    fn vendor(&self) -> &'static str {
        "pipedrive"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.sync(delivery))
    }

    /// A search and a create per contact (the create made only when the person is missing,
    /// charged always), the activity, the note, and the deal's move when asked. Token grants are
    /// not API calls and are not charged.
    fn requests_per_delivery(&self, notification: &WeddingNotification) -> u32 {
        let contacts = notification.contact_emails(MAX_CONTACTS).len().max(1) as u32;
        2 * contacts + 2 + u32::from(matches!(deal_move(notification), Ok(Some(_))))
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(crate::connectors::engagement_unsupported("Pipedrive")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.establish_connection())
    }

    fn complete_install<'a>(&'a self, grant: &'a InstallGrant) -> CheckFuture<'a> {
        Box::pin(async move {
            let Credential::OAuth(session) = &self.credential else {
                return Err(ConnectorError::Rejected {
                    code: "not_installable".into(),
                    message: "this integration uses a personal API token: nothing to install"
                        .into(),
                });
            };
            session
                .complete_install(&self.client, self.timeout, grant)
                .await?;
            Ok(json!({"installed": true}))
        })
    }

    /// Pipedrive refused the credential: read the API token again, or forget the access token
    /// so the retry refreshes first.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        match &self.credential {
            Credential::ApiToken(token) => token.reload().map_err(ConnectorError::Misconfigured),
            Credential::OAuth(session) => session.reload(),
        }
    }
}

/// A refused request, classified from Pipedrive's body `{success: false, error, error_info,
/// code?}` (a 200 with `success: false` is refused too).
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let message = answer["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Pipedrive answered {status} without its error body"));
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers).or_else(|| {
                headers
                    .get("x-ratelimit-reset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .or(Some(WINDOW))
            }),
        },
        401 => ConnectorError::Unauthorized(message),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        // A 403 is a scope the app lacks or a plan's cap (`code`): a reloaded credential changes
        // neither.
        _ => ConnectorError::Rejected {
            code: answer["code"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.as_u16().to_string()),
            message,
        },
    }
}

/// The deal to move and how, when the metadata names one: `pipedriveDealId` with
/// `pipedriveStageId` and/or `pipedriveDealStatus` (`open`, `won`, `lost`); mistakes are refused
/// naming the field.
fn deal_move(notification: &WeddingNotification) -> Result<Option<DealMove>, ConnectorError> {
    let metadata = &notification.metadata;
    let refuse = |message: &str| ConnectorError::Rejected {
        code: "invalid_metadata".into(),
        message: message.to_owned(),
    };
    let stage = metadata.get("pipedriveStageId");
    let status = metadata.get("pipedriveDealStatus");
    let Some(id) = metadata.get("pipedriveDealId") else {
        if stage.is_some() || status.is_some() {
            return Err(refuse(
                "metadata.pipedriveDealId must name the deal that pipedriveStageId or pipedriveDealStatus moves",
            ));
        }
        return Ok(None);
    };
    let positive = |value: &Value| {
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            .filter(|id| *id > 0)
    };
    let id = positive(id)
        .ok_or_else(|| refuse("metadata.pipedriveDealId is not a deal's id (a positive number)"))?;
    let mut change = json!({});
    if let Some(stage) = stage {
        change["stage_id"] = json!(positive(stage).ok_or_else(|| refuse(
            "metadata.pipedriveStageId is not a stage's id (a positive number)"
        ))?);
    }
    if let Some(status) = status {
        let status = status
            .as_str()
            .filter(|status| matches!(*status, "open" | "won" | "lost"))
            .ok_or_else(|| refuse("metadata.pipedriveDealStatus must be open, won or lost"))?;
        change["status"] = json!(status);
    }
    if change.as_object().is_some_and(|change| change.is_empty()) {
        return Err(refuse(
            "metadata.pipedriveDealId needs pipedriveStageId or pipedriveDealStatus to say where the deal moves",
        ));
    }
    Ok(Some(DealMove { id, change }))
}

/// The note: the title in bold and the message, escaped (Pipedrive takes HTML), lines kept.
fn note_content(notification: &WeddingNotification) -> String {
    let mut content = format!("<b>{}</b><br>", html_escape(&notification.title));
    content.push_str(&html_escape(&notification.message).replace('\n', "<br>"));
    if let Some(context) = &notification.wedding_context {
        let couple = context.couple_names.as_deref().unwrap_or("The wedding");
        content.push_str(&format!(
            "<br>{} on {}",
            html_escape(couple),
            html_escape(&context.wedding_date)
        ));
        if let Some(venue) = &context.venue {
            content.push_str(&format!(" at {}", html_escape(venue)));
        }
    }
    content
}

/// `text` safe inside HTML: `&`, `<`, `>` and quotes escaped.
fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
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

    #[test]
    fn a_deal_move_is_read_from_the_metadata_naming_mistakes() {
        let moved = deal_move(&with_metadata(
            json!({"pipedriveDealId": 42, "pipedriveStageId": "3", "pipedriveDealStatus": "won"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(moved.id, 42);
        assert_eq!(moved.change, json!({"stage_id": 3, "status": "won"}));
        assert!(deal_move(&with_metadata(json!({}))).unwrap().is_none());
        for (metadata, field) in [
            (json!({"pipedriveStageId": 3}), "pipedriveDealId"),
            (
                json!({"pipedriveDealId": -1, "pipedriveStageId": 3}),
                "pipedriveDealId",
            ),
            (
                json!({"pipedriveDealId": 4, "pipedriveStageId": "x"}),
                "pipedriveStageId",
            ),
            (
                json!({"pipedriveDealId": 4, "pipedriveDealStatus": "closed"}),
                "pipedriveDealStatus",
            ),
            (
                json!({"pipedriveDealId": 4}),
                "pipedriveStageId or pipedriveDealStatus",
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
    fn pipedrives_errors_are_classified() {
        let body = |error: &str| json!({"success": false, "error": error, "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.", "data": null, "additional_data": null});
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("1"));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, &body("Request over limit")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(1)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), &body("Request over limit")),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == WINDOW
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &headers, &body("unauthorized access")),
            ConnectorError::Unauthorized(message) if message == "unauthorized access"
        ));
        let mut capped = body("Couldn't add the deal. Open deals limit reached.");
        capped["code"] = json!("feature_capping_deals_limit");
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &headers, &capped),
            ConnectorError::Rejected { code, .. } if code == "feature_capping_deals_limit"
        ));
        assert!(matches!(
            classify(StatusCode::OK, &headers, &body("Activity type is invalid")),
            ConnectorError::Rejected { code, message } if code == "200" && message == "Activity type is invalid"
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &headers, &Value::Null),
            ConnectorError::Unavailable(_)
        ));
    }

    #[test]
    fn notes_escape_what_the_notification_says() {
        let notification: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n", "type": "client_message", "priority": "normal",
            "title": "<script>x</script>", "message": "Tom & Jo\nsaid \"hi\""
        }))
        .unwrap();
        assert_eq!(
            note_content(&notification),
            "<b>&lt;script&gt;x&lt;/script&gt;</b><br>Tom &amp; Jo<br>said &quot;hi&quot;"
        );
    }
}
