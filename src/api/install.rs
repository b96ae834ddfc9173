//! Installing an OAuth app through Herald (for vendors with `Vendor::oauth_install`), so the
//! refresh token never passes through a person's hands or a configuration file.
//!
//! 1. `POST /v1/integrations/{id}/oauth/authorize` (API key) answers the vendor's consent page
//!    for this integration, with a random single-use `state` good for ten minutes.
//! 2. The person installing opens it and consents; the vendor sends their browser back to
//!    `GET /oauth/{kind}/callback?code=...&state=...` (the integration's `oauth.redirect_uri`).
//!    The `state` is the proof that Herald started this install; the integration's connector
//!    exchanges the code for the account's tokens and keeps the refresh token sealed in the vault.
//!
//! Pending installs are kept in the store by the SHA-256 of their `state`, so a restart in
//! between does not lose them and any node sharing the store can finish them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::integrations::{ask_connector, organization_integration};
use super::{hash_key, ApiError, AppState, Caller};
use crate::connectors::oauth::{pkce_challenge, pkce_verifier, InstallGrant};
use crate::integration::IntegrationMsg;
use crate::store::{now_millis, AuditDraft, PendingInstall};

/// How long a consent link stays good.
const INSTALL_WINDOW: Duration = Duration::from_secs(600);

/// Where to send the person installing the vendor's app.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallStarted {
    integration_id: String,
    /// The vendor's consent page for this integration; WedSync redirects its supplier here.
    authorization_url: String,
    /// How long the link stays good.
    expires_in_seconds: u64,
}

/// Starts an OAuth install of the integration's vendor app (for vendors installed with OAuth):
/// answers the consent page to send the supplier to.
#[utoipa::path(
    post,
    path = "/integrations/{integrationId}/oauth/authorize",
    tag = "integrations",
    params(("integrationId" = String, Path)),
    responses(
        (status = 200, body = InstallStarted),
        (status = 409, description = "The integration's vendor is not installed with OAuth, or its settings lack what the consent page needs.", body = ErrorBody),
    ),
    security(("apiKey" = ["admin"])),
)]
pub async fn start_install(
    State(state): State<Arc<AppState>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(integration_id): Path<String>,
) -> Result<Json<InstallStarted>, ApiError> {
    let runtime = organization_integration(&state, &caller.organization, &integration_id)?;
    let mut random = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut random);
    let install_state = hex::encode(random);
    let vendor = runtime.config.vendor;
    let not_installable =
        |reason: String| ApiError::Conflict(format!("integration {integration_id:?} is {reason}"));
    let oauth = vendor.oauth_install().ok_or_else(|| {
        not_installable(format!(
            "not an OAuth app installed through Herald ({} integrations are not installed with OAuth)",
            vendor.describe().name
        ))
    })?;
    let code_verifier = oauth.takes_pkce().then(pkce_verifier);
    let address = oauth
        .authorization_url(
            &*runtime.config.settings,
            &install_state,
            code_verifier.as_deref().map(pkce_challenge).as_deref(),
        )
        .map_err(not_installable)?;
    let expires_at = now_millis() + INSTALL_WINDOW.as_millis() as i64;
    let install = PendingInstall {
        integration_id: integration_id.clone(),
        organization: caller.organization.clone(),
        code_verifier,
        started_by: caller.actor(),
    };
    state
        .store
        .begin_install(&hash_key(&install_state), install, expires_at)
        .await?;
    Ok(Json(InstallStarted {
        integration_id,
        authorization_url: address,
        expires_in_seconds: INSTALL_WINDOW.as_secs(),
    }))
}

/// What the vendor puts on the redirect back to Herald.
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The end of the install in the person's browser: plain text saying what happened.
pub async fn finish_install(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    Query(callback): Query<Callback>,
) -> Response {
    let page = |status: StatusCode, text: String| (status, text).into_response();
    let pending = match callback.state.as_deref() {
        Some(install_state) => state
            .store
            .finish_install(&hash_key(install_state), now_millis())
            .await
            .map_err(ApiError::from),
        None => Ok(None),
    };
    let pending = match pending {
        Ok(pending) => pending,
        Err(error) => return error.into_response(),
    };
    let Some(pending) = pending else {
        return page(
            StatusCode::BAD_REQUEST,
            "This install link is unknown or expired. Start the install again from Herald.".into(),
        );
    };
    let integration_id = pending.integration_id;
    let Some(vendor) = state
        .registry
        .runtime(&integration_id)
        .map(|runtime| runtime.config.vendor)
        .filter(|vendor| vendor.kind() == kind)
    else {
        return page(
            StatusCode::BAD_REQUEST,
            format!(
                "This install link is not for a {kind} app. Start the install again from Herald."
            ),
        );
    };
    let name = vendor.describe().name;
    let code = match (callback.code, callback.error) {
        (Some(code), None) if !code.is_empty() => code,
        (_, error) => {
            let reason = callback
                .error_description
                .or(error)
                .unwrap_or_else(|| "no authorization code".into());
            return page(
                StatusCode::BAD_REQUEST,
                format!("{name} did not authorize the install of {integration_id}: {reason}"),
            );
        }
    };
    let grant = InstallGrant {
        code,
        code_verifier: pending.code_verifier.clone(),
        audit: AuditDraft {
            organization: pending.organization.clone(),
            actor: pending.started_by.clone(),
            action: "credential.installed".to_owned(),
            resource_type: "integration".to_owned(),
            resource_id: integration_id.clone(),
            before: None,
            after: None,
        },
    };
    let installed = ask_connector(&state, &pending.organization, &integration_id, |reply| {
        IntegrationMsg::CompleteInstall(grant, reply)
    })
    .await;
    match installed {
        Ok(Ok(_)) => {
            tracing::info!(integration = %integration_id, "oauth app installed");
            page(
                StatusCode::OK,
                format!("{name} is connected to Herald (integration {integration_id}). You can close this page."),
            )
        }
        Ok(Err(error)) => {
            tracing::warn!(integration = %integration_id, %error, "oauth install failed");
            page(
                StatusCode::BAD_GATEWAY,
                format!("{name} refused the install of {integration_id}: {error}"),
            )
        }
        Err(error) => error.into_response(),
    }
}
