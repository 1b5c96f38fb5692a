//! The `snp` verifier through the registry, on the real Genoa CoCo evidence
//! of ../shared/fixtures (skipped with a notice when absent), and the
//! default SNP attestation policy on its claims.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use ward_policy::Policy;
use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_snp::certs::AmdCert;
use ward_snp::report::AttestationReport;
use ward_verifier::snp::{builtin_chains, SnpVerifier};
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

/// 2025-01-01: the "as of" time of the Milan vectors.
const MILAN_AS_OF: i64 = 1_735_689_600;

fn bundle(dir: &std::path::Path, f: &str) -> (String, Vec<u8>) {
    (
        f.to_string(),
        std::fs::read(dir.join("amd-roots").join(f)).unwrap(),
    )
}

/// The check a verification error names, if any.
fn check_of(e: &VerifyError) -> Option<&'static str> {
    match e {
        VerifyError::Check { check, .. } => Some(check),
        _ => None,
    }
}

fn trustee(dir: &std::path::Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join("trustee/snp").join(f)).unwrap()
}

fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
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
    // The VLEK chains are not built in: a VLEK-signed report with only the
    // built-in and the Milan VCEK chain has no intermediate, and the error
    // says which chain to configure.
    let v = SnpVerifier::from_bundles(&[bundle(&dir, "ask_ark_milan.pem")]).unwrap();
    let report = AttestationReport::from_bytes(&trustee(&dir, "milan-vlek-report.bin")).unwrap();
    let err = v
        .verify_report_with(&report, &trustee(&dir, "milan-vlek.der"), MILAN_AS_OF)
        .unwrap_err();
    assert!(
        matches!(&err, VerifyError::Config(m) if m.contains("https://kdsintf.amd.com/vlek/v1/Milan/cert_chain")),
        "{err}"
    );
    // Before the VCEK's validity.
    let reg = registry(&dir, &["ask_ark_genoa.pem"]);
    let err = reg
        .verify_evidence(&Tee::new("snp"), &evidence(&dir), 1_735_689_600)
        .unwrap_err();
    assert_eq!(check_of(&err), Some("snp.certificate_validity"), "{err}");
    // Evidence without the VCEK.
    let mut ev = evidence(&dir);
    ev.primary_evidence["cert_chain"] = serde_json::Value::Null;
    let err = reg
        .verify_evidence(&Tee::new("snp"), &ev, AS_OF)
        .unwrap_err();
    assert_eq!(check_of(&err), Some("snp.collateral"), "{err}");
    // A bundle whose root is not pinned is refused at configuration.
    let ask_only = std::fs::read(dir.join("snp-virtee-sev-milan/builtin_milan_ask.pem")).unwrap();
    let mut two = ask_only.clone();
    two.extend_from_slice(&ask_only);
    assert!(SnpVerifier::from_bundles(&[("x".into(), two)]).is_err());
}

#[test]
fn the_builtin_chains_are_the_published_amd_ones() {
    let Some(dir) = fixtures() else { return };
    let builtin = builtin_chains();
    for (product, file) in [
        ("Milan", "ask_ark_milan.pem"),
        ("Genoa", "ask_ark_genoa.pem"),
        ("Turin", "ask_ark_turin_vcek.pem"),
    ] {
        let (_, ours) = builtin.iter().find(|(n, _)| n.contains(product)).unwrap();
        let der = |pem: &[u8]| -> Vec<Vec<u8>> {
            AmdCert::from_pem_bundle("chain", pem)
                .unwrap()
                .into_iter()
                .map(|c| c.der)
                .collect()
        };
        assert_eq!(der(ours), der(&bundle(&dir, file).1), "{product}");
    }
}

#[test]
fn real_vcek_evidence_verifies_with_no_chain_configured() {
    let Some(dir) = fixtures() else { return };
    // Genoa CoCo evidence through the registry.
    let mut reg = VerifierRegistry::new();
    reg.register(Arc::new(SnpVerifier::default()));
    let c = reg
        .verify_evidence(&Tee::new("snp"), &evidence(&dir), AS_OF)
        .unwrap();
    assert_eq!(c.claims["product"], "Genoa");
    // A raw Milan report with its VCEK.
    let v = SnpVerifier::default();
    let report = AttestationReport::from_bytes(&trustee(&dir, "milan-report.bin")).unwrap();
    let ok = v
        .verify_report_with(&report, &trustee(&dir, "milan-vcek.der"), MILAN_AS_OF)
        .unwrap();
    assert_eq!(ok.product(), ward_snp::Product::Milan);
    // The built-in chain still checks the report: a flipped signature byte.
    let mut bad = trustee(&dir, "milan-report.bin");
    bad[42] ^= 1;
    let bad = AttestationReport::from_bytes(&bad).unwrap();
    let err = v
        .verify_report_with(&bad, &trustee(&dir, "milan-vcek.der"), MILAN_AS_OF)
        .unwrap_err();
    assert_eq!(check_of(&err), Some("snp.report_signature"), "{err}");
}

#[test]
fn a_bundle_led_by_its_vek_is_accepted_and_supplies_it() {
    let Some(dir) = fixtures() else { return };
    let vcek = trustee(&dir, "milan-vcek.der");
    // VCEK, ASK, ARK: as Azure tooling writes it.
    let mut led = pem(&vcek);
    led.extend_from_slice(&bundle(&dir, "ask_ark_milan.pem").1);
    let v = SnpVerifier::from_bundles(&[("vcek+ask+ark".into(), led)]).unwrap();
    let report = AttestationReport::from_bytes(&trustee(&dir, "milan-report.bin")).unwrap();
    let found = v.vek_for(&report, None).unwrap();
    assert_eq!(found, vcek, "the bundled VCEK is the one for this chip");
    assert!(v.verify_report_with(&report, &found, MILAN_AS_OF).is_ok());
    // Without it in a bundle, the evidence must carry it.
    let err = SnpVerifier::default().vek_for(&report, None).unwrap_err();
    assert_eq!(check_of(&err), Some("snp.collateral"), "{err}");

    // VLEK, ARK, ASVK (any order), for a VLEK-signed report.
    let vlek = trustee(&dir, "milan-vlek.der");
    let asvk_ark =
        AmdCert::from_pem_bundle("x", &bundle(&dir, "ask_ark_milan_vlek.pem").1).unwrap();
    let mut shuffled = pem(&vlek);
    shuffled.extend_from_slice(&pem(&asvk_ark[1].der));
    shuffled.extend_from_slice(&pem(&asvk_ark[0].der));
    let v = SnpVerifier::from_bundles(&[("vlek".into(), shuffled)]).unwrap();
    let report = AttestationReport::from_bytes(&trustee(&dir, "milan-vlek-report.bin")).unwrap();
    let found = v.vek_for(&report, None).unwrap();
    assert_eq!(found, vlek);
    let ok = v.verify_report_with(&report, &found, MILAN_AS_OF).unwrap();
    assert_eq!(ok.signing_key(), ward_snp::SigningKey::Vlek);
}
