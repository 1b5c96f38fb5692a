//! The simulated DCAP platform drives the real verifier: its quotes verify
//! only with its root configured, are marked simulated, and a PCK listed in
//! its CRL, stale collateral or tampering are refused by name.

use ward_dcap::quote::Quote;
use ward_dcap::verify::{Collateral, DcapCache, TcbStatus};
use ward_sim::tdx::{DcapSim, TdParams};

const NOW: i64 = 1_795_400_000;

fn setup(revoked: bool) -> (DcapSim, Collateral) {
    let sim = DcapSim::generate(NOW, revoked).unwrap();
    let c = Collateral::from_flat_json(&sim.collateral_json(NOW).unwrap().to_string()).unwrap();
    (sim, c)
}

fn check(e: ward_dcap::verify::VerifyError) -> String {
    e.to_string().split(':').next().unwrap().to_string()
}

#[test]
fn simulated_quotes_verify_only_with_the_root_configured() {
    let (sim, c) = setup(false);
    let p = TdParams {
        mr_td: [7; 48],
        report_data: [9; 64],
        ..Default::default()
    };
    let q = Quote::parse(&sim.tdx_quote(&p).unwrap()).unwrap();
    let trusted = DcapCache::with_simulated_roots(vec![sim.root_fingerprint()]);
    let v = trusted.verify(&q, &c, NOW).unwrap();
    assert_eq!(v.status, TcbStatus::UpToDate);
    assert!(v.simulated);
    assert_eq!(v.fmspc, sim.fmspc());
    assert_eq!(q.report_data(), &[9; 64]);

    // Not configured: the root is not Intel's.
    let e = DcapCache::default().verify(&q, &c, NOW).unwrap_err();
    assert_eq!(check(e), "dcap.pck_chain");

    // Collateral past its nextUpdate.
    let e = trusted.verify(&q, &c, NOW + 31 * 86_400).unwrap_err();
    assert!(
        matches!(
            check(e.clone()).as_str(),
            "dcap.collateral_expired" | "dcap.crl"
        ),
        "{e}"
    );

    // A flipped byte of the body.
    let mut b = sim.tdx_quote(&p).unwrap();
    b[48 + 200] ^= 1;
    let e = trusted
        .verify(&Quote::parse(&b).unwrap(), &c, NOW)
        .unwrap_err();
    assert_eq!(check(e), "dcap.quote_signature");
}

#[test]
fn a_pck_listed_in_the_crl_is_refused() {
    let (sim, c) = setup(true);
    let q = Quote::parse(&sim.tdx_quote(&TdParams::default()).unwrap()).unwrap();
    let e = DcapCache::with_simulated_roots(vec![sim.root_fingerprint()])
        .verify(&q, &c, NOW)
        .unwrap_err();
    assert_eq!(check(e), "dcap.pck_revoked");
}

#[test]
fn save_and_load_keep_the_platform() {
    let dir = tempfile_dir();
    let (sim, c) = setup(false);
    sim.save(&dir).unwrap();
    let again = DcapSim::load(&dir).unwrap();
    assert_eq!(again.root_fingerprint(), sim.root_fingerprint());
    let q = Quote::parse(&again.tdx_quote(&TdParams::default()).unwrap()).unwrap();
    DcapCache::with_simulated_roots(vec![sim.root_fingerprint()])
        .verify(&q, &c, NOW)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ward-dcap-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn simulated_sgx_quotes_verify_with_sgx_collateral() {
    use ward_dcap::quote::Body;
    use ward_sim::tdx::SgxParams;
    let sim = DcapSim::generate(NOW, false).unwrap();
    let c = Collateral::from_flat_json(&sim.sgx_collateral_json(NOW).unwrap().to_string()).unwrap();
    let p = SgxParams {
        mr_enclave: [1; 32],
        mr_signer: [2; 32],
        isv_svn: 3,
        report_data: [4; 64],
        ..Default::default()
    };
    let q = Quote::parse(&sim.sgx_quote(&p).unwrap()).unwrap();
    let Body::Sgx(r) = &q.body else {
        panic!("SGX body")
    };
    assert_eq!((r.mr_enclave, r.isv_svn, r.debug()), ([1; 32], 3, false));
    let cache = DcapCache::with_simulated_roots(vec![sim.root_fingerprint()]);
    let v = cache.verify(&q, &c, NOW).unwrap();
    assert_eq!(v.status, TcbStatus::UpToDate);
    // TDX collateral does not fit an SGX quote.
    let tdx = Collateral::from_flat_json(&sim.collateral_json(NOW).unwrap().to_string()).unwrap();
    assert!(cache.verify(&q, &tdx, NOW).is_err());
}
