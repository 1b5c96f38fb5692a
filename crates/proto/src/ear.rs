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

/// What an AR4SI trust-claim value means, for explaining an appraisal
/// (draft-ietf-rats-ar4si, section 2.3); `None` for values without a
/// standard meaning for that claim.
pub fn trust_claim_meaning(claim: &str, value: i8) -> Option<&'static str> {
    let m = match (claim.replace('_', "-").as_str(), value) {
        (_, 0) => "no claim was made",
        (_, 1) => "the verifier malfunctioned",
        (_, -1) => "the verifier could not make a claim",
        ("instance-identity", 2) => "recognized and not compromised",
        ("instance-identity", 96) => "not recognized, or compromised",
        ("configuration", 2) => "a known and approved configuration",
        ("configuration", 3) => "no known vulnerabilities in the configuration",
        ("configuration", 32) => "the configuration has known vulnerabilities",
        ("configuration", 36) => "elements of the configuration relevant to security are unavailable to the verifier (for example debug or policy values not approved)",
        ("configuration", 96) => "the configuration is not supportable",
        ("executables", 2) => "only recognized, approved executables were loaded",
        ("executables", 3) => "only recognized, approved executables were loaded during boot",
        ("executables", 32) => "recognized executables with known vulnerabilities",
        ("executables", 33) => "executables that are not recognized (for example the launch measurement is not among the reference values)",
        ("executables", 96) => "contraindicated executables",
        ("executables", 99) => "executables not recognized and not expected",
        ("file-system", 2) => "only recognized, approved files",
        ("file-system", 32) => "unrecognized files",
        ("file-system", 96) => "contraindicated files",
        ("hardware", 2) => "genuine, supported hardware and firmware",
        ("hardware", 32) => "hardware or firmware with known vulnerabilities",
        ("hardware", 96) => "hardware or firmware that is not safe",
        ("hardware", 97) => "hardware or firmware that the verifier does not recognize (for example no hardware root of trust, or a TCB below the required level)",
        ("runtime-opaque", 2) => "memory is encrypted and inaccessible to untrusted components",
        ("runtime-opaque", 32) => "memory is visible to untrusted components",
        ("runtime-opaque", 96) => "memory is not protected",
        ("storage-opaque", 2) => "secrets are kept in hardware-protected storage",
        ("storage-opaque", 32) => "secrets are kept in storage that is not hardware-protected",
        ("storage-opaque", 96) => "no protected storage",
        ("sourced-data", 2) => "all data comes from attested sources",
        ("sourced-data", 32) => "some data comes from unattested sources",
        ("sourced-data", 96) => "data comes from contraindicated sources",
        _ => return None,
    };
    Some(m)
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
