//! Fetching verification collateral (AMD KDS, Intel PCS) off the serving
//! threads.
//!
//! A collateral source that misses starts a fetch here and answers
//! [`ward_verifier::CollateralError::Pending`] at once; the attestation's
//! handler then waits for the fetch asynchronously, under its own deadline,
//! and verifies again. Fetches run on one background thread with its own
//! runtime ("ward-collateral"), never on a worker:
//!
//! * concurrent requests for the same item share one fetch (by key);
//! * a failed fetch is remembered for [`NEGATIVE_TTL`], and requests meanwhile
//!   get its error at once instead of fetching again;
//! * every HTTP request has a timeout, and retries sleep asynchronously.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use ward_verifier::VerifyError;

/// How long a failed fetch is remembered before it is tried again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Most keys remembered (running or failed) at once.
const MAX_KEYS: usize = 4096;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;
type Outcome = Option<Result<(), String>>;

enum State {
    Running(watch::Receiver<Outcome>),
    Failed { until: Instant, error: String },
}

/// The process's collateral fetcher (see the module documentation).
pub struct Fetcher {
    state: Mutex<HashMap<String, State>>,
    jobs: OnceLock<tokio::sync::mpsc::UnboundedSender<Job>>,
    negative_ttl: Duration,
}

/// The fetcher shared by every collateral source of this process.
pub fn fetcher() -> &'static Fetcher {
    static F: OnceLock<Fetcher> = OnceLock::new();
    F.get_or_init(|| Fetcher::new(NEGATIVE_TTL))
}

/// What [`Fetcher::start`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A fetch for the key is running (perhaps started just now).
    Running,
    /// The last fetch failed recently; its error, and seconds until a new
    /// one may start.
    Failed { error: String, retry_in_secs: u64 },
}

impl Fetcher {
    fn new(negative_ttl: Duration) -> Self {
        Self {
            state: Mutex::new(HashMap::new()),
            jobs: OnceLock::new(),
            negative_ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self) -> &tokio::sync::mpsc::UnboundedSender<Job> {
        self.jobs.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
            let started = std::thread::Builder::new()
                .name("ward-collateral".into())
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        tracing::error!("could not start the collateral fetch runtime");
                        return;
                    };
                    rt.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            tokio::spawn(job);
                        }
                    });
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "could not start the collateral fetch thread");
            }
            tx
        })
    }

    /// Start fetching `key` with `job` unless a fetch of it is running or
    /// failed within the negative-cache time. `job` runs on the fetch
    /// thread and must put what it fetched where its source will find it.
    pub fn start<E: std::fmt::Display>(
        &self,
        key: &str,
        job: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> Started {
        let mut state = self.lock();
        match state.get(key) {
            Some(State::Running(_)) => return Started::Running,
            Some(State::Failed { until, error }) if Instant::now() < *until => {
                return Started::Failed {
                    error: error.clone(),
                    retry_in_secs: until.saturating_duration_since(Instant::now()).as_secs() + 1,
                }
            }
            _ => {}
        }
        if state.len() >= MAX_KEYS {
            let now = Instant::now();
            state.retain(|_, s| match s {
                State::Running(_) => true,
                State::Failed { until, .. } => *until > now,
            });
        }
        let (tx, rx) = watch::channel(None);
        state.insert(key.to_string(), State::Running(rx));
        drop(state);
        let key = key.to_string();
        let key_for_error = key.clone();
        let ttl = self.negative_ttl;
        // The one fetcher (`Fetcher::new` is private to `fetcher`).
        let me: &'static Fetcher = fetcher();
        let wrapped: Job = Box::pin(async move {
            let result = job.await.map_err(|e| e.to_string());
            {
                let mut state = me.lock();
                match &result {
                    Ok(()) => {
                        state.remove(&key);
                    }
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "collateral fetch failed");
                        state.insert(
                            key.clone(),
                            State::Failed {
                                until: Instant::now() + ttl,
                                error: e.clone(),
                            },
                        );
                    }
                }
            }
            let _ = tx.send(Some(result));
        });
        if self.queue().send(wrapped).is_err() {
            let error = "the collateral fetch thread is not running".to_string();
            self.lock().insert(
                key_for_error,
                State::Failed {
                    until: Instant::now() + ttl,
                    error: error.clone(),
                },
            );
            return Started::Failed {
                error,
                retry_in_secs: ttl.as_secs(),
            };
        }
        Started::Running
    }

    /// Wait until the fetch of `key` ends (at once when none runs); its
    /// outcome.
    pub async fn wait(&self, key: &str) -> Result<(), String> {
        let mut rx = match self.lock().get(key) {
            Some(State::Running(rx)) => rx.clone(),
            Some(State::Failed { error, .. }) => return Err(error.clone()),
            None => return Ok(()),
        };
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return Err("the collateral fetch was dropped".into());
            }
        }
    }

    /// [`Fetcher::wait`] for callers without a runtime, at most `timeout`.
    pub fn wait_blocking(&self, key: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lock().get(key) {
                Some(State::Running(rx)) => {
                    if let Some(r) = rx.borrow().clone() {
                        return r;
                    }
                }
                Some(State::Failed { error, .. }) => return Err(error.clone()),
                None => return Ok(()),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{key}: still fetching after {} s",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Run `verify` until it no longer waits for collateral, waiting (blocking)
/// for each pending fetch, for at most `timeout` in all. For callers
/// without a runtime (`ward verify`, tests).
pub fn verify_waiting<T>(
    timeout: Duration,
    mut verify: impl FnMut() -> Result<T, VerifyError>,
) -> Result<T, VerifyError> {
    let deadline = Instant::now() + timeout;
    for _ in 0..4 {
        match verify() {
            Err(VerifyError::CollateralPending { key, what }) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if fetcher().wait_blocking(&key, left).is_err() && Instant::now() >= deadline {
                    return Err(VerifyError::Check {
                        check: "collateral",
                        detail: format!("{what}: not fetched within {} s", timeout.as_secs()),
                    });
                }
            }
            other => return other,
        }
    }
    verify()
}
