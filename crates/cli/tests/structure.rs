//! The dependency rules of ARCHITECTURE.md, read from `cargo metadata`:
//! the trust service does not reach into the evidence crates, `ward verify`
//! does not need the trust service, nothing depends on the CLI, and the
//! simulators reach production code only through the CLI.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn workspace() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (crate, dependency, kind) for every dependency on a workspace crate;
/// kind is "normal", "dev" or "build".
fn edges() -> Vec<(String, String, String)> {
    let m = workspace();
    let mut out = Vec::new();
    for p in m["packages"].as_array().unwrap() {
        for d in p["dependencies"].as_array().unwrap() {
            let name = d["name"].as_str().unwrap();
            if name.starts_with("ward-") {
                let kind = d["kind"].as_str().unwrap_or("normal").to_string();
                out.push((
                    p["name"].as_str().unwrap().to_string(),
                    name.to_string(),
                    kind,
                ));
            }
        }
    }
    assert!(out.len() > 10, "the workspace was not read: {out:?}");
    out
}

fn normal(edges: &[(String, String, String)], from: &str) -> Vec<String> {
    edges
        .iter()
        .filter(|(f, _, k)| f == from && k == "normal")
        .map(|(_, t, _)| t.clone())
        .collect()
}

#[test]
fn the_trust_service_does_not_depend_on_the_evidence_crates() {
    let e = edges();
    let kbs = normal(&e, "ward-kbs");
    assert!(kbs.contains(&"ward-collateral".to_string()), "{kbs:?}");
    for leaf in ["ward-snp", "ward-dcap", "ward-vtpm"] {
        assert!(!kbs.iter().any(|d| d == leaf), "ward-kbs depends on {leaf}");
    }
}

#[test]
fn nothing_depends_on_the_cli_and_the_simulators_only_reach_the_cli() {
    let e = edges();
    assert!(
        !e.iter().any(|(_, to, _)| to == "ward-cli"),
        "a crate depends on ward-cli"
    );
    for (from, to, kind) in &e {
        if to == "ward-sim" && from != "ward-cli" {
            assert_eq!(kind, "dev", "{from} depends on ward-sim outside its tests");
        }
    }
}

#[test]
fn ward_verify_does_not_use_the_trust_service() {
    let src = include_str!("../src/verify_cmd.rs");
    assert!(!src.contains("ward_kbs"), "verify_cmd.rs uses ward_kbs");
    assert!(
        src.contains("ward_collateral::registry_with"),
        "verify builds the shared registry"
    );
}

#[test]
fn the_evidence_crates_are_leaves() {
    let e = edges();
    for leaf in ["ward-snp", "ward-dcap", "ward-vtpm"] {
        assert_eq!(
            normal(&e, leaf),
            Vec::<String>::new(),
            "{leaf} depends on ward crates"
        );
    }
}

#[test]
fn test_support_is_enabled_only_by_dev_dependencies() {
    let m = workspace();
    let mut seen = 0;
    for p in m["packages"].as_array().unwrap() {
        for d in p["dependencies"].as_array().unwrap() {
            let testing = d["features"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "testing"));
            if (d["name"] == "ward-proto" || d["name"] == "ward-oci") && testing {
                seen += 1;
                assert_eq!(
                    d["kind"], "dev",
                    "{} enables {}/testing",
                    p["name"], d["name"]
                );
            }
        }
    }
    assert!(seen > 0, "no crate's tests use ward_proto::testing");
}

#[test]
fn the_policy_generator_does_no_io_and_the_service_does_not_generate() {
    let e = edges();
    // The generator reads what it is given: images come through the CLI.
    assert_eq!(normal(&e, "ward-podpolicy"), ["ward-proto"]);
    assert_eq!(normal(&e, "ward-oci"), Vec::<String>::new());
    for service in ["ward-kbs", "ward-verifier", "ward-guest", "ward-collateral"] {
        for gen in ["ward-podpolicy", "ward-oci"] {
            assert!(
                !normal(&e, service).iter().any(|d| d == gen),
                "{service} depends on {gen}"
            );
        }
    }
}
