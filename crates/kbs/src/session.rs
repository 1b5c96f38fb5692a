//! Sessions carried entirely in the `kbs-session-id` cookie, so any replica
//! (or a restarted process) can serve any step of a handshake.
//!
//! Cookie value: `<key id>.<base64url(iv ‖ AES-256-GCM(state) ‖ tag)>`, with
//! the session key ring from the store and the AAD `ward-session-v1`. The
//! state is either a pending challenge (TEE, nonce, expiry) or, after
//! `/attest`, the issued token. Nothing about the session is kept in memory.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use ward_proto::b64;
use ward_proto::jwe::{aes256gcm_open, aes256gcm_seal};
use ward_proto::kbs::SESSION_COOKIE;

use crate::keys::Keys;

const AAD: &[u8] = b"ward-session-v1";
/// Cookie values longer than this are refused before any decryption.
pub const MAX_COOKIE_LEN: usize = 300 * 1024;

/// The state of one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "s")]
pub enum Session {
    /// Between `/auth` and `/attest`.
    #[serde(rename = "p")]
    Pending {
        tee: String,
        nonce: String,
        exp: i64,
    },
    /// After a successful `/attest`.
    #[serde(rename = "a")]
    Attested { token: String, exp: i64 },
}

impl Session {
    pub fn exp(&self) -> i64 {
        match self {
            Self::Pending { exp, .. } | Self::Attested { exp, .. } => *exp,
        }
    }
}

/// Why a cookie was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("session cookie was issued under an unknown key")]
    UnknownKey,
    #[error("session cookie is not valid")]
    Invalid,
    #[error("session has expired")]
    Expired,
}

/// Why a session step was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no kbs-session-id cookie; call /kbs/v0/auth first")]
    Missing,
    #[error(transparent)]
    Cookie(CookieError),
    #[error("this session has already attested; start a new one with /kbs/v0/auth")]
    AlreadyAttested,
    #[error("this challenge has already been answered; start a new session with /kbs/v0/auth")]
    ChallengeAnswered,
    /// Sealing failed (our side).
    #[error("sealing the session: {0}")]
    Seal(String),
}

/// Seal a session into a cookie value with the newest session key.
pub fn seal(keys: &Keys, session: &Session) -> Result<String, SessionError> {
    let k = keys.current_session();
    let plain = serde_json::to_vec(session).map_err(|e| SessionError::Seal(e.to_string()))?;
    let mut iv = [0u8; 12];
    SystemRandom::new()
        .fill(&mut iv)
        .map_err(|_| SessionError::Seal("rng".into()))?;
    let (ct, tag) =
        aes256gcm_seal(&k.key, &iv, AAD, &plain).map_err(|e| SessionError::Seal(e.to_string()))?;
    let mut blob = Vec::with_capacity(12 + ct.len() + 16);
    blob.extend_from_slice(&iv);
    blob.extend_from_slice(&ct);
    blob.extend_from_slice(&tag);
    Ok(format!("{}.{}", k.id, b64::url_encode(blob)))
}

/// Open a cookie value; `now` decides expiry.
pub fn open(keys: &Keys, value: &str, now: i64) -> Result<Session, CookieError> {
    if value.len() > MAX_COOKIE_LEN {
        return Err(CookieError::Invalid);
    }
    let (kid, body) = value.split_once('.').ok_or(CookieError::Invalid)?;
    let k = keys.session_key(kid).ok_or(CookieError::UnknownKey)?;
    let blob = b64::url_decode("cookie", body).map_err(|_| CookieError::Invalid)?;
    if blob.len() < 12 + 16 {
        return Err(CookieError::Invalid);
    }
    let (iv, rest) = blob.split_at(12);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    let iv: [u8; 12] = iv.try_into().map_err(|_| CookieError::Invalid)?;
    let plain = aes256gcm_open(&k.key, &iv, AAD, ct, tag).map_err(|_| CookieError::Invalid)?;
    let session: Session = serde_json::from_slice(&plain).map_err(|_| CookieError::Invalid)?;
    if now >= session.exp() {
        return Err(CookieError::Expired);
    }
    Ok(session)
}

/// The value of the session cookie in the request, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` header value.
pub fn set_cookie(value: &str, exp: i64, secure: bool) -> String {
    let mut s = format!(
        "{SESSION_COOKIE}={value}; Expires={}; Path=/kbs; HttpOnly",
        http_date(exp)
    );
    if secure {
        s.push_str("; Secure");
    }
    s
}

/// Unix seconds as an IMF-fixdate (`Mon, 23 Nov 2026 03:03:20 GMT`); empty
/// outside 1970..=9999.
fn http_date(unix: i64) -> String {
    const MAX: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    match u64::try_from(unix) {
        Ok(secs) if secs <= MAX => {
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_expiry_as_imf_fixdate() {
        // 2026-11-23T03:03:20Z, the Expires of the captured exchange.
        let c = set_cookie("v", 1795402700 + 300, false);
        assert!(
            c.starts_with("kbs-session-id=v; Expires=Mon, 23 Nov 2026 03:03:20 GMT"),
            "{c}"
        );
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
        // Out of range: no date rather than a panic.
        assert_eq!(http_date(-1), "");
        assert_eq!(http_date(253_402_300_800), "");
        assert_eq!(http_date(i64::MAX), "");
    }

    #[test]
    fn finds_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=b; kbs-session-id=xyz; c=d".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h), Some("xyz"));
        let h = HeaderMap::new();
        assert_eq!(cookie_value(&h), None);
    }
}
