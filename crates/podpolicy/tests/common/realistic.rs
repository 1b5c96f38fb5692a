//! A generated policy and a CreateContainer request as the Kata agent gets
//! it from containerd for that pod's container: every field the agent's
//! serde form has, the runtime's twelve mounts, the `kubernetes` service's
//! variables. Shared by the decision benchmark and the fast-path tests.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use ward_podpolicy::container::ImageConfig;
use ward_podpolicy::generate::{self, ImageInfo, Options};
use ward_podpolicy::{Objects, Settings};

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: app}\nspec:\n  containers:\n  - name: app\n    image: example.test/app:1.0\n    args: [serve]\n    env: [{name: MODE, value: prod}]\n";

pub fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

/// The policy text for [`POD`], its image resolved to [`digest`].
pub fn policy() -> String {
    let info = ImageInfo::new(
        "example.test/app:1.0",
        "example.test/app",
        Some("1.0"),
        &digest(),
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
    generate::policy_text(&data)
}

/// The CreateContainer request of the pod's container.
pub fn request() -> Value {
    let bundle = "a".repeat(64);
    let sandbox = "b".repeat(64);
    let image = format!("example.test/app@{}", digest());
    let annotations = json!({
        "io.katacontainers.pkg.oci.bundle_path": format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{bundle}"),
        "io.katacontainers.pkg.oci.container_type": "pod_container",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.image-name": image,
        "io.kubernetes.cri.sandbox-id": sandbox,
        "io.kubernetes.cri.sandbox-name": "app",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "31df313a-931f-4979-a405-cc3f3ccb6a56",
    });
    let caps = Settings::default().default_capabilities;
    let shared = |random: &str, name: &str| {
        format!("/run/kata-containers/shared/containers/{bundle}-{random}-{name}")
    };
    let mount = |d: &str, t: &str, s: &str, o: &[&str]| json!({"destination": d, "source": s, "type_": t, "options": o});
    let bind = ["rbind", "rprivate", "rw"];
    let mut masked = Settings::default().masked_paths;
    masked.push("/sys/devices/virtual/powercap".into());
    let metadata = json!({ "metadata": annotations }).to_string();
    json!({
        "container_id": bundle,
        "exec_id": bundle,
        "string_user": null,
        "devices": [],
        "sandbox_pidns": false,
        "shared_mounts": [],
        "stdin_port": 0, "stdout_port": 0, "stderr_port": 0,
        "OCI": {
            "Version": "1.1.0",
            "Annotations": annotations,
            "Hooks": null,
            "Hostname": "",
            "Solaris": null,
            "Windows": null,
            "Linux": {
                "CgroupsPath": format!("kubepods-besteffort-pod31df313a_931f_4979_a405_cc3f3ccb6a56.slice:cri-containerd:{bundle}"),
                "Devices": [], "GIDMappings": [], "UIDMappings": [], "IntelRdt": null, "MountLabel": "",
                "Namespaces": [{"Path": "", "Type": "ipc"}, {"Path": "", "Type": "uts"}, {"Path": "", "Type": "mount"}],
                "MaskedPaths": masked,
                "ReadonlyPaths": Settings::default().readonly_paths,
                "Resources": {"BlockIO": null, "CPU": {"Cpus": "", "Mems": "", "Period": 100000, "Quota": 0, "RealtimePeriod": 0, "RealtimeRuntime": 0, "Shares": 2},
                    "Devices": [], "HugepageLimits": [], "Memory": null, "Network": null, "Pids": null},
                "RootfsPropagation": "", "Seccomp": null, "Sysctl": {},
            },
            "Mounts": [
                mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
                mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
                mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
                mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
                mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
                mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro", "nsdelegate", "memory_recursiveprot"]),
                mount("/etc/hosts", "bind", &shared("4a4c20d48254d738", "hosts"), &bind),
                mount("/dev/termination-log", "bind", &shared("72cfcc0e64a0d1af", "termination-log"), &bind),
                mount("/etc/hostname", "bind", &shared("89f0faae823d569c", "hostname"), &bind),
                mount("/etc/resolv.conf", "bind", &shared("8c0d97703dbbb30e", "resolv.conf"), &bind),
                mount("/dev/shm", "bind", "/run/kata-containers/sandbox/shm", &["rbind"]),
                mount("/var/run/secrets/kubernetes.io/serviceaccount", "bind", &shared("be44d3a46e427870", "serviceaccount"), &["rbind", "rprivate", "ro"]),
            ],
            "Process": {
                "ApparmorProfile": "cri-containerd.apparmor.d",
                "Args": ["/app", "serve"],
                "Capabilities": {"Ambient": [], "Bounding": caps, "Effective": caps, "Inheritable": [], "Permitted": caps},
                "ConsoleSize": null,
                "Cwd": "/srv",
                "Env": ["PATH=/usr/bin:/bin", "HOSTNAME=app", "MODE=prod",
                    "KUBERNETES_PORT_443_TCP=tcp://10.0.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO=tcp",
                    "KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_ADDR=10.0.0.1",
                    "KUBERNETES_SERVICE_HOST=10.0.0.1", "KUBERNETES_SERVICE_PORT=443",
                    "KUBERNETES_SERVICE_PORT_HTTPS=443", "KUBERNETES_PORT=tcp://10.0.0.1:443"],
                "NoNewPrivileges": false, "OOMScoreAdj": 1000, "Rlimits": [], "SelinuxLabel": "", "Terminal": false,
                "User": {"AdditionalGids": [0], "GID": 0, "UID": 0, "Username": ""},
            },
            "Root": {"Path": format!("/run/kata-containers/{bundle}/rootfs"), "Readonly": false},
        },
        "storages": [{"driver": "image_guest_pull", "source": image, "fstype": "overlay", "fs_group": null,
            "mount_point": format!("/run/kata-containers/{bundle}/rootfs"), "options": [],
            "driver_options": [format!("image_guest_pull={metadata}")]}],
    })
}
