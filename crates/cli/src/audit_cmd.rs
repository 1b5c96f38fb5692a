//! `ward audit`: checking an exported audit log offline, against
//! checkpoints signed by a key the auditor trusts (issue 21, first part:
//! the service does not write the log yet).
//!
//! An exported log is JSON lines, `{"index": N, "leaf": "<base64>"}`, one
//! per entry from index 0 without gaps; `leaf` is the entry's bytes as
//! hashed into the RFC 9162 tree. A checkpoint is a C2SP signed note.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::Subcommand;
use serde_json::{json, Value};
use ward_audit::checkpoint::{Checkpoint, Verifier};
use ward_audit::merkle::{self, Hash};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every entry of an exported log against a signed checkpoint.
    Verify {
        /// The exported log (JSON lines of {index, leaf}).
        #[arg(long)]
        log: PathBuf,
        /// A checkpoint (signed note) of the log.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The verifier key the checkpoint must be signed with
        /// (`<name>+<id>+<key>`), or a file holding it.
        #[arg(long)]
        key: String,
    },
    /// Check that a newer checkpoint extends an older one (the log was
    /// only appended to in between), from an exported log that matches
    /// the newer one.
    Proof {
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        old: PathBuf,
        #[arg(long)]
        new: PathBuf,
        #[arg(long)]
        key: String,
    },
}

fn verifier(key: &str) -> Result<Verifier> {
    let text = if Path::new(key).exists() {
        std::fs::read_to_string(key).with_context(|| format!("reading {key}"))?
    } else {
        key.to_string()
    };
    Ok(Verifier::parse(&text)?)
}

fn open(v: &Verifier, p: &Path) -> Result<Checkpoint> {
    let note = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    v.open(&note).with_context(|| p.display().to_string())
}

/// The leaf hashes of an exported log.
fn leaves(p: &Path) -> Result<Vec<Hash>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let mut out = vec![];
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{} line {}", p.display(), n + 1);
        let v: Value = serde_json::from_str(line).with_context(at)?;
        let index = v["index"]
            .as_u64()
            .ok_or_else(|| anyhow!("{}: no index", at()))?;
        if index != out.len() as u64 {
            bail!(
                "{}: index {index} where {} was due (entries must be contiguous from 0)",
                at(),
                out.len()
            );
        }
        let leaf = v["leaf"]
            .as_str()
            .and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok())
            .ok_or_else(|| anyhow!("{}: leaf is not base64", at()))?;
        out.push(merkle::leaf_hash(&leaf));
    }
    Ok(out)
}

/// The tree of the first `size` leaves must have the checkpoint's root.
fn check_against(c: &Checkpoint, l: &[Hash], name: &Path) -> Result<()> {
    let size = usize::try_from(c.size)?;
    if size > l.len() {
        bail!(
            "{}: the checkpoint covers {size} entries, the log has {}",
            name.display(),
            l.len()
        );
    }
    if merkle::root(&l[..size]) != c.root {
        bail!(
            "{}: the log's first {size} entries do not hash to the checkpoint's root",
            name.display()
        );
    }
    Ok(())
}

pub fn run(cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify {
            log,
            checkpoint,
            key,
        } => {
            let v = verifier(&key)?;
            let c = open(&v, &checkpoint)?;
            let l = leaves(&log)?;
            check_against(&c, &l, &checkpoint)?;
            println!(
                "{}",
                json!({"verdict": "valid", "origin": c.origin, "size": c.size,
                    "entries_after_checkpoint": l.len() as u64 - c.size})
            );
        }
        AuditCmd::Proof { log, old, new, key } => {
            let v = verifier(&key)?;
            let (a, b) = (open(&v, &old)?, open(&v, &new)?);
            if a.origin != b.origin {
                bail!(
                    "the checkpoints are of different logs ({} and {})",
                    a.origin,
                    b.origin
                );
            }
            let l = leaves(&log)?;
            check_against(&b, &l, &new)?;
            let nl = &l[..usize::try_from(b.size)?];
            let proof = merkle::consistency_proof(usize::try_from(a.size)?, nl)?;
            if !merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &proof) {
                bail!(
                    "{} is not a prefix of {}: the log was rewritten",
                    old.display(),
                    new.display()
                );
            }
            println!(
                "{}",
                json!({"verdict": "consistent", "from": a.size, "to": b.size})
            );
        }
    }
    Ok(())
}
