//! The simulators as attesters for `ward attest --tee sim-*`: SNP and TDX
//! platforms of `ward sim`, and a simulated Azure SNP VM (vTPM in process,
//! IMDS answering the simulator's VCEK). Built from bytes, not from the
//! command line; only a trust service that names the simulator's root
//! accepts their evidence.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use ward_guest::attester::{AttesterError, Cause};
use ward_guest::Attester;

/// The simulated SNP platform in `dir`, reporting `measurement` and
/// `host_data` (32 bytes).
pub fn snp(dir: &Path, measurement: [u8; 48], host_data: &[u8]) -> Result<Arc<dyn Attester>> {
    let sim = ward_sim::snp::SnpSim::load(dir).map_err(|e| anyhow::anyhow!(e))?;
    let host_data: [u8; 32] = host_data
        .try_into()
        .map_err(|_| anyhow::anyhow!("HOST_DATA must be 32 bytes"))?;
    Ok(Arc::new(SimSnpAttester(sim, measurement, host_data)))
}

/// The simulated TDX platform in `dir`, reporting `mr_td` and
/// `mr_config_id` (48 bytes).
pub fn tdx(dir: &Path, mr_td: [u8; 48], mr_config_id: &[u8]) -> Result<Arc<dyn Attester>> {
    let sim = ward_sim::tdx::DcapSim::load(dir).map_err(|e| anyhow::anyhow!(e))?;
    let cfg_id: [u8; 48] = mr_config_id
        .try_into()
        .map_err(|_| anyhow::anyhow!("MRCONFIGID must be 48 bytes"))?;
    Ok(Arc::new(SimTdxAttester(sim, mr_td, cfg_id)))
}

/// A simulated Azure SNP VM over the SNP platform in `dir`, its PCR 8
/// extended once with `init_data_digest` when given.
pub fn az_snp(
    dir: &Path,
    measurement: [u8; 48],
    init_data_digest: Option<&[u8]>,
) -> Result<Arc<dyn Attester>> {
    let sim = ward_sim::snp::SnpSim::load(dir).map_err(|e| anyhow::anyhow!(e))?;
    let vcek = sim.vcek_der().to_vec();
    let params = ward_sim::SnpReportParams {
        measurement,
        ..Default::default()
    };
    let vtpm = ward_sim::az::AzVtpmSim::new(
        ward_sim::az::AzHardware::Snp(Box::new(sim), params),
        init_data_digest,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let tpm = ward_guest::az_vtpm::Tpm::new(Box::new(SimTpm(vtpm)));
    Ok(Arc::new(ward_guest::az_vtpm::AzVtpmAttester::new(
        tpm,
        Box::new(SimImds(vcek)),
    )?))
}

/// The simulated SNP platform as an attester: reports signed by the
/// simulator's VCEK, carrying it in `cert_chain`. Only a trust service that
/// names the simulator root accepts them.
struct SimSnpAttester(ward_sim::snp::SnpSim, [u8; 48], [u8; 32]);

impl Attester for SimSnpAttester {
    fn tee(&self) -> ward_proto::Tee {
        ward_proto::Tee::new("snp")
    }

    fn evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ward_guest::attester::AttesterError> {
        let err = |detail: String| AttesterError::new("sim-snp", Cause::Malformed, detail);
        if report_data.len() > 64 {
            return Err(AttesterError::new(
                "sim-snp",
                Cause::Request,
                "report data longer than 64 bytes",
            ));
        }
        let mut p = ward_sim::snp::SnpReportParams {
            measurement: self.1,
            host_data: self.2,
            ..Default::default()
        };
        p.report_data[..report_data.len()].copy_from_slice(report_data);
        self.0.evidence_json(&p).map_err(|e| err(e.to_string()))
    }

    fn init_data_field(&self) -> Result<Option<Vec<u8>>, ward_guest::attester::AttesterError> {
        Ok(Some(self.2.to_vec()))
    }
}

/// The simulated Azure vTPM as the TPM device (in process).
struct SimTpm(ward_sim::az::AzVtpmSim);

impl std::fmt::Debug for SimTpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated Azure vTPM")
    }
}

impl ward_guest::az_vtpm::TpmDevice for SimTpm {
    fn transact(&self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        Ok(self.0.transact(command))
    }
}

/// The simulated platform's VCEK, as IMDS would serve it.
#[derive(Debug)]
struct SimImds(Vec<u8>);

impl ward_guest::az_vtpm::Imds for SimImds {
    fn vcek(&self) -> Result<Vec<u8>, ward_guest::attester::AttesterError> {
        Ok(self.0.clone())
    }

    fn td_quote(&self, _: &[u8]) -> Result<Vec<u8>, ward_guest::attester::AttesterError> {
        Err(AttesterError::new(
            "sim-az-snp",
            Cause::Unsupported,
            "the simulated Azure VM is SNP, not TDX",
        ))
    }
}

/// The simulated TDX platform as an attester (CoCo `tdx` evidence).
struct SimTdxAttester(ward_sim::tdx::DcapSim, [u8; 48], [u8; 48]);

impl Attester for SimTdxAttester {
    fn tee(&self) -> ward_proto::Tee {
        ward_proto::Tee::new("tdx")
    }

    fn evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ward_guest::attester::AttesterError> {
        let err = |detail: String| AttesterError::new("sim-tdx", Cause::Malformed, detail);
        if report_data.len() > 64 {
            return Err(AttesterError::new(
                "sim-tdx",
                Cause::Request,
                "report data longer than 64 bytes",
            ));
        }
        let mut p = ward_sim::tdx::TdParams {
            mr_td: self.1,
            mr_config_id: self.2,
            ..Default::default()
        };
        p.report_data[..report_data.len()].copy_from_slice(report_data);
        let q = self.0.tdx_quote(&p).map_err(|e| err(e.to_string()))?;
        Ok(serde_json::json!({"quote": ward_proto::b64::std_encode(q)}))
    }

    fn init_data_field(&self) -> Result<Option<Vec<u8>>, ward_guest::attester::AttesterError> {
        Ok(Some(self.2.to_vec()))
    }
}
