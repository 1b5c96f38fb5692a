//! The service over TLS (rustls) on 127.0.0.1:0: a client trusting the
//! certificate completes `/auth`, cookies are marked Secure, and a client
//! that does not trust it, or speaks plain HTTP, gets nowhere.

use std::sync::Arc;

use ward_collateral::default_verifiers;
use ward_kbs::admin_auth::AdminAuth;
use ward_kbs::clock::SystemClock;
use ward_kbs::config::TlsConfig;
use ward_kbs::serve::serve;
use ward_kbs::{router, AppState, Settings};
use ward_store::{Kek, SqliteStore};

#[tokio::test]
async fn serves_tls_with_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let store =
        Arc::new(SqliteStore::open(&dir.path().join("db"), Kek::from_bytes([3; 32])).unwrap());
    let settings = Settings {
        secure_cookies: true,
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let tls = TlsConfig {
        cert: cert_path,
        key: key_path,
    };
    let server = tokio::spawn(async move {
        serve(listener, router(state), Some(&tls), async {
            let _ = stop_rx.await;
        })
        .await
    });

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let body = r#"{"version":"0.4.0","tee":"sample","extra-params":""}"#;
    let r = trusting
        .post(format!("https://localhost:{port}/kbs/v0/auth"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // A client that does not trust the certificate fails the handshake.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .post(format!("https://localhost:{port}/kbs/v0/auth"))
        .body(body)
        .send()
        .await
        .is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // ward's guest client: attests over TLS when given the KBS's
    // self-signed certificate as its CA, and reports a network error (not
    // an attestation failure) without it.
    let url = format!("https://localhost:{port}");
    let opts = |ca: Option<Vec<u8>>| ward_guest::ClientOptions {
        ca_cert_pem: ca,
        attempts: 1,
        ..Default::default()
    };
    let attester = Arc::new(ward_guest::SampleAttester::default());
    let c = ward_guest::KbsClient::new(
        &url,
        attester.clone(),
        opts(Some(cert.cert.pem().into_bytes())),
    )
    .unwrap();
    let token = c.attest().await.unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let c = ward_guest::KbsClient::new(&url, attester, opts(None)).unwrap();
    let e = c.attest().await.unwrap_err();
    assert!(matches!(e, ward_guest::GuestError::Network(_)), "{e}");

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
