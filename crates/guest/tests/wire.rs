//! Wire conformance of ward's guest with the captured reference client
//! (../shared/protocol/kbs-0.4.0-capture.txt): a recording server answers
//! like the captured KBS; the requests ward's client sends must match the
//! captured ones — same /auth body, the session cookie echoed, the same
//! Attestation layout, and report_data = SHA-384(JCS(runtime data)) as the
//! reference computes it (checked on the captured exchange itself too).

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{json, Value};
use ward_guest::{ClientOptions, GuestError, KbsClient, SampleAttester};
use ward_proto::kbs::{runtime_data_hash, Attestation};
use ward_proto::{b64, HashAlgorithm, ResourcePath};

/// The captured /auth request body.
const CAPTURED_AUTH: &str = r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#;
/// The captured challenge and session id.
const CAPTURED_NONCE: &str = "WS2Qz3nxf9s8Yt+1WupJzTj7WjPR9RTXQRmhIndrtPg=";
const CAPTURED_SESSION: &str = "92930cc93085472ba4496b2d4f4cfdf2";
/// The captured /attest request body.
const CAPTURED_ATTEST: &str = r#"{"init-data":null,"runtime-data":{"nonce":"WS2Qz3nxf9s8Yt+1WupJzTj7WjPR9RTXQRmhIndrtPg=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AiQ-0IznxChsrGh3t1EjEOem0_U1t2vV93ov3MWkad0","y":"JnvUzr32TIfafYNkRlj24LoRNHjk4ZEIXlLAu70wXYE"}},"tee-evidence":{"primary_evidence":{"report_data":"U8sJInV0udN8I6m6Wibv/VnR8nSiLxpnYIJmyR4/thuXBajCtyJMNbHd80Lbn9C5","svn":"1"},"additional_evidence":""}}"#;

#[test]
fn the_captured_report_data_is_sha384_of_the_jcs_runtime_data() {
    let att: Attestation = serde_json::from_str(CAPTURED_ATTEST).unwrap();
    let h = runtime_data_hash(&att.runtime_data, "", HashAlgorithm::Sha384).unwrap();
    assert_eq!(
        b64::std_encode(&h),
        att.tee_evidence.primary_evidence["report_data"]
    );
}

type Log = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

async fn kbs(log: Log, resource: StatusCode) -> String {
    let deny = r#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"Access denied by policy"}"#;
    kbs_answering(log, resource, deny.to_string()).await
}

async fn kbs_answering(log: Log, resource: StatusCode, body: String) -> String {
    let cookie =
        format!("kbs-session-id={CAPTURED_SESSION}; Expires=Mon, 23 Nov 2026 03:03:20 GMT");
    let record = |log: Log, path: &'static str| {
        move |headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let c = headers
                    .get("cookie")
                    .map(|v| v.to_str().unwrap().to_string());
                let v = serde_json::from_str(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((path.to_string(), c, v));
            }
        }
    };
    let (l1, l2, c1, c2) = (log.clone(), log.clone(), cookie.clone(), cookie);
    let app = axum::Router::new()
        .route(
            "/kbs/v0/auth",
            post(move |h: HeaderMap, b: String| {
                let (f, c) = (record(l1.clone(), "auth"), c1.clone());
                async move {
                    f(h, b).await;
                    (
                        [("set-cookie", c)],
                        json!({"nonce": CAPTURED_NONCE, "extra-params": ""}).to_string(),
                    )
                }
            }),
        )
        .route(
            "/kbs/v0/attest",
            post(move |h: HeaderMap, b: String| {
                let (f, c) = (record(l2.clone(), "attest"), c2.clone());
                async move {
                    f(h, b).await;
                    (
                        [("set-cookie", c)],
                        json!({"token": "e30.e30.sig"}).to_string(),
                    )
                }
            }),
        )
        .route(
            "/kbs/v0/resource/{a}/{b}/{c}",
            get(move || async move { (resource, body) }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn ward_guest_requests_match_the_captured_reference_client() {
    let log: Log = Default::default();
    let url = kbs(log.clone(), StatusCode::FORBIDDEN).await;
    let c = KbsClient::new(
        &url,
        Arc::new(SampleAttester::default()),
        ClientOptions::default(),
    )
    .unwrap();
    c.attest().await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);

    let (path, cookie, auth) = &log[0];
    assert_eq!((path.as_str(), cookie), ("auth", &None));
    assert_eq!(auth, &serde_json::from_str::<Value>(CAPTURED_AUTH).unwrap());

    let (path, cookie, attest) = &log[1];
    assert_eq!(path, "attest");
    assert_eq!(
        cookie.as_deref(),
        Some(format!("kbs-session-id={CAPTURED_SESSION}").as_str())
    );
    let captured: Value = serde_json::from_str(CAPTURED_ATTEST).unwrap();
    // Same layout, key for key (the TEE key itself is fresh).
    fn shape(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
            }
            Value::String(_) => json!("s"),
            other => other.clone(),
        }
    }
    assert_eq!(shape(attest), shape(&captured));
    assert_eq!(attest["runtime-data"]["nonce"], CAPTURED_NONCE);
    for k in ["kty", "crv", "alg"] {
        assert_eq!(
            attest["runtime-data"]["tee-pubkey"][k],
            captured["runtime-data"]["tee-pubkey"][k]
        );
    }
    let att: Attestation = serde_json::from_value(attest.clone()).unwrap();
    let h = runtime_data_hash(&att.runtime_data, "", HashAlgorithm::Sha384).unwrap();
    assert_eq!(
        attest["tee-evidence"]["primary_evidence"]["report_data"],
        b64::std_encode(&h)
    );
    assert_eq!(attest["tee-evidence"]["additional_evidence"], "");
}

#[tokio::test]
async fn a_denial_and_a_garbage_answer_are_told_apart() {
    let url = kbs(Default::default(), StatusCode::FORBIDDEN).await;
    let c = KbsClient::new(
        &url,
        Arc::new(SampleAttester::default()),
        ClientOptions::default(),
    )
    .unwrap();
    let p = ResourcePath::parse("default/app/key").unwrap();
    let e = c.get_resource(&p).await.unwrap_err();
    assert!(
        matches!(e, GuestError::PolicyDenied(ref d) if d.contains("denied")),
        "{e}"
    );

    // 200 with something that is not a JWE: a protocol error, no panic.
    let url = kbs(Default::default(), StatusCode::OK).await;
    let c = KbsClient::new(
        &url,
        Arc::new(SampleAttester::default()),
        ClientOptions::default(),
    )
    .unwrap();
    let e = c.get_resource(&p).await.unwrap_err();
    assert!(matches!(e, GuestError::Protocol(_)), "{e}");
}

#[tokio::test]
async fn init_data_is_sent_only_when_the_tee_binds_it() {
    let toml = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"aa.toml\" = \"x\"\n";
    let digest = ward_proto::initdata::InitData::parse("toml", toml)
        .unwrap()
        .digest;
    let opts = || ClientOptions {
        init_data: Some(toml.to_string()),
        ..Default::default()
    };

    let log: Log = Default::default();
    let url = kbs(log.clone(), StatusCode::FORBIDDEN).await;
    let bound = SampleAttester {
        init_data: Some(digest[..32].to_vec()),
    };
    let c = KbsClient::new(&url, Arc::new(bound), opts()).unwrap();
    c.attest().await.unwrap();
    let attest = log.lock().unwrap()[1].2.clone();
    assert_eq!(attest["init-data"], json!({"format": "toml", "body": toml}));

    // Bound to something else, or not bound at all: refused before any request.
    let log: Log = Default::default();
    let url = kbs(log.clone(), StatusCode::FORBIDDEN).await;
    for a in [
        SampleAttester {
            init_data: Some(vec![0; 32]),
        },
        SampleAttester::default(),
    ] {
        let c = KbsClient::new(&url, Arc::new(a), opts()).unwrap();
        assert!(matches!(c.attest().await, Err(GuestError::InitData(_))));
    }
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_resource_answers_are_clear_errors() {
    let p = ResourcePath::parse("default/app/key").unwrap();
    let other = ward_proto::jwk::TeeKeyPair::generate_ec(ward_proto::jwk::Curve::P256).unwrap();
    let to_other = ward_proto::jwe::encrypt(
        &ward_proto::jwe::Recipient::from_jwk(&other.public_jwk()).unwrap(),
        b"not for you",
    )
    .unwrap();
    let cases = [
        // Encrypted to another TEE key.
        (serde_json::to_string(&to_other).unwrap(), "decryption"),
        // JWE-shaped, but not base64url.
        (
            r#"{"protected":"!!","encrypted_key":"","iv":"","ciphertext":"","tag":""}"#.to_string(),
            "decryption",
        ),
        // Larger than the configured bound.
        ("x".repeat(5000), "too large"),
    ];
    for (body, want) in cases {
        let url = kbs_answering(Default::default(), StatusCode::OK, body).await;
        let opts = ClientOptions {
            max_response: 4096,
            ..Default::default()
        };
        let c = KbsClient::new(&url, Arc::new(SampleAttester::default()), opts).unwrap();
        let e = c.get_resource(&p).await.unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(!e.to_string().contains("not for you"));
    }
}
