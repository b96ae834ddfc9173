//! Operations endpoints outside `/v1`: liveness, readiness and Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState};

/// Liveness: the process answers and its store writer is alive.
pub(super) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.store.writer_alive() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "store writer stopped"})),
        )
            .into_response()
    }
}

pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let store_ok = tokio::time::timeout(Duration::from_secs(2), state.store.flush())
        .await
        .is_ok_and(|r| r.is_ok());
    let routers_ok =
        state.routers.emergency.get().is_some() && state.routers.normal.get().is_some();
    let status = if store_ok && routers_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"store": store_ok, "routers": routers_ok})),
    )
        .into_response()
}

/// Prometheus text. With `server.metrics_token` set, only a scrape carrying it as a bearer token
/// gets it (Prometheus: `authorization: {credentials_file: ...}`).
pub(super) async fn prometheus(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(token) = &state.metrics_token {
        let expected = match token.read() {
            Ok(expected) => expected,
            Err(reason) => {
                tracing::error!(%reason, "metrics token unreadable");
                return ApiError::Unavailable("metrics are misconfigured".into()).into_response();
            }
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| crate::secret::same_secret(given, expected.expose())) {
            return ApiError::Unauthorized("metrics token").into_response();
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
