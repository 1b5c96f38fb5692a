//! SNP evidence without a VCEK: found in the collateral directory, in the
//! store's cache, or (when enabled) fetched from a KDS-shaped HTTP server
//! with rate-limit retries and cached; offline misses name chip and TCB.
//! The hardware is the simulator (its root trusted explicitly).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use ward_collateral::registry;
use ward_collateral::Config;
use ward_collateral::VCEK_KIND;
use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_sim::snp::{SnpReportParams, SnpSim};
use ward_snp::report::{AttestationReport, TcbParts};
use ward_snp::Product;
use ward_store::{Kek, SqliteStore, Store};
use ward_verifier::snp::VcekRequest;
use ward_verifier::{VerifierRegistry, VerifyError};

const NOW: i64 = 1_795_400_000;

fn new_sim() -> SnpSim {
    SnpSim::generate(
        Product::Milan,
        TcbParts {
            fmc: None,
            bootloader: 4,
            tee: 0,
            snp: 22,
            microcode: 213,
        },
        NOW,
    )
    .unwrap()
}

/// Evidence with an empty certificate table, and its KDS path.
fn evidence(sim: &SnpSim) -> (TeeEvidence, String) {
    let mut v = sim.evidence_json(&SnpReportParams::default()).unwrap();
    v["cert_chain"] = json!([]);
    let report = sim.report(&SnpReportParams::default()).unwrap();
    let r = AttestationReport::from_bytes(&report).unwrap();
    let path = VcekRequest::for_report(&r).kds_path(Product::Milan);
    (
        TeeEvidence {
            primary_evidence: v,
            additional_evidence: String::new(),
        },
        path,
    )
}

fn config(sim: &SnpSim, dir: &Path, chain_in_dir: bool) -> Config {
    let mut cfg = Config::default();
    let bundle = dir.join("cert_chain");
    std::fs::write(&bundle, sim.cert_chain_pem()).unwrap();
    if !chain_in_dir {
        cfg.snp.cert_chains = vec![bundle];
    }
    cfg.snp.simulated_roots = vec![hex::encode(sim.ark_fingerprint())];
    cfg.snp.collateral_dir = Some(dir.to_path_buf());
    cfg
}

fn store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("ward.db"), Kek::from_bytes([3; 32])).unwrap())
}

/// Verify, waiting for collateral being fetched (off this thread).
fn verify(reg: &VerifierRegistry, ev: &TeeEvidence) -> Result<Value, VerifyError> {
    ward_collateral::fetch::verify_waiting(std::time::Duration::from_secs(60), || {
        verify_once(reg, ev)
    })
}

fn verify_once(reg: &VerifierRegistry, ev: &TeeEvidence) -> Result<Value, VerifyError> {
    reg.verify_evidence(&Tee::new("snp"), ev, NOW)
        .map(|c| c.claims)
}

#[test]
fn offline_miss_names_chip_and_tcb_then_the_directory_supplies_the_vcek() {
    let sim = new_sim();
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(&config(&sim, dir.path(), true), None).unwrap();
    let (ev, path) = evidence(&sim);

    let e = verify(&reg, &ev).unwrap_err();
    let VerifyError::Check { check, detail } = &e else {
        panic!("{e}")
    };
    assert_eq!(*check, "snp.collateral");
    assert!(detail.contains(&hex::encode(sim.chip_id())), "{detail}");
    assert!(detail.contains("bl=4 tee=0 snp=22 ucode=213"), "{detail}");
    assert!(detail.contains("disabled (offline)"), "{detail}");
    assert!(detail.contains(&path), "{detail}");

    // KDS-shaped layout, DER as KDS serves it; the chain also from the directory.
    let vcek_path = dir
        .path()
        .join("vcek/v1/Milan")
        .join(hex::encode(sim.chip_id()));
    std::fs::create_dir_all(vcek_path.parent().unwrap()).unwrap();
    std::fs::write(&vcek_path, sim.vcek_der()).unwrap();
    let c = verify(&reg, &ev).unwrap();
    assert_eq!(c["simulated"], true);

    // A VCEK of another chip in the directory does not satisfy the lookup.
    let other = new_sim(); // a fresh chip id
    std::fs::write(&vcek_path, other.vcek_der()).unwrap();
    assert!(matches!(
        verify(&reg, &ev).unwrap_err(),
        VerifyError::Check {
            check: "snp.collateral",
            ..
        }
    ));
}

#[test]
fn the_store_cache_supplies_the_vcek() {
    let sim = new_sim();
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let reg = registry(&config(&sim, dir.path(), false), Some(st.clone())).unwrap();
    let (ev, path) = evidence(&sim);
    assert!(verify(&reg, &ev).is_err());
    st.put_collateral(VCEK_KIND, &path, sim.vcek_der(), NOW)
        .unwrap();
    verify(&reg, &ev).unwrap();
}

#[test]
fn kds_fetch_retries_rate_limits_and_caches() {
    let sim = new_sim();
    let vcek = sim.vcek_der().to_vec();
    let dir = tempfile::tempdir().unwrap();
    let (ev, path) = evidence(&sim);

    // A KDS stand-in on its own runtime: first answer 429, then the VCEK at
    // its path, 404 for anything else.
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (h, want, body) = (hits.clone(), path.clone(), vcek.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let (h, want, body) = (h.clone(), want.clone(), body.clone());
                async move {
                    use axum::http::StatusCode;
                    let n = h.fetch_add(1, Ordering::SeqCst);
                    let got = uri.path_and_query().map(|p| p.as_str().to_string());
                    if got.as_deref() != Some(want.as_str()) {
                        (StatusCode::NOT_FOUND, [("retry-after", "0")], Vec::new())
                    } else if n == 0 {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "0")],
                            Vec::new(),
                        )
                    } else {
                        (StatusCode::OK, [("retry-after", "0")], body)
                    }
                }
            });
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });

    let st = store(dir.path());
    let mut cfg = config(&sim, dir.path(), false);
    cfg.snp.kds_fetch = true;
    cfg.snp.kds_url = Some(format!("http://{addr}/"));
    let reg = registry(&cfg, Some(st.clone())).unwrap();
    verify(&reg, &ev).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one 429, then the VCEK");
    let cached = st.get_collateral(VCEK_KIND, &path).unwrap().unwrap();
    assert_eq!(cached.body, vcek);
    // Served from the cache now: KDS is not asked again.
    verify(&reg, &ev).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // A chip KDS does not know: a clear error after the 404s.
    let other = new_sim();
    let mut cfg2 = config(&other, dir.path(), false);
    cfg2.snp.kds_fetch = true;
    cfg2.snp.kds_url = Some(format!("http://{addr}"));
    let reg2 = registry(&cfg2, Some(st)).unwrap();
    let e = verify(&reg2, &evidence(&other).0).unwrap_err().to_string();
    assert!(
        e.contains("not found") && e.contains("snp.collateral"),
        "{e}"
    );
}

/// Issue 18, item 5: fetching used to block the verifying thread (up to
/// 4 x 15 s with sleeps). Now a miss starts a fetch elsewhere and answers at
/// once; concurrent misses share it; a failed fetch is remembered.
#[test]
fn fetches_run_elsewhere_are_shared_and_failures_are_remembered() {
    let sim = new_sim();
    let other = new_sim();
    let dir = tempfile::tempdir().unwrap();
    let (ev, path) = evidence(&sim);
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (h, want, body) = (hits.clone(), path.clone(), sim.vcek_der().to_vec());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let (h, want, body) = (h.clone(), want.clone(), body.clone());
                async move {
                    use axum::http::StatusCode;
                    h.fetch_add(1, Ordering::SeqCst);
                    // A slow KDS.
                    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
                    let got = uri.path_and_query().map(|p| p.as_str().to_string());
                    if got.as_deref() == Some(want.as_str()) {
                        (StatusCode::OK, body)
                    } else {
                        (StatusCode::NOT_FOUND, Vec::new())
                    }
                }
            });
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    let mut cfg = config(&sim, dir.path(), false);
    cfg.snp.kds_fetch = true;
    cfg.snp.kds_url = Some(format!("http://{addr}"));
    let reg = registry(&cfg, Some(store(dir.path()))).unwrap();
    // Five misses at once: each answers "pending" without waiting for the
    // slow KDS, all on one fetch.
    let mut keys = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    for _ in 0..5 {
        match verify_once(&reg, &ev) {
            Err(VerifyError::CollateralPending { key, what }) => {
                assert!(what.contains("VCEK"), "{what}");
                keys.insert(key);
            }
            other => panic!("expected a pending fetch, got {other:?}"),
        }
    }
    assert!(
        start.elapsed() < std::time::Duration::from_millis(700),
        "a miss waited on KDS"
    );
    assert_eq!(keys.len(), 1);
    let key = keys.into_iter().next().unwrap();
    ward_collateral::fetch::fetcher()
        .wait_blocking(&key, std::time::Duration::from_secs(30))
        .unwrap();
    verify_once(&reg, &ev).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one fetch for five misses");

    // A chip KDS does not know: after the failed fetch, misses get its error
    // at once, and KDS is not asked again meanwhile.
    let mut cfg2 = config(&other, dir.path(), false);
    cfg2.snp.kds_fetch = true;
    cfg2.snp.kds_url = Some(format!("http://{addr}"));
    let reg2 = registry(&cfg2, None).unwrap();
    let ev2 = evidence(&other).0;
    let e = verify(&reg2, &ev2).unwrap_err().to_string();
    assert!(
        e.contains("not found") && e.contains("tried again in"),
        "{e}"
    );
    let asked = hits.load(Ordering::SeqCst);
    let again = verify_once(&reg2, &ev2).unwrap_err().to_string();
    assert!(again.contains("fetching it failed"), "{again}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        asked,
        "a remembered failure is not fetched again"
    );
}
