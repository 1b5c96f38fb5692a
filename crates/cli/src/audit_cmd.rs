//! `ward audit`: fetching the trust service's audit log, following it,
//! and checking an exported copy offline against checkpoints signed by a
//! key the auditor trusts.
//!
//! An exported log is JSON lines, `{"index": N, "leaf": "<base64>"}`, one
//! per entry from index 0 without gaps; `leaf` is the entry's bytes as
//! hashed into the RFC 9162 tree, and `hash`, when present, the leaf hash
//! the service stored with it (an entry changed in place no longer hashes
//! to it). A checkpoint is a C2SP signed note.
//!
//! A checkpoint proves that the log as a whole is unchanged, not where it
//! was changed: to name the entry, `--mirror` compares the log with a copy
//! verified before (as a log's monitor keeps).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::Subcommand;

use crate::admin_cmd::{Api, ServerArgs};
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
        /// A copy of the log verified before: every entry it holds must be
        /// in the log unchanged and at the same index.
        #[arg(long)]
        mirror: Option<PathBuf>,
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
    /// Download the log and its current checkpoint from a trust service
    /// (the `auditor` or `admin` role), for `verify` and `proof`.
    Fetch {
        #[command(flatten)]
        server: ServerArgs,
        /// Where to write the log (JSON lines).
        #[arg(long)]
        log: PathBuf,
        /// Where to write the checkpoint (signed note).
        #[arg(long)]
        checkpoint: PathBuf,
    },
    /// Print the log's entries as they are appended: one JSON line per
    /// entry, `{"index", "entry"}`.
    Tail {
        #[command(flatten)]
        server: ServerArgs,
        /// First entry to print; default: the end of the log now.
        #[arg(long)]
        from: Option<u64>,
        /// Seconds between polls.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Print the entries there are and exit.
        #[arg(long)]
        once: bool,
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

/// The entries of an exported log: leaf bytes, index from 0.
fn entries(p: &Path) -> Result<Vec<Vec<u8>>> {
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
                "{}: entry {} is missing (index {index} where {} was due: entries are numbered from 0 without gaps)",
                at(),
                out.len(),
                out.len()
            );
        }
        let b64 = |k: &str| {
            v[k].as_str()
                .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
        };
        let leaf = b64("leaf")
            .and_then(|r| r.ok())
            .ok_or_else(|| anyhow!("{}: leaf is not base64", at()))?;
        if let Some(stored) = b64("hash") {
            let stored = stored.map_err(|_| anyhow!("{}: hash is not base64", at()))?;
            if stored != merkle::leaf_hash(&leaf) {
                bail!(
                    "entry {index} was changed: its leaf does not hash to the hash stored with it"
                );
            }
        }
        out.push(leaf);
    }
    Ok(out)
}

/// The leaf hashes of an exported log.
fn leaves(p: &Path) -> Result<Vec<Hash>> {
    Ok(entries(p)?.iter().map(|l| merkle::leaf_hash(l)).collect())
}

/// Every entry of `mirror` (a copy verified before) is in `log` at its
/// index, unchanged.
fn compare_mirror(mirror: &Path, log: &[Vec<u8>]) -> Result<()> {
    for (i, m) in entries(mirror)?.iter().enumerate() {
        match log.get(i) {
            None => bail!(
                "entries from {i} on, in the copy verified before ({}), are gone from the log",
                mirror.display()
            ),
            Some(e) if e != m => bail!(
                "entry {i} differs from the copy verified before ({}): changed, or moved from another index",
                mirror.display()
            ),
            Some(_) => {}
        }
    }
    Ok(())
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

pub async fn run(cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify {
            log,
            checkpoint,
            key,
            mirror,
        } => {
            let v = verifier(&key)?;
            let c = open(&v, &checkpoint)?;
            let e = entries(&log)?;
            if let Some(m) = &mirror {
                compare_mirror(m, &e)?;
            }
            let l: Vec<Hash> = e.iter().map(|x| merkle::leaf_hash(x)).collect();
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
        AuditCmd::Fetch {
            server,
            log,
            checkpoint,
        } => fetch(&server.api()?, &log, &checkpoint).await?,
        AuditCmd::Tail {
            server,
            from,
            interval,
            once,
        } => tail(&server.api()?, from, interval, once).await?,
    }
    Ok(())
}

/// The tree size a checkpoint note states (its second line), unverified.
fn note_size(note: &str) -> Result<u64> {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| anyhow!("the service's checkpoint has no tree size on its second line"))
}

/// Entries `start..end` from the service, as exported lines, page by page.
async fn fetch_lines(api: &Api, start: u64, end: u64) -> Result<String> {
    let mut out = String::new();
    let mut next = start;
    while next < end {
        let page = api
            .get_text(&format!("/kbs/v0/audit/entries?start={next}&end={end}"))
            .await?;
        let before = next;
        for line in page.lines().filter(|l| !l.trim().is_empty()) {
            let index = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["index"].as_u64());
            if index != Some(next) {
                bail!(
                    "entry {next} is missing from the service's log (its checkpoint covers {end})"
                );
            }
            out.push_str(line);
            out.push('\n');
            next += 1;
        }
        if next == before {
            bail!("entry {next} is missing from the service's log (its checkpoint covers {end})");
        }
    }
    Ok(out)
}

async fn fetch(api: &Api, log: &Path, checkpoint: &Path) -> Result<()> {
    // The checkpoint first: the entries it covers are in the log by then.
    let note = api.get_text("/kbs/v0/audit/checkpoint").await?;
    let size = note_size(&note)?;
    let lines = fetch_lines(api, 0, size).await?;
    crate::write_atomically(log, lines.as_bytes())?;
    crate::write_atomically(checkpoint, note.as_bytes())?;
    println!(
        "{}",
        json!({"size": size, "log": log.display().to_string(), "checkpoint": checkpoint.display().to_string()})
    );
    Ok(())
}

async fn tail(api: &Api, from: Option<u64>, interval: f64, once: bool) -> Result<()> {
    let size = || async { note_size(&api.get_text("/kbs/v0/audit/checkpoint").await?) };
    let mut next = match from {
        Some(n) => n,
        None => size().await?,
    };
    let pause = std::time::Duration::from_secs_f64(interval.max(0.1));
    loop {
        let end = size().await?;
        if end > next {
            for line in fetch_lines(api, next, end).await?.lines() {
                let v: Value = serde_json::from_str(line)?;
                let leaf = v["leaf"]
                    .as_str()
                    .and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok())
                    .ok_or_else(|| anyhow!("entry {}: leaf is not base64", v["index"]))?;
                let entry: Value = serde_json::from_slice(&leaf).unwrap_or(Value::Null);
                println!("{}", json!({"index": v["index"], "entry": entry}));
            }
            next = end;
        }
        if once {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
    }
}
