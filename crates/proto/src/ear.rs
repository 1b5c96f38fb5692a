//! EAR attestation results (draft-ietf-rats-ear) with the AR4SI
//! trustworthiness vector (draft-ietf-rats-ar4si), laid out as CoCo's
//! resource policies expect (`submods.cpu0`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The EAT profile ward's tokens carry.
pub const EAT_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// The eight AR4SI trustworthiness claims, with wire names.
pub const TRUST_CLAIMS: [&str; 8] = [
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
];

/// AR4SI trustworthiness vector; each value in -128..=127, 0 = no claim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustVector {
    #[serde(rename = "instance-identity")]
    pub instance_identity: i8,
    pub configuration: i8,
    pub executables: i8,
    #[serde(rename = "file-system")]
    pub file_system: i8,
    pub hardware: i8,
    #[serde(rename = "runtime-opaque")]
    pub runtime_opaque: i8,
    #[serde(rename = "storage-opaque")]
    pub storage_opaque: i8,
    #[serde(rename = "sourced-data")]
    pub sourced_data: i8,
}

/// The tier of a trustworthiness value, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    None,
    Affirming,
    Warning,
    Contraindicated,
}

impl Status {
    /// AR4SI §2.3.3 tiers: ±(0..=1) none, ±(2..=31) affirming, ±(32..=95)
    /// warning, ±(96..=127) contraindicated.
    pub fn of(value: i8) -> Status {
        match (value as i16).abs() {
            0..=1 => Status::None,
            2..=31 => Status::Affirming,
            32..=95 => Status::Warning,
            _ => Status::Contraindicated,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
        }
    }
}

impl TrustVector {
    pub fn values(&self) -> [i8; 8] {
        [
            self.instance_identity,
            self.configuration,
            self.executables,
            self.file_system,
            self.hardware,
            self.runtime_opaque,
            self.storage_opaque,
            self.sourced_data,
        ]
    }

    /// Set a claim by its wire name (`file-system`) or Rego-friendly name
    /// (`file_system`). Returns false for an unknown name.
    pub fn set(&mut self, name: &str, value: i8) -> bool {
        let slot = match name.replace('_', "-").as_str() {
            "instance-identity" => &mut self.instance_identity,
            "configuration" => &mut self.configuration,
            "executables" => &mut self.executables,
            "file-system" => &mut self.file_system,
            "hardware" => &mut self.hardware,
            "runtime-opaque" => &mut self.runtime_opaque,
            "storage-opaque" => &mut self.storage_opaque,
            "sourced-data" => &mut self.sourced_data,
            _ => return false,
        };
        *slot = value;
        true
    }

    /// The overall status: the worst tier of any claim.
    pub fn status(&self) -> Status {
        self.values()
            .into_iter()
            .map(Status::of)
            .max()
            .unwrap_or(Status::None)
    }
}

/// `ear.verifier-id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifierId {
    pub developer: String,
    pub build: String,
}

/// One appraisal (`submods.cpu0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appraisal {
    #[serde(rename = "ear.status")]
    pub status: Status,
    #[serde(rename = "ear.trustworthiness-vector")]
    pub trust_vector: TrustVector,
    #[serde(rename = "ear.appraisal-policy-id")]
    pub policy_id: String,
    /// `{"<tee>": claims, "runtime_data_claims", "init_data", "init_data_claims", "report_data"}`.
    #[serde(rename = "ear.veraison.annotated-evidence")]
    pub annotated_evidence: Value,
}

/// The EAR claims set of an attestation token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarClaims {
    pub eat_profile: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eat_nonce: Option<String>,
    pub submods: std::collections::BTreeMap<String, Appraisal>,
}

impl EarClaims {
    /// The TEE public key the KBS wraps resources to:
    /// `submods.cpu0."ear.veraison.annotated-evidence".runtime_data_claims."tee-pubkey"`.
    pub fn tee_pubkey(claims: &Value) -> Option<&Value> {
        claims
            .get("submods")?
            .get("cpu0")?
            .get("ear.veraison.annotated-evidence")?
            .get("runtime_data_claims")?
            .get("tee-pubkey")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_tiers_match_ar4si() {
        assert_eq!(Status::of(0), Status::None);
        assert_eq!(Status::of(1), Status::None);
        assert_eq!(Status::of(2), Status::Affirming);
        assert_eq!(Status::of(33), Status::Warning);
        assert_eq!(Status::of(97), Status::Contraindicated);
        assert_eq!(Status::of(-128), Status::Contraindicated);
        assert_eq!(Status::of(-2), Status::Affirming);
    }

    #[test]
    fn vector_status_is_worst_claim_as_in_capture() {
        // The captured reference token: configuration 2, executables 33,
        // hardware 97 → contraindicated.
        let mut v = TrustVector::default();
        v.set("configuration", 2);
        v.set("executables", 33);
        assert_eq!(v.status(), Status::Warning);
        v.set("hardware", 97);
        assert_eq!(v.status(), Status::Contraindicated);
        assert!(!v.set("bogus", 1));
        assert!(v.set("file_system", 2));
    }
}
