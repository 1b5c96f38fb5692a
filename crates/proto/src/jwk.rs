//! JSON Web Keys (RFC 7517/7518) for the TEE's ephemeral key, and the key
//! pair the guest holds.

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
use aws_lc_rs::rsa;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::b64;

/// A public JWK. Unknown members are kept so that the runtime-data hash is
/// computed over exactly what the guest sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A JWK that is malformed or names an unsupported key type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("JWK is missing member {0:?}")]
    Missing(&'static str),
    #[error("JWK member {0:?} is not valid base64url")]
    Encoding(&'static str),
    #[error("unsupported JWK: {0}")]
    Unsupported(String),
    #[error("JWK does not hold a valid public key: {0}")]
    InvalidKey(&'static str),
}

/// Elliptic curves ward supports for ECDH-ES and ES256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Self::P256),
            "P-384" => Some(Self::P384),
            "P-521" => Some(Self::P521),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    /// Length of one coordinate in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    pub(crate) fn agreement_alg(self) -> &'static agreement::Algorithm {
        match self {
            Self::P256 => &agreement::ECDH_P256,
            Self::P384 => &agreement::ECDH_P384,
            Self::P521 => &agreement::ECDH_P521,
        }
    }
}

/// Public key material extracted from a JWK.
pub enum PublicKey {
    /// Uncompressed SEC1 point (0x04 ‖ x ‖ y).
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

fn field<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, JwkError> {
    v.as_deref().ok_or(JwkError::Missing(name))
}

fn decode(v: &Option<String>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    b64::url_decode(name, field(v, name)?).map_err(|_| JwkError::Encoding(name))
}

impl Jwk {
    /// An EC public JWK from an uncompressed point.
    pub fn ec(curve: Curve, point: &[u8], alg: Option<&str>) -> Self {
        let n = curve.coordinate_len();
        Jwk {
            kty: "EC".into(),
            crv: Some(curve.name().into()),
            alg: alg.map(str::to_string),
            x: Some(b64::url_encode(&point[1..1 + n])),
            y: Some(b64::url_encode(&point[1 + n..])),
            n: None,
            e: None,
            extra: Map::new(),
        }
    }

    /// The public key this JWK describes, validated for type and size.
    pub fn public_key(&self) -> Result<PublicKey, JwkError> {
        match self.kty.as_str() {
            "EC" => {
                let crv = field(&self.crv, "crv")?;
                let curve = Curve::from_name(crv)
                    .ok_or_else(|| JwkError::Unsupported(format!("curve {crv:?}")))?;
                let x = decode(&self.x, "x")?;
                let y = decode(&self.y, "y")?;
                let n = curve.coordinate_len();
                if x.len() != n || y.len() != n {
                    return Err(JwkError::InvalidKey("EC coordinate has the wrong length"));
                }
                let mut point = Vec::with_capacity(1 + 2 * n);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Ok(PublicKey::Ec { curve, point })
            }
            "RSA" => {
                let n = decode(&self.n, "n")?;
                let e = decode(&self.e, "e")?;
                if n.len() < 256 {
                    return Err(JwkError::InvalidKey("RSA modulus shorter than 2048 bits"));
                }
                Ok(PublicKey::Rsa { n, e })
            }
            other => Err(JwkError::Unsupported(format!("key type {other:?}"))),
        }
    }
}

/// The guest's ephemeral key pair; its private half never leaves the TEE.
pub enum TeeKeyPair {
    Ec {
        curve: Curve,
        key: agreement::PrivateKey,
    },
    Rsa {
        key: rsa::PrivateDecryptingKey,
    },
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ec { curve, .. } => write!(f, "TeeKeyPair::Ec({})", curve.name()),
            Self::Rsa { .. } => f.write_str("TeeKeyPair::Rsa"),
        }
    }
}

/// Key generation failed inside the crypto provider.
#[derive(Debug, Clone, thiserror::Error)]
#[error("key generation failed")]
pub struct KeyGenError;

impl TeeKeyPair {
    /// A fresh EC key for ECDH-ES+A256KW.
    pub fn generate_ec(curve: Curve) -> Result<Self, KeyGenError> {
        let key =
            agreement::PrivateKey::generate(curve.agreement_alg()).map_err(|_| KeyGenError)?;
        Ok(Self::Ec { curve, key })
    }

    /// A fresh RSA-2048 key for RSA-OAEP-256.
    pub fn generate_rsa() -> Result<Self, KeyGenError> {
        let key =
            rsa::PrivateDecryptingKey::generate(rsa::KeySize::Rsa2048).map_err(|_| KeyGenError)?;
        Ok(Self::Rsa { key })
    }

    /// The public JWK as the reference guest sends it.
    pub fn public_jwk(&self) -> Jwk {
        match self {
            Self::Ec { curve, key } => {
                let public = key
                    .compute_public_key()
                    .expect("public key of a valid private key");
                let bin: EcPublicKeyUncompressedBin<'_> = public
                    .as_be_bytes()
                    .expect("uncompressed encoding of a valid point");
                Jwk::ec(*curve, bin.as_ref(), Some(crate::jwe::ALG_ECDH_ES_A256KW))
            }
            Self::Rsa { key } => {
                use aws_lc_rs::encoding::AsDer;
                let spki = key.public_key().as_der().expect("DER of a valid RSA key");
                let public = rsa::PublicKey::from_der(spki.as_ref()).expect("valid RSA key");
                Jwk {
                    kty: "RSA".into(),
                    crv: None,
                    alg: Some(crate::jwe::ALG_RSA_OAEP_256.into()),
                    x: None,
                    y: None,
                    n: Some(b64::url_encode(
                        public.modulus().big_endian_without_leading_zero(),
                    )),
                    e: Some(b64::url_encode(
                        public.exponent().big_endian_without_leading_zero(),
                    )),
                    extra: Map::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_generated_keys_roundtrip() {
        for kp in [
            TeeKeyPair::generate_ec(Curve::P256).unwrap(),
            TeeKeyPair::generate_ec(Curve::P521).unwrap(),
            TeeKeyPair::generate_rsa().unwrap(),
        ] {
            let jwk = kp.public_jwk();
            let text = serde_json::to_string(&jwk).unwrap();
            let back: Jwk = serde_json::from_str(&text).unwrap();
            assert_eq!(back, jwk);
            assert!(back.public_key().is_ok());
        }
    }

    #[test]
    fn keeps_unknown_members() {
        let j: Jwk =
            serde_json::from_str(r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"k1"}"#)
                .unwrap();
        assert_eq!(serde_json::to_value(&j).unwrap()["kid"], "k1");
    }

    #[test]
    fn rejects_bad_keys() {
        let cases = [
            r#"{"kty":"OKP","crv":"X25519","x":"AA"}"#,
            r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
            r#"{"kty":"EC","crv":"P-192","x":"AA","y":"AA"}"#,
            r#"{"kty":"EC","crv":"P-256","y":"AA"}"#,
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
            r#"{"kty":"EC","crv":"P-256","x":"!!","y":"AA"}"#,
        ];
        for c in cases {
            let j: Jwk = serde_json::from_str(c).unwrap();
            assert!(j.public_key().is_err(), "{c}");
        }
    }
}
