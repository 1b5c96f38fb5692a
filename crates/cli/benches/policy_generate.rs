//! `ward policy generate` for a pod with three images from a local
//! registry (Debian's docker-registry on 127.0.0.1, filled here), cold
//! (an empty layer cache) and warm (the cache of the previous run):
//! `cargo bench -p ward-cli --bench policy_generate`. Each image has two
//! gzip layers of `LAYER_MIB` MiB of incompressible data under its
//! /etc/passwd, so a cold run reads and hashes them all.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use ward_oci::testing::{
    gzip, noise, registry_bin, start, tar, tar_gz, Pusher, GZIP, INDEX, MANIFEST,
};
use ward_oci::Digest;

const LAYER_MIB: usize = 8;

fn push(p: &Pusher, repo: &str, seed: u8) {
    let big = noise(u64::from(seed), LAYER_MIB << 20);
    let base = p.blob(repo, GZIP, &tar_gz(&[("usr/lib/blob.bin", &big)]));
    let top = p.blob(
        repo,
        GZIP,
        &tar_gz(&[
            ("etc/passwd", b"app:x:1000:1000::/srv:/bin/sh\n"),
            ("etc/group", b"app:x:1000:\n"),
        ]),
    );
    let config = json!({"architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/app"], "User": "app"}, "rootfs": {"type": "layers", "diff_ids": []}});
    let c = p.blob(
        repo,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let m = json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": c, "layers": [base, top]});
    let mut d = p.manifest(
        repo,
        &Digest::sha256_of(m.to_string().as_bytes()).to_string(),
        MANIFEST,
        &m,
    );
    d["platform"] = json!({"os": "linux", "architecture": "amd64"});
    p.manifest(
        repo,
        "v1",
        INDEX,
        &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [d]}),
    );
}

fn generate(dir: &Path, addr: &str, cache: &Path) -> Duration {
    generate_images(dir, addr, cache, &["a", "b", "c"], &[])
}

fn generate_images(
    dir: &Path,
    addr: &str,
    cache: &Path,
    repos: &[&str],
    extra: &[&str],
) -> Duration {
    let yaml = dir.join("pod.yaml");
    let mut y =
        String::from("apiVersion: v1\nkind: Pod\nmetadata: {name: three}\nspec:\n  containers:\n");
    for r in repos {
        y.push_str(&format!(
            "  - {{name: c{r}, image: \"{addr}/bench/{r}:v1\"}}\n"
        ));
    }
    std::fs::write(&yaml, y).unwrap();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["policy", "generate", "-f"])
        .arg(&yaml)
        .arg("-o")
        .arg(dir.join("out.yaml"))
        .args(["--insecure-registry", addr, "--cache-dir"])
        .arg(cache)
        .args(extra)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// Text-like bytes (a 16-letter alphabet): gzip halves them, as it does
/// typical image content.
fn texty(seed: u8, len: usize) -> Vec<u8> {
    noise(u64::from(seed), len)
        .into_iter()
        .map(|b| b"etaoinshrdlucmfw"[usize::from(b & 15)])
        .collect()
}

/// An image of `layers` gzip layers of `mib` MiB (decompressed) each.
fn push_big(p: &Pusher, repo: &str, layers: usize, mib: usize) {
    let mut descs = vec![];
    let mut diff_ids = vec![];
    for i in 0..layers {
        let t = tar(&[(&format!("data/{i}.bin"), &texty(i as u8, mib << 20))]);
        diff_ids.push(Digest::sha256_of(&t).to_string());
        descs.push(p.blob(repo, GZIP, &gzip(&t)));
    }
    let config = json!({"architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/app"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let c = p.blob(
        repo,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let m = json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": c, "layers": descs});
    p.manifest(repo, "v1", MANIFEST, &m);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(bin) = registry_bin() else { return };
    let reg = start(&bin, None);
    let p = Pusher::new(&reg.addr, None);
    for (i, r) in ["a", "b", "c"].iter().enumerate() {
        push(&p, &format!("bench/{r}"), i as u8);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cold = vec![];
    let mut warm = vec![];
    for round in 0..5 {
        let cache = dir.path().join(format!("cache{round}"));
        cold.push(generate(dir.path(), &reg.addr, &cache));
        for _ in 0..5 {
            warm.push(generate(dir.path(), &reg.addr, &cache));
        }
    }
    // dm-verity: a 1 GiB image (4 layers of 256 MiB decompressed), cold.
    push_big(&p, "bench/big", 4, 256);
    let mut verity = vec![];
    for round in 0..3 {
        let cache = dir.path().join(format!("vcache{round}"));
        verity.push(generate_images(
            dir.path(),
            &reg.addr,
            &cache,
            &["big"],
            &["--layer-integrity", "dm-verity"],
        ));
    }
    println!(
        "policy generate --layer-integrity dm-verity, one image of 4 x 256 MiB (decompressed) layers, cold: median {:.2} s (of {})",
        median(verity.clone()).as_secs_f64(),
        verity.len()
    );
    println!(
        "policy generate, 3 images ({} MiB of layers each), local registry: cold median {:.1} ms (of {}), warm median {:.1} ms (of {})",
        2 * LAYER_MIB,
        median(cold.clone()).as_secs_f64() * 1e3,
        cold.len(),
        median(warm.clone()).as_secs_f64() * 1e3,
        warm.len()
    );
}
