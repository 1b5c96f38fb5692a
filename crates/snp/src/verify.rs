//! Verification of a report against its AMD chain, as of `now`:
//! ARK pinned by fingerprint and self-signed; ASK/ASVK signed by the ARK;
//! VCEK/VLEK signed by the intermediate; all valid at `now`; the report's
//! ECDSA P-384 signature by the VCEK/VLEK; reported TCB equal to the TCB the
//! VCEK certifies; chip_id equal to the VCEK's hwID.

use crate::certs::{AmdCert, Product};
use crate::report::{AttestationReport, SigningKey, TcbParts};

/// A root trusted besides the pinned AMD ARKs — a simulator's — because
/// the configuration names its fingerprint. Reports under it are marked
/// simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraRoot {
    pub fingerprint: [u8; 32],
    pub product: Product,
}

/// The certificates a report is verified with.
#[derive(Debug, Clone, Copy)]
pub struct ChainInput<'a> {
    /// VCEK or VLEK.
    pub vek: &'a AmdCert,
    /// ASK (for a VCEK) or ASVK (for a VLEK).
    pub ask: &'a AmdCert,
    pub ark: &'a AmdCert,
    /// Roots trusted in addition to the pinned ones (normally none).
    pub extra_roots: &'a [ExtraRoot],
}

impl<'a> ChainInput<'a> {
    /// A chain that must end in a pinned AMD root.
    pub fn new(vek: &'a AmdCert, ask: &'a AmdCert, ark: &'a AmdCert) -> Self {
        Self {
            vek,
            ask,
            ark,
            extra_roots: &[],
        }
    }
}

/// Which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("ARK with fingerprint {0} is not a pinned AMD root (Milan, Genoa, Turin)")]
    UnpinnedArk(String),
    #[error("certificate chain: {cert}: {reason}")]
    Chain {
        cert: &'static str,
        reason: &'static str,
    },
    #[error("certificate {cert} is not valid at {} (valid {} to {})", rfc3339(*now), rfc3339(*not_before), rfc3339(*not_after))]
    Validity {
        cert: &'static str,
        now: i64,
        not_before: i64,
        not_after: i64,
    },
    #[error("report says it is signed by the {expected:?}, but the certificate is a {found}")]
    KeyKind { expected: SigningKey, found: String },
    #[error("report signature does not verify with the {0}")]
    Signature(&'static str),
    #[error("reported TCB {field} is {report}, the certificate certifies {cert} (reported: {reported}; certified: {certified})")]
    Tcb {
        field: &'static str,
        report: u8,
        cert: u8,
        /// Every SVN of the report and of the certificate, side by side.
        reported: String,
        certified: String,
    },
    #[error("certificate does not certify the TCB component {0}")]
    TcbMissing(&'static str),
    #[error("chip_id {report} ≠ the VCEK's hwID {cert}: the VCEK is for another chip")]
    ChipId { report: String, cert: String },
    #[error("VCEK has no hwID extension")]
    NoHwId,
    #[error("report product {report} differs from the chain's {chain}")]
    Product {
        report: &'static str,
        chain: &'static str,
    },
}

/// A report whose signature, chain and TCB binding have been verified. Only
/// [`verify_report`] constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    report: AttestationReport,
    product: Product,
    signing_key: SigningKey,
    simulated: bool,
}

impl VerifiedReport {
    pub fn report(&self) -> &AttestationReport {
        &self.report
    }
    pub fn product(&self) -> Product {
        self.product
    }
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }
    /// Whether the chain ended in a configured simulator root rather than a
    /// pinned AMD root.
    pub fn simulated(&self) -> bool {
        self.simulated
    }
    /// Reported TCB decoded for the product.
    pub fn reported_tcb(&self) -> TcbParts {
        self.report.reported_tcb().parts(self.product)
    }
}

fn validity(cert: &'static str, c: &AmdCert, now: i64) -> Result<(), VerifyError> {
    if c.valid_at(now) {
        Ok(())
    } else {
        Err(VerifyError::Validity {
            cert,
            now,
            not_before: c.not_before,
            not_after: c.not_after,
        })
    }
}

/// A verified chain ARK → ASK/ASVK → VCEK/VLEK: the report-signing key,
/// parsed once, and the window in which every certificate is valid. Only
/// [`verify_chain`] constructs it; it may be cached (keyed by the VCEK's
/// digest) and reused for many reports while `now` stays in the window.
#[derive(Clone)]
pub struct VerifiedChain {
    vek: AmdCert,
    key: aws_lc_rs::signature::ParsedPublicKey,
    product: Product,
    simulated: bool,
    valid_from: i64,
    valid_until: i64,
}

impl std::fmt::Debug for VerifiedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedChain")
            .field("vek", &self.vek)
            .field("product", &self.product)
            .finish_non_exhaustive()
    }
}

impl VerifiedChain {
    pub fn product(&self) -> Product {
        self.product
    }
    pub fn simulated(&self) -> bool {
        self.simulated
    }
    pub fn vek(&self) -> &AmdCert {
        &self.vek
    }
    /// Whether every certificate of the chain is valid at `now`.
    pub fn valid_at(&self, now: i64) -> bool {
        self.valid_from <= now && now <= self.valid_until
    }
}

/// Verify the chain ARK → ASK/ASVK → VCEK/VLEK as of `now`.
pub fn verify_chain(chain: ChainInput<'_>, now: i64) -> Result<VerifiedChain, VerifyError> {
    let (product, simulated) = match Product::from_ark_fingerprint(&chain.ark.fingerprint) {
        Some(p) => (p, false),
        None => chain
            .extra_roots
            .iter()
            .find(|r| r.fingerprint == chain.ark.fingerprint)
            .map(|r| (r.product, true))
            .ok_or_else(|| VerifyError::UnpinnedArk(hex::encode(chain.ark.fingerprint)))?,
    };
    chain
        .ark
        .signed_by(chain.ark)
        .map_err(|reason| VerifyError::Chain {
            cert: "ARK",
            reason,
        })?;
    chain
        .ask
        .signed_by(chain.ark)
        .map_err(|reason| VerifyError::Chain {
            cert: "ASK",
            reason,
        })?;
    chain
        .vek
        .signed_by(chain.ask)
        .map_err(|reason| VerifyError::Chain {
            cert: "VCEK/VLEK",
            reason,
        })?;
    validity("ARK", chain.ark, now)?;
    validity("ASK", chain.ask, now)?;
    validity("VCEK/VLEK", chain.vek, now)?;
    let key = chain.vek.report_key().ok_or(VerifyError::Chain {
        cert: "VCEK/VLEK",
        reason: "no P-384 public key",
    })?;
    let certs = [chain.ark, chain.ask, chain.vek];
    Ok(VerifiedChain {
        vek: chain.vek.clone(),
        key,
        product,
        simulated,
        valid_from: certs.iter().map(|c| c.not_before).max().unwrap_or(i64::MAX),
        valid_until: certs.iter().map(|c| c.not_after).min().unwrap_or(i64::MIN),
    })
}

/// Unix seconds as RFC 3339 (UTC); the number itself when out of range.
pub fn rfc3339(t: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(t).ok();
    let text = d.and_then(|d| {
        d.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    text.unwrap_or_else(|| t.to_string())
}

fn svns(
    fmc: Option<u8>,
    bl: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    ucode: Option<u8>,
) -> String {
    let f = |v: Option<u8>| v.map_or("-".to_string(), |v| v.to_string());
    let mut s = format!(
        "bootloader {} tee {} snp {} microcode {}",
        f(bl),
        f(tee),
        f(snp),
        f(ucode)
    );
    if fmc.is_some() {
        s = format!("fmc {} {s}", f(fmc));
    }
    s
}

fn tcb_eq(
    field: &'static str,
    report: u8,
    cert: Option<u8>,
    both: &dyn Fn() -> (String, String),
) -> Result<(), VerifyError> {
    let cert = cert.ok_or(VerifyError::TcbMissing(field))?;
    if report == cert {
        Ok(())
    } else {
        let (reported, certified) = both();
        Err(VerifyError::Tcb {
            field,
            report,
            cert,
            reported,
            certified,
        })
    }
}

/// The report's binding to its VCEK/VLEK: reported TCB equal to the
/// certified TCB (per the product's layout) and, for a VCEK unless the chip
/// id is masked, chip_id equal to hwID (8 bytes on Turin, zero after it).
/// Part of [`verify_report`]; public so each check can be exercised alone.
pub fn check_binding(
    report: &AttestationReport,
    product: Product,
    vek: &AmdCert,
) -> Result<(), VerifyError> {
    let t = report.reported_tcb().parts(product);
    let c = vek.tcb;
    let both = || {
        (
            svns(
                t.fmc,
                Some(t.bootloader),
                Some(t.tee),
                Some(t.snp),
                Some(t.microcode),
            ),
            svns(c.fmc, c.bootloader, c.tee, c.snp, c.microcode),
        )
    };
    tcb_eq("bootloader", t.bootloader, c.bootloader, &both)?;
    tcb_eq("tee", t.tee, c.tee, &both)?;
    tcb_eq("snp", t.snp, c.snp, &both)?;
    tcb_eq("microcode", t.microcode, c.microcode, &both)?;
    if let Some(fmc) = t.fmc {
        tcb_eq("fmc", fmc, c.fmc, &both)?;
    }
    if report.signing_key() == SigningKey::Vcek && !report.mask_chip_id() {
        let hw = vek.hw_id.as_deref().ok_or(VerifyError::NoHwId)?;
        let chip = report.chip_id();
        if chip[..hw.len()] != *hw || chip[hw.len()..].iter().any(|b| *b != 0) {
            let short = |b: &[u8]| format!("{}…", hex::encode(&b[..b.len().min(8)]));
            return Err(VerifyError::ChipId {
                report: short(chip),
                cert: short(hw),
            });
        }
    }
    Ok(())
}

/// Verify `report` with `chain` as of `now` (unix seconds).
pub fn verify_report(
    report: &AttestationReport,
    chain: ChainInput<'_>,
    now: i64,
) -> Result<VerifiedReport, VerifyError> {
    let verified = verify_chain(chain, now)?;
    verify_report_with_chain(report, &verified, now)
}

/// Verify `report` with an already verified chain (for example from a
/// cache): validity at `now`, product, key kind, signature, TCB and chip id.
pub fn verify_report_with_chain(
    report: &AttestationReport,
    chain: &VerifiedChain,
    now: i64,
) -> Result<VerifiedReport, VerifyError> {
    if !chain.valid_at(now) {
        return Err(VerifyError::Validity {
            cert: "chain",
            now,
            not_before: chain.valid_from,
            not_after: chain.valid_until,
        });
    }
    let product = chain.product;
    if let Some(p) = report.product_from_cpuid() {
        if p != product {
            return Err(VerifyError::Product {
                report: p.name(),
                chain: product.name(),
            });
        }
    }
    let signing_key = report.signing_key();
    let cn = chain.vek.subject_cn.as_str();
    let kind_ok = match signing_key {
        SigningKey::Vcek => cn == "SEV-VCEK",
        SigningKey::Vlek => cn == "SEV-VLEK",
    };
    if !kind_ok {
        return Err(VerifyError::KeyKind {
            expected: signing_key,
            found: cn.chars().take(64).collect(),
        });
    }
    chain
        .key
        .verify_sig(report.signed_bytes(), &report.signature_rs())
        .map_err(|_| {
            VerifyError::Signature(if signing_key == SigningKey::Vcek {
                "VCEK"
            } else {
                "VLEK"
            })
        })?;
    check_binding(report, product, &chain.vek)?;
    Ok(VerifiedReport {
        report: report.clone(),
        product,
        signing_key,
        simulated: chain.simulated,
    })
}
