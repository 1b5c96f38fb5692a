//! Which hardware attester this guest uses: one named explicitly, or the
//! first found in a fixed order — configfs-tsm (SNP or TDX), then
//! `/dev/sev-guest`, then `/dev/tdx_guest` (quotes from the QGS), then an
//! Azure vTPM (a TPM holding the HCL report). A new guest TEE is added
//! here, not in the CLI.

use std::path::PathBuf;
use std::sync::Arc;

use crate::attester::{Attester, AttesterError};
use crate::az_vtpm::AzVtpmAttester;
use crate::sev_guest::SevGuestAttester;
use crate::tdx_guest::{QgsAddress, TdxGuestAttester};
use crate::tsm::TsmAttester;

/// Where each interface is looked for.
#[derive(Debug, Clone)]
pub struct Devices {
    pub tsm_root: PathBuf,
    pub sev_guest: PathBuf,
    pub tdx_guest: PathBuf,
    pub qgs: QgsAddress,
    pub tpm: PathBuf,
    pub imds_url: String,
}

impl Default for Devices {
    fn default() -> Self {
        Self {
            tsm_root: crate::tsm::DEFAULT_ROOT.into(),
            sev_guest: crate::sev_guest::DEFAULT_DEVICE.into(),
            tdx_guest: crate::tdx_guest::DEFAULT_DEVICE.into(),
            qgs: QgsAddress::Vsock { cid: 2, port: 4050 },
            tpm: crate::az_vtpm::DEFAULT_DEVICE.into(),
            imds_url: crate::az_vtpm::DEFAULT_IMDS.into(),
        }
    }
}

/// The hardware attesters, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The first interface found, in the order of the module documentation.
    Auto,
    Tsm,
    SevGuest,
    TdxGuest,
    AzVtpm,
}

impl Choice {
    /// `auto`, `tsm`, `sev-guest`, `tdx-guest`, `az-vtpm`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "tsm" => Self::Tsm,
            "sev-guest" => Self::SevGuest,
            "tdx-guest" => Self::TdxGuest,
            "az-vtpm" => Self::AzVtpm,
            _ => return None,
        })
    }
}

/// Why no attester could be used.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The interface asked for (or every one, for `auto`) is not there.
    #[error("{0}")]
    NotFound(String),
    /// An interface is there but failed while being opened.
    #[error(transparent)]
    Attester(#[from] AttesterError),
}

fn found(what: &str, a: impl Attester + 'static) -> Arc<dyn Attester> {
    tracing::info!(tee = %a.tee(), interface = what, "attester selected");
    Arc::new(a)
}

/// The attester of `choice`, looked for at `d`.
pub fn select(choice: Choice, d: &Devices) -> Result<Arc<dyn Attester>, SelectError> {
    let missing = |m: String| Err(SelectError::NotFound(m));
    match choice {
        Choice::SevGuest => match SevGuestAttester::detect(&d.sev_guest) {
            Some(t) => Ok(found("sev-guest", t)),
            None => missing(format!(
                "{} does not exist (the sev-guest driver is loaded only in an SNP guest)",
                d.sev_guest.display()
            )),
        },
        Choice::TdxGuest => match TdxGuestAttester::detect(&d.tdx_guest, d.qgs.clone()) {
            Some(t) => Ok(found("tdx-guest", t)),
            None => missing(format!(
                "{} does not exist (the tdx-guest driver is loaded only in a TD)",
                d.tdx_guest.display()
            )),
        },
        Choice::AzVtpm => match AzVtpmAttester::detect(&d.tpm, &d.imds_url)? {
            Some(t) => Ok(found("az-vtpm", t)),
            None => missing(format!(
                "{} is not an Azure confidential VM's vTPM (missing, or no HCL report at NV index 0x01400001)",
                d.tpm.display()
            )),
        },
        Choice::Tsm | Choice::Auto => {
            if let Some(t) = TsmAttester::detect(&d.tsm_root)? {
                return Ok(found("configfs-tsm", t));
            }
            if choice == Choice::Tsm {
                return missing(format!(
                    "{} does not exist (configfs-tsm needs Linux 6.7+ in an SNP or TDX guest); use --tee sample for trials",
                    d.tsm_root.display()
                ));
            }
            if let Some(t) = SevGuestAttester::detect(&d.sev_guest) {
                return Ok(found("sev-guest", t));
            }
            if let Some(t) = TdxGuestAttester::detect(&d.tdx_guest, d.qgs.clone()) {
                return Ok(found("tdx-guest", t));
            }
            if let Some(t) = AzVtpmAttester::detect(&d.tpm, &d.imds_url)? {
                return Ok(found("az-vtpm", t));
            }
            missing(format!(
                "no TEE interface found: none of {} (configfs-tsm, Linux 6.7+ in an SNP or TDX guest), {} or {} exists, and {} is not an Azure vTPM; use --tee sample for trials",
                d.tsm_root.display(),
                d.sev_guest.display(),
                d.tdx_guest.display(),
                d.tpm.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nowhere() -> (tempfile::TempDir, Devices) {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let d = Devices {
            tsm_root: p("tsm"),
            sev_guest: p("sev-guest"),
            tdx_guest: p("tdx_guest"),
            qgs: QgsAddress::Unix(p("qgs")),
            tpm: p("tpmrm0"),
            imds_url: "http://127.0.0.1:9".into(),
        };
        (dir, d)
    }

    #[test]
    fn auto_names_every_interface_it_tried_and_explicit_choices_name_theirs() {
        let (_dir, d) = nowhere();
        let e = select(Choice::Auto, &d).err().unwrap().to_string();
        for p in [&d.tsm_root, &d.sev_guest, &d.tdx_guest, &d.tpm] {
            assert!(e.contains(&p.display().to_string()), "{e}");
        }
        for (c, p) in [
            (Choice::Tsm, &d.tsm_root),
            (Choice::SevGuest, &d.sev_guest),
            (Choice::TdxGuest, &d.tdx_guest),
            (Choice::AzVtpm, &d.tpm),
        ] {
            let e = select(c, &d).err().unwrap();
            assert!(matches!(e, SelectError::NotFound(_)), "{c:?}: {e}");
            assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        }
        assert_eq!(Choice::parse("tdx-guest"), Some(Choice::TdxGuest));
        assert_eq!(Choice::parse("sample"), None);
    }
}
