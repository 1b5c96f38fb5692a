//! The error answered to clients: [`ApiError`] wraps the typed error of
//! each subsystem, and [`ApiError::classify`] is the one place that maps
//! every cause to its HTTP status and KBS error `type` (the last segment of
//! `https://github.com/confidential-containers/kbs/errors/<type>`, chosen
//! from the reference server's kinds where one fits). 5xx bodies reveal
//! nothing; their detail goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ward_proto::ErrorBody;

use crate::admin::AdminError;
use crate::admin_auth::AdminAuthError;
use crate::http::extract::RequestError;
use crate::keys::KeyError;
use crate::policy_cache::PolicyLoadError;
use crate::session::{CookieError, SessionError};
use crate::state::{AttestError, ResourceError};
use crate::tokens::TokenError;

/// An error answered to a client, by the subsystem that found it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Attest(#[from] AttestError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    AdminAuth(#[from] AdminAuthError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Policy(#[from] PolicyLoadError),
    #[error("store: {0}")]
    Store(#[from] ward_store::StoreError),
    /// Our fault, in HTTP plumbing (a header that cannot be built).
    #[error("{0}")]
    Internal(String),
}

/// Seconds in `Retry-After` when the store is unavailable.
pub const STORE_RETRY_AFTER_SECS: u64 = 1;

/// How a cause is answered: status, error type, and seconds for
/// `Retry-After` when the client should come back.
struct Answer {
    status: StatusCode,
    kind: &'static str,
    retry_after: Option<u64>,
}

const fn answer(status: StatusCode, kind: &'static str) -> Answer {
    Answer {
        status,
        kind,
        retry_after: None,
    }
}

impl ApiError {
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// Every cause's status and error type: the one mapping.
    fn classify(&self) -> Answer {
        use StatusCode as S;
        const INTERNAL: Answer = answer(S::INTERNAL_SERVER_ERROR, "InternalError");
        if self.store_unavailable() {
            // Never a hang: the store gave up within its deadline.
            return Answer {
                retry_after: Some(STORE_RETRY_AFTER_SECS),
                ..answer(S::SERVICE_UNAVAILABLE, "StoreUnavailable")
            };
        }
        match self {
            Self::Request(e) => match e {
                RequestError::Json(_) => answer(S::BAD_REQUEST, "SerdeError"),
                RequestError::Body(_) => answer(S::BAD_REQUEST, "InvalidRequest"),
                RequestError::Path(_) => answer(S::BAD_REQUEST, "InvalidRequestPath"),
                RequestError::Query(_) => answer(S::BAD_REQUEST, "InvalidQuery"),
                RequestError::TooLarge => answer(S::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
                RequestError::BodyTimeout => answer(S::REQUEST_TIMEOUT, "RequestTimeout"),
                RequestError::NoEndpoint => answer(S::NOT_FOUND, "NotFound"),
                RequestError::MethodNotAllowed => answer(S::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            },
            Self::Session(e) => match e {
                SessionError::Missing => answer(S::UNAUTHORIZED, "CookieNotFound"),
                SessionError::Cookie(CookieError::Expired) => {
                    answer(S::UNAUTHORIZED, "ExpiredCookie")
                }
                SessionError::Cookie(CookieError::UnknownKey | CookieError::Invalid)
                | SessionError::AlreadyAttested
                | SessionError::ChallengeAnswered => answer(S::UNAUTHORIZED, "InvalidCookie"),
                SessionError::Seal(_) => INTERNAL,
            },
            Self::Token(e) => match e {
                TokenError::Missing | TokenError::NotAttested => {
                    answer(S::UNAUTHORIZED, "TokenNotFound")
                }
                TokenError::Unreadable(_) => INTERNAL,
                TokenError::Expired
                | TokenError::RetiredKey
                | TokenError::NoTeeKey
                | TokenError::BadTeeKey(_)
                | TokenError::BadSignature(_) => answer(S::UNAUTHORIZED, "TokenVerifierError"),
            },
            Self::Attest(e) => match e {
                AttestError::ProtocolVersion { .. } => answer(S::BAD_REQUEST, "ProtocolVersion"),
                AttestError::UnsupportedTee { .. } => answer(S::BAD_REQUEST, "UnsupportedTee"),
                AttestError::Body(_) => answer(S::BAD_REQUEST, "SerdeError"),
                AttestError::TeeKey(_) => answer(S::BAD_REQUEST, "JweError"),
                AttestError::MalformedEvidence(_) => answer(S::BAD_REQUEST, "AttestationError"),
                AttestError::Evidence(_) => answer(S::UNAUTHORIZED, "AttestationError"),
                AttestError::CollateralPending { .. } => Answer {
                    retry_after: Some(5),
                    ..answer(S::SERVICE_UNAVAILABLE, "CollateralUnavailable")
                },
                AttestError::CollateralTimeout { .. } => Answer {
                    retry_after: Some(10),
                    ..answer(S::SERVICE_UNAVAILABLE, "CollateralUnavailable")
                },
                AttestError::Verifier(_)
                | AttestError::Appraisal(_)
                | AttestError::Issue(_)
                | AttestError::Random => INTERNAL,
            },
            Self::Resource(e) => match e {
                ResourceError::Denied { .. } => answer(S::FORBIDDEN, "PolicyDeny"),
                ResourceError::NotFound(_) => answer(S::NOT_FOUND, "ResourceNotFound"),
                ResourceError::Policy(_) | ResourceError::Encrypt(_) => INTERNAL,
            },
            Self::AdminAuth(e) => match e {
                AdminAuthError::Missing
                | AdminAuthError::NotConfigured
                | AdminAuthError::Token(_)
                | AdminAuthError::Lifetime { .. } => answer(S::UNAUTHORIZED, "AdminAuth"),
                AdminAuthError::NoRole | AdminAuthError::Forbidden { .. } => {
                    answer(S::FORBIDDEN, "AdminAuth")
                }
            },
            Self::Admin(e) => match e {
                AdminError::Encoding(_) | AdminError::ReferenceValue(_) => {
                    answer(S::BAD_REQUEST, "SerdeError")
                }
                AdminError::Policy(_) | AdminError::PolicyType(_) => {
                    answer(S::BAD_REQUEST, "PolicyEngine")
                }
                AdminError::Prefix(_) | AdminError::Id | AdminError::UnknownRing(_) => {
                    answer(S::BAD_REQUEST, "InvalidRequest")
                }
                AdminError::Collateral(_) => answer(S::BAD_REQUEST, "CollateralError"),
                AdminError::NoPolicy { .. } => answer(S::NOT_FOUND, "PolicyNotFound"),
                AdminError::NoReferenceValue(_) => answer(S::NOT_FOUND, "ReferenceValueNotFound"),
                AdminError::NoResource(_) => answer(S::NOT_FOUND, "ResourceNotFound"),
                AdminError::AuditRange(_) => answer(S::BAD_REQUEST, "AuditRange"),
            },
            Self::Keys(_) | Self::Policy(_) | Self::Store(_) | Self::Internal(_) => INTERNAL,
        }
    }

    /// Whether the cause is a store that could not be reached or answer in
    /// time (or a transaction that kept conflicting): worth a retry.
    fn store_unavailable(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if let Some(s) = e.downcast_ref::<ward_store::StoreError>() {
                return matches!(
                    s,
                    ward_store::StoreError::Unavailable(_) | ward_store::StoreError::Conflict(_)
                );
            }
            cause = e.source();
        }
        false
    }

    pub fn status(&self) -> StatusCode {
        self.classify().status
    }

    /// The short kind used in the `type` URI and in metrics labels.
    pub fn kind(&self) -> &'static str {
        self.classify().kind
    }

    /// The collateral fetch an attestation waits for, if that is all it
    /// needs before verifying again.
    pub fn collateral_pending(&self) -> Option<(&str, &str)> {
        match self {
            Self::Attest(AttestError::CollateralPending { key, what }) => Some((key, what)),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Answer {
            status,
            kind,
            retry_after,
        } = self.classify();
        let detail = self.to_string();
        let detail = if status.is_server_error() && retry_after.is_none() {
            tracing::error!(%detail, "internal error");
            "internal error".to_string()
        } else if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), kind, %detail, "request refused");
            detail
        } else {
            tracing::info!(status = status.as_u16(), kind, %detail, "request refused");
            detail
        };
        let mut resp = (status, Json(ErrorBody::new(kind, detail))).into_response();
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}
