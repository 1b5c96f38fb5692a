//! Intel PCK certificates, their chain to the pinned Intel SGX Root CA,
//! CRLs, and the SGX extensions of the PCK leaf (Intel "SGX PCK
//! Certificate and CRL Profile": OID 1.2.840.113741.1.13.1 with PPID, TCB
//! {compsvn 1..16, pcesvn, cpusvn}, PCE-ID, FMSPC, SGX type).
//!
//! Signatures are ECDSA P-256 / SHA-256 (DER-encoded in certificates and
//! CRLs), checked with aws-lc-rs.

use aws_lc_rs::{digest, signature};
use x509_parser::der_parser::ber::BerObject;
use x509_parser::der_parser::der::parse_der;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// SHA-256 of the Intel SGX Root CA certificate (DER).
pub const INTEL_ROOT_FINGERPRINT: &str =
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

const OID_SGX_EXT: &str = "1.2.840.113741.1.13.1";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// Why certificates or CRLs were rejected; names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PckError {
    #[error("{what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("dcap.pck_chain: {0}")]
    Chain(String),
    #[error(
        "dcap.certificate_validity: {what} is not valid at {} (valid {} to {})", rfc3339(*now), rfc3339(*not_before), rfc3339(*not_after)
    )]
    Validity {
        what: String,
        now: i64,
        not_before: i64,
        not_after: i64,
    },
    #[error("dcap.crl: {0}")]
    Crl(String),
    #[error("dcap.pck_revoked: {0} is revoked")]
    Revoked(String),
}

fn perr(what: &str, reason: impl Into<String>) -> PckError {
    PckError::Parse {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// A parsed X.509 certificate with what verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub der: Vec<u8>,
    pub fingerprint: [u8; 32],
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub subject_cn: String,
    pub serial: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    /// Uncompressed P-256 point.
    pub public_key: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    sig_alg: String,
    /// The SGX extensions, for PCK leaves.
    pub sgx: Option<SgxExtensions>,
}

/// The SGX extensions of a PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SgxExtensions {
    pub ppid: Vec<u8>,
    pub compsvn: [u8; 16],
    pub pcesvn: u16,
    pub cpusvn: Vec<u8>,
    pub pceid: Vec<u8>,
    pub fmspc: Vec<u8>,
    /// 0 Standard, 1 Scalable, 2 Scalable with integrity.
    pub sgx_type: u64,
}

fn seq<'a, 'b>(o: &'b BerObject<'a>, what: &str) -> Result<&'b Vec<BerObject<'a>>, PckError> {
    o.as_sequence()
        .map_err(|_| perr("SGX extension", format!("{what} is not a SEQUENCE")))
}

/// One `SEQUENCE { OID, value }` entry of the SGX extensions: the OID as
/// dotted text and the value.
fn oid_entry<'a, 'b>(
    item: &'b BerObject<'a>,
    what: &str,
) -> Result<(String, &'b BerObject<'a>), PckError> {
    let kv = seq(item, what)?;
    let (Some(k), Some(val)) = (kv.first(), kv.get(1)) else {
        return Err(perr(
            "SGX extension",
            format!("{what} without OID and value"),
        ));
    };
    let oid = k
        .as_oid()
        .map_err(|_| perr("SGX extension", format!("{what} key is not an OID")))?
        .to_id_string();
    Ok((oid, val))
}

fn sgx_extensions(v: &[u8]) -> Result<SgxExtensions, PckError> {
    let (_, top) = parse_der(v).map_err(|e| perr("SGX extension", e.to_string()))?;
    let mut x = SgxExtensions::default();
    for item in seq(&top, "extension")? {
        let (oid, val) = oid_entry(item, "entry")?;
        let bytes = || {
            val.as_slice()
                .map(<[u8]>::to_vec)
                .map_err(|_| perr("SGX extension", format!("{oid} is not an OCTET STRING")))
        };
        match oid.strip_prefix(OID_SGX_EXT) {
            Some(".1") => x.ppid = bytes()?,
            Some(".2") => {
                for c in seq(val, "TCB")? {
                    let (k, v) = oid_entry(c, "TCB entry")?;
                    let n: u32 = k
                        .rsplit('.')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let int = || {
                        v.as_u64().map_err(|_| {
                            perr("SGX extension", format!("TCB {k} is not an INTEGER"))
                        })
                    };
                    match n {
                        1..=16 => {
                            x.compsvn[n as usize - 1] = u8::try_from(int()?)
                                .map_err(|_| perr("SGX extension", "compsvn above 255"))?
                        }
                        17 => {
                            x.pcesvn = u16::try_from(int()?)
                                .map_err(|_| perr("SGX extension", "pcesvn above 65535"))?
                        }
                        18 => {
                            x.cpusvn = v
                                .as_slice()
                                .map_err(|_| {
                                    perr("SGX extension", "cpusvn is not an OCTET STRING")
                                })?
                                .to_vec()
                        }
                        _ => {}
                    }
                }
            }
            Some(".3") => x.pceid = bytes()?,
            Some(".4") => x.fmspc = bytes()?,
            Some(".5") => {
                x.sgx_type = match &val.content {
                    x509_parser::der_parser::ber::BerObjectContent::Enum(e) => *e,
                    _ => val
                        .as_u64()
                        .map_err(|_| perr("SGX extension", "SGX type"))?,
                }
            }
            _ => {}
        }
    }
    if x.fmspc.len() != 6 || x.pceid.len() != 2 {
        return Err(perr("SGX extension", "FMSPC or PCE-ID missing"));
    }
    Ok(x)
}

impl Cert {
    pub fn from_der(what: &str, der: &[u8]) -> Result<Self, PckError> {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| perr(what, e.to_string()))?;
        let subject_cn = c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let spki = c.public_key();
        let sgx = c
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == OID_SGX_EXT)
            .map(|e| sgx_extensions(e.value))
            .transpose()?;
        Ok(Self {
            der: der.to_vec(),
            fingerprint: digest::digest(&digest::SHA256, der)
                .as_ref()
                .try_into()
                .unwrap_or([0; 32]),
            subject: c.subject().as_raw().to_vec(),
            issuer: c.issuer().as_raw().to_vec(),
            subject_cn,
            serial: c.raw_serial().to_vec(),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            public_key: spki.subject_public_key.data.to_vec(),
            tbs: c.tbs_certificate.as_ref().to_vec(),
            signature: c.signature_value.data.to_vec(),
            sig_alg: c.signature_algorithm.algorithm.to_id_string(),
            sgx,
        })
    }

    /// Every certificate of a PEM text, in order.
    pub fn from_pem_chain(what: &str, pem: &str) -> Result<Vec<Self>, PckError> {
        let mut out = Vec::new();
        for p in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
            let p = p.map_err(|e| perr(what, e.to_string()))?;
            out.push(Self::from_der(what, &p.contents)?);
        }
        if out.is_empty() {
            return Err(perr(what, "no certificate"));
        }
        Ok(out)
    }

    /// Is this certificate signed by `issuer` (names chain, ECDSA P-256)?
    pub fn signed_by(&self, issuer: &Cert) -> Result<(), PckError> {
        if self.issuer != issuer.subject {
            return Err(PckError::Chain(format!(
                "{:?} is not issued by {:?}",
                self.subject_cn, issuer.subject_cn
            )));
        }
        verify_der_sig(
            &issuer.public_key,
            &self.sig_alg,
            &self.tbs,
            &self.signature,
        )
        .map_err(|_| {
            PckError::Chain(format!(
                "signature of {:?} does not verify with {:?}",
                self.subject_cn, issuer.subject_cn
            ))
        })
    }

    pub fn check_validity(&self, now: i64) -> Result<(), PckError> {
        if now < self.not_before || now > self.not_after {
            return Err(PckError::Validity {
                what: self.subject_cn.clone(),
                now,
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

fn verify_der_sig(key: &[u8], alg: &str, msg: &[u8], sig: &[u8]) -> Result<(), ()> {
    if alg != OID_ECDSA_SHA256 {
        return Err(());
    }
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, key)
        .verify(msg, sig)
        .map_err(|_| ())
}

/// Unix seconds as RFC 3339 (UTC); the number itself when out of range.
pub fn rfc3339(t: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(t).ok();
    let text = d.and_then(|d| {
        d.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    text.unwrap_or_else(|| t.to_string())
}

/// Verify `chain` (leaf first … root last) as of `now`, with the root
/// pinned by fingerprint (`pinned`: hex SHA-256 values).
pub fn verify_chain(chain: &[Cert], pinned: &[[u8; 32]], now: i64) -> Result<(), PckError> {
    let root = chain
        .last()
        .ok_or_else(|| PckError::Chain("empty certificate chain".into()))?;
    if !pinned.contains(&root.fingerprint) {
        return Err(PckError::Chain(format!(
            "root {} is not the pinned Intel SGX Root CA",
            hex::encode(root.fingerprint)
        )));
    }
    root.signed_by(root)?;
    for w in chain.windows(2) {
        w[0].signed_by(&w[1])?;
    }
    for c in chain {
        c.check_validity(now)?;
    }
    Ok(())
}

/// The pinned Intel SGX Root CA fingerprint.
pub fn intel_root() -> [u8; 32] {
    let mut f = [0u8; 32];
    if let Ok(b) = hex::decode(INTEL_ROOT_FINGERPRINT) {
        f.copy_from_slice(&b);
    }
    f
}

/// A parsed CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    pub issuer: Vec<u8>,
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// Revoked serial numbers (raw big-endian).
    pub revoked: Vec<Vec<u8>>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    sig_alg: String,
}

impl Crl {
    pub fn from_der(what: &str, der: &[u8]) -> Result<Self, PckError> {
        let (_, c) =
            CertificateRevocationList::from_der(der).map_err(|e| perr(what, e.to_string()))?;
        Ok(Self {
            issuer: c.issuer().as_raw().to_vec(),
            this_update: c.last_update().timestamp(),
            next_update: c.next_update().map(|t| t.timestamp()),
            revoked: c
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect(),
            tbs: c.tbs_cert_list.as_ref().to_vec(),
            signature: c.signature_value.data.to_vec(),
            sig_alg: c.signature_algorithm.algorithm.to_id_string(),
        })
    }

    /// The CRL is signed by `issuer` and current at `now`.
    pub fn verify(&self, issuer: &Cert, now: i64) -> Result<(), PckError> {
        if self.issuer != issuer.subject {
            return Err(PckError::Crl(format!(
                "CRL is not issued by {:?}",
                issuer.subject_cn
            )));
        }
        verify_der_sig(
            &issuer.public_key,
            &self.sig_alg,
            &self.tbs,
            &self.signature,
        )
        .map_err(|_| {
            PckError::Crl(format!(
                "CRL signature does not verify with {:?}",
                issuer.subject_cn
            ))
        })?;
        if now < self.this_update || self.next_update.is_some_and(|n| now > n) {
            return Err(PckError::Crl(format!(
                "CRL of {:?} is not current at {} (thisUpdate {}, nextUpdate {})",
                issuer.subject_cn,
                rfc3339(now),
                rfc3339(self.this_update),
                self.next_update.map_or("none".to_string(), rfc3339)
            )));
        }
        Ok(())
    }

    /// Refuse `cert` if its serial is listed.
    pub fn check(&self, cert: &Cert) -> Result<(), PckError> {
        if self.revoked.iter().any(|s| s == &cert.serial) {
            return Err(PckError::Revoked(format!(
                "{:?} (serial {})",
                cert.subject_cn,
                hex::encode(&cert.serial)
            )));
        }
        Ok(())
    }
}
