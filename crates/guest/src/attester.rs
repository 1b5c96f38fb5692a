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

    /// The hardware field that binds init-data (SNP HOST_DATA, TDX
    /// MRCONFIGID), read from this TEE, so the guest can check init-data
    /// before using it. `None`: this TEE cannot tell.
    fn init_data_field(&self) -> Result<Option<Vec<u8>>, AttesterError> {
        Ok(None)
    }

    /// On vTPM platforms init-data is bound by a SHA-256 PCR (PCR 8)
    /// extended once from zero with the digest; this returns its value.
    /// When `Some`, it is checked instead of [`Attester::init_data_field`].
    fn init_data_pcr(&self) -> Result<Option<[u8; 32]>, AttesterError> {
        Ok(None)
    }

    /// Whether these calls may wait on a device or the network; the client
    /// then runs them off the async runtime's worker.
    fn blocks(&self) -> bool {
        true
    }
}

/// The `sample` TEE: no hardware, for trials and tests. Never accepted by a
/// production resource policy. `init_data` plays the launch-time binding
/// (as HOST_DATA would): it is carried in the evidence.
#[derive(Debug, Default, Clone)]
pub struct SampleAttester {
    pub init_data: Option<Vec<u8>>,
}

impl Attester for SampleAttester {
    fn tee(&self) -> Tee {
        Tee::new(Tee::SAMPLE)
    }

    /// Computed in memory.
    fn blocks(&self) -> bool {
        false
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        let mut v = serde_json::json!({
            "svn": "1",
            "report_data": ward_proto::b64::std_encode(report_data),
        });
        if let Some(d) = &self.init_data {
            v["init_data"] = Value::String(ward_proto::b64::std_encode(d));
        }
        Ok(v)
    }

    fn init_data_field(&self) -> Result<Option<Vec<u8>>, AttesterError> {
        Ok(self.init_data.clone())
    }
}
