use regorus::{Engine, Value};
use std::time::Instant;
fn main() {
    let src = include_str!("../../verifier/src/policies/sample.rego");
    let mut e = Engine::new();
    e.add_policy("p.rego".into(), src.into()).unwrap();
    e.add_data(Value::from_json_str(r#"{"reference": {}}"#).unwrap())
        .unwrap();
    e.add_policy(
        "w.rego".into(),
        r#"package ward_internal
import rego.v1
claims contains ["executables", x] if x := data.policy.executables
claims contains ["hardware", x] if x := data.policy.hardware
claims contains ["configuration", x] if x := data.policy.configuration
"#
        .into(),
    )
    .unwrap();
    let _ = e.eval_rule("data.policy.hardware".into()).unwrap();
    let input = Value::from_json_str(r#"{"sample": {"svn": "1", "launch_digest": "abcde", "debug": false, "report_data": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, "runtime_data_claims": {"nonce": "abc", "tee-pubkey": {"kty": "EC", "crv": "P-256", "x": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "y": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}}, "init_data_claims": {}}"#).unwrap();
    let n = 20000;
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..n {
            let mut c = e.clone();
            c.set_input(input.clone());
            std::hint::black_box(&c);
        }
        let us = |t: Instant| t.elapsed().as_nanos() as f64 / n as f64 / 1000.0;
        println!("{round} clone+input {:.2}", us(t));
        let t = Instant::now();
        for _ in 0..n {
            let mut c = e.clone();
            c.set_input(input.clone());
            for r in ["executables", "hardware", "configuration"] {
                std::hint::black_box(c.eval_rule(format!("data.policy.{r}")).unwrap());
            }
        }
        println!("{round} three rules {:.2}", us(t));
        let t = Instant::now();
        for _ in 0..n {
            let mut c = e.clone();
            c.set_input(input.clone());
            std::hint::black_box(c.eval_rule("data.policy.hardware".into()).unwrap());
        }
        println!("{round} one rule {:.2}", us(t));
        let t = Instant::now();
        for _ in 0..n {
            let mut c = e.clone();
            c.set_input(input.clone());
            std::hint::black_box(c.eval_rule("data.ward_internal.claims".into()).unwrap());
        }
        println!("{round} aggregate {:.2}", us(t));
        let t = Instant::now();
        let mut c = e.clone();
        for _ in 0..n {
            c.set_input(input.clone());
            for r in ["executables", "hardware", "configuration"] {
                std::hint::black_box(c.eval_rule(format!("data.policy.{r}")).unwrap());
            }
        }
        println!("{round} three rules reused engine {:.2}", us(t));
    }
}
