//! Configuration of `ward serve` (TOML; every field optional; unknown fields
//! are errors).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
pub use ward_collateral::{DcapConfig, SnpConfig};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML of this shape (unknown field, wrong type, …).
    #[error("{0}")]
    Parse(String),
    /// A value out of range, or settings that contradict each other.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(detail.into())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded store, keys and admin credentials.
    pub data_dir: PathBuf,
    /// Key-encryption key file; default `<data_dir>/kek` (created on first
    /// start), overridden by the `WARD_KEK` environment variable.
    pub kek_file: Option<PathBuf>,
    /// TLS certificate chain and key (PEM). Without them the service only
    /// starts when `insecure_http` is set.
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP (only for trials or behind a TLS-terminating proxy).
    pub insecure_http: bool,
    /// Development mode: the built-in resource policy releases to the
    /// sample TEE. Logged loudly.
    pub dev: bool,
    /// Seconds between `/auth` and `/attest`.
    pub session_ttl_secs: i64,
    /// Largest request body in bytes (resources included).
    pub max_body_bytes: usize,
    /// Runtime worker threads; default: the number of CPUs.
    pub workers: Option<usize>,
    pub token: TokenConfig,
    pub admin: AdminConfig,
    pub snp: SnpConfig,
    pub dcap: DcapConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
    pub store: StoreConfig,
}

/// `[store]`: where data lives. By default the embedded SQLite file
/// `<data_dir>/ward.db`; with `url`, a PostgreSQL database that replicas
/// share.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user:password@host:5432/dbname?sslmode=require`.
    /// Never logged. `WARD_STORE_URL` or `--store` override it.
    pub url: Option<String>,
    /// PEM file of the CAs that sign the database server's certificate
    /// (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Most database connections this replica opens.
    pub pool_size: usize,
    /// Seconds any one database call may take, connecting included.
    pub timeout_secs: f64,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        let d = ward_store::PgOptions::new("");
        Self {
            url: None,
            ca_file: None,
            pool_size: d.pool_size,
            timeout_secs: d.op_timeout.as_secs_f64(),
        }
    }
}

impl StoreConfig {
    /// The PostgreSQL options, when `url` names a PostgreSQL database.
    pub fn postgres(&self) -> Option<ward_store::PgOptions> {
        let url = self.url.as_ref()?;
        Some(ward_store::PgOptions {
            url: url.clone(),
            ca_file: self.ca_file.clone(),
            pool_size: self.pool_size,
            op_timeout: std::time::Duration::from_secs_f64(self.timeout_secs),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            if !ward_store::postgres::is_postgres_url(url) {
                return Err(invalid(
                    "store.url must be a postgres:// or postgresql:// URL (leave it out for the embedded SQLite store)",
                ));
            }
        }
        if !(self.timeout_secs.is_finite() && (0.1..=600.0).contains(&self.timeout_secs)) {
            return Err(invalid(format!(
                "store.timeout_secs must be between 0.1 and 600 seconds, not {}",
                self.timeout_secs
            )));
        }
        if !(1..=1000).contains(&self.pool_size) {
            return Err(invalid("store.pool_size must be between 1 and 1000"));
        }
        Ok(())
    }
}

/// `[audit]`: the audit log's checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's name: the origin line of its checkpoints and the name of
    /// the key that signs them (no spaces, no `+`). Give every deployment
    /// its own, e.g. `kbs.example.com/audit`.
    pub origin: String,
    /// Record attestations, releases, refusals and admin changes (the
    /// default). Off, nothing is recorded: for measuring what the log
    /// costs, or where another system keeps the record.
    pub enabled: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            origin: DEFAULT_AUDIT_ORIGIN.into(),
            enabled: true,
        }
    }
}

/// The default origin of the audit log's checkpoints.
pub const DEFAULT_AUDIT_ORIGIN: &str = "ward/audit";

/// `[limits]`: how long a client may take and how many connections may be
/// open (see `ward_listen`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most connections open at once; lowered to fit the descriptor limit.
    /// At the cap the longest-idle connection is closed for a new one.
    pub max_connections: usize,
    /// Seconds from accept to the first request's headers (TLS included).
    pub first_request_secs: f64,
    /// Seconds a connection may stay open with no request in flight.
    pub idle_secs: f64,
    /// Seconds to receive a request's whole body.
    pub body_secs: f64,
    /// Seconds between HTTP/2 pings (and to wait for their answer).
    pub http2_keepalive_secs: f64,
    /// Seconds an attestation may wait for collateral being fetched (AMD
    /// KDS, Intel PCS) before it is answered 503 with Retry-After.
    pub collateral_wait_secs: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = ward_listen::Limits::default();
        Self {
            max_connections: d.max_connections,
            first_request_secs: d.first_request.as_secs_f64(),
            idle_secs: d.idle.as_secs_f64(),
            body_secs: d.body.as_secs_f64(),
            http2_keepalive_secs: d.http2_keepalive.as_secs_f64(),
            collateral_wait_secs: 20.0,
        }
    }
}

impl LimitsConfig {
    /// The limits to serve with; call after [`Config::validate`].
    pub fn to_limits(&self) -> ward_listen::Limits {
        let d = std::time::Duration::from_secs_f64;
        ward_listen::Limits {
            max_connections: self.max_connections,
            first_request: d(self.first_request_secs),
            idle: d(self.idle_secs),
            body: d(self.body_secs),
            http2_keepalive: d(self.http2_keepalive_secs),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("first_request_secs", self.first_request_secs),
            ("idle_secs", self.idle_secs),
            ("body_secs", self.body_secs),
            ("http2_keepalive_secs", self.http2_keepalive_secs),
            ("collateral_wait_secs", self.collateral_wait_secs),
        ] {
            if !(v.is_finite() && (0.01..=86_400.0).contains(&v)) {
                return Err(invalid(format!(
                    "limits.{name} must be between 0.01 and 86400 seconds, not {v}"
                )));
            }
        }
        if self.max_connections == 0 {
            return Err(invalid("limits.max_connections must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    pub lifetime_secs: i64,
    pub issuer: String,
    /// `ear.verifier-id.developer` in issued tokens.
    pub verifier_developer: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Public keys (PEM or JWKS files) whose tokens may use the admin API.
    pub keys: Vec<PathBuf>,
    /// On first start, create an admin key pair and token under
    /// `<data_dir>/admin/` and trust that key.
    pub bootstrap: bool,
    /// Lifetime of the bootstrap admin token, seconds.
    pub bootstrap_token_lifetime_secs: i64,
    /// Admin tokens living longer than this (`exp - iat`, or `exp - now`
    /// without `iat`) are refused; the bootstrap token, signed by the
    /// bootstrap key, is the one exception.
    pub max_token_lifetime_secs: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("ward-data"),
            kek_file: None,
            tls: None,
            insecure_http: false,
            dev: false,
            session_ttl_secs: 300,
            max_body_bytes: 2 * 1024 * 1024,
            workers: None,
            token: TokenConfig::default(),
            admin: AdminConfig::default(),
            snp: SnpConfig::default(),
            dcap: DcapConfig::default(),
            limits: LimitsConfig::default(),
            audit: AuditConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            lifetime_secs: 300,
            issuer: "ward".into(),
            verifier_developer: ward_verifier::DEFAULT_DEVELOPER.into(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            keys: vec![],
            bootstrap: true,
            bootstrap_token_lifetime_secs: 365 * 24 * 3600,
            max_token_lifetime_secs: 24 * 3600,
        }
    }
}

impl Config {
    /// The `[snp]` and `[dcap]` sections: what the verifiers trust.
    pub fn collateral(&self) -> ward_collateral::Config {
        ward_collateral::Config {
            snp: self.snp.clone(),
            dcap: self.dcap.clone(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.store.validate()?;
        if self.tls.is_none() && !self.insecure_http {
            return Err(invalid("no TLS certificate configured: set [tls] cert/key, or pass --insecure-http to serve plain HTTP"));
        }
        if self.session_ttl_secs <= 0 || self.token.lifetime_secs <= 0 {
            return Err(invalid(
                "session_ttl_secs and token.lifetime_secs must be positive",
            ));
        }
        if self.admin.max_token_lifetime_secs <= 0 {
            return Err(invalid("admin.max_token_lifetime_secs must be positive"));
        }
        if self.workers == Some(0) {
            return Err(invalid("workers must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes must be at least 1024"));
        }
        self.limits.validate()
    }
}
