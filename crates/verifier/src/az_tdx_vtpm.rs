//! The `az-tdx-vtpm` TEE: Azure TDX confidential VMs. The HCL report wraps
//! a TDREPORT whose report_data is the hash of the HCL variable data (with
//! the vTPM attestation key); the TD quote sent alongside must quote that
//! same report_data and verifies with DCAP; the vTPM quote carries the
//! nonce and PCRs. Shares the vTPM checks with `az-snp-vtpm` and the DCAP
//! checks with `tdx`.

use std::sync::Arc;

use ward_dcap::tdreport::REPORT_DATA as TDREPORT_REPORT_DATA;
use ward_dcap::verify::DcapCache;
use ward_proto::kbs::TeeEvidence;
use ward_vtpm::evidence::AzEvidence;
use ward_vtpm::hcl::{HclReport, ReportType};

use crate::az_snp_vtpm::{az_tee_claims, verify_vtpm};
use crate::dcap::{verify_quote_cached, DcapCollateralSource};
use crate::verify::{TeeClaims, Verifier, VerifyError};

/// Verifier of the `az-tdx-vtpm` TEE.
#[derive(Debug, Clone, Default)]
pub struct AzTdxVtpmVerifier {
    source: Option<Arc<dyn DcapCollateralSource>>,
    cache: Arc<DcapCache>,
}

impl AzTdxVtpmVerifier {
    pub fn new(source: Option<Arc<dyn DcapCollateralSource>>) -> Self {
        Self {
            source,
            cache: Default::default(),
        }
    }

    /// Also trust these simulator roots (see `DcapVerifier`).
    pub fn with_simulated_roots(mut self, roots: Vec<[u8; 32]>) -> Self {
        self.cache = Arc::new(DcapCache::with_simulated_roots(roots));
        self
    }
}

impl Verifier for AzTdxVtpmVerifier {
    fn tee(&self) -> &'static str {
        "az-tdx-vtpm"
    }

    fn verify_evidence(&self, evidence: &TeeEvidence, now: i64) -> Result<TeeClaims, VerifyError> {
        let malformed = |e: ward_vtpm::Error| VerifyError::Malformed(e.to_string());
        let ev =
            AzEvidence::from_json(&evidence.primary_evidence, "td_quote").map_err(malformed)?;
        let hcl = HclReport::parse(&ev.hcl_report).map_err(malformed)?;
        if hcl.report_type != ReportType::Tdx {
            return Err(VerifyError::Malformed(
                "the HCL report does not wrap a TD report".into(),
            ));
        }
        let td_report_data = &hcl.hw_report()[TDREPORT_REPORT_DATA..TDREPORT_REPORT_DATA + 64];
        // Variable data, AK, quote signature, PCRs: as on SNP.
        let (quote, pcrs) = verify_vtpm(&ev, &hcl, td_report_data)?;
        // The TD quote must quote this TDREPORT, and verify with DCAP.
        let td = verify_quote_cached(
            &self.cache,
            self.source.as_deref(),
            &ev.hw_collateral,
            None,
            now,
        )?;
        if td.report_data != td_report_data {
            return Err(VerifyError::Check {
                check: "az.td_quote_binding",
                detail: "the TD quote does not quote the HCL report's TDREPORT".into(),
            });
        }
        if td.claims.get("mr_td").is_none() {
            return Err(VerifyError::Malformed("td_quote is not a TDX quote".into()));
        }
        az_tee_claims(td.claims, &ev, &hcl, quote, &pcrs)
    }
}
