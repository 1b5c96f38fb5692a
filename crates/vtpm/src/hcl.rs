//! The HCL attestation report of Azure confidential VMs, as read from the
//! vTPM NV index 0x01400001.
//!
//! Layout (little-endian), after Microsoft's IGVM attestation definitions
//! (`IGVM_ATTEST_REPORT_HEADER`, `IGVM_REQUEST_DATA` in the OpenHCL
//! paravisor sources):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 4 | signature `HCLA` |
//! | 0x004 | 4 | version |
//! | 0x008 | 4 | report_size |
//! | 0x00C | 4 | request_type |
//! | 0x010 | 4 | status |
//! | 0x014 | 12 | reserved |
//! | 0x020 | 1184 | hardware report (SNP ATTESTATION_REPORT, or TDREPORT padded) |
//! | 0x4C0 | 4 | runtime data_size |
//! | 0x4C4 | 4 | runtime version |
//! | 0x4C8 | 4 | report_type (2 SNP, 4 TDX) |
//! | 0x4CC | 4 | report_data_hash_type (1 SHA-256, 2 SHA-384, 3 SHA-512) |
//! | 0x4D0 | 4 | variable_data_size |
//! | 0x4D4 | n | variable data (JSON: `keys`, `vm-configuration`, `user-data`) |
//!
//! The hardware report's report_data begins with the hash of the variable
//! data. Bytes after the variable data (padding to the NV index size) are
//! ignored.

use aws_lc_rs::digest;
use base64::Engine;
use serde_json::Value;

use crate::{malformed, Error};

/// Size of the hardware report area.
pub const HW_REPORT_LEN: usize = 1184;
const HW_REPORT_OFFSET: usize = 0x20;
const RUNTIME_OFFSET: usize = HW_REPORT_OFFSET + HW_REPORT_LEN;
const VAR_DATA_OFFSET: usize = RUNTIME_OFFSET + 20;
/// Bound on the variable data: the NV index holding the report is a few KiB.
const VAR_DATA_MAX: usize = 64 * 1024;

/// What kind of hardware report the HCL report wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportType {
    Snp,
    Tdx,
}

/// A parsed HCL report. Nothing here is verified yet: the hardware report
/// must be verified by its TEE's verifier and [`HclReport::check_var_data_hash`]
/// must hold before anything in the variable data is trusted.
#[derive(Debug, Clone)]
pub struct HclReport {
    pub version: u32,
    pub report_type: ReportType,
    hash_type: u32,
    hw_report: Vec<u8>,
    var_data: Vec<u8>,
    vars: Value,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl HclReport {
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "HCL report";
        if bytes.len() < VAR_DATA_OFFSET {
            return Err(malformed(
                WHAT,
                format!(
                    "{} bytes, shorter than its fixed part ({VAR_DATA_OFFSET})",
                    bytes.len()
                ),
            ));
        }
        if &bytes[..4] != b"HCLA" {
            return Err(malformed(WHAT, "signature is not \"HCLA\""));
        }
        let version = u32_at(bytes, 4);
        let report_type = match u32_at(bytes, RUNTIME_OFFSET + 8) {
            2 => ReportType::Snp,
            4 => ReportType::Tdx,
            t => return Err(malformed(WHAT, format!("unsupported report_type {t}"))),
        };
        let hash_type = u32_at(bytes, RUNTIME_OFFSET + 12);
        if !(1..=3).contains(&hash_type) {
            return Err(malformed(
                WHAT,
                format!("unsupported report_data_hash_type {hash_type}"),
            ));
        }
        let var_len = u32_at(bytes, RUNTIME_OFFSET + 16) as usize;
        if var_len > VAR_DATA_MAX || VAR_DATA_OFFSET + var_len > bytes.len() {
            return Err(malformed(
                WHAT,
                format!(
                    "variable_data_size {var_len} exceeds the {} bytes present",
                    bytes.len() - VAR_DATA_OFFSET
                ),
            ));
        }
        let var_data = bytes[VAR_DATA_OFFSET..VAR_DATA_OFFSET + var_len].to_vec();
        let vars: Value = serde_json::from_slice(&var_data)
            .map_err(|e| malformed("HCL variable data", format!("not JSON: {e}")))?;
        if !vars.is_object() {
            return Err(malformed("HCL variable data", "not a JSON object"));
        }
        Ok(Self {
            version,
            report_type,
            hash_type,
            hw_report: bytes[HW_REPORT_OFFSET..RUNTIME_OFFSET].to_vec(),
            var_data,
            vars,
        })
    }

    /// The hardware report area (1184 bytes).
    pub fn hw_report(&self) -> &[u8] {
        &self.hw_report
    }

    /// The variable data exactly as hashed.
    pub fn var_data(&self) -> &[u8] {
        &self.var_data
    }

    /// Hash of the variable data with the algorithm the report names.
    pub fn var_data_hash(&self) -> Vec<u8> {
        let alg = match self.hash_type {
            1 => &digest::SHA256,
            2 => &digest::SHA384,
            _ => &digest::SHA512,
        };
        digest::digest(alg, &self.var_data).as_ref().to_vec()
    }

    /// The hardware report's report_data (from its verified report) must
    /// begin with the hash of the variable data.
    pub fn check_var_data_hash(&self, hw_report_data: &[u8]) -> Result<(), Error> {
        let h = self.var_data_hash();
        if hw_report_data.len() < h.len()
            || aws_lc_rs::constant_time::verify_slices_are_equal(&hw_report_data[..h.len()], &h)
                .is_err()
        {
            return Err(Error::VarDataHash);
        }
        Ok(())
    }

    /// The vTPM attestation key (`kid` `HCLAkPub`) as RSA modulus and
    /// exponent, big-endian.
    pub fn ak_pub(&self) -> Result<RsaKey, Error> {
        const WHAT: &str = "HCL variable data";
        let key = self.vars["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] == "HCLAkPub"))
            .ok_or_else(|| malformed(WHAT, "no key with kid \"HCLAkPub\""))?;
        if key["kty"] != "RSA" {
            return Err(malformed(WHAT, "HCLAkPub is not an RSA key"));
        }
        let field = |name: &str| -> Result<Vec<u8>, Error> {
            let s = key[name]
                .as_str()
                .ok_or_else(|| malformed(WHAT, format!("HCLAkPub has no {name:?}")))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|e| malformed(WHAT, format!("HCLAkPub {name:?}: {e}")))
        };
        Ok(RsaKey {
            n: field("n")?,
            e: field("e")?,
        })
    }

    /// `vm-configuration` (secure boot, TPM, console, VM id), if present.
    pub fn vm_configuration(&self) -> Value {
        self.vars
            .get("vm-configuration")
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// `user-data` (hex; 64 bytes on current Azure images), if present.
    pub fn user_data(&self) -> Result<Option<Vec<u8>>, Error> {
        match self.vars.get("user-data") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => hex::decode(s)
                .map(Some)
                .map_err(|e| malformed("HCL variable data", format!("user-data: {e}"))),
            Some(_) => Err(malformed("HCL variable data", "user-data is not a string")),
        }
    }
}

/// Lay out an HCL report (the inverse of [`HclReport::parse`], for
/// simulators): header version 2, request type 2, SHA-256 variable-data
/// hash type. `hw_report` is at most [`HW_REPORT_LEN`] bytes (zero-padded);
/// its report_data must already begin with SHA-256 of `var_data`.
pub fn build(report_type: ReportType, hw_report: &[u8], var_data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; VAR_DATA_OFFSET];
    b[..4].copy_from_slice(b"HCLA");
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    let n = hw_report.len().min(HW_REPORT_LEN);
    b[HW_REPORT_OFFSET..HW_REPORT_OFFSET + n].copy_from_slice(&hw_report[..n]);
    let size = (VAR_DATA_OFFSET - RUNTIME_OFFSET + var_data.len()) as u32;
    b[8..12].copy_from_slice(&(RUNTIME_OFFSET as u32 + size).to_le_bytes());
    b[12..16].copy_from_slice(&2u32.to_le_bytes());
    let ty: u32 = match report_type {
        ReportType::Snp => 2,
        ReportType::Tdx => 4,
    };
    let put = |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut b, RUNTIME_OFFSET, size);
    put(&mut b, RUNTIME_OFFSET + 4, 1);
    put(&mut b, RUNTIME_OFFSET + 8, ty);
    put(&mut b, RUNTIME_OFFSET + 12, 1);
    put(&mut b, RUNTIME_OFFSET + 16, var_data.len() as u32);
    b.extend_from_slice(var_data);
    b
}

/// An RSA public key, big-endian modulus and exponent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaKey {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(var: &[u8]) -> Vec<u8> {
        let mut b = build(ReportType::Snp, &[], var);
        b.extend_from_slice(&[0; 100]);
        b
    }

    #[test]
    fn parses_and_binds_variable_data() {
        let var = br#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"AQID"}],"user-data":"0a0b"}"#;
        let r = HclReport::parse(&report(var)).unwrap();
        assert_eq!(r.report_type, ReportType::Snp);
        assert_eq!(r.var_data(), var);
        let k = r.ak_pub().unwrap();
        assert_eq!((k.n, k.e), (vec![1, 2, 3], vec![1, 0, 1]));
        assert_eq!(r.user_data().unwrap(), Some(vec![10, 11]));
        let mut rd = r.var_data_hash();
        rd.resize(64, 0);
        r.check_var_data_hash(&rd).unwrap();
        rd[3] ^= 1;
        assert_eq!(r.check_var_data_hash(&rd), Err(Error::VarDataHash));
    }

    #[test]
    fn rejects_malformed_reports_with_the_reason() {
        let good = report(b"{}");
        let err = |b: &[u8]| HclReport::parse(b).unwrap_err().to_string();
        assert!(err(&good[..100]).contains("shorter than"));
        let mut b = good.clone();
        b[0] = b'X';
        assert!(err(&b).contains("HCLA"));
        let mut b = good.clone();
        b[RUNTIME_OFFSET + 8] = 9;
        assert!(err(&b).contains("report_type 9"));
        let mut b = good.clone();
        b[RUNTIME_OFFSET + 16..RUNTIME_OFFSET + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&b).contains("variable_data_size"));
        let mut b = report(b"[1]");
        assert!(err(&b).contains("not a JSON object"));
        b = report(b"{\"keys\":[]}");
        let r = HclReport::parse(&b).unwrap();
        assert!(r.ak_pub().unwrap_err().to_string().contains("HCLAkPub"));
    }
}
