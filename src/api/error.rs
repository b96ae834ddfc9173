//! The API's one error type and its mapping to HTTP status codes and JSON bodies:
//! `{"error": {"code", "message", "field"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::router::RouterError;
use crate::store::StoreError;
use crate::wedsync::{FieldError, ParseError, TransformError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(String),
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The request is fine but the resource's configuration does not allow it.
    #[error("{0}")]
    Conflict(String),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut error = json!({"code": code, "message": self.to_string()});
        if let ApiError::Invalid(field) = &self {
            error["field"] = json!(field.field);
            error["message"] = json!(format!("{}: {}", field.field, field.reason));
        }
        let mut response = (status, axum::Json(json!({"error": error}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
