//! Rego policies evaluated with regorus.
//!
//! A [`Policy`] is parsed and prepared once per policy version (and, for
//! attestation policies, per reference-value version, which is loaded as
//! `data.reference`); each evaluation clones the prepared engine, sets the
//! input and evaluates a rule. When the policy can only read `input` at
//! static key paths and calls only pure builtins and its own functions (see
//! [`input_paths`]), its results are memoized per policy version, keyed by
//! the input's values at those paths: guests with the same measurements get
//! the same verdict without evaluating again. Policies may be written in Rego v0 syntax (as
//! most CoCo policies are) or v1 (`import rego.v1` or the v1 keywords).
//!
//! This crate knows nothing about HTTP, storage or evidence formats.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use regorus::Engine;
use serde_json::Value;

mod deps;
pub use deps::{called_functions, input_paths};

/// Memoized results kept per policy version before the memo starts over.
const MEMO_MAX: usize = 1024;

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
    /// The policy calls a function that is neither a builtin, one of its
    /// own, nor one the service provides: it would fail when evaluated.
    #[error("policy {id:?} calls {function}(), which is not a builtin, not defined in the policy and not provided by ward")]
    UnknownFunction { id: String, function: String },
    /// The policy lacks a rule its caller evaluates.
    #[error("policy {id:?} must declare {expected}")]
    MissingRule { id: String, expected: String },
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

/// A function the service offers policies, written in Rego: `module` is
/// the body of a module (without its `package` line) that defines
/// `function`, typically over a `data` document the service loads.
#[derive(Debug, Clone, Copy)]
pub struct Provided {
    pub function: &'static str,
    pub module: &'static str,
}

/// An input document in the engine's own representation: converted once,
/// then evaluated by any number of policies (see [`Policy::eval_bool_input`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Input(regorus::Value);

impl Input {
    /// Convert a JSON value node by node (no intermediate copy of the tree).
    pub fn from_value(v: &Value) -> Self {
        fn convert(v: &Value) -> regorus::Value {
            match v {
                Value::Null => regorus::Value::Null,
                Value::Bool(b) => regorus::Value::Bool(*b),
                Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => regorus::Value::from(i),
                    (None, Some(u)) => regorus::Value::from(u),
                    // serde_json numbers are finite.
                    _ => regorus::Value::from(n.as_f64().unwrap_or(0.0)),
                },
                Value::String(s) => regorus::Value::from(s.as_str()),
                Value::Array(a) => regorus::Value::from(a.iter().map(convert).collect::<Vec<_>>()),
                Value::Object(m) => regorus::Value::from(
                    m.iter()
                        .map(|(k, v)| (regorus::Value::from(k.as_str()), convert(v)))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                ),
            }
        }
        Self(convert(v))
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
    declared: Arc<std::sync::RwLock<HashMap<String, bool>>>,
    /// Results per projection of the input (see [`input_paths`]); replaced
    /// whenever data is loaded.
    memo: Arc<Memo>,
}

/// Results of one policy version, keyed by the rules asked for and the
/// input's values at the paths the policy can read.
struct Memo {
    /// `None`: the policy may read more than static paths; nothing is kept.
    paths: Option<Vec<Vec<String>>>,
    /// The same paths as engine values, for walking an [`Input`].
    engine_paths: Option<Vec<Vec<regorus::Value>>>,
    results: quick_cache::sync::Cache<Vec<u8>, Memoized>,
}

/// A policy input that can be read at a path without being converted whole:
/// when a policy's verdict is memoized, only the values at the paths it reads
/// are looked at, and [`Claims::input`] is not called.
pub trait Claims {
    /// The JSON value at `path` (object keys from the input root); `Ok(None)`
    /// when absent (a missing key, or a non-object on the way), `Err` when
    /// this source cannot tell without building the whole input.
    fn json_at(&self, path: &[String]) -> Result<Option<&Value>, Unavailable>;
    /// The whole input.
    fn input(&self) -> Result<Input, PolicyError>;
}

/// [`Claims::json_at`] cannot answer for this path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// The value at `path` below `root`, walking objects only.
pub fn json_at<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(root, |at, k| at.as_object()?.get(k))
}

impl Claims for Value {
    fn json_at(&self, path: &[String]) -> Result<Option<&Value>, Unavailable> {
        Ok(json_at(self, path))
    }

    fn input(&self) -> Result<Input, PolicyError> {
        Ok(Input::from_value(self))
    }
}

/// What an evaluation was given.
enum Given<'a> {
    Input(&'a Input),
    Claims(&'a dyn Claims),
}

impl Given<'_> {
    fn input(&self) -> Result<std::borrow::Cow<'_, Input>, PolicyError> {
        match self {
            Given::Input(i) => Ok(std::borrow::Cow::Borrowed(*i)),
            Given::Claims(c) => c.input().map(std::borrow::Cow::Owned),
        }
    }
}

#[derive(Clone)]
enum Memoized {
    Bool(bool),
    Ints(Vec<(String, i64)>),
}

impl Memo {
    fn new(source: &str) -> Self {
        let paths = input_paths(source);
        Self {
            engine_paths: paths.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| p.iter().map(|k| regorus::Value::from(k.as_str())).collect())
                    .collect()
            }),
            paths,
            results: quick_cache::sync::Cache::new(MEMO_MAX),
        }
    }

    fn fresh(&self) -> Self {
        Self {
            paths: self.paths.clone(),
            engine_paths: self.engine_paths.clone(),
            results: quick_cache::sync::Cache::new(MEMO_MAX),
        }
    }

    /// The source kind (`r`: engine values, `j`: JSON claims; their JSON
    /// texts may differ for equal numbers, so they never share entries),
    /// `what` (the rules asked for), then per path `u` (absent) or `v`, the
    /// value's JSON and a NUL (JSON text never holds a raw NUL).
    fn key(&self, what: &str, given: &Given<'_>) -> Option<Vec<u8>> {
        let (paths, engine_paths) = (self.paths.as_ref()?, self.engine_paths.as_ref()?);
        let mut key = Vec::with_capacity(what.len() + 2 + 16 * paths.len());
        key.push(match given {
            Given::Input(_) => b'r',
            Given::Claims(_) => b'j',
        });
        key.extend_from_slice(what.as_bytes());
        key.push(0);
        for (path, engine_path) in paths.iter().zip(engine_paths) {
            let present = match given {
                Given::Input(input) => {
                    let at = engine_path.iter().try_fold(&input.0, |at, k| match at {
                        regorus::Value::Object(m) => m.get(k),
                        _ => None,
                    });
                    match at {
                        None | Some(regorus::Value::Undefined) => false,
                        Some(v) => {
                            key.push(b'v');
                            serde_json::to_writer(&mut key, v).ok()?;
                            true
                        }
                    }
                }
                Given::Claims(c) => match c.json_at(path).ok()? {
                    None => false,
                    Some(v) => {
                        key.push(b'v');
                        serde_json::to_writer(&mut key, v).ok()?;
                        true
                    }
                },
            };
            key.push(if present { 0 } else { b'u' });
        }
        Some(key)
    }

    fn get(&self, key: &Option<Vec<u8>>) -> Option<Memoized> {
        self.results.get(key.as_ref()?)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.results.len()
    }

    fn put(&self, key: Option<Vec<u8>>, value: Memoized) {
        let Some(key) = key else { return };
        self.results.insert(key, value);
    }
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

/// Whether `name` is a builtin of the policy engine: a call of it with no
/// arguments fails for any reason but its absence. Answers are kept.
fn is_builtin(name: &str) -> bool {
    static KNOWN: std::sync::OnceLock<RwLock<HashMap<String, bool>>> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    if let Some(b) = known.read().unwrap_or_else(|e| e.into_inner()).get(name) {
        return *b;
    }
    let valid = !name.is_empty()
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let b = valid && {
        let mut e = Engine::new();
        match e.eval_query(format!("{name}()"), false) {
            Ok(_) => true,
            Err(err) => !err.to_string().contains("could not find function"),
        }
    };
    if known.read().unwrap_or_else(|e| e.into_inner()).len() < 4096 {
        known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), b);
    }
    b
}

impl Policy {
    /// Compile `source`; it must declare `package <package>`.
    pub fn compile(id: &str, source: &str, package: &str) -> Result<Self, PolicyError> {
        Self::compile_with(id, source, package, &[])
    }

    /// Compile `source` together with `provided`: modules of the same
    /// package that define functions the service offers policies (such as
    /// Trustee's `query_reference_value`). Each is added only when `source`
    /// calls a function it defines and does not define that function
    /// itself. Every call in `source` must then resolve to a builtin, a
    /// function of `source` or a provided one, or compilation fails with
    /// [`PolicyError::UnknownFunction`].
    pub fn compile_with(
        id: &str,
        source: &str,
        package: &str,
        provided: &[Provided],
    ) -> Result<Self, PolicyError> {
        if source.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLarge { id: id.into() });
        }
        let calls = deps::called_functions(source);
        let own = format!("data.{package}.");
        let mut extra = Vec::new();
        for name in &calls {
            let local = name.strip_prefix(&own).unwrap_or(name);
            if let Some(p) = provided.iter().find(|p| p.function == local) {
                if !extra.iter().any(|e: &&Provided| e.function == p.function) {
                    extra.push(p);
                }
                continue;
            }
            if !is_builtin(name) {
                return Err(PolicyError::UnknownFunction {
                    id: id.into(),
                    function: name.clone(),
                });
            }
        }
        // v0 mode also honours `import rego.v1`; pure v1 text without that
        // import compiles in the second attempt.
        let (mut engine, pkg) = match try_compile(id, source, true) {
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
        for p in extra {
            engine
                .add_policy(
                    format!("ward-{}.rego", p.function),
                    format!("package {package}\n\n{}", p.module),
                )
                .map_err(|e| PolicyError::Compile {
                    id: id.into(),
                    reason: format!("provided function {}: {e}", p.function),
                })?;
        }
        let mut p = Self {
            id: id.into(),
            package: package.into(),
            source: format!("{id}.rego"),
            engine,
            declared: Default::default(),
            memo: Arc::new(Memo::new(source)),
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
        p.memo = Arc::new(self.memo.fresh());
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
        self.eval_bool_given(Given::Input(input), rule)
    }

    /// [`Policy::eval_bool`] over claims converted only if the verdict is not
    /// memoized.
    pub fn eval_bool_claims(&self, claims: &dyn Claims, rule: &str) -> Result<bool, PolicyError> {
        self.eval_bool_given(Given::Claims(claims), rule)
    }

    fn eval_bool_given(&self, given: Given<'_>, rule: &str) -> Result<bool, PolicyError> {
        if !self.declares(rule) {
            return Ok(false);
        }
        let key = self.memo.key(&format!("bool {rule}"), &given);
        if let Some(Memoized::Bool(b)) = self.memo.get(&key) {
            return Ok(b);
        }
        let mut e = self.engine_with_input(&*given.input()?);
        let allowed = match self.rule_value(&mut e, rule)? {
            regorus::Value::Undefined => false,
            regorus::Value::Bool(b) => b,
            other => return Err(self.type_error(rule, "a boolean", &other)),
        };
        self.memo.put(key, Memoized::Bool(allowed));
        Ok(allowed)
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
        self.eval_ints_given(Given::Input(input), rules)
    }

    /// [`Policy::eval_ints`] over claims converted only if the result is not
    /// memoized.
    pub fn eval_ints_claims(
        &self,
        claims: &dyn Claims,
        rules: &[&str],
    ) -> Result<Vec<(String, i64)>, PolicyError> {
        self.eval_ints_given(Given::Claims(claims), rules)
    }

    fn eval_ints_given(
        &self,
        given: Given<'_>,
        rules: &[&str],
    ) -> Result<Vec<(String, i64)>, PolicyError> {
        let key = self.memo.key(&format!("ints {}", rules.join(",")), &given);
        if let Some(Memoized::Ints(out)) = self.memo.get(&key) {
            return Ok(out);
        }
        let mut out = Vec::with_capacity(rules.len());
        let mut e = self.engine_with_input(&*given.input()?);
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
        self.memo.put(key, Memoized::Ints(out.clone()));
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
    fn direct_conversion_equals_the_engine_own() {
        let v = json!({
            "s": "ünï\u{0}code", "e": "", "t": true, "f": false, "n": null,
            "i": -7, "u": u64::MAX, "big": i64::MIN, "x": 1.5, "tiny": 1e-300,
            "a": [1, "x", [], {}, [null, {"k": [2.0]}]],
            "o": {"": {"nested": {"deep": [true]}}, "k2": 0}
        });
        assert_eq!(Input::from_value(&v).0, regorus::Value::from(v.clone()));
        let text = serde_json::to_vec(&v).unwrap();
        assert_eq!(Input::from_value(&v), Input::from_json(&text).unwrap());
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

    #[test]
    fn results_are_memoized_on_the_paths_the_policy_reads() {
        let p = Policy::compile(
            "m",
            "package policy\nimport rego.v1\ndefault allow := false\nallow if input.a.b == 1\n",
            "policy",
        )
        .unwrap();
        let run = |v: Value| p.eval_bool(&v, "allow").unwrap();
        assert!(run(json!({"a": {"b": 1}, "nonce": "x"})));
        // Only the nonce differs: answered from the memo.
        assert!(run(json!({"a": {"b": 1}, "nonce": "y", "other": [1]})));
        assert_eq!(p.memo.len(), 1);
        // The value the policy reads differs: evaluated again, and right.
        assert!(!run(json!({"a": {"b": 2}, "nonce": "x"})));
        assert!(!run(json!({"a": {"b": "1"}})));
        assert!(!run(json!({"a": {"c": 1}})));
        assert!(!run(json!({"a": {"b": null}})));
        assert!(!run(json!({})));
        // `{"a": {"c": 1}}` and `{}` both lack input.a.b: one entry.
        assert_eq!(p.memo.len(), 5);
        assert!(run(json!({"a": {"b": 1}, "nonce": "z"})));
        assert_eq!(p.memo.len(), 5);
        // The same input asked for another rule is its own entry.
        assert_eq!(
            p.eval_ints(&json!({"a": {"b": 1}}), &["allow"])
                .unwrap_err(),
            PolicyError::Type {
                id: "m".into(),
                rule: "allow".into(),
                expected: "an integer",
                got: "true".into()
            }
        );
    }

    #[test]
    fn policies_reading_all_of_input_or_the_clock_are_evaluated_every_time() {
        for src in [
            "package policy\nimport rego.v1\nallow if count(input) == 1\n",
            "package policy\nimport rego.v1\nallow if { input.a == 1; time.now_ns() > 0 }\n",
        ] {
            let p = Policy::compile("w", src, "policy").unwrap();
            assert!(p.eval_bool(&json!({"a": 1}), "allow").unwrap());
            assert_eq!(p.memo.len(), 0);
        }
        let p = Policy::compile(
            "w",
            "package policy\nimport rego.v1\nallow if count(input) == 1\n",
            "policy",
        )
        .unwrap();
        assert!(!p.eval_bool(&json!({"a": 1, "b": 2}), "allow").unwrap());
    }

    #[test]
    fn loading_data_starts_a_fresh_memo() {
        let src = "package policy\nimport rego.v1\nallow if input.svn in data.reference.svn\n";
        let base = Policy::compile("d", src, "policy").unwrap();
        let one = base
            .with_data(&json!({"reference": {"svn": ["1"]}}))
            .unwrap();
        assert!(one.eval_bool(&json!({"svn": "1"}), "allow").unwrap());
        let two = base
            .with_data(&json!({"reference": {"svn": ["2"]}}))
            .unwrap();
        assert!(!two.eval_bool(&json!({"svn": "1"}), "allow").unwrap());
        assert!(one.eval_bool(&json!({"svn": "1"}), "allow").unwrap());
        assert_eq!((one.memo.len(), two.memo.len()), (1, 1));
    }

    #[test]
    fn a_full_memo_stays_bounded_and_keeps_recent_verdicts() {
        let p = Policy::compile(
            "f",
            "package policy\nimport rego.v1\nallow if input.n > 0\n",
            "policy",
        )
        .unwrap();
        let total = 2 * MEMO_MAX as i64;
        for n in 0..total {
            assert_eq!(p.eval_bool(&json!({"n": n}), "allow").unwrap(), n > 0);
        }
        let kept = p.memo.len();
        assert!((MEMO_MAX / 2..=MEMO_MAX).contains(&kept), "{kept}");
        // Answers stay right whether remembered or evaluated again.
        for n in [0, 1, total - 1] {
            assert_eq!(p.eval_bool(&json!({"n": n}), "allow").unwrap(), n > 0);
        }
    }

    #[test]
    fn rejects_calls_to_unknown_functions_and_accepts_builtins_and_provided_ones() {
        let src = "package policy\nimport rego.v1\nallow if { x := lower(\"A\"); time.now_ns() > 0; helper(x) }\nhelper(v) := v\n";
        Policy::compile("p", src, "policy").unwrap();
        let bad =
            "package policy\nimport rego.v1\nallow if input.a in query_reference_value(\"a\")\n";
        assert_eq!(
            Policy::compile("p", bad, "policy").unwrap_err(),
            PolicyError::UnknownFunction {
                id: "p".into(),
                function: "query_reference_value".into()
            }
        );
        let nested = "package policy\nimport rego.v1\nallow if crypto.x509.no_such_thing(\"a\")\n";
        assert!(matches!(
            Policy::compile("p", nested, "policy"),
            Err(PolicyError::UnknownFunction { function, .. }) if function == "crypto.x509.no_such_thing"
        ));
        // Provided: compiled in only when called, and then it evaluates.
        let provided = [Provided {
            function: "query_reference_value",
            module: "query_reference_value(id) := object.get(data.rv, id, null)\n",
        }];
        let p = Policy::compile_with("p", bad, "policy", &provided)
            .unwrap()
            .with_data(&serde_json::json!({"rv": {"a": [1, 2]}}))
            .unwrap();
        assert!(p.eval_bool(&serde_json::json!({"a": 2}), "allow").unwrap());
        assert!(!p.eval_bool(&serde_json::json!({"a": 3}), "allow").unwrap());
        // A policy defining the function itself keeps its own.
        let own = "package policy\nimport rego.v1\nallow if input.a in query_reference_value(\"a\")\nquery_reference_value(_) := [3]\n";
        let p = Policy::compile_with("p", own, "policy", &provided).unwrap();
        assert!(p.eval_bool(&serde_json::json!({"a": 3}), "allow").unwrap());
    }
}
