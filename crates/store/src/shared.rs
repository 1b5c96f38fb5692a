//! What the SQLite and PostgreSQL stores share: row encodings, the bound
//! data of sealed rows, and the cache of change counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::audit::sha256_hex;
use crate::{Generations, PolicyKind, ReferenceValue, Result, StoreError};

/// Sentinel sealed with the KEK on first use, to detect a wrong KEK at start.
pub(crate) const KEK_CHECK: &[u8] = b"ward key-encryption key check v1";
/// The row of [`KEK_CHECK`] in `meta`, and its bound data.
pub(crate) const KEK_CHECK_AAD: &[u8] = b"meta:kek-check";

/// Check the sealed sentinel read from `meta` against `kek`.
pub(crate) fn check_kek_sentinel(kek: &crate::Kek, sealed: &[u8]) -> Result<()> {
    let plain = kek
        .open(KEK_CHECK_AAD, sealed)
        .map_err(StoreError::Decrypt)?;
    if plain != KEK_CHECK {
        return Err(StoreError::Decrypt("key check value differs".into()));
    }
    Ok(())
}

pub(crate) fn resource_aad(path: &str) -> Vec<u8> {
    format!("resource:{path}").into_bytes()
}

pub(crate) fn key_aad(ring: &str, id: &str) -> Vec<u8> {
    format!("key:{ring}/{id}").into_bytes()
}

/// What `change` stores sealed (a key's material, a resource's content),
/// sealed under its row's bound data; done before the transaction, so
/// that the write lock is held for SQL only.
pub(crate) fn sealed_for(kek: &crate::Kek, change: crate::Change<'_>) -> Result<Option<Vec<u8>>> {
    Ok(match change {
        crate::Change::AddKey { ring, id, material } => {
            Some(kek.seal(&key_aad(ring, id), material)?)
        }
        crate::Change::PutResource { path, data } => Some(kek.seal(&resource_aad(path), data)?),
        _ => None,
    })
}

/// A key's material from its sealed row.
pub(crate) fn open_key(kek: &crate::Kek, ring: &str, id: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    kek.open(&key_aad(ring, id), sealed)
        .map_err(StoreError::Decrypt)
}

/// A resource's content from its sealed row.
pub(crate) fn open_resource(kek: &crate::Kek, path: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    kek.open(&resource_aad(path), sealed)
        .map_err(StoreError::Decrypt)
}

/// The keyed digest (as the audit log records it) of a stored resource's
/// content, from its sealed row if there is one.
pub(crate) fn resource_digest(
    kek: &crate::Kek,
    path: &str,
    sealed: Option<Vec<u8>>,
) -> Result<Option<String>> {
    sealed
        .map(|s| Ok(kek.keyed_digest("resource", &open_resource(kek, path, &s)?)))
        .transpose()
}

pub(crate) fn policy_kind(s: &str) -> Option<PolicyKind> {
    match s {
        "resource" => Some(PolicyKind::Resource),
        "attestation" => Some(PolicyKind::Attestation),
        _ => None,
    }
}

/// The stored body of a reference value: a single value as itself, a list
/// as a list (older stores hold lists only).
pub(crate) fn rv_body(rv: &ReferenceValue) -> Result<String> {
    match rv.values.as_slice() {
        [one] if rv.single => serde_json::to_string(one),
        _ => serde_json::to_string(&rv.values),
    }
    .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A reference value from its stored columns.
pub(crate) fn rv_from(
    name: String,
    body: &str,
    expires_at: Option<i64>,
    version: i64,
    updated_at: i64,
) -> Result<ReferenceValue> {
    let parsed: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("reference value {name:?}: {e}")))?;
    let (values, single) = match parsed {
        serde_json::Value::Array(a) => (a, false),
        one => (vec![one], true),
    };
    Ok(ReferenceValue {
        name,
        values,
        single,
        expires_at,
        version,
        updated_at,
    })
}

/// The audit digest of public stored text: SHA-256, or null when none.
pub(crate) fn text_digest(old: Option<String>) -> serde_json::Value {
    old.map(|t| sha256_hex(t.as_bytes())).into()
}

/// Set a field of the event being completed, if there is one.
pub(crate) fn note(event: &mut Option<&mut crate::AuditEvent>, name: &str, v: serde_json::Value) {
    if let Some(e) = event.as_deref_mut() {
        e.set(name, v);
    }
}

/// Leaf hashes read in index order, checked to be exactly `start..end`.
pub(crate) fn contiguous_hashes(
    start: u64,
    end: u64,
    rows: impl IntoIterator<Item = Result<(i64, Vec<u8>)>>,
) -> Result<Vec<[u8; 32]>> {
    let mut out = Vec::with_capacity(end.saturating_sub(start).min(1 << 20) as usize);
    let mut next = start;
    for row in rows {
        let (idx, h) = row?;
        if idx as u64 != next {
            return Err(StoreError::Corrupt(format!(
                "audit log: entry {next} is missing"
            )));
        }
        out.push(h.try_into().map_err(|_| {
            StoreError::Corrupt(format!("audit log: entry {idx} has a malformed hash"))
        })?);
        next += 1;
    }
    if next < end {
        return Err(StoreError::Corrupt(format!(
            "audit log: entry {next} is missing"
        )));
    }
    Ok(out)
}

/// The last change counters read, reused for a while: local writes and
/// change notifications invalidate it at once.
#[derive(Default)]
pub(crate) struct CounterCache {
    /// When, and at which epoch, the counters were read.
    cached: Mutex<Option<(Instant, u64, Generations)>>,
    /// Bumped after every local commit and every change notification; a
    /// cached read from an older epoch is not used.
    epoch: AtomicU64,
}

impl CounterCache {
    pub(crate) fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The cached counters if read less than `ttl` ago at this epoch, else
    /// what `read` answers.
    pub(crate) fn get(
        &self,
        ttl: Duration,
        read: impl FnOnce() -> Result<Generations>,
    ) -> Result<Generations> {
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some((at, e, g)) = *self.cached.lock().unwrap_or_else(|p| p.into_inner()) {
            if e == epoch && at.elapsed() < ttl {
                return Ok(g);
            }
        }
        let at = Instant::now();
        let g = read()?;
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, epoch, g));
        Ok(g)
    }
}

/// Fill `g` from one `(name, value)` row of the counters table.
pub(crate) fn set_counter(g: &mut Generations, name: &str, value: i64) {
    match name {
        "resources" => g.resources = value,
        "policies" => g.policies = value,
        "reference_values" => g.reference_values = value,
        "keys" => g.keys = value,
        _ => {}
    }
}

/// One write of the attestation and release path, committed with others
/// that arrive meanwhile ([`GroupCommit`]).
pub(crate) enum Grouped {
    /// Events to append (a release, a refusal).
    Append(Vec<crate::AuditEvent>),
    /// A challenge answered, with the attestation's record.
    Nonce {
        nonce: String,
        expires_at: i64,
        event: Option<crate::AuditEvent>,
    },
}

impl Grouped {
    pub(crate) fn nonce(nonce: &str, expires_at: i64, event: Option<&crate::AuditEvent>) -> Self {
        Self::Nonce {
            nonce: nonce.to_string(),
            expires_at,
            event: event.cloned(),
        }
    }
}

impl GroupedOut {
    /// What a nonce write did, as [`crate::Store::apply`] answers it.
    pub(crate) fn applied(self) -> Result<crate::Applied> {
        match self {
            Self::Fresh(fresh) => Ok(crate::Applied::Done(fresh)),
            Self::First(_) => Err(crate::Applied::wrong("a nonce")),
        }
    }

    /// The first index of an append.
    pub(crate) fn first(self) -> Result<u64> {
        match self {
            Self::First(first) => Ok(first),
            Self::Fresh(_) => Err(crate::Applied::wrong("an append")),
        }
    }
}

/// What a [`Grouped`] write did: the index of the first appended event, or
/// whether a nonce was fresh.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GroupedOut {
    First(u64),
    Fresh(bool),
}

/// A copy of an error for every writer of a failed group.
pub(crate) fn duplicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Conflict(s) => StoreError::Conflict(s.clone()),
        StoreError::DiskFull {
            path,
            available,
            needed,
        } => StoreError::DiskFull {
            path: path.clone(),
            available: *available,
            needed: *needed,
        },
        other => StoreError::Database(other.to_string()),
    }
}

struct GroupState {
    queue: Vec<(u64, i64, Grouped)>,
    /// A writer is committing a group.
    busy: bool,
    next_ticket: u64,
    done: std::collections::HashMap<u64, Result<GroupedOut>>,
}

/// Group commit: concurrent writers of the attestation and release path
/// share one transaction (one commit, one extension of the audit log)
/// instead of queueing for a transaction each. The first writer to find
/// nobody committing commits everything queued, then what queued
/// meanwhile, until the queue is empty; the others wait for their result.
/// Each write's outcome is its own (a store may commit a group in one
/// transaction, failing all of it together, or write by write).
pub(crate) struct GroupCommit {
    state: Mutex<GroupState>,
    finished: std::sync::Condvar,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            state: Mutex::new(GroupState {
                queue: Vec::new(),
                busy: false,
                next_ticket: 0,
                done: Default::default(),
            }),
            finished: std::sync::Condvar::new(),
        }
    }
}

impl GroupCommit {
    /// Write `item` at `now` in the next group; `commit` writes one group
    /// and answers each item's outcome, in order.
    pub(crate) fn submit(
        &self,
        item: Grouped,
        now: i64,
        commit: impl Fn(&[(i64, Grouped)]) -> Vec<Result<GroupedOut>>,
    ) -> Result<GroupedOut> {
        let lock = || self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, now, item));
        loop {
            if let Some(r) = st.done.remove(&ticket) {
                return r;
            }
            if !st.busy {
                break;
            }
            st = self.finished.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        // This writer commits until the queue is empty.
        st.busy = true;
        while !st.queue.is_empty() {
            let group = std::mem::take(&mut st.queue);
            drop(st);
            let (tickets, items): (Vec<u64>, Vec<(i64, Grouped)>) =
                group.into_iter().map(|(t, n, i)| (t, (n, i))).unzip();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(&items)))
                .unwrap_or_default();
            st = lock();
            let mut outcome = outcome.into_iter();
            for t in tickets {
                let r = outcome
                    .next()
                    .unwrap_or_else(|| Err(StoreError::Database("a group commit failed".into())));
                st.done.insert(t, r);
            }
            self.finished.notify_all();
        }
        st.busy = false;
        self.finished.notify_all();
        st.done
            .remove(&ticket)
            .unwrap_or_else(|| Err(StoreError::Database("a group commit lost a write".into())))
    }
}
