//! A simulated Azure confidential-VM vTPM: it answers the TPM 2.0 commands
//! an attester sends to `/dev/tpmrm0` byte for byte, like the HCL's vTPM.
//!
//! * NV index `0x01400001` holds the HCL report: a hardware report (SNP
//!   ATTESTATION_REPORT from [`SnpSim`], or a TDREPORT) whose report_data
//!   begins with SHA-256 of the JSON variable data carrying the attestation
//!   key (`HCLAkPub`) and the guest's `user-data`.
//! * Writing 64 bytes to NV index `0x01400002` (which the guest defines
//!   with owner authorization) makes the next report carry them; like the
//!   HCL, the refresh may lag: `stale_reads` reads still return the old report.
//! * The attestation key at `0x81000003` is an RSA-2048 key; TPM2_Quote
//!   signs TPMS_ATTEST with RSASSA-PKCS1-v1_5 SHA-256.
//! * 24 SHA-256 PCRs; PCR_Read returns at most 8 per call, as TPMs do.
//!
//! Unknown handles, bad authorization handles, out-of-range NV access and
//! unsupported commands get the TPM's error codes, so the attester's error
//! paths run as they would against the device.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use ward_vtpm::hcl::{self, ReportType};
use ward_vtpm::tpm::pcr_extend;
use ward_vtpm::tpm2::{self, cc, rc, Command, NvPublic, Response};

use ward_dcap::tdreport;

use crate::snp::{SnpReportParams, SnpSim, SnpSimError};

/// TPM_RC_HANDLE for the second handle.
const HANDLE_2: u32 = 0x028b;

/// The hardware behind the vTPM.
pub enum AzHardware {
    /// An SNP guest: reports signed by the simulated VCEK with these
    /// parameters (report_data is replaced by the variable-data hash).
    Snp(Box<SnpSim>, SnpReportParams),
    /// A TD: TDREPORTs with this MRTD (a TDREPORT's MAC is checked by the
    /// quoting enclave, not here; the quote comes from [`crate::tdx::DcapSim`]).
    Tdx { mr_td: [u8; 48] },
}

struct State {
    nv: BTreeMap<u32, (NvPublic, Vec<u8>)>,
    pcrs: [[u8; 32]; 24],
    user_data: [u8; 64],
    report: Vec<u8>,
    pending: Option<Vec<u8>>,
    stale_left: usize,
}

/// The simulated vTPM. `transact` is the device: one command in, one
/// response out.
pub struct AzVtpmSim {
    hw: AzHardware,
    ak: RsaKeyPair,
    state: Mutex<State>,
    /// Reads of the report index that still return the previous report
    /// after a user-data write.
    pub stale_reads: usize,
}

/// The simulated boot measurements in PCRs 0-7 (each extended once from
/// zero with `ward-sim boot component <i>`), for reference values.
pub fn boot_pcrs() -> [[u8; 32]; 8] {
    std::array::from_fn(|i| pcr_extend(&[0; 32], format!("ward-sim boot component {i}").as_bytes()))
}

fn owner_rw() -> u32 {
    tpm2::TPMA_NV_OWNERREAD | tpm2::TPMA_NV_OWNERWRITE
}

impl AzVtpmSim {
    /// A vTPM over `hw`. PCRs 0-7 hold fixed boot measurements; when
    /// `init_data_digest` is given, PCR 8 is extended with it once (Azure's
    /// init-data binding: SHA-256(32 zero bytes ‖ digest)).
    pub fn new(hw: AzHardware, init_data_digest: Option<&[u8]>) -> Result<Self, SnpSimError> {
        let ak = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| SnpSimError::Crypto)?;
        let mut pcrs = [[0u8; 32]; 24];
        pcrs[..8].copy_from_slice(&boot_pcrs());
        if let Some(d) = init_data_digest {
            pcrs[8] = pcr_extend(&[0; 32], d);
        }
        let sim = Self {
            hw,
            ak,
            state: Mutex::new(State {
                nv: BTreeMap::new(),
                pcrs,
                user_data: [0; 64],
                report: Vec::new(),
                pending: None,
                stale_left: 0,
            }),
            stale_reads: 0,
        };
        let report = sim.hcl_report(&[0; 64])?;
        let mut st = sim.state.lock().unwrap_or_else(|e| e.into_inner());
        st.report = report;
        let size = st.report.len() as u16;
        st.nv.insert(
            tpm2::HCL_REPORT_INDEX,
            (
                NvPublic {
                    index: tpm2::HCL_REPORT_INDEX,
                    name_alg: tpm2::TPM_ALG_SHA256,
                    attributes: tpm2::TPMA_NV_OWNERREAD,
                    auth_policy: Vec::new(),
                    data_size: size,
                },
                Vec::new(),
            ),
        );
        drop(st);
        Ok(sim)
    }

    /// The attestation key's modulus and exponent (big-endian).
    pub fn ak_pub(&self) -> (Vec<u8>, Vec<u8>) {
        let pk = self.ak.public_key();
        (
            pk.modulus().big_endian_without_leading_zero().to_vec(),
            pk.exponent().big_endian_without_leading_zero().to_vec(),
        )
    }

    /// The simulated SNP platform, if this is an SNP vTPM.
    pub fn snp(&self) -> Option<&SnpSim> {
        match &self.hw {
            AzHardware::Snp(s, _) => Some(s),
            AzHardware::Tdx { .. } => None,
        }
    }

    /// The current PCR values.
    pub fn pcrs(&self) -> [[u8; 32]; 24] {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pcrs
    }

    /// An HCL report whose variable data carries the AK and `user_data`.
    pub fn hcl_report(&self, user_data: &[u8; 64]) -> Result<Vec<u8>, SnpSimError> {
        let (n, e) = self.ak_pub();
        let vars = json!({
            "keys": [{
                "kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA",
                "e": URL_SAFE_NO_PAD.encode(e), "n": URL_SAFE_NO_PAD.encode(n),
            }],
            "vm-configuration": {
                "console-enabled": false, "secure-boot": true, "tpm-enabled": true,
                "vmUniqueId": "00000000-0000-4000-8000-00000000ward",
            },
            "user-data": hex::encode_upper(user_data),
        });
        let var_data = serde_json::to_vec(&vars).map_err(|e| SnpSimError::State(e.to_string()))?;
        let mut rd = [0u8; 64];
        rd[..32].copy_from_slice(digest::digest(&digest::SHA256, &var_data).as_ref());
        let (ty, hw) = match &self.hw {
            AzHardware::Snp(sim, params) => {
                let mut p = params.clone();
                p.report_data = rd;
                (ReportType::Snp, sim.report(&p)?)
            }
            AzHardware::Tdx { mr_td } => {
                let mut r = vec![0u8; tdreport::LEN];
                r[0] = 0x81;
                r[tdreport::REPORT_DATA..tdreport::REPORT_DATA + 64].copy_from_slice(&rd);
                r[tdreport::MRTD..tdreport::MRTD + 48].copy_from_slice(mr_td);
                (ReportType::Tdx, r)
            }
        };
        Ok(hcl::build(ty, &hw, &var_data))
    }

    /// Execute one TPM command. Malformed frames get TPM_RC_COMMAND_CODE (an
    /// unknown command) or TPM_RC_SIZE, as a TPM answers them.
    pub fn transact(&self, cmd: &[u8]) -> Vec<u8> {
        let c = match Command::parse(cmd) {
            Ok(c) => c,
            Err(_) => {
                let code = cmd
                    .get(6..10)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let code = match code {
                    Some(c) if tpm2::handle_count(c).is_none() => rc::COMMAND_CODE,
                    _ => rc::SIZE,
                };
                return Response {
                    code,
                    params: vec![],
                }
                .to_bytes(false);
            }
        };
        let (code, params) = match self.execute(&c) {
            Ok(p) => (rc::SUCCESS, p),
            Err(code) => (code, Vec::new()),
        };
        Response { code, params }.to_bytes(c.password_auth)
    }

    fn execute(&self, c: &Command) -> Result<Vec<u8>, u32> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = Params(&c.params);
        let needs_auth = !matches!(c.code, cc::NV_READ_PUBLIC | cc::PCR_READ);
        if needs_auth && !c.password_auth {
            return Err(0x0125); // TPM_RC_AUTH_MISSING
        }
        match c.code {
            cc::NV_READ_PUBLIC => {
                let (public, _) = st.nv.get(&c.handles[0]).ok_or(rc::HANDLE_1)?;
                let mut out = public.to_sized_bytes();
                let mut name = tpm2::TPM_ALG_SHA256.to_be_bytes().to_vec();
                name.extend_from_slice(
                    digest::digest(&digest::SHA256, &public.to_sized_bytes()[2..]).as_ref(),
                );
                tpm2::put_sized(&mut out, &name);
                Ok(out)
            }
            cc::NV_DEFINE_SPACE => {
                if c.handles[0] != tpm2::TPM_RH_OWNER {
                    return Err(rc::HANDLE_1);
                }
                p.sized()?; // auth value
                let rest = p.0;
                let (public, _) = NvPublic::parse_sized(rest).map_err(|_| rc::SIZE)?;
                if public.data_size as usize > 2048 {
                    return Err(rc::SIZE);
                }
                if st.nv.contains_key(&public.index) {
                    return Err(rc::NV_DEFINED);
                }
                st.nv.insert(public.index, (public, Vec::new()));
                Ok(Vec::new())
            }
            cc::NV_UNDEFINE_SPACE => {
                if c.handles[0] != tpm2::TPM_RH_OWNER {
                    return Err(rc::HANDLE_1);
                }
                if c.handles[1] == tpm2::HCL_REPORT_INDEX {
                    return Err(0x0149); // TPM_RC_NV_AUTHORIZATION: platform index
                }
                st.nv.remove(&c.handles[1]).ok_or(HANDLE_2)?;
                Ok(Vec::new())
            }
            cc::NV_WRITE => {
                let data = p.sized()?;
                let offset = p.u16()? as usize;
                let index = c.handles[1];
                let (public, contents) = st.nv.get_mut(&index).ok_or(HANDLE_2)?;
                if c.handles[0] != tpm2::TPM_RH_OWNER
                    || public.attributes & owner_rw() != owner_rw()
                {
                    return Err(0x0149);
                }
                if offset + data.len() > public.data_size as usize || data.len() > tpm2::NV_CHUNK {
                    return Err(rc::NV_RANGE);
                }
                if contents.len() < public.data_size as usize {
                    contents.resize(public.data_size as usize, 0);
                }
                contents[offset..offset + data.len()].copy_from_slice(&data);
                if index == tpm2::USER_DATA_INDEX && contents.len() == tpm2::USER_DATA_LEN {
                    let mut ud = [0u8; 64];
                    ud.copy_from_slice(contents);
                    st.user_data = ud;
                    let fresh = self.hcl_report(&ud).map_err(|_| 0x0101u32)?; // TPM_RC_FAILURE
                    st.pending = Some(fresh);
                    st.stale_left = self.stale_reads;
                }
                Ok(Vec::new())
            }
            cc::NV_READ => {
                let size = p.u16()? as usize;
                let offset = p.u16()? as usize;
                let index = c.handles[1];
                if c.handles[0] != tpm2::TPM_RH_OWNER {
                    return Err(rc::HANDLE_1);
                }
                if index == tpm2::HCL_REPORT_INDEX && offset == 0 {
                    if st.stale_left > 0 {
                        st.stale_left -= 1;
                    } else if let Some(fresh) = st.pending.take() {
                        st.report = fresh;
                    }
                }
                let data = if index == tpm2::HCL_REPORT_INDEX {
                    st.report.clone()
                } else {
                    let (_, contents) = st.nv.get(&index).ok_or(HANDLE_2)?;
                    if contents.is_empty() {
                        return Err(0x014a); // TPM_RC_NV_UNINITIALIZED
                    }
                    contents.clone()
                };
                if size > tpm2::NV_CHUNK || offset + size > data.len() {
                    return Err(rc::NV_RANGE);
                }
                let mut out = Vec::new();
                tpm2::put_sized(&mut out, &data[offset..offset + size]);
                Ok(out)
            }
            cc::QUOTE => {
                if c.handles[0] != tpm2::AK_HANDLE {
                    return Err(rc::HANDLE_1);
                }
                let nonce = p.sized()?;
                if nonce.len() > 64 {
                    return Err(rc::SIZE);
                }
                let scheme = p.u16()?;
                if scheme != tpm2::TPM_ALG_NULL {
                    let alg = p.u16()?;
                    if scheme != tpm2::TPM_ALG_RSASSA || alg != tpm2::TPM_ALG_SHA256 {
                        return Err(0x0098); // TPM_RC_SCHEME
                    }
                }
                let selection = p.0.to_vec();
                let pcrs = selected(&selection)?;
                let mut concat = Vec::new();
                for i in &pcrs {
                    concat.extend_from_slice(&st.pcrs[*i as usize]);
                }
                let mut attest = Vec::new();
                attest.extend_from_slice(&0xff54_4347u32.to_be_bytes());
                attest.extend_from_slice(&0x8018u16.to_be_bytes());
                let (n, _) = self.ak_pub();
                let mut signer = tpm2::TPM_ALG_SHA256.to_be_bytes().to_vec();
                signer.extend_from_slice(digest::digest(&digest::SHA256, &n).as_ref());
                tpm2::put_sized(&mut attest, &signer);
                tpm2::put_sized(&mut attest, &nonce);
                attest.extend_from_slice(&1_000_000u64.to_be_bytes());
                attest.extend_from_slice(&1u32.to_be_bytes());
                attest.extend_from_slice(&0u32.to_be_bytes());
                attest.push(1);
                attest.extend_from_slice(&0x0002_0000_0000_0000u64.to_be_bytes());
                attest.extend_from_slice(&selection);
                tpm2::put_sized(
                    &mut attest,
                    digest::digest(&digest::SHA256, &concat).as_ref(),
                );
                let mut sig = vec![0u8; self.ak.public_modulus_len()];
                self.ak
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &SystemRandom::new(),
                        &attest,
                        &mut sig,
                    )
                    .map_err(|_| 0x0101u32)?;
                let mut out = Vec::new();
                tpm2::put_sized(&mut out, &attest);
                out.extend_from_slice(&tpm2::TPM_ALG_RSASSA.to_be_bytes());
                out.extend_from_slice(&tpm2::TPM_ALG_SHA256.to_be_bytes());
                tpm2::put_sized(&mut out, &sig);
                Ok(out)
            }
            cc::PCR_READ => {
                let pcrs = selected(p.0)?;
                let first: Vec<u8> = pcrs.into_iter().take(8).collect();
                let mut out = 7u32.to_be_bytes().to_vec();
                out.extend_from_slice(&tpm2::pcr_selection(tpm2::TPM_ALG_SHA256, &first));
                out.extend_from_slice(&(first.len() as u32).to_be_bytes());
                for i in first {
                    tpm2::put_sized(&mut out, &st.pcrs[i as usize]);
                }
                Ok(out)
            }
            _ => Err(rc::COMMAND_CODE),
        }
    }
}

/// PCR indices selected in a one-bank SHA-256 TPML_PCR_SELECTION.
fn selected(sel: &[u8]) -> Result<Vec<u8>, u32> {
    if sel.len() != 10 || sel[..4] != 1u32.to_be_bytes() || sel[6] != 3 {
        return Err(rc::VALUE);
    }
    if u16::from_be_bytes([sel[4], sel[5]]) != tpm2::TPM_ALG_SHA256 {
        return Err(0x0082); // TPM_RC_HASH
    }
    Ok((0..24u8)
        .filter(|i| sel[7 + (*i / 8) as usize] & (1 << (i % 8)) != 0)
        .collect())
}

struct Params<'a>(&'a [u8]);

impl Params<'_> {
    fn u16(&mut self) -> Result<u16, u32> {
        if self.0.len() < 2 {
            return Err(rc::SIZE);
        }
        let v = u16::from_be_bytes([self.0[0], self.0[1]]);
        self.0 = &self.0[2..];
        Ok(v)
    }
    fn sized(&mut self) -> Result<Vec<u8>, u32> {
        let n = self.u16()? as usize;
        if self.0.len() < n {
            return Err(rc::SIZE);
        }
        let v = self.0[..n].to_vec();
        self.0 = &self.0[n..];
        Ok(v)
    }
}
