//! Evaluating an agent policy as the Kata agent does: one regorus engine
//! per sandbox, `data.pstate` initialised to `{}`, each request asked as
//! `data.agent_policy.<Kind>` with the request as `input`. The answer is a
//! boolean or `{"allowed", "ops"}`; when allowed, `ops` (a JSON patch,
//! RFC 6902) is applied to the engine's data, carrying state to the next
//! request. Anything else (no result, another type, a failed patch) is a
//! refusal.
//!
//! On a refusal, [`AgentPolicy::explain`] reads the policy's
//! `violations[<Kind>]`: which rule, which field, expected and actual.

use regorus::Engine;
use serde::Serialize;
use serde_json::{json, Value};

/// Largest policy accepted (the Kata agent's own limit is 16 MiB).
pub const MAX_POLICY_LEN: usize = 16 * 1024 * 1024;

/// Why a policy could not be loaded or a request not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the policy is larger than {MAX_POLICY_LEN} bytes")]
    TooLarge,
    #[error("the policy does not compile: {0}")]
    Compile(String),
    #[error("the policy is not in package agent_policy (found {0:?})")]
    Package(String),
    #[error("{kind:?} is not a request of the Kata agent API")]
    UnknownRequest { kind: String },
    #[error("evaluating {kind}: {reason}")]
    Eval { kind: String, reason: String },
}

/// Every request the Kata agent asks its policy about (agent.proto, by the
/// names the agent queries).
pub const REQUESTS: [&str; 41] = [
    "AddARPNeighborsRequest",
    "AddSwapRequest",
    "CloseStdinRequest",
    "CopyFileRequest",
    "CreateContainerRequest",
    "CreateSandboxRequest",
    "DestroySandboxRequest",
    "ExecProcessRequest",
    "GetIPTablesRequest",
    "GetMetricsRequest",
    "GetOOMEventRequest",
    "GuestDetailsRequest",
    "ListInterfacesRequest",
    "ListRoutesRequest",
    "MemHotplugByProbeRequest",
    "OnlineCPUMemRequest",
    "PauseContainerRequest",
    "PullImageRequest",
    "ReadStreamRequest",
    "RemoveContainerRequest",
    "RemoveStaleVirtiofsShareMountsRequest",
    "ReseedRandomDevRequest",
    "ResizeVolumeRequest",
    "ResumeContainerRequest",
    "SetGuestDateTimeRequest",
    "SetIPTablesRequest",
    "SetPolicyRequest",
    "SignalProcessRequest",
    "StartContainerRequest",
    "StartTracingRequest",
    "StatsContainerRequest",
    "StopTracingRequest",
    "TtyWinResizeRequest",
    "UpdateContainerRequest",
    "UpdateEphemeralMountsRequest",
    "UpdateInterfaceRequest",
    "UpdateRoutesRequest",
    "VolumeStatsRequest",
    "WaitProcessRequest",
    "WriteStreamRequest",
    "MemAgentMemcgSetRequest",
];

/// One reason a request was refused.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Violation {
    pub rule: String,
    pub field: String,
    pub expected: Value,
    pub actual: Value,
}

/// A decision and, on refusal, why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

/// A loaded policy with the state of one sandbox.
#[derive(Clone)]
pub struct AgentPolicy {
    engine: Engine,
    data: Value,
}

impl std::fmt::Debug for AgentPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPolicy")
            .field("state", &self.data)
            .finish()
    }
}

impl AgentPolicy {
    /// Load `text` (a complete `package agent_policy` module).
    pub fn new(text: &str) -> Result<Self, EngineError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(EngineError::TooLarge);
        }
        let mut engine = Engine::new();
        // As the agent: a failing builtin makes its expression undefined.
        engine.set_strict_builtin_errors(false);
        engine.clear_policy_length_config();
        let package = engine
            .add_policy("agent_policy.rego".into(), text.to_string())
            .map_err(|e| EngineError::Compile(e.to_string()))?;
        if package != "data.agent_policy" {
            return Err(EngineError::Package(package));
        }
        let mut p = Self {
            engine,
            data: json!({ "pstate": {} }),
        };
        p.load_data()?;
        Ok(p)
    }

    fn load_data(&mut self) -> Result<(), EngineError> {
        self.engine.clear_data();
        let v = regorus::Value::from_json_str(&self.data.to_string()).map_err(|e| {
            EngineError::Eval {
                kind: "state".into(),
                reason: e.to_string(),
            }
        })?;
        self.engine.add_data(v).map_err(|e| EngineError::Eval {
            kind: "state".into(),
            reason: e.to_string(),
        })
    }

    /// The state the policy carries (`data.pstate`).
    pub fn state(&self) -> &Value {
        &self.data["pstate"]
    }

    /// The value of `data.agent_policy.<rule>` for `input` (`null` when
    /// undefined), in the current state.
    pub fn evaluate(&mut self, rule: &str, input: &Value) -> Result<Value, EngineError> {
        let eval = |reason: String| EngineError::Eval {
            kind: rule.to_string(),
            reason,
        };
        let input =
            regorus::Value::from_json_str(&input.to_string()).map_err(|e| eval(e.to_string()))?;
        self.engine.set_input(input);
        let path = format!("data.agent_policy.{rule}");
        let v = if rule.contains('[') {
            let results = self
                .engine
                .eval_query(path, false)
                .map_err(|e| eval(e.to_string()))?;
            match results.result.first().and_then(|r| r.expressions.first()) {
                Some(e) => e.value.clone(),
                None => return Ok(Value::Null),
            }
        } else {
            // A rule by its path: no query to parse.
            self.engine
                .eval_rule(path)
                .map_err(|e| eval(e.to_string()))?
        };
        if v == regorus::Value::Undefined {
            return Ok(Value::Null);
        }
        let text = v.to_json_str().map_err(|e| eval(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| eval(e.to_string()))
    }

    /// The policy's answer to `input` as a `kind` request, without applying
    /// the state changes an allowed answer carries.
    pub fn answer(&mut self, kind: &str, input: &Value) -> Result<bool, EngineError> {
        Ok(self.allowed_and_ops(kind, input)?.0)
    }

    /// The answer as the agent reads it: allowed, and the state changes.
    fn allowed_and_ops(
        &mut self,
        kind: &str,
        input: &Value,
    ) -> Result<(bool, Option<Value>), EngineError> {
        if !REQUESTS.contains(&kind) {
            return Err(EngineError::UnknownRequest { kind: kind.into() });
        }
        Ok(match self.evaluate(kind, input)? {
            Value::Bool(b) => (b, None),
            Value::Object(mut o) => (
                o.get("allowed").and_then(Value::as_bool).unwrap_or(false),
                o.remove("ops"),
            ),
            _ => (false, None),
        })
    }

    /// Decide `input` as a request of `kind` (e.g.
    /// `CreateContainerRequest`), applying the policy's state changes when
    /// it is allowed, as the agent does.
    pub fn decide(&mut self, kind: &str, input: &Value) -> Result<bool, EngineError> {
        let (allowed, ops) = self.allowed_and_ops(kind, input)?;
        if !allowed {
            return Ok(false);
        }
        if let Some(ops) = ops {
            let patch: json_patch::Patch =
                serde_json::from_value(ops).map_err(|e| EngineError::Eval {
                    kind: kind.into(),
                    reason: format!("ops are not a JSON patch: {e}"),
                })?;
            let mut next = self.data.clone();
            json_patch::patch(&mut next, &patch).map_err(|e| EngineError::Eval {
                kind: kind.into(),
                reason: format!("ops do not apply: {e}"),
            })?;
            self.data = next;
            self.load_data()?;
        }
        Ok(true)
    }

    /// Decide, and on refusal say why (without changing state when
    /// refused).
    pub fn check(&mut self, kind: &str, input: &Value) -> Result<Decision, EngineError> {
        if self.decide(kind, input)? {
            return Ok(Decision {
                allowed: true,
                violations: vec![],
            });
        }
        Ok(Decision {
            allowed: false,
            violations: self.explain(kind, input)?,
        })
    }

    /// The violations the policy finds in `input` as a `kind` request.
    pub fn explain(&mut self, kind: &str, input: &Value) -> Result<Vec<Violation>, EngineError> {
        let all = self.evaluate(&format!("violations[\"{kind}\"]"), input)?;
        let mut out: Vec<Violation> = match all {
            Value::Array(list) => list
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
            _ => vec![],
        };
        out.sort_by(|a, b| (&a.rule, &a.field).cmp(&(&b.rule, &b.field)));
        if out.is_empty() {
            out.push(Violation {
                rule: kind.to_string(),
                field: String::new(),
                expected: Value::String(format!("{kind} is denied by this policy")),
                actual: Value::Null,
            });
        }
        Ok(out)
    }
}
