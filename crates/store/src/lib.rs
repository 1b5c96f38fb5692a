//! Persistence for the trust service behind one trait, [`Store`].
//!
//! The embedded default is [`SqliteStore`]: one SQLite file (WAL mode, so
//! several `ward serve` processes on one host can share it), versioned schema
//! migrations, and envelope encryption of every secret at rest: resources and
//! key material are sealed with a fresh data key that is wrapped by the
//! key-encryption key ([`Kek`]) and bound to the row it belongs to.
//!
//! For replicas on several hosts, [`PostgresStore`] implements the same
//! trait on PostgreSQL with the same tables (see its module for deadlines,
//! failure and change notifications).
//!
//! The store holds no business logic and exposes no SQL; the schema is kept
//! portable (TEXT, INTEGER, BLOB).
//!
//! Every change goes through [`Store::apply`], which can append an
//! [`AuditEvent`] to the audit log in the same transaction: a change is
//! never committed without its record, nor a record without its change.

pub mod audit;
pub mod files;
mod kek;
pub mod postgres;
mod shared;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use audit::{AuditEntry, AuditEvent};
pub use kek::{Kek, KekError, KEK_ENV};
pub use postgres::{PgOptions, PostgresStore};
pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};

/// Why a store operation failed. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data could not be decrypted ({0}); is this the right key-encryption key?")]
    Decrypt(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("key-encryption key: {0}")]
    Kek(#[from] KekError),
    #[error("database schema version {found} is newer than this ward supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// The database cannot be reached or did not answer in time; the
    /// caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A transaction conflicted with a concurrent one and was rolled back.
    #[error("database conflict: {0}")]
    Conflict(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: the disk is full ({available} bytes available, at least {needed} needed)")]
    DiskFull {
        path: String,
        available: u64,
        needed: u64,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Metadata of a stored resource (never its content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceMeta {
    /// `repo/type/tag`.
    pub path: String,
    pub size: u64,
    /// Changes on every write; unique across delete and re-create.
    pub version: i64,
    pub updated_at: i64,
}

/// A resource with its content.
#[derive(Clone, PartialEq, Eq)]
pub struct Resource {
    pub meta: ResourceMeta,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("meta", &self.meta)
            .field("data", &"<redacted>")
            .finish()
    }
}

/// Which kind of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    Resource,
    Attestation,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resource => "resource",
            Self::Attestation => "attestation",
        }
    }
}

/// A stored policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub kind: PolicyKind,
    pub id: String,
    pub text: String,
    pub version: i64,
    pub updated_at: i64,
}

/// Counters that change whenever anything of their kind changes, read in
/// one cheap query so caches can be validated on every request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Generations {
    pub resources: i64,
    pub policies: i64,
    pub reference_values: i64,
    /// Key rings (cookie, token and audit keys).
    pub keys: i64,
}

/// A reference value: a name and the list of values accepted for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceValue {
    pub name: String,
    pub values: Vec<serde_json::Value>,
    /// Given as one value rather than a list (an RVPS payload
    /// `{"major_version": 1}`): Trustee's `query_reference_value` then
    /// answers the value itself, not a list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single: bool,
    /// Unix seconds after which the value is no longer served to policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub updated_at: i64,
}

/// A key in a keyring (cookie keys, token signing keys). Material is the
/// decrypted secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub id: String,
    pub material: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A change to stored data, made by [`Store::apply`].
#[derive(Clone, Copy)]
pub enum Change<'a> {
    /// Add a key unless one with this id exists.
    AddKey {
        ring: &'a str,
        id: &'a str,
        material: &'a [u8],
    },
    RemoveKey {
        ring: &'a str,
        id: &'a str,
    },
    /// Create or replace a resource.
    PutResource {
        path: &'a str,
        data: &'a [u8],
    },
    DeleteResource {
        path: &'a str,
    },
    PutPolicy {
        kind: PolicyKind,
        id: &'a str,
        text: &'a str,
    },
    DeletePolicy {
        kind: PolicyKind,
        id: &'a str,
    },
    PutReferenceValue(&'a ReferenceValue),
    DeleteReferenceValue {
        name: &'a str,
    },
    /// Record that the single-use value `nonce` (an attestation challenge)
    /// has been answered, until `expires_at` (Unix seconds, fixed for the
    /// nonce: it is sealed with it). Not done when the pair was already
    /// recorded: the caller must refuse the replay. Every process sharing
    /// the backing database sees the record at once, and it survives a
    /// crash of this process; an implementation may trade its durability
    /// across a power loss for speed, and must say so.
    ConsumeNonce {
        nonce: &'a str,
        expires_at: i64,
    },
}

impl std::fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: never key material or resource content.
        match self {
            Self::AddKey { ring, id, .. } => write!(f, "AddKey({ring}/{id})"),
            Self::RemoveKey { ring, id } => write!(f, "RemoveKey({ring}/{id})"),
            Self::PutResource { path, data } => {
                write!(f, "PutResource({path}, {} bytes)", data.len())
            }
            Self::DeleteResource { path } => write!(f, "DeleteResource({path})"),
            Self::PutPolicy { kind, id, .. } => write!(f, "PutPolicy({}/{id})", kind.as_str()),
            Self::DeletePolicy { kind, id } => write!(f, "DeletePolicy({}/{id})", kind.as_str()),
            Self::PutReferenceValue(rv) => write!(f, "PutReferenceValue({})", rv.name),
            Self::DeleteReferenceValue { name } => write!(f, "DeleteReferenceValue({name})"),
            Self::ConsumeNonce { .. } => write!(f, "ConsumeNonce"),
        }
    }
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// For adds, removals and nonces: whether anything changed (a key with
    /// that id existed, there was nothing to delete, a replayed nonce).
    Done(bool),
    Resource(ResourceMeta),
    Policy(StoredPolicy),
    ReferenceValue(ReferenceValue),
}

impl Applied {
    /// Whether the change took effect.
    pub fn done(&self) -> bool {
        !matches!(self, Self::Done(false))
    }

    pub(crate) fn wrong(what: &str) -> StoreError {
        StoreError::Database(format!(
            "the store answered another kind of change than {what}"
        ))
    }

    pub fn resource(self) -> Result<ResourceMeta> {
        match self {
            Self::Resource(m) => Ok(m),
            _ => Err(Self::wrong("a resource")),
        }
    }

    pub fn policy(self) -> Result<StoredPolicy> {
        match self {
            Self::Policy(p) => Ok(p),
            _ => Err(Self::wrong("a policy")),
        }
    }

    pub fn reference_value(self) -> Result<ReferenceValue> {
        match self {
            Self::ReferenceValue(rv) => Ok(rv),
            _ => Err(Self::wrong("a reference value")),
        }
    }
}

/// Persistence of the trust service. Implementations must be safe to share
/// between threads and between processes (replicas) using the same backing
/// database. Writes are atomic: a failed write leaves stored data intact.
pub trait Store: Send + Sync {
    /// Make `change` at `now`, and when `audit` is given append it to the
    /// audit log in the same transaction, completed with what the store
    /// knows of the change (`time`; for content: the old and new content
    /// digests, keyed for resources, and the version). A change that did
    /// not take effect (see [`Applied::done`]) records nothing.
    fn apply(&self, change: Change<'_>, now: i64, audit: Option<&AuditEvent>) -> Result<Applied>;

    /// Append events that record no change of stored data (a release, a
    /// refusal) to the audit log, in one transaction; returns the index of
    /// the first. Nothing is appended when it fails.
    fn append_audit(&self, events: &[AuditEvent], now: i64) -> Result<u64>;
    /// Number of entries in the audit log.
    fn audit_size(&self) -> Result<u64>;
    /// Entries `start..end` (at most [`audit::MAX_AUDIT_READ`], and not past
    /// the end of the log).
    fn audit_entries(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>>;
    /// The RFC 9162 leaf hashes of entries `start..end`, as stored (an
    /// error when any is missing).
    fn audit_hashes(&self, start: u64, end: u64) -> Result<Vec<[u8; 32]>>;

    /// Keys of one keyring, in insertion order (oldest first).
    fn keys(&self, ring: &str) -> Result<Vec<KeyEntry>>;
    /// Add a key unless one with this id exists; returns whether it was added.
    fn add_key(&self, ring: &str, id: &str, material: &[u8], now: i64) -> Result<bool> {
        Ok(self
            .apply(Change::AddKey { ring, id, material }, now, None)?
            .done())
    }
    /// Remove a key; returns whether it existed.
    fn remove_key(&self, ring: &str, id: &str) -> Result<bool> {
        Ok(self.apply(Change::RemoveKey { ring, id }, 0, None)?.done())
    }

    /// Create or replace a resource.
    fn put_resource(&self, path: &str, data: &[u8], now: i64) -> Result<ResourceMeta> {
        self.apply(Change::PutResource { path, data }, now, None)?
            .resource()
    }
    fn get_resource(&self, path: &str) -> Result<Option<Resource>>;
    fn resource_meta(&self, path: &str) -> Result<Option<ResourceMeta>>;
    fn delete_resource(&self, path: &str) -> Result<bool> {
        Ok(self.apply(Change::DeleteResource { path }, 0, None)?.done())
    }
    fn list_resources(&self) -> Result<Vec<ResourceMeta>>;

    fn put_policy(&self, kind: PolicyKind, id: &str, text: &str, now: i64) -> Result<StoredPolicy> {
        self.apply(Change::PutPolicy { kind, id, text }, now, None)?
            .policy()
    }
    fn get_policy(&self, kind: PolicyKind, id: &str) -> Result<Option<StoredPolicy>>;
    /// The version of a policy, without its text (cheap: called per request).
    fn policy_version(&self, kind: PolicyKind, id: &str) -> Result<Option<i64>>;
    fn delete_policy(&self, kind: PolicyKind, id: &str) -> Result<bool> {
        Ok(self
            .apply(Change::DeletePolicy { kind, id }, 0, None)?
            .done())
    }
    fn list_policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>>;

    fn put_reference_value(&self, rv: &ReferenceValue, now: i64) -> Result<ReferenceValue> {
        self.apply(Change::PutReferenceValue(rv), now, None)?
            .reference_value()
    }
    fn get_reference_value(&self, name: &str) -> Result<Option<ReferenceValue>>;
    fn delete_reference_value(&self, name: &str) -> Result<bool> {
        Ok(self
            .apply(Change::DeleteReferenceValue { name }, 0, None)?
            .done())
    }
    fn list_reference_values(&self) -> Result<Vec<ReferenceValue>>;
    /// A number that changes whenever any reference value changes (cheap).
    fn reference_values_generation(&self) -> Result<i64> {
        Ok(self.generations()?.reference_values)
    }
    /// All change counters in one read.
    fn generations(&self) -> Result<Generations>;

    /// Cache a public verification document (an AMD VCEK, Intel TCB info,
    /// a CRL) under `kind` and `key` (its source URL path, FMSPC, …).
    /// Not encrypted: collateral is public and signed by its issuer, and is
    /// verified every time it is used.
    fn put_collateral(&self, kind: &str, key: &str, body: &[u8], now: i64) -> Result<()>;
    fn get_collateral(&self, kind: &str, key: &str) -> Result<Option<Collateral>>;
    /// Keys and fetch times of one kind.
    fn list_collateral(&self, kind: &str) -> Result<Vec<CollateralEntry>>;

    /// See [`Change::ConsumeNonce`]: returns `false` for a replay.
    fn consume_nonce(&self, nonce: &str, expires_at: i64) -> Result<bool> {
        Ok(self
            .apply(Change::ConsumeNonce { nonce, expires_at }, 0, None)?
            .done())
    }
    /// Forget consumed nonces whose expiry is at or before `now` (their
    /// sessions can no longer be opened); returns how many were dropped.
    fn sweep_nonces(&self, now: i64) -> Result<usize>;

    /// Whether the store can take writes now: a write that commits, and
    /// room left on the disk (an error naming the path when it is full).
    /// Cheap enough for a readiness probe.
    fn check_writable(&self, now: i64) -> Result<()>;

    /// How changes by other processes sharing the database reach this one.
    fn change_feed(&self) -> ChangeFeed {
        ChangeFeed::Polling
    }
}

/// How a store learns of changes made by other processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeFeed {
    /// The database announces them (PostgreSQL `LISTEN/NOTIFY`).
    Notified,
    /// The change counters are read again after a short time.
    Polling,
}

/// One collateral document in a listing: its key and when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralEntry {
    pub key: String,
    pub fetched_at: i64,
}

/// A cached collateral document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collateral {
    pub body: Vec<u8>,
    pub fetched_at: i64,
}

/// A store whose audit log is switched off (`[audit] enabled = false`):
/// changes are made without their records, and decisions are not
/// recorded. Everything else goes to the wrapped store.
pub struct WithoutAudit(pub std::sync::Arc<dyn Store>);

impl Store for WithoutAudit {
    fn apply(&self, change: Change<'_>, now: i64, _: Option<&AuditEvent>) -> Result<Applied> {
        self.0.apply(change, now, None)
    }
    fn append_audit(&self, _: &[AuditEvent], _: i64) -> Result<u64> {
        self.0.audit_size()
    }
    fn audit_size(&self) -> Result<u64> {
        self.0.audit_size()
    }
    fn audit_entries(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>> {
        self.0.audit_entries(start, end)
    }
    fn audit_hashes(&self, start: u64, end: u64) -> Result<Vec<[u8; 32]>> {
        self.0.audit_hashes(start, end)
    }
    fn keys(&self, ring: &str) -> Result<Vec<KeyEntry>> {
        self.0.keys(ring)
    }
    fn get_resource(&self, path: &str) -> Result<Option<Resource>> {
        self.0.get_resource(path)
    }
    fn resource_meta(&self, path: &str) -> Result<Option<ResourceMeta>> {
        self.0.resource_meta(path)
    }
    fn list_resources(&self) -> Result<Vec<ResourceMeta>> {
        self.0.list_resources()
    }
    fn get_policy(&self, kind: PolicyKind, id: &str) -> Result<Option<StoredPolicy>> {
        self.0.get_policy(kind, id)
    }
    fn policy_version(&self, kind: PolicyKind, id: &str) -> Result<Option<i64>> {
        self.0.policy_version(kind, id)
    }
    fn list_policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>> {
        self.0.list_policies(kind)
    }
    fn get_reference_value(&self, name: &str) -> Result<Option<ReferenceValue>> {
        self.0.get_reference_value(name)
    }
    fn list_reference_values(&self) -> Result<Vec<ReferenceValue>> {
        self.0.list_reference_values()
    }
    fn generations(&self) -> Result<Generations> {
        self.0.generations()
    }
    fn put_collateral(&self, kind: &str, key: &str, body: &[u8], now: i64) -> Result<()> {
        self.0.put_collateral(kind, key, body, now)
    }
    fn get_collateral(&self, kind: &str, key: &str) -> Result<Option<Collateral>> {
        self.0.get_collateral(kind, key)
    }
    fn list_collateral(&self, kind: &str) -> Result<Vec<CollateralEntry>> {
        self.0.list_collateral(kind)
    }
    fn sweep_nonces(&self, now: i64) -> Result<usize> {
        self.0.sweep_nonces(now)
    }
    fn check_writable(&self, now: i64) -> Result<()> {
        self.0.check_writable(now)
    }
    fn change_feed(&self) -> ChangeFeed {
        self.0.change_feed()
    }
}
