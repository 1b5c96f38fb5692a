//! Intel DCAP evidence in pure Rust.
//!
//! * [`quote`]: SGX quote v3 and TDX quote v4/v5 (TDX 1.0 and 1.5 bodies),
//!   the ECDSA signature data with certification data types 5 (PCK chain,
//!   PEM) and 6 (QE report certification data), trailing bytes tolerated.
//! * [`ccel`]: the TDX CC event log (TCG PC Client, crypto-agile) and its
//!   replay into RTMR values.
//!
//! Layouts follow Intel's "SGX ECDSA Quote Library API" (quote v3),
//! "TDX DCAP Quoting Library API" (quote v4/v5) and the TCG PC Client
//! Platform Firmware Profile (event log), as cited per structure.

pub mod ccel;
pub mod pck;
pub mod quote;
pub mod tdreport;
pub mod verify;

/// Why bytes were rejected: names the structure and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {detail}")]
pub struct ParseError {
    pub what: &'static str,
    pub detail: String,
}

pub(crate) fn perr(what: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError {
        what,
        detail: detail.into(),
    }
}

/// A bounds-checked little-endian reader.
pub(crate) struct Reader<'a> {
    pub b: &'a [u8],
    pub at: usize,
    pub what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8], what: &'static str) -> Self {
        Self { b, at: 0, what }
    }
    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], ParseError> {
        match self.at.checked_add(n).filter(|e| *e <= self.b.len()) {
            Some(end) => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(perr(
                self.what,
                format!(
                    "truncated at {field} (offset {}, need {n} bytes, {} left)",
                    self.at,
                    self.b.len().saturating_sub(self.at)
                ),
            )),
        }
    }
    pub fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], ParseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    pub fn u16(&mut self, field: &str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    pub fn u32(&mut self, field: &str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.at..]
    }
}
