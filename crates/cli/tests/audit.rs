//! `ward audit verify` and `ward audit proof` on an exported log and
//! checkpoints signed here with ward-audit's signer.

use std::path::Path;
use std::process::Command;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use ward_audit::checkpoint::{Checkpoint, Signer};
use ward_audit::merkle;

fn ward(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .unwrap()
}

fn verify(log: &str, checkpoint: &str, key: &str) -> std::process::Output {
    ward(&[
        "audit",
        "verify",
        "--log",
        log,
        "--checkpoint",
        checkpoint,
        "--key",
        key,
    ])
}

fn proof(log: &str, old: &str, new: &str, key: &str) -> std::process::Output {
    ward(&[
        "audit", "proof", "--log", log, "--old", old, "--new", new, "--key", key,
    ])
}

fn write_log(p: &Path, entries: &[Vec<u8>]) {
    let text: String = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "{}\n",
                serde_json::json!({"index": i, "leaf": base64::engine::general_purpose::STANDARD.encode(e)})
            )
        })
        .collect();
    std::fs::write(p, text).unwrap();
}

fn checkpoint(s: &Signer, entries: &[Vec<u8>], size: usize) -> String {
    let leaves: Vec<_> = entries[..size]
        .iter()
        .map(|e| merkle::leaf_hash(e))
        .collect();
    s.sign(&Checkpoint {
        origin: "kbs.example/audit".into(),
        size: size as u64,
        root: merkle::root(&leaves),
        extensions: vec![],
    })
}

#[test]
fn an_exported_log_is_checked_against_its_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signer = Signer::from_pkcs8(
        "kbs.example/audit",
        Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref(),
    )
    .unwrap();
    let key = signer.verifier_key();
    let entries: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("{{\"release\":{i}}}").into_bytes())
        .collect();
    let p = |n: &str| dir.path().join(n).display().to_string();
    write_log(Path::new(&p("log")), &entries);
    std::fs::write(p("old"), checkpoint(&signer, &entries, 6)).unwrap();
    std::fs::write(p("new"), checkpoint(&signer, &entries, 10)).unwrap();

    let out = verify(&p("log"), &p("new"), &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 10);
    let out = proof(&p("log"), &p("old"), &p("new"), &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One entry changed: the log no longer matches the checkpoint.
    let mut tampered = entries.clone();
    tampered[3] = b"{\"release\":\"someone else\"}".to_vec();
    write_log(Path::new(&p("tampered")), &tampered);
    let out = verify(&p("tampered"), &p("new"), &key);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not hash to the checkpoint's root"));

    // History rewritten, and the new state signed: the old checkpoint is
    // not a prefix of it.
    write_log(Path::new(&p("rewritten")), &tampered);
    std::fs::write(p("resigned"), checkpoint(&signer, &tampered, 10)).unwrap();
    let out = proof(&p("rewritten"), &p("old"), &p("resigned"), &key);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the log was rewritten"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A checkpoint signed by another key is not trusted.
    let other = Signer::from_pkcs8(
        "kbs.example/audit",
        Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref(),
    )
    .unwrap();
    std::fs::write(p("forged"), checkpoint(&other, &entries, 10)).unwrap();
    let out = verify(&p("log"), &p("forged"), &key);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no signature by kbs.example/audit"));
}
