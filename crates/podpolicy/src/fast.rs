//! The regex-free entries of `policy_data` that the rules' CreateContainer
//! fast path reads (`fast`, beside the settings and in each application
//! container).
//!
//! Every value the fast path accepts with these entries must be one the
//! full rules accept with the patterns next to them. So each entry is made
//! only where that holds by construction: a mount source is taken over
//! only when it is the escaped literal or the shared-file pattern the
//! generator itself writes (checked by writing it again), a pod name only
//! in the forms [`crate::generate`] gives it, and the environment only
//! when the settings hold the default patterns the fast path's host name
//! and `kubernetes` service variables match. Anything else has no `fast`
//! entry, and the full rules decide.

use serde_json::{json, Value};

use crate::env::regex_escape;
use crate::settings::Settings;

const ALNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const DIGITS: &str = "0123456789";

/// What stands for the random part of a shared file's name once checked:
/// `<prefix>B-0000000000000000`, itself a name the full rules accept.
fn shared_fixed(settings: &Settings) -> String {
    format!("{}B-0000000000000000", settings.shared_files_prefix)
}

/// The settings' part, or `None` when the settings lack a default
/// environment pattern the fast path relies on.
pub(crate) fn settings_part(s: &Settings) -> Option<Value> {
    let defaults = Settings::default().env_patterns;
    if !defaults.iter().all(|p| s.env_patterns.contains(p)) {
        return None;
    }
    let set = |v: &[String]| -> Value {
        Value::Object(v.iter().map(|p| (p.clone(), Value::Bool(true))).collect())
    };
    Some(json!({
        "bundle_prefix": s.bundle_prefix,
        "shared_prefix": s.shared_files_prefix,
        "shared_fixed": shared_fixed(s),
        "masked_paths": set(&s.masked_paths),
        "readonly_paths": set(&s.readonly_paths),
        "apparmor_profiles": s.apparmor_profiles,
        "image_storage_driver": s.image_storage_driver,
        "pull_prefix": format!("{}=", s.image_storage_driver),
    }))
}

/// How the fast path matches the pod's name: `{"base", "parts"}`, the name
/// being `base` (no parts) or `base` followed by `-`-separated non-empty
/// parts of the listed characters. `None` for a name the rules match with
/// any DNS label. Only names that are also host names (the fast path
/// allows `HOSTNAME=<name>`) get one.
pub(crate) fn name_part(
    kind: &str,
    name: Option<&str>,
    generate_name: Option<&str>,
) -> Option<Value> {
    let (base, parts): (String, Vec<&str>) = match kind {
        "Pod" => match (name, generate_name) {
            (Some(n), _) => (n.to_string(), vec![]),
            (None, Some(g)) => (g.to_string(), vec![ALNUM]),
            _ => return None,
        },
        _ => {
            let base = format!("{}-", name?);
            let parts = match kind {
                "Deployment" => vec![ALNUM, ALNUM],
                "StatefulSet" => vec![DIGITS],
                "CronJob" => vec![DIGITS, ALNUM],
                _ => vec![ALNUM],
            };
            (base, parts)
        }
    };
    let host_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let alnum_at = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !host_chars(&base) || !alnum_at(base.bytes().next()) {
        return None;
    }
    // A name of no parts is the base; otherwise its parts (checked by the
    // rules, with its length) end it.
    if parts.is_empty() && (!alnum_at(base.bytes().last()) || base.len() > 253) {
        return None;
    }
    Some(json!({ "base": base, "parts": parts }))
}

/// A container's part, or `None` for a container the fast path does not
/// decide (the pause container, GPUs, emptyDir volumes, dm-verity layers,
/// environment from patterns, or a mount source of another form).
pub(crate) fn container_part(
    c: &Value,
    settings: &Settings,
    name: Option<&Value>,
    namespace: &str,
) -> Option<Value> {
    let name = name?;
    let zero = |k: &str| c[k].as_u64() == Some(0);
    if c["kind"] != "container" || !zero("gpus") || !zero("emptydirs") {
        return None;
    }
    if c["layer_roots"].as_array().is_none_or(|l| !l.is_empty()) || c["env_pattern"] != "a^" {
        return None;
    }
    let fixed = shared_fixed(settings);
    let mut mounts = vec![];
    let mut plain_mounts = vec![];
    let mut shared = vec![];
    let mut sources = vec![];
    // Keyed by destination: sorted as the fast path sorts the request's.
    for (i, (dest, m)) in c["mounts"].as_object()?.iter().enumerate() {
        let source = m["source"].as_str()?;
        let plain = match shared_name(settings, source) {
            Some(file) => {
                shared.push(i);
                format!("{fixed}-{file}")
            }
            None => {
                let p = literal(source)?;
                if p.contains(&settings.shared_files_prefix) {
                    return None;
                }
                p
            }
        };
        if plain.contains('\n') {
            return None;
        }
        sources.push(plain);
        let options: Vec<Value> = m["options"].as_array()?.clone();
        let extra = m["extra_options"].as_array().cloned().unwrap_or_default();
        plain_mounts.push(json!([dest, m["type"], options]));
        let mut with_extra = options;
        with_extra.extend(extra);
        mounts.push(json!([dest, m["type"], with_extra]));
    }
    // The mounts with the options the runtime may add, and (if any) without.
    let mut forms = vec![Value::Array(mounts)];
    if forms[0] != Value::Array(plain_mounts.clone()) {
        forms.push(Value::Array(plain_mounts));
    }
    let env: serde_json::Map<String, Value> = c["env"]
        .as_object()?
        .keys()
        .map(|k| (k.clone(), Value::Bool(true)))
        .collect();
    let namespace = match literal(&format!("^{namespace}$")) {
        Some(ns) => ns,
        None if namespace == "[a-z0-9]([-a-z0-9]*[a-z0-9])?" => String::new(),
        None => return None,
    };
    Some(json!({
        "name": name,
        "namespace": namespace,
        "env": env,
        "mounts": forms,
        "shared": shared,
        "sources": sources.join("\n"),
    }))
}

/// The file name of a shared-file source pattern as
/// `generate::shared_source` writes it.
fn shared_name(settings: &Settings, pattern: &str) -> Option<String> {
    let head = format!(
        "^{}[A-Za-z0-9_.-]+-[0-9a-z]{{16}}-",
        regex_escape(&settings.shared_files_prefix)
    );
    let file = unescape(pattern.strip_prefix(&head)?.strip_suffix('$')?)?;
    (format!("{head}{}$", regex_escape(&file)) == pattern && !file.contains('/')).then_some(file)
}

/// The string an anchored pattern of one escaped literal matches.
fn literal(pattern: &str) -> Option<String> {
    let inner = unescape(pattern.strip_prefix('^')?.strip_suffix('$')?)?;
    (format!("^{}$", regex_escape(&inner)) == pattern).then_some(inner)
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        out.push(if ch == '\\' { chars.next()? } else { ch });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_escaped_literals_and_the_generators_shared_pattern_are_taken_over() {
        let s = Settings::default();
        assert_eq!(
            literal(r"^/run/kata\-containers/sandbox/shm$").as_deref(),
            Some("/run/kata-containers/sandbox/shm")
        );
        assert_eq!(literal("^tmpfs$").as_deref(), Some("tmpfs"));
        for pattern in ["^a.b$", "^[0-9]+$", "^a$b$", "tmpfs", r"^a\$"] {
            assert_eq!(literal(pattern), None, "{pattern}");
        }
        let p = format!(
            "^{}[A-Za-z0-9_.-]+-[0-9a-z]{{16}}-resolv\\.conf$",
            regex_escape(&s.shared_files_prefix)
        );
        assert_eq!(shared_name(&s, &p).as_deref(), Some("resolv.conf"));
        assert_eq!(shared_name(&s, &p.replace("{16}", "{8}")), None);
        assert_eq!(
            shared_name(&s, &p.replace(r"resolv\.conf", "resolv.conf")),
            None
        );
    }

    #[test]
    fn pod_names_get_a_fast_form_only_where_it_is_also_a_host_name() {
        assert_eq!(
            name_part("Pod", Some("app"), None),
            Some(json!({"base": "app", "parts": []}))
        );
        assert_eq!(
            name_part("Deployment", Some("web"), None),
            Some(json!({"base": "web-", "parts": [ALNUM, ALNUM]}))
        );
        assert_eq!(name_part("Pod", Some("App"), None), None);
        assert_eq!(name_part("Pod", Some("app-"), None), None);
        assert_eq!(name_part("Pod", None, None), None);
        assert_eq!(
            name_part("Deployment", Some("my-web"), None),
            Some(json!({"base": "my-web-", "parts": [ALNUM, ALNUM]}))
        );
        assert_eq!(name_part("Pod", Some(&"a".repeat(254)), None), None);
        assert_eq!(
            name_part("Pod", None, Some("job-")),
            Some(json!({"base": "job-", "parts": [ALNUM]}))
        );
    }
}
