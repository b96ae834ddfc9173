//! Inbound calls from the target systems, authenticated by the vendor's own scheme rather than
//! an API key: `POST /inbound/{kind}/{integration}/{rest...}` (and `GET`, for the vendors whose
//! subscription check is one).
//!
//! The vendor's handler (`vendors::<kind>::inbound`) verifies the call and says what it amounts
//! to; this module finds the integration, counts the outcome (`herald_inbound_total`) and acts:
//! acknowledgements are recorded once each (after answering: chat vendors want theirs within
//! seconds), and vendor events become notifications of the integration's organization, routed
//! by its routes to every target but the integration it came from.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::notifications::NotificationAccepted;
use super::{ApiError, AppState};
use crate::store::{now_millis, Acknowledgement};
use crate::vendors::inbound::{InboundAction, InboundAnswer, InboundError, InboundRequest};

pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path((kind, integration_id, rest)): Path<(String, String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "inbound address for integration {integration_id:?}"
        ))
    };
    let Some(runtime) = state
        .registry
        .runtime(&integration_id)
        .filter(|runtime| runtime.config.vendor.kind() == kind)
    else {
        // The vendor says how its senders are told the integration is gone.
        return Err(crate::vendors::find(&kind)
            .and_then(|vendor| vendor.inbound_handler())
            .map(|handler| handler.unknown_integration(&integration_id).into())
            .unwrap_or_else(not_found));
    };
    let handler = runtime
        .config
        .vendor
        .inbound_handler()
        .ok_or_else(not_found)?;
    let organization = runtime.config.organization.clone();
    let count = |outcome: &'static str| {
        metrics::counter!("herald_inbound_total", "integration" => integration_id.clone(), "outcome" => outcome).increment(1);
    };
    let answer = handler
        .handle(InboundRequest {
            integration_id: &integration_id,
            organization: &organization,
            settings: &*runtime.config.settings,
            method: method.as_str(),
            path: &rest,
            query: query.as_deref().unwrap_or_default(),
            headers: &headers,
            body: &body,
            now: (now_millis() / 1000).max(0) as u64,
            client: &state.client,
            timeout: runtime.config.timeout,
            vault: state.vault.as_ref(),
        })
        .await;
    match answer {
        Err(error) => {
            if matches!(error, InboundError::SignatureRefused(_)) {
                tracing::warn!(integration = %integration_id, %error, "inbound call refused");
                count("refused");
            }
            Err(error.into())
        }
        Ok(InboundAnswer::Ignored) => Ok(StatusCode::OK.into_response()),
        Ok(InboundAnswer::Challenge(challenge)) => Ok((
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            challenge,
        )
            .into_response()),
        Ok(InboundAnswer::Handshake(headers)) => {
            count("handshake");
            let mut response = StatusCode::OK.into_response();
            for (name, value) in headers {
                let value = axum::http::HeaderValue::from_str(&value)
                    .map_err(|_| ApiError::Malformed(format!("{name} is not a header value")))?;
                response.headers_mut().insert(name, value);
            }
            Ok(response)
        }
        Ok(InboundAnswer::Reply {
            acknowledged,
            content_type,
            body,
        }) => {
            if !acknowledged.is_empty() {
                record_acknowledgements(&state, &organization, &integration_id, acknowledged);
            }
            Ok((
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response())
        }
        Ok(InboundAnswer::Acknowledged(actions)) => {
            record_acknowledgements(&state, &organization, &integration_id, actions);
            Ok(StatusCode::OK.into_response())
        }
        Ok(InboundAnswer::Notifications {
            notifications,
            acknowledged,
        }) => {
            let submissions =
                state
                    .table
                    .from_vendor(&organization, &integration_id, notifications)?;
            if submissions.is_empty() {
                return Ok(StatusCode::OK.into_response());
            }
            let accepted = state.routers.accept(&organization, submissions).await?;
            // Recorded once the events are journaled: a refused call records nothing.
            if !acknowledged.is_empty() {
                record_acknowledgements(&state, &organization, &integration_id, acknowledged);
            }
            for one in &accepted {
                count(if one.duplicate {
                    "duplicate"
                } else {
                    "accepted"
                });
            }
            let notifications: Vec<NotificationAccepted> =
                accepted.iter().map(NotificationAccepted::from).collect();
            Ok((
                StatusCode::OK,
                Json(serde_json::json!({ "notifications": notifications })),
            )
                .into_response())
        }
    }
}

/// The acknowledgements of an inbound call, recorded once each after the answer has gone.
fn record_acknowledgements(
    state: &Arc<AppState>,
    organization: &str,
    integration_id: &str,
    actions: Vec<InboundAction>,
) {
    let acknowledgements = actions
        .into_iter()
        .map(|action| Acknowledgement {
            organization: organization.to_owned(),
            notification_id: action.notification_id,
            integration_id: integration_id.to_owned(),
            action_id: action.action_id,
            actor: action.actor,
            at: now_millis(),
        })
        .collect();
    super::acknowledgements::record_in_background(state.clone(), acknowledgements);
}

impl From<InboundError> for ApiError {
    fn from(error: InboundError) -> Self {
        match error {
            InboundError::NotFound(what) => ApiError::NotFound(what),
            InboundError::Gone(reason) => ApiError::Gone(reason),
            InboundError::SignatureRefused(reason) => ApiError::SignatureRefused(reason),
            InboundError::Malformed(reason) => ApiError::Malformed(reason),
            InboundError::Misconfigured(reason) => {
                tracing::error!(%reason, "inbound secret unreadable");
                ApiError::Unavailable("inbound calls of this integration are misconfigured".into())
            }
            InboundError::VendorUnavailable(reason) => {
                tracing::warn!(%reason, "inbound event not looked up");
                ApiError::Unavailable(format!("the vendor could not be read: {reason}"))
            }
        }
    }
}
