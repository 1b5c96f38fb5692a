//! Compiled policies, rebuilt only when their stored version (or, for
//! attestation policies, the reference values) change. Each request costs
//! one cheap version lookup in the store, so a policy set through any replica
//! takes effect on all of them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::json;
use ward_policy::Policy;
use ward_proto::ResourcePath;
use ward_store::{PolicyKind, Store};
use ward_verifier::{default_attestation_policy, reference_data, ATTESTATION_PACKAGE};

use crate::error::ApiError;

pub const DEFAULT_RESOURCE_POLICY: &str = include_str!("policies/resource-default.rego");
pub const DEV_RESOURCE_POLICY: &str = include_str!("policies/resource-dev.rego");
/// Id of the resource policy set through `POST /resource-policy`.
pub const RESOURCE_POLICY_ID: &str = "default";
/// Package of resource policies.
pub const RESOURCE_PACKAGE: &str = "policy";
/// Resource paths whose prepared policy is kept.
const PER_PATH_MAX: usize = 4096;

/// Which stored policy a compiled one came from: (id, version), or the
/// built-in default.
type Source = Option<(String, i64)>;

pub struct PolicyCache {
    dev: bool,
    resource: RwLock<Option<(Option<i64>, Arc<Policy>)>>,
    /// The resource policy with each path's request data loaded and the
    /// engine prepared, keyed by path, for the version in `resource`.
    per_path: Mutex<(i64, HashMap<String, Arc<Policy>>)>,
    attestation: Mutex<HashMap<String, ((Source, i64), Arc<Policy>)>>,
}

fn compiled(id: &str, text: &str, package: &str) -> Result<Policy, ApiError> {
    // Stored policies were compiled when they were set; a failure here means
    // the store holds something this build cannot compile.
    Policy::compile(id, text, package).map_err(|e| ApiError::internal(format!("stored policy: {e}")))
}

impl PolicyCache {
    pub fn new(dev: bool) -> Self {
        Self {
            dev,
            resource: RwLock::new(None),
            per_path: Mutex::new((-1, HashMap::new())),
            attestation: Mutex::new(HashMap::new()),
        }
    }

    /// The built-in resource policy in force when none is stored.
    pub fn builtin_resource_policy(&self) -> &'static str {
        if self.dev {
            DEV_RESOURCE_POLICY
        } else {
            DEFAULT_RESOURCE_POLICY
        }
    }

    /// The resource policy in force and a key that changes with it.
    pub fn resource(&self, store: &dyn Store) -> Result<(Arc<Policy>, i64), ApiError> {
        let version = store.policy_version(PolicyKind::Resource, RESOURCE_POLICY_ID)?;
        if let Some((v, p)) = &*self.resource.read().unwrap_or_else(|e| e.into_inner()) {
            if *v == version {
                return Ok((p.clone(), version.unwrap_or(0)));
            }
        }
        let policy = match store.get_policy(PolicyKind::Resource, RESOURCE_POLICY_ID)? {
            Some(sp) => compiled("resource-policy", &sp.text, RESOURCE_PACKAGE)?,
            None => compiled("resource-policy-builtin", self.builtin_resource_policy(), RESOURCE_PACKAGE)?,
        };
        let policy = Arc::new(policy);
        // Re-read the version: a write between the two reads must not be
        // cached under the older version.
        let version = store.policy_version(PolicyKind::Resource, RESOURCE_POLICY_ID)?;
        *self.resource.write().unwrap_or_else(|e| e.into_inner()) = Some((version, policy.clone()));
        Ok((policy, version.unwrap_or(0)))
    }

    /// The resource policy in force with the request data of `path` loaded
    /// (`data.plugin`, `data["resource-path"]`, `data.query`), as the
    /// reference server passes it; and the policy version.
    pub fn resource_for_path(&self, store: &dyn Store, path: &ResourcePath) -> Result<(Arc<Policy>, i64), ApiError> {
        let (base, version) = self.resource(store)?;
        let key = path.to_string();
        {
            let cache = self.per_path.lock().unwrap_or_else(|e| e.into_inner());
            if cache.0 == version {
                if let Some(p) = cache.1.get(&key) {
                    return Ok((p.clone(), version));
                }
            }
        }
        let data = json!({"plugin": "resource", "resource-path": path.segments(), "query": {}});
        let p = Arc::new(base.with_data(&data).map_err(|e| ApiError::internal(format!("resource policy: {e}")))?);
        let mut cache = self.per_path.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != version || cache.1.len() >= PER_PATH_MAX {
            *cache = (version, HashMap::new());
        }
        cache.1.insert(key, p.clone());
        Ok((p, version))
    }

    /// The attestation policy for `tee`: a stored policy with the TEE's name,
    /// else the stored `default`, else the built-in default of the TEE; with
    /// the current reference values loaded as `data.reference`.
    pub fn attestation(&self, store: &dyn Store, tee: &str, now: i64) -> Result<Arc<Policy>, ApiError> {
        let source: Source = match store.policy_version(PolicyKind::Attestation, tee)? {
            Some(v) => Some((tee.to_string(), v)),
            None => store.policy_version(PolicyKind::Attestation, "default")?.map(|v| ("default".to_string(), v)),
        };
        let rv_gen = store.reference_values_generation()?;
        let key = (source.clone(), rv_gen);
        if let Some((k, p)) = self.attestation.lock().unwrap_or_else(|e| e.into_inner()).get(tee) {
            if *k == key {
                return Ok(p.clone());
            }
        }
        let base = match &source {
            Some((id, _)) => {
                let sp = store
                    .get_policy(PolicyKind::Attestation, id)?
                    .ok_or_else(|| ApiError::internal("attestation policy vanished while loading"))?;
                compiled(id, &sp.text, ATTESTATION_PACKAGE)?
            }
            None => {
                let text = default_attestation_policy(tee).ok_or_else(|| {
                    ApiError::internal(format!("no attestation policy for TEE {tee:?} (set one with ward admin)"))
                })?;
                compiled("default", text, ATTESTATION_PACKAGE)?
            }
        };
        let mut values = std::collections::BTreeMap::new();
        for rv in store.list_reference_values()? {
            if rv.expires_at.is_none_or(|e| e > now) {
                values.insert(rv.name, rv.values);
            }
        }
        let policy = Arc::new(
            base.with_data(&reference_data(&values)).map_err(|e| ApiError::internal(format!("reference values: {e}")))?,
        );
        self.attestation.lock().unwrap_or_else(|e| e.into_inner()).insert(tee.to_string(), (key, policy.clone()));
        Ok(policy)
    }
}
