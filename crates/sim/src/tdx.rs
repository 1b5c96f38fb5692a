//! A simulated Intel DCAP platform: a test root CA, a PCK platform CA and a
//! PCK certificate (with SGX extensions: FMSPC, PCE-ID, TCB), a TCB Signing
//! certificate, signed TCB info and QE identity, CRLs, and a quoting
//! enclave whose attestation key signs TDX quotes v4 — shaped exactly like
//! Intel's, so the real verifier runs unchanged. The root is trusted only
//! when the configuration names its fingerprint.

use std::path::Path;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{json, Value};

use crate::der::{self, seq, tlv};
use crate::snp::SnpSimError;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_SGX: &str = "1.2.840.113741.1.13.1";
/// Intel's QE vendor id, as in real quotes.
const QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// The simulated quoting enclave's MRSIGNER.
const QE_MRSIGNER: [u8; 32] = [0x51; 32];

/// What the simulated TD reports.
#[derive(Debug, Clone)]
pub struct TdParams {
    pub mr_td: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub mr_config_id: [u8; 48],
    pub report_data: [u8; 64],
    /// TDATTRIBUTES; bit 0 = debug.
    pub td_attributes: [u8; 8],
}

impl Default for TdParams {
    fn default() -> Self {
        Self {
            mr_td: [0; 48],
            rtmr: [[0; 48]; 4],
            mr_config_id: [0; 48],
            report_data: [0; 64],
            // SEPT_VE_DISABLE, not debug.
            td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
        }
    }
}

/// What the simulated SGX enclave reports.
#[derive(Debug, Clone)]
pub struct SgxParams {
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_id: [u8; 64],
    pub report_data: [u8; 64],
    /// ATTRIBUTES; flags bit 1 = debug.
    pub attributes: [u8; 16],
}

impl Default for SgxParams {
    fn default() -> Self {
        let mut attributes = [0u8; 16];
        attributes[0] = 0x05; // INIT | MODE64
        attributes[8] = 0xe7; // XFRM
        Self {
            mr_enclave: [0; 32],
            mr_signer: [0; 32],
            isv_prod_id: 0,
            isv_svn: 0,
            config_id: [0; 64],
            report_data: [0; 64],
            attributes,
        }
    }
}

/// The simulated platform.
pub struct DcapSim {
    keys: [Vec<u8>; 5], // PKCS#8: root, platform CA, TCB signing, PCK, attestation key
    root_der: Vec<u8>,
    ca_der: Vec<u8>,
    tcb_der: Vec<u8>,
    pck_der: Vec<u8>,
    pck_serial: Vec<u8>,
    revoked: bool,
    fmspc: [u8; 6],
    created: i64,
}

fn err(_: impl std::fmt::Debug) -> SnpSimError {
    SnpSimError::Crypto
}

fn key(pkcs8: &[u8], fixed: bool) -> Result<EcdsaKeyPair, SnpSimError> {
    let alg = if fixed {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING
    };
    EcdsaKeyPair::from_pkcs8(alg, pkcs8).map_err(err)
}

fn sign(pkcs8: &[u8], fixed: bool, msg: &[u8]) -> Result<Vec<u8>, SnpSimError> {
    Ok(key(pkcs8, fixed)?
        .sign(&SystemRandom::new(), msg)
        .map_err(err)?
        .as_ref()
        .to_vec())
}

fn public(pkcs8: &[u8]) -> Result<Vec<u8>, SnpSimError> {
    Ok(key(pkcs8, true)?.public_key().as_ref().to_vec())
}

fn ecdsa_alg() -> Vec<u8> {
    seq(&[&der::oid(OID_ECDSA_SHA256)])
}

fn spki(point: &[u8]) -> Vec<u8> {
    seq(&[
        &seq(&[&der::oid(OID_EC_PUBLIC_KEY), &der::oid(OID_P256)]),
        &der::bits(point),
    ])
}

fn extension(oid: &str, value: &[u8]) -> Vec<u8> {
    seq(&[&der::oid(oid), &der::octets(value)])
}

#[allow(clippy::too_many_arguments)]
fn cert(
    serial: &[u8],
    issuer: &str,
    subject: &str,
    subject_point: &[u8],
    from: i64,
    to: i64,
    extensions: &[Vec<u8>],
    issuer_key: &[u8],
) -> Result<Vec<u8>, SnpSimError> {
    let mut parts = vec![
        tlv(0xA0, &der::uint(&[2])),
        der::uint(serial),
        ecdsa_alg(),
        der::name(issuer),
        seq(&[&der::time(from), &der::time(to)]),
        der::name(subject),
        spki(subject_point),
    ];
    if !extensions.is_empty() {
        let refs: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
        parts.push(tlv(0xA3, &seq(&refs)));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let tbs = seq(&refs);
    let sig = sign(issuer_key, false, &tbs)?;
    Ok(seq(&[&tbs, &ecdsa_alg(), &der::bits(&sig)]))
}

fn crl(
    issuer: &str,
    issuer_key: &[u8],
    this: i64,
    next: i64,
    revoked: &[&[u8]],
) -> Result<Vec<u8>, SnpSimError> {
    let mut parts = vec![
        der::uint(&[1]),
        ecdsa_alg(),
        der::name(issuer),
        der::time(this),
        der::time(next),
    ];
    if !revoked.is_empty() {
        let entries: Vec<Vec<u8>> = revoked
            .iter()
            .map(|s| seq(&[&der::uint(s), &der::time(this)]))
            .collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        parts.push(seq(&refs));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let tbs = seq(&refs);
    let sig = sign(issuer_key, false, &tbs)?;
    Ok(seq(&[&tbs, &ecdsa_alg(), &der::bits(&sig)]))
}

fn sgx_extension(fmspc: &[u8; 6], compsvn: &[u8; 16], pcesvn: u16) -> Vec<u8> {
    let sub = |n: &str| format!("{OID_SGX}.{n}");
    let mut tcb: Vec<Vec<u8>> = (0..16)
        .map(|i| {
            seq(&[
                &der::oid(&sub(&format!("2.{}", i + 1))),
                &der::uint(&[compsvn[i]]),
            ])
        })
        .collect();
    tcb.push(seq(&[
        &der::oid(&sub("2.17")),
        &der::uint(&pcesvn.to_be_bytes()),
    ]));
    tcb.push(seq(&[&der::oid(&sub("2.18")), &der::octets(compsvn)]));
    let tcb_refs: Vec<&[u8]> = tcb.iter().map(Vec::as_slice).collect();
    seq(&[
        &seq(&[&der::oid(&sub("1")), &der::octets(&[0x11; 16])]),
        &seq(&[&der::oid(&sub("2")), &seq(&tcb_refs)]),
        &seq(&[&der::oid(&sub("3")), &der::octets(&[0, 0])]),
        &seq(&[&der::oid(&sub("4")), &der::octets(fmspc)]),
        &seq(&[&der::oid(&sub("5")), &tlv(0x0A, &[0])]),
    ])
}

fn pem(der_bytes: &[u8]) -> String {
    crate::snp::pem("CERTIFICATE", der_bytes)
}

fn rfc3339(t: i64) -> String {
    let (y, m, d, hh, mm, ss) = der::civil(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

const YEAR: i64 = 365 * 86_400;
/// TCB components the simulated PCK certificate carries.
const COMPSVN: [u8; 16] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
const PCESVN: u16 = 11;
/// TEE_TCB_SVN of the simulated TDX module (byte 1 = 0: no module identity).
const TEE_TCB_SVN: [u8; 16] = [2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

impl DcapSim {
    /// A new platform valid from `now` for ten years. With `revoke_pck`,
    /// the PCK CRL lists its PCK certificate.
    pub fn generate(now: i64, revoke_pck: bool) -> Result<Self, SnpSimError> {
        let rng = SystemRandom::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for _ in 0..5 {
            keys.push(
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                    .map_err(err)?
                    .as_ref()
                    .to_vec(),
            );
        }
        let keys: [Vec<u8>; 5] = keys.try_into().map_err(err)?;
        let mut fmspc = [0u8; 6];
        aws_lc_rs::rand::fill(&mut fmspc).map_err(err)?;
        let mut pck_serial = vec![0x01; 16];
        aws_lc_rs::rand::fill(&mut pck_serial[1..]).map_err(err)?;
        let (from, to) = (now - 86_400, now + 10 * YEAR);
        let root = "Simulated SGX Root CA";
        let ca = "Simulated SGX PCK Platform CA";
        let root_der = cert(
            &[1],
            root,
            root,
            &public(&keys[0])?,
            from,
            to,
            &[],
            &keys[0],
        )?;
        let ca_der = cert(&[2], root, ca, &public(&keys[1])?, from, to, &[], &keys[0])?;
        let tcb_der = cert(
            &[3],
            root,
            "Simulated SGX TCB Signing",
            &public(&keys[2])?,
            from,
            to,
            &[],
            &keys[0],
        )?;
        let pck_der = cert(
            &pck_serial,
            ca,
            "Simulated SGX PCK Certificate",
            &public(&keys[3])?,
            from,
            to,
            &[extension(OID_SGX, &sgx_extension(&fmspc, &COMPSVN, PCESVN))],
            &keys[1],
        )?;
        Ok(Self {
            keys,
            root_der,
            ca_der,
            tcb_der,
            pck_der,
            pck_serial,
            revoked: revoke_pck,
            fmspc,
            created: now,
        })
    }

    /// SHA-256 of the root certificate: what the configuration must name.
    pub fn root_fingerprint(&self) -> [u8; 32] {
        let mut f = [0u8; 32];
        f.copy_from_slice(digest::digest(&digest::SHA256, &self.root_der).as_ref());
        f
    }

    pub fn fmspc(&self) -> String {
        hex::encode_upper(self.fmspc)
    }

    /// TDX collateral in the flat JSON form, issued at `now`, valid 30 days.
    pub fn collateral_json(&self, now: i64) -> Result<Value, SnpSimError> {
        self.collateral_for(now, true)
    }

    /// SGX collateral (TCB info id SGX, QE identity "QE").
    pub fn sgx_collateral_json(&self, now: i64) -> Result<Value, SnpSimError> {
        self.collateral_for(now, false)
    }

    fn collateral_for(&self, now: i64, tdx: bool) -> Result<Value, SnpSimError> {
        let (issue, next) = (rfc3339(now), rfc3339(now + 30 * 86_400));
        let comps = |v: &[u8; 16]| -> Vec<Value> { v.iter().map(|s| json!({"svn": s})).collect() };
        let mut levels = json!([
            {"tcb": {"sgxtcbcomponents": comps(&COMPSVN), "pcesvn": PCESVN},
             "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
            {"tcb": {"sgxtcbcomponents": comps(&[0; 16]), "pcesvn": 0},
             "tcbDate": "2018-01-04T00:00:00Z", "tcbStatus": "OutOfDate", "advisoryIDs": ["INTEL-SA-SIM-0001"]}
        ]);
        if tdx {
            levels[0]["tcb"]["tdxtcbcomponents"] = json!(comps(&TEE_TCB_SVN));
            levels[1]["tcb"]["tdxtcbcomponents"] = json!(comps(&[0; 16]));
        }
        let mut info = json!({
            "id": if tdx { "TDX" } else { "SGX" }, "version": 3, "issueDate": issue, "nextUpdate": next,
            "fmspc": self.fmspc(), "pceId": "0000", "tcbType": 0, "tcbEvaluationDataNumber": 17,
            "tcbLevels": levels
        });
        if tdx {
            info["tdxModuleIdentities"] = json!([]);
        }
        let tcb_info = info.to_string();
        let qe_identity = json!({
            "id": if tdx { "TD_QE" } else { "QE" }, "version": 2, "issueDate": issue, "nextUpdate": next,
            "tcbEvaluationDataNumber": 17, "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode_upper(QE_MRSIGNER), "isvprodid": if tdx { 2 } else { 1 },
            "tcbLevels": [{"tcb": {"isvsvn": 1}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}]
        })
        .to_string();
        let chain = format!("{}{}", pem(&self.tcb_der), pem(&self.root_der));
        let this = now - 3600;
        let revoked: Vec<&[u8]> = if self.revoked {
            vec![&self.pck_serial]
        } else {
            vec![]
        };
        let pck_crl = crl(
            "Simulated SGX PCK Platform CA",
            &self.keys[1],
            this,
            now + 30 * 86_400,
            &revoked,
        )?;
        let root_crl = crl(
            "Simulated SGX Root CA",
            &self.keys[0],
            this,
            now + 365 * 86_400,
            &[],
        )?;
        Ok(json!({
            "tcb_info_signature": hex::encode(sign(&self.keys[2], true, tcb_info.as_bytes())?),
            "tcb_info": tcb_info,
            "tcb_info_issuer_chain": chain,
            "qe_identity_signature": hex::encode(sign(&self.keys[2], true, qe_identity.as_bytes())?),
            "qe_identity": qe_identity,
            "qe_identity_issuer_chain": chain,
            "pck_crl": hex::encode(pck_crl),
            "pck_crl_issuer_chain": format!("{}{}", pem(&self.ca_der), pem(&self.root_der)),
            "root_ca_crl": hex::encode(root_crl),
        }))
    }

    /// A TDX quote v4 for `p`, signed by the attestation key, with the QE
    /// report signed by the PCK key and the PCK chain in PEM.
    pub fn tdx_quote(&self, p: &TdParams) -> Result<Vec<u8>, SnpSimError> {
        let mut q = Vec::with_capacity(5000);
        q.extend_from_slice(&4u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0x81u32.to_le_bytes());
        q.extend_from_slice(&0u16.to_le_bytes());
        q.extend_from_slice(&PCESVN.to_le_bytes());
        q.extend_from_slice(&QE_VENDOR_ID);
        q.extend_from_slice(&[0u8; 20]);
        // TD report body (584 bytes).
        q.extend_from_slice(&TEE_TCB_SVN);
        q.extend_from_slice(&[0x5e; 48]); // MRSEAM
        q.extend_from_slice(&[0u8; 48]); // MRSIGNERSEAM
        q.extend_from_slice(&[0u8; 8]); // SEAMATTRIBUTES
        q.extend_from_slice(&p.td_attributes);
        q.extend_from_slice(&[0xe7, 0x02, 0x06, 0, 0, 0, 0, 0]); // XFAM
        q.extend_from_slice(&p.mr_td);
        q.extend_from_slice(&p.mr_config_id);
        q.extend_from_slice(&[0u8; 48]); // MROWNER
        q.extend_from_slice(&[0u8; 48]); // MROWNERCONFIG
        for r in &p.rtmr {
            q.extend_from_slice(r);
        }
        q.extend_from_slice(&p.report_data);
        self.sign_quote(q, 2, true)
    }

    /// An SGX quote v3 for `p` (QE: ISVPRODID 1, certification data type 5
    /// directly after the QE auth data, as SGX quotes carry it).
    pub fn sgx_quote(&self, p: &SgxParams) -> Result<Vec<u8>, SnpSimError> {
        let mut q = Vec::with_capacity(5000);
        q.extend_from_slice(&3u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0u32.to_le_bytes());
        q.extend_from_slice(&1u16.to_le_bytes()); // QE SVN
        q.extend_from_slice(&PCESVN.to_le_bytes());
        q.extend_from_slice(&QE_VENDOR_ID);
        q.extend_from_slice(&[0u8; 20]);
        let mut body = vec![0u8; 384];
        body[..16].copy_from_slice(&COMPSVN); // CPUSVN
        body[48..64].copy_from_slice(&p.attributes);
        body[64..96].copy_from_slice(&p.mr_enclave);
        body[128..160].copy_from_slice(&p.mr_signer);
        body[192..256].copy_from_slice(&p.config_id);
        body[256..258].copy_from_slice(&p.isv_prod_id.to_le_bytes());
        body[258..260].copy_from_slice(&p.isv_svn.to_le_bytes());
        body[320..384].copy_from_slice(&p.report_data);
        q.extend_from_slice(&body);
        self.sign_quote(q, 1, false)
    }

    /// Append the signature data to header ‖ body `q`: the attestation
    /// key's signature, the QE report (ISVPRODID `qe_prod`) signed by the
    /// PCK key, the QE auth data and the PCK chain — wrapped in
    /// certification data type 6 (v4) or directly (v3).
    fn sign_quote(&self, mut q: Vec<u8>, qe_prod: u16, v4: bool) -> Result<Vec<u8>, SnpSimError> {
        let att = public(&self.keys[4])?; // 0x04 ‖ x ‖ y
        let sig = sign(&self.keys[4], true, &q)?;
        let auth = [0xa5u8; 32];
        // QE report: an SGX report body whose report_data binds the key.
        let mut qe = vec![0u8; 384];
        qe[48] = 0x11; // attributes: INIT | MODE64
        qe[128..160].copy_from_slice(&QE_MRSIGNER);
        qe[256..258].copy_from_slice(&qe_prod.to_le_bytes()); // ISVPRODID
        qe[258..260].copy_from_slice(&1u16.to_le_bytes()); // ISVSVN
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&att[1..]);
        ctx.update(&auth);
        qe[320..352].copy_from_slice(ctx.finish().as_ref());
        let qe_sig = sign(&self.keys[3], true, &qe)?;
        let mut chain = format!(
            "{}{}{}",
            pem(&self.pck_der),
            pem(&self.ca_der),
            pem(&self.root_der)
        )
        .into_bytes();
        chain.push(0);

        let mut qe_part = Vec::new();
        qe_part.extend_from_slice(&qe);
        qe_part.extend_from_slice(&qe_sig);
        qe_part.extend_from_slice(&(auth.len() as u16).to_le_bytes());
        qe_part.extend_from_slice(&auth);
        qe_part.extend_from_slice(&5u16.to_le_bytes());
        qe_part.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        qe_part.extend_from_slice(&chain);
        let mut sd = Vec::new();
        sd.extend_from_slice(&sig);
        sd.extend_from_slice(&att[1..]);
        if v4 {
            sd.extend_from_slice(&6u16.to_le_bytes());
            sd.extend_from_slice(&(qe_part.len() as u32).to_le_bytes());
        }
        sd.extend_from_slice(&qe_part);
        q.extend_from_slice(&(sd.len() as u32).to_le_bytes());
        q.extend_from_slice(&sd);
        Ok(q)
    }

    /// Persist to `dir` (keys 0600).
    pub fn save(&self, dir: &Path) -> Result<(), SnpSimError> {
        std::fs::create_dir_all(dir).map_err(|e| SnpSimError::State(e.to_string()))?;
        let state = json!({
            "keys": self.keys.iter().map(hex::encode).collect::<Vec<_>>(),
            "root": hex::encode(&self.root_der), "ca": hex::encode(&self.ca_der),
            "tcb": hex::encode(&self.tcb_der), "pck": hex::encode(&self.pck_der),
            "pck_serial": hex::encode(&self.pck_serial), "revoked": self.revoked,
            "fmspc": hex::encode(self.fmspc), "created": self.created,
        });
        let p = dir.join("dcap-sim.json");
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        std::io::Write::write_all(
            &mut o.open(&p).map_err(|e| SnpSimError::State(e.to_string()))?,
            state.to_string().as_bytes(),
        )
        .map_err(|e| SnpSimError::State(e.to_string()))
    }

    pub fn load(dir: &Path) -> Result<Self, SnpSimError> {
        let p = dir.join("dcap-sim.json");
        let text = std::fs::read_to_string(&p)
            .map_err(|e| SnpSimError::State(format!("{}: {e}", p.display())))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| SnpSimError::State(e.to_string()))?;
        let h = |k: &str| -> Result<Vec<u8>, SnpSimError> {
            v[k].as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| SnpSimError::State(format!("{k} missing")))
        };
        let keys: Vec<Vec<u8>> = v["keys"]
            .as_array()
            .ok_or_else(|| SnpSimError::State("keys missing".into()))?
            .iter()
            .map(|k| {
                k.as_str()
                    .and_then(|s| hex::decode(s).ok())
                    .unwrap_or_default()
            })
            .collect();
        Ok(Self {
            keys: keys
                .try_into()
                .map_err(|_| SnpSimError::State("five keys expected".into()))?,
            root_der: h("root")?,
            ca_der: h("ca")?,
            tcb_der: h("tcb")?,
            pck_der: h("pck")?,
            pck_serial: h("pck_serial")?,
            revoked: v["revoked"].as_bool().unwrap_or(false),
            fmspc: h("fmspc")?
                .try_into()
                .map_err(|_| SnpSimError::State("fmspc".into()))?,
            created: v["created"].as_i64().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_751_328_000), "2025-07-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
