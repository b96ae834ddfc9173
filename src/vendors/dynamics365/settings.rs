//! Dynamics 365's settings: the Dataverse environment, the Entra ID app registration that reaches
//! it (tenant, client id and secret), the on-demand workflow notifications start, and their
//! validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// One Dataverse environment (a Dynamics 365 organization).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dynamics365Settings {
    /// The environment's address, `https://contoso.crm.dynamics.com` (`crm4` in Europe and so
    /// on): the Web API is under it, and it is the resource the access token is for.
    pub environment_url: String,
    /// The Entra ID tenant of the environment: its id (a GUID) or a verified domain.
    pub tenant_id: String,
    /// The app registration, added to the environment as an application user with a security
    /// role that may read and write contacts, tasks, notes and opportunities.
    pub client_id: String,
    pub client_secret: SecretRef,
    /// Entra ID's sign-in address; another cloud's (`https://login.microsoftonline.us`) where the
    /// environment lives in one.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// An on-demand classic workflow on contacts, run for each synced contact.
    pub workflow_id: Option<String>,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".to_owned()
}

/// Whether `text` is a GUID as Dataverse writes them (`8-4-4-4-12` hexadecimal digits).
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, length)| {
            group.len() == length && group.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// The addresses are http(s), the tenant and client are named, and a workflow is a GUID.
pub(super) fn check_dynamics365(settings: &Dynamics365Settings) -> Result<(), SettingsError> {
    for (field, address) in [
        ("environment_url", &settings.environment_url),
        ("authority", &settings.authority),
    ] {
        if !is_http_url(address) {
            return Err(SettingsError::new(
                field,
                format!("{address:?} is not an http(s) address such as https://contoso.crm.dynamics.com"),
            ));
        }
    }
    let tenant_ok = !settings.tenant_id.is_empty()
        && settings
            .tenant_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !tenant_ok {
        return Err(SettingsError::new(
            "tenant_id",
            format!(
                "{:?} is not a tenant id (a GUID) or domain",
                settings.tenant_id
            ),
        ));
    }
    if settings.client_id.trim().is_empty() {
        return Err(SettingsError::new("client_id", "is empty"));
    }
    if let Some(workflow) = settings.workflow_id.as_deref().filter(|id| !is_guid(id)) {
        return Err(SettingsError::new(
            "workflow_id",
            format!("{workflow:?} is not a workflow's id (a GUID)"),
        ));
    }
    Ok(())
}
