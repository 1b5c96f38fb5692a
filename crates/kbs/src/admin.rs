//! Admin operations on the core: resources, policies, reference values,
//! key rotation and collateral. Each validates its input and owns its store
//! access; policies are compiled before they are stored, so a broken policy
//! is refused and the one in force stays. The HTTP handlers
//! (`http/admin.rs`) only authorise, extract and answer.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use ward_policy::Policy;
use ward_proto::ResourcePath;
use ward_store::{AuditEvent, Change, PolicyKind, ReferenceValue};

use crate::error::ApiError;
use crate::keys::KeyError;
use crate::policy_cache::{PREFIX_ID, RESOURCE_PACKAGE, RESOURCE_POLICY_ID};
use crate::state::AppState;

/// Why an admin request was refused (authorisation aside).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A policy that is not base64url or not UTF-8 text.
    #[error("{0}")]
    Encoding(&'static str),
    /// A policy that does not compile or lacks a rule it must have.
    #[error("{0}")]
    Policy(String),
    #[error("policy type {0:?} is not supported (rego)")]
    PolicyType(String),
    #[error("{0}")]
    Prefix(String),
    #[error("id must be 1-64 characters of [A-Za-z0-9._-]")]
    Id,
    #[error("unknown key ring {0:?}")]
    UnknownRing(String),
    #[error("{0}")]
    ReferenceValue(String),
    #[error("{0}")]
    Collateral(String),
    #[error("no {kind} policy with {key} {value:?}")]
    NoPolicy {
        kind: &'static str,
        key: &'static str,
        value: String,
    },
    #[error("reference value {0:?} does not exist")]
    NoReferenceValue(String),
    #[error("resource {0} does not exist")]
    NoResource(String),
    /// An audit read outside the log (an index past its end, a size
    /// larger than it, a range the wrong way round).
    #[error("{0}")]
    AuditRange(String),
}

/// The body of `POST /kbs/v0/resource-policy`.
#[derive(Deserialize)]
pub struct ResourcePolicyBody {
    policy: String,
    /// ward extension: bind the policy to a resource-path prefix
    /// (`repo`, `repo/type` or `repo/type/tag`) instead of setting the
    /// default one.
    #[serde(default)]
    prefix: Option<String>,
}

/// The body of `POST /kbs/v0/attestation-policy`.
#[derive(Deserialize)]
pub struct AttestationPolicyBody {
    policy_id: String,
    policy: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// The body of `POST /kbs/v0/admin/rotate-key`.
#[derive(Deserialize)]
pub struct RotateBody {
    ring: String,
}

/// A policy named for answers: `("prefix", "repo/type")`,
/// `("policy_id", "default")`.
type Name<'a> = (&'static str, &'a str);

/// Policies travel base64url (the reference client) — accept padded,
/// unpadded and standard alphabets.
fn decode_policy(s: &str) -> Result<String, AdminError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| STANDARD.decode(s))
        .map_err(|_| AdminError::Encoding("policy is not base64url"))?;
    String::from_utf8(bytes).map_err(|_| AdminError::Encoding("policy is not UTF-8 text"))
}

/// A resource policy is accepted only if it compiles, every call resolves
/// (so it cannot fail later for lack of a function) and it declares `allow`.
fn compile_check(id: &str, text: &str, package: &str) -> Result<(), AdminError> {
    let p = Policy::compile(id, text, package).map_err(|e| AdminError::Policy(e.to_string()))?;
    if !p.declares("allow") {
        let e = ward_policy::PolicyError::MissingRule {
            id: id.into(),
            expected: "the rule allow".into(),
        };
        return Err(AdminError::Policy(e.to_string()));
    }
    Ok(())
}

/// The store id of the resource policy bound to `prefix` (validated).
pub fn prefix_id(prefix: &str) -> Result<String, AdminError> {
    let p = ward_proto::resource::parse_prefix(prefix)
        .map_err(|e| AdminError::Prefix(e.to_string()))?;
    Ok(format!("{PREFIX_ID}{p}"))
}

fn valid_id(id: &str) -> Result<(), AdminError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    ok.then_some(()).ok_or(AdminError::Id)
}

fn no_policy(kind: PolicyKind, (key, value): Name<'_>) -> AdminError {
    AdminError::NoPolicy {
        kind: kind.as_str(),
        key,
        value: value.to_string(),
    }
}

/// Reference values arrive either in ward's form
/// `{"name": "...", "values": [...], "expires_at"?: unix}` or as a CoCo RVPS
/// sample message `{"version": "0.1.0", "type": "sample", "payload":
/// "<base64 of {name: [values]}>"}` (optionally wrapped as
/// `{"message": "<that JSON as a string>"}`), which may hold several names.
fn parse_reference_values(v: Value) -> Result<Vec<ReferenceValue>, AdminError> {
    let bad = AdminError::ReferenceValue;
    if let Some(msg) = v.get("message").and_then(Value::as_str) {
        let inner: Value = serde_json::from_str(msg).map_err(|e| bad(format!("message: {e}")))?;
        return parse_reference_values(inner);
    }
    if let Some(payload) = v.get("payload").and_then(Value::as_str) {
        if v.get("type").and_then(Value::as_str) != Some("sample") {
            return Err(bad(
                "only RVPS messages of type \"sample\" are supported".into()
            ));
        }
        let raw = STANDARD
            .decode(payload)
            .or_else(|_| URL_SAFE_NO_PAD.decode(payload))
            .map_err(|_| bad("payload is not base64".into()))?;
        let map: std::collections::BTreeMap<String, Value> =
            serde_json::from_slice(&raw).map_err(|e| bad(format!("payload: {e}")))?;
        return map
            .into_iter()
            .map(|(name, vals)| {
                let (values, single) = match vals {
                    Value::Array(a) => (a, false),
                    other => (vec![other], true),
                };
                valid_id(&name)?;
                Ok(ReferenceValue {
                    name,
                    values,
                    single,
                    expires_at: None,
                    version: 0,
                    updated_at: 0,
                })
            })
            .collect();
    }
    let rv: ReferenceValue =
        serde_json::from_value(v).map_err(|e| bad(format!("reference value: {e}")))?;
    valid_id(&rv.name)?;
    Ok(vec![rv])
}

fn json_of(v: impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

impl AppState {
    pub fn put_resource(
        &self,
        ev: AuditEvent,
        path: &ResourcePath,
        data: &[u8],
    ) -> Result<Value, ApiError> {
        let path = path.to_string();
        let change = Change::PutResource { path: &path, data };
        let ev = ev.with("object", format!("resource {path}"));
        let meta = self
            .store()
            .apply(change, self.now(), Some(&ev))?
            .resource()?;
        json_of(meta)
    }

    pub fn delete_resource(&self, ev: AuditEvent, path: &ResourcePath) -> Result<Value, ApiError> {
        let p = path.to_string();
        let ev = ev.with("object", format!("resource {p}"));
        let change = Change::DeleteResource { path: &p };
        if !self.store().apply(change, self.now(), Some(&ev))?.done() {
            return Err(AdminError::NoResource(path.to_string()).into());
        }
        Ok(json!({"deleted": path.to_string()}))
    }

    pub fn list_resources(&self) -> Result<Value, ApiError> {
        json_of(self.store().list_resources()?)
    }

    pub fn resource_metadata(&self, path: &ResourcePath) -> Result<Value, ApiError> {
        let meta = self.store().resource_meta(&path.to_string())?;
        json_of(meta.ok_or_else(|| AdminError::NoResource(path.to_string()))?)
    }

    /// Set the default resource policy, or the one bound to a prefix.
    pub fn set_resource_policy(
        &self,
        ev: AuditEvent,
        req: &ResourcePolicyBody,
    ) -> Result<Value, ApiError> {
        let id = match &req.prefix {
            Some(p) => prefix_id(p)?,
            None => RESOURCE_POLICY_ID.to_string(),
        };
        let text = decode_policy(&req.policy)?;
        compile_check("resource-policy", &text, RESOURCE_PACKAGE)?;
        let sp = self.put_policy(ev, PolicyKind::Resource, &id, &text)?;
        let mut body = json!({"version": sp.version});
        if let Some(p) = id.strip_prefix(PREFIX_ID) {
            body["prefix"] = json!(p);
        }
        Ok(body)
    }

    /// The default resource policy: the stored one, else the built-in.
    pub fn resource_policy(&self) -> Result<Value, ApiError> {
        let stored = self
            .store()
            .get_policy(PolicyKind::Resource, RESOURCE_POLICY_ID)?;
        Ok(match stored {
            Some(sp) => {
                json!({"policy": URL_SAFE_NO_PAD.encode(&sp.text), "version": sp.version, "builtin": false})
            }
            None => json!({
                "policy": URL_SAFE_NO_PAD.encode(self.0.policies.builtin_resource_policy()),
                "version": 0,
                "builtin": true,
            }),
        })
    }

    /// The stored policy of `kind` with `id`: its text (base64url), its
    /// version and its name.
    fn policy_answer(&self, kind: PolicyKind, id: &str, name: Name<'_>) -> Result<Value, ApiError> {
        let sp = self
            .store()
            .get_policy(kind, id)?
            .ok_or_else(|| no_policy(kind, name))?;
        let mut body = json!({"policy": URL_SAFE_NO_PAD.encode(&sp.text), "version": sp.version});
        body[name.0] = json!(name.1);
        Ok(body)
    }

    fn put_policy(
        &self,
        ev: AuditEvent,
        kind: PolicyKind,
        id: &str,
        text: &str,
    ) -> Result<ward_store::StoredPolicy, ApiError> {
        let ev = ev.with("object", format!("{} policy {id}", kind.as_str()));
        let change = Change::PutPolicy { kind, id, text };
        Ok(self
            .store()
            .apply(change, self.now(), Some(&ev))?
            .policy()?)
    }

    fn delete_policy(
        &self,
        ev: AuditEvent,
        kind: PolicyKind,
        id: &str,
        name: Name<'_>,
    ) -> Result<Value, ApiError> {
        let ev = ev.with("object", format!("{} policy {id}", kind.as_str()));
        let change = Change::DeletePolicy { kind, id };
        if !self.store().apply(change, self.now(), Some(&ev))?.done() {
            return Err(no_policy(kind, name).into());
        }
        Ok(json!({"deleted": name.1}))
    }

    /// The resource policy bound to `prefix`.
    pub fn prefix_policy(&self, prefix: &str) -> Result<Value, ApiError> {
        let id = prefix_id(prefix)?;
        let name = ("prefix", id.strip_prefix(PREFIX_ID).unwrap_or(&id));
        self.policy_answer(PolicyKind::Resource, &id, name)
    }

    /// Unbind a prefix: its paths fall back to a shorter prefix's policy or
    /// the default one.
    pub fn delete_prefix_policy(&self, ev: AuditEvent, prefix: &str) -> Result<Value, ApiError> {
        let id = prefix_id(prefix)?;
        let name = ("prefix", id.strip_prefix(PREFIX_ID).unwrap_or(&id));
        self.delete_policy(ev, PolicyKind::Resource, &id, name)
    }

    /// The stored resource policies (`prefix` null for the default one).
    pub fn list_resource_policies(&self) -> Result<Value, ApiError> {
        let list: Vec<Value> = self
            .store()
            .list_policies(PolicyKind::Resource)?
            .into_iter()
            .map(|p| {
                let prefix = p.id.strip_prefix(PREFIX_ID).map(str::to_string);
                json!({"prefix": prefix, "version": p.version, "updated_at": p.updated_at})
            })
            .collect();
        Ok(Value::Array(list))
    }

    /// Store an attestation policy once it compiles with every function it
    /// calls provided.
    pub fn set_attestation_policy(
        &self,
        ev: AuditEvent,
        req: &AttestationPolicyBody,
    ) -> Result<Value, ApiError> {
        valid_id(&req.policy_id)?;
        if let Some(k) = req.kind.as_deref() {
            if !k.eq_ignore_ascii_case("rego") {
                return Err(AdminError::PolicyType(k.to_string()).into());
            }
        }
        let text = decode_policy(&req.policy)?;
        ward_verifier::compile_attestation_policy(&req.policy_id, &text)
            .map_err(|e| AdminError::Policy(e.to_string()))?;
        let sp = self.put_policy(ev, PolicyKind::Attestation, &req.policy_id, &text)?;
        Ok(json!({"policy_id": sp.id, "version": sp.version}))
    }

    pub fn attestation_policy(&self, id: &str) -> Result<Value, ApiError> {
        self.policy_answer(PolicyKind::Attestation, id, ("policy_id", id))
    }

    pub fn delete_attestation_policy(&self, ev: AuditEvent, id: &str) -> Result<Value, ApiError> {
        self.delete_policy(ev, PolicyKind::Attestation, id, ("policy_id", id))
    }

    pub fn list_attestation_policies(&self) -> Result<Value, ApiError> {
        let list: Vec<Value> = self
            .store()
            .list_policies(PolicyKind::Attestation)?
            .into_iter()
            .map(|p| json!({"policy_id": p.id, "version": p.version, "updated_at": p.updated_at}))
            .collect();
        Ok(Value::Array(list))
    }

    /// Store reference values in ward's form or as an RVPS sample message.
    pub fn set_reference_values(&self, ev: AuditEvent, body: Value) -> Result<Value, ApiError> {
        let now = self.now();
        let mut out = Vec::new();
        for rv in parse_reference_values(body)? {
            let ev = ev
                .clone()
                .with("object", format!("reference value {}", rv.name));
            let change = Change::PutReferenceValue(&rv);
            out.push(
                self.store()
                    .apply(change, now, Some(&ev))?
                    .reference_value()?,
            );
        }
        json_of(out)
    }

    pub fn reference_value(&self, name: &str) -> Result<Value, ApiError> {
        let rv = self.store().get_reference_value(name)?;
        json_of(rv.ok_or_else(|| AdminError::NoReferenceValue(name.to_string()))?)
    }

    pub fn delete_reference_value(&self, ev: AuditEvent, name: &str) -> Result<Value, ApiError> {
        let ev = ev.with("object", format!("reference value {name}"));
        let change = Change::DeleteReferenceValue { name };
        if !self.store().apply(change, self.now(), Some(&ev))?.done() {
            return Err(AdminError::NoReferenceValue(name.to_string()).into());
        }
        Ok(json!({"deleted": name}))
    }

    pub fn list_reference_values(&self) -> Result<Value, ApiError> {
        json_of(self.store().list_reference_values()?)
    }

    /// Add a key to a ring and retire all but the newest two.
    pub fn rotate_key(&self, ev: AuditEvent, req: &RotateBody) -> Result<Value, ApiError> {
        self.0
            .keys
            .rotate(&req.ring, self.now(), Some(ev))
            .map_err(|e| match e {
                KeyError::UnknownRing(r) => AdminError::UnknownRing(r).into(),
                other => ApiError::from(other),
            })?;
        Ok(json!({"rotated": req.ring}))
    }

    /// Store Intel collateral (flat JSON form) for its FMSPC. Parsed here;
    /// its signatures are checked whenever it is used.
    pub fn import_collateral(&self, ev: AuditEvent, body: &[u8]) -> Result<Value, ApiError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| crate::http::extract::RequestError::json("collateral is not UTF-8"))?;
        let key = ward_collateral::DcapCollateralDir::import_flat_json(
            self.store().as_ref(),
            text,
            self.now(),
        )
        .map_err(|e| AdminError::Collateral(e.to_string()))?;
        // Collateral is public and signed by Intel, and verified whenever it
        // is used: its import is recorded after it is stored, not with it.
        let ev = ev
            .with(
                "object",
                format!("collateral {}/{key}", ward_collateral::DCAP_KIND),
            )
            .with("new_sha256", ward_store::audit::sha256_hex(body));
        self.store().append_audit(&[ev], self.now())?;
        Ok(json!({"kind": ward_collateral::DCAP_KIND, "key": key}))
    }

    /// What the store holds of fetched or imported collateral.
    pub fn list_collateral(&self) -> Result<Value, ApiError> {
        let mut out = Vec::new();
        for kind in [ward_collateral::DCAP_KIND, ward_collateral::VCEK_KIND] {
            for c in self.store().list_collateral(kind)? {
                out.push(json!({"kind": kind, "key": c.key, "fetched_at": c.fetched_at}));
            }
        }
        Ok(Value::Array(out))
    }
}
