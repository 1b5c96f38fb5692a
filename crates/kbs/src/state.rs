//! The trust service's state and its three protocol operations:
//! [`AppState::auth`], [`AppState::attest`] and [`AppState::get_resource`].
//! Tokens are checked in `tokens.rs`, admin operations live in `admin.rs`;
//! HTTP handlers only extract, call one operation and answer.

use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::body::Bytes;
use serde_json::Value;
use ward_proto::jwe::{self, Recipient};
use ward_proto::kbs::{Attestation, Challenge, Request, PROTOCOL_VERSION};
use ward_proto::{b64, ResourcePath, Tee};
use ward_store::{AuditEvent, Change, Store};
use ward_verifier::{appraise, issue_token, TokenSettings, VerifierRegistry, VerifyError};

use crate::admin_auth::AdminAuth;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::keys::{KeyError, KeyManager};
use crate::metrics::Metrics;
use crate::policy_cache::PolicyCache;
use crate::resource_cache::ResourceCache;
use crate::session::{self, CookieError, Session, SessionError};
use crate::tokens::{cache_key, Credential, TokenCache, TokenEntry, TokenError, SESSION_KEY};

/// A new session: its challenge and the pending-session cookie value,
/// valid until `exp`.
#[derive(Debug)]
pub struct Started {
    pub challenge: Challenge,
    pub cookie: String,
    pub exp: i64,
}

/// A completed attestation: the token and the attested-session cookie
/// value, valid until `exp`.
#[derive(Debug)]
pub struct Attested {
    pub token: String,
    pub cookie: String,
    pub exp: i64,
}

/// Why `/auth` or `/attest` failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(
        "KBS protocol version {version:?} is not supported; this server speaks {PROTOCOL_VERSION}"
    )]
    ProtocolVersion { version: String },
    #[error("TEE {tee:?} is not supported; supported: {supported}")]
    UnsupportedTee { tee: String, supported: String },
    #[error("attestation body: {0}")]
    Body(serde_json::Error),
    #[error("tee-pubkey: {0}")]
    TeeKey(String),
    /// The evidence cannot be read.
    #[error("{0}")]
    MalformedEvidence(VerifyError),
    /// The evidence was read and does not verify.
    #[error("{0}")]
    Evidence(VerifyError),
    /// The verifier is not configured for this evidence (our side).
    #[error("verifier: {0}")]
    Verifier(VerifyError),
    /// Collateral is being fetched; `key` names the fetch to wait for.
    #[error("{what} is still being fetched; try again shortly")]
    CollateralPending { key: String, what: String },
    #[error("{what} did not arrive within {secs} s; try again shortly")]
    CollateralTimeout { what: String, secs: u64 },
    #[error("attestation policy: {0}")]
    Appraisal(String),
    #[error("{0}")]
    Issue(String),
    #[error("rng failed")]
    Random,
}

/// Why a resource was not released.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// `why` is the token's appraisal in words, never reference values.
    #[error("Access denied by policy for resource {path}: {why}")]
    Denied { path: String, why: String },
    #[error("resource {0} does not exist")]
    NotFound(String),
    #[error("resource policy: {0}")]
    Policy(String),
    #[error("{0}")]
    Encrypt(String),
}

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of a session between `/auth` and `/attest`, seconds.
    pub session_ttl_secs: i64,
    pub token: TokenSettings,
    /// `--dev`: the built-in resource policy allows sample evidence.
    pub dev: bool,
    /// Set `Secure` on cookies (the service runs TLS).
    pub secure_cookies: bool,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// How long an attestation may wait for collateral being fetched.
    pub collateral_wait: std::time::Duration,
    /// The audit log's origin (see `AuditConfig`).
    pub audit_origin: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            session_ttl_secs: 300,
            token: TokenSettings::default(),
            dev: false,
            secure_cookies: false,
            max_body_bytes: 2 * 1024 * 1024,
            collateral_wait: std::time::Duration::from_secs(20),
            audit_origin: crate::config::DEFAULT_AUDIT_ORIGIN.into(),
        }
    }
}

/// Everything a request needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub verifiers: VerifierRegistry,
    pub settings: Settings,
    pub keys: KeyManager,
    pub policies: PolicyCache,
    pub tokens: TokenCache,
    pub resources: ResourceCache,
    pub admin: AdminAuth,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    pub audit: crate::audit::AuditTree,
}

impl AppState {
    /// Build the state; loads (or on first start creates) the keys in the store.
    pub fn new(
        store: Arc<dyn Store>,
        verifiers: VerifierRegistry,
        settings: Settings,
        admin: AdminAuth,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        let keys = KeyManager::load(store.clone(), clock.now())?;
        let policies = PolicyCache::new(settings.dev);
        Ok(Self(Arc::new(Inner {
            store,
            verifiers,
            settings,
            keys,
            policies,
            tokens: TokenCache::default(),
            resources: ResourceCache::default(),
            admin,
            metrics: Metrics::new(),
            clock,
            audit: Default::default(),
        })))
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// The connection metrics reported on `/metrics`: serve this state
    /// with them (see `serve::serve_state`).
    pub fn listener_metrics(&self) -> ward_listen::ListenerMetrics {
        self.0.metrics.listener().clone()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }

    /// Forget cached tokens that have expired, so that memory used in a
    /// burst is given back once its sessions are over. `ward serve` calls
    /// this periodically; returns how many were dropped.
    pub fn sweep_expired(&self) -> usize {
        self.0.tokens.sweep(self.now())
    }

    /// Drop the records of answered challenges whose sessions have expired
    /// (see [`Store::consume_nonce`]); `ward serve` calls this periodically.
    pub fn sweep_used_nonces(&self) -> Result<usize, ward_store::StoreError> {
        self.0.store.sweep_nonces(self.now())
    }

    /// Re-read the key rings from the store, so that a key another replica
    /// retired is refused here too, cached sessions under it included.
    /// `ward serve` calls this periodically.
    pub fn reload_keys(&self) -> Result<(), KeyError> {
        self.0.keys.reload()
    }

    /// Re-read the key rings if any changed in the store (here or on
    /// another replica) since they were read; returns whether they were.
    /// `ward serve` calls this every [`crate::serve::WATCH_EVERY`].
    pub fn reload_keys_if_changed(&self) -> Result<bool, KeyError> {
        self.0.keys.reload_if_changed()
    }

    /// Tokens currently cached (verified and ready for resource requests).
    pub fn cached_tokens(&self) -> usize {
        self.0.tokens.len()
    }

    /// `POST /auth`: a fresh challenge and the pending-session cookie value.
    pub fn auth(&self, req: &Request) -> Result<Started, ApiError> {
        if req.version != PROTOCOL_VERSION {
            return Err(AttestError::ProtocolVersion {
                version: req.version.chars().take(32).collect(),
            }
            .into());
        }
        if !self.0.verifiers.supports(&req.tee) {
            return Err(AttestError::UnsupportedTee {
                tee: req.tee.as_str().chars().take(32).collect(),
                supported: self.0.verifiers.tees().join(", "),
            }
            .into());
        }
        let mut nonce = [0u8; 32];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AttestError::Random)?;
        let nonce = b64::std_encode(nonce);
        let exp = self.now() + self.0.settings.session_ttl_secs;
        let session = Session::Pending {
            tee: req.tee.0.clone(),
            nonce: nonce.clone(),
            exp,
        };
        let cookie = session::seal(&self.0.keys.current(), &session)?;
        self.0.metrics.auth(req.tee.as_str());
        Ok(Started {
            challenge: Challenge {
                nonce,
                extra_params: Value::String(String::new()),
            },
            cookie,
            exp,
        })
    }

    pub(crate) fn open_cookie(&self, value: &str) -> Result<Session, ApiError> {
        let now = self.now();
        let result = match session::open(&self.0.keys.current(), value, now) {
            Err(CookieError::UnknownKey) if self.0.keys.reload_if_stale(now)? => {
                session::open(&self.0.keys.current(), value, now)
            }
            other => other,
        };
        Ok(result.map_err(SessionError::Cookie)?)
    }

    /// `POST /attest`: verify, appraise, issue a token; returns the token and
    /// the attested-session cookie value with its expiry.
    pub fn attest(&self, cookie: Option<&str>, body: &[u8]) -> Result<Attested, ApiError> {
        let cookie = cookie.ok_or(SessionError::Missing)?;
        // Read before any key is used: see `TokenEntry::ring`.
        let ring = self.0.keys.retirements();
        let (tee, nonce, session_exp) = match self.open_cookie(cookie)? {
            Session::Pending { tee, nonce, exp } => (tee, nonce, exp),
            Session::Attested { .. } => return Err(SessionError::AlreadyAttested.into()),
        };
        let attestation: Attestation = serde_json::from_slice(body).map_err(AttestError::Body)?;
        let tee = Tee::new(tee);
        let now = self.now();
        let result = match self.attest_verified(&tee, &attestation, &nonce, session_exp, now, ring)
        {
            // Not an outcome yet: the caller waits and calls again.
            Err(e) if e.collateral_pending().is_some() => return Err(e),
            r => r,
        };
        self.0.metrics.attest(
            tee.as_str(),
            result
                .as_ref()
                .map(|(s, _, _)| s.as_str())
                .map_err(|e| e.kind()),
        );
        let (_, token, entry) = result?;
        let exp = entry.exp;

        let cookie = session::seal(
            &self.0.keys.current(),
            &Session::Attested {
                token: token.clone(),
                exp,
            },
        )?;
        self.0.tokens.insert(cache_key(SESSION_KEY, &cookie), entry);
        Ok(Attested { token, cookie, exp })
    }

    fn attest_verified(
        &self,
        tee: &Tee,
        attestation: &Attestation,
        nonce: &str,
        session_exp: i64,
        now: i64,
        ring: u64,
    ) -> Result<(ward_proto::ear::Status, String, Arc<TokenEntry>), ApiError> {
        // The TEE key must be usable before we vouch for it.
        let recipient = Recipient::from_jwk(&attestation.runtime_data.tee_pubkey)
            .map_err(|e| AttestError::TeeKey(e.to_string()))?;
        let verified = self
            .0
            .verifiers
            .verify_attestation(tee, attestation, nonce, now)
            .map_err(|e| match e {
                VerifyError::Config(_) => AttestError::Verifier(e),
                VerifyError::CollateralPending { key, what } => {
                    AttestError::CollateralPending { key, what }
                }
                VerifyError::Malformed(_) => AttestError::MalformedEvidence(e),
                _ => AttestError::Evidence(e),
            })?;
        let gen = self.0.store.generations()?;
        let policy = self
            .0
            .policies
            .attestation(self.0.store.as_ref(), &gen, tee.as_str(), now)?;
        let appraisal =
            appraise(&verified, &policy).map_err(|e| AttestError::Appraisal(e.to_string()))?;
        let status = appraisal.status;
        let policy_id = appraisal.policy_id.clone();
        let event = attestation_event(tee, attestation, &verified, status.as_str(), &policy_id);
        let keys = self.0.keys.current();
        let (token, claims) = issue_token(
            &keys.signer,
            appraisal,
            verified,
            &self.0.settings.token,
            now,
        )
        .map_err(|e| AttestError::Issue(e.to_string()))?;
        // Each challenge is answered once, on whichever replica: recorded
        // in the store until the session could expire anyway, with the
        // audit record of the attestation in the same transaction. Only
        // evidence that verified gets this far, so garbage costs no write.
        // Fails closed: no record, no token.
        let event = event.with("token_id", ward_store::audit::sha256_hex(token.as_bytes()));
        let change = Change::ConsumeNonce {
            nonce,
            expires_at: session_exp,
        };
        if !self.0.store.apply(change, now, Some(&event))?.done() {
            return Err(SessionError::ChallengeAnswered.into());
        }
        // The session's first GET usually reaches this replica: the verified
        // token is put in the cache below.
        tracing::info!(tee = %tee, status = status.as_str(), policy = %policy_id, "attestation appraised");
        // Cached under the session's cookie only (by the caller): the token
        // text is added when the token is first used as a bearer credential.
        let entry = Arc::new(TokenEntry {
            claims,
            exp: now + self.0.settings.token.lifetime_secs,
            recipient,
            ring,
            token_id: ward_store::audit::sha256_hex(token.as_bytes()),
            responses: crate::tokens::responses(),
        });
        Ok((status, token, entry))
    }

    /// `GET /resource/<repo>/<type>/<tag>`: the resource as a JWE (JSON bytes).
    pub fn get_resource(
        &self,
        cred: Option<Credential<'_>>,
        path: &ResourcePath,
    ) -> Result<Bytes, ApiError> {
        let result = self.get_resource_inner(cred, path);
        self.0.metrics.resource(match &result {
            Ok(_) => "released",
            Err(e) => e.kind(),
        });
        result
    }

    fn get_resource_inner(
        &self,
        cred: Option<Credential<'_>>,
        path: &ResourcePath,
    ) -> Result<Bytes, ApiError> {
        let cred = cred.ok_or(TokenError::Missing)?;
        let entry = self.token_entry(cred)?;
        let key = path.to_string();
        let gen = self.0.store.generations()?;
        if let Some(body) = entry.cached(&key, &gen) {
            return Ok(body);
        }
        let policy = self
            .0
            .policies
            .resource_for_path(self.0.store.as_ref(), &gen, path)?;
        let allowed = policy
            .eval_bool_claims(&entry.claims, "allow")
            .map_err(|e| ResourceError::Policy(e.to_string()))?;
        let event = AuditEvent::new(if allowed { "release" } else { "denial" })
            .with("path", key.as_str())
            .with("token_id", entry.token_id.as_str())
            .with("policy_id", policy.id())
            .with("policies_generation", gen.policies);
        if !allowed {
            // Recorded when the store takes it; refused either way.
            if let Err(e) = self.0.store.append_audit(&[event], self.now()) {
                tracing::warn!(path = %key, error = %e, "a refused release could not be recorded in the audit log");
            }
            // The caller learns why (the appraisal, never reference values
            // or policy text), and the refusal is logged with the same words.
            return Err(ResourceError::Denied {
                path: key,
                why: entry.claims.appraisal_summary(),
            }
            .into());
        }
        let (version, data) = self.0.resources.get(self.0.store.as_ref(), path, &gen)?;
        // Nothing is released that is not recorded first: each token's first
        // release of each version of a resource (a repeat answers the same
        // ciphertext to the same token from the cache, unrecorded).
        self.0
            .store
            .append_audit(&[event.with("resource_version", version)], self.now())?;
        let encrypt = |e: &dyn std::fmt::Display| ResourceError::Encrypt(e.to_string());
        let jwe = jwe::encrypt(&entry.recipient, &data).map_err(|e| encrypt(&e))?;
        let body = Bytes::from(serde_json::to_vec(&jwe).map_err(|e| encrypt(&e))?);
        entry.remember(&key, gen, body.clone());
        Ok(body)
    }
}

/// The audit record of an appraised attestation: what was attested, to
/// what verdict, under which policy. Digests only: the evidence and the
/// init-data are named, never copied.
fn attestation_event(
    tee: &Tee,
    attestation: &Attestation,
    verified: &ward_verifier::VerifiedEvidence,
    status: &str,
    policy_id: &str,
) -> AuditEvent {
    use ward_store::audit::sha256_hex;
    let evidence = serde_json::to_vec(&attestation.tee_evidence).unwrap_or_default();
    let annotated = verified.annotated_evidence();
    let claims = &annotated[tee.as_str()];
    // The launch measurement, by the name each TEE's claims give it.
    let measurement = ["measurement", "mr_td", "mr_enclave"]
        .iter()
        .find_map(|k| claims.get(*k).filter(|v| !v.is_null()))
        .cloned()
        .unwrap_or(Value::Null);
    AuditEvent::new("attestation")
        .with("tee", tee.as_str())
        .with("verdict", status)
        .with("policy_id", policy_id)
        .with("evidence_sha256", sha256_hex(&evidence))
        .with(
            "init_data",
            annotated.get("init_data").cloned().unwrap_or(Value::Null),
        )
        .with("measurement", measurement)
}
