//! Driving `ward serve` processes and the KBS protocol from tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use ward_proto::jwk::TeeKeyPair;
use ward_proto::kbs::{runtime_data_hash, RuntimeData};
use ward_proto::{b64, HashAlgorithm};

pub const WARD: &str = env!("CARGO_BIN_EXE_ward");

pub struct Server {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a `ward` process that prints `listening on <addr>` first.
pub fn spawn_listening(mut cmd: Command, stderr: Stdio) -> Server {
    let mut child = cmd
        .env("WARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn ward");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Server {
        url: format!("http://{addr}"),
        child,
    }
}

pub fn attestation(nonce: &str, key: &TeeKeyPair) -> Value {
    let runtime = RuntimeData {
        nonce: nonce.into(),
        tee_pubkey: key.public_jwk(),
    };
    let rd = runtime_data_hash(&runtime, "", HashAlgorithm::Sha384).unwrap();
    json!({"init-data": null, "runtime-data": runtime,
           "tee-evidence": {"primary_evidence": {"report_data": b64::std_encode(rd), "svn": "1"}, "additional_evidence": ""}})
}

pub fn session_cookie(resp: &reqwest::blocking::Response) -> String {
    resp.headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

pub const AUTH: &str =
    r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha384"]}}"#;

/// `/auth` on `a`, `/attest` on `b`: the attested session's cookie.
pub fn attest(http: &reqwest::blocking::Client, a: &str, b: &str, key: &TeeKeyPair) -> String {
    let r = http
        .post(format!("{a}/kbs/v0/auth"))
        .body(AUTH)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r);
    let nonce = r.json::<Value>().unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http
        .post(format!("{b}/kbs/v0/attest"))
        .header("cookie", &cookie)
        .json(&attestation(&nonce, key))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    session_cookie(&r)
}
