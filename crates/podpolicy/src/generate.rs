//! The policy of one pod template: ward's rules (`rules/agent_policy.rego`)
//! followed by `policy_data`, the pod's sandbox and containers as its YAML,
//! its images and the settings define them.
//!
//! `policy_data` is built here and only here; the rules read it. Its JSON
//! is written with sorted keys and no insignificant whitespace, so the same
//! input gives byte-identical policy text on every machine.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Value};

use crate::container::{self, ContainerError, ImageConfig};
use crate::env::{self, regex_escape, EnvError, Expected, PodFields, RunTime};
use crate::fast;
use crate::settings::Settings;
use crate::workload::{Objects, PodTemplate, DEFAULT_NAMESPACE};

/// ward's rules, the first part of every policy.
pub const RULES: &str = include_str!("../rules/agent_policy.rego");

/// What the generator knows of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The reference the guest pulls: `repository@sha256:…`.
    pub pinned: String,
    /// Names the CRI may report in `io.kubernetes.cri.image-name` for it
    /// (as written in the YAML, normalised, by digest).
    pub names: Vec<String>,
    /// The reference as written when it names a tag and no digest: a pull
    /// by that name is allowed only with `allow_pull_by_tag`.
    pub floating: Option<String>,
    pub config: ImageConfig,
    /// The dm-verity root hashes (hex) of the image's layers, lowest
    /// first, for runtimes that mount layers as tarfs under dm-verity;
    /// empty when not asked for.
    pub layer_roots: Vec<String>,
}

impl ImageInfo {
    /// The names of an image written `written` in the YAML, which is
    /// `name` (registry and repository, normalised: `docker.io/library/…`
    /// for Docker Hub) with an optional `tag`, resolved to `digest`.
    pub fn new(
        written: &str,
        name: &str,
        tag: Option<&str>,
        digest: &str,
        config: ImageConfig,
    ) -> Self {
        let pinned = format!("{name}@{digest}");
        let mut names = BTreeSet::from([written.to_string(), pinned.clone()]);
        let written_digest = written.contains('@');
        if let Some(t) = tag {
            names.insert(format!("{name}:{t}"));
            names.insert(format!("{name}:{t}@{digest}"));
        }
        Self {
            pinned,
            names: names.into_iter().collect(),
            floating: (!written_digest).then(|| written.to_string()),
            config,
            layer_roots: vec![],
        }
    }
}

/// Choices of the workload owner beyond the YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Argument vectors `kubectl exec` may run in every container.
    pub allow_exec: Vec<Vec<String>>,
    /// Container logs (ReadStream) may be read by the host.
    pub allow_logs: bool,
    /// Accept fields the generator does not know instead of refusing them.
    pub allow_unknown_fields: bool,
}

/// Pod spec fields the generator reads, or that change nothing inside
/// the guest (scheduling, host-side settings).
const POD_FIELDS: [&str; 39] = [
    "activeDeadlineSeconds",
    "affinity",
    "automountServiceAccountToken",
    "containers",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "hostAliases",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "hostUsers",
    "hostname",
    "imagePullSecrets",
    "initContainers",
    "nodeName",
    "nodeSelector",
    "os",
    "overhead",
    "preemptionPolicy",
    "priority",
    "priorityClassName",
    "readinessGates",
    "resourceClaims",
    "resources",
    "restartPolicy",
    "runtimeClassName",
    "schedulerName",
    "schedulingGates",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "terminationGracePeriodSeconds",
    "tolerations",
    "topologySpreadConstraints",
    "volumes",
];

/// Container fields the generator reads, or that change nothing inside
/// the guest.
const CONTAINER_FIELDS: [&str; 23] = [
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "lifecycle",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "securityContext",
    "startupProbe",
    "stdin",
    "stdinOnce",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "tty",
    "volumeMounts",
    "workingDir",
];

/// A field of `v` (at `at`) not in `known`.
fn unknown_field(v: &Value, known: &[&str], at: &str) -> Result<(), GenerateError> {
    if let Some(o) = v.as_object() {
        if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(
                &format!("{at}/{k}"),
                "a field the policy generator does not support (--allow-unknown-fields to accept it)",
            ));
        }
    }
    Ok(())
}

/// Why a policy could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{at}: {reason}")]
    Invalid { at: String, reason: String },
    #[error("{at}: image {image:?} was not resolved")]
    MissingImage { at: String, image: String },
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("{at}: {source}")]
    Container {
        at: String,
        #[source]
        source: ContainerError,
    },
}

#[derive(Debug, Clone, Serialize)]
struct Mount {
    destination: String,
    #[serde(rename = "type")]
    kind: String,
    /// An anchored regular expression.
    source: String,
    options: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_options: Vec<String>,
}

/// The string field `key` of `v` (at `at`), which must be there.
fn required_str<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str, GenerateError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{at}/{key}"), "missing"))
}

fn invalid(at: &str, reason: impl Into<String>) -> GenerateError {
    GenerateError::Invalid {
        at: at.to_string(),
        reason: reason.into(),
    }
}

/// A name the host may give a file it shares for a container's volume:
/// `<shared prefix><bundle id>-<16 random characters>-<name>`.
fn shared_source(settings: &Settings, name: &str) -> String {
    format!(
        "^{}[A-Za-z0-9_.-]+-[0-9a-z]{{16}}-{}$",
        regex_escape(&settings.shared_files_prefix),
        regex_escape(name)
    )
}

fn bind(destination: &str, source: String, options: &[&str]) -> Mount {
    Mount {
        destination: destination.to_string(),
        kind: "bind".into(),
        source,
        options: options.iter().map(|s| s.to_string()).collect(),
        extra_options: vec![],
    }
}

fn expected_json(e: &Expected) -> Value {
    match (e.exact(), e.regex()) {
        (Some(s), _) => json!({ "exact": s }),
        (None, Some(r)) => json!({ "regex": r }),
        // A value from a Secret: any value (the policy is readable by
        // the host, so it never holds the secret).
        (None, None) => json!({ "regex": ".*" }),
    }
}

fn u32_of(v: Option<&Value>, at: &str) -> Result<Option<u32>, GenerateError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(at, format!("{v} is not a 32-bit id"))),
    }
}

/// The pod name as the policy matches it: the name itself; a name from
/// `generateName`; or, for a template of a controller, the names its pods
/// get (`<name>-<hash>-<suffix>`, `<name>-<ordinal>`, …).
fn name_pattern(t: &PodTemplate, metadata: &Value) -> String {
    let label = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
    if t.kind == "Pod" {
        if let Some(n) = metadata.get("name").and_then(Value::as_str) {
            return regex_escape(n);
        }
        if let Some(g) = metadata.get("generateName").and_then(Value::as_str) {
            return format!("{}[a-z0-9]+", regex_escape(g));
        }
        return label.into();
    }
    let base = regex_escape(&t.name);
    match t.kind.as_str() {
        "Deployment" => format!("{base}-[a-z0-9]+-[a-z0-9]+"),
        "StatefulSet" => format!("{base}-[0-9]+"),
        "CronJob" => format!("{base}-[0-9]+-[a-z0-9]+"),
        _ => format!("{base}-[a-z0-9]+"),
    }
}

/// Generate `policy_data` for the pod template `t` of `objects`.
pub fn policy_data(
    objects: &Objects,
    t: &PodTemplate,
    settings: &Settings,
    images: &BTreeMap<String, ImageInfo>,
    options: &Options,
) -> Result<Value, GenerateError> {
    let doc = &objects.documents[t.document].object;
    let template = t
        .in_document(doc)
        .ok_or_else(|| invalid(&t.pointer, "no pod template here"))?;
    let empty = json!({});
    let metadata = template.get("metadata").unwrap_or(&empty);
    let spec = template
        .get("spec")
        .ok_or_else(|| invalid(&format!("{}/spec", t.pointer), "missing"))?;
    let at = |p: &str| format!("{}/spec/{p}", t.pointer);

    if !options.allow_unknown_fields {
        unknown_field(spec, &POD_FIELDS, at("").trim_end_matches('/'))?;
        for list in ["initContainers", "containers"] {
            for (i, c) in spec
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                unknown_field(c, &CONTAINER_FIELDS, &at(&format!("{list}/{i}")))?;
            }
        }
    }
    if let Some(rc) = spec.get("runtimeClassName").and_then(Value::as_str) {
        if !settings.runtime_classes.iter().any(|c| c == rc) {
            return Err(invalid(
                &at("runtimeClassName"),
                format!(
                    "{rc:?} is not a confidential runtime class of these settings ({})",
                    settings.runtime_classes.join(", ")
                ),
            ));
        }
    }
    let psc = spec.get("securityContext");
    let share_pid = spec
        .get("shareProcessNamespace")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec.get(host).and_then(Value::as_bool) == Some(true) {
            return Err(invalid(
                &at(host),
                "a confidential pod cannot share the host's namespaces",
            ));
        }
    }
    let mut sysctls = BTreeMap::new();
    if let Some(list) = psc.and_then(|s| s.get("sysctls")).and_then(Value::as_array) {
        for (i, s) in list.iter().enumerate() {
            let name = s.get("name").and_then(Value::as_str);
            let value = match s.get("value") {
                Some(Value::String(v)) => Some(v.clone()),
                Some(v @ Value::Number(_)) => Some(v.to_string()),
                _ => None,
            };
            match (name, value) {
                (Some(n), Some(v)) => {
                    sysctls.insert(n.to_string(), v);
                }
                _ => {
                    return Err(invalid(
                        &at(&format!("securityContext/sysctls/{i}")),
                        "needs a name and a value",
                    ))
                }
            }
        }
    }
    let fs_group = u32_of(
        psc.and_then(|s| s.get("fsGroup")),
        &at("securityContext/fsGroup"),
    )?;
    // A pod whose YAML names no namespace may run in any: the policy
    // cannot know where `kubectl apply -n` puts it.
    let namespace = if doc.pointer("/metadata/namespace").is_some() {
        regex_escape(&t.namespace)
    } else {
        "[a-z0-9]([-a-z0-9]*[a-z0-9])?".into()
    };
    let volumes: BTreeMap<&str, &Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v.get("name")?.as_str()?, v)))
        .collect();
    let mount_sa = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .unwrap_or(true);

    let mut containers = vec![sandbox(settings, spec, share_pid)?];
    let pod_fields = PodFields {
        metadata,
        spec,
        namespace: if t.namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            &t.namespace
        },
    };
    for list in ["initContainers", "containers"] {
        let Some(items) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in items.iter().enumerate() {
            let cat = at(&format!("{list}/{i}"));
            containers.push(container(
                c,
                &cat,
                spec,
                &pod_fields,
                objects,
                settings,
                images,
                options,
                &volumes,
                mount_sa,
                share_pid,
            )?);
        }
    }
    if containers.len() == 1 {
        return Err(invalid(&at("containers"), "the pod has no containers"));
    }

    let name = name_pattern(t, metadata);
    let fast_name = if t.kind == "Pod" {
        let get = |k: &str| metadata.get(k).and_then(Value::as_str);
        fast::name_part("Pod", get("name"), get("generateName"))
    } else {
        fast::name_part(&t.kind, Some(&t.name), None)
    };
    let fast_settings = fast::settings_part(settings);
    for c in &mut containers {
        finish_container(c, settings, &name, &namespace);
        if fast_settings.is_some() {
            if let Some(f) = fast::container_part(c, settings, fast_name.as_ref(), &namespace) {
                c["fast"] = f;
            }
        }
    }
    let s = settings;
    Ok(json!({
        "version": 1,
        "allow_logs": options.allow_logs,
        "pod": {
            "name": name,
            "namespace": namespace,
            "sysctls": sysctls,
            "fs_group": fs_group,
            "share_pid": share_pid,
        },
        "patterns": { "uid": RunTime::Uid.pattern() },
        "settings": {
            "allowed_exec": s.allowed_exec,
            "apparmor_profiles": s.apparmor_profiles,
            "bundle_prefix": regex_escape(&s.bundle_prefix),
            "default_capabilities": s.default_capabilities,
            "env_pattern": one_regex(&s.env_patterns),
            "image_storage_driver": s.image_storage_driver,
            "interfaces": s.interfaces,
            "masked_paths": s.masked_paths,
            "readonly_paths": s.readonly_paths,
            "sandbox_sysctls": s.sandbox_sysctls,
            "shared_files_prefix": s.shared_files_prefix,
        },
        "containers": containers,
        "fast": fast_settings,
    }))
}

/// One anchored regular expression matching what any of `patterns`
/// (each anchored) matches; for none, one that matches nothing.
fn one_regex(patterns: &[String]) -> String {
    if patterns.is_empty() {
        return "a^".into();
    }
    let inner: Vec<&str> = patterns
        .iter()
        .map(|p| {
            // One anchor each: an escaped `\$` at the end stays.
            let p = p.strip_prefix('^').unwrap_or(p);
            p.strip_suffix('$').unwrap_or(p)
        })
        .collect();
    format!("^(?:{})$", inner.join("|"))
}

/// The parts of a container's entry that the rules look up by key: its
/// mounts by destination, its annotations with the value each may hold,
/// and its environment patterns as one expression.
fn finish_container(c: &mut Value, settings: &Settings, name: &str, namespace: &str) {
    let mounts: serde_json::Map<String, Value> = c["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["destination"].as_str().unwrap_or_default().to_string(),
                m.clone(),
            )
        })
        .collect();
    c["mounts"] = Value::Object(mounts);
    let patterns: Vec<String> = c["env_patterns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    c.as_object_mut().map(|o| o.remove("env_patterns"));
    c["env_pattern"] = Value::String(one_regex(&patterns));

    let re = |r: String| json!({ "regex": r });
    let uid = RunTime::Uid.pattern();
    let sandbox = c["kind"] == "sandbox";
    let mut a = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_string(), v);
    };
    put(
        "io.kubernetes.cri.container-type",
        json!({ "exact": c["kind"] }),
    );
    put(
        "io.katacontainers.pkg.oci.container_type",
        json!({ "exact": if sandbox { "pod_sandbox" } else { "pod_container" } }),
    );
    put("io.kubernetes.cri.sandbox-name", re(format!("^{name}$")));
    put(
        "io.kubernetes.cri.sandbox-namespace",
        re(format!("^{namespace}$")),
    );
    put("io.kubernetes.cri.sandbox-id", re("^[0-9a-z]{64}$".into()));
    put("io.kubernetes.cri.sandbox-uid", re(format!("^{uid}$")));
    put(
        "io.kubernetes.cri.sandbox-log-directory",
        re(format!("^/var/log/pods/{namespace}_{name}_{uid}$")),
    );
    put(
        "io.katacontainers.pkg.oci.bundle_path",
        re(format!(
            "^{}[A-Za-z0-9_.-]+$",
            regex_escape(&settings.bundle_prefix)
        )),
    );
    for k in ["cpu-period", "cpu-quota", "cpu-shares", "memory"] {
        put(
            &format!("io.kubernetes.cri.sandbox-{k}"),
            re("^[0-9]+$".into()),
        );
    }
    put(
        "nerdctl/network-namespace",
        re("^/var/run/netns/[A-Za-z0-9_-]+$".into()),
    );
    if sandbox {
        // Informational: the guest runs its own pause image.
        put(
            "io.kubernetes.cri.podsandbox.image-name",
            json!({ "any": true }),
        );
    } else {
        put(
            "io.kubernetes.cri.container-name",
            json!({ "exact": c["name"] }),
        );
        put(
            "io.kubernetes.cri.image-name",
            json!({ "one_of": c["image_names"] }),
        );
    }
    c["annotations"] = Value::Object(a);
}

fn capabilities(settings: &Settings, add: &[String], drop: &[String]) -> Value {
    let mut set: BTreeSet<String> = settings.default_capabilities.iter().cloned().collect();
    let all = drop.iter().any(|d| d == "ALL");
    if all {
        set.clear();
    }
    for d in drop {
        set.remove(&cap_name(d));
    }
    for a in add {
        if a == "ALL" {
            set.extend(settings.all_capabilities.iter().cloned());
        } else {
            set.insert(cap_name(a));
        }
    }
    let list: Vec<String> = set.into_iter().collect();
    json!({
        "Ambient": [],
        "Bounding": list,
        "Effective": list,
        "Inheritable": [],
        "Permitted": list,
    })
}

fn cap_name(c: &str) -> String {
    if c.starts_with("CAP_") {
        c.to_string()
    } else {
        format!("CAP_{}", c.to_ascii_uppercase())
    }
}

fn default_mounts(settings: &Settings, with_cgroup: bool) -> Vec<Mount> {
    settings
        .default_mounts
        .iter()
        .filter(|m| with_cgroup || m.kind != "cgroup")
        .map(|m| Mount {
            destination: m.destination.clone(),
            kind: m.kind.clone(),
            source: format!("^{}$", regex_escape(&m.source)),
            options: m.options.clone(),
            extra_options: m.extra_options.clone(),
        })
        .collect()
}

fn sandbox(settings: &Settings, spec: &Value, share_pid: bool) -> Result<Value, GenerateError> {
    let psc = spec.get("securityContext");
    let uid = u32_of(
        psc.and_then(|s| s.get("runAsUser")),
        "spec/securityContext/runAsUser",
    )?
    .unwrap_or(settings.pause_user);
    let gid = u32_of(
        psc.and_then(|s| s.get("runAsGroup")),
        "spec/securityContext/runAsGroup",
    )?
    .unwrap_or(settings.pause_user);
    let mut gids = BTreeSet::from([gid]);
    for g in psc
        .and_then(|s| s.get("supplementalGroups"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        gids.extend(u32_of(Some(g), "spec/securityContext/supplementalGroups")?);
    }
    let mut mounts = default_mounts(settings, false);
    mounts.push(bind(
        "/dev/shm",
        format!("^{}$", regex_escape(&settings.sandbox_shm)),
        &["rbind"],
    ));
    mounts.push(bind(
        "/etc/resolv.conf",
        shared_source(settings, "resolv.conf"),
        &["rbind", "ro", "nosuid", "nodev", "noexec"],
    ));
    Ok(json!({
        "kind": "sandbox",
        "name": "",
        "image_names": [],
        "pull_sources": [settings.sandbox_pull_source],
        "args": [{ "exact": "/pause" }],
        "env": { settings.default_path.clone(): true },
        "env_patterns": [],
        "cwd": "/",
        "user": { "uid": uid, "gid": gid, "additional_gids": gids },
        "no_new_privileges": true,
        "terminal": false,
        "readonly_root": true,
        "privileged": false,
        "share_pid": share_pid,
        "capabilities": capabilities(settings, &[], &[]),
        "mounts": mounts,
        "emptydirs": 0,
        "gpus": 0,
        "execs": [],
        "layer_roots": [],
    }))
}

#[allow(clippy::too_many_arguments)]
fn container(
    c: &Value,
    at: &str,
    spec: &Value,
    pod: &PodFields<'_>,
    objects: &Objects,
    settings: &Settings,
    images: &BTreeMap<String, ImageInfo>,
    options: &Options,
    volumes: &BTreeMap<&str, &Value>,
    mount_sa: bool,
    share_pid: bool,
) -> Result<Value, GenerateError> {
    let name = required_str(c, "name", at)?;
    let image_ref = required_str(c, "image", at)?;
    let image = images
        .get(image_ref)
        .ok_or_else(|| GenerateError::MissingImage {
            at: format!("{at}/image"),
            image: image_ref.to_string(),
        })?;
    let cfg = &image.config;
    let csc = c.get("securityContext");
    let flag = |k: &str| csc.and_then(|s| s.get(k)).and_then(Value::as_bool);
    let privileged = flag("privileged").unwrap_or(false);
    if privileged {
        return Err(invalid(
            &format!("{at}/securityContext/privileged"),
            "a privileged container can reach every device of the guest; ward does not generate a policy for it",
        ));
    }

    // Environment: the image's, then the pod's, then what the runtime adds.
    let defined = env::resolve(c, at, pod, objects)?;
    let mut env_exact: BTreeMap<String, bool> = BTreeMap::new();
    let mut env_patterns: Vec<String> = vec![];
    let mut has_path = false;
    for e in &cfg.env {
        has_path |= e.starts_with("PATH=");
        env_exact.insert(e.clone(), true);
    }
    if !has_path {
        env_exact.insert(settings.default_path.clone(), true);
    }
    for (n, v) in &defined {
        let prefix = format!("{n}=");
        match (v.exact(), v.regex()) {
            (Some(s), _) => {
                env_exact.insert(format!("{prefix}{s}"), true);
            }
            (None, Some(r)) => env_patterns.push(format!(
                "^{}{}",
                regex_escape(&prefix),
                r.strip_prefix('^').unwrap_or(&r)
            )),
            (None, None) => env_patterns.push(format!("^{}.*$", regex_escape(&prefix))),
        }
    }

    let args =
        container::args(c, at, cfg, &defined).map_err(|source| GenerateError::Container {
            at: at.to_string(),
            source,
        })?;
    if args.is_empty() {
        return Err(invalid(at, "neither the pod nor the image gives a command"));
    }
    let user = container::user(c, spec, cfg).map_err(|source| GenerateError::Container {
        at: at.to_string(),
        source,
    })?;
    let working_dir = c
        .get("workingDir")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            if cfg.working_dir.is_empty() {
                "/".into()
            } else {
                cfg.working_dir.clone()
            }
        });

    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let caps = csc.and_then(|s| s.get("capabilities"));
    let capabilities = capabilities(
        settings,
        &strings(caps.and_then(|c| c.get("add"))),
        &strings(caps.and_then(|c| c.get("drop"))),
    );

    // Mounts: the runtime's, the image's volumes, the pod's volumes.
    let mut mounts = default_mounts(settings, true);
    for (dest, file) in [
        ("/etc/hosts", "hosts"),
        ("/dev/termination-log", "termination-log"),
        ("/etc/hostname", "hostname"),
        ("/etc/resolv.conf", "resolv.conf"),
    ] {
        mounts.push(bind(
            dest,
            shared_source(settings, file),
            &["rbind", "rprivate", "rw"],
        ));
    }
    mounts.push(bind(
        "/dev/shm",
        format!("^{}$", regex_escape(&settings.sandbox_shm)),
        &["rbind"],
    ));
    if mount_sa {
        mounts.push(bind(
            "/var/run/secrets/kubernetes.io/serviceaccount",
            shared_source(settings, "serviceaccount"),
            &["rbind", "rprivate", "ro"],
        ));
    }
    for v in &cfg.volumes {
        let base = v.trim_end_matches('/').rsplit('/').next().unwrap_or(v);
        mounts.push(bind(
            v,
            shared_source(settings, base),
            &["rbind", "rprivate", "rw"],
        ));
    }
    let mut emptydirs = 0;
    for (i, vm) in c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let vat = format!("{at}/volumeMounts/{i}");
        let vname = required_str(vm, "name", &vat)?;
        let dest = required_str(vm, "mountPath", &vat)?;
        let ro = vm.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
        let vol = volumes.get(vname).ok_or_else(|| {
            invalid(
                &format!("{vat}/name"),
                format!("no volume {vname:?} in the pod"),
            )
        })?;
        let rw = if ro { "ro" } else { "rw" };
        let m = if vol.get("emptyDir").is_some() {
            emptydirs += 1;
            bind(
                dest,
                "^/run/kata-containers/sandbox/storage/[A-Za-z0-9+/]+=*$".into(),
                &["rbind", "rprivate", rw],
            )
        } else if ["configMap", "secret", "projected", "downwardAPI"]
            .iter()
            .any(|k| vol.get(k).is_some())
        {
            bind(
                dest,
                shared_source(settings, vname),
                &["rbind", "rprivate", "ro"],
            )
        } else if vol.get("hostPath").is_some() || vol.get("persistentVolumeClaim").is_some() {
            bind(
                dest,
                shared_source(settings, vname),
                &["rbind", "rprivate", rw],
            )
        } else {
            return Err(invalid(
                &format!("{vat}/name"),
                format!("volume {vname:?} is of a kind the policy generator does not support"),
            ));
        };
        mounts.push(m);
    }

    let gpus = c
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter(|(k, _)| k.starts_with("nvidia.com/"))
                .filter_map(|(_, v)| match v {
                    Value::String(s) => s.parse::<u64>().ok(),
                    v => v.as_u64(),
                })
                .sum::<u64>()
        })
        .unwrap_or(0);

    // Execs: the container's exec probes, and what the owner allowed.
    let mut execs: Vec<Vec<String>> = vec![];
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(cmd) = c
            .get(probe)
            .and_then(|p| p.get("exec"))
            .and_then(|e| e.get("command"))
        {
            execs.push(strings(Some(cmd)));
        }
    }
    if let Some(h) = c.get("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(cmd) = h
                .get(hook)
                .and_then(|p| p.get("exec"))
                .and_then(|e| e.get("command"))
            {
                execs.push(strings(Some(cmd)));
            }
        }
    }
    execs.extend(options.allow_exec.iter().cloned());

    let mut pull_sources = vec![image.pinned.clone()];
    if settings.allow_pull_by_tag {
        pull_sources.extend(image.floating.clone());
    }
    Ok(json!({
        "kind": "container",
        "name": name,
        "image_names": image.names,
        "pull_sources": pull_sources,
        "args": args.iter().map(expected_json).collect::<Vec<_>>(),
        "env": env_exact,
        "env_patterns": env_patterns,
        "cwd": working_dir,
        "user": {
            "uid": user.uid,
            "gid": user.gid,
            "additional_gids": user.additional_gids,
        },
        "no_new_privileges": flag("allowPrivilegeEscalation").map(|a| !a).unwrap_or(false),
        "terminal": c.get("tty").and_then(Value::as_bool).unwrap_or(false),
        "readonly_root": flag("readOnlyRootFilesystem").unwrap_or(false),
        "privileged": privileged,
        "share_pid": share_pid,
        "capabilities": capabilities,
        "mounts": mounts,
        "emptydirs": emptydirs,
        "gpus": gpus,
        "execs": execs,
        // Upper layer first, as an overlay lists its lower directories.
        "layer_roots": image.layer_roots.iter().rev().collect::<Vec<_>>(),
    }))
}

/// The policy text: the rules, then `policy_data`
/// ([`ward_proto::initdata::agent_policy_data`] reads it back).
pub fn policy_text(data: &Value) -> String {
    // serde_json's map is ordered (BTreeMap): keys come out sorted; one
    // member per line keeps every line short for the agent's limits.
    let body = serde_json::to_string_pretty(data).unwrap_or_default();
    format!("{RULES}\npolicy_data := {body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_regex_keeps_an_escaped_dollar_at_the_end() {
        let p = vec![r"^A=x\$$".to_string(), "^B=[0-9]+$".to_string()];
        assert_eq!(one_regex(&p), r"^(?:A=x\$|B=[0-9]+)$");
        assert_eq!(one_regex(&[]), "a^");
    }
}
