//! Admin API handlers: resources, policies, reference values, key rotation.
//! Every handler authorises first; policies are compiled before they are
//! stored, so a broken policy is refused and the one in force stays.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use ward_policy::Policy;
use ward_store::{PolicyKind, ReferenceValue};

use crate::admin_auth::Permission;
use crate::error::ApiError;
use crate::http::{body, resource_path};
use crate::policy_cache::{PREFIX_ID, RESOURCE_PACKAGE, RESOURCE_POLICY_ID};
use crate::state::AppState;

/// Authorise, run, count.
fn admin<T>(
    state: &AppState,
    headers: &HeaderMap,
    perm: Permission,
    op: &'static str,
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let header = headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok());
    let result = state.0.admin.authorize(header, perm, state.now()).and_then(|who| {
        let r = f();
        match &r {
            Ok(_) => tracing::info!(admin = %who, operation = op, "admin change"),
            Err(e) => tracing::info!(admin = %who, operation = op, kind = e.kind(), "admin request failed"),
        }
        r
    });
    state.0.metrics.admin(
        op,
        result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind()),
    );
    result
}

fn json_body<T: serde::de::DeserializeOwned>(
    b: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let b = body(b)?;
    serde_json::from_slice(&b)
        .map_err(|e| ApiError::bad_request("SerdeError", format!("request body: {e}")))
}

/// Policies travel base64url (the reference client) — accept padded,
/// unpadded and standard alphabets.
fn decode_policy(s: &str) -> Result<String, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| STANDARD.decode(s))
        .map_err(|_| ApiError::bad_request("SerdeError", "policy is not base64url"))?;
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("SerdeError", "policy is not UTF-8 text"))
}

/// A resource policy is accepted only if it compiles, every call resolves
/// (so it cannot fail later for lack of a function) and it declares `allow`.
fn compile_check(id: &str, text: &str, package: &str) -> Result<(), ApiError> {
    let p = Policy::compile(id, text, package)
        .map_err(|e| ApiError::bad_request("PolicyEngine", e.to_string()))?;
    if !p.declares("allow") {
        return Err(ApiError::bad_request(
            "PolicyEngine",
            ward_policy::PolicyError::MissingRule {
                id: id.into(),
                expected: "the rule allow".into(),
            }
            .to_string(),
        ));
    }
    Ok(())
}

pub async fn put_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WriteResources,
        "put-resource",
        || {
            let path = resource_path(p)?;
            let data = body(b)?;
            let meta = state
                .store()
                .put_resource(&path.to_string(), &data, state.now())?;
            Ok(Json(meta).into_response())
        },
    )
}

pub async fn delete_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WriteResources,
        "delete-resource",
        || {
            let path = resource_path(p)?;
            if !state.store().delete_resource(&path.to_string())? {
                return Err(ApiError::not_found(
                    "ResourceNotFound",
                    format!("resource {path} does not exist"),
                ));
            }
            Ok(Json(json!({"deleted": path.to_string()})).into_response())
        },
    )
}

pub async fn list_resources(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadResources,
        "list-resources",
        || Ok(Json(state.store().list_resources()?).into_response()),
    )
}

pub async fn resource_metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadResources,
        "resource-metadata",
        || {
            let path = resource_path(p)?;
            let meta = state
                .store()
                .resource_meta(&path.to_string())?
                .ok_or_else(|| {
                    ApiError::not_found(
                        "ResourceNotFound",
                        format!("resource {path} does not exist"),
                    )
                })?;
            Ok(Json(meta).into_response())
        },
    )
}

#[derive(Deserialize)]
struct ResourcePolicyBody {
    policy: String,
    /// ward extension: bind the policy to a resource-path prefix
    /// (`repo`, `repo/type` or `repo/type/tag`) instead of setting the
    /// default one.
    #[serde(default)]
    prefix: Option<String>,
}

/// The store id of the resource policy bound to `prefix` (validated).
fn prefix_id(prefix: &str) -> Result<String, ApiError> {
    let p = ward_proto::resource::parse_prefix(prefix)
        .map_err(|e| ApiError::bad_request("InvalidRequest", e.to_string()))?;
    Ok(format!("{PREFIX_ID}{p}"))
}

/// 404 for the policy of `kind` named by `name` (key, value).
fn no_policy(kind: PolicyKind, (key, value): (&str, &str)) -> ApiError {
    ApiError::not_found(
        "PolicyNotFound",
        format!("no {} policy with {key} {value:?}", kind.as_str()),
    )
}

/// The stored policy `id` of `kind` as an answer: its text (base64url), its
/// version and `name` (key, value) naming it.
fn policy_answer(
    state: &AppState,
    kind: PolicyKind,
    id: &str,
    name: (&str, &str),
) -> Result<Response, ApiError> {
    let sp = state
        .store()
        .get_policy(kind, id)?
        .ok_or_else(|| no_policy(kind, name))?;
    let mut body = json!({"policy": URL_SAFE_NO_PAD.encode(&sp.text), "version": sp.version});
    body[name.0] = json!(name.1);
    Ok(Json(body).into_response())
}

/// Delete the stored policy `id` of `kind`; 404 when there is none.
fn delete_policy(
    state: &AppState,
    kind: PolicyKind,
    id: &str,
    name: (&str, &str),
) -> Result<Response, ApiError> {
    if !state.store().delete_policy(kind, id)? {
        return Err(no_policy(kind, name));
    }
    Ok(Json(json!({"deleted": name.1})).into_response())
}

pub async fn set_resource_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WritePolicies,
        "set-resource-policy",
        || {
            let req: ResourcePolicyBody = json_body(b)?;
            let id = match &req.prefix {
                Some(p) => prefix_id(p)?,
                None => RESOURCE_POLICY_ID.to_string(),
            };
            let text = decode_policy(&req.policy)?;
            compile_check("resource-policy", &text, RESOURCE_PACKAGE)?;
            let sp = state
                .store()
                .put_policy(PolicyKind::Resource, &id, &text, state.now())?;
            let mut body = json!({"version": sp.version});
            if let Some(p) = id.strip_prefix(PREFIX_ID) {
                body["prefix"] = json!(p);
            }
            Ok(Json(body).into_response())
        },
    )
}

pub async fn get_resource_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadPolicies,
        "get-resource-policy",
        || {
            let body = match state
                .store()
                .get_policy(PolicyKind::Resource, RESOURCE_POLICY_ID)?
            {
                Some(sp) => {
                    json!({"policy": URL_SAFE_NO_PAD.encode(&sp.text), "version": sp.version, "builtin": false})
                }
                None => json!({
                    "policy": URL_SAFE_NO_PAD.encode(state.0.policies.builtin_resource_policy()),
                    "version": 0,
                    "builtin": true,
                }),
            };
            Ok(Json(body).into_response())
        },
    )
}

/// An admin operation on the policy bound to `prefix`; `f` gets its store
/// id and its name for answers.
fn on_prefix_policy(
    state: &AppState,
    headers: &HeaderMap,
    (perm, op): (Permission, &'static str),
    prefix: &str,
    f: impl FnOnce(&str, (&str, &str)) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    admin(state, headers, perm, op, || {
        let id = prefix_id(prefix)?;
        f(&id, ("prefix", id.strip_prefix(PREFIX_ID).unwrap_or(&id)))
    })
}

/// `GET /kbs/v0/resource-policy/<prefix>`: the policy bound to a prefix.
pub async fn get_prefix_resource_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(prefix): Path<String>,
) -> Result<Response, ApiError> {
    let op = (Permission::ReadPolicies, "get-resource-policy");
    on_prefix_policy(&state, &headers, op, &prefix, |id, name| {
        policy_answer(&state, PolicyKind::Resource, id, name)
    })
}

/// `DELETE /kbs/v0/resource-policy/<prefix>`: unbind a prefix; its paths
/// fall back to a shorter prefix's policy or the default one.
pub async fn delete_prefix_resource_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(prefix): Path<String>,
) -> Result<Response, ApiError> {
    let op = (Permission::WritePolicies, "delete-resource-policy");
    on_prefix_policy(&state, &headers, op, &prefix, |id, name| {
        delete_policy(&state, PolicyKind::Resource, id, name)
    })
}

/// `GET /kbs/v0/resource-policies`: the stored resource policies (`prefix`
/// null for the default one).
pub async fn list_resource_policies(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadPolicies,
        "list-resource-policies",
        || {
            let list: Vec<Value> = state
                .store()
                .list_policies(PolicyKind::Resource)?
                .into_iter()
                .map(|p| {
                    let prefix = p.id.strip_prefix(PREFIX_ID).map(str::to_string);
                    json!({"prefix": prefix, "version": p.version, "updated_at": p.updated_at})
                })
                .collect();
            Ok(Json(list).into_response())
        },
    )
}

#[derive(Deserialize)]
struct AttestationPolicyBody {
    policy_id: String,
    policy: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "InvalidRequest",
            "id must be 1-64 characters of [A-Za-z0-9._-]",
        ))
    }
}

pub async fn set_attestation_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WritePolicies,
        "set-attestation-policy",
        || {
            let req: AttestationPolicyBody = json_body(b)?;
            valid_id(&req.policy_id)?;
            if let Some(k) = req.kind.as_deref() {
                if !k.eq_ignore_ascii_case("rego") {
                    return Err(ApiError::bad_request(
                        "PolicyEngine",
                        format!("policy type {k:?} is not supported (rego)"),
                    ));
                }
            }
            let text = decode_policy(&req.policy)?;
            ward_verifier::compile_attestation_policy(&req.policy_id, &text)
                .map_err(|e| ApiError::bad_request("PolicyEngine", e.to_string()))?;
            let sp = state.store().put_policy(
                PolicyKind::Attestation,
                &req.policy_id,
                &text,
                state.now(),
            )?;
            Ok(Json(json!({"policy_id": sp.id, "version": sp.version})).into_response())
        },
    )
}

pub async fn get_attestation_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadPolicies,
        "get-attestation-policy",
        || policy_answer(&state, PolicyKind::Attestation, &id, ("policy_id", &id)),
    )
}

pub async fn delete_attestation_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WritePolicies,
        "delete-attestation-policy",
        || delete_policy(&state, PolicyKind::Attestation, &id, ("policy_id", &id)),
    )
}

pub async fn list_attestation_policies(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadPolicies,
        "list-attestation-policies",
        || {
            let list: Vec<Value> = state
            .store()
            .list_policies(PolicyKind::Attestation)?
            .into_iter()
            .map(|p| json!({"policy_id": p.id, "version": p.version, "updated_at": p.updated_at}))
            .collect();
            Ok(Json(list).into_response())
        },
    )
}

/// Reference values arrive either in ward's form
/// `{"name": "...", "values": [...], "expires_at"?: unix}` or as a CoCo RVPS
/// sample message `{"version": "0.1.0", "type": "sample", "payload":
/// "<base64 of {name: [values]}>"}` (optionally wrapped as
/// `{"message": "<that JSON as a string>"}`), which may hold several names.
fn parse_reference_values(v: Value) -> Result<Vec<ReferenceValue>, ApiError> {
    let bad = |m: String| ApiError::bad_request("SerdeError", m);
    if let Some(msg) = v.get("message").and_then(Value::as_str) {
        let inner: Value = serde_json::from_str(msg).map_err(|e| bad(format!("message: {e}")))?;
        return parse_reference_values(inner);
    }
    if let Some(payload) = v.get("payload").and_then(Value::as_str) {
        if v.get("type").and_then(Value::as_str) != Some("sample") {
            return Err(bad(
                "only RVPS messages of type \"sample\" are supported".into()
            ));
        }
        let raw = STANDARD
            .decode(payload)
            .or_else(|_| URL_SAFE_NO_PAD.decode(payload))
            .map_err(|_| bad("payload is not base64".into()))?;
        let map: std::collections::BTreeMap<String, Value> =
            serde_json::from_slice(&raw).map_err(|e| bad(format!("payload: {e}")))?;
        return map
            .into_iter()
            .map(|(name, vals)| {
                let (values, single) = match vals {
                    Value::Array(a) => (a, false),
                    other => (vec![other], true),
                };
                valid_id(&name)?;
                Ok(ReferenceValue {
                    name,
                    values,
                    single,
                    expires_at: None,
                    version: 0,
                    updated_at: 0,
                })
            })
            .collect();
    }
    let rv: ReferenceValue =
        serde_json::from_value(v).map_err(|e| bad(format!("reference value: {e}")))?;
    valid_id(&rv.name)?;
    Ok(vec![rv])
}

pub async fn set_reference_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WriteReferenceValues,
        "set-reference-value",
        || {
            let v: Value = json_body(b)?;
            let rvs = parse_reference_values(v)?;
            let now = state.now();
            let mut out = Vec::with_capacity(rvs.len());
            for rv in rvs {
                out.push(state.store().put_reference_value(&rv, now)?);
            }
            Ok(Json(out).into_response())
        },
    )
}

pub async fn get_reference_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadReferenceValues,
        "get-reference-value",
        || {
            let rv = state.store().get_reference_value(&name)?.ok_or_else(|| {
                ApiError::not_found(
                    "ReferenceValueNotFound",
                    format!("reference value {name:?} does not exist"),
                )
            })?;
            Ok(Json(rv).into_response())
        },
    )
}

pub async fn delete_reference_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WriteReferenceValues,
        "delete-reference-value",
        || {
            if !state.store().delete_reference_value(&name)? {
                return Err(ApiError::not_found(
                    "ReferenceValueNotFound",
                    format!("reference value {name:?} does not exist"),
                ));
            }
            Ok(Json(json!({"deleted": name})).into_response())
        },
    )
}

pub async fn list_reference_values(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadReferenceValues,
        "list-reference-values",
        || Ok(Json(state.store().list_reference_values()?).into_response()),
    )
}

#[derive(Deserialize)]
struct RotateBody {
    ring: String,
}

pub async fn rotate_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::RotateKeys,
        "rotate-key",
        || {
            let req: RotateBody = json_body(b)?;
            state.0.keys.rotate(&req.ring, state.now())?;
            Ok(Json(json!({"rotated": req.ring})).into_response())
        },
    )
}

/// `POST /kbs/v0/collateral`: store Intel collateral (flat JSON form) for
/// its FMSPC. Parsed here; its signatures are checked whenever it is used.
pub async fn import_collateral(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::WriteReferenceValues,
        "import-collateral",
        || {
            let b = body(b)?;
            let text = std::str::from_utf8(&b)
                .map_err(|_| ApiError::bad_request("SerdeError", "collateral is not UTF-8"))?;
            let key = ward_collateral::DcapCollateralDir::import_flat_json(
                state.store().as_ref(),
                text,
                state.now(),
            )
            .map_err(|e| ApiError::bad_request("CollateralError", e.to_string()))?;
            Ok(Json(json!({"kind": ward_collateral::DCAP_KIND, "key": key})).into_response())
        },
    )
}

/// `GET /kbs/v0/collateral`: what the store holds (keys and fetch times).
pub async fn list_collateral(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(
        &state,
        &headers,
        Permission::ReadReferenceValues,
        "list-collateral",
        || {
            let mut out = Vec::new();
            for kind in [ward_collateral::DCAP_KIND, ward_collateral::VCEK_KIND] {
                for (key, at) in state.store().list_collateral(kind)? {
                    out.push(json!({"kind": kind, "key": key, "fetched_at": at}));
                }
            }
            Ok(Json(out).into_response())
        },
    )
}
