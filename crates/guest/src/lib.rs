//! The guest side: attesters (evidence producers) and a client for the KBS
//! protocol 0.4.0 that runs the RCAR handshake, holds the ephemeral TEE key
//! and decrypts resources.
//!
//! This crate does not depend on the trust service; it talks to any
//! KBS-protocol server (ward's or the reference Trustee).

pub mod api;
pub mod attester;
pub mod az_vtpm;
pub mod client;
pub mod sealed;
pub mod select;
pub mod sev_guest;
pub mod tdx_guest;
pub mod tsm;

pub use attester::{Attester, SampleAttester};
pub use client::{ClientOptions, GuestError, KbsClient};
