//! OCI images as the policy generator needs them: which manifest a
//! reference names (an index or Docker manifest list resolved for one
//! platform), the image's configuration (Env, Entrypoint, Cmd, WorkingDir,
//! User), and its `/etc/passwd` and `/etc/group` read through the layers
//! with whiteouts honoured. Every blob is checked against its digest and
//! size before it is used.
//!
//! Sources: an OCI image layout directory ([`layout`]) and registries
//! speaking the OCI distribution API ([`registry`]).

pub mod archive;
pub mod blob;
pub mod cache;
pub mod layers;
pub mod layout;
pub mod reference;
pub mod registry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verity;

pub use blob::{BlobError, Digest};
pub use cache::LayerCache;
pub use layers::UserDatabases;
pub use layout::{ImageError, ImageMeta, Layout, Platform};
pub use reference::Reference;
