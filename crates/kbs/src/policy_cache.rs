//! Compiled policies, rebuilt only when the store's policy (or
//! reference-value) generation changes. Callers read the generations once
//! per request (one cheap query), so a policy set through any replica takes
//! effect on all of them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use ward_policy::Policy;
use ward_proto::ResourcePath;
use ward_store::{Generations, PolicyKind, Store};
use ward_verifier::{compile_attestation_policy, default_attestation_policy, reference_data};

/// Why the policy in force could not be loaded (stored policies were
/// validated when they were set: this is the store or this build at fault).
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("stored policy: {0}")]
    Stored(String),
    /// A stored resource policy that does not compile decides this path.
    #[error("{0}")]
    Broken(String),
    #[error("built-in policy: {0}")]
    Builtin(String),
    #[error("no attestation policy for TEE {0:?} (set one with ward admin)")]
    NoPolicy(String),
    #[error("resource policy: {0}")]
    Data(String),
    #[error("reference values: {0}")]
    ReferenceValues(String),
    #[error("store: {0}")]
    Store(#[from] ward_store::StoreError),
}

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

/// A stored policy compiled, or why it does not compile (a stored policy
/// was compiled when it was set, so this build cannot compile what another
/// wrote). Only the paths such a policy decides are refused.
type Compiled = Result<Arc<Policy>, String>;

/// The resource policies of one policy generation, compiled.
struct LoadedResourcePolicies {
    /// For paths no prefix policy covers: the stored default, else built in.
    base: Compiled,
    /// By prefix (`repo`, `repo/type`, `repo/type/tag`).
    prefixed: HashMap<String, Compiled>,
    /// Each stored policy's text and compilation by store id, reused at the
    /// next generation for the policies whose text has not changed.
    by_id: HashMap<String, (String, Compiled)>,
}

struct ResourcePolicies {
    generation: i64,
    loaded: Option<Arc<LoadedResourcePolicies>>,
    /// The policy deciding each path, with its request data loaded and
    /// prepared.
    per_path: quick_cache::unsync::Cache<String, Arc<Policy>>,
}

/// Compiled attestation policies by TEE, with the (policies,
/// reference-values) generations they were built at and the time the
/// first loaded reference value expires.
type AttestationPolicies = HashMap<String, ((i64, i64), i64, Arc<Policy>)>;

pub struct PolicyCache {
    dev: bool,
    /// The built-in resource policy, compiled on first use.
    builtin: OnceLock<Arc<Policy>>,
    resource: Mutex<ResourcePolicies>,
    attestation: Mutex<AttestationPolicies>,
}

fn compiled(id: &str, text: &str, package: &str) -> Result<Policy, PolicyLoadError> {
    // Stored policies were compiled when they were set; a failure here means
    // the store holds something this build cannot compile.
    Policy::compile(id, text, package).map_err(|e| PolicyLoadError::Stored(e.to_string()))
}

impl PolicyCache {
    pub fn new(dev: bool) -> Self {
        Self {
            dev,
            builtin: OnceLock::new(),
            resource: Mutex::new(ResourcePolicies {
                generation: -1,
                loaded: None,
                per_path: quick_cache::unsync::Cache::new(PER_PATH_MAX),
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

    /// Every stored resource policy, compiled; those whose text is the same
    /// in `previous` (an earlier generation) are not compiled again.
    fn load_resource(
        &self,
        store: &dyn Store,
        previous: Option<&LoadedResourcePolicies>,
    ) -> Result<LoadedResourcePolicies, PolicyLoadError> {
        let mut base = None;
        let mut prefixed = HashMap::new();
        let mut by_id = HashMap::new();
        for sp in store.list_policies(PolicyKind::Resource)? {
            let reused = previous
                .and_then(|p| p.by_id.get(&sp.id))
                .filter(|(text, _)| *text == sp.text)
                .map(|(_, c)| c.clone());
            let c = reused.unwrap_or_else(|| {
                let name = if sp.id == RESOURCE_POLICY_ID {
                    "resource-policy"
                } else {
                    sp.id.as_str()
                };
                Policy::compile(name, &sp.text, RESOURCE_PACKAGE)
                    .map(Arc::new)
                    .map_err(|e| format!("stored resource policy {:?}: {e}", sp.id))
            });
            if let Err(e) = &c {
                tracing::error!(error = %e, "a stored resource policy does not compile; the paths it decides are refused");
            }
            if sp.id == RESOURCE_POLICY_ID {
                base = Some(c.clone());
            } else if let Some(prefix) = sp.id.strip_prefix(PREFIX_ID) {
                prefixed.insert(prefix.to_string(), c.clone());
            }
            by_id.insert(sp.id, (sp.text, c));
        }
        let base = match base {
            Some(b) => b,
            None => Ok(self.builtin_resource()?),
        };
        Ok(LoadedResourcePolicies {
            base,
            prefixed,
            by_id,
        })
    }

    fn builtin_resource(&self) -> Result<Arc<Policy>, PolicyLoadError> {
        if let Some(p) = self.builtin.get() {
            return Ok(p.clone());
        }
        let p = Arc::new(compiled(
            "resource-policy-builtin",
            self.builtin_resource_policy(),
            RESOURCE_PACKAGE,
        )?);
        Ok(self.builtin.get_or_init(|| p).clone())
    }

    /// The resource policy deciding `path` — bound to its longest prefix
    /// (`repo/type/tag`, `repo/type`, `repo`), else the default one — with
    /// the request data of `path` loaded (`data.plugin`,
    /// `data["resource-path"]`, `data.query`) as the reference server passes
    /// it. A path decided by a stored policy that does not compile is
    /// refused (an internal error); other paths are not affected.
    pub fn resource_for_path(
        &self,
        store: &dyn Store,
        gen: &Generations,
        path: &ResourcePath,
    ) -> Result<Arc<Policy>, PolicyLoadError> {
        let key = path.to_string();
        let (current, previous) = {
            let cache = self.resource.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation == gen.policies {
                if let Some(p) = cache.per_path.get(&key) {
                    return Ok(p.clone());
                }
                (cache.loaded.clone(), None)
            } else {
                (None, cache.loaded.clone())
            }
        };
        let loaded = match current {
            Some(l) => l,
            None => {
                let l = Arc::new(self.load_resource(store, previous.as_deref())?);
                // Kept at once, so that a refused path does not reload it.
                let mut cache = self.resource.lock().unwrap_or_else(|e| e.into_inner());
                if cache.generation != gen.policies {
                    *cache = ResourcePolicies {
                        generation: gen.policies,
                        loaded: Some(l.clone()),
                        per_path: quick_cache::unsync::Cache::new(PER_PATH_MAX),
                    };
                }
                l
            }
        };
        let policy = path
            .prefixes()
            .iter()
            .find_map(|p| loaded.prefixed.get(p))
            .unwrap_or(&loaded.base)
            .as_ref()
            .map_err(|e| PolicyLoadError::Broken(e.clone()))?;
        let data = json!({"plugin": "resource", "resource-path": path.segments(), "query": {}});
        let p = Arc::new(
            policy
                .with_data(&data)
                .map_err(|e| PolicyLoadError::Data(e.to_string()))?,
        );
        // Remembered only under the generation it was loaded for (installed
        // above); another generation installed since is left alone.
        let mut cache = self.resource.lock().unwrap_or_else(|e| e.into_inner());
        if cache.generation == gen.policies {
            cache.per_path.insert(key, p.clone());
        }
        Ok(p)
    }

    /// The attestation policy for `tee`: a stored policy with the TEE's name,
    /// else one stored as `default_cpu` (Trustee's `<id>_<class>` convention;
    /// every TEE ward verifies is of the cpu class), else the stored
    /// `default`, else the built-in default of the TEE; with
    /// the reference values (unexpired as of `now`) loaded as `data.reference`.
    pub fn attestation(
        &self,
        store: &dyn Store,
        gen: &Generations,
        tee: &str,
        now: i64,
    ) -> Result<Arc<Policy>, PolicyLoadError> {
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
        // The TEE's own, then Trustee's id for the cpu class (what kbs-client
        // uploads by default), then ward's `default`, then the built-in.
        let mut stored = None;
        for id in [tee, "default_cpu", "default"] {
            stored = store.get_policy(PolicyKind::Attestation, id)?;
            if stored.is_some() {
                break;
            }
        }
        let base = match &stored {
            Some(sp) => compile_attestation_policy(&sp.id, &sp.text)
                .map_err(|e| PolicyLoadError::Stored(e.to_string()))?,
            None => {
                let text = default_attestation_policy(tee)
                    .ok_or_else(|| PolicyLoadError::NoPolicy(tee.to_string()))?;
                compile_attestation_policy("default", text)
                    .map_err(|e| PolicyLoadError::Builtin(e.to_string()))?
            }
        };
        let mut values = std::collections::BTreeMap::new();
        let mut until = i64::MAX;
        for rv in store.list_reference_values()? {
            if rv.expires_at.is_none_or(|e| e > now) {
                until = until.min(rv.expires_at.unwrap_or(i64::MAX));
                let stored = match rv.values.as_slice() {
                    [one] if rv.single => one.clone(),
                    _ => serde_json::Value::Array(rv.values),
                };
                values.insert(rv.name, stored);
            }
        }
        let policy = Arc::new(
            base.with_data(&reference_data(&values))
                .map_err(|e| PolicyLoadError::ReferenceValues(e.to_string()))?,
        );
        self.attestation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tee.to_string(), (key, until, policy.clone()));
        Ok(policy)
    }
}
