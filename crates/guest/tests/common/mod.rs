//! Helpers shared by the attester tests.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::Value;
use ward_dcap::verify::Collateral;
use ward_proto::kbs::TeeEvidence;
use ward_sim::tdx::DcapSim;
use ward_verifier::dcap::DcapCollateralSource;
use ward_verifier::{TeeClaims, Verifier};

/// The simulated platform's collateral, whatever FMSPC is asked for.
#[derive(Debug)]
pub struct OneSet(pub Collateral);

impl DcapCollateralSource for OneSet {
    fn collateral(
        &self,
        _fmspc: &str,
        _tee: &str,
        _ca: &str,
        _now: i64,
    ) -> Result<Collateral, ward_verifier::CollateralError> {
        Ok(self.0.clone())
    }
}

pub fn sim_collateral(dcap: &DcapSim, now: i64) -> Arc<dyn DcapCollateralSource> {
    let c = Collateral::from_flat_json(&dcap.collateral_json(now).unwrap().to_string()).unwrap();
    Arc::new(OneSet(c))
}

/// Verify `evidence` as primary evidence, as of `now`.
pub fn verify(v: &dyn Verifier, evidence: Value, now: i64) -> TeeClaims {
    v.verify_evidence(
        &TeeEvidence {
            primary_evidence: evidence,
            additional_evidence: String::new(),
        },
        now,
    )
    .unwrap()
}
