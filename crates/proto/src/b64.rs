//! Base64 helpers: JOSE uses base64url without padding, the KBS protocol uses
//! standard base64 with padding for nonces and sample report data.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// base64url without padding (RFC 7515 §2).
pub fn url_encode(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decode base64url without padding; `what` names the field for the error.
pub fn url_decode(what: &'static str, s: &str) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|e| DecodeError {
        what,
        reason: e.to_string(),
    })
}

/// Standard base64 with padding.
pub fn std_encode(data: impl AsRef<[u8]>) -> String {
    STANDARD.encode(data)
}

/// Decode standard base64 with padding; `what` names the field for the error.
pub fn std_decode(what: &'static str, s: &str) -> Result<Vec<u8>, DecodeError> {
    STANDARD.decode(s).map_err(|e| DecodeError {
        what,
        reason: e.to_string(),
    })
}

/// A field was not valid base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not valid base64: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}
