//! AMD SEV-SNP certificates: ARK (root, self-signed), ASK/ASVK
//! (intermediates), VCEK/VLEK (report signing keys), with the VCEK extensions
//! of AMD publication 57230: TCB components (1.3.6.1.4.1.3704.1.3.x), hwID
//! (…1.4), product name (…1.2). ARKs are trusted only by SHA-256
//! fingerprint of their DER, pinned here.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use x509_parser::prelude::*;
use x509_parser::signature_algorithm::SignatureAlgorithm;

/// An SEV-SNP product line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// SHA-256 of the DER of the product's ARK (AMD KDS `cert_chain`).
    pub fn ark_fingerprint(self) -> &'static str {
        match self {
            Self::Milan => "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
            Self::Genoa => "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
            Self::Turin => "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        }
    }

    /// The product whose pinned ARK has this fingerprint.
    pub fn from_ark_fingerprint(fp: &[u8; 32]) -> Option<Self> {
        let hex = hex::encode(fp);
        [Self::Milan, Self::Genoa, Self::Turin]
            .into_iter()
            .find(|p| p.ark_fingerprint() == hex)
    }
}

/// Why a certificate is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("{what}: not a DER X.509 certificate: {reason}")]
    Parse { what: &'static str, reason: String },
    #[error("{what}: trailing bytes after the certificate")]
    Trailing { what: &'static str },
    #[error("{what}: unsupported public key: {reason}")]
    PublicKey { what: &'static str, reason: String },
    #[error("{what}: extension {oid}: {reason}")]
    Extension {
        what: &'static str,
        oid: &'static str,
        reason: String,
    },
}

/// Public key of an AMD certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum CertKey {
    /// RSA (ARK, ASK, ASVK): modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// EC P-384 (VCEK, VLEK): SubjectPublicKeyInfo DER.
    EcP384 { spki: Vec<u8> },
}

/// TCB components certified by a VCEK/VLEK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CertTcb {
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
    pub fmc: Option<u8>,
}

/// A parsed AMD certificate, holding what verification needs (owned).
#[derive(Clone)]
pub struct AmdCert {
    pub der: Vec<u8>,
    pub fingerprint: [u8; 32],
    tbs: Vec<u8>,
    signature: Vec<u8>,
    /// RSASSA-PSS with SHA-384 (MGF1-SHA-384, salt 48), as AMD signs.
    sig_is_pss_sha384: bool,
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub subject_cn: String,
    /// The issuer as text (`C=US, …, CN=SEV-Milan`), for messages.
    pub issuer_name: String,
    pub not_before: i64,
    pub not_after: i64,
    pub key: CertKey,
    pub tcb: CertTcb,
    pub hw_id: Option<Vec<u8>>,
    pub product_name: Option<String>,
}

impl std::fmt::Debug for AmdCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmdCert")
            .field("subject_cn", &self.subject_cn)
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

const OID_BL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_PRODUCT: &str = "1.3.6.1.4.1.3704.1.2";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";

/// A DER INTEGER (tag 2) holding a value that fits a u8.
fn der_small_int(v: &[u8]) -> Option<u8> {
    let (&tag, rest) = v.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 2 || len as usize != body.len() || body.is_empty() || body.len() > 2 {
        return None;
    }
    match body {
        [x] if *x < 0x80 => Some(*x),
        [0, x] if *x >= 0x80 => Some(*x),
        _ => None,
    }
}

/// hwID is the raw chip id (64 bytes; 8 on Turin), or the same wrapped in a
/// DER OCTET STRING — both occur in the field.
fn hw_id(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() >= 2 && v[0] == 0x04 && v[1] as usize == v.len() - 2 && matches!(v.len() - 2, 8 | 64)
    {
        return Some(v[2..].to_vec());
    }
    matches!(v.len(), 8 | 64).then(|| v.to_vec())
}

/// A DER INTEGER's content without its sign-padding zero bytes.
fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}

fn time(t: &ASN1Time) -> i64 {
    t.timestamp()
}

impl AmdCert {
    /// Parse one DER certificate; `what` names it in errors.
    pub fn from_der(what: &'static str, der: &[u8]) -> Result<Self, CertError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse {
            what,
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(CertError::Trailing { what });
        }
        let sig_is_pss_sha384 = cert.signature_algorithm.algorithm.to_id_string() == OID_RSA_PSS
            && match SignatureAlgorithm::try_from(&cert.signature_algorithm) {
                Ok(SignatureAlgorithm::RSASSA_PSS(p)) => {
                    p.hash_algorithm_oid().to_id_string() == OID_SHA384 && p.salt_length() == 48
                }
                _ => false,
            };
        let spki = cert.public_key();
        let key = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::EC(_)) => CertKey::EcP384 {
                spki: spki.raw.to_vec(),
            },
            Ok(x509_parser::public_key::PublicKey::RSA(k)) => CertKey::Rsa {
                n: strip_zeros(k.modulus).to_vec(),
                e: strip_zeros(k.exponent).to_vec(),
            },
            _ if spki.algorithm.algorithm.to_id_string() == OID_RSA_PSS => {
                // id-RSASSA-PSS keys: the BIT STRING is an RSAPublicKey.
                let pk = aws_lc_rs::rsa::PublicKey::from_der(&spki.subject_public_key.data)
                    .map_err(|e| CertError::PublicKey {
                        what,
                        reason: e.to_string(),
                    })?;
                CertKey::Rsa {
                    n: pk.modulus().big_endian_without_leading_zero().to_vec(),
                    e: pk.exponent().big_endian_without_leading_zero().to_vec(),
                }
            }
            other => {
                return Err(CertError::PublicKey {
                    what,
                    reason: format!("{:?}", other.map(|_| "unsupported")),
                })
            }
        };
        let mut tcb = CertTcb::default();
        let mut hw = None;
        let mut product_name = None;
        for ext in cert.extensions() {
            let oid = ext.oid.to_id_string();
            let v = ext.value;
            let int = |o: &'static str| {
                der_small_int(v).map(Some).ok_or(CertError::Extension {
                    what,
                    oid: o,
                    reason: "not a small INTEGER".into(),
                })
            };
            match oid.as_str() {
                OID_BL => tcb.bootloader = int(OID_BL)?,
                OID_TEE => tcb.tee = int(OID_TEE)?,
                OID_SNP => tcb.snp = int(OID_SNP)?,
                OID_UCODE => tcb.microcode = int(OID_UCODE)?,
                OID_FMC => tcb.fmc = int(OID_FMC)?,
                OID_HWID => {
                    hw = Some(hw_id(v).ok_or(CertError::Extension {
                        what,
                        oid: OID_HWID,
                        reason: format!("{} bytes is not a chip id", v.len()),
                    })?)
                }
                OID_PRODUCT => {
                    // IA5String (tag 0x16), possibly bare.
                    let s = if v.len() >= 2 && v[0] == 0x16 && v[1] as usize == v.len() - 2 {
                        &v[2..]
                    } else {
                        v
                    };
                    product_name = Some(String::from_utf8_lossy(s).into_owned());
                }
                _ => {}
            }
        }
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let fingerprint: [u8; 32] = digest::digest(&digest::SHA256, der)
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        Ok(Self {
            der: der.to_vec(),
            fingerprint,
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            signature: cert.signature_value.data.to_vec(),
            sig_is_pss_sha384,
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            issuer_name: cert.issuer().to_string(),
            subject_cn,
            not_before: time(&cert.validity().not_before),
            not_after: time(&cert.validity().not_after),
            key,
            tcb,
            hw_id: hw,
            product_name,
        })
    }

    /// Parse every certificate of a PEM bundle (e.g. KDS `cert_chain`:
    /// ASK then ARK).
    pub fn from_pem_bundle(what: &'static str, pem: &[u8]) -> Result<Vec<Self>, CertError> {
        let mut out = Vec::new();
        for p in Pem::iter_from_buffer(pem) {
            let p = p.map_err(|e| CertError::Parse {
                what,
                reason: e.to_string(),
            })?;
            out.push(Self::from_der(what, &p.contents)?);
        }
        if out.is_empty() {
            return Err(CertError::Parse {
                what,
                reason: "no PEM certificate found".into(),
            });
        }
        Ok(out)
    }

    /// DER or PEM, whichever `bytes` is.
    pub fn from_der_or_pem(what: &'static str, bytes: &[u8]) -> Result<Self, CertError> {
        if bytes.starts_with(b"-----BEGIN") {
            let mut v = Self::from_pem_bundle(what, bytes)?;
            if v.len() != 1 {
                return Err(CertError::Parse {
                    what,
                    reason: format!("expected one certificate, found {}", v.len()),
                });
            }
            return Ok(v.remove(0));
        }
        Self::from_der(what, bytes)
    }

    /// Whether `issuer` signed this certificate (names match and the
    /// RSASSA-PSS SHA-384 signature verifies with the issuer's RSA key).
    pub fn signed_by(&self, issuer: &AmdCert) -> Result<(), &'static str> {
        if self.issuer != issuer.subject {
            return Err("issuer name does not match the issuing certificate's subject");
        }
        if !self.sig_is_pss_sha384 {
            return Err("signature algorithm is not RSASSA-PSS with SHA-384 and salt 48");
        }
        let CertKey::Rsa { n, e } = &issuer.key else {
            return Err("issuing certificate has no RSA key");
        };
        RsaPublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        }
        .verify(
            &signature::RSA_PSS_2048_8192_SHA384,
            &self.tbs,
            &self.signature,
        )
        .map_err(|_| "RSASSA-PSS signature does not verify")
    }

    /// Whether the certificate is valid at `now` (unix seconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The P-384 verification key of a VCEK/VLEK.
    pub fn report_key(&self) -> Option<ParsedPublicKey> {
        match &self.key {
            CertKey::EcP384 { spki } => {
                ParsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, spki).ok()
            }
            CertKey::Rsa { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_small_der_integers_and_hwid_forms() {
        assert_eq!(der_small_int(&[2, 1, 3]), Some(3));
        assert_eq!(der_small_int(&[2, 2, 0, 0xd9]), Some(0xd9));
        assert_eq!(der_small_int(&[2, 1, 0x80]), None);
        assert_eq!(der_small_int(&[4, 1, 3]), None);
        assert_eq!(der_small_int(&[2, 5, 1]), None);
        assert_eq!(hw_id(&[7u8; 64]).unwrap().len(), 64);
        let mut wrapped = vec![4u8, 64];
        wrapped.extend([7u8; 64]);
        assert_eq!(hw_id(&wrapped).unwrap(), vec![7u8; 64]);
        assert_eq!(hw_id(&[1u8; 8]).unwrap().len(), 8);
        assert!(hw_id(&[1u8; 10]).is_none());
    }
}
