//! Offsets in the 1024-byte TDREPORT_STRUCT a TD gets from
//! `TDG.MR.REPORT` (Intel TDX Module ABI, "TDREPORT_STRUCT"):
//! REPORTMACSTRUCT (256: REPORTTYPE 8, reserved 8, CPUSVN 16,
//! TEE_TCB_INFO_HASH 48, TEE_INFO_HASH 48, REPORTDATA 64, reserved 32, MAC
//! 32), TEE_TCB_INFO (239) + reserved (17), TDINFO (512: ATTRIBUTES 8, XFAM
//! 8, MRTD 48, MRCONFIGID 48, ...).

/// Size of a TDREPORT.
pub const LEN: usize = 1024;
/// REPORTDATA (64 bytes).
pub const REPORT_DATA: usize = 128;
/// MRTD (48 bytes).
pub const MRTD: usize = 528;
/// MRCONFIGID (48 bytes).
pub const MRCONFIGID: usize = 576;
