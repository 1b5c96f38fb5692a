//! Evidence producers. An attester receives the 48-byte runtime-data hash
//! and returns the TEE's `primary_evidence` JSON binding it.

use serde_json::Value;
use ward_proto::Tee;

/// Producing evidence failed, by cause. `tee` names the attester
/// (`sev-guest`, `tdx-guest`, `configfs-tsm`, `az-vtpm`, …); `detail` says
/// what happened, for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttesterError {
    /// The device, interface or index this TEE needs is not there.
    #[error("attester {tee}: {detail}")]
    DeviceMissing { tee: &'static str, detail: String },
    /// The device (or kernel, TPM, firmware) refused or failed a call;
    /// `errno` when the OS gave one.
    #[error("attester {tee}: {detail}")]
    Device {
        tee: &'static str,
        detail: String,
        errno: Option<i32>,
    },
    /// The platform offers something this build does not speak (a
    /// configfs-tsm provider, a quote version).
    #[error("attester {tee}: {detail}")]
    Unsupported { tee: &'static str, detail: String },
    /// Another process changed the report while it was being made.
    #[error("attester {tee}: {detail}")]
    GenerationRace { tee: &'static str, detail: String },
    /// An answer (device, TPM, QGS, IMDS) that does not parse.
    #[error("attester {tee}: {detail}")]
    Malformed { tee: &'static str, detail: String },
    /// A helper service (the QGS, IMDS) could not be reached.
    #[error("attester {tee}: {detail}")]
    Unreachable { tee: &'static str, detail: String },
    /// The caller asked for something the TEE cannot do.
    #[error("attester {tee}: {detail}")]
    Request { tee: &'static str, detail: String },
}

/// The causes of [`AttesterError`], for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    DeviceMissing,
    Device,
    Unsupported,
    GenerationRace,
    Malformed,
    Unreachable,
    Request,
}

impl AttesterError {
    /// The one way to build an attester error.
    pub fn new(tee: &'static str, cause: Cause, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        match cause {
            Cause::DeviceMissing => Self::DeviceMissing { tee, detail },
            Cause::Device => Self::Device {
                tee,
                detail,
                errno: None,
            },
            Cause::Unsupported => Self::Unsupported { tee, detail },
            Cause::GenerationRace => Self::GenerationRace { tee, detail },
            Cause::Malformed => Self::Malformed { tee, detail },
            Cause::Unreachable => Self::Unreachable { tee, detail },
            Cause::Request => Self::Request { tee, detail },
        }
    }

    /// A failed device call with the OS error behind it.
    pub fn io(tee: &'static str, detail: impl Into<String>, e: &std::io::Error) -> Self {
        Self::Device {
            tee,
            detail: format!("{}: {e}", detail.into()),
            errno: e.raw_os_error(),
        }
    }

    pub fn cause(&self) -> Cause {
        match self {
            Self::DeviceMissing { .. } => Cause::DeviceMissing,
            Self::Device { .. } => Cause::Device,
            Self::Unsupported { .. } => Cause::Unsupported,
            Self::GenerationRace { .. } => Cause::GenerationRace,
            Self::Malformed { .. } => Cause::Malformed,
            Self::Unreachable { .. } => Cause::Unreachable,
            Self::Request { .. } => Cause::Request,
        }
    }
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
