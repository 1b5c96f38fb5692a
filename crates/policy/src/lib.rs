//! Rego policies evaluated with regorus.
//!
//! A [`Policy`] is parsed and prepared once per policy version (and, for
//! attestation policies, per reference-value version, which is loaded as
//! `data.reference`); each evaluation clones the prepared engine, sets the
//! input and evaluates a rule. Policies may be written in Rego v0 syntax (as
//! most CoCo policies are) or v1 (`import rego.v1` or the v1 keywords).
//!
//! This crate knows nothing about HTTP, storage or evidence formats.

use regorus::Engine;
use serde_json::Value;

/// Largest policy text accepted.
pub const MAX_POLICY_LEN: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy text does not compile (the operator's fault).
    #[error("policy {id:?} does not compile: {reason}")]
    Compile { id: String, reason: String },
    /// The policy is not in the package the caller requires.
    #[error("policy {id:?} must be in package {expected:?}")]
    Package { id: String, expected: String },
    /// The policy text is too large.
    #[error("policy {id:?} is larger than {MAX_POLICY_LEN} bytes")]
    TooLarge { id: String },
    /// Data given to the policy could not be loaded.
    #[error("policy {id:?}: data could not be loaded: {reason}")]
    Data { id: String, reason: String },
    /// Evaluation raised an error (a runtime error inside the policy).
    #[error("policy {id:?} failed during evaluation: {reason}")]
    Eval { id: String, reason: String },
    /// An input document is not valid JSON, or cannot be assembled.
    #[error("policy input: {reason}")]
    Input { reason: String },
    /// A rule produced a value of the wrong type.
    #[error("policy {id:?}: rule {rule} must be {expected}, got {got}")]
    Type {
        id: String,
        rule: String,
        expected: &'static str,
        got: String,
    },
}

/// An input document in the engine's own representation: converted once,
/// then evaluated by any number of policies (see [`Policy::eval_bool_input`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Input(regorus::Value);

impl Input {
    pub fn from_value(v: &Value) -> Self {
        Self(regorus::Value::from(v.clone()))
    }

    /// Parse JSON text straight into the engine's representation.
    pub fn from_json(text: &[u8]) -> Result<Self, PolicyError> {
        let invalid = |e: &dyn std::fmt::Display| PolicyError::Input {
            reason: format!("not valid JSON: {e}"),
        };
        let text = std::str::from_utf8(text).map_err(|e| invalid(&e))?;
        regorus::Value::from_json_str(text)
            .map(Self)
            .map_err(|e| invalid(&e))
    }

    /// Put `part` at `path` (object keys from the root), replacing what is
    /// there. Every object on the way must exist. Lets a large, already
    /// converted document be embedded without converting it again.
    pub fn replace(&mut self, path: &[&str], part: Input) -> Result<(), PolicyError> {
        let missing = |i: usize| PolicyError::Input {
            reason: format!("no object at /{}", path[..i].join("/")),
        };
        let Some((last, parents)) = path.split_last() else {
            *self = part;
            return Ok(());
        };
        let mut at = &mut self.0;
        for (i, key) in parents.iter().enumerate() {
            at = at
                .as_object_mut()
                .map_err(|_| missing(i))?
                .get_mut(&regorus::Value::from(*key))
                .ok_or_else(|| missing(i + 1))?;
        }
        at.as_object_mut()
            .map_err(|_| missing(parents.len()))?
            .insert(regorus::Value::from(*last), part.0);
        Ok(())
    }
}

/// A compiled policy, ready to evaluate many times.
#[derive(Clone)]
pub struct Policy {
    id: String,
    package: String,
    /// The module's source path inside the engine.
    source: String,
    engine: Engine,
    /// Memo of [`Policy::declares`], shared by clones.
    declared: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, bool>>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("id", &self.id)
            .field("package", &self.package)
            .finish()
    }
}

fn try_compile(id: &str, source: &str, v0: bool) -> Result<(Engine, String), String> {
    let mut engine = Engine::new();
    engine.set_rego_v0(v0);
    let package = engine
        .add_policy(format!("{id}.rego"), source.to_string())
        .map_err(|e| e.to_string())?;
    Ok((engine, package))
}

impl Policy {
    /// Compile `source`; it must declare `package <package>`.
    pub fn compile(id: &str, source: &str, package: &str) -> Result<Self, PolicyError> {
        if source.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLarge { id: id.into() });
        }
        // v0 mode also honours `import rego.v1`; pure v1 text without that
        // import compiles in the second attempt.
        let (engine, pkg) = match try_compile(id, source, true) {
            Ok(ok) => ok,
            Err(e0) => try_compile(id, source, false).map_err(|_| PolicyError::Compile {
                id: id.into(),
                reason: e0,
            })?,
        };
        let expected = format!("data.{package}");
        if pkg != expected {
            return Err(PolicyError::Package {
                id: id.into(),
                expected: package.into(),
            });
        }
        let mut p = Self {
            id: id.into(),
            package: package.into(),
            source: format!("{id}.rego"),
            engine,
            declared: Default::default(),
        };
        p.prepare()?;
        Ok(p)
    }

    /// Run regorus' one-time analysis now, so that clones made per
    /// evaluation start prepared (adding data resets it).
    fn prepare(&mut self) -> Result<(), PolicyError> {
        self.engine
            .eval_query("true".to_string(), false)
            .map(|_| ())
            .map_err(|e| PolicyError::Compile {
                id: self.id.clone(),
                reason: e.to_string(),
            })
    }

    /// Whether the policy declares `rule` (undeclared rules are undefined).
    pub fn declares(&self, rule: &str) -> bool {
        if let Some(d) = self
            .declared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(rule)
        {
            return *d;
        }
        let d = self
            .engine
            .has_declared_rule_rooted_at(&self.source, rule)
            .unwrap_or(false);
        self.declared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rule.to_string(), d);
        d
    }

    /// The same policy with `data` loaded (for example reference values).
    pub fn with_data(&self, data: &Value) -> Result<Self, PolicyError> {
        let mut p = self.clone();
        p.engine
            .add_data(regorus::Value::from(data.clone()))
            .map_err(|e| PolicyError::Data {
                id: self.id.clone(),
                reason: e.to_string(),
            })?;
        p.prepare()?;
        Ok(p)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn engine_with_input(&self, input: &Input) -> Engine {
        let mut e = self.engine.clone();
        e.set_input(input.0.clone());
        e
    }

    /// Evaluate the query `data.<package><suffix>`; undefined yields `None`.
    fn query(&self, input: &Value, suffix: &str) -> Result<Option<regorus::Value>, PolicyError> {
        let mut e = self.engine_with_input(&Input::from_value(input));
        let results = e
            .eval_query(format!("data.{}{suffix}", self.package), false)
            .map_err(|err| PolicyError::Eval {
                id: self.id.clone(),
                reason: err.to_string(),
            })?;
        Ok(results
            .result
            .into_iter()
            .next()
            .and_then(|r| r.expressions.into_iter().next())
            .map(|x| x.value)
            .filter(|v| *v != regorus::Value::Undefined))
    }

    fn type_error(&self, rule: &str, expected: &'static str, got: &regorus::Value) -> PolicyError {
        PolicyError::Type {
            id: self.id.clone(),
            rule: rule.into(),
            expected,
            got: got
                .to_json_str()
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect(),
        }
    }

    /// Evaluate `data.<package>.<rule>`; undefined yields `None`.
    pub fn eval_rule(&self, input: &Value, rule: &str) -> Result<Option<Value>, PolicyError> {
        let Some(v) = self.query(input, &format!(".{rule}"))? else {
            return Ok(None);
        };
        let json = v.to_json_str().map_err(|err| PolicyError::Eval {
            id: self.id.clone(),
            reason: err.to_string(),
        })?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|err| PolicyError::Eval {
                id: self.id.clone(),
                reason: err.to_string(),
            })
    }

    /// Evaluate a declared rule on a clone of the prepared engine.
    fn rule_value(&self, engine: &mut Engine, rule: &str) -> Result<regorus::Value, PolicyError> {
        engine
            .eval_rule(format!("data.{}.{rule}", self.package))
            .map_err(|err| PolicyError::Eval {
                id: self.id.clone(),
                reason: err.to_string(),
            })
    }

    /// Evaluate a boolean rule; undefined (or undeclared) counts as `false`
    /// (deny by default).
    pub fn eval_bool(&self, input: &Value, rule: &str) -> Result<bool, PolicyError> {
        self.eval_bool_input(&Input::from_value(input), rule)
    }

    /// [`Policy::eval_bool`] over an already converted input.
    pub fn eval_bool_input(&self, input: &Input, rule: &str) -> Result<bool, PolicyError> {
        if !self.declares(rule) {
            return Ok(false);
        }
        let mut e = self.engine_with_input(input);
        match self.rule_value(&mut e, rule)? {
            regorus::Value::Undefined => Ok(false),
            regorus::Value::Bool(b) => Ok(b),
            other => Err(self.type_error(rule, "a boolean", &other)),
        }
    }

    /// Evaluate several integer rules (the trust-vector claims of an
    /// attestation policy). Undeclared or undefined rules are left out.
    pub fn eval_ints(
        &self,
        input: &Value,
        rules: &[&str],
    ) -> Result<Vec<(String, i64)>, PolicyError> {
        self.eval_ints_input(&Input::from_value(input), rules)
    }

    /// [`Policy::eval_ints`] over an already converted input.
    pub fn eval_ints_input(
        &self,
        input: &Input,
        rules: &[&str],
    ) -> Result<Vec<(String, i64)>, PolicyError> {
        let mut out = Vec::with_capacity(rules.len());
        let mut e = self.engine_with_input(input);
        for rule in rules.iter().filter(|r| self.declares(r)) {
            let v = self.rule_value(&mut e, rule)?;
            match &v {
                regorus::Value::Undefined => {}
                regorus::Value::Number(n) => match n.as_i64() {
                    Some(i) => out.push((rule.to_string(), i)),
                    None => return Err(self.type_error(rule, "an integer", &v)),
                },
                other => return Err(self.type_error(rule, "an integer", other)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_v0_and_v1_policies() {
        let v0 = "package policy\ndefault allow = false\nallow { input.a == 1 }\n";
        let v1 = "package policy\ndefault allow := false\nallow if input.a == 1\n";
        let v1i =
            "package policy\nimport rego.v1\ndefault allow := false\nallow if { input.a == 1 }\n";
        for src in [v0, v1, v1i] {
            let p = Policy::compile("t", src, "policy").unwrap();
            assert!(p.eval_bool(&json!({"a": 1}), "allow").unwrap(), "{src}");
            assert!(!p.eval_bool(&json!({"a": 2}), "allow").unwrap(), "{src}");
        }
    }

    #[test]
    fn converted_inputs_evaluate_like_values() {
        let p = Policy::compile(
            "t",
            "package policy\ndefault allow = false\nallow { input.a.b == [1, \"x\"] }\n",
            "policy",
        )
        .unwrap();
        let yes = json!({"a": {"b": [1, "x"]}});
        let no = json!({"a": {"b": [1]}});
        for (v, want) in [(&yes, true), (&no, false)] {
            let text = serde_json::to_vec(v).unwrap();
            assert_eq!(p.eval_bool(v, "allow").unwrap(), want);
            let input = Input::from_json(&text).unwrap();
            assert_eq!(p.eval_bool_input(&input, "allow").unwrap(), want);
            assert_eq!(
                p.eval_bool_input(&Input::from_value(v), "allow").unwrap(),
                want
            );
        }
        assert!(matches!(
            Input::from_json(b"{\"a\": "),
            Err(PolicyError::Input { .. })
        ));
        assert!(matches!(
            Input::from_json(b"\xff"),
            Err(PolicyError::Input { .. })
        ));
    }

    #[test]
    fn replaced_part_equals_the_parsed_whole() {
        let whole = json!({"a": {"b": {"c": [1, {"d": "e"}], "f": 2}}, "g": null});
        let mut built = Input::from_value(&json!({"a": {"b": {"c": null, "f": 2}}, "g": null}));
        built
            .replace(&["a", "b", "c"], Input::from_value(&json!([1, {"d": "e"}])))
            .unwrap();
        assert_eq!(
            built,
            Input::from_json(whole.to_string().as_bytes()).unwrap()
        );
        assert_ne!(
            built,
            Input::from_value(&json!({"a": {"b": {"c": null, "f": 2}}}))
        );
        // A new key may be added at the end of the path, but not on the way.
        built
            .replace(&["a", "h"], Input::from_value(&json!(3)))
            .unwrap();
        assert_eq!(
            built,
            Input::from_value(
                &json!({"a": {"b": {"c": [1, {"d": "e"}], "f": 2}, "h": 3}, "g": null})
            )
        );
        let err = built
            .replace(&["x", "y"], Input::from_value(&json!(1)))
            .unwrap_err();
        assert!(err.to_string().contains("no object at /x"), "{err}");
        let err = built
            .replace(&["g", "y"], Input::from_value(&json!(1)))
            .unwrap_err();
        assert!(err.to_string().contains("no object at /g"), "{err}");
        built.replace(&[], Input::from_value(&json!(7))).unwrap();
        assert_eq!(built, Input::from_value(&json!(7)));
    }

    #[test]
    fn undefined_allow_denies() {
        let p = Policy::compile("t", "package policy\nallow { input.a == 1 }\n", "policy").unwrap();
        assert!(!p.eval_bool(&json!({}), "allow").unwrap());
    }

    #[test]
    fn rejects_bad_policies() {
        assert!(matches!(
            Policy::compile("t", "package policy\nallow {", "policy"),
            Err(PolicyError::Compile { .. })
        ));
        assert!(matches!(
            Policy::compile("t", "package other\nallow = true", "policy"),
            Err(PolicyError::Package { .. })
        ));
        let p = Policy::compile("t", "package policy\nallow = \"yes\"", "policy").unwrap();
        assert!(matches!(
            p.eval_bool(&json!({}), "allow"),
            Err(PolicyError::Type { .. })
        ));
    }

    #[test]
    fn evaluates_integer_rules_with_data() {
        let src = "package policy\nimport rego.v1\ndefault hardware := 97\nhardware := 2 if input.svn in data.reference.svn\n";
        let p = Policy::compile("t", src, "policy")
            .unwrap()
            .with_data(&json!({"reference": {"svn": ["1"]}}))
            .unwrap();
        assert_eq!(
            p.eval_ints(&json!({"svn": "1"}), &["hardware", "executables"])
                .unwrap(),
            vec![("hardware".to_string(), 2)]
        );
        assert_eq!(
            p.eval_ints(&json!({"svn": "2"}), &["hardware"]).unwrap(),
            vec![("hardware".to_string(), 97)]
        );
    }
}
