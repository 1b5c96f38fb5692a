//! `ward bench`: a load generator speaking the KBS protocol with sample
//! evidence against any KBS-protocol server. Reports the rate, latency
//! percentiles and — given the server's pid — server CPU time per operation
//! (from /proc/<pid>/task/*/schedstat, nanosecond resolution) and its RSS.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use ward_guest::{KbsClient, SampleAttester};
use ward_proto::ResourcePath;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// KBS base URL. Repeated: operations go to each in turn (replicas
    /// behind a round-robin Service), all steps of one operation to one.
    #[arg(long, default_value = "http://127.0.0.1:8080", action = clap::ArgAction::Append)]
    url: Vec<String>,
    /// `attest` (auth+attest), `flow` (auth+attest+get), `get` (reuse one
    /// session per worker for repeated GETs), `healthz` (GET /healthz: the
    /// transport's floor, for comparison).
    #[arg(long, default_value = "flow", value_parser = ["attest", "flow", "get", "healthz"])]
    mode: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Measured operations.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Unmeasured operations before measuring.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Measured runs of `--count` operations each, back to back. With more
    /// than one, each run is printed and the server CPU per operation is
    /// summarised by the median run (robust to a machine whose speed drifts
    /// during the measurement); latencies and rate cover all operations.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Resource to fetch in `flow` and `get` modes.
    #[arg(long, default_value = "kbs:///default/bench/key")]
    resource: String,
    /// In `get` mode, send the token as `Authorization: Bearer` instead of the cookie.
    #[arg(long)]
    bearer: bool,
    /// Server process id, for CPU time per operation and RSS. Repeated
    /// (one per `--url`, same order): CPU is summed, and each replica's CPU
    /// per operation it served is reported too.
    #[arg(long, action = clap::ArgAction::Append)]
    server_pid: Vec<u32>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Total on-CPU nanoseconds of all threads of `pid`.
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0u64;
    let dir = format!("/proc/{pid}/task");
    for t in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let p = t?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(&p) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// The value of `field` in /proc/<pid>/status (`None` for `pid`: this
/// process), trimmed.
fn status_field(pid: Option<u32>, field: &str) -> Option<String> {
    let who = pid.map_or_else(|| "self".to_string(), |p| p.to_string());
    let s = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The CPUs a process may run on (`None`: this process).
fn allowed_cpus(pid: Option<u32>) -> Option<BTreeSet<u32>> {
    parse_cpu_list(&status_field(pid, "Cpus_allowed_list")?)
}

/// A kernel CPU list (`0-3,6,8-9`); `None` if malformed.
fn parse_cpu_list(list: &str) -> Option<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let c: u32 = part.parse().ok()?;
                (c, c)
            }
        };
        if lo > hi || hi - lo > 65_536 {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    Some(cpus)
}

/// Resident set size of `pid`, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    // "12345 kB"
    status_field(Some(pid), "VmRSS")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn one_op(
    mode: &str,
    http: &reqwest::Client,
    url: &str,
    path: &ResourcePath,
    session: Option<&KbsClient>,
    bearer: bool,
) -> Result<()> {
    let fresh = || {
        KbsClient::with_http(
            http.clone(),
            url,
            Arc::new(SampleAttester::default()),
            false,
        )
    };
    match mode {
        "attest" => {
            fresh()?.attest().await?;
        }
        "flow" => {
            let c = fresh()?;
            c.attest().await?;
            c.fetch(path, false).await?;
        }
        "healthz" => {
            let r = http.get(format!("{url}/healthz")).send().await?;
            if !r.status().is_success() {
                bail!("/healthz answered {}", r.status());
            }
            r.bytes().await?;
        }
        _ => {
            let c = session.context("get mode needs a session")?;
            c.fetch(path, bearer).await?;
        }
    }
    Ok(())
}

async fn phase(
    a: &Arc<BenchArgs>,
    http: &reqwest::Client,
    path: &Arc<ResourcePath>,
    ops: usize,
) -> Result<(Vec<Duration>, Duration)> {
    let remaining = Arc::new(AtomicUsize::new(ops));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (a, http, path, remaining) = (a.clone(), http.clone(), path.clone(), remaining.clone());
        tasks.push(tokio::spawn(async move {
            let session = if a.mode == "get" {
                let c = KbsClient::with_http(
                    http.clone(),
                    &a.url[0],
                    Arc::new(SampleAttester::default()),
                    false,
                )?;
                c.attest().await?;
                Some(c)
            } else {
                None
            };
            let mut lat = Vec::new();
            while let Ok(n) =
                remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
            {
                let url = &a.url[n % a.url.len()];
                let t = Instant::now();
                one_op(&a.mode, &http, url, &path, session.as_ref(), a.bearer).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await.context("bench worker panicked")??);
    }
    Ok((all, start.elapsed()))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

pub async fn run(a: BenchArgs) -> Result<()> {
    if a.concurrency == 0 || a.count == 0 {
        bail!("--concurrency and --count must be positive");
    }
    let path = Arc::new(ResourcePath::parse_uri(&a.resource)?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .build()?;
    let a = Arc::new(a);
    if a.warmup > 0 {
        phase(&a, &http, &path, a.warmup)
            .await
            .context("warm-up failed (is the resource there and allowed?)")?;
    }
    let pids_cpu = || -> Result<Vec<u64>> { a.server_pid.iter().map(|p| cpu_ns(*p)).collect() };
    let mut per_pid = vec![0u64; a.server_pid.len()];
    let mut runs = Vec::new();
    let mut lat = Vec::with_capacity(a.count * a.runs as usize);
    let mut wall = Duration::ZERO;
    for _ in 0..a.runs {
        let cpu0 = pids_cpu()?;
        let (mut l, w) = phase(&a, &http, &path, a.count).await?;
        let cpu1 = pids_cpu()?;
        for (t, (c0, c1)) in per_pid.iter_mut().zip(cpu0.iter().zip(&cpu1)) {
            *t += c1.saturating_sub(*c0);
        }
        let cpu = (!cpu0.is_empty()).then(|| (cpu0.iter().sum(), cpu1.iter().sum()));
        l.sort();
        let run = Run::new(&l, w, cpu);
        lat.extend(l);
        wall += w;
        runs.push(run);
    }
    lat.sort();
    let all = Run::new(&lat, wall, None);
    // One run: its own figure; several: the median run's.
    let cpu_per_op_ms = median(runs.iter().filter_map(|r| r.cpu_ms_per_op));
    // Each replica's CPU per operation it served (operations go to the
    // URLs in turn), when there is one pid per URL.
    let per_replica = per_replica_ms(&per_pid, a.url.len(), lat.len());
    let rss = a.server_pid.first().copied().and_then(rss_kib);
    // Whether the server can run on this load generator's CPUs: then the
    // two preempt each other, which a remote client would not.
    let shared_cpus = a.server_pid.first().copied().and_then(|p| {
        let (server, bench) = (allowed_cpus(Some(p))?, allowed_cpus(None)?);
        Some(!server.is_disjoint(&bench))
    });
    let (jwe_us, es256_us) = crypto_reference()?;
    let mut out = json!({
        "mode": a.mode,
        "concurrency": a.concurrency,
        "operations": lat.len(),
        "seconds": wall.as_secs_f64(),
        "rate_per_sec": all.rate,
        "p50_ms": all.p50,
        "p90_ms": all.p90,
        "p99_ms": all.p99,
        "server_cpu_ms_per_op": cpu_per_op_ms,
        "server_rss_kib": rss,
        "shared_cpus": shared_cpus,
        "reference_jwe_p256_us": jwe_us,
        "reference_es256_sign_us": es256_us,
    });
    if a.runs > 1 {
        out["runs"] = runs.iter().map(Run::json).collect();
    }
    if !per_replica.is_empty() {
        out["replica_cpu_ms_per_op"] = json!(per_replica);
    }
    if a.json {
        println!("{out}");
        return Ok(());
    }
    if a.runs > 1 {
        for (i, r) in runs.iter().enumerate() {
            println!("run {}: {}", i + 1, r.line());
        }
    }
    println!(
        "mode {} concurrency {} operations {} in {:.2}s",
        a.mode,
        a.concurrency,
        lat.len(),
        wall.as_secs_f64()
    );
    println!(
        "rate {:.0}/s  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms",
        all.rate, all.p50, all.p90, all.p99
    );
    if let Some(c) = cpu_per_op_ms {
        if a.runs > 1 {
            println!("server CPU {c:.4} ms/op (median of {} runs)", a.runs);
        } else {
            println!("server CPU {c:.4} ms/op");
        }
    }
    for (i, c) in per_replica.iter().enumerate() {
        println!(
            "replica {} ({}): server CPU {c:.4} ms per operation it served",
            i + 1,
            a.url[i]
        );
    }
    if let Some(r) = rss {
        println!("server RSS {:.1} MiB", r as f64 / 1024.0);
    }
    if shared_cpus == Some(true) {
        println!(
            "note: the server may run on this load generator's CPUs, so its CPU figure includes their contention (README, Measuring)"
        );
    }
    println!(
        "machine reference (one thread, after the run): JWE to a P-256 key {jwe_us:.1} µs, ES256 signature {es256_us:.1} µs"
    );
    Ok(())
}

/// The figures of one measured run (or of all runs pooled).
struct Run {
    rate: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    cpu_ms_per_op: Option<f64>,
}

impl Run {
    /// `sorted` latencies over `wall`; `cpu` is the server's CPU time
    /// (ns) before and after.
    fn new(sorted: &[Duration], wall: Duration, cpu: Option<(u64, u64)>) -> Self {
        Self {
            rate: sorted.len() as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE),
            p50: pct(sorted, 0.50),
            p90: pct(sorted, 0.90),
            p99: pct(sorted, 0.99),
            cpu_ms_per_op: cpu
                .map(|(c0, c1)| c1.saturating_sub(c0) as f64 / sorted.len().max(1) as f64 / 1e6),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "rate_per_sec": self.rate,
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "server_cpu_ms_per_op": self.cpu_ms_per_op,
        })
    }

    fn line(&self) -> String {
        let mut s = format!(
            "rate {:.0}/s  p50 {:.3} ms  p99 {:.3} ms",
            self.rate, self.p50, self.p99
        );
        if let Some(c) = self.cpu_ms_per_op {
            s.push_str(&format!("  server CPU {c:.4} ms/op"));
        }
        s
    }
}

/// Each replica's CPU milliseconds per operation it served, from its CPU
/// nanoseconds (one entry per URL) over `ops` operations sent to `urls`
/// URLs in turn; empty unless there are several URLs, each with its pid.
fn per_replica_ms(cpu_ns: &[u64], urls: usize, ops: usize) -> Vec<f64> {
    if urls < 2 || cpu_ns.len() != urls {
        return Vec::new();
    }
    let served = (ops as f64 / urls as f64).max(1.0);
    cpu_ns.iter().map(|c| *c as f64 / served / 1e6).collect()
}

/// The median (the lower middle one for an even count), if any.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// Microseconds per JWE encryption to a P-256 key (ECDH-ES+A256KW, the
/// server's work per first GET) and per ES256 signature (its work per
/// token), timed here: CPU figures from machines, or moments, of different
/// speed can be compared through them.
fn crypto_reference() -> Result<(f64, f64)> {
    const N: u32 = 200;
    let key = ward_proto::jwk::TeeKeyPair::generate_ec(ward_proto::jwk::Curve::P256)?;
    let recipient = ward_proto::jwe::Recipient::from_jwk(&key.public_jwk())?;
    let (signer, _) = ward_proto::jwt::Es256Signer::generate()?;
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?;
        let t = Instant::now();
        for _ in 0..N {
            f()?;
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(N))
    };
    let jwe = time(&mut || {
        ward_proto::jwe::encrypt(&recipient, b"0123456789abcdef0123456789abcdef")?;
        Ok(())
    })?;
    let sig = time(&mut || {
        signer.sign_payload(br#"{"iss":"ward"}"#)?;
        Ok(())
    })?;
    Ok((jwe, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_the_kernel_prints_them() {
        let l = |s: &str| parse_cpu_list(s).map(|c| c.into_iter().collect::<Vec<_>>());
        assert_eq!(l("0-3,6,8-9"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(l("1"), Some(vec![1]));
        assert_eq!(l(""), Some(vec![]));
        for bad in ["3-1", "a", "1-", "0-99999999", "1,,x"] {
            assert_eq!(l(bad), None, "{bad}");
        }
        let me = allowed_cpus(None).expect("this process's CPU list");
        assert!(!me.is_empty());
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(status_field(None, "NoSuchField"), None);
    }

    #[test]
    fn each_replica_is_charged_for_the_operations_it_served() {
        // 3000 operations over 3 URLs: 1000 each.
        assert_eq!(
            per_replica_ms(&[500_000_000, 600_000_000, 0], 3, 3000),
            vec![0.5, 0.6, 0.0]
        );
        assert!(per_replica_ms(&[1], 1, 10).is_empty(), "one server");
        assert!(per_replica_ms(&[1, 2], 3, 10).is_empty(), "a pid missing");
    }

    #[test]
    fn median_takes_the_lower_middle_and_nothing_of_nothing() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([5.0].into_iter()), Some(5.0));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn run_figures_come_from_sorted_latencies_and_cpu_time() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let r = Run::new(&lat, Duration::from_secs(2), Some((1_000_000, 101_000_000)));
        assert_eq!(r.rate, 50.0);
        assert_eq!((r.p50, r.p90, r.p99), (50.0, 90.0, 99.0));
        assert_eq!(r.cpu_ms_per_op, Some(1.0));
        assert_eq!(
            Run::new(&lat, Duration::from_secs(1), None).cpu_ms_per_op,
            None
        );
    }
}
