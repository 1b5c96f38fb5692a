//! Authentication and authorisation of the admin API: `Authorization:
//! Bearer <JWT>` signed by one of the configured admin keys (ES256, ES384 or
//! EdDSA), with a `role` claim (or `roles` array) mapped to permissions.
//! Deny by default: no token, an unknown key, an expired token or a role
//! without the permission is refused.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use serde_json::Value;
use ward_proto::jwt::{self, VerifyingKey};

/// An `[admin] keys` file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct KeyFileError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

/// Why an admin request was not authorised.
#[derive(Debug, thiserror::Error)]
pub enum AdminAuthError {
    #[error("admin API requires Authorization: Bearer <token>")]
    Missing,
    #[error("no admin keys are configured")]
    NotConfigured,
    #[error("admin token: {0}")]
    Token(jwt::JwtError),
    #[error("admin token lives {lifetime} s, longer than the {max} s allowed ([admin] max_token_lifetime_secs); mint a shorter one")]
    Lifetime { lifetime: i64, max: i64 },
    #[error("admin token has no role claim")]
    NoRole,
    #[error("role {roles:?} may not {permission:?}")]
    Forbidden {
        roles: Vec<String>,
        permission: Permission,
    },
}

/// What an admin request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadResources,
    WriteResources,
    ReadPolicies,
    WritePolicies,
    ReadReferenceValues,
    WriteReferenceValues,
    RotateKeys,
    /// Read the audit log: checkpoints, entries, proofs.
    ReadAudit,
}

/// Roles and their permissions:
/// * `admin`: everything;
/// * `resource-admin`: read and write resources;
/// * `policy-admin`: read and write policies and reference values;
/// * `auditor`: read everything (metadata only, never resource content)
///   and the audit log; write nothing.
pub fn role_allows(role: &str, p: Permission) -> bool {
    use Permission::*;
    match role {
        "admin" => true,
        "resource-admin" => matches!(p, ReadResources | WriteResources),
        "policy-admin" => matches!(
            p,
            ReadPolicies | WritePolicies | ReadReferenceValues | WriteReferenceValues
        ),
        "auditor" => matches!(
            p,
            ReadResources | ReadPolicies | ReadReferenceValues | ReadAudit
        ),
        _ => false,
    }
}

type BootstrapCache = std::sync::Mutex<(
    Option<std::time::SystemTime>,
    Option<std::sync::Arc<VerifyingKey>>,
)>;

/// Default longest lifetime of an admin token: one day.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 24 * 3600;

/// The trusted admin keys.
pub struct AdminAuth {
    keys: Vec<VerifyingKey>,
    /// Where the bootstrap key is kept (its token is exempt from
    /// `max_lifetime`), and what was read from it with the file's
    /// modification time: `ward admin rotate-bootstrap` replaces it, and
    /// the new key is used, the old one refused, from the next admin
    /// request on.
    bootstrap_file: Option<(std::path::PathBuf, BootstrapCache)>,
    max_lifetime: i64,
}

impl Default for AdminAuth {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl AdminAuth {
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self {
            keys,
            bootstrap_file: None,
            max_lifetime: DEFAULT_MAX_LIFETIME_SECS,
        }
    }

    /// Also trust the bootstrap key kept in `path` (its public key, PEM),
    /// read again whenever the file changes; its long-lived token is exempt
    /// from the lifetime limit.
    pub fn with_bootstrap_file(mut self, path: std::path::PathBuf) -> Self {
        self.bootstrap_file = Some((path, Default::default()));
        self
    }

    /// The bootstrap key now, from its file (read again when it changed).
    fn bootstrap_key(&self) -> Option<std::sync::Arc<VerifyingKey>> {
        let (path, cached) = self.bootstrap_file.as_ref()?;
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut c = cached.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 != mtime || c.1.is_none() {
            let key = crate::bootstrap::read_bootstrap_key(path)
                .map_err(|e| tracing::warn!(error = %e, "cannot read the bootstrap admin key"))
                .ok()
                .map(std::sync::Arc::new);
            *c = (mtime, key);
        }
        c.1.clone()
    }

    /// Refuse tokens (other than the bootstrap token) that live longer than
    /// `secs`.
    pub fn with_max_lifetime(mut self, secs: i64) -> Self {
        self.max_lifetime = secs;
        self
    }

    /// Load a key file: a PEM public key (or several), or a JWKS JSON file.
    pub fn load_file(path: &Path) -> Result<Vec<VerifyingKey>, KeyFileError> {
        let bad = |e: &dyn std::fmt::Display| KeyFileError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let text = std::fs::read(path).map_err(|e| bad(&e))?;
        if text.trim_ascii_start().starts_with(b"{") {
            let jwks: Value = serde_json::from_slice(&text).map_err(|e| bad(&e))?;
            let keys = jwks
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(&"no \"keys\" array"))?;
            return keys
                .iter()
                .map(|k| {
                    let jwk: ward_proto::Jwk =
                        serde_json::from_value(k.clone()).map_err(|e| bad(&e))?;
                    VerifyingKey::from_jwk(&jwk).map_err(|e| bad(&e))
                })
                .collect();
        }
        let mut out = Vec::new();
        for der in SubjectPublicKeyInfoDer::pem_slice_iter(&text) {
            let der = der.map_err(|e| bad(&e))?;
            out.push(VerifyingKey::from_spki_der(der.as_ref()).map_err(|e| bad(&e))?);
        }
        if out.is_empty() {
            return Err(bad(&"no PUBLIC KEY found"));
        }
        Ok(out)
    }

    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty() || self.bootstrap_file.is_some()
    }

    /// Check the `Authorization` header value for `perm` as of `now`.
    pub fn authorize(
        &self,
        header: Option<&str>,
        perm: Permission,
        now: i64,
    ) -> Result<String, AdminAuthError> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(AdminAuthError::Missing)?;
        if !self.is_configured() {
            return Err(AdminAuthError::NotConfigured);
        }
        let refused = AdminAuthError::Token;
        // The bootstrap key is looked up only for tokens no other key signed.
        let (claims, by_bootstrap) = match jwt::verify(token, &self.keys, now, None) {
            Ok(v) => (v.0, false),
            Err(jwt::JwtError::Signature) => match self.bootstrap_key() {
                Some(b) => (
                    jwt::verify(token, std::slice::from_ref(&*b), now, None)
                        .map_err(refused)?
                        .0,
                    true,
                ),
                None => return Err(refused(jwt::JwtError::Signature)),
            },
            Err(e) => return Err(refused(e)),
        };
        // Only the bootstrap token itself (its issuer, its key) may outlive
        // the limit; other tokens minted with the bootstrap key may not.
        let exempt = by_bootstrap
            && claims.get("iss").and_then(Value::as_str)
                == Some(crate::bootstrap::BOOTSTRAP_ISSUER);
        if !exempt {
            let exp = claims
                .get("exp")
                .and_then(Value::as_i64)
                .unwrap_or(i64::MAX);
            let from = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
            let lifetime = exp.saturating_sub(from);
            if lifetime > self.max_lifetime {
                return Err(AdminAuthError::Lifetime {
                    lifetime,
                    max: self.max_lifetime,
                });
            }
        }
        let roles: Vec<&str> = match (claims.get("role"), claims.get("roles")) {
            (Some(Value::String(r)), _) => vec![r.as_str()],
            (_, Some(Value::Array(rs))) => rs.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if roles.is_empty() {
            return Err(AdminAuthError::NoRole);
        }
        if !roles.iter().any(|r| role_allows(r, perm)) {
            return Err(AdminAuthError::Forbidden {
                roles: roles.iter().map(|r| r.to_string()).collect(),
                permission: perm,
            });
        }
        Ok(claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("admin")
            .to_string())
    }
}
