//! The embedded SQLite store.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::audit::{leaf_hash, sha256_hex, AuditEntry, AuditEvent, MAX_AUDIT_READ};
use crate::shared::{
    check_kek_sentinel, contiguous_hashes, duplicate, note, open_key, open_resource, policy_kind,
    resource_digest, rv_body, rv_from, sealed_for, set_counter, text_digest, CounterCache,
    GroupCommit, Grouped, GroupedOut, KEK_CHECK, KEK_CHECK_AAD,
};
use crate::{
    Applied, Change, Collateral, CollateralEntry, Generations, Kek, KeyEntry, PolicyKind,
    ReferenceValue, Resource, ResourceMeta, Result, Store, StoreError, StoredPolicy,
};

/// Schema migrations, applied in order; index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     CREATE TABLE keyring (ring TEXT NOT NULL, id TEXT NOT NULL, sealed BLOB NOT NULL,
                           created_at INTEGER NOT NULL, PRIMARY KEY (ring, id));
     CREATE TABLE resources (path TEXT PRIMARY KEY, sealed BLOB NOT NULL, size INTEGER NOT NULL,
                             version INTEGER NOT NULL, updated_at INTEGER NOT NULL);
     CREATE TABLE policies (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
                            version INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (kind, id));
     CREATE TABLE reference_values (name TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at INTEGER,
                                    version INTEGER NOT NULL, updated_at INTEGER NOT NULL);
     CREATE TABLE meta (name TEXT PRIMARY KEY, sealed BLOB NOT NULL);",
    // 2: cached verification collateral (public documents: AMD VCEKs, Intel
    // TCB info, CRLs), keyed by kind and the key of its source.
    "CREATE TABLE collateral (kind TEXT NOT NULL, key TEXT NOT NULL, body BLOB NOT NULL,
                             fetched_at INTEGER NOT NULL, PRIMARY KEY (kind, key));",
    // 3: attestation nonces already answered, kept until their session
    // expires so that a replayed /attest is refused on every replica. Keyed
    // by (expiry, nonce): a challenge's expiry is sealed with it, so a
    // replay has both equal; one b-tree, filled at its right edge (a commit
    // rewrites about one page), swept by a range delete.
    // The heartbeat row is rewritten by readiness probes.
    "CREATE TABLE used_nonces (expires_at INTEGER NOT NULL, nonce BLOB NOT NULL,
                              PRIMARY KEY (expires_at, nonce)) WITHOUT ROWID;
     CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);",
    // 4: the audit log: entries indexed from 0 without gaps, each with its
    // RFC 9162 leaf hash. Rows are only ever inserted.
    "CREATE TABLE audit_log (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL, hash BLOB NOT NULL);",
];

/// Number of pooled connections (readers run concurrently in WAL mode).
const POOL: usize = 4;

/// How long [`Store::generations`] may answer from memory: writes through
/// this store are seen at once, writes by another process sharing the file
/// within this time.
pub const DEFAULT_REFRESH: Duration = Duration::from_millis(100);

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    path: std::path::PathBuf,
    conns: Vec<Mutex<Connection>>,
    /// Records answered challenges: `synchronous = NORMAL`, so a commit
    /// is not flushed to disk by itself (see [`Store::consume_nonce`]).
    nonces: Mutex<Connection>,
    /// Groups the writes made on `nonces`.
    group: GroupCommit,
    next: AtomicUsize,
    kek: Kek,
    /// The last counters read; every local commit invalidates them.
    counters: CounterCache,
    refresh: Duration,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    Ok(conn)
}

/// Below this much free space on the database's file system the store
/// reports itself unable to write (SQLite may still fit a small write in
/// pages it holds, but a resource or a new key may not fit).
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// Bytes available to this process on the file system holding `dir`.
fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the struct passed, and `c` is a
    // NUL-terminated path that outlives the call.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, run migrations and
    /// check that `kek` is the key the database was created with.
    pub fn open(path: &Path, kek: Kek) -> Result<Self> {
        let mut first = open_conn(path)?;
        migrate(&mut first)?;
        let nonces = open_conn(path)?;
        nonces
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        let nonces = Mutex::new(nonces);
        let mut conns = vec![Mutex::new(first)];
        for _ in 1..POOL {
            conns.push(Mutex::new(open_conn(path)?));
        }
        let store = Self {
            path: path.to_path_buf(),
            conns,
            nonces,
            group: GroupCommit::default(),
            next: AtomicUsize::new(0),
            kek,
            counters: CounterCache::default(),
            refresh: DEFAULT_REFRESH,
        };
        store.check_kek()?;
        Ok(store)
    }

    /// How long change counters read from the file are reused before they
    /// are read again (default [`DEFAULT_REFRESH`]; zero reads every time).
    /// Bounds how late this process sees policy and resource changes made by
    /// another process on the same file.
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    fn read_generations(&self) -> Result<Generations> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, value FROM counters")
            .map_err(db)?;
        let mut g = Generations::default();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db)?;
        for row in rows {
            let (name, value) = row.map_err(db)?;
            set_counter(&mut g, &name, value);
        }
        Ok(g)
    }

    fn check_kek(&self) -> Result<()> {
        self.with_write(|tx| {
            let existing: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT sealed FROM meta WHERE name = 'kek-check'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            match existing {
                Some(sealed) => check_kek_sentinel(&self.kek, &sealed)?,
                None => {
                    let sealed = self.kek.seal(KEK_CHECK_AAD, KEK_CHECK)?;
                    tx.execute(
                        "INSERT INTO meta (name, sealed) VALUES ('kek-check', ?1)",
                        params![sealed],
                    )
                    .map_err(db)?;
                }
            }
            Ok(())
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Try each pooled connection without blocking, then wait on one.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.conns.len() {
            if let Ok(c) = self.conns[(start + i) % self.conns.len()].try_lock() {
                return c;
            }
        }
        let m = &self.conns[start % self.conns.len()];
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = f(&tx)?;
        let committed = tx.commit().map_err(db);
        // Even a failed commit may have changed the file: drop cached counters.
        self.counters.invalidate();
        committed?;
        Ok(out)
    }

    /// A write that changes no change counter (so cached counters stay
    /// valid): one statement in its own transaction.
    fn execute_uncounted(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        stmt.execute(params).map_err(db)
    }

    fn bump(tx: &rusqlite::Transaction<'_>, counter: &str) -> Result<i64> {
        tx.query_row(
            "INSERT INTO counters (name, value) VALUES (?1, 1)
             ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
            params![counter],
            |r| r.get(0),
        )
        .map_err(db)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(m).map_err(db)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db)?;
    }
    tx.commit().map_err(db)
}

fn meta_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResourceMeta> {
    Ok(ResourceMeta {
        path: r.get(0)?,
        size: r.get::<_, i64>(1)? as u64,
        version: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

fn policy_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredPolicy> {
    let kind: String = r.get(0)?;
    Ok(StoredPolicy {
        kind: policy_kind(&kind).unwrap_or(PolicyKind::Resource),
        id: r.get(1)?,
        text: r.get(2)?,
        version: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

fn rv_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, Option<i64>, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn rv_from_row(row: (String, String, Option<i64>, i64, i64)) -> Result<ReferenceValue> {
    let (name, body, expires_at, version, updated_at) = row;
    rv_from(name, &body, expires_at, version, updated_at)
}

/// Append `events` from the next free index, in `tx`.
fn insert_audit(tx: &rusqlite::Transaction<'_>, events: &[AuditEvent], now: i64) -> Result<u64> {
    let next: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db)?;
    let mut stmt = tx
        .prepare_cached("INSERT INTO audit_log (idx, leaf, hash) VALUES (?1, ?2, ?3)")
        .map_err(db)?;
    for (i, e) in events.iter().enumerate() {
        let leaf = e.leaf(now);
        let hash = leaf_hash(&leaf);
        stmt.execute(params![next + i as i64, leaf, hash.as_slice()])
            .map_err(db)?;
    }
    Ok(next as u64)
}

impl SqliteStore {
    /// Writes of the attestation and release path (answered challenges
    /// with their records, releases, refusals), committed in groups
    /// ([`GroupCommit`]) on the connection that does not wait for an fsync
    /// (see [`Change::ConsumeNonce`]): in WAL mode they are visible to every
    /// connection and process at once and survive a crash of this process,
    /// but are flushed to disk only with the next flushed commit or
    /// checkpoint, so a power loss may forget the last ones, and an
    /// attestation or release does not wait for an fsync.
    fn grouped(&self, item: Grouped, now: i64) -> Result<GroupedOut> {
        self.group
            .submit(item, now, |items| match self.commit_group(items) {
                Ok(outs) => outs.into_iter().map(Ok).collect(),
                Err(e) => items.iter().map(|_| Err(duplicate(&e))).collect(),
            })
    }

    /// One group in one transaction: all of it is stored, or none.
    fn commit_group(&self, items: &[(i64, Grouped)]) -> Result<Vec<GroupedOut>> {
        let mut conn = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut outs = Vec::with_capacity(items.len());
        for (now, item) in items {
            outs.push(match item {
                Grouped::Append(events) => GroupedOut::First(insert_audit(&tx, events, *now)?),
                Grouped::Nonce {
                    nonce,
                    expires_at,
                    event,
                } => {
                    const SQL: &str = "INSERT INTO used_nonces (expires_at, nonce) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
                    let fresh = tx
                        .prepare_cached(SQL)
                        .and_then(|mut s| s.execute(params![expires_at, nonce.as_bytes()]))
                        .map_err(db)?
                        == 1;
                    if let (true, Some(e)) = (fresh, event) {
                        insert_audit(&tx, std::slice::from_ref(e), *now)?;
                    }
                    GroupedOut::Fresh(fresh)
                }
            });
        }
        tx.commit().map_err(db)?;
        Ok(outs)
    }

    /// SHA-256 of the text `sql` selects, or null when there is none.
    fn old_digest(
        tx: &rusqlite::Transaction<'_>,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<serde_json::Value> {
        let old: Option<String> = tx
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(p, |r| r.get(0)).optional())
            .map_err(db)?;
        Ok(text_digest(old))
    }

    fn old_policy_digest(
        tx: &rusqlite::Transaction<'_>,
        kind: PolicyKind,
        id: &str,
    ) -> Result<serde_json::Value> {
        Self::old_digest(
            tx,
            "SELECT body FROM policies WHERE kind = ?1 AND id = ?2",
            params![kind.as_str(), id],
        )
    }

    fn old_rv_digest(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<serde_json::Value> {
        Self::old_digest(
            tx,
            "SELECT body FROM reference_values WHERE name = ?1",
            params![name],
        )
    }

    /// Make one change in `tx`; `sealed` is the sealed content of an added
    /// key or a put resource. Completes `event` with the content digests.
    fn change_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        change: Change<'_>,
        sealed: Option<&[u8]>,
        now: i64,
        mut event: Option<&mut AuditEvent>,
    ) -> Result<Applied> {
        let audited = event.is_some();
        let mut note = |name: &str, v: serde_json::Value| note(&mut event, name, v);
        Ok(match change {
            Change::AddKey { ring, id, .. } => {
                let n = tx
                    .execute(
                        "INSERT INTO keyring (ring, id, sealed, created_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(ring, id) DO NOTHING",
                        params![ring, id, sealed, now],
                    )
                    .map_err(db)?;
                if n == 1 {
                    Self::bump(tx, "keys")?;
                }
                Applied::Done(n == 1)
            }
            Change::RemoveKey { ring, id } => {
                let n = tx
                    .execute(
                        "DELETE FROM keyring WHERE ring = ?1 AND id = ?2",
                        params![ring, id],
                    )
                    .map_err(db)?;
                if n == 1 {
                    Self::bump(tx, "keys")?;
                }
                Applied::Done(n == 1)
            }
            Change::PutResource { path, data } => {
                if audited {
                    let old = self.old_resource_digest(tx, path)?;
                    note("old_digest", old.into());
                    note("new_digest", self.kek.keyed_digest("resource", data).into());
                }
                let version = Self::bump(tx, "resources")?;
                tx.execute(
                    "INSERT INTO resources (path, sealed, size, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(path) DO UPDATE SET sealed = ?2, size = ?3, version = ?4, updated_at = ?5",
                    params![path, sealed, data.len() as i64, version, now],
                )
                .map_err(db)?;
                note("version", version.into());
                Applied::Resource(ResourceMeta {
                    path: path.into(),
                    size: data.len() as u64,
                    version,
                    updated_at: now,
                })
            }
            Change::DeleteResource { path } => {
                if audited {
                    let old = self.old_resource_digest(tx, path)?;
                    note("old_digest", old.into());
                }
                Self::bump(tx, "resources")?;
                Applied::Done(
                    tx.execute("DELETE FROM resources WHERE path = ?1", params![path])
                        .map_err(db)?
                        == 1,
                )
            }
            Change::PutPolicy { kind, id, text } => {
                if audited {
                    note("old_sha256", Self::old_policy_digest(tx, kind, id)?);
                    note("new_sha256", sha256_hex(text.as_bytes()).into());
                }
                let version = Self::bump(tx, "policies")?;
                tx.execute(
                    "INSERT INTO policies (kind, id, body, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(kind, id) DO UPDATE SET body = ?3, version = ?4, updated_at = ?5",
                    params![kind.as_str(), id, text, version, now],
                )
                .map_err(db)?;
                note("version", version.into());
                Applied::Policy(StoredPolicy {
                    kind,
                    id: id.into(),
                    text: text.into(),
                    version,
                    updated_at: now,
                })
            }
            Change::DeletePolicy { kind, id } => {
                if audited {
                    note("old_sha256", Self::old_policy_digest(tx, kind, id)?);
                }
                Self::bump(tx, "policies")?;
                Applied::Done(
                    tx.execute(
                        "DELETE FROM policies WHERE kind = ?1 AND id = ?2",
                        params![kind.as_str(), id],
                    )
                    .map_err(db)?
                        == 1,
                )
            }
            Change::PutReferenceValue(rv) => {
                // A single value is stored as itself, a list as a list
                // (older stores hold lists only).
                let body = rv_body(rv)?;
                if audited {
                    note("old_sha256", Self::old_rv_digest(tx, &rv.name)?);
                    note("new_sha256", sha256_hex(body.as_bytes()).into());
                }
                let version = Self::bump(tx, "reference_values")?;
                tx.execute(
                    "INSERT INTO reference_values (name, body, expires_at, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(name) DO UPDATE SET body = ?2, expires_at = ?3, version = ?4, updated_at = ?5",
                    params![rv.name, body, rv.expires_at, version, now],
                )
                .map_err(db)?;
                note("version", version.into());
                Applied::ReferenceValue(ReferenceValue {
                    version,
                    updated_at: now,
                    ..rv.clone()
                })
            }
            Change::DeleteReferenceValue { name } => {
                if audited {
                    note("old_sha256", Self::old_rv_digest(tx, name)?);
                }
                Self::bump(tx, "reference_values")?;
                Applied::Done(
                    tx.execute(
                        "DELETE FROM reference_values WHERE name = ?1",
                        params![name],
                    )
                    .map_err(db)?
                        == 1,
                )
            }
            Change::ConsumeNonce { .. } => {
                return Err(StoreError::Database(
                    "nonces are recorded by `consume`".into(),
                ))
            }
        })
    }

    /// The keyed digest of a stored resource's content, if there is one.
    fn old_resource_digest(
        &self,
        tx: &rusqlite::Transaction<'_>,
        path: &str,
    ) -> Result<Option<String>> {
        let sealed: Option<Vec<u8>> = tx
            .prepare_cached("SELECT sealed FROM resources WHERE path = ?1")
            .and_then(|mut s| s.query_row(params![path], |r| r.get(0)).optional())
            .map_err(db)?;
        resource_digest(&self.kek, path, sealed)
    }
}

impl Store for SqliteStore {
    fn apply(&self, change: Change<'_>, now: i64, audit: Option<&AuditEvent>) -> Result<Applied> {
        if let Change::ConsumeNonce { nonce, expires_at } = change {
            let item = Grouped::nonce(nonce, expires_at, audit);
            return self.grouped(item, now)?.applied();
        }
        let sealed = sealed_for(&self.kek, change)?;
        self.with_write(|tx| {
            let mut event = audit.cloned();
            let applied = self.change_in(tx, change, sealed.as_deref(), now, event.as_mut())?;
            if let (true, Some(e)) = (applied.done(), &event) {
                insert_audit(tx, std::slice::from_ref(e), now)?;
            }
            Ok(applied)
        })
    }

    fn append_audit(&self, events: &[AuditEvent], now: i64) -> Result<u64> {
        self.grouped(Grouped::Append(events.to_vec()), now)?.first()
    }

    fn audit_size(&self) -> Result<u64> {
        let conn = self.conn();
        let n: i64 = conn
            .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db)?;
        Ok(n as u64)
    }

    fn audit_entries(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>> {
        let end = end.min(start.saturating_add(MAX_AUDIT_READ));
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT idx, leaf, hash FROM audit_log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![start as i64, end as i64], |r| {
                Ok(AuditEntry {
                    index: r.get::<_, i64>(0)? as u64,
                    leaf: r.get(1)?,
                    hash: r.get(2)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn audit_hashes(&self, start: u64, end: u64) -> Result<Vec<[u8; 32]>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT idx, hash FROM audit_log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![start as i64, end as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(db)?;
        contiguous_hashes(start, end, rows.map(|r| r.map_err(db)))
    }

    fn keys(&self, ring: &str) -> Result<Vec<KeyEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, sealed, created_at FROM keyring WHERE ring = ?1 ORDER BY rowid",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![ring], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, sealed, created_at) = row.map_err(db)?;
            let material = open_key(&self.kek, ring, &id, &sealed)?;
            out.push(KeyEntry {
                id,
                material,
                created_at,
            });
        }
        Ok(out)
    }

    fn get_resource(&self, path: &str) -> Result<Option<Resource>> {
        let row = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT path, size, version, updated_at, sealed FROM resources WHERE path = ?1",
                )
                .map_err(db)?;
            stmt.query_row(params![path], |r| {
                Ok((meta_row(r)?, r.get::<_, Vec<u8>>(4)?))
            })
            .optional()
            .map_err(db)?
        };
        match row {
            None => Ok(None),
            Some((meta, sealed)) => {
                let data = open_resource(&self.kek, path, &sealed)?;
                Ok(Some(Resource { meta, data }))
            }
        }
    }

    fn resource_meta(&self, path: &str) -> Result<Option<ResourceMeta>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT path, size, version, updated_at FROM resources WHERE path = ?1")
            .map_err(db)?;
        stmt.query_row(params![path], meta_row)
            .optional()
            .map_err(db)
    }

    fn list_resources(&self) -> Result<Vec<ResourceMeta>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT path, size, version, updated_at FROM resources ORDER BY path")
            .map_err(db)?;
        let rows = stmt.query_map([], meta_row).map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn get_policy(&self, kind: PolicyKind, id: &str) -> Result<Option<StoredPolicy>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT kind, id, body, version, updated_at FROM policies WHERE kind = ?1 AND id = ?2")
            .map_err(db)?;
        stmt.query_row(params![kind.as_str(), id], policy_row)
            .optional()
            .map_err(db)
    }

    fn policy_version(&self, kind: PolicyKind, id: &str) -> Result<Option<i64>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT version FROM policies WHERE kind = ?1 AND id = ?2")
            .map_err(db)?;
        stmt.query_row(params![kind.as_str(), id], |r| r.get(0))
            .optional()
            .map_err(db)
    }

    fn list_policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT kind, id, body, version, updated_at FROM policies WHERE kind = ?1 ORDER BY id")
            .map_err(db)?;
        let rows = stmt
            .query_map(params![kind.as_str()], policy_row)
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn get_reference_value(&self, name: &str) -> Result<Option<ReferenceValue>> {
        let row = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, body, expires_at, version, updated_at FROM reference_values WHERE name = ?1",
                )
                .map_err(db)?;
            stmt.query_row(params![name], rv_row)
                .optional()
                .map_err(db)?
        };
        row.map(rv_from_row).transpose()
    }

    fn put_collateral(&self, kind: &str, key: &str, body: &[u8], now: i64) -> Result<()> {
        self.with_write(|tx| {
            tx.execute(
                "INSERT INTO collateral (kind, key, body, fetched_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
                params![kind, key, body, now],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn get_collateral(&self, kind: &str, key: &str) -> Result<Option<Collateral>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT body, fetched_at FROM collateral WHERE kind = ?1 AND key = ?2")
            .map_err(db)?;
        stmt.query_row(params![kind, key], |r| {
            Ok(Collateral {
                body: r.get(0)?,
                fetched_at: r.get(1)?,
            })
        })
        .optional()
        .map_err(db)
    }

    fn list_collateral(&self, kind: &str) -> Result<Vec<CollateralEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT key, fetched_at FROM collateral WHERE kind = ?1 ORDER BY key")
            .map_err(db)?;
        let rows = stmt
            .query_map(params![kind], |r| {
                Ok(CollateralEntry {
                    key: r.get(0)?,
                    fetched_at: r.get(1)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn sweep_nonces(&self, now: i64) -> Result<usize> {
        self.execute_uncounted(
            "DELETE FROM used_nonces WHERE expires_at <= ?1",
            params![now],
        )
    }

    fn check_writable(&self, now: i64) -> Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Some(available) = available_bytes(dir) {
            if available < MIN_FREE_BYTES {
                return Err(StoreError::DiskFull {
                    path: dir.display().to_string(),
                    available,
                    needed: MIN_FREE_BYTES,
                });
            }
        }
        self.execute_uncounted(
            "INSERT INTO heartbeat (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            params![now],
        )
        .map(|_| ())
    }

    fn list_reference_values(&self) -> Result<Vec<ReferenceValue>> {
        let rows = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached("SELECT name, body, expires_at, version, updated_at FROM reference_values ORDER BY name")
                .map_err(db)?;
            let rows = stmt.query_map([], rv_row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)?
        };
        rows.into_iter().map(rv_from_row).collect()
    }

    fn generations(&self) -> Result<Generations> {
        self.counters.get(self.refresh, || self.read_generations())
    }
}
