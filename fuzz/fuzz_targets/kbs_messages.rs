//! Untrusted inputs of the trust service: KBS messages, JWKs, tokens,
//! init-data, resource URIs, JWEs. Arbitrary bytes never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_proto::kbs::{runtime_data_hash, Attestation, Request};
use ward_proto::{initdata::InitData, jwe, jwt, HashAlgorithm, Jwk, ResourcePath};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Request>(data);
    if let Ok(a) = serde_json::from_slice::<Attestation>(data) {
        let _ = runtime_data_hash(&a.runtime_data, &a.tee_evidence.additional_evidence, HashAlgorithm::Sha384);
        let _ = jwe::Recipient::from_jwk(&a.runtime_data.tee_pubkey);
    }
    if let Ok(j) = serde_json::from_slice::<Jwk>(data) {
        let _ = j.public_key();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = jwt::UnverifiedJwt::parse(s);
        let _ = InitData::parse("toml", s);
        let _ = ResourcePath::parse_uri(s);
    }
    if let Ok(m) = serde_json::from_slice::<jwe::FlattenedJwe>(data) {
        thread_local! {
            static KEY: ward_proto::TeeKeyPair =
                ward_proto::TeeKeyPair::generate_ec(ward_proto::jwk::Curve::P256).expect("key");
        }
        KEY.with(|k| {
            let _ = jwe::decrypt(k, &m);
        });
    }
});
