//! The PostgreSQL store, shared by replicas on several hosts.
//!
//! Same tables and columns as the SQLite store (BIGINT for INTEGER, BYTEA
//! for BLOB; the key rings keep their insertion order in an identity column
//! where SQLite has its rowid; and `audit_head`, the log's size, see
//! [`APPEND`]), with the schema version in `ward_schema` and migrations run
//! under an advisory lock, so replicas starting at once on an empty
//! database make one schema.
//!
//! The [`Store`] trait is synchronous. Queries run on this store's own
//! runtime (one thread of its own) and the calling thread waits for them with a
//! deadline ([`PgOptions::op_timeout`]): no call waits longer, whatever the
//! network does. After a call finds the database unreachable, calls fail at
//! once with [`StoreError::Unavailable`] while one of them at a time, at
//! most every [`RETRY_DOWN`], tries again; so a replica cut off from its
//! database answers 503 quickly and recovers by itself.
//!
//! Changes of the change counters are announced with `NOTIFY ward_changes`
//! (a trigger on `counters`, so it is sent at commit and only then); every
//! store listens and drops its cached counters when one arrives, so another
//! replica's change is seen within milliseconds. While the notification
//! connection is down the counters are read again every
//! [`POLL_WITHOUT_NOTIFICATIONS`] ([`Store::change_feed`] says which).

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::audit::{leaf_hash, sha256_hex, AuditEntry, AuditEvent, MAX_AUDIT_READ};
use crate::shared::{
    check_kek_sentinel, contiguous_hashes, duplicate, note, open_key, open_resource, policy_kind,
    resource_digest, rv_body, rv_from, sealed_for, set_counter, text_digest, CounterCache,
    GroupCommit, Grouped, GroupedOut, KEK_CHECK, KEK_CHECK_AAD,
};
use crate::{
    Applied, Change, ChangeFeed, Collateral, CollateralEntry, Generations, Kek, KeyEntry,
    PolicyKind, ReferenceValue, Resource, ResourceMeta, Result, Store, StoreError, StoredPolicy,
};

/// Schema migrations, applied in order; index + 1 is the schema version.
/// They follow the SQLite store's one for one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema; `counters` announces its changes.
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
     CREATE TABLE keyring (ring TEXT NOT NULL, id TEXT NOT NULL, sealed BYTEA NOT NULL,
                           created_at BIGINT NOT NULL,
                           pos BIGINT GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (ring, id));
     CREATE TABLE resources (path TEXT PRIMARY KEY, sealed BYTEA NOT NULL, size BIGINT NOT NULL,
                             version BIGINT NOT NULL, updated_at BIGINT NOT NULL);
     CREATE TABLE policies (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
                            version BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (kind, id));
     CREATE TABLE reference_values (name TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at BIGINT,
                                    version BIGINT NOT NULL, updated_at BIGINT NOT NULL);
     CREATE TABLE meta (name TEXT PRIMARY KEY, sealed BYTEA NOT NULL);
     CREATE FUNCTION ward_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN PERFORM pg_notify('ward_changes', NEW.name); RETURN NEW; END $$;
     CREATE TRIGGER counters_announce AFTER INSERT OR UPDATE ON counters
       FOR EACH ROW EXECUTE FUNCTION ward_announce_change();",
    // 2: cached verification collateral.
    "CREATE TABLE collateral (kind TEXT NOT NULL, key TEXT NOT NULL, body BYTEA NOT NULL,
                             fetched_at BIGINT NOT NULL, PRIMARY KEY (kind, key));",
    // 3: answered attestation nonces, and the readiness probe's row.
    "CREATE TABLE used_nonces (expires_at BIGINT NOT NULL, nonce BYTEA NOT NULL,
                              PRIMARY KEY (expires_at, nonce));
     CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at BIGINT NOT NULL);",
    // 4: the audit log.
    "CREATE TABLE audit_log (idx BIGINT PRIMARY KEY, leaf BYTEA NOT NULL, hash BYTEA NOT NULL);",
    // 5 (PostgreSQL only): the log's size in one row, so that an append is
    // one statement whose row lock orders it (see `APPEND`); SQLite
    // serializes writers itself and reads the size from the index.
    "CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
     INSERT INTO audit_head SELECT 1, COALESCE(MAX(idx) + 1, 0) FROM audit_log;",
];

/// Advisory lock held while migrating ("ward" and 1).
const SCHEMA_LOCK: i64 = 0x7761_7264_0000_0001;

/// After a call finds the database unreachable, how long other calls fail
/// at once before one tries again.
pub const RETRY_DOWN: Duration = Duration::from_secs(1);
/// How often the change counters are read while change notifications are
/// not received.
pub const POLL_WITHOUT_NOTIFICATIONS: Duration = Duration::from_millis(250);
/// How long counters are reused while notifications are received (a
/// safety net: a notification drops them at once).
const REFRESH_WITH_NOTIFICATIONS: Duration = Duration::from_secs(5);
/// How often the notification connection is checked to be alive.
const LISTEN_PING: Duration = Duration::from_secs(2);
/// Attempts of a transaction that hit a serialization failure, a deadlock
/// or a connection lost before its commit.
const ATTEMPTS: usize = 3;

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/dbname?sslmode=…` (libpq URL or
    /// key=value form, as `tokio-postgres` reads it). Never logged: it may
    /// hold a password.
    pub url: String,
    /// PEM file of the CA certificates that sign the server's certificate;
    /// default: the system's roots. Used when `sslmode` is `prefer` (the
    /// default) or `require`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Most connections open at once.
    pub pool_size: usize,
    /// Deadline of every call, connecting and waiting for a connection
    /// included; also the server's `statement_timeout`.
    pub op_timeout: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("op_timeout", &self.op_timeout)
            .finish()
    }
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            pool_size: 16,
            op_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether a URL names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Reachability of the database, shared by every call.
#[derive(Default)]
struct Health {
    /// Since when, and why, the database is unreachable.
    down: Mutex<Option<(Instant, String)>>,
    /// A call is trying while the database is down.
    probing: AtomicBool,
}

impl Health {
    /// Whether a call may go to the database now; `Ok(true)` when it is
    /// the one probing a database that was down.
    fn admit(&self) -> Result<bool> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match down {
            None => Ok(false),
            Some((since, why)) => {
                let waited = since.elapsed() >= RETRY_DOWN;
                if waited
                    && self
                        .probing
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    return Ok(true);
                }
                Err(StoreError::Unavailable(format!(
                    "the database is unreachable ({why}); retrying"
                )))
            }
        }
    }

    fn record(&self, probe: bool, outcome: Option<&str>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            None => {
                if down.take().is_some() {
                    tracing::info!("the database is reachable again");
                }
            }
            Some(why) => {
                if down.is_none() {
                    tracing::warn!(reason = why, "the database is unreachable");
                }
                *down = Some((Instant::now(), why.to_string()));
            }
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
    }
}

/// State shared with the notification listener.
struct Shared {
    counters: CounterCache,
    listening: AtomicBool,
}

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    /// The runtime on this store's own thread, which drives every
    /// database connection; it ends when `stop` is dropped.
    rt: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pool: Pool,
    kek: Kek,
    shared: Arc<Shared>,
    health: Health,
    op_timeout: Duration,
    /// Groups the writes of the attestation and release path.
    group: GroupCommit,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// A single-threaded runtime on a thread of its own, for as long as the
/// returned sender lives. One thread drives every connection: a query
/// costs it little, and waking one thread (rather than a pool of workers
/// that steal work from each other) keeps the cost of a round trip low.
fn runtime_thread() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (started, handle) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ward-postgres".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = started.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            }
        })?;
    let handle = handle
        .recv()
        .map_err(|_| StoreError::Database("the database thread did not start".into()))??;
    Ok((handle, stop))
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Ends the runtime's thread; never blocks, so a store may be
        // dropped on any thread.
        drop(self.stop.take());
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    let code = e.code().cloned();
    match code {
        Some(c)
            if c == SqlState::T_R_SERIALIZATION_FAILURE || c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Conflict(
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default(),
            )
        }
        Some(c) if c == SqlState::QUERY_CANCELED => {
            StoreError::Unavailable("a statement ran past its timeout".into())
        }
        Some(c)
            if c == SqlState::ADMIN_SHUTDOWN
                || c == SqlState::CRASH_SHUTDOWN
                || c == SqlState::CANNOT_CONNECT_NOW
                || c == SqlState::TOO_MANY_CONNECTIONS =>
        {
            StoreError::Unavailable(
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default(),
            )
        }
        Some(_) => StoreError::Database(
            e.as_db_error()
                .map(|d| format!("{}: {}", d.code().code(), d.message()))
                .unwrap_or_else(|| e.to_string()),
        ),
        // No SQLSTATE: the connection failed or closed.
        None => StoreError::Unavailable(connection_reason(&e)),
    }
}

/// Why a connection failed, without the connection string.
fn connection_reason(e: &tokio_postgres::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(e) => pg(e),
        P::Timeout(t) => {
            StoreError::Unavailable(format!("no database connection ({t:?} timed out)"))
        }
        P::Closed => StoreError::Unavailable("the connection pool is closed".into()),
        other => StoreError::Database(other.to_string()),
    }
}

fn rustls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let bad =
                |e: &dyn std::fmt::Display| StoreError::Database(format!("{}: {e}", p.display()));
            for c in CertificateDer::pem_file_iter(p).map_err(|e| bad(&e))? {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no certificate found"));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PostgresStore {
    /// Connect, run migrations and check that `kek` is the key the
    /// database was created with.
    pub fn open(opts: &PgOptions, kek: Kek) -> Result<Self> {
        let mut cfg = tokio_postgres::Config::from_str(&opts.url)
            .map_err(|e| StoreError::Database(format!("the PostgreSQL URL is not valid: {e}")))?;
        let timeout_ms = opts.op_timeout.as_millis().max(1);
        let options = format!(
            "{} -c statement_timeout={timeout_ms}",
            cfg.get_options().unwrap_or_default()
        );
        cfg.options(options.trim())
            .connect_timeout(opts.op_timeout)
            .tcp_user_timeout(opts.op_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        if cfg.get_application_name().is_none() {
            cfg.application_name("ward");
        }
        let tls = MakeRustlsConnect::new(rustls_config(opts.ca_file.as_deref())?);
        let (rt, stop) = runtime_thread()?;
        let pool = {
            let _in = rt.enter();
            let manager = Manager::from_config(
                cfg.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(opts.pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(opts.op_timeout))
                .create_timeout(Some(opts.op_timeout))
                .recycle_timeout(Some(opts.op_timeout))
                .build()
                .map_err(|e| StoreError::Database(e.to_string()))?
        };
        let shared = Arc::new(Shared {
            counters: CounterCache::default(),
            listening: AtomicBool::new(false),
        });
        rt.spawn(listen(cfg, tls, shared.clone()));
        let store = Self {
            rt,
            stop: Some(stop),
            pool,
            kek,
            shared,
            health: Health::default(),
            op_timeout: opts.op_timeout,
            group: GroupCommit::default(),
        };
        store.block(store.migrate())?;
        store.block(store.check_kek())?;
        Ok(store)
    }

    /// Run `fut` on this store's runtime and wait for it, at most
    /// `op_timeout`.
    fn block<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let probe = self.health.admit()?;
        let out = {
            let _in = self.rt.enter();
            futures_executor::block_on(tokio::time::timeout(self.op_timeout, fut))
        };
        let out = match out {
            Ok(r) => r,
            Err(_) => {
                // Connections that did not answer are not reused.
                self.pool.retain(|_, _| false);
                Err(StoreError::Unavailable(format!(
                    "the database did not answer within {:?}",
                    self.op_timeout
                )))
            }
        };
        match &out {
            Err(StoreError::Unavailable(why)) => {
                // Counters held in memory are no longer known to be current.
                self.shared.counters.invalidate();
                self.health.record(probe, Some(why))
            }
            _ => self.health.record(probe, None),
        }
        out
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ward_schema (id INTEGER PRIMARY KEY CHECK (id = 1),
                                                      version BIGINT NOT NULL)",
        )
        .await
        .map_err(pg)?;
        let version: i64 = tx
            .query_opt("SELECT version FROM ward_schema WHERE id = 1", &[])
            .await
            .map_err(pg)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg)?
            .unwrap_or(0);
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported,
            });
        }
        for m in MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(m).await.map_err(pg)?;
        }
        tx.execute(
            "INSERT INTO ward_schema (id, version) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            &[&supported],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn check_kek(&self) -> Result<()> {
        let sealed = self.kek.seal(KEK_CHECK_AAD, KEK_CHECK)?;
        let client = self.pool.get().await.map_err(pool_err)?;
        // Whoever inserts first sets the check value; everyone checks it.
        client
            .execute(
                "INSERT INTO meta (name, sealed) VALUES ('kek-check', $1) ON CONFLICT (name) DO NOTHING",
                &[&sealed],
            )
            .await
            .map_err(pg)?;
        let row = client
            .query_one("SELECT sealed FROM meta WHERE name = 'kek-check'", &[])
            .await
            .map_err(pg)?;
        let stored: Vec<u8> = row.try_get(0).map_err(pg)?;
        check_kek_sentinel(&self.kek, &stored)
    }

    /// Run `f` in a transaction and commit, again (up to [`ATTEMPTS`])
    /// when it hit a serialization failure or deadlock, or lost its
    /// connection before committing. A commit whose answer was lost is
    /// not repeated: its outcome is unknown, and the caller is told so.
    async fn write<T>(&self, f: impl AsyncFn(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            let out: std::result::Result<T, (StoreError, bool)> = async {
                let mut client = self.pool.get().await.map_err(|e| (pool_err(e), false))?;
                let tx = client.transaction().await.map_err(|e| (pg(e), false))?;
                let v = f(&tx).await.map_err(|e| (e, false))?;
                tx.commit().await.map_err(|e| (pg(e), true))?;
                Ok(v)
            }
            .await;
            self.shared.counters.invalidate();
            match out {
                Ok(v) => return Ok(v),
                Err((e, committing)) => {
                    let retry = match &e {
                        StoreError::Conflict(_) => true,
                        StoreError::Unavailable(_) => !committing,
                        _ => false,
                    };
                    if !retry || attempt >= ATTEMPTS {
                        return Err(e);
                    }
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "retrying a database transaction");
                }
            }
        }
    }

    /// Writes of the attestation and release path, committed in groups
    /// ([`GroupCommit`]): one transaction, one audit lock and one commit
    /// for all that arrive while the previous group commits.
    fn grouped(&self, item: Grouped, now: i64) -> Result<GroupedOut> {
        self.group.submit(item, now, |items| {
            let mut outs = Vec::with_capacity(items.len());
            let mut failed = None;
            for (now, item) in items {
                if let Some(e) = &failed {
                    outs.push(Err(duplicate(e)));
                    continue;
                }
                let out = self.block(self.grouped_one(item, *now));
                if let Err(e) = &out {
                    failed = Some(duplicate(e));
                }
                outs.push(out);
            }
            outs
        })
    }

    /// One write of a group: a single statement, so one round trip and
    /// its own atomic commit. The audit index comes from `audit_head`,
    /// whose row lock orders appends across replicas until commit.
    async fn grouped_one(&self, item: &Grouped, now: i64) -> Result<GroupedOut> {
        let client = self.pool.get().await.map_err(pool_err)?;
        match item {
            Grouped::Append(events) => {
                let (leaves, hashes) = leaves_and_hashes(events, now);
                let stmt = client.prepare_cached(APPEND).await.map_err(pg)?;
                let rows = client.query(&stmt, &[&leaves, &hashes]).await.map_err(pg)?;
                let first = first_index(&rows)?;
                Ok(GroupedOut::First(first))
            }
            Grouped::Nonce {
                nonce,
                expires_at,
                event: None,
            } => {
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO used_nonces (expires_at, nonce) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .await
                    .map_err(pg)?;
                let n = client
                    .execute(&stmt, &[expires_at, &nonce.as_bytes()])
                    .await
                    .map_err(pg)?;
                Ok(GroupedOut::Fresh(n == 1))
            }
            Grouped::Nonce {
                nonce,
                expires_at,
                event: Some(e),
            } => {
                let leaf = e.leaf(now);
                let hash = leaf_hash(&leaf).to_vec();
                let stmt = client.prepare_cached(NONCE_AND_RECORD).await.map_err(pg)?;
                let rows = client
                    .query(&stmt, &[expires_at, &nonce.as_bytes(), &leaf, &hash])
                    .await
                    .map_err(pg)?;
                Ok(GroupedOut::Fresh(!rows.is_empty()))
            }
        }
    }

    /// One statement outside a transaction.
    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&stmt, params).await.map_err(pg)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.query(&stmt, params).await.map_err(pg)
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// The row `sql` selects, if any, decoded by `f`.
    fn one<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&tokio_postgres::Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.block(self.query_opt(sql, params))?
            .map(|r| f(&r))
            .transpose()
    }

    /// The rows `sql` selects, decoded by `f`.
    fn all<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&tokio_postgres::Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.block(self.query(sql, params))?.iter().map(f).collect()
    }

    async fn read_generations(&self) -> Result<Generations> {
        let mut g = Generations::default();
        for r in self.query("SELECT name, value FROM counters", &[]).await? {
            let name: String = r.try_get(0).map_err(pg)?;
            set_counter(&mut g, &name, r.try_get(1).map_err(pg)?);
        }
        Ok(g)
    }
}

async fn bump(tx: &Transaction<'_>, counter: &str) -> Result<i64> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO counters (name, value) VALUES ($1, 1)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        )
        .await
        .map_err(pg)?;
    tx.query_one(&stmt, &[&counter])
        .await
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)
}

async fn one_text(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<String>> {
    let stmt = tx.prepare_cached(sql).await.map_err(pg)?;
    tx.query_opt(&stmt, params)
        .await
        .map_err(pg)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(pg)
}

async fn exec_tx(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let stmt = tx.prepare_cached(sql).await.map_err(pg)?;
    tx.execute(&stmt, params).await.map_err(pg)
}

/// Append the leaves (`$1`) and leaf hashes (`$2`) from the next free
/// index: `audit_head` holds the size of the log, and its row stays locked
/// by this transaction until it commits, so concurrent appends (on any
/// replica) get consecutive indexes, in commit order, without gaps.
const APPEND: &str =
    "WITH head AS (UPDATE audit_head SET size = size + cardinality($1::bytea[]) WHERE id = 1
                                 RETURNING size - cardinality($1::bytea[]) AS first)
     INSERT INTO audit_log (idx, leaf, hash)
     SELECT head.first + t.ord - 1, t.leaf, t.hash
       FROM head, unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS t(leaf, hash, ord)
     RETURNING idx";

/// Record answered nonce `$2` (expiry `$1`) and, only when it was fresh,
/// append its attestation's leaf `$3` with hash `$4`: one statement,
/// answering a row exactly when the nonce was fresh.
const NONCE_AND_RECORD: &str =
    "WITH fresh AS (INSERT INTO used_nonces (expires_at, nonce) VALUES ($1, $2)
                                  ON CONFLICT DO NOTHING RETURNING 1),
          head AS (UPDATE audit_head SET size = size + 1
                    WHERE id = 1 AND EXISTS (SELECT 1 FROM fresh) RETURNING size - 1 AS first)
     INSERT INTO audit_log (idx, leaf, hash) SELECT head.first, $3, $4 FROM head RETURNING idx";

/// The smallest index `APPEND` answered (0 for nothing appended).
fn first_index(rows: &[tokio_postgres::Row]) -> Result<u64> {
    let mut first: Option<i64> = None;
    for r in rows {
        let i: i64 = r.try_get(0).map_err(pg)?;
        first = Some(first.map_or(i, |f| f.min(i)));
    }
    Ok(first.unwrap_or_default() as u64)
}

fn leaves_and_hashes(events: &[AuditEvent], now: i64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    events
        .iter()
        .map(|e| {
            let leaf = e.leaf(now);
            let hash = leaf_hash(&leaf).to_vec();
            (leaf, hash)
        })
        .unzip()
}

/// Append `events` from the next free index, in `tx` (see [`APPEND`]).
async fn insert_audit(tx: &Transaction<'_>, events: &[AuditEvent], now: i64) -> Result<u64> {
    let (leaves, hashes) = leaves_and_hashes(events, now);
    let stmt = tx.prepare_cached(APPEND).await.map_err(pg)?;
    let rows = tx.query(&stmt, &[&leaves, &hashes]).await.map_err(pg)?;
    let first = first_index(&rows)?;
    Ok(first)
}

fn meta_of(r: &tokio_postgres::Row) -> Result<ResourceMeta> {
    Ok(ResourceMeta {
        path: r.try_get(0).map_err(pg)?,
        size: r.try_get::<_, i64>(1).map_err(pg)? as u64,
        version: r.try_get(2).map_err(pg)?,
        updated_at: r.try_get(3).map_err(pg)?,
    })
}

fn policy_of(r: &tokio_postgres::Row) -> Result<StoredPolicy> {
    let kind: String = r.try_get(0).map_err(pg)?;
    Ok(StoredPolicy {
        kind: policy_kind(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown policy kind {kind:?}")))?,
        id: r.try_get(1).map_err(pg)?,
        text: r.try_get(2).map_err(pg)?,
        version: r.try_get(3).map_err(pg)?,
        updated_at: r.try_get(4).map_err(pg)?,
    })
}

fn rv_of(r: &tokio_postgres::Row) -> Result<ReferenceValue> {
    let body: String = r.try_get(1).map_err(pg)?;
    rv_from(
        r.try_get(0).map_err(pg)?,
        &body,
        r.try_get(2).map_err(pg)?,
        r.try_get(3).map_err(pg)?,
        r.try_get(4).map_err(pg)?,
    )
}

impl PostgresStore {
    async fn old_resource_digest(
        &self,
        tx: &Transaction<'_>,
        path: &str,
    ) -> Result<Option<String>> {
        let stmt = tx
            .prepare_cached("SELECT sealed FROM resources WHERE path = $1")
            .await
            .map_err(pg)?;
        let sealed: Option<Vec<u8>> = tx
            .query_opt(&stmt, &[&path])
            .await
            .map_err(pg)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg)?;
        resource_digest(&self.kek, path, sealed)
    }

    /// Make one change in `tx` (see the SQLite store's `change_in`).
    async fn change_in(
        &self,
        tx: &Transaction<'_>,
        change: Change<'_>,
        sealed: Option<&[u8]>,
        now: i64,
        mut event: Option<&mut AuditEvent>,
    ) -> Result<Applied> {
        let audited = event.is_some();
        Ok(match change {
            Change::AddKey { ring, id, .. } => {
                let n = exec_tx(
                    tx,
                    "INSERT INTO keyring (ring, id, sealed, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (ring, id) DO NOTHING",
                    &[&ring, &id, &sealed, &now],
                )
                .await?;
                if n == 1 {
                    bump(tx, "keys").await?;
                }
                Applied::Done(n == 1)
            }
            Change::RemoveKey { ring, id } => {
                let n = exec_tx(
                    tx,
                    "DELETE FROM keyring WHERE ring = $1 AND id = $2",
                    &[&ring, &id],
                )
                .await?;
                if n == 1 {
                    bump(tx, "keys").await?;
                }
                Applied::Done(n == 1)
            }
            Change::PutResource { path, data } => {
                if audited {
                    let old = self.old_resource_digest(tx, path).await?;
                    note(&mut event, "old_digest", old.into());
                    note(
                        &mut event,
                        "new_digest",
                        self.kek.keyed_digest("resource", data).into(),
                    );
                }
                let version = bump(tx, "resources").await?;
                let size = data.len() as i64;
                exec_tx(
                    tx,
                    "INSERT INTO resources (path, sealed, size, version, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (path) DO UPDATE SET sealed = $2, size = $3, version = $4, updated_at = $5",
                    &[&path, &sealed, &size, &version, &now],
                )
                .await?;
                note(&mut event, "version", version.into());
                Applied::Resource(ResourceMeta {
                    path: path.into(),
                    size: data.len() as u64,
                    version,
                    updated_at: now,
                })
            }
            Change::DeleteResource { path } => {
                if audited {
                    let old = self.old_resource_digest(tx, path).await?;
                    note(&mut event, "old_digest", old.into());
                }
                bump(tx, "resources").await?;
                let n = exec_tx(tx, "DELETE FROM resources WHERE path = $1", &[&path]).await?;
                Applied::Done(n == 1)
            }
            Change::PutPolicy { kind, id, text } => {
                let k = kind.as_str();
                if audited {
                    let old = one_text(
                        tx,
                        "SELECT body FROM policies WHERE kind = $1 AND id = $2",
                        &[&k, &id],
                    )
                    .await?;
                    note(&mut event, "old_sha256", text_digest(old));
                    note(&mut event, "new_sha256", sha256_hex(text.as_bytes()).into());
                }
                let version = bump(tx, "policies").await?;
                exec_tx(
                    tx,
                    "INSERT INTO policies (kind, id, body, version, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (kind, id) DO UPDATE SET body = $3, version = $4, updated_at = $5",
                    &[&k, &id, &text, &version, &now],
                )
                .await?;
                note(&mut event, "version", version.into());
                Applied::Policy(StoredPolicy {
                    kind,
                    id: id.into(),
                    text: text.into(),
                    version,
                    updated_at: now,
                })
            }
            Change::DeletePolicy { kind, id } => {
                let k = kind.as_str();
                if audited {
                    let old = one_text(
                        tx,
                        "SELECT body FROM policies WHERE kind = $1 AND id = $2",
                        &[&k, &id],
                    )
                    .await?;
                    note(&mut event, "old_sha256", text_digest(old));
                }
                bump(tx, "policies").await?;
                let n = exec_tx(
                    tx,
                    "DELETE FROM policies WHERE kind = $1 AND id = $2",
                    &[&k, &id],
                )
                .await?;
                Applied::Done(n == 1)
            }
            Change::PutReferenceValue(rv) => {
                let body = rv_body(rv)?;
                if audited {
                    let old = one_text(
                        tx,
                        "SELECT body FROM reference_values WHERE name = $1",
                        &[&rv.name],
                    )
                    .await?;
                    note(&mut event, "old_sha256", text_digest(old));
                    note(&mut event, "new_sha256", sha256_hex(body.as_bytes()).into());
                }
                let version = bump(tx, "reference_values").await?;
                exec_tx(
                    tx,
                    "INSERT INTO reference_values (name, body, expires_at, version, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET body = $2, expires_at = $3, version = $4, updated_at = $5",
                    &[&rv.name, &body, &rv.expires_at, &version, &now],
                )
                .await?;
                note(&mut event, "version", version.into());
                Applied::ReferenceValue(ReferenceValue {
                    version,
                    updated_at: now,
                    ..rv.clone()
                })
            }
            Change::DeleteReferenceValue { name } => {
                if audited {
                    let old = one_text(
                        tx,
                        "SELECT body FROM reference_values WHERE name = $1",
                        &[&name],
                    )
                    .await?;
                    note(&mut event, "old_sha256", text_digest(old));
                }
                bump(tx, "reference_values").await?;
                let n =
                    exec_tx(tx, "DELETE FROM reference_values WHERE name = $1", &[&name]).await?;
                Applied::Done(n == 1)
            }
            Change::ConsumeNonce { .. } => {
                return Err(StoreError::Database(
                    "nonces are recorded by `grouped`".into(),
                ))
            }
        })
    }
}

/// Keep one connection listening for change notifications, for as long as
/// the store's runtime runs.
async fn listen(cfg: tokio_postgres::Config, tls: MakeRustlsConnect, shared: Arc<Shared>) {
    let mut logged_down = false;
    loop {
        if let Ok(Ok((client, mut conn))) =
            tokio::time::timeout(LISTEN_PING, cfg.connect(tls.clone())).await
        {
            {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
                let driver = tokio::spawn(async move {
                    while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                if tx.send(()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                let listening =
                    tokio::time::timeout(LISTEN_PING, client.batch_execute("LISTEN ward_changes"))
                        .await;
                if let Ok(Ok(())) = listening {
                    shared.listening.store(true, Ordering::Release);
                    // Changes made before LISTEN took effect were not announced.
                    shared.counters.invalidate();
                    if logged_down {
                        tracing::info!("receiving change notifications again");
                        logged_down = false;
                    }
                    let mut ping = tokio::time::interval(LISTEN_PING);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            n = rx.recv() => match n {
                                Some(()) => shared.counters.invalidate(),
                                None => break,
                            },
                            _ = ping.tick() => {
                                let alive = tokio::time::timeout(LISTEN_PING, client.simple_query("SELECT 1")).await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    shared.listening.store(false, Ordering::Release);
                    shared.counters.invalidate();
                }
                driver.abort();
            }
        }
        if !logged_down {
            tracing::warn!(
                "change notifications from the database are not received; polling every {:?}",
                POLL_WITHOUT_NOTIFICATIONS
            );
            logged_down = true;
        }
        tokio::time::sleep(RETRY_DOWN).await;
    }
}

impl Store for PostgresStore {
    fn apply(&self, change: Change<'_>, now: i64, audit: Option<&AuditEvent>) -> Result<Applied> {
        if let Change::ConsumeNonce { nonce, expires_at } = change {
            let item = Grouped::nonce(nonce, expires_at, audit);
            return self.grouped(item, now)?.applied();
        }
        let sealed = sealed_for(&self.kek, change)?;
        self.block(self.write(async |tx| {
            let mut event = audit.cloned();
            let applied = self
                .change_in(tx, change, sealed.as_deref(), now, event.as_mut())
                .await?;
            if let (true, Some(e)) = (applied.done(), &event) {
                insert_audit(tx, std::slice::from_ref(e), now).await?;
            }
            Ok(applied)
        }))
    }

    fn append_audit(&self, events: &[AuditEvent], now: i64) -> Result<u64> {
        self.grouped(Grouped::Append(events.to_vec()), now)?.first()
    }

    fn audit_size(&self) -> Result<u64> {
        self.block(async {
            let r = self
                .query_opt("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log", &[])
                .await?;
            Ok(r.map(|r| r.try_get::<_, i64>(0))
                .transpose()
                .map_err(pg)?
                .unwrap_or(0) as u64)
        })
    }

    fn audit_entries(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>> {
        let end = end.min(start.saturating_add(MAX_AUDIT_READ));
        let (s, e) = (start as i64, end as i64);
        self.block(async {
            let rows = self
                .query(
                    "SELECT idx, leaf, hash FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                    &[&s, &e],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        index: r.try_get::<_, i64>(0).map_err(pg)? as u64,
                        leaf: r.try_get(1).map_err(pg)?,
                        hash: r.try_get(2).map_err(pg)?,
                    })
                })
                .collect()
        })
    }

    fn audit_hashes(&self, start: u64, end: u64) -> Result<Vec<[u8; 32]>> {
        let (s, e) = (start as i64, end as i64);
        self.block(async {
            let rows = self
                .query(
                    "SELECT idx, hash FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                    &[&s, &e],
                )
                .await?;
            contiguous_hashes(
                start,
                end,
                rows.iter()
                    .map(|r| Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?))),
            )
        })
    }

    fn keys(&self, ring: &str) -> Result<Vec<KeyEntry>> {
        let rows = self.block(self.query(
            "SELECT id, sealed, created_at FROM keyring WHERE ring = $1 ORDER BY pos",
            &[&ring],
        ))?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(pg)?;
                let sealed: Vec<u8> = r.try_get(1).map_err(pg)?;
                let material = open_key(&self.kek, ring, &id, &sealed)?;
                Ok(KeyEntry {
                    id,
                    material,
                    created_at: r.try_get(2).map_err(pg)?,
                })
            })
            .collect()
    }

    fn get_resource(&self, path: &str) -> Result<Option<Resource>> {
        let row = self.block(self.query_opt(
            "SELECT path, size, version, updated_at, sealed FROM resources WHERE path = $1",
            &[&path],
        ))?;
        row.map(|r| {
            let sealed: Vec<u8> = r.try_get(4).map_err(pg)?;
            let data = open_resource(&self.kek, path, &sealed)?;
            Ok(Resource {
                meta: meta_of(&r)?,
                data,
            })
        })
        .transpose()
    }

    fn resource_meta(&self, path: &str) -> Result<Option<ResourceMeta>> {
        self.one(
            "SELECT path, size, version, updated_at FROM resources WHERE path = $1",
            &[&path],
            meta_of,
        )
    }

    fn list_resources(&self) -> Result<Vec<ResourceMeta>> {
        self.all(
            "SELECT path, size, version, updated_at FROM resources ORDER BY path",
            &[],
            meta_of,
        )
    }

    fn get_policy(&self, kind: PolicyKind, id: &str) -> Result<Option<StoredPolicy>> {
        let k = kind.as_str();
        self.one(
            "SELECT kind, id, body, version, updated_at FROM policies WHERE kind = $1 AND id = $2",
            &[&k, &id],
            policy_of,
        )
    }

    fn policy_version(&self, kind: PolicyKind, id: &str) -> Result<Option<i64>> {
        let k = kind.as_str();
        self.block(self.query_opt(
            "SELECT version FROM policies WHERE kind = $1 AND id = $2",
            &[&k, &id],
        ))?
        .map(|r| r.try_get(0).map_err(pg))
        .transpose()
    }

    fn list_policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>> {
        let k = kind.as_str();
        self.all(
            "SELECT kind, id, body, version, updated_at FROM policies WHERE kind = $1 ORDER BY id",
            &[&k],
            policy_of,
        )
    }

    fn get_reference_value(&self, name: &str) -> Result<Option<ReferenceValue>> {
        self.one("SELECT name, body, expires_at, version, updated_at FROM reference_values WHERE name = $1", &[&name], rv_of)
    }

    fn list_reference_values(&self) -> Result<Vec<ReferenceValue>> {
        self.all("SELECT name, body, expires_at, version, updated_at FROM reference_values ORDER BY name", &[], rv_of)
    }

    fn generations(&self) -> Result<Generations> {
        let ttl = if self.shared.listening.load(Ordering::Acquire) {
            REFRESH_WITH_NOTIFICATIONS
        } else {
            POLL_WITHOUT_NOTIFICATIONS
        };
        self.shared
            .counters
            .get(ttl, || self.block(self.read_generations()))
    }

    fn change_feed(&self) -> ChangeFeed {
        if self.shared.listening.load(Ordering::Acquire) {
            ChangeFeed::Notified
        } else {
            ChangeFeed::Polling
        }
    }

    fn put_collateral(&self, kind: &str, key: &str, body: &[u8], now: i64) -> Result<()> {
        self.block(self.exec(
            "INSERT INTO collateral (kind, key, body, fetched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
            &[&kind, &key, &body, &now],
        ))
        .map(|_| ())
    }

    fn get_collateral(&self, kind: &str, key: &str) -> Result<Option<Collateral>> {
        self.block(self.query_opt(
            "SELECT body, fetched_at FROM collateral WHERE kind = $1 AND key = $2",
            &[&kind, &key],
        ))?
        .map(|r| {
            Ok(Collateral {
                body: r.try_get(0).map_err(pg)?,
                fetched_at: r.try_get(1).map_err(pg)?,
            })
        })
        .transpose()
    }

    fn list_collateral(&self, kind: &str) -> Result<Vec<CollateralEntry>> {
        self.block(self.query(
            "SELECT key, fetched_at FROM collateral WHERE kind = $1 ORDER BY key",
            &[&kind],
        ))?
        .iter()
        .map(|r| {
            Ok(CollateralEntry {
                key: r.try_get(0).map_err(pg)?,
                fetched_at: r.try_get(1).map_err(pg)?,
            })
        })
        .collect()
    }

    fn sweep_nonces(&self, now: i64) -> Result<usize> {
        self.block(self.exec("DELETE FROM used_nonces WHERE expires_at <= $1", &[&now]))
            .map(|n| n as usize)
    }

    fn check_writable(&self, now: i64) -> Result<()> {
        self.block(self.exec(
            "INSERT INTO heartbeat (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            &[&now],
        ))
        .map(|_| ())
    }
}
