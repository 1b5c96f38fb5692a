//! The `snp` verifier through the registry, on the real Genoa CoCo evidence
//! of ../shared/fixtures (skipped with a notice when absent), and the
//! default SNP attestation policy on its claims.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use ward_policy::Policy;
use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_verifier::snp::SnpVerifier;
use ward_verifier::{
    default_attestation_policy, InitDataBinding, VerifierRegistry, VerifyError,
    ATTESTATION_PACKAGE, TRUST_RULES,
};

/// 2025-07-01: inside the Genoa VCEK's validity (from 2025-05-27).
const AS_OF: i64 = 1_751_328_000;

fn fixtures() -> Option<PathBuf> {
    ward_proto::testing::fixtures("trustee/snp/genoa-evidence.json")
}

fn registry(dir: &std::path::Path, bundles: &[&str]) -> VerifierRegistry {
    let b: Vec<(String, Vec<u8>)> = bundles
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read(dir.join("amd-roots").join(f)).unwrap(),
            )
        })
        .collect();
    let mut r = VerifierRegistry::new();
    r.register(Arc::new(SnpVerifier::from_bundles(&b).unwrap()));
    r
}

fn evidence(dir: &std::path::Path) -> TeeEvidence {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("trustee/snp/genoa-evidence.json")).unwrap(),
    )
    .unwrap();
    TeeEvidence {
        primary_evidence: v,
        additional_evidence: String::new(),
    }
}

#[test]
fn genoa_evidence_yields_claims_and_default_policy_warns_without_reference_values() {
    let Some(dir) = fixtures() else { return };
    let reg = registry(
        &dir,
        &[
            "ask_ark_milan.pem",
            "ask_ark_genoa.pem",
            "ask_ark_turin_vcek.pem",
        ],
    );
    let c = reg
        .verify_evidence(&Tee::new("snp"), &evidence(&dir), AS_OF)
        .unwrap();
    assert_eq!(c.claims["product"], "Genoa");
    assert_eq!(c.claims["reported_tcb"]["snp"], 23);
    assert_eq!(c.claims["policy"]["debug_allowed"], false);
    assert!(matches!(c.init_data.as_ref().unwrap(), InitDataBinding::Field(f) if f.len() == 32));
    assert_eq!(c.report_data.len(), 64);

    let measurement = c.claims["measurement"].as_str().unwrap().to_string();
    let src = default_attestation_policy("snp").unwrap();
    let appraise = |reference: serde_json::Value, claims: &serde_json::Value| {
        let p = Policy::compile("snp", src, ATTESTATION_PACKAGE)
            .unwrap()
            .with_data(&json!({"reference": reference}))
            .unwrap();
        p.eval_ints(&json!({"snp": claims}), &TRUST_RULES)
            .unwrap()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let v = appraise(json!({}), &c.claims);
    assert_eq!(
        (v["executables"], v["hardware"], v["configuration"]),
        (33, 2, 2)
    );
    let v = appraise(
        json!({"snp_launch_measurement": [measurement], "snp_min_snp": [24]}),
        &c.claims,
    );
    assert_eq!(
        (v["executables"], v["hardware"]),
        (2, 32),
        "TCB below the minimum is a warning"
    );
    let mut debug = c.claims.clone();
    debug["policy"]["debug_allowed"] = json!(true);
    assert_eq!(appraise(json!({}), &debug)["configuration"], 96);
    let mut vmpl = c.claims.clone();
    vmpl["vmpl"] = json!(2);
    assert_eq!(appraise(json!({}), &vmpl)["configuration"], 32);
}

#[test]
fn refuses_without_the_products_chain_and_names_the_check() {
    let Some(dir) = fixtures() else { return };
    // Only the Milan chain is configured: the Genoa VCEK has no intermediate.
    let reg = registry(&dir, &["ask_ark_milan.pem"]);
    let err = reg
        .verify_evidence(&Tee::new("snp"), &evidence(&dir), AS_OF)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Config(_)), "{err}");
    // Before the VCEK's validity.
    let reg = registry(&dir, &["ask_ark_genoa.pem"]);
    let err = reg
        .verify_evidence(&Tee::new("snp"), &evidence(&dir), 1_735_689_600)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Check {
                check: "snp.certificate_validity",
                ..
            }
        ),
        "{err}"
    );
    // Evidence without the VCEK.
    let mut ev = evidence(&dir);
    ev.primary_evidence["cert_chain"] = serde_json::Value::Null;
    let err = reg
        .verify_evidence(&Tee::new("snp"), &ev, AS_OF)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Check {
                check: "snp.collateral",
                ..
            }
        ),
        "{err}"
    );
    // A bundle whose root is not pinned is refused at configuration.
    let ask_only = std::fs::read(dir.join("snp-virtee-sev-milan/builtin_milan_ask.pem")).unwrap();
    let mut two = ask_only.clone();
    two.extend_from_slice(&ask_only);
    assert!(SnpVerifier::from_bundles(&[("x".into(), two)]).is_err());
}
