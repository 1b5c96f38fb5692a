//! SGX/TDX ECDSA quotes.
//!
//! Header (48 bytes, all versions): version u16, attestation key type u16
//! (2 = ECDSA-256 P-256), TEE type u32 (0x00 SGX, 0x81 TDX), QE SVN u16,
//! PCE SVN u16, QE vendor id [16], user data [20].
//!
//! Body: SGX v3 — the enclave REPORT body (384 bytes); TDX v4 — the TD
//! report body (584 bytes, TDX 1.0); TDX v5 — body type u16 (2 = TDX 1.0,
//! 3 = TDX 1.5 with TEE_TCB_SVN2 and MRSERVICETD, 648 bytes), body size
//! u32, body. The quote signature covers header ‖ body exactly as sent
//! (for v5 including type and size).
//!
//! Signature data (u32 length, then): ECDSA signature r‖s (64), attestation
//! public key x‖y (64), then for v3: QE report (384), QE report signature
//! (64), QE auth data (u16 size + bytes), certification data (u16 type,
//! u32 size, data); for v4/v5: certification data of type 6 whose data is
//! QE report, QE report signature, QE auth data and a nested
//! certification data (type 5: the PCK chain in PEM, maybe NUL-terminated).
//! Bytes after the signature data are ignored.

use crate::{perr, ParseError, Reader};

pub const HEADER_LEN: usize = 48;
pub const SGX_REPORT_BODY_LEN: usize = 384;
pub const TD10_BODY_LEN: usize = 584;
pub const TD15_BODY_LEN: usize = 648;
pub const TEE_SGX: u32 = 0x0000_0000;
pub const TEE_TDX: u32 = 0x0000_0081;
const MAX_CERT_DATA: usize = 64 * 1024;

/// The quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// An SGX enclave REPORT body (SGX SDM: REPORTBODY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveReport {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub isv_ext_prod_id: [u8; 16],
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub config_id: [u8; 64],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: [u8; 16],
    pub report_data: [u8; 64],
}

impl EnclaveReport {
    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(b, "SGX report body");
        let cpu_svn = r.array("cpu_svn")?;
        let misc_select = r.u32("misc_select")?;
        r.take(12, "reserved1")?;
        let isv_ext_prod_id = r.array("isv_ext_prod_id")?;
        let attributes = r.array("attributes")?;
        let mr_enclave = r.array("mr_enclave")?;
        r.take(32, "reserved2")?;
        let mr_signer = r.array("mr_signer")?;
        r.take(32, "reserved3")?;
        let config_id = r.array("config_id")?;
        let isv_prod_id = r.u16("isv_prod_id")?;
        let isv_svn = r.u16("isv_svn")?;
        let config_svn = r.u16("config_svn")?;
        r.take(42, "reserved4")?;
        let isv_family_id = r.array("isv_family_id")?;
        let report_data = r.array("report_data")?;
        Ok(Self {
            cpu_svn,
            misc_select,
            isv_ext_prod_id,
            attributes,
            mr_enclave,
            mr_signer,
            config_id,
            isv_prod_id,
            isv_svn,
            config_svn,
            isv_family_id,
            report_data,
        })
    }

    /// ATTRIBUTES.DEBUG (bit 1 of the flags).
    pub fn debug(&self) -> bool {
        self.attributes[0] & 0x02 != 0
    }
}

/// A TD report body (TDX module ABI: TDREPORT's TDINFO and TEE_TCB_INFO
/// fields as carried in quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TDX 1.5 only.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5 only.
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdReport {
    pub fn parse(b: &[u8], tdx15: bool) -> Result<Self, ParseError> {
        let mut r = Reader::new(b, "TD report body");
        let mut t = Self {
            tee_tcb_svn: r.array("tee_tcb_svn")?,
            mr_seam: r.array("mr_seam")?,
            mr_signer_seam: r.array("mr_signer_seam")?,
            seam_attributes: r.array("seam_attributes")?,
            td_attributes: r.array("td_attributes")?,
            xfam: r.array("xfam")?,
            mr_td: r.array("mr_td")?,
            mr_config_id: r.array("mr_config_id")?,
            mr_owner: r.array("mr_owner")?,
            mr_owner_config: r.array("mr_owner_config")?,
            rtmr: [
                r.array("rtmr0")?,
                r.array("rtmr1")?,
                r.array("rtmr2")?,
                r.array("rtmr3")?,
            ],
            report_data: r.array("report_data")?,
            tee_tcb_svn2: None,
            mr_service_td: None,
        };
        if tdx15 {
            t.tee_tcb_svn2 = Some(r.array("tee_tcb_svn2")?);
            t.mr_service_td = Some(r.array("mr_service_td")?);
        }
        Ok(t)
    }

    /// TDATTRIBUTES.DEBUG (bit 0).
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 0x01 != 0
    }
}

/// The quoted TEE report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Sgx(Box<EnclaveReport>),
    Td(Box<TdReport>),
}

/// Certification data (type and raw data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertData {
    pub kind: u16,
    pub data: Vec<u8>,
}

impl CertData {
    fn read(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let kind = r.u16("certification data type")?;
        let size = r.u32("certification data size")? as usize;
        if size > MAX_CERT_DATA {
            return Err(perr(
                r.what,
                format!("certification data of {size} bytes (limit {MAX_CERT_DATA})"),
            ));
        }
        Ok(Self {
            kind,
            data: r.take(size, "certification data")?.to_vec(),
        })
    }

    /// The PEM certificates of type-5 data (PCK leaf, intermediate, root),
    /// NUL terminator tolerated.
    pub fn pem_chain(&self) -> Result<&str, ParseError> {
        if self.kind != 5 {
            return Err(perr(
                "certification data",
                format!("type {} is not 5 (PCK certificate chain)", self.kind),
            ));
        }
        let d = self.data.strip_suffix(&[0]).unwrap_or(&self.data);
        std::str::from_utf8(d).map_err(|_| perr("PCK certificate chain", "not UTF-8 PEM"))
    }
}

/// The ECDSA signature data of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureData {
    /// Quote signature r‖s (big-endian).
    pub signature: [u8; 64],
    /// Attestation public key x‖y (big-endian).
    pub attest_key: [u8; 64],
    /// The Quoting Enclave's report (raw, 384 bytes) and parsed.
    pub qe_report_raw: [u8; SGX_REPORT_BODY_LEN],
    pub qe_report: EnclaveReport,
    /// QE report signature r‖s by the PCK key.
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: Vec<u8>,
    /// The certification data naming the PCK chain (type 5).
    pub pck: CertData,
}

/// A parsed quote. `signed` is the exact byte range the quote signature
/// covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub header: Header,
    pub body: Body,
    pub signature: SignatureData,
    signed: Vec<u8>,
    /// Bytes after the signature data (ignored).
    pub trailing: usize,
}

/// QE report, its signature and the QE auth data.
type QePart = ([u8; SGX_REPORT_BODY_LEN], EnclaveReport, [u8; 64], Vec<u8>);

fn qe_part(r: &mut Reader<'_>) -> Result<QePart, ParseError> {
    let raw: [u8; SGX_REPORT_BODY_LEN] = r.array("QE report")?;
    let parsed = EnclaveReport::parse(&raw)?;
    let sig = r.array("QE report signature")?;
    let n = r.u16("QE auth data size")? as usize;
    let auth = r.take(n, "QE auth data")?.to_vec();
    Ok((raw, parsed, sig, auth))
}

impl Quote {
    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(b, "quote");
        let header = Header {
            version: r.u16("version")?,
            att_key_type: r.u16("attestation key type")?,
            tee_type: r.u32("tee type")?,
            qe_svn: r.u16("qe svn")?,
            pce_svn: r.u16("pce svn")?,
            qe_vendor_id: r.array("qe vendor id")?,
            user_data: r.array("user data")?,
        };
        if header.att_key_type != 2 {
            return Err(perr(
                "quote",
                format!(
                    "attestation key type {} is not ECDSA-256 P-256 (2)",
                    header.att_key_type
                ),
            ));
        }
        let body = match (header.version, header.tee_type) {
            (3, TEE_SGX) => Body::Sgx(Box::new(EnclaveReport::parse(
                r.take(SGX_REPORT_BODY_LEN, "SGX report body")?,
            )?)),
            (4, TEE_TDX) => Body::Td(Box::new(TdReport::parse(
                r.take(TD10_BODY_LEN, "TD report body")?,
                false,
            )?)),
            (5, TEE_TDX) => {
                let ty = r.u16("body type")?;
                let size = r.u32("body size")? as usize;
                let (len, tdx15) = match ty {
                    2 => (TD10_BODY_LEN, false),
                    3 => (TD15_BODY_LEN, true),
                    _ => {
                        return Err(perr(
                            "quote",
                            format!("v5 body type {ty} is not a TD report (2, 3)"),
                        ))
                    }
                };
                if size != len {
                    return Err(perr(
                        "quote",
                        format!("v5 body size {size}, expected {len} for type {ty}"),
                    ));
                }
                Body::Td(Box::new(TdReport::parse(
                    r.take(len, "TD report body")?,
                    tdx15,
                )?))
            }
            (v, t) => {
                return Err(perr(
                    "quote",
                    format!("version {v} with TEE type {t:#x} is not SGX v3 or TDX v4/v5"),
                ))
            }
        };
        let signed = b[..r.at].to_vec();
        let sig_len = r.u32("signature data length")? as usize;
        let sig_bytes = r.take(sig_len, "signature data")?;
        let trailing = r.rest().len();
        let mut s = Reader::new(sig_bytes, "quote signature data");
        let signature = s.array("quote signature")?;
        let attest_key = s.array("attestation key")?;
        let (qe_report_raw, qe_report, qe_report_signature, qe_auth_data, pck) =
            if header.version == 3 {
                let (raw, parsed, sig, auth) = qe_part(&mut s)?;
                (raw, parsed, sig, auth, CertData::read(&mut s)?)
            } else {
                let outer = CertData::read(&mut s)?;
                if outer.kind != 6 {
                    return Err(perr(
                        "quote signature data",
                        format!(
                            "certification data type {} is not 6 (QE report)",
                            outer.kind
                        ),
                    ));
                }
                let mut q = Reader::new(&outer.data, "QE report certification data");
                let (raw, parsed, sig, auth) = qe_part(&mut q)?;
                (raw, parsed, sig, auth, CertData::read(&mut q)?)
            };
        Ok(Self {
            header,
            body,
            signature: SignatureData {
                signature,
                attest_key,
                qe_report_raw,
                qe_report,
                qe_report_signature,
                qe_auth_data,
                pck,
            },
            signed,
            trailing,
        })
    }

    /// The bytes the quote signature covers (header ‖ body as sent).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    /// report_data of the quoted report.
    pub fn report_data(&self) -> &[u8; 64] {
        match &self.body {
            Body::Sgx(r) => &r.report_data,
            Body::Td(t) => &t.report_data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_and_unknown_quotes_with_the_field() {
        let e = Quote::parse(&[3, 0, 2, 0]).unwrap_err().to_string();
        assert!(e.contains("truncated at tee type"), "{e}");
        let mut h = vec![0u8; 48];
        h[0] = 4;
        h[2] = 2; // key type 2, TEE type 0 with version 4
        assert!(Quote::parse(&h)
            .unwrap_err()
            .to_string()
            .contains("not SGX v3 or TDX v4/v5"));
        h[2] = 3;
        assert!(Quote::parse(&h)
            .unwrap_err()
            .to_string()
            .contains("attestation key type 3"));
    }
}
