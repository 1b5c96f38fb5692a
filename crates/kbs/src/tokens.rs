//! Attestation tokens presented for resources: the bearer and session
//! checks, and the cache of verified tokens with what was released to each.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde_json::Value;
use ward_proto::ear::EarClaims;
use ward_proto::jwe::Recipient;
use ward_proto::jwt::{self, JwtError};
use ward_proto::Jwk;
use ward_store::Generations;
use ward_verifier::TokenClaims;

use crate::error::ApiError;
use crate::session::{CookieError, Session, SessionError};
use crate::state::AppState;

/// Why a presented token is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("Attestation Token not found")]
    Missing,
    #[error("session has not attested yet")]
    NotAttested,
    #[error("attestation token has expired")]
    Expired,
    #[error("bearer token: {0}")]
    BadSignature(JwtError),
    #[error("the session's token was signed by a key that has been retired")]
    RetiredKey,
    #[error("token carries no tee-pubkey")]
    NoTeeKey,
    #[error("tee-pubkey: {0}")]
    BadTeeKey(String),
    /// A token in a session we sealed that does not parse (our fault).
    #[error("token in session: {0}")]
    Unreadable(JwtError),
}

/// Where a resource request's token came from.
pub enum Credential<'a> {
    Cookie(&'a str),
    Bearer(&'a str),
}

impl AppState {
    /// Resolve a credential into the cached, verified token entry.
    pub(crate) fn token_entry(&self, cred: Credential<'_>) -> Result<Arc<TokenEntry>, ApiError> {
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
                        return Err(SessionError::Cookie(CookieError::Expired).into());
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
                Session::Pending { .. } => return Err(TokenError::NotAttested.into()),
            },
            Credential::Bearer(t) => t.to_string(),
        };
        let digest = cache_key(TOKEN_KEY, &token);
        if let Some(e) = self.0.tokens.get(&digest).filter(|e| e.ring == ring) {
            if now >= e.exp {
                return Err(TokenError::Expired.into());
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
                let t = jwt::UnverifiedJwt::parse(&token).map_err(TokenError::Unreadable)?;
                if !signed_by_ring(&t.header, &self.0.keys.current()) {
                    return Err(TokenError::RetiredKey.into());
                }
                t.claims
            }
            Credential::Bearer(_) => self.verify_bearer(&token, now)?,
        };
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if now >= exp {
            return Err(TokenError::Expired.into());
        }
        let jwk = EarClaims::tee_pubkey(&claims).ok_or(TokenError::NoTeeKey)?;
        let jwk = serde_json::from_value::<Jwk>(jwk.clone())
            .map_err(|e| TokenError::BadTeeKey(e.to_string()))?;
        let recipient =
            Recipient::from_jwk(&jwk).map_err(|e| TokenError::BadTeeKey(e.to_string()))?;
        let entry = Arc::new(TokenEntry {
            claims: TokenClaims::parsed(claims),
            exp,
            recipient,
            ring,
            token_id: ward_store::audit::sha256_hex(token.as_bytes()),
            responses: responses(),
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
        Ok(result.map_err(TokenError::BadSignature)?)
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
    /// SHA-256 of the token text (hex): how the audit log names the token
    /// without holding it.
    pub token_id: String,
    pub(crate) responses: Mutex<Responses>,
}

/// Resources remembered per token at most.
const RESPONSES_PER_TOKEN: usize = 32;

/// Released resources of one token by path, with the generations they
/// were computed at.
pub(crate) type Responses = quick_cache::unsync::Cache<String, (Generations, Bytes)>;

/// An empty [`Responses`].
pub(crate) fn responses() -> Mutex<Responses> {
    Mutex::new(Responses::new(RESPONSES_PER_TOKEN))
}

impl TokenEntry {
    pub(crate) fn cached(&self, path: &str, gen: &Generations) -> Option<Bytes> {
        let r = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        match r.get(path) {
            Some((g, body)) if g.resources == gen.resources && g.policies == gen.policies => {
                Some(body.clone())
            }
            _ => None,
        }
    }

    pub(crate) fn remember(&self, path: &str, gen: Generations, body: Bytes) {
        let mut r = self.responses.lock().unwrap_or_else(|e| e.into_inner());
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
pub(crate) const TOKEN_KEY: &[u8] = b"token\0";
pub(crate) const SESSION_KEY: &[u8] = b"session\0";

/// The [`TokenCache`] key of `text` in `domain`.
pub(crate) fn cache_key(domain: &[u8], text: &str) -> [u8; 32] {
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

    pub(crate) fn get(&self, k: &[u8; 32]) -> Option<Arc<TokenEntry>> {
        self.lock().map.get(k).cloned()
    }

    /// Add an entry, evicting the oldest while full.
    pub(crate) fn insert(&self, k: [u8; 32], v: Arc<TokenEntry>) {
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
    pub(crate) fn sweep(&self, now: i64) -> usize {
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
    pub(crate) fn len(&self) -> usize {
        let c = self.lock();
        c.map
            .values()
            .map(Arc::as_ptr)
            .collect::<HashSet<_>>()
            .len()
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
            token_id: String::new(),
            responses: responses(),
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
