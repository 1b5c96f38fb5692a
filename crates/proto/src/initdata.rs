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
    #[error("init-data annotation: {0}")]
    Annotation(String),
}

/// The Kata pod annotation carrying init-data: base64(gzip(TOML)).
pub const ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";

/// Encode init-data TOML in the annotation form (base64 of gzip).
pub fn encode_annotation(toml: &str) -> Result<String, InitDataError> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(toml.as_bytes())
        .and_then(|_| gz.finish())
        .map(crate::b64::std_encode)
        .map_err(|e| InitDataError::Annotation(e.to_string()))
}

/// Decode the annotation form back into the TOML text, refusing anything
/// that inflates beyond [`MAX_INITDATA_LEN`].
pub fn decode_annotation(text: &str) -> Result<String, InitDataError> {
    use std::io::Read;
    let gz = crate::b64::std_decode("init-data annotation", text.trim())
        .map_err(|e| InitDataError::Annotation(e.to_string()))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(MAX_INITDATA_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| InitDataError::Annotation(format!("not gzip: {e}")))?;
    if out.len() > MAX_INITDATA_LEN {
        return Err(InitDataError::TooLarge);
    }
    String::from_utf8(out).map_err(|_| InitDataError::Annotation("not UTF-8 text".into()))
}

/// Init-data given either as TOML text or in the annotation form.
/// The `policy_data` of an agent policy written by `ward policy generate`
/// (the JSON after its last `policy_data := `), or `None` for a policy
/// of another shape.
pub fn agent_policy_data(policy: &str) -> Option<serde_json::Value> {
    let at = policy.rfind("\npolicy_data := ")?;
    serde_json::from_str(policy[at..].trim_start().strip_prefix("policy_data := ")?).ok()
}

pub fn read_toml_or_annotation(text: &str) -> Result<String, InitDataError> {
    if toml::from_str::<toml::Table>(text).is_ok() {
        Ok(text.to_string())
    } else {
        decode_annotation(text)
    }
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
    fn annotation_round_trip_and_limits() {
        let a = encode_annotation(DOC).unwrap();
        assert_eq!(decode_annotation(&a).unwrap(), DOC);
        assert_eq!(read_toml_or_annotation(&a).unwrap(), DOC);
        assert_eq!(read_toml_or_annotation(DOC).unwrap(), DOC);
        assert!(matches!(
            decode_annotation("!!"),
            Err(InitDataError::Annotation(_))
        ));
        assert!(matches!(
            decode_annotation("aGVsbG8="),
            Err(InitDataError::Annotation(_))
        ));
        // A small gzip that inflates past the limit is refused.
        let bomb = encode_annotation(&"a".repeat(MAX_INITDATA_LEN + 10)).unwrap();
        assert!(bomb.len() < 4096);
        assert_eq!(decode_annotation(&bomb), Err(InitDataError::TooLarge));
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
