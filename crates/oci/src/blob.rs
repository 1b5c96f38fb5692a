//! Content digests (OCI image spec, "Digests": `algorithm:encoded`, with
//! `sha256` and `sha512` registered) and the check of a blob against its
//! descriptor.

use std::fmt;
use std::io::Read;

/// Why a blob is not the one its descriptor names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("{0:?} is not a digest (algorithm:hex, sha256 or sha512)")]
    BadDigest(String),
    #[error("blob {digest}: content has digest {actual}")]
    Mismatch { digest: String, actual: String },
    #[error("blob {digest}: {actual} bytes, the descriptor says {expected}")]
    Size {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest}: larger than the {limit} bytes allowed for it")]
    TooLarge { digest: String, limit: u64 },
    #[error("blob {digest}: {reason}")]
    Io { digest: String, reason: String },
}

/// A validated digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Algorithm {
    Sha256,
    Sha512,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, BlobError> {
        let bad = || BlobError::BadDigest(s.chars().take(100).collect());
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let (algorithm, len) = match alg {
            "sha256" => (Algorithm::Sha256, 64),
            "sha512" => (Algorithm::Sha512, 128),
            _ => return Err(bad()),
        };
        // The spec's encoding for these is lowercase hex.
        if hex.len() != len
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        Ok(Self {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
        Self {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(d.as_ref()),
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The encoded part (lowercase hex).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    fn context(&self) -> aws_lc_rs::digest::Context {
        aws_lc_rs::digest::Context::new(match self.algorithm {
            Algorithm::Sha256 => &aws_lc_rs::digest::SHA256,
            Algorithm::Sha512 => &aws_lc_rs::digest::SHA512,
        })
    }

    /// Read all of `r` (at most `limit` bytes), checking that it has this
    /// digest and, when given, `size` bytes.
    pub fn read_verified(
        &self,
        mut r: impl Read,
        size: Option<u64>,
        limit: u64,
    ) -> Result<Vec<u8>, BlobError> {
        let mut out = Vec::new();
        let io = |e: std::io::Error| BlobError::Io {
            digest: self.to_string(),
            reason: e.to_string(),
        };
        (&mut r).take(limit + 1).read_to_end(&mut out).map_err(io)?;
        if out.len() as u64 > limit {
            return Err(BlobError::TooLarge {
                digest: self.to_string(),
                limit,
            });
        }
        self.check(&out, size)?;
        Ok(out)
    }

    /// Check `data` against this digest and, when given, `size`.
    pub fn check(&self, data: &[u8], size: Option<u64>) -> Result<(), BlobError> {
        if let Some(expected) = size {
            if data.len() as u64 != expected {
                return Err(BlobError::Size {
                    digest: self.to_string(),
                    expected,
                    actual: data.len() as u64,
                });
            }
        }
        let mut ctx = self.context();
        ctx.update(data);
        let actual = hex::encode(ctx.finish().as_ref());
        if actual != self.hex {
            return Err(BlobError::Mismatch {
                digest: self.to_string(),
                actual: format!("{}:{actual}", self.algorithm()),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = BlobError;
    fn from_str(s: &str) -> Result<Self, BlobError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_checks_digests() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b""), d);
        d.check(b"", Some(0)).unwrap();
        assert!(matches!(
            d.check(b"x", None),
            Err(BlobError::Mismatch { .. })
        ));
        assert!(matches!(d.check(b"", Some(3)), Err(BlobError::Size { .. })));
        for bad in [
            "sha256:ABC",
            "md5:00",
            "sha256",
            &EMPTY.to_uppercase(),
            "sha512:00",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        let e = Digest::sha256_of(b"abc")
            .read_verified(&b"abcd"[..], None, 3)
            .unwrap_err();
        assert!(matches!(e, BlobError::TooLarge { .. }), "{e}");
        assert_eq!(
            Digest::sha256_of(b"abc")
                .read_verified(&b"abc"[..], Some(3), 3)
                .unwrap(),
            b"abc"
        );
    }
}
