//! Azure confidential VM evidence, shared by the `az-snp-vtpm` and
//! `az-tdx-vtpm` verifiers.
//!
//! On an Azure CVM the paravisor (HCL) asks the hardware for a report whose
//! report_data is a hash of a JSON "variable data" blob carrying the vTPM's
//! attestation key (AK). The guest then asks the vTPM for a quote over its
//! PCRs with the verifier's nonce, signed by that AK. So a verifier checks:
//! hardware report → hash of the variable data → AK → quote signature →
//! nonce and PCR digest.
//!
//! * [`hcl`]: the HCL attestation report (header, hardware report, runtime
//!   data with the variable data).
//! * [`tpm`]: TPMS_ATTEST of a TPM2_Quote, its RSASSA-PKCS1-v1_5 SHA-256
//!   signature and the PCR digest.
//! * [`evidence`]: the CoCo evidence JSON shapes (v0, v1, v2).
//! * [`tpm2`]: TPM 2.0 command/response framing for the commands an Azure
//!   vTPM attester issues (NV read/write, quote, PCR read).

pub mod evidence;
pub mod hcl;
pub mod tpm;
pub mod tpm2;

/// Why Azure vTPM evidence was rejected. Each variant names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not the structure they claim to be.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// The hardware report's report_data is not the hash of the variable data.
    #[error(
        "hcl.var_data_hash: the hardware report's report_data does not hash the HCL variable data"
    )]
    VarDataHash,
    /// The quote's signature does not verify with the attestation key.
    #[error("tpm.quote_signature: the TPM quote is not signed by the HCL attestation key")]
    QuoteSignature,
    /// The PCR values sent do not hash to the quote's PCR digest.
    #[error("tpm.pcr_digest: the PCR values do not match the digest in the quote")]
    PcrDigest,
}

pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Malformed {
        what,
        detail: detail.into(),
    }
}
