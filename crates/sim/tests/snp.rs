//! The SNP simulator signs like the hardware: its reports pass the real
//! verifier when (and only when) its root is configured, and every check
//! still bites.

use std::sync::OnceLock;

use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_sim::snp::{SnpReportParams, SnpSim, POLICY_DEBUG};
use ward_snp::certs::AmdCert;
use ward_snp::report::{offset, AttestationReport, TcbParts};
use ward_snp::verify::{verify_report, ChainInput, ExtraRoot, VerifyError};
use ward_snp::Product;
use ward_verifier::snp::SnpVerifier;
use ward_verifier::{InitDataBinding, VerifierRegistry, VerifyError as RegistryError};

const NOW: i64 = 1_795_400_000;
const TCB: TcbParts = TcbParts {
    fmc: None,
    bootloader: 4,
    tee: 0,
    snp: 22,
    microcode: 213,
};

fn milan() -> &'static SnpSim {
    static SIM: OnceLock<SnpSim> = OnceLock::new();
    SIM.get_or_init(|| SnpSim::generate(Product::Milan, TCB, NOW).unwrap())
}

fn certs(sim: &SnpSim) -> (AmdCert, AmdCert, AmdCert) {
    (
        AmdCert::from_der("VCEK", sim.vcek_der()).unwrap(),
        AmdCert::from_der("ASK", sim.ask_der()).unwrap(),
        AmdCert::from_der("ARK", sim.ark_der()).unwrap(),
    )
}

fn roots(sim: &SnpSim) -> [ExtraRoot; 1] {
    [ExtraRoot {
        fingerprint: sim.ark_fingerprint(),
        product: sim.product(),
    }]
}

fn params() -> SnpReportParams {
    SnpReportParams {
        measurement: [0x5a; 48],
        report_data: [7; 64],
        host_data: [9; 32],
        ..Default::default()
    }
}

#[test]
fn simulated_report_verifies_only_with_its_root_configured() {
    let sim = milan();
    let (vcek, ask, ark) = certs(sim);
    let report = AttestationReport::from_bytes(&sim.report(&params()).unwrap()).unwrap();
    let err = verify_report(&report, ChainInput::new(&vcek, &ask, &ark), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::UnpinnedArk(_)), "{err}");
    let r = roots(sim);
    let v = verify_report(
        &report,
        ChainInput {
            vek: &vcek,
            ask: &ask,
            ark: &ark,
            extra_roots: &r,
        },
        NOW,
    )
    .unwrap();
    assert!(v.simulated());
    assert_eq!(v.product(), Product::Milan);
    assert_eq!(v.report().measurement(), &[0x5a; 48]);
    let t = v.reported_tcb();
    assert_eq!((t.bootloader, t.snp, t.microcode), (4, 22, 213));
}

#[test]
fn every_check_still_bites_on_simulated_reports() {
    let sim = milan();
    let (vcek, ask, ark) = certs(sim);
    let r = roots(sim);
    let chain = ChainInput {
        vek: &vcek,
        ask: &ask,
        ark: &ark,
        extra_roots: &r,
    };
    let good = sim.report(&params()).unwrap();

    // Tampered after signing.
    let mut b = good.clone();
    b[offset::MEASUREMENT] ^= 1;
    let err = verify_report(&AttestationReport::from_bytes(&b).unwrap(), chain, NOW).unwrap_err();
    assert_eq!(err, VerifyError::Signature("VCEK"));
    // Reported TCB above the VCEK's, signed by the (simulated) firmware.
    let mut b = good.clone();
    b[offset::REPORTED_TCB + 7] += 1;
    sim.sign(&mut b).unwrap();
    let err = verify_report(&AttestationReport::from_bytes(&b).unwrap(), chain, NOW).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Tcb {
            field: "microcode",
            report: 214,
            cert: 213,
            reported: err_field(&err, "reported"),
            certified: err_field(&err, "certified"),
        }
    );
    // Issue 18, item 6.5: the message shows every SVN of both sides.
    assert!(
        err.to_string().contains("microcode 214; certified: "),
        "{err}"
    );
    // Another chip's id.
    let mut b = good.clone();
    b[offset::CHIP_ID] ^= 0xff;
    sim.sign(&mut b).unwrap();
    assert!(matches!(
        verify_report(&AttestationReport::from_bytes(&b).unwrap(), chain, NOW).unwrap_err(),
        VerifyError::ChipId { .. }
    ));
    // Certificates expired at `now`.
    let err = verify_report(
        &AttestationReport::from_bytes(&good).unwrap(),
        chain,
        NOW + 11 * 365 * 86_400,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Validity { .. }), "{err}");
}

#[test]
fn coco_evidence_json_from_the_simulator_goes_through_the_registry() {
    let sim = milan();
    let bundle = vec![("sim".to_string(), sim.cert_chain_pem().into_bytes())];
    assert!(
        SnpVerifier::from_bundles(&bundle).is_err(),
        "an unpinned root is refused unless named"
    );
    let v = SnpVerifier::with_simulated_roots(&bundle, &[sim.ark_fingerprint()]).unwrap();
    let mut reg = VerifierRegistry::new();
    reg.register(std::sync::Arc::new(v));
    let debug = SnpReportParams {
        policy: 0x30000 | POLICY_DEBUG,
        ..params()
    };
    let ev = TeeEvidence {
        primary_evidence: sim.evidence_json(&debug).unwrap(),
        additional_evidence: String::new(),
    };
    let c = reg.verify_evidence(&Tee::new("snp"), &ev, NOW).unwrap();
    assert_eq!(c.claims["simulated"], true);
    assert_eq!(c.claims["policy"]["debug_allowed"], true);
    assert_eq!(c.init_data.unwrap(), InitDataBinding::Field(vec![9u8; 32]));
    // The JSON's signature must cover what it says.
    let mut tampered = ev.clone();
    tampered.primary_evidence["attestation_report"]["host_data"][0] = serde_json::json!(1);
    let err = reg
        .verify_evidence(&Tee::new("snp"), &tampered, NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Check {
                check: "snp.report_signature",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn turin_simulator_uses_the_turin_tcb_layout() {
    let tcb = TcbParts {
        fmc: Some(1),
        bootloader: 2,
        tee: 3,
        snp: 4,
        microcode: 5,
    };
    let sim = SnpSim::generate(Product::Turin, tcb, NOW).unwrap();
    let (vcek, ask, ark) = certs(&sim);
    let r = roots(&sim);
    let report = AttestationReport::from_bytes(&sim.report(&params()).unwrap()).unwrap();
    let v = verify_report(
        &report,
        ChainInput {
            vek: &vcek,
            ask: &ask,
            ark: &ark,
            extra_roots: &r,
        },
        NOW,
    )
    .unwrap();
    assert_eq!(v.reported_tcb(), tcb);
    assert_eq!(vcek.hw_id.as_ref().unwrap().len(), 8);
}

#[test]
fn saved_simulator_signs_verifiable_reports_after_reload() {
    let sim = milan();
    let dir = std::env::temp_dir().join(format!("ward-sim-test-{}", std::process::id()));
    sim.save(&dir).unwrap();
    let loaded = SnpSim::load(&dir).unwrap();
    assert_eq!(loaded.ark_fingerprint(), sim.ark_fingerprint());
    let (vcek, ask, ark) = certs(&loaded);
    let r = roots(&loaded);
    let report = AttestationReport::from_bytes(&loaded.report(&params()).unwrap()).unwrap();
    verify_report(
        &report,
        ChainInput {
            vek: &vcek,
            ask: &ask,
            ark: &ark,
            extra_roots: &r,
        },
        NOW,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.join("vcek-key.pk8"))
                .unwrap()
                .permissions()
                .mode()
                & 0o077,
            0
        );
    }
    std::fs::write(dir.join("sim.json"), b"{}").unwrap();
    assert!(SnpSim::load(&dir).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The SVN summary a TCB error carries (`reported` or `certified`).
fn err_field(e: &VerifyError, which: &str) -> String {
    match e {
        VerifyError::Tcb {
            reported,
            certified,
            ..
        } => if which == "reported" {
            reported
        } else {
            certified
        }
        .clone(),
        _ => String::new(),
    }
}
