//! The `snp` TEE: CoCo SEV-SNP evidence verified with `ward-snp` against
//! AMD's VCEK chains (built in) and the chains the operator supplies (KDS
//! `cert_chain` bundles: ASK/ASVK then ARK), whose ARKs must match the
//! fingerprints pinned in `ward-snp`.
//! The VCEK/VLEK comes from the evidence's certificate table.

use serde_json::{json, Value};
use std::sync::Arc;
use ward_proto::kbs::TeeEvidence;
use ward_snp::certs::AmdCert;
use ward_snp::evidence::parse_evidence;
use ward_snp::report::{AttestationReport, TcbParts};

use ward_snp::verify::{
    verify_chain, verify_report_with_chain, ChainInput, ExtraRoot, VerifiedChain, VerifiedReport,
};
use ward_snp::{Product, SigningKey};

use crate::verify::{InitDataBinding, TeeClaims, Verifier, VerifyError};

/// Where a VCEK comes from when the evidence carries none: a collateral
/// directory, the store's cache, AMD KDS. Implementations do I/O; this
/// crate only asks.
pub trait VcekSource: Send + Sync + std::fmt::Debug {
    /// The VCEK (DER or PEM) for the chip and TCB of `req`, or an error
    /// naming the chip and TCB and where it looked.
    fn vcek(&self, req: &VcekRequest) -> Result<Vec<u8>, crate::CollateralError>;
}

/// What identifies a VCEK: chip and reported TCB (AMD KDS keys on both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekRequest {
    /// Products the report may come from (one when the report carries
    /// CPUID, v3+; otherwise the candidates).
    pub products: Vec<Product>,
    /// CHIP_ID from the report (64 bytes; Turin uses the first 8).
    pub chip_id: Vec<u8>,
    pub reported_tcb: ward_snp::report::TcbVersion,
}

impl VcekRequest {
    pub fn for_report(report: &AttestationReport) -> Self {
        let products = match report.product_from_cpuid() {
            Some(p) => vec![p],
            None => vec![Product::Milan, Product::Genoa],
        };
        Self {
            products,
            chip_id: report.chip_id().to_vec(),
            reported_tcb: report.reported_tcb(),
        }
    }

    /// The hwID as KDS spells it for `product` (Turin: 8 bytes).
    pub fn hw_id(&self, product: Product) -> &[u8] {
        match product {
            Product::Turin => &self.chip_id[..8.min(self.chip_id.len())],
            _ => &self.chip_id,
        }
    }

    /// The AMD KDS path of this VCEK for `product`:
    /// `/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`
    /// (Turin adds `fmcSPL`), per AMD's VCEK certificate and KDS
    /// interface specification (#57230).
    pub fn kds_path(&self, product: Product) -> String {
        let t = self.reported_tcb.parts(product);
        let mut path = format!(
            "/vcek/v1/{}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            product.name(),
            hex::encode(self.hw_id(product)),
            t.bootloader,
            t.tee,
            t.snp,
            t.microcode
        );
        if product == Product::Turin {
            path.push_str(&format!("&fmcSPL={}", t.fmc.unwrap_or(0)));
        }
        path
    }

    /// "chip 1a2b…(64 bytes) at TCB bl=3 tee=0 snp=8 ucode=115".
    pub fn describe(&self) -> String {
        let p = self.products.first().copied().unwrap_or(Product::Milan);
        let t = self.reported_tcb.parts(p);
        let fmc = t.fmc.map(|f| format!(" fmc={f}")).unwrap_or_default();
        format!(
            "chip {} at TCB{fmc} bl={} tee={} snp={} ucode={} ({})",
            hex::encode(self.hw_id(p)),
            t.bootloader,
            t.tee,
            t.snp,
            t.microcode,
            self.products
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

/// Verifier of the `snp` TEE.
#[derive(Debug, Clone)]
pub struct SnpVerifier {
    /// Where VCEKs come from when the evidence has none.
    vcek_source: Option<Arc<dyn VcekSource>>,
    /// (intermediate, ARK) pairs, each verified at construction: AMD's
    /// published VCEK chains first, then the configured ones.
    chains: Vec<(AmdCert, AmdCert)>,
    /// VCEKs/VLEKs that came as the first certificate of a bundle, used when
    /// the evidence carries none.
    bundled_veks: Vec<AmdCert>,
    /// Simulator roots the configuration explicitly trusts.
    simulated: Vec<ExtraRoot>,
    /// Verified chains by SHA-256 of the VCEK/VLEK DER.
    cache: Arc<quick_cache::sync::Cache<[u8; 32], Arc<VerifiedChain>>>,
}

/// Verified chains kept at most (one per chip and TCB in practice).
const CHAIN_CACHE_MAX: usize = 4096;

fn chain_cache() -> Arc<quick_cache::sync::Cache<[u8; 32], Arc<VerifiedChain>>> {
    Arc::new(quick_cache::sync::Cache::new(CHAIN_CACHE_MAX))
}

/// AMD's published VCEK chains (ASK, then ARK) for Milan, Genoa and Turin,
/// as AMD KDS serves them at `/vcek/v1/{product}/cert_chain` and as the
/// `sev` crate ships them. Each is checked at construction like any
/// configured chain: the ARK must match its pinned fingerprint and sign the
/// ASK. The ASVK chains (VLEK) are not published in any crate, so VLEK
/// evidence still needs its product's `/vlek/v1/{product}/cert_chain`
/// configured.
pub fn builtin_chains() -> Vec<(String, Vec<u8>)> {
    use sev::certs::snp::builtin::{genoa, milan, turin};
    [
        ("Milan", milan::ASK, milan::ARK),
        ("Genoa", genoa::ASK, genoa::ARK),
        ("Turin", turin::ASK, turin::ARK),
    ]
    .into_iter()
    .map(|(product, ask, ark)| {
        (
            format!("built-in {product} VCEK chain"),
            [ask, b"\n", ark].concat(),
        )
    })
    .collect()
}

/// A bundle's certificates by role: the self-signed ARK, the intermediate
/// it signed (ASK or ASVK), and optionally a VCEK/VLEK issued by that
/// intermediate (Azure tooling writes VCEK, ASK, ARK). Any order.
fn bundle_roles(
    name: &str,
    certs: Vec<AmdCert>,
) -> Result<(AmdCert, AmdCert, Option<AmdCert>), String> {
    let n = certs.len();
    if !(2..=3).contains(&n) {
        return Err(format!(
            "{name}: expected an intermediate (ASK or ASVK) and its ARK, optionally preceded by a VCEK/VLEK; found {n} certificates"
        ));
    }
    let (mut roots, mut rest): (Vec<_>, Vec<_>) =
        certs.into_iter().partition(|c| c.subject == c.issuer);
    if roots.len() != 1 {
        return Err(format!(
            "{name}: expected exactly one self-signed ARK, found {}",
            roots.len()
        ));
    }
    let ark = roots.remove(0);
    let i = rest
        .iter()
        .position(|c| c.issuer == ark.subject)
        .ok_or_else(|| format!("{name}: no intermediate issued by {}", ark.subject_cn))?;
    let ask = rest.remove(i);
    let vek = match rest.pop() {
        None => None,
        Some(v) if v.issuer == ask.subject => Some(v),
        Some(v) => {
            return Err(format!(
                "{name}: {} is issued by {}, not by the bundle's intermediate {}",
                v.subject_cn, v.issuer_name, ask.subject_cn
            ))
        }
    };
    Ok((ask, ark, vek))
}

impl Default for SnpVerifier {
    /// AMD's built-in VCEK chains only.
    fn default() -> Self {
        Self::with_simulated_roots(&[], &[]).unwrap_or_else(|_| Self {
            vcek_source: None,
            chains: Vec::new(),
            bundled_veks: Vec::new(),
            simulated: Vec::new(),
            cache: chain_cache(),
        })
    }
}

impl SnpVerifier {
    /// AMD's built-in VCEK chains plus KDS-shaped PEM bundles (intermediate
    /// and ARK, optionally preceded by a VCEK/VLEK). Each ARK must be a
    /// pinned AMD root and must sign its intermediate.
    pub fn from_bundles(bundles: &[(String, Vec<u8>)]) -> Result<Self, String> {
        Self::with_simulated_roots(bundles, &[])
    }

    /// Like [`SnpVerifier::from_bundles`], and additionally trust the ARKs
    /// whose SHA-256 fingerprints are listed (simulators). Their product is
    /// read from the ARK's common name (`ARK-Milan`, …). Claims of reports
    /// under them say `"simulated": true`.
    pub fn with_simulated_roots(
        bundles: &[(String, Vec<u8>)],
        simulated_roots: &[[u8; 32]],
    ) -> Result<Self, String> {
        let mut chains: Vec<(AmdCert, AmdCert)> = Vec::new();
        let mut bundled_veks = Vec::new();
        let mut simulated = Vec::new();
        for (name, pem) in builtin_chains().iter().chain(bundles) {
            let certs = AmdCert::from_pem_bundle("AMD cert_chain", pem)
                .map_err(|e| format!("{name}: {e}"))?;
            let (ask, ark, vek) = bundle_roles(name, certs)?;
            if Product::from_ark_fingerprint(&ark.fingerprint).is_none() {
                if !simulated_roots.contains(&ark.fingerprint) {
                    return Err(format!(
                        "{name}: ARK {} is not a pinned AMD root (nor a simulator root named in the configuration)",
                        hex::encode(ark.fingerprint)
                    ));
                }
                let product = match ark.subject_cn.as_str() {
                    "ARK-Milan" => Product::Milan,
                    "ARK-Genoa" => Product::Genoa,
                    "ARK-Turin" => Product::Turin,
                    other => {
                        return Err(format!("{name}: simulator ARK {other:?} names no product"))
                    }
                };
                if !simulated
                    .iter()
                    .any(|r: &ExtraRoot| r.fingerprint == ark.fingerprint)
                {
                    simulated.push(ExtraRoot {
                        fingerprint: ark.fingerprint,
                        product,
                    });
                }
            }
            ark.signed_by(&ark)
                .map_err(|e| format!("{name}: ARK: {e}"))?;
            ask.signed_by(&ark)
                .map_err(|e| format!("{name}: intermediate: {e}"))?;
            bundled_veks.extend(vek);
            if !chains.iter().any(|(a, _)| a.fingerprint == ask.fingerprint) {
                chains.push((ask, ark));
            }
        }
        Ok(Self {
            chains,
            bundled_veks,
            simulated,
            cache: chain_cache(),
            vcek_source: None,
        })
    }

    /// Look VCEKs up in `source` when the evidence carries none.
    pub fn with_vcek_source(mut self, source: Arc<dyn VcekSource>) -> Self {
        self.vcek_source = Some(source);
        self
    }

    /// The VCEK/VLEK for `report`: from the evidence's certificate table if
    /// given, else (VCEK only) from the configured source.
    pub fn vek_for(
        &self,
        report: &AttestationReport,
        from_evidence: Option<&[u8]>,
    ) -> Result<Vec<u8>, VerifyError> {
        if let Some(v) = from_evidence {
            return Ok(v.to_vec());
        }
        if let Some(v) = self.bundled_vek(report) {
            return Ok(v.der.clone());
        }
        let req = VcekRequest::for_report(report);
        match (report.signing_key(), &self.vcek_source) {
            (SigningKey::Vlek, _) => Err(VerifyError::Check {
                check: "snp.collateral",
                detail: "the evidence carries no VLEK certificate and no configured bundle has one (VLEKs are not published on KDS; the attester must send it)".into(),
            }),
            (SigningKey::Vcek, None) => Err(VerifyError::Check {
                check: "snp.collateral",
                detail: format!(
                    "the evidence carries no VCEK for {} and no collateral source is configured",
                    req.describe()
                ),
            }),
            (SigningKey::Vcek, Some(src)) => src
                .vcek(&req)
                .map_err(|e| e.into_verify_error("snp.collateral")),
        }
    }

    /// A VCEK/VLEK given in a bundle for this report: a VCEK whose hwID is
    /// the report's chip id, or a VLEK (which names no chip).
    fn bundled_vek(&self, report: &AttestationReport) -> Option<&AmdCert> {
        let chip = report.chip_id();
        let fits = |c: &&AmdCert| match (report.signing_key(), c.hw_id.as_deref()) {
            (SigningKey::Vcek, Some(hw)) => chip.starts_with(hw),
            (SigningKey::Vlek, None) => true,
            _ => false,
        };
        self.bundled_veks.iter().find(fits)
    }

    /// Verify a report with its VCEK/VLEK (DER or PEM) as of `now`.
    pub fn verify_report_with(
        &self,
        report: &AttestationReport,
        vek: &[u8],
        now: i64,
    ) -> Result<VerifiedReport, VerifyError> {
        let digest: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, vek)
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        let chain = match self.cache.get(&digest) {
            Some(c) if c.valid_at(now) => c,
            _ => {
                let c = Arc::new(self.verify_chain_of(vek, now)?);
                self.cache.insert(digest, c.clone());
                c
            }
        };
        verify_report_with_chain(report, &chain, now).map_err(|e| VerifyError::Check {
            check: check_name(&e),
            detail: e.to_string(),
        })
    }

    fn verify_chain_of(&self, vek: &[u8], now: i64) -> Result<VerifiedChain, VerifyError> {
        let vek = AmdCert::from_der_or_pem("VCEK/VLEK", vek)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        // Intermediates may share a name (a simulator's ASK is called
        // SEV-Milan too): prefer the one whose key signed this certificate.
        let mut named = self
            .chains
            .iter()
            .filter(|(ask, _)| ask.subject == vek.issuer);
        let first = named.clone().next();
        let (ask, ark) = named
            .find(|(ask, _)| vek.signed_by(ask).is_ok())
            .or(first)
            .ok_or_else(|| VerifyError::Config(no_intermediate(&vek)))?;
        verify_chain(
            ChainInput {
                vek: &vek,
                ask,
                ark,
                extra_roots: &self.simulated,
            },
            now,
        )
        .map_err(|e| VerifyError::Check {
            check: check_name(&e),
            detail: e.to_string(),
        })
    }
}

/// Which chain to configure for a certificate whose intermediate is unknown.
fn no_intermediate(vek: &AmdCert) -> String {
    let product = ["Milan", "Genoa", "Turin"]
        .into_iter()
        .find(|p| vek.issuer_name.contains(p));
    match (vek.issuer_name.contains("VLEK"), product) {
        (true, Some(p)) => format!(
            "no ASVK for a VLEK issued by {:?}: the VLEK chains are not built in; configure https://kdsintf.amd.com/vlek/v1/{p}/cert_chain ([snp] cert_chains, or --cert-chain)",
            vek.issuer_name
        ),
        _ => format!(
            "no AMD intermediate for a certificate issued by {:?}: configure the KDS cert_chain of its product ([snp] cert_chains, or --cert-chain)",
            vek.issuer_name
        ),
    }
}

fn check_name(e: &ward_snp::VerifyError) -> &'static str {
    use ward_snp::VerifyError as E;
    match e {
        E::UnpinnedArk(_) | E::Chain { .. } => "snp.certificate_chain",
        E::Validity { .. } => "snp.certificate_validity",
        E::KeyKind { .. } => "snp.signing_key",
        E::Signature(_) => "snp.report_signature",
        E::Tcb { .. } | E::TcbMissing(_) => "snp.reported_tcb",
        E::ChipId { .. } | E::NoHwId => "snp.chip_id",
        E::Product { .. } => "snp.product",
        _ => "snp",
    }
}

fn tcb(t: TcbParts) -> Value {
    json!({"fmc": t.fmc, "bootloader": t.bootloader, "tee": t.tee, "snp": t.snp, "microcode": t.microcode})
}

/// The claims policies see under `input.snp`.
pub fn claims(v: &VerifiedReport) -> Value {
    let r = v.report();
    let p = v.product();
    let pol = r.policy();
    let pi = r.platform_info();
    json!({
        "report_version": r.version(),
        "product": p.name(),
        "simulated": v.simulated(),
        "signing_key": v.signing_key(),
        "measurement": hex::encode(r.measurement()),
        "host_data": hex::encode(r.host_data()),
        "report_data": hex::encode(r.report_data()),
        "family_id": hex::encode(r.family_id()),
        "image_id": hex::encode(r.image_id()),
        "guest_svn": r.guest_svn(),
        "vmpl": r.vmpl(),
        "id_key_digest": hex::encode(r.id_key_digest()),
        "author_key_digest": hex::encode(r.author_key_digest()),
        "report_id": hex::encode(r.report_id()),
        "chip_id": hex::encode(r.chip_id()),
        "policy": {
            "raw": pol.0,
            "abi_major": pol.abi_major(),
            "abi_minor": pol.abi_minor(),
            "smt_allowed": pol.smt_allowed(),
            "migrate_ma_allowed": pol.migrate_ma_allowed(),
            "debug_allowed": pol.debug_allowed(),
            "single_socket_required": pol.single_socket_required(),
            "cxl_allowed": pol.cxl_allowed(),
            "mem_aes_256_xts_required": pol.mem_aes_256_xts_required(),
            "rapl_disabled_required": pol.rapl_disabled_required(),
            "ciphertext_hiding_required": pol.ciphertext_hiding_required(),
            "page_swap_disabled": pol.page_swap_disabled(),
        },
        "platform": {
            "raw": pi.0,
            "smt_enabled": pi.smt_enabled(),
            "tsme_enabled": pi.tsme_enabled(),
            "ecc_enabled": pi.ecc_enabled(),
            "rapl_disabled": pi.rapl_disabled(),
            "ciphertext_hiding_enabled": pi.ciphertext_hiding_enabled(),
            "alias_check_complete": pi.alias_check_complete(),
        },
        "reported_tcb": tcb(v.reported_tcb()),
        "current_tcb": tcb(r.current_tcb().parts(p)),
        "committed_tcb": tcb(r.committed_tcb().parts(p)),
        "launch_tcb": tcb(r.launch_tcb().parts(p)),
        "current_firmware": r.current_version(),
        "committed_firmware": r.committed_version(),
        "cpuid": r.cpuid().map(|(f, m, s)| json!({"family": f, "model": m, "stepping": s})),
        "mitigation_vectors": r.mitigation_vectors().map(|(l, c)| json!({"launch": l, "current": c})),
        // The same facts under the flat names Trustee's SNP claims use, so
        // Trustee's policies (ear_default_policy_cpu.rego) run unchanged.
        "reported_tcb_bootloader": v.reported_tcb().bootloader,
        "reported_tcb_tee": v.reported_tcb().tee,
        "reported_tcb_snp": v.reported_tcb().snp,
        "reported_tcb_microcode": v.reported_tcb().microcode,
        "policy_debug_allowed": pol.debug_allowed(),
        "policy_migrate_ma": pol.migrate_ma_allowed(),
        "policy_abi_major": pol.abi_major(),
        "policy_abi_minor": pol.abi_minor(),
        "policy_single_socket": pol.single_socket_required(),
        "policy_smt_allowed": pol.smt_allowed(),
        "platform_smt_enabled": pi.smt_enabled(),
        "platform_tsme_enabled": pi.tsme_enabled(),
    })
}

impl Verifier for SnpVerifier {
    fn tee(&self) -> &'static str {
        "snp"
    }

    fn verify_evidence(&self, evidence: &TeeEvidence, now: i64) -> Result<TeeClaims, VerifyError> {
        let ev = parse_evidence(&evidence.primary_evidence)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let kind = match ev.report.signing_key() {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
        };
        let vek = self.vek_for(&ev.report, ev.cert(kind))?;
        let verified = self.verify_report_with(&ev.report, &vek, now)?;
        Ok(TeeClaims {
            claims: claims(&verified),
            report_data: ev.report.report_data().to_vec(),
            report_data_claim: Value::String(hex::encode(ev.report.report_data())),
            init_data: Some(InitDataBinding::Field(ev.report.host_data().to_vec())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(product: &str) -> Vec<AmdCert> {
        let (_, pem) = builtin_chains()
            .into_iter()
            .find(|(n, _)| n.contains(product))
            .unwrap();
        AmdCert::from_pem_bundle("built-in", &pem).unwrap()
    }

    #[test]
    fn builtin_chains_are_amds_pinned_roots_signing_their_asks() {
        let v = SnpVerifier::default();
        assert_eq!(v.chains.len(), 3);
        for (p, ask_cn) in [
            (Product::Milan, "SEV-Milan"),
            (Product::Genoa, "SEV-Genoa"),
            (Product::Turin, "SEV-Turin"),
        ] {
            let (ask, ark) = v
                .chains
                .iter()
                .find(|(a, _)| a.subject_cn == ask_cn)
                .unwrap_or_else(|| panic!("no built-in {ask_cn}"));
            assert_eq!(Product::from_ark_fingerprint(&ark.fingerprint), Some(p));
            assert!(ask.signed_by(ark).is_ok());
        }
        assert!(
            v.simulated.is_empty(),
            "built-in roots are pinned, not simulated"
        );
    }

    #[test]
    fn configured_chains_beside_the_builtin_ones_are_not_duplicated() {
        let milan = builtin_chains().remove(0);
        let v = SnpVerifier::from_bundles(&[milan.clone(), milan]).unwrap();
        assert_eq!(v.chains.len(), 3);
    }

    #[test]
    fn bundle_roles_accept_any_order_and_name_what_is_wrong() {
        let m = builtin("Milan");
        let g = builtin("Genoa");
        let (ask, ark) = (m[0].clone(), m[1].clone());
        let (a, r, v) = bundle_roles("b", vec![ark.clone(), ask.clone()]).unwrap();
        assert_eq!(
            (a.subject_cn.as_str(), r.subject_cn.as_str()),
            ("SEV-Milan", "ARK-Milan")
        );
        assert!(v.is_none());

        let e = bundle_roles("b", vec![ask.clone()]).unwrap_err();
        assert!(e.contains("found 1 certificates"), "{e}");
        let e = bundle_roles(
            "b",
            vec![ask.clone(), ask.clone(), ask.clone(), ark.clone()],
        )
        .unwrap_err();
        assert!(e.contains("found 4"), "{e}");
        let e = bundle_roles("b", vec![ark.clone(), g[1].clone()]).unwrap_err();
        assert!(e.contains("exactly one self-signed ARK, found 2"), "{e}");
        let e = bundle_roles("b", vec![g[0].clone(), ark.clone()]).unwrap_err();
        assert!(e.contains("no intermediate issued by ARK-Milan"), "{e}");
        // A third certificate must be issued by the bundle's intermediate.
        let e = bundle_roles("b", vec![g[0].clone(), ask, ark]).unwrap_err();
        assert!(
            e.contains("not by the bundle's intermediate SEV-Milan"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_vlek_chain_names_the_kds_address_to_configure() {
        let mut ask = builtin("Milan").remove(0);
        ask.issuer_name = "C=US, O=Advanced Micro Devices, CN=SEV-VLEK-Milan".into();
        let e = no_intermediate(&ask);
        assert!(
            e.contains("https://kdsintf.amd.com/vlek/v1/Milan/cert_chain"),
            "{e}"
        );
        ask.issuer_name = "CN=Something-Else".into();
        assert!(no_intermediate(&ask).contains("KDS cert_chain of its product"));
    }
}
