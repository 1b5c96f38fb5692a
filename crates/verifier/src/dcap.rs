//! The `tdx` and `sgx` TEEs: CoCo evidence (`{"quote": base64, "cc_eventlog":
//! base64?}`) verified with `ward-dcap` against collateral looked up by the
//! PCK certificate's FMSPC. The collateral source does the I/O (directory,
//! store, PCS); this module only asks.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use ward_dcap::ccel::EventLog;
use ward_dcap::quote::{Body, Quote};
use ward_dcap::verify::{quote_fmspc, Collateral, DcapCache, Verdict};
use ward_proto::kbs::TeeEvidence;

use crate::verify::{InitDataBinding, TeeClaims, Verifier, VerifyError};

/// Where DCAP collateral comes from.
pub trait DcapCollateralSource: Send + Sync + std::fmt::Debug {
    /// Collateral for `fmspc` (upper-case hex) and `tee` (`"TDX"` or
    /// `"SGX"`) whose PCK CRL is the one of `pck_ca` (`"platform"` or
    /// `"processor"`), valid at `now` when the source holds several sets
    /// (see `ward_dcap::verify::select_collateral`), or an error naming the
    /// FMSPC and what is missing.
    fn collateral(
        &self,
        fmspc: &str,
        tee: &str,
        pck_ca: &str,
        now: i64,
    ) -> Result<Collateral, crate::CollateralError>;
}

/// Verifier of `tdx` (or `sgx`) evidence.
#[derive(Debug, Clone)]
pub struct DcapVerifier {
    tdx: bool,
    source: Option<Arc<dyn DcapCollateralSource>>,
    cache: Arc<DcapCache>,
}

impl DcapVerifier {
    pub fn tdx(source: Option<Arc<dyn DcapCollateralSource>>) -> Self {
        Self {
            tdx: true,
            source,
            cache: Default::default(),
        }
    }
    pub fn sgx(source: Option<Arc<dyn DcapCollateralSource>>) -> Self {
        Self {
            tdx: false,
            source,
            cache: Default::default(),
        }
    }

    /// Also trust these simulator roots (SHA-256 of the root certificate);
    /// claims of quotes under them say `"simulated": true`.
    pub fn with_simulated_roots(mut self, roots: Vec<[u8; 32]>) -> Self {
        self.cache = Arc::new(DcapCache::with_simulated_roots(roots));
        self
    }
}

fn b64(field: &str, v: &Value) -> Result<Vec<u8>, VerifyError> {
    let s = v
        .as_str()
        .ok_or_else(|| VerifyError::Malformed(format!("{field} is missing or not a string")))?;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('='))
        })
        .map_err(|_| VerifyError::Malformed(format!("{field} is not base64")))
}

fn dcap_err(e: ward_dcap::verify::VerifyError) -> VerifyError {
    use ward_dcap::verify::VerifyError as E;
    let check = match &e {
        E::Parse(_) => return VerifyError::Malformed(e.to_string()),
        E::Pck(p) => match p {
            ward_dcap::pck::PckError::Validity { .. } => "dcap.certificate_validity",
            ward_dcap::pck::PckError::Revoked(_) => "dcap.pck_revoked",
            ward_dcap::pck::PckError::Crl(_) => "dcap.crl",
            _ => "dcap.pck_chain",
        },
        E::QeReportSignature => "dcap.qe_report_signature",
        E::QeBinding => "dcap.qe_binding",
        E::QuoteSignature => "dcap.quote_signature",
        E::CollateralSignature { .. } => "dcap.collateral_signature",
        E::CollateralExpired { .. } => "dcap.collateral_expired",
        E::NoTcbLevel { .. } => "dcap.tcb_level",
        E::QeIdentity(_) => "dcap.qe_identity",
        E::TdxModule(_) => "dcap.tdx_module",
        _ => "dcap.collateral",
    };
    VerifyError::Check {
        check,
        detail: e.to_string(),
    }
}

fn verdict_claims(v: &Verdict) -> Value {
    json!({
        "tcb_status": v.status.as_str(),
        "advisory_ids": v.advisory_ids,
        "fmspc": v.fmspc,
        "collateral_expiry": v.collateral_expiry,
        "qe_tcb_status": v.qe_status.as_str(),
        "simulated": v.simulated,
        "pck_tcb": {"compsvn": v.pck_compsvn, "pcesvn": v.pck_pcesvn},
    })
}

/// Verify raw quote bytes (and an optional CC event log) into claims.
pub fn verify_quote_bytes(
    source: Option<&dyn DcapCollateralSource>,
    quote: &[u8],
    ccel: Option<&[u8]>,
    now: i64,
) -> Result<TeeClaims, VerifyError> {
    verify_quote_cached(&DcapCache::default(), source, quote, ccel, now)
}

/// [`verify_quote_bytes`] with a cache of checked collateral and chains.
pub fn verify_quote_cached(
    cache: &DcapCache,
    source: Option<&dyn DcapCollateralSource>,
    quote: &[u8],
    ccel: Option<&[u8]>,
    now: i64,
) -> Result<TeeClaims, VerifyError> {
    let q = Quote::parse(quote).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let tee = if matches!(q.body, Body::Td(_)) {
        "TDX"
    } else {
        "SGX"
    };
    let (fmspc, pck_ca) = quote_fmspc(&q).map_err(dcap_err)?;
    let source = source.ok_or_else(|| {
        VerifyError::Config(format!(
            "no DCAP collateral source configured (needed for FMSPC {fmspc})"
        ))
    })?;
    let collateral = source
        .collateral(&fmspc, tee, pck_ca, now)
        .map_err(|e| e.into_verify_error("dcap.collateral"))?;
    let verdict = cache.verify(&q, &collateral, now).map_err(dcap_err)?;
    let mut claims = verdict_claims(&verdict);
    let Value::Object(c) = &mut claims else {
        return Err(VerifyError::Config("claims are not an object".into()));
    };
    let (report_data, init) = match &q.body {
        Body::Td(t) => {
            c.insert("mr_td".into(), json!(hex::encode(t.mr_td)));
            for (i, r) in t.rtmr.iter().enumerate() {
                c.insert(format!("rtmr{i}"), json!(hex::encode(r)));
            }
            c.insert("mr_seam".into(), json!(hex::encode(t.mr_seam)));
            c.insert(
                "mr_signer_seam".into(),
                json!(hex::encode(t.mr_signer_seam)),
            );
            c.insert("mr_config_id".into(), json!(hex::encode(t.mr_config_id)));
            c.insert("mr_owner".into(), json!(hex::encode(t.mr_owner)));
            c.insert(
                "mr_owner_config".into(),
                json!(hex::encode(t.mr_owner_config)),
            );
            c.insert(
                "td_attributes".into(),
                json!({
                    "raw": hex::encode(t.td_attributes),
                    "debug": t.debug(),
                    "sept_ve_disable": t.td_attributes[3] & 0x10 != 0,
                    "pks": t.td_attributes[3] & 0x40 != 0,
                    "perfmon": t.td_attributes[7] & 0x80 != 0,
                }),
            );
            c.insert("xfam".into(), json!(hex::encode(t.xfam)));
            c.insert("tee_tcb_svn".into(), json!(hex::encode(t.tee_tcb_svn)));
            if let Some(s) = t.tee_tcb_svn2 {
                c.insert("tee_tcb_svn2".into(), json!(hex::encode(s)));
            }
            c.insert("report_data".into(), json!(hex::encode(t.report_data)));
            if let Some(log) = ccel {
                let log =
                    EventLog::parse(log).map_err(|e| VerifyError::Malformed(e.to_string()))?;
                if log.replay() != t.rtmr {
                    return Err(VerifyError::Check {
                        check: "tdx.ccel_replay",
                        detail: "the CC event log does not replay to the quote's RTMRs".into(),
                    });
                }
                c.insert("ccel".into(), json!(log.events));
            }
            (t.report_data.to_vec(), t.mr_config_id.to_vec())
        }
        Body::Sgx(r) => {
            c.insert("mr_enclave".into(), json!(hex::encode(r.mr_enclave)));
            c.insert("mr_signer".into(), json!(hex::encode(r.mr_signer)));
            c.insert("isv_prod_id".into(), json!(r.isv_prod_id));
            c.insert("isv_svn".into(), json!(r.isv_svn));
            c.insert(
                "attributes".into(),
                json!({"raw": hex::encode(r.attributes), "debug": r.debug()}),
            );
            c.insert("config_id".into(), json!(hex::encode(r.config_id)));
            c.insert("config_svn".into(), json!(r.config_svn));
            c.insert("cpu_svn".into(), json!(hex::encode(r.cpu_svn)));
            c.insert("report_data".into(), json!(hex::encode(r.report_data)));
            (r.report_data.to_vec(), r.config_id.to_vec())
        }
    };
    Ok(TeeClaims {
        claims,
        report_data_claim: Value::String(hex::encode(&report_data)),
        report_data,
        init_data: Some(InitDataBinding::Field(init)),
    })
}

impl Verifier for DcapVerifier {
    fn tee(&self) -> &'static str {
        if self.tdx {
            "tdx"
        } else {
            "sgx"
        }
    }

    fn verify_evidence(&self, evidence: &TeeEvidence, now: i64) -> Result<TeeClaims, VerifyError> {
        let ev = &evidence.primary_evidence;
        let quote = b64("quote", &ev["quote"])?;
        let ccel = match ev.get("cc_eventlog") {
            None | Some(Value::Null) => None,
            Some(v) => Some(b64("cc_eventlog", v)?),
        };
        let claims = verify_quote_cached(
            &self.cache,
            self.source.as_deref(),
            &quote,
            ccel.as_deref(),
            now,
        )?;
        let is_td = claims.claims.get("mr_td").is_some();
        if is_td != self.tdx {
            return Err(VerifyError::Malformed(format!(
                "a {} quote sent as {} evidence",
                if is_td { "TDX" } else { "SGX" },
                self.tee()
            )));
        }
        Ok(claims)
    }
}
