//! Security policy for confidential pods, from the pod YAML a workload
//! owner already has: the Kubernetes objects and their pod templates
//! ([`workload`]), and the settings that depend on the cluster and the
//! runtime ([`settings`]).
//!
//! This crate does no network IO; image metadata is given to it.

pub mod annotate;
pub mod container;
pub mod engine;
pub mod env;
mod fast;
pub mod generate;
pub mod settings;
pub mod workload;

pub use settings::Settings;
pub use workload::{Objects, PodTemplate, WorkloadError};
