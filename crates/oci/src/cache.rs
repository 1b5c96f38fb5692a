//! What each layer does to the user databases, kept on disk by layer
//! digest, so a layer is downloaded and decompressed once per machine.
//!
//! Safe with several generators at once: an entry is written to a
//! temporary file in the cache directory and renamed into place, so a
//! reader sees a whole entry or none; an entry that does not parse is
//! ignored (and replaced). Entries are only ever computed from layers whose
//! digest was checked. The cache is bounded: past `max_entries`, the
//! entries used least recently (by modification time, which a hit
//! refreshes) are removed.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{json, Value};

use crate::blob::Digest;
use crate::layers::LayerEffect;

/// Entries kept by default.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// A layer cache in a directory.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
    max_entries: usize,
}

const VERSION: u64 = 1;

fn b64(v: &Option<Vec<u8>>) -> Value {
    match v {
        Some(d) => Value::String(base64::engine::general_purpose::STANDARD.encode(d)),
        None => Value::Null,
    }
}

fn unb64(v: &Value) -> Option<Option<Vec<u8>>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .ok()
            .map(Some),
        _ => None,
    }
}

impl LayerCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("layers")
            .join(d.algorithm())
            .join(format!("{}.json", d.hex()))
    }

    /// The cached effect of layer `d`, if any (and whole).
    pub fn get(&self, d: &Digest) -> Option<LayerEffect> {
        let p = self.path(d);
        let v: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
        if v["version"] != VERSION || v["digest"] != d.to_string() {
            return None;
        }
        let deleted = v["deleted"].as_array()?;
        let added = v["added"].as_array()?;
        if deleted.len() != 2 || added.len() != 2 {
            return None;
        }
        let integrity = match &v["integrity"] {
            Value::Null => None,
            i => {
                let h = |k: &str| -> Option<[u8; 32]> {
                    hex::decode(i[k].as_str()?).ok()?.try_into().ok()
                };
                Some(crate::verity::LayerIntegrity {
                    diff_id: h("diff_id")?,
                    root_hash: h("root_hash")?,
                })
            }
        };
        let effect = LayerEffect {
            deleted: [deleted[0].as_bool()?, deleted[1].as_bool()?],
            added: [unb64(&added[0])?, unb64(&added[1])?],
            integrity,
        };
        // A hit counts as a use, for eviction.
        if let Ok(f) = std::fs::File::options().append(true).open(&p) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        Some(effect)
    }

    /// Keep the effect of layer `d`. Failing to write only costs speed.
    pub fn put(&self, d: &Digest, effect: &LayerEffect) {
        let p = self.path(d);
        let Some(parent) = p.parent() else { return };
        if std::fs::create_dir_all(parent).is_err() {
            return;
        }
        let v = json!({
            "version": VERSION,
            "digest": d.to_string(),
            "deleted": effect.deleted,
            "added": [b64(&effect.added[0]), b64(&effect.added[1])],
            "integrity": effect.integrity.as_ref().map(|i| json!({
                "diff_id": hex::encode(i.diff_id),
                "root_hash": hex::encode(i.root_hash),
            })),
        });
        let Ok(mut tmp) = tempfile::NamedTempFile::new_in(parent) else {
            return;
        };
        use std::io::Write;
        if tmp.write_all(v.to_string().as_bytes()).is_err() || tmp.persist(&p).is_err() {
            return;
        }
        self.evict(parent);
    }

    /// Keep at most `max_entries` in `dir`, dropping the least recently
    /// used.
    fn evict(&self, dir: &Path) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= self.max_entries {
            return;
        }
        entries.sort();
        let excess = entries.len() - self.max_entries;
        for (_, p) in entries.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(n: u8) -> LayerEffect {
        LayerEffect {
            deleted: [n.is_multiple_of(2), false],
            added: [Some(vec![n; 3]), None],
            integrity: None,
        }
    }

    #[test]
    fn entries_round_trip_stay_bounded_and_torn_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let c = LayerCache::new(dir.path()).with_max_entries(3);
        let d = |n: u8| Digest::sha256_of(&[n]);
        assert_eq!(c.get(&d(0)), None);
        for n in 0..5u8 {
            c.put(&d(n), &effect(n));
            // Distinct modification times for the eviction order.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(c.get(&d(4)), Some(effect(4)));
        let kept = (0..5u8).filter(|n| c.path(&d(*n)).exists()).count();
        assert_eq!(kept, 3);
        assert!(!c.path(&d(0)).exists(), "the oldest went first");

        // A torn or foreign entry is not trusted.
        std::fs::write(c.path(&d(4)), b"{\"version\":1,").unwrap();
        assert_eq!(c.get(&d(4)), None);
        std::fs::copy(c.path(&d(3)), c.path(&d(4))).unwrap();
        assert_eq!(c.get(&d(4)), None, "an entry names its own digest");
    }
}
