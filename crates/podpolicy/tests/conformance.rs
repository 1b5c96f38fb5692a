//! The Kata policy generator's conformance corpus
//! (`../shared/fixtures/kata-genpolicy/policy`): for each case directory,
//! a policy is generated from its `pod.yaml` with the default settings and
//! its requests are decided in order against one engine, as the agent
//! would, each with the verdict upstream expects.
//!
//! No registry is reachable here, so the images' metadata comes from an
//! offline table ([`images`]): exactly what the corpus' allowed requests
//! show of each image (Entrypoint/Cmd, Env, WorkingDir, Volumes, the users
//! and groups), with digests as the pod YAMLs pin them (for images the
//! YAML names by tag only, a digest made up for the test: no request of
//! the corpus names it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use ward_podpolicy::container::{parse_group, parse_passwd, ImageConfig};
use ward_podpolicy::engine::AgentPolicy;
use ward_podpolicy::generate::{self, ImageInfo, Options};
use ward_podpolicy::{Objects, Settings};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn config(
    entrypoint: &[&str],
    cmd: &[&str],
    env: &[&str],
    wd: &str,
    volumes: &[&str],
) -> ImageConfig {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    ImageConfig {
        entrypoint: s(entrypoint),
        cmd: s(cmd),
        env: s(env),
        working_dir: wd.into(),
        volumes: s(volumes),
        ..Default::default()
    }
}

/// The images the corpus' pods name, as its allowed requests show them.
pub fn images() -> BTreeMap<String, ImageInfo> {
    let pause = "sha256:3d380ca8864549e74af4b29c10f9cb0956236dfb01c40ca076fb6c37253234db";
    let gid = "sha256:bdbb485bb9e3baf381a2957b9369b6051c6113097a5f8dcee27faff17624a2c0";
    let made_up = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
    let redis = config(
        &["/usr/bin/entrypoint.sh"],
        &[],
        &[PATH, "REDIS_PORT=6379"],
        "/data",
        &["/data", "/node-conf"],
    );
    let mut gid_config = config(&["/entrypoint.sh"], &[], &[PATH], "", &[]);
    gid_config.passwd =
        parse_passwd("root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:2:daemon:/:/sbin/nologin\n");
    gid_config.group = parse_group("root:x:0:\nbin:x:1:\ndaemon:x:2:\n");
    let list = [
        ImageInfo::new(
            &format!("registry.k8s.io/pause:3.6@{pause}"),
            "registry.k8s.io/pause",
            Some("3.6"),
            pause,
            config(&["/pause"], &[], &[PATH], "", &[]),
        ),
        ImageInfo::new(
            &format!("ghcr.io/burgerdev/weird-images/gid:latest@{gid}"),
            "ghcr.io/burgerdev/weird-images/gid",
            Some("latest"),
            gid,
            gid_config,
        ),
        ImageInfo::new("quay.io/opstree/redis", "quay.io/opstree/redis", Some("latest"), &made_up(1), redis.clone()),
        ImageInfo::new(
            "quay.io/kata-containers/test-images/opstree/redis:sha256-2642c7b07713df6897fa88cbe6db85170690cf3650018ceb2ab16cfa0b4f8d48",
            "quay.io/kata-containers/test-images/opstree/redis",
            Some("sha256-2642c7b07713df6897fa88cbe6db85170690cf3650018ceb2ab16cfa0b4f8d48"),
            &made_up(2),
            redis,
        ),
        ImageInfo::new(
            "quay.io/prometheus/busybox:latest",
            "quay.io/prometheus/busybox",
            Some("latest"),
            &made_up(3),
            config(&[], &["sh"], &[PATH], "", &[]),
        ),
    ];
    list.into_iter()
        .map(|i| {
            (
                i.names
                    .iter()
                    .find(|n| !n.contains("docker.io"))
                    .cloned()
                    .unwrap_or_default(),
                i,
            )
        })
        .flat_map(|(_, i)| i.names.clone().into_iter().map(move |n| (n, i.clone())))
        .collect()
}

fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("testcases.json").exists() {
            out.push(d.clone());
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The policy text for the pod of `dir`, with `settings`.
pub fn policy_for(dir: &Path, settings: &Settings) -> String {
    let mut objects = Objects::default();
    for f in ["pod.yaml", "config_map.yaml"] {
        let p = dir.join(f);
        if p.exists() {
            objects
                .add_yaml(f, &std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
    assert_eq!(objects.templates.len(), 1, "{}", dir.display());
    let data = generate::policy_data(
        &objects,
        &objects.templates[0],
        settings,
        &images(),
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    generate::policy_text(&data)
}

/// The settings the corpus is evaluated with: the defaults, but with
/// guest pulls by tag allowed as upstream allows them (one case pulls
/// `busybox:latest`); [`pull_by_tag_is_refused_by_default`] shows ward's
/// default refusing it.
fn corpus_settings() -> Settings {
    Settings {
        allow_pull_by_tag: true,
        ..Settings::default()
    }
}

#[test]
fn every_case_of_the_corpus_gets_upstreams_verdict() {
    let Some(fx) = ward_proto::testing::fixtures("kata-genpolicy") else {
        return;
    };
    let root = fx.join("kata-genpolicy/policy");
    let settings = corpus_settings();
    let mut total = 0;
    let mut wrong = vec![];
    for dir in case_dirs(&root) {
        let text = policy_for(&dir, &settings);
        let mut policy =
            AgentPolicy::new(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("testcases.json")).unwrap())
                .unwrap();
        for case in cases {
            total += 1;
            let kind = case["kind"].as_str().unwrap();
            let want = case["allowed"].as_bool().unwrap();
            let d = policy.check(kind, &case["request"]).unwrap();
            if std::env::var_os("WARD_SHOW_DENIALS").is_some() && !d.allowed {
                eprintln!(
                    "{} / {}: {}",
                    dir.display(),
                    case["description"],
                    serde_json::to_string(&d.violations).unwrap()
                );
            }
            if d.allowed != want {
                wrong.push(format!(
                    "{} / {}: expected {want}, got {} {}",
                    dir.strip_prefix(&root).unwrap().display(),
                    case["description"].as_str().unwrap_or(""),
                    d.allowed,
                    serde_json::to_string(&d.violations).unwrap()
                ));
            }
        }
    }
    assert_eq!(total, 108, "the corpus has 108 cases");
    assert!(
        wrong.is_empty(),
        "{} of {total} cases differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// One security-relevant change to an allowed CreateContainer request, and
/// the field a refusal must name.
fn mutations(req: &Value) -> Vec<(&'static str, Value, &'static str)> {
    let mut out = vec![];
    let is_container = req["OCI"]["Annotations"]["io.kubernetes.cri.container-type"] == "container";
    let other = format!("sha256:{}", "ee".repeat(32));
    if is_container {
        let mut r = req.clone();
        let pulled = r
            .get_mut("storages")
            .and_then(Value::as_array_mut)
            .and_then(|s| s.iter_mut().find(|s| s["driver"] == "image_guest_pull"));
        if let Some(s) = pulled {
            let src = s["source"].as_str().unwrap().to_string();
            let name = src.split('@').next().unwrap().to_string();
            s["source"] = Value::String(format!("{name}@{other}"));
            out.push(("another image digest", r, "storages[0]"));
        } else {
            r["OCI"]["Annotations"]["io.kubernetes.cri.image-name"] =
                Value::String(format!("quay.io/evil/image@{other}"));
            out.push((
                "another image digest",
                r,
                "OCI.Annotations[io.kubernetes.cri.image-name]",
            ));
        }
    }
    let mut r = req.clone();
    match r["OCI"]["Process"]
        .get_mut("Env")
        .and_then(Value::as_array_mut)
    {
        Some(env) => env.push(Value::String("LD_PRELOAD=/tmp/evil.so".into())),
        None => r["OCI"]["Process"]["Env"] = serde_json::json!(["LD_PRELOAD=/tmp/evil.so"]),
    }
    out.push(("an extra env var", r, "OCI.Process.Env"));
    if req["OCI"]["Process"]["Capabilities"]["Bounding"].is_array() {
        let mut r = req.clone();
        r["OCI"]["Process"]["Capabilities"]["Bounding"]
            .as_array_mut()
            .unwrap()
            .push("CAP_SYS_ADMIN".into());
        out.push((
            "an added capability",
            r,
            "OCI.Process.Capabilities.Bounding",
        ));
        let mut r = req.clone();
        let all: Vec<Value> = Settings::default()
            .all_capabilities
            .into_iter()
            .map(Value::String)
            .collect();
        for set in ["Bounding", "Effective", "Permitted"] {
            r["OCI"]["Process"]["Capabilities"][set] = Value::Array(all.clone());
        }
        r["OCI"]["Linux"]["MaskedPaths"] = serde_json::json!([]);
        r["OCI"]["Linux"]["ReadonlyPaths"] = serde_json::json!([]);
        out.push(("privileged", r, "OCI.Linux.MaskedPaths"));
    }
    let mut r = req.clone();
    let host = serde_json::json!({"destination": "/host", "source": "/", "type_": "bind", "options": ["rbind", "rprivate", "rw"]});
    let n = match r["OCI"].get_mut("Mounts").and_then(Value::as_array_mut) {
        Some(m) => {
            m.push(host);
            m.len() - 1
        }
        None => {
            r["OCI"]["Mounts"] = serde_json::json!([host]);
            0
        }
    };
    let field: &'static str = Box::leak(format!("OCI.Mounts[{n}]").into_boxed_str());
    out.push(("a hostPath mount", r, field));
    let mut r = req.clone();
    r["OCI"]["Process"]["Args"]
        .as_array_mut()
        .unwrap()
        .push("--evil".into());
    out.push(("changed args", r, "OCI.Process.Args"));
    out
}

/// Every case of the corpus, in order per directory against one policy
/// engine; `before` sees each case (and a copy of the engine's state)
/// before the case is decided. `None` when the corpus is absent.
fn each_case(mut before: impl FnMut(&Path, &AgentPolicy, &Value)) -> Option<()> {
    let fx = ward_proto::testing::fixtures("kata-genpolicy")?;
    let root = fx.join("kata-genpolicy/policy");
    let settings = corpus_settings();
    for dir in case_dirs(&root) {
        let mut policy = AgentPolicy::new(&policy_for(&dir, &settings)).unwrap();
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("testcases.json")).unwrap())
                .unwrap();
        for case in cases {
            before(&dir, &policy, &case);
            policy
                .decide(case["kind"].as_str().unwrap(), &case["request"])
                .unwrap();
        }
    }
    Some(())
}

#[test]
fn every_allowed_create_container_mutated_in_one_field_is_refused_naming_it() {
    let mut checked = 0;
    let ran = each_case(|dir, policy, case| {
        let kind = case["kind"].as_str().unwrap();
        if kind != "CreateContainerRequest" || case["allowed"] != true {
            return;
        }
        for (what, req, field) in mutations(&case["request"]) {
            let d = policy.clone().check(kind, &req).unwrap();
            let at = format!("{} / {} / {what}", dir.display(), case["description"]);
            assert!(!d.allowed, "{at}: allowed");
            assert!(
                d.violations.iter().any(|v| v.field == field),
                "{at}: no violation names {field}: {:?}",
                d.violations
            );
            checked += 1;
        }
    });
    if ran.is_some() {
        assert!(checked >= 100, "only {checked} mutations checked");
    }
}

#[test]
fn pull_by_tag_is_refused_by_default() {
    let Some(fx) = ward_proto::testing::fixtures("kata-genpolicy") else {
        return;
    };
    let dir = fx.join("kata-genpolicy/policy/state/execprocessdeployment");
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testcases.json")).unwrap())
            .unwrap();
    let req = &cases[0]["request"];
    assert_eq!(
        req["storages"][0]["source"],
        "quay.io/prometheus/busybox:latest"
    );
    let mut compat = AgentPolicy::new(&policy_for(&dir, &corpus_settings())).unwrap();
    assert!(compat.check("CreateContainerRequest", req).unwrap().allowed);
    let mut strict = AgentPolicy::new(&policy_for(&dir, &Settings::default())).unwrap();
    let d = strict.check("CreateContainerRequest", req).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.violations[0].field, "storages[0]", "{:?}", d.violations);
}

#[test]
fn null_optional_messages_are_refused_never_skipped() {
    let mut checked = 0;
    let ran = each_case(|dir, policy, case| {
        let kind = case["kind"].as_str().unwrap();
        let req = &case["request"];
        if kind != "CreateContainerRequest"
            || case["allowed"] != true
            || !req["OCI"]["Process"]["Capabilities"]["Bounding"].is_array()
        {
            return;
        }
        for (path, field) in [
            (
                "/OCI/Process/Capabilities",
                "OCI.Process.Capabilities.Bounding",
            ),
            ("/OCI/Process", "OCI.Process.Args"),
            ("/OCI/Linux", "OCI.Linux.MaskedPaths"),
        ] {
            let mut r = req.clone();
            *r.pointer_mut(path).unwrap() = Value::Null;
            let d = policy.clone().check(kind, &r).unwrap();
            let at = format!("{} / {} / {path} null", dir.display(), case["description"]);
            assert!(!d.allowed, "{at}: allowed");
            assert!(
                d.violations.iter().any(|v| v.field == field),
                "{at}: {:?}",
                d.violations
            );
            checked += 1;
        }
    });
    if ran.is_some() {
        assert!(checked >= 30, "only {checked} checked");
    }
}

/// As the agent holds it after CreateSandbox, its first request: the
/// policy's data in the state, where the CreateContainer fast path reads it.
fn with_data_in_state(policy: &mut AgentPolicy) {
    for pidns in [false, true] {
        let req = serde_json::json!({ "sandbox_pidns": pidns });
        if policy.decide("CreateSandboxRequest", &req).unwrap() {
            assert!(policy.state()["policy_data"]["containers"].is_array());
            return;
        }
    }
    panic!("no CreateSandbox request is allowed");
}

/// Whether the full rules (not the fast path) allow a CreateContainer.
fn full_rules_allow(policy: &mut AgentPolicy, req: &Value) -> bool {
    !policy.evaluate("candidate", req).unwrap().is_null()
        && policy.evaluate("create_violations", req).unwrap() == serde_json::json!([])
}

#[test]
fn the_fast_path_allows_only_what_the_full_rules_allow_and_takes_the_usual_requests() {
    let Some(fx) = ward_proto::testing::fixtures("kata-genpolicy") else {
        return;
    };
    let root = fx.join("kata-genpolicy/policy");
    let settings = corpus_settings();
    let (mut fast, mut mutated, mut total) = (0, 0, 0);
    for dir in case_dirs(&root) {
        let mut policy = AgentPolicy::new(&policy_for(&dir, &settings)).unwrap();
        with_data_in_state(&mut policy);
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("testcases.json")).unwrap())
                .unwrap();
        for case in cases {
            let kind = case["kind"].as_str().unwrap();
            let req = &case["request"];
            let at = format!("{} / {}", dir.display(), case["description"]);
            if kind == "CreateContainerRequest" {
                total += 1;
                let mut requests = vec![req.clone()];
                if case["allowed"] == true {
                    requests.extend(mutations(req).into_iter().map(|(_, r, _)| r));
                }
                for (n, r) in requests.iter().enumerate() {
                    let ops = policy.evaluate("fast_create_ops", r).unwrap();
                    if ops.is_null() {
                        continue;
                    }
                    assert!(
                        full_rules_allow(&mut policy, r),
                        "{at} ({n}): fast path only"
                    );
                    assert_eq!(n, 0, "{at}: mutation {n} allowed by the fast path");
                    let full = policy.evaluate("create_ops", r).unwrap();
                    assert_eq!(ops, full, "{at}: the fast path's state changes differ");
                    fast += 1;
                }
                mutated += requests.len() - 1;
            }
            // The same verdicts as without the data in state.
            let got = policy.decide(kind, req).unwrap();
            assert_eq!(got, case["allowed"] == true, "{at}");
        }
    }
    assert!(
        total >= 49 && mutated >= 100,
        "{total} requests, {mutated} mutations"
    );
    // The corpus's application containers in the usual form (the others are
    // pause containers, older annotation sets, emptyDir volumes, env from
    // patterns: the full rules decide them).
    assert!(fast >= 4, "the fast path decided only {fast} of {total}");
    eprintln!("fast path: {fast} of {total} CreateContainer requests, {mutated} mutations refused");
}
