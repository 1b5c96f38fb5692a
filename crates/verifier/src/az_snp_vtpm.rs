//! The `az-snp-vtpm` TEE: Azure SEV-SNP confidential VMs, whose evidence is
//! an HCL report (wrapping the SNP report) and a vTPM quote.
//!
//! Checks, in order: the SNP report with its VCEK to a configured AMD chain
//! (the same code and chain cache as the `snp` TEE); VMPL 0 (the paravisor
//! requested it); report_data = hash of the HCL variable data; the quote
//! signed by the attestation key from that variable data; the PCR values
//! against the quote's digest; on evidence v2 the variable data's
//! `user-data` against the quote's nonce. The nonce (TPM extraData) is the
//! report data the KBS binding check sees; init-data is bound through PCR8.

use serde_json::{json, Map, Value};
use ward_proto::kbs::TeeEvidence;
use ward_snp::report::AttestationReport;
use ward_vtpm::evidence::AzEvidence;
use ward_vtpm::hcl::{HclReport, ReportType};
use ward_vtpm::tpm::{verify_quote_signature, QuoteInfo};

use crate::snp::{claims as snp_claims, SnpVerifier};
use crate::verify::{InitDataBinding, TeeClaims, Verifier, VerifyError};

/// A PCR index and its SHA-256 value.
pub type Pcr = (u8, [u8; 32]);

/// The PCR that carries the init-data digest on vTPM platforms.
pub const INIT_DATA_PCR: u8 = 8;

/// Verifier of the `az-snp-vtpm` TEE.
#[derive(Debug, Clone, Default)]
pub struct AzSnpVtpmVerifier {
    snp: SnpVerifier,
}

impl AzSnpVtpmVerifier {
    /// Use the AMD chains (and chain cache) of `snp`.
    pub fn new(snp: SnpVerifier) -> Self {
        Self { snp }
    }
}

fn vtpm_err(e: ward_vtpm::Error) -> VerifyError {
    use ward_vtpm::Error as E;
    let check = match &e {
        E::Malformed { .. } => return VerifyError::Malformed(e.to_string()),
        E::VarDataHash => "az.hcl_var_data",
        E::QuoteSignature => "az.tpm_quote_signature",
        E::PcrDigest => "az.tpm_pcr_digest",
        _ => "az",
    };
    VerifyError::Check {
        check,
        detail: e.to_string(),
    }
}

/// The TEE claims of verified Azure evidence, shared with `az-tdx-vtpm`: the
/// hardware report's claims extended with the HCL report's and the quote's;
/// report_data is the quote's nonce; init-data is bound through PCR 8.
pub(crate) fn az_tee_claims(
    mut claims: Value,
    ev: &AzEvidence,
    hcl: &HclReport,
    quote: QuoteInfo,
    pcrs: &[Pcr],
) -> Result<TeeClaims, VerifyError> {
    if let (Value::Object(c), Value::Object(v)) = (&mut claims, vtpm_claims(ev, hcl, &quote, pcrs)?)
    {
        c.extend(v);
    }
    Ok(TeeClaims {
        claims,
        report_data_claim: Value::String(hex::encode(&quote.extra_data)),
        report_data: quote.extra_data,
        init_data: init_data_binding(pcrs),
    })
}

fn vtpm_claims(
    ev: &AzEvidence,
    hcl: &HclReport,
    quote: &QuoteInfo,
    pcrs: &[Pcr],
) -> Result<Value, VerifyError> {
    let mut tpm = Map::new();
    for (i, v) in pcrs {
        tpm.insert(format!("pcr{i:02}"), Value::String(hex::encode(v)));
    }
    Ok(json!({
        "evidence_version": ev.version,
        "hcl_version": hcl.version,
        "vm_configuration": hcl.vm_configuration(),
        "user_data": hcl.user_data().map_err(vtpm_err)?.map(hex::encode),
        "tpm": tpm,
        "tpm_quote": {
            "nonce": hex::encode(&quote.extra_data),
            "clock": quote.clock,
            "reset_count": quote.reset_count,
            "restart_count": quote.restart_count,
            "firmware_version": quote.firmware_version,
        },
    }))
}

/// Verify the vTPM half of Azure evidence once the hardware report is
/// verified: variable-data hash, quote signature, PCRs, v2 user-data.
pub(crate) fn verify_vtpm(
    ev: &AzEvidence,
    hcl: &HclReport,
    hw_report_data: &[u8],
) -> Result<(QuoteInfo, Vec<Pcr>), VerifyError> {
    hcl.check_var_data_hash(hw_report_data).map_err(vtpm_err)?;
    let ak = hcl.ak_pub().map_err(vtpm_err)?;
    verify_quote_signature(&ak, &ev.quote.message, &ev.quote.signature).map_err(vtpm_err)?;
    let quote = QuoteInfo::parse(&ev.quote.message).map_err(vtpm_err)?;
    let pcrs = quote.check_pcrs(&ev.quote.pcrs).map_err(vtpm_err)?;
    if ev.version >= 2 {
        // v2 attesters also put the report data in user-data (zero-padded).
        let ud = hcl.user_data().map_err(vtpm_err)?.unwrap_or_default();
        let n = quote.extra_data.len();
        if ud.len() < n || ud[..n] != quote.extra_data[..] || ud[n..].iter().any(|b| *b != 0) {
            return Err(VerifyError::Check {
                check: "az.user_data",
                detail: "the HCL user-data does not carry the quote's nonce".into(),
            });
        }
    }
    Ok((quote, pcrs))
}

fn init_data_binding(pcrs: &[Pcr]) -> Option<InitDataBinding> {
    pcrs.iter()
        .find(|(i, _)| *i == INIT_DATA_PCR)
        .map(|(index, value)| InitDataBinding::TpmPcr {
            index: *index,
            value: *value,
        })
}

impl Verifier for AzSnpVtpmVerifier {
    fn tee(&self) -> &'static str {
        "az-snp-vtpm"
    }

    fn verify_evidence(&self, evidence: &TeeEvidence, now: i64) -> Result<TeeClaims, VerifyError> {
        let ev = AzEvidence::from_json(&evidence.primary_evidence, "vcek").map_err(vtpm_err)?;
        let hcl = HclReport::parse(&ev.hcl_report).map_err(vtpm_err)?;
        if hcl.report_type != ReportType::Snp {
            return Err(VerifyError::Malformed(
                "the HCL report does not wrap an SNP report".into(),
            ));
        }
        let report = AttestationReport::from_bytes(hcl.hw_report())
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let verified = self
            .snp
            .verify_report_with(&report, &ev.hw_collateral, now)?;
        if report.vmpl() != 0 {
            return Err(VerifyError::Check {
                check: "az.vmpl",
                detail: format!(
                    "the SNP report was requested from VMPL {}, not the paravisor's VMPL 0",
                    report.vmpl()
                ),
            });
        }
        let (quote, pcrs) = verify_vtpm(&ev, &hcl, report.report_data())?;
        az_tee_claims(snp_claims(&verified), &ev, &hcl, quote, &pcrs)
    }
}
