//! The `tdx` and `sgx` verifiers through the registry on the dcap-phala
//! sets (skipped with a notice when absent), and the default policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use ward_dcap::verify::Collateral;
use ward_policy::Policy;
use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_verifier::dcap::{DcapCollateralSource, DcapVerifier};
use ward_verifier::{
    default_attestation_policy, VerifierRegistry, VerifyError, ATTESTATION_PACKAGE, TRUST_RULES,
};

const JULY_2025: i64 = 1_751_328_000;

#[derive(Debug)]
struct Sets(Vec<Collateral>);

impl DcapCollateralSource for Sets {
    fn collateral(
        &self,
        fmspc: &str,
        _tee: &str,
        _ca: &str,
        _now: i64,
    ) -> Result<Collateral, ward_verifier::CollateralError> {
        self.0
            .iter()
            .find(|c| c.tcb_info.contains(&format!("\"fmspc\":\"{fmspc}\"")))
            .cloned()
            .ok_or_else(|| format!("no collateral for FMSPC {fmspc}").into())
    }
}

fn setup() -> Option<(std::path::PathBuf, VerifierRegistry)> {
    let d = ward_proto::testing::fixtures("dcap-phala/sgx_quote")?.join("dcap-phala");
    let sets = ["sgx_quote_collateral.json", "tdx_quote_collateral.json"]
        .iter()
        .map(|f| Collateral::from_flat_json(&std::fs::read_to_string(d.join(f)).unwrap()).unwrap())
        .collect();
    let src: Arc<dyn DcapCollateralSource> = Arc::new(Sets(sets));
    let mut r = VerifierRegistry::new();
    r.register(Arc::new(DcapVerifier::tdx(Some(src.clone()))));
    r.register(Arc::new(DcapVerifier::sgx(Some(src))));
    Some((d, r))
}

fn evidence(d: &std::path::Path, f: &str) -> TeeEvidence {
    TeeEvidence {
        primary_evidence: json!({"quote": ward_proto::b64::std_encode(std::fs::read(d.join(f)).unwrap())}),
        additional_evidence: String::new(),
    }
}

fn appraise(tee: &str, claims: &Value, reference: Value) -> BTreeMap<String, i64> {
    Policy::compile(
        tee,
        default_attestation_policy(tee).unwrap(),
        ATTESTATION_PACKAGE,
    )
    .unwrap()
    .with_data(&json!({ "reference": reference }))
    .unwrap()
    .eval_ints(&json!({ tee: claims }), &TRUST_RULES)
    .unwrap()
    .into_iter()
    .collect()
}

#[test]
fn tdx_claims_and_default_policy() {
    let Some((d, r)) = setup() else { return };
    let c = r
        .verify_evidence(&Tee::new("tdx"), &evidence(&d, "tdx_quote"), JULY_2025)
        .unwrap();
    assert_eq!(c.claims["tcb_status"], "UpToDate");
    assert_eq!(c.claims["td_attributes"]["debug"], false);
    assert_eq!(c.report_data.len(), 64);
    let mrtd = c.claims["mr_td"].as_str().unwrap().to_string();
    assert!(mrtd.starts_with("91eb2b44"));
    let none = appraise("tdx", &c.claims, json!({}));
    assert_eq!(
        (none["executables"], none["hardware"], none["configuration"]),
        (33, 2, 2)
    );
    let ok = appraise("tdx", &c.claims, json!({"tdx_mrtd": [mrtd]}));
    assert_eq!(ok["executables"], 2);
    let bad_rtmr = appraise(
        "tdx",
        &c.claims,
        json!({"tdx_mrtd": [mrtd], "tdx_rtmr3": ["00"]}),
    );
    assert_eq!(bad_rtmr["executables"], 33);
    let mut debug = c.claims.clone();
    debug["td_attributes"]["debug"] = json!(true);
    assert_eq!(appraise("tdx", &debug, json!({}))["configuration"], 96);
    let mut old = c.claims.clone();
    old["tcb_status"] = json!("OutOfDate");
    assert_eq!(appraise("tdx", &old, json!({}))["hardware"], 32);
    assert_eq!(
        appraise("tdx", &old, json!({"dcap_reject_out_of_date": [true]}))["hardware"],
        96
    );
    old["tcb_status"] = json!("Revoked");
    assert_eq!(appraise("tdx", &old, json!({}))["hardware"], 97);

    // An SGX quote sent as tdx evidence is refused.
    let e = r
        .verify_evidence(&Tee::new("tdx"), &evidence(&d, "sgx_quote"), JULY_2025)
        .unwrap_err();
    assert!(matches!(e, VerifyError::Malformed(_)), "{e}");
}

#[test]
fn sgx_claims_and_default_policy() {
    let Some((d, r)) = setup() else { return };
    let c = r
        .verify_evidence(&Tee::new("sgx"), &evidence(&d, "sgx_quote"), JULY_2025)
        .unwrap();
    assert_eq!(c.claims["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        c.claims["advisory_ids"],
        json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(c.claims["attributes"]["debug"], false);
    let mre = c.claims["mr_enclave"].as_str().unwrap().to_string();
    let v = appraise("sgx", &c.claims, json!({"sgx_mrenclave": [mre]}));
    assert_eq!(
        (v["executables"], v["hardware"], v["configuration"]),
        (2, 3, 2)
    );
    let mrs = c.claims["mr_signer"].as_str().unwrap().to_string();
    assert_eq!(
        appraise("sgx", &c.claims, json!({"sgx_mrsigner": [mrs.clone()]}))["executables"],
        2
    );
    assert_eq!(
        appraise(
            "sgx",
            &c.claims,
            json!({"sgx_mrsigner": [mrs], "sgx_min_isv_svn": [1]})
        )["executables"],
        33
    );

    // Collateral for another FMSPC only: the error names the FMSPC.
    let mut r2 = VerifierRegistry::new();
    r2.register(Arc::new(DcapVerifier::sgx(Some(Arc::new(Sets(vec![]))))));
    let e = r2
        .verify_evidence(&Tee::new("sgx"), &evidence(&d, "sgx_quote"), JULY_2025)
        .unwrap_err();
    assert!(e.to_string().contains("00A067110000"), "{e}");
}
