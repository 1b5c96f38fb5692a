//! Intel collateral fetched from a PCS-shaped server (v4 API: TCB info and
//! QE identity bodies with URL-encoded issuer-chain headers, DER CRLs)
//! when enabled, then cached in the store. The platform is the TDX
//! simulator (its root trusted explicitly).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use ward_collateral::registry;
use ward_collateral::Config;
use ward_collateral::DCAP_KIND;
use ward_proto::kbs::TeeEvidence;
use ward_proto::Tee;
use ward_sim::tdx::{DcapSim, TdParams};
use ward_store::{Kek, SqliteStore, Store};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A PCS stand-in for `sim`'s collateral on its own runtime.
fn pcs(sim: &DcapSim, hits: Arc<AtomicUsize>) -> String {
    let c = sim.collateral_json(now()).unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    let tcb_body = format!(
        r#"{{"tcbInfo":{},"signature":"{}"}}"#,
        s("tcb_info"),
        s("tcb_info_signature")
    );
    let qe_body = format!(
        r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
        s("qe_identity"),
        s("qe_identity_signature")
    );
    let (tcb_chain, qe_chain) = (
        url_encode(&s("tcb_info_issuer_chain")),
        url_encode(&s("qe_identity_issuer_chain")),
    );
    let pck_crl = hex::decode(s("pck_crl")).unwrap();
    let root_crl = hex::decode(s("root_ca_crl")).unwrap();
    let fmspc = sim.fmspc();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let h = hits.clone();
                let (tcb_body, qe_body, tcb_chain, qe_chain, pck_crl, root_crl, fmspc) = (
                    tcb_body.clone(),
                    qe_body.clone(),
                    tcb_chain.clone(),
                    qe_chain.clone(),
                    pck_crl.clone(),
                    root_crl.clone(),
                    fmspc.clone(),
                );
                async move {
                    use axum::http::StatusCode;
                    h.fetch_add(1, Ordering::SeqCst);
                    let pq = uri.path_and_query().unwrap().as_str().to_string();
                    if pq == format!("/tdx/certification/v4/tcb?fmspc={fmspc}") {
                        (
                            StatusCode::OK,
                            [("TCB-Info-Issuer-Chain", tcb_chain)],
                            tcb_body.into_bytes(),
                        )
                    } else if pq == "/tdx/certification/v4/qe/identity" {
                        (
                            StatusCode::OK,
                            [("SGX-Enclave-Identity-Issuer-Chain", qe_chain)],
                            qe_body.into_bytes(),
                        )
                    } else if pq == "/sgx/certification/v4/pckcrl?ca=platform&encoding=der" {
                        (
                            StatusCode::OK,
                            [("SGX-PCK-CRL-Issuer-Chain", String::new())],
                            pck_crl,
                        )
                    } else if pq == "/root.der" {
                        (
                            StatusCode::OK,
                            [("Content-Type", "application/pkix-crl".into())],
                            root_crl,
                        )
                    } else {
                        (
                            StatusCode::NOT_FOUND,
                            [("X-Unknown", String::new())],
                            Vec::new(),
                        )
                    }
                }
            });
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

#[test]
fn collateral_is_fetched_once_then_served_from_the_store() {
    let sim = DcapSim::generate(now(), false).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let base = pcs(&sim, hits.clone());
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), Kek::from_bytes([4; 32])).unwrap());
    let mut cfg = Config::default();
    cfg.dcap.simulated_roots = vec![hex::encode(sim.root_fingerprint())];
    cfg.dcap.pcs_fetch = true;
    cfg.dcap.pcs_url = Some(base.clone());
    cfg.dcap.root_crl_url = Some(format!("{base}/root.der"));
    let reg = registry(&cfg, Some(store.clone())).unwrap();
    let quote = sim
        .tdx_quote(&TdParams {
            mr_td: [5; 48],
            ..Default::default()
        })
        .unwrap();
    let ev = TeeEvidence {
        primary_evidence: json!({"quote": ward_proto::b64::std_encode(&quote)}),
        additional_evidence: String::new(),
    };
    // The fetch runs off this thread; wait for it and verify again.
    let wait = std::time::Duration::from_secs(60);
    let c = ward_collateral::fetch::verify_waiting(wait, || {
        reg.verify_evidence(&Tee::new("tdx"), &ev, now())
    })
    .unwrap();
    assert_eq!(
        (
            c.claims["tcb_status"].clone(),
            c.claims["simulated"].clone()
        ),
        (Value::from("UpToDate"), Value::from(true))
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "TCB info, QE identity, PCK CRL, root CRL"
    );
    assert!(store
        .get_collateral(DCAP_KIND, &format!("TDX/{}", sim.fmspc()))
        .unwrap()
        .is_some());
    // A second verifier on the same store does not fetch again.
    let reg2 = registry(&cfg, Some(store)).unwrap();
    ward_collateral::fetch::verify_waiting(wait, || {
        reg2.verify_evidence(&Tee::new("tdx"), &ev, now())
    })
    .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // A platform PCS does not know: the error names the URL.
    let other = DcapSim::generate(now(), false).unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.dcap.simulated_roots = vec![hex::encode(other.root_fingerprint())];
    let reg3 = registry(&cfg2, None).unwrap();
    let q = other.tdx_quote(&TdParams::default()).unwrap();
    let ev3 = TeeEvidence {
        primary_evidence: json!({"quote": ward_proto::b64::std_encode(&q)}),
        additional_evidence: String::new(),
    };
    let e = ward_collateral::fetch::verify_waiting(wait, || {
        reg3.verify_evidence(&Tee::new("tdx"), &ev3, now())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains(&other.fmspc()) && e.contains("not found"), "{e}");
}
