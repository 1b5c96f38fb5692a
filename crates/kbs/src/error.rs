//! The one error type of the HTTP layer and its mapping to status codes and
//! the reference server's error body. 5xx bodies reveal nothing; the detail
//! goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ward_proto::ErrorBody;

/// An error answered to a client. `kind` is the last segment of the error
/// `type` URI, chosen from the reference server's kinds where one fits.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest { kind: &'static str, detail: String },
    /// 401: missing, expired or invalid session, token or evidence.
    Unauthorized { kind: &'static str, detail: String },
    /// 403: a policy denied the request, or the admin role does not allow it.
    Forbidden { kind: &'static str, detail: String },
    /// 404: no such resource or policy.
    NotFound { kind: &'static str, detail: String },
    /// 405: the endpoint exists but not for this method (the router adds
    /// the `Allow` header).
    MethodNotAllowed,
    /// 408: the request body did not arrive within the body deadline.
    BodyTimeout,
    /// 413: body over the configured limit.
    TooLarge,
    /// 503: collateral the evidence needs is being fetched; `key` names the
    /// fetch to wait for before verifying again (the attest handler waits;
    /// a client sees this only if the wait ran out).
    CollateralPending { key: String, what: String },
    /// 503 with `Retry-After`: a dependency did not answer in time.
    Unavailable {
        kind: &'static str,
        detail: String,
        retry_after_secs: u64,
    },
    /// 500: our fault; the detail is logged, never sent.
    Internal(String),
}

impl ApiError {
    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            kind,
            detail: detail.into(),
        }
    }
    pub fn unauthorized(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthorized {
            kind,
            detail: detail.into(),
        }
    }
    pub fn forbidden(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::Forbidden {
            kind,
            detail: detail.into(),
        }
    }
    pub fn not_found(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            detail: detail.into(),
        }
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::CollateralPending { .. } | Self::Unavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short kind used in the `type` URI and in metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest { kind, .. }
            | Self::Unauthorized { kind, .. }
            | Self::Forbidden { kind, .. }
            | Self::NotFound { kind, .. }
            | Self::Unavailable { kind, .. } => kind,
            Self::CollateralPending { .. } => "CollateralUnavailable",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::BodyTimeout => "RequestTimeout",
            Self::TooLarge => "PayloadTooLarge",
            Self::Internal(_) => "InternalError",
        }
    }
}

impl From<ward_store::StoreError> for ApiError {
    fn from(e: ward_store::StoreError) -> Self {
        ApiError::internal(format!("store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = self.kind();
        let retry_after = match &self {
            Self::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::CollateralPending { .. } => Some(5),
            _ => None,
        };
        let detail = match self {
            Self::BadRequest { detail, .. }
            | Self::Unauthorized { detail, .. }
            | Self::Forbidden { detail, .. }
            | Self::NotFound { detail, .. } => {
                tracing::info!(status = status.as_u16(), kind, %detail, "request refused");
                detail
            }
            Self::MethodNotAllowed => "this endpoint does not take this method".to_string(),
            Self::TooLarge => "request body is larger than the configured limit".to_string(),
            Self::BodyTimeout => {
                "the request body did not arrive within the configured time".to_string()
            }
            Self::CollateralPending { what, .. } => {
                let detail = format!("{what} is still being fetched; try again shortly");
                tracing::warn!(status = status.as_u16(), kind, %detail, "request refused");
                detail
            }
            Self::Unavailable { detail, .. } => {
                tracing::warn!(status = status.as_u16(), kind, %detail, "request refused");
                detail
            }
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".to_string()
            }
        };
        let mut resp = (status, Json(ErrorBody::new(kind, detail))).into_response();
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}
