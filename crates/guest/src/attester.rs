//! Evidence producers. An attester receives the 48-byte runtime-data hash
//! and returns the TEE's `primary_evidence` JSON binding it.

use serde_json::Value;
use ward_proto::Tee;

/// Producing evidence failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("attester {tee}: {reason}")]
pub struct AttesterError {
    pub tee: String,
    pub reason: String,
}

/// A source of TEE evidence.
pub trait Attester: Send + Sync {
    fn tee(&self) -> Tee;
    /// Evidence whose report_data carries `report_data`.
    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError>;
}

/// The `sample` TEE: no hardware, for trials and tests. Never accepted by a
/// production resource policy.
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleAttester;

impl Attester for SampleAttester {
    fn tee(&self) -> Tee {
        Tee::new(Tee::SAMPLE)
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        Ok(serde_json::json!({
            "svn": "1",
            "report_data": ward_proto::b64::std_encode(report_data),
        }))
    }
}
