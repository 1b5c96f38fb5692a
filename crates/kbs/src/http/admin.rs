//! Admin API handlers: authorise (the [`Admin`] extractor), extract, call
//! one core operation (`crate::admin`), answer.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::Value;

use super::extract::*;
use crate::admin::{AttestationPolicyBody, ResourcePolicyBody, RotateBody};
use crate::error::ApiError;
use crate::state::AppState;

type Answer = Result<Response, ApiError>;
type St = State<AppState>;
/// An extractor whose failure is answered after authorisation.
type Or<T> = Result<T, ApiError>;

pub async fn put_resource(
    a: Admin<PutResource>,
    State(s): St,
    p: Or<Resource>,
    b: Or<Body>,
) -> Answer {
    let ev = a.event();
    a.answer(p.and_then(|Resource(p)| s.put_resource(ev, &p, &b?.0)))
}

pub async fn delete_resource(a: Admin<DeleteResource>, State(s): St, p: Or<Resource>) -> Answer {
    let ev = a.event();
    a.answer(p.and_then(|Resource(p)| s.delete_resource(ev, &p)))
}

pub async fn list_resources(a: Admin<ListResources>, State(s): St) -> Answer {
    a.answer(s.list_resources())
}

pub async fn resource_metadata(
    a: Admin<ResourceMetadata>,
    State(s): St,
    p: Or<Resource>,
) -> Answer {
    a.answer(p.and_then(|Resource(p)| s.resource_metadata(&p)))
}

pub async fn set_resource_policy(
    a: Admin<SetResourcePolicy>,
    State(s): St,
    b: Or<JsonBody<ResourcePolicyBody>>,
) -> Answer {
    let ev = a.event();
    a.answer(b.and_then(|JsonBody(b)| s.set_resource_policy(ev, &b)))
}

pub async fn get_resource_policy(a: Admin<GetResourcePolicy>, State(s): St) -> Answer {
    a.answer(s.resource_policy())
}

/// `GET /kbs/v0/resource-policy/<prefix>`: the policy bound to a prefix.
pub async fn get_prefix_resource_policy(
    a: Admin<GetResourcePolicy>,
    State(s): St,
    Path(prefix): Path<String>,
) -> Answer {
    a.answer(s.prefix_policy(&prefix))
}

/// `DELETE /kbs/v0/resource-policy/<prefix>`: unbind a prefix.
pub async fn delete_prefix_resource_policy(
    a: Admin<DeleteResourcePolicy>,
    State(s): St,
    Path(prefix): Path<String>,
) -> Answer {
    let ev = a.event();
    a.answer(s.delete_prefix_policy(ev, &prefix))
}

pub async fn list_resource_policies(a: Admin<ListResourcePolicies>, State(s): St) -> Answer {
    a.answer(s.list_resource_policies())
}

pub async fn set_attestation_policy(
    a: Admin<SetAttestationPolicy>,
    State(s): St,
    b: Or<JsonBody<AttestationPolicyBody>>,
) -> Answer {
    let ev = a.event();
    a.answer(b.and_then(|JsonBody(b)| s.set_attestation_policy(ev, &b)))
}

pub async fn get_attestation_policy(
    a: Admin<GetAttestationPolicy>,
    State(s): St,
    Path(id): Path<String>,
) -> Answer {
    a.answer(s.attestation_policy(&id))
}

pub async fn delete_attestation_policy(
    a: Admin<DeleteAttestationPolicy>,
    State(s): St,
    Path(id): Path<String>,
) -> Answer {
    let ev = a.event();
    a.answer(s.delete_attestation_policy(ev, &id))
}

pub async fn list_attestation_policies(a: Admin<ListAttestationPolicies>, State(s): St) -> Answer {
    a.answer(s.list_attestation_policies())
}

pub async fn set_reference_value(
    a: Admin<SetReferenceValue>,
    State(s): St,
    b: Or<JsonBody<Value>>,
) -> Answer {
    let ev = a.event();
    a.answer(b.and_then(|JsonBody(v)| s.set_reference_values(ev, v)))
}

pub async fn get_reference_value(
    a: Admin<GetReferenceValue>,
    State(s): St,
    Path(name): Path<String>,
) -> Answer {
    a.answer(s.reference_value(&name))
}

pub async fn delete_reference_value(
    a: Admin<DeleteReferenceValue>,
    State(s): St,
    Path(name): Path<String>,
) -> Answer {
    let ev = a.event();
    a.answer(s.delete_reference_value(ev, &name))
}

pub async fn list_reference_values(a: Admin<ListReferenceValues>, State(s): St) -> Answer {
    a.answer(s.list_reference_values())
}

pub async fn rotate_key(a: Admin<RotateKey>, State(s): St, b: Or<JsonBody<RotateBody>>) -> Answer {
    let ev = a.event();
    a.answer(b.and_then(|JsonBody(b)| s.rotate_key(ev, &b)))
}

/// `POST /kbs/v0/collateral`: store Intel collateral for its FMSPC.
pub async fn import_collateral(a: Admin<ImportCollateral>, State(s): St, b: Or<Body>) -> Answer {
    let ev = a.event();
    a.answer(b.and_then(|Body(b)| s.import_collateral(ev, &b)))
}

/// `GET /kbs/v0/collateral`: what the store holds (keys and fetch times).
pub async fn list_collateral(a: Admin<ListCollateral>, State(s): St) -> Answer {
    a.answer(s.list_collateral())
}

/// `?start=&end=` of `/audit/entries`.
#[derive(serde::Deserialize)]
pub struct EntriesQuery {
    #[serde(default)]
    start: u64,
    end: Option<u64>,
}

/// `?index=&size=` of `/audit/proof/inclusion`.
#[derive(serde::Deserialize)]
pub struct InclusionQuery {
    index: u64,
    size: u64,
}

/// `?from=&to=` of `/audit/proof/consistency`.
#[derive(serde::Deserialize)]
pub struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// A query string that does not parse, answered after authorisation.
fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Or<T> {
    q.map(|Query(v)| v)
        .map_err(|e| RequestError::Query(e.body_text()).into())
}

/// `GET /kbs/v0/audit/checkpoint`: the log's signed tree head (a C2SP
/// signed note).
pub async fn audit_checkpoint(a: Admin<ReadAudit>, State(s): St) -> Answer {
    a.answer_text("text/plain; charset=utf-8", s.audit_checkpoint())
}

/// `GET /kbs/v0/audit/keys`: the verifier keys of the checkpoints.
pub async fn audit_keys(a: Admin<ReadAudit>, State(s): St) -> Answer {
    a.answer(s.audit_keys())
}

/// `GET /kbs/v0/audit/entries?start=&end=`: JSON lines of `{index, leaf}`.
pub async fn audit_entries(
    a: Admin<ReadAudit>,
    State(s): St,
    q: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let r = query(q).and_then(|q| s.audit_entries(q.start, q.end));
    a.answer_text("application/jsonl", r)
}

/// `GET /kbs/v0/audit/proof/inclusion?index=&size=`.
pub async fn audit_inclusion(
    a: Admin<ReadAudit>,
    State(s): St,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    a.answer(query(q).and_then(|q| s.audit_inclusion(q.index, q.size)))
}

/// `GET /kbs/v0/audit/proof/consistency?from=&to=`.
pub async fn audit_consistency(
    a: Admin<ReadAudit>,
    State(s): St,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    a.answer(query(q).and_then(|q| s.audit_consistency(q.from, q.to)))
}
