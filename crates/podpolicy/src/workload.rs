//! Kubernetes objects from multi-document YAML, the pod templates inside
//! them, and the ConfigMaps and Secrets their environment and volumes
//! refer to.
//!
//! Pod templates are found where the Kubernetes API puts them (API
//! reference, workloads): a `Pod` is its own template; `Deployment`,
//! `ReplicaSet`, `ReplicationController`, `StatefulSet`, `DaemonSet` and
//! `Job` hold one at `spec.template`; a `CronJob` at
//! `spec.jobTemplate.spec.template`; a `List` holds objects in `items`.
//! Other kinds pass through untouched.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// Why the YAML could not be read as Kubernetes objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// Not YAML, or YAML that is not a Kubernetes object; line and column
    /// are 1-based.
    #[error("{source_name}:{line}:{column}: {reason}")]
    Yaml {
        source_name: String,
        line: usize,
        column: usize,
        reason: String,
    },
    /// A document that is not a mapping with `apiVersion` and `kind`.
    #[error("{source_name}: document {document}: {reason}")]
    NotAnObject {
        source_name: String,
        document: usize,
        reason: String,
    },
    /// A field of an object does not have the shape the API gives it.
    #[error("{source_name}: document {document}: {path}: {reason}")]
    Field {
        source_name: String,
        document: usize,
        path: String,
        reason: String,
    },
}

/// One document of the input, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where it came from (a file name), for messages.
    pub source_name: String,
    /// Its position among the documents of that source, from 0.
    pub index: usize,
    pub object: Value,
}

/// A pod template found in a document.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTemplate {
    /// The document it is in (index into [`Objects::documents`]).
    pub document: usize,
    /// The kind of the object holding it, and that object's name.
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// JSON pointer (RFC 6901) of the template inside its document:
    /// empty for a Pod, `/spec/template` for a Deployment, …
    pub pointer: String,
}

impl PodTemplate {
    /// The template (`metadata` and `spec`) inside `doc`.
    pub fn in_document<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        doc.pointer(&self.pointer)
    }
}

/// The objects of one or more YAML inputs, with their pod templates and
/// the ConfigMaps and Secrets they define.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects {
    pub documents: Vec<Document>,
    pub templates: Vec<PodTemplate>,
    /// ConfigMap data by (namespace, name): `data` as is, `binaryData`
    /// decoded.
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// Secret data by (namespace, name): `data` decoded from base64,
    /// `stringData` as is.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
}

/// The namespace objects without one are in.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Kinds whose pod template is at `spec.template`.
const TEMPLATED: [&str; 6] = [
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "StatefulSet",
    "DaemonSet",
    "Job",
];

impl Objects {
    /// Read every document of `text` (named `source_name` in messages).
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), WorkloadError> {
        for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let object = Value::deserialize(de).map_err(|e| yaml_error(source_name, &e))?;
            if object.is_null() {
                // An empty document (`---` at the end, or only comments).
                continue;
            }
            self.add_object(source_name, index, object)?;
        }
        Ok(())
    }

    fn add_object(
        &mut self,
        source_name: &str,
        index: usize,
        object: Value,
    ) -> Result<(), WorkloadError> {
        let document = self.documents.len();
        let not_object = |reason: String| WorkloadError::NotAnObject {
            source_name: source_name.to_string(),
            document: index,
            reason,
        };
        let kind = match (object.get("apiVersion"), object.get("kind")) {
            (Some(Value::String(_)), Some(Value::String(k))) => k.clone(),
            _ if !object.is_object() => return Err(not_object("not a mapping".into())),
            _ => return Err(not_object("no apiVersion and kind strings".into())),
        };
        let field = |path: &str, reason: &str| WorkloadError::Field {
            source_name: source_name.to_string(),
            document: index,
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let mut found = Vec::new();
        collect_templates(&object, &kind, "", &mut found).map_err(|(p, r)| field(&p, &r))?;
        for (kind, pointer, meta) in found {
            let (name, namespace) = name_of(meta);
            self.templates.push(PodTemplate {
                document,
                kind,
                name,
                namespace,
                pointer,
            });
        }
        collect_data(&object, &kind, "", self).map_err(|(p, r)| field(&p, &r))?;
        self.documents.push(Document {
            source_name: source_name.to_string(),
            index,
            object,
        });
        Ok(())
    }

    /// The value of `key` in ConfigMap `name` of `namespace`.
    pub fn config_map_value(&self, namespace: &str, name: &str, key: &str) -> Option<&[u8]> {
        let m = self
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))?;
        m.get(key).map(Vec::as_slice)
    }

    /// The value of `key` in Secret `name` of `namespace`.
    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<&[u8]> {
        let m = self
            .secrets
            .get(&(namespace.to_string(), name.to_string()))?;
        m.get(key).map(Vec::as_slice)
    }
}

/// The error of serde_yaml_ng with its position (1-based), when it has one.
fn yaml_error(source_name: &str, e: &serde_yaml_ng::Error) -> WorkloadError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    WorkloadError::Yaml {
        source_name: source_name.to_string(),
        line,
        column,
        reason: e.to_string(),
    }
}

/// `metadata.name` (or `generateName`) and `metadata.namespace`.
fn name_of(meta: Option<&Value>) -> (String, String) {
    let get = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    let name = get("name").or_else(|| get("generateName")).unwrap_or("");
    let namespace = get("namespace").unwrap_or(DEFAULT_NAMESPACE);
    (name.to_string(), namespace.to_string())
}

type Found<'a> = Vec<(String, String, Option<&'a Value>)>;

/// Pod templates in `object` (of `kind`, at JSON pointer `at`): (kind of
/// the holder, pointer of the template, metadata naming it).
fn collect_templates<'a>(
    object: &'a Value,
    kind: &str,
    at: &str,
    out: &mut Found<'a>,
) -> Result<(), (String, String)> {
    let template_at = |pointer: &str| -> Result<String, (String, String)> {
        match object.pointer(pointer) {
            Some(Value::Object(t)) if t.get("spec").is_some_and(Value::is_object) => {
                Ok(format!("{at}{pointer}"))
            }
            Some(Value::Object(_)) => Err((
                format!("{at}{pointer}"),
                "a pod template needs a spec mapping".into(),
            )),
            Some(_) => Err((format!("{at}{pointer}"), "not a mapping".into())),
            None => Err((
                format!("{at}{pointer}"),
                format!("a {kind} needs a pod template"),
            )),
        }
    };
    match kind {
        "Pod" => {
            if !object.get("spec").is_some_and(Value::is_object) {
                return Err((format!("{at}/spec"), "a Pod needs a spec mapping".into()));
            }
            out.push((kind.into(), at.to_string(), object.get("metadata")));
        }
        k if TEMPLATED.contains(&k) => {
            out.push((
                kind.into(),
                template_at("/spec/template")?,
                object.get("metadata"),
            ));
        }
        "CronJob" => {
            let p = template_at("/spec/jobTemplate/spec/template")?;
            out.push((kind.into(), p, object.get("metadata")));
        }
        "List" => {
            let items = match object.get("items") {
                Some(Value::Array(items)) => items,
                None => return Ok(()),
                Some(_) => return Err((format!("{at}/items"), "not a sequence".into())),
            };
            for (i, item) in items.iter().enumerate() {
                let here = format!("{at}/items/{i}");
                let Some(k) = item.get("kind").and_then(Value::as_str) else {
                    return Err((here, "an item without a kind".into()));
                };
                collect_templates(item, k, &here, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// ConfigMaps and Secrets in `object` (Lists included) into `objects`.
fn collect_data(
    object: &Value,
    kind: &str,
    at: &str,
    objects: &mut Objects,
) -> Result<(), (String, String)> {
    match kind {
        "ConfigMap" | "Secret" => {
            let (name, namespace) = name_of(object.get("metadata"));
            let mut data = BTreeMap::new();
            let fields: [(&str, bool); 2] = if kind == "ConfigMap" {
                [("data", false), ("binaryData", true)]
            } else {
                [("data", true), ("stringData", false)]
            };
            for (field, base64) in fields {
                let Some(map) = object.get(field) else {
                    continue;
                };
                let map = map
                    .as_object()
                    .ok_or_else(|| (format!("{at}/{field}"), "not a mapping".to_string()))?;
                for (k, v) in map {
                    let here = || format!("{at}/{field}/{k}");
                    let text = v
                        .as_str()
                        .ok_or_else(|| (here(), "not a string".to_string()))?;
                    let bytes = if base64 {
                        base64::engine::general_purpose::STANDARD
                            .decode(text.trim())
                            .map_err(|e| (here(), format!("not base64: {e}")))?
                    } else {
                        text.as_bytes().to_vec()
                    };
                    data.insert(k.clone(), bytes);
                }
            }
            let map = if kind == "ConfigMap" {
                &mut objects.config_maps
            } else {
                &mut objects.secrets
            };
            map.insert((namespace, name), data);
        }
        "List" => {
            if let Some(Value::Array(items)) = object.get("items") {
                for (i, item) in items.iter().enumerate() {
                    if let Some(k) = item.get("kind").and_then(Value::as_str) {
                        collect_data(item, k, &format!("{at}/items/{i}"), objects)?;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Objects, WorkloadError> {
        let mut o = Objects::default();
        o.add_yaml("in.yaml", text)?;
        Ok(o)
    }

    const SPEC: &str = "spec:\n      containers:\n      - name: c\n        image: i\n";

    #[test]
    fn finds_the_pod_template_of_every_workload_kind() {
        let mut text = String::from(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n",
        );
        for kind in TEMPLATED {
            text.push_str(&format!(
                "---\napiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {kind}-x\n  namespace: ns\nspec:\n  template:\n    {SPEC}"
            ));
        }
        text.push_str("---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: cron\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: []\n");
        text.push_str("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n---\n");
        let o = read(&text).unwrap();
        assert_eq!(o.documents.len(), 9);
        let got: Vec<(&str, &str, &str, &str)> = o
            .templates
            .iter()
            .map(|t| {
                (
                    t.kind.as_str(),
                    t.name.as_str(),
                    t.namespace.as_str(),
                    t.pointer.as_str(),
                )
            })
            .collect();
        assert_eq!(got[0], ("Pod", "p", "default", ""));
        assert_eq!(
            got[1],
            ("Deployment", "Deployment-x", "ns", "/spec/template")
        );
        assert_eq!(got[6], ("Job", "Job-x", "ns", "/spec/template"));
        assert_eq!(
            got[7],
            (
                "CronJob",
                "cron",
                "default",
                "/spec/jobTemplate/spec/template"
            )
        );
        assert_eq!(got.len(), 8, "the Service has no template");
        let t = &o.templates[1];
        let spec = t.in_document(&o.documents[t.document].object).unwrap();
        assert_eq!(spec["spec"]["containers"][0]["image"], "i");
    }

    #[test]
    fn lists_hold_workloads_and_data() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: cm\n  data:\n    k: v\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    generateName: gen-\n  spec:\n    containers: []\n";
        let o = read(text).unwrap();
        assert_eq!(o.templates[0].pointer, "/items/1");
        assert_eq!(o.templates[0].name, "gen-");
        assert_eq!(o.config_map_value("default", "cm", "k"), Some(&b"v"[..]));
    }

    #[test]
    fn config_maps_are_literal_and_secrets_base64() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  key: YmFyCg==\nbinaryData:\n  bin: AAE=\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: prod\ndata:\n  key: YmFyCg==\nstringData:\n  plain: text\n";
        let o = read(text).unwrap();
        assert_eq!(
            o.config_map_value("default", "cm", "key"),
            Some(&b"YmFyCg=="[..])
        );
        assert_eq!(
            o.config_map_value("default", "cm", "bin"),
            Some(&[0u8, 1][..])
        );
        assert_eq!(o.secret_value("prod", "s", "key"), Some(&b"bar\n"[..]));
        assert_eq!(o.secret_value("prod", "s", "plain"), Some(&b"text"[..]));
        assert_eq!(o.secret_value("default", "s", "key"), None);
    }

    #[test]
    fn bad_input_is_named_with_its_place() {
        let e = read("apiVersion: v1\nkind: Pod\nspec: [\n").unwrap_err();
        assert!(
            matches!(&e, WorkloadError::Yaml { line, .. } if *line >= 3),
            "{e}"
        );
        assert!(e.to_string().starts_with("in.yaml:"), "{e}");
        let e = read("just text").unwrap_err();
        assert!(matches!(e, WorkloadError::NotAnObject { .. }), "{e}");
        let e = read("kind: Pod\nspec: {}\n").unwrap_err();
        assert!(e.to_string().contains("no apiVersion and kind"), "{e}");
        let e = read("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec: {}\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "in.yaml: document 0: /spec/template: a Deployment needs a pod template"
        );
        let e = read("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: '***'\n")
            .unwrap_err();
        assert!(e.to_string().contains("/data/k: not base64"), "{e}");
    }

    #[test]
    fn reads_the_generator_corpus() {
        let Some(dir) = ward_proto::testing::fixtures("kata-genpolicy/generate") else {
            return;
        };
        let d = dir.join("kata-genpolicy/generate");
        let mut o = Objects::default();
        for f in [
            "config_map.yaml",
            "secret.yaml",
            "pod_with_config_map_ref.yaml",
            "simple_pod.yaml",
        ] {
            let text = std::fs::read_to_string(d.join(f)).unwrap();
            o.add_yaml(f, &text).unwrap();
        }
        let names: Vec<&str> = o.templates.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"one-container-config-map"), "{names:?}");
        assert!(names.contains(&"one-container-secret"), "{names:?}");
        assert_eq!(
            o.config_map_value("default", "configmap-sample", "key"),
            Some(&b"YmFyCg=="[..])
        );
        assert_eq!(
            o.secret_value("default", "secret-sample", "key"),
            Some(&b"bar\n"[..])
        );
    }
}
