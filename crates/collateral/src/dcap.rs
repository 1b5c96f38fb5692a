//! Intel DCAP collateral (TCB info, QE identity, CRLs) for `tdx`, `sgx` and
//! `az-tdx-vtpm`: a directory for air-gapped sites, the store's cache, and —
//! only when enabled — Intel PCS or a PCCS, fetched off the workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ward_dcap::verify::Collateral;
use ward_store::Store;
use ward_verifier::CollateralError;

use crate::fetch::{fetcher, Started};
use crate::http::percent_decode;
use crate::{files, unix_now, FetchError};

/// Why collateral could not be imported into the store.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Malformed(String),
    #[error("the TCB info names no FMSPC")]
    NoFmspc,
    #[error(transparent)]
    Store(#[from] ward_store::StoreError),
}

/// Store `kind` of DCAP collateral (key `TDX/<FMSPC>` or `SGX/<FMSPC>`,
/// body: the flat JSON form).
pub const DCAP_KIND: &str = "dcap.collateral";

/// DCAP collateral from a directory and the store's cache. The directory
/// may hold flat collateral JSON files (`QuoteCollateralV3`: the layout of
/// the dcap-phala fixtures, any name ending in `.json`) and raw Intel PCS
/// responses, one directory each: `tcb_info.json` (the TCB info response
/// body), `tcb_info_issuer_chain.pem`, `qe_identity.json`,
/// `qe_identity_issuer_chain.pem`, `pck_crl.der`, `root_ca_crl.der`.
#[derive(Clone)]
pub struct DcapCollateralDir {
    dir: Option<PathBuf>,
    store: Option<Arc<dyn Store>>,
    /// Intel PCS or a PCCS (base URL) and the root CA CRL URL, when
    /// fetching is enabled.
    pcs: Option<(String, String)>,
    /// The directory's sets, read once and again on a miss.
    scanned: Arc<std::sync::Mutex<Option<Vec<Collateral>>>>,
    /// Sets fetched by this source, by `TEE/FMSPC/pck_ca`.
    fetched: Arc<quick_cache::sync::Cache<String, Collateral>>,
}

impl std::fmt::Debug for DcapCollateralDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcapCollateralDir")
            .field("dir", &self.dir)
            .field("store", &self.store.is_some())
            .field("pcs", &self.pcs)
            .finish()
    }
}

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the SGX Root CA CRL (DER).
pub const INTEL_ROOT_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// FMSPC and TCB info id (`TDX`/`SGX`) of collateral.
fn collateral_key(c: &Collateral) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&c.tcb_info).ok()?;
    let fmspc = v["fmspc"].as_str()?.to_ascii_uppercase();
    let id = v["id"].as_str().unwrap_or("SGX").to_ascii_uppercase();
    Some((fmspc, id))
}

fn pcs_dir(d: &Path) -> Option<Collateral> {
    let text = |n: &str| std::fs::read_to_string(d.join(n)).ok();
    let bin = |n: &str| std::fs::read(d.join(n)).ok();
    Collateral::from_pcs(
        &text("tcb_info.json")?,
        &text("tcb_info_issuer_chain.pem")?,
        &text("qe_identity.json")?,
        &text("qe_identity_issuer_chain.pem")?,
        &bin("pck_crl.der")?,
        &bin("root_ca_crl.der")?,
    )
    .ok()
}

impl DcapCollateralDir {
    pub fn new(dir: Option<PathBuf>, store: Option<Arc<dyn Store>>) -> Self {
        Self {
            dir,
            store,
            pcs: None,
            scanned: Default::default(),
            fetched: Arc::new(quick_cache::sync::Cache::new(crate::FETCHED_MAX)),
        }
    }

    /// Fetch missing collateral from Intel PCS or a PCCS at `base` (v4 API),
    /// and the root CA CRL from `root_crl_url`; fetched sets are cached in
    /// the store.
    pub fn with_pcs(mut self, base: &str, root_crl_url: &str) -> Self {
        self.pcs = Some((
            base.trim_end_matches('/').to_string(),
            root_crl_url.to_string(),
        ));
        self
    }

    /// Fetch a set from PCS (on the fetch thread), keeping it in memory
    /// under `key` and in the store.
    async fn fetch_pcs(
        base: String,
        root_crl_url: String,
        (fmspc, tee, pck_ca): (String, String, String),
        store: Option<Arc<dyn Store>>,
        fetched: Arc<quick_cache::sync::Cache<String, Collateral>>,
        key: String,
    ) -> Result<(), FetchError> {
        let api = if tee == "TDX" { "tdx" } else { "sgx" };
        async fn get(url: String, header: &str) -> Result<(Vec<u8>, String), FetchError> {
            let (body, h) = crate::http::get(&url, &[header])
                .await?
                .ok_or(FetchError::NotFound { url })?;
            let chain = h
                .into_iter()
                .next()
                .flatten()
                .map(|v| percent_decode(&v))
                .unwrap_or_default();
            Ok((body, chain))
        }
        let (tcb, tcb_chain) = get(
            format!("{base}/{api}/certification/v4/tcb?fmspc={fmspc}"),
            "TCB-Info-Issuer-Chain",
        )
        .await?;
        let (qe, qe_chain) = get(
            format!("{base}/{api}/certification/v4/qe/identity"),
            "SGX-Enclave-Identity-Issuer-Chain",
        )
        .await?;
        let (pck_crl, _) = get(
            format!("{base}/sgx/certification/v4/pckcrl?ca={pck_ca}&encoding=der"),
            "SGX-PCK-CRL-Issuer-Chain",
        )
        .await?;
        let (root_crl, _) = get(root_crl_url, "Content-Type").await?;
        let text = |b: Vec<u8>, what: &'static str| {
            String::from_utf8(b).map_err(|_| FetchError::NotUtf8 { what })
        };
        let c = Collateral::from_pcs(
            &text(tcb, "TCB info")?,
            &tcb_chain,
            &text(qe, "QE identity")?,
            &qe_chain,
            &pck_crl,
            &root_crl,
        )
        .map_err(|e| FetchError::Malformed {
            url: base.clone(),
            reason: e.to_string(),
        })?;
        if let Some(store) = &store {
            if let Err(e) = Self::import(store.as_ref(), &c, unix_now()) {
                tracing::warn!(error = %e, "could not cache fetched DCAP collateral");
            }
        }
        tracing::info!(%fmspc, %tee, "fetched DCAP collateral from PCS");
        fetched.insert(key, c);
        Ok(())
    }

    /// Sets of `fmspc`/`tee` in the directory (cached; rescanned on a miss).
    fn lookup_dir(&self, fmspc: &str, tee: &str) -> Vec<Collateral> {
        let pick = |sets: &[Collateral]| -> Vec<_> {
            sets.iter()
                .filter(|c| collateral_key(c).is_some_and(|(f, i)| f == fmspc && i == tee))
                .cloned()
                .collect()
        };
        let mut cache = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sets) = cache.as_ref() {
            let found = pick(sets);
            if !found.is_empty() {
                return found;
            }
        }
        let sets = self.scan();
        let found = pick(&sets);
        *cache = Some(sets);
        found
    }

    /// Every collateral set under the directory.
    fn scan(&self) -> Vec<Collateral> {
        let Some(dir) = &self.dir else { return vec![] };
        let mut out = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for f in files(dir) {
            if let Some(parent) = f.parent() {
                dirs.insert(parent.to_path_buf());
            }
            if f.extension().is_some_and(|e| e == "json") {
                if let Ok(c) = std::fs::read_to_string(&f)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Collateral::from_flat_json(&t).map_err(|e| e.to_string()))
                {
                    out.push(c);
                }
            }
        }
        out.extend(dirs.iter().filter_map(|d| pcs_dir(d)));
        out
    }

    /// Import collateral into the store (`ward admin`-side helper and tests).
    pub fn import(store: &dyn Store, c: &Collateral, now: i64) -> Result<String, ImportError> {
        let (fmspc, id) = collateral_key(c).ok_or(ImportError::NoFmspc)?;
        let flat = serde_json::json!({
            "tcb_info": c.tcb_info, "tcb_info_signature": hex::encode(&c.tcb_info_signature),
            "tcb_info_issuer_chain": c.tcb_info_issuer_chain,
            "qe_identity": c.qe_identity, "qe_identity_signature": hex::encode(&c.qe_identity_signature),
            "qe_identity_issuer_chain": c.qe_identity_issuer_chain,
            "pck_crl": hex::encode(&c.pck_crl), "root_ca_crl": hex::encode(&c.root_ca_crl),
        });
        let key = format!("{id}/{fmspc}");
        store.put_collateral(DCAP_KIND, &key, flat.to_string().as_bytes(), now)?;
        Ok(key)
    }

    /// Import collateral in its flat JSON form (`POST /kbs/v0/collateral`).
    pub fn import_flat_json(
        store: &dyn Store,
        text: &str,
        now: i64,
    ) -> Result<String, ImportError> {
        let c =
            Collateral::from_flat_json(text).map_err(|e| ImportError::Malformed(e.to_string()))?;
        Self::import(store, &c, now)
    }
}

impl ward_verifier::dcap::DcapCollateralSource for DcapCollateralDir {
    fn collateral(
        &self,
        fmspc: &str,
        tee: &str,
        pck_ca: &str,
        now: i64,
    ) -> Result<Collateral, CollateralError> {
        // The directory may hold several generations: the one valid at
        // `now` is chosen below.
        let mut found = self.lookup_dir(fmspc, tee);
        let fetch_key = format!("{tee}/{fmspc}/{pck_ca}");
        found.extend(self.fetched.get(&fetch_key));
        if let Some(store) = &self.store {
            if let Ok(Some(c)) = store.get_collateral(DCAP_KIND, &format!("{tee}/{fmspc}")) {
                if let Ok(c) = std::str::from_utf8(&c.body)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Collateral::from_flat_json(t).map_err(|e| e.to_string()))
                {
                    found.push(c);
                }
            }
        }
        if found.is_empty() {
            if let Some((base, root)) = &self.pcs {
                let key = format!("pcs {base} {fetch_key}");
                let job = Self::fetch_pcs(
                    base.clone(),
                    root.clone(),
                    (fmspc.to_string(), tee.to_string(), pck_ca.to_string()),
                    self.store.clone(),
                    self.fetched.clone(),
                    fetch_key,
                );
                return Err(match fetcher().start(&key, job) {
                    Started::Running => CollateralError::Pending {
                        key,
                        what: format!("{tee} collateral for FMSPC {fmspc} (from {base})"),
                    },
                    Started::Failed {
                        error,
                        retry_in_secs,
                    } => CollateralError::Unavailable(format!(
                        "no {tee} collateral for FMSPC {fmspc}: fetching it from {base} failed: {error} (tried again in {retry_in_secs} s)"
                    )),
                });
            }
        }
        ward_dcap::verify::select_collateral(found, now).ok_or_else(|| {
            let mut looked = Vec::new();
            if let Some(d) = &self.dir {
                looked.push(format!("the collateral directory {}", d.display()));
            }
            if self.store.is_some() {
                looked.push("the store".into());
            }
            if looked.is_empty() {
                looked.push("nowhere (no [dcap] collateral_dir configured)".into());
            }
            format!(
                "no {tee} collateral (TCB info, QE identity, CRLs) for FMSPC {fmspc}: looked in {}; \
                 fetch it from Intel PCS (https://api.trustedservices.intel.com/{}/certification/v4/tcb?fmspc={fmspc}) \
                 and place it in the collateral directory, or enable [dcap] pcs_fetch",
                looked.join(", "),
                if tee == "TDX" { "tdx" } else { "sgx" }
            )
            .into()
        })
    }
}
