//! The SEV-SNP ATTESTATION_REPORT (1184 bytes), AMD SEV-SNP Firmware ABI
//! (publication 56860) Table "ATTESTATION_REPORT Structure": version 2
//! (rev 1.55), 3 (rev 1.57, adds CPUID family/model/stepping at 0x188) and 5
//! (rev 1.58, adds launch/current mitigation vectors at 0x1F8/0x200).
//! All integers are little-endian.

use crate::certs::Product;

/// Size of the report.
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `[0, SIGNED_LEN)`.
pub const SIGNED_LEN: usize = 0x2A0;

/// Field offsets (ABI Table "ATTESTATION_REPORT Structure").
pub mod offset {
    pub const VERSION: usize = 0x00;
    pub const GUEST_SVN: usize = 0x04;
    pub const POLICY: usize = 0x08;
    pub const FAMILY_ID: usize = 0x10;
    pub const IMAGE_ID: usize = 0x20;
    pub const VMPL: usize = 0x30;
    pub const SIGNATURE_ALGO: usize = 0x34;
    pub const CURRENT_TCB: usize = 0x38;
    pub const PLATFORM_INFO: usize = 0x40;
    pub const KEY_INFO: usize = 0x48;
    pub const RESERVED_4C: usize = 0x4C;
    pub const REPORT_DATA: usize = 0x50;
    pub const MEASUREMENT: usize = 0x90;
    pub const HOST_DATA: usize = 0xC0;
    pub const ID_KEY_DIGEST: usize = 0xE0;
    pub const AUTHOR_KEY_DIGEST: usize = 0x110;
    pub const REPORT_ID: usize = 0x140;
    pub const REPORT_ID_MA: usize = 0x160;
    pub const REPORTED_TCB: usize = 0x180;
    pub const CPUID_FAM_ID: usize = 0x188;
    pub const CPUID_MOD_ID: usize = 0x189;
    pub const CPUID_STEP: usize = 0x18A;
    pub const RESERVED_18B: usize = 0x18B;
    pub const CHIP_ID: usize = 0x1A0;
    pub const COMMITTED_TCB: usize = 0x1E0;
    pub const CURRENT_VERSION: usize = 0x1E8;
    pub const COMMITTED_VERSION: usize = 0x1EC;
    pub const LAUNCH_TCB: usize = 0x1F0;
    pub const LAUNCH_MIT_VECTOR: usize = 0x1F8;
    pub const CURRENT_MIT_VECTOR: usize = 0x200;
    pub const SIGNATURE: usize = 0x2A0;
}

/// Why bytes are not an acceptable report. Names the field or offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("report is {0} bytes; an SEV-SNP report is exactly 1184")]
    Length(usize),
    #[error("report version {0} is not supported (2, 3 or 5)")]
    Version(u32),
    #[error("signature algorithm {0:#x} is not ECDSA P-384 with SHA-384 (1)")]
    SignatureAlgorithm(u32),
    #[error("signing key selector {0} is not VCEK (0) or VLEK (1)")]
    SigningKey(u32),
    #[error("reserved field at offset {offset:#x} ({len} bytes) is not zero")]
    Reserved { offset: usize, len: usize },
    #[error("signature component {0} has non-zero bytes beyond 48")]
    SignatureComponent(&'static str),
}

/// Which key signed the report (KEY_INFO bits 4:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKey {
    Vcek,
    Vlek,
}

/// A TCB_VERSION (u64). Its byte layout depends on the product: Milan and
/// Genoa: bootloader, tee, 4 reserved, snp, microcode; Turin: fmc,
/// bootloader, tee, snp, 3 reserved, microcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcbVersion(pub u64);

/// The components of a TCB_VERSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TcbParts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl TcbVersion {
    pub fn parts(self, product: Product) -> TcbParts {
        let b = self.0.to_le_bytes();
        match product {
            Product::Turin => TcbParts {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
            Product::Milan | Product::Genoa => TcbParts {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
        }
    }

    /// Whether every component is at least the other's (same product).
    pub fn at_least(self, other: TcbVersion, product: Product) -> bool {
        let (a, b) = (self.parts(product), other.parts(product));
        a.fmc.unwrap_or(0) >= b.fmc.unwrap_or(0)
            && a.bootloader >= b.bootloader
            && a.tee >= b.tee
            && a.snp >= b.snp
            && a.microcode >= b.microcode
    }
}

/// Guest policy bits (ABI Table "Guest Policy Structure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    pub fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    pub fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub fn smt_allowed(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    pub fn migrate_ma_allowed(self) -> bool {
        self.0 & (1 << 18) != 0
    }
    pub fn debug_allowed(self) -> bool {
        self.0 & (1 << 19) != 0
    }
    pub fn single_socket_required(self) -> bool {
        self.0 & (1 << 20) != 0
    }
    pub fn cxl_allowed(self) -> bool {
        self.0 & (1 << 21) != 0
    }
    pub fn mem_aes_256_xts_required(self) -> bool {
        self.0 & (1 << 22) != 0
    }
    pub fn rapl_disabled_required(self) -> bool {
        self.0 & (1 << 23) != 0
    }
    pub fn ciphertext_hiding_required(self) -> bool {
        self.0 & (1 << 24) != 0
    }
    pub fn page_swap_disabled(self) -> bool {
        self.0 & (1 << 25) != 0
    }
}

/// Platform info bits (ABI Table "PLATFORM_INFO Field").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    pub fn smt_enabled(self) -> bool {
        self.0 & 1 != 0
    }
    pub fn tsme_enabled(self) -> bool {
        self.0 & 2 != 0
    }
    pub fn ecc_enabled(self) -> bool {
        self.0 & 4 != 0
    }
    pub fn rapl_disabled(self) -> bool {
        self.0 & 8 != 0
    }
    pub fn ciphertext_hiding_enabled(self) -> bool {
        self.0 & 16 != 0
    }
    pub fn alias_check_complete(self) -> bool {
        self.0 & 32 != 0
    }
}

/// Firmware version (build, minor, major).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

/// A parsed report. Holds the bytes it was parsed from; the signature is
/// verified over those, never over a re-encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct AttestationReport {
    bytes: Box<[u8; REPORT_LEN]>,
}

impl std::fmt::Debug for AttestationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationReport")
            .field("version", &self.version())
            .field("measurement", &hex::encode(self.measurement()))
            .finish_non_exhaustive()
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn zero(b: &[u8], offset: usize, len: usize) -> Result<(), ReportError> {
    if b[offset..offset + len].iter().all(|x| *x == 0) {
        Ok(())
    } else {
        Err(ReportError::Reserved { offset, len })
    }
}

impl AttestationReport {
    /// Parse and check a report: exact length, supported version, signature
    /// algorithm, signing key, must-be-zero fields.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ReportError> {
        let bytes: &[u8; REPORT_LEN] = b.try_into().map_err(|_| ReportError::Length(b.len()))?;
        let version = u32_at(b, offset::VERSION);
        if !matches!(version, 2 | 3 | 5) {
            return Err(ReportError::Version(version));
        }
        let algo = u32_at(b, offset::SIGNATURE_ALGO);
        if algo != 1 {
            return Err(ReportError::SignatureAlgorithm(algo));
        }
        let key_sel = (u32_at(b, offset::KEY_INFO) >> 2) & 7;
        if key_sel > 1 {
            return Err(ReportError::SigningKey(key_sel));
        }
        zero(b, offset::RESERVED_4C, 4)?;
        if version == 2 {
            zero(
                b,
                offset::CPUID_FAM_ID,
                offset::CHIP_ID - offset::CPUID_FAM_ID,
            )?;
        } else {
            zero(
                b,
                offset::RESERVED_18B,
                offset::CHIP_ID - offset::RESERVED_18B,
            )?;
        }
        zero(b, offset::CURRENT_VERSION + 3, 1)?;
        zero(b, offset::COMMITTED_VERSION + 3, 1)?;
        let reserved_from = if version >= 5 {
            offset::CURRENT_MIT_VECTOR + 8
        } else {
            offset::LAUNCH_MIT_VECTOR
        };
        zero(b, reserved_from, SIGNED_LEN - reserved_from)?;
        // r and s are 72-byte little-endian fields holding 48-byte values.
        for (name, o) in [("r", offset::SIGNATURE), ("s", offset::SIGNATURE + 72)] {
            if b[o + 48..o + 72].iter().any(|x| *x != 0) {
                return Err(ReportError::SignatureComponent(name));
            }
        }
        zero(
            b,
            offset::SIGNATURE + 144,
            REPORT_LEN - offset::SIGNATURE - 144,
        )?;
        Ok(Self {
            bytes: Box::new(*bytes),
        })
    }

    pub fn as_bytes(&self) -> &[u8; REPORT_LEN] {
        &self.bytes
    }
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }
    /// The signature as fixed-size big-endian `r ‖ s` (96 bytes).
    pub fn signature_rs(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        for (i, o) in [offset::SIGNATURE, offset::SIGNATURE + 72]
            .into_iter()
            .enumerate()
        {
            let mut le = [0u8; 48];
            le.copy_from_slice(&self.bytes[o..o + 48]);
            le.reverse();
            out[i * 48..i * 48 + 48].copy_from_slice(&le);
        }
        out
    }

    pub fn version(&self) -> u32 {
        u32_at(&self.bytes[..], offset::VERSION)
    }
    pub fn guest_svn(&self) -> u32 {
        u32_at(&self.bytes[..], offset::GUEST_SVN)
    }
    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy(u64_at(&self.bytes[..], offset::POLICY))
    }
    pub fn family_id(&self) -> &[u8] {
        &self.bytes[offset::FAMILY_ID..offset::FAMILY_ID + 16]
    }
    pub fn image_id(&self) -> &[u8] {
        &self.bytes[offset::IMAGE_ID..offset::IMAGE_ID + 16]
    }
    pub fn vmpl(&self) -> u32 {
        u32_at(&self.bytes[..], offset::VMPL)
    }
    pub fn current_tcb(&self) -> TcbVersion {
        TcbVersion(u64_at(&self.bytes[..], offset::CURRENT_TCB))
    }
    pub fn platform_info(&self) -> PlatformInfo {
        PlatformInfo(u64_at(&self.bytes[..], offset::PLATFORM_INFO))
    }
    pub fn author_key_en(&self) -> bool {
        u32_at(&self.bytes[..], offset::KEY_INFO) & 1 != 0
    }
    pub fn mask_chip_id(&self) -> bool {
        u32_at(&self.bytes[..], offset::KEY_INFO) & 2 != 0
    }
    pub fn signing_key(&self) -> SigningKey {
        // from_bytes admits only 0 and 1.
        if (u32_at(&self.bytes[..], offset::KEY_INFO) >> 2) & 7 == 1 {
            SigningKey::Vlek
        } else {
            SigningKey::Vcek
        }
    }
    pub fn report_data(&self) -> &[u8] {
        &self.bytes[offset::REPORT_DATA..offset::REPORT_DATA + 64]
    }
    pub fn measurement(&self) -> &[u8] {
        &self.bytes[offset::MEASUREMENT..offset::MEASUREMENT + 48]
    }
    pub fn host_data(&self) -> &[u8] {
        &self.bytes[offset::HOST_DATA..offset::HOST_DATA + 32]
    }
    pub fn id_key_digest(&self) -> &[u8] {
        &self.bytes[offset::ID_KEY_DIGEST..offset::ID_KEY_DIGEST + 48]
    }
    pub fn author_key_digest(&self) -> &[u8] {
        &self.bytes[offset::AUTHOR_KEY_DIGEST..offset::AUTHOR_KEY_DIGEST + 48]
    }
    pub fn report_id(&self) -> &[u8] {
        &self.bytes[offset::REPORT_ID..offset::REPORT_ID + 32]
    }
    pub fn report_id_ma(&self) -> &[u8] {
        &self.bytes[offset::REPORT_ID_MA..offset::REPORT_ID_MA + 32]
    }
    pub fn reported_tcb(&self) -> TcbVersion {
        TcbVersion(u64_at(&self.bytes[..], offset::REPORTED_TCB))
    }
    /// CPUID family, model, stepping (version 3 and later).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version() >= 3).then(|| {
            (
                self.bytes[offset::CPUID_FAM_ID],
                self.bytes[offset::CPUID_MOD_ID],
                self.bytes[offset::CPUID_STEP],
            )
        })
    }
    pub fn chip_id(&self) -> &[u8] {
        &self.bytes[offset::CHIP_ID..offset::CHIP_ID + 64]
    }
    pub fn committed_tcb(&self) -> TcbVersion {
        TcbVersion(u64_at(&self.bytes[..], offset::COMMITTED_TCB))
    }
    fn fw(&self, o: usize) -> FirmwareVersion {
        FirmwareVersion {
            build: self.bytes[o],
            minor: self.bytes[o + 1],
            major: self.bytes[o + 2],
        }
    }
    pub fn current_version(&self) -> FirmwareVersion {
        self.fw(offset::CURRENT_VERSION)
    }
    pub fn committed_version(&self) -> FirmwareVersion {
        self.fw(offset::COMMITTED_VERSION)
    }
    pub fn launch_tcb(&self) -> TcbVersion {
        TcbVersion(u64_at(&self.bytes[..], offset::LAUNCH_TCB))
    }
    /// Mitigation vectors (version 5 and later): (launch, current).
    pub fn mitigation_vectors(&self) -> Option<(u64, u64)> {
        (self.version() >= 5).then(|| {
            (
                u64_at(&self.bytes[..], offset::LAUNCH_MIT_VECTOR),
                u64_at(&self.bytes[..], offset::CURRENT_MIT_VECTOR),
            )
        })
    }

    /// The product, from CPUID (version 3+): family 0x19 model 0x0–0xF
    /// Milan, 0x10–0x1F and 0xA0–0xAF Genoa; family 0x1A Turin.
    pub fn product_from_cpuid(&self) -> Option<Product> {
        let (fam, model, _) = self.cpuid()?;
        match (fam, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }
}
