//! Microsoft Teams: an Adaptive Card per notification posted to a channel by the supplier's
//! Workflows flow (Office 365 connector webhooks are retired), or through Microsoft Graph as the
//! teammate who installed the app; each card checked by the simulator against Microsoft's
//! published card schema.

mod card;
mod connector;
mod graph;
mod settings;
pub mod simulator;

use std::sync::Arc;

pub use connector::TeamsConnector;
pub use graph::GraphConnector;
pub use settings::{GraphOAuthSettings, GraphSettings, TeamsSettings};
pub use simulator::FakeTeams;

use super::inbound::{install_redirect_uri, OAuthInstall};
use super::{
    deserialize_settings, ConnectorTarget, DefaultRate, SeedOperation, SettingsError, Simulation,
    Vendor, VendorDescription, VendorSettings,
};
use crate::connectors::{Connector, ConnectorError, ConnectorKit};
use crate::secret::SecretRef;
use crate::wedsync::IntegrationType;

pub struct Teams;

const DESCRIPTION: VendorDescription = VendorDescription {
    kind: "teams",
    name: "Microsoft Teams",
    integration_type: IntegrationType::CommunicationPlatform,
    authentication: "workflow-url or oauth2 (Graph)",
    default_rate: DefaultRate {
        per_second: 1.0,
        burst: 3,
        source: "Microsoft publishes no figure for a Workflows trigger; Graph allows an app at most 4 requests a second on one channel, and one a second with a burst of 3 never makes more than 4 in any second",
        window: None,
    },
    seed_operations: &[
        SeedOperation {
            name: "sendRichNotification",
            implemented_by: "POST to the flow's trigger URL: an Adaptive Card (1.4) the flow posts to its channel; or Graph's POST /teams/{team}/channels/{channel}/messages with the card, as the installing teammate",
        },
        SeedOperation {
            name: "routeNotificationToChannels",
            implemented_by: "each Teams integration is one channel (its flow, or its team and channel ids)",
        },
        SeedOperation {
            name: "createAutomatedMessageSequences",
            implemented_by: "not possible through a flow's trigger: it posts at once",
        },
        SeedOperation {
            name: "manageNotificationPreferences",
            implemented_by: "not possible: each member's Teams notification settings are their own",
        },
        SeedOperation {
            name: "trackCommunicationEngagement",
            implemented_by: "not possible: a flow answers 202 and nothing reads its post back; reading Graph channel messages needs ChannelMessage.Read.All, which Herald does not ask for",
        },
        SeedOperation {
            name: "authenticateConnection",
            implemented_by: "Graph: GET /me, the teammate the messages are posted as; a flow's trigger cannot be checked without posting",
        },
    ],
    inbound: &["GET /oauth/teams/callback: the end of a Graph app install started through Herald"],
    takes: None,
};

impl Vendor for Teams {
    fn describe(&self) -> &'static VendorDescription {
        &DESCRIPTION
    }

    fn simulation(&self) -> Option<&dyn Simulation> {
        Some(self)
    }

    fn oauth_install(&self) -> Option<&dyn OAuthInstall> {
        Some(self)
    }

    fn parse_settings(
        &self,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn VendorSettings>, SettingsError> {
        let teams: TeamsSettings = deserialize_settings(settings)?;
        settings::check_teams(&teams)?;
        Ok(Arc::new(teams))
    }
}

impl VendorSettings for TeamsSettings {
    fn secrets(&self) -> Vec<&SecretRef> {
        self.workflow_url
            .iter()
            .chain(self.graph.iter().flat_map(|graph| {
                std::iter::once(&graph.oauth.client_secret).chain(&graph.oauth.refresh_token)
            }))
            .collect()
    }

    fn keeps_credentials_at(&self) -> Option<&'static str> {
        self.graph
            .as_ref()
            .filter(|graph| graph.oauth.refresh_token.is_none())
            .map(|_| "graph.oauth.refresh_token")
    }

    fn build(
        &self,
        integration: &ConnectorTarget<'_>,
        kit: &ConnectorKit,
    ) -> Result<Arc<dyn Connector>, ConnectorError> {
        match (&self.workflow_url, &self.graph) {
            (_, Some(graph)) => Ok(Arc::new(GraphConnector::new(
                graph,
                integration.integration_id,
                kit.client.clone(),
                kit.vault.clone(),
                integration.timeout,
            )?)),
            (Some(workflow_url), None) => Ok(Arc::new(TeamsConnector::new(
                workflow_url,
                kit.client.clone(),
                integration.timeout,
            )?)),
            (None, None) => Err(ConnectorError::Misconfigured(
                "a Teams integration needs workflow_url or graph".into(),
            )),
        }
    }
}

const NOT_INSTALLABLE: &str =
    "this Teams integration posts through a Workflows flow, which is not installed";

impl OAuthInstall for Teams {
    /// Entra ID takes PKCE from web apps too; Herald's install sends the verifier.
    fn takes_pkce(&self) -> bool {
        true
    }

    fn authorization_url(
        &self,
        settings: &dyn VendorSettings,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, String> {
        let graph = settings
            .downcast_ref::<TeamsSettings>()
            .and_then(|teams| teams.graph.as_ref())
            .ok_or(NOT_INSTALLABLE)?;
        let oauth = &graph.oauth;
        let redirect_uri =
            install_redirect_uri(oauth.refresh_token.as_ref(), oauth.redirect_uri.as_ref())?;
        let authorize = format!(
            "{}/{}/oauth2/v2.0/authorize",
            oauth.login_url.trim_end_matches('/'),
            graph.tenant_id
        );
        let consent = crate::connectors::oauth::authorization_url(
            &authorize,
            &oauth.client_id,
            redirect_uri,
            &oauth.scopes,
            state,
            code_challenge,
        )
        .ok_or_else(|| NOT_INSTALLABLE.to_owned())?;
        let mut consent = url::Url::parse(&consent).map_err(|err| err.to_string())?;
        consent
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("response_mode", "query");
        Ok(consent.into())
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::parse_with_studio;

    #[test]
    fn settings_take_the_flows_url_and_nothing_else() {
        let integration = |settings: &str| {
            format!(
                "[[integrations]]\nid = \"chat\"\norganization = \"studio\"\nkind = \"teams\"\nsettings = {{ {settings} }}\n"
            )
        };
        assert!(parse_with_studio(&integration("workflow_url = { env = \"TEAMS_FLOW\" }")).is_ok());
        let unknown = parse_with_studio(&integration(
            "workflow_url = { env = \"TEAMS_FLOW\" }, channel = \"general\"",
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            unknown.contains("integrations[0].settings.channel"),
            "{unknown}"
        );
        let missing = parse_with_studio(&integration(""))
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("workflow_url"), "{missing}");
    }
}
