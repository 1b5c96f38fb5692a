//! TPM 2.0 command and response framing for the few commands an Azure vTPM
//! attester issues, shared by the guest (which sends them to `/dev/tpmrm0`)
//! and the simulator (which answers them like the vTPM).
//!
//! References: TCG TPM 2.0 Library, Part 1: Architecture, 18 "Command/
//! Response Structure" (header `tag u16, size u32, code u32`, then handles,
//! the authorization area when `tag` is `TPM_ST_SESSIONS`, then parameters;
//! responses carry `parameterSize u32` before their parameters when they
//! have sessions); Part 2: Structures (constants below, TPMA_NV 13.4,
//! TPM2B_NV_PUBLIC 13.6, TPML_PCR_SELECTION 10.9.7, TPMT_SIGNATURE 11.3.4);
//! Part 3: Commands (NV_DefineSpace 31.3, NV_UndefineSpace 31.4, NV_Write
//! 31.8, NV_Read 31.13, NV_ReadPublic 31.6, Quote 18.4, PCR_Read 22.4).
//! Azure's HCL keeps its report in NV index `0x01400001`, reads guest data
//! for the next report from `0x01400002` and holds the attestation key at
//! the persistent handle `0x81000003`.

use crate::tpm::{read_pcr_selection, Reader};
use crate::{malformed, Error};

pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
pub const TPM_ST_SESSIONS: u16 = 0x8002;
/// The password authorization session.
pub const TPM_RS_PW: u32 = 0x4000_0009;
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
pub const TPM_ALG_SHA256: u16 = 0x000b;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_RSASSA: u16 = 0x0014;
pub const TPMA_NV_OWNERWRITE: u32 = 1 << 1;
pub const TPMA_NV_OWNERREAD: u32 = 1 << 17;

/// Azure: the HCL attestation report.
pub const HCL_REPORT_INDEX: u32 = 0x0140_0001;
/// Azure: 64 bytes of guest data mixed into the next HCL report.
pub const USER_DATA_INDEX: u32 = 0x0140_0002;
pub const USER_DATA_LEN: usize = 64;
/// Azure: the vTPM attestation key.
pub const AK_HANDLE: u32 = 0x8100_0003;
/// NV reads and writes go in chunks no larger than this (TPM_PT_NV_BUFFER_MAX
/// is at least 1024 on the TPMs we target).
pub const NV_CHUNK: usize = 1024;
/// The largest command or response a TPM exchanges (TPM_PT_MAX_*_SIZE).
pub const MAX_MESSAGE: usize = 8192;

/// Command codes (Part 2, 6.5.2).
pub mod cc {
    pub const NV_UNDEFINE_SPACE: u32 = 0x0000_0122;
    pub const NV_DEFINE_SPACE: u32 = 0x0000_012a;
    pub const NV_WRITE: u32 = 0x0000_0137;
    pub const NV_READ: u32 = 0x0000_014e;
    pub const QUOTE: u32 = 0x0000_0158;
    pub const NV_READ_PUBLIC: u32 = 0x0000_0169;
    pub const PCR_READ: u32 = 0x0000_017e;
}

/// Response codes the attester and simulator distinguish (Part 2, 6.6).
pub mod rc {
    pub const SUCCESS: u32 = 0;
    /// Format-one "handle" error for the first handle (TPM_RC_HANDLE + TPM_RC_1 in the handle field).
    pub const HANDLE_1: u32 = 0x018b;
    pub const NV_DEFINED: u32 = 0x014c;
    pub const NV_RANGE: u32 = 0x0146;
    pub const COMMAND_CODE: u32 = 0x0143;
    pub const SIZE: u32 = 0x0095;
    pub const VALUE: u32 = 0x0084;
    pub const RETRY: u32 = 0x0922;
}

/// How many handles precede the parameters of a command we know.
pub fn handle_count(code: u32) -> Option<usize> {
    match code {
        cc::NV_UNDEFINE_SPACE | cc::NV_WRITE | cc::NV_READ => Some(2),
        cc::NV_DEFINE_SPACE | cc::QUOTE | cc::NV_READ_PUBLIC => Some(1),
        cc::PCR_READ => Some(0),
        _ => None,
    }
}

/// The command's name for messages.
pub fn command_name(code: u32) -> &'static str {
    match code {
        cc::NV_UNDEFINE_SPACE => "TPM2_NV_UndefineSpace",
        cc::NV_DEFINE_SPACE => "TPM2_NV_DefineSpace",
        cc::NV_WRITE => "TPM2_NV_Write",
        cc::NV_READ => "TPM2_NV_Read",
        cc::QUOTE => "TPM2_Quote",
        cc::NV_READ_PUBLIC => "TPM2_NV_ReadPublic",
        cc::PCR_READ => "TPM2_PCR_Read",
        _ => "TPM2 command",
    }
}

/// A command to marshal. `password_auth` adds one empty-password session
/// (TPM_RS_PW) authorizing the first handle, as Azure's vTPM expects for
/// owner and attestation-key authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub code: u32,
    pub handles: Vec<u32>,
    pub password_auth: bool,
    pub params: Vec<u8>,
}

impl Command {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.params.len());
        let tag = if self.password_auth {
            TPM_ST_SESSIONS
        } else {
            TPM_ST_NO_SESSIONS
        };
        b.extend_from_slice(&tag.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&self.code.to_be_bytes());
        for h in &self.handles {
            b.extend_from_slice(&h.to_be_bytes());
        }
        if self.password_auth {
            // authorizationSize, then TPMS_AUTH_COMMAND: handle, empty
            // nonce, attributes (continueSession), empty password.
            b.extend_from_slice(&9u32.to_be_bytes());
            b.extend_from_slice(&TPM_RS_PW.to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b.push(1);
            b.extend_from_slice(&0u16.to_be_bytes());
        }
        b.extend_from_slice(&self.params);
        let size = b.len() as u32;
        b[2..6].copy_from_slice(&size.to_be_bytes());
        b
    }

    /// Parse a command (the simulator's side). Authorization sessions are
    /// skipped: only their framing is checked.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "TPM2 command";
        let mut r = Reader::new(bytes, WHAT);
        let tag = r.u16("tag")?;
        let size = r.u32("commandSize")? as usize;
        if size != bytes.len() {
            return Err(malformed(
                WHAT,
                format!("commandSize {size} but {} bytes", bytes.len()),
            ));
        }
        let code = r.u32("commandCode")?;
        let n = handle_count(code)
            .ok_or_else(|| malformed(WHAT, format!("unsupported command code {code:#x}")))?;
        let handles = (0..n)
            .map(|_| r.u32("handle"))
            .collect::<Result<Vec<_>, _>>()?;
        let password_auth = match tag {
            TPM_ST_NO_SESSIONS => false,
            TPM_ST_SESSIONS => {
                let auth_size = r.u32("authorizationSize")? as usize;
                r.take(auth_size, "authorization area")?;
                true
            }
            t => return Err(malformed(WHAT, format!("tag {t:#06x}"))),
        };
        let params = r.take(r.rest(), "parameters")?.to_vec();
        Ok(Self {
            code,
            handles,
            password_auth,
            params,
        })
    }
}

/// A response: its code and, on success, its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u32,
    pub params: Vec<u8>,
}

impl Response {
    /// Marshal (the simulator's side). A successful response to a command
    /// with sessions carries parameterSize and one empty password
    /// acknowledgement; a failed one is the bare header.
    pub fn to_bytes(&self, sessions: bool) -> Vec<u8> {
        let sessions = sessions && self.code == rc::SUCCESS;
        let tag = if sessions {
            TPM_ST_SESSIONS
        } else {
            TPM_ST_NO_SESSIONS
        };
        let mut b = Vec::with_capacity(24 + self.params.len());
        b.extend_from_slice(&tag.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&self.code.to_be_bytes());
        if self.code == rc::SUCCESS {
            if sessions {
                b.extend_from_slice(&(self.params.len() as u32).to_be_bytes());
            }
            b.extend_from_slice(&self.params);
            if sessions {
                b.extend_from_slice(&[0, 0, 1, 0, 0]);
            }
        }
        let size = b.len() as u32;
        b[2..6].copy_from_slice(&size.to_be_bytes());
        b
    }

    /// Parse a response to a command sent with (`sessions`) or without an
    /// authorization area. None of our commands return handles.
    pub fn parse(bytes: &[u8], sessions: bool) -> Result<Self, Error> {
        const WHAT: &str = "TPM2 response";
        let mut r = Reader::new(bytes, WHAT);
        let tag = r.u16("tag")?;
        let size = r.u32("responseSize")? as usize;
        if size != bytes.len() {
            return Err(malformed(
                WHAT,
                format!("responseSize {size} but {} bytes", bytes.len()),
            ));
        }
        let code = r.u32("responseCode")?;
        if code != rc::SUCCESS {
            return Ok(Self {
                code,
                params: Vec::new(),
            });
        }
        let params = match (tag, sessions) {
            (TPM_ST_SESSIONS, true) => {
                let n = r.u32("parameterSize")? as usize;
                r.take(n, "parameters")?.to_vec()
            }
            (TPM_ST_NO_SESSIONS, false) => r.take(r.rest(), "parameters")?.to_vec(),
            (t, _) => {
                return Err(malformed(
                    WHAT,
                    format!("tag {t:#06x} does not match the command's sessions"),
                ))
            }
        };
        Ok(Self { code, params })
    }
}

/// TPML_PCR_SELECTION with one bank and a 3-byte bitmap (PCRs 0-23).
pub fn pcr_selection(hash: u16, pcrs: &[u8]) -> Vec<u8> {
    let mut bitmap = [0u8; 3];
    for p in pcrs.iter().filter(|p| **p < 24) {
        bitmap[(*p / 8) as usize] |= 1 << (p % 8);
    }
    let mut b = Vec::with_capacity(10);
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&hash.to_be_bytes());
    b.push(3);
    b.extend_from_slice(&bitmap);
    b
}

/// Append a TPM2B (u16 size, bytes). Callers keep `data` under 64 KiB.
pub fn put_sized(b: &mut Vec<u8>, data: &[u8]) {
    b.extend_from_slice(&(data.len() as u16).to_be_bytes());
    b.extend_from_slice(data);
}

/// A TPM2B_NV_PUBLIC (Part 2, 13.5/13.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvPublic {
    pub index: u32,
    pub name_alg: u16,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub data_size: u16,
}

impl NvPublic {
    pub fn to_sized_bytes(&self) -> Vec<u8> {
        let mut inner = Vec::new();
        inner.extend_from_slice(&self.index.to_be_bytes());
        inner.extend_from_slice(&self.name_alg.to_be_bytes());
        inner.extend_from_slice(&self.attributes.to_be_bytes());
        put_sized(&mut inner, &self.auth_policy);
        inner.extend_from_slice(&self.data_size.to_be_bytes());
        let mut b = Vec::new();
        put_sized(&mut b, &inner);
        b
    }

    /// Parse a TPM2B_NV_PUBLIC at the start of `bytes`; returns it and the
    /// number of bytes consumed.
    pub fn parse_sized(bytes: &[u8]) -> Result<(Self, usize), Error> {
        let mut r = Reader::new(bytes, "TPM2B_NV_PUBLIC");
        let inner = r.sized("size")?;
        let used = r.at;
        let mut r = Reader::new(&inner, "TPMS_NV_PUBLIC");
        let p = Self {
            index: r.u32("nvIndex")?,
            name_alg: r.u16("nameAlg")?,
            attributes: r.u32("attributes")?,
            auth_policy: r.sized("authPolicy")?,
            data_size: r.u16("dataSize")?,
        };
        Ok((p, used))
    }
}

/// The parameters of a TPM2_PCR_Read response: the selection actually read
/// (a TPM returns at most 8 digests per call) and the digests, in order.
pub fn parse_pcr_read(params: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), Error> {
    let mut r = Reader::new(params, "TPM2_PCR_Read response");
    r.u32("pcrUpdateCounter")?;
    let sel = read_pcr_selection(&mut r)?;
    let count = r.u32("pcrValues.count")?;
    if count > 8 {
        return Err(malformed(
            "TPM2_PCR_Read response",
            format!("{count} digests (at most 8 per TPML_DIGEST)"),
        ));
    }
    let digests = (0..count)
        .map(|_| r.sized("pcrValues.digest"))
        .collect::<Result<Vec<_>, _>>()?;
    let pcrs: Vec<u8> = sel.into_iter().flat_map(|(_, p)| p).collect();
    if pcrs.len() != digests.len() {
        return Err(malformed(
            "TPM2_PCR_Read response",
            format!("{} PCRs selected but {} digests", pcrs.len(), digests.len()),
        ));
    }
    Ok((pcrs, digests))
}

/// The parameters of a TPM2_Quote response: the TPM2B_ATTEST contents and
/// the RSASSA signature bytes.
pub fn parse_quote(params: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    const WHAT: &str = "TPM2_Quote response";
    let mut r = Reader::new(params, WHAT);
    let attest = r.sized("quoted")?;
    let alg = r.u16("signature.sigAlg")?;
    if alg != TPM_ALG_RSASSA {
        return Err(malformed(
            WHAT,
            format!("signature algorithm {alg:#06x} is not RSASSA"),
        ));
    }
    let hash = r.u16("signature.hash")?;
    if hash != TPM_ALG_SHA256 {
        return Err(malformed(
            WHAT,
            format!("signature hash {hash:#06x} is not SHA-256"),
        ));
    }
    let sig = r.sized("signature.sig")?;
    Ok((attest, sig))
}

/// A short description of a response code for error messages.
pub fn describe_rc(code: u32) -> String {
    let what = match code {
        rc::RETRY => "TPM_RC_RETRY: the TPM is busy",
        c if c & 0x0bf == 0x08b => "TPM_RC_HANDLE: the handle does not exist",
        c if c & 0xfff == rc::NV_DEFINED => "TPM_RC_NV_DEFINED",
        c if c & 0xfff == rc::NV_RANGE => "TPM_RC_NV_RANGE: read or write beyond the index",
        c if c & 0xfff == 0x014a => "TPM_RC_NV_UNINITIALIZED: the index was never written",
        c if c & 0xfff == 0x0149 => "TPM_RC_NV_AUTHORIZATION",
        c if c & 0xfff == rc::COMMAND_CODE => "TPM_RC_COMMAND_CODE: not implemented",
        c if c & 0x0bf == 0x08e => "TPM_RC_AUTH_FAIL / TPM_RC_BAD_AUTH",
        _ => "",
    };
    if what.is_empty() {
        format!("response code {code:#x}")
    } else {
        format!("response code {code:#x} ({what})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_with_and_without_sessions() {
        let c = Command {
            code: cc::NV_READ,
            handles: vec![TPM_RH_OWNER, HCL_REPORT_INDEX],
            password_auth: true,
            params: vec![0x04, 0x00, 0x00, 0x00],
        };
        let b = c.to_bytes();
        // Header, two handles, 4 + 9 bytes of authorization, parameters.
        assert_eq!(b.len(), 10 + 8 + 13 + 4);
        assert_eq!(&b[..2], &TPM_ST_SESSIONS.to_be_bytes());
        assert_eq!(Command::parse(&b).unwrap(), c);
        let c = Command {
            code: cc::PCR_READ,
            handles: vec![],
            password_auth: false,
            params: pcr_selection(TPM_ALG_SHA256, &[0, 8, 23]),
        };
        assert_eq!(c.params[7..], [0x01, 0x01, 0x80]);
        assert_eq!(Command::parse(&c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn responses_round_trip_and_errors_are_bare_headers() {
        let ok = Response {
            code: 0,
            params: vec![1, 2, 3],
        };
        assert_eq!(Response::parse(&ok.to_bytes(true), true).unwrap(), ok);
        assert_eq!(Response::parse(&ok.to_bytes(false), false).unwrap(), ok);
        let err = Response {
            code: rc::HANDLE_1,
            params: vec![],
        };
        let b = err.to_bytes(true);
        assert_eq!(b.len(), 10);
        assert_eq!(Response::parse(&b, true).unwrap(), err);
        assert!(describe_rc(rc::HANDLE_1).contains("does not exist"));
    }

    #[test]
    fn malformed_frames_are_named() {
        let mut b = Command {
            code: cc::QUOTE,
            handles: vec![AK_HANDLE],
            password_auth: true,
            params: vec![],
        }
        .to_bytes();
        b.push(0);
        assert!(Command::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("commandSize"));
        let e = Response::parse(&[0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0], false).unwrap_err();
        assert!(e.to_string().contains("responseSize"), "{e}");
        assert!(Response::parse(&[0x80], false).is_err());
        let mut unknown = Command {
            code: 0x17a,
            handles: vec![],
            password_auth: false,
            params: vec![],
        }
        .to_bytes();
        assert!(Command::parse(&unknown)
            .unwrap_err()
            .to_string()
            .contains("0x17a"));
        unknown.truncate(3);
        assert!(Command::parse(&unknown).is_err());
        let e = parse_quote(&[0, 1, 0xaa, 0, 0x18, 0, 0x0b, 0, 0]).unwrap_err();
        assert!(e.to_string().contains("not RSASSA"), "{e}");
        assert!(parse_pcr_read(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
    }

    #[test]
    fn nv_public_round_trips() {
        let p = NvPublic {
            index: USER_DATA_INDEX,
            name_alg: TPM_ALG_SHA256,
            attributes: TPMA_NV_OWNERREAD | TPMA_NV_OWNERWRITE,
            auth_policy: vec![],
            data_size: 64,
        };
        let mut b = p.to_sized_bytes();
        b.extend_from_slice(&[0, 2, 0xaa, 0xbb]);
        let (q, used) = NvPublic::parse_sized(&b).unwrap();
        assert_eq!((q, used), (p, b.len() - 4));
    }
}
