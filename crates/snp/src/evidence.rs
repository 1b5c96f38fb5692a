//! The CoCo `snp` evidence JSON (PROTOCOL.md): `{"attestation_report": <the
//! serde form of the virtee `sev` crate's AttestationReport>, "cert_chain":
//! [{"cert_type": "VCEK"|"VLEK"|"ASK"|"ARK", "data": [bytes]}] | null}`.
//!
//! The JSON is a re-encoding, so it is turned back into the exact 1184
//! bytes the hardware signed: every field is written at its offset,
//! reserved bytes are zero, TCB objects use the product's layout (Turin when
//! `fmc` is present or CPUID says so). If anything the hardware signed was
//! dropped by the JSON form, the signature fails: this fails closed.

use serde::Deserialize;
use serde_json::Value;

use crate::certs::Product;
use crate::report::{offset, AttestationReport, ReportError, REPORT_LEN};

/// Why the evidence JSON is not acceptable; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    #[error("snp evidence: {0}")]
    Shape(String),
    #[error("snp evidence field {field}: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("snp evidence: {0}")]
    Report(#[from] ReportError),
}

/// One entry of `cert_chain`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CertTableEntry {
    pub cert_type: String,
    pub data: Vec<u8>,
}

/// Parsed `snp` evidence.
#[derive(Debug, Clone)]
pub struct SnpEvidence {
    pub report: AttestationReport,
    pub cert_chain: Vec<CertTableEntry>,
}

impl SnpEvidence {
    /// The certificate of `cert_type` (`VCEK`, `VLEK`, `ASK`, `ARK`) carried
    /// in the evidence, if any.
    pub fn cert(&self, cert_type: &str) -> Option<&[u8]> {
        self.cert_chain
            .iter()
            .find(|c| c.cert_type.eq_ignore_ascii_case(cert_type))
            .map(|c| c.data.as_slice())
    }
}

struct Writer<'a> {
    obj: &'a serde_json::Map<String, Value>,
    out: [u8; REPORT_LEN],
}

fn err(field: &'static str, reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Field {
        field,
        reason: reason.into(),
    }
}

fn int(v: &Value, field: &'static str, max: u64) -> Result<u64, EvidenceError> {
    let n = v
        .as_u64()
        .ok_or_else(|| err(field, "not a non-negative integer"))?;
    if n > max {
        return Err(err(field, format!("{n} is out of range")));
    }
    Ok(n)
}

impl<'a> Writer<'a> {
    fn get(&self, field: &'static str) -> Result<&'a Value, EvidenceError> {
        self.obj.get(field).ok_or_else(|| err(field, "missing"))
    }
    fn uint(&mut self, field: &'static str, at: usize, size: usize) -> Result<(), EvidenceError> {
        let max = if size == 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        };
        let n = int(self.get(field)?, field, max)?;
        self.out[at..at + size].copy_from_slice(&n.to_le_bytes()[..size]);
        Ok(())
    }
    fn bytes(&mut self, field: &'static str, at: usize, len: usize) -> Result<(), EvidenceError> {
        let arr = self
            .get(field)?
            .as_array()
            .ok_or_else(|| err(field, "not an array of bytes"))?;
        if arr.len() != len {
            return Err(err(field, format!("{} bytes, expected {len}", arr.len())));
        }
        for (i, v) in arr.iter().enumerate() {
            self.out[at + i] = int(v, field, 255)? as u8;
        }
        Ok(())
    }
    fn tcb(
        &mut self,
        field: &'static str,
        at: usize,
        product: Product,
    ) -> Result<(), EvidenceError> {
        let t = self
            .get(field)?
            .as_object()
            .ok_or_else(|| err(field, "not a TCB object"))?;
        let part = |name: &'static str| -> Result<u8, EvidenceError> {
            match t.get(name) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => Ok(int(v, field, 255)? as u8),
            }
        };
        let mut b = [0u8; 8];
        match product {
            Product::Turin => {
                b[0] = part("fmc")?;
                b[1] = part("bootloader")?;
                b[2] = part("tee")?;
                b[3] = part("snp")?;
            }
            Product::Milan | Product::Genoa => {
                if !matches!(t.get("fmc"), None | Some(Value::Null)) {
                    return Err(err(field, "fmc is only defined for Turin"));
                }
                b[0] = part("bootloader")?;
                b[1] = part("tee")?;
                b[6] = part("snp")?;
            }
        }
        b[7] = part("microcode")?;
        self.out[at..at + 8].copy_from_slice(&b);
        Ok(())
    }
    fn version(&mut self, field: &'static str, at: usize) -> Result<(), EvidenceError> {
        let v = self
            .get(field)?
            .as_object()
            .ok_or_else(|| err(field, "not a version object"))?;
        for (i, name) in ["build", "minor", "major"].into_iter().enumerate() {
            self.out[at + i] = int(
                v.get(name)
                    .ok_or_else(|| err(field, format!("no {name}")))?,
                field,
                255,
            )? as u8;
        }
        Ok(())
    }
    fn opt_u8(&mut self, field: &'static str, at: usize) -> Result<(), EvidenceError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(()),
            Some(v) => {
                self.out[at] = int(v, field, 255)? as u8;
                Ok(())
            }
        }
    }
    fn opt_u64(&mut self, field: &'static str, at: usize) -> Result<(), EvidenceError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(()),
            Some(v) => {
                self.out[at..at + 8].copy_from_slice(&int(v, field, u64::MAX)?.to_le_bytes());
                Ok(())
            }
        }
    }
}

/// Rebuild the report bytes from the `attestation_report` JSON object.
pub fn report_from_json(v: &Value) -> Result<AttestationReport, EvidenceError> {
    let obj = v
        .as_object()
        .ok_or_else(|| EvidenceError::Shape("attestation_report is not an object".into()))?;
    let mut w = Writer {
        obj,
        out: [0u8; REPORT_LEN],
    };
    // The product decides the TCB layout: CPUID when present, else Turin if
    // any TCB carries an fmc value, else Milan/Genoa (same layout).
    let fam = obj.get("cpuid_fam_id").and_then(Value::as_u64);
    let has_fmc = ["current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"]
        .iter()
        .any(|f| {
            obj.get(*f)
                .and_then(|t| t.get("fmc"))
                .is_some_and(|x| !x.is_null())
        });
    let product = match fam {
        Some(0x1A) => Product::Turin,
        Some(_) => Product::Milan,
        None if has_fmc => Product::Turin,
        None => Product::Milan,
    };
    w.uint("version", offset::VERSION, 4)?;
    w.uint("guest_svn", offset::GUEST_SVN, 4)?;
    w.uint("policy", offset::POLICY, 8)?;
    w.bytes("family_id", offset::FAMILY_ID, 16)?;
    w.bytes("image_id", offset::IMAGE_ID, 16)?;
    w.uint("vmpl", offset::VMPL, 4)?;
    w.uint("sig_algo", offset::SIGNATURE_ALGO, 4)?;
    w.tcb("current_tcb", offset::CURRENT_TCB, product)?;
    w.uint("plat_info", offset::PLATFORM_INFO, 8)?;
    w.uint("key_info", offset::KEY_INFO, 4)?;
    w.bytes("report_data", offset::REPORT_DATA, 64)?;
    w.bytes("measurement", offset::MEASUREMENT, 48)?;
    w.bytes("host_data", offset::HOST_DATA, 32)?;
    w.bytes("id_key_digest", offset::ID_KEY_DIGEST, 48)?;
    w.bytes("author_key_digest", offset::AUTHOR_KEY_DIGEST, 48)?;
    w.bytes("report_id", offset::REPORT_ID, 32)?;
    w.bytes("report_id_ma", offset::REPORT_ID_MA, 32)?;
    w.tcb("reported_tcb", offset::REPORTED_TCB, product)?;
    w.opt_u8("cpuid_fam_id", offset::CPUID_FAM_ID)?;
    w.opt_u8("cpuid_mod_id", offset::CPUID_MOD_ID)?;
    w.opt_u8("cpuid_step", offset::CPUID_STEP)?;
    w.bytes("chip_id", offset::CHIP_ID, 64)?;
    w.tcb("committed_tcb", offset::COMMITTED_TCB, product)?;
    w.version("current", offset::CURRENT_VERSION)?;
    w.version("committed", offset::COMMITTED_VERSION)?;
    w.tcb("launch_tcb", offset::LAUNCH_TCB, product)?;
    w.opt_u64("launch_mit_vector", offset::LAUNCH_MIT_VECTOR)?;
    w.opt_u64("current_mit_vector", offset::CURRENT_MIT_VECTOR)?;
    let sig = w
        .get("signature")?
        .as_object()
        .ok_or_else(|| err("signature", "not an object"))?;
    let mut sw = Writer {
        obj: sig,
        out: w.out,
    };
    sw.bytes("r", offset::SIGNATURE, 72)?;
    sw.bytes("s", offset::SIGNATURE + 72, 72)?;
    Ok(AttestationReport::from_bytes(&sw.out)?)
}

/// One `{"cert_type": "...", "data": [bytes]}` entry, read in place.
fn cert_entry(v: &Value) -> Result<CertTableEntry, EvidenceError> {
    let cert_type = v
        .get("cert_type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("cert_chain", "entry without a cert_type string"))?
        .to_string();
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| err("cert_chain", "entry without a data array"))?
        .iter()
        .map(|b| {
            b.as_u64()
                .and_then(|b| u8::try_from(b).ok())
                .ok_or_else(|| err("cert_chain", "data is not bytes"))
        })
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(CertTableEntry { cert_type, data })
}

/// Parse the whole `snp` evidence JSON.
pub fn parse_evidence(v: &Value) -> Result<SnpEvidence, EvidenceError> {
    let ar = v
        .get("attestation_report")
        .ok_or_else(|| EvidenceError::Shape("no attestation_report".into()))?;
    let report = report_from_json(ar)?;
    let cert_chain = match v.get("cert_chain") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(entries)) => entries.iter().map(cert_entry).collect::<Result<_, _>>()?,
        Some(_) => return Err(err("cert_chain", "not an array")),
    };
    Ok(SnpEvidence { report, cert_chain })
}
