//! Appraisal of verified claims by an attestation policy into an EAR
//! appraisal, and issuance of the signed EAR token.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;
use ward_policy::{Claims, Input, Policy, PolicyError, Provided, Unavailable};
use ward_proto::ear::{Appraisal, EarClaims, TrustVector, VerifierId, EAT_PROFILE};
use ward_proto::jwt::{Es256Signer, JwtError};

use crate::verify::VerifiedEvidence;

/// The rules an attestation policy may define, one per AR4SI claim (Rego
/// names use underscores).
pub const TRUST_RULES: [&str; 8] = [
    "instance_identity",
    "configuration",
    "executables",
    "file_system",
    "hardware",
    "runtime_opaque",
    "storage_opaque",
    "sourced_data",
];

/// The package attestation policies live in.
pub const ATTESTATION_PACKAGE: &str = "policy";

/// Built-in default attestation policy of a TEE (Rego source).
pub fn default_attestation_policy(tee: &str) -> Option<&'static str> {
    match tee {
        "sample" => Some(include_str!("policies/sample.rego")),
        "snp" => Some(include_str!("policies/snp.rego")),
        "az-snp-vtpm" => Some(include_str!("policies/az_snp_vtpm.rego")),
        "tdx" => Some(include_str!("policies/tdx.rego")),
        "sgx" => Some(include_str!("policies/sgx.rego")),
        _ => None,
    }
}

/// Evaluate `policy` (compiled with `data.reference` loaded) over the
/// verified evidence. A rule value outside -128..=127 is a policy error.
/// The appraisal's `annotated_evidence` is left null: [`issue_token`] signs
/// it from the evidence itself, which is not copied.
pub fn appraise(evidence: &VerifiedEvidence, policy: &Policy) -> Result<Appraisal, PolicyError> {
    let results = policy.eval_ints_claims(evidence, &TRUST_RULES)?;
    let mut tv = TrustVector::default();
    for (rule, value) in results {
        let v = i8::try_from(value).map_err(|_| PolicyError::Type {
            id: policy.id().into(),
            rule: rule.clone(),
            expected: "an integer in -128..=127",
            got: value.to_string(),
        })?;
        tv.set(&rule, v);
    }
    Ok(Appraisal {
        status: tv.status(),
        trust_vector: tv,
        policy_id: policy.id().to_string(),
        annotated_evidence: Value::Null,
    })
}

/// Issuer and lifetime of attestation tokens.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub lifetime_secs: i64,
    /// `ear.verifier-id.developer`: who built the verifier (default
    /// [`DEFAULT_DEVELOPER`]).
    pub developer: String,
}

/// The default `ear.verifier-id.developer`: the project's name.
pub const DEFAULT_DEVELOPER: &str = "ward";

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "ward".into(),
            lifetime_secs: 300,
            developer: DEFAULT_DEVELOPER.into(),
        }
    }
}

/// Where the appraised evidence sits in a token's claims.
pub const EVIDENCE_AT: [&str; 3] = ["submods", "cpu0", "ear.veraison.annotated-evidence"];

/// The claims of an attestation token as a resource policy reads them:
/// issued here (the EAR envelope, as JSON only once a policy reads it, and
/// the verified evidence kept as it was appraised rather than copied or
/// converted again), or parsed from a token's payload. Converted to a policy
/// input only when a policy must evaluate them, and then once.
pub struct TokenClaims {
    /// The signed claims, without the evidence (issued tokens).
    ear: Option<EarClaims>,
    /// `ear` as JSON, or the parsed payload.
    envelope: OnceLock<Value>,
    evidence: Option<VerifiedEvidence>,
    input: OnceLock<Input>,
}

impl TokenClaims {
    /// The claims of a token's payload.
    pub fn parsed(claims: Value) -> Self {
        Self {
            ear: None,
            envelope: OnceLock::from(claims),
            evidence: None,
            input: OnceLock::new(),
        }
    }

    /// Why a release may have been refused, in words for the caller and the
    /// log: the token's `ear.status`, its trust vector, and each claim
    /// short of affirming with its AR4SI meaning. Says nothing of the
    /// reference values or the policy text.
    pub fn appraisal_summary(&self) -> String {
        let sub = &self.envelope()["submods"][EVIDENCE_AT[1]];
        let status = sub["ear.status"].as_str().unwrap_or("unknown");
        let Some(tv) = sub["ear.trustworthiness-vector"].as_object() else {
            return format!("the token's ear.status is {status}");
        };
        let mut vector = Vec::new();
        let mut short = Vec::new();
        for (claim, v) in tv {
            let Some(v) = v.as_i64().and_then(|v| i8::try_from(v).ok()) else {
                continue;
            };
            vector.push(format!("{claim}={v}"));
            if ward_proto::ear::Status::of(v) != ward_proto::ear::Status::Affirming && v != 0 {
                let meaning = ward_proto::ear::trust_claim_meaning(claim, v)
                    .unwrap_or("outside the affirming range");
                short.push(format!("{claim} {v}: {meaning}"));
            }
        }
        let mut out = format!(
            "the token's ear.status is {status}; trust vector {}",
            vector.join(", ")
        );
        if !short.is_empty() {
            out.push_str(&format!("; short of affirming: {}", short.join("; ")));
        }
        out
    }

    fn envelope(&self) -> &Value {
        self.envelope.get_or_init(|| {
            // Only string-keyed maps: serializing cannot fail. (If it did,
            // the policy would read nulls and deny.)
            self.ear
                .as_ref()
                .and_then(|ear| serde_json::to_value(ear).ok())
                .unwrap_or(Value::Null)
        })
    }
}

impl Claims for TokenClaims {
    fn json_at(&self, path: &[String]) -> Result<Option<&Value>, Unavailable> {
        let Some(evidence) = &self.evidence else {
            return Ok(ward_policy::json_at(self.envelope(), path));
        };
        let shared = path
            .iter()
            .zip(EVIDENCE_AT)
            .take_while(|(a, b)| a == b)
            .count();
        if shared == EVIDENCE_AT.len() {
            Ok(ward_policy::json_at(
                evidence.annotated_evidence(),
                &path[shared..],
            ))
        } else if shared == path.len() {
            // Above the evidence: the envelope alone holds a null there.
            Err(Unavailable)
        } else {
            Ok(ward_policy::json_at(self.envelope(), path))
        }
    }

    fn input(&self) -> Result<Input, PolicyError> {
        if let Some(input) = self.input.get() {
            return Ok(input.clone());
        }
        let mut input = Input::from_value(self.envelope());
        if let Some(evidence) = &self.evidence {
            input.replace(&EVIDENCE_AT, evidence.policy_input().clone())?;
        }
        Ok(self.input.get_or_init(|| input).clone())
    }
}

/// Sign an EAR token for one appraisal of `evidence`, valid from `now`.
/// Returns the token and its claims, which read (and convert) as parsing the
/// signed payload would, without parsing it: the evidence is kept as is.
pub fn issue_token(
    signer: &Es256Signer,
    mut appraisal: Appraisal,
    mut evidence: VerifiedEvidence,
    settings: &TokenSettings,
    now: i64,
) -> Result<(String, TokenClaims), JwtError> {
    // Lent to the claims for signing, and given back below.
    appraisal.annotated_evidence = std::mem::take(evidence.annotated_mut());
    let mut submods = BTreeMap::new();
    submods.insert(EVIDENCE_AT[1].to_string(), appraisal);
    let mut claims = EarClaims {
        eat_profile: EAT_PROFILE.into(),
        iat: now,
        exp: now + settings.lifetime_secs,
        iss: settings.issuer.clone(),
        verifier_id: VerifierId {
            developer: settings.developer.clone(),
            build: concat!("ward ", env!("CARGO_PKG_VERSION")).into(),
        },
        eat_nonce: None,
        submods,
    };
    let payload = serde_json::to_vec(&claims);
    if let Some(a) = claims.submods.get_mut(EVIDENCE_AT[1]) {
        *evidence.annotated_mut() = std::mem::take(&mut a.annotated_evidence);
    }
    let token = signer.sign_payload(&payload.map_err(|_| JwtError::Json("payload"))?)?;
    Ok((
        token,
        TokenClaims {
            ear: Some(claims),
            envelope: OnceLock::new(),
            evidence: Some(evidence),
            input: OnceLock::new(),
        },
    ))
}

/// Load reference values as the `data` document of an attestation policy.
/// Each value is given as stored: a list, or one value given on its own.
/// ward's policies read `data.reference.<name>`, always a list; Trustee's
/// `query_reference_value(name)` answers the stored shape (see
/// [`ATTESTATION_FUNCTIONS`]).
pub fn reference_data(values: &BTreeMap<String, Value>) -> Value {
    let lists: BTreeMap<&String, Value> = values
        .iter()
        .map(|(k, v)| match v {
            Value::Array(_) => (k, v.clone()),
            one => (k, Value::Array(vec![one.clone()])),
        })
        .collect();
    serde_json::json!({ "reference": lists, "rvps": values })
}

/// Functions attestation policies may call besides the builtins:
/// `query_reference_value(name)`, as Trustee registers it in its policy
/// engine (the reference value stored under `name`, a list or a single
/// value as it was set, and `null` when there is none), so that Trustee's
/// policies run unchanged.
pub const ATTESTATION_FUNCTIONS: [Provided; 1] = [Provided {
    function: "query_reference_value",
    module: "query_reference_value(name) := object.get(data.rvps, name, null)\n",
}];

/// Compile an attestation policy: package `policy`, at least one rule named
/// after an AR4SI trust claim ([`TRUST_RULES`]), and every call resolved
/// (builtins, its own functions, [`ATTESTATION_FUNCTIONS`]).
pub fn compile_attestation_policy(id: &str, text: &str) -> Result<Policy, PolicyError> {
    let p = Policy::compile_with(id, text, ATTESTATION_PACKAGE, &ATTESTATION_FUNCTIONS)?;
    if !TRUST_RULES.iter().any(|r| p.declares(r)) {
        return Err(PolicyError::MissingRule {
            id: id.into(),
            expected: format!("one of the trust-claim rules {}", TRUST_RULES.join(", ")),
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use ward_proto::jwt::UnverifiedJwt;
    use ward_proto::kbs::{runtime_data_hash, Attestation, RuntimeData, TeeEvidence};
    use ward_proto::{HashAlgorithm, Tee};

    use super::*;
    use crate::sample::{sample_evidence, SampleVerifier};
    use crate::VerifierRegistry;

    #[test]
    fn token_input_equals_the_parsed_payload() {
        let mut registry = VerifierRegistry::new();
        registry.register(Arc::new(SampleVerifier));
        let runtime_data = RuntimeData {
            nonce: "bm9uY2U=".into(),
            tee_pubkey: serde_json::from_value(json!({
                "kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
                "x": "eA", "y": "eQ"
            }))
            .unwrap(),
        };
        let hash = runtime_data_hash(&runtime_data, "", HashAlgorithm::Sha384).unwrap();
        let attestation = Attestation {
            init_data: None,
            runtime_data,
            tee_evidence: TeeEvidence {
                primary_evidence: sample_evidence(&hash),
                additional_evidence: String::new(),
            },
        };
        let evidence = registry
            .verify_attestation(&Tee::new("sample"), &attestation, "bm9uY2U=", 0)
            .unwrap();
        let policy = Policy::compile(
            "sample",
            default_attestation_policy("sample").unwrap(),
            ATTESTATION_PACKAGE,
        )
        .unwrap()
        .with_data(&reference_data(&BTreeMap::new()))
        .unwrap();
        let appraisal = appraise(&evidence, &policy).unwrap();
        let (signer, _) = Es256Signer::generate().unwrap();
        let (token, issued) = issue_token(
            &signer,
            appraisal,
            evidence,
            &TokenSettings::default(),
            1000,
        )
        .unwrap();

        let claims = UnverifiedJwt::parse(&token).unwrap().claims;
        assert_eq!(claims["exp"], 1300);
        assert_eq!(
            claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]["svn"],
            "1"
        );
        let payload = serde_json::to_vec(&claims).unwrap();
        assert_eq!(issued.input().unwrap(), Input::from_json(&payload).unwrap());
        // Read at a path, the issued claims answer as the payload does: in
        // the envelope, in the evidence, absent; above the evidence they
        // cannot answer alone.
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for p in [
            &["exp"][..],
            &["submods", "cpu0", "ear.status"],
            &["submods", "cpu0", "ear.veraison.annotated-evidence"],
            &[
                "submods",
                "cpu0",
                "ear.veraison.annotated-evidence",
                "sample",
                "svn",
            ],
            &["submods", "cpu0", "ear.veraison.annotated-evidence", "nope"],
            &["submods", "cpu1"],
            &["nope", "deeper"],
        ] {
            assert_eq!(
                issued.json_at(&path(p)).unwrap(),
                ward_policy::json_at(&claims, &path(p)),
                "{p:?}"
            );
        }
        for p in [&[][..], &["submods"], &["submods", "cpu0"]] {
            assert_eq!(issued.json_at(&path(p)), Err(Unavailable), "{p:?}");
        }
        let parsed = TokenClaims::parsed(claims.clone());
        assert_eq!(
            parsed.json_at(&path(&["submods", "cpu0"])).unwrap(),
            Some(&claims["submods"]["cpu0"])
        );
        // A resource policy sees the evidence inside the token, whether it
        // reads one value (memoized) or the whole of it.
        for src in [
            "package policy\ndefault allow = false\nallow { input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample.svn == \"1\" }\n",
            "package policy\ndefault allow = false\nallow { x := input; x.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample.svn == \"1\" }\n",
            "package policy\ndefault allow = false\nallow { input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample.svn == \"1\"; input.submods.cpu0 }\n",
        ] {
            let resource = Policy::compile("r", src, "policy").unwrap();
            assert!(resource.eval_bool_claims(&issued, "allow").unwrap(), "{src}");
            assert!(resource.eval_bool_claims(&parsed, "allow").unwrap(), "{src}");
        }
    }

    /// Every single-leaf change of `v` (removed, nulled, or given other
    /// values), with the path it changed.
    fn variants(v: &Value) -> Vec<Value> {
        fn walk(root: &Value, at: &mut Vec<String>, out: &mut Vec<Value>) {
            let here = at.iter().fold(root, |v, k| &v[k.as_str()]);
            let alternatives: Vec<Value> = match here {
                Value::Object(m) => {
                    for k in m.keys().cloned().collect::<Vec<_>>() {
                        at.push(k);
                        walk(root, at, out);
                        at.pop();
                    }
                    vec![json!("zz")]
                }
                Value::String(_) => ["zz", "UpToDate", "SWHardeningNeeded", "OutOfDate"]
                    .map(Value::from)
                    .to_vec(),
                Value::Bool(b) => vec![json!(!b)],
                Value::Number(n) => {
                    let n = n.as_i64().unwrap();
                    vec![json!(n - 1), json!(n + 1)]
                }
                _ => vec![],
            };
            let Some((last, parents)) = at.split_last() else {
                return;
            };
            let set = |new: Option<Value>| {
                let mut c = root.clone();
                let parent = parents.iter().fold(&mut c, |v, k| &mut v[k.as_str()]);
                let m = parent.as_object_mut().unwrap();
                match new {
                    Some(x) => m.insert(last.clone(), x),
                    None => m.remove(last),
                };
                c
            };
            out.push(set(None));
            out.push(set(Some(Value::Null)));
            out.extend(alternatives.into_iter().map(|x| set(Some(x))));
        }
        let mut out = vec![v.clone()];
        walk(v, &mut Vec::new(), &mut out);
        out
    }

    /// The built-in policies read per-guest claims (report_data, nonces) not
    /// at all, so guests with the same measurements share memoized verdicts.
    /// (az-snp-vtpm reads its claims as a whole and is not listed.)
    #[test]
    fn builtin_policies_do_not_key_their_memo_on_report_data() {
        for tee in ["sample", "snp", "tdx", "sgx"] {
            let paths = ward_policy::input_paths(default_attestation_policy(tee).unwrap())
                .unwrap_or_else(|| panic!("{tee}: not memoizable"));
            let report_data = [tee, "report_data"];
            for p in &paths {
                assert!(
                    !report_data.starts_with(&p.iter().map(String::as_str).collect::<Vec<_>>()[..]),
                    "{tee} reads {p:?}"
                );
                assert_ne!(
                    p.first().map(String::as_str),
                    Some("runtime_data_claims"),
                    "{tee}"
                );
            }
        }
    }

    /// The memo of a long-lived policy never changes a verdict: each built-in
    /// attestation policy, over every single-field change of a typical input
    /// (twice, so the second pass is answered from the memo), gives what a
    /// freshly loaded copy of the same policy gives.
    #[test]
    fn memoized_appraisals_equal_fresh_evaluation() {
        let tcb = json!({"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115});
        let min_tcb = json!({"snp_min_bootloader": [3], "snp_min_tee": [0], "snp_min_snp": [8], "snp_min_microcode": [115]});
        let cases = [
            (
                "sample",
                json!({"sample": {"svn": "1", "launch_digest": "ab", "debug": false, "report_data": "rd"}, "runtime_data_claims": {"nonce": "n"}}),
                json!({"sample_svn": ["1"], "sample_launch_digest": ["ab"]}),
            ),
            (
                "snp",
                json!({"snp": {"measurement": "m1", "policy": {"debug_allowed": false, "migrate_ma_allowed": false}, "reported_tcb": tcb, "vmpl": 0, "report_data": "rd"}}),
                json!({"snp_launch_measurement": ["m1"]}),
            ),
            (
                "tdx",
                json!({"tdx": {"mr_td": "t", "rtmr0": "r0", "rtmr1": "r1", "tcb_status": "UpToDate", "td_attributes": {"debug": false}, "report_data": "rd"}}),
                json!({"tdx_mrtd": ["t"], "tdx_rtmr1": ["r1"], "dcap_reject_out_of_date": [true]}),
            ),
            (
                "sgx",
                json!({"sgx": {"mr_enclave": "e", "mr_signer": "s", "isv_svn": 2, "tcb_status": "OutOfDate", "attributes": {"debug": false}, "report_data": "rd"}}),
                json!({"sgx_mrsigner": ["s"], "sgx_min_isv_svn": [2]}),
            ),
            (
                "az-snp-vtpm",
                json!({"az-snp-vtpm": {"tpm": {"pcr07": "p7", "pcr11": "p11"}, "reported_tcb": tcb, "policy": {"debug_allowed": false, "migrate_ma_allowed": false}, "vm_configuration": {"secure-boot": true}, "report_data": "rd"}}),
                json!({"tpm_pcr07": ["p7"]}),
            ),
        ];
        for (tee, base, refs) in cases {
            let mut refs = refs;
            if tee.contains("snp") {
                refs.as_object_mut()
                    .unwrap()
                    .extend(min_tcb.as_object().unwrap().clone());
            }
            let data = json!({ "reference": refs });
            let compiled = Policy::compile(
                tee,
                default_attestation_policy(tee).unwrap(),
                ATTESTATION_PACKAGE,
            )
            .unwrap();
            let memoizing = compiled.with_data(&data).unwrap();
            let inputs = variants(&base);
            let mut verdicts = std::collections::BTreeSet::new();
            for input in inputs.iter().chain(inputs.iter().rev()) {
                let fresh = compiled
                    .with_data(&data)
                    .unwrap()
                    .eval_ints(input, &TRUST_RULES)
                    .unwrap();
                let memo = memoizing.eval_ints(input, &TRUST_RULES).unwrap();
                assert_eq!(memo, fresh, "{tee}: {input}");
                verdicts.insert(fresh);
            }
            // The variants reach more than one verdict, so the comparison
            // means something.
            assert!(verdicts.len() >= 3, "{tee}: {verdicts:?}");
        }
    }
}
