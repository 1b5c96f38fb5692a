//! The CreateContainer fast path on a request in the form the agent gets
//! from containerd: taken once the policy's data is in the agent's state,
//! giving the full rules' state changes, and never allowing a changed
//! request.

mod common;

use serde_json::{json, Value};
use ward_podpolicy::engine::AgentPolicy;

use common::realistic;

fn sandboxed() -> AgentPolicy {
    let mut p = AgentPolicy::new(&realistic::policy()).unwrap();
    assert!(p
        .decide("CreateSandboxRequest", &json!({"sandbox_pidns": false}))
        .unwrap());
    p
}

#[test]
fn the_usual_request_takes_the_fast_path_with_the_full_rules_state_changes() {
    let req = realistic::request();
    // Without the data in state (no CreateSandbox yet) the full rules decide.
    let mut fresh = AgentPolicy::new(&realistic::policy()).unwrap();
    assert_eq!(
        fresh.evaluate("fast_create_ops", &req).unwrap(),
        Value::Null
    );
    assert!(fresh
        .clone()
        .decide("CreateContainerRequest", &req)
        .unwrap());

    let mut p = sandboxed();
    let fast = p.evaluate("fast_create_ops", &req).unwrap();
    assert!(fast.is_array(), "the fast path does not take it");
    assert_eq!(fast, p.evaluate("create_ops", &req).unwrap());
    assert!(p.decide("CreateContainerRequest", &req).unwrap());
    assert_eq!(p.state()["containers"], json!({ "a".repeat(64): 1 }));
    assert_eq!(p.state()["netns"], "");
}

#[test]
fn no_changed_request_passes_the_fast_path() {
    let base = realistic::request();
    let mut changes: Vec<(&str, Value)> = vec![];
    let mut add = |what, f: &dyn Fn(&mut Value)| {
        let mut r = base.clone();
        f(&mut r);
        changes.push((what, r));
    };
    add("extra env", &|r| {
        r["OCI"]["Process"]["Env"]
            .as_array_mut()
            .unwrap()
            .push("LD_PRELOAD=/x.so".into())
    });
    add("other service host", &|r| {
        r["OCI"]["Process"]["Env"][7] = "KUBERNETES_SERVICE_HOST=10.0.0.1;rm".into()
    });
    add("capability", &|r| {
        r["OCI"]["Process"]["Capabilities"]["Bounding"]
            .as_array_mut()
            .unwrap()
            .push("CAP_SYS_ADMIN".into())
    });
    add("args", &|r| r["OCI"]["Process"]["Args"][1] = "shell".into());
    add("cwd", &|r| r["OCI"]["Process"]["Cwd"] = "/".into());
    add("uid", &|r| r["OCI"]["Process"]["User"]["UID"] = 1.into());
    add("masked path", &|r| {
        r["OCI"]["Linux"]["MaskedPaths"] = json!([])
    });
    add("host pid namespace", &|r| {
        r["OCI"]["Linux"]["Namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Path": "/proc/1/ns/pid", "Type": "pid"}));
    });
    add("hostPath", &|r| {
        r["OCI"]["Mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/host", "source": "/", "type_": "bind", "options": ["rbind"]}),
        )
    });
    add("mount source", &|r| {
        r["OCI"]["Mounts"][6]["source"] = "/etc".into()
    });
    add("traversal in the random part", &|r| {
        r["OCI"]["Mounts"][6]["source"] = format!(
            "/run/kata-containers/shared/containers/{}-../../../../etc-hosts",
            "a".repeat(64)
        )
        .into()
    });
    add("mount option", &|r| {
        r["OCI"]["Mounts"][6]["options"][2] = "exec".into()
    });
    add("image digest", &|r| {
        r["storages"][0]["source"] = format!("example.test/app@sha256:{}", "ee".repeat(32)).into()
    });
    add("pull metadata", &|r| {
        r["storages"][0]["driver_options"][0] = "image_guest_pull={\"metadata\":{}}".into()
    });
    add("hooks", &|r| {
        r["OCI"]["Hooks"] = json!({"prestart": [{"path": "/bin/sh"}]})
    });
    add("sysctl", &|r| {
        r["OCI"]["Linux"]["Sysctl"] = json!({"kernel.shm_rmid_forced": "1"})
    });
    add("annotation", &|r| {
        r["OCI"]["Annotations"]["io.katacontainers.config.agent.policy"] = "x".into()
    });
    add("sandbox name", &|r| {
        r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-name"] = "other".into()
    });
    add("bundle with a slash", &|r| {
        r["OCI"]["Annotations"]["io.katacontainers.pkg.oci.bundle_path"] =
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/a/../b".into()
    });
    add("root path", &|r| r["OCI"]["Root"]["Path"] = "/".into());
    assert_eq!(changes.len(), 20);
    for (what, req) in changes {
        let mut p = sandboxed();
        assert_eq!(
            p.evaluate("fast_create_ops", &req).unwrap(),
            Value::Null,
            "{what}: fast path allows it"
        );
        // Nor do the full rules: each is a change the policy forbids.
        assert!(
            !p.decide("CreateContainerRequest", &req).unwrap(),
            "{what}: allowed"
        );
    }

    // Stricter than the full rules (which allow any container's part in a
    // shared file's name): another container's file is left to them.
    let mut r = base.clone();
    r["OCI"]["Mounts"][6]["source"] = format!(
        "/run/kata-containers/shared/containers/{}-4a4c20d48254d738-hosts",
        "c".repeat(64)
    )
    .into();
    assert_eq!(
        sandboxed().evaluate("fast_create_ops", &r).unwrap(),
        Value::Null
    );
}
