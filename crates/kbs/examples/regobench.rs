use serde_json::json;
use std::time::Instant;
fn main() {
    let p = ward_policy::Policy::compile(
        "d",
        include_str!("../src/policies/resource-dev.rego"),
        "policy",
    )
    .unwrap();
    let claims = json!({"submods": {"cpu0": {"ear.status": "warning", "ear.veraison.annotated-evidence": {"sample": {"svn": "1"}, "runtime_data_claims": {"nonce": "x", "tee-pubkey": {"kty": "EC", "x": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}}}}, "iss": "ward", "exp": 1, "iat": 2});
    let data = json!({"plugin": "resource", "resource-path": ["a","b","c"], "query": {}});
    let n = 5000;
    let t = Instant::now();
    for _ in 0..n {
        p.with_data(&data)
            .unwrap()
            .eval_bool(&claims, "allow")
            .unwrap();
    }
    println!(
        "dev policy, adding data per eval (old way): {:.1} µs",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
    let t = Instant::now();
    for _ in 0..n {
        p.eval_bool(&claims, "allow").unwrap();
    }
    println!(
        "dev policy no data: {:.1} µs",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
    let p2 = ward_policy::Policy::compile(
        "d",
        include_str!("../src/policies/resource-default.rego"),
        "policy",
    )
    .unwrap();
    let p2 = p2.with_data(&data).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        p2.eval_bool(&claims, "allow").unwrap();
    }
    println!(
        "default policy, data prepared: {:.1} µs",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
    let a = ward_policy::Policy::compile(
        "s",
        include_str!("../../verifier/src/policies/sample.rego"),
        "policy",
    )
    .unwrap()
    .with_data(&json!({"reference": {}}))
    .unwrap();
    let input = json!({"sample": {"svn": "1", "launch_digest": "abcde", "debug": false}, "runtime_data_claims": {}});
    let t = Instant::now();
    for _ in 0..n {
        a.eval_ints(&input, &ward_verifier::TRUST_RULES).unwrap();
    }
    println!(
        "sample attestation policy: {:.1} µs",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
}
