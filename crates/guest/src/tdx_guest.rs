//! The legacy TDX guest path, for kernels without configfs-tsm: the TDREPORT
//! from `/dev/tdx_guest` and its quote from the host's Quote Generation
//! Service (QGS).
//!
//! * Report: `TDX_CMD_GET_REPORT0` (Linux `include/uapi/linux/tdx-guest.h`):
//!   `struct tdx_report_req { u8 reportdata[64]; u8 tdreport[1024]; }`,
//!   `_IOWR('T', 1, struct tdx_report_req)`.
//! * Quote: Intel DCAP's QGS message protocol (`qgs_msg_lib.h`), each
//!   message framed by a 4-byte big-endian length. `qgs_msg_header_t
//!   { u16 major_version = 1; u16 minor_version = 0; u32 type; u32 size
//!   (whole message); u32 error_code }` (little-endian); GET_QUOTE_REQ (0)
//!   carries `u32 report_size; u32 id_list_size;` then the TDREPORT;
//!   GET_QUOTE_RESP (1) carries `u32 selected_id_size; u32 quote_size;`
//!   then the selected id and the quote. The QGS listens on vsock (host CID
//!   2, port 4050 by default, as `/etc/tdx-attest.conf` names it) or, on the
//!   host, on a Unix socket.
//!
//! The device is reached through [`TdxGuestDevice`] and the QGS through a
//! stream, so tests run the same code against a report double and a QGS
//! stand-in on a Unix socket.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use ward_proto::Tee;

use crate::attester::{Attester, AttesterError, Cause};

pub const DEFAULT_DEVICE: &str = "/dev/tdx_guest";
pub use ward_dcap::tdreport::LEN as TDREPORT_LEN;
use ward_dcap::tdreport::MRCONFIGID as TDREPORT_MRCONFIGID;
const QGS_HEADER_LEN: usize = 16;
const GET_QUOTE_REQ: u32 = 0;
const GET_QUOTE_RESP: u32 = 1;
/// TD quotes are a few KiB; the QGS answer is bounded well above that.
const MAX_QGS_MESSAGE: usize = 64 * 1024;

/// The attester's name in errors.
const TEE: &str = "tdx-guest";

fn err(cause: Cause, detail: impl Into<String>) -> AttesterError {
    AttesterError::new(TEE, cause, detail)
}

/// The `/dev/tdx_guest` interface.
pub trait TdxGuestDevice: Send + Sync + std::fmt::Debug {
    /// `TDX_CMD_GET_REPORT0`: the TDREPORT carrying `report_data`.
    fn get_report(&self, report_data: &[u8; 64]) -> std::io::Result<Vec<u8>>;
}

/// The real device through `ioctl(2)`.
#[derive(Debug, Clone)]
pub struct LinuxTdxGuest {
    pub path: PathBuf,
}

#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; TDREPORT_LEN],
}

/// `_IOWR('T', 1, struct tdx_report_req)`.
const TDX_CMD_GET_REPORT0: u64 =
    (3 << 30) | ((std::mem::size_of::<TdxReportReq>() as u64) << 16) | (0x54 << 8) | 0x1;

impl TdxGuestDevice for LinuxTdxGuest {
    fn get_report(&self, report_data: &[u8; 64]) -> std::io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        let mut req = Box::new(TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDREPORT_LEN],
        });
        // SAFETY: `req` is a live, correctly sized `tdx_report_req` owned by
        // this frame for the duration of the call; the kernel writes only
        // within it.
        let rc = unsafe {
            libc::ioctl(
                f.as_raw_fd(),
                TDX_CMD_GET_REPORT0 as _,
                &mut *req as *mut TdxReportReq,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(req.tdreport.to_vec())
    }
}

/// Where the QGS listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QgsAddress {
    Vsock { cid: u32, port: u32 },
    Unix(PathBuf),
}

impl QgsAddress {
    /// `vsock:<cid>:<port>` or `unix:<path>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest
                .split_once(':')
                .ok_or_else(|| format!("{s:?}: expected vsock:<cid>:<port>"))?;
            let n = |v: &str, what: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("{s:?}: {what} {v:?} is not a number"))
            };
            return Ok(Self::Vsock {
                cid: n(cid, "cid")?,
                port: n(port, "port")?,
            });
        }
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        Err(format!("{s:?}: expected vsock:<cid>:<port> or unix:<path>"))
    }

    fn connect(&self) -> std::io::Result<Box<dyn ReadWrite>> {
        match self {
            Self::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p)?;
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                s.set_write_timeout(Some(Duration::from_secs(10)))?;
                Ok(Box::new(s))
            }
            Self::Vsock { cid, port } => vsock_connect(*cid, *port).map(|f| Box::new(f) as _),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn vsock_connect(cid: u32, port: u32) -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the descriptor is owned by the File below.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    // SAFETY: `addr` is a valid sockaddr_vm of the length passed.
    let rc = unsafe {
        libc::connect(
            fd,
            &addr as *const libc::sockaddr_vm as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// The GET_QUOTE_REQ message for `td_report`, with its length prefix.
pub fn qgs_quote_request(td_report: &[u8]) -> Vec<u8> {
    let size = (QGS_HEADER_LEN + 8 + td_report.len()) as u32;
    let mut m = Vec::with_capacity(4 + size as usize);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(&1u16.to_le_bytes());
    m.extend_from_slice(&0u16.to_le_bytes());
    m.extend_from_slice(&GET_QUOTE_REQ.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&(td_report.len() as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(td_report);
    m
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The quote in a GET_QUOTE_RESP message (without its length prefix).
pub fn parse_qgs_quote_response(m: &[u8]) -> Result<Vec<u8>, AttesterError> {
    if m.len() < QGS_HEADER_LEN + 8 {
        return Err(err(
            Cause::Malformed,
            format!("QGS answer of {} bytes is too short", m.len()),
        ));
    }
    let major = u16::from_le_bytes([m[0], m[1]]);
    if major != 1 {
        return Err(err(
            Cause::Malformed,
            format!("QGS message major version {major}, expected 1"),
        ));
    }
    let ty = le32(m, 4);
    if ty != GET_QUOTE_RESP {
        return Err(err(
            Cause::Malformed,
            format!("QGS answered message type {ty}, not GET_QUOTE_RESP"),
        ));
    }
    if le32(m, 8) as usize != m.len() {
        return Err(err(
            Cause::Malformed,
            format!(
                "QGS message says {} bytes but {} arrived",
                le32(m, 8),
                m.len()
            ),
        ));
    }
    let code = le32(m, 12);
    if code != 0 {
        return Err(err(Cause::Device, format!("QGS error code {code:#x}")));
    }
    let id = le32(m, 16) as usize;
    let quote = le32(m, 20) as usize;
    let start = QGS_HEADER_LEN + 8;
    if start.checked_add(id).and_then(|v| v.checked_add(quote)) != Some(m.len()) || quote == 0 {
        return Err(err(
            Cause::Malformed,
            format!(
                "QGS answer sizes (id {id}, quote {quote}) do not add up to its {} bytes",
                m.len()
            ),
        ));
    }
    Ok(m[start + id..].to_vec())
}

/// Ask the QGS at `addr` to quote `td_report`.
pub fn qgs_quote(addr: &QgsAddress, td_report: &[u8]) -> Result<Vec<u8>, AttesterError> {
    let mut s = addr.connect().map_err(|e| {
        err(
            Cause::Unreachable,
            format!("cannot reach the QGS at {addr:?}: {e}"),
        )
    })?;
    s.write_all(&qgs_quote_request(td_report))
        .map_err(|e| err(Cause::Unreachable, format!("QGS: {e}")))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(|e| {
        err(
            Cause::Unreachable,
            format!("QGS closed without an answer: {e}"),
        )
    })?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_QGS_MESSAGE {
        return Err(err(
            Cause::Malformed,
            format!("QGS announces a {n}-byte answer (limit {MAX_QGS_MESSAGE})"),
        ));
    }
    let mut m = vec![0u8; n];
    s.read_exact(&mut m)
        .map_err(|e| err(Cause::Unreachable, format!("QGS answer truncated: {e}")))?;
    parse_qgs_quote_response(&m)
}

/// A TDX attester over `/dev/tdx_guest` and the QGS.
#[derive(Debug)]
pub struct TdxGuestAttester {
    device: Box<dyn TdxGuestDevice>,
    qgs: QgsAddress,
}

impl TdxGuestAttester {
    pub fn new(device: Box<dyn TdxGuestDevice>, qgs: QgsAddress) -> Self {
        Self { device, qgs }
    }

    /// The Linux device at `path`, if it exists.
    pub fn detect(path: &Path, qgs: QgsAddress) -> Option<Self> {
        path.exists().then(|| {
            Self::new(
                Box::new(LinuxTdxGuest {
                    path: path.to_path_buf(),
                }),
                qgs,
            )
        })
    }

    fn report(&self, report_data: &[u8]) -> Result<Vec<u8>, AttesterError> {
        if report_data.len() > 64 {
            return Err(err(Cause::Request, "report data longer than 64 bytes"));
        }
        let mut rd = [0u8; 64];
        rd[..report_data.len()].copy_from_slice(report_data);
        let r = self
            .device
            .get_report(&rd)
            .map_err(|e| err(Cause::Device, format!("TDX_CMD_GET_REPORT0 failed: {e}")))?;
        if r.len() != TDREPORT_LEN {
            return Err(err(
                Cause::Malformed,
                format!("TDREPORT of {} bytes", r.len()),
            ));
        }
        Ok(r)
    }
}

impl Attester for TdxGuestAttester {
    fn tee(&self) -> Tee {
        Tee::new("tdx")
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        let report = self.report(report_data)?;
        let quote = qgs_quote(&self.qgs, &report)?;
        Ok(serde_json::json!({ "quote": ward_proto::b64::std_encode(&quote) }))
    }

    fn init_data_field(&self) -> Result<Option<Vec<u8>>, AttesterError> {
        let r = self.report(&[])?;
        Ok(Some(
            r[TDREPORT_MRCONFIGID..TDREPORT_MRCONFIGID + 48].to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number_matches_the_kernel_header() {
        assert_eq!(std::mem::size_of::<TdxReportReq>(), 1088);
        assert_eq!(TDX_CMD_GET_REPORT0, 0xC440_5401);
    }

    #[test]
    fn qgs_messages_are_framed_and_checked() {
        let req = qgs_quote_request(&[7u8; TDREPORT_LEN]);
        assert_eq!(&req[..4], &(16 + 8 + 1024u32).to_be_bytes());
        assert_eq!(le32(&req, 4 + 8), 1048);
        let mut resp = Vec::new();
        resp.extend_from_slice(&1u16.to_le_bytes());
        resp.extend_from_slice(&0u16.to_le_bytes());
        resp.extend_from_slice(&GET_QUOTE_RESP.to_le_bytes());
        resp.extend_from_slice(&(24u32 + 3).to_le_bytes());
        resp.extend_from_slice(&0u32.to_le_bytes());
        resp.extend_from_slice(&0u32.to_le_bytes());
        resp.extend_from_slice(&3u32.to_le_bytes());
        resp.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_qgs_quote_response(&resp).unwrap(), vec![1, 2, 3]);
        let mut bad = resp.clone();
        bad[12] = 0x11;
        assert!(parse_qgs_quote_response(&bad)
            .unwrap_err()
            .to_string()
            .contains("0x11"));
        let mut bad = resp.clone();
        bad[20] = 9;
        assert!(parse_qgs_quote_response(&bad)
            .unwrap_err()
            .to_string()
            .contains("add up"));
        assert!(parse_qgs_quote_response(&resp[..10]).is_err());
        assert_eq!(
            QgsAddress::parse("vsock:2:4050").unwrap(),
            QgsAddress::Vsock { cid: 2, port: 4050 }
        );
        assert!(QgsAddress::parse("tcp:1").is_err());
        assert!(QgsAddress::parse("vsock:x:1").is_err());
    }
}
