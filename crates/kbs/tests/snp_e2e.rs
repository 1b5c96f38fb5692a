//! End to end with simulated SEV-SNP hardware: the service configured to
//! trust the simulator's root; a simulated guest attests over the KBS
//! protocol and receives a resource only when its measurement matches the
//! reference value and its policy forbids debug.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use ward_kbs::admin_auth::AdminAuth;
use ward_kbs::clock::ManualClock;
use ward_kbs::config::Config;
/// The registry `ward serve` builds from `cfg`.
fn configured_verifiers(cfg: &Config) -> Result<ward_verifier::VerifierRegistry, String> {
    ward_collateral::registry(&cfg.collateral(), None).map_err(|e| e.to_string())
}
use ward_kbs::{router, AppState, Settings};
use ward_proto::jwe::{self, FlattenedJwe};
use ward_proto::jwk::{Curve, TeeKeyPair};
use ward_proto::jwt::{Es256Signer, VerifyingKey};
use ward_proto::kbs::{runtime_data_hash, RuntimeData};
use ward_proto::HashAlgorithm;
use ward_sim::snp::{SnpReportParams, SnpSim, POLICY_DEBUG};
use ward_snp::report::TcbParts;
use ward_snp::Product;
use ward_store::{Kek, SqliteStore, Store};

const NOW: i64 = 1_795_400_000;

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Option<String>, Value) {
    let mut b = HttpRequest::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        cookie,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A simulated Genoa platform (bootloader 9, tee 0, snp 23, microcode 72).
fn genoa_sim() -> SnpSim {
    SnpSim::generate(
        Product::Genoa,
        TcbParts {
            fmc: None,
            bootloader: 9,
            tee: 0,
            snp: 23,
            microcode: 72,
        },
        NOW,
    )
    .unwrap()
}

/// A configuration that trusts `sim` (its chain written under `dir`).
fn trusting(sim: &SnpSim, dir: &std::path::Path) -> Config {
    let bundle = dir.join("sim-genoa.pem");
    std::fs::write(&bundle, sim.cert_chain_pem()).unwrap();
    let mut cfg = Config::default();
    cfg.snp.cert_chains = vec![bundle];
    cfg.snp.simulated_roots = vec![hex::encode(sim.ark_fingerprint())];
    cfg
}

/// One simulated guest's whole flow; returns the GET status and the token's claims.
async fn guest(
    app: &axum::Router,
    sim: &SnpSim,
    measurement: [u8; 48],
    policy: u64,
) -> (StatusCode, Value, Option<Vec<u8>>) {
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (s, cookie, ch) = send(
        app,
        "POST",
        "/kbs/v0/auth",
        &[],
        br#"{"version":"0.4.0","tee":"snp","extra-params":{}}"#.to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let runtime = RuntimeData {
        nonce: ch["nonce"].as_str().unwrap().into(),
        tee_pubkey: key.public_jwk(),
    };
    let mut report_data = [0u8; 64];
    report_data[..48]
        .copy_from_slice(&runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap());
    let params = SnpReportParams {
        measurement,
        policy,
        report_data,
        ..Default::default()
    };
    let body = json!({"init-data": null, "runtime-data": runtime,
        "tee-evidence": {"primary_evidence": sim.evidence_json(&params).unwrap(), "additional_evidence": ""}});
    let (s, cookie, tok) = send(
        app,
        "POST",
        "/kbs/v0/attest",
        &[("cookie", &cookie.unwrap())],
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    let claims = ward_proto::jwt::UnverifiedJwt::parse(tok["token"].as_str().unwrap())
        .unwrap()
        .claims;
    let (s, _, body) = send(
        app,
        "GET",
        "/kbs/v0/resource/default/key/model",
        &[("cookie", &cookie.unwrap())],
        vec![],
    )
    .await;
    let plain = (s == StatusCode::OK).then(|| {
        let jwe: FlattenedJwe = serde_json::from_value(body).unwrap();
        jwe::decrypt(&key, &jwe).unwrap()
    });
    (s, claims, plain)
}

#[tokio::test]
async fn simulated_snp_guest_gets_the_secret_only_with_the_reference_measurement_and_no_debug() {
    let dir = tempfile::tempdir().unwrap();
    let sim = genoa_sim();
    let cfg = trusting(&sim, dir.path());

    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), Kek::from_bytes([4; 32])).unwrap());
    store
        .put_resource("default/key/model", b"model-decryption-key", NOW)
        .unwrap();
    let good = [0x11u8; 48];
    store
        .put_reference_value(
            &ward_store::ReferenceValue {
                name: "snp_launch_measurement".into(),
                single: false,
                values: vec![json!(hex::encode(good))],
                expires_at: None,
                version: 0,
                updated_at: 0,
            },
            NOW,
        )
        .unwrap();
    let admin = Es256Signer::generate().unwrap().0;
    let state = AppState::new(
        store,
        configured_verifiers(&cfg).unwrap(),
        Settings::default(), // not --dev: the default resource policy
        AdminAuth::new(vec![VerifyingKey::es256(&admin.public_point()).unwrap()]),
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap();
    let app = router(state);

    let (s, claims, plain) = guest(&app, &sim, good, 0x30000).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(plain.unwrap(), b"model-decryption-key");
    let cpu0 = &claims["submods"]["cpu0"];
    assert_eq!(cpu0["ear.status"], "affirming");
    assert_eq!(
        cpu0["ear.veraison.annotated-evidence"]["snp"]["simulated"], true,
        "tokens say the root was simulated"
    );

    // Debug allowed: contraindicated, denied.
    let (s, claims, _) = guest(&app, &sim, good, 0x30000 | POLICY_DEBUG).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "contraindicated");
    // Unknown measurement: warning, denied.
    let (s, claims, _) = guest(&app, &sim, [0x22; 48], 0x30000).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "warning");
}

#[tokio::test]
async fn a_simulator_that_is_not_configured_is_refused() {
    let sim = SnpSim::generate(
        Product::Milan,
        TcbParts {
            fmc: None,
            bootloader: 1,
            tee: 0,
            snp: 1,
            microcode: 1,
        },
        NOW,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("sim.pem");
    std::fs::write(&bundle, sim.cert_chain_pem()).unwrap();
    let mut cfg = Config::default();
    cfg.snp.cert_chains = vec![bundle];
    let err = configured_verifiers(&cfg).err().unwrap();
    assert!(err.contains("not a pinned AMD root"), "{err}");
    cfg.snp.simulated_roots = vec!["zz".into()];
    assert!(configured_verifiers(&cfg).is_err());
}

/// Issue 18, item 8: Trustee's default CPU attestation policy, uploaded
/// unchanged under kbs-client's default id, appraises simulated SNP
/// evidence as Trustee does (its flat SNP claim names, its
/// `query_reference_value`).
#[tokio::test]
async fn trustees_default_cpu_policy_appraises_simulated_snp_evidence_as_trustee_does() {
    let Some(f) = ward_proto::testing::fixtures("trustee/policies") else {
        return;
    };
    let text =
        std::fs::read_to_string(f.join("trustee/policies/ear_default_policy_cpu.rego")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sim = genoa_sim();
    let cfg = trusting(&sim, dir.path());
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), Kek::from_bytes([4; 32])).unwrap());
    let admin = Es256Signer::generate().unwrap().0;
    let token = admin
        .sign(&json!({"role": "admin", "sub": "t", "exp": NOW + 600}))
        .unwrap();
    let state = AppState::new(
        store,
        configured_verifiers(&cfg).unwrap(),
        Settings::default(),
        AdminAuth::new(vec![VerifyingKey::es256(&admin.public_point()).unwrap()]),
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap();
    let app = router(state);
    let auth = format!("Bearer {token}");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    use base64::Engine;
    let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
    let (s, _, body) = send(
        &app,
        "POST",
        "/kbs/v0/attestation-policy",
        &h,
        serde_json::to_vec(
            &json!({"policy_id": "default_cpu", "policy": b64(&text), "type": "rego"}),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let vector = |claims: &Value| {
        let cpu0 = &claims["submods"]["cpu0"];
        assert_eq!(cpu0["ear.appraisal-policy-id"], "default_cpu");
        let tv = &cpu0["ear.trustworthiness-vector"];
        (
            tv["executables"].as_i64().unwrap(),
            tv["hardware"].as_i64().unwrap(),
            tv["configuration"].as_i64().unwrap(),
        )
    };
    let good = [0x11u8; 48];
    // No reference values: unrecognised executables and hardware; the
    // configuration without debug and migration agent is "no known
    // vulnerabilities" (3).
    let (_, claims, _) = guest(&app, &sim, good, 0x30000).await;
    assert_eq!(vector(&claims), (33, 97, 3));
    // Reference values as Trustee's RVPS sample message carries them.
    let rv = json!({"snp_launch_measurement": [hex::encode(good)], "snp_bootloader": [9],
        "snp_microcode": [72], "snp_snp_svn": [23], "snp_tee_svn": [0]});
    let msg = json!({"version": "0.1.0", "type": "sample",
        "payload": base64::engine::general_purpose::STANDARD.encode(rv.to_string())});
    let (s, _, body) = send(
        &app,
        "POST",
        "/kbs/v0/reference-value",
        &h,
        serde_json::to_vec(&msg).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, claims, _) = guest(&app, &sim, good, 0x30000).await;
    assert_eq!(vector(&claims), (3, 2, 3));
    // Another measurement; and debug allowed (configuration unapproved).
    let (_, claims, _) = guest(&app, &sim, [0x22; 48], 0x30000).await;
    assert_eq!(vector(&claims), (33, 2, 3));
    let (_, claims, _) = guest(&app, &sim, good, 0x30000 | POLICY_DEBUG).await;
    assert_eq!(vector(&claims), (3, 2, 36));
}

/// Issue 18, item 5: an attestation that needs a VCEK from KDS waits for the
/// fetch (run off the serving threads) within its own deadline: a slow KDS
/// still gives a token, a KDS that never answers gives 503 with Retry-After
/// once the deadline passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_waits_for_collateral_within_its_own_deadline() {
    let sim = genoa_sim();
    // Two KDS stand-ins: one answers the VCEK after 300 ms, one never.
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}", slow.local_addr().unwrap());
    let vcek = sim.vcek_der().to_vec();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move || {
            let vcek = vcek.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                vcek
            }
        });
        axum::serve(slow, app).await.unwrap();
    });
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    for (kds, want) in [
        (slow_url, StatusCode::OK),
        (silent_url, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = trusting(&sim, dir.path());
        cfg.snp.kds_fetch = true;
        cfg.snp.kds_url = Some(kds);
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db"), Kek::from_bytes([4; 32])).unwrap());
        let settings = Settings {
            collateral_wait: std::time::Duration::from_secs(2),
            ..Settings::default()
        };
        let state = AppState::new(
            store,
            configured_verifiers(&cfg).unwrap(),
            settings,
            AdminAuth::default(),
            Arc::new(ManualClock::new(NOW)),
        )
        .unwrap();
        let app = router(state);
        let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        let (_, cookie, ch) = send(
            &app,
            "POST",
            "/kbs/v0/auth",
            &[],
            br#"{"version":"0.4.0","tee":"snp","extra-params":{}}"#.to_vec(),
        )
        .await;
        let runtime = RuntimeData {
            nonce: ch["nonce"].as_str().unwrap().into(),
            tee_pubkey: key.public_jwk(),
        };
        let mut report_data = [0u8; 64];
        report_data[..48]
            .copy_from_slice(&runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap());
        let params = SnpReportParams {
            report_data,
            ..Default::default()
        };
        // The evidence carries no VCEK: it must come from KDS.
        let mut ev = sim.evidence_json(&params).unwrap();
        ev["cert_chain"] = Value::Null;
        let body = json!({"init-data": null, "runtime-data": runtime,
            "tee-evidence": {"primary_evidence": ev, "additional_evidence": ""}});
        let start = std::time::Instant::now();
        let resp = app
            .clone()
            .oneshot(
                HttpRequest::builder()
                    .method("POST")
                    .uri("/kbs/v0/attest")
                    .header("cookie", cookie.unwrap())
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(resp.status(), want, "after {took:?}");
        if want == StatusCode::SERVICE_UNAVAILABLE {
            assert!(resp.headers().get("retry-after").is_some());
            assert!(took >= std::time::Duration::from_secs(2), "{took:?}");
            assert!(took < std::time::Duration::from_secs(10), "{took:?}");
            let b = resp.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert!(
                v["type"]
                    .as_str()
                    .unwrap()
                    .ends_with("/CollateralUnavailable"),
                "{v}"
            );
        }
    }
}

/// Issue 18, item 6.8: evidence verified on its own (as `ward verify
/// --policy default` does, through `verify_unbound`) is appraised by the
/// built-in policy as the KBS flow would: debug allowed is not affirming.
#[test]
fn offline_appraisal_of_debug_enabled_snp_evidence_is_not_affirming() {
    let sim = genoa_sim();
    let dir = tempfile::tempdir().unwrap();
    let cfg = trusting(&sim, dir.path());
    let reg = configured_verifiers(&cfg).unwrap();
    let policy = ward_verifier::compile_attestation_policy(
        "default",
        ward_verifier::default_attestation_policy("snp").unwrap(),
    )
    .unwrap()
    .with_data(&ward_verifier::reference_data(&Default::default()))
    .unwrap();
    let status = |policy_bits: u64| {
        let params = SnpReportParams {
            policy: policy_bits,
            ..Default::default()
        };
        let ev = ward_proto::kbs::TeeEvidence {
            primary_evidence: sim.evidence_json(&params).unwrap(),
            additional_evidence: String::new(),
        };
        let v = reg
            .verify_unbound(&ward_proto::Tee::new("snp"), &ev, NOW)
            .unwrap();
        assert!(v.annotated_evidence().get("runtime_data_claims").is_none());
        ward_verifier::appraise(&v, &policy).unwrap().status
    };
    assert_eq!(
        status(0x30000 | POLICY_DEBUG),
        ward_proto::ear::Status::Contraindicated
    );
    assert_ne!(status(0x30000), ward_proto::ear::Status::Contraindicated);
}
