//! KBS protocol 0.4.0 messages (RCAR: Request, Challenge, Attestation,
//! Response) and the error body. Shapes follow the captured exchange between
//! the reference client and server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hash::HashAlgorithm;
use crate::jcs;
use crate::jwk::Jwk;

/// The only protocol version the reference server accepts.
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// Prefix of every error `type` URI.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

/// A TEE type as named in the Request. Open-ended: unknown names survive
/// parsing and are refused by the verifier registry with a clear error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tee(pub String);

impl Tee {
    pub const SAMPLE: &'static str = "sample";
    pub const SNP: &'static str = "snp";
    pub const TDX: &'static str = "tdx";
    pub const SGX: &'static str = "sgx";
    pub const AZ_SNP_VTPM: &'static str = "az-snp-vtpm";
    pub const AZ_TDX_VTPM: &'static str = "az-tdx-vtpm";

    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `POST /kbs/v0/auth` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub version: String,
    pub tee: Tee,
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

impl Request {
    /// The request the reference client sends.
    pub fn new(tee: Tee) -> Self {
        Self {
            version: PROTOCOL_VERSION.to_string(),
            tee,
            extra_params: serde_json::json!({
                "supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]
            }),
        }
    }
}

/// `POST /kbs/v0/auth` answer. `extra-params` is the empty string on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// Runtime data the guest binds into its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeData {
    pub nonce: String,
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: Jwk,
}

/// `tee-evidence` of the Attestation (keys use underscores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeeEvidence {
    pub primary_evidence: Value,
    #[serde(default)]
    pub additional_evidence: String,
}

/// Init-data as carried in the Attestation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitDataMessage {
    pub format: String,
    pub body: String,
}

/// `POST /kbs/v0/attest` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    #[serde(rename = "init-data", default)]
    pub init_data: Option<InitDataMessage>,
    #[serde(rename = "runtime-data")]
    pub runtime_data: RuntimeData,
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: TeeEvidence,
}

/// `POST /kbs/v0/attest` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttestationToken {
    pub token: String,
}

/// RFC 7807-style error body of the reference server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
}

impl ErrorBody {
    pub fn new(kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{ERROR_TYPE_PREFIX}{kind}"),
            detail: detail.into(),
        }
    }

    /// The short kind (`TokenNotFound`, …) when the type URI is a KBS one.
    pub fn short_kind(&self) -> &str {
        self.kind
            .strip_prefix(ERROR_TYPE_PREFIX)
            .unwrap_or(&self.kind)
    }
}

/// The JSON object whose canonical form is hashed into report_data.
pub fn runtime_data_claims(runtime: &RuntimeData, additional_evidence: &str) -> Value {
    serde_json::json!({
        "additional-evidence": additional_evidence,
        "nonce": runtime.nonce,
        "tee-pubkey": runtime.tee_pubkey,
    })
}

/// report_data = H(JCS({"additional-evidence", "nonce", "tee-pubkey"})).
pub fn runtime_data_hash(
    runtime: &RuntimeData,
    additional_evidence: &str,
    alg: HashAlgorithm,
) -> Result<Vec<u8>, jcs::JcsError> {
    let canonical = jcs::to_vec(&runtime_data_claims(runtime, additional_evidence))?;
    Ok(alg.digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attestation body of the captured reference exchange.
    const CAPTURED_ATTEST: &str = r#"{
      "init-data": null,
      "runtime-data": {
        "nonce": "WS2Qz3nxf9s8Yt+1WupJzTj7WjPR9RTXQRmhIndrtPg=",
        "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
          "x": "AiQ-0IznxChsrGh3t1EjEOem0_U1t2vV93ov3MWkad0",
          "y": "JnvUzr32TIfafYNkRlj24LoRNHjk4ZEIXlLAu70wXYE"}
      },
      "tee-evidence": {
        "primary_evidence": {"report_data": "U8sJInV0udN8I6m6Wibv/VnR8nSiLxpnYIJmyR4/thuXBajCtyJMNbHd80Lbn9C5", "svn": "1"},
        "additional_evidence": ""
      }
    }"#;

    #[test]
    fn accepts_captured_attestation_and_reproduces_its_report_data() {
        let att: Attestation = serde_json::from_str(CAPTURED_ATTEST).unwrap();
        let h = runtime_data_hash(&att.runtime_data, "", HashAlgorithm::Sha384).unwrap();
        let expected = crate::b64::std_decode(
            "report_data",
            att.tee_evidence.primary_evidence["report_data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(h, expected);
    }

    #[test]
    fn serialises_challenge_with_empty_string_extra_params() {
        let c = Challenge {
            nonce: "n".into(),
            extra_params: Value::String(String::new()),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"nonce":"n","extra-params":""}"#
        );
    }

    #[test]
    fn error_body_type_uri() {
        let e = ErrorBody::new("TokenNotFound", "Attestation Token not found");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"https://github.com/confidential-containers/kbs/errors/TokenNotFound","detail":"Attestation Token not found"}"#
        );
        assert_eq!(e.short_kind(), "TokenNotFound");
    }
}
