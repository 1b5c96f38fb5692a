//! First start: the data directory, the key-encryption key, the store and
//! the bootstrap admin credentials.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use ward_proto::jwt::{Es256Signer, VerifyingKey};
use ward_store::{Kek, PostgresStore, SqliteStore, Store};

use crate::config::Config;

/// Why the data directory, key-encryption key, store or bootstrap
/// credentials could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A file operation failed; the text names the path (and says when the
    /// disk is full).
    #[error("{0}")]
    File(String),
    #[error("data directory {0}")]
    DataDir(String),
    #[error("{} exists but its key-encryption key {} is missing: restore that file \
             from your backup (or give the key with {} or kek_file). No new key is \
             created: it could not read the stored secrets.", db.display(), kek.display(), ward_store::KEK_ENV)]
    MissingKek { db: PathBuf, kek: PathBuf },
    #[error("{0}")]
    Kek(String),
    #[error("the PostgreSQL store, which replicas share, needs the key-encryption key they \
             all use, and none is created: put 32 random bytes (for instance \
             `head -c 32 /dev/urandom | base64 > {}`) there or in kek_file on every \
             replica, or give them with {}", .0.display(), ward_store::KEK_ENV)]
    NoSharedKek(PathBuf),
    #[error("PostgreSQL store: {0}")]
    Database(String),
    #[error("{}: {reason}", path.display())]
    Store { path: PathBuf, reason: String },
    #[error("{0}")]
    Key(String),
    #[error("{} has no bootstrap credentials to rotate", .0.display())]
    NothingToRotate(PathBuf),
    #[error("{}: {reason}", path.display())]
    PublicKey { path: PathBuf, reason: String },
    #[error("admin key: {0}")]
    AdminKey(String),
}

fn key_err(e: impl std::fmt::Display) -> BootstrapError {
    BootstrapError::Key(e.to_string())
}

/// File names under `<data_dir>`.
pub const DB_FILE: &str = "ward.db";
pub const KEK_FILE: &str = "kek";
pub const ADMIN_DIR: &str = "admin";
pub const ADMIN_KEY: &str = "admin-key.pem";
pub const ADMIN_PUB: &str = "admin-pub.pem";
pub const ADMIN_TOKEN: &str = "admin-token";
/// The `iss` of the bootstrap admin token (exempt from the admin token
/// lifetime limit when signed by the bootstrap key).
pub const BOOTSTRAP_ISSUER: &str = "ward-bootstrap";

/// What bootstrapping did, for the log.
#[derive(Debug, Default)]
pub struct Bootstrapped {
    pub created_kek: Option<PathBuf>,
    pub created_admin_token: Option<PathBuf>,
    pub admin_token_path: Option<PathBuf>,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Write a file that only the owner can read, refusing to overwrite, all
/// or nothing (see [`ward_store::files::create_private`]).
pub fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    ward_store::files::create_private(path, content)
}

/// Open the store, creating the data directory and KEK on first start.
///
/// A KEK is generated only on a true first start: when the database exists
/// but its KEK file does not (a restore done out of order, a lost file),
/// starting is refused with the file to restore, since a new key could not
/// open what is stored.
pub fn open_store(cfg: &Config) -> Result<(Arc<dyn Store>, Option<PathBuf>), BootstrapError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| BootstrapError::DataDir(ward_store::files::describe(&cfg.data_dir, &e)))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    if let Some(opts) = cfg.store.postgres() {
        let kek = shared_kek(cfg)?;
        let store =
            PostgresStore::open(&opts, kek).map_err(|e| BootstrapError::Database(e.to_string()))?;
        return Ok((Arc::new(store), None));
    }
    let db = cfg.data_dir.join(DB_FILE);
    let mut created = None;
    let kek = match given_kek(cfg)? {
        Some(k) => k,
        None => {
            let p = cfg.data_dir.join(KEK_FILE);
            let kek_len = std::fs::metadata(&p).map(|m| m.len()).ok();
            let db_exists = db.exists();
            if db_exists && kek_len.is_none() {
                return Err(BootstrapError::MissingKek { db, kek: p });
            }
            if kek_len == Some(0) && !db_exists {
                // An empty key file and no database: an older ward
                // stopped during its first start (say, on a full disk).
                // Nothing was ever sealed with it.
                tracing::warn!(path = %p.display(), "replacing an empty key-encryption key file left by an interrupted first start");
                std::fs::remove_file(&p).map_err(|e| describe(&p, &e))?;
            }
            let (k, new) = Kek::load_or_create(&p).map_err(kek_err)?;
            if new {
                created = Some(p);
            }
            k
        }
    };
    let store = SqliteStore::open(&db, kek).map_err(|e| BootstrapError::Store {
        path: db.clone(),
        reason: e.to_string(),
    })?;
    Ok((Arc::new(store), created))
}

fn kek_err(e: ward_store::KekError) -> BootstrapError {
    BootstrapError::Kek(e.to_string())
}

/// The KEK given by `WARD_KEK` or `kek_file`, if any.
fn given_kek(cfg: &Config) -> Result<Option<Kek>, BootstrapError> {
    if let Some(k) = Kek::from_env().map_err(kek_err)? {
        return Ok(Some(k));
    }
    cfg.kek_file
        .as_deref()
        .map(|p| Kek::from_file(p).map_err(kek_err))
        .transpose()
}

/// The KEK of a database that replicas share: given, or in
/// `<data_dir>/kek`; never created, since each replica would make its own.
fn shared_kek(cfg: &Config) -> Result<Kek, BootstrapError> {
    if let Some(k) = given_kek(cfg)? {
        return Ok(k);
    }
    let p = cfg.data_dir.join(KEK_FILE);
    if p.exists() {
        return Kek::from_file(&p).map_err(kek_err);
    }
    Err(BootstrapError::NoSharedKek(p))
}

fn describe(path: &Path, e: &std::io::Error) -> BootstrapError {
    BootstrapError::File(ward_store::files::describe(path, e))
}

/// Create (first start) or reuse the bootstrap admin key; returns its
/// verifying key and the token path when a token was created.
pub fn admin_bootstrap(
    cfg: &Config,
    now: i64,
) -> Result<(VerifyingKey, Option<PathBuf>, PathBuf), BootstrapError> {
    let dir = cfg.data_dir.join(ADMIN_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| describe(&dir, &e))?;
    let pub_path = dir.join(ADMIN_PUB);
    let token_path = dir.join(ADMIN_TOKEN);
    if pub_path.exists() {
        return Ok((read_bootstrap_key(&pub_path)?, None, token_path));
    }
    // The key and token of an interrupted bootstrap (no public key yet)
    // are replaced: nothing trusts them.
    for leftover in [dir.join(ADMIN_KEY), token_path.clone()] {
        match std::fs::remove_file(&leftover) {
            Ok(()) => {
                tracing::warn!(path = %leftover.display(), "replacing a file left by an interrupted bootstrap")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(describe(&leftover, &e)),
        }
    }
    let vk = write_bootstrap(
        &dir,
        cfg.admin.bootstrap_token_lifetime_secs,
        now,
        write_private,
    )?;
    Ok((vk, Some(token_path.clone()), token_path))
}

/// A new bootstrap key pair and token under `dir`, written with `write`
/// (the public key last: its presence means the bootstrap completed).
fn write_bootstrap(
    dir: &Path,
    lifetime: i64,
    now: i64,
    write: fn(&Path, &[u8]) -> std::io::Result<()>,
) -> Result<VerifyingKey, BootstrapError> {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| key_err("key generation failed"))?;
    let pkcs8 = kp
        .to_pkcs8v1()
        .map_err(|_| key_err("key encoding failed"))?;
    let spki = kp
        .public_key()
        .as_der()
        .map_err(|_| key_err("key encoding failed"))?;
    let signer = Es256Signer::from_pkcs8(pkcs8.as_ref()).map_err(key_err)?;
    let claims = json!({
        "iss": BOOTSTRAP_ISSUER,
        "sub": "bootstrap-admin",
        "role": "admin",
        "iat": now,
        "exp": now + lifetime,
    });
    let token = signer.sign(&claims).map_err(key_err)?;
    let (key_path, token_path, pub_path) = (
        dir.join(ADMIN_KEY),
        dir.join(ADMIN_TOKEN),
        dir.join(ADMIN_PUB),
    );
    write(&key_path, pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
        .map_err(|e| describe(&key_path, &e))?;
    write(&token_path, format!("{token}\n").as_bytes()).map_err(|e| describe(&token_path, &e))?;
    write(&pub_path, pem("PUBLIC KEY", spki.as_ref()).as_bytes())
        .map_err(|e| describe(&pub_path, &e))?;
    VerifyingKey::from_spki_der(spki.as_ref()).map_err(key_err)
}

/// Rotate the bootstrap admin credentials in `data_dir`: a new key pair and
/// token replace the old ones (each file all or nothing). A running `ward
/// serve` trusts the new key, and no longer the old one, from its next
/// admin request on. Returns the token's path.
pub fn rotate_bootstrap(
    data_dir: &Path,
    lifetime: i64,
    now: i64,
) -> Result<PathBuf, BootstrapError> {
    let dir = data_dir.join(ADMIN_DIR);
    if !dir.join(ADMIN_PUB).exists() {
        return Err(BootstrapError::NothingToRotate(dir));
    }
    write_bootstrap(&dir, lifetime, now, ward_store::files::replace_private)?;
    Ok(dir.join(ADMIN_TOKEN))
}

/// The verifying key in a bootstrap public-key file.
pub fn read_bootstrap_key(pub_path: &Path) -> Result<VerifyingKey, BootstrapError> {
    let bad = |e: &dyn std::fmt::Display| BootstrapError::PublicKey {
        path: pub_path.to_path_buf(),
        reason: e.to_string(),
    };
    let der = rustls::pki_types::pem::PemObject::from_pem_file(pub_path)
        .map(|d: rustls::pki_types::SubjectPublicKeyInfoDer<'static>| d.as_ref().to_vec())
        .map_err(|e| bad(&e))?;
    VerifyingKey::from_spki_der(&der).map_err(|e| bad(&e))
}

/// Mint an admin token with `key_pem` (a PKCS#8 P-256 private key).
pub fn mint_admin_token(
    key_pem: &[u8],
    role: &str,
    subject: &str,
    now: i64,
    lifetime: i64,
) -> Result<String, BootstrapError> {
    let der: rustls::pki_types::PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(key_pem)
            .map_err(|e| BootstrapError::AdminKey(e.to_string()))?;
    let signer = Es256Signer::from_pkcs8(der.secret_der()).map_err(key_err)?;
    signer
        .sign(&json!({"iss": "ward-admin", "sub": subject, "role": role, "iat": now, "exp": now + lifetime}))
        .map_err(key_err)
}
