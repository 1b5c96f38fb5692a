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
//! (401) and an unreachable or misbehaving KBS (502). Resource bytes never
//! reach a log line.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Mutex;
use ward_proto::ResourcePath;

use crate::client::{GuestError, KbsClient};

/// Shared state: one KBS client (one TEE key, one session).
#[derive(Clone)]
pub struct GuestApi {
    client: Arc<Mutex<KbsClient>>,
}

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
            client: Arc::new(Mutex::new(client)),
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/aa/token", get(token))
            .route("/aa/evidence", get(evidence))
            .route("/cdh/resource/{repo}/{kind}/{tag}", get(resource))
            .route("/cdh/unseal", axum::routing::post(unseal))
            .route("/healthz", get(|| async { "ok" }))
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
    let token = api.client.lock().await.valid_token().await?;
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
    let client = api.client.lock().await;
    Ok(Json(client.evidence(rd)?))
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
    let data = api.client.lock().await.get_resource(&path).await?;
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
    let mut client = api.client.lock().await;
    match crate::sealed::unseal(&mut client, &text).await {
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
