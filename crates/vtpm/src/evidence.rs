//! The CoCo evidence JSON of Azure vTPM CVMs (guest-components
//! `az-snp-vtpm` / `az-tdx-vtpm` attesters, as the reference verifier reads
//! them):
//!
//! * v1 / v2: `{"version": 1|2, "tpm_quote": {"signature": hex, "message":
//!   hex, "pcrs": [hex; 24]}, "hcl_report": base64url, "vcek": base64url DER}`
//!   (`"td_quote"` instead of `"vcek"` on TDX). v2 also puts the report data
//!   in the HCL variable data's `user-data`.
//! * v0 (older SNP attesters): `{"quote": {"signature": [u8], "message": [u8],
//!   "pcrs": [[u8; 32]]}, "report": [u8], "vcek": PEM}`.

use base64::Engine;
use serde_json::Value;

use crate::{malformed, Error};

/// The TPM quote as sent: signature, signed TPMS_ATTEST and SHA-256 PCRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    pub signature: Vec<u8>,
    pub message: Vec<u8>,
    pub pcrs: Vec<[u8; 32]>,
}

/// Azure vTPM evidence, decoded but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzEvidence {
    /// 0 for the legacy shape.
    pub version: u32,
    pub quote: TpmQuote,
    pub hcl_report: Vec<u8>,
    /// The VCEK (DER or PEM) on SNP; the TD quote on TDX.
    pub hw_collateral: Vec<u8>,
}

const WHAT: &str = "Azure vTPM evidence";

/// Bytes given as hex text or as an array of integers.
fn bytes(v: &Value, field: &str) -> Result<Vec<u8>, Error> {
    match v {
        Value::String(s) => hex::decode(s).map_err(|e| malformed(WHAT, format!("{field}: {e}"))),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| malformed(WHAT, format!("{field}: not an array of bytes")))
            })
            .collect(),
        _ => Err(malformed(
            WHAT,
            format!("{field} is missing or not hex/bytes"),
        )),
    }
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, Error> {
    let s = v
        .as_str()
        .ok_or_else(|| malformed(WHAT, format!("{field} is missing or not a string")))?;
    let t = s.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .map_err(|e| malformed(WHAT, format!("{field}: not base64: {e}")))
}

fn quote(v: &Value) -> Result<TpmQuote, Error> {
    if !v.is_object() {
        return Err(malformed(WHAT, "the TPM quote is missing"));
    }
    let pcrs = v["pcrs"]
        .as_array()
        .ok_or_else(|| malformed(WHAT, "quote pcrs is not an array"))?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let b = bytes(p, "quote pcrs")?;
            <[u8; 32]>::try_from(b.as_slice()).map_err(|_| {
                malformed(
                    WHAT,
                    format!("PCR {i} has {} bytes, not 32 (SHA-256)", b.len()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TpmQuote {
        signature: bytes(&v["signature"], "quote signature")?,
        message: bytes(&v["message"], "quote message")?,
        pcrs,
    })
}

impl AzEvidence {
    /// Decode the evidence JSON; `hw_field` is `"vcek"` (SNP) or `"td_quote"` (TDX).
    pub fn from_json(v: &Value, hw_field: &str) -> Result<Self, Error> {
        if !v.is_object() {
            return Err(malformed(WHAT, "not a JSON object"));
        }
        match v.get("version") {
            None => {
                let report = bytes(&v["report"], "report")?;
                let hw = v[hw_field]
                    .as_str()
                    .ok_or_else(|| malformed(WHAT, format!("{hw_field} is missing")))?;
                Ok(Self {
                    version: 0,
                    quote: quote(&v["quote"])?,
                    hcl_report: report,
                    hw_collateral: hw.as_bytes().to_vec(),
                })
            }
            Some(ver) => {
                let version = ver
                    .as_u64()
                    .filter(|n| (1..=2).contains(n))
                    .ok_or_else(|| {
                        malformed(WHAT, format!("version {ver} is not supported (1 or 2)"))
                    })? as u32;
                Ok(Self {
                    version,
                    quote: quote(&v["tpm_quote"])?,
                    hcl_report: b64(&v["hcl_report"], "hcl_report")?,
                    hw_collateral: b64(&v[hw_field], hw_field)?,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_all_versions_and_names_bad_fields() {
        let pcrs: Vec<String> = (0..24).map(|_| "00".repeat(32)).collect();
        let v1 = json!({"version": 1, "tpm_quote": {"signature": "0102", "message": "ff", "pcrs": pcrs},
            "hcl_report": "SENMQQ==", "vcek": "AQI"});
        let e = AzEvidence::from_json(&v1, "vcek").unwrap();
        assert_eq!(
            (
                e.version,
                e.hcl_report.as_slice(),
                e.hw_collateral.as_slice()
            ),
            (1, &b"HCLA"[..], &[1u8, 2][..])
        );
        assert_eq!(e.quote.signature, vec![1, 2]);
        assert_eq!(e.quote.pcrs.len(), 24);

        let v0 = json!({"quote": {"signature": [1], "message": [2], "pcrs": [vec![0u8; 32]]}, "report": [72, 67], "vcek": "-----BEGIN"});
        let e = AzEvidence::from_json(&v0, "vcek").unwrap();
        assert_eq!(
            (e.version, e.hcl_report, e.quote.pcrs.len()),
            (0, vec![72, 67], 1)
        );

        let err = |v: Value| AzEvidence::from_json(&v, "vcek").unwrap_err().to_string();
        assert!(err(json!({"version": 7})).contains("version 7"));
        assert!(err(
            json!({"version": 1, "tpm_quote": {"signature": "zz", "message": "", "pcrs": []}})
        )
        .contains("quote signature"));
        assert!(err(
            json!({"version": 1, "tpm_quote": {"signature": "", "message": "", "pcrs": ["00"]}})
        )
        .contains("PCR 0 has 1 bytes"));
        assert!(err(json!({"version": 2, "tpm_quote": {"signature": "", "message": "", "pcrs": []}, "hcl_report": "!!"})).contains("hcl_report"));
        assert!(err(json!({"quote": {"signature": [300], "message": [], "pcrs": []}, "report": [], "vcek": ""})).contains("not an array of bytes"));
        assert!(err(json!([])).contains("not a JSON object"));
    }
}
