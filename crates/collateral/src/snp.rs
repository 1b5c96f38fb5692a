//! SEV-SNP collateral for evidence that carries no VCEK: a directory of
//! KDS-shaped files for air-gapped sites, the store's collateral cache, and
//! — only when enabled — AMD KDS over HTTPS, in that order.
//!
//! The directory may hold VCEKs as KDS serves them (DER, any file name, any
//! depth; PEM works too) and `cert_chain` bundles (ASK/ASVK then ARK, PEM).
//! Everything found is verified as usual when used: a VCEK from here is
//! trusted exactly as much as one sent in the evidence.

use std::path::PathBuf;
use std::sync::Arc;

use ward_snp::certs::AmdCert;
use ward_snp::Product;
use ward_store::Store;
use ward_verifier::snp::{VcekRequest, VcekSource};
use ward_verifier::CollateralError;

use crate::fetch::{fetcher, Started};
use crate::{files, unix_now, FetchError};

/// Store `kind` under which fetched VCEKs are cached (key: the KDS path).
pub const VCEK_KIND: &str = "snp.vcek";
/// AMD's Key Distribution Service.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";

/// The collateral sources of the `snp` and `az-snp-vtpm` verifiers.
#[derive(Clone)]
pub struct SnpCollateral {
    dir: Option<PathBuf>,
    store: Option<Arc<dyn Store>>,
    /// Base URL of KDS when fetching is enabled.
    kds: Option<String>,
    /// VCEKs fetched by this source, by KDS path.
    fetched: Arc<quick_cache::sync::Cache<String, Vec<u8>>>,
}

impl std::fmt::Debug for SnpCollateral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpCollateral")
            .field("dir", &self.dir)
            .field("store", &self.store.is_some())
            .field("kds", &self.kds)
            .finish()
    }
}

fn certs_in(bytes: &[u8]) -> Vec<AmdCert> {
    if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        AmdCert::from_pem_bundle("collateral", bytes).unwrap_or_default()
    } else {
        AmdCert::from_der("collateral", bytes)
            .map(|c| vec![c])
            .unwrap_or_default()
    }
}

/// Does `cert` (a VCEK) belong to the chip and TCB of `req` for `product`?
fn matches(cert: &AmdCert, req: &VcekRequest, product: Product) -> bool {
    let Some(hw) = &cert.hw_id else { return false };
    let t = req.reported_tcb.parts(product);
    hw.as_slice() == req.hw_id(product)
        && cert.tcb.bootloader == Some(t.bootloader)
        && cert.tcb.tee == Some(t.tee)
        && cert.tcb.snp == Some(t.snp)
        && cert.tcb.microcode == Some(t.microcode)
        && (product != Product::Turin || cert.tcb.fmc == t.fmc)
}

impl SnpCollateral {
    pub fn new(dir: Option<PathBuf>, store: Option<Arc<dyn Store>>, kds: Option<String>) -> Self {
        Self {
            dir,
            store,
            kds: kds.map(|u| u.trim_end_matches('/').to_string()),
            fetched: Arc::new(quick_cache::sync::Cache::new(crate::FETCHED_MAX)),
        }
    }

    /// The `cert_chain` bundles (intermediate then self-signed ARK) found in
    /// the directory, for [`ward_verifier::snp::SnpVerifier::from_bundles`].
    pub fn chain_bundles(&self) -> Vec<(String, Vec<u8>)> {
        let Some(dir) = &self.dir else { return vec![] };
        files(dir)
            .into_iter()
            .filter_map(|p| {
                let bytes = std::fs::read(&p).ok()?;
                let certs = certs_in(&bytes);
                let is_chain = certs.len() == 2 && certs[1].subject == certs[1].issuer;
                is_chain.then(|| (p.display().to_string(), bytes))
            })
            .collect()
    }

    fn lookup_dir(&self, req: &VcekRequest) -> Option<Vec<u8>> {
        let dir = self.dir.as_ref()?;
        for p in files(dir) {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            for c in certs_in(&bytes) {
                if req.products.iter().any(|prod| matches(&c, req, *prod)) {
                    return Some(c.der);
                }
            }
        }
        None
    }

    fn lookup_fetched(&self, req: &VcekRequest) -> Option<Vec<u8>> {
        req.products
            .iter()
            .find_map(|p| self.fetched.get(&req.kds_path(*p)))
    }

    fn lookup_store(&self, req: &VcekRequest) -> Option<Vec<u8>> {
        let store = self.store.as_ref()?;
        req.products.iter().find_map(|p| {
            store
                .get_collateral(VCEK_KIND, &req.kds_path(*p))
                .ok()
                .flatten()
                .map(|c| c.body)
        })
    }

    /// Fetch the VCEK of `req` from KDS at `base` (on the fetch thread),
    /// keeping it in memory and in the store.
    async fn fetch_kds(
        base: String,
        req: VcekRequest,
        store: Option<Arc<dyn Store>>,
        fetched: Arc<quick_cache::sync::Cache<String, Vec<u8>>>,
    ) -> Result<(), FetchError> {
        for p in &req.products {
            let path = req.kds_path(*p);
            let url = format!("{base}{path}");
            let Some((body, _)) = crate::http::get(&url, &[]).await? else {
                continue;
            };
            let cert =
                AmdCert::from_der("VCEK from KDS", &body).map_err(|e| FetchError::Malformed {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            if !matches(&cert, &req, *p) {
                return Err(FetchError::Malformed {
                    url,
                    reason: format!("the certificate is not for {}", req.describe()),
                });
            }
            if let Some(store) = &store {
                if let Err(e) = store.put_collateral(VCEK_KIND, &path, &body, unix_now()) {
                    tracing::warn!(error = %e, "could not cache a fetched VCEK");
                }
            }
            tracing::info!(%path, "fetched a VCEK from KDS");
            fetched.insert(path, body);
            return Ok(());
        }
        Err(FetchError::NotFound { url: base })
    }
}

impl VcekSource for SnpCollateral {
    fn vcek(&self, req: &VcekRequest) -> Result<Vec<u8>, CollateralError> {
        if let Some(v) = self
            .lookup_dir(req)
            .or_else(|| self.lookup_fetched(req))
            .or_else(|| self.lookup_store(req))
        {
            return Ok(v);
        }
        let mut looked = vec!["the evidence".to_string()];
        if let Some(d) = &self.dir {
            looked.push(format!("the collateral directory {}", d.display()));
        }
        if self.store.is_some() {
            looked.push("the store's cache".into());
        }
        let path = req.kds_path(req.products.first().copied().unwrap_or(Product::Milan));
        match &self.kds {
            Some(base) => {
                let key = format!("kds {base}{path}");
                let job = Self::fetch_kds(
                    base.clone(),
                    req.clone(),
                    self.store.clone(),
                    self.fetched.clone(),
                );
                match fetcher().start(&key, job) {
                    Started::Running => Err(CollateralError::Pending {
                        key,
                        what: format!("the VCEK for {} (from {base})", req.describe()),
                    }),
                    Started::Failed {
                        error,
                        retry_in_secs,
                    } => Err(CollateralError::Unavailable(format!(
                        "no VCEK for {}: looked in {}; fetching it failed: {error} (tried again in {retry_in_secs} s)",
                        req.describe(),
                        looked.join(", ")
                    ))),
                }
            }
            None => Err(CollateralError::Unavailable(format!(
                "no VCEK for {}: looked in {}; AMD KDS fetching is disabled (offline). \
                 Fetch {AMD_KDS}{path} and place it in the collateral directory, or enable [snp] kds_fetch",
                req.describe(),
                looked.join(", ")
            ))),
        }
    }
}
