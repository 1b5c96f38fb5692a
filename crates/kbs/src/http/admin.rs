//! Admin API handlers: authorise (the [`Admin`] extractor), extract, call
//! one core operation (`crate::admin`), answer.

use axum::extract::{Path, State};
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
    a.answer(p.and_then(|Resource(p)| s.put_resource(&p, &b?.0)))
}

pub async fn delete_resource(a: Admin<DeleteResource>, State(s): St, p: Or<Resource>) -> Answer {
    a.answer(p.and_then(|Resource(p)| s.delete_resource(&p)))
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
    a.answer(b.and_then(|JsonBody(b)| s.set_resource_policy(&b)))
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
    a.answer(s.delete_prefix_policy(&prefix))
}

pub async fn list_resource_policies(a: Admin<ListResourcePolicies>, State(s): St) -> Answer {
    a.answer(s.list_resource_policies())
}

pub async fn set_attestation_policy(
    a: Admin<SetAttestationPolicy>,
    State(s): St,
    b: Or<JsonBody<AttestationPolicyBody>>,
) -> Answer {
    a.answer(b.and_then(|JsonBody(b)| s.set_attestation_policy(&b)))
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
    a.answer(s.delete_attestation_policy(&id))
}

pub async fn list_attestation_policies(a: Admin<ListAttestationPolicies>, State(s): St) -> Answer {
    a.answer(s.list_attestation_policies())
}

pub async fn set_reference_value(
    a: Admin<SetReferenceValue>,
    State(s): St,
    b: Or<JsonBody<Value>>,
) -> Answer {
    a.answer(b.and_then(|JsonBody(v)| s.set_reference_values(v)))
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
    a.answer(s.delete_reference_value(&name))
}

pub async fn list_reference_values(a: Admin<ListReferenceValues>, State(s): St) -> Answer {
    a.answer(s.list_reference_values())
}

pub async fn rotate_key(a: Admin<RotateKey>, State(s): St, b: Or<JsonBody<RotateBody>>) -> Answer {
    a.answer(b.and_then(|JsonBody(b)| s.rotate_key(&b)))
}

/// `POST /kbs/v0/collateral`: store Intel collateral for its FMSPC.
pub async fn import_collateral(a: Admin<ImportCollateral>, State(s): St, b: Or<Body>) -> Answer {
    a.answer(b.and_then(|Body(b)| s.import_collateral(&b)))
}

/// `GET /kbs/v0/collateral`: what the store holds (keys and fetch times).
pub async fn list_collateral(a: Admin<ListCollateral>, State(s): St) -> Answer {
    a.answer(s.list_collateral())
}
