//! The ward trust service: a key broker speaking the CoCo KBS protocol
//! 0.4.0 (`/kbs/v0/auth`, `/attest`, `/resource`), with the admin API,
//! JWKS, Prometheus metrics and health checks.
//!
//! [`router`] builds the axum router from an [`AppState`]; the core
//! operations live on [`AppState`] so they can be used without HTTP.
//! Sessions are stateless (encrypted cookies, keys in the store), so any
//! number of replicas can share one store. Evidence verification is
//! delegated to `ward-verifier`, persistence to `ward-store`.

pub mod admin;
pub mod admin_auth;
pub mod audit;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod policy_cache;
pub mod resource_cache;
pub mod serve;
pub mod session;
pub mod state;
pub mod tokens;

pub use config::Config;
pub use error::ApiError;
pub use http::router;
pub use state::{AppState, Settings};
