//! Microsoft Teams' settings: the channel's Workflows flow (its trigger URL is the credential),
//! or Microsoft Graph as a signed-in teammate (delegated `ChannelMessage.Send`, installed through
//! Herald); and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// A Teams channel, reached through one of the two ways Microsoft allows an outside service to
/// post to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsSettings {
    /// The "HTTP URL" of a flow made from Teams' "Send webhook alerts to a channel" template
    /// (`https://....environment.api.powerplatform.com/powerautomate/automations/direct/
    /// workflows/<id>/triggers/manual/paths/invoke?...&sig=...`): its `sig` is the credential.
    pub workflow_url: Option<SecretRef>,
    /// Microsoft Graph channel messages, posted as the teammate who installed the app.
    pub graph: Option<GraphSettings>,
}

/// Microsoft Graph: the team and channel, and the Entra ID app a teammate signs in to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    /// The Entra ID tenant (its id, or a domain such as `contoso.onmicrosoft.com`).
    pub tenant_id: String,
    /// The team's id (a GUID: Teams > the team > Get link to team, `groupId`).
    pub team_id: String,
    /// The channel's id (`19:...@thread.tacv2`, from the channel's link).
    pub channel_id: String,
    pub oauth: GraphOAuthSettings,
    /// Microsoft Graph (`https://graph.microsoft.com/v1.0`).
    #[serde(default = "default_graph_url")]
    pub api_url: String,
}

/// The Entra ID app registration the teammate consents to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphOAuthSettings {
    pub client_id: String,
    pub client_secret: SecretRef,
    /// A refresh token obtained outside Herald; without it a teammate installs the app through
    /// Herald (`POST /v1/integrations/{id}/oauth/authorize`) and the token is kept sealed.
    pub refresh_token: Option<SecretRef>,
    /// Herald's `/oauth/teams/callback` as the teammate's browser reaches it, registered with
    /// the app exactly. Needed to install through Herald.
    pub redirect_uri: Option<String>,
    /// The delegated permissions asked for: `ChannelMessage.Send` to post, `User.Read` for the
    /// connection check, `offline_access` for a refresh token.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Entra ID's sign-in host (`https://login.microsoftonline.com`; national clouds differ).
    #[serde(default = "default_login_url")]
    pub login_url: String,
}

fn default_graph_url() -> String {
    "https://graph.microsoft.com/v1.0".to_owned()
}

fn default_login_url() -> String {
    "https://login.microsoftonline.com".to_owned()
}

fn default_scopes() -> Vec<String> {
    ["ChannelMessage.Send", "User.Read", "offline_access"]
        .map(str::to_owned)
        .to_vec()
}

/// Whether `id` is a GUID (8-4-4-4-12 hex digits).
fn is_guid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(part, len)| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(super) fn check_teams(settings: &TeamsSettings) -> Result<(), SettingsError> {
    let graph = match (&settings.workflow_url, &settings.graph) {
        (Some(_), None) => return Ok(()),
        (None, Some(graph)) => graph,
        (Some(_), Some(_)) => {
            return Err(SettingsError::new(
                "graph",
                "give workflow_url or graph, not both: an integration posts one way",
            ))
        }
        (None, None) => {
            return Err(SettingsError::new(
                "workflow_url",
                "needed (a Workflows flow's URL), or graph for Microsoft Graph",
            ))
        }
    };
    if graph.tenant_id.trim().is_empty() || graph.tenant_id.contains(['/', ' ']) {
        return Err(SettingsError::new(
            "graph.tenant_id",
            "the tenant's id or domain (contoso.onmicrosoft.com)",
        ));
    }
    if !is_guid(&graph.team_id) {
        return Err(SettingsError::new(
            "graph.team_id",
            format!("{:?} is not a team id (a GUID)", graph.team_id),
        ));
    }
    if !graph.channel_id.starts_with("19:") || !graph.channel_id.contains("@thread.") {
        return Err(SettingsError::new(
            "graph.channel_id",
            format!(
                "{:?} is not a channel id (19:...@thread.tacv2)",
                graph.channel_id
            ),
        ));
    }
    let oauth = &graph.oauth;
    if !is_guid(&oauth.client_id) {
        return Err(SettingsError::new(
            "graph.oauth.client_id",
            "the app registration's application (client) id, a GUID",
        ));
    }
    if !oauth
        .scopes
        .iter()
        .any(|scope| scope == "ChannelMessage.Send")
    {
        return Err(SettingsError::new(
            "graph.oauth.scopes",
            "ChannelMessage.Send is needed to post to a channel",
        ));
    }
    match (&oauth.refresh_token, &oauth.redirect_uri) {
        (Some(_), Some(_)) => Err(SettingsError::new(
            "graph.oauth.refresh_token",
            "give a refresh_token or a redirect_uri to install through Herald, not both",
        )),
        (None, None) => Err(SettingsError::new(
            "graph.oauth.redirect_uri",
            "needed to install the app through Herald (or give a refresh_token)",
        )),
        _ => {
            for (field, url) in [
                ("graph.api_url", Some(&graph.api_url)),
                ("graph.oauth.login_url", Some(&oauth.login_url)),
                ("graph.oauth.redirect_uri", oauth.redirect_uri.as_ref()),
            ] {
                if let Some(url) = url.filter(|url| !is_http_url(url)) {
                    return Err(SettingsError::new(
                        field,
                        format!("{url:?} is not an http(s) address"),
                    ));
                }
            }
            Ok(())
        }
    }
}
