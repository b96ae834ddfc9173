//! Microsoft Teams through Microsoft Graph, as the teammate who installed the app: each
//! notification is a channel message whose only content is the Adaptive Card
//! (`POST /teams/{team}/channels/{channel}/messages`, the card as an attachment referenced from
//! the HTML body), so it shows in the channel as that teammate's post.
//!
//! - Sign-in: Entra ID's authorization-code flow through Herald's install (delegated
//!   `ChannelMessage.Send`; Graph's application permission for channel messages is for importing
//!   history, not posting), refresh tokens rotated and kept sealed.
//! - Limits: Graph allows an app 4 requests a second on one channel; 429 waits `Retry-After`.
//! - Errors: `{error: {code, message, innerError}}`: 401 `InvalidAuthenticationToken` forgets the
//!   access token and signs in again; 403 (the teammate left the team, or consent was withdrawn)
//!   and other refusals are dead-lettered with Graph's code and message; 5xx retried.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::card::card;
use super::settings::GraphSettings;
use crate::connectors::http::{retry_after, transport_error, OutboundClient};
use crate::connectors::oauth::{InstallGrant, OAuthSession, RefreshToken};
use crate::connectors::{
    engagement_unsupported, CheckFuture, Connector, ConnectorError, Delivery, DeliveryFuture,
    Receipt,
};
use crate::secret::ReloadableSecret;
use crate::vault::Vault;
use crate::wedsync::WeddingNotification;

/// The name an install through Herald keeps the teammate's refresh token under in the vault.
const KEPT_REFRESH_TOKEN: &str = "teams_graph_refresh_token";

pub struct GraphConnector {
    api: Url,
    team_id: String,
    channel_id: String,
    session: OAuthSession,
    client: OutboundClient,
    timeout: Duration,
}

impl GraphConnector {
    pub fn new(
        settings: &GraphSettings,
        integration_id: &str,
        client: OutboundClient,
        vault: Option<Arc<Vault>>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = client.check_url(&format!("{}/", settings.api_url.trim_end_matches('/')))?;
        let oauth = &settings.oauth;
        let token_url = client.check_url(&format!(
            "{}/{}/oauth2/v2.0/token",
            oauth.login_url.trim_end_matches('/'),
            settings.tenant_id
        ))?;
        let session = OAuthSession::new(
            "Microsoft Graph",
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
            api,
            team_id: settings.team_id.clone(),
            channel_id: settings.channel_id.clone(),
            session,
            client,
            timeout,
        })
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let notification = &delivery.notification;
        let (card, left_out) = card(notification);
        let attachment = format!("herald-{}", delivery.delivery_id);
        let message = json!({
            "body": {"contentType": "html", "content": format!("<attachment id=\"{attachment}\"></attachment>")},
            "attachments": [{
                "id": attachment,
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card.to_string(),
            }],
        });
        let path = format!(
            "teams/{}/channels/{}/messages",
            self.team_id,
            percent_encoding::utf8_percent_encode(
                &self.channel_id,
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        let posted = self.call(Method::POST, &path, Some(&message)).await?;
        let id = posted["id"].as_str().ok_or_else(|| {
            ConnectorError::Unavailable("Graph answered without the message's id".into())
        })?;
        Ok(Receipt {
            id: id.to_owned(),
            details: Some(json!({
                "messageId": id,
                "webUrl": posted["webUrl"],
                "postedAs": posted["from"]["user"]["displayName"],
                "actionsLeftOut": left_out,
            })),
        })
    }

    /// The teammate the messages are posted as (`GET /me`): the seed's authenticateConnection.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let me = self.call(Method::GET, "me", None).await?;
        Ok(json!({
            "postedAs": me["displayName"],
            "userPrincipalName": me["userPrincipalName"],
            "teamId": self.team_id,
            "channelId": self.channel_id,
        }))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let token = self
            .session
            .access_token(&self.client, self.timeout)
            .await?;
        let url = self
            .api
            .join(path)
            .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?;
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
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        if status.as_u16() == 401 {
            self.session.forget_access_token();
        }
        Err(classify(status, &headers, &answer))
    }
}

impl Connector for GraphConnector {
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
        // Reading a channel's messages needs ChannelMessage.Read.All, which an admin must grant;
        // Herald asks only for what posting needs.
        Box::pin(async { Err(engagement_unsupported("Microsoft Teams")) })
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

/// A refused Graph call, classified from `{error: {code, message}}`.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    answer: &Value,
) -> ConnectorError {
    let code = answer["error"]["code"]
        .as_str()
        .map_or_else(|| status.as_u16().to_string(), str::to_owned);
    let message = answer["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Graph answered {status}"));
    match status.as_u16() {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 => ConnectorError::Unauthorized(format!("{code}: {message}")),
        500..=599 => ConnectorError::Unavailable(format!("{status}: {code}: {message}")),
        _ => ConnectorError::Rejected { code, message },
    }
}
