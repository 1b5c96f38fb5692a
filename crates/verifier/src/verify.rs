//! The verifier trait, the registry that dispatches by TEE, and the checks
//! every family shares: nonce, runtime-data binding and init-data binding.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use ward_policy::{Claims, Input, PolicyError, Unavailable};
use ward_proto::initdata::{InitData, InitDataError};
use ward_proto::kbs::{runtime_data_claims, Attestation, TeeEvidence};
use ward_proto::{jcs, HashAlgorithm, Tee};

/// Why evidence was not accepted. Every variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No verifier is registered for this TEE.
    #[error("TEE {0:?} is not supported by this verifier")]
    UnsupportedTee(String),
    /// The evidence could not be parsed (the attester's fault).
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// A named verification check failed.
    #[error("evidence check {check} failed: {detail}")]
    Check { check: &'static str, detail: String },
    /// The runtime data does not match the nonce issued for this session.
    #[error("runtime-data nonce does not match the challenge of this session")]
    Nonce,
    /// report_data in the evidence does not bind the runtime data.
    #[error("report_data does not bind the runtime data (nonce and TEE public key)")]
    Binding,
    /// Init-data was sent but is malformed or not bound by the evidence.
    #[error("init-data: {0}")]
    InitData(String),
    /// The verifier is not configured to verify this evidence (the operator's
    /// fault, for example a missing trust anchor).
    #[error("verifier configuration: {0}")]
    Config(String),
    /// Collateral the evidence needs is being fetched (see
    /// [`CollateralError::Pending`]): verify again once it is there.
    #[error("{what} is being fetched; verify again once it is there")]
    CollateralPending { key: String, what: String },
}

/// Why a collateral source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// Not available: the message names what was looked for and where.
    #[error("{0}")]
    Unavailable(String),
    /// Not here yet, but a fetch of it is running elsewhere (never on the
    /// caller's thread); `key` names that fetch to whoever waits for it.
    #[error("{what} is being fetched")]
    Pending { key: String, what: String },
}

impl From<String> for CollateralError {
    fn from(s: String) -> Self {
        Self::Unavailable(s)
    }
}

impl CollateralError {
    /// As a verification error: a failed `check`, or pending collateral.
    pub fn into_verify_error(self, check: &'static str) -> VerifyError {
        match self {
            Self::Unavailable(detail) => VerifyError::Check { check, detail },
            Self::Pending { key, what } => VerifyError::CollateralPending { key, what },
        }
    }
}

impl From<InitDataError> for VerifyError {
    fn from(e: InitDataError) -> Self {
        VerifyError::InitData(e.to_string())
    }
}

/// What a TEE verifier extracts from cryptographically verified evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct TeeClaims {
    /// The TEE-specific claims (annotated evidence under the TEE's name).
    pub claims: Value,
    /// The raw report_data field of the evidence.
    pub report_data: Vec<u8>,
    /// How report_data appears in the annotated evidence.
    pub report_data_claim: Value,
    /// How this evidence binds init-data, if this TEE can.
    pub init_data: Option<InitDataBinding>,
}

/// Where a TEE binds the init-data digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitDataBinding {
    /// A hardware field (HOST_DATA, MRCONFIGID, CONFIGID) holding the digest
    /// truncated or zero-padded to the field's size.
    Field(Vec<u8>),
    /// A SHA-256 PCR (PCR8 on vTPM platforms) extended once from zero with
    /// the digest: `SHA-256(32 zero bytes ‖ digest)`.
    TpmPcr { index: u8, value: [u8; 32] },
}

impl InitDataBinding {
    /// The bound value as hex, for claims and `ward verify`.
    pub fn to_hex(&self) -> String {
        match self {
            InitDataBinding::Field(f) => hex::encode(f),
            InitDataBinding::TpmPcr { value, .. } => hex::encode(value),
        }
    }

    /// Does the binding hold for `digest`?
    pub fn matches(&self, digest: &[u8], digest_for_field: impl Fn(usize) -> Vec<u8>) -> bool {
        match self {
            InitDataBinding::Field(f) => constant_time_eq(f, &digest_for_field(f.len())),
            InitDataBinding::TpmPcr { value, .. } => {
                let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                ctx.update(&[0u8; 32]);
                ctx.update(digest);
                constant_time_eq(value, ctx.finish().as_ref())
            }
        }
    }
}

/// One evidence family.
pub trait Verifier: Send + Sync {
    /// The `tee` name this verifier handles.
    fn tee(&self) -> &'static str;

    /// Parse and cryptographically verify `evidence` as of `now` (unix
    /// seconds). Implementations check signatures, certificate chains and
    /// TCB, and return claims; the binding checks are done by the registry.
    fn verify_evidence(&self, evidence: &TeeEvidence, now: i64) -> Result<TeeClaims, VerifyError>;
}

/// Evidence that passed every check. Only [`VerifierRegistry`] constructs
/// it, so appraisal and key release cannot be handed unverified claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvidence {
    tee: Tee,
    annotated: Value,
    /// `annotated`, converted at most once, when a policy must evaluate it.
    input: std::sync::OnceLock<Input>,
}

impl VerifiedEvidence {
    pub fn tee(&self) -> &Tee {
        &self.tee
    }

    /// `{"<tee>": claims, "runtime_data_claims", "report_data", "init_data"?, "init_data_claims"?}`.
    pub fn annotated_evidence(&self) -> &Value {
        &self.annotated
    }

    /// Lend the annotated evidence out (to be signed without a copy); the
    /// borrower puts it back unchanged, so a converted input stays valid.
    pub(crate) fn annotated_mut(&mut self) -> &mut Value {
        &mut self.annotated
    }

    /// [`Self::annotated_evidence`] as a policy input.
    pub fn policy_input(&self) -> &Input {
        self.input
            .get_or_init(|| Input::from_value(&self.annotated))
    }
}

impl Claims for VerifiedEvidence {
    fn json_at(&self, path: &[String]) -> Result<Option<&Value>, Unavailable> {
        Ok(ward_policy::json_at(&self.annotated, path))
    }

    fn input(&self) -> Result<Input, PolicyError> {
        Ok(self.policy_input().clone())
    }
}

/// Dispatches evidence to the verifier of its TEE.
#[derive(Clone, Default)]
pub struct VerifierRegistry {
    verifiers: BTreeMap<&'static str, Arc<dyn Verifier>>,
}

impl VerifierRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register (or replace) the verifier of one TEE.
    pub fn register(&mut self, v: Arc<dyn Verifier>) {
        self.verifiers.insert(v.tee(), v);
    }

    /// The TEE names that can be verified.
    pub fn tees(&self) -> Vec<&'static str> {
        self.verifiers.keys().copied().collect()
    }

    pub fn supports(&self, tee: &Tee) -> bool {
        self.verifiers.contains_key(tee.as_str())
    }

    fn get(&self, tee: &Tee) -> Result<&Arc<dyn Verifier>, VerifyError> {
        self.verifiers
            .get(tee.as_str())
            .ok_or_else(|| VerifyError::UnsupportedTee(tee.as_str().chars().take(32).collect()))
    }

    /// Verify evidence on its own, without runtime data (`ward verify`).
    pub fn verify_evidence(
        &self,
        tee: &Tee,
        evidence: &TeeEvidence,
        now: i64,
    ) -> Result<TeeClaims, VerifyError> {
        self.get(tee)?.verify_evidence(evidence, now)
    }

    /// Verify evidence on its own (no runtime data to bind) into a value a
    /// policy can appraise (`ward verify --policy`): the annotated evidence
    /// holds the TEE's claims and its report_data, and no
    /// `runtime_data_claims`.
    pub fn verify_unbound(
        &self,
        tee: &Tee,
        evidence: &TeeEvidence,
        now: i64,
    ) -> Result<VerifiedEvidence, VerifyError> {
        let c = self.get(tee)?.verify_evidence(evidence, now)?;
        let mut annotated = serde_json::Map::new();
        annotated.insert(tee.as_str().to_string(), c.claims);
        annotated.insert("report_data".into(), c.report_data_claim);
        Ok(VerifiedEvidence {
            tee: tee.clone(),
            input: Default::default(),
            annotated: Value::Object(annotated),
        })
    }

    /// Verify a KBS Attestation: the evidence itself, that the runtime data
    /// carries `expected_nonce`, that report_data binds the runtime data, and
    /// that init-data (when sent) is bound by the TEE.
    pub fn verify_attestation(
        &self,
        tee: &Tee,
        attestation: &Attestation,
        expected_nonce: &str,
        now: i64,
    ) -> Result<VerifiedEvidence, VerifyError> {
        if !constant_time_eq(
            attestation.runtime_data.nonce.as_bytes(),
            expected_nonce.as_bytes(),
        ) {
            return Err(VerifyError::Nonce);
        }
        let verifier = self.get(tee)?;
        let additional = &attestation.tee_evidence.additional_evidence;
        let tee_claims = verifier.verify_evidence(&attestation.tee_evidence, now)?;
        // What report_data must bind (hashed as JCS), and a claim as well.
        let runtime_claims = runtime_data_claims(&attestation.runtime_data, additional);
        let canonical =
            jcs::to_vec(&runtime_claims).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        check_binding(&tee_claims.report_data, &canonical)?;

        let mut annotated = serde_json::Map::new();
        annotated.insert(tee.as_str().to_string(), tee_claims.claims);
        annotated.insert("runtime_data_claims".into(), runtime_claims);
        annotated.insert("report_data".into(), tee_claims.report_data_claim);

        if let Some(msg) = &attestation.init_data {
            let init = InitData::parse(&msg.format, &msg.body)?;
            let binding = tee_claims.init_data.as_ref().ok_or_else(|| {
                VerifyError::InitData(format!(
                    "TEE {tee} does not bind init-data, but init-data was sent"
                ))
            })?;
            if !binding.matches(&init.digest, |n| init.digest_for_field(n)) {
                return Err(VerifyError::InitData(
                    "the init-data digest does not match the value bound in the evidence".into(),
                ));
            }
            annotated.insert("init_data".into(), Value::String(hex::encode(&init.digest)));
            // The documents as they are, and the agent policy's data as
            // JSON (when ward generated it), so a resource policy can
            // release only to pods whose policy pins a given image.
            let mut claims = json!(init.data);
            if let Some(data) = init
                .data
                .get("policy.rego")
                .and_then(|p| ward_proto::initdata::agent_policy_data(p))
            {
                claims["agent_policy"] = data;
            }
            annotated.insert("init_data_claims".into(), claims);
        }
        let annotated = Value::Object(annotated);
        Ok(VerifiedEvidence {
            tee: tee.clone(),
            input: Default::default(),
            annotated,
        })
    }
}

/// report_data must start with H(runtime data) for one of the accepted hash
/// algorithms and be zero after it.
fn check_binding(field: &[u8], canonical: &[u8]) -> Result<(), VerifyError> {
    for alg in HashAlgorithm::ALL {
        let h = alg.digest(canonical);
        if field.len() >= h.len()
            && constant_time_eq(&field[..h.len()], &h)
            && field[h.len()..].iter().all(|b| *b == 0)
        {
            return Ok(());
        }
    }
    Err(VerifyError::Binding)
}

/// Comparison whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_data_bindings() {
        let digest = [5u8; 32];
        let field = InitDataBinding::Field(vec![5u8; 32]);
        assert!(field.matches(&digest, |n| digest[..n].to_vec()));
        assert!(!field.matches(&[6u8; 32], |n| vec![6u8; n]));

        // PCR8 extended once from zero with the digest.
        let mut pre = vec![0u8; 32];
        pre.extend_from_slice(&digest);
        let value: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pre)
            .as_ref()
            .try_into()
            .unwrap();
        let pcr = InitDataBinding::TpmPcr { index: 8, value };
        assert!(pcr.matches(&digest, |_| unreachable!()));
        assert!(!pcr.matches(&[6u8; 32], |_| unreachable!()));
        assert!(!InitDataBinding::TpmPcr {
            index: 8,
            value: [0; 32]
        }
        .matches(&digest, |_| vec![]));
    }
}
