//! The legacy SEV-SNP guest device, `/dev/sev-guest`, for kernels without
//! configfs-tsm: the `SNP_GET_EXT_REPORT` ioctl (Linux
//! `include/uapi/linux/sev-guest.h`) returns the attestation report and the
//! host's certificate table.
//!
//! ```text
//! struct snp_report_req      { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }          // 96
//! struct snp_ext_report_req  { snp_report_req data; u64 certs_address; u32 certs_len; } // 112
//! struct snp_report_resp     { u8 data[4000]; }   // MSG_REPORT_RSP: status u32, report_size u32, rsvd[24], report
//! struct snp_guest_request_ioctl { u8 msg_version; u64 req_data; u64 resp_data; u64 exitinfo2; } // 32
//! SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)
//! ```
//!
//! When the certificate buffer is too small the kernel fails with `EIO`,
//! sets `exitinfo2` to `SNP_GUEST_VMM_ERR_INVALID_LEN` (1 in its upper 32
//! bits) and writes the needed length to `certs_len`; the caller retries
//! with a larger, page-sized buffer.
//!
//! The device is reached through [`SevGuestDevice`]; [`LinuxSevGuest`]
//! does the ioctl, and tests use a double that follows these semantics.

use std::path::{Path, PathBuf};

use serde_json::Value;
use ward_proto::Tee;
use ward_snp::evidence::{parse_cert_table, to_evidence_json};
use ward_snp::report::{AttestationReport, REPORT_LEN};
use ward_snp::Product;

use crate::attester::{Attester, AttesterError, Cause};

/// Where the device lives.
pub const DEFAULT_DEVICE: &str = "/dev/sev-guest";
/// `exitinfo2` upper half when the certificate buffer is too small.
pub const VMM_ERR_INVALID_LEN: u64 = 1 << 32;
const PAGE: usize = 4096;
/// Certificate tables larger than this are refused (a VCEK chain is ~5 KiB).
const MAX_CERTS: usize = 64 * PAGE;

/// One `SNP_GET_EXT_REPORT` exchange, in and out.
#[derive(Debug, Clone)]
pub struct ExtReportRequest {
    pub user_data: [u8; 64],
    pub vmpl: u32,
    /// The certificate buffer (its length is `certs_len` on input).
    pub certs: Vec<u8>,
    /// Set by the device: the response message (4000 bytes).
    pub response: Vec<u8>,
    /// Set by the device.
    pub exitinfo2: u64,
    /// Set by the device on `EIO`/invalid length: the needed size.
    pub certs_len_needed: usize,
}

/// The `/dev/sev-guest` interface.
pub trait SevGuestDevice: Send + Sync + std::fmt::Debug {
    /// Issue `SNP_GET_EXT_REPORT`. `Err` carries the OS error.
    fn get_ext_report(&self, req: &mut ExtReportRequest) -> std::io::Result<()>;
}

/// The real device through `ioctl(2)`.
#[derive(Debug, Clone)]
pub struct LinuxSevGuest {
    pub path: PathBuf,
}

#[repr(C)]
struct SnpExtReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
    certs_address: u64,
    certs_len: u32,
}

#[repr(C)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

/// `_IOWR('S', 0x2, struct snp_guest_request_ioctl)`.
const SNP_GET_EXT_REPORT: u64 =
    (3 << 30) | ((std::mem::size_of::<SnpGuestRequestIoctl>() as u64) << 16) | (0x53 << 8) | 0x2;

impl SevGuestDevice for LinuxSevGuest {
    fn get_ext_report(&self, r: &mut ExtReportRequest) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        let mut req = SnpExtReportReq {
            user_data: r.user_data,
            vmpl: r.vmpl,
            rsvd: [0; 28],
            certs_address: r.certs.as_mut_ptr() as u64,
            certs_len: u32::try_from(r.certs.len()).unwrap_or(u32::MAX),
        };
        let mut resp = vec![0u8; 4000];
        let mut ioc = SnpGuestRequestIoctl {
            msg_version: 1,
            req_data: &mut req as *mut SnpExtReportReq as u64,
            resp_data: resp.as_mut_ptr() as u64,
            exitinfo2: 0,
        };
        // SAFETY: every pointer handed to the kernel refers to a live,
        // correctly sized buffer owned by this frame (`req`, `resp`,
        // `r.certs` of `certs_len` bytes) for the duration of the call.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), SNP_GET_EXT_REPORT as _, &mut ioc) };
        r.exitinfo2 = ioc.exitinfo2;
        r.certs_len_needed = req.certs_len as usize;
        r.response = resp;
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// An SNP attester over `/dev/sev-guest`.
#[derive(Debug)]
pub struct SevGuestAttester {
    device: Box<dyn SevGuestDevice>,
    vmpl: u32,
}

/// The attester's name in errors.
const TEE: &str = "sev-guest";

fn err(cause: Cause, detail: impl Into<String>) -> AttesterError {
    AttesterError::new(TEE, cause, detail)
}

impl SevGuestAttester {
    pub fn new(device: Box<dyn SevGuestDevice>) -> Self {
        Self { device, vmpl: 0 }
    }

    /// The Linux device at `path`, if it exists.
    pub fn detect(path: &Path) -> Option<Self> {
        path.exists().then(|| {
            Self::new(Box::new(LinuxSevGuest {
                path: path.to_path_buf(),
            }))
        })
    }

    /// The report for `user_data` and the certificate table (may be empty).
    pub fn ext_report(&self, user_data: [u8; 64]) -> Result<(Vec<u8>, Vec<u8>), AttesterError> {
        let mut certs_len = 4 * PAGE;
        for _ in 0..3 {
            let mut r = ExtReportRequest {
                user_data,
                vmpl: self.vmpl,
                certs: vec![0u8; certs_len],
                response: Vec::new(),
                exitinfo2: 0,
                certs_len_needed: 0,
            };
            match self.device.get_ext_report(&mut r) {
                Ok(()) => return Self::split(&r),
                Err(e) if r.exitinfo2 == VMM_ERR_INVALID_LEN => {
                    let need = r.certs_len_needed.div_ceil(PAGE) * PAGE;
                    if need <= certs_len || need > MAX_CERTS {
                        return Err(err(
                            Cause::Device,
                            format!("the host asks for a {need}-byte certificate buffer ({e})"),
                        ));
                    }
                    certs_len = need;
                }
                Err(e) => {
                    return Err(err(
                        Cause::Device,
                        format!(
                            "SNP_GET_EXT_REPORT failed: {e} (exitinfo2 {:#x})",
                            r.exitinfo2
                        ),
                    ))
                }
            }
        }
        Err(err(
            Cause::GenerationRace,
            "the certificate buffer size kept changing",
        ))
    }

    fn split(r: &ExtReportRequest) -> Result<(Vec<u8>, Vec<u8>), AttesterError> {
        let resp = &r.response;
        if resp.len() < 32 + REPORT_LEN {
            return Err(err(Cause::Malformed, "short response from the device"));
        }
        let status = u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]);
        if status != 0 {
            return Err(err(Cause::Device, format!("firmware status {status:#x}")));
        }
        let size = u32::from_le_bytes([resp[4], resp[5], resp[6], resp[7]]) as usize;
        if size != REPORT_LEN {
            return Err(err(
                Cause::Malformed,
                format!("report size {size}, expected {REPORT_LEN}"),
            ));
        }
        Ok((resp[32..32 + REPORT_LEN].to_vec(), r.certs.clone()))
    }
}

impl Attester for SevGuestAttester {
    fn tee(&self) -> Tee {
        Tee::new("snp")
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        if report_data.len() > 64 {
            return Err(err(Cause::Request, "report data longer than 64 bytes"));
        }
        let mut ud = [0u8; 64];
        ud[..report_data.len()].copy_from_slice(report_data);
        let (report, certs) = self.ext_report(ud)?;
        let report = AttestationReport::from_bytes(&report)
            .map_err(|e| err(Cause::Malformed, format!("SNP report from the device: {e}")))?;
        // An all-zero buffer is "no certificates".
        let certs = if certs.iter().all(|b| *b == 0) {
            Vec::new()
        } else {
            parse_cert_table(&certs)
                .map_err(|e| err(Cause::Malformed, format!("certificate table: {e}")))?
        };
        let product = report.product_from_cpuid().unwrap_or(Product::Milan);
        Ok(to_evidence_json(&report, product, &certs))
    }

    fn init_data_field(&self) -> Result<Option<Vec<u8>>, AttesterError> {
        let (report, _) = self.ext_report([0u8; 64])?;
        let r = AttestationReport::from_bytes(&report)
            .map_err(|e| err(Cause::Malformed, format!("SNP report from the device: {e}")))?;
        Ok(Some(r.host_data().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number_matches_the_kernel_header() {
        // _IOWR('S', 0x2, 32-byte struct) as in linux/sev-guest.h.
        assert_eq!(std::mem::size_of::<SnpGuestRequestIoctl>(), 32);
        assert_eq!(std::mem::size_of::<SnpExtReportReq>(), 112);
        assert_eq!(SNP_GET_EXT_REPORT, 0xC020_5302);
    }
}
