//! SEV-SNP collateral for evidence that carries no VCEK: a directory of
//! KDS-shaped files for air-gapped sites, the store's collateral cache, and
//! — only when enabled — AMD KDS over HTTPS, in that order.
//!
//! The directory may hold VCEKs as KDS serves them (DER, any file name, any
//! depth; PEM works too) and `cert_chain` bundles (ASK/ASVK then ARK, PEM).
//! Everything found is verified as usual when used: a VCEK from here is
//! trusted exactly as much as one sent in the evidence.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ward_snp::certs::AmdCert;
use ward_snp::Product;
use ward_store::Store;
use ward_verifier::snp::{VcekRequest, VcekSource};
use ward_verifier::CollateralError;

use crate::fetch::Started;

/// Store `kind` under which fetched VCEKs are cached (key: the KDS path).
pub const VCEK_KIND: &str = "snp.vcek";
/// AMD's Key Distribution Service.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";

const MAX_FILE: u64 = 256 * 1024;
const MAX_DEPTH: usize = 6;
const KDS_ATTEMPTS: u32 = 4;

/// The collateral sources of the `snp` and `az-snp-vtpm` verifiers.
#[derive(Clone, Default)]
pub struct SnpCollateral {
    dir: Option<PathBuf>,
    store: Option<Arc<dyn Store>>,
    /// Base URL of KDS when fetching is enabled.
    kds: Option<String>,
    /// VCEKs fetched by this source, by KDS path.
    fetched: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
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

/// GET `url`, retrying rate limits and server errors with backoff
/// (honouring `Retry-After`, capped); `Ok(None)` on 404. Returns the body
/// and the values of the `headers` asked for.
/// A response body and the header values asked for.
type Fetched = (Vec<u8>, Vec<Option<String>>);

/// The HTTP client of collateral fetches (one per process: its pool).
fn http_client() -> Result<reqwest::Client, String> {
    static C: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))
    })
    .clone()
}

/// Runs on the fetch thread (see [`crate::fetch`]), never on a worker.
async fn http_get(url: &str, headers: &[&str]) -> Result<Option<Fetched>, String> {
    let client = http_client()?;
    let mut last = String::new();
    for attempt in 0..KDS_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        match client.get(url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
            Ok(r) if r.status().is_success() => {
                let hv: Vec<Option<String>> = headers
                    .iter()
                    .map(|h| {
                        r.headers()
                            .get(*h)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    })
                    .collect();
                return r
                    .bytes()
                    .await
                    .map(|b| Some((b.to_vec(), hv)))
                    .map_err(|e| format!("{url}: {e}"));
            }
            Ok(r) => {
                let st = r.status();
                last = format!("{url}: HTTP {st}");
                if st == reqwest::StatusCode::TOO_MANY_REQUESTS || st.is_server_error() {
                    let wait = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        .min(10);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    continue;
                }
                return Err(last);
            }
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(last)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Fetched items kept in memory (for sources without a store), at most.
const FETCHED_MAX: usize = 1024;

fn remember<V>(map: &std::sync::Mutex<std::collections::HashMap<String, V>>, key: String, v: V) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= FETCHED_MAX {
        m.clear();
    }
    m.insert(key, v);
}

/// Decode `%XX` escapes (PCS issuer-chain headers are URL-encoded PEM).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
            fetched: Default::default(),
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
        let m = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        req.products
            .iter()
            .find_map(|p| m.get(&req.kds_path(*p)).cloned())
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
        fetched: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    ) -> Result<(), String> {
        for p in &req.products {
            let path = req.kds_path(*p);
            let Some((body, _)) = http_get(&format!("{base}{path}"), &[]).await? else {
                continue;
            };
            let cert = AmdCert::from_der("VCEK from KDS", &body)
                .map_err(|e| format!("{base}{path}: {e}"))?;
            if !matches(&cert, &req, *p) {
                return Err(format!(
                    "{base}{path}: the certificate is not for {}",
                    req.describe()
                ));
            }
            if let Some(store) = &store {
                if let Err(e) = store.put_collateral(VCEK_KIND, &path, &body, unix_now()) {
                    tracing::warn!(error = %e, "could not cache a fetched VCEK");
                }
            }
            tracing::info!(%path, "fetched a VCEK from KDS");
            remember(&fetched, path, body);
            return Ok(());
        }
        Err(format!("{base} does not know it (not found)"))
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
                match crate::fetch::fetcher().start(&key, job) {
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

/// Store `kind` of DCAP collateral (key `TDX/<FMSPC>` or `SGX/<FMSPC>`,
/// body: the flat JSON form).
pub const DCAP_KIND: &str = "dcap.collateral";

/// DCAP collateral from a directory and the store's cache. The directory
/// may hold flat collateral JSON files (`QuoteCollateralV3`: the layout of
/// the dcap-phala fixtures, any name ending in `.json`) and raw Intel PCS
/// responses, one directory each: `tcb_info.json` (the TCB info response
/// body), `tcb_info_issuer_chain.pem`, `qe_identity.json`,
/// `qe_identity_issuer_chain.pem`, `pck_crl.der`, `root_ca_crl.der`.
#[derive(Clone, Default)]
pub struct DcapCollateralDir {
    dir: Option<PathBuf>,
    store: Option<Arc<dyn Store>>,
    /// Intel PCS or a PCCS (base URL) and the root CA CRL URL, when
    /// fetching is enabled.
    pcs: Option<(String, String)>,
    /// The directory's sets, read once and again on a miss.
    scanned: Arc<std::sync::Mutex<Option<Vec<ward_dcap::verify::Collateral>>>>,
    /// Sets fetched by this source, by `TEE/FMSPC/pck_ca`.
    fetched:
        Arc<std::sync::Mutex<std::collections::HashMap<String, ward_dcap::verify::Collateral>>>,
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
fn collateral_key(c: &ward_dcap::verify::Collateral) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&c.tcb_info).ok()?;
    let fmspc = v["fmspc"].as_str()?.to_ascii_uppercase();
    let id = v["id"].as_str().unwrap_or("SGX").to_ascii_uppercase();
    Some((fmspc, id))
}

fn pcs_dir(d: &Path) -> Option<ward_dcap::verify::Collateral> {
    let text = |n: &str| std::fs::read_to_string(d.join(n)).ok();
    let bin = |n: &str| std::fs::read(d.join(n)).ok();
    ward_dcap::verify::Collateral::from_pcs(
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
            fetched: Default::default(),
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
        fetched: Arc<
            std::sync::Mutex<std::collections::HashMap<String, ward_dcap::verify::Collateral>>,
        >,
        key: String,
    ) -> Result<(), String> {
        let api = if tee == "TDX" { "tdx" } else { "sgx" };
        async fn get(url: String, header: &str) -> Result<(Vec<u8>, String), String> {
            let (body, h) = http_get(&url, &[header])
                .await?
                .ok_or_else(|| format!("{url}: not found"))?;
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
        let text = |b: Vec<u8>, what: &str| {
            String::from_utf8(b).map_err(|_| format!("{what} from PCS is not UTF-8"))
        };
        let c = ward_dcap::verify::Collateral::from_pcs(
            &text(tcb, "TCB info")?,
            &tcb_chain,
            &text(qe, "QE identity")?,
            &qe_chain,
            &pck_crl,
            &root_crl,
        )
        .map_err(|e| e.to_string())?;
        if let Some(store) = &store {
            if let Err(e) = Self::import(store.as_ref(), &c, unix_now()) {
                tracing::warn!(error = %e, "could not cache fetched DCAP collateral");
            }
        }
        tracing::info!(%fmspc, %tee, "fetched DCAP collateral from PCS");
        remember(&fetched, key, c);
        Ok(())
    }

    /// Sets of `fmspc`/`tee` in the directory (cached; rescanned on a miss).
    fn lookup_dir(&self, fmspc: &str, tee: &str) -> Vec<ward_dcap::verify::Collateral> {
        let pick = |sets: &[ward_dcap::verify::Collateral]| -> Vec<_> {
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
    fn scan(&self) -> Vec<ward_dcap::verify::Collateral> {
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
                    .and_then(|t| {
                        ward_dcap::verify::Collateral::from_flat_json(&t).map_err(|e| e.to_string())
                    })
                {
                    out.push(c);
                }
            }
        }
        out.extend(dirs.iter().filter_map(|d| pcs_dir(d)));
        out
    }

    /// Import collateral into the store (`ward admin`-side helper and tests).
    pub fn import(
        store: &dyn Store,
        c: &ward_dcap::verify::Collateral,
        now: i64,
    ) -> Result<String, String> {
        let (fmspc, id) = collateral_key(c).ok_or("the TCB info names no FMSPC")?;
        let flat = serde_json::json!({
            "tcb_info": c.tcb_info, "tcb_info_signature": hex::encode(&c.tcb_info_signature),
            "tcb_info_issuer_chain": c.tcb_info_issuer_chain,
            "qe_identity": c.qe_identity, "qe_identity_signature": hex::encode(&c.qe_identity_signature),
            "qe_identity_issuer_chain": c.qe_identity_issuer_chain,
            "pck_crl": hex::encode(&c.pck_crl), "root_ca_crl": hex::encode(&c.root_ca_crl),
        });
        let key = format!("{id}/{fmspc}");
        store
            .put_collateral(DCAP_KIND, &key, flat.to_string().as_bytes(), now)
            .map_err(|e| e.to_string())?;
        Ok(key)
    }
}

impl ward_verifier::dcap::DcapCollateralSource for DcapCollateralDir {
    fn collateral(
        &self,
        fmspc: &str,
        tee: &str,
        pck_ca: &str,
        now: i64,
    ) -> Result<ward_dcap::verify::Collateral, CollateralError> {
        // The directory may hold several generations: the one valid at
        // `now` is chosen below.
        let mut found = self.lookup_dir(fmspc, tee);
        let fetch_key = format!("{tee}/{fmspc}/{pck_ca}");
        if let Some(c) = self
            .fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fetch_key)
        {
            found.push(c.clone());
        }
        if let Some(store) = &self.store {
            if let Ok(Some(c)) = store.get_collateral(DCAP_KIND, &format!("{tee}/{fmspc}")) {
                if let Ok(c) = std::str::from_utf8(&c.body)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        ward_dcap::verify::Collateral::from_flat_json(t).map_err(|e| e.to_string())
                    })
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
                return Err(match crate::fetch::fetcher().start(&key, job) {
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
