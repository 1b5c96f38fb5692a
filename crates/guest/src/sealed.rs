//! Sealed secrets in the CoCo format: `sealed.<header>.<payload>.<signature>`,
//! a compact JWS whose payload describes the secret. Kubernetes stores the
//! sealed string (e.g. as a Secret value); only a TEE that passes
//! attestation can turn it into plaintext.
//!
//! Payload (`"version": "0.1.0"`, as CoCo's confidential-data-hub):
//! * `{"type": "vault", "name": "kbs:///repo/type/tag", "provider": "kbs", …}`
//!   — the plaintext is that KBS resource;
//! * `{"type": "envelope", "key_id": "kbs:///…", "encrypted_key": b64,
//!   "encrypted_data": b64, "wrap_type": "A256GCM", "provider": "kbs",
//!   "annotations": {"iv": b64, "key_iv": b64}}` — the KBS resource
//!   `key_id` is a 32-byte key-encryption key; `encrypted_key` is the data
//!   key under it (AES-256-GCM, nonce `key_iv`, ciphertext‖tag) and
//!   `encrypted_data` the plaintext under the data key (nonce `iv`).
//!
//! The signature is required (deny by default): the header's `kid` names a
//! KBS resource holding the owner's public JWK (ES256), which the guest
//! fetches through attestation like any secret, so only the owner can seal.

use base64::Engine;
use serde_json::{json, Value};
use ward_proto::jwe::{aes256gcm_open, aes256gcm_seal};
use ward_proto::jwk::Jwk;
use ward_proto::jwt::{Es256Signer, UnverifiedJwt, VerifyingKey};
use ward_proto::ResourcePath;

use crate::client::{GuestError, KbsClient};

/// Prefix of a sealed secret.
pub const PREFIX: &str = "sealed.";
/// Largest sealed secret accepted.
const MAX_SEALED: usize = 1 << 20;

/// Why unsealing failed. Never carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("not a sealed secret: {0}")]
    Format(String),
    #[error("sealed secret signature: {0}")]
    Signature(String),
    #[error("sealed secret cannot be decrypted: {0}")]
    Decrypt(&'static str),
    #[error(transparent)]
    Kbs(#[from] GuestError),
}

fn b64d(field: &str, v: &Value) -> Result<Vec<u8>, SealError> {
    let s = v
        .as_str()
        .ok_or_else(|| SealError::Format(format!("{field} is missing")))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| SealError::Format(format!("{field} is not base64")))
}

fn resource(field: &str, v: &Value) -> Result<ResourcePath, SealError> {
    let s = v
        .as_str()
        .ok_or_else(|| SealError::Format(format!("{field} is missing")))?;
    ResourcePath::parse_uri(s).map_err(|e| SealError::Format(format!("{field}: {e}")))
}

/// The parts of a sealed secret, signature not yet checked.
pub struct Sealed<'a> {
    jws: UnverifiedJwt<'a>,
}

impl<'a> Sealed<'a> {
    pub fn parse(text: &'a str) -> Result<Self, SealError> {
        let text = text.trim();
        if text.len() > MAX_SEALED {
            return Err(SealError::Format("longer than 1 MiB".into()));
        }
        let jws = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| SealError::Format(format!("does not start with {PREFIX:?}")))?;
        let jws = UnverifiedJwt::parse(jws).map_err(|e| SealError::Format(e.to_string()))?;
        if jws.claims.get("version").and_then(Value::as_str) != Some("0.1.0") {
            return Err(SealError::Format("payload version is not 0.1.0".into()));
        }
        Ok(Self { jws })
    }

    /// The KBS resource holding the signer's public key.
    pub fn kid(&self) -> Result<ResourcePath, SealError> {
        resource("header kid", &self.jws.header["kid"])
    }

    /// Check the signature with the owner's public JWK (JSON bytes).
    pub fn verify(&self, jwk_json: &[u8]) -> Result<&Value, SealError> {
        let jwk: Jwk = serde_json::from_slice(jwk_json)
            .map_err(|e| SealError::Signature(format!("signing key resource is not a JWK: {e}")))?;
        let key = VerifyingKey::from_jwk(&jwk).map_err(|e| SealError::Signature(e.to_string()))?;
        self.jws
            .verify_signature(&[key])
            .map_err(|e| SealError::Signature(e.to_string()))?;
        Ok(&self.jws.claims)
    }
}

/// Unseal with an attested KBS client: verify the owner's signature, then
/// fetch (vault) or decrypt (envelope) the secret.
pub async fn unseal(client: &KbsClient, text: &str) -> Result<Vec<u8>, SealError> {
    let sealed = Sealed::parse(text)?;
    let jwk = client.get_resource(&sealed.kid()?).await?;
    let payload = sealed.verify(&jwk)?.clone();
    if payload["provider"] != "kbs" {
        return Err(SealError::Format(format!(
            "provider {} is not supported (kbs)",
            payload["provider"]
        )));
    }
    match payload["type"].as_str() {
        Some("vault") => Ok(client
            .get_resource(&resource("name", &payload["name"])?)
            .await?),
        Some("envelope") => {
            if payload["wrap_type"] != "A256GCM" {
                return Err(SealError::Format("wrap_type must be A256GCM".into()));
            }
            let kek = client
                .get_resource(&resource("key_id", &payload["key_id"])?)
                .await?;
            open_envelope(&payload, &kek)
        }
        _ => Err(SealError::Format("type must be vault or envelope".into())),
    }
}

fn nonce(field: &str, v: &Value) -> Result<[u8; 12], SealError> {
    b64d(field, v)?
        .try_into()
        .map_err(|_| SealError::Format(format!("{field} is not 12 bytes")))
}

/// GCM ciphertext‖tag split.
fn split_tag(b: &[u8]) -> Result<(&[u8], &[u8]), SealError> {
    if b.len() < 16 {
        return Err(SealError::Decrypt("ciphertext shorter than its tag"));
    }
    Ok(b.split_at(b.len() - 16))
}

fn open_envelope(p: &Value, kek: &[u8]) -> Result<Vec<u8>, SealError> {
    let kek: [u8; 32] = kek
        .try_into()
        .map_err(|_| SealError::Decrypt("the key_id resource is not a 32-byte key"))?;
    let ek = b64d("encrypted_key", &p["encrypted_key"])?;
    let (c, t) = split_tag(&ek)?;
    let dek = aes256gcm_open(
        &kek,
        &nonce("annotations.key_iv", &p["annotations"]["key_iv"])?,
        b"",
        c,
        t,
    )
    .map_err(|_| SealError::Decrypt("the data key does not open with the key_id key"))?;
    let dek: [u8; 32] = dek
        .try_into()
        .map_err(|_| SealError::Decrypt("the data key is not 32 bytes"))?;
    let ed = b64d("encrypted_data", &p["encrypted_data"])?;
    let (c, t) = split_tag(&ed)?;
    aes256gcm_open(
        &dek,
        &nonce("annotations.iv", &p["annotations"]["iv"])?,
        b"",
        c,
        t,
    )
    .map_err(|_| SealError::Decrypt("the data does not open with the data key"))
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| SealError::Decrypt("no system randomness"))?;
    Ok(b)
}

fn sign(signer: &Es256Signer, kid: &str, payload: &Value) -> Result<String, SealError> {
    let header = json!({"alg": "ES256", "kid": kid});
    let body = serde_json::to_vec(payload).map_err(|e| SealError::Format(e.to_string()))?;
    signer
        .sign_jws(&header, &body)
        .map(|jws| format!("{PREFIX}{jws}"))
        .map_err(|e| SealError::Signature(e.to_string()))
}

/// Seal a reference to a KBS resource (`vault`).
pub fn seal_vault(signer: &Es256Signer, kid: &str, name: &str) -> Result<String, SealError> {
    resource("kid", &json!(kid))?;
    resource("name", &json!(name))?;
    sign(
        signer,
        kid,
        &json!({"version": "0.1.0", "type": "vault", "name": name, "provider": "kbs",
                "provider_settings": {}, "annotations": {}}),
    )
}

/// Seal `plaintext` under a fresh data key wrapped by `kek` (the KBS
/// resource `key_id`) (`envelope`).
pub fn seal_envelope(
    signer: &Es256Signer,
    kid: &str,
    key_id: &str,
    kek: &[u8; 32],
    plaintext: &[u8],
) -> Result<String, SealError> {
    resource("kid", &json!(kid))?;
    resource("key_id", &json!(key_id))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (dek, iv, key_iv) = (random::<32>()?, random::<12>()?, random::<12>()?);
    let (c, t) = aes256gcm_seal(kek, &key_iv, b"", &dek).map_err(|_| SealError::Decrypt("wrap"))?;
    let ek = [c, t.to_vec()].concat();
    let (c, t) =
        aes256gcm_seal(&dek, &iv, b"", plaintext).map_err(|_| SealError::Decrypt("encrypt"))?;
    let ed = [c, t.to_vec()].concat();
    sign(
        signer,
        kid,
        &json!({"version": "0.1.0", "type": "envelope", "key_id": key_id,
                "encrypted_key": b64(&ek), "encrypted_data": b64(&ed), "wrap_type": "A256GCM",
                "provider": "kbs", "provider_settings": {},
                "annotations": {"iv": b64(&iv), "key_iv": b64(&key_iv)}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_tampering() {
        let (signer, _) = Es256Signer::generate().unwrap();
        let jwk = serde_json::to_vec(signer.public_jwk()).unwrap();
        let kek = [9u8; 32];
        let s = seal_envelope(
            &signer,
            "kbs:///o/seal/pub",
            "kbs:///o/kek/1",
            &kek,
            b"plain",
        )
        .unwrap();
        let sealed = Sealed::parse(&s).unwrap();
        assert_eq!(sealed.kid().unwrap().to_string(), "o/seal/pub");
        let p = sealed.verify(&jwk).unwrap().clone();
        assert_eq!(open_envelope(&p, &kek).unwrap(), b"plain");
        assert!(matches!(
            open_envelope(&p, &[8u8; 32]),
            Err(SealError::Decrypt(_))
        ));

        // Any change to the payload breaks the signature.
        let mut parts: Vec<String> = s.split('.').map(String::from).collect();
        let mut payload: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&parts[2])
                .unwrap(),
        )
        .unwrap();
        payload["key_id"] = json!("kbs:///o/kek/2");
        parts[2] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&payload).unwrap());
        let tampered = parts.join(".");
        let t = Sealed::parse(&tampered).unwrap();
        assert!(matches!(t.verify(&jwk), Err(SealError::Signature(_))));
        // Another owner's key does not verify.
        let (other, _) = Es256Signer::generate().unwrap();
        let other = serde_json::to_vec(other.public_jwk()).unwrap();
        assert!(matches!(
            sealed.verify(&other),
            Err(SealError::Signature(_))
        ));

        for bad in [
            "",
            "sealed.",
            "sealed.a.b",
            "unsealed.a.b.c",
            "sealed.e30.e30.AA",
        ] {
            assert!(
                matches!(Sealed::parse(bad), Err(SealError::Format(_))),
                "{bad}"
            );
        }
    }
}
