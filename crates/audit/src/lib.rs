//! What an auditor checks offline (issue 21, first part): the log is an
//! RFC 9162 Merkle tree ([`merkle`]) whose heads are published as
//! checkpoints in the C2SP tlog-checkpoint format, signed as C2SP signed
//! notes with Ed25519 ([`checkpoint`]). No storage and no IO here.

pub mod checkpoint;
pub mod merkle;
