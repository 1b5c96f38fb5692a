//! DCAP verification on the complete offline sets of
//! ../shared/fixtures/dcap-phala (skipped with a notice when absent), as of
//! the times its MANIFEST gives, and a rejection naming the check for each
//! tampered part.

use std::path::PathBuf;

use ward_dcap::quote::Quote;
use ward_dcap::verify::{verify_quote, Collateral, TcbStatus, VerifyError};

/// 2025-07-01T00:00:00Z and 2026-03-01T00:00:00Z.
const JULY_2025: i64 = 1_751_328_000;
const MARCH_2026: i64 = 1_772_323_200;

fn dir() -> Option<PathBuf> {
    ward_proto::testing::fixtures("dcap-phala/sgx_quote").map(|d| d.join("dcap-phala"))
}

fn load(d: &std::path::Path, quote: &str, coll: &str) -> (Vec<u8>, Collateral) {
    let q = std::fs::read(d.join(quote)).unwrap();
    let c = Collateral::from_flat_json(&std::fs::read_to_string(d.join(coll)).unwrap()).unwrap();
    (q, c)
}

#[test]
fn documented_verdicts() {
    let Some(d) = dir() else { return };
    let (q, c) = load(&d, "sgx_quote", "sgx_quote_collateral.json");
    let v = verify_quote(&Quote::parse(&q).unwrap(), &c, JULY_2025).unwrap();
    assert_eq!(v.status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(v.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(v.fmspc, "00A067110000");
    assert_eq!(v.pck_pcesvn, 13);

    let (q, c) = load(&d, "tdx_quote", "tdx_quote_collateral.json");
    let v = verify_quote(&Quote::parse(&q).unwrap(), &c, JULY_2025).unwrap();
    assert_eq!(v.status, TcbStatus::UpToDate);
    assert!(v.advisory_ids.is_empty());
    assert_eq!(v.fmspc, "B0C06F000000");

    let (q, c) = load(
        &d,
        "tdx_quote_outdated",
        "tdx_quote_outdated_collateral.json",
    );
    let e = verify_quote(&Quote::parse(&q).unwrap(), &c, MARCH_2026).unwrap_err();
    assert!(matches!(e, VerifyError::NoTcbLevel { .. }), "{e}");
    // Issue 18, item 6.5: the platform's SVNs beside the nearest level.
    let m = e.to_string();
    assert!(m.contains("platform: sgx [") && m.contains(" tdx ["), "{m}");
    assert!(m.contains("nearest level: "), "{m}");
}

fn check(e: VerifyError) -> String {
    e.to_string().split(':').next().unwrap().to_string()
}

#[test]
fn tampering_and_stale_collateral_are_rejected_by_name() {
    let Some(d) = dir() else { return };
    let (q, c) = load(&d, "tdx_quote", "tdx_quote_collateral.json");
    let verify = |b: &[u8], c: &Collateral, now: i64| verify_quote(&Quote::parse(b)?, c, now);
    let flip = |at: usize| {
        let mut b = q.clone();
        b[at] ^= 1;
        b
    };
    let sig_data = 48 + 584 + 4;
    // Header, body: the quote signature.
    for at in [10, 48 + 100, 48 + 583] {
        assert_eq!(
            check(verify(&flip(at), &c, JULY_2025).unwrap_err()),
            "dcap.quote_signature",
            "{at}"
        );
    }
    // The quote signature itself.
    assert_eq!(
        check(verify(&flip(sig_data + 5), &c, JULY_2025).unwrap_err()),
        "dcap.quote_signature"
    );
    // The attestation key: no longer what the QE bound.
    assert_eq!(
        check(verify(&flip(sig_data + 64 + 5), &c, JULY_2025).unwrap_err()),
        "dcap.qe_binding"
    );
    // QE report (after the 6-byte type-6 header), and its signature.
    let qe = sig_data + 128 + 6;
    assert_eq!(
        check(verify(&flip(qe + 20), &c, JULY_2025).unwrap_err()),
        "dcap.qe_report_signature"
    );
    assert_eq!(
        check(verify(&flip(qe + 384 + 3), &c, JULY_2025).unwrap_err()),
        "dcap.qe_report_signature"
    );
    // Truncated quote.
    assert!(Quote::parse(&q[..600])
        .unwrap_err()
        .to_string()
        .contains("truncated"));

    // tcbInfo re-serialised (whitespace): its signature no longer holds.
    let mut c2 = c.clone();
    c2.tcb_info = c2.tcb_info.replacen(",", ", ", 1);
    assert_eq!(
        check(verify(&q, &c2, JULY_2025).unwrap_err()),
        "dcap.collateral_signature"
    );
    let mut c3 = c.clone();
    c3.qe_identity = format!(" {}", c3.qe_identity);
    assert_eq!(
        check(verify(&q, &c3, JULY_2025).unwrap_err()),
        "dcap.collateral_signature"
    );

    // After the collateral's nextUpdate (PCK CRL expires first here).
    let late = 1_753_000_000; // 2025-07-20
    let e = verify(&q, &c, late).unwrap_err();
    assert!(
        matches!(
            check(e.clone()).as_str(),
            "dcap.crl" | "dcap.collateral_expired"
        ),
        "{e}"
    );
    // Before the PCK certificate existed.
    let e = verify(&q, &c, 1_600_000_000).unwrap_err();
    assert_eq!(check(e), "dcap.certificate_validity");
}

#[test]
fn the_cache_gives_the_same_verdicts_and_honours_time() {
    let Some(d) = dir() else { return };
    let cache = ward_dcap::verify::DcapCache::default();
    let (q, c) = load(&d, "tdx_quote", "tdx_quote_collateral.json");
    let q = Quote::parse(&q).unwrap();
    let first = cache.verify(&q, &c, JULY_2025).unwrap();
    assert_eq!(cache.verify(&q, &c, JULY_2025 + 60).unwrap(), first);
    // Past the collateral window the cached check does not apply.
    assert!(cache.verify(&q, &c, 1_753_000_000).is_err());
    // A tampered quote still fails with warm caches.
    let mut b = std::fs::read(d.join("tdx_quote")).unwrap();
    b[60] ^= 1;
    let e = cache
        .verify(&Quote::parse(&b).unwrap(), &c, JULY_2025)
        .unwrap_err();
    assert_eq!(check(e), "dcap.quote_signature");
}
