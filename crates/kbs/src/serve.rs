//! Building the service from a [`Config`] and serving it over TLS (rustls)
//! or, when asked explicitly, plain HTTP, with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
pub use ward_listen::Upkeep;
use ward_listen::{Options, Workers};
use ward_store::Store;
use ward_verifier::az_snp_vtpm::AzSnpVtpmVerifier;
use ward_verifier::az_tdx_vtpm::AzTdxVtpmVerifier;
use ward_verifier::dcap::{DcapCollateralSource, DcapVerifier};
use ward_verifier::sample::SampleVerifier;
use ward_verifier::snp::SnpVerifier;
use ward_verifier::{TokenSettings, VerifierRegistry};

use crate::admin_auth::AdminAuth;
use crate::bootstrap::{admin_bootstrap, open_store, Bootstrapped};
use crate::clock::{Clock, SystemClock};
use crate::collateral::{DcapCollateralDir, SnpCollateral, AMD_KDS, INTEL_PCS, INTEL_ROOT_CRL};
use crate::config::Config;
use crate::state::{AppState, Settings};

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

/// The verifiers with the trust anchors the configuration names (without
/// the store's collateral cache).
pub fn configured_verifiers(cfg: &Config) -> Result<VerifierRegistry, String> {
    configured_verifiers_with(cfg, None)
}

/// The verifiers with the trust anchors the configuration names, caching
/// fetched collateral in `store`.
pub fn configured_verifiers_with(
    cfg: &Config,
    store: Option<Arc<dyn Store>>,
) -> Result<VerifierRegistry, String> {
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
    Ok(registry(snp_verifier(cfg, store)?, Some(dcap), sim))
}

/// Every verifier of this build with the given trust anchors: the one
/// place TEEs are registered, used by `ward serve` and `ward verify` alike
/// so that the two cannot drift (the SNP verifier serves `snp` and
/// `az-snp-vtpm`, the DCAP source `tdx`, `sgx` and `az-tdx-vtpm`).
pub fn registry(
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

/// The SNP verifier of the `[snp]` configuration: chains from
/// `cert_chains` and the collateral directory, simulator roots, and the
/// VCEK sources (directory, `store`, KDS when enabled).
pub fn snp_verifier(cfg: &Config, store: Option<Arc<dyn Store>>) -> Result<SnpVerifier, String> {
    let collateral = SnpCollateral::new(
        cfg.snp.collateral_dir.clone(),
        store,
        cfg.snp.kds_fetch.then(|| {
            cfg.snp
                .kds_url
                .clone()
                .unwrap_or_else(|| AMD_KDS.to_string())
        }),
    );
    let mut bundles = collateral.chain_bundles();
    for p in &cfg.snp.cert_chains {
        bundles.push((
            p.display().to_string(),
            std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
        ));
    }
    let simulated = fingerprints("snp.simulated_roots", &cfg.snp.simulated_roots)?;
    if !simulated.is_empty() {
        tracing::warn!(
            count = simulated.len(),
            "trusting simulated SNP roots: evidence from them proves nothing about hardware"
        );
    }
    Ok(SnpVerifier::with_simulated_roots(&bundles, &simulated)?
        .with_vcek_source(Arc::new(collateral)))
}

/// SHA-256 fingerprints given in hex in the configuration key `what`.
fn fingerprints(what: &str, hexes: &[String]) -> Result<Vec<[u8; 32]>, String> {
    hexes
        .iter()
        .map(|fp| {
            hex::decode(fp.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("{what}: {fp:?} is not a SHA-256 fingerprint in hex"))
        })
        .collect()
}

/// Open the store, bootstrap credentials and build the state.
/// `verifiers` builds the registry once the store is open (see
/// [`configured_verifiers_with`]).
pub fn build_state(
    cfg: &Config,
    verifiers: impl FnOnce(Arc<dyn Store>) -> Result<VerifierRegistry, String>,
) -> Result<(AppState, Bootstrapped), String> {
    cfg.validate()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, created_kek) = open_store(cfg)?;
    let verifiers = verifiers(store.clone())?;
    let mut info = Bootstrapped {
        created_kek,
        ..Default::default()
    };
    let mut admin_keys = Vec::new();
    for p in &cfg.admin.keys {
        admin_keys.extend(AdminAuth::load_file(p)?);
    }
    let mut admin = AdminAuth::new(admin_keys).with_max_lifetime(cfg.admin.max_token_lifetime_secs);
    if cfg.admin.bootstrap {
        // Trusted from its file, so that a rotation takes effect at once;
        // with bootstrap off, not at all.
        let (_, created, token_path) = admin_bootstrap(cfg, clock.now())?;
        admin = admin.with_bootstrap_file(
            cfg.data_dir
                .join(crate::bootstrap::ADMIN_DIR)
                .join(crate::bootstrap::ADMIN_PUB),
        );
        info.created_admin_token = created;
        info.admin_token_path = Some(token_path);
    }
    let settings = Settings {
        session_ttl_secs: cfg.session_ttl_secs,
        token: TokenSettings {
            issuer: cfg.token.issuer.clone(),
            lifetime_secs: cfg.token.lifetime_secs,
            developer: cfg.token.verifier_developer.clone(),
        },
        dev: cfg.dev,
        secure_cookies: cfg.tls.is_some(),
        max_body_bytes: cfg.max_body_bytes,
        collateral_wait: std::time::Duration::from_secs_f64(cfg.limits.collateral_wait_secs),
    };
    let state =
        AppState::new(store, verifiers, settings, admin, clock).map_err(|e| format!("{e:?}"))?;
    Ok((state, info))
}

fn tls_config(cfg: &crate::config::TlsConfig) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| format!("{}: {e}", cfg.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cfg.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cfg.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| format!("{}: {e}", cfg.key.display()))?;
    let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate/key: {e}"))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(sc)
}

/// Serve `router` on `listener` with one worker thread per CPU and the
/// default [`Limits`] until `shutdown` completes, then let in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<&crate::config::TlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let opts = Options {
        tls: tls_acceptor(tls)?,
        ..Options::default()
    };
    ward_listen::serve(listener, router, opts, shutdown).await
}

/// The TLS acceptor of the `[tls]` configuration, if any.
pub fn tls_acceptor(
    tls: Option<&crate::config::TlsConfig>,
) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    tls.map(|t| Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(t)?))))
        .transpose()
}

/// Serve the trust service of `state` as `cfg` says (TLS, workers,
/// connection limits; connection metrics on its `/metrics`) until
/// `shutdown` completes. `upkeep`, when given, runs on every worker thread
/// periodically.
pub async fn serve_state(
    listener: TcpListener,
    state: AppState,
    cfg: &Config,
    upkeep: Option<Upkeep>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let opts = Options {
        limits: cfg.limits.to_limits(),
        tls: tls_acceptor(cfg.tls.as_ref())?,
        workers: Some(Workers::Threads(cfg.workers.unwrap_or(0))),
        upkeep,
        metrics: state.listener_metrics(),
    };
    ward_listen::serve(listener, crate::router(state), opts, shutdown).await
}

/// How often `ward serve` drops expired tokens from its cache and reloads
/// its key rings (so a key retired by another replica is refused here
/// within this time).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Reload the key rings ([`AppState::reload_keys`]), drop expired cached
/// tokens ([`AppState::sweep_expired`]) and forget answered challenges of
/// expired sessions ([`AppState::sweep_used_nonces`]) every `every` on the
/// current runtime, for as long as it runs; then run `upkeep` on this
/// thread when any token was dropped.
pub fn sweep_periodically(
    state: AppState,
    every: std::time::Duration,
    upkeep: Option<Arc<dyn Fn() + Send + Sync>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = state.reload_keys() {
                tracing::warn!(error = ?e, "reloading the key rings failed");
            }
            match state.sweep_used_nonces() {
                Ok(n) if n > 0 => {
                    tracing::debug!(dropped = n, "expired answered challenges forgotten")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "sweeping answered challenges failed"),
            }
            let dropped = state.sweep_expired();
            if dropped > 0 {
                tracing::debug!(dropped, "expired tokens dropped from the cache");
                if let Some(f) = &upkeep {
                    f();
                }
            }
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
