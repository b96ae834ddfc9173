//! The API's one error type and its mapping to HTTP status codes and JSON bodies:
//! `{"error": {"code", "message", "field"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::catalog::CatalogError;
use crate::router::RouterError;
use crate::store::{Role, StoreError};
use crate::wedsync::{FieldError, ParseError, TransformError};

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// A stable, machine-readable code: `unauthorized`, `forbidden`, `not_found`,
    /// `malformed_json`, `invalid_field`, `conflict`, `version_mismatch`...
    pub code: &'static str,
    /// What a person reads; an invalid field's message starts with the field.
    pub message: String,
    /// The field an `invalid_field` error is about (`sourceNotification.priority`, `when`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The role a `forbidden` call needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_role: Option<Role>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A missing or wrong bearer token; the text says which token (API key, metrics token).
    #[error("missing or invalid {0}")]
    Unauthorized(&'static str),
    /// A valid key whose role does not allow the call.
    #[error("this call needs an API key with the {needed} role; this key is a {held} key")]
    Forbidden { needed: Role, held: Role },
    #[error("{0} not found")]
    NotFound(String),
    /// An inbound call whose vendor signature (or address secret) does not verify.
    #[error("signature refused: {0}")]
    SignatureRefused(String),
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A request that is not malformed JSON but not a request either (headers, query, path).
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body did not arrive within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("content-type must be application/json, not {0:?}")]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The request is fine but the resource's configuration does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// A change to a version of the resource that is no longer the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A change that must name the version it changes (`If-Match` or `version`) and does not.
    #[error("{0}")]
    PreconditionRequired(String),
    /// An inbound address that no longer exists (a REST-hook sender unsubscribes on 410).
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl From<ParseError> for ApiError {
    fn from(err: ParseError) -> Self {
        match err {
            ParseError::Malformed(message) => ApiError::Malformed(message),
            ParseError::Invalid(field) => ApiError::Invalid(field),
        }
    }
}

impl From<TransformError> for ApiError {
    fn from(err: TransformError) -> Self {
        match err {
            TransformError::Invalid(field) => ApiError::Invalid(field),
            TransformError::Busy(busy) => ApiError::Unavailable(busy.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::WriterGone => ApiError::Unavailable("store is shutting down".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<RouterError> for ApiError {
    fn from(err: RouterError) -> Self {
        match err {
            RouterError::Store(store) => store.into(),
            RouterError::Unavailable => ApiError::Unavailable(err.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::Invalid(field) => ApiError::Invalid(field),
            CatalogError::NotFound(_) | CatalogError::RouteNotFound(_) => {
                ApiError::NotFound(err.to_string().replace(" not found", ""))
            }
            CatalogError::Taken(_)
            | CatalogError::ReadOnly(_)
            | CatalogError::RouteTaken(_)
            | CatalogError::RouteReadOnly(_)
            | CatalogError::InUse(..)
            | CatalogError::NoVault => ApiError::Conflict(err.to_string()),
            CatalogError::Stale { .. } => ApiError::PreconditionFailed(err.to_string()),
            CatalogError::Store(store) => store.into(),
            CatalogError::Vault(_) | CatalogError::Unreadable(..) => {
                ApiError::Internal(err.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::SignatureRefused(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "version_mismatch")
            }
            ApiError::PreconditionRequired(_) => {
                (StatusCode::PRECONDITION_REQUIRED, "version_required")
            }
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut error = ErrorDetail {
            code,
            message: self.to_string(),
            field: None,
            required_role: None,
        };
        if let ApiError::Forbidden { needed, .. } = &self {
            error.required_role = Some(*needed);
        }
        if let ApiError::Invalid(field) = &self {
            error.field = Some(field.field.clone());
        }
        let mut response = (status, axum::Json(ErrorBody { error })).into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Middleware: an error answered by the framework rather than by a handler (a path that is not
/// UTF-8, a wrong method, a query that does not parse) becomes the same JSON error shape.
pub async fn errors_as_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed("this route does not take that method".into())
        }
        StatusCode::NOT_FOUND => ApiError::NotFound("route".into()),
        status if status.is_client_error() => ApiError::BadRequest(if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_lowercase()
        } else {
            text
        }),
        _ => ApiError::Internal(text),
    };
    let mut converted = error.into_response();
    // Keep the framework's status (a 415 stays a 415).
    *converted.status_mut() = status;
    converted
}
