//! Evidence verification: one [`Verifier`] per TEE family, dispatch by the
//! `tee` of the KBS Request, the runtime-data binding check, init-data
//! binding, claims, and appraisal of those claims by a Rego attestation
//! policy into an EAR appraisal and token.
//!
//! Everything here is a pure function of its arguments: verifiers receive
//! `now` and their trust anchors; nothing reads the clock, files or network.
//! This crate knows nothing about HTTP or storage.

pub mod appraise;
pub mod az_snp_vtpm;
pub mod az_tdx_vtpm;
pub mod dcap;
pub mod sample;
pub mod snp;
mod verify;

pub use appraise::{
    appraise, compile_attestation_policy, default_attestation_policy, issue_token, reference_data,
    TokenClaims, TokenSettings, ATTESTATION_FUNCTIONS, ATTESTATION_PACKAGE, DEFAULT_DEVELOPER,
    EVIDENCE_AT, TRUST_RULES,
};
pub use verify::{
    CollateralError, InitDataBinding, TeeClaims, VerifiedEvidence, Verifier, VerifierRegistry,
    VerifyError,
};
