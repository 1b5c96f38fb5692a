//! The environment a container will see, as far as the pod YAML decides
//! it: each variable's value exactly, as a pattern where Kubernetes fills
//! it in only at run time (the pod's IP, the node's name), or as a SHA-256
//! digest where it comes from a Secret, so that the policy, which the host
//! can read, pins the value without revealing it.
//!
//! Resolution follows the Kubernetes API (`EnvVar`, `EnvFromSource`):
//! `value`, `valueFrom` (`configMapKeyRef`, `secretKeyRef`, `fieldRef`,
//! `resourceFieldRef`) and `envFrom` with its `prefix`; later definitions
//! replace earlier ones; `$(NAME)` in a value refers to a variable defined
//! before it and `$$` is a literal `$` (kubelet's expansion rules,
//! `third_party/forked/golang/expansion`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::workload::Objects;

/// A value known only at run time, matched by a documented pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTime {
    /// An IPv4 or IPv6 address (`status.podIP`, `status.hostIP`).
    Ip,
    /// A comma-separated list of addresses (`status.podIPs`,
    /// `status.hostIPs`).
    IpList,
    /// A DNS-1123 name (`spec.nodeName`).
    NodeName,
    /// A UUID (`metadata.uid`).
    Uid,
    /// A non-negative integer (`resourceFieldRef` of a container without a
    /// set limit: the node's capacity).
    Quantity,
}

impl RunTime {
    /// The regular expression (RE2 syntax, unanchored) of the value.
    pub fn pattern(self) -> &'static str {
        match self {
            Self::Ip => r"[0-9A-Fa-f.:]{2,45}",
            Self::IpList => r"[0-9A-Fa-f.:]{2,45}(,[0-9A-Fa-f.:]{2,45})*",
            Self::NodeName => r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?",
            Self::Uid => r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            Self::Quantity => r"[0-9]+",
        }
    }
}

/// One piece of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    RunTime(RunTime),
}

/// What a variable must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Text and run-time pieces, in order (text only: an exact value).
    Parts(Vec<Part>),
    /// From a Secret: the SHA-256 (hex) of the value.
    Secret { sha256: String },
}

impl Expected {
    fn text(s: &str) -> Self {
        Self::Parts(vec![Part::Text(s.to_string())])
    }

    /// The exact value, when nothing about it waits for run time.
    pub fn exact(&self) -> Option<String> {
        match self {
            Self::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => Some(t.as_str()),
                    Part::RunTime(_) => None,
                })
                .collect(),
            Self::Secret { .. } => None,
        }
    }

    /// An anchored regular expression matching the value (`Parts` only).
    pub fn regex(&self) -> Option<String> {
        let Self::Parts(parts) = self else {
            return None;
        };
        let mut re = String::from("^");
        for p in parts {
            match p {
                Part::Text(t) => re.push_str(&regex_escape(t)),
                Part::RunTime(r) => {
                    re.push('(');
                    re.push_str(r.pattern());
                    re.push(')');
                }
            }
        }
        re.push('$');
        Some(re)
    }
}

/// Escape `s` for a regular expression (RE2).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Why a container's environment cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("{at}: {reason}")]
    Invalid { at: String, reason: String },
    /// A reference to a ConfigMap or Secret (or a key of one) that is not
    /// in the input and not optional.
    #[error("{at}: {kind} {namespace}/{name} {what} is not in the input (give it with -c, or mark the reference optional)")]
    Missing {
        at: String,
        kind: &'static str,
        namespace: String,
        name: String,
        what: String,
    },
}

/// The pod a container is in, for `fieldRef`.
pub struct PodFields<'a> {
    pub metadata: &'a Value,
    pub spec: &'a Value,
    pub namespace: &'a str,
}

/// The environment of `container` (at `at`, for messages), in order of
/// definition, later definitions replacing earlier ones in place.
pub fn resolve(
    container: &Value,
    at: &str,
    pod: &PodFields<'_>,
    objects: &Objects,
) -> Result<Vec<(String, Expected)>, EnvError> {
    let invalid = |at: String, reason: &str| EnvError::Invalid {
        at,
        reason: reason.to_string(),
    };
    let mut out: Vec<(String, Expected)> = Vec::new();
    let set = |out: &mut Vec<(String, Expected)>, name: String, v: Expected| match out
        .iter_mut()
        .find(|(n, _)| *n == name)
    {
        Some(slot) => slot.1 = v,
        None => out.push((name, v)),
    };
    // envFrom first: explicit env entries take precedence (the API says
    // so), which setting them afterwards gives.
    if let Some(list) = container.get("envFrom") {
        let list = list
            .as_array()
            .ok_or_else(|| invalid(format!("{at}/envFrom"), "not a sequence"))?;
        for (i, src) in list.iter().enumerate() {
            let here = format!("{at}/envFrom/{i}");
            let prefix = src.get("prefix").and_then(Value::as_str).unwrap_or("");
            let (kind, reference) = match (src.get("configMapRef"), src.get("secretRef")) {
                (Some(r), None) => ("ConfigMap", r),
                (None, Some(r)) => ("Secret", r),
                _ => {
                    return Err(invalid(
                        here,
                        "needs exactly one of configMapRef and secretRef",
                    ))
                }
            };
            let name = reference
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{here}/name"), "missing"))?;
            let optional = reference.get("optional").and_then(Value::as_bool) == Some(true);
            let key = (pod.namespace.to_string(), name.to_string());
            let data = if kind == "ConfigMap" {
                objects.config_maps.get(&key)
            } else {
                objects.secrets.get(&key)
            };
            let Some(data) = data else {
                if optional {
                    continue;
                }
                return Err(EnvError::Missing {
                    at: here,
                    kind,
                    namespace: pod.namespace.to_string(),
                    name: name.to_string(),
                    what: "itself".into(),
                });
            };
            for (k, v) in data {
                set(&mut out, format!("{prefix}{k}"), data_value(kind, v));
            }
        }
    }
    if let Some(list) = container.get("env") {
        let list = list
            .as_array()
            .ok_or_else(|| invalid(format!("{at}/env"), "not a sequence"))?;
        for (i, var) in list.iter().enumerate() {
            let here = format!("{at}/env/{i}");
            let name = var
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{here}/name"), "missing"))?;
            let v = match (var.get("value"), var.get("valueFrom")) {
                (Some(Value::String(s)), None) => expand(s, &out),
                (None, None) => Expected::text(""),
                (Some(_), None) => return Err(invalid(format!("{here}/value"), "not a string")),
                (None, Some(from)) => {
                    match value_from(from, &format!("{here}/valueFrom"), pod, objects)? {
                        Some(v) => v,
                        None => continue, // optional and absent: not set
                    }
                }
                (Some(_), Some(_)) => return Err(invalid(here, "has both value and valueFrom")),
            };
            set(&mut out, name.to_string(), v);
        }
    }
    Ok(out)
}

/// A ConfigMap value is pinned as is; a Secret's by its digest.
fn data_value(kind: &str, v: &[u8]) -> Expected {
    if kind == "Secret" {
        Expected::Secret {
            sha256: sha256_hex(v),
        }
    } else {
        Expected::text(&String::from_utf8_lossy(v))
    }
}

fn sha256_hex(v: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn value_from(
    from: &Value,
    at: &str,
    pod: &PodFields<'_>,
    objects: &Objects,
) -> Result<Option<Expected>, EnvError> {
    let invalid = |at: String, reason: String| EnvError::Invalid { at, reason };
    if let Some(r) = from
        .get("configMapKeyRef")
        .or_else(|| from.get("secretKeyRef"))
    {
        let kind = if from.get("configMapKeyRef").is_some() {
            "ConfigMap"
        } else {
            "Secret"
        };
        let get = |k: &str| r.get(k).and_then(Value::as_str);
        let (Some(name), Some(key)) = (get("name"), get("key")) else {
            return Err(invalid(at.to_string(), "needs name and key".into()));
        };
        let optional = r.get("optional").and_then(Value::as_bool) == Some(true);
        let v = if kind == "ConfigMap" {
            objects.config_map_value(pod.namespace, name, key)
        } else {
            objects.secret_value(pod.namespace, name, key)
        };
        return match v {
            Some(v) => Ok(Some(data_value(kind, v))),
            None if optional => Ok(None),
            None => Err(EnvError::Missing {
                at: at.to_string(),
                kind,
                namespace: pod.namespace.to_string(),
                name: name.to_string(),
                what: format!("key {key:?}"),
            }),
        };
    }
    if let Some(f) = from.get("fieldRef") {
        let path = f
            .get("fieldPath")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{at}/fieldRef"), "needs fieldPath".into()))?;
        return field(path, pod).map(Some).ok_or_else(|| {
            invalid(
                format!("{at}/fieldRef/fieldPath"),
                format!("{path:?} is not a field the downward API offers"),
            )
        });
    }
    if from.get("resourceFieldRef").is_some() {
        return Ok(Some(Expected::Parts(vec![Part::RunTime(
            RunTime::Quantity,
        )])));
    }
    Err(invalid(
        at.to_string(),
        "needs one of configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef".into(),
    ))
}

/// A downward-API field (`fieldRef.fieldPath`).
fn field(path: &str, pod: &PodFields<'_>) -> Option<Expected> {
    let meta = |k: &str| pod.metadata.get(k).and_then(Value::as_str);
    let run = |r| Some(Expected::Parts(vec![Part::RunTime(r)]));
    match path {
        "metadata.name" => Some(Expected::text(meta("name").unwrap_or(""))),
        "metadata.namespace" => Some(Expected::text(pod.namespace)),
        "metadata.uid" => run(RunTime::Uid),
        "spec.serviceAccountName" => Some(Expected::text(
            pod.spec
                .get("serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default"),
        )),
        "spec.nodeName" => run(RunTime::NodeName),
        "status.podIP" | "status.hostIP" => run(RunTime::Ip),
        "status.podIPs" | "status.hostIPs" => run(RunTime::IpList),
        _ => {
            // metadata.labels['k'] and metadata.annotations['k'].
            for (prefix, map) in [
                ("metadata.labels", "labels"),
                ("metadata.annotations", "annotations"),
            ] {
                if let Some(rest) = path.strip_prefix(prefix) {
                    let key = rest.strip_prefix("['")?.strip_suffix("']")?;
                    let v = pod.metadata.get(map)?.get(key)?.as_str()?;
                    return Some(Expected::text(v));
                }
            }
            None
        }
    }
}

/// Kubernetes' `$(NAME)` expansion against the variables defined so far.
pub fn expand(s: &str, defined: &[(String, Expected)]) -> Expected {
    let lookup: BTreeMap<&str, &Expected> = defined.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut parts: Vec<Part> = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            text.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup.get(name) {
                        Some(Expected::Parts(p)) => {
                            for part in p {
                                match part {
                                    Part::Text(t) => text.push_str(t),
                                    Part::RunTime(r) => {
                                        if !text.is_empty() {
                                            parts.push(Part::Text(std::mem::take(&mut text)));
                                        }
                                        parts.push(Part::RunTime(*r));
                                    }
                                }
                            }
                        }
                        // A Secret's value, or an unknown name: left as
                        // written (kubelet leaves unknown references).
                        _ => {
                            text.push_str("$(");
                            text.push_str(name);
                            text.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    text.push_str("$(");
                    rest = body;
                }
            }
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() || parts.is_empty() {
        parts.push(Part::Text(text));
    }
    Expected::Parts(parts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn objects() -> Objects {
        let mut o = Objects::default();
        o.add_yaml(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  A: one\n  B: two\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  pw: aHVudGVyMg==\n",
        )
        .unwrap();
        o
    }

    fn run(container: Value) -> Result<Vec<(String, Expected)>, EnvError> {
        let metadata = json!({"name": "p", "labels": {"app": "web"}});
        let spec = json!({"serviceAccountName": "sa"});
        let pod = PodFields {
            metadata: &metadata,
            spec: &spec,
            namespace: "default",
        };
        resolve(&container, "/spec/containers/0", &pod, &objects())
    }

    fn exact(v: &[(String, Expected)], name: &str) -> Option<String> {
        v.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, e)| e.exact())
    }

    #[test]
    fn values_references_and_the_downward_api() {
        let env = run(json!({
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
            "env": [
                {"name": "CM_A", "value": "override"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k", "optional": true}}},
                {"name": "GREETING", "value": "$(POD) at $(IP) costs $$5, $(NOPE)"}
            ]
        }))
        .unwrap();
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["CM_A", "CM_B", "POD", "APP", "SA", "IP", "PW", "GREETING"]
        );
        assert_eq!(exact(&env, "CM_A").as_deref(), Some("override"));
        assert_eq!(exact(&env, "CM_B").as_deref(), Some("two"));
        assert_eq!(exact(&env, "POD").as_deref(), Some("p"));
        assert_eq!(exact(&env, "APP").as_deref(), Some("web"));
        assert_eq!(exact(&env, "SA").as_deref(), Some("sa"));
        // Secrets are pinned by digest, never by value.
        assert_eq!(
            env[6].1,
            Expected::Secret {
                sha256: "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7".into()
            }
        );
        let greeting = &env[7].1;
        assert_eq!(greeting.exact(), None);
        let re = greeting.regex().unwrap();
        assert!(
            re.starts_with(r"^p at (") && re.ends_with(r") costs \$5, \$\(NOPE\)$"),
            "{re}"
        );
    }

    #[test]
    fn missing_references_and_bad_fields_are_named() {
        let e = run(json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}]}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/spec/containers/0/env/0/valueFrom: ConfigMap default/cm key \"zz\" is not in the input (give it with -c, or mark the reference optional)"
        );
        let e = run(json!({"envFrom": [{"secretRef": {"name": "other"}}]})).unwrap_err();
        assert!(matches!(e, EnvError::Missing { kind: "Secret", .. }), "{e}");
        let e = run(json!({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.secret"}}}]}))
            .unwrap_err();
        assert!(
            e.to_string().contains("\"spec.secret\" is not a field"),
            "{e}"
        );
        let e = run(json!({"env": [{"name": "X", "value": 3}]})).unwrap_err();
        assert!(e.to_string().ends_with("/env/0/value: not a string"), "{e}");
    }

    #[test]
    fn expansion_follows_kubelet() {
        let defined = vec![("A".to_string(), Expected::text("x"))];
        let cases = [
            ("$(A)", "x"),
            ("$$(A)", "$(A)"),
            ("$(B)", "$(B)"),
            ("a$b", "a$b"),
            ("$(A", "$(A"),
            ("$(A)$(A)", "xx"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(
                expand(input, &defined).exact().as_deref(),
                Some(want),
                "{input}"
            );
        }
    }
}
