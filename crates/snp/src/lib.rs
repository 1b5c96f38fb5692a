//! AMD SEV-SNP attestation: the ATTESTATION_REPORT structure (versions 2, 3
//! and 5), the AMD certificate chain (ARK → ASK/ASVK → VCEK/VLEK) to ARKs
//! pinned by fingerprint, and verification of a report against that chain.
//!
//! Pure functions of (bytes, certificates, `now`): no clock, files or
//! network. Fetching certificates from AMD KDS and the CoCo evidence JSON
//! live elsewhere.
//!
//! Spec: AMD SEV Secure Nested Paging Firmware ABI Specification (publication
//! 56860), Table "ATTESTATION_REPORT Structure" (rev 1.55: version 2; rev 1.57:
//! version 3 with CPUID fields; rev 1.58: version 5 with mitigation vectors),
//! and AMD's "Versioned Chip Endorsement Key (VCEK) Certificate and KDS
//! Interface Specification" (publication 57230) for certificate extensions.

pub mod certs;
pub mod evidence;
pub mod report;
pub mod verify;

pub use certs::{AmdCert, CertError, Product};
pub use report::{AttestationReport, ReportError, SigningKey, TcbVersion};
pub use verify::{
    verify_chain, verify_report, verify_report_with_chain, ChainInput, ExtraRoot, VerifiedChain,
    VerifiedReport, VerifyError,
};
