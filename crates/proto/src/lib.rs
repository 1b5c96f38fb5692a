//! Wire types of the CoCo KBS protocol 0.4.0 and the JOSE objects that travel
//! with it: JWK, flattened JWE (ECDH-ES+A256KW, RSA-OAEP-256 with A256GCM),
//! ES256 JWTs, EAR attestation-result claims, init-data, resource URIs and the
//! runtime-data binding hash.
//!
//! This crate does no IO and never reads the clock: callers pass `now`.
//! Cryptography comes from aws-lc-rs.

pub mod b64;
pub mod ear;
pub mod hash;
pub mod initdata;
pub mod jcs;
pub mod jwe;
pub mod jwk;
pub mod jwt;
pub mod kbs;
pub mod resource;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod times;

pub use hash::HashAlgorithm;
pub use jwk::{Jwk, TeeKeyPair};
pub use kbs::{Attestation, Challenge, ErrorBody, Request, RuntimeData, Tee, TeeEvidence};
pub use resource::ResourcePath;
