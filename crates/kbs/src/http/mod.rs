//! The HTTP surface: [`router`] maps the KBS protocol 0.4.0 endpoints, the
//! admin API, JWKS, metrics and health checks onto [`AppState`]. Handlers
//! only extract, call one core operation and shape the response.

pub mod admin;
pub mod extract;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ward_proto::kbs::{AttestationToken, Request};

use crate::error::ApiError;
use crate::session;
use crate::state::{AppState, AttestError};
use crate::tokens::Credential;
use extract::{Body, JsonBody, RequestError, Resource};

/// The complete router of the trust service.
pub fn router(state: AppState) -> Router {
    let limit = state.settings().max_body_bytes;
    Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route(
            "/kbs/v0/resource/{repo}/{kind}/{tag}",
            get(get_resource)
                .post(admin::put_resource)
                .delete(admin::delete_resource),
        )
        .route(
            "/kbs/v0/resource-policy",
            post(admin::set_resource_policy).get(admin::get_resource_policy),
        )
        .route(
            "/kbs/v0/resource-policy/{*prefix}",
            get(admin::get_prefix_resource_policy).delete(admin::delete_prefix_resource_policy),
        )
        .route(
            "/kbs/v0/resource-policies",
            get(admin::list_resource_policies),
        )
        .route(
            "/kbs/v0/attestation-policy",
            post(admin::set_attestation_policy),
        )
        .route(
            "/kbs/v0/attestation-policy/{id}",
            get(admin::get_attestation_policy).delete(admin::delete_attestation_policy),
        )
        .route(
            "/kbs/v0/attestation-policies",
            get(admin::list_attestation_policies),
        )
        .route("/kbs/v0/reference-value", post(admin::set_reference_value))
        .route(
            "/kbs/v0/collateral",
            post(admin::import_collateral).get(admin::list_collateral),
        )
        .route(
            "/kbs/v0/reference-value/{name}",
            get(admin::get_reference_value).delete(admin::delete_reference_value),
        )
        .route(
            "/kbs/v0/reference-values",
            get(admin::list_reference_values),
        )
        .route("/kbs/v0/admin/resources", get(admin::list_resources))
        .route(
            "/kbs/v0/admin/resources/{repo}/{kind}/{tag}",
            get(admin::resource_metadata),
        )
        .route("/kbs/v0/admin/rotate-key", post(admin::rotate_key))
        .route("/kbs/v0/audit/checkpoint", get(admin::audit_checkpoint))
        .route("/kbs/v0/audit/keys", get(admin::audit_keys))
        .route("/kbs/v0/audit/entries", get(admin::audit_entries))
        .route("/kbs/v0/audit/proof/inclusion", get(admin::audit_inclusion))
        .route(
            "/kbs/v0/audit/proof/consistency",
            get(admin::audit_consistency),
        )
        .route("/.well-known/jwks.json", get(jwks))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn with_cookie(
    mut resp: Response,
    state: &AppState,
    value: &str,
    exp: i64,
) -> Result<Response, ApiError> {
    let header = session::set_cookie(value, exp, state.settings().secure_cookies);
    resp.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&header).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

async fn auth(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<Request>,
) -> Result<Response, ApiError> {
    let s = state.auth(&req)?;
    with_cookie(Json(s.challenge).into_response(), &state, &s.cookie, s.exp)
}

async fn attest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let cookie = session::cookie_value(&headers);
    // Collateral being fetched (off the workers) is waited for here,
    // without blocking the worker, up to the attestation's own deadline.
    let deadline = tokio::time::Instant::now() + state.settings().collateral_wait;
    let mut rounds = 0;
    let done = loop {
        let pending = match state.attest(cookie, &b) {
            Err(e) if rounds < 4 => match e.collateral_pending() {
                Some((key, what)) => (key.to_string(), what.to_string()),
                None => return Err(e),
            },
            other => break other?,
        };
        rounds += 1;
        let wait = ward_collateral::fetch::fetcher().wait(&pending.0);
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            return Err(AttestError::CollateralTimeout {
                what: pending.1,
                secs: state.settings().collateral_wait.as_secs(),
            }
            .into());
        }
    };
    let body = Json(AttestationToken { token: done.token }).into_response();
    with_cookie(body, &state, &done.cookie, done.exp)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
}

async fn get_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    Resource(path): Resource,
) -> Result<Response, ApiError> {
    let cred = match bearer(&headers) {
        Some(t) => Some(Credential::Bearer(t)),
        None => session::cookie_value(&headers).map(Credential::Cookie),
    };
    let body = state.get_resource(cred, &path)?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state.0.keys.current();
    let list: Vec<_> = keys
        .verifying
        .iter()
        .map(|(_, _, jwk)| jwk.clone())
        .collect();
    Json(serde_json::json!({ "keys": list })).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.0.metrics.change_feed(state.store().change_feed());
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.0.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    // Ready only if the store takes writes: releases and admin changes
    // need it, and a full disk must take the replica out of rotation.
    // On a blocking thread: a remote store's probe may wait for the network.
    let s = state.clone();
    let writable = tokio::task::spawn_blocking(move || s.store().check_writable(s.now()))
        .await
        .unwrap_or_else(|e| Err(ward_store::StoreError::Database(e.to_string())));
    match writable {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

async fn fallback() -> ApiError {
    RequestError::NoEndpoint.into()
}

async fn method_not_allowed() -> ApiError {
    RequestError::MethodNotAllowed.into()
}
