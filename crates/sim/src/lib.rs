//! Simulated TEE hardware, so tests and users' CI can drive the real
//! verification code end to end without a TEE. The SNP simulator builds an
//! AMD-shaped key hierarchy (ARK and ASK: RSA-4096 with RSASSA-PSS SHA-384
//! signatures; VCEK: P-384 with AMD's TCB and hwID extensions) and signs
//! ATTESTATION_REPORTs with the VCEK exactly as the firmware does.
//!
//! The Azure vTPM simulator ([`az`]) answers TPM 2.0 commands like the
//! HCL's vTPM, wrapping simulated SNP reports or TDREPORTs.
//!
//! A simulated root is never trusted by default: its fingerprint differs
//! from the pinned AMD roots, and the verifier accepts it only when the
//! configuration names it, marking the claims `simulated`.

pub mod az;
mod der;
pub mod snp;
pub mod tdx;

pub use snp::{SnpReportParams, SnpSim, SnpSimError};
