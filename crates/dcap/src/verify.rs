//! DCAP quote verification as of a given time, after Intel's Quote
//! Verification Library semantics:
//!
//! 1. PCK chain (leaf → Platform/Processor CA → pinned Intel SGX Root CA),
//!    validity, CRLs (root CRL for the intermediate, PCK CRL for the leaf).
//! 2. QE report signed by the PCK key; QE report_data = SHA-256(attestation
//!    key ‖ QE auth data) ‖ zeros.
//! 3. Quote signature over header ‖ body by the attestation key.
//! 4. TCB info and QE identity: signatures by the TCB Signing certificate
//!    (chained to the root) over their exact JSON text, freshness
//!    (nextUpdate), FMSPC / PCE-ID match.
//! 5. TCB level: the first level whose SGX components and PCESVN are at
//!    most the PCK certificate's (and, for TDX, whose TDX components are at
//!    most TEE_TCB_SVN, the module's two skipped when a module identity
//!    applies); the TDX module identity and QE identity levels; statuses
//!    converged; advisory IDs collected.

use aws_lc_rs::{digest, signature};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::pck::{intel_root, verify_chain, Cert, Crl, PckError};
use crate::quote::{Body, Quote};

/// Why a quote was rejected: names the check and, for collateral, the
/// FMSPC and item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error(transparent)]
    Pck(#[from] PckError),
    #[error(transparent)]
    Parse(#[from] crate::ParseError),
    #[error("dcap.qe_report_signature: the QE report is not signed by the PCK key")]
    QeReportSignature,
    #[error("dcap.qe_binding: QE report_data is not SHA-256(attestation key || QE auth data)")]
    QeBinding,
    #[error("dcap.quote_signature: the quote is not signed by its attestation key")]
    QuoteSignature,
    #[error("dcap.collateral: {0}")]
    Collateral(String),
    #[error(
        "dcap.collateral_signature: {item} signature does not verify over its exact JSON text"
    )]
    CollateralSignature { item: &'static str },
    #[error(
        "dcap.collateral_expired: {item} for FMSPC {fmspc} expired at {next_update} (now {})", crate::pck::rfc3339(*now)
    )]
    CollateralExpired {
        item: &'static str,
        fmspc: String,
        next_update: String,
        now: i64,
    },
    #[error(
        "dcap.tcb_level: no TCB level of FMSPC {fmspc} matches this platform (TCB not supported); platform: {platform}; nearest level: {nearest}"
    )]
    NoTcbLevel {
        fmspc: String,
        /// The platform's SVNs (from the PCK certificate and the TD report).
        platform: String,
        /// The level short by the fewest components, with its SVNs.
        nearest: String,
    },
    #[error("dcap.qe_identity: {0}")]
    QeIdentity(String),
    #[error("dcap.tdx_module: {0}")]
    TdxModule(String),
}

/// Verification collateral for one FMSPC, as PCS serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collateral {
    /// Exact JSON text of the `tcbInfo` object.
    pub tcb_info: String,
    pub tcb_info_signature: Vec<u8>,
    pub tcb_info_issuer_chain: String,
    /// Exact JSON text of the `enclaveIdentity` object.
    pub qe_identity: String,
    pub qe_identity_signature: Vec<u8>,
    pub qe_identity_issuer_chain: String,
    pub pck_crl: Vec<u8>,
    pub root_ca_crl: Vec<u8>,
}

#[derive(Deserialize)]
struct FlatJson {
    tcb_info: String,
    tcb_info_signature: String,
    tcb_info_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    qe_identity_issuer_chain: String,
    pck_crl: String,
    root_ca_crl: String,
}

#[derive(Deserialize)]
struct SignedTcbInfo<'a> {
    #[serde(borrow, rename = "tcbInfo")]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct SignedQeIdentity<'a> {
    #[serde(borrow, rename = "enclaveIdentity")]
    identity: &'a RawValue,
    signature: String,
}

fn unhex(field: &str, s: &str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(s.trim()).map_err(|_| VerifyError::Collateral(format!("{field} is not hex")))
}

impl Collateral {
    /// The flat JSON form (`QuoteCollateralV3`: strings; signatures and
    /// CRLs in hex).
    pub fn from_flat_json(text: &str) -> Result<Self, VerifyError> {
        let f: FlatJson = serde_json::from_str(text)
            .map_err(|e| VerifyError::Collateral(format!("collateral JSON: {e}")))?;
        Ok(Self {
            tcb_info_signature: unhex("tcb_info_signature", &f.tcb_info_signature)?,
            qe_identity_signature: unhex("qe_identity_signature", &f.qe_identity_signature)?,
            pck_crl: unhex("pck_crl", &f.pck_crl)?,
            root_ca_crl: unhex("root_ca_crl", &f.root_ca_crl)?,
            tcb_info: f.tcb_info,
            tcb_info_issuer_chain: f.tcb_info_issuer_chain,
            qe_identity: f.qe_identity,
            qe_identity_issuer_chain: f.qe_identity_issuer_chain,
        })
    }

    /// Raw Intel PCS responses: the TCB info body (`{"tcbInfo":…,
    /// "signature":…}`) and its issuer chain (the
    /// `TCB-Info-Issuer-Chain` header, PEM), the QE identity body and chain,
    /// and the DER CRLs.
    pub fn from_pcs(
        tcb_info_body: &str,
        tcb_info_issuer_chain: &str,
        qe_identity_body: &str,
        qe_identity_issuer_chain: &str,
        pck_crl: &[u8],
        root_ca_crl: &[u8],
    ) -> Result<Self, VerifyError> {
        let t: SignedTcbInfo = serde_json::from_str(tcb_info_body)
            .map_err(|e| VerifyError::Collateral(format!("TCB info response: {e}")))?;
        let q: SignedQeIdentity = serde_json::from_str(qe_identity_body)
            .map_err(|e| VerifyError::Collateral(format!("QE identity response: {e}")))?;
        Ok(Self {
            tcb_info: t.tcb_info.get().to_string(),
            tcb_info_signature: unhex("TCB info signature", &t.signature)?,
            tcb_info_issuer_chain: tcb_info_issuer_chain.to_string(),
            qe_identity: q.identity.get().to_string(),
            qe_identity_signature: unhex("QE identity signature", &q.signature)?,
            qe_identity_issuer_chain: qe_identity_issuer_chain.to_string(),
            pck_crl: pck_crl.to_vec(),
            root_ca_crl: root_ca_crl.to_vec(),
        })
    }
}

/// A TCB status of Intel's collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
}

impl TcbStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
        }
    }

    /// Fold a QE or TDX-module status into the platform's (QVL rules).
    fn converge(self, other: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        match other {
            Revoked => Revoked,
            OutOfDate | OutOfDateConfigurationNeeded => match self {
                UpToDate | SWHardeningNeeded | OutOfDate => OutOfDate,
                ConfigurationNeeded
                | ConfigurationAndSWHardeningNeeded
                | OutOfDateConfigurationNeeded => OutOfDateConfigurationNeeded,
                Revoked => Revoked,
            },
            _ => self,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfo {
    id: Option<String>,
    version: u32,
    next_update: String,
    fmspc: String,
    pce_id: String,
    #[serde(default)]
    tdx_module_identities: Vec<ModuleIdentity>,
    tcb_levels: Vec<TcbLevel>,
}

#[derive(Debug, Deserialize)]
struct Svn {
    svn: u8,
}

#[derive(Debug, Deserialize)]
struct Tcb {
    sgxtcbcomponents: Vec<Svn>,
    pcesvn: u16,
    #[serde(default)]
    tdxtcbcomponents: Option<Vec<Svn>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevel {
    tcb: Tcb,
    tcb_status: TcbStatus,
    #[serde(default, rename = "advisoryIDs")]
    advisory_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleIdentity {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<IsvLevel>,
}

#[derive(Debug, Deserialize)]
struct IsvTcb {
    isvsvn: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IsvLevel {
    tcb: IsvTcb,
    tcb_status: TcbStatus,
    #[serde(default, rename = "advisoryIDs")]
    advisory_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentity {
    next_update: String,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<IsvLevel>,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
    pub fmspc: String,
    /// Earliest nextUpdate of the collateral used (unix seconds).
    pub collateral_expiry: i64,
    /// The PCK certificate's SGX TCB.
    pub pck_compsvn: [u8; 16],
    pub pck_pcesvn: u16,
    pub qe_status: TcbStatus,
    /// The PCK chain ends at a configured simulator root.
    pub simulated: bool,
}

fn time(field: &str, s: &str) -> Result<i64, VerifyError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| VerifyError::Collateral(format!("{field} {s:?} is not an RFC 3339 time")))
}

fn verify_fixed(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key)
        .verify(msg, sig)
        .is_ok()
}

/// The raw x‖y attestation key as an uncompressed point.
fn point(xy: &[u8; 64]) -> Vec<u8> {
    let mut p = Vec::with_capacity(65);
    p.push(4);
    p.extend_from_slice(xy);
    p
}

fn masked_eq(value: &[u8], want_hex: &str, mask_hex: &str) -> Result<bool, VerifyError> {
    let want = unhex("identity value", want_hex)?;
    let mask = unhex("identity mask", mask_hex)?;
    if want.len() != value.len() || mask.len() != value.len() {
        return Ok(false);
    }
    Ok(value
        .iter()
        .zip(&mask)
        .zip(&want)
        .all(|((v, m), w)| v & m == w & m))
}

/// The FMSPC (upper-case hex) of the quote's PCK certificate — the key of
/// the collateral it needs — and its issuing CA (`platform` or
/// `processor`, which PCK CRL applies).
pub fn quote_fmspc(quote: &Quote) -> Result<(String, &'static str), VerifyError> {
    let chain = Cert::from_pem_chain("PCK certificate chain", quote.signature.pck.pem_chain()?)?;
    let ext = chain
        .first()
        .and_then(|c| c.sgx.as_ref())
        .ok_or_else(|| PckError::Chain("the PCK certificate has no SGX extensions".into()))?;
    let ca = match chain.get(1) {
        Some(c) if c.subject_cn.contains("Processor") => "processor",
        _ => "platform",
    };
    Ok((hex::encode_upper(&ext.fmspc), ca))
}

/// Collateral whose signatures, chains and CRLs were checked, parsed for
/// matching. Valid for quotes verified in `[valid_from, valid_until]`.
#[derive(Debug)]
pub struct CheckedCollateral {
    roots: Vec<[u8; 32]>,
    info: TcbInfo,
    qe_id: QeIdentity,
    pck_crl: Crl,
    root_crl: Crl,
    fmspc: String,
    tcb_next: i64,
    qe_next: i64,
    next_update_text: (String, String),
    pub valid_from: i64,
    pub valid_until: i64,
}

/// Issue dates and next updates of a collateral set, read without checking
/// its signatures (for choosing among sets; verification checks them).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dates {
    issue_date: String,
    next_update: String,
}

impl Collateral {
    /// When this set is valid, from its TCB info and QE identity: the later
    /// issue date and the earlier next update (Unix seconds); `None` when
    /// either cannot be read.
    pub fn validity(&self) -> Option<(i64, i64)> {
        let tcb: Dates = serde_json::from_str(&self.tcb_info).ok()?;
        let qe: Dates = serde_json::from_str(&self.qe_identity).ok()?;
        let t = |s: &str| time("", s).ok();
        Some((
            t(&tcb.issue_date)?.max(t(&qe.issue_date)?),
            t(&tcb.next_update)?.min(t(&qe.next_update)?),
        ))
    }
}

/// Of several collateral sets for one FMSPC, the one to verify with as of
/// `now`: the newest issued among those valid then, else the newest issued
/// (verification then says why it does not apply).
pub fn select_collateral(sets: Vec<Collateral>, now: i64) -> Option<Collateral> {
    let mut dated: Vec<(Option<(i64, i64)>, Collateral)> =
        sets.into_iter().map(|c| (c.validity(), c)).collect();
    dated.sort_by_key(|(v, _)| std::cmp::Reverse(v.map(|(issued, _)| issued)));
    let valid = dated
        .iter()
        .position(|(v, _)| v.is_some_and(|(issued, next)| issued <= now && now <= next));
    let pick = valid.unwrap_or(0);
    (pick < dated.len()).then(|| dated.swap_remove(pick).1)
}

impl Collateral {
    /// Check signatures (TCB Signing certificate chained to the pinned
    /// root, over the exact JSON text), the root CRL, and freshness as of
    /// `now`.
    pub fn check(&self, now: i64) -> Result<CheckedCollateral, VerifyError> {
        self.check_with_roots(now, &[])
    }

    /// [`Collateral::check`], also trusting the roots whose SHA-256
    /// fingerprints are in `extra_roots` (simulators named explicitly by the
    /// configuration). Quotes checked against them say `simulated`.
    pub fn check_with_roots(
        &self,
        now: i64,
        extra_roots: &[[u8; 32]],
    ) -> Result<CheckedCollateral, VerifyError> {
        let mut roots = vec![intel_root()];
        roots.extend_from_slice(extra_roots);
        let root_crl = Crl::from_der("root CA CRL", &self.root_ca_crl)?;
        let pck_crl = Crl::from_der("PCK CRL", &self.pck_crl)?;
        let mut valid_from = i64::MIN;
        let mut valid_until = i64::MAX;
        let mut signer_of =
            |item: &'static str, pem: &str, text: &str, sig: &[u8]| -> Result<Cert, VerifyError> {
                let c = Cert::from_pem_chain(item, pem)?;
                verify_chain(&c, &roots, now)?;
                let root = c.last().ok_or(VerifyError::CollateralSignature { item })?;
                root_crl.verify(root, now)?;
                root_crl.check(&c[0])?;
                if !verify_fixed(&c[0].public_key, text.as_bytes(), sig) {
                    return Err(VerifyError::CollateralSignature { item });
                }
                for x in &c {
                    valid_from = valid_from.max(x.not_before);
                    valid_until = valid_until.min(x.not_after);
                }
                Ok(c[0].clone())
            };
        signer_of(
            "TCB info",
            &self.tcb_info_issuer_chain,
            &self.tcb_info,
            &self.tcb_info_signature,
        )?;
        signer_of(
            "QE identity",
            &self.qe_identity_issuer_chain,
            &self.qe_identity,
            &self.qe_identity_signature,
        )?;
        let info: TcbInfo = serde_json::from_str(&self.tcb_info)
            .map_err(|e| VerifyError::Collateral(format!("tcbInfo: {e}")))?;
        let qe_id: QeIdentity = serde_json::from_str(&self.qe_identity)
            .map_err(|e| VerifyError::Collateral(format!("enclaveIdentity: {e}")))?;
        let tcb_next = time("tcbInfo nextUpdate", &info.next_update)?;
        let qe_next = time("enclaveIdentity nextUpdate", &qe_id.next_update)?;
        let fmspc = info.fmspc.to_ascii_uppercase();
        for (item, next, text) in [
            ("TCB info", tcb_next, &info.next_update),
            ("QE identity", qe_next, &qe_id.next_update),
        ] {
            if now > next {
                return Err(VerifyError::CollateralExpired {
                    item,
                    fmspc: fmspc.clone(),
                    next_update: text.clone(),
                    now,
                });
            }
        }
        for crl in [&root_crl, &pck_crl] {
            valid_from = valid_from.max(crl.this_update);
            valid_until = valid_until.min(crl.next_update.unwrap_or(i64::MAX));
        }
        Ok(CheckedCollateral {
            roots,
            next_update_text: (info.next_update.clone(), qe_id.next_update.clone()),
            info,
            qe_id,
            pck_crl,
            root_crl,
            fmspc,
            tcb_next,
            qe_next,
            valid_from,
            valid_until: valid_until.min(tcb_next).min(qe_next),
        })
    }
}

impl CheckedCollateral {
    /// Still usable at `now`; else the error names the expired item.
    pub fn usable_at(&self, now: i64) -> Result<(), VerifyError> {
        let (t, q) = &self.next_update_text;
        for (item, next, text) in [
            ("TCB info", self.tcb_next, t),
            ("QE identity", self.qe_next, q),
        ] {
            if now > next {
                return Err(VerifyError::CollateralExpired {
                    item,
                    fmspc: self.fmspc.clone(),
                    next_update: text.clone(),
                    now,
                });
            }
        }
        if now < self.valid_from || now > self.valid_until {
            return Err(PckError::Crl(format!(
                "collateral of FMSPC {} is not current at {}",
                self.fmspc,
                crate::pck::rfc3339(now)
            ))
            .into());
        }
        Ok(())
    }
}

/// A PCK chain verified to the pinned root and not revoked by the CRLs of
/// the collateral it was checked with.
#[derive(Debug, Clone)]
pub struct CheckedPck {
    pck: Cert,
    /// Chained to a simulator root rather than Intel's.
    pub simulated: bool,
    ext: crate::pck::SgxExtensions,
    pub valid_from: i64,
    pub valid_until: i64,
}

/// Verify the quote's PCK chain as of `now` against `collateral`'s CRLs.
pub fn check_pck(
    quote: &Quote,
    collateral: &CheckedCollateral,
    now: i64,
) -> Result<CheckedPck, VerifyError> {
    let chain = Cert::from_pem_chain("PCK certificate chain", quote.signature.pck.pem_chain()?)?;
    verify_chain(&chain, &collateral.roots, now)?;
    let (pck, ca, root) = match chain.as_slice() {
        [pck, ca, root] => (pck, ca, root),
        _ => {
            return Err(PckError::Chain(format!(
                "{} certificates; expected PCK, intermediate CA, root",
                chain.len()
            ))
            .into())
        }
    };
    collateral.root_crl.verify(root, now)?;
    collateral.root_crl.check(ca)?;
    collateral.pck_crl.verify(ca, now)?;
    collateral.pck_crl.check(pck)?;
    let ext = pck
        .sgx
        .clone()
        .ok_or_else(|| PckError::Chain("the PCK certificate has no SGX extensions".into()))?;
    Ok(CheckedPck {
        simulated: root.fingerprint != intel_root(),
        ext,
        valid_from: chain.iter().map(|c| c.not_before).max().unwrap_or(i64::MIN),
        valid_until: chain.iter().map(|c| c.not_after).min().unwrap_or(i64::MAX),
        pck: pck.clone(),
    })
}

/// Verify `quote` with `collateral` as of `now` (no caching).
pub fn verify_quote(
    quote: &Quote,
    collateral: &Collateral,
    now: i64,
) -> Result<Verdict, VerifyError> {
    let checked = collateral.check(now)?;
    let pck = check_pck(quote, &checked, now)?;
    verify_quote_with(quote, &pck, &checked, now)
}

/// Verify `quote` with an already checked PCK chain and collateral: the QE
/// report signature and binding, the quote signature, QE identity, TDX
/// module identity and TCB level (two ECDSA verifications).
pub fn verify_quote_with(
    quote: &Quote,
    pck: &CheckedPck,
    checked: &CheckedCollateral,
    now: i64,
) -> Result<Verdict, VerifyError> {
    checked.usable_at(now)?;
    if now < pck.valid_from || now > pck.valid_until {
        return Err(PckError::Validity {
            what: pck.pck.subject_cn.clone(),
            now,
            not_before: pck.valid_from,
            not_after: pck.valid_until,
        }
        .into());
    }
    let ext = &pck.ext;
    let info = &checked.info;
    let qe_id = &checked.qe_id;
    let (tcb_next, qe_next) = (checked.tcb_next, checked.qe_next);
    let (pck_crl, root_crl) = (&checked.pck_crl, &checked.root_crl);
    let simulated = pck.simulated;
    let pck = &pck.pck;
    // 2. QE report.
    let sd = &quote.signature;
    if !verify_fixed(&pck.public_key, &sd.qe_report_raw, &sd.qe_report_signature) {
        return Err(VerifyError::QeReportSignature);
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&sd.attest_key);
    ctx.update(&sd.qe_auth_data);
    let rd = &sd.qe_report.report_data;
    if rd[..32] != *ctx.finish().as_ref() || rd[32..].iter().any(|b| *b != 0) {
        return Err(VerifyError::QeBinding);
    }

    // 3. Quote signature.
    if !verify_fixed(&point(&sd.attest_key), quote.signed_bytes(), &sd.signature) {
        return Err(VerifyError::QuoteSignature);
    }

    let fmspc = hex::encode_upper(&ext.fmspc);
    if !info.fmspc.eq_ignore_ascii_case(&fmspc)
        || !info.pce_id.eq_ignore_ascii_case(&hex::encode(&ext.pceid))
    {
        return Err(VerifyError::Collateral(format!(
            "TCB info is for FMSPC {} / PCE-ID {}, the PCK certificate says {fmspc} / {}",
            info.fmspc,
            info.pce_id,
            hex::encode_upper(&ext.pceid)
        )));
    }
    let is_td = matches!(quote.body, Body::Td(_));
    if is_td != (info.id.as_deref() == Some("TDX")) || info.version < 2 {
        return Err(VerifyError::Collateral(format!(
            "TCB info id {:?} v{} does not fit a {} quote",
            info.id,
            info.version,
            if is_td { "TDX" } else { "SGX" }
        )));
    }

    // 5. QE identity.
    let qe = &sd.qe_report;
    if !qe.mr_signer.eq(&unhex("mrsigner", &qe_id.mrsigner)?[..])
        || qe.isv_prod_id != qe_id.isvprodid
        || !masked_eq(
            &qe.misc_select.to_le_bytes(),
            &qe_id.miscselect,
            &qe_id.miscselect_mask,
        )?
        || !masked_eq(&qe.attributes, &qe_id.attributes, &qe_id.attributes_mask)?
    {
        return Err(VerifyError::QeIdentity(
            "the quoting enclave does not match the QE identity (MRSIGNER, ISVPRODID, MISCSELECT or ATTRIBUTES)".into(),
        ));
    }
    let qe_level = qe_id
        .tcb_levels
        .iter()
        .find(|l| l.tcb.isvsvn <= qe.isv_svn)
        .ok_or_else(|| {
            VerifyError::QeIdentity(format!("QE ISVSVN {} is below every level", qe.isv_svn))
        })?;

    // 6. Platform TCB level.
    let tee_svn = match &quote.body {
        Body::Td(t) => Some(t.tee_tcb_svn),
        Body::Sgx(_) => None,
    };
    let skip_module = tee_svn.is_some_and(|s| s[1] > 0);
    let level = info
        .tcb_levels
        .iter()
        .find(|l| {
            l.tcb.sgxtcbcomponents.len() == 16
                && l.tcb
                    .sgxtcbcomponents
                    .iter()
                    .zip(ext.compsvn)
                    .all(|(c, p)| c.svn <= p)
                && l.tcb.pcesvn <= ext.pcesvn
                && match (tee_svn, &l.tcb.tdxtcbcomponents) {
                    (None, _) => true,
                    (Some(s), Some(c)) if c.len() == 16 => c
                        .iter()
                        .zip(s)
                        .enumerate()
                        .all(|(i, (c, t))| (skip_module && i < 2) || c.svn <= t),
                    _ => false,
                }
        })
        .ok_or_else(|| {
            let list = |v: &[u8]| v.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
            let mut platform = format!("sgx [{}] pce {}", list(&ext.compsvn), ext.pcesvn);
            if let Some(t) = tee_svn {
                platform.push_str(&format!(" tdx [{}]", list(&t)));
            }
            // Short by the fewest components (first such level: the highest).
            let short = |l: &TcbLevel| {
                let sgx = l
                    .tcb
                    .sgxtcbcomponents
                    .iter()
                    .zip(ext.compsvn)
                    .filter(|(c, p)| c.svn > *p)
                    .count();
                let pce = usize::from(l.tcb.pcesvn > ext.pcesvn);
                let tdx = match (tee_svn, &l.tcb.tdxtcbcomponents) {
                    (Some(s), Some(c)) => c
                        .iter()
                        .zip(s)
                        .enumerate()
                        .filter(|(i, (c, t))| !(skip_module && *i < 2) && c.svn > *t)
                        .count(),
                    _ => 0,
                };
                sgx + pce + tdx
            };
            let nearest = info
                .tcb_levels
                .iter()
                .min_by_key(|l| short(l))
                .map(|l| {
                    let svns = |c: &[Svn]| {
                        c.iter()
                            .map(|x| x.svn.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    let mut n = format!(
                        "{:?}: sgx [{}] pce {}",
                        l.tcb_status,
                        svns(&l.tcb.sgxtcbcomponents),
                        l.tcb.pcesvn
                    );
                    if let Some(t) = &l.tcb.tdxtcbcomponents {
                        n.push_str(&format!(" tdx [{}]", svns(t)));
                    }
                    n
                })
                .unwrap_or_else(|| "none (the TCB info lists no level)".into());
            VerifyError::NoTcbLevel {
                fmspc: fmspc.clone(),
                platform,
                nearest,
            }
        })?;
    let mut status = level.tcb_status;
    let mut advisories = level.advisory_ids.clone();

    // 7. TDX module identity.
    if let (Body::Td(t), true) = (&quote.body, skip_module) {
        let id = format!("TDX_{:02X}", t.tee_tcb_svn[1]);
        let m = info
            .tdx_module_identities
            .iter()
            .find(|m| m.id.eq_ignore_ascii_case(&id))
            .ok_or_else(|| {
                VerifyError::TdxModule(format!("no module identity {id} in the TCB info"))
            })?;
        if !t
            .mr_signer_seam
            .eq(&unhex("module mrsigner", &m.mrsigner)?[..])
            || !masked_eq(&t.seam_attributes, &m.attributes, &m.attributes_mask)?
        {
            return Err(VerifyError::TdxModule(format!(
                "MRSIGNERSEAM or SEAM attributes do not match module identity {id}"
            )));
        }
        let ml = m
            .tcb_levels
            .iter()
            .find(|l| l.tcb.isvsvn <= u16::from(t.tee_tcb_svn[0]))
            .ok_or_else(|| {
                VerifyError::TdxModule(format!(
                    "module SVN {} is below every level of {id}",
                    t.tee_tcb_svn[0]
                ))
            })?;
        status = status.converge(ml.tcb_status);
        advisories.extend(ml.advisory_ids.iter().cloned());
    }
    status = status.converge(qe_level.tcb_status);
    advisories.extend(qe_level.advisory_ids.iter().cloned());
    advisories.sort();
    advisories.dedup();
    let expiry = [
        tcb_next,
        qe_next,
        pck_crl.next_update.unwrap_or(i64::MAX),
        root_crl.next_update.unwrap_or(i64::MAX),
    ]
    .into_iter()
    .min()
    .unwrap_or(i64::MAX);
    Ok(Verdict {
        status,
        advisory_ids: advisories,
        fmspc,
        collateral_expiry: expiry,
        pck_compsvn: ext.compsvn,
        pck_pcesvn: ext.pcesvn,
        qe_status: qe_level.tcb_status,
        simulated,
    })
}

/// Checked collateral and PCK chains kept between quotes, so verifying a
/// quote from a known platform costs its two ECDSA verifications. Entries
/// are keyed by the SHA-256 of what was checked and used only inside the
/// time window in which their checks hold.
#[derive(Debug)]
pub struct DcapCache {
    extra_roots: Vec<[u8; 32]>,
    collateral: quick_cache::sync::Cache<[u8; 32], std::sync::Arc<CheckedCollateral>>,
    pck: quick_cache::sync::Cache<([u8; 32], [u8; 32]), std::sync::Arc<CheckedPck>>,
}

/// Entries kept of each kind (one per platform and collateral set in
/// practice).
const CACHE_MAX: usize = 4096;

impl Default for DcapCache {
    fn default() -> Self {
        Self {
            extra_roots: Vec::new(),
            collateral: quick_cache::sync::Cache::new(CACHE_MAX),
            pck: quick_cache::sync::Cache::new(CACHE_MAX),
        }
    }
}

fn sha256_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl DcapCache {
    /// A cache that also trusts these simulator roots (SHA-256 of DER).
    pub fn with_simulated_roots(roots: Vec<[u8; 32]>) -> Self {
        Self {
            extra_roots: roots,
            ..Default::default()
        }
    }

    /// [`verify_quote`], reusing checked collateral and PCK chains.
    pub fn verify(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        now: i64,
    ) -> Result<Verdict, VerifyError> {
        let ckey = sha256_of(&[
            collateral.tcb_info.as_bytes(),
            &collateral.tcb_info_signature,
            collateral.tcb_info_issuer_chain.as_bytes(),
            collateral.qe_identity.as_bytes(),
            &collateral.qe_identity_signature,
            collateral.qe_identity_issuer_chain.as_bytes(),
            &collateral.pck_crl,
            &collateral.root_ca_crl,
        ]);
        let checked = match self.collateral.get(&ckey) {
            Some(c) if c.usable_at(now).is_ok() => c,
            _ => {
                let c = std::sync::Arc::new(collateral.check_with_roots(now, &self.extra_roots)?);
                self.collateral.insert(ckey, c.clone());
                c
            }
        };
        let pkey = (sha256_of(&[&quote.signature.pck.data]), ckey);
        let pck = match self.pck.get(&pkey) {
            Some(p) if now >= p.valid_from && now <= p.valid_until => p,
            _ => {
                let p = std::sync::Arc::new(check_pck(quote, &checked, now)?);
                self.pck.insert(pkey, p.clone());
                p
            }
        };
        verify_quote_with(quote, &pck, &checked, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(issued: &str, next: &str) -> Collateral {
        let dates = format!(r#"{{"issueDate":"{issued}","nextUpdate":"{next}"}}"#);
        Collateral {
            tcb_info: dates.clone(),
            tcb_info_signature: vec![],
            tcb_info_issuer_chain: String::new(),
            qe_identity: dates,
            qe_identity_signature: vec![],
            qe_identity_issuer_chain: String::new(),
            pck_crl: vec![],
            root_ca_crl: vec![],
        }
    }

    /// Issue 18, item 6.3: with several sets for one FMSPC, the newest by
    /// issue date was used whatever the verification time.
    #[test]
    fn selects_the_set_valid_at_the_verification_time() {
        let june = set("2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z");
        let august = set("2025-08-01T00:00:00Z", "2025-09-01T00:00:00Z");
        let t = |s: &str| time("", s).unwrap();
        let sets = || vec![june.clone(), august.clone()];
        assert_eq!(
            select_collateral(sets(), t("2025-06-15T00:00:00Z")),
            Some(june.clone())
        );
        assert_eq!(
            select_collateral(sets(), t("2025-08-15T00:00:00Z")),
            Some(august.clone())
        );
        // None valid then: the newest, whose verification says why.
        assert_eq!(
            select_collateral(sets(), t("2025-07-15T00:00:00Z")),
            Some(august.clone())
        );
        assert_eq!(select_collateral(vec![], 0), None);
        // Unreadable dates sort last.
        let bad = set("soon", "later");
        assert_eq!(
            select_collateral(vec![bad, june.clone()], t("2025-06-15T00:00:00Z")),
            Some(june)
        );
    }
}
