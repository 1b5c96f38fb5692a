//! Building the service from a [`Config`] and serving it over TLS (rustls)
//! or, when asked explicitly, plain HTTP, with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
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

/// The verifiers compiled into this build, without trust anchors
/// (hardware TEEs then refuse evidence with a configuration error).
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
    let mut r = default_verifiers();
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
    r.register(Arc::new(
        DcapVerifier::tdx(Some(dcap.clone())).with_simulated_roots(sim.clone()),
    ));
    r.register(Arc::new(
        DcapVerifier::sgx(Some(dcap.clone())).with_simulated_roots(sim.clone()),
    ));
    r.register(Arc::new(
        AzTdxVtpmVerifier::new(Some(dcap)).with_simulated_roots(sim),
    ));
    let snp = snp_verifier(cfg, store)?;
    r.register(Arc::new(AzSnpVtpmVerifier::new(snp.clone())));
    r.register(Arc::new(snp));
    Ok(r)
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
    if cfg.admin.bootstrap {
        let (vk, created, token_path) = admin_bootstrap(cfg, clock.now())?;
        admin_keys.push(vk);
        info.created_admin_token = created;
        info.admin_token_path = Some(token_path);
    }
    let settings = Settings {
        session_ttl_secs: cfg.session_ttl_secs,
        token: TokenSettings {
            issuer: cfg.token.issuer.clone(),
            lifetime_secs: cfg.token.lifetime_secs,
        },
        dev: cfg.dev,
        secure_cookies: cfg.tls.is_some(),
        max_body_bytes: cfg.max_body_bytes,
    };
    let state = AppState::new(
        store,
        verifiers,
        settings,
        AdminAuth::new(admin_keys),
        clock,
    )
    .map_err(|e| format!("{e:?}"))?;
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

/// Serve `router` on `listener` with one worker thread per CPU until
/// `shutdown` completes, then let in-flight requests finish. See
/// [`serve_with_workers`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<&crate::config::TlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    serve_with_workers(listener, router, tls, None, None, shutdown).await
}

/// Work each worker thread does for itself periodically, such as returning
/// memory its allocator holds but no longer uses (thread-local allocator
/// state can only be tidied by its own thread).
#[derive(Clone)]
pub struct Upkeep {
    /// The period; the first run is half a period after the start, so that
    /// with the token sweep's period it runs between sweeps.
    pub every: std::time::Duration,
    pub run: Arc<dyn Fn() + Send + Sync>,
}

/// How often `ward serve` drops expired tokens from its cache and reloads
/// its key rings (so a key retired by another replica is refused here
/// within this time).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Reload the key rings ([`AppState::reload_keys`]) and drop expired cached
/// tokens ([`AppState::sweep_expired`]) every `every` on the current
/// runtime, for as long as it runs; then run `upkeep` on this thread when
/// anything was dropped.
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

/// An accepted connection on its way to a worker.
type Handoff = (
    std::net::TcpStream,
    std::net::SocketAddr,
    hyper_util::server::graceful::Watcher,
);

/// Serve `router` on `listener` until `shutdown` completes, then let
/// in-flight requests finish.
///
/// The caller's task accepts connections and hands them round-robin to
/// `workers` threads (default: one per CPU), each running its own single-threaded runtime; a
/// connection stays on its worker for its whole life. Requests are short
/// and CPU-bound (verification, signing, encryption), so this spares the
/// cross-thread wake-ups and task stealing of a shared work-stealing pool:
/// measured with `ward bench`, it is the cheaper way to use the cores.
/// `upkeep`, when given, runs on every worker thread periodically.
pub async fn serve_with_workers(
    listener: TcpListener,
    router: Router,
    tls: Option<&crate::config::TlsConfig>,
    workers: Option<usize>,
    upkeep: Option<Upkeep>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let acceptor = match tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(t)?))),
        None => None,
    };
    let mut queues = Vec::new();
    let mut threads = Vec::new();
    for i in 0..workers.max(1) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Handoff>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting worker runtime: {e}"))?;
        let (router, acceptor, upkeep) = (router.clone(), acceptor.clone(), upkeep.clone());
        let thread = std::thread::Builder::new()
            .name(format!("ward-worker-{i}"))
            .spawn(move || rt.block_on(worker(rx, router, acceptor, upkeep)))
            .map_err(|e| format!("starting worker thread: {e}"))?;
        queues.push(tx);
        threads.push(thread);
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tcp = match tcp.into_std() {
                    Ok(t) => t,
                    Err(e) => { tracing::warn!(%peer, error = %e, "connection dropped"); continue; }
                };
                let queue = &queues[next % queues.len()];
                next = next.wrapping_add(1);
                if queue.send((tcp, peer, graceful.watcher())).is_err() {
                    return Err("a worker thread stopped".into());
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(queues);
    graceful.shutdown().await;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await
    .map_err(|e| format!("joining workers: {e}"))
}

/// One worker: serve each handed-over connection on this thread until the
/// queue closes, then wait for the open ones to finish.
async fn worker(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Handoff>,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    upkeep: Option<Upkeep>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let every = upkeep.as_ref().map_or(SWEEP_EVERY, |u| {
        u.every.max(std::time::Duration::from_millis(1))
    });
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every / 2, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick(), if upkeep.is_some() => {
                if let Some(u) = &upkeep {
                    (u.run)();
                }
            }
            handoff = queue.recv() => match handoff {
                Some((tcp, peer, watcher)) => {
                    conns.spawn(connection(tcp, peer, router.clone(), acceptor.clone(), watcher));
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}

/// Serve HTTP/1.1 or HTTP/2 (over TLS when configured) on one connection.
async fn connection(
    tcp: std::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let tcp = match tokio::net::TcpStream::from_std(tcp) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "connection dropped");
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let svc = TowerToHyperService::new(router);
    let mut builder = Builder::new(TokioExecutor::new());
    // A timer enables hyper's limit on slow request headers.
    builder.http1().timer(TokioTimer::new());
    let result = match acceptor {
        Some(acceptor) => {
            let tls = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            watcher.watch(conn.into_owned()).await
        }
        None => {
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            watcher.watch(conn.into_owned()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn upkeep_runs_periodically_on_every_worker_thread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let runs = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
        let seen = runs.clone();
        let upkeep = Upkeep {
            every: Duration::from_millis(20),
            run: Arc::new(move || {
                let thread = std::thread::current().name().unwrap_or("?").to_string();
                *seen.lock().unwrap().entry(thread).or_default() += 1;
            }),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with_workers(
            listener,
            Router::new(),
            None,
            Some(2),
            Some(upkeep),
            async {
                let _ = stopped.await;
            },
        ));
        let twice_each = || {
            let r = runs.lock().unwrap();
            r.len() == 2 && r.values().all(|n| *n >= 2)
        };
        for _ in 0..500 {
            if twice_each() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let names: Vec<String> = runs.lock().unwrap().keys().cloned().collect();
        assert_eq!(names, ["ward-worker-0", "ward-worker-1"]);
        assert!(twice_each(), "{:?}", runs.lock().unwrap());
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
