//! Helpers shared by the CLI's integration tests.

pub mod kbs;

use std::path::Path;

use serde_json::{json, Value};

/// An OCI image layout holding one image tagged `tag` with `config`;
/// returns the manifest digest.
#[allow(dead_code)] // not every test file uses it
pub fn write_layout(dir: &Path, tag: &str, config: Value) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let h = hex::encode(ward_proto::hash::sha256(b));
        std::fs::write(blobs.join(&h), b).unwrap();
        json!({"digest": format!("sha256:{h}"), "size": b.len()})
    };
    let layer = put(&[0u8; 1024]);
    let mut cfg = put(&serde_json::to_vec(
        &json!({"architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}),
    )
    .unwrap());
    cfg["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let mut l = layer.clone();
    l["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
    let mut m = put(&serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg, "layers": [l]}))
    .unwrap());
    m["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    m["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [m]}).to_string(),
    )
    .unwrap();
    m["digest"].as_str().unwrap().to_string()
}
