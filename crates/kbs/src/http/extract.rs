//! Request extractors: the body (over-limit and too-slow bodies told apart),
//! a JSON body, a resource path, and the authorised admin caller of one
//! operation. Each rejects with an [`ApiError`].

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;
use ward_proto::ResourcePath;

use crate::admin_auth::Permission;
use crate::error::ApiError;
use crate::state::AppState;

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A body or field that is not the JSON (or text) expected.
    #[error("{0}")]
    Json(String),
    #[error("request body: {0}")]
    Body(String),
    #[error("{0}")]
    Path(String),
    #[error("query string: {0}")]
    Query(String),
    #[error("request body is larger than the configured limit")]
    TooLarge,
    #[error("the request body did not arrive within the configured time")]
    BodyTimeout,
    #[error("no such endpoint")]
    NoEndpoint,
    #[error("this endpoint does not take this method")]
    MethodNotAllowed,
}

impl RequestError {
    pub fn json(detail: impl Into<String>) -> Self {
        Self::Json(detail.into())
    }
}

/// The request body, within the configured size and time.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let b = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                RequestError::TooLarge
            } else if ward_listen::is_body_timeout(&e) {
                RequestError::BodyTimeout
            } else {
                RequestError::Body(e.to_string())
            }
        })?;
        Ok(Self(b))
    }
}

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Body(b) = Body::from_request(req, state).await?;
        serde_json::from_slice(&b)
            .map(Self)
            .map_err(|e| RequestError::json(format!("request body: {e}")).into())
    }
}

/// A validated resource path from the URL (`{repo}/{kind}/{tag}`).
pub struct Resource(pub ResourcePath);

impl<S: Send + Sync> FromRequestParts<S> for Resource {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let bad = |e: &dyn std::fmt::Display| RequestError::Path(e.to_string());
        let Path((repo, kind, tag)) =
            Path::<(String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| bad(&e))?;
        Ok(Self(
            ResourcePath::new(&repo, &kind, &tag).map_err(|e| bad(&e))?,
        ))
    }
}

/// An admin operation: the permission it needs and its name in logs and
/// metrics.
pub trait AdminOp: Send + Sync + 'static {
    const PERMISSION: Permission;
    const NAME: &'static str;
}

macro_rules! admin_ops {
    ($($op:ident: $perm:ident, $name:literal;)*) => {
        $(
            #[doc = concat!("The admin operation `", $name, "`.")]
            pub struct $op;
            impl AdminOp for $op {
                const PERMISSION: Permission = Permission::$perm;
                const NAME: &'static str = $name;
            }
        )*
    };
}

admin_ops! {
    PutResource: WriteResources, "put-resource";
    DeleteResource: WriteResources, "delete-resource";
    ListResources: ReadResources, "list-resources";
    ResourceMetadata: ReadResources, "resource-metadata";
    SetResourcePolicy: WritePolicies, "set-resource-policy";
    GetResourcePolicy: ReadPolicies, "get-resource-policy";
    DeleteResourcePolicy: WritePolicies, "delete-resource-policy";
    ListResourcePolicies: ReadPolicies, "list-resource-policies";
    SetAttestationPolicy: WritePolicies, "set-attestation-policy";
    GetAttestationPolicy: ReadPolicies, "get-attestation-policy";
    DeleteAttestationPolicy: WritePolicies, "delete-attestation-policy";
    ListAttestationPolicies: ReadPolicies, "list-attestation-policies";
    SetReferenceValue: WriteReferenceValues, "set-reference-value";
    GetReferenceValue: ReadReferenceValues, "get-reference-value";
    DeleteReferenceValue: WriteReferenceValues, "delete-reference-value";
    ListReferenceValues: ReadReferenceValues, "list-reference-values";
    RotateKey: RotateKeys, "rotate-key";
    ImportCollateral: WriteReferenceValues, "import-collateral";
    ListCollateral: ReadReferenceValues, "list-collateral";
    ReadAudit: ReadAudit, "read-audit";
}

/// The caller of admin operation `O`, authorised for its permission. A
/// refusal is logged and counted under the operation's name.
pub struct Admin<O: AdminOp> {
    who: String,
    state: AppState,
    op: PhantomData<O>,
}

impl<O: AdminOp> FromRequestParts<AppState> for Admin<O> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        match state.0.admin.authorize(header, O::PERMISSION, state.now()) {
            Ok(who) => Ok(Self {
                who,
                state: state.clone(),
                op: PhantomData,
            }),
            Err(e) => {
                let e = ApiError::from(e);
                state.0.metrics.admin(O::NAME, e.kind());
                Err(e)
            }
        }
    }
}

impl<O: AdminOp> Admin<O> {
    /// The audit record of this caller's change, completed by the
    /// operation (its object) and the store (content digests, version).
    pub fn event(&self) -> ward_store::AuditEvent {
        ward_store::AuditEvent::new("admin")
            .with("caller", self.who.as_str())
            .with("operation", O::NAME)
    }

    /// Answer the operation's outcome as text of `content_type`.
    pub fn answer_text(
        self,
        content_type: &'static str,
        result: Result<String, ApiError>,
    ) -> Result<Response, ApiError> {
        let outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind());
        self.state.0.metrics.admin(O::NAME, outcome);
        result
            .map(|body| ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response())
    }

    /// Answer the operation's outcome as JSON, logging and counting it.
    pub fn answer(self, result: Result<Value, ApiError>) -> Result<Response, ApiError> {
        let op = O::NAME;
        match &result {
            Ok(_) => tracing::info!(admin = %self.who, operation = op, "admin change"),
            Err(e) => {
                tracing::info!(admin = %self.who, operation = op, kind = e.kind(), "admin request failed")
            }
        }
        let outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind());
        self.state.0.metrics.admin(op, outcome);
        result.map(|v| Json(v).into_response())
    }
}
