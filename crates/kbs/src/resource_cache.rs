//! Decrypted resources, cached by path while the store's resource
//! generation is unchanged.

use std::sync::Arc;

use ward_proto::ResourcePath;
use ward_store::{Generations, Store};
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::state::ResourceError;

/// Decrypted resources (with their versions) by path, each valid while the store's resource
/// generation is the one it was read at (any resource write, here or in
/// another replica, changes it). Spares the store read and the envelope
/// decryption on every first fetch of a token. The key-encryption key is in
/// this process's memory anyway; cached plaintext is zeroed when dropped.
pub(crate) struct ResourceCache {
    map: quick_cache::sync::Cache<String, (i64, i64, Plaintext)>,
}

impl Default for ResourceCache {
    fn default() -> Self {
        Self {
            map: quick_cache::sync::Cache::new(RESOURCE_CACHE_MAX),
        }
    }
}

/// A decrypted resource, zeroed when the last reference goes.
type Plaintext = Arc<Zeroizing<Vec<u8>>>;

/// Resources cached at most, and the largest one cached.
const RESOURCE_CACHE_MAX: usize = 1024;
const RESOURCE_CACHE_MAX_BYTES: usize = 64 * 1024;

impl ResourceCache {
    pub(crate) fn get(
        &self,
        store: &dyn Store,
        path: &ResourcePath,
        gen: &Generations,
    ) -> Result<(i64, Plaintext), ApiError> {
        let path = path.to_string();
        let path = path.as_str();
        if let Some((g, version, data)) = self.map.get(path) {
            if g == gen.resources {
                return Ok((version, data));
            }
        }
        let Some(resource) = store.get_resource(path)? else {
            // Deleted: do not keep its old plaintext around.
            self.map.remove(path);
            return Err(ResourceError::NotFound(path.to_string()).into());
        };
        let version = resource.meta.version;
        let data = Arc::new(Zeroizing::new(resource.data));
        if data.len() <= RESOURCE_CACHE_MAX_BYTES {
            self.map
                .insert(path.to_string(), (gen.resources, version, data.clone()));
        }
        Ok((version, data))
    }
}
