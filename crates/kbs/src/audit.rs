//! Reading the audit log: signed checkpoints, entries and proofs, for the
//! `auditor` role (`GET /kbs/v0/audit/...`).
//!
//! The log is written by the store, in the transaction of each change it
//! records (see `ward_store::Store::apply`). Tree heads are computed here
//! from the stored leaf hashes, kept in memory and extended as the log
//! grows; each checkpoint is signed with the newest key of the `audit`
//! ring (rotated like the other rings; a key's public half is recorded in
//! the log when it is added).

use std::sync::Mutex;

use serde_json::{json, Value};
use ward_audit::checkpoint::{Checkpoint, Signer};
use ward_audit::merkle::{self, Hash};
use ward_store::audit::MAX_AUDIT_READ;

use crate::admin::AdminError;
use crate::error::ApiError;
use crate::state::AppState;

/// The leaf hashes read so far (entries are never changed once written,
/// so a prefix read once stays valid).
#[derive(Default)]
pub struct AuditTree {
    hashes: Mutex<Vec<Hash>>,
}

fn range(detail: String) -> ApiError {
    AdminError::AuditRange(detail).into()
}

fn b64(h: &Hash) -> String {
    ward_proto::b64::std_encode(h)
}

impl AppState {
    /// The leaf hashes of the whole log as it is now, and its size.
    fn with_tree<T>(&self, f: impl FnOnce(&[Hash]) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let size = self.store().audit_size()?;
        let mut hashes = self
            .0
            .audit
            .hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let have = hashes.len() as u64;
        if have < size {
            let more = self.store().audit_hashes(have, size)?;
            hashes.extend(more);
        }
        f(&hashes[..size as usize])
    }

    /// The checkpoint of the log as it is now, signed (a C2SP signed note).
    pub fn audit_checkpoint(&self) -> Result<String, ApiError> {
        let keys = self.0.keys.current();
        let (_, pkcs8) = keys
            .audit
            .last()
            .ok_or_else(|| ApiError::internal("the audit ring holds no key"))?;
        let signer =
            Signer::from_pkcs8(&self.settings().audit_origin, pkcs8).map_err(ApiError::internal)?;
        self.with_tree(|leaves| {
            let c = Checkpoint {
                origin: self.settings().audit_origin.clone(),
                size: leaves.len() as u64,
                root: merkle::root(leaves),
                extensions: vec![],
            };
            Ok(signer.sign(&c))
        })
    }

    /// The verifier keys of the audit ring (oldest first): the last one
    /// signs new checkpoints.
    pub fn audit_keys(&self) -> Result<Value, ApiError> {
        let keys = self.0.keys.current();
        let mut out = vec![];
        for (id, pkcs8) in &keys.audit {
            let s = Signer::from_pkcs8(&self.settings().audit_origin, pkcs8)
                .map_err(ApiError::internal)?;
            out.push(json!({"id": id, "verifier_key": s.verifier_key()}));
        }
        Ok(json!({"origin": self.settings().audit_origin, "keys": out}))
    }

    /// Entries `start..end` (the end defaults to, and is capped at, the
    /// log's size and `start` + [`MAX_AUDIT_READ`]) as JSON lines of
    /// `{"index", "leaf", "hash"}` (standard base64; `hash` is the leaf
    /// hash stored with the entry): the form `ward audit verify` reads.
    pub fn audit_entries(&self, start: u64, end: Option<u64>) -> Result<String, ApiError> {
        let size = self.store().audit_size()?;
        let end = end
            .unwrap_or(size)
            .min(size)
            .min(start.saturating_add(MAX_AUDIT_READ));
        if start > size {
            return Err(range(format!(
                "start {start} is past the end of the log ({size} entries)"
            )));
        }
        let mut out = String::new();
        for e in self.store().audit_entries(start, end)? {
            out.push_str(
                &json!({
                    "index": e.index,
                    "leaf": ward_proto::b64::std_encode(&e.leaf),
                    "hash": ward_proto::b64::std_encode(&e.hash),
                })
                .to_string(),
            );
            out.push('\n');
        }
        Ok(out)
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries.
    pub fn audit_inclusion(&self, index: u64, size: u64) -> Result<Value, ApiError> {
        self.with_tree(|leaves| {
            if size > leaves.len() as u64 {
                return Err(range(format!(
                    "size {size} is larger than the log ({} entries)",
                    leaves.len()
                )));
            }
            let tree = &leaves[..size as usize];
            let proof =
                merkle::inclusion_proof(index as usize, tree).map_err(|e| range(e.to_string()))?;
            Ok(json!({
                "index": index,
                "size": size,
                "leaf_hash": b64(&tree[index as usize]),
                "root": b64(&merkle::root(tree)),
                "proof": proof.iter().map(b64).collect::<Vec<_>>(),
            }))
        })
    }

    /// The consistency proof between the trees of `from` and `to` entries.
    pub fn audit_consistency(&self, from: u64, to: u64) -> Result<Value, ApiError> {
        self.with_tree(|leaves| {
            if to > leaves.len() as u64 {
                return Err(range(format!(
                    "size {to} is larger than the log ({} entries)",
                    leaves.len()
                )));
            }
            let tree = &leaves[..to as usize];
            let proof =
                merkle::consistency_proof(from as usize, tree).map_err(|e| range(e.to_string()))?;
            Ok(json!({
                "from": from,
                "to": to,
                "from_root": b64(&merkle::root(&tree[..from.min(to) as usize])),
                "to_root": b64(&merkle::root(tree)),
                "proof": proof.iter().map(b64).collect::<Vec<_>>(),
            }))
        })
    }
}
