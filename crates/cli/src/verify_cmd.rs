//! `ward verify`: verify one piece of evidence offline, as of a given time,
//! and print one JSON object: claims and `verdict` (`valid`, `invalid`,
//! `error`) with `error`. Exit codes: 0 valid, 1 invalid, 2 usage or input
//! error.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use ward_proto::kbs::{Attestation, TeeEvidence};
use ward_proto::Tee;
use ward_verifier::VerifierRegistry;

#[derive(clap::Args)]
#[command(
    after_help = "Accepted evidence: a KBS Attestation message (the runtime-data binding is checked too); \
a TEE's primary_evidence JSON (sample, snp, tdx, sgx, az-snp-vtpm, az-tdx-vtpm); a raw SNP report \
(1184 bytes, or 1204 with the Azure IGVM request header after it; binary, hex or base64 text); \
a raw SGX (v3) or TDX (v4, v5) quote (binary, hex or base64 text).\n\n\
Output: one JSON object on stdout with \"verdict\" (valid | invalid | error), \"error\", \
\"as_of\" (RFC 3339) and \"as_of_unix\".\n\
Exit codes: 0 valid, 1 invalid, 2 usage or input error."
)]
pub struct VerifyArgs {
    /// TEE of the evidence (case-insensitive); detected from the evidence
    /// when left out.
    #[arg(long)]
    tee: Option<String>,
    /// Evidence file (`-` for standard input); see the accepted forms below.
    #[arg(long)]
    evidence: PathBuf,
    /// Expected report_data (hex); compared with the evidence's field
    /// (zero-padded to the field's size).
    #[arg(long)]
    report_data: Option<String>,
    /// Expected nonce of an Attestation message (default: the nonce it carries).
    #[arg(long)]
    nonce: Option<String>,
    /// Verify as of this time: RFC 3339 (2025-01-01T00:00:00Z), a date
    /// (2025-01-01, midnight UTC) or Unix seconds; default now.
    #[arg(long)]
    as_of: Option<String>,
    /// Also appraise the claims with an attestation policy: `default` (the
    /// TEE's built-in policy) or a Rego file; prints its trust vector.
    /// Offline there are no reference values.
    #[arg(long)]
    policy: Option<String>,
    /// SNP and az-snp-vtpm: an AMD KDS cert_chain bundle (ASK or ASVK, then
    /// ARK; may start with the VCEK/VLEK), beside the built-in VCEK chains
    /// of Milan, Genoa and Turin; needed for VLEK evidence. Repeatable.
    #[arg(long)]
    cert_chain: Vec<PathBuf>,
    /// SNP: the VCEK or VLEK (DER or PEM) for a raw report.
    #[arg(long)]
    vcek: Option<PathBuf>,
    /// SNP: a directory of KDS-shaped collateral (VCEKs, cert_chain
    /// bundles), consulted when the evidence carries no VCEK.
    #[arg(long)]
    collateral_dir: Option<PathBuf>,
    /// SNP: fetch a missing VCEK from AMD KDS (off by default: offline).
    #[arg(long)]
    kds_fetch: bool,
    /// TDX/SGX: Intel collateral — a flat collateral JSON file; a
    /// directory of such files and/or raw PCS response directories; or,
    /// repeated, the raw PCS files of one set: the TCB info and QE identity
    /// responses (JSON), the issuer chain(s) (PEM; one named `*qe*` is the
    /// QE identity's) and the PCK and root CA CRLs (DER).
    #[arg(long)]
    collateral: Vec<PathBuf>,
    /// TDX: the CC event log (binary) of a raw quote, replayed against its RTMRs.
    #[arg(long)]
    ccel: Option<PathBuf>,
}

/// How long `ward verify` waits for collateral it fetches (`--kds-fetch`).
const FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// One collateral file given on the command line.
#[derive(Debug)]
struct FileCollateral(ward_dcap::verify::Collateral);

impl ward_verifier::dcap::DcapCollateralSource for FileCollateral {
    fn collateral(
        &self,
        _fmspc: &str,
        _tee: &str,
        _pck_ca: &str,
        _now: i64,
    ) -> Result<ward_dcap::verify::Collateral, ward_verifier::CollateralError> {
        // Its FMSPC is checked against the PCK certificate by the verifier.
        Ok(self.0.clone())
    }
}

fn dcap_source(
    a: &VerifyArgs,
) -> Result<Option<std::sync::Arc<dyn ward_verifier::dcap::DcapCollateralSource>>> {
    let files = &a.collateral;
    if files.is_empty() {
        return Ok(None);
    }
    if let [p] = files.as_slice() {
        if p.is_dir() {
            return Ok(Some(std::sync::Arc::new(
                ward_collateral::DcapCollateralDir::new(Some(p.clone()), None),
            )));
        }
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        if let Ok(c) = ward_dcap::verify::Collateral::from_flat_json(&text) {
            return Ok(Some(std::sync::Arc::new(FileCollateral(c))));
        }
    }
    Ok(Some(std::sync::Arc::new(FileCollateral(pcs_files(files)?))))
}

/// One collateral set from raw PCS files, each recognised by its content.
fn pcs_files(files: &[PathBuf]) -> Result<ward_dcap::verify::Collateral> {
    let (mut tcb, mut qe, mut chain, mut qe_chain, mut pck_crl, mut root_crl) =
        (None, None, None, None, None, None);
    for p in files {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let text = String::from_utf8(bytes).unwrap_or_default();
            if v.get("tcbInfo").is_some() {
                tcb = Some(text);
            } else if v.get("enclaveIdentity").is_some() {
                qe = Some(text);
            } else {
                anyhow::bail!(
                    "{}: JSON that is neither flat collateral nor a PCS TCB info or QE identity response",
                    p.display()
                );
            }
        } else if bytes.starts_with(b"-----BEGIN") {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if name.contains("qe") || name.contains("enclave") {
                qe_chain = Some(text);
            } else {
                chain = Some(text);
            }
        } else {
            let crl = ward_dcap::pck::Crl::from_der(&p.display().to_string(), &bytes)
                .map_err(|e| anyhow::anyhow!("{}: not JSON, PEM or a DER CRL: {e}", p.display()))?;
            if crl.issuer.windows(17).any(|w| w == b"Intel SGX Root CA") || name.contains("root") {
                root_crl = Some(bytes);
            } else {
                pck_crl = Some(bytes);
            }
        }
    }
    fn need<T>(v: Option<T>, what: &str) -> Result<T> {
        v.ok_or_else(|| anyhow::anyhow!("--collateral files: missing {what}"))
    }
    let chain = need(chain.or_else(|| qe_chain.clone()), "the issuer chain (PEM)")?;
    ward_dcap::verify::Collateral::from_pcs(
        &need(tcb, "the TCB info response (JSON with tcbInfo)")?,
        &chain,
        &need(qe, "the QE identity response (JSON with enclaveIdentity)")?,
        qe_chain.as_deref().unwrap_or(&chain),
        &need(pck_crl, "the PCK CRL (DER)")?,
        &need(root_crl, "the root CA CRL (DER)")?,
    )
    .map_err(|e| anyhow::anyhow!("--collateral files: {e}"))
}

fn snp_verifier(a: &VerifyArgs) -> Result<ward_verifier::snp::SnpVerifier> {
    let cfg = ward_collateral::SnpConfig {
        cert_chains: a.cert_chain.clone(),
        collateral_dir: a.collateral_dir.clone(),
        kds_fetch: a.kds_fetch,
        ..Default::default()
    };
    ward_collateral::snp_verifier(&cfg, None).map_err(|e| anyhow::anyhow!(e))
}

/// A raw report with its VCEK/VLEK (given, from the collateral or KDS):
/// the claims, and the same report as CoCo `snp` evidence JSON.
fn verify_raw_snp(
    a: &VerifyArgs,
    verifier: &ward_verifier::snp::SnpVerifier,
    bytes: &[u8],
    now: i64,
) -> Result<(Value, Value), Failure> {
    let given = match &a.vcek {
        Some(p) => {
            Some(std::fs::read(p).map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?)
        }
        None => None,
    };
    let report = ward_snp::report::AttestationReport::from_bytes(bytes)
        .map_err(|e| Failure::Input(format!("SNP report: {e}")))?;
    let vcek = ward_collateral::fetch::verify_waiting(FETCH_WAIT, || {
        verifier.vek_for(&report, given.as_deref())
    })
    .map_err(classify)?;
    let v = verifier
        .verify_report_with(&report, &vcek, now)
        .map_err(classify)?;
    let kind = match report.signing_key() {
        ward_snp::report::SigningKey::Vlek => "VLEK",
        _ => "VCEK",
    };
    let der = ward_snp::certs::AmdCert::from_der_or_pem("VEK", &vcek)
        .map(|c| c.der)
        .unwrap_or(vcek);
    let coco = ward_snp::evidence::to_evidence_json(
        &report,
        v.product(),
        &[ward_snp::evidence::CertTableEntry {
            cert_type: kind.into(),
            data: der,
        }],
    );
    Ok((
        json!({"claims": ward_verifier::snp::claims(&v), "report_data": hex::encode(report.report_data())}),
        coco,
    ))
}

/// What went wrong, and which exit code says so.
enum Failure {
    /// The evidence was examined and is not valid (exit 1).
    Invalid(String),
    /// The command could not examine it: arguments, unreadable or
    /// unrecognisable input, malformed evidence (exit 2).
    Input(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Invalid(e)
    }
}

/// Verification errors that are the input's format rather than its
/// validity.
fn classify(e: ward_verifier::VerifyError) -> Failure {
    match e {
        ward_verifier::VerifyError::Malformed(_)
        | ward_verifier::VerifyError::UnsupportedTee(_) => Failure::Input(e.to_string()),
        other => Failure::Invalid(other.to_string()),
    }
}

/// Exit codes of `ward verify` (also in `--help`).
pub const EXIT_VALID: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_INPUT: u8 = 2;

/// Verify, print one JSON object with `verdict` (`valid`, `invalid` or
/// `error`) and `error`, and return the exit code.
pub fn run(a: VerifyArgs) -> u8 {
    let as_of = a.as_of.as_deref().map(parse_as_of).transpose();
    let now = match &as_of {
        Ok(t) => t.unwrap_or_else(crate::now),
        Err(_) => crate::now(),
    };
    let mut tee = None;
    let result = match as_of {
        Ok(_) => evaluate(&a, now, &mut tee),
        Err(e) => Err(Failure::Input(e)),
    };
    let (code, mut out) = match result {
        Ok(mut body) => {
            body["verdict"] = json!("valid");
            body["error"] = Value::Null;
            (EXIT_VALID, body)
        }
        Err(Failure::Invalid(e)) => (EXIT_INVALID, json!({"verdict": "invalid", "error": e})),
        Err(Failure::Input(e)) => (EXIT_INPUT, json!({"verdict": "error", "error": e})),
    };
    // The TEE as far as it was established (given, or detected).
    out["tee"] = json!(tee.or_else(|| a.tee.as_deref().map(str::to_ascii_lowercase)));
    out["as_of"] = json!(rfc3339(now));
    out["as_of_unix"] = json!(now);
    match serde_json::to_string_pretty(&out) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("ward verify: {e}"),
    }
    code
}

/// `--as-of`: an RFC 3339 time, a date (midnight UTC) or Unix seconds.
fn parse_as_of(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.trim_start_matches('@').parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &fmt) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    Err(format!(
        "--as-of {s:?} is not an RFC 3339 time (2025-01-01T00:00:00Z), a date (2025-01-01) or Unix seconds (1735689600)"
    ))
}

pub use ward_proto::times::rfc3339;

/// The evidence as `ward verify` found it.
enum Input {
    /// A raw 1184-byte SNP report.
    SnpReport(Vec<u8>),
    /// A raw DCAP quote, and whether it is a TD quote.
    Quote(Vec<u8>, bool),
    /// JSON: a KBS Attestation message or a TEE's primary evidence.
    Json(Value),
}

/// Bytes of the 20-byte header the Azure IGVM attestation request puts
/// after the report when a raw SNP report is saved from it.
const IGVM_TRAILER: usize = 20;

fn binary(raw: &[u8]) -> Option<Input> {
    if raw.len() == ward_snp::report::REPORT_LEN
        || raw.len() == ward_snp::report::REPORT_LEN + IGVM_TRAILER
    {
        return Some(Input::SnpReport(
            raw[..ward_snp::report::REPORT_LEN].to_vec(),
        ));
    }
    if raw.len() > 48 && matches!(raw[0], 3..=5) && raw[1] == 0 {
        let td = ward_dcap::quote::Quote::parse(raw)
            .ok()
            .map(|q| matches!(q.body, ward_dcap::quote::Body::Td(_)))?;
        return Some(Input::Quote(raw.to_vec(), td));
    }
    None
}

/// Recognise the evidence: JSON, raw binary, or raw binary as hex or
/// base64 text.
fn recognise(raw: &[u8]) -> Option<Input> {
    if let Ok(v) = serde_json::from_slice::<Value>(raw) {
        if v.is_object() {
            return Some(Input::Json(v));
        }
    }
    if let Some(i) = binary(raw) {
        return Some(i);
    }
    let text: String = std::str::from_utf8(raw)
        .ok()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let text = text.trim_start_matches("0x");
    if let Ok(b) = hex::decode(text) {
        return binary(&b);
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .ok()
        .and_then(|b| binary(&b))
}

/// The TEE whose primary evidence `v` looks like.
fn tee_of_json(v: &Value) -> Option<&'static str> {
    let ev = v.get("tee-evidence").map_or(v, |t| &t["primary_evidence"]);
    if ev.get("attestation_report").is_some() {
        return Some("snp");
    }
    if ev.get("hcl_report").is_some() || ev.get("report").is_some() {
        return Some(if ev.get("td_quote").is_some() {
            "az-tdx-vtpm"
        } else {
            "az-snp-vtpm"
        });
    }
    if let Some(q) = ev.get("quote").and_then(Value::as_str) {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.decode(q).ok()?;
        return match binary(&b)? {
            Input::Quote(_, true) => Some("tdx"),
            Input::Quote(_, false) => Some("sgx"),
            _ => None,
        };
    }
    if ev.get("svn").is_some() && ev.get("report_data").is_some() {
        return Some("sample");
    }
    None
}

fn evaluate(a: &VerifyArgs, now: i64, tee_out: &mut Option<String>) -> Result<Value, Failure> {
    let raw = crate::read_input(&a.evidence).map_err(|e| Failure::Input(format!("{e:#}")))?;
    let expected_rd = a
        .report_data
        .as_deref()
        .map(hex::decode)
        .transpose()
        .map_err(|_| Failure::Input("--report-data is not hex".into()))?;
    // The command line's trust anchors and collateral, read once, in the
    // same registry `ward serve` builds (`ward_collateral::registry_with`).
    let input_err = |e: anyhow::Error| Failure::Input(format!("{e:#}"));
    let dcap = dcap_source(a).map_err(input_err)?;
    let snp = snp_verifier(a).map_err(input_err)?;
    let reg = ward_collateral::registry_with(snp.clone(), dcap.clone(), Vec::new());
    let input = recognise(&raw).ok_or_else(|| {
        Failure::Input(format!(
            "{} is not evidence ward recognises: expected a KBS Attestation message or a TEE's evidence JSON, \
             a raw SNP report (1184 bytes, or 1204 with the Azure IGVM header; binary, hex or base64) \
             or a raw SGX/TDX quote (binary, hex or base64)",
            a.evidence.display()
        ))
    })?;
    let detected = match &input {
        Input::SnpReport(_) => Some("snp"),
        Input::Quote(_, true) => Some("tdx"),
        Input::Quote(_, false) => Some("sgx"),
        Input::Json(v) => tee_of_json(v),
    };
    let tee = match &a.tee {
        Some(t) => {
            let t = t.to_ascii_lowercase();
            if !reg.tees().contains(&t.as_str()) {
                return Err(Failure::Input(format!(
                    "--tee {t:?} is not one ward verifies; valid: {}",
                    reg.tees().join(", ")
                )));
            }
            // Raw quotes and reports say what they are: a TDX quote is no
            // SGX evidence, and the other way round.
            if let (Input::SnpReport(_) | Input::Quote(..), Some(d)) = (&input, detected) {
                if d != t {
                    return Err(Failure::Invalid(format!(
                        "the evidence is a raw {d} {}, not {t} evidence; verify it with --tee {d}",
                        if d == "snp" { "report" } else { "quote" }
                    )));
                }
            }
            t
        }
        None => detected
            .ok_or_else(|| {
                Failure::Input(format!(
                    "cannot tell which TEE {} comes from; give --tee (one of {})",
                    a.evidence.display(),
                    reg.tees().join(", ")
                ))
            })?
            .to_string(),
    };
    *tee_out = Some(tee.clone());
    let tee_t = Tee::new(tee.clone());
    let policy = a
        .policy
        .as_deref()
        .map(|p| load_policy(p, &tee))
        .transpose()
        .map_err(Failure::Input)?;
    let (body, verified) = match input {
        Input::Quote(q, _) => {
            let ccel = a
                .ccel
                .as_ref()
                .map(|p| crate::read_input(p))
                .transpose()
                .map_err(|e| Failure::Input(format!("{e:#}")))?;
            let c =
                ward_verifier::dcap::verify_quote_bytes(dcap.as_deref(), &q, ccel.as_deref(), now)
                    .map_err(classify)?;
            let body = json!({"claims": c.claims, "report_data": hex::encode(&c.report_data)});
            let verified = match &policy {
                Some(_) => {
                    use base64::Engine;
                    let mut ev =
                        json!({"quote": base64::engine::general_purpose::STANDARD.encode(&q)});
                    if let Some(l) = &ccel {
                        ev["cc_eventlog"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(l));
                    }
                    Some(unbound(&reg, &tee_t, ev, now)?)
                }
                None => None,
            };
            (body, verified)
        }
        Input::SnpReport(bytes) => {
            let (body, coco) = verify_raw_snp(a, &snp, &bytes, now)?;
            let verified = match &policy {
                Some(_) => Some(unbound(&reg, &tee_t, coco, now)?),
                None => None,
            };
            (body, verified)
        }
        Input::Json(doc) if doc.get("tee-evidence").is_some() => {
            let (body, v) = verify_attestation(&reg, &tee_t, doc, a.nonce.as_deref(), now)?;
            (body, Some(v))
        }
        Input::Json(doc) => {
            let ev = TeeEvidence {
                primary_evidence: doc.clone(),
                additional_evidence: String::new(),
            };
            let c = ward_collateral::fetch::verify_waiting(FETCH_WAIT, || {
                reg.verify_evidence(&tee_t, &ev, now)
            })
            .map_err(classify)?;
            let body = json!({
                "claims": c.claims,
                "report_data": hex::encode(&c.report_data),
                "init_data_binding": c.init_data.map(|b| b.to_hex()),
            });
            let verified = match &policy {
                Some(_) => Some(unbound(&reg, &tee_t, doc, now)?),
                None => None,
            };
            (body, verified)
        }
    };
    let mut body = check_report_data(body, expected_rd.as_deref())?;
    match (&policy, &verified) {
        (Some(p), Some(v)) => body["appraisal"] = appraisal_json(v, p)?,
        (None, Some(v)) if v.annotated_evidence().get("runtime_data_claims").is_some() => {
            if let Ok(p) = load_policy("default", &tee) {
                let mut ap = appraisal_json(v, &p)?;
                ap["note"] = json!("built-in default policy without reference values");
                body["default_appraisal"] = ap;
            }
        }
        _ => {}
    }
    Ok(body)
}

fn unbound(
    reg: &VerifierRegistry,
    tee: &Tee,
    evidence: Value,
    now: i64,
) -> Result<ward_verifier::VerifiedEvidence, Failure> {
    let ev = TeeEvidence {
        primary_evidence: evidence,
        additional_evidence: String::new(),
    };
    ward_collateral::fetch::verify_waiting(FETCH_WAIT, || reg.verify_unbound(tee, &ev, now))
        .map_err(classify)
}

/// `--policy default` (the TEE's built-in attestation policy) or a Rego
/// file, compiled as the trust service would, without reference values.
fn load_policy(p: &str, tee: &str) -> Result<ward_policy::Policy, String> {
    let (id, text) = if p == "default" {
        let t = ward_verifier::default_attestation_policy(tee)
            .ok_or_else(|| format!("TEE {tee} has no built-in attestation policy"))?;
        ("default".to_string(), t.to_string())
    } else {
        let text = std::fs::read_to_string(p).map_err(|e| format!("--policy {p}: {e}"))?;
        (p.to_string(), text)
    };
    ward_verifier::compile_attestation_policy(&id, &text)
        .and_then(|c| c.with_data(&ward_verifier::reference_data(&Default::default())))
        .map_err(|e| format!("--policy: {e}"))
}

fn appraisal_json(
    v: &ward_verifier::VerifiedEvidence,
    p: &ward_policy::Policy,
) -> Result<Value, Failure> {
    let a = ward_verifier::appraise(v, p).map_err(|e| Failure::Input(format!("--policy: {e}")))?;
    Ok(json!({
        "policy": a.policy_id,
        "ear.status": a.status,
        "ear.trustworthiness-vector": a.trust_vector,
    }))
}

/// Compare the evidence's report_data (hex in `body`) with the expected
/// value, zero-padded to the field's size.
fn check_report_data(body: Value, expected: Option<&[u8]>) -> Result<Value, Failure> {
    let Some(rd) = expected else { return Ok(body) };
    let field = body["report_data"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    let mut want = rd.to_vec();
    if want.len() > field.len() {
        return Err(Failure::Input(
            "expected report_data is longer than the evidence's field".into(),
        ));
    }
    want.resize(field.len(), 0);
    if want != field {
        return Err(Failure::Invalid(
            "report_data does not match the expected value".into(),
        ));
    }
    Ok(body)
}

fn verify_attestation(
    reg: &VerifierRegistry,
    tee: &Tee,
    doc: Value,
    nonce: Option<&str>,
    now: i64,
) -> Result<(Value, ward_verifier::VerifiedEvidence), Failure> {
    let att: Attestation = serde_json::from_value(doc)
        .map_err(|e| Failure::Input(format!("attestation message: {e}")))?;
    let nonce = nonce.unwrap_or(&att.runtime_data.nonce).to_string();
    let verified = ward_collateral::fetch::verify_waiting(FETCH_WAIT, || {
        reg.verify_attestation(tee, &att, &nonce, now)
    })
    .map_err(classify)?;
    let out = json!({"annotated_evidence": verified.annotated_evidence(), "runtime_data_binding": "valid"});
    Ok((out, verified))
}
