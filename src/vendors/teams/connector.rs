//! Microsoft Teams (the seed's `CommunicationPlatformConnector`) through a Workflows flow: the
//! supplier builds a flow from Teams' "Send webhook alerts to a channel" template and gives Herald
//! its trigger URL; each notification is one `POST` of a message whose attachment is an Adaptive
//! Card, which the flow posts to its channel.
//!
//! - The card (version 1.4): the title in a container coloured by priority, the message, the
//!   wedding as facts, the notification's links as `Action.OpenUrl` buttons (at most six, the rest
//!   named in the receipt). WedSync's text is escaped so it cannot format anything.
//! - The flow answers 202 Accepted and runs later; a run that fails afterwards is not reported
//!   back, so the receipt says the flow accepted the card (with its run id when the answer
//!   carries one), which is all Teams lets a caller know.
//! - Buttons that would call back (`Action.Submit`) need a Teams bot, which a flow is not: actions
//!   without a link are left out of the card and named in the receipt.

use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use super::card::{card, CARD_VERSION};
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::{
    engagement_unsupported, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::{ReloadableSecret, SecretRef};
use crate::wedsync::WeddingNotification;

/// The run id a Power Automate trigger's answer carries.
const RUN_ID_HEADER: &str = "x-ms-workflow-run-id";

pub struct TeamsConnector {
    workflow_url: ReloadableSecret,
    client: OutboundClient,
    timeout: Duration,
}

/// Why `url` cannot be a Workflows trigger Herald can call, in words that say what to do.
pub(super) fn check_workflow_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url.trim()).map_err(|_| "workflow_url is not a URL".to_owned())?;
    if parsed
        .host_str()
        .is_some_and(|host| host.ends_with(".webhook.office.com"))
    {
        return Err("workflow_url is an Office 365 connector webhook, which Microsoft has retired: create a flow from Teams' \"Send webhook alerts to a channel\" workflow template and use its URL".into());
    }
    let path = parsed.path().trim_end_matches('/');
    if !path.ends_with("/triggers/manual/paths/invoke") || !path.contains("/workflows/") {
        return Err("workflow_url is not a Workflows trigger URL (.../workflows/<id>/triggers/manual/paths/invoke?...)".into());
    }
    if !parsed
        .query_pairs()
        .any(|(name, value)| name == "sig" && !value.is_empty())
    {
        return Err("workflow_url has no sig: the flow's trigger only takes signed-in callers; set \"Who can trigger the flow\" to \"Anyone\" so the URL carries its signature".into());
    }
    Ok(())
}

impl TeamsConnector {
    pub fn new(
        workflow_url: &SecretRef,
        client: OutboundClient,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let workflow_url =
            ReloadableSecret::load(workflow_url).map_err(ConnectorError::Misconfigured)?;
        check_workflow_url(workflow_url.get().expose()).map_err(ConnectorError::Misconfigured)?;
        Ok(Self {
            workflow_url,
            client,
            timeout,
        })
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let secret = self.workflow_url.get();
        check_workflow_url(secret.expose()).map_err(ConnectorError::Misconfigured)?;
        let url = self.client.check_url(secret.expose().trim())?;
        let (card, left_out) = card(notification);
        let message = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        });
        let response = self
            .client
            .client()
            .post(url)
            .timeout(self.timeout)
            .json(&message)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(classify(status, &headers, &text));
        }
        let run_id = headers
            .get(RUN_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Receipt {
            id: run_id
                .clone()
                .unwrap_or_else(|| format!("accepted:{}", notification.notification_id)),
            details: Some(json!({
                "accepted": status.as_u16(),
                "runId": run_id,
                "cardVersion": CARD_VERSION,
                "actionsLeftOut": left_out,
            })),
        })
    }
}

impl Connector for TeamsConnector {
    fn vendor(&self) -> &'static str {
        "teams"
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(engagement_unsupported("Microsoft Teams")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        // A flow's trigger has no read operation: any request would post a card.
        Box::pin(async {
            Err(ConnectorError::Rejected {
                code: "unsupported".into(),
                message:
                    "a Teams Workflows flow cannot be checked without posting a card to its channel"
                        .into(),
            })
        })
    }

    /// A new flow (or a regenerated URL) is a new value where the secret lives.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        self.workflow_url
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }
}

/// A refused trigger call, classified from Power Automate's `{error: {code, message}}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    text: &str,
) -> ConnectorError {
    let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let code = answer["error"]["code"]
        .as_str()
        .map_or_else(|| status.as_u16().to_string(), str::to_owned);
    let message = answer["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "Teams' flow answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )
        });
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 | 403 => ConnectorError::Unauthorized(format!("{code}: {message}")),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {message}")),
        _ => ConnectorError::Rejected { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::StatusCode;

    const FLOW: &str = "https://default1.environment.api.powerplatform.com:443/powerautomate/automations/direct/workflows/abc/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s1g";

    #[test]
    fn only_a_signed_workflows_trigger_is_taken() {
        assert_eq!(check_workflow_url(FLOW), Ok(()));
        assert_eq!(
            check_workflow_url(&FLOW.replace("/invoke?", "/invoke/?")),
            Ok(())
        );
        for (url, says) in [
            (
                "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d",
                "retired",
            ),
            (
                "https://example.com/hooks/teams?sig=x",
                "not a Workflows trigger URL",
            ),
            (&FLOW.replace("&sig=s1g", ""), "has no sig"),
            ("teams channel", "not a URL"),
        ] {
            let refused = check_workflow_url(url).unwrap_err();
            assert!(refused.contains(says), "{url}: {refused}");
        }
    }

    #[test]
    fn power_automates_errors_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, ""),
            ConnectorError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), r#"{"error":{"code":"DirectApiAuthorizationRequired","message":"The request must be authenticated."}}"#),
            ConnectorError::Unauthorized(message) if message == "DirectApiAuthorizationRequired: The request must be authenticated."
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), r#"{"error":{"code":"InvalidRequestContent","message":"The card is not valid."}}"#),
            ConnectorError::Rejected { code, message } if code == "InvalidRequestContent" && message == "The card is not valid."
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "<html>"),
            ConnectorError::Unavailable(_)
        ));
    }
}
