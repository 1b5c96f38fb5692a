//! The trust service's state and its core operations. HTTP handlers are thin
//! wrappers around [`AppState::auth`], [`AppState::attest`] and
//! [`AppState::get_resource`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::body::Bytes;
use serde_json::Value;
use ward_proto::ear::EarClaims;
use ward_proto::jwe::{self, Recipient};
use ward_proto::jwt::{self, JwtError};
use ward_proto::kbs::{Attestation, Challenge, Request, PROTOCOL_VERSION};
use ward_proto::{b64, Jwk, ResourcePath, Tee};
use ward_store::{Generations, Store};
use ward_verifier::{
    appraise, issue_token, TokenClaims, TokenSettings, VerifierRegistry, VerifyError,
};
use zeroize::Zeroizing;

use crate::admin_auth::AdminAuth;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::keys::KeyManager;
use crate::metrics::Metrics;
use crate::policy_cache::PolicyCache;
use crate::session::{self, CookieError, Session};

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
}

/// Where a resource request's token came from.
pub enum Credential<'a> {
    Cookie(&'a str),
    Bearer(&'a str),
}

impl AppState {
    /// Build the state; loads (or on first start creates) the keys in the store.
    pub fn new(
        store: Arc<dyn Store>,
        verifiers: VerifierRegistry,
        settings: Settings,
        admin: AdminAuth,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ApiError> {
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
    pub fn sweep_used_nonces(&self) -> Result<usize, ApiError> {
        Ok(self.0.store.sweep_nonces(self.now())?)
    }

    /// Re-read the key rings from the store, so that a key another replica
    /// retired is refused here too, cached sessions under it included.
    /// `ward serve` calls this periodically.
    pub fn reload_keys(&self) -> Result<(), ApiError> {
        self.0.keys.reload()
    }

    /// Tokens currently cached (verified and ready for resource requests).
    pub fn cached_tokens(&self) -> usize {
        self.0.tokens.len()
    }

    /// `POST /auth`: a fresh challenge and the pending-session cookie value.
    pub fn auth(&self, req: &Request) -> Result<(Challenge, String, i64), ApiError> {
        if req.version != PROTOCOL_VERSION {
            return Err(ApiError::bad_request(
                "ProtocolVersion",
                format!(
                    "KBS protocol version {:?} is not supported; this server speaks {PROTOCOL_VERSION}",
                    req.version.chars().take(32).collect::<String>()
                ),
            ));
        }
        if !self.0.verifiers.supports(&req.tee) {
            return Err(ApiError::bad_request(
                "UnsupportedTee",
                format!(
                    "TEE {:?} is not supported; supported: {}",
                    req.tee.as_str().chars().take(32).collect::<String>(),
                    self.0.verifiers.tees().join(", ")
                ),
            ));
        }
        let mut nonce = [0u8; 32];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ApiError::internal("rng failed"))?;
        let nonce = b64::std_encode(nonce);
        let exp = self.now() + self.0.settings.session_ttl_secs;
        let session = Session::Pending {
            tee: req.tee.0.clone(),
            nonce: nonce.clone(),
            exp,
        };
        let cookie = session::seal(&self.0.keys.current(), &session)?;
        self.0.metrics.auth(req.tee.as_str());
        Ok((
            Challenge {
                nonce,
                extra_params: Value::String(String::new()),
            },
            cookie,
            exp,
        ))
    }

    fn open_cookie(&self, value: &str) -> Result<Session, ApiError> {
        let now = self.now();
        let result = match session::open(&self.0.keys.current(), value, now) {
            Err(CookieError::UnknownKey) if self.0.keys.reload_if_stale(now)? => {
                session::open(&self.0.keys.current(), value, now)
            }
            other => other,
        };
        result.map_err(|e| match e {
            CookieError::Expired => ApiError::unauthorized("ExpiredCookie", e.to_string()),
            CookieError::UnknownKey | CookieError::Invalid => {
                ApiError::unauthorized("InvalidCookie", e.to_string())
            }
        })
    }

    /// `POST /attest`: verify, appraise, issue a token; returns the token and
    /// the attested-session cookie value with its expiry.
    pub fn attest(
        &self,
        cookie: Option<&str>,
        body: &[u8],
    ) -> Result<(String, String, i64), ApiError> {
        let cookie = cookie.ok_or_else(|| {
            ApiError::unauthorized(
                "CookieNotFound",
                "no kbs-session-id cookie; call /kbs/v0/auth first",
            )
        })?;
        // Read before any key is used: see `TokenEntry::ring`.
        let ring = self.0.keys.retirements();
        let (tee, nonce, session_exp) = match self.open_cookie(cookie)? {
            Session::Pending { tee, nonce, exp } => (tee, nonce, exp),
            Session::Attested { .. } => {
                return Err(ApiError::unauthorized(
                    "InvalidCookie",
                    "this session has already attested; start a new one with /kbs/v0/auth",
                ))
            }
        };
        let attestation: Attestation = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("SerdeError", format!("attestation body: {e}")))?;
        let tee = Tee::new(tee);
        let now = self.now();
        let result = match self.attest_verified(&tee, &attestation, &nonce, session_exp, now, ring)
        {
            // Not an outcome yet: the caller waits and calls again.
            Err(e @ ApiError::CollateralPending { .. }) => return Err(e),
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
        Ok((token, cookie, exp))
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
            .map_err(|e| ApiError::bad_request("JweError", format!("tee-pubkey: {e}")))?;
        let verified = self
            .0
            .verifiers
            .verify_attestation(tee, attestation, nonce, now)
            .map_err(|e| match e {
                VerifyError::Config(_) => ApiError::internal(format!("verifier: {e}")),
                VerifyError::CollateralPending { key, what } => {
                    ApiError::CollateralPending { key, what }
                }
                VerifyError::Malformed(_) => {
                    ApiError::bad_request("AttestationError", e.to_string())
                }
                _ => ApiError::unauthorized("AttestationError", e.to_string()),
            })?;
        let gen = self.0.store.generations()?;
        let policy = self
            .0
            .policies
            .attestation(self.0.store.as_ref(), &gen, tee.as_str(), now)?;
        let appraisal = appraise(&verified, &policy)
            .map_err(|e| ApiError::internal(format!("attestation policy: {e}")))?;
        // Each challenge is answered once, on whichever replica: recorded
        // in the store until the session could expire anyway. Only evidence
        // that verified gets this far, so garbage costs no write. Fails
        // closed: no record, no token.
        if !self.0.store.consume_nonce(nonce, session_exp)? {
            return Err(ApiError::unauthorized(
                "InvalidCookie",
                "this challenge has already been answered; start a new session with /kbs/v0/auth",
            ));
        }
        let status = appraisal.status;
        // The session's first GET usually reaches this replica: the verified
        // token is put in the cache below.
        tracing::info!(tee = %tee, status = status.as_str(), policy = %appraisal.policy_id, "attestation appraised");
        let keys = self.0.keys.current();
        let (token, claims) = issue_token(
            &keys.signer,
            appraisal,
            verified,
            &self.0.settings.token,
            now,
        )
        .map_err(ApiError::internal)?;
        // Cached under the session's cookie only (by the caller): the token
        // text is added when the token is first used as a bearer credential.
        let entry = Arc::new(TokenEntry {
            claims,
            exp: now + self.0.settings.token.lifetime_secs,
            recipient,
            ring,
            responses: Default::default(),
        });
        Ok((status, token, entry))
    }

    /// Resolve a credential into the cached, verified token entry.
    fn token_entry(&self, cred: Credential<'_>) -> Result<Arc<TokenEntry>, ApiError> {
        let now = self.now();
        let ring = self.0.keys.retirements();
        // A session cookie seen before (its exact value was opened, or
        // sealed, here) is not decrypted again, unless a key has left a
        // ring since. An attested session expires with its token.
        let session_key = match cred {
            Credential::Cookie(v) => {
                let k = cache_key(SESSION_KEY, v);
                if let Some(e) = self.0.tokens.get(&k).filter(|e| e.ring == ring) {
                    if now >= e.exp {
                        // As opening the cookie would have said.
                        return Err(ApiError::unauthorized(
                            "ExpiredCookie",
                            CookieError::Expired.to_string(),
                        ));
                    }
                    return Ok(e);
                }
                Some(k)
            }
            Credential::Bearer(_) => None,
        };
        let token = match cred {
            Credential::Cookie(v) => match self.open_cookie(v)? {
                Session::Attested { token, .. } => token,
                Session::Pending { .. } => {
                    return Err(ApiError::unauthorized(
                        "TokenNotFound",
                        "session has not attested yet",
                    ))
                }
            },
            Credential::Bearer(t) => t.to_string(),
        };
        let digest = cache_key(TOKEN_KEY, &token);
        if let Some(e) = self.0.tokens.get(&digest).filter(|e| e.ring == ring) {
            if now >= e.exp {
                return Err(ApiError::unauthorized(
                    "TokenVerifierError",
                    "attestation token has expired",
                ));
            }
            if let Some(k) = session_key {
                self.0.tokens.insert(k, e.clone());
            }
            return Ok(e);
        }
        let claims = match cred {
            // The cookie is authenticated by our session key, and only ever
            // holds a token we issued: its signature need not be re-checked,
            // only that its signing key is still in the ring.
            Credential::Cookie(_) => {
                let t = jwt::UnverifiedJwt::parse(&token)
                    .map_err(|e| ApiError::internal(format!("token in session: {e}")))?;
                if !signed_by_ring(&t.header, &self.0.keys.current()) {
                    return Err(ApiError::unauthorized(
                        "TokenVerifierError",
                        "the session's token was signed by a key that has been retired",
                    ));
                }
                t.claims
            }
            Credential::Bearer(_) => self.verify_bearer(&token, now)?,
        };
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if now >= exp {
            return Err(ApiError::unauthorized(
                "TokenVerifierError",
                "attestation token has expired",
            ));
        }
        let recipient = EarClaims::tee_pubkey(&claims)
            .ok_or_else(|| {
                ApiError::unauthorized("TokenVerifierError", "token carries no tee-pubkey")
            })
            .and_then(|v| {
                serde_json::from_value::<Jwk>(v.clone()).map_err(|e| {
                    ApiError::unauthorized("TokenVerifierError", format!("tee-pubkey: {e}"))
                })
            })
            .and_then(|jwk| {
                Recipient::from_jwk(&jwk).map_err(|e| {
                    ApiError::unauthorized("TokenVerifierError", format!("tee-pubkey: {e}"))
                })
            })?;
        let entry = Arc::new(TokenEntry {
            claims: TokenClaims::parsed(claims),
            exp,
            recipient,
            ring,
            responses: Mutex::new(HashMap::new()),
        });
        // Cached under the credential presented: the cookie value, or the
        // token text (see `TokenCache`).
        self.0
            .tokens
            .insert(session_key.unwrap_or(digest), entry.clone());
        Ok(entry)
    }

    fn verify_bearer(&self, token: &str, now: i64) -> Result<Value, ApiError> {
        let issuer = self.0.settings.token.issuer.as_str();
        let check = |keys: &crate::keys::Keys| {
            let vks: Vec<&jwt::VerifyingKey> = keys.verifying_keys().collect();
            let t = jwt::UnverifiedJwt::parse(token)?;
            let mut ok = Err(JwtError::Signature);
            for k in vks {
                if t.verify_signature(std::slice::from_ref(k)).is_ok() {
                    ok = Ok(());
                    break;
                }
            }
            ok?;
            t.check_time(now, 0)?;
            t.check_issuer(issuer)?;
            Ok::<_, JwtError>(t.claims)
        };
        let result = match check(&self.0.keys.current()) {
            Err(JwtError::Signature) if self.0.keys.reload_if_stale(now)? => {
                check(&self.0.keys.current())
            }
            other => other,
        };
        result
            .map_err(|e| ApiError::unauthorized("TokenVerifierError", format!("bearer token: {e}")))
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
        let cred = cred.ok_or_else(|| {
            ApiError::unauthorized("TokenNotFound", "Attestation Token not found")
        })?;
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
            .map_err(|e| ApiError::internal(format!("resource policy: {e}")))?;
        if !allowed {
            // The caller learns why (the appraisal, never reference values
            // or policy text), and the refusal is logged with the same words.
            return Err(ApiError::forbidden(
                "PolicyDeny",
                format!(
                    "Access denied by policy for resource {key}: {}",
                    entry.claims.appraisal_summary()
                ),
            ));
        }
        let data = self.0.resources.get(self.0.store.as_ref(), &key, &gen)?;
        let jwe = jwe::encrypt(&entry.recipient, &data).map_err(ApiError::internal)?;
        let body = Bytes::from(serde_json::to_vec(&jwe).map_err(ApiError::internal)?);
        entry.remember(&key, gen, body.clone());
        Ok(body)
    }
}

/// A verified token and what has been computed for it. Released resources
/// are cached per path under the store generations they were computed at:
/// while no resource and no policy changed, the same JWE (already encrypted
/// to this token's TEE key) is answered again.
pub(crate) struct TokenEntry {
    /// The token's claims, read by resource policies (converted to an
    /// engine input only if a verdict is not memoized).
    pub claims: TokenClaims,
    pub exp: i64,
    pub recipient: Recipient,
    /// [`KeyManager::retirements`](crate::keys::KeyManager::retirements)
    /// before the credential was verified: if a key has left a ring since,
    /// the entry is not trusted until verified again.
    pub ring: u64,
    responses: Mutex<HashMap<String, (Generations, Bytes)>>,
}

/// Resources remembered per token at most.
const RESPONSES_PER_TOKEN: usize = 32;

impl TokenEntry {
    fn cached(&self, path: &str, gen: &Generations) -> Option<Bytes> {
        let r = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        match r.get(path) {
            Some((g, body)) if g.resources == gen.resources && g.policies == gen.policies => {
                Some(body.clone())
            }
            _ => None,
        }
    }

    fn remember(&self, path: &str, gen: Generations, body: Bytes) {
        let mut r = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= RESPONSES_PER_TOKEN && !r.contains_key(path) {
            r.clear();
        }
        r.insert(path.to_string(), (gen, body));
    }
}

/// Whether a token header's `jwk` is one of the ring's signing keys.
fn signed_by_ring(header: &Value, keys: &crate::keys::Keys) -> bool {
    let jwk = &header["jwk"];
    keys.verifying.iter().any(|(_, _, k)| {
        k.x.as_deref().is_some_and(|x| jwk["x"] == x)
            && k.y.as_deref().is_some_and(|y| jwk["y"] == y)
    })
}

/// [`cache_key`] domains: a token's text, an attested session's cookie value.
const TOKEN_KEY: &[u8] = b"token\0";
const SESSION_KEY: &[u8] = b"session\0";

/// The [`TokenCache`] key of `text` in `domain`.
fn cache_key(domain: &[u8], text: &str) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(domain);
    ctx.update(text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Verified tokens by the exact value of their attested session's cookie
/// (attested here, or opened here), and by their text once presented as a
/// bearer credential. Bounded, and entries are pure caches: expired ones
/// are swept ([`AppState::sweep_expired`]), and a full cache forgets its
/// oldest entry for each new one. Tokens of one server
/// share a lifetime, so the oldest is the first to expire; and evicting one
/// at a time lets the allocator reuse that memory at once, where emptying
/// the whole cache returned it to the system only to fault it in again.
#[derive(Default)]
pub(crate) struct TokenCache {
    inner: Mutex<TokenFifo>,
}

#[derive(Default)]
struct TokenFifo {
    map: HashMap<[u8; 32], Arc<TokenEntry>>,
    /// Keys in insertion order (each key once).
    order: VecDeque<[u8; 32]>,
}

/// Keys cached at most. A session attested here takes one (its cookie
/// value), and one more once its token is also presented as a bearer
/// credential, so this holds the last 1024 sessions at least: seconds of
/// attestations at full load, in which a session's first GETs come.
const TOKEN_CACHE_MAX: usize = 2048;

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, TokenFifo> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, k: &[u8; 32]) -> Option<Arc<TokenEntry>> {
        self.lock().map.get(k).cloned()
    }

    /// Add an entry, evicting the oldest while full.
    fn insert(&self, k: [u8; 32], v: Arc<TokenEntry>) {
        let mut evicted = Vec::new();
        {
            let mut c = self.lock();
            if let Some(old) = c.map.insert(k, v) {
                evicted.push(old);
            } else {
                c.order.push_back(k);
                while c.map.len() > TOKEN_CACHE_MAX {
                    let Some(oldest) = c.order.pop_front() else {
                        break;
                    };
                    evicted.extend(c.map.remove(&oldest));
                }
            }
        }
        // Entries are dropped outside the lock.
        drop(evicted);
    }

    /// Drop the entries of expired tokens; returns how many were dropped.
    fn sweep(&self, now: i64) -> usize {
        let mut dropped = HashSet::new();
        let mut c = self.lock();
        let TokenFifo { map, order } = &mut *c;
        map.retain(|_, e| {
            let live = now < e.exp;
            if !live {
                dropped.insert(Arc::as_ptr(e));
            }
            live
        });
        order.retain(|k| map.contains_key(k));
        if map.capacity() > 2 * map.len().max(64) {
            map.shrink_to_fit();
            order.shrink_to_fit();
        }
        dropped.len()
    }

    /// Tokens cached (each may be found by its text and by a session).
    fn len(&self) -> usize {
        let c = self.lock();
        c.map
            .values()
            .map(Arc::as_ptr)
            .collect::<HashSet<_>>()
            .len()
    }
}

/// Decrypted resources by path, each valid while the store's resource
/// generation is the one it was read at (any resource write, here or in
/// another replica, changes it). Spares the store read and the envelope
/// decryption on every first fetch of a token. The key-encryption key is in
/// this process's memory anyway; cached plaintext is zeroed when dropped.
#[derive(Default)]
pub(crate) struct ResourceCache {
    map: Mutex<HashMap<String, (i64, Plaintext)>>,
}

/// A decrypted resource, zeroed when the last reference goes.
type Plaintext = Arc<Zeroizing<Vec<u8>>>;

/// Resources cached at most, and the largest one cached.
const RESOURCE_CACHE_MAX: usize = 1024;
const RESOURCE_CACHE_MAX_BYTES: usize = 64 * 1024;

impl ResourceCache {
    fn get(&self, store: &dyn Store, path: &str, gen: &Generations) -> Result<Plaintext, ApiError> {
        if let Some((g, data)) = self.map.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            if *g == gen.resources {
                return Ok(data.clone());
            }
        }
        let Some(resource) = store.get_resource(path)? else {
            // Deleted: do not keep its old plaintext around.
            self.map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(path);
            return Err(ApiError::not_found(
                "ResourceNotFound",
                format!("resource {path} does not exist"),
            ));
        };
        let data = Arc::new(Zeroizing::new(resource.data));
        if data.len() <= RESOURCE_CACHE_MAX_BYTES {
            let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() >= RESOURCE_CACHE_MAX && !m.contains_key(path) {
                m.clear();
            }
            m.insert(path.to_string(), (gen.resources, data.clone()));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use ward_proto::jwk::{Curve, TeeKeyPair};

    use super::*;

    fn entry(exp: i64) -> Arc<TokenEntry> {
        let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
        Arc::new(TokenEntry {
            claims: TokenClaims::parsed(json!({})),
            exp,
            recipient: Recipient::from_jwk(&key.public_jwk()).unwrap(),
            ring: 0,
            responses: Default::default(),
        })
    }

    fn key(i: usize) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        k
    }

    #[test]
    fn full_token_cache_forgets_its_oldest_entries_and_sweeps_expired_ones() {
        let (soon, late) = (|| entry(10), || entry(100));
        let cache = TokenCache::default();
        for i in 0..TOKEN_CACHE_MAX {
            cache.insert(key(i), if i < 3 { soon() } else { late() });
        }
        assert_eq!(cache.len(), TOKEN_CACHE_MAX);

        // Full: each new entry pushes out the oldest one, and only that one.
        cache.insert(key(TOKEN_CACHE_MAX), late());
        assert_eq!(cache.len(), TOKEN_CACHE_MAX);
        assert!(cache.get(&key(0)).is_none());
        assert!(cache.get(&key(1)).is_some());
        assert!(cache.get(&key(TOKEN_CACHE_MAX)).is_some());

        // Replacing an entry is not a new one: nothing is evicted.
        cache.insert(key(1), soon());
        assert_eq!(cache.len(), TOKEN_CACHE_MAX);
        assert!(cache.get(&key(2)).is_some());

        // The periodic sweep drops only what has expired (keys 1 and 2)...
        assert_eq!(cache.sweep(50), 2);
        assert_eq!(cache.sweep(50), 0);
        assert_eq!(cache.len(), TOKEN_CACHE_MAX - 2);
        // ...and forgets their place in line: the next two inserts fill the
        // room it made, the third evicts the oldest live entry (key 3).
        for i in 1..=2 {
            cache.insert(key(TOKEN_CACHE_MAX + i), late());
        }
        assert_eq!(cache.len(), TOKEN_CACHE_MAX);
        assert!(cache.get(&key(3)).is_some());
        cache.insert(key(TOKEN_CACHE_MAX + 3), late());
        assert_eq!(cache.len(), TOKEN_CACHE_MAX);
        assert!(cache.get(&key(3)).is_none());
        assert!(cache.get(&key(4)).is_some());

        assert_eq!(cache.sweep(100), TOKEN_CACHE_MAX);
        assert_eq!(cache.len(), 0);
    }
}
