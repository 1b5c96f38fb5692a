//! Trust anchors and collateral of the verifiers, and the one function that
//! registers every TEE verifier of this build ([`registry`]), used by
//! `ward serve` and `ward verify` alike so the two cannot drift.
//!
//! * [`snp`]: VCEKs from a directory, the store's cache, AMD KDS;
//! * [`dcap`]: Intel collateral from a directory, the store, Intel PCS;
//! * [`fetch`]: fetches run on one background thread, never on a worker,
//!   shared by key and cached negatively;
//! * [`Config`]: the `[snp]` and `[dcap]` configuration sections.

pub mod dcap;
pub mod fetch;
mod http;
pub mod snp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use ward_store::Store;
use ward_verifier::az_snp_vtpm::AzSnpVtpmVerifier;
use ward_verifier::az_tdx_vtpm::AzTdxVtpmVerifier;
use ward_verifier::dcap::{DcapCollateralSource, DcapVerifier};
use ward_verifier::sample::SampleVerifier;
use ward_verifier::snp::SnpVerifier;
use ward_verifier::VerifierRegistry;

pub use dcap::{DcapCollateralDir, DCAP_KIND, INTEL_PCS, INTEL_ROOT_CRL};
pub use snp::{SnpCollateral, AMD_KDS, VCEK_KIND};

const MAX_FILE: u64 = 256 * 1024;
const MAX_DEPTH: usize = 6;

/// What the verifiers trust: the `[snp]` and `[dcap]` sections.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub snp: SnpConfig,
    pub dcap: DcapConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DcapConfig {
    /// Intel collateral for air-gapped sites: flat collateral JSON files
    /// and/or raw PCS response directories (see [`crate::dcap::DcapCollateralDir`]).
    pub collateral_dir: Option<PathBuf>,
    /// SHA-256 fingerprints (hex) of simulator root CAs to trust as well
    /// (`ward sim tdx`). Claims say `"simulated": true`. Never in production.
    pub simulated_roots: Vec<String>,
    /// Fetch missing collateral from Intel PCS (or `pcs_url`, e.g. a PCCS),
    /// caching it in the store. Off by default: a miss is an error naming
    /// the FMSPC.
    pub pcs_fetch: bool,
    /// PCS/PCCS base URL (default https://api.trustedservices.intel.com).
    pub pcs_url: Option<String>,
    /// Root CA CRL URL (default Intel's IntelSGXRootCA.der).
    pub root_crl_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnpConfig {
    /// AMD KDS `cert_chain` PEM bundles (ASK or ASVK, then ARK; optionally
    /// led by a VCEK/VLEK) accepted beside the built-in VCEK chains of
    /// Milan, Genoa and Turin: VLEK evidence needs its product's ASVK chain
    /// here. Their ARKs must match the fingerprints pinned in ward.
    pub cert_chains: Vec<PathBuf>,
    /// SHA-256 fingerprints (hex) of simulator ARKs to trust as well, for
    /// tests and demos (`ward sim snp`). Claims of their reports say
    /// `"simulated": true`. Never set in production.
    pub simulated_roots: Vec<String>,
    /// A directory of KDS-shaped files for air-gapped sites: VCEKs (DER or
    /// PEM, any name and depth) and `cert_chain` bundles. Consulted when
    /// the evidence carries no VCEK.
    pub collateral_dir: Option<PathBuf>,
    /// Fetch missing VCEKs from AMD KDS (cached in the store). Off by
    /// default: a miss is then an error naming the chip and TCB.
    pub kds_fetch: bool,
    /// KDS base URL (default https://kdsintf.amd.com).
    pub kds_url: Option<String>,
}

/// Why the trust anchors of a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{key}: {value:?} is not a SHA-256 fingerprint in hex")]
    Fingerprint { key: &'static str, value: String },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A certificate chain was refused (its message names the file).
    #[error("{0}")]
    Chain(String),
}

/// Why fetching collateral failed (kept by the fetcher as text).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: String },
    #[error("{url} does not know it (not found)")]
    NotFound { url: String },
    #[error("{url}: {reason}")]
    Malformed { url: String, reason: String },
    #[error("{what} from PCS is not UTF-8")]
    NotUtf8 { what: &'static str },
}

/// The verifiers compiled into this build, with only the built-in trust
/// anchors (AMD's VCEK chains); DCAP TEEs refuse evidence with a
/// configuration error until collateral is configured.
pub fn default_verifiers() -> VerifierRegistry {
    let mut r = VerifierRegistry::new();
    r.register(Arc::new(SampleVerifier));
    r.register(Arc::new(SnpVerifier::default()));
    r.register(Arc::new(AzSnpVtpmVerifier::default()));
    r.register(Arc::new(DcapVerifier::tdx(None)));
    r.register(Arc::new(DcapVerifier::sgx(None)));
    r.register(Arc::new(AzTdxVtpmVerifier::new(None)));
    r
}

/// The verifiers with the trust anchors `cfg` names, caching fetched
/// collateral in `store` when given.
pub fn registry(cfg: &Config, store: Option<Arc<dyn Store>>) -> Result<VerifierRegistry, Error> {
    let mut dir = DcapCollateralDir::new(cfg.dcap.collateral_dir.clone(), store.clone());
    if cfg.dcap.pcs_fetch {
        dir = dir.with_pcs(
            cfg.dcap.pcs_url.as_deref().unwrap_or(INTEL_PCS),
            cfg.dcap.root_crl_url.as_deref().unwrap_or(INTEL_ROOT_CRL),
        );
    }
    let dcap: Arc<dyn DcapCollateralSource> = Arc::new(dir);
    let sim = fingerprints("dcap.simulated_roots", &cfg.dcap.simulated_roots)?;
    if !sim.is_empty() {
        tracing::warn!(
            count = sim.len(),
            "trusting simulated Intel roots: evidence from them proves nothing about hardware"
        );
    }
    Ok(registry_with(
        snp_verifier(&cfg.snp, store)?,
        Some(dcap),
        sim,
    ))
}

/// Every verifier of this build with the given trust anchors: the one
/// place TEEs are registered (the SNP verifier serves `snp` and
/// `az-snp-vtpm`, the DCAP source `tdx`, `sgx` and `az-tdx-vtpm`).
/// [`registry`] builds its arguments from a configuration; `ward verify`
/// from its command line.
pub fn registry_with(
    snp: SnpVerifier,
    dcap: Option<Arc<dyn DcapCollateralSource>>,
    simulated_dcap_roots: Vec<[u8; 32]>,
) -> VerifierRegistry {
    let mut r = default_verifiers();
    r.register(Arc::new(
        DcapVerifier::tdx(dcap.clone()).with_simulated_roots(simulated_dcap_roots.clone()),
    ));
    r.register(Arc::new(
        DcapVerifier::sgx(dcap.clone()).with_simulated_roots(simulated_dcap_roots.clone()),
    ));
    r.register(Arc::new(
        AzTdxVtpmVerifier::new(dcap).with_simulated_roots(simulated_dcap_roots),
    ));
    r.register(Arc::new(AzSnpVtpmVerifier::new(snp.clone())));
    r.register(Arc::new(snp));
    r
}

/// The SNP verifier of an `[snp]` section: the built-in chains, chains
/// from `cert_chains` and the collateral directory, simulator roots, and
/// the VCEK sources (directory, `store`, KDS when enabled).
pub fn snp_verifier(cfg: &SnpConfig, store: Option<Arc<dyn Store>>) -> Result<SnpVerifier, Error> {
    let collateral = SnpCollateral::new(
        cfg.collateral_dir.clone(),
        store,
        cfg.kds_fetch
            .then(|| cfg.kds_url.clone().unwrap_or_else(|| AMD_KDS.to_string())),
    );
    let mut bundles = collateral.chain_bundles();
    for p in &cfg.cert_chains {
        let bytes = std::fs::read(p).map_err(|source| Error::Read {
            path: p.clone(),
            source,
        })?;
        bundles.push((p.display().to_string(), bytes));
    }
    let simulated = fingerprints("snp.simulated_roots", &cfg.simulated_roots)?;
    if !simulated.is_empty() {
        tracing::warn!(
            count = simulated.len(),
            "trusting simulated SNP roots: evidence from them proves nothing about hardware"
        );
    }
    Ok(SnpVerifier::with_simulated_roots(&bundles, &simulated)
        .map_err(Error::Chain)?
        .with_vcek_source(Arc::new(collateral)))
}

/// SHA-256 fingerprints given in hex in the configuration key `key`.
fn fingerprints(key: &'static str, hexes: &[String]) -> Result<Vec<[u8; 32]>, Error> {
    hexes
        .iter()
        .map(|fp| {
            hex::decode(fp.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| Error::Fingerprint {
                    key,
                    value: fp.clone(),
                })
        })
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Fetched items kept in memory (for sources without a store), at most.
const FETCHED_MAX: usize = 1024;

/// Every regular file under `dir` (bounded depth and size), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() && depth < MAX_DEPTH {
                stack.push((e.path(), depth + 1));
            } else if meta.is_file() && meta.len() <= MAX_FILE {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
