//! Records for the audit log, and what the store adds to them.
//!
//! The log is append-only, one row per entry, indexed from 0 without gaps,
//! in the same database as the data it describes. An entry's leaf is the
//! canonical JSON of its event (keys sorted, no whitespace); its leaf hash
//! is the RFC 9162 one, `SHA-256(0x00 ‖ leaf)`, stored beside it so that
//! tree heads and proofs need no rehashing of the leaves.
//!
//! An event never holds a secret: secret content is named by a keyed
//! digest ([`crate::Kek::keyed_digest`]), key material not at all.

use aws_lc_rs::digest::{Context, SHA256};
use serde_json::{Map, Value};

/// One event to record. `kind` says what happened (`attestation`,
/// `release`, `denial`, `admin`); the store adds `time` and, for changes
/// of content it holds, the old and new content digests and the version.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    fields: Map<String, Value>,
}

impl AuditEvent {
    pub fn new(kind: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("kind".into(), Value::String(kind.into()));
        Self { fields }
    }

    /// Add a field (the last value given for a name wins).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// Set a field in place.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.fields.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// The leaf bytes, with `time` set to `now`.
    pub fn leaf(&self, now: i64) -> Vec<u8> {
        let mut fields = self.fields.clone();
        fields.insert("time".into(), Value::from(now));
        // serde_json's map is ordered by key: the output is canonical.
        serde_json::to_vec(&Value::Object(fields)).unwrap_or_default()
    }
}

/// The RFC 9162 leaf hash, `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    c.update(&[0]);
    c.update(leaf);
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// SHA-256 of public content (policies, reference values), hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub index: u64,
    pub leaf: Vec<u8>,
    /// The leaf hash stored with it (written with the leaf, never after).
    pub hash: Vec<u8>,
}

/// Most entries one read returns.
pub const MAX_AUDIT_READ: u64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_canonical_json_with_the_time() {
        let e = AuditEvent::new("release")
            .with("path", "a/b/c")
            .with("b", 1);
        assert_eq!(
            String::from_utf8(e.leaf(7)).unwrap(),
            r#"{"b":1,"kind":"release","path":"a/b/c","time":7}"#
        );
    }

    #[test]
    fn the_leaf_hash_is_rfc_9162() {
        // RFC 9162 2.1.1: the hash of the empty leaf is SHA-256(0x00).
        assert_eq!(
            sha256_hex(&[0]),
            leaf_hash(b"")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        assert_eq!(
            sha256_hex(&[0]),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
