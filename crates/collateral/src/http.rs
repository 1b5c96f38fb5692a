//! HTTP GETs of collateral (AMD KDS, Intel PCS): one client per process,
//! every request with a timeout, retries with backoff on rate limits and
//! server errors. Runs only on the fetch thread ([`crate::fetch`]).

use std::time::Duration;

use crate::FetchError;

const ATTEMPTS: u32 = 4;

/// A response body and the header values asked for.
pub(crate) type Fetched = (Vec<u8>, Vec<Option<String>>);

/// The HTTP client of collateral fetches (one per process: its pool).
fn http_client() -> Result<reqwest::Client, FetchError> {
    static C: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(FetchError::Client)
}

/// GET `url`, retrying rate limits and server errors with backoff
/// (honouring `Retry-After`, capped); `Ok(None)` on 404. Returns the body
/// and the values of the `headers` asked for.
pub(crate) async fn get(url: &str, headers: &[&str]) -> Result<Option<Fetched>, FetchError> {
    let client = http_client()?;
    let mut last = FetchError::Transport {
        url: url.to_string(),
        reason: "not tried".into(),
    };
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        match client.get(url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
            Ok(r) if r.status().is_success() => {
                let hv: Vec<Option<String>> = headers
                    .iter()
                    .map(|h| {
                        r.headers()
                            .get(*h)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    })
                    .collect();
                return r
                    .bytes()
                    .await
                    .map(|b| Some((b.to_vec(), hv)))
                    .map_err(|e| FetchError::Transport {
                        url: url.to_string(),
                        reason: e.to_string(),
                    });
            }
            Ok(r) => {
                let st = r.status();
                last = FetchError::Status {
                    url: url.to_string(),
                    status: st.to_string(),
                };
                if st == reqwest::StatusCode::TOO_MANY_REQUESTS || st.is_server_error() {
                    let wait = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        .min(10);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    continue;
                }
                return Err(last);
            }
            Err(e) => {
                last = FetchError::Transport {
                    url: url.to_string(),
                    reason: e.to_string(),
                }
            }
        }
    }
    Err(last)
}

/// Decode `%XX` escapes (PCS issuer-chain headers are URL-encoded PEM).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
