//! `ward verify`: verify one piece of evidence offline, as of a given time,
//! print claims and verdict as JSON, exit 1 when it is not valid.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use ward_proto::kbs::{Attestation, TeeEvidence};
use ward_proto::Tee;
use ward_verifier::VerifierRegistry;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// TEE of the evidence.
    #[arg(long, default_value = "sample")]
    tee: String,
    /// Evidence file (`-` for standard input): a KBS Attestation message
    /// (runtime-data binding is then checked too) or the TEE's
    /// `primary_evidence` JSON.
    #[arg(long)]
    evidence: PathBuf,
    /// Expected report_data (hex); compared with the evidence's field
    /// (zero-padded to the field's size).
    #[arg(long)]
    report_data: Option<String>,
    /// Expected nonce of an Attestation message (default: the nonce it carries).
    #[arg(long)]
    nonce: Option<String>,
    /// Verify as of this time (RFC 3339); default now.
    #[arg(long)]
    as_of: Option<String>,
    /// SNP and az-snp-vtpm: an AMD KDS cert_chain bundle (ASK or ASVK, then
    /// ARK); repeatable.
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
    /// TDX/SGX: Intel collateral — a flat collateral JSON file, or a
    /// directory of such files and/or raw PCS response directories.
    #[arg(long)]
    collateral: Option<PathBuf>,
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
    ) -> Result<ward_dcap::verify::Collateral, ward_verifier::CollateralError> {
        // Its FMSPC is checked against the PCK certificate by the verifier.
        Ok(self.0.clone())
    }
}

fn dcap_source(
    a: &VerifyArgs,
) -> Result<Option<std::sync::Arc<dyn ward_verifier::dcap::DcapCollateralSource>>> {
    let Some(p) = &a.collateral else {
        return Ok(None);
    };
    if p.is_dir() {
        return Ok(Some(std::sync::Arc::new(
            ward_kbs::collateral::DcapCollateralDir::new(Some(p.clone()), None),
        )));
    }
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let c = ward_dcap::verify::Collateral::from_flat_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    Ok(Some(std::sync::Arc::new(FileCollateral(c))))
}

/// A raw quote: binary (starts with version 3/4/5) or hex text.
fn raw_quote(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() > 48 && matches!(raw[0], 3..=5) && raw[1] == 0 {
        return Some(raw.to_vec());
    }
    let t = std::str::from_utf8(raw).ok()?.trim();
    hex::decode(t.trim_start_matches("0x"))
        .ok()
        .filter(|b| b.len() > 48)
}

fn snp_verifier(a: &VerifyArgs) -> Result<ward_verifier::snp::SnpVerifier> {
    let mut cfg = ward_kbs::Config::default();
    cfg.snp.cert_chains = a.cert_chain.clone();
    cfg.snp.collateral_dir = a.collateral_dir.clone();
    cfg.snp.kds_fetch = a.kds_fetch;
    ward_kbs::serve::snp_verifier(&cfg, None).map_err(|e| anyhow::anyhow!(e))
}

fn registry(a: &VerifyArgs) -> Result<VerifierRegistry> {
    let mut r = ward_kbs::serve::default_verifiers();
    let dcap = dcap_source(a)?;
    r.register(std::sync::Arc::new(ward_verifier::dcap::DcapVerifier::tdx(
        dcap.clone(),
    )));
    r.register(std::sync::Arc::new(ward_verifier::dcap::DcapVerifier::sgx(
        dcap,
    )));
    let snp = snp_verifier(a)?;
    r.register(std::sync::Arc::new(
        ward_verifier::az_snp_vtpm::AzSnpVtpmVerifier::new(snp.clone()),
    ));
    r.register(std::sync::Arc::new(snp));
    Ok(r)
}

/// A raw SNP report: 1184 bytes, or their hex text.
fn raw_snp_report(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() == ward_snp::report::REPORT_LEN {
        return Some(raw.to_vec());
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    hex::decode(text)
        .ok()
        .filter(|b| b.len() == ward_snp::report::REPORT_LEN)
}

fn verify_raw_snp(a: &VerifyArgs, bytes: &[u8], now: i64) -> Result<Value, String> {
    let given = match &a.vcek {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let report =
        ward_snp::report::AttestationReport::from_bytes(bytes).map_err(|e| e.to_string())?;
    let verifier = snp_verifier(a).map_err(|e| e.to_string())?;
    let vcek = ward_kbs::fetch::verify_waiting(FETCH_WAIT, || {
        verifier.vek_for(&report, given.as_deref())
    })
    .map_err(|e| e.to_string())?;
    let v = verifier
        .verify_report_with(&report, &vcek, now)
        .map_err(|e| e.to_string())?;
    Ok(
        json!({"claims": ward_verifier::snp::claims(&v), "report_data": hex::encode(report.report_data())}),
    )
}

pub fn run(a: VerifyArgs) -> Result<()> {
    let now = match &a.as_of {
        Some(t) => crate::parse_time(t)?,
        None => crate::now(),
    };
    let raw = crate::read_input(&a.evidence)?;
    let tee = Tee::new(a.tee.clone());
    let expected_rd = a
        .report_data
        .as_deref()
        .map(hex::decode)
        .transpose()
        .context("--report-data is not hex")?;
    let reg = registry(&a)?;
    let snp_raw = if a.tee == "snp" {
        raw_snp_report(&raw)
    } else {
        None
    };

    let dcap_raw = if matches!(a.tee.as_str(), "tdx" | "sgx") {
        raw_quote(&raw)
    } else {
        None
    };
    let outcome = if let Some(q) = &dcap_raw {
        let ccel = a.ccel.as_ref().map(|p| crate::read_input(p)).transpose()?;
        ward_verifier::dcap::verify_quote_bytes(
            dcap_source(&a)?.as_deref(),
            q,
            ccel.as_deref(),
            now,
        )
        .map_err(|e| e.to_string())
        .and_then(|c| {
            check_report_data(
                json!({"claims": c.claims, "report_data": hex::encode(&c.report_data)}),
                expected_rd.as_deref(),
            )
        })
    } else if let Some(bytes) = &snp_raw {
        verify_raw_snp(&a, bytes, now)
            .and_then(|body| check_report_data(body, expected_rd.as_deref()))
    } else {
        let doc: Value = serde_json::from_slice(&raw).with_context(|| {
            format!("{} is neither JSON nor a raw report", a.evidence.display())
        })?;
        if doc.get("tee-evidence").is_some() {
            verify_attestation(&reg, &tee, doc, a.nonce.as_deref(), now)
        } else {
            let ev = TeeEvidence {
                primary_evidence: doc,
                additional_evidence: String::new(),
            };
            ward_kbs::fetch::verify_waiting(FETCH_WAIT, || reg.verify_evidence(&tee, &ev, now))
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    check_report_data(
                        json!({
                            "claims": c.claims,
                            "report_data": hex::encode(&c.report_data),
                            "init_data_binding": c.init_data.map(|b| b.to_hex()),
                        }),
                        expected_rd.as_deref(),
                    )
                })
        }
    };
    let (code, out) = match outcome {
        Ok(mut body) => {
            body["tee"] = json!(a.tee);
            body["verdict"] = json!("valid");
            body["as_of"] = json!(now);
            (ExitCode::SUCCESS, body)
        }
        Err(e) => (
            ExitCode::FAILURE,
            json!({"tee": a.tee, "verdict": "invalid", "error": e, "as_of": now}),
        ),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    if code != ExitCode::SUCCESS {
        std::process::exit(1);
    }
    Ok(())
}

/// Compare the evidence's report_data (hex in `body`) with the expected
/// value, zero-padded to the field's size.
fn check_report_data(body: Value, expected: Option<&[u8]>) -> Result<Value, String> {
    let Some(rd) = expected else { return Ok(body) };
    let field = body["report_data"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    let mut want = rd.to_vec();
    if want.len() > field.len() {
        return Err("expected report_data is longer than the evidence's field".into());
    }
    want.resize(field.len(), 0);
    if want != field {
        return Err("report_data does not match the expected value".into());
    }
    Ok(body)
}

fn verify_attestation(
    reg: &VerifierRegistry,
    tee: &Tee,
    doc: Value,
    nonce: Option<&str>,
    now: i64,
) -> Result<Value, String> {
    let att: Attestation =
        serde_json::from_value(doc).map_err(|e| format!("attestation message: {e}"))?;
    let nonce = nonce.unwrap_or(&att.runtime_data.nonce).to_string();
    let verified = ward_kbs::fetch::verify_waiting(FETCH_WAIT, || {
        reg.verify_attestation(tee, &att, &nonce, now)
    })
    .map_err(|e| e.to_string())?;
    let mut out = json!({"annotated_evidence": verified.annotated_evidence(), "runtime_data_binding": "valid"});
    if let Some(src) = ward_verifier::default_attestation_policy(tee.as_str()) {
        let policy = ward_verifier::compile_attestation_policy("default", src)
            .and_then(|p| p.with_data(&ward_verifier::reference_data(&Default::default())))
            .map_err(|e| e.to_string())?;
        let appraisal = ward_verifier::appraise(&verified, &policy).map_err(|e| e.to_string())?;
        out["default_appraisal"] = json!({
            "ear.status": appraisal.status,
            "ear.trustworthiness-vector": appraisal.trust_vector,
            "note": "built-in default policy without reference values",
        });
    }
    Ok(out)
}
