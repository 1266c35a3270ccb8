//! The one place that chooses HTTP status codes.
//!
//! Every failure, from extractors, validation, the backend or the router's fallbacks, becomes an
//! [`ApiError`], and every `ApiError` is answered with `{"error":{"code":"...","message":"..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::backend::BackendError;

/// The body of every error answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: bad_request, unauthorized, forbidden, not_found, method_not_allowed,
    /// conflict, payload_too_large, range_not_satisfiable, invalid, internal.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// The offending field of a 422, e.g. `text.stub_after_sec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unparseable request: bad id, bad query value, malformed JSON body. 400 `bad_request`.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or unknown `X-API-Key`. 401 `unauthorized`.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A reader key asked for a change. 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// No such object (for this tenant) or no such route. 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method. 405 `method_not_allowed`.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Not possible in the object's current state. 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// Request body above the limit. 413 `payload_too_large`.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Well-formed but unacceptable values. 422 `invalid`.
    #[error("{0}")]
    Invalid(String),
    /// One field's value is unacceptable; the answer names it. 422 `invalid`.
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    /// A `Range` outside the artifact. 416 `range_not_satisfiable`.
    #[error("range not satisfiable: the artifact has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The storage file system is full; nothing was stored. 507 `insufficient_storage`. The
    /// detail is logged; the client is told to try again once space is freed.
    #[error("no space left on the storage device: {0}")]
    InsufficientStorage(String),
    /// A failure that is not the client's; the detail is logged, the client sees
    /// "internal error". 500 `internal`.
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// Status and machine-readable code. Exhaustive, no catch-all: a new variant must choose.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::Invalid(_) | ApiError::InvalidField { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
            }
            ApiError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The message the client sees.
    fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error".to_owned(),
            ApiError::InsufficientStorage(_) => {
                "no space left on the storage device; nothing was stored: free space and try again"
                    .to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::NotFound(id) => ApiError::NotFound(format!("object {id} not found")),
            BackendError::Conflict(message) => ApiError::Conflict(message),
            BackendError::Invalid(message) => ApiError::Invalid(message),
            BackendError::InvalidField { field, reason } => {
                ApiError::InvalidField { field, reason }
            }
            BackendError::NoSpace(detail) => ApiError::InsufficientStorage(detail),
            BackendError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::InsufficientStorage(detail) => tracing::warn!(%detail, "storage full"),
            _ => {}
        }
        let field = match &self {
            ApiError::InvalidField { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.public_message(),
                field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RangeNotSatisfiable { size } = self {
            if let Ok(value) = format!("bytes */{size}").parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_RANGE, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_map_to_statuses() {
        let cases = [
            (
                BackendError::NotFound(3),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                BackendError::Conflict("only a stub is left".into()),
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                BackendError::Invalid("bad".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            ),
            (
                BackendError::NoSpace("catalog: database or disk is full".into()),
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
            ),
            (
                BackendError::Internal("disk".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(ApiError::from(err).status_and_code(), (status, code));
        }
    }

    #[test]
    fn internal_detail_is_not_public() {
        let err = ApiError::from(BackendError::Internal("/secret/path".into()));
        assert_eq!(err.public_message(), "internal error");
        let err = ApiError::from(BackendError::NotFound(9));
        assert_eq!(err.public_message(), "object 9 not found");
    }
}
