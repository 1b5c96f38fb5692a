//! Compact JWS/JWT (RFC 7515/7519): ES256 signing of attestation tokens and
//! verification of tokens signed with ES256, ES384 or EdDSA (Ed25519).
//! Verification always uses a key the caller trusts, never one taken from
//! the token's own header.

use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair, ParsedPublicKey, VerificationAlgorithm,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::b64;
use crate::jwk::{Curve, Jwk};

/// Largest token accepted (the EAR of a TDX quote with event log stays far
/// below this).
pub const MAX_TOKEN_LEN: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("token is not a compact JWS (header.payload.signature)")]
    Shape,
    #[error("token is larger than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    #[error("token {0} is not valid base64url")]
    Encoding(&'static str),
    #[error("token {0} is not a JSON object")]
    Json(&'static str),
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("token signature does not verify with any trusted key")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token has no {0:?} claim")]
    MissingClaim(&'static str),
    #[error("token issuer {0:?} is not trusted")]
    Issuer(String),
    #[error("signing key: {0}")]
    Key(&'static str),
}

/// The ES256 signer of attestation tokens.
pub struct Es256Signer {
    key: EcdsaKeyPair,
    header_b64: String,
    jwk: Jwk,
}

impl std::fmt::Debug for Es256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Signer")
            .field("jwk", &self.jwk)
            .finish()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    jwk: &'a Jwk,
}

impl Es256Signer {
    /// A new random key; returns the signer and its PKCS#8 document to persist.
    pub fn generate() -> Result<(Self, Vec<u8>), JwtError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| JwtError::Key("generation failed"))?;
        let der = key
            .to_pkcs8v1()
            .map_err(|_| JwtError::Key("PKCS#8 encoding failed"))?;
        let der = der.as_ref().to_vec();
        Ok((Self::from_pkcs8(&der)?, der))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JwtError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| JwtError::Key("not a P-256 PKCS#8 private key"))?;
        let point: EcPublicKeyUncompressedBin<'_> = key
            .public_key()
            .as_be_bytes()
            .map_err(|_| JwtError::Key("public key encoding"))?;
        let mut jwk = Jwk::ec(Curve::P256, point.as_ref(), Some("ES256"));
        // Member order of the reference token header: alg, kty, crv, x, y.
        jwk.extra.clear();
        let header = Header {
            typ: "JWT",
            alg: "ES256",
            jwk: &jwk,
        };
        let header_b64 =
            b64::url_encode(serde_json::to_vec(&header).map_err(|_| JwtError::Key("header"))?);
        Ok(Self {
            key,
            header_b64,
            jwk,
        })
    }

    /// The public key as a JWK (`alg` ES256).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The public key as an uncompressed point, for [`VerifyingKey::es256`].
    pub fn public_point(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// Sign `payload` under a caller-chosen protected header (compact JWS,
    /// ES256); the header should say `"alg":"ES256"`.
    pub fn sign_jws(&self, header: &Value, payload: &[u8]) -> Result<String, JwtError> {
        let h = serde_json::to_vec(header).map_err(|_| JwtError::Json("header"))?;
        self.finish(b64::url_encode(&h), payload)
    }

    /// `header_b64.payload_b64.signature_b64`.
    fn finish(&self, mut out: String, payload: &[u8]) -> Result<String, JwtError> {
        out.push('.');
        out.push_str(&b64::url_encode(payload));
        let sig = self
            .key
            .sign(&SystemRandom::new(), out.as_bytes())
            .map_err(|_| JwtError::Key("signing failed"))?;
        out.push('.');
        out.push_str(&b64::url_encode(sig.as_ref()));
        Ok(out)
    }

    /// Sign `claims` into a compact JWT.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, JwtError> {
        let payload = serde_json::to_vec(claims).map_err(|_| JwtError::Json("payload"))?;
        self.sign_payload(&payload)
    }

    /// An ES256 JWT over `payload`, the claims already serialized as JSON.
    pub fn sign_payload(&self, payload: &[u8]) -> Result<String, JwtError> {
        let mut out = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 100);
        out.push_str(&self.header_b64);
        self.finish(out, payload)
    }
}

/// A trusted verification key, parsed once.
pub struct VerifyingKey {
    alg: &'static str,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.alg)
    }
}

impl VerifyingKey {
    /// From an X.509 SubjectPublicKeyInfo (DER): P-256 (ES256), P-384
    /// (ES384) or Ed25519 (EdDSA).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, JwtError> {
        let candidates: [(&'static str, &'static dyn VerificationAlgorithm); 3] = [
            ("ES256", &signature::ECDSA_P256_SHA256_FIXED),
            ("ES384", &signature::ECDSA_P384_SHA384_FIXED),
            ("EdDSA", &signature::ED25519),
        ];
        for (alg, v) in candidates {
            if let Ok(key) = ParsedPublicKey::new(v, der) {
                return Ok(Self { alg, key });
            }
        }
        Err(JwtError::Key("not a P-256, P-384 or Ed25519 public key"))
    }

    /// From an uncompressed P-256 point.
    pub fn es256(point: &[u8]) -> Result<Self, JwtError> {
        let key = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
            .map_err(|_| JwtError::Key("not a P-256 point"))?;
        Ok(Self { alg: "ES256", key })
    }

    /// From a public JWK (EC P-256/P-384).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwtError> {
        match jwk.public_key() {
            Ok(crate::jwk::PublicKey::Ec {
                curve: Curve::P256,
                point,
            }) => Self::es256(&point),
            Ok(crate::jwk::PublicKey::Ec {
                curve: Curve::P384,
                point,
            }) => {
                let key = ParsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .map_err(|_| JwtError::Key("not a P-384 point"))?;
                Ok(Self { alg: "ES384", key })
            }
            _ => Err(JwtError::Key("only EC P-256/P-384 JWKs are supported")),
        }
    }

    pub fn alg(&self) -> &'static str {
        self.alg
    }
}

/// A token split into its parts; nothing about it is trusted yet.
pub struct UnverifiedJwt<'a> {
    pub header: Value,
    pub claims: Value,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> UnverifiedJwt<'a> {
    pub fn parse(token: &'a str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Shape);
        };
        let header = json_part("header", h)?;
        let claims = json_part("payload", p)?;
        let signature =
            b64::url_decode("signature", s).map_err(|_| JwtError::Encoding("signature"))?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Self {
            header,
            claims,
            signing_input,
            signature,
        })
    }

    /// Check the signature against any of `keys` whose algorithm matches the
    /// header's `alg`.
    pub fn verify_signature(&self, keys: &[VerifyingKey]) -> Result<(), JwtError> {
        let alg = self.header.get("alg").and_then(Value::as_str).unwrap_or("");
        if !matches!(alg, "ES256" | "ES384" | "EdDSA") {
            return Err(JwtError::Algorithm(alg.chars().take(32).collect()));
        }
        for k in keys.iter().filter(|k| k.alg == alg) {
            if k.key
                .verify_sig(self.signing_input.as_bytes(), &self.signature)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(JwtError::Signature)
    }

    /// Check `exp` (required) and `nbf` (if present) against `now` (unix
    /// seconds) with `leeway` seconds of tolerance.
    pub fn check_time(&self, now: i64, leeway: i64) -> Result<(), JwtError> {
        let exp = self
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JwtError::MissingClaim("exp"))?;
        if now > exp + leeway {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = self.claims.get("nbf").and_then(Value::as_i64) {
            if now + leeway < nbf {
                return Err(JwtError::NotYetValid);
            }
        }
        Ok(())
    }

    /// Require `iss` to equal `issuer`.
    pub fn check_issuer(&self, issuer: &str) -> Result<(), JwtError> {
        match self.claims.get("iss").and_then(Value::as_str) {
            Some(i) if i == issuer => Ok(()),
            Some(i) => Err(JwtError::Issuer(i.chars().take(64).collect())),
            None => Err(JwtError::MissingClaim("iss")),
        }
    }
}

fn json_part(what: &'static str, s: &str) -> Result<Value, JwtError> {
    let bytes = b64::url_decode(what, s).map_err(|_| JwtError::Encoding(what))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Json(what))?;
    if !v.is_object() {
        return Err(JwtError::Json(what));
    }
    Ok(v)
}

/// Claims of a token, after [`UnverifiedJwt`] checks passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified(pub Value);

/// Parse and fully verify a token: signature by one of `keys`, time, issuer.
pub fn verify(
    token: &str,
    keys: &[VerifyingKey],
    now: i64,
    issuer: Option<&str>,
) -> Result<Verified, JwtError> {
    let t = UnverifiedJwt::parse(token)?;
    t.verify_signature(keys)?;
    t.check_time(now, 0)?;
    if let Some(iss) = issuer {
        t.check_issuer(iss)?;
    }
    Ok(Verified(t.claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signer() -> Es256Signer {
        Es256Signer::generate().unwrap().0
    }

    #[test]
    fn accepts_own_token() {
        let s = signer();
        let tok = s
            .sign(&json!({"iss": "ward", "exp": 1000, "x": 1}))
            .unwrap();
        let k = VerifyingKey::es256(&s.public_point()).unwrap();
        let v = verify(&tok, &[k], 999, Some("ward")).unwrap();
        assert_eq!(v.0["x"], 1);
        let header = UnverifiedJwt::parse(&tok).unwrap().header;
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["crv"], "P-256");
    }

    #[test]
    fn rejects_tampered_expired_foreign_and_wrong_issuer() {
        let s = signer();
        let k = || VerifyingKey::es256(&s.public_point()).unwrap();
        let tok = s.sign(&json!({"iss": "ward", "exp": 1000})).unwrap();
        // Tamper with the payload.
        let parts: Vec<&str> = tok.split('.').collect();
        let forged_payload = b64::url_encode(br#"{"iss":"ward","exp":99999}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify(&forged, &[k()], 0, None).unwrap_err(),
            JwtError::Signature
        );
        assert_eq!(
            verify(&tok, &[k()], 1001, None).unwrap_err(),
            JwtError::Expired
        );
        let other = VerifyingKey::es256(&signer().public_point()).unwrap();
        assert_eq!(
            verify(&tok, &[other], 0, None).unwrap_err(),
            JwtError::Signature
        );
        assert!(matches!(
            verify(&tok, &[k()], 0, Some("x")).unwrap_err(),
            JwtError::Issuer(_)
        ));
        // alg=none is refused.
        let none = format!("{}.{}.", b64::url_encode(br#"{"alg":"none"}"#), parts[1]);
        assert!(matches!(
            verify(&none, &[k()], 0, None).unwrap_err(),
            JwtError::Algorithm(_)
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(verify(bad, &[k()], 0, None).is_err());
        }
    }
}
