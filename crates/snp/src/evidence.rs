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
use serde_json::{json, Value};

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

/// Encode report bytes (and certificate table entries) as CoCo `snp`
/// evidence JSON — the inverse of [`parse_evidence`], as the reference
/// attester produces it. `product` picks the TCB layout.
pub fn to_evidence_json(
    report: &AttestationReport,
    product: Product,
    certs: &[CertTableEntry],
) -> Value {
    let r = report;
    let bytes = r.as_bytes();
    let tcb = |t: crate::report::TcbVersion| {
        let x = t.parts(product);
        json!({"fmc": x.fmc, "bootloader": x.bootloader, "tee": x.tee, "snp": x.snp, "microcode": x.microcode})
    };
    let sig_r = &bytes[offset::SIGNATURE..offset::SIGNATURE + 72];
    let sig_s = &bytes[offset::SIGNATURE + 72..offset::SIGNATURE + 144];
    let (fam, model, step) = r.cpuid().unwrap_or((0, 0, 0));
    let fw = |v: crate::report::FirmwareVersion| json!({"major": v.major, "minor": v.minor, "build": v.build});
    let key_info = u32::from_le_bytes([bytes[0x48], bytes[0x49], bytes[0x4a], bytes[0x4b]]);
    let sig_algo = u32::from_le_bytes([bytes[0x34], bytes[0x35], bytes[0x36], bytes[0x37]]);
    let certs: Vec<Value> = certs
        .iter()
        .map(|c| json!({"cert_type": c.cert_type, "data": c.data}))
        .collect();
    json!({
        "attestation_report": {
            "version": r.version(), "guest_svn": r.guest_svn(), "policy": r.policy().0,
            "family_id": r.family_id(), "image_id": r.image_id(), "vmpl": r.vmpl(), "sig_algo": sig_algo,
            "current_tcb": tcb(r.current_tcb()), "plat_info": r.platform_info().0, "key_info": key_info,
            "report_data": r.report_data(), "measurement": r.measurement(), "host_data": r.host_data(),
            "id_key_digest": r.id_key_digest(), "author_key_digest": r.author_key_digest(),
            "report_id": r.report_id(), "report_id_ma": r.report_id_ma(),
            "reported_tcb": tcb(r.reported_tcb()), "cpuid_fam_id": fam, "cpuid_mod_id": model, "cpuid_step": step,
            "chip_id": r.chip_id(), "committed_tcb": tcb(r.committed_tcb()),
            "current": fw(r.current_version()), "committed": fw(r.committed_version()),
            "launch_tcb": tcb(r.launch_tcb()),
            "signature": {"r": sig_r, "s": sig_s},
        },
        "cert_chain": if certs.is_empty() { Value::Null } else { Value::Array(certs) },
    })
}

/// GUIDs of the SNP extended-report certificate table (GHCB spec 2.0,
/// §4.1.8.1; the kernel's `auxblob` / SNP_GET_EXT_REPORT certs buffer),
/// in their on-the-wire (little-endian mixed) byte order.
const CERT_GUIDS: [(&str, [u8; 16]); 4] = [
    // c0b406a4-a803-4952-9743-3fb6014cd0ae
    (
        "ARK",
        [
            0xa4, 0x06, 0xb4, 0xc0, 0x03, 0xa8, 0x52, 0x49, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c,
            0xd0, 0xae,
        ],
    ),
    // 4ab7b379-bbac-4fe4-a02f-05aef327c782
    (
        "ASK",
        [
            0x79, 0xb3, 0xb7, 0x4a, 0xac, 0xbb, 0xe4, 0x4f, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27,
            0xc7, 0x82,
        ],
    ),
    // 63da758d-e664-4564-adc5-f4b93be8accd
    (
        "VCEK",
        [
            0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8,
            0xac, 0xcd,
        ],
    ),
    // a8074bc2-a25a-483e-aae6-39c045a0b8a1
    (
        "VLEK",
        [
            0xc2, 0x4b, 0x07, 0xa8, 0x5a, 0xa2, 0x3e, 0x48, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0,
            0xb8, 0xa1,
        ],
    ),
];

/// Parse the certificate table: entries of (GUID 16, offset u32, length
/// u32) ending with an all-zero entry; offsets are from the table start.
/// Unknown GUIDs are skipped. An empty buffer is an empty table.
pub fn parse_cert_table(buf: &[u8]) -> Result<Vec<CertTableEntry>, EvidenceError> {
    let mut out = Vec::new();
    if buf.is_empty() {
        return Ok(out);
    }
    let mut at = 0usize;
    loop {
        let Some(e) = buf.get(at..at + 24) else {
            return Err(err("cert table", "missing the terminating zero entry"));
        };
        if e.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        let off = u32::from_le_bytes([e[16], e[17], e[18], e[19]]) as usize;
        let len = u32::from_le_bytes([e[20], e[21], e[22], e[23]]) as usize;
        let data = off
            .checked_add(len)
            .and_then(|end| buf.get(off..end))
            .ok_or_else(|| {
                err(
                    "cert table",
                    format!("entry at {at} points outside the table"),
                )
            })?;
        if let Some((name, _)) = CERT_GUIDS.iter().find(|(_, g)| g[..] == e[..16]) {
            out.push(CertTableEntry {
                cert_type: name.to_string(),
                data: data.to_vec(),
            });
        }
        at += 24;
        if out.len() > 64 {
            return Err(err("cert table", "more than 64 entries"));
        }
    }
}

/// Build a certificate table (the inverse of [`parse_cert_table`]), as a
/// host would provide it; for simulators and tests.
pub fn build_cert_table(entries: &[CertTableEntry]) -> Vec<u8> {
    let header = (entries.len() + 1) * 24;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for e in entries {
        let guid = CERT_GUIDS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&e.cert_type))
            .map(|(_, g)| *g)
            .unwrap_or([0xff; 16]);
        table.extend_from_slice(&guid);
        table.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        data.extend_from_slice(&e.data);
    }
    table.extend_from_slice(&[0u8; 24]);
    table.extend_from_slice(&data);
    table
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn cert_table_round_trip_and_errors() {
        let entries = vec![
            CertTableEntry {
                cert_type: "VCEK".into(),
                data: vec![1, 2, 3],
            },
            CertTableEntry {
                cert_type: "ASK".into(),
                data: vec![4],
            },
        ];
        let t = build_cert_table(&entries);
        assert_eq!(parse_cert_table(&t).unwrap(), entries);
        assert_eq!(parse_cert_table(&[]).unwrap(), vec![]);
        assert!(parse_cert_table(&t[..30])
            .unwrap_err()
            .to_string()
            .contains("outside the table"));
        assert!(parse_cert_table(&[1u8; 20])
            .unwrap_err()
            .to_string()
            .contains("terminating"));
        let mut bad = t.clone();
        bad[16] = 0xff;
        assert!(parse_cert_table(&bad)
            .unwrap_err()
            .to_string()
            .contains("outside"));
    }
}
