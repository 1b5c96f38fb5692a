//! A simulated SEV-SNP platform: ARK → ASK → VCEK like AMD's KDS issues
//! them, and reports laid out and signed as the firmware does (AMD SEV-SNP
//! ABI, ATTESTATION_REPORT version 3).

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use ward_snp::report::{offset, TcbParts, REPORT_LEN, SIGNED_LEN};
use ward_snp::Product;

use crate::der::{self, seq, tlv};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpSimError {
    #[error("simulator key generation or signing failed")]
    Crypto,
    #[error("simulator state: {0}")]
    State(String),
}

/// What a simulated guest's report says.
#[derive(Debug, Clone)]
pub struct SnpReportParams {
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub report_data: [u8; 64],
    /// Guest policy; default 0x30000 (SMT allowed, debug not allowed).
    pub policy: u64,
    pub vmpl: u32,
    pub guest_svn: u32,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
}

impl Default for SnpReportParams {
    fn default() -> Self {
        Self {
            measurement: [0u8; 48],
            host_data: [0u8; 32],
            report_data: [0u8; 64],
            policy: 0x30000,
            vmpl: 0,
            guest_svn: 0,
            family_id: [0u8; 16],
            image_id: [0u8; 16],
        }
    }
}

/// Policy bit that allows debugging the guest.
pub const POLICY_DEBUG: u64 = 1 << 19;

/// A simulated SNP platform.
pub struct SnpSim {
    product: Product,
    tcb: TcbParts,
    chip_id: [u8; 64],
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_der: Vec<u8>,
    vcek: EcdsaKeyPair,
}

const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";

fn pss_sha384_alg() -> Vec<u8> {
    let hash = seq(&[&der::oid(OID_SHA384), &der::null()]);
    let params = seq(&[
        &tlv(0xA0, &hash),
        &tlv(0xA1, &seq(&[&der::oid(OID_MGF1), &hash])),
        &tlv(0xA2, &der::uint(&[48])),
    ]);
    seq(&[&der::oid(OID_RSA_PSS), &params])
}

#[allow(clippy::too_many_arguments)]
fn certificate(
    serial: &[u8],
    issuer: &str,
    subject: &str,
    spki: &[u8],
    not_before: i64,
    not_after: i64,
    extensions: Option<Vec<u8>>,
    signer: &RsaKeyPair,
) -> Result<Vec<u8>, SnpSimError> {
    let alg = pss_sha384_alg();
    let mut tbs_parts: Vec<Vec<u8>> = vec![
        tlv(0xA0, &der::uint(&[2])),
        der::uint(serial),
        alg.clone(),
        der::name(issuer),
        seq(&[&der::time(not_before), &der::time(not_after)]),
        der::name(subject),
        spki.to_vec(),
    ];
    if let Some(ext) = extensions {
        tbs_parts.push(tlv(0xA3, &ext));
    }
    let refs: Vec<&[u8]> = tbs_parts.iter().map(Vec::as_slice).collect();
    let tbs = seq(&refs);
    let mut sig = vec![0u8; signer.public_modulus_len()];
    signer
        .sign(
            &signature::RSA_PSS_SHA384,
            &SystemRandom::new(),
            &tbs,
            &mut sig,
        )
        .map_err(|_| SnpSimError::Crypto)?;
    Ok(seq(&[&tbs, &alg, &der::bits(&sig)]))
}

fn rsa_spki(k: &RsaKeyPair) -> Result<Vec<u8>, SnpSimError> {
    Ok(k.public_key()
        .as_der()
        .map_err(|_| SnpSimError::Crypto)?
        .as_ref()
        .to_vec())
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let body: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

/// The TCB_VERSION bytes of `t` in the product's layout.
pub fn encode_tcb(t: &TcbParts, product: Product) -> [u8; 8] {
    let mut b = [0u8; 8];
    match product {
        Product::Turin => {
            b[0] = t.fmc.unwrap_or(0);
            b[1] = t.bootloader;
            b[2] = t.tee;
            b[3] = t.snp;
        }
        Product::Milan | Product::Genoa => {
            b[0] = t.bootloader;
            b[1] = t.tee;
            b[6] = t.snp;
        }
    }
    b[7] = t.microcode;
    b
}

impl SnpSim {
    /// A new platform: fresh RSA-4096 ARK and ASK, a P-384 VCEK certifying
    /// `tcb`, a random chip id; certificates valid from `now` for ten years.
    pub fn generate(product: Product, tcb: TcbParts, now: i64) -> Result<Self, SnpSimError> {
        let rng = SystemRandom::new();
        let ark = RsaKeyPair::generate(KeySize::Rsa4096).map_err(|_| SnpSimError::Crypto)?;
        let ask = RsaKeyPair::generate(KeySize::Rsa4096).map_err(|_| SnpSimError::Crypto)?;
        let vcek = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
            .map_err(|_| SnpSimError::Crypto)?;
        let mut chip_id = [0u8; 64];
        rng.fill(&mut chip_id).map_err(|_| SnpSimError::Crypto)?;
        if product == Product::Turin {
            chip_id[8..].fill(0);
        }
        let (nb, na) = (now - 3600, now + 10 * 365 * 86_400);
        let name = product.name();
        let ark_der = certificate(
            &[1],
            &format!("ARK-{name}"),
            &format!("ARK-{name}"),
            &rsa_spki(&ark)?,
            nb,
            na,
            None,
            &ark,
        )?;
        let ask_der = certificate(
            &[2],
            &format!("ARK-{name}"),
            &format!("SEV-{name}"),
            &rsa_spki(&ask)?,
            nb,
            na,
            None,
            &ark,
        )?;
        let ext = |o: &str, v: Vec<u8>| seq(&[&der::oid(o), &der::octets(&v)]);
        let hw = if product == Product::Turin {
            chip_id[..8].to_vec()
        } else {
            chip_id.to_vec()
        };
        let mut exts = vec![
            ext("1.3.6.1.4.1.3704.1.2", der::ia5(&format!("{name}-B0"))),
            ext("1.3.6.1.4.1.3704.1.3.1", der::uint(&[tcb.bootloader])),
            ext("1.3.6.1.4.1.3704.1.3.2", der::uint(&[tcb.tee])),
            ext("1.3.6.1.4.1.3704.1.3.3", der::uint(&[tcb.snp])),
            ext("1.3.6.1.4.1.3704.1.3.8", der::uint(&[tcb.microcode])),
            ext("1.3.6.1.4.1.3704.1.4", hw),
        ];
        if product == Product::Turin {
            exts.push(ext(
                "1.3.6.1.4.1.3704.1.3.9",
                der::uint(&[tcb.fmc.unwrap_or(0)]),
            ));
        }
        let refs: Vec<&[u8]> = exts.iter().map(Vec::as_slice).collect();
        let vcek_spki = vcek
            .public_key()
            .as_der()
            .map_err(|_| SnpSimError::Crypto)?
            .as_ref()
            .to_vec();
        let vcek_der = certificate(
            &[0],
            &format!("SEV-{name}"),
            "SEV-VCEK",
            &vcek_spki,
            nb,
            na,
            Some(seq(&refs)),
            &ask,
        )?;
        Ok(Self {
            product,
            tcb,
            chip_id,
            ark_der,
            ask_der,
            vcek_der,
            vcek,
        })
    }

    pub fn product(&self) -> Product {
        self.product
    }

    /// Persist the simulator (certificates, the VCEK private key, platform
    /// parameters) under `dir`; the VCEK key file is created 0600. The ARK
    /// and ASK private keys are not kept: a saved simulator signs reports,
    /// it issues no new certificates.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), SnpSimError> {
        let io = |e: std::io::Error| SnpSimError::State(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let pk8 = self.vcek.to_pkcs8v1().map_err(|_| SnpSimError::Crypto)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        use std::io::Write;
        opts.open(dir.join("vcek-key.pk8"))
            .and_then(|mut f| f.write_all(pk8.as_ref()))
            .map_err(io)?;
        std::fs::write(dir.join("vcek.der"), &self.vcek_der).map_err(io)?;
        std::fs::write(dir.join("ask.der"), &self.ask_der).map_err(io)?;
        std::fs::write(dir.join("ark.der"), &self.ark_der).map_err(io)?;
        std::fs::write(dir.join("cert_chain.pem"), self.cert_chain_pem()).map_err(io)?;
        let meta = json!({
            "product": self.product.name(),
            "tcb": {"fmc": self.tcb.fmc, "bootloader": self.tcb.bootloader, "tee": self.tcb.tee, "snp": self.tcb.snp, "microcode": self.tcb.microcode},
            "chip_id": hex::encode(self.chip_id),
        });
        std::fs::write(
            dir.join("sim.json"),
            serde_json::to_vec_pretty(&meta).unwrap_or_default(),
        )
        .map_err(io)?;
        Ok(())
    }

    /// Load a simulator saved with [`SnpSim::save`].
    pub fn load(dir: &std::path::Path) -> Result<Self, SnpSimError> {
        let read = |f: &str| {
            std::fs::read(dir.join(f))
                .map_err(|e| SnpSimError::State(format!("{}/{f}: {e}", dir.display())))
        };
        let meta: Value = serde_json::from_slice(&read("sim.json")?)
            .map_err(|e| SnpSimError::State(format!("sim.json: {e}")))?;
        let product = match meta["product"].as_str() {
            Some("Milan") => Product::Milan,
            Some("Genoa") => Product::Genoa,
            Some("Turin") => Product::Turin,
            other => {
                return Err(SnpSimError::State(format!(
                    "sim.json: unknown product {other:?}"
                )))
            }
        };
        let u8_of = |k: &str| meta["tcb"][k].as_u64().and_then(|v| u8::try_from(v).ok());
        let bad = |k: &str| SnpSimError::State(format!("sim.json: tcb.{k}"));
        let tcb = TcbParts {
            fmc: u8_of("fmc"),
            bootloader: u8_of("bootloader").ok_or_else(|| bad("bootloader"))?,
            tee: u8_of("tee").ok_or_else(|| bad("tee"))?,
            snp: u8_of("snp").ok_or_else(|| bad("snp"))?,
            microcode: u8_of("microcode").ok_or_else(|| bad("microcode"))?,
        };
        let chip_id: [u8; 64] = meta["chip_id"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SnpSimError::State("sim.json: chip_id".into()))?;
        let vcek =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &read("vcek-key.pk8")?)
                .map_err(|_| SnpSimError::State("vcek-key.pk8 is not a P-384 PKCS#8 key".into()))?;
        Ok(Self {
            product,
            tcb,
            chip_id,
            ark_der: read("ark.der")?,
            ask_der: read("ask.der")?,
            vcek_der: read("vcek.der")?,
            vcek,
        })
    }
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }
    /// SHA-256 of the simulated ARK's DER: what a configuration names to
    /// trust this simulator.
    pub fn ark_fingerprint(&self) -> [u8; 32] {
        digest::digest(&digest::SHA256, &self.ark_der)
            .as_ref()
            .try_into()
            .unwrap_or([0; 32])
    }
    /// The KDS-shaped `cert_chain` bundle: ASK then ARK.
    pub fn cert_chain_pem(&self) -> String {
        pem("CERTIFICATE", &self.ask_der) + &pem("CERTIFICATE", &self.ark_der)
    }

    /// A signed 1184-byte report (version 3).
    pub fn report(&self, p: &SnpReportParams) -> Result<Vec<u8>, SnpSimError> {
        let mut b = vec![0u8; REPORT_LEN];
        let put = |b: &mut Vec<u8>, at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        let tcb = encode_tcb(&self.tcb, self.product);
        put(&mut b, offset::VERSION, &3u32.to_le_bytes());
        put(&mut b, offset::GUEST_SVN, &p.guest_svn.to_le_bytes());
        put(&mut b, offset::POLICY, &p.policy.to_le_bytes());
        put(&mut b, offset::FAMILY_ID, &p.family_id);
        put(&mut b, offset::IMAGE_ID, &p.image_id);
        put(&mut b, offset::VMPL, &p.vmpl.to_le_bytes());
        put(&mut b, offset::SIGNATURE_ALGO, &1u32.to_le_bytes());
        put(&mut b, offset::CURRENT_TCB, &tcb);
        put(&mut b, offset::PLATFORM_INFO, &1u64.to_le_bytes());
        put(&mut b, offset::REPORT_DATA, &p.report_data);
        put(&mut b, offset::MEASUREMENT, &p.measurement);
        put(&mut b, offset::HOST_DATA, &p.host_data);
        let mut report_id = [0u8; 32];
        SystemRandom::new()
            .fill(&mut report_id)
            .map_err(|_| SnpSimError::Crypto)?;
        put(&mut b, offset::REPORT_ID, &report_id);
        put(&mut b, offset::REPORT_ID_MA, &[0xff; 32]);
        put(&mut b, offset::REPORTED_TCB, &tcb);
        let (fam, model) = match self.product {
            Product::Milan => (0x19, 0x01),
            Product::Genoa => (0x19, 0x11),
            Product::Turin => (0x1A, 0x02),
        };
        put(&mut b, offset::CPUID_FAM_ID, &[fam, model, 1]);
        put(&mut b, offset::CHIP_ID, &self.chip_id);
        put(&mut b, offset::COMMITTED_TCB, &tcb);
        put(&mut b, offset::CURRENT_VERSION, &[40, 55, 1]);
        put(&mut b, offset::COMMITTED_VERSION, &[40, 55, 1]);
        put(&mut b, offset::LAUNCH_TCB, &tcb);
        self.sign(&mut b)?;
        Ok(b)
    }

    /// (Re-)sign report bytes in place, as the firmware would: ECDSA P-384
    /// SHA-384 over [0, 0x2A0), r and s little-endian in 72-byte fields.
    pub fn sign(&self, report: &mut [u8]) -> Result<(), SnpSimError> {
        if report.len() != REPORT_LEN {
            return Err(SnpSimError::State(format!(
                "report is {} bytes",
                report.len()
            )));
        }
        let sig = self
            .vcek
            .sign(&SystemRandom::new(), &report[..SIGNED_LEN])
            .map_err(|_| SnpSimError::Crypto)?;
        let rs = sig.as_ref();
        for (i, at) in [offset::SIGNATURE, offset::SIGNATURE + 72]
            .into_iter()
            .enumerate()
        {
            let mut le = rs[i * 48..i * 48 + 48].to_vec();
            le.reverse();
            report[at..at + 48].copy_from_slice(&le);
            report[at + 48..at + 72].fill(0);
        }
        Ok(())
    }

    /// CoCo `snp` evidence JSON for a report with `p`, carrying the VCEK.
    pub fn evidence_json(&self, p: &SnpReportParams) -> Result<Value, SnpSimError> {
        let bytes = self.report(p)?;
        let r = ward_snp::AttestationReport::from_bytes(&bytes)
            .map_err(|e| SnpSimError::State(e.to_string()))?;
        Ok(ward_snp::evidence::to_evidence_json(
            &r,
            self.product,
            &[ward_snp::evidence::CertTableEntry {
                cert_type: "VCEK".into(),
                data: self.vcek_der.clone(),
            }],
        ))
    }
}
