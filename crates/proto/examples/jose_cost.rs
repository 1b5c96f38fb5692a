//! Cost of the JOSE operations on the service's hot path, and of the P-256
//! primitives under them: `cargo run --release -p ward-proto --example jose_cost`.

use std::time::Instant;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use ward_proto::jwe::{self, Recipient};
use ward_proto::jwk::{Curve, TeeKeyPair};
use ward_proto::jwt::Es256Signer;

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
}

fn main() {
    let n = 3000;
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let jwk = key.public_jwk();
    let r = Recipient::from_jwk(&jwk).unwrap();
    println!(
        "Recipient::from_jwk (P-256): {:.1} µs",
        per_op(n, || drop(Recipient::from_jwk(&jwk).unwrap()))
    );
    println!(
        "jwe::encrypt (P-256, 32 B): {:.1} µs",
        per_op(n, || drop(jwe::encrypt(&r, &[0u8; 32]).unwrap()))
    );
    let (signer, _) = Es256Signer::generate().unwrap();
    let claims = serde_json::json!({"a": "x".repeat(1000)});
    println!(
        "ES256 sign (1 KB claims): {:.1} µs",
        per_op(n, || drop(signer.sign(&claims).unwrap()))
    );

    let peer = PrivateKey::generate(&ECDH_P256)
        .unwrap()
        .compute_public_key()
        .unwrap();
    let peer_bytes = peer.as_ref().to_vec();
    println!(
        "  P-256 keygen: {:.1} µs",
        per_op(n, || drop(PrivateKey::generate(&ECDH_P256).unwrap()))
    );
    let k = PrivateKey::generate(&ECDH_P256).unwrap();
    println!(
        "  P-256 compute_public_key: {:.1} µs",
        per_op(n, || drop(k.compute_public_key().unwrap()))
    );
    println!(
        "  P-256 ECDH agree: {:.1} µs",
        per_op(n, || {
            agreement::agree(
                &k,
                UnparsedPublicKey::new(&ECDH_P256, &peer_bytes),
                (),
                |_z| Ok::<(), ()>(()),
            )
            .unwrap()
        })
    );
}
