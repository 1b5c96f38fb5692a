//! Key material of the service, kept in the store so every replica and every
//! restart uses the same keys: the token signing key ring (ES256) and the
//! session-cookie key ring (AES-256-GCM). The newest key of a ring is used
//! for new tokens and cookies; every key in the ring is accepted.
//!
//! A key that leaves a ring (two rotations later) is refused at once, also
//! by what was verified under it and cached: [`KeyManager::retirements`]
//! changes with every reload that finds a key gone, and cache entries
//! made before it are checked again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use ward_proto::jwt::{Es256Signer, VerifyingKey};
use ward_store::{AuditEvent, Change, Store};

/// Why the key rings could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("random number generator failed")]
    Random,
    #[error("token key {id}: {reason}")]
    Key { id: String, reason: String },
    #[error("{0}")]
    Generate(String),
    #[error("{0} ring is empty")]
    EmptyRing(&'static str),
    #[error("unknown key ring {0:?}")]
    UnknownRing(String),
    #[error("store: {0}")]
    Store(#[from] ward_store::StoreError),
}

pub const RING_TOKEN: &str = "token-signing";
pub const RING_SESSION: &str = "session";
/// Ed25519 keys (PKCS#8) that sign the audit log's checkpoints.
pub const RING_AUDIT: &str = "audit";

/// Keys kept per ring after a rotation: the new one and its predecessor, so
/// tokens and cookies issued just before the rotation stay valid.
const KEEP_AFTER_ROTATION: usize = 2;

pub struct SessionKey {
    pub id: String,
    pub key: [u8; 32],
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.key.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.key);
    }
}

pub struct Keys {
    pub signer: Es256Signer,
    pub signer_id: String,
    pub verifying: Vec<(String, VerifyingKey, ward_proto::Jwk)>,
    pub session: Vec<SessionKey>,
    /// The audit ring, oldest first: (id, PKCS#8 Ed25519 key).
    pub audit: Vec<(String, zeroize::Zeroizing<Vec<u8>>)>,
}

impl Keys {
    pub fn current_session(&self) -> &SessionKey {
        // `load` guarantees at least one key.
        self.session.last().expect("session ring is never empty")
    }

    pub fn session_key(&self, id: &str) -> Option<&SessionKey> {
        self.session.iter().find(|k| k.id == id)
    }

    pub fn verifying_keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.verifying.iter().map(|(_, k, _)| k)
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| KeyError::Random)?;
    Ok(b)
}

/// Add `material` to `ring` as `id`, recording `audit` (its object named
/// by the id) when given.
fn add_key(
    store: &dyn Store,
    ring: &str,
    id: &str,
    material: &[u8],
    now: i64,
    audit: Option<AuditEvent>,
) -> Result<(), KeyError> {
    let audit = audit.map(|e| e.with("object", format!("key {ring}/{id}")));
    let change = Change::AddKey { ring, id, material };
    store.apply(change, now, audit.as_ref())?;
    Ok(())
}

fn new_token_key(store: &dyn Store, now: i64, audit: Option<AuditEvent>) -> Result<(), KeyError> {
    let (signer, pkcs8) = Es256Signer::generate().map_err(|e| KeyError::Generate(e.to_string()))?;
    let id = hex::encode(&ward_proto::hash::sha256(&signer.public_point())[..8]);
    add_key(store, RING_TOKEN, &id, &pkcs8, now, audit)
}

fn new_audit_key(store: &dyn Store, now: i64, audit: Option<AuditEvent>) -> Result<(), KeyError> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let public = pair.public_key().as_ref().to_vec();
    let id = hex::encode(&ward_proto::hash::sha256(&public)[..8]);
    // The public key goes in the record: checkpoints signed with this key
    // stay verifiable from the log after the key is retired.
    let audit = audit.map(|e| e.with("public_key", ward_proto::b64::std_encode(&public)));
    add_key(store, RING_AUDIT, &id, pkcs8.as_ref(), now, audit)
}

fn new_session_key(store: &dyn Store, now: i64, audit: Option<AuditEvent>) -> Result<(), KeyError> {
    let key = random_bytes::<32>()?;
    let id = hex::encode(random_bytes::<4>()?);
    add_key(store, RING_SESSION, &id, &key, now, audit)
}

/// Loads keys from the store, creating the first ones on first start.
pub struct KeyManager {
    store: Arc<dyn Store>,
    keys: RwLock<Arc<Keys>>,
    last_reload: std::sync::atomic::AtomicI64,
    /// How many reloads found a key gone from a ring.
    retired: AtomicU64,
    /// The store's key-ring change counter when the rings were last read.
    seen: std::sync::atomic::AtomicI64,
}

impl KeyManager {
    pub fn load(store: Arc<dyn Store>, now: i64) -> Result<Self, KeyError> {
        if store.keys(RING_TOKEN)?.is_empty() {
            new_token_key(store.as_ref(), now, Some(AuditEvent::new("start")))?;
        }
        if store.keys(RING_SESSION)?.is_empty() {
            new_session_key(store.as_ref(), now, Some(AuditEvent::new("start")))?;
        }
        if store.keys(RING_AUDIT)?.is_empty() {
            new_audit_key(store.as_ref(), now, Some(AuditEvent::new("start")))?;
        }
        let seen = store.generations()?.keys;
        let keys = Self::read(store.as_ref())?;
        Ok(Self {
            store,
            keys: RwLock::new(Arc::new(keys)),
            last_reload: now.into(),
            retired: AtomicU64::new(0),
            seen: seen.into(),
        })
    }

    fn read(store: &dyn Store) -> Result<Keys, KeyError> {
        let token = store.keys(RING_TOKEN)?;
        let mut verifying = Vec::with_capacity(token.len());
        let mut newest = None;
        for entry in &token {
            let signer = Es256Signer::from_pkcs8(&entry.material).map_err(|e| KeyError::Key {
                id: entry.id.clone(),
                reason: e.to_string(),
            })?;
            let vk = VerifyingKey::es256(&signer.public_point())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let mut jwk = signer.public_jwk().clone();
            jwk.extra.insert("kid".into(), entry.id.clone().into());
            jwk.extra.insert("use".into(), "sig".into());
            verifying.push((entry.id.clone(), vk, jwk));
            newest = Some((entry.id.clone(), signer));
        }
        let (signer_id, signer) = newest.ok_or(KeyError::EmptyRing("token signing"))?;
        let session = store
            .keys(RING_SESSION)?
            .into_iter()
            .filter_map(|e| {
                Some(SessionKey {
                    id: e.id,
                    key: e.material.as_slice().try_into().ok()?,
                })
            })
            .collect::<Vec<_>>();
        if session.is_empty() {
            return Err(KeyError::EmptyRing("session key"));
        }
        let audit = store
            .keys(RING_AUDIT)?
            .into_iter()
            .map(|e| (e.id, zeroize::Zeroizing::new(e.material)))
            .collect::<Vec<_>>();
        if audit.is_empty() {
            return Err(KeyError::EmptyRing("audit signing"));
        }
        Ok(Keys {
            signer,
            signer_id,
            verifying,
            session,
            audit,
        })
    }

    pub fn current(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-read the rings from the store (another replica may have rotated).
    /// At most once per second, so unknown key ids cannot hammer the store.
    pub fn reload_if_stale(&self, now: i64) -> Result<bool, KeyError> {
        let last = self.last_reload.load(std::sync::atomic::Ordering::Relaxed);
        if now <= last {
            return Ok(false);
        }
        self.last_reload
            .store(now, std::sync::atomic::Ordering::Relaxed);
        self.reload()?;
        Ok(true)
    }

    /// Re-read the rings when the store's key-ring change counter moved
    /// since they were last read (cheap otherwise: the counters are
    /// cached, and announced by a shared database); returns whether it did.
    pub fn reload_if_changed(&self) -> Result<bool, KeyError> {
        let now = self.store.generations()?.keys;
        if now == self.seen.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    pub fn reload(&self) -> Result<(), KeyError> {
        // Read before the rings, so that a change after it is seen next time.
        let seen = self.store.generations()?.keys;
        let keys = Self::read(self.store.as_ref())?;
        self.seen.store(seen, Ordering::Release);
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let retired = current
            .verifying
            .iter()
            .any(|(id, _, _)| !keys.verifying.iter().any(|(new, _, _)| new == id))
            || current
                .session
                .iter()
                .any(|k| keys.session_key(&k.id).is_none());
        *current = Arc::new(keys);
        // Under the lock: whoever reads the new count reads the new ring.
        if retired {
            self.retired.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Changes whenever a key has left a ring (here or, once reloaded, on
    /// another replica). What was verified under the ring as it was at an
    /// earlier value must be verified again before it is trusted.
    pub fn retirements(&self) -> u64 {
        self.retired.load(Ordering::SeqCst)
    }

    /// Add a new key to `ring` and drop all but the newest two.
    /// Each key added and retired is recorded in the audit log, by ring
    /// and id (never its material), with `audit` when given.
    pub fn rotate(&self, ring: &str, now: i64, audit: Option<AuditEvent>) -> Result<(), KeyError> {
        // The added key's object is named by `add_key`, once its id is known.
        let added = audit.clone().map(|e| e.with("change", "add"));
        match ring {
            RING_TOKEN => new_token_key(self.store.as_ref(), now, added)?,
            RING_SESSION => new_session_key(self.store.as_ref(), now, added)?,
            RING_AUDIT => new_audit_key(self.store.as_ref(), now, added)?,
            _ => return Err(KeyError::UnknownRing(ring.to_string())),
        }
        let entries = self.store.keys(ring)?;
        let drop_n = entries.len().saturating_sub(KEEP_AFTER_ROTATION);
        for e in entries.iter().take(drop_n) {
            let change = Change::RemoveKey { ring, id: &e.id };
            let retired = audit.clone().map(|a| {
                a.with("object", format!("key {ring}/{}", e.id))
                    .with("change", "retire")
            });
            self.store.apply(change, now, retired.as_ref())?;
        }
        self.reload()
    }
}
