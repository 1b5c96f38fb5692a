//! TDX quote verification with cached, pre-verified collateral and PCK
//! chain, against the two P-256 verifications it must do (QE report and
//! quote). Needs ../shared/fixtures/dcap-phala (or WARD_FIXTURES).

use aws_lc_rs::signature::{self, KeyPair};
use criterion::{criterion_group, criterion_main, Criterion};
use ward_dcap::quote::Quote;
use ward_dcap::verify::{Collateral, DcapCache};

fn bench(c: &mut Criterion) {
    let Some(dir) = ward_proto::testing::fixtures("dcap-phala/tdx_quote") else {
        return;
    };
    let d = dir.join("dcap-phala");
    let raw = std::fs::read(d.join("tdx_quote")).unwrap();
    let coll = Collateral::from_flat_json(
        &std::fs::read_to_string(d.join("tdx_quote_collateral.json")).unwrap(),
    )
    .unwrap();
    let now = 1_751_328_000;

    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
    let key = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
    )
    .unwrap();
    let msg = vec![7u8; 632];
    let sig = key.sign(&rng, &msg).unwrap();
    let public = key.public_key().as_ref().to_vec();
    c.bench_function("two P-256 verifications", |b| {
        b.iter(|| {
            for _ in 0..2 {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public)
                    .verify(&msg, sig.as_ref())
                    .unwrap();
            }
        })
    });

    let cache = DcapCache::default();
    cache
        .verify(&Quote::parse(&raw).unwrap(), &coll, now)
        .unwrap();
    c.bench_function(
        "TDX quote, cached collateral and chain (parse + verify)",
        |b| {
            b.iter(|| {
                let q = Quote::parse(&raw).unwrap();
                cache.verify(&q, &coll, now).unwrap()
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
