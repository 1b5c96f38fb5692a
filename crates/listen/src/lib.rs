//! Serving an axum [`Router`] on a TCP listener (plain or TLS, HTTP/1.1 and
//! HTTP/2) so that no peer can hold the server's time or descriptors
//! without bound. Every listener of ward (the trust service, the guest API)
//! goes through [`serve`].
//!
//! What bounds what:
//!
//! * **First request**: a connection must complete its TLS handshake, the
//!   HTTP version detection and the headers of its first request within
//!   [`Limits::first_request`], or it is closed. This covers sockets that
//!   send nothing, and partial or complete HTTP/2 prefaces with no request.
//! * **Idle**: a connection with no request in flight is closed after
//!   [`Limits::idle`] without one (keep-alive HTTP/1.1, HTTP/2 that answers
//!   pings but sends nothing, a stalled second request's headers).
//! * **Request bodies** must arrive whole within [`Limits::body`] of the
//!   request's start (a `Content-Length: 1000` body trickled a byte every
//!   two seconds fails with [`BodyTimeout`]).
//! * **HTTP/2** sends keep-alive pings and closes a peer that does not
//!   answer them; HTTP/1.1 has hyper's header read timeout.
//! * **Connections** are capped at [`Limits::max_connections`], and below
//!   the process's descriptor limit. At the cap, the connection idle for
//!   longest is closed to admit the new one, so idle sockets cannot lock
//!   out a real client; when every connection has a request in flight,
//!   accepting pauses until one ends (the kernel's backlog holds the rest).
//! * **Accept errors** (out of descriptors and the like) back off
//!   exponentially up to a second, and free the longest-idle connection.
//!
//! It does not bound how long a handler runs: operations that wait on a
//! peer carry their own deadlines.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a peer may take, and how many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once (lowered to fit the descriptor limit).
    pub max_connections: usize,
    /// From accept to the first request's headers (TLS handshake included).
    pub first_request: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle: Duration,
    /// A request's body must be read whole within this time of its start.
    pub body: Duration,
    /// HTTP/2 ping interval; a peer that does not answer within the same
    /// time is disconnected.
    pub http2_keepalive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body: Duration::from_secs(10),
            http2_keepalive: Duration::from_secs(20),
        }
    }
}

/// Descriptors kept free for everything but connections (the store, logs,
/// outgoing requests).
pub const RESERVED_DESCRIPTORS: usize = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Counters and gauges of one listener; register them with
/// [`ListenerMetrics::register`]. Cheap to clone (shared values).
#[derive(Clone, Default, Debug)]
pub struct ListenerMetrics {
    open: Gauge,
    limit: Gauge,
    closed: Family<ReasonLabel, Counter>,
    accept_errors: Counter,
    body_timeouts: Counter,
    at_limit: Counter,
}

impl ListenerMetrics {
    /// Add the metrics to `registry` (names `connections_open`,
    /// `connections_limit`, `connections_closed_total{reason}`,
    /// `accept_errors_total`, `request_body_timeouts_total`,
    /// `connections_at_limit_total`, under the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_open",
            "Connections currently open",
            self.open.clone(),
        );
        registry.register(
            "connections_limit",
            "Most connections open at once (configured, lowered to fit the descriptor limit)",
            self.limit.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed by the server before the peer closed them, by reason",
            self.closed.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts (such as running out of file descriptors)",
            self.accept_errors.clone(),
        );
        registry.register(
            "request_body_timeouts",
            "Requests whose body did not arrive within the body deadline",
            self.body_timeouts.clone(),
        );
        registry.register(
            "connections_at_limit",
            "Times a connection arrived with the connection cap reached",
            self.at_limit.clone(),
        );
    }

    fn closed(&self, reason: &'static str) {
        self.closed.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Connections open now.
    pub fn open(&self) -> i64 {
        self.open.get()
    }

    /// Connections the server closed for `reason` (`first_request_timeout`,
    /// `idle_timeout`, `evicted`, `tls_handshake`).
    pub fn closed_for(&self, reason: &'static str) -> u64 {
        self.closed.get_or_create(&ReasonLabel { reason }).get()
    }
}

/// The error a request body yields when it did not arrive in time. Handlers
/// see it as the source of their body extractor's rejection (see
/// [`is_body_timeout`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// Whether `e` or one of its sources is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Where connections run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// As tasks of the runtime that calls [`serve`] (needed when handlers
    /// use `block_in_place`, which a single-threaded runtime forbids).
    Current,
    /// On this many threads (0: one per CPU), each with its own
    /// single-threaded runtime, round-robin; a connection stays on its
    /// thread. Requests that are short and CPU-bound are cheapest this way
    /// (no cross-thread wake-ups or task stealing).
    Threads(usize),
}

/// Work each worker thread does for itself periodically, such as returning
/// memory its allocator holds but no longer uses (thread-local allocator
/// state can only be tidied by its own thread).
#[derive(Clone)]
pub struct Upkeep {
    /// The period; the first run is half a period after the start.
    pub every: Duration,
    pub run: Arc<dyn Fn() + Send + Sync>,
}

/// Everything [`serve`] needs besides the listener and the router.
#[derive(Clone, Default)]
pub struct Options {
    pub limits: Limits,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub workers: Option<Workers>,
    pub upkeep: Option<Upkeep>,
    pub metrics: ListenerMetrics,
}

/// One open connection, as the acceptor and the connection's task see it.
struct Conn {
    accepted: Instant,
    /// Requests whose headers have arrived.
    requests: AtomicU64,
    in_flight: AtomicU32,
    /// Milliseconds after `accepted` of the last request start or end.
    last_active_ms: AtomicU64,
    kill: Notify,
}

impl Conn {
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| {
            self.accepted + Duration::from_millis(self.last_active_ms.load(Ordering::Acquire))
        })
    }

    /// The deadline this connection is held to now, and what passing it
    /// means: the first request's, or (no request in flight) the idle one;
    /// none while a request is in flight.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        if self.requests.load(Ordering::Acquire) == 0 {
            Some((
                self.accepted + limits.first_request,
                "first_request_timeout",
            ))
        } else {
            self.idle_since().map(|t| (t + limits.idle, "idle_timeout"))
        }
    }

    fn touch(&self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Release);
    }
}

/// The open connections of one listener.
struct Tracker {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Notified whenever a connection ends.
    ended: Notify,
    metrics: ListenerMetrics,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Close the connection idle for longest; whether there was one. It
    /// leaves the count at once (its socket closes moments later).
    fn evict_idlest(&self) -> bool {
        let mut conns = self.lock();
        let victim = conns
            .iter()
            .filter_map(|(id, c)| c.idle_since().map(|t| (t, *id)))
            .min()
            .map(|(_, id)| id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some(c) => {
                drop(conns);
                c.kill.notify_one();
                self.metrics.closed("evicted");
                self.metrics.open.dec();
                true
            }
            None => false,
        }
    }
}

/// Removes its connection from the tracker when the connection's task ends.
struct Registration {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.tracker.lock().remove(&self.id).is_some() {
            self.tracker.metrics.open.dec();
        }
        self.tracker.ended.notify_waiters();
    }
}

/// The process's descriptor limit, after raising the soft limit to the hard
/// one (as a server that holds many sockets should).
fn descriptor_limit() -> Option<usize> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        usize::try_from(r.rlim_cur).ok()
    }
}

/// The connection cap in force: `configured`, lowered so that connections
/// leave [`RESERVED_DESCRIPTORS`] of the descriptor limit free.
pub fn effective_max_connections(configured: usize) -> usize {
    let fit = descriptor_limit().map_or(usize::MAX, |n| n.saturating_sub(RESERVED_DESCRIPTORS));
    configured.min(fit).max(1)
}

/// An accepted connection on its way to a worker thread.
type Handoff = (
    std::net::TcpStream,
    std::net::SocketAddr,
    Arc<Conn>,
    Registration,
    hyper_util::server::graceful::Watcher,
);

/// Serve `router` on `listener` until `shutdown` completes, then let
/// in-flight requests finish. See the crate documentation for the limits.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let limits = opts.limits;
    let cap = effective_max_connections(limits.max_connections);
    if cap < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            cap,
            "connection cap lowered to fit the file descriptor limit"
        );
    }
    opts.metrics.limit.set(cap as i64);
    let tracker = Arc::new(Tracker {
        conns: Mutex::new(HashMap::new()),
        ended: Notify::new(),
        metrics: opts.metrics.clone(),
    });
    let shared = Arc::new(Shared {
        router,
        tls: opts.tls.clone(),
        limits,
        metrics: opts.metrics.clone(),
    });
    let mut queues = Vec::new();
    let mut threads = Vec::new();
    if let Workers::Threads(n) = opts.workers.unwrap_or(Workers::Threads(0)) {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n
        };
        for i in 0..n {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Handoff>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting worker runtime: {e}"))?;
            let (shared, upkeep) = (shared.clone(), opts.upkeep.clone());
            let thread = std::thread::Builder::new()
                .name(format!("ward-worker-{i}"))
                .spawn(move || rt.block_on(worker(rx, shared, upkeep)))
                .map_err(|e| format!("starting worker thread: {e}"))?;
            queues.push(tx);
            threads.push(thread);
        }
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut next = 0usize;
    let mut next_id = 0u64;
    let mut backoff = Duration::ZERO;
    loop {
        // At the cap: make room by closing the longest-idle connection, or
        // wait for one to end.
        while tracker.len() >= cap {
            tracker.metrics.at_limit.inc();
            if tracker.evict_idlest() {
                break;
            }
            let ended = tracker.ended.notified();
            tokio::select! {
                _ = ended => {}
                // Requests finishing make connections evictable without
                // ending them.
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = &mut shutdown => return finish(queues, threads, graceful).await,
            }
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) => {
                tracker.metrics.accept_errors.inc();
                // Out of descriptors: an idle connection gives one back.
                tracker.evict_idlest();
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                continue;
            }
        };
        let conn = Arc::new(Conn {
            accepted: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            last_active_ms: AtomicU64::new(0),
            kill: Notify::new(),
        });
        next_id = next_id.wrapping_add(1);
        tracker.lock().insert(next_id, conn.clone());
        tracker.metrics.open.inc();
        let reg = Registration {
            tracker: tracker.clone(),
            id: next_id,
        };
        if queues.is_empty() {
            let tcp = tcp;
            tokio::spawn(connection(
                tcp,
                peer,
                conn,
                reg,
                shared.clone(),
                graceful.watcher(),
            ));
            continue;
        }
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "connection dropped");
                continue;
            }
        };
        let queue = &queues[next % queues.len()];
        next = next.wrapping_add(1);
        if queue
            .send((tcp, peer, conn, reg, graceful.watcher()))
            .is_err()
        {
            return Err("a worker thread stopped".into());
        }
    }
    finish(queues, threads, graceful).await
}

async fn finish(
    queues: Vec<tokio::sync::mpsc::UnboundedSender<Handoff>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    graceful: hyper_util::server::graceful::GracefulShutdown,
) -> Result<(), String> {
    drop(queues);
    graceful.shutdown().await;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await
    .map_err(|e| format!("joining workers: {e}"))
}

/// What every connection of a listener shares.
struct Shared {
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    metrics: ListenerMetrics,
}

/// One worker: serve each handed-over connection on this thread until the
/// queue closes, then wait for the open ones to finish.
async fn worker(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Handoff>,
    shared: Arc<Shared>,
    upkeep: Option<Upkeep>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let every = upkeep.as_ref().map_or(Duration::from_secs(30), |u| {
        u.every.max(Duration::from_millis(1))
    });
    let mut tick = tokio::time::interval_at(Instant::now() + every / 2, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick(), if upkeep.is_some() => {
                if let Some(u) = &upkeep {
                    (u.run)();
                }
            }
            handoff = queue.recv() => match handoff {
                Some((tcp, peer, conn, reg, watcher)) => {
                    let tcp = match tokio::net::TcpStream::from_std(tcp) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "connection dropped");
                            continue;
                        }
                    };
                    conns.spawn(connection(tcp, peer, conn, reg, shared.clone(), watcher));
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}

/// Serve HTTP/1.1 or HTTP/2 (over TLS when configured) on one connection,
/// within the listener's limits.
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    conn: Arc<Conn>,
    reg: Registration,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _reg = reg;
    let _ = tcp.set_nodelay(true);
    let first_deadline = conn.accepted + shared.limits.first_request;
    match &shared.tls {
        Some(acceptor) => {
            let tls = tokio::select! {
                r = acceptor.accept(tcp) => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        shared.metrics.closed("tls_handshake");
                        return;
                    }
                },
                _ = tokio::time::sleep_until(first_deadline) => {
                    tracing::debug!(%peer, "no TLS handshake within the first-request deadline");
                    shared.metrics.closed("first_request_timeout");
                    return;
                }
                _ = conn.kill.notified() => return,
            };
            http(tls, peer, conn, &shared, watcher).await
        }
        None => http(tcp, peer, conn, &shared, watcher).await,
    }
}

async fn http<I>(
    io: I,
    peer: std::net::SocketAddr,
    conn: Arc<Conn>,
    shared: &Shared,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.limits;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Only a backstop, well after the watchdog below, which enforces
        // both bounds itself and counts them (hyper also times the wait for
        // the next request on a kept-alive connection).
        .header_read_timeout(limits.first_request.max(limits.idle) * 2);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive)
        .keep_alive_timeout(limits.http2_keepalive);
    let svc = Tracked {
        router: shared.router.clone(),
        conn: conn.clone(),
        body: limits.body,
        body_timeouts: shared.metrics.body_timeouts.clone(),
    };
    let served = watcher.watch(builder.serve_connection(TokioIo::new(io), svc).into_owned());
    tokio::pin!(served);
    loop {
        let deadline = conn.deadline(&limits);
        let wake = deadline.map_or(Instant::now() + limits.idle, |(t, _)| t);
        tokio::select! {
            result = &mut served => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                // Closed only if that deadline is still the one in force
                // (no request came or went meanwhile).
                if let Some((_, reason)) = deadline.filter(|d| conn.deadline(&limits) == Some(*d)) {
                    tracing::debug!(%peer, reason, "closing connection");
                    shared.metrics.closed(reason);
                    return;
                }
            }
            _ = conn.kill.notified() => {
                tracing::debug!(%peer, "closing the longest-idle connection to admit a new one");
                return;
            }
        }
    }
}

/// The router as a hyper service that keeps its connection's request
/// count and activity, and puts a deadline on each request body.
#[derive(Clone)]
struct Tracked {
    router: Router,
    conn: Arc<Conn>,
    body: Duration,
    /// The one metric a request needs (cloned per request: one counter,
    /// not the whole set).
    body_timeouts: Counter,
}

/// Marks a request in flight on its connection until dropped.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.conn.in_flight.fetch_add(1, Ordering::AcqRel);
        self.conn.requests.fetch_add(1, Ordering::AcqRel);
        self.conn.touch();
        let guard = InFlight(self.conn.clone());
        let req = req.map(|b| DeadlineBody {
            inner: b,
            limit: self.body,
            start: Instant::now(),
            sleep: None,
            body_timeouts: self.body_timeouts.clone(),
        });
        let fut = tower::ServiceExt::oneshot(self.router.clone(), req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

/// A request body that fails with [`BodyTimeout`] once `limit` has passed
/// since the request started.
struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    start: Instant,
    /// Armed the first time the body is not ready at once.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    body_timeouts: Counter,
}

impl Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => return Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => {}
        }
        let (start, limit) = (this.start, this.limit);
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(start + limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.body_timeouts.inc();
                Poll::Ready(Some(Err(Box::new(BodyTimeout(limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
