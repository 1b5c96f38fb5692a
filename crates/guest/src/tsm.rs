//! Linux configfs-tsm attester (Documentation/ABI/testing/configfs-tsm):
//! `mkdir <root>/<entry>`, write 64 bytes to `inblob`, read `outblob`
//! (the SNP report or TDX quote, produced on read) and `auxblob` (SNP: the
//! host's certificate table), read `provider` (`sev_guest`, `tdx_guest`)
//! and check `generation` so a concurrent writer to the same entry is
//! detected, then `rmdir`. The root is configurable so tests can run
//! against a directory tree that behaves like configfs-tsm.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ward_proto::Tee;
use ward_snp::evidence::{parse_cert_table, to_evidence_json};
use ward_snp::report::AttestationReport;
use ward_snp::Product;

use crate::attester::{Attester, AttesterError, Cause};

/// Where the kernel mounts report entries.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// Attempts before giving up when `generation` shows a concurrent writer.
const ATTEMPTS: u32 = 3;

static ENTRY: AtomicU64 = AtomicU64::new(0);

/// The hardware behind configfs-tsm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    SevGuest,
    TdxGuest,
}

impl Provider {
    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "sev_guest" => Ok(Self::SevGuest),
            "tdx_guest" => Ok(Self::TdxGuest),
            other => Err(format!(
                "unsupported configfs-tsm provider {other:?} (supported: sev_guest, tdx_guest)"
            )),
        }
    }
}

/// What one report request returned.
#[derive(Debug, Clone)]
pub struct TsmReport {
    pub provider: Provider,
    pub outblob: Vec<u8>,
    pub auxblob: Vec<u8>,
}

/// An attester over configfs-tsm.
#[derive(Debug, Clone)]
pub struct TsmAttester {
    root: PathBuf,
    provider: Provider,
    /// How long to wait for an attribute to reflect a write (the kernel
    /// does so synchronously; slower test doubles need a moment).
    settle: Duration,
}

/// The attester's name in errors.
const TEE: &str = "configfs-tsm";

fn err(cause: Cause, detail: impl Into<String>) -> AttesterError {
    AttesterError::new(TEE, cause, detail)
}

/// Removes the report entry when dropped.
struct Entry(PathBuf);

impl Drop for Entry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl TsmAttester {
    /// Probe `root`: create an entry, read its provider. `Ok(None)` when
    /// `root` does not exist (no configfs-tsm on this kernel).
    pub fn detect(root: &Path) -> Result<Option<Self>, AttesterError> {
        if !root.is_dir() {
            return Ok(None);
        }
        let mut a = Self {
            root: root.to_path_buf(),
            provider: Provider::SevGuest,
            settle: Duration::from_secs(5),
        };
        let entry = a.mkdir()?;
        let provider = a.read_text(&entry.0.join("provider"))?;
        a.provider = Provider::parse(&provider).map_err(|e| err(Cause::Unsupported, e))?;
        Ok(Some(a))
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    fn mkdir(&self) -> Result<Entry, AttesterError> {
        let name = format!(
            "ward-{}-{}",
            std::process::id(),
            ENTRY.fetch_add(1, Ordering::Relaxed)
        );
        let p = self.root.join(name);
        std::fs::create_dir(&p)
            .map_err(|e| AttesterError::io(TEE, format!("mkdir {}", p.display()), &e))?;
        Ok(Entry(p))
    }

    /// Read an attribute, waiting up to `settle` for it to appear.
    fn read_bytes(&self, p: &Path) -> Result<Vec<u8>, AttesterError> {
        let deadline = Instant::now() + self.settle;
        loop {
            match std::fs::read(p) {
                Ok(b) => return Ok(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => return Err(AttesterError::io(TEE, format!("read {}", p.display()), &e)),
            }
        }
    }

    fn read_text(&self, p: &Path) -> Result<String, AttesterError> {
        String::from_utf8(self.read_bytes(p)?)
            .map_err(|_| err(Cause::Malformed, format!("{} is not text", p.display())))
    }

    fn generation(&self, entry: &Path) -> Result<u64, AttesterError> {
        let g = self.read_text(&entry.join("generation"))?;
        g.trim().parse().map_err(|_| {
            err(
                Cause::Malformed,
                format!("generation {g:?} is not a number"),
            )
        })
    }

    /// Request a report binding `inblob` (64 bytes).
    pub fn report(&self, inblob: &[u8; 64]) -> Result<TsmReport, AttesterError> {
        for _ in 0..ATTEMPTS {
            let entry = self.mkdir()?;
            let dir = &entry.0;
            let provider = Provider::parse(&self.read_text(&dir.join("provider"))?)
                .map_err(|e| err(Cause::Unsupported, e))?;
            let before = self.generation(dir)?;
            std::fs::write(dir.join("inblob"), inblob)
                .map_err(|e| AttesterError::io(TEE, "write inblob", &e))?;
            // Our write is generation before+1; anything else is another writer.
            let deadline = Instant::now() + self.settle;
            let mut expected = self.generation(dir)?;
            while expected == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
                expected = self.generation(dir)?;
            }
            if expected != before + 1 {
                tracing::warn!("configfs-tsm entry written concurrently; retrying");
                continue;
            }
            let outblob = self.read_bytes(&dir.join("outblob"))?;
            let auxblob = match std::fs::read(dir.join("auxblob")) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(AttesterError::io(TEE, "read auxblob", &e)),
            };
            if self.generation(dir)? != expected {
                tracing::warn!("configfs-tsm generation changed while reading; retrying");
                continue;
            }
            if outblob.is_empty() {
                return Err(err(
                    Cause::Malformed,
                    "the kernel returned an empty outblob",
                ));
            }
            return Ok(TsmReport {
                provider,
                outblob,
                auxblob,
            });
        }
        Err(err(
            Cause::GenerationRace,
            format!("the report entry was modified concurrently in {ATTEMPTS} attempts"),
        ))
    }
}

/// CoCo evidence JSON for a configfs-tsm report.
pub fn evidence_of(r: &TsmReport) -> Result<Value, AttesterError> {
    match r.provider {
        Provider::SevGuest => {
            let report = AttestationReport::from_bytes(&r.outblob)
                .map_err(|e| err(Cause::Malformed, format!("SNP report from the kernel: {e}")))?;
            let certs = parse_cert_table(&r.auxblob)
                .map_err(|e| err(Cause::Malformed, format!("auxblob: {e}")))?;
            // The TCB layout: CPUID (v3+) names the product; older reports
            // predate Turin, whose layout differs.
            let product = report.product_from_cpuid().unwrap_or(Product::Milan);
            Ok(to_evidence_json(&report, product, &certs))
        }
        Provider::TdxGuest => Ok(json!({
            "quote": ward_proto::b64::std_encode(&r.outblob),
        })),
    }
}

impl Attester for TsmAttester {
    fn tee(&self) -> Tee {
        Tee::new(match self.provider {
            Provider::SevGuest => "snp",
            Provider::TdxGuest => "tdx",
        })
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        if report_data.len() > 64 {
            return Err(err(Cause::Request, "report data longer than 64 bytes"));
        }
        let mut inblob = [0u8; 64];
        inblob[..report_data.len()].copy_from_slice(report_data);
        evidence_of(&self.report(&inblob)?)
    }

    fn init_data_field(&self) -> Result<Option<Vec<u8>>, AttesterError> {
        let r = self.report(&[0u8; 64])?;
        match r.provider {
            Provider::SevGuest => {
                let report = AttestationReport::from_bytes(&r.outblob).map_err(|e| {
                    err(Cause::Malformed, format!("SNP report from the kernel: {e}"))
                })?;
                Ok(Some(report.host_data().to_vec()))
            }
            // TD quote v4/v5: header (48) + TD report body, where MRCONFIGID
            // follows TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, SEAMATTRIBUTES,
            // TDATTRIBUTES, XFAM and MRTD (body offset 184, 48 bytes).
            Provider::TdxGuest => {
                let version = r.outblob.get(..2).map(|v| u16::from_le_bytes([v[0], v[1]]));
                // v5 inserts body type (u16) and size (u32) after the header.
                let at = match version {
                    Some(4) => 48 + 184,
                    Some(5) => 48 + 6 + 184,
                    _ => return Err(err(Cause::Unsupported, "TD quote of an unknown version")),
                };
                r.outblob
                    .get(at..at + 48)
                    .map(|f| Some(f.to_vec()))
                    .ok_or_else(|| err(Cause::Malformed, "TD quote too short for MRCONFIGID"))
            }
        }
    }
}
