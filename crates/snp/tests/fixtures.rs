//! Real SEV-SNP vectors from ../shared/fixtures (or $WARD_FIXTURES), with the
//! verdicts documented in its README. Skips with a notice when absent.

use std::path::{Path, PathBuf};

use ward_snp::certs::AmdCert;
use ward_snp::report::AttestationReport;
use ward_snp::verify::{check_binding, verify_chain, verify_report, ChainInput, VerifyError};
use ward_snp::{Product, SigningKey};

/// 2025-01-01T00:00:00Z, the "as of" time of the SNP vectors.
const AS_OF: i64 = 1_735_689_600;

fn fixtures() -> Option<PathBuf> {
    ward_proto::testing::fixtures("snp-virtee-sev-milan")
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// ASK/ASVK and ARK from a KDS-shaped PEM bundle (intermediate first).
fn chain(dir: &Path, rel: &str) -> (AmdCert, AmdCert) {
    let mut v = AmdCert::from_pem_bundle("chain", &read(dir, rel)).unwrap();
    assert_eq!(v.len(), 2);
    let ark = v.pop().unwrap();
    (v.pop().unwrap(), ark)
}

fn milan_virtee(dir: &Path) -> (Vec<u8>, AmdCert, AmdCert, AmdCert) {
    let hex_text = String::from_utf8(read(dir, "snp-virtee-sev-milan/report_milan.hex")).unwrap();
    let report = hex::decode(hex_text.trim()).unwrap();
    let vcek =
        AmdCert::from_der("VCEK", &read(dir, "snp-virtee-sev-milan/vcek_milan.der")).unwrap();
    let (ask, ark) = chain(dir, "snp-virtee-sev-milan/cert_chain_milan");
    (report, vcek, ask, ark)
}

#[test]
fn milan_report_verifies_with_documented_claims() {
    let Some(dir) = fixtures() else { return };
    let (bytes, vcek, ask, ark) = milan_virtee(&dir);
    let report = AttestationReport::from_bytes(&bytes).unwrap();
    let v = verify_report(&report, ChainInput::new(&vcek, &ask, &ark), AS_OF).unwrap();
    assert_eq!(v.product(), Product::Milan);
    assert_eq!(v.signing_key(), SigningKey::Vcek);
    let r = v.report();
    assert_eq!(r.version(), 2);
    assert_eq!(r.policy().0, 0x30000);
    assert!(r.policy().smt_allowed());
    assert!(!r.policy().debug_allowed());
    assert_eq!(r.vmpl(), 0);
    assert_eq!(r.platform_info().0, 1);
    let tcb = v.reported_tcb();
    assert_eq!(
        (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode),
        (3, 0, 8, 115)
    );
    assert_eq!(r.reported_tcb().0, 0x7308000000000003);
    assert_eq!(hex::encode(r.chip_id()), "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6");
    assert_eq!(hex::encode(r.report_data()), "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd");
    assert_eq!(hex::encode(r.measurement()), "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f");
    let fw = r.current_version();
    assert_eq!((fw.major, fw.minor, fw.build), (1, 52, 4));
    // Round trip: the parsed report holds exactly the bytes received.
    assert_eq!(&r.as_bytes()[..], &bytes[..]);
}

#[test]
fn every_single_byte_flip_in_the_signed_region_is_rejected() {
    let Some(dir) = fixtures() else { return };
    let (bytes, vcek, ask, ark) = milan_virtee(&dir);
    let chain = ChainInput::new(&vcek, &ask, &ark);
    for i in 0..0x2A0 {
        let mut b = bytes.clone();
        b[i] ^= if i == 21 { 0x80 } else { 0x01 };
        // Either the parser refuses it (a checked field) or verification fails.
        if let Ok(r) = AttestationReport::from_bytes(&b) {
            assert!(
                verify_report(&r, chain, AS_OF).is_err(),
                "flip at {i:#x} accepted"
            );
        }
    }
    // Byte 21 (the virtee regression) specifically fails the signature.
    let mut b = bytes.clone();
    b[21] ^= 0x80;
    let r = AttestationReport::from_bytes(&b).unwrap();
    assert_eq!(
        verify_report(&r, chain, AS_OF).unwrap_err(),
        VerifyError::Signature("VCEK")
    );
}

#[test]
fn rejects_truncated_report_wrong_vcek_other_chip_and_expired_certificates() {
    let Some(dir) = fixtures() else { return };
    let (bytes, vcek, ask, ark) = milan_virtee(&dir);
    assert!(AttestationReport::from_bytes(&bytes[..1183]).is_err());
    assert!(AttestationReport::from_bytes(&[]).is_err());
    let report = AttestationReport::from_bytes(&bytes).unwrap();

    // The VCEK of another Milan chip (Trustee's vector): chain valid, signature not.
    let other = AmdCert::from_der("VCEK", &read(&dir, "trustee/snp/milan-vcek.der")).unwrap();
    let err = verify_report(&report, ChainInput::new(&other, &ask, &ark), AS_OF).unwrap_err();
    assert_eq!(err, VerifyError::Signature("VCEK"));

    // Expired at `now`: the VCEK ends 2030-04-03.
    let late = 1_900_000_000; // 2030-03-17 is still valid; 2031 is not.
    assert!(verify_report(&report, ChainInput::new(&vcek, &ask, &ark), late).is_ok());
    let err =
        verify_report(&report, ChainInput::new(&vcek, &ask, &ark), 1_950_000_000).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Validity {
                cert: "VCEK/VLEK",
                ..
            }
        ),
        "{err}"
    );
    let err =
        verify_report(&report, ChainInput::new(&vcek, &ask, &ark), 1_600_000_000).unwrap_err();
    assert!(matches!(err, VerifyError::Validity { .. }), "{err}");

    // A chain rooted in the Genoa ARK does not sign a Milan ASK.
    let (_, genoa_ark) = chain(&dir, "amd-roots/ask_ark_genoa.pem");
    let err = verify_report(&report, ChainInput::new(&vcek, &ask, &genoa_ark), AS_OF).unwrap_err();
    assert!(
        matches!(err, VerifyError::Chain { cert: "ASK", .. }),
        "{err}"
    );
    // An ARK that is not pinned.
    let err = verify_report(&report, ChainInput::new(&vcek, &ask, &ask), AS_OF).unwrap_err();
    assert!(matches!(err, VerifyError::UnpinnedArk(_)), "{err}");
}

#[test]
fn trustee_milan_report_verifies_and_tcb_tampering_is_named() {
    let Some(dir) = fixtures() else { return };
    let bytes = read(&dir, "trustee/snp/milan-report.bin");
    let vcek = AmdCert::from_der("VCEK", &read(&dir, "trustee/snp/milan-vcek.der")).unwrap();
    let (ask, ark) = chain(&dir, "amd-roots/ask_ark_milan.pem");
    let chain_in = ChainInput::new(&vcek, &ask, &ark);
    let report = AttestationReport::from_bytes(&bytes).unwrap();
    verify_report(&report, chain_in, AS_OF).unwrap();

    let mut b = bytes.clone();
    b[42] ^= 1;
    let r = AttestationReport::from_bytes(&b).unwrap();
    assert_eq!(
        verify_report(&r, chain_in, AS_OF).unwrap_err(),
        VerifyError::Signature("VCEK")
    );

    // Changing the reported TCB breaks the signature; checked on its own,
    // a report TCB above the VCEK's is named as a TCB mismatch.
    let mut b = bytes.clone();
    b[384] += 1;
    let r = AttestationReport::from_bytes(&b).unwrap();
    assert!(verify_report(&r, chain_in, AS_OF).is_err());
    assert_eq!(
        check_binding(&r, Product::Milan, &vcek).unwrap_err(),
        VerifyError::Tcb {
            field: "bootloader",
            report: 4,
            cert: 3,
            reported: "bootloader 4 tee 0 snp 8 microcode 115".into(),
            certified: "bootloader 3 tee 0 snp 8 microcode 115".into(),
        }
    );
    // Microcode above the certified one, and another chip's VCEK.
    let mut b = bytes.clone();
    b[0x187] += 1;
    let r = AttestationReport::from_bytes(&b).unwrap();
    assert!(matches!(
        check_binding(&r, Product::Milan, &vcek).unwrap_err(),
        VerifyError::Tcb {
            field: "microcode",
            ..
        }
    ));
    let (_, other_vcek, _, _) = milan_virtee(&dir);
    // Issue 18, item 6.5: a wrong-chip VCEK says chip_id ≠ hwID.
    let e = check_binding(&report, Product::Milan, &other_vcek).unwrap_err();
    assert!(matches!(e, VerifyError::ChipId { .. }), "{e}");
    // Names print as text (they appear in messages), never as raw DER.
    assert!(
        vcek.issuer_name.contains("CN=SEV-Milan"),
        "{}",
        vcek.issuer_name
    );
    assert!(
        vcek.issuer_name.contains("O=Advanced Micro Devices"),
        "{}",
        vcek.issuer_name
    );
    assert!(
        e.to_string().starts_with("chip_id ") && e.to_string().contains(" ≠ the VCEK's hwID "),
        "{e}"
    );
}

#[test]
fn vlek_report_verifies_through_the_asvk_chain() {
    let Some(dir) = fixtures() else { return };
    let bytes = read(&dir, "trustee/snp/milan-vlek-report.bin");
    let vlek = AmdCert::from_der("VLEK", &read(&dir, "trustee/snp/milan-vlek.der")).unwrap();
    let (asvk, ark) = chain(&dir, "amd-roots/ask_ark_milan_vlek.pem");
    let report = AttestationReport::from_bytes(&bytes).unwrap();
    assert_eq!(report.signing_key(), SigningKey::Vlek);
    assert_eq!(report.version(), 3);
    let v = verify_report(&report, ChainInput::new(&vlek, &asvk, &ark), AS_OF).unwrap();
    assert_eq!(v.product(), Product::Milan);
    assert!(report.chip_id().iter().all(|b| *b == 0));
    // A VLEK under the VCEK intermediate does not verify.
    let (ask, _) = chain(&dir, "amd-roots/ask_ark_milan.pem");
    assert!(verify_report(&report, ChainInput::new(&vlek, &ask, &ark), AS_OF).is_err());
}

#[test]
fn vceks_with_raw_and_der_wrapped_hwid_both_parse() {
    let Some(dir) = fixtures() else { return };
    let raw =
        AmdCert::from_der("VCEK", &read(&dir, "trustee/snp/milan-vcek-hwid-raw.der")).unwrap();
    let der =
        AmdCert::from_der("VCEK", &read(&dir, "trustee/snp/milan-vcek-hwid-der.der")).unwrap();
    assert_eq!(raw.hw_id.as_ref().unwrap().len(), 64);
    assert_eq!(der.hw_id.as_ref().unwrap().len(), 64);
}

#[test]
fn turin_vcek_chain_verifies_with_eight_byte_hwid() {
    let Some(dir) = fixtures() else { return };
    let vcek =
        AmdCert::from_der("VCEK", &read(&dir, "snp-virtee-sev-milan/vcek_turin.der")).unwrap();
    let (ask, ark) = chain(&dir, "snp-virtee-sev-milan/cert_chain_turin");
    let product = verify_chain(ChainInput::new(&vcek, &ask, &ark), AS_OF).unwrap();
    assert_eq!(
        (product.product(), product.simulated()),
        (Product::Turin, false)
    );
    assert_eq!(
        hex::encode(vcek.hw_id.as_ref().unwrap()),
        "1e550a8ee5cf9f4d"
    );
    assert_eq!(
        (
            vcek.tcb.fmc,
            vcek.tcb.bootloader,
            vcek.tcb.tee,
            vcek.tcb.snp,
            vcek.tcb.microcode
        ),
        (Some(0), Some(0), Some(0), Some(0), Some(9))
    );
}

#[test]
fn pinned_arks_match_the_amd_roots_bundles() {
    let Some(dir) = fixtures() else { return };
    for (file, product) in [
        ("amd-roots/ask_ark_milan.pem", Product::Milan),
        ("amd-roots/ask_ark_genoa.pem", Product::Genoa),
        ("amd-roots/ask_ark_turin_vcek.pem", Product::Turin),
        ("amd-roots/ask_ark_milan_vlek.pem", Product::Milan),
        ("amd-roots/ask_ark_genoa_vlek.pem", Product::Genoa),
        ("amd-roots/ask_ark_turin_vlek.pem", Product::Turin),
    ] {
        let (ask, ark) = chain(&dir, file);
        assert_eq!(
            Product::from_ark_fingerprint(&ark.fingerprint),
            Some(product),
            "{file}"
        );
        ark.signed_by(&ark).unwrap();
        ask.signed_by(&ark).unwrap();
    }
}

#[test]
fn coco_genoa_evidence_json_rebuilds_the_signed_bytes_and_verifies() {
    let Some(dir) = fixtures() else { return };
    let v: serde_json::Value =
        serde_json::from_slice(&read(&dir, "trustee/snp/genoa-evidence.json")).unwrap();
    let ev = ward_snp::evidence::parse_evidence(&v).unwrap();
    assert_eq!(ev.report.version(), 3);
    let vcek = AmdCert::from_der("VCEK", ev.cert("VCEK").unwrap()).unwrap();
    let (ask, ark) = chain(&dir, "amd-roots/ask_ark_genoa.pem");
    let chain_in = ChainInput::new(&vcek, &ask, &ark);
    // The fixtures README says "as of 2025-01-01", but this VCEK is valid
    // only from 2025-05-27T17:57:03Z: as of that date it is refused, by name.
    assert_eq!(vcek.not_before, 1_748_368_623);
    let err = verify_report(&ev.report, chain_in, AS_OF).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Validity {
                cert: "VCEK/VLEK",
                ..
            }
        ),
        "{err}"
    );
    // Inside the VCEK's validity (2025-07-01) chain and signature verify.
    let as_of_valid = 1_751_328_000;
    let verified = verify_report(&ev.report, chain_in, as_of_valid).unwrap();
    assert_eq!(verified.product(), Product::Genoa);
    let t = verified.reported_tcb();
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (10, 0, 23, 25));

    // Any change to a signed field in the JSON breaks the signature.
    let mut bad = v.clone();
    bad["attestation_report"]["measurement"][0] = serde_json::json!(0);
    let ev = ward_snp::evidence::parse_evidence(&bad).unwrap();
    assert!(matches!(
        verify_report(&ev.report, chain_in, as_of_valid).unwrap_err(),
        VerifyError::Signature("VCEK")
    ));
    // Malformed shapes are named.
    for (field, value) in [
        ("measurement", serde_json::json!([1, 2])),
        ("policy", serde_json::json!(-1)),
        ("vmpl", serde_json::json!("0")),
    ] {
        let mut bad = v.clone();
        bad["attestation_report"][field] = value;
        let e = ward_snp::evidence::parse_evidence(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
}
