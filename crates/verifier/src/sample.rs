//! The `sample` TEE: evidence with no hardware signature, for testing the
//! protocol end to end. Its claims are the fixed platform values of the
//! reference implementation, so CoCo's sample policies work unchanged. It is
//! never trusted by ward's default resource policy.
//!
//! Evidence: `{"svn": "1", "report_data": "<base64 of the 48-byte hash>"}`;
//! optional `launch_digest` (string), `debug` (bool) and `init_data`
//! (base64, the init-data binding) let tests exercise policies.

use serde::Deserialize;
use serde_json::{json, Value};
use ward_proto::b64;
use ward_proto::kbs::TeeEvidence;

use crate::verify::{InitDataBinding, TeeClaims, Verifier, VerifyError};

/// Verifier of the sample TEE.
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleVerifier;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleEvidence {
    svn: String,
    report_data: String,
    #[serde(default)]
    launch_digest: Option<String>,
    #[serde(default)]
    debug: Option<bool>,
    #[serde(default)]
    init_data: Option<String>,
}

impl Verifier for SampleVerifier {
    fn tee(&self) -> &'static str {
        "sample"
    }

    fn verify_evidence(&self, evidence: &TeeEvidence, _now: i64) -> Result<TeeClaims, VerifyError> {
        let ev: SampleEvidence = serde_json::from_value(evidence.primary_evidence.clone())
            .map_err(|e| VerifyError::Malformed(format!("sample evidence: {e}")))?;
        let report_data = b64::std_decode("report_data", &ev.report_data)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if report_data.len() > 64 {
            return Err(VerifyError::Malformed(
                "sample report_data is longer than 64 bytes".into(),
            ));
        }
        let init_data = match &ev.init_data {
            Some(s) => Some(InitDataBinding::Field(
                b64::std_decode("init_data", s)
                    .map_err(|e| VerifyError::Malformed(e.to_string()))?,
            )),
            None => None,
        };
        let claims = json!({
            "svn": ev.svn,
            "launch_digest": ev.launch_digest.unwrap_or_else(|| "abcde".into()),
            "debug": ev.debug.unwrap_or(false),
            "platform_version": {"major": 1, "minor": 4},
        });
        Ok(TeeClaims {
            claims,
            report_data,
            report_data_claim: Value::String(ev.report_data),
            init_data,
        })
    }
}

/// Build sample evidence binding `report_data` (the guest side, and tests).
pub fn sample_evidence(report_data: &[u8]) -> Value {
    json!({"svn": "1", "report_data": b64::std_encode(report_data)})
}
