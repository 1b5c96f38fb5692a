//! What the policy assumes about the cluster and the runtime: the pause
//! image, runtime class names, the CRI annotations containerd sets, the
//! capabilities, masked paths and mounts it gives every container, and
//! commands allowed for exec. The built-in default matches containerd with
//! the Kata runtime pulling images in the guest (`image_guest_pull`).
//!
//! A settings file (JSON or TOML) replaces the default; drop-in files
//! (`*.json`, `*.toml`, applied in name order) are JSON merge patches
//! (RFC 7386) over it, so a site changes one field without restating the
//! rest.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

const DEFAULT: &str = include_str!("../settings/default.json");

/// The generator settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The sandbox (pause) container's image.
    pub pause_image: String,
    /// `runtimeClassName`s of confidential pods; a pod naming another is
    /// refused by the generator.
    pub runtime_classes: Vec<String>,
    /// Capabilities containerd gives a container that asks for none.
    pub default_capabilities: Vec<String>,
    /// The `PATH` entry the runtime adds when the image has none.
    pub default_path: String,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// Mounts every container gets.
    pub default_mounts: Vec<Mount>,
    /// Where the agent keeps files shared from the host (CopyFile targets).
    pub shared_files_prefix: String,
    /// The sandbox's shared memory, bind-mounted at `/dev/shm`.
    pub sandbox_shm: String,
    /// The storage driver of guest-pulled images.
    pub image_storage_driver: String,
    /// Annotations the CRI sets, which the policy lets through.
    pub cri_annotations: CriAnnotations,
    /// Commands (argument vectors) exec may run in any container, beside
    /// the pod's probes.
    pub allowed_exec: Vec<Vec<String>>,
    /// Every capability the kernel knows, for `add: [ALL]`.
    pub all_capabilities: Vec<String>,
    /// The user and group of the pause image.
    pub pause_user: u32,
    /// The storage source of the sandbox's pause image (the guest's own).
    pub sandbox_pull_source: String,
    /// Where the runtime keeps container bundles on the host; the bundle
    /// ID is the rest of `io.katacontainers.pkg.oci.bundle_path`.
    pub bundle_prefix: String,
    /// AppArmor profiles the CRI names (the guest enforces none).
    pub apparmor_profiles: Vec<String>,
    /// Variables Kubernetes injects (service links), as anchored regular
    /// expressions over `NAME=value`.
    pub env_patterns: Vec<String>,
    /// Interfaces the host may configure, route through and add
    /// neighbours on.
    pub interfaces: Vec<String>,
    /// Sysctls containerd sets on every sandbox.
    pub sandbox_sysctls: std::collections::BTreeMap<String, String>,
    /// Allow the guest to pull an image by the tag the YAML names, beside
    /// the digest it was resolved to. Off by default: a tag can be moved
    /// after the policy was made. Kata's genpolicy allows it.
    pub allow_pull_by_tag: bool,
}

/// One mount of the OCI spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
    /// Options the runtime may add (e.g. `nsdelegate` on cgroup2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_options: Vec<String>,
}

/// CRI annotation names of sandboxes and of containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriAnnotations {
    pub sandbox: Vec<String>,
    pub container: Vec<String>,
}

/// Why settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// Not JSON/TOML, or fields this build does not know.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

impl Default for Settings {
    fn default() -> Self {
        // Checked by a test: the embedded default always parses.
        serde_json::from_str(DEFAULT).unwrap_or_else(|e| panic!("built-in settings: {e}"))
    }
}

/// A settings document (JSON, or TOML by extension) as a JSON value.
fn read_value(path: &Path) -> Result<Value, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| SettingsError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    if path.extension().is_some_and(|e| e == "toml") {
        let v: toml::Value = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        serde_json::to_value(v).map_err(|e| invalid(e.to_string()))
    } else {
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))
    }
}

/// RFC 7386: `patch` merged into `target` (null removes a member).
fn merge_patch(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge_patch(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

impl Settings {
    /// `base` (a settings file, else the built-in default), then the
    /// drop-ins of `drop_in_dir` in name order.
    pub fn load(base: Option<&Path>, drop_in_dir: Option<&Path>) -> Result<Self, SettingsError> {
        let mut v = match base {
            Some(p) => read_value(p)?,
            None => serde_json::from_str(DEFAULT).map_err(|e| SettingsError::Invalid {
                path: "built-in settings".into(),
                reason: e.to_string(),
            })?,
        };
        let mut last = base.map(Path::to_path_buf).unwrap_or_default();
        if let Some(dir) = drop_in_dir {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| SettingsError::Read {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "toml"))
                .collect();
            files.sort();
            for f in files {
                merge_patch(&mut v, read_value(&f)?);
                last = f;
            }
        }
        serde_json::from_value(v).map_err(|e| SettingsError::Invalid {
            path: last,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_default_is_containerd_with_guest_pull() {
        let s = Settings::default();
        assert_eq!(s.image_storage_driver, "image_guest_pull");
        assert_eq!(s.default_capabilities.len(), 14);
        assert!(s.runtime_classes.iter().any(|r| r == "kata-cc"));
        assert_eq!(s, Settings::load(None, None).unwrap());
    }

    #[test]
    fn drop_ins_patch_the_base_in_name_order_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("10-pause.json"),
            r#"{"pause_image": "example.com/pause:1"}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("20-exec.toml"),
            "allowed_exec = [[\"/bin/sh\", \"-c\", \"true\"]]\npause_image = \"example.com/pause:2\"\n",
        )
        .unwrap();
        std::fs::write(d.join("README"), "ignored").unwrap();
        let s = Settings::load(None, Some(d)).unwrap();
        assert_eq!(s.pause_image, "example.com/pause:2");
        assert_eq!(s.allowed_exec, vec![vec!["/bin/sh", "-c", "true"]]);
        assert_eq!(s.masked_paths, Settings::default().masked_paths);

        std::fs::write(d.join("30-typo.json"), r#"{"pause_imag": "x"}"#).unwrap();
        let e = Settings::load(None, Some(d)).unwrap_err().to_string();
        assert!(
            e.contains("30-typo.json") && e.contains("pause_imag"),
            "{e}"
        );
        std::fs::write(d.join("30-typo.json"), "{").unwrap();
        let e = Settings::load(None, Some(d)).unwrap_err();
        assert!(matches!(e, SettingsError::Invalid { .. }), "{e}");
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // RFC 7386, appendix A (a few of its cases).
        let cases = [
            (r#"{"a":"b"}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (r#"{"a":"b"}"#, r#"{"b":"c"}"#, r#"{"a":"b","b":"c"}"#),
            (r#"{"a":"b"}"#, r#"{"a":null}"#, r#"{}"#),
            (r#"{"a":["b"]}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (
                r#"{"a":{"b":"c"}}"#,
                r#"{"a":{"b":"d","c":null}}"#,
                r#"{"a":{"b":"d"}}"#,
            ),
            (r#"["a","b"]"#, r#"["c","d"]"#, r#"["c","d"]"#),
        ];
        for (t, p, want) in cases {
            let mut t: Value = serde_json::from_str(t).unwrap();
            merge_patch(&mut t, serde_json::from_str(p).unwrap());
            assert_eq!(t, serde_json::from_str::<Value>(want).unwrap(), "{p}");
        }
    }
}
