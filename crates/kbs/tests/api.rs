//! The trust service through its router (no socket): protocol conformance
//! with the captured reference exchange, every refusal the issue lists, the
//! admin API's authorisation, and replicas sharing one store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use ward_collateral::default_verifiers;
use ward_kbs::admin_auth::AdminAuth;
use ward_kbs::clock::ManualClock;
use ward_kbs::{router, AppState, Settings};
use ward_proto::jwe::{self, FlattenedJwe};
use ward_proto::jwk::{Curve, TeeKeyPair};
use ward_proto::jwt::{Es256Signer, VerifyingKey};
use ward_proto::kbs::{runtime_data_hash, RuntimeData};
use ward_proto::{b64, HashAlgorithm};
use ward_store::{Kek, SqliteStore, Store};

const T0: i64 = 1_795_400_000;

struct Env {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    admin_signer: Es256Signer,
    clock: ManualClock,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ward.db");
        Self {
            _dir: dir,
            db,
            admin_signer: Es256Signer::generate().unwrap().0,
            clock: ManualClock::new(T0),
        }
    }

    /// One replica: its own process state over the shared database file.
    fn replica(&self, dev: bool) -> (Router, Arc<dyn Store>) {
        let (state, store) = self.replica_state(dev);
        (router(state), store)
    }

    fn replica_state(&self, dev: bool) -> (AppState, Arc<dyn Store>) {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&self.db, Kek::from_bytes([9; 32])).unwrap());
        let settings = Settings {
            dev,
            max_body_bytes: 64 * 1024,
            ..Settings::default()
        };
        let admin = AdminAuth::new(vec![
            VerifyingKey::es256(&self.admin_signer.public_point()).unwrap()
        ]);
        let state = AppState::new(
            store.clone(),
            default_verifiers(),
            settings,
            admin,
            Arc::new(self.clock.clone()),
        )
        .unwrap();
        (state, store)
    }

    fn admin_token(&self, role: &str) -> String {
        self.admin_signer
            .sign(&json!({"role": role, "sub": "t", "exp": T0 + 3600}))
            .unwrap()
    }
}

struct Resp {
    status: StatusCode,
    cookie: Option<String>,
    set_cookie: Option<String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    fn kind(&self) -> String {
        let v = self.json();
        let t = v["type"].as_str().unwrap();
        assert!(
            t.starts_with("https://github.com/confidential-containers/kbs/errors/"),
            "{t}"
        );
        t.rsplit('/').next().unwrap().to_string()
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Resp {
    let mut b = HttpRequest::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(body.into())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = set_cookie
        .as_ref()
        .map(|c| c.split(';').next().unwrap().to_string());
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        cookie,
        set_cookie,
        body,
    }
}

const AUTH_BODY: &str = r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#;

async fn auth(app: &Router) -> (String, String) {
    let r = call(
        app,
        Method::POST,
        "/kbs/v0/auth",
        &[("content-type", "application/json")],
        AUTH_BODY,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    (
        r.cookie.clone().unwrap(),
        r.json()["nonce"].as_str().unwrap().to_string(),
    )
}

/// An Attestation body as the reference client builds it.
fn attestation(nonce: &str, key: &TeeKeyPair, report_data_override: Option<Vec<u8>>) -> Vec<u8> {
    let runtime = RuntimeData {
        nonce: nonce.into(),
        tee_pubkey: key.public_jwk(),
    };
    let rd = report_data_override
        .unwrap_or_else(|| runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap());
    serde_json::to_vec(&json!({
        "init-data": null,
        "runtime-data": runtime,
        "tee-evidence": {"primary_evidence": {"report_data": b64::std_encode(rd), "svn": "1"}, "additional_evidence": ""}
    }))
    .unwrap()
}

async fn attest(app: &Router, cookie: &str, body: Vec<u8>) -> Resp {
    call(
        app,
        Method::POST,
        "/kbs/v0/attest",
        &[("cookie", cookie), ("content-type", "application/json")],
        body,
    )
    .await
}

async fn put_resource(app: &Router, env: &Env, path: &str, data: &[u8]) -> Resp {
    let auth = format!("Bearer {}", env.admin_token("admin"));
    call(
        app,
        Method::POST,
        &format!("/kbs/v0/resource/{path}"),
        &[("authorization", &auth)],
        data.to_vec(),
    )
    .await
}

#[tokio::test]
async fn accepts_reference_client_sequence_and_answers_like_the_capture() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    put_resource(&app, &env, "default/test/key", b"the-secret").await;

    // The reference client tries GET first: 401 with the exact captured body.
    let r = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/default/test/key",
        &[("user-agent", "attestation-agent-kbs-client/0.1.0")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        r#"{"type":"https://github.com/confidential-containers/kbs/errors/TokenNotFound","detail":"Attestation Token not found"}"#
    );

    // /auth with the captured (pretty-printed) body.
    let captured_auth = "{\n  \"version\": \"0.4.0\",\n  \"tee\": \"sample\",\n  \"extra-params\": {\n    \"supported-hash-algorithms\": [\n      \"sha256\",\n      \"sha384\",\n      \"sha512\",\n      \"sm3\"\n    ]\n  }\n}";
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/auth",
        &[("content-type", "application/json")],
        captured_auth,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let set_cookie = r.set_cookie.clone().unwrap();
    assert!(set_cookie.starts_with("kbs-session-id="), "{set_cookie}");
    assert!(set_cookie.contains("; Expires="), "{set_cookie}");
    let ch = r.json();
    assert_eq!(ch.as_object().unwrap().len(), 2);
    assert_eq!(ch["extra-params"], json!(""));
    let nonce = ch["nonce"].as_str().unwrap();
    assert_eq!(b64::std_decode("nonce", nonce).unwrap().len(), 32);

    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let r = attest(
        &app,
        r.cookie.as_deref().unwrap(),
        attestation(nonce, &key, None),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert!(r.set_cookie.unwrap().starts_with("kbs-session-id="));
    let t = ward_proto::jwt::UnverifiedJwt::parse(&token).unwrap();
    assert_eq!(t.header["alg"], "ES256");
    assert_eq!(t.header["typ"], "JWT");
    assert_eq!(t.header["jwk"]["kty"], "EC");
    let ae = &t.claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
    assert_eq!(
        ae["runtime_data_claims"]["tee-pubkey"],
        serde_json::to_value(key.public_jwk()).unwrap()
    );
    assert_eq!(ae["runtime_data_claims"]["nonce"], nonce);
    assert_eq!(ae["sample"]["svn"], "1");
    assert_eq!(t.claims["submods"]["cpu0"]["ear.status"], "contraindicated");

    // The token verifies against the published JWKS.
    let jwks = call(&app, Method::GET, "/.well-known/jwks.json", &[], "")
        .await
        .json();
    let jwk: ward_proto::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    ward_proto::jwt::verify(
        &token,
        &[VerifyingKey::from_jwk(&jwk).unwrap()],
        T0,
        Some("ward"),
    )
    .unwrap();

    // GET with the cookie and with the token as bearer: a JWE we can open.
    for hdr in [
        ("cookie", r.cookie.clone().unwrap()),
        ("authorization", format!("Bearer {token}")),
    ] {
        let g = call(
            &app,
            Method::GET,
            "/kbs/v0/resource/default/test/key",
            &[(hdr.0, &hdr.1)],
            "",
        )
        .await;
        assert_eq!(
            g.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&g.body)
        );
        let jwe: FlattenedJwe = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(jwe::decrypt(&key, &jwe).unwrap(), b"the-secret");
    }
}

#[tokio::test]
async fn rejects_wrong_protocol_version_unsupported_tee_and_malformed_json() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/auth",
        &[],
        r#"{"version":"0.3.0","tee":"sample","extra-params":{}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.kind(), "ProtocolVersion");
    assert!(r.cookie.is_none());
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/auth",
        &[],
        r#"{"version":"0.4.0","tee":"nope","extra-params":{}}"#,
    )
    .await;
    assert_eq!(r.kind(), "UnsupportedTee");
    for bad in ["", "{", "[]", r#"{"version":1}"#, "\u{0}"] {
        let r = call(&app, Method::POST, "/kbs/v0/auth", &[], bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(r.kind(), "SerdeError");
    }
    let (cookie, _) = auth(&app).await;
    for bad in [
        "",
        "{",
        r#"{"runtime-data":{}}"#,
        r#"{"runtime-data":{"nonce":"x","tee-pubkey":{"kty":"EC"}},"tee-evidence":{"primary_evidence":{}}}"#,
    ] {
        let r = attest(&app, &cookie, bad.as_bytes().to_vec()).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::UNAUTHORIZED,
            "{bad:?} {}",
            r.status
        );
    }
}

#[tokio::test]
async fn rejects_missing_forged_and_expired_cookies() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (cookie, nonce) = auth(&app).await;

    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/attest",
        &[],
        attestation(&nonce, &key, None),
    )
    .await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::UNAUTHORIZED, "CookieNotFound")
    );

    // Flip one character of the sealed part, and a made-up session id.
    let mut forged = cookie.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for c in [
        forged.as_str(),
        "kbs-session-id=92930cc93085472ba4496b2d4f4cfdf2",
        "kbs-session-id=a.b",
    ] {
        let r = attest(&app, c, attestation(&nonce, &key, None)).await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (StatusCode::UNAUTHORIZED, "InvalidCookie"),
            "{c}"
        );
    }

    env.clock.advance(301);
    let r = attest(&app, &cookie, attestation(&nonce, &key, None)).await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::UNAUTHORIZED, "ExpiredCookie")
    );
}

#[tokio::test]
async fn rejects_report_data_that_does_not_bind_nonce_or_key() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let other = TeeKeyPair::generate_ec(Curve::P256).unwrap();

    let (cookie, nonce) = auth(&app).await;
    // report_data computed for another key.
    let runtime = RuntimeData {
        nonce: nonce.clone(),
        tee_pubkey: other.public_jwk(),
    };
    let rd = runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap();
    let r = attest(&app, &cookie, attestation(&nonce, &key, Some(rd))).await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::UNAUTHORIZED, "AttestationError")
    );
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("report_data does not bind"));

    // report_data computed for another nonce.
    let runtime = RuntimeData {
        nonce: b64::std_encode([7u8; 32]),
        tee_pubkey: key.public_jwk(),
    };
    let rd = runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap();
    let r = attest(&app, &cookie, attestation(&nonce, &key, Some(rd))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A correct binding still works on the same session afterwards.
    let r = attest(&app, &cookie, attestation(&nonce, &key, None)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn rejects_nonce_replayed_from_another_session() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (_cookie_a, nonce_a) = auth(&app).await;
    let (cookie_b, _nonce_b) = auth(&app).await;
    // Evidence correctly binding session A's nonce, presented in session B.
    let r = attest(&app, &cookie_b, attestation(&nonce_a, &key, None)).await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::UNAUTHORIZED, "AttestationError")
    );
    assert!(r.json()["detail"].as_str().unwrap().contains("nonce"));
    // An attested session cannot attest again.
    let (cookie_c, nonce_c) = auth(&app).await;
    let ok = attest(&app, &cookie_c, attestation(&nonce_c, &key, None)).await;
    let r = attest(
        &app,
        ok.cookie.as_deref().unwrap(),
        attestation(&nonce_c, &key, None),
    )
    .await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::UNAUTHORIZED, "InvalidCookie")
    );
}

/// Issue 18, item 2: the same pending cookie and the same body posted again
/// used to mint a fresh token each time within the session's lifetime.
#[tokio::test]
async fn rejects_a_replayed_attestation_on_the_same_and_on_another_replica() {
    let env = Env::new();
    let (a, store) = env.replica(true);
    let (b, _) = env.replica(true);
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (cookie, nonce) = auth(&a).await;
    let body = attestation(&nonce, &key, None);
    let first = attest(&a, &cookie, body.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    for (replica, name) in [(&a, "same replica"), (&b, "other replica")] {
        let r = attest(replica, &cookie, body.clone()).await;
        assert_eq!(
            (r.status, r.kind().as_str(), r.cookie.is_some()),
            (StatusCode::UNAUTHORIZED, "InvalidCookie", false),
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("already been answered"));
    }
    // Evidence that fails verification does not use the challenge up.
    let (cookie2, nonce2) = auth(&a).await;
    let bad = attest(&b, &cookie2, attestation(&nonce2, &key, Some(vec![0; 48]))).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let good = attest(&b, &cookie2, attestation(&nonce2, &key, None)).await;
    assert_eq!(good.status, StatusCode::OK);
    // The records outlive the session only until it expires: then they are
    // swept, and the expired cookie is refused on its own.
    assert_eq!(store.sweep_nonces(T0).unwrap(), 0);
    env.clock.advance(Settings::default().session_ttl_secs);
    let (state, _) = env.replica_state(true);
    assert_eq!(state.sweep_used_nonces().unwrap(), 2);
    let r = attest(&a, &cookie, body).await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::UNAUTHORIZED, "ExpiredCookie")
    );
}

async fn attested(app: &Router) -> (String, String, TeeKeyPair) {
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (cookie, nonce) = auth(app).await;
    let r = attest(app, &cookie, attestation(&nonce, &key, None)).await;
    assert_eq!(r.status, StatusCode::OK);
    (
        r.cookie.clone().unwrap(),
        r.json()["token"].as_str().unwrap().to_string(),
        key,
    )
}

#[tokio::test]
async fn expired_tokens_are_swept_from_the_cache_and_still_refused() {
    let env = Env::new();
    let (state, _) = env.replica_state(true);
    let app = router(state.clone());
    put_resource(&app, &env, "a/b/c", b"v").await;
    let (old_cookie, old_token, _) = attested(&app).await;
    env.clock.advance(200);
    let (young_cookie, _, _) = attested(&app).await;
    assert_eq!(state.cached_tokens(), 2);
    assert_eq!(state.sweep_expired(), 0);

    // The first token's lifetime (300 s) is over, the second's is not.
    env.clock.advance(101);
    // Still cached by its session, the expired one is refused as opening
    // its cookie would refuse it; as a bearer token it fails verification.
    for (h, kind) in [
        (("cookie", old_cookie.as_str()), "ExpiredCookie"),
        (
            ("authorization", &format!("Bearer {old_token}")),
            "TokenVerifierError",
        ),
    ] {
        let r = call(&app, Method::GET, "/kbs/v0/resource/a/b/c", &[h], "").await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (StatusCode::UNAUTHORIZED, kind)
        );
    }
    assert_eq!(state.cached_tokens(), 2);
    assert_eq!(state.sweep_expired(), 1);
    assert_eq!(state.cached_tokens(), 1);
    let r = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/a/b/c",
        &[("cookie", &young_cookie)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Out of the cache, the expired session is judged afresh: still refused.
    let bearer = format!("Bearer {old_token}");
    for h in [
        ("cookie", old_cookie.as_str()),
        ("authorization", bearer.as_str()),
    ] {
        let r = call(&app, Method::GET, "/kbs/v0/resource/a/b/c", &[h], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", h.0);
    }
    assert_eq!(state.cached_tokens(), 1);
}

#[tokio::test]
async fn rejects_tampered_foreign_and_expired_tokens() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    put_resource(&app, &env, "a/b/c", b"x").await;
    let (_cookie, token, _) = attested(&app).await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(T0 + 999_999);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    // Same claims, signed by a key the service does not trust.
    let foreign = Es256Signer::generate().unwrap().0.sign(&claims).unwrap();
    for t in [tampered.as_str(), foreign.as_str(), "not.a.token", "x"] {
        let r = call(
            &app,
            Method::GET,
            "/kbs/v0/resource/a/b/c",
            &[("authorization", &format!("Bearer {t}"))],
            "",
        )
        .await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (StatusCode::UNAUTHORIZED, "TokenVerifierError"),
            "{t}"
        );
    }
    env.clock.advance(301);
    let r = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/a/b/c",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rejects_oversized_body_and_writes_nothing() {
    let env = Env::new();
    let (app, store) = env.replica(true);
    let big = vec![b'a'; 64 * 1024 + 1];
    let r = call(&app, Method::POST, "/kbs/v0/auth", &[], big.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.kind(), "PayloadTooLarge");
    let r = put_resource(&app, &env, "a/b/big", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(store.list_resources().unwrap().is_empty());
}

#[tokio::test]
async fn answers_404_for_unknown_resource_and_403_on_policy_denial() {
    let env = Env::new();
    // --dev: allowed, but the resource does not exist.
    let (app, _) = env.replica(true);
    let (cookie, _, _) = attested(&app).await;
    let r = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/no/such/thing",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    // Invalid path segments.
    let r = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/a/..b/.c",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::BAD_REQUEST, "InvalidRequestPath")
    );

    // Default policy (no --dev): the sample TEE is denied, existing or not.
    let (app, _) = env.replica(false);
    put_resource(&app, &env, "default/test/key", b"s").await;
    let (cookie, token, _) = attested(&app).await;
    for path in ["default/test/key", "no/such/thing"] {
        let r = call(
            &app,
            Method::GET,
            &format!("/kbs/v0/resource/{path}"),
            &[("cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (StatusCode::FORBIDDEN, "PolicyDeny")
        );
    }
    let r = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/default/test/key",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Issue 18, item 7: the denial explains itself (status, trust vector,
    // the claims short of affirming), and used to say only "Access denied
    // by policy".
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    for part in [
        "ear.status is contraindicated",
        "hardware=97",
        "short of affirming: ",
        "hardware 97: hardware or firmware that the verifier does not recognize",
    ] {
        assert!(detail.contains(part), "{part:?} not in {detail:?}");
    }
    // The token names ward as its verifier's developer, not a made-up URL.
    let claims = ward_proto::jwt::UnverifiedJwt::parse(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["ear.verifier-id"]["developer"], "ward");
}

/// Issue 18, item 7: admin tokens living longer than the configured maximum
/// (default one day) are refused, whatever key signed them.
#[tokio::test]
async fn admin_tokens_living_longer_than_the_maximum_are_refused() {
    let env = Env::new();
    let (app, store) = env.replica(false);
    let sign = |claims: Value| env.admin_signer.sign(&claims).unwrap();
    let list = |t: String| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::GET,
                "/kbs/v0/admin/resources",
                &[("authorization", &format!("Bearer {t}"))],
                "",
            )
            .await
        }
    };
    let day = 24 * 3600;
    let ok = sign(json!({"role": "admin", "iat": T0, "exp": T0 + day}));
    assert_eq!(list(ok).await.status, StatusCode::OK);
    let long = sign(json!({"role": "admin", "iat": T0, "exp": T0 + day + 1}));
    let r = list(long).await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::UNAUTHORIZED, "AdminAuth")
    );
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("max_token_lifetime_secs"));
    // Without iat, the time left counts.
    let no_iat = sign(json!({"role": "admin", "exp": T0 + 30 * day}));
    assert_eq!(list(no_iat).await.status, StatusCode::UNAUTHORIZED);
    assert!(store.list_resources().unwrap().is_empty());
}

#[tokio::test]
async fn admin_requires_a_valid_token_with_the_right_role_and_writes_nothing_otherwise() {
    let env = Env::new();
    let (app, store) = env.replica(false);
    let other = Es256Signer::generate()
        .unwrap()
        .0
        .sign(&json!({"role": "admin", "exp": T0 + 60}))
        .unwrap();
    let expired = env
        .admin_signer
        .sign(&json!({"role": "admin", "exp": T0 - 1}))
        .unwrap();
    let no_role = env.admin_signer.sign(&json!({"exp": T0 + 60})).unwrap();
    let auditor = env.admin_token("auditor");
    let cases: Vec<(Option<String>, StatusCode)> = vec![
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer garbage".into()), StatusCode::UNAUTHORIZED),
        (Some(format!("Bearer {other}")), StatusCode::UNAUTHORIZED),
        (Some(format!("Bearer {expired}")), StatusCode::UNAUTHORIZED),
        (Some(format!("Bearer {no_role}")), StatusCode::FORBIDDEN),
        (Some(format!("Bearer {auditor}")), StatusCode::FORBIDDEN),
    ];
    let policy =
        json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nallow = true")}).to_string();
    for (hdr, status) in cases {
        let h: Vec<(&str, &str)> = hdr
            .as_deref()
            .map(|v| vec![("authorization", v)])
            .unwrap_or_default();
        let r = call(&app, Method::POST, "/kbs/v0/resource/a/b/c", &h, "data").await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (status, "AdminAuth"),
            "{hdr:?}"
        );
        let r = call(
            &app,
            Method::POST,
            "/kbs/v0/resource-policy",
            &h,
            policy.clone(),
        )
        .await;
        assert_eq!(r.status, status);
        let r = call(&app, Method::DELETE, "/kbs/v0/resource/a/b/c", &h, "").await;
        assert_eq!(r.status, status);
    }
    assert!(store.list_resources().unwrap().is_empty());
    assert!(store
        .get_policy(ward_store::PolicyKind::Resource, "default")
        .unwrap()
        .is_none());
    // The auditor may read.
    let r = call(
        &app,
        Method::GET,
        "/kbs/v0/admin/resources",
        &[("authorization", &format!("Bearer {auditor}"))],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_manages_resources_policies_and_reference_values() {
    let env = Env::new();
    let (app, _) = env.replica(false);
    let a = format!("Bearer {}", env.admin_token("admin"));
    let h = [("authorization", a.as_str())];
    assert_eq!(
        put_resource(&app, &env, "r/t/one", b"1").await.status,
        StatusCode::OK
    );
    let list = call(&app, Method::GET, "/kbs/v0/admin/resources", &h, "")
        .await
        .json();
    assert_eq!(list[0]["path"], "r/t/one");
    assert_eq!(list[0]["size"], 1);
    assert!(list[0].get("data").is_none());
    let meta = call(&app, Method::GET, "/kbs/v0/admin/resources/r/t/one", &h, "").await;
    assert_eq!(meta.json()["size"], 1);

    // A policy that does not compile is refused; the one in force stays.
    let bad = json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nallow {")}).to_string();
    let r = call(&app, Method::POST, "/kbs/v0/resource-policy", &h, bad).await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::BAD_REQUEST, "PolicyEngine")
    );
    let shown = call(&app, Method::GET, "/kbs/v0/resource-policy", &h, "")
        .await
        .json();
    assert_eq!(shown["builtin"], true);

    // Reference values make the sample TEE affirming under its default
    // attestation policy, and a policy requiring affirming releases to it.
    let rv = json!({"name": "sample_svn", "values": ["1"]}).to_string();
    assert_eq!(
        call(&app, Method::POST, "/kbs/v0/reference-value", &h, rv)
            .await
            .status,
        StatusCode::OK
    );
    let payload =
        base64::engine::general_purpose::STANDARD.encode(r#"{"sample_launch_digest": ["abcde"]}"#);
    let rvps = json!({"version": "0.1.0", "type": "sample", "payload": payload}).to_string();
    assert_eq!(
        call(&app, Method::POST, "/kbs/v0/reference-value", &h, rvps)
            .await
            .status,
        StatusCode::OK
    );
    let got = call(
        &app,
        Method::GET,
        "/kbs/v0/reference-value/sample_launch_digest",
        &h,
        "",
    )
    .await
    .json();
    assert_eq!(got["values"], json!(["abcde"]));
    let affirming_only = "package policy\nimport rego.v1\ndefault allow := false\nallow if input.submods.cpu0[\"ear.status\"] == \"affirming\"\nallow if data[\"resource-path\"][0] == \"public\"\n";
    let body = json!({"policy": URL_SAFE_NO_PAD.encode(affirming_only)}).to_string();
    assert_eq!(
        call(&app, Method::POST, "/kbs/v0/resource-policy", &h, body)
            .await
            .status,
        StatusCode::OK
    );

    let (cookie, token, key) = attested(&app).await;
    let claims = ward_proto::jwt::UnverifiedJwt::parse(&token)
        .unwrap()
        .claims;
    assert_eq!(
        claims["submods"]["cpu0"]["ear.status"], "affirming",
        "{claims}"
    );
    let g = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/r/t/one",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(
        jwe::decrypt(&key, &serde_json::from_slice(&g.body).unwrap()).unwrap(),
        b"1"
    );

    // Removing a reference value degrades the next attestation; the policy
    // then denies, except for the path it allows by prefix.
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            "/kbs/v0/reference-value/sample_svn",
            &h,
            ""
        )
        .await
        .status,
        StatusCode::OK
    );
    put_resource(&app, &env, "public/t/x", b"p").await;
    let (cookie, token, _) = attested(&app).await;
    let claims = ward_proto::jwt::UnverifiedJwt::parse(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "contraindicated");
    let g = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/r/t/one",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    let g = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/public/t/x",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);

    // A stored attestation policy for the TEE replaces the built-in one.
    let ap =
        "package policy\nimport rego.v1\nhardware := 2\nexecutables := 2\nconfiguration := 2\n";
    let body = json!({"policy_id": "sample", "policy": URL_SAFE_NO_PAD.encode(ap), "type": "rego"})
        .to_string();
    assert_eq!(
        call(&app, Method::POST, "/kbs/v0/attestation-policy", &h, body)
            .await
            .status,
        StatusCode::OK
    );
    let (_, token, _) = attested(&app).await;
    let claims = ward_proto::jwt::UnverifiedJwt::parse(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "affirming");
    assert_eq!(
        claims["submods"]["cpu0"]["ear.appraisal-policy-id"],
        "sample"
    );

    // Deleting a resource makes it 404 for an allowed caller.
    assert_eq!(
        call(&app, Method::DELETE, "/kbs/v0/resource/public/t/x", &h, "")
            .await
            .status,
        StatusCode::OK
    );
    let g = call(
        &app,
        Method::GET,
        "/kbs/v0/resource/public/t/x",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
}

/// `GET /kbs/v0/resource/a/b/c` with a session cookie: the decrypted
/// resource, or `None` when the answer is not 200.
async fn fetch_abc(app: &Router, cookie: &str, key: &TeeKeyPair) -> Option<Vec<u8>> {
    let g = call(
        app,
        Method::GET,
        "/kbs/v0/resource/a/b/c",
        &[("cookie", cookie)],
        "",
    )
    .await;
    (g.status == StatusCode::OK)
        .then(|| jwe::decrypt(key, &serde_json::from_slice(&g.body).unwrap()).unwrap())
}

#[tokio::test]
async fn updated_resource_is_served_fresh_not_from_cache() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    put_resource(&app, &env, "a/b/c", b"v1").await;
    let (cookie, _, key) = attested(&app).await;
    let get = || fetch_abc(&app, &cookie, &key);
    assert_eq!(get().await.as_deref(), Some(&b"v1"[..]));
    assert_eq!(get().await.as_deref(), Some(&b"v1"[..]));
    put_resource(&app, &env, "a/b/c", b"v2").await;
    assert_eq!(get().await.as_deref(), Some(&b"v2"[..]));

    // Another session's first fetch (served from the decrypted-resource
    // cache once read) sees the update, and then the deletion.
    let fetch_new_session = || async {
        let (cookie, _, key) = attested(&app).await;
        fetch_abc(&app, &cookie, &key).await
    };
    assert_eq!(fetch_new_session().await.as_deref(), Some(&b"v2"[..]));
    put_resource(&app, &env, "a/b/c", b"v3").await;
    assert_eq!(fetch_new_session().await.as_deref(), Some(&b"v3"[..]));
    let admin = format!("Bearer {}", env.admin_token("admin"));
    let d = call(
        &app,
        Method::DELETE,
        "/kbs/v0/resource/a/b/c",
        &[("authorization", &admin)],
        "",
    )
    .await;
    assert!(d.status.is_success(), "{:?}", d.status);
    assert_eq!(fetch_new_session().await, None);
}

#[tokio::test]
async fn replicas_on_one_store_serve_any_step_and_survive_restart() {
    let env = Env::new();
    let (a, _) = env.replica(true);
    put_resource(&a, &env, "a/b/c", b"shared").await;
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (cookie, nonce) = auth(&a).await;
    // "Restart": the first replica goes away entirely between the steps.
    drop(a);
    let (b, _) = env.replica(true);
    let r = attest(&b, &cookie, attestation(&nonce, &key, None)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let token = r.json()["token"].as_str().unwrap().to_string();
    // A third replica accepts B's cookie and B's token.
    let (c, _) = env.replica(true);
    for hdr in [
        ("cookie", r.cookie.clone().unwrap()),
        ("authorization", format!("Bearer {token}")),
    ] {
        let g = call(
            &c,
            Method::GET,
            "/kbs/v0/resource/a/b/c",
            &[(hdr.0, &hdr.1)],
            "",
        )
        .await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(
            jwe::decrypt(&key, &serde_json::from_slice(&g.body).unwrap()).unwrap(),
            b"shared"
        );
    }
}

#[tokio::test]
async fn rotated_session_key_is_picked_up_by_other_replicas() {
    let env = Env::new();
    let (a, _) = env.replica(true);
    let (b, _) = env.replica(true);
    rotate(&a, &env, "session").await;
    // A's new cookies use the new key; B reloads its ring when it sees it.
    env.clock.advance(2);
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (cookie, nonce) = auth(&a).await;
    let r = attest(&b, &cookie, attestation(&nonce, &key, None)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

/// GET a/b/c with one credential header: the status and the error type
/// (empty when served).
async fn get_abc_with(app: &Router, h: (&str, &str)) -> (StatusCode, String) {
    let r = call(app, Method::GET, "/kbs/v0/resource/a/b/c", &[h], "").await;
    let kind = if r.status == StatusCode::OK {
        String::new()
    } else {
        r.kind()
    };
    (r.status, kind)
}

async fn rotate(app: &Router, env: &Env, ring: &str) {
    let admin = format!("Bearer {}", env.admin_token("admin"));
    let body = json!({ "ring": ring }).to_string();
    let r = call(
        app,
        Method::POST,
        "/kbs/v0/admin/rotate-key",
        &[("authorization", &admin)],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn sessions_and_tokens_under_retired_keys_are_refused_though_cached() {
    let env = Env::new();
    let (sa, _) = env.replica_state(true);
    let (sb, _) = env.replica_state(true);
    let (a, b) = (router(sa.clone()), router(sb.clone()));
    put_resource(&a, &env, "a/b/c", b"v").await;
    let ok = (StatusCode::OK, String::new());

    // Token signing key retired: the session's cookie and its token as a
    // bearer credential are refused, though both replicas cached them.
    let (cookie, token, _) = attested(&a).await;
    let bearer = format!("Bearer {token}");
    let creds = [
        ("cookie", cookie.as_str()),
        ("authorization", bearer.as_str()),
    ];
    for app in [&a, &b] {
        for h in creds {
            assert_eq!(get_abc_with(app, h).await.0, StatusCode::OK, "{}", h.0);
        }
    }
    rotate(&a, &env, "token-signing").await;
    // One rotation keeps the previous key: still served.
    for h in creds {
        assert_eq!(get_abc_with(&a, h).await.0, StatusCode::OK, "{}", h.0);
    }
    rotate(&a, &env, "token-signing").await;
    let refused = (StatusCode::UNAUTHORIZED, "TokenVerifierError".to_string());
    for h in creds {
        assert_eq!(get_abc_with(&a, h).await, refused, "{}", h.0);
    }
    // B sees the retirement when it reloads its rings (`ward serve` does so
    // periodically).
    sb.reload_keys().unwrap();
    for h in creds {
        assert_eq!(get_abc_with(&b, h).await, refused, "{}", h.0);
    }

    // Session key retired: the cookie is refused; the token, whose signing
    // key is still in the ring, is still good as a bearer credential.
    let (cookie, token, _) = attested(&b).await;
    let bearer = format!("Bearer {token}");
    for app in [&a, &b] {
        assert_eq!(get_abc_with(app, ("cookie", &cookie)).await, ok);
    }
    rotate(&a, &env, "session").await;
    rotate(&a, &env, "session").await;
    sb.reload_keys().unwrap();
    for app in [&a, &b] {
        assert_eq!(
            get_abc_with(app, ("cookie", &cookie)).await,
            (StatusCode::UNAUTHORIZED, "InvalidCookie".to_string())
        );
        assert_eq!(get_abc_with(app, ("authorization", &bearer)).await, ok);
    }
    // New sessions are served by both.
    let (cookie, _, _) = attested(&a).await;
    for app in [&a, &b] {
        assert_eq!(get_abc_with(app, ("cookie", &cookie)).await, ok);
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    assert_eq!(
        call(&app, Method::GET, "/healthz", &[], "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::GET, "/readyz", &[], "").await.status,
        StatusCode::OK
    );
    attested(&app).await;
    let m = String::from_utf8(call(&app, Method::GET, "/metrics", &[], "").await.body).unwrap();
    assert!(
        m.contains("ward_kbs_auth_requests_total{tee=\"sample\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ward_kbs_attestations_total{tee=\"sample\",result=\"contraindicated\"} 1"),
        "{m}"
    );
    let r = call(&app, Method::GET, "/nope", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.kind(), "NotFound");
}

#[tokio::test]
async fn wrong_method_gets_405_with_allow_header_and_a_kbs_error_body() {
    let env = Env::new();
    let (app, store) = env.replica(true);
    for (method, uri, allow) in [
        (Method::PUT, "/kbs/v0/auth", "POST"),
        (Method::GET, "/kbs/v0/attest", "POST"),
        (
            Method::PATCH,
            "/kbs/v0/resource/a/b/c",
            "GET,HEAD,POST,DELETE",
        ),
    ] {
        let resp = app
            .clone()
            .oneshot(
                HttpRequest::builder()
                    .method(method.clone())
                    .uri(uri)
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert_eq!(resp.headers()["allow"], allow, "{method} {uri}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["type"],
            "https://github.com/confidential-containers/kbs/errors/MethodNotAllowed"
        );
        assert!(v["detail"].as_str().unwrap().contains("method"), "{v}");
    }
    assert!(store.list_resources().unwrap().is_empty());
}

#[tokio::test]
async fn expired_reference_values_stop_counting_without_any_other_change() {
    let env = Env::new();
    let (app, _) = env.replica(false);
    let a = format!("Bearer {}", env.admin_token("admin"));
    let h = [("authorization", a.as_str())];
    for (name, value) in [("sample_svn", "1"), ("sample_launch_digest", "abcde")] {
        let rv = json!({"name": name, "values": [value], "expires_at": T0 + 100}).to_string();
        assert_eq!(
            call(&app, Method::POST, "/kbs/v0/reference-value", &h, rv)
                .await
                .status,
            StatusCode::OK
        );
    }
    let status = |token: &str| {
        ward_proto::jwt::UnverifiedJwt::parse(token).unwrap().claims["submods"]["cpu0"]
            ["ear.status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (_, token, _) = attested(&app).await;
    assert_eq!(status(&token), "affirming");
    env.clock.advance(101);
    let (_, token, _) = attested(&app).await;
    assert_eq!(status(&token), "contraindicated");
}

/// Resource policies bound to path prefixes: the longest bound prefix of a
/// path decides it, other paths keep the default policy; unbinding falls
/// back; bad prefixes and unknown ones are clear errors.
#[tokio::test]
async fn resource_policies_bound_to_prefixes_decide_their_paths() {
    let env = Env::new();
    let (app, _) = env.replica(false);
    let a = format!("Bearer {}", env.admin_token("admin"));
    let h = [("authorization", a.as_str())];
    for p in ["open/k/1", "open/closed/1", "other/k/1"] {
        assert_eq!(
            put_resource(&app, &env, p, b"v").await.status,
            StatusCode::OK
        );
    }
    // POST a policy allowing all or nothing, bound to `prefix` if given.
    let set = |prefix: Option<&'static str>, allow: bool| {
        let text = format!("package policy\ndefault allow := {allow}\n");
        let mut body = json!({"policy": URL_SAFE_NO_PAD.encode(text)});
        if let Some(p) = prefix {
            body["prefix"] = json!(p);
        }
        let (app, a) = (app.clone(), a.clone());
        async move {
            let h = [("authorization", a.as_str())];
            call(
                &app,
                Method::POST,
                "/kbs/v0/resource-policy",
                &h,
                body.to_string(),
            )
            .await
        }
    };
    // `open` allows everything (the sample TEE included), `open/closed`
    // denies again; `other` keeps the built-in default (sample denied).
    for (prefix, allow) in [("open", true), ("/open/closed/", false)] {
        let r = set(Some(prefix), allow).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["prefix"], prefix.trim_matches('/'));
    }
    let (cookie, _, _) = attested(&app).await;
    let get = |path: &'static str| {
        let (app, cookie) = (app.clone(), cookie.clone());
        async move {
            call(
                &app,
                Method::GET,
                &format!("/kbs/v0/resource/{path}"),
                &[("cookie", &cookie)],
                "",
            )
            .await
            .status
        }
    };
    assert_eq!(get("open/k/1").await, StatusCode::OK);
    assert_eq!(get("open/closed/1").await, StatusCode::FORBIDDEN);
    assert_eq!(get("other/k/1").await, StatusCode::FORBIDDEN);

    // Listed (the default one is not stored), shown by prefix.
    let list = call(&app, Method::GET, "/kbs/v0/resource-policies", &h, "")
        .await
        .json();
    let prefixes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["open", "open/closed"]);
    let shown = call(
        &app,
        Method::GET,
        "/kbs/v0/resource-policy/open/closed",
        &h,
        "",
    )
    .await
    .json();
    assert_eq!(shown["prefix"], "open/closed");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(shown["policy"].as_str().unwrap())
            .unwrap(),
        b"package policy\ndefault allow := false\n"
    );

    // Unbinding `open/closed` hands its paths back to `open`.
    let r = call(
        &app,
        Method::DELETE,
        "/kbs/v0/resource-policy/open/closed",
        &h,
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(get("open/closed/1").await, StatusCode::OK);
    // The default policy set without a prefix does not override a prefix.
    let r = set(None, false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(get("open/k/1").await, StatusCode::OK);

    // Bad and unknown prefixes; nothing is written by a refused request.
    for bad in ["", "a/b/c/d", "a/../b", "a b"] {
        let r = set(Some(bad), true).await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (StatusCode::BAD_REQUEST, "InvalidRequest"),
            "{bad:?}"
        );
    }
    for method in [Method::GET, Method::DELETE] {
        let r = call(&app, method, "/kbs/v0/resource-policy/open/closed", &h, "").await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (StatusCode::NOT_FOUND, "PolicyNotFound")
        );
    }
    let list = call(&app, Method::GET, "/kbs/v0/resource-policies", &h, "")
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}"); // `open` and the default
                                                             // Without an admin token: refused.
    let r = call(
        &app,
        Method::DELETE,
        "/kbs/v0/resource-policy/open",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get("open/k/1").await, StatusCode::OK);
}

#[tokio::test]
async fn a_stored_policy_that_does_not_compile_refuses_only_the_paths_it_decides() {
    let env = Env::new();
    let (app, store) = env.replica(true);
    for p in ["a/b/c", "x/y/z", "x/ok/1"] {
        assert_eq!(
            put_resource(&app, &env, p, b"v").await.status,
            StatusCode::OK
        );
    }
    let (cookie, _, _) = attested(&app).await;
    let get = |path: &'static str| {
        let (app, cookie) = (app.clone(), cookie.clone());
        async move {
            let r = call(
                &app,
                Method::GET,
                &format!("/kbs/v0/resource/{path}"),
                &[("cookie", &cookie)],
                "",
            )
            .await;
            (r.status, String::from_utf8_lossy(&r.body).into_owned())
        }
    };
    // As another build might have stored them (the API compiles a policy
    // before storing it): `x` does not compile here, `x/ok` does.
    let kind = ward_store::PolicyKind::Resource;
    store
        .put_policy(kind, "prefix:x", "package policy\nallow if {", T0)
        .unwrap();
    store
        .put_policy(
            kind,
            "prefix:x/ok",
            "package policy\ndefault allow := true\n",
            T0,
        )
        .unwrap();
    let (status, body) = get("x/y/z").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // The compiler's complaint is logged, not answered.
    assert!(!body.contains("allow if"), "{body}");
    assert_eq!(get("x/ok/1").await.0, StatusCode::OK);
    assert_eq!(get("a/b/c").await.0, StatusCode::OK);
    // Replaced by a policy that compiles, the prefix works again.
    store
        .put_policy(
            kind,
            "prefix:x",
            "package policy\ndefault allow := true\n",
            T0,
        )
        .unwrap();
    assert_eq!(get("x/y/z").await.0, StatusCode::OK);
}

fn trustee_policy(name: &str) -> Option<String> {
    let dir = std::env::var_os("WARD_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    let p = dir.join("trustee/policies").join(name);
    match std::fs::read_to_string(&p) {
        Ok(t) => Some(t),
        Err(_) => {
            eprintln!("NOTICE: skipping: fixture {} is absent", p.display());
            None
        }
    }
}

/// The trust vector and policy id of a freshly attested sample guest.
async fn appraised(app: &Router) -> (Value, Value) {
    let (_, token, _) = attested(app).await;
    let claims = ward_proto::jwt::UnverifiedJwt::parse(&token)
        .unwrap()
        .claims;
    let sub = &claims["submods"]["cpu0"];
    (
        sub["ear.trustworthiness-vector"].clone(),
        sub["ear.appraisal-policy-id"].clone(),
    )
}

/// Issue 18, item 8: Trustee's default CPU attestation policy, uploaded
/// unchanged under kbs-client's default id `default_cpu`, used to be stored
/// with 200 and then fail every attestation (`query_reference_value` was
/// unknown), and the id was never selected. Policies calling unknown
/// functions, or lacking the rules they are evaluated for, are now refused
/// at upload.
#[tokio::test]
async fn trustees_default_cpu_policy_runs_unchanged_and_unrunnable_policies_are_refused() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    let auth = format!("Bearer {}", env.admin_token("admin"));
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let set = |id: &str, text: &str| {
        json!({"policy_id": id, "policy": URL_SAFE_NO_PAD.encode(text), "type": "rego"}).to_string()
    };
    let unknown = "package policy\nimport rego.v1\nexecutables := 3 if input.sample.svn in lookup_rv(\"svn\")\n";
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/attestation-policy",
        &h,
        set("default_cpu", unknown),
    )
    .await;
    assert_eq!(
        (r.status, r.kind().as_str()),
        (StatusCode::BAD_REQUEST, "PolicyEngine")
    );
    assert!(r.json()["detail"].as_str().unwrap().contains("lookup_rv()"));
    let no_rules = "package policy\nimport rego.v1\nsomething := 1\n";
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/attestation-policy",
        &h,
        set("x", no_rules),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("trust-claim rules"));
    let no_allow =
        json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nimport rego.v1\ndeny := true\n")})
            .to_string();
    let r = call(&app, Method::POST, "/kbs/v0/resource-policy", &h, no_allow).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["detail"].as_str().unwrap().contains("allow"));
    let bad_call = json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nimport rego.v1\nallow if nope(input)\n")}).to_string();
    let r = call(&app, Method::POST, "/kbs/v0/resource-policy", &h, bad_call).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["detail"].as_str().unwrap().contains("nope()"));
    // Nothing refused was stored: the built-in sample policy still decides.
    assert_eq!(appraised(&app).await.1, "default");

    let Some(cpu) = trustee_policy("ear_default_policy_cpu.rego") else {
        return;
    };
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/attestation-policy",
        &h,
        set("default_cpu", &cpu),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // No reference values: query_reference_value answers null, as Trustee's
    // does for an unknown id; only the sample's debug claim is approved.
    let (tv, id) = appraised(&app).await;
    assert_eq!(id, "default_cpu");
    assert_eq!(
        (&tv["executables"], &tv["hardware"], &tv["configuration"]),
        (&json!(33), &json!(97), &json!(2)),
        "{tv}"
    );
    // Reference values as Trustee's RVPS sample message carries them:
    // lists for `in`, single values for `==` and `>=`.
    let payload = json!({"launch_digest": ["abcde"], "svn": ["1"], "major_version": 1, "minimum_minor_version": 0});
    let rv = json!({"version": "0.1.0", "type": "sample", "payload": base64::engine::general_purpose::STANDARD.encode(payload.to_string())}).to_string();
    let r = call(&app, Method::POST, "/kbs/v0/reference-value", &h, rv).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let (tv, _) = appraised(&app).await;
    assert_eq!(
        (&tv["executables"], &tv["hardware"], &tv["configuration"]),
        (&json!(3), &json!(2), &json!(2)),
        "{tv}"
    );
    // A policy stored under the TEE's own name still comes first.
    let own =
        "package policy\nimport rego.v1\nhardware := 2\nexecutables := 2\nconfiguration := 2\n";
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/attestation-policy",
        &h,
        set("sample", own),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(appraised(&app).await.1, "sample");
}

/// Issue 19: every client-visible refusal, pinned as (status, error type,
/// detail) so that restructuring the errors cannot change what a client
/// sees. Details of serde errors are pinned too: they are part of the
/// answer.
#[tokio::test]
async fn every_refusal_keeps_its_status_type_and_detail() {
    let env = Env::new();
    let (app, _) = env.replica(true);
    put_resource(&app, &env, "default/test/key", b"s").await;
    let admin = format!("Bearer {}", env.admin_token("admin"));
    let reader = format!("Bearer {}", env.admin_token("reader"));
    let (pending, _) = auth(&app).await;
    let (attested_cookie, token, key) = attested(&app).await;
    let bearer = format!("Bearer {token}");
    let bad_key_body = {
        let (_, nonce) = auth(&app).await;
        let mut v: Value = serde_json::from_slice(&attestation(&nonce, &key, None)).unwrap();
        v["runtime-data"]["tee-pubkey"] =
            json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        serde_json::to_vec(&v).unwrap()
    };
    let (c2, n2) = auth(&app).await;
    let wrong_rd = attestation(&n2, &key, Some(vec![0; 48]));
    let (c3, n3) = auth(&app).await;
    let ok3 = attestation(&n3, &key, None);
    assert_eq!(attest(&app, &c3, ok3.clone()).await.status, StatusCode::OK);
    let policy = |text: &str| json!({"policy": URL_SAFE_NO_PAD.encode(text)}).to_string();

    let mut cases: Vec<Case> = vec![
        ("auth bad json", Method::POST, "/kbs/v0/auth".into(), vec![], b"{".to_vec()),
        ("auth version", Method::POST, "/kbs/v0/auth".into(), vec![],
            br#"{"version":"0.3.0","tee":"sample","extra-params":{}}"#.to_vec()),
        ("auth tee", Method::POST, "/kbs/v0/auth".into(), vec![],
            br#"{"version":"0.4.0","tee":"nope","extra-params":{}}"#.to_vec()),
        ("attest no cookie", Method::POST, "/kbs/v0/attest".into(), vec![], b"{}".to_vec()),
        ("attest bad cookie", Method::POST, "/kbs/v0/attest".into(),
            vec![("cookie", "kbs-session-id=x.y".into())], b"{}".to_vec()),
        ("attest bad body", Method::POST, "/kbs/v0/attest".into(),
            vec![("cookie", pending.clone())], b"[]".to_vec()),
        ("attest bad tee key", Method::POST, "/kbs/v0/attest".into(),
            vec![("cookie", pending.clone())], bad_key_body),
        ("attest wrong report data", Method::POST, "/kbs/v0/attest".into(),
            vec![("cookie", c2)], wrong_rd),
        ("attest replayed", Method::POST, "/kbs/v0/attest".into(),
            vec![("cookie", c3)], ok3),
        ("attest attested session", Method::POST, "/kbs/v0/attest".into(),
            vec![("cookie", attested_cookie.clone())], b"{}".to_vec()),
        ("resource no credential", Method::GET, "/kbs/v0/resource/default/test/key".into(), vec![], vec![]),
        ("resource pending session", Method::GET, "/kbs/v0/resource/default/test/key".into(),
            vec![("cookie", pending.clone())], vec![]),
        ("resource bad bearer", Method::GET, "/kbs/v0/resource/default/test/key".into(),
            vec![("authorization", "Bearer a.b.c".into())], vec![]),
        ("resource missing", Method::GET, "/kbs/v0/resource/default/test/none".into(),
            vec![("authorization", bearer.clone())], vec![]),
        ("resource bad path", Method::GET, "/kbs/v0/resource/default/%2E%2E/key".into(),
            vec![("authorization", bearer.clone())], vec![]),
        ("admin no token", Method::GET, "/kbs/v0/reference-values".into(), vec![], vec![]),
        ("admin wrong role", Method::POST, "/kbs/v0/reference-value".into(),
            vec![("authorization", reader.clone())], b"{}".to_vec()),
        ("admin bad json", Method::POST, "/kbs/v0/reference-value".into(),
            vec![("authorization", admin.clone())], b"{".to_vec()),
        ("admin policy not base64", Method::POST, "/kbs/v0/resource-policy".into(),
            vec![("authorization", admin.clone())], br#"{"policy":"***"}"#.to_vec()),
        ("admin policy not rego", Method::POST, "/kbs/v0/resource-policy".into(),
            vec![("authorization", admin.clone())], policy("package policy\nallow if {").into_bytes()),
        ("admin policy without allow", Method::POST, "/kbs/v0/resource-policy".into(),
            vec![("authorization", admin.clone())], policy("package policy\nx := 1").into_bytes()),
        ("admin bad prefix", Method::POST, "/kbs/v0/resource-policy".into(),
            vec![("authorization", admin.clone())],
            json!({"policy": URL_SAFE_NO_PAD.encode("package policy\ndefault allow := false"), "prefix": "a/b/c/d"}).to_string().into_bytes()),
        ("admin attestation policy type", Method::POST, "/kbs/v0/attestation-policy".into(),
            vec![("authorization", admin.clone())], br#"{"policy_id":"x","policy":"","type":"opa"}"#.to_vec()),
        ("admin attestation policy id", Method::POST, "/kbs/v0/attestation-policy".into(),
            vec![("authorization", admin.clone())], br#"{"policy_id":"a b","policy":""}"#.to_vec()),
        ("admin no attestation policy", Method::GET, "/kbs/v0/attestation-policy/none".into(),
            vec![("authorization", admin.clone())], vec![]),
        ("admin no reference value", Method::GET, "/kbs/v0/reference-value/none".into(),
            vec![("authorization", admin.clone())], vec![]),
        ("admin delete missing resource", Method::DELETE, "/kbs/v0/resource/default/test/none".into(),
            vec![("authorization", admin.clone())], vec![]),
        ("admin rotate unknown ring", Method::POST, "/kbs/v0/admin/rotate-key".into(),
            vec![("authorization", admin.clone())], br#"{"ring":"nope"}"#.to_vec()),
        ("admin bad collateral", Method::POST, "/kbs/v0/collateral".into(),
            vec![("authorization", admin.clone())], b"{}".to_vec()),
        ("unknown endpoint", Method::GET, "/kbs/v0/nope".into(), vec![], vec![]),
        ("wrong method", Method::PUT, "/kbs/v0/auth".into(), vec![], vec![]),
        ("too large", Method::POST, "/kbs/v0/auth".into(), vec![], vec![b' '; 70 * 1024]),
    ];
    let mut seen = Vec::new();
    for (name, method, uri, headers, body) in cases.drain(..) {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = call(&app, method, &uri, &h, body).await;
        let v = r.json();
        seen.push(line(name, &r, &v));
    }
    // A denial by policy, and expiry of the session and of the token.
    let deny = "package policy\ndefault allow := false";
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/resource-policy",
        &[("authorization", &admin)],
        policy(deny),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for (name, h) in [("denied", ("authorization", bearer.as_str()))] {
        let r = call(
            &app,
            Method::GET,
            "/kbs/v0/resource/default/test/key",
            &[h],
            "",
        )
        .await;
        seen.push(line(name, &r, &r.json()));
    }
    env.clock.advance(3600);
    for (name, h) in [
        ("expired session", ("cookie", attested_cookie.as_str())),
        ("expired token", ("authorization", bearer.as_str())),
    ] {
        let r = call(
            &app,
            Method::GET,
            "/kbs/v0/resource/default/test/key",
            &[h],
            "",
        )
        .await;
        seen.push(line(name, &r, &r.json()));
    }
    let expected = EXPECTED_REFUSALS
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>();
    let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(seen, expected, "\n{}", seen.join("\n"));
}

/// A request of the pinning test: name, method, URI, headers, body.
type Case = (
    &'static str,
    Method,
    String,
    Vec<(&'static str, String)>,
    Vec<u8>,
);

/// One pinned refusal: `name: status type detail` (newlines shown as ⏎).
fn line(name: &str, r: &Resp, v: &Value) -> String {
    let detail = v["detail"].as_str().unwrap().replace('\n', "⏎");
    format!("{name}: {} {} {detail}", r.status.as_u16(), r.kind())
}

const EXPECTED_REFUSALS: &str = r#"
auth bad json: 400 SerdeError request body: EOF while parsing an object at line 1 column 1
auth version: 400 ProtocolVersion KBS protocol version "0.3.0" is not supported; this server speaks 0.4.0
auth tee: 400 UnsupportedTee TEE "nope" is not supported; supported: az-snp-vtpm, az-tdx-vtpm, sample, sgx, snp, tdx
attest no cookie: 401 CookieNotFound no kbs-session-id cookie; call /kbs/v0/auth first
attest bad cookie: 401 InvalidCookie session cookie was issued under an unknown key
attest bad body: 400 SerdeError attestation body: invalid length 1, expected struct Attestation with 3 elements at line 1 column 2
attest bad tee key: 400 JweError tee-pubkey: recipient key: JWK does not hold a valid public key: EC coordinate has the wrong length
attest wrong report data: 401 AttestationError report_data does not bind the runtime data (nonce and TEE public key)
attest replayed: 401 InvalidCookie this challenge has already been answered; start a new session with /kbs/v0/auth
attest attested session: 401 InvalidCookie this session has already attested; start a new one with /kbs/v0/auth
resource no credential: 401 TokenNotFound Attestation Token not found
resource pending session: 401 TokenNotFound session has not attested yet
resource bad bearer: 401 TokenVerifierError bearer token: token header is not valid base64url
resource missing: 404 ResourceNotFound resource default/test/none does not exist
resource bad path: 400 InvalidRequestPath invalid resource path "default/../key": each segment must match [A-Za-z0-9_-][A-Za-z0-9_.-]* (at most 128 characters)
admin no token: 401 AdminAuth admin API requires Authorization: Bearer <token>
admin wrong role: 403 AdminAuth role ["reader"] may not WriteReferenceValues
admin bad json: 400 SerdeError request body: EOF while parsing an object at line 1 column 1
admin policy not base64: 400 SerdeError policy is not base64url
admin policy not rego: 400 PolicyEngine policy "resource-policy" does not compile: ⏎--> resource-policy.rego:2:10⏎  |⏎2 | allow if {⏎  |          ^⏎error: expecting }
admin policy without allow: 400 PolicyEngine policy "resource-policy" must declare the rule allow
admin bad prefix: 400 InvalidRequest invalid resource path "a/b/c/d": a prefix is one to three segments: repo[/type[/tag]]
admin attestation policy type: 400 PolicyEngine policy type "opa" is not supported (rego)
admin attestation policy id: 400 InvalidRequest id must be 1-64 characters of [A-Za-z0-9._-]
admin no attestation policy: 404 PolicyNotFound no attestation policy with policy_id "none"
admin no reference value: 404 ReferenceValueNotFound reference value "none" does not exist
admin delete missing resource: 404 ResourceNotFound resource default/test/none does not exist
admin rotate unknown ring: 400 InvalidRequest unknown key ring "nope"
admin bad collateral: 400 CollateralError dcap.collateral: collateral JSON: missing field `tcb_info` at line 1 column 2
unknown endpoint: 404 NotFound no such endpoint
wrong method: 405 MethodNotAllowed this endpoint does not take this method
too large: 413 PayloadTooLarge request body is larger than the configured limit
denied: 403 PolicyDeny Access denied by policy for resource default/test/key: the token's ear.status is contraindicated; trust vector configuration=2, executables=33, file-system=0, hardware=97, instance-identity=0, runtime-opaque=0, sourced-data=0, storage-opaque=0; short of affirming: executables 33: executables that are not recognized (for example the launch measurement is not among the reference values); hardware 97: hardware or firmware that the verifier does not recognize (for example no hardware root of trust, or a TCB below the required level)
expired session: 401 ExpiredCookie session has expired
expired token: 401 TokenVerifierError attestation token has expired
"#;

async fn audit_get(app: &Router, env: &Env, role: &str, uri: &str) -> Resp {
    let auth = format!("Bearer {}", env.admin_token(role));
    call(app, Method::GET, uri, &[("authorization", &auth)], "").await
}

/// The leaves of `/audit/entries` (JSON lines of {index, leaf}).
fn audit_leaves(r: &Resp) -> Vec<Vec<u8>> {
    String::from_utf8(r.body.clone())
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["index"], json!(i));
            b64::std_decode("leaf", v["leaf"].as_str().unwrap()).unwrap()
        })
        .collect()
}

fn hash_b64(s: &Value) -> ward_audit::merkle::Hash {
    b64::std_decode("hash", s.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn the_audit_log_records_attestations_releases_denials_and_admin_changes_verifiably() {
    use ward_audit::checkpoint::Verifier;
    use ward_audit::merkle;
    let env = Env::new();
    let (app, _) = env.replica(true);
    let secret = b"audit-test-secret-value-7f3a";
    assert_eq!(
        put_resource(&app, &env, "a/b/c", secret).await.status,
        StatusCode::OK
    );
    let (cookie, token, key) = attested(&app).await;
    assert_eq!(fetch_abc(&app, &cookie, &key).await.unwrap(), secret);
    // A repeat answers the same ciphertext to the same token: one record.
    assert!(fetch_abc(&app, &cookie, &key).await.is_some());
    let deny = json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nallow = false")});
    let admin = format!("Bearer {}", env.admin_token("admin"));
    let r = call(
        &app,
        Method::POST,
        "/kbs/v0/resource-policy",
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        deny.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(fetch_abc(&app, &cookie, &key).await.is_none());

    // Only the auditor and admin roles read the log.
    for (role, status) in [
        ("auditor", StatusCode::OK),
        ("admin", StatusCode::OK),
        ("resource-admin", StatusCode::FORBIDDEN),
        ("policy-admin", StatusCode::FORBIDDEN),
    ] {
        let r = audit_get(&app, &env, role, "/kbs/v0/audit/entries").await;
        assert_eq!(r.status, status, "{role}");
    }
    let r = audit_get(&app, &env, "auditor", "/kbs/v0/audit/entries").await;
    let leaves = audit_leaves(&r);
    let events: Vec<Value> = leaves
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "start",
            "start",
            "start",
            "admin",
            "attestation",
            "release",
            "admin",
            "denial"
        ],
        "{events:#?}"
    );
    let put = &events[3];
    assert_eq!(put["operation"], "put-resource");
    assert_eq!(put["object"], "resource a/b/c");
    assert_eq!(put["caller"], "t");
    assert!(put["old_digest"].is_null());
    assert_eq!(put["new_digest"].as_str().unwrap().len(), 64);
    let att = &events[4];
    // Sample evidence under the default attestation policy (released only
    // because of --dev).
    assert_eq!(
        (att["tee"].as_str(), att["verdict"].as_str()),
        (Some("sample"), Some("contraindicated"))
    );
    let token_id = ward_store::audit::sha256_hex(token.as_bytes());
    assert_eq!(att["token_id"], json!(token_id));
    assert_eq!(att["evidence_sha256"].as_str().unwrap().len(), 64);
    let rel = &events[5];
    assert_eq!(
        (rel["path"].as_str(), rel["token_id"].as_str()),
        (Some("a/b/c"), Some(token_id.as_str()))
    );
    assert!(rel["resource_version"].is_i64() && rel["policy_id"].is_string());
    assert_eq!(
        events[6]["new_sha256"],
        json!(ward_store::audit::sha256_hex(
            b"package policy\nallow = false"
        ))
    );
    assert_eq!(events[7]["path"], "a/b/c");

    // No secret value, KEK, token or cookie in any entry.
    let all = leaves.concat();
    let text = String::from_utf8_lossy(&all);
    let kek = [9u8; 32];
    for (what, needle) in [
        ("the resource", String::from_utf8_lossy(secret).to_string()),
        ("the token", token.clone()),
        ("the cookie", cookie.clone()),
        ("the admin token", env.admin_token("admin")),
        ("the KEK (hex)", hex::encode(kek)),
        ("the KEK (base64)", b64::std_encode(kek)),
    ] {
        assert!(!text.contains(&needle), "{what} is in the audit log");
    }
    assert!(!all.windows(kek.len()).any(|w| w == kek));

    // The checkpoint is signed by the published key and covers the entries.
    let keys = audit_get(&app, &env, "auditor", "/kbs/v0/audit/keys")
        .await
        .json();
    let verifier = Verifier::parse(keys["keys"][0]["verifier_key"].as_str().unwrap()).unwrap();
    let note = audit_get(&app, &env, "auditor", "/kbs/v0/audit/checkpoint").await;
    let cp = verifier
        .open(&String::from_utf8(note.body).unwrap())
        .unwrap();
    let hashes: Vec<_> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    assert_eq!((cp.size, cp.root), (8, merkle::root(&hashes)));
    assert_eq!(cp.origin, "ward/audit");
    for i in 0..8u64 {
        let p = audit_get(
            &app,
            &env,
            "auditor",
            &format!("/kbs/v0/audit/proof/inclusion?index={i}&size=8"),
        )
        .await
        .json();
        let proof: Vec<_> = p["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(hash_b64)
            .collect();
        assert!(
            merkle::verify_inclusion(i, 8, &hashes[i as usize], &proof, &cp.root),
            "entry {i}"
        );
    }
    let c = audit_get(
        &app,
        &env,
        "auditor",
        "/kbs/v0/audit/proof/consistency?from=3&to=8",
    )
    .await
    .json();
    let proof: Vec<_> = c["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash_b64)
        .collect();
    let old = merkle::root(&hashes[..3]);
    assert!(merkle::verify_consistency(3, 8, &old, &cp.root, &proof));
    assert!(!merkle::verify_consistency(
        3, 8, &hashes[0], &cp.root, &proof
    ));
    // Reads outside the log are refused, naming why.
    for (uri, kind) in [
        ("inclusion?index=8&size=8", "AuditRange"),
        ("consistency?from=1&to=99", "AuditRange"),
        ("inclusion?index=x", "InvalidQuery"),
    ] {
        let r = audit_get(&app, &env, "auditor", &format!("/kbs/v0/audit/proof/{uri}")).await;
        assert_eq!(
            (r.status, r.kind().as_str()),
            (StatusCode::BAD_REQUEST, kind),
            "{uri}"
        );
    }

    // A rotated audit key signs the next checkpoint; both keys are published.
    rotate(&app, &env, "audit").await;
    let keys = audit_get(&app, &env, "auditor", "/kbs/v0/audit/keys")
        .await
        .json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    let newer = Verifier::parse(keys["keys"][1]["verifier_key"].as_str().unwrap()).unwrap();
    let note = String::from_utf8(
        audit_get(&app, &env, "auditor", "/kbs/v0/audit/checkpoint")
            .await
            .body,
    )
    .unwrap();
    assert!(verifier.open(&note).is_err(), "signed by the old key");
    let cp2 = newer.open(&note).unwrap();
    assert_eq!(cp2.size, 9, "the rotation is recorded");
    let added: Value = serde_json::from_slice(
        &audit_leaves(&audit_get(&app, &env, "auditor", "/kbs/v0/audit/entries?start=0").await)[8],
    )
    .unwrap();
    assert_eq!(
        (added["operation"].as_str(), added["change"].as_str()),
        (Some("rotate-key"), Some("add"))
    );
    assert!(added["public_key"].is_string());
}
