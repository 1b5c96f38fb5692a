//! The Azure confidential-VM attester (`az-snp-vtpm`, `az-tdx-vtpm`): the
//! paravisor (HCL) exposes the hardware report through the vTPM, not through
//! `/dev/sev-guest` or configfs-tsm.
//!
//! For each evidence request, as Azure's guest tooling does:
//! 1. write the 64-byte report data to NV index `0x01400002` (defining it
//!    with owner authorization if needed), so the HCL's next report carries
//!    it as `user-data`;
//! 2. read the HCL report from NV index `0x01400001`, polling until it
//!    carries that user-data (the HCL refreshes it asynchronously; Azure's
//!    tooling sleeps three seconds instead);
//! 3. TPM2_Quote over SHA-256 PCRs 0-23 with the report data as
//!    qualifying data, by the attestation key `0x81000003`, and read the PCRs;
//! 4. SNP: the VCEK from the instance metadata service (IMDS, `GET
//!    /metadata/THIM/amd/certification`); TDX: the TD quote of the HCL's
//!    TDREPORT from IMDS (`POST /acc/tdquote`).
//!
//! The evidence is the CoCo v2 JSON (`version`, `tpm_quote{signature,
//! message, pcrs}`, `hcl_report`, `vcek` | `td_quote`) that the reference
//! verifier and ward's `az-*-vtpm` verifiers read.
//!
//! The TPM is reached through [`TpmDevice`] ([`LinuxTpm`] writes commands
//! to `/dev/tpmrm0`) and IMDS through [`Imds`], so tests drive the same code
//! against the vTPM simulator and an HTTP stand-in.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde_json::{json, Value};
use ward_proto::Tee;
use ward_vtpm::hcl::{HclReport, ReportType};
use ward_vtpm::tpm2::{self, cc, Command, NvPublic, Response};

use crate::attester::{Attester, AttesterError, Cause};

pub const DEFAULT_DEVICE: &str = "/dev/tpmrm0";
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// The PCR Azure images extend with the init-data digest.
pub const INIT_DATA_PCR: usize = 8;
/// HCL reports are a few KiB.
const MAX_REPORT: usize = 16 * 1024;

/// The attester's name in errors.
const TEE: &str = "az-vtpm";

fn err(cause: Cause, detail: impl Into<String>) -> AttesterError {
    AttesterError::new(TEE, cause, detail)
}

/// A TPM 2.0 device: one marshalled command in, one response out.
pub trait TpmDevice: Send + Sync + std::fmt::Debug {
    fn transact(&self, command: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// The Linux TPM resource manager device (`/dev/tpmrm0`): write a command,
/// read its response from the same descriptor.
#[derive(Debug)]
pub struct LinuxTpm {
    path: PathBuf,
    lock: Mutex<()>,
}

impl LinuxTpm {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            lock: Mutex::new(()),
        }
    }
}

impl TpmDevice for LinuxTpm {
    fn transact(&self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        f.write_all(command)?;
        let mut buf = vec![0u8; tpm2::MAX_MESSAGE];
        let n = f.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// TPM commands over a [`TpmDevice`].
#[derive(Debug)]
pub struct Tpm {
    dev: Box<dyn TpmDevice>,
}

/// A TPM command failed with a response code.
#[derive(Debug)]
struct TpmFailure {
    code: u32,
    message: String,
}

impl Tpm {
    pub fn new(dev: Box<dyn TpmDevice>) -> Self {
        Self { dev }
    }

    fn run(&self, c: &Command) -> Result<Vec<u8>, TpmFailure> {
        let name = tpm2::command_name(c.code);
        let fail = |code, message| TpmFailure { code, message };
        let bytes = self
            .dev
            .transact(&c.to_bytes())
            .map_err(|e| fail(u32::MAX, format!("{name}: TPM device: {e}")))?;
        let r = Response::parse(&bytes, c.password_auth)
            .map_err(|e| fail(u32::MAX, format!("{name}: {e}")))?;
        if r.code != tpm2::rc::SUCCESS {
            return Err(fail(
                r.code,
                format!("{name} failed: {}", tpm2::describe_rc(r.code)),
            ));
        }
        Ok(r.params)
    }

    fn call(&self, c: &Command) -> Result<Vec<u8>, AttesterError> {
        self.run(c).map_err(|f| err(Cause::Device, f.message))
    }

    /// The public area of an NV index, or `None` if it is not defined.
    pub fn nv_public(&self, index: u32) -> Result<Option<NvPublic>, AttesterError> {
        let c = Command {
            code: cc::NV_READ_PUBLIC,
            handles: vec![index],
            password_auth: false,
            params: vec![],
        };
        match self.run(&c) {
            Ok(p) => NvPublic::parse_sized(&p)
                .map(|(p, _)| Some(p))
                .map_err(|e| err(Cause::Malformed, e.to_string())),
            Err(f) if f.code != u32::MAX && f.code & 0x0bf == 0x08b => Ok(None),
            Err(f) => Err(err(Cause::Device, f.message)),
        }
    }

    /// The whole contents of an NV index, read with owner authorization in
    /// chunks.
    pub fn nv_read(&self, index: u32, max: usize) -> Result<Vec<u8>, AttesterError> {
        let public = self.nv_public(index)?.ok_or_else(|| {
            err(
                Cause::DeviceMissing,
                format!("TPM NV index {index:#010x} is not defined"),
            )
        })?;
        let size = public.data_size as usize;
        if size > max {
            return Err(err(
                Cause::Malformed,
                format!(
                    "TPM NV index {index:#010x} holds {size} bytes, more than the {max} expected"
                ),
            ));
        }
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let n = (size - out.len()).min(tpm2::NV_CHUNK);
            let mut params = (n as u16).to_be_bytes().to_vec();
            params.extend_from_slice(&(out.len() as u16).to_be_bytes());
            let p = self.call(&Command {
                code: cc::NV_READ,
                handles: vec![tpm2::TPM_RH_OWNER, index],
                password_auth: true,
                params,
            })?;
            let got = p
                .get(2..)
                .filter(|d| d.len() == n && u16::from_be_bytes([p[0], p[1]]) as usize == n);
            let Some(chunk) = got else {
                return Err(err(
                    Cause::Malformed,
                    format!("TPM2_NV_Read of {index:#010x} returned a malformed buffer"),
                ));
            };
            out.extend_from_slice(chunk);
        }
        Ok(out)
    }

    /// Write `data` to an owner-defined NV index, (re)defining it with
    /// owner read/write and exactly `data.len()` bytes if needed.
    pub fn nv_write_owner(&self, index: u32, data: &[u8]) -> Result<(), AttesterError> {
        match self.nv_public(index)? {
            Some(p) if p.data_size as usize == data.len() => {}
            existing => {
                if existing.is_some() {
                    self.call(&Command {
                        code: cc::NV_UNDEFINE_SPACE,
                        handles: vec![tpm2::TPM_RH_OWNER, index],
                        password_auth: true,
                        params: vec![],
                    })?;
                }
                let mut params = Vec::new();
                tpm2::put_sized(&mut params, &[]);
                params.extend_from_slice(
                    &NvPublic {
                        index,
                        name_alg: tpm2::TPM_ALG_SHA256,
                        attributes: tpm2::TPMA_NV_OWNERREAD | tpm2::TPMA_NV_OWNERWRITE,
                        auth_policy: vec![],
                        data_size: data.len() as u16,
                    }
                    .to_sized_bytes(),
                );
                self.call(&Command {
                    code: cc::NV_DEFINE_SPACE,
                    handles: vec![tpm2::TPM_RH_OWNER],
                    password_auth: true,
                    params,
                })?;
            }
        }
        for (i, chunk) in data.chunks(tpm2::NV_CHUNK).enumerate() {
            let mut params = Vec::new();
            tpm2::put_sized(&mut params, chunk);
            params.extend_from_slice(&((i * tpm2::NV_CHUNK) as u16).to_be_bytes());
            self.call(&Command {
                code: cc::NV_WRITE,
                handles: vec![tpm2::TPM_RH_OWNER, index],
                password_auth: true,
                params,
            })?;
        }
        Ok(())
    }

    /// TPM2_Quote by `key` over SHA-256 PCRs 0-23 with `nonce`; returns the
    /// TPMS_ATTEST bytes and the RSASSA signature.
    pub fn quote(&self, key: u32, nonce: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AttesterError> {
        if nonce.len() > 64 {
            return Err(err(
                Cause::Request,
                "the quote nonce is longer than 64 bytes",
            ));
        }
        let mut params = Vec::new();
        tpm2::put_sized(&mut params, nonce);
        params.extend_from_slice(&tpm2::TPM_ALG_NULL.to_be_bytes());
        let all: Vec<u8> = (0..24).collect();
        params.extend_from_slice(&tpm2::pcr_selection(tpm2::TPM_ALG_SHA256, &all));
        let p = self.call(&Command {
            code: cc::QUOTE,
            handles: vec![key],
            password_auth: true,
            params,
        })?;
        tpm2::parse_quote(&p).map_err(|e| err(Cause::Malformed, e.to_string()))
    }

    /// The SHA-256 PCRs 0-23 (a TPM returns at most 8 per TPM2_PCR_Read).
    pub fn pcrs(&self) -> Result<Vec<[u8; 32]>, AttesterError> {
        let mut values: Vec<Option<[u8; 32]>> = vec![None; 24];
        for _ in 0..24 {
            let want: Vec<u8> = (0..24u8)
                .filter(|i| values[*i as usize].is_none())
                .collect();
            if want.is_empty() {
                break;
            }
            let p = self.call(&Command {
                code: cc::PCR_READ,
                handles: vec![],
                password_auth: false,
                params: tpm2::pcr_selection(tpm2::TPM_ALG_SHA256, &want),
            })?;
            let (read, digests) =
                tpm2::parse_pcr_read(&p).map_err(|e| err(Cause::Malformed, e.to_string()))?;
            if read.is_empty() {
                break;
            }
            for (i, d) in read.into_iter().zip(digests) {
                let d: [u8; 32] = d.as_slice().try_into().map_err(|_| {
                    err(
                        Cause::Malformed,
                        format!("PCR {i} has {} bytes, not SHA-256", d.len()),
                    )
                })?;
                if let Some(slot) = values.get_mut(i as usize) {
                    *slot = Some(d);
                }
            }
        }
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| {
                    err(
                        Cause::Malformed,
                        format!("the TPM did not return SHA-256 PCR {i}"),
                    )
                })
            })
            .collect()
    }
}

/// The Azure instance metadata service.
pub trait Imds: Send + Sync + std::fmt::Debug {
    /// The VCEK of this host's chip and TCB (DER).
    fn vcek(&self) -> Result<Vec<u8>, AttesterError>;
    /// A TD quote for `td_report` from the host's quoting enclave.
    fn td_quote(&self, td_report: &[u8]) -> Result<Vec<u8>, AttesterError>;
}

/// IMDS over HTTP (`Metadata: true`), at a configurable base URL.
#[derive(Debug, Clone)]
pub struct HttpImds {
    pub base: String,
}

impl HttpImds {
    fn request(&self, path: &str, body: Option<Value>) -> Result<Value, AttesterError> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        // reqwest's blocking client must not run on an async runtime
        // thread; a scoped thread keeps this callable from the guest API.
        std::thread::scope(|s| {
            s.spawn(|| {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| err(Cause::Unreachable, format!("HTTP client: {e}")))?;
                let req = match &body {
                    None => client.get(&url),
                    Some(b) => client.post(&url).json(b),
                };
                let r = req
                    .header("Metadata", "true")
                    .send()
                    .map_err(|e| err(Cause::Unreachable, format!("IMDS {url}: {e}")))?;
                if !r.status().is_success() {
                    return Err(err(
                        Cause::Unreachable,
                        format!("IMDS {url}: HTTP {}", r.status()),
                    ));
                }
                let b = r
                    .bytes()
                    .map_err(|e| err(Cause::Unreachable, format!("IMDS {url}: {e}")))?;
                if b.len() > 1 << 20 {
                    return Err(err(
                        Cause::Malformed,
                        format!("IMDS {url}: answer larger than 1 MiB"),
                    ));
                }
                serde_json::from_slice(&b).map_err(|e| {
                    err(
                        Cause::Malformed,
                        format!("IMDS {url}: answer is not JSON: {e}"),
                    )
                })
            })
            .join()
            .map_err(|_| err(Cause::Unreachable, "IMDS request thread failed"))?
        })
    }
}

/// The first PEM certificate in `pem`, as DER.
fn pem_cert_der(pem: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

impl Imds for HttpImds {
    fn vcek(&self) -> Result<Vec<u8>, AttesterError> {
        let v = self.request("/metadata/THIM/amd/certification", None)?;
        let pem = v["vcekCert"].as_str().ok_or_else(|| {
            err(
                Cause::Malformed,
                "IMDS certification answer has no vcekCert",
            )
        })?;
        let der = pem_cert_der(pem)
            .ok_or_else(|| err(Cause::Malformed, "IMDS vcekCert is not a PEM certificate"))?;
        ward_snp::certs::AmdCert::from_der("VCEK", &der)
            .map_err(|e| err(Cause::Malformed, format!("IMDS vcekCert: {e}")))?;
        Ok(der)
    }

    fn td_quote(&self, td_report: &[u8]) -> Result<Vec<u8>, AttesterError> {
        let v = self.request(
            "/acc/tdquote",
            Some(json!({ "report": URL_SAFE.encode(td_report) })),
        )?;
        let q = v["quote"]
            .as_str()
            .ok_or_else(|| err(Cause::Malformed, "IMDS tdquote answer has no quote"))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(q.trim_end_matches('='))
            .map_err(|e| {
                err(
                    Cause::Malformed,
                    format!("IMDS quote is not base64url: {e}"),
                )
            })
    }
}

/// The Azure vTPM attester.
#[derive(Debug)]
pub struct AzVtpmAttester {
    tpm: Tpm,
    imds: Box<dyn Imds>,
    platform: ReportType,
    vcek: Mutex<Option<Vec<u8>>>,
    /// How long to wait for the HCL to refresh its report.
    pub refresh_timeout: Duration,
    pub poll_interval: Duration,
}

impl AzVtpmAttester {
    /// An attester over `tpm`; reads the HCL report once to learn whether
    /// the VM is SNP or TDX. Fails if the TPM has no HCL report.
    pub fn new(tpm: Tpm, imds: Box<dyn Imds>) -> Result<Self, AttesterError> {
        let report = tpm.nv_read(tpm2::HCL_REPORT_INDEX, MAX_REPORT)?;
        let hcl = HclReport::parse(&report).map_err(|e| err(Cause::Malformed, e.to_string()))?;
        Ok(Self {
            tpm,
            imds,
            platform: hcl.report_type,
            vcek: Mutex::new(None),
            refresh_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
        })
    }

    /// The Linux TPM at `device`, if it exists and carries an HCL report
    /// (any other TPM is not an Azure confidential VM's vTPM).
    pub fn detect(device: &Path, imds_url: &str) -> Result<Option<Self>, AttesterError> {
        if !device.exists() {
            return Ok(None);
        }
        let tpm = Tpm::new(Box::new(LinuxTpm::new(device)));
        if tpm.nv_public(tpm2::HCL_REPORT_INDEX)?.is_none() {
            return Ok(None);
        }
        Self::new(
            tpm,
            Box::new(HttpImds {
                base: imds_url.to_string(),
            }),
        )
        .map(Some)
    }

    pub fn platform(&self) -> ReportType {
        self.platform
    }

    /// Write `user_data` and read the HCL report until it carries it; the
    /// report's bytes and their parse.
    pub fn fresh_report(
        &self,
        user_data: &[u8; 64],
    ) -> Result<(Vec<u8>, HclReport), AttesterError> {
        self.tpm.nv_write_owner(tpm2::USER_DATA_INDEX, user_data)?;
        let start = Instant::now();
        loop {
            let bytes = self.tpm.nv_read(tpm2::HCL_REPORT_INDEX, MAX_REPORT)?;
            let hcl = HclReport::parse(&bytes).map_err(|e| err(Cause::Malformed, e.to_string()))?;
            if hcl
                .user_data()
                .map_err(|e| err(Cause::Malformed, e.to_string()))?
                .as_deref()
                == Some(&user_data[..])
            {
                return Ok((bytes, hcl));
            }
            if start.elapsed() >= self.refresh_timeout {
                return Err(err(
                    Cause::GenerationRace,
                    format!(
                        "the HCL report did not pick up the new user-data within {:?}",
                        self.refresh_timeout
                    ),
                ));
            }
            std::thread::sleep(self.poll_interval);
        }
    }

    fn vcek(&self) -> Result<Vec<u8>, AttesterError> {
        let mut cached = self.vcek.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cached.as_ref() {
            return Ok(v.clone());
        }
        let v = self.imds.vcek()?;
        *cached = Some(v.clone());
        Ok(v)
    }
}

impl Attester for AzVtpmAttester {
    fn tee(&self) -> Tee {
        match self.platform {
            ReportType::Snp => Tee::new("az-snp-vtpm"),
            ReportType::Tdx => Tee::new("az-tdx-vtpm"),
        }
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        if report_data.len() > 64 {
            return Err(err(Cause::Request, "report data longer than 64 bytes"));
        }
        let mut ud = [0u8; 64];
        ud[..report_data.len()].copy_from_slice(report_data);
        let (hcl_bytes, hcl) = self.fresh_report(&ud)?;
        let (message, signature) = self.tpm.quote(tpm2::AK_HANDLE, report_data)?;
        let pcrs = self.tpm.pcrs()?;
        let mut ev = json!({
            "version": 2,
            "tpm_quote": {
                "signature": hex::encode(signature),
                "message": hex::encode(message),
                "pcrs": pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
            },
            "hcl_report": URL_SAFE.encode(&hcl_bytes),
        });
        match self.platform {
            ReportType::Snp => ev["vcek"] = Value::String(URL_SAFE.encode(self.vcek()?)),
            ReportType::Tdx => {
                let quote = self
                    .imds
                    .td_quote(&hcl.hw_report()[..ward_dcap::tdreport::LEN])?;
                ev["td_quote"] = Value::String(URL_SAFE.encode(quote));
            }
        }
        Ok(ev)
    }

    fn init_data_pcr(&self) -> Result<Option<[u8; 32]>, AttesterError> {
        Ok(Some(self.tpm.pcrs()?[INIT_DATA_PCR]))
    }
}
