//! A CreateContainer decision against a generated policy, as the agent
//! makes it for every container it starts: `cargo bench -p ward-podpolicy`.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use ward_podpolicy::container::ImageConfig;
use ward_podpolicy::engine::AgentPolicy;
use ward_podpolicy::generate::{self, ImageInfo, Options};
use ward_podpolicy::{Objects, Settings};

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: app}\nspec:\n  containers:\n  - name: app\n    image: example.test/app:1.0\n    args: [serve]\n    env: [{name: MODE, value: prod}]\n";

fn policy() -> (String, String) {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let info = ImageInfo::new(
        "example.test/app:1.0",
        "example.test/app",
        Some("1.0"),
        &digest,
        ImageConfig {
            env: vec!["PATH=/usr/bin:/bin".into()],
            entrypoint: vec!["/app".into()],
            working_dir: "/srv".into(),
            ..Default::default()
        },
    );
    let mut objects = Objects::default();
    objects.add_yaml("pod.yaml", POD).unwrap();
    let images = BTreeMap::from([("example.test/app:1.0".to_string(), info)]);
    let data = generate::policy_data(
        &objects,
        &objects.templates[0],
        &Settings::default(),
        &images,
        &Options::default(),
    )
    .unwrap();
    let mut text = generate::policy_text(&data);
    // To compare variants of the rules: WARD_RULES=<file>.
    if let Some(p) = std::env::var_os("WARD_RULES") {
        text = text.replacen(generate::RULES, &std::fs::read_to_string(p).unwrap(), 1);
    }
    (text, digest)
}

fn request(digest: &str) -> Value {
    let bundle = "a".repeat(64);
    let annotations = json!({
        "io.katacontainers.pkg.oci.bundle_path": format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{bundle}"),
        "io.katacontainers.pkg.oci.container_type": "pod_container",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.image-name": "example.test/app:1.0",
        "io.kubernetes.cri.sandbox-id": "b".repeat(64),
        "io.kubernetes.cri.sandbox-name": "app",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "31df313a-931f-4979-a405-cc3f3ccb6a56",
    });
    let caps = Settings::default().default_capabilities;
    let shared =
        |n: &str| format!("/run/kata-containers/shared/containers/{bundle}-0123456789abcdef-{n}");
    let bind = |d: &str, s: String, o: &[&str]| json!({"destination": d, "source": s, "type_": "bind", "options": o});
    json!({
        "container_id": bundle,
        "OCI": {
            "Annotations": annotations,
            "Linux": {"Namespaces": [{"Type": "ipc", "Path": ""}, {"Type": "uts", "Path": ""}, {"Type": "mount", "Path": ""}, {"Type": "network", "Path": "/run/netns/podns"}],
                "MaskedPaths": Settings::default().masked_paths, "ReadonlyPaths": Settings::default().readonly_paths},
            "Mounts": [
                {"destination": "/proc", "source": "proc", "type_": "proc", "options": ["nosuid", "noexec", "nodev"]},
                bind("/etc/hosts", shared("hosts"), &["rbind", "rprivate", "rw"]),
                bind("/etc/resolv.conf", shared("resolv.conf"), &["rbind", "rprivate", "rw"]),
                bind("/var/run/secrets/kubernetes.io/serviceaccount", shared("serviceaccount"), &["rbind", "rprivate", "ro"]),
            ],
            "Process": {"Args": ["/app", "serve"], "Cwd": "/srv",
                "Env": ["PATH=/usr/bin:/bin", "MODE=prod", "HOSTNAME=app", "KUBERNETES_SERVICE_HOST=10.0.0.1", "KUBERNETES_SERVICE_PORT=443"],
                "User": {"UID": 0, "GID": 0, "AdditionalGids": [0]},
                "Capabilities": {"Bounding": caps, "Effective": caps, "Permitted": caps}},
            "Root": {"Path": format!("/run/kata-containers/{bundle}/rootfs"), "Readonly": false}
        },
        "storages": [{"driver": "image_guest_pull", "source": format!("example.test/app@{digest}"), "fstype": "overlay",
            "mount_point": format!("/run/kata-containers/{bundle}/rootfs"), "options": [],
            "driver_options": [format!("image_guest_pull={}", json!({"metadata": annotations}))]}]
    })
}

fn bench(c: &mut Criterion) {
    let (text, digest) = policy();
    let policy = AgentPolicy::new(&text).unwrap();
    let req = request(&digest);
    assert!(
        policy
            .clone()
            .decide("CreateContainerRequest", &req)
            .unwrap(),
        "the request is allowed"
    );
    let mut p = policy.clone();
    c.bench_function("decision: CreateContainerRequest allowed", |b| {
        b.iter(|| assert!(p.answer("CreateContainerRequest", &req).unwrap()))
    });
    c.bench_function("decision: StartContainerRequest (fixed cost)", |b| {
        b.iter(|| assert!(p.answer("StartContainerRequest", &json!({})).unwrap()))
    });
    c.bench_function("decision: ReadStreamRequest (reads policy_data)", |b| {
        b.iter(|| assert!(!p.answer("ReadStreamRequest", &json!({})).unwrap()))
    });
    let mut bad = req.clone();
    bad["OCI"]["Process"]["Args"] = json!(["/bin/sh"]);
    c.bench_function("decision: CreateContainerRequest refused", |b| {
        b.iter(|| assert!(!p.answer("CreateContainerRequest", &bad).unwrap()))
    });
    // As the agent does after an allowed CreateContainer: apply the
    // policy's state changes (regorus prepares the module again).
    c.bench_function("decide and apply state: CreateContainerRequest", |b| {
        b.iter(|| {
            let mut p = policy.clone();
            assert!(p.decide("CreateContainerRequest", &req).unwrap());
        })
    });
    c.bench_function("load a generated policy", |b| {
        b.iter(|| AgentPolicy::new(&text).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
