//! The key-encryption key and envelope encryption of secrets at rest.
//!
//! Sealed format (version 1):
//! `0x01 ‖ AES-KW(KEK, DEK) (40 bytes) ‖ nonce (12) ‖ AES-256-GCM(DEK, nonce, aad, data) ‖ tag (16)`
//! with a fresh 256-bit DEK per seal; `aad` names the row the secret belongs
//! to, so sealed values cannot be moved between rows.

use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Environment variable that may carry the KEK (base64 of 32 bytes).
pub const KEK_ENV: &str = "WARD_KEK";

const VERSION: u8 = 1;
const WRAPPED: usize = 40;
const NONCE: usize = 12;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KekError {
    #[error("key-encryption key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{KEK_ENV} must be the base64 encoding of exactly 32 bytes")]
    Env,
    #[error("random number generator failed")]
    Random,
    #[error("writing the key-encryption key: {0}")]
    Write(String),
}

/// A 256-bit key-encryption key.
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
    }
}

fn parse_key(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    STANDARD.decode(text).ok()?.try_into().ok()
}

impl Kek {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// A random KEK (tests, and first start).
    pub fn generate() -> Result<Self, KekError> {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| KekError::Random)?;
        Ok(Self(k))
    }

    /// From `WARD_KEK` if set.
    pub fn from_env() -> Result<Option<Self>, KekError> {
        match std::env::var(KEK_ENV) {
            Ok(v) => parse_key(v.as_bytes())
                .map(|k| Some(Self(k)))
                .ok_or(KekError::Env),
            Err(_) => Ok(None),
        }
    }

    /// Read a KEK file: 32 raw bytes or base64 text of 32 bytes.
    pub fn from_file(path: &Path) -> Result<Self, KekError> {
        let err = |reason: String| KekError::File {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        parse_key(&bytes)
            .map(Self)
            .ok_or_else(|| err("must hold 32 raw bytes or their base64 encoding".into()))
    }

    /// Read the KEK file, or create it (mode 0600, base64 text) if it does
    /// not exist, all or nothing (see [`crate::files::create_private`]).
    /// Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KekError> {
        if path.exists() {
            return Ok((Self::from_file(path)?, false));
        }
        let kek = Self::generate()?;
        let mut text = STANDARD.encode(kek.0).into_bytes();
        text.push(b'\n');
        // All or nothing: a crash or a full disk leaves no partial key.
        match crate::files::create_private(path, &text) {
            Ok(()) => Ok((kek, true)),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::from_file(path)?, false))
            }
            Err(e) => Err(KekError::Write(crate::files::describe(path, &e))),
        }
    }

    /// A keyed digest of `data` (HMAC-SHA-256, hex) under a key derived
    /// from this one for `purpose`. It identifies a secret's content in a
    /// record an auditor reads (the same content, the same digest) without
    /// letting anyone who lacks the KEK test guesses of a low-entropy secret
    /// against it, as a plain hash would.
    pub fn keyed_digest(&self, purpose: &str, data: &[u8]) -> String {
        use aws_lc_rs::hmac;
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.0),
            format!("ward keyed digest v1: {purpose}").as_bytes(),
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), data);
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Envelope-encrypt `data`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], data: &[u8]) -> Result<Vec<u8>, KekError> {
        let rng = SystemRandom::new();
        let mut dek = [0u8; 32];
        let mut nonce = [0u8; NONCE];
        rng.fill(&mut dek).map_err(|_| KekError::Random)?;
        rng.fill(&mut nonce).map_err(|_| KekError::Random)?;
        let mut out = Vec::with_capacity(1 + WRAPPED + NONCE + data.len() + TAG);
        out.push(VERSION);
        let mut wrapped = [0u8; WRAPPED];
        AesKek::new(&AES_256, &self.0)
            .and_then(|k| k.wrap(&dek, &mut wrapped).map(|_| ()))
            .map_err(|_| KekError::Random)?;
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        let key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dek).map_err(|_| KekError::Random)?);
        dek.iter_mut().for_each(|b| *b = 0);
        let mut body = data.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| KekError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Open a value sealed by [`Kek::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < 1 + WRAPPED + NONCE + TAG {
            return Err("sealed value is truncated".into());
        }
        if sealed[0] != VERSION {
            return Err(format!("unknown sealed-value version {}", sealed[0]));
        }
        let wrapped = &sealed[1..1 + WRAPPED];
        let nonce: [u8; NONCE] = sealed[1 + WRAPPED..1 + WRAPPED + NONCE]
            .try_into()
            .map_err(|_| "nonce")?;
        let mut dek = [0u8; 32];
        AesKek::new(&AES_256, &self.0)
            .and_then(|k| k.unwrap(wrapped, &mut dek).map(|_| ()))
            .map_err(|_| "data key does not unwrap".to_string())?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dek).map_err(|_| "data key")?);
        dek.iter_mut().for_each(|b| *b = 0);
        let mut body = sealed[1 + WRAPPED + NONCE..].to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| "authentication failed".to_string())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_roundtrip_and_rejects_wrong_row_key_or_tampering() {
        let k = Kek::generate().unwrap();
        let s = k.seal(b"row-a", b"secret").unwrap();
        assert_eq!(k.open(b"row-a", &s).unwrap(), b"secret");
        assert!(k.open(b"row-b", &s).is_err());
        assert!(Kek::generate().unwrap().open(b"row-a", &s).is_err());
        let mut t = s.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(k.open(b"row-a", &t).is_err());
        assert!(k.open(b"row-a", &s[..20]).is_err());
    }

    #[test]
    fn creates_key_file_with_0600_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        let (k1, created) = Kek::load_or_create(&p).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (k2, created) = Kek::load_or_create(&p).unwrap();
        assert!(!created);
        let s = k1.seal(b"x", b"y").unwrap();
        assert_eq!(k2.open(b"x", &s).unwrap(), b"y");
        std::fs::write(&p, "short").unwrap();
        assert!(Kek::from_file(&p).is_err());
    }
}
