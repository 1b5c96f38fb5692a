//! TPM 2.0 quotes: the TPMS_ATTEST structure a TPM2_Quote signs, its
//! signature and the PCR digest.
//!
//! References: TCG TPM 2.0 Library, Part 2: Structures — 6.2
//! TPM_GENERATED (`0xff544347`), 6.9 TPM_ST (`TPM_ST_ATTEST_QUOTE` =
//! `0x8018`), 10.6.2 TPMS_PCR_SELECTION, 10.11.1 TPMS_CLOCK_INFO, 10.12.1
//! TPMS_QUOTE_INFO, 10.12.12 TPMS_ATTEST. All integers are big-endian.
//! Part 3: Commands, 18.4 TPM2_Quote: pcrDigest is the hash (with the
//! signing scheme's algorithm) of the selected PCR values concatenated in
//! selection order.

use aws_lc_rs::{digest, signature};

use crate::hcl::RsaKey;
use crate::{malformed, Error};

const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPM_ALG_SHA256: u16 = 0x000b;

/// A parsed TPMS_ATTEST of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    pub qualified_signer: Vec<u8>,
    /// The caller's nonce (qualifying data).
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    /// Selected PCR indices per bank, in the order the digest covers them.
    pub selection: Vec<(u16, Vec<u8>)>,
    pub pcr_digest: Vec<u8>,
}

/// Big-endian TPM structure reader; every error names the structure, the
/// field and the offset.
pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) at: usize,
    pub(crate) what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8], what: &'static str) -> Self {
        Self { b, at: 0, what }
    }
    pub(crate) fn rest(&self) -> usize {
        self.b.len() - self.at
    }
    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let Some(end) = end else {
            return Err(malformed(
                self.what,
                format!("truncated at {field} (offset {})", self.at),
            ));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, Error> {
        Ok(self.take(1, field)?[0])
    }
    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, Error> {
        let s = self.take(2, field)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, Error> {
        let s = self.take(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, Error> {
        let s = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn sized(&mut self, field: &str) -> Result<Vec<u8>, Error> {
        let n = self.u16(field)? as usize;
        Ok(self.take(n, field)?.to_vec())
    }
}

/// TPML_PCR_SELECTION (Part 2, 10.9.7): per bank, its hash algorithm and
/// the selected PCR indices in ascending order.
pub(crate) fn read_pcr_selection(r: &mut Reader<'_>) -> Result<Vec<(u16, Vec<u8>)>, Error> {
    let count = r.u32("pcrSelect.count")?;
    if count > 16 {
        return Err(malformed(
            r.what,
            format!("{count} PCR selections (at most 16 banks exist)"),
        ));
    }
    let mut selection = Vec::new();
    for _ in 0..count {
        let hash = r.u16("pcrSelections.hash")?;
        let size = r.u8("pcrSelections.sizeofSelect")? as usize;
        let bitmap = r.take(size, "pcrSelections.pcrSelect")?;
        let mut pcrs = Vec::new();
        for (i, byte) in bitmap.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    pcrs.push((i * 8 + bit) as u8);
                }
            }
        }
        selection.push((hash, pcrs));
    }
    Ok(selection)
}

impl QuoteInfo {
    /// Parse the quoted message (TPMS_ATTEST, as signed).
    pub fn parse(msg: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(msg, "TPMS_ATTEST");
        let magic = r.u32("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(malformed(
                "TPMS_ATTEST",
                format!("magic {magic:#010x} is not TPM_GENERATED_VALUE"),
            ));
        }
        let ty = r.u16("type")?;
        if ty != TPM_ST_ATTEST_QUOTE {
            return Err(malformed(
                "TPMS_ATTEST",
                format!("type {ty:#06x} is not TPM_ST_ATTEST_QUOTE"),
            ));
        }
        let qualified_signer = r.sized("qualifiedSigner")?;
        let extra_data = r.sized("extraData")?;
        let clock = r.u64("clockInfo.clock")?;
        let reset_count = r.u32("clockInfo.resetCount")?;
        let restart_count = r.u32("clockInfo.restartCount")?;
        let safe = r.u8("clockInfo.safe")? != 0;
        let firmware_version = r.u64("firmwareVersion")?;
        let selection = read_pcr_selection(&mut r)?;
        let pcr_digest = r.sized("pcrDigest")?;
        // Trailing bytes would be outside any TPMS_ATTEST field.
        if r.at != msg.len() {
            return Err(malformed(
                "TPMS_ATTEST",
                format!("{} bytes after pcrDigest", msg.len() - r.at),
            ));
        }
        Ok(Self {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            selection,
            pcr_digest,
        })
    }

    /// Check the SHA-256 PCR values sent with the quote against its digest
    /// and return them by PCR index. Only SHA-256 banks are accepted.
    pub fn check_pcrs(&self, values: &[[u8; 32]]) -> Result<Vec<(u8, [u8; 32])>, Error> {
        let mut indexed = Vec::new();
        for (hash, pcrs) in &self.selection {
            if *hash != TPM_ALG_SHA256 {
                return Err(malformed(
                    "TPM quote",
                    format!("PCR bank {hash:#06x} selected; only SHA-256 (0x000b) is supported"),
                ));
            }
            indexed.extend(pcrs.iter().copied());
        }
        if indexed.len() != values.len() {
            return Err(malformed(
                "TPM quote",
                format!(
                    "{} PCR values sent for {} selected PCRs",
                    values.len(),
                    indexed.len()
                ),
            ));
        }
        let mut ctx = digest::Context::new(&digest::SHA256);
        for v in values {
            ctx.update(v);
        }
        let d = ctx.finish();
        if aws_lc_rs::constant_time::verify_slices_are_equal(d.as_ref(), &self.pcr_digest).is_err()
        {
            return Err(Error::PcrDigest);
        }
        Ok(indexed.into_iter().zip(values.iter().copied()).collect())
    }
}

/// Verify a quote signature: RSASSA-PKCS1-v1_5 with SHA-256 over the
/// TPMS_ATTEST bytes, by the attestation key.
pub fn verify_quote_signature(ak: &RsaKey, message: &[u8], sig: &[u8]) -> Result<(), Error> {
    signature::RsaPublicKeyComponents {
        n: ak.n.as_slice(),
        e: ak.e.as_slice(),
    }
    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
    .map_err(|_| Error::QuoteSignature)
}

/// SHA-256 PCR extend: `SHA-256(old ‖ data)`.
pub fn pcr_extend(old: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(old);
    ctx.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TPMS_ATTEST over PCRs 0..=23 of SHA-256 with the given values.
    pub(crate) fn message(nonce: &[u8], values: &[[u8; 32]]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        m.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        m.extend_from_slice(&[0, 2, 0xaa, 0xbb]);
        m.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        m.extend_from_slice(nonce);
        m.extend_from_slice(&[0; 17]);
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(&[0, 0x0b, 3, 0xff, 0xff, 0xff]);
        let mut ctx = digest::Context::new(&digest::SHA256);
        values.iter().for_each(|v| ctx.update(v));
        m.extend_from_slice(&[0, 32]);
        m.extend_from_slice(ctx.finish().as_ref());
        m
    }

    #[test]
    fn parses_a_quote_and_checks_pcrs() {
        let values: Vec<[u8; 32]> = (0..24).map(|i| [i as u8; 32]).collect();
        let m = message(b"challenge", &values);
        let q = QuoteInfo::parse(&m).unwrap();
        assert_eq!(q.extra_data, b"challenge");
        assert_eq!(q.selection, vec![(0x000b, (0..24).collect())]);
        let pcrs = q.check_pcrs(&values).unwrap();
        assert_eq!(pcrs[8], (8, [8; 32]));
        let mut wrong = values.clone();
        wrong[8][0] ^= 1;
        assert_eq!(q.check_pcrs(&wrong), Err(Error::PcrDigest));
        assert!(q
            .check_pcrs(&values[..23])
            .unwrap_err()
            .to_string()
            .contains("23 PCR values"));
    }

    #[test]
    fn rejects_malformed_messages() {
        let values: Vec<[u8; 32]> = (0..24).map(|i| [i as u8; 32]).collect();
        let m = message(b"n", &values);
        for cut in [0, 3, 10, 20, m.len() - 1] {
            let e = QuoteInfo::parse(&m[..cut]).unwrap_err().to_string();
            assert!(e.contains("truncated"), "{cut}: {e}");
        }
        let mut bad = m.clone();
        bad[0] = 0;
        assert!(QuoteInfo::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut bad = m.clone();
        bad[5] = 0x17;
        assert!(QuoteInfo::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("type"));
        let mut long = m.clone();
        long.push(0);
        assert!(QuoteInfo::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("after pcrDigest"));
    }

    #[test]
    fn extend_matches_the_tpm_definition() {
        // PCR8 after extending one init-data digest from reset (all zero).
        let d = [7u8; 32];
        let mut concat = vec![0u8; 32];
        concat.extend_from_slice(&d);
        assert_eq!(
            pcr_extend(&[0; 32], &d).as_slice(),
            digest::digest(&digest::SHA256, &concat).as_ref()
        );
    }
}
