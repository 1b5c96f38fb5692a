//! Compiled policies, rebuilt only when the store's policy (or
//! reference-value) generation changes. Callers read the generations once
//! per request (one cheap query), so a policy set through any replica takes
//! effect on all of them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use ward_policy::Policy;
use ward_proto::ResourcePath;
use ward_store::{Generations, PolicyKind, Store};
use ward_verifier::{default_attestation_policy, reference_data, ATTESTATION_PACKAGE};

use crate::error::ApiError;

pub const DEFAULT_RESOURCE_POLICY: &str = include_str!("policies/resource-default.rego");
pub const DEV_RESOURCE_POLICY: &str = include_str!("policies/resource-dev.rego");
/// Id of the resource policy set through `POST /resource-policy`.
pub const RESOURCE_POLICY_ID: &str = "default";
/// Store ids of resource policies bound to a path prefix start with this,
/// followed by the prefix (`prefix:repo/type`); no prefix can spell
/// [`RESOURCE_POLICY_ID`].
pub const PREFIX_ID: &str = "prefix:";
/// Package of resource policies.
pub const RESOURCE_PACKAGE: &str = "policy";
/// Resource paths whose prepared policy is kept.
const PER_PATH_MAX: usize = 4096;

/// The resource policies of one policy generation, compiled.
struct LoadedResourcePolicies {
    /// For paths no prefix policy covers: the stored default, else built in.
    base: Arc<Policy>,
    /// By prefix (`repo`, `repo/type`, `repo/type/tag`).
    prefixed: HashMap<String, Arc<Policy>>,
}

struct ResourcePolicies {
    generation: i64,
    loaded: Option<Arc<LoadedResourcePolicies>>,
    /// The policy deciding each path, with its request data loaded and
    /// prepared.
    per_path: HashMap<String, Arc<Policy>>,
}

/// Compiled attestation policies by TEE, with the (policies,
/// reference-values) generations they were built at and the time the
/// first loaded reference value expires.
type AttestationPolicies = HashMap<String, ((i64, i64), i64, Arc<Policy>)>;

pub struct PolicyCache {
    dev: bool,
    resource: Mutex<ResourcePolicies>,
    attestation: Mutex<AttestationPolicies>,
}

fn compiled(id: &str, text: &str, package: &str) -> Result<Policy, ApiError> {
    // Stored policies were compiled when they were set; a failure here means
    // the store holds something this build cannot compile.
    Policy::compile(id, text, package)
        .map_err(|e| ApiError::internal(format!("stored policy: {e}")))
}

impl PolicyCache {
    pub fn new(dev: bool) -> Self {
        Self {
            dev,
            resource: Mutex::new(ResourcePolicies {
                generation: -1,
                loaded: None,
                per_path: HashMap::new(),
            }),
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

    /// Every stored resource policy, compiled.
    fn load_resource(&self, store: &dyn Store) -> Result<LoadedResourcePolicies, ApiError> {
        let mut base = None;
        let mut prefixed = HashMap::new();
        for sp in store.list_policies(PolicyKind::Resource)? {
            if sp.id == RESOURCE_POLICY_ID {
                base = Some(compiled("resource-policy", &sp.text, RESOURCE_PACKAGE)?);
            } else if let Some(prefix) = sp.id.strip_prefix(PREFIX_ID) {
                let p = compiled(&sp.id, &sp.text, RESOURCE_PACKAGE)?;
                prefixed.insert(prefix.to_string(), Arc::new(p));
            }
        }
        let base = match base {
            Some(b) => b,
            None => compiled(
                "resource-policy-builtin",
                self.builtin_resource_policy(),
                RESOURCE_PACKAGE,
            )?,
        };
        Ok(LoadedResourcePolicies {
            base: Arc::new(base),
            prefixed,
        })
    }

    /// The resource policy deciding `path` — bound to its longest prefix
    /// (`repo/type/tag`, `repo/type`, `repo`), else the default one — with
    /// the request data of `path` loaded (`data.plugin`,
    /// `data["resource-path"]`, `data.query`) as the reference server passes
    /// it.
    pub fn resource_for_path(
        &self,
        store: &dyn Store,
        gen: &Generations,
        path: &ResourcePath,
    ) -> Result<Arc<Policy>, ApiError> {
        let key = path.to_string();
        let loaded = {
            let cache = self.resource.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation == gen.policies {
                if let Some(p) = cache.per_path.get(&key) {
                    return Ok(p.clone());
                }
                cache.loaded.clone()
            } else {
                None
            }
        };
        let loaded = match loaded {
            Some(l) => l,
            None => Arc::new(self.load_resource(store)?),
        };
        let policy = path
            .prefixes()
            .iter()
            .find_map(|p| loaded.prefixed.get(p))
            .unwrap_or(&loaded.base);
        let data = json!({"plugin": "resource", "resource-path": path.segments(), "query": {}});
        let p = Arc::new(
            policy
                .with_data(&data)
                .map_err(|e| ApiError::internal(format!("resource policy: {e}")))?,
        );
        let mut cache = self.resource.lock().unwrap_or_else(|e| e.into_inner());
        if cache.generation != gen.policies || cache.per_path.len() >= PER_PATH_MAX {
            *cache = ResourcePolicies {
                generation: gen.policies,
                loaded: Some(loaded),
                per_path: HashMap::new(),
            };
        }
        cache.per_path.insert(key, p.clone());
        Ok(p)
    }

    /// The attestation policy for `tee`: a stored policy with the TEE's name,
    /// else the stored `default`, else the built-in default of the TEE; with
    /// the reference values (unexpired as of `now`) loaded as `data.reference`.
    pub fn attestation(
        &self,
        store: &dyn Store,
        gen: &Generations,
        tee: &str,
        now: i64,
    ) -> Result<Arc<Policy>, ApiError> {
        let key = (gen.policies, gen.reference_values);
        if let Some((k, until, p)) = self
            .attestation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tee)
        {
            if *k == key && now < *until {
                return Ok(p.clone());
            }
        }
        let stored = match store.get_policy(PolicyKind::Attestation, tee)? {
            Some(p) => Some(p),
            None => store.get_policy(PolicyKind::Attestation, "default")?,
        };
        let base = match &stored {
            Some(sp) => compiled(&sp.id, &sp.text, ATTESTATION_PACKAGE)?,
            None => {
                let text = default_attestation_policy(tee).ok_or_else(|| {
                    ApiError::internal(format!(
                        "no attestation policy for TEE {tee:?} (set one with ward admin)"
                    ))
                })?;
                compiled("default", text, ATTESTATION_PACKAGE)?
            }
        };
        let mut values = std::collections::BTreeMap::new();
        let mut until = i64::MAX;
        for rv in store.list_reference_values()? {
            if rv.expires_at.is_none_or(|e| e > now) {
                until = until.min(rv.expires_at.unwrap_or(i64::MAX));
                values.insert(rv.name, rv.values);
            }
        }
        let policy = Arc::new(
            base.with_data(&reference_data(&values))
                .map_err(|e| ApiError::internal(format!("reference values: {e}")))?,
        );
        self.attestation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tee.to_string(), (key, until, policy.clone()));
        Ok(policy)
    }
}
