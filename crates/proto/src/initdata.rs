//! Init-data (CoCo): a TOML document `version`, `algorithm`, `[data]` whose
//! digest is bound into the TEE (SNP HOST_DATA, TDX MRCONFIGID, vTPM PCR8).

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::hash::HashAlgorithm;

/// Largest init-data accepted.
pub const MAX_INITDATA_LEN: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitDataError {
    #[error("init-data format {0:?} is not supported (expected \"toml\")")]
    Format(String),
    #[error("init-data is larger than {MAX_INITDATA_LEN} bytes")]
    TooLarge,
    #[error("init-data is not valid TOML: {0}")]
    Toml(String),
    #[error("init-data version {0:?} is not supported (expected 0.1.0)")]
    Version(String),
    #[error("init-data algorithm {0:?} is not supported")]
    Algorithm(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: String,
    algorithm: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// A parsed init-data document with its digest over the exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitData {
    pub version: String,
    pub algorithm: HashAlgorithm,
    pub data: BTreeMap<String, String>,
    pub digest: Vec<u8>,
}

impl InitData {
    /// Parse the TOML body of the Attestation's `init-data`.
    pub fn parse(format: &str, body: &str) -> Result<Self, InitDataError> {
        if format != "toml" {
            return Err(InitDataError::Format(format.chars().take(32).collect()));
        }
        if body.len() > MAX_INITDATA_LEN {
            return Err(InitDataError::TooLarge);
        }
        let doc: Doc =
            toml::from_str(body).map_err(|e| InitDataError::Toml(e.message().to_string()))?;
        if doc.version != "0.1.0" {
            return Err(InitDataError::Version(doc.version));
        }
        let algorithm = HashAlgorithm::from_name(&doc.algorithm)
            .ok_or(InitDataError::Algorithm(doc.algorithm))?;
        Ok(Self {
            version: doc.version,
            algorithm,
            data: doc.data,
            digest: algorithm.digest(body.as_bytes()),
        })
    }

    /// The digest fitted to a hardware field of `len` bytes: truncated, or
    /// zero-padded on the right.
    pub fn digest_for_field(&self, len: usize) -> Vec<u8> {
        let mut v = self.digest.clone();
        v.resize(len, 0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n";

    #[test]
    fn accepts_document_and_hashes_raw_bytes() {
        let d = InitData::parse("toml", DOC).unwrap();
        assert_eq!(d.digest, HashAlgorithm::Sha384.digest(DOC.as_bytes()));
        assert_eq!(d.data["policy.rego"], "package agent_policy");
        assert_eq!(d.digest_for_field(32), d.digest[..32]);
        assert_eq!(d.digest_for_field(64)[48..], [0u8; 16]);
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(
            InitData::parse("json", DOC),
            Err(InitDataError::Format(_))
        ));
        assert!(matches!(
            InitData::parse("toml", "version = "),
            Err(InitDataError::Toml(_))
        ));
        assert!(matches!(
            InitData::parse("toml", "version = \"9\"\nalgorithm = \"sha256\""),
            Err(InitDataError::Version(_))
        ));
        assert!(matches!(
            InitData::parse("toml", "version = \"0.1.0\"\nalgorithm = \"md5\""),
            Err(InitDataError::Algorithm(_))
        ));
    }
}
