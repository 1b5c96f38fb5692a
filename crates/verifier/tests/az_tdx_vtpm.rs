//! The `az-tdx-vtpm` verifier on the Azure TDX CVM evidence of
//! ../shared/fixtures (skipped with a notice when absent). Intel collateral
//! for its platform is not in the fixtures, so a full verification stops at
//! the DCAP collateral lookup — after the HCL binding, the vTPM quote and
//! the PCRs have been checked; tampering with those fails earlier, naming
//! the check.

use std::sync::Arc;

use base64::Engine;
use serde_json::Value;
use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_verifier::az_tdx_vtpm::AzTdxVtpmVerifier;
use ward_verifier::{VerifierRegistry, VerifyError};

fn setup() -> Option<(Value, VerifierRegistry)> {
    let d = ward_proto::testing::fixtures("trustee/az-tdx-vtpm/evidence-v1.json")?;
    let v: Value = serde_json::from_slice(
        &std::fs::read(d.join("trustee/az-tdx-vtpm/evidence-v1.json")).unwrap(),
    )
    .unwrap();
    let mut r = VerifierRegistry::new();
    r.register(Arc::new(AzTdxVtpmVerifier::new(None)));
    Some((v, r))
}

fn verify(r: &VerifierRegistry, v: Value) -> VerifyError {
    r.verify_evidence(
        &Tee::new("az-tdx-vtpm"),
        &TeeEvidence {
            primary_evidence: v,
            additional_evidence: String::new(),
        },
        1_772_323_200,
    )
    .unwrap_err()
}

fn edit(v: &Value, field: &str, at: usize) -> Value {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut b = e
        .decode(v[field].as_str().unwrap().trim_end_matches('='))
        .unwrap();
    b[at] ^= 1;
    let mut v = v.clone();
    v[field] = Value::String(e.encode(b));
    v
}

#[test]
fn hcl_binding_and_vtpm_hold_then_dcap_needs_collateral() {
    let Some((v, r)) = setup() else { return };
    // Everything before the DCAP collateral lookup holds.
    match verify(&r, v.clone()) {
        VerifyError::Config(m) => assert!(m.contains("FMSPC"), "{m}"),
        other => panic!("expected the collateral to be missing, got {other}"),
    }
    // The variable data (offset 0x880 of the HCL report).
    match verify(&r, edit(&v, "hcl_report", 0x880)) {
        VerifyError::Check { check, .. } => assert_eq!(check, "az.hcl_var_data"),
        other => panic!("{other}"),
    }
    // The TDREPORT's report_data (HCL offset 0x20 + 128).
    match verify(&r, edit(&v, "hcl_report", 0x20 + 130)) {
        VerifyError::Check { check, .. } => assert_eq!(check, "az.hcl_var_data"),
        other => panic!("{other}"),
    }
    // The vTPM quote.
    let mut t = v.clone();
    let m = t["tpm_quote"]["message"].as_str().unwrap().to_string();
    t["tpm_quote"]["message"] = Value::String(format!("{}0{}", &m[..30], &m[31..]));
    match verify(&r, t) {
        VerifyError::Check { check, .. } => assert_eq!(check, "az.tpm_quote_signature"),
        other => panic!("{other}"),
    }
}
