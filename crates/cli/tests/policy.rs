//! `ward policy generate / check / explain` through the binary, with an
//! image from an OCI image layout the test writes (the registry client is
//! tested against a real registry in crates/oci/tests/registry.rs).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

mod common;
use common::write_layout;

fn ward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ward"))
}

const DEPLOYMENT: &str = "\
# the app
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    metadata:
      labels: {app: app}
    spec:
      runtimeClassName: kata-cc
      containers:
      - name: app
        image: example.test/app:1.0
        args: [serve, --port, \"8080\"]
        env:
        - {name: MODE, value: prod}
        readinessProbe:
          exec: {command: [/bin/true]}
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec: {ports: [{port: 80}]}
";

/// A CreateContainer request for container `app` of the generated pod.
fn create_request(digest: &str) -> Value {
    let bundle = "a".repeat(64);
    let annotations = json!({
        "io.katacontainers.pkg.oci.bundle_path": format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{bundle}"),
        "io.katacontainers.pkg.oci.container_type": "pod_container",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.image-name": "example.test/app:1.0",
        "io.kubernetes.cri.sandbox-id": "b".repeat(64),
        "io.kubernetes.cri.sandbox-name": "app-6674f9448-xjrzf",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "31df313a-931f-4979-a405-cc3f3ccb6a56",
    });
    let pull = json!({"metadata": annotations});
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    json!({
        "container_id": bundle,
        "OCI": {
            "Annotations": annotations,
            "Linux": {"Namespaces": [{"Type": "ipc", "Path": ""}, {"Type": "uts", "Path": ""}, {"Type": "mount", "Path": ""}],
                "MaskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]},
            "Process": {"Args": ["/app", "serve", "--port", "8080"], "Cwd": "/srv",
                "Env": ["PATH=/usr/bin:/bin", "MODE=prod", "HOSTNAME=app-6674f9448-xjrzf"],
                "User": {"UID": 0, "GID": 0, "AdditionalGids": [0]},
                "Capabilities": {"Bounding": caps, "Effective": caps, "Permitted": caps}},
            "Root": {"Path": format!("/run/kata-containers/{bundle}/rootfs"), "Readonly": false}
        },
        "storages": [{"driver": "image_guest_pull", "source": format!("example.test/app@{digest}"), "fstype": "overlay",
            "mount_point": format!("/run/kata-containers/{bundle}/rootfs"), "options": [],
            "driver_options": [format!("image_guest_pull={pull}")]}]
    })
}

/// `ward policy explain` of the policy in `policy`.
fn explain(policy: &Path) -> Value {
    let out = ward()
        .args(["policy", "explain", "--policy"])
        .arg(policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The app's image layout and DEPLOYMENT in `dir`: (layout, yaml, digest).
fn app(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let layout = dir.join("layout");
    let digest = write_layout(
        &layout,
        "1.0",
        json!({"Env": ["PATH=/usr/bin:/bin"], "Entrypoint": ["/app"], "WorkingDir": "/srv"}),
    );
    let yaml = dir.join("app.yaml");
    std::fs::write(&yaml, DEPLOYMENT).unwrap();
    (layout, yaml, digest)
}

/// `ward policy generate` of `yaml` with example.test/app:1.0 from `layout`.
fn generate_app(yaml: &Path, layout: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    ward()
        .args(["policy", "generate", "-f"])
        .arg(yaml)
        .arg("--image-layout")
        .arg(format!("example.test/app:1.0={}", layout.display()))
        .arg("--cache-dir")
        .arg(cache)
        .args(extra)
        .output()
        .unwrap()
}

/// `ward policy check` of `req` (written to `file`) as a CreateContainer
/// request against the policy in `policy`.
fn check_create(policy: &Path, file: &Path, req: &Value) -> std::process::Output {
    std::fs::write(file, req.to_string()).unwrap();
    ward()
        .args(["policy", "check", "--policy"])
        .arg(policy)
        .args(["--kind", "CreateContainerRequest", "--request"])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn generate_annotates_the_deployment_and_check_decides_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, yaml, digest) = app(dir.path());
    let cache = dir.path().join("cache");
    let generate = || {
        generate_app(
            &yaml,
            &layout,
            &cache,
            &["--kbs-url", "https://kbs.example:8080"],
        )
    };
    let out = generate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let host_data = report[0]["snp_host_data"].as_str().unwrap().to_string();
    assert_eq!(host_data.len(), 64);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));

    // In place: both documents, the template annotated.
    let annotated = std::fs::read_to_string(&yaml).unwrap();
    assert!(annotated.contains("kind: Service"));
    assert!(
        annotated.starts_with("# the app\n"),
        "comments are kept: {annotated}"
    );
    assert!(annotated.contains("io.katacontainers.config.hypervisor.cc_init_data"));

    // The same input gives the same bytes.
    std::fs::write(&yaml, DEPLOYMENT).unwrap();
    let again = generate();
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), annotated);

    // check: the request the pod's container makes is allowed ...
    let req = dir.path().join("req.json");
    std::fs::write(&req, create_request(&digest).to_string()).unwrap();
    let check = |req: &Path| {
        check_create(
            &yaml,
            req,
            &serde_json::from_str(&std::fs::read_to_string(req).unwrap()).unwrap(),
        )
    };
    let ok = check(&req);
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // ... and with another image digest it is refused, naming the field.
    let mut bad = create_request(&digest);
    bad["storages"][0]["source"] = json!(format!("example.test/app@sha256:{}", "e".repeat(64)));
    std::fs::write(&req, bad.to_string()).unwrap();
    let no = check(&req);
    assert_eq!(no.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&no.stdout).unwrap();
    assert_eq!(verdict["decision"], "deny");
    assert_eq!(verdict["violations"][0]["field"], "storages[0]");

    // SetPolicy is always refused.
    let lines = dir.path().join("reqs.jsonl");
    std::fs::write(
        &lines,
        "{\"kind\":\"SetPolicyRequest\",\"request\":{\"policy\":\"package agent_policy\"}}\n",
    )
    .unwrap();
    let sp = ward()
        .args(["policy", "check", "--policy"])
        .arg(&yaml)
        .arg("--requests")
        .arg(&lines)
        .output()
        .unwrap();
    assert_eq!(sp.status.code(), Some(1));

    // The policy is read from the init-data TOML as well.
    let doc: Value = serde_yaml_ng::from_str(
        &annotated
            .split("\n---\n")
            .next()
            .unwrap()
            .replace("# the app\n", ""),
    )
    .unwrap();
    let ann = doc["spec"]["template"]["metadata"]["annotations"]
        ["io.katacontainers.config.hypervisor.cc_init_data"]
        .as_str()
        .unwrap()
        .to_string();
    let ann_file = dir.path().join("init.ann");
    std::fs::write(&ann_file, ann).unwrap();
    let toml = ward()
        .args(["initdata", "decode"])
        .arg(&ann_file)
        .output()
        .unwrap();
    let toml_file = dir.path().join("init.toml");
    std::fs::write(&toml_file, &toml.stdout).unwrap();
    assert_eq!(explain(&toml_file)["containers"][1]["name"], "app");

    // explain lists the container with its pinned image and exec.
    let ex = ward()
        .args(["policy", "explain", "--policy"])
        .arg(&yaml)
        .output()
        .unwrap();
    assert!(ex.status.success());
    let e: Value = serde_json::from_slice(&ex.stdout).unwrap();
    assert_eq!(
        e["containers"][1]["image"][0],
        format!("example.test/app@{digest}")
    );
    assert_eq!(e["containers"][1]["execs"], json!([["/bin/true"]]));
}

#[test]
fn a_pinned_digest_the_source_does_not_have_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_layout(&layout, "1.0", json!({"Cmd": ["/app"]}));
    let pinned = format!("example.test/app:1.0@sha256:{}", "0".repeat(64));
    let yaml = dir.path().join("pod.yaml");
    let text = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: \"{pinned}\"}}\n");
    std::fs::write(&yaml, &text).unwrap();
    let out = ward()
        .args(["policy", "generate", "-f"])
        .arg(&yaml)
        .arg("--image-layout")
        .arg(format!("{pinned}={}", layout.display()))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the pinned digest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), text);
}

/// Three images tagged v1 in `reg`, each in an index with an amd64 and an
/// arm64 manifest; returns the amd64 manifest digests.
fn push_three(p: &ward_oci::testing::Pusher) -> Vec<String> {
    use ward_oci::testing::INDEX;
    ["team/a", "team/b", "team/c"]
        .iter()
        .map(|repo| {
            let amd = p.image(repo, "app", b"app:x:1000:1000::/srv:/bin/sh\n", "amd64");
            let arm = p.image(repo, "root", b"root:x:0:0::/:/bin/sh\n", "arm64");
            let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [arm, amd]});
            p.manifest(repo, "v1", INDEX, &index);
            amd["digest"].as_str().unwrap().to_string()
        })
        .collect()
}

fn pod_of(images: &[String]) -> String {
    let mut y =
        String::from("apiVersion: v1\nkind: Pod\nmetadata: {name: three}\nspec:\n  containers:\n");
    for (i, img) in images.iter().enumerate() {
        y.push_str(&format!("  - {{name: c{i}, image: \"{img}\"}}\n"));
    }
    y
}

#[test]
fn generation_against_a_real_registry_and_its_failures() {
    let Some(bin) = ward_oci::testing::registry_bin() else {
        return;
    };
    let reg = ward_oci::testing::start(&bin, None);
    let p = ward_oci::testing::Pusher::new(&reg.addr, None);
    let digests = push_three(&p);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let gen = |images: &[String], out: &Path, extra: &[&str]| {
        let yaml = dir.path().join("pod.yaml");
        std::fs::write(&yaml, pod_of(images)).unwrap();
        let o = ward()
            .args(["policy", "generate", "-f"])
            .arg(&yaml)
            .arg("-o")
            .arg(out)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--timeout-secs", "5"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&yaml).unwrap(),
            pod_of(images),
            "the input is never touched with -o"
        );
        o
    };
    let insecure = ["--insecure-registry", reg.addr.as_str()];
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|r| format!("{}/team/{r}:v1", reg.addr))
        .collect();
    let out = dir.path().join("out.yaml");
    let o = gen(&names, &out, &insecure);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = explain(&out);
    for (i, d) in digests.iter().enumerate() {
        let repo = ["a", "b", "c"][i];
        assert_eq!(
            e["containers"][i + 1]["image"][0],
            format!("{}/team/{repo}@{d}", reg.addr)
        );
        assert_eq!(
            e["containers"][i + 1]["user"]["uid"],
            1000,
            "the image's user, from its passwd"
        );
    }

    // Each failure is named, and nothing is written.
    let fails = |images: Vec<String>, extra: &[&str], message: &str| {
        let none = dir.path().join("none.yaml");
        let o = gen(&images, &none, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains(message), "{message:?} not in {err}");
        assert!(!none.exists());
    };
    let mut missing = names.clone();
    missing[1] = format!("{}/team/b:v9", reg.addr);
    fails(missing, &insecure, "manifest v9 not found");
    let mut mismatch = names.clone();
    mismatch[2] = format!("{}/team/c:v1@sha256:{}", reg.addr, "0".repeat(64));
    fails(mismatch, &insecure, &format!("sha256:{}", "0".repeat(64)));
    let closed = format!("127.0.0.1:{}", ward_oci::testing::free_port());
    let mut unreachable = names.clone();
    unreachable[0] = format!("{closed}/team/a:v1");
    fails(unreachable, &["--insecure-registry", &closed], &closed);

    // A private registry: the wrong password is refused as such.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let private = ward_oci::testing::start(&bin, Some(&format!("ward:{hash}")));
    let pp = ward_oci::testing::Pusher::new(&private.addr, Some(("ward", "s3cret")));
    push_three(&pp);
    let config = dir.path().join("config.json");
    let write_config = |pw: &str| {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("ward:{pw}"));
        std::fs::write(
            &config,
            json!({"auths": {private.addr.clone(): {"auth": auth}}}).to_string(),
        )
        .unwrap();
    };
    let private_names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|r| format!("{}/team/{r}:v1", private.addr))
        .collect();
    let flags = [
        "--insecure-registry",
        private.addr.as_str(),
        "--docker-config",
        config.to_str().unwrap(),
    ];
    write_config("wrong");
    fails(private_names.clone(), &flags, "refused the credentials");
    write_config("s3cret");
    let ok = dir.path().join("private.yaml");
    let o = gen(&private_names, &ok, &flags);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("s3cret"));
}

#[test]
fn layer_integrity_pins_each_layers_dm_verity_root() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, yaml, digest) = app(dir.path());
    let out = generate_app(
        &yaml,
        &layout,
        &dir.path().join("cache"),
        &["--layer-integrity", "dm-verity"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = explain(&yaml);
    // The layout's one layer is 1024 zero bytes: its tarfs image is those,
    // an index of the root directory alone, and the super block.
    let mut v = ward_oci::verity::VerityHasher::new();
    v.update(&[0u8; 1024]);
    v.update(&ward_oci::verity::TarfsIndex::default().bytes(1024));
    let root = hex::encode(v.finish());
    assert_eq!(e["containers"][1]["layer_roots"], json!([root]));

    // The host mounts the layer and an overlay over it, each naming that root.
    use base64::Engine as _;
    let name = "a".repeat(64);
    let opt = |h: &str| format!("io.katacontainers.fs-opt.root-hash={h}");
    let layer_storage = |h: &str| {
        json!({"driver": "blk", "fstype": "tar", "source": "", "driver_options": [],
        "mount_point": format!("/run/kata-containers/sandbox/layers/{name}"),
        "options": ["ro", "io.katacontainers.fs-opt.block_device=file", "io.katacontainers.fs-opt.is-layer", opt(h)]})
    };
    let overlay = |h: &str| {
        let l = format!("{name},tar,ro,io.katacontainers.fs-opt.block_device=file,io.katacontainers.fs-opt.is-layer,{}", opt(h));
        json!({"driver": "overlayfs", "fstype": "fuse3.kata-overlay", "source": "", "driver_options": [],
            "mount_point": format!("/run/kata-containers/{}/rootfs", "a".repeat(64)),
            "options": [name.clone(), format!("io.katacontainers.fs-opt.layer={}", base64::engine::general_purpose::STANDARD.encode(l))]})
    };
    let mut req = create_request(&digest);
    req["storages"] = json!([layer_storage(&root), overlay(&root)]);
    let req_file = dir.path().join("req.json");
    let check = |r: &Value| check_create(&yaml, &req_file, r);
    let ok = check(&req);
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let other = "e".repeat(64);
    req["storages"] = json!([layer_storage(&other), overlay(&root)]);
    let no = check(&req);
    assert_eq!(no.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&no.stdout).unwrap();
    assert_eq!(v["violations"][0]["field"], "storages[0]");
    req["storages"] = json!([layer_storage(&root), overlay(&other)]);
    assert_eq!(check(&req).status.code(), Some(1));
}

#[test]
fn images_come_from_docker_save_archives_too() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, yaml, digest) = app(dir.path());
    // `docker save` (Docker 25+): the layout's files and a manifest.json.
    let mut files: Vec<(String, Vec<u8>)> = vec![("manifest.json".into(), b"[]".to_vec())];
    let mut stack = vec![layout.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&layout).unwrap().display().to_string();
                files.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let archive = dir.path().join("app.tar");
    std::fs::write(&archive, ward_oci::testing::tar(&refs)).unwrap();
    let out = ward()
        .args(["policy", "generate", "-f"])
        .arg(&yaml)
        .arg("--image-archive")
        .arg(format!("example.test/app:1.0={}", archive.display()))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        explain(&yaml)["containers"][1]["image"][0],
        format!("example.test/app@{digest}")
    );
}

#[test]
fn an_unknown_field_is_refused_by_path_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, yaml, _) = app(dir.path());
    let with_devices = DEPLOYMENT.replace(
        "        args:",
        "        volumeDevices: [{name: raw, devicePath: /dev/xvda}]\n        args:",
    );
    std::fs::write(&yaml, &with_devices).unwrap();
    let cache = dir.path().join("cache");
    let out = generate_app(&yaml, &layout, &cache, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/spec/template/spec/containers/0/volumeDevices"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&yaml).unwrap(),
        with_devices,
        "nothing written"
    );
    let out = generate_app(&yaml, &layout, &cache, &["--allow-unknown-fields"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_runtime_class_that_is_not_confidential_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, yaml, _) = app(dir.path());
    std::fs::write(
        &yaml,
        DEPLOYMENT.replace("runtimeClassName: kata-cc", "runtimeClassName: runc"),
    )
    .unwrap();
    let out = generate_app(&yaml, &layout, &dir.path().join("cache"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/spec/template/spec/runtimeClassName")
            && err.contains("\"runc\" is not a confidential runtime class"),
        "{err}"
    );
}
