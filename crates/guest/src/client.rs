//! KBS protocol client: `/auth` → `/attest` → `GET /resource`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::Value;
use ward_proto::initdata::InitData;
use ward_proto::jwe::{self, FlattenedJwe, JweError};
use ward_proto::jwk::{Curve, TeeKeyPair};
use ward_proto::kbs::InitDataMessage;
use ward_proto::kbs::{
    runtime_data_hash, Attestation, AttestationToken, Challenge, ErrorBody, Request, RuntimeData,
    TeeEvidence, SESSION_COOKIE,
};
use ward_proto::{HashAlgorithm, ResourcePath};

use crate::attester::{Attester, AttesterError};

/// Largest response body the client reads.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// What went wrong, kept apart so callers can tell a policy denial from a
/// network problem from a failed attestation. No variant carries secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    #[error("cannot reach the KBS: {0}")]
    Network(String),
    #[error("the KBS refused the attestation ({status}): {detail}")]
    Attestation { status: u16, detail: String },
    #[error("access denied by the KBS resource policy: {0}")]
    PolicyDenied(String),
    #[error("resource not found on the KBS: {0}")]
    NotFound(String),
    #[error("the KBS answered {status} {kind}: {detail}")]
    Http {
        status: u16,
        kind: String,
        detail: String,
    },
    #[error("the KBS answered something that is not the KBS protocol: {0}")]
    Protocol(String),
    #[error("resource decryption failed: {0}")]
    Jwe(#[from] JweError),
    #[error(transparent)]
    Attester(#[from] AttesterError),
    #[error("client setup: {0}")]
    Setup(String),
    #[error("init-data: {0}")]
    InitData(String),
}

/// Client options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Extra trusted CA certificate (PEM) for a KBS with a private CA or a
    /// self-signed certificate.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Use an RSA-OAEP-256 TEE key instead of P-256 ECDH-ES+A256KW.
    pub rsa_key: bool,
    pub timeout: Duration,
    /// Attempts per request on transient failures (network errors, 429,
    /// 5xx), with exponential backoff from 200 ms.
    pub attempts: u32,
    /// Init-data TOML to send with the evidence; checked against the TEE's
    /// binding (HOST_DATA, MRCONFIGID) before the first attestation.
    pub init_data: Option<String>,
    /// Largest KBS answer read (default 64 MiB).
    pub max_response: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            ca_cert_pem: None,
            rsa_key: false,
            timeout: Duration::from_secs(30),
            attempts: 3,
            init_data: None,
            max_response: MAX_RESPONSE,
        }
    }
}

/// A KBS client bound to one server and one attester, holding the
/// ephemeral TEE key for its lifetime. Cheap to clone (the clones share the
/// session), and usable from many tasks at once: resource requests run
/// concurrently, and those that need a session share one in-flight
/// attestation instead of each running their own.
#[derive(Clone)]
pub struct KbsClient(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    base: String,
    attester: Arc<dyn Attester>,
    key: TeeKeyPair,
    attempts: u32,
    init_data: Option<InitDataState>,
    max_response: usize,
    session: std::sync::Mutex<Session>,
    /// Where the outcome of the attestation running now, if any, will
    /// appear.
    inflight: std::sync::Mutex<Option<AttestWatch>>,
}

type AttestWatch = tokio::sync::watch::Receiver<Option<Result<String, GuestError>>>;

/// The session: cookie and token of the last attestation, and a counter of
/// attestations so a stale failure does not start a second one.
#[derive(Clone, Default)]
struct Session {
    cookie: Option<String>,
    token: Option<String>,
    /// Expiry (unix seconds) of `token`, from its `exp` claim.
    token_exp: i64,
    generation: u64,
}

struct InitDataState {
    toml: String,
    parsed: InitData,
    checked: std::sync::atomic::AtomicBool,
}

/// Re-attest this long before the token expires.
const EXPIRY_MARGIN_SECS: i64 = 10;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl GuestError {
    /// Worth retrying: the network, rate limiting or a server error.
    pub fn is_transient(&self) -> bool {
        match self {
            GuestError::Network(_) => true,
            GuestError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

fn error_of(status: StatusCode, body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.short_kind().to_string(), e.detail),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
                + if status.is_server_error() {
                    " (server error)"
                } else {
                    ""
                },
        ),
    }
}

impl KbsClient {
    pub fn new(
        url: &str,
        attester: Arc<dyn Attester>,
        opts: ClientOptions,
    ) -> Result<Self, GuestError> {
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .pool_max_idle_per_host(64);
        if let Some(pem) = &opts.ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| GuestError::Setup(format!("CA certificate: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| GuestError::Setup(e.to_string()))?;
        let init_data = match opts.init_data {
            Some(toml) => {
                let parsed = InitData::parse("toml", &toml)
                    .map_err(|e| GuestError::InitData(e.to_string()))?;
                Some(InitDataState {
                    toml,
                    parsed,
                    checked: false.into(),
                })
            }
            None => None,
        };
        Self::build(
            http,
            url,
            attester,
            opts.rsa_key,
            opts.attempts.max(1),
            init_data,
            opts.max_response,
        )
    }

    /// Share one HTTP client (connection pool) between many KBS clients.
    pub fn with_http(
        http: reqwest::Client,
        url: &str,
        attester: Arc<dyn Attester>,
        rsa: bool,
    ) -> Result<Self, GuestError> {
        Self::build(http, url, attester, rsa, 3, None, MAX_RESPONSE)
    }

    fn build(
        http: reqwest::Client,
        url: &str,
        attester: Arc<dyn Attester>,
        rsa: bool,
        attempts: u32,
        init_data: Option<InitDataState>,
        max_response: usize,
    ) -> Result<Self, GuestError> {
        let key = if rsa {
            TeeKeyPair::generate_rsa()
        } else {
            TeeKeyPair::generate_ec(Curve::P256)
        }
        .map_err(|e| GuestError::Setup(e.to_string()))?;
        Ok(Self(Arc::new(Inner {
            http,
            base: url.trim_end_matches('/').to_string(),
            attester,
            key,
            attempts,
            init_data,
            max_response,
            session: Default::default(),
            inflight: Default::default(),
        })))
    }

    fn session(&self) -> Session {
        self.0
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The token of the current session, if any.
    pub fn token(&self) -> Option<String> {
        self.session().token
    }

    /// A token valid for a while yet, attesting when there is none or it
    /// is about to expire.
    pub async fn valid_token(&self) -> Result<String, GuestError> {
        let s = self.session();
        match s.token {
            Some(t) if unix_now() + EXPIRY_MARGIN_SECS < s.token_exp => Ok(t),
            _ => self.attest_after(s.generation).await,
        }
    }

    /// Run `op` up to `attempts` times while it fails transiently.
    async fn retrying<T, F, Fut>(&self, what: &str, op: F) -> Result<T, GuestError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GuestError>>,
    {
        self.0.retrying(what, op).await
    }
}

impl Inner {
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, GuestError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GuestError>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::warn!(%what, attempt, error = %e, "transient KBS failure; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn read(
        &self,
        resp: reqwest::Response,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), GuestError> {
        let max = self.max_response;
        let status = resp.status();
        let cookie = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .filter_map(|h| h.split(';').next())
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == SESSION_COOKIE)
            .map(|(_, v)| v.trim().to_string());
        if resp.content_length().is_some_and(|l| l as usize > max) {
            return Err(GuestError::Protocol("response is too large".into()));
        }
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| GuestError::Network(e.to_string()))?
        {
            if body.len() + chunk.len() > max {
                return Err(GuestError::Protocol("response is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, cookie, body))
    }

    /// Run `/auth` and `/attest` (retrying transient failures) unless
    /// another one is already running, then share its outcome; keeps the
    /// session cookie and the token.
    async fn attest_shared(self: &Arc<Self>, after: u64) -> Result<String, GuestError> {
        let mut rx = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // A newer session than the caller saw: use it.
            {
                let s = self.session.lock().unwrap_or_else(|e| e.into_inner());
                if s.generation > after {
                    if let Some(t) = &s.token {
                        return Ok(t.clone());
                    }
                }
            }
            match &*inflight {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    *inflight = Some(rx.clone());
                    let me = self.clone();
                    // Its own task: the attestation completes for the other
                    // waiters even if the caller that started it gives up.
                    tokio::spawn(async move {
                        // Cleared however the task ends (a panicking
                        // attester included), so a later call starts anew.
                        struct Clear(Arc<Inner>);
                        impl Drop for Clear {
                            fn drop(&mut self) {
                                *self.0.inflight.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            }
                        }
                        let clear = Clear(me.clone());
                        let result = me.attest_now().await;
                        drop(clear);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return Err(GuestError::Setup("the attestation task ended".into()));
            }
        }
    }

    async fn attest_now(&self) -> Result<String, GuestError> {
        self.check_init_data()?;
        let (cookie, token) = self.retrying("attest", || self.handshake()).await?;
        let exp = ward_proto::jwt::UnverifiedJwt::parse(&token)
            .ok()
            .and_then(|t| t.claims.get("exp").and_then(Value::as_i64))
            .unwrap_or(i64::MAX);
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        s.cookie = Some(cookie);
        s.token = Some(token.clone());
        s.token_exp = exp;
        s.generation += 1;
        Ok(token)
    }

    /// Init-data is used only when the TEE binds its digest.
    fn check_init_data(&self) -> Result<(), GuestError> {
        let Some(st) = &self.init_data else {
            return Ok(());
        };
        if st.checked.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        if let Some(pcr) = off_runtime(&*self.attester, |a| a.init_data_pcr())? {
            // vTPM platforms: the PCR was extended once from zero with the digest.
            let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            ctx.update(&[0u8; 32]);
            ctx.update(&st.parsed.digest);
            if ctx.finish().as_ref() != pcr {
                return Err(GuestError::InitData(format!(
                    "the TPM's init-data PCR holds {} but the init-data digest is {}: refusing to use this init-data",
                    hex::encode(pcr),
                    hex::encode(&st.parsed.digest)
                )));
            }
            st.checked.store(true, std::sync::atomic::Ordering::Release);
            return Ok(());
        }
        let field = off_runtime(&*self.attester, |a| a.init_data_field())?.ok_or_else(|| {
            GuestError::InitData(format!(
                "TEE {} cannot report its init-data binding; refusing to use init-data",
                self.attester.tee()
            ))
        })?;
        if field != st.parsed.digest_for_field(field.len()) {
            return Err(GuestError::InitData(format!(
                "the TEE binds {} but the init-data digest is {}: refusing to use this init-data",
                hex::encode(&field),
                hex::encode(&st.parsed.digest)
            )));
        }
        st.checked.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    async fn handshake(&self) -> Result<(String, String), GuestError> {
        let req = Request::new(self.attester.tee());
        let resp = self
            .http
            .post(format!("{}/kbs/v0/auth", self.base))
            .json(&req)
            .send()
            .await
            .map_err(|e| GuestError::Network(e.to_string()))?;
        let (status, cookie, body) = self.read(resp).await?;
        if !status.is_success() {
            let (kind, detail) = error_of(status, &body);
            return Err(GuestError::Http {
                status: status.as_u16(),
                kind,
                detail,
            });
        }
        let challenge: Challenge = serde_json::from_slice(&body)
            .map_err(|e| GuestError::Protocol(format!("challenge: {e}")))?;
        let cookie = cookie.ok_or_else(|| {
            GuestError::Protocol("no kbs-session-id cookie in the /auth answer".into())
        })?;

        let runtime = RuntimeData {
            nonce: challenge.nonce,
            tee_pubkey: self.key.public_jwk(),
        };
        let hash = runtime_data_hash(&runtime, "", HashAlgorithm::Sha384)
            .map_err(|e| GuestError::Protocol(e.to_string()))?;
        let evidence = off_runtime(&*self.attester, |a| a.evidence(&hash))?;
        let attestation = Attestation {
            init_data: self.init_data.as_ref().map(|st| InitDataMessage {
                format: "toml".into(),
                body: st.toml.clone(),
            }),
            runtime_data: runtime,
            tee_evidence: TeeEvidence {
                primary_evidence: evidence,
                additional_evidence: String::new(),
            },
        };
        let resp = self
            .http
            .post(format!("{}/kbs/v0/attest", self.base))
            .header(COOKIE, format!("{SESSION_COOKIE}={cookie}"))
            .json(&attestation)
            .send()
            .await
            .map_err(|e| GuestError::Network(e.to_string()))?;
        let (status, new_cookie, body) = self.read(resp).await?;
        if !status.is_success() {
            let (_, detail) = error_of(status, &body);
            return Err(GuestError::Attestation {
                status: status.as_u16(),
                detail,
            });
        }
        let token: AttestationToken = serde_json::from_slice(&body)
            .map_err(|e| GuestError::Protocol(format!("attestation answer: {e}")))?;
        Ok((new_cookie.unwrap_or(cookie), token.token))
    }
}

impl KbsClient {
    /// Run `/auth` and `/attest` (retrying transient failures), or share
    /// the attestation already running; keeps the session cookie and the
    /// token.
    pub async fn attest(&self) -> Result<String, GuestError> {
        let generation = self.session().generation;
        self.attest_after(generation).await
    }

    /// Attest unless a session newer than `generation` exists by now.
    async fn attest_after(&self, generation: u64) -> Result<String, GuestError> {
        self.0.attest_shared(generation).await
    }

    /// Fetch and decrypt a resource, attesting first if there is no session
    /// yet, and once more if the server no longer accepts the session.
    pub async fn get_resource(&self, path: &ResourcePath) -> Result<Vec<u8>, GuestError> {
        let mut s = self.session();
        if s.cookie.is_none() || unix_now() + EXPIRY_MARGIN_SECS >= s.token_exp {
            self.attest_after(s.generation).await?;
            s = self.session();
        }
        let first = self.retrying("fetch", || self.fetch(path, false)).await;
        match first {
            // The server no longer accepts the session (restarted with other
            // keys, token revoked or expired): attest again, once.
            Err(GuestError::Http { status: 401, .. }) => {
                self.attest_after(s.generation).await?;
                self.retrying("fetch", || self.fetch(path, false)).await
            }
            other => other,
        }
    }

    /// One GET with the current session cookie, or with the token as a
    /// bearer credential when `bearer` is set.
    pub async fn fetch(&self, path: &ResourcePath, bearer: bool) -> Result<Vec<u8>, GuestError> {
        let me = &self.0;
        let s = self.session();
        let mut req = me.http.get(format!("{}/kbs/v0/resource/{path}", me.base));
        if bearer {
            let t = s
                .token
                .as_deref()
                .ok_or_else(|| GuestError::Setup("no token yet".into()))?;
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        } else if let Some(c) = &s.cookie {
            req = req.header(COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| GuestError::Network(e.to_string()))?;
        let (status, _, body) = me.read(resp).await?;
        match status {
            StatusCode::OK => {
                let jwe: FlattenedJwe = serde_json::from_slice(&body)
                    .map_err(|e| GuestError::Protocol(format!("resource answer: {e}")))?;
                Ok(jwe::decrypt(&me.key, &jwe)?)
            }
            StatusCode::FORBIDDEN => Err(GuestError::PolicyDenied(error_of(status, &body).1)),
            StatusCode::NOT_FOUND => Err(GuestError::NotFound(error_of(status, &body).1)),
            s => {
                let (kind, detail) = error_of(s, &body);
                Err(GuestError::Http {
                    status: s.as_u16(),
                    kind,
                    detail,
                })
            }
        }
    }

    /// The raw evidence JSON this client would send for `report_data`.
    pub fn evidence(&self, report_data: &[u8]) -> Result<Value, GuestError> {
        Ok(off_runtime(&*self.0.attester, |a| a.evidence(report_data))?)
    }
}

/// Run an attester call. One that may block (device I/O, the vTPM's report
/// refresh, IMDS/QGS requests) on a multi-threaded runtime is run after the
/// worker hands its other tasks off, so the local API keeps serving
/// meanwhile; an in-memory one runs in place.
fn off_runtime<T>(attester: &dyn Attester, f: impl FnOnce(&dyn Attester) -> T) -> T {
    if !attester.blocks() {
        return f(attester);
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| f(attester))
        }
        _ => f(attester),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use ward_proto::Tee;

    use super::*;
    use crate::attester::SampleAttester;

    /// Waits (bounded) in `evidence` for another task of the runtime, which
    /// can only run meanwhile if the call was handed off the worker.
    struct Probe {
        blocks: bool,
        other_ran: Arc<AtomicBool>,
    }

    impl Attester for Probe {
        fn tee(&self) -> Tee {
            Tee::new(Tee::SAMPLE)
        }
        fn evidence(&self, _: &[u8]) -> Result<Value, AttesterError> {
            let wait = Duration::from_millis(if self.blocks { 10_000 } else { 200 });
            let start = Instant::now();
            while start.elapsed() < wait && !self.other_ran.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Value::Bool(self.other_ran.load(Ordering::SeqCst)))
        }
        fn blocks(&self) -> bool {
            self.blocks
        }
    }

    #[test]
    fn only_blocking_attesters_hand_the_worker_off() {
        assert!(!SampleAttester::default().blocks());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        for blocks in [true, false] {
            let other_ran = Arc::new(AtomicBool::new(false));
            let probe = Probe {
                blocks,
                other_ran: other_ran.clone(),
            };
            // Both tasks on the one worker: the second runs during the
            // attester call only if that call left the worker.
            let ran = rt.block_on(async move {
                tokio::spawn(async move {
                    let other =
                        tokio::spawn(async move { other_ran.store(true, Ordering::SeqCst) });
                    let v = off_runtime(&probe, |a| a.evidence(b"")).unwrap();
                    other.await.unwrap();
                    v
                })
                .await
                .unwrap()
            });
            assert_eq!(ran, Value::Bool(blocks), "blocks: {blocks}");
        }
    }
}
