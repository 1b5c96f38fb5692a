//! The local API containers call inside the TEE (`ward guest serve`,
//! 127.0.0.1:8006 by default), on the paths CoCo workloads already use:
//!
//! * `GET /aa/token?token_type=kbs` → `{"token": "<EAR JWT>"}` (attesting
//!   when there is no valid token). The TEE private key is never returned.
//! * `GET /aa/evidence?runtime_data=<text>` → the TEE's evidence JSON whose
//!   report_data is the runtime data's bytes (at most 64), zero-padded.
//! * `GET /cdh/resource/<repo>/<type>/<tag>` → the plaintext resource.
//! * `POST /cdh/unseal` with a sealed secret (`sealed.…`, as the body or as
//!   `{"secret": "sealed.…"}`) → the plaintext, after checking the owner's
//!   signature (see [`crate::sealed`]).
//! * `GET /healthz`.
//!
//! Errors are `{"error": <kind>, "detail": <text>}` with a status telling a
//! policy denial (403) from an unknown resource (404), a refused attestation
//! (401), an unreachable or misbehaving KBS (502) and a KBS that did not
//! answer within the call deadline (504), also for unknown paths (404) and
//! methods (405). Resource bytes never reach a log line.
//!
//! Calls run concurrently: `/aa/evidence` never waits on the KBS, and calls
//! that need a session share one in-flight attestation. Every call that
//! needs the KBS has an overall deadline ([`GuestApi::with_deadline`]).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use ward_proto::ResourcePath;

use crate::client::{GuestError, KbsClient};

/// Shared state: one KBS client (one TEE key, one session, shared by all
/// calls) and the deadline of a call that needs the KBS.
#[derive(Clone)]
pub struct GuestApi {
    client: KbsClient,
    deadline: std::time::Duration,
}

/// Default overall deadline of a call that needs the KBS.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1, "detail": self.2}))).into_response()
    }
}

impl From<GuestError> for ApiError {
    fn from(e: GuestError) -> Self {
        let (status, kind) = match &e {
            GuestError::PolicyDenied(_) => (StatusCode::FORBIDDEN, "PolicyDenied"),
            GuestError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
            GuestError::Attestation { .. } => (StatusCode::UNAUTHORIZED, "AttestationFailed"),
            GuestError::Attester(_) => (StatusCode::INTERNAL_SERVER_ERROR, "EvidenceUnavailable"),
            GuestError::Network(_) => (StatusCode::BAD_GATEWAY, "KbsUnreachable"),
            GuestError::Jwe(_) | GuestError::Protocol(_) | GuestError::Http { .. } => {
                (StatusCode::BAD_GATEWAY, "KbsError")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal"),
        };
        tracing::warn!(kind, error = %e, "request failed");
        ApiError(status, kind, e.to_string())
    }
}

impl GuestApi {
    pub fn new(client: KbsClient) -> Self {
        Self {
            client,
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// The overall deadline of a call that needs the KBS (attestation and
    /// resource fetch together, retries included); past it the call
    /// answers 504 `KbsTimeout`.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Run `op` against the KBS within the call deadline.
    async fn kbs<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, GuestError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.deadline, op).await {
            Ok(r) => Ok(r?),
            Err(_) => {
                tracing::warn!(%what, deadline_ms = self.deadline.as_millis() as u64, "the KBS did not answer in time");
                Err(ApiError(
                    StatusCode::GATEWAY_TIMEOUT,
                    "KbsTimeout",
                    format!(
                        "the KBS did not answer within {} s ({what})",
                        self.deadline.as_secs_f64()
                    ),
                ))
            }
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/aa/token", get(token))
            .route("/aa/evidence", get(evidence))
            .route("/cdh/resource/{repo}/{kind}/{tag}", get(resource))
            .route("/cdh/unseal", axum::routing::post(unseal))
            .route("/healthz", get(|| async { "ok" }))
            .fallback(|| async {
                ApiError(StatusCode::NOT_FOUND, "NotFound", "no such endpoint".into())
            })
            .method_not_allowed_fallback(|| async {
                ApiError(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "this endpoint does not take this method".into(),
                )
            })
            .with_state(self)
    }
}

async fn token(
    State(api): State<GuestApi>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match q.get("token_type").map(String::as_str) {
        None | Some("kbs") => {}
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "UnsupportedTokenType",
                format!("token_type {other:?} is not supported (kbs)"),
            ))
        }
    }
    let token = api.kbs("token", api.client.valid_token()).await?;
    Ok(Json(json!({ "token": token })))
}

async fn evidence(
    State(api): State<GuestApi>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rd = q.get("runtime_data").map(String::as_bytes).unwrap_or(b"");
    if rd.len() > 64 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "RuntimeDataTooLong",
            format!(
                "runtime_data has {} bytes; at most 64 fit report_data",
                rd.len()
            ),
        ));
    }
    // Needs only the attester: never waits on the KBS.
    Ok(Json(api.client.evidence(rd)?))
}

async fn resource(
    State(api): State<GuestApi>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let path = ResourcePath::parse(&format!("{repo}/{kind}/{tag}")).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "InvalidResourcePath",
            e.to_string(),
        )
    })?;
    let data = api.kbs("resource", api.client.get_resource(&path)).await?;
    tracing::info!(resource = %path, bytes = data.len(), "resource delivered");
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

async fn unseal(State(api): State<GuestApi>, body: String) -> Result<Response, ApiError> {
    let text = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => v["secret"].as_str().map(str::to_string).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "InvalidSealedSecret",
                "JSON body without \"secret\"".into(),
            )
        })?,
        Err(_) => body,
    };
    let unsealed =
        match tokio::time::timeout(api.deadline, crate::sealed::unseal(&api.client, &text)).await {
            Ok(r) => r,
            Err(_) => {
                return Err(ApiError(
                    StatusCode::GATEWAY_TIMEOUT,
                    "KbsTimeout",
                    format!(
                        "the KBS did not answer within {} s (unseal)",
                        api.deadline.as_secs_f64()
                    ),
                ))
            }
        };
    match unsealed {
        Ok(plain) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], plain).into_response())
        }
        Err(crate::sealed::SealError::Kbs(e)) => Err(e.into()),
        Err(e) => {
            let (status, kind) = match &e {
                crate::sealed::SealError::Signature(_) => (StatusCode::FORBIDDEN, "SealSignature"),
                crate::sealed::SealError::Decrypt(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "SealDecrypt")
                }
                _ => (StatusCode::BAD_REQUEST, "InvalidSealedSecret"),
            };
            tracing::warn!(kind, error = %e, "unseal failed");
            Err(ApiError(status, kind, e.to_string()))
        }
    }
}

/// Serve the API on `listener` until `shutdown` completes, with the
/// connection limits of `ward_listen` (defaults: [`limits`]). Refuses a
/// listener that is not on a loopback address: secrets are served in
/// plaintext to whoever can connect. Connections run on the calling
/// runtime, which must be multi-threaded (attester calls that may block use
/// `block_in_place`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: GuestApi,
    limits: ward_listen::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to serve the guest API on {addr}: it must listen on a loopback address"
        ));
    }
    let opts = ward_listen::Options {
        limits,
        workers: Some(ward_listen::Workers::Current),
        ..Default::default()
    };
    ward_listen::serve(listener, api.router(), opts, shutdown).await
}

/// The guest API's default connection limits: few containers call it, and
/// each call is short.
pub fn limits() -> ward_listen::Limits {
    ward_listen::Limits {
        max_connections: 256,
        ..Default::default()
    }
}
