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
use ward_verifier::{TokenSettings, VerifierRegistry};

use crate::admin_auth::AdminAuth;
use crate::bootstrap::{admin_bootstrap, open_store, BootstrapError, Bootstrapped};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::keys::KeyError;
use crate::state::{AppState, Settings};

/// Why the service could not be built or served.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The trust anchors of the configuration are unusable.
    #[error("{0}")]
    Verifiers(String),
    #[error(transparent)]
    AdminKeys(#[from] crate::admin_auth::KeyFileError),
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    #[error("{}: {reason}", path.display())]
    Tls {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("TLS certificate/key: {0}")]
    TlsConfig(String),
    #[error("{0}")]
    Serve(String),
}

/// Open the store, bootstrap credentials and build the state.
/// `verifiers` builds the registry once the store is open (see
/// [`ward_collateral::registry`]).
pub fn build_state(
    cfg: &Config,
    verifiers: impl FnOnce(Arc<dyn Store>) -> Result<VerifierRegistry, ward_collateral::Error>,
) -> Result<(AppState, Bootstrapped), StartError> {
    cfg.validate()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, created_kek) = open_store(cfg)?;
    let store: Arc<dyn Store> = if cfg.audit.enabled {
        store
    } else {
        tracing::warn!("the audit log is off ([audit] enabled = false): attestations, releases and admin changes are not recorded");
        Arc::new(ward_store::WithoutAudit(store))
    };
    let verifiers = verifiers(store.clone()).map_err(|e| StartError::Verifiers(e.to_string()))?;
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
        audit_origin: cfg.audit.origin.clone(),
    };
    let state = AppState::new(store, verifiers, settings, admin, clock)?;
    Ok((state, info))
}

fn tls_config(cfg: &crate::config::TlsConfig) -> Result<rustls::ServerConfig, StartError> {
    let at = |path: &std::path::Path, e: &dyn std::fmt::Display| StartError::Tls {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| at(&cfg.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| at(&cfg.cert, &e))?;
    if certs.is_empty() {
        return Err(at(&cfg.cert, &"no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| at(&cfg.key, &e))?;
    let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError::TlsConfig(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| StartError::TlsConfig(e.to_string()))?;
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
) -> Result<(), StartError> {
    let opts = Options {
        tls: tls_acceptor(tls)?,
        ..Options::default()
    };
    ward_listen::serve(listener, router, opts, shutdown)
        .await
        .map_err(StartError::Serve)
}

/// The TLS acceptor of the `[tls]` configuration, if any.
pub fn tls_acceptor(
    tls: Option<&crate::config::TlsConfig>,
) -> Result<Option<tokio_rustls::TlsAcceptor>, StartError> {
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
) -> Result<(), StartError> {
    let opts = Options {
        limits: cfg.limits.to_limits(),
        tls: tls_acceptor(cfg.tls.as_ref())?,
        workers: Some(Workers::Threads(cfg.workers.unwrap_or(0))),
        upkeep,
        metrics: state.listener_metrics(),
    };
    ward_listen::serve(listener, crate::router(state), opts, shutdown)
        .await
        .map_err(StartError::Serve)
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
            let s = state.clone();
            // On a blocking thread: a remote store's calls wait for the network.
            let Ok((reloaded, swept)) =
                tokio::task::spawn_blocking(move || (s.reload_keys(), s.sweep_used_nonces())).await
            else {
                continue;
            };
            if let Err(e) = reloaded {
                tracing::warn!(error = ?e, "reloading the key rings failed");
            }
            match swept {
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

/// How often `ward serve` checks whether a key ring changed in the store.
/// With the change counters cached and announced (PostgreSQL) or read at
/// most every 100 ms (SQLite), a key retired on one replica is refused on
/// every other within about this time plus the store's refresh.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Reload the key rings whenever they changed in the store, checked every
/// `every` on a blocking thread (a remote store's call may wait for the
/// network), for as long as the current runtime runs.
pub fn watch_key_rings(state: AppState, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let s = state.clone();
            match tokio::task::spawn_blocking(move || s.reload_keys_if_changed()).await {
                Ok(Ok(reloaded)) => {
                    if reloaded {
                        tracing::debug!("key rings changed in the store; reloaded");
                    }
                    failing = false;
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "checking the key rings for changes failed");
                    }
                    failing = true;
                }
                Err(e) => tracing::error!(error = %e, "the key-ring watch panicked"),
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
