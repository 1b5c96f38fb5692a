//! JWE in flattened JSON serialization (RFC 7516 §7.2.2) as the KBS sends
//! resources: `alg` ECDH-ES+A256KW (RFC 7518 §4.6, Concat KDF with SHA-256 and
//! empty PartyUInfo/PartyVInfo, ephemeral key in `epk`) or RSA-OAEP-256
//! (RFC 7518 §4.3); `enc` A256GCM; AAD is the ASCII of the `protected` member.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, UnparsedPublicKey};
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa;
use serde::{Deserialize, Serialize};
use zeroize_on_drop::Secret;

use crate::b64;
use crate::jwk::{Curve, Jwk, JwkError, PublicKey, TeeKeyPair};

pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
pub const ENC_A256GCM: &str = "A256GCM";

/// Flattened JWE JSON serialization, members in the order the reference
/// server writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlattenedJwe {
    pub protected: String,
    pub encrypted_key: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

/// Why a JWE could not be produced or opened. Messages never contain key or
/// plaintext material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JweError {
    #[error("recipient key: {0}")]
    Key(#[from] JwkError),
    #[error("unsupported JWE {0}")]
    Unsupported(String),
    #[error("malformed JWE: {0}")]
    Malformed(String),
    #[error("JWE decryption failed (wrong key or tampered message)")]
    Decrypt,
    #[error("the JWE was made for a different key type than the one held")]
    KeyMismatch,
    #[error("cryptographic operation failed")]
    Crypto,
}

#[derive(Serialize, Deserialize)]
struct ProtectedHeader {
    alg: String,
    enc: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    epk: Option<EpkJwk>,
}

/// The `epk` member, written with sorted keys as the reference does.
#[derive(Serialize, Deserialize)]
struct EpkJwk {
    crv: String,
    kty: String,
    x: String,
    y: String,
}

mod zeroize_on_drop {
    /// A 32-byte secret wiped from memory when dropped.
    pub struct Secret(pub [u8; 32]);
    impl Drop for Secret {
        fn drop(&mut self) {
            for b in self.0.iter_mut() {
                // SAFETY: writing through a valid &mut u8; volatile keeps the
                // compiler from eliding the wipe.
                unsafe { std::ptr::write_volatile(b, 0) };
            }
        }
    }
}

/// A parsed recipient, prepared once per TEE key and reused for every
/// resource sent to it.
pub enum Recipient {
    /// The point, parsed and checked once (cloning shares it).
    Ec {
        curve: Curve,
        point: agreement::ParsedPublicKey,
    },
    Rsa(rsa::OaepPublicEncryptingKey),
}

impl Recipient {
    /// Validate a `tee-pubkey` JWK. The `alg` member, when present, must agree
    /// with the key type.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JweError> {
        let key = jwk.public_key()?;
        match key {
            PublicKey::Ec { curve, point } => {
                if let Some(alg) = jwk.alg.as_deref() {
                    if alg != ALG_ECDH_ES_A256KW {
                        return Err(JweError::Unsupported(format!("alg {alg:?} for an EC key")));
                    }
                }
                // Parsed once, so an off-curve point fails here, not later.
                let point = agreement::ParsedPublicKey::try_from(&UnparsedPublicKey::new(
                    curve.agreement_alg(),
                    &point,
                ))
                .map_err(|_| JweError::Key(JwkError::InvalidKey("EC point is not on the curve")))?;
                Ok(Self::Ec { curve, point })
            }
            PublicKey::Rsa { n, e } => {
                if let Some(alg) = jwk.alg.as_deref() {
                    if alg != ALG_RSA_OAEP_256 {
                        return Err(JweError::Unsupported(format!("alg {alg:?} for an RSA key")));
                    }
                }
                let components = rsa::PublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                };
                let public: rsa::PublicEncryptingKey = components
                    .try_into()
                    .map_err(|_| JweError::Key(JwkError::InvalidKey("RSA key rejected")))?;
                let oaep =
                    rsa::OaepPublicEncryptingKey::new(public).map_err(|_| JweError::Crypto)?;
                Ok(Self::Rsa(oaep))
            }
        }
    }
}

/// Concat KDF of RFC 7518 §4.6.2 (NIST SP 800-56A §5.8.1) with SHA-256,
/// producing `out.len()` bytes; AlgorithmID is `alg`, PartyUInfo and
/// PartyVInfo are empty.
pub fn concat_kdf(z: &[u8], alg: &str, apu: &[u8], apv: &[u8], out: &mut [u8]) {
    let keydatalen_bits = (out.len() as u32) * 8;
    let mut counter: u32 = 1;
    let mut offset = 0;
    while offset < out.len() {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        ctx.update(&(alg.len() as u32).to_be_bytes());
        ctx.update(alg.as_bytes());
        ctx.update(&(apu.len() as u32).to_be_bytes());
        ctx.update(apu);
        ctx.update(&(apv.len() as u32).to_be_bytes());
        ctx.update(apv);
        ctx.update(&keydatalen_bits.to_be_bytes());
        let block = ctx.finish();
        let n = (out.len() - offset).min(block.as_ref().len());
        out[offset..offset + n].copy_from_slice(&block.as_ref()[..n]);
        offset += n;
        counter += 1;
    }
}

/// AES-256-GCM seal: returns ciphertext and the 16-byte tag.
pub fn aes256gcm_seal(
    key: &[u8; 32],
    iv: &[u8; 12],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; 16]), JweError> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| JweError::Crypto)?);
    let mut buf = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut buf)
        .map_err(|_| JweError::Crypto)?;
    let mut t = [0u8; 16];
    t.copy_from_slice(tag.as_ref());
    Ok((buf, t))
}

/// AES-256-GCM open of `ciphertext` with a separate `tag`.
pub fn aes256gcm_open(
    key: &[u8; 32],
    iv: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, JweError> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| JweError::Crypto)?);
    let mut buf = Vec::with_capacity(ciphertext.len() + tag.len());
    buf.extend_from_slice(ciphertext);
    buf.extend_from_slice(tag);
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut buf)
        .map_err(|_| JweError::Decrypt)?;
    Ok(plain.to_vec())
}

fn random<const N: usize>() -> Result<[u8; N], JweError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| JweError::Crypto)?;
    Ok(b)
}

fn derive_kek(
    my: &agreement::PrivateKey,
    peer: impl TryInto<agreement::ParsedPublicKey>,
) -> Result<Secret, JweError> {
    agreement::agree(my, peer, JweError::Crypto, |z| {
        let mut k = Secret([0u8; 32]);
        concat_kdf(z, ALG_ECDH_ES_A256KW, b"", b"", &mut k.0);
        Ok(k)
    })
}

/// Encrypt `plaintext` to `recipient`.
pub fn encrypt(recipient: &Recipient, plaintext: &[u8]) -> Result<FlattenedJwe, JweError> {
    let cek = Secret(random::<32>()?);
    let (header, encrypted_key) = match recipient {
        Recipient::Ec { curve, point } => {
            let eph = agreement::PrivateKey::generate(curve.agreement_alg())
                .map_err(|_| JweError::Crypto)?;
            let kek = derive_kek(&eph, point.clone())?;
            let epk_pub = eph.compute_public_key().map_err(|_| JweError::Crypto)?;
            let bin: EcPublicKeyUncompressedBin<'_> =
                epk_pub.as_be_bytes().map_err(|_| JweError::Crypto)?;
            let epk = Jwk::ec(*curve, bin.as_ref(), None);
            let kek = AesKek::new(&AES_256, &kek.0).map_err(|_| JweError::Crypto)?;
            let mut wrapped = [0u8; 40];
            kek.wrap(&cek.0, &mut wrapped)
                .map_err(|_| JweError::Crypto)?;
            let header = ProtectedHeader {
                alg: ALG_ECDH_ES_A256KW.into(),
                enc: ENC_A256GCM.into(),
                epk: Some(EpkJwk {
                    crv: curve.name().into(),
                    kty: "EC".into(),
                    x: epk.x.unwrap_or_default(),
                    y: epk.y.unwrap_or_default(),
                }),
            };
            (header, wrapped.to_vec())
        }
        Recipient::Rsa(key) => {
            let mut out = vec![0u8; key.ciphertext_size()];
            let ct = key
                .encrypt(&rsa::OAEP_SHA256_MGF1SHA256, &cek.0, &mut out, None)
                .map_err(|_| JweError::Crypto)?;
            let ct = ct.to_vec();
            (
                ProtectedHeader {
                    alg: ALG_RSA_OAEP_256.into(),
                    enc: ENC_A256GCM.into(),
                    epk: None,
                },
                ct,
            )
        }
    };
    let protected = b64::url_encode(serde_json::to_vec(&header).map_err(|_| JweError::Crypto)?);
    let iv = random::<12>()?;
    let (ciphertext, tag) = aes256gcm_seal(&cek.0, &iv, protected.as_bytes(), plaintext)?;
    Ok(FlattenedJwe {
        protected,
        encrypted_key: b64::url_encode(encrypted_key),
        iv: b64::url_encode(iv),
        ciphertext: b64::url_encode(ciphertext),
        tag: b64::url_encode(tag),
    })
}

/// Upper bound on a JWE member, so a hostile server cannot make the guest
/// allocate without limit.
const MAX_MEMBER: usize = 64 * 1024 * 1024;

fn member(name: &'static str, s: &str) -> Result<Vec<u8>, JweError> {
    if s.len() > MAX_MEMBER {
        return Err(JweError::Malformed(format!("member {name} is too large")));
    }
    b64::url_decode(name, s).map_err(|e| JweError::Malformed(e.to_string()))
}

/// Decrypt a JWE addressed to `key`.
pub fn decrypt(key: &TeeKeyPair, jwe: &FlattenedJwe) -> Result<Vec<u8>, JweError> {
    let header_bytes = member("protected", &jwe.protected)?;
    let header: ProtectedHeader = serde_json::from_slice(&header_bytes)
        .map_err(|e| JweError::Malformed(format!("protected header: {e}")))?;
    if header.enc != ENC_A256GCM {
        return Err(JweError::Unsupported(format!("enc {:?}", header.enc)));
    }
    let encrypted_key = member("encrypted_key", &jwe.encrypted_key)?;
    let iv: [u8; 12] = member("iv", &jwe.iv)?
        .try_into()
        .map_err(|_| JweError::Malformed("iv must be 12 bytes".into()))?;
    let ciphertext = member("ciphertext", &jwe.ciphertext)?;
    let tag = member("tag", &jwe.tag)?;
    if tag.len() != 16 {
        return Err(JweError::Malformed("tag must be 16 bytes".into()));
    }
    let mut cek = Secret([0u8; 32]);
    match (header.alg.as_str(), key) {
        (ALG_ECDH_ES_A256KW, TeeKeyPair::Ec { curve, key }) => {
            let epk = header
                .epk
                .ok_or_else(|| JweError::Malformed("ECDH-ES header has no epk".into()))?;
            if epk.kty != "EC" || epk.crv != curve.name() {
                return Err(JweError::KeyMismatch);
            }
            let x = member("epk.x", &epk.x)?;
            let y = member("epk.y", &epk.y)?;
            let n = curve.coordinate_len();
            if x.len() != n || y.len() != n {
                return Err(JweError::Malformed(
                    "epk coordinate has the wrong length".into(),
                ));
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let kek = derive_kek(key, UnparsedPublicKey::new(curve.agreement_alg(), &point))
                .map_err(|_| JweError::Decrypt)?;
            if encrypted_key.len() != 40 {
                return Err(JweError::Malformed(
                    "encrypted_key must be 40 bytes for A256KW".into(),
                ));
            }
            let kek = AesKek::new(&AES_256, &kek.0).map_err(|_| JweError::Crypto)?;
            kek.unwrap(&encrypted_key, &mut cek.0)
                .map_err(|_| JweError::Decrypt)?;
        }
        (ALG_RSA_OAEP_256, TeeKeyPair::Rsa { key }) => {
            let oaep =
                rsa::OaepPrivateDecryptingKey::new(key.clone()).map_err(|_| JweError::Crypto)?;
            let mut out = vec![0u8; oaep.min_output_size()];
            let plain = oaep
                .decrypt(&rsa::OAEP_SHA256_MGF1SHA256, &encrypted_key, &mut out, None)
                .map_err(|_| JweError::Decrypt)?;
            if plain.len() != 32 {
                return Err(JweError::Decrypt);
            }
            cek.0.copy_from_slice(plain);
        }
        (ALG_ECDH_ES_A256KW | ALG_RSA_OAEP_256, _) => return Err(JweError::KeyMismatch),
        (other, _) => return Err(JweError::Unsupported(format!("alg {other:?}"))),
    }
    aes256gcm_open(&cek.0, &iv, jwe.protected.as_bytes(), &ciphertext, &tag)
}
