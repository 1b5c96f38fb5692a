//! Appraisal of verified claims by an attestation policy into an EAR
//! appraisal, and issuance of the signed EAR token.

use std::collections::BTreeMap;

use serde_json::Value;
use ward_policy::{Policy, PolicyError};
use ward_proto::ear::{Appraisal, EarClaims, TrustVector, VerifierId, EAT_PROFILE};
use ward_proto::jwt::{Es256Signer, JwtError};

use crate::verify::VerifiedEvidence;

/// The rules an attestation policy may define, one per AR4SI claim (Rego
/// names use underscores).
pub const TRUST_RULES: [&str; 8] = [
    "instance_identity",
    "configuration",
    "executables",
    "file_system",
    "hardware",
    "runtime_opaque",
    "storage_opaque",
    "sourced_data",
];

/// The package attestation policies live in.
pub const ATTESTATION_PACKAGE: &str = "policy";

/// Built-in default attestation policy of a TEE (Rego source).
pub fn default_attestation_policy(tee: &str) -> Option<&'static str> {
    match tee {
        "sample" => Some(include_str!("policies/sample.rego")),
        "snp" => Some(include_str!("policies/snp.rego")),
        "az-snp-vtpm" => Some(include_str!("policies/az_snp_vtpm.rego")),
        "tdx" => Some(include_str!("policies/tdx.rego")),
        "sgx" => Some(include_str!("policies/sgx.rego")),
        _ => None,
    }
}

/// Evaluate `policy` (compiled with `data.reference` loaded) over the
/// verified evidence. A rule value outside -128..=127 is a policy error.
pub fn appraise(evidence: &VerifiedEvidence, policy: &Policy) -> Result<Appraisal, PolicyError> {
    let results = policy.eval_ints(evidence.annotated_evidence(), &TRUST_RULES)?;
    let mut tv = TrustVector::default();
    for (rule, value) in results {
        let v = i8::try_from(value).map_err(|_| PolicyError::Type {
            id: policy.id().into(),
            rule: rule.clone(),
            expected: "an integer in -128..=127",
            got: value.to_string(),
        })?;
        tv.set(&rule, v);
    }
    Ok(Appraisal {
        status: tv.status(),
        trust_vector: tv,
        policy_id: policy.id().to_string(),
        annotated_evidence: evidence.annotated_evidence().clone(),
    })
}

/// Issuer and lifetime of attestation tokens.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub lifetime_secs: i64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "ward".into(),
            lifetime_secs: 300,
        }
    }
}

/// Sign an EAR token for one appraisal, valid from `now`. Returns the token
/// and its claims as the JSON text that was signed.
pub fn issue_token(
    signer: &Es256Signer,
    appraisal: Appraisal,
    settings: &TokenSettings,
    now: i64,
) -> Result<(String, Vec<u8>), JwtError> {
    let mut submods = BTreeMap::new();
    submods.insert("cpu0".to_string(), appraisal);
    let claims = EarClaims {
        eat_profile: EAT_PROFILE.into(),
        iat: now,
        exp: now + settings.lifetime_secs,
        iss: settings.issuer.clone(),
        verifier_id: VerifierId {
            developer: "https://github.com/ward-project/ward".into(),
            build: concat!("ward ", env!("CARGO_PKG_VERSION")).into(),
        },
        eat_nonce: None,
        submods,
    };
    let payload = serde_json::to_vec(&claims).map_err(|_| JwtError::Json("payload"))?;
    let token = signer.sign_payload(&payload)?;
    Ok((token, payload))
}

/// Load reference values as the `data` document of an attestation policy.
pub fn reference_data(values: &BTreeMap<String, Vec<Value>>) -> Value {
    serde_json::json!({ "reference": values })
}
