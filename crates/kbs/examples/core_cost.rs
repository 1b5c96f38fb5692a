//! Per-operation cost of the service core without HTTP (auth, attest, first
//! and cached resource fetch), for profiling: `cargo run --release -p
//! ward-kbs --example core_cost`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use ward_collateral::default_verifiers;
use ward_kbs::admin_auth::AdminAuth;
use ward_kbs::clock::SystemClock;
use ward_kbs::tokens::Credential;
use ward_kbs::{AppState, Settings};
use ward_proto::jwk::{Curve, TeeKeyPair};
use ward_proto::kbs::{runtime_data_hash, Request, RuntimeData};
use ward_proto::{b64, HashAlgorithm, ResourcePath, Tee};
use ward_store::{Kek, SqliteStore, Store};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), Kek::from_bytes([1; 32])).unwrap());
    store.put_resource("a/b/c", b"secret", 0).unwrap();
    let settings = Settings {
        dev: true,
        ..Settings::default()
    };
    let state = AppState::new(
        store,
        default_verifiers(),
        settings,
        AdminAuth::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let path = ResourcePath::parse("a/b/c").unwrap();
    let n = 3000;
    let keys: Vec<TeeKeyPair> = (0..n)
        .map(|_| TeeKeyPair::generate_ec(Curve::P256).unwrap())
        .collect();
    let (mut t_auth, mut t_attest, mut t_get, mut t_cached) = (0u128, 0u128, 0u128, 0u128);
    for key in &keys {
        let t = Instant::now();
        let started = state.auth(&Request::new(Tee::new("sample"))).unwrap();
        let (ch, cookie) = (started.challenge, started.cookie);
        t_auth += t.elapsed().as_nanos();
        let runtime = RuntimeData {
            nonce: ch.nonce,
            tee_pubkey: key.public_jwk(),
        };
        let rd = runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap();
        let body = serde_json::to_vec(&json!({"runtime-data": runtime, "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": b64::std_encode(rd)}, "additional_evidence": ""}})).unwrap();
        let t = Instant::now();
        let cookie = state.attest(Some(&cookie), &body).unwrap().cookie;
        t_attest += t.elapsed().as_nanos();
        let t = Instant::now();
        state
            .get_resource(Some(Credential::Cookie(&cookie)), &path)
            .unwrap();
        t_get += t.elapsed().as_nanos();
        let t = Instant::now();
        state
            .get_resource(Some(Credential::Cookie(&cookie)), &path)
            .unwrap();
        t_cached += t.elapsed().as_nanos();
    }
    let us = |x: u128| x as f64 / n as f64 / 1000.0;
    println!(
        "auth {:.1} µs, attest {:.1} µs, first get {:.1} µs, cached get {:.1} µs",
        us(t_auth),
        us(t_attest),
        us(t_get),
        us(t_cached)
    );
}
