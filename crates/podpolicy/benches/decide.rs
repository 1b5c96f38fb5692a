//! A CreateContainer decision against a generated policy, as the agent
//! makes it for every container it starts: `cargo bench -p ward-podpolicy`.

#[path = "../tests/common/realistic.rs"]
mod realistic;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use ward_podpolicy::engine::AgentPolicy;

fn bench(c: &mut Criterion) {
    let mut text = realistic::policy();
    // To compare variants of the rules: WARD_RULES=<file>.
    if let Some(p) = std::env::var_os("WARD_RULES") {
        text = text.replacen(
            ward_podpolicy::generate::RULES,
            &std::fs::read_to_string(p).unwrap(),
            1,
        );
    }
    let mut policy = AgentPolicy::new(&text).unwrap();
    // As the agent: CreateSandbox first, which keeps the policy's data in
    // the state the fast path reads.
    assert!(policy
        .decide("CreateSandboxRequest", &json!({"sandbox_pidns": false}))
        .unwrap());
    let req = realistic::request();
    assert!(
        policy.evaluate("fast_create_ops", &req).unwrap().is_array(),
        "the fast path takes the request"
    );
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
    // Before CreateSandbox (as `ward policy check` evaluates one request):
    // the full rules decide.
    let mut full = AgentPolicy::new(&text).unwrap();
    c.bench_function(
        "decision: CreateContainerRequest allowed, full rules",
        |b| b.iter(|| assert!(full.answer("CreateContainerRequest", &req).unwrap())),
    );
    // What the agent does before every query: its input, from JSON text.
    let text_req = req.to_string();
    c.bench_function("input: the CreateContainer request from JSON text", |b| {
        b.iter(|| regorus::Value::from_json_str(&text_req).unwrap())
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
