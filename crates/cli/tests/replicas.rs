//! Replicas across hosts: PostgreSQL (Debian's package, started by the
//! test) and three `ward serve` processes, each in its own network
//! namespace with its own address on a bridge the test makes (`ip netns`,
//! veth). Handshakes whose steps land on different replicas, changes that
//! reach the other replicas within a second, and the faults: the database
//! stopped, a replica cut off from it, replicas killed mid-load.
//!
//! Needs root (network namespaces) and PostgreSQL; skipped with a notice
//! otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use ward_proto::jwk::{Curve, TeeKeyPair};
use ward_store::testing::PgCluster;

mod common;
use common::kbs::{attest, attestation, session_cookie, spawn_listening, Server, AUTH, WARD};

/// The key-encryption key every replica shares (base64 of 32 bytes).
const KEK: &str = "d2FyZCByZXBsaWNhIHRlc3Qga2V5LWVuY3J5cHRpb24=";

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static NETS: AtomicUsize = AtomicUsize::new(0);

/// A bridge on this host with two addresses (clients' and the database's)
/// and one network namespace per replica, joined to it by a veth pair.
struct Net {
    bridge: String,
    namespaces: Vec<String>,
    prefix: String,
}

impl Net {
    fn new(test: &str, replicas: usize) -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/sbin/ip").exists() {
            eprintln!("NOTICE: {test}: needs root and iproute2 for network namespaces; skipped");
            return None;
        }
        let n = NETS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 10_000);
        let prefix = format!("10.{}.{}", 100 + n, std::process::id() % 250);
        let net = Self {
            bridge: format!("wb{id}"),
            namespaces: (0..replicas).map(|i| format!("ward-{id}-{i}")).collect(),
            prefix,
        };
        let br = net.bridge.as_str();
        sh(&["ip", "link", "add", br, "type", "bridge"]);
        for a in [net.client_ip(), net.db_ip()] {
            sh(&["ip", "addr", "add", &format!("{a}/24"), "dev", br]);
        }
        sh(&["ip", "link", "set", br, "up"]);
        for (i, ns) in net.namespaces.iter().enumerate() {
            let (host, inner) = (format!("wh{id}{i}"), format!("wn{id}{i}"));
            sh(&["ip", "netns", "add", ns]);
            sh(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &inner,
            ]);
            sh(&["ip", "link", "set", &inner, "netns", ns]);
            sh(&["ip", "link", "set", &host, "master", br, "up"]);
            let addr = format!("{}/24", net.replica_ip(i));
            sh(&[
                "ip", "netns", "exec", ns, "ip", "addr", "add", &addr, "dev", &inner,
            ]);
            sh(&["ip", "netns", "exec", ns, "ip", "link", "set", &inner, "up"]);
            sh(&["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
        }
        Some(net)
    }

    fn client_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    fn db_ip(&self) -> String {
        format!("{}.2", self.prefix)
    }

    fn replica_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 11 + i)
    }

    /// Drop every packet from replica `i` to the database (a route in its
    /// namespace), or let them through again.
    fn cut_off(&self, i: usize, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        let dst = format!("{}/32", self.db_ip());
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.namespaces[i],
            "ip",
            "route",
            verb,
            "blackhole",
            &dst,
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// PostgreSQL on the bridge, three replica data directories, and the
/// replicas when started.
struct Cluster {
    net: Net,
    pg: PgCluster,
    store_url: String,
    dirs: Vec<PathBuf>,
    replicas: Vec<Option<Server>>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn start(test: &str) -> Option<Self> {
        let net = Net::new(test, 3)?;
        let pg = PgCluster::start_listening(test, &[net.db_ip().parse().unwrap()])?;
        let db = PgCluster::db_of(&pg.new_database()).to_string();
        let store_url = pg.url_at(net.db_ip().parse().unwrap(), &db);
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("r{i}"))).collect();
        let mut c = Self {
            net,
            pg,
            store_url,
            dirs,
            replicas: vec![None, None, None],
            _tmp: tmp,
        };
        // The first replica creates the bootstrap admin credentials; the
        // others trust the same ones (as an operator copies them).
        c.start_replica(0);
        for i in 1..3 {
            copy_dir(&c.dirs[0].join("admin"), &c.dirs[i].join("admin"));
            c.start_replica(i);
        }
        Some(c)
    }

    fn start_replica(&mut self, i: usize) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.net.namespaces[i], WARD, "serve"])
            .args(["--insecure-http", "--dev", "--listen"])
            .arg(format!("{}:8080", self.net.replica_ip(i)))
            .arg("--data-dir")
            .arg(&self.dirs[i])
            .args(["--store", &self.store_url])
            .env("WARD_KEK", KEK);
        self.replicas[i] = Some(spawn_listening(cmd, Stdio::null()));
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}:8080", self.net.replica_ip(i))
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut s) = self.replicas[i].take() {
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe { libc::kill(s.child.id() as i32, libc::SIGKILL) };
            let _ = s.child.wait();
        }
    }

    fn admin(&self, i: usize, args: &[&str]) -> std::process::Output {
        Command::new(WARD)
            .args(["admin", "--url", &self.url(i), "--data-dir"])
            .arg(&self.dirs[0])
            .args(args)
            .env("WARD_LOG", "warn")
            .output()
            .unwrap()
    }

    fn admin_ok(&self, i: usize, args: &[&str]) {
        let out = self.admin(i, args);
        assert!(
            out.status.success(),
            "ward admin {args:?} on replica {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn put(&self, i: usize, path: &str, value: &[u8]) -> std::process::Output {
        let f = self
            ._tmp
            .path()
            .join(format!("value-{i}-{}", std::process::id()));
        std::fs::write(&f, value).unwrap();
        self.admin(
            i,
            &[
                "resource",
                "put",
                &format!("kbs:///{path}"),
                f.to_str().unwrap(),
            ],
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap()
}

/// A resource fetched with an attested cookie: the status and the
/// decrypted value when 200.
fn fetch(
    http: &reqwest::blocking::Client,
    url: &str,
    path: &str,
    cookie: &str,
    key: &TeeKeyPair,
) -> (u16, Option<Vec<u8>>) {
    let r = http
        .get(format!("{url}/kbs/v0/resource/{path}"))
        .header("cookie", cookie)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let jwe: ward_proto::jwe::FlattenedJwe = r.json().unwrap();
    (status, Some(ward_proto::jwe::decrypt(key, &jwe).unwrap()))
}

/// How long `f` took to hold, polling, or `None` if not within `limit`.
fn time_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ready(http: &reqwest::blocking::Client, url: &str) -> u16 {
    http.get(format!("{url}/readyz"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// `ward_kbs_store_change_notifications` from `/metrics`.
fn notifications(http: &reqwest::blocking::Client, url: &str) -> Option<i64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ward_kbs_store_change_notifications "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn any_step_on_any_replica_and_changes_reach_the_others_within_a_second() {
    let Some(c) = Cluster::start("replicas: any step") else {
        return;
    };
    let http = client();
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let (a, b, cc) = (c.url(0), c.url(1), c.url(2));
    let put = c.put(0, "r/t/k", b"v1");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    // The three steps of one handshake on three replicas.
    let cookie = attest(&http, &a, &b, &key);
    assert_eq!(
        fetch(&http, &cc, "r/t/k", &cookie, &key),
        (200, Some(b"v1".to_vec()))
    );
    // B has the value cached now; a put on A reaches it within 1 s.
    assert_eq!(
        fetch(&http, &b, "r/t/k", &cookie, &key).1.as_deref(),
        Some(&b"v1"[..])
    );
    assert!(c.put(0, "r/t/k", b"v2").status.success());
    let seen = time_until(Duration::from_secs(1), || {
        fetch(&http, &b, "r/t/k", &cookie, &key).1.as_deref() == Some(&b"v2"[..])
    });
    assert!(
        seen.is_some(),
        "replica B did not serve the new value within 1 s"
    );

    // A session sealed with the key that two rotations on A retire is
    // refused on B and C within 1 s (both had it verified and cached).
    for url in [&b, &cc] {
        assert_eq!(fetch(&http, url, "r/t/k", &cookie, &key).0, 200);
    }
    c.admin_ok(0, &["rotate-key", "session"]);
    c.admin_ok(0, &["rotate-key", "session"]);
    for (name, url) in [("B", &b), ("C", &cc)] {
        let refused = time_until(Duration::from_secs(1), || {
            fetch(&http, url, "r/t/k", &cookie, &key).0 == 401
        });
        assert!(
            refused.is_some(),
            "replica {name} still accepted the retired session key after 1 s"
        );
    }
    // New sessions work everywhere, across replicas again.
    let cookie = attest(&http, &cc, &a, &key);
    assert_eq!(
        fetch(&http, &b, "r/t/k", &cookie, &key).1.as_deref(),
        Some(&b"v2"[..])
    );
}

#[test]
fn a_stopped_database_makes_replicas_unready_and_they_recover_on_their_own() {
    let Some(c) = Cluster::start("replicas: database outage") else {
        return;
    };
    let http = client();
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    assert!(c.put(0, "r/t/k", b"v1").status.success());
    let cookie = attest(&http, &c.url(0), &c.url(1), &key);
    c.pg.stop();
    for i in 0..3 {
        let unready = time_until(Duration::from_secs(5), || ready(&http, &c.url(i)) == 503);
        assert!(
            unready.is_some(),
            "replica {i} stayed ready with the database stopped"
        );
        // A release cannot be recorded: refused at once, with Retry-After.
        let r = http
            .get(format!("{}/kbs/v0/resource/r/t/k", c.url(i)))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(r.status(), 503, "replica {i}");
        assert!(r.headers().get("retry-after").is_some());
        let body: Value = r.json().unwrap();
        assert!(
            body["type"].as_str().unwrap().ends_with("StoreUnavailable"),
            "{body}"
        );
    }
    assert!(
        !c.put(2, "r/t/k", b"lost").status.success(),
        "an unstored write is not acknowledged"
    );
    std::thread::sleep(Duration::from_secs(10));
    c.pg.start_server();
    for i in 0..3 {
        let back = time_until(Duration::from_secs(10), || ready(&http, &c.url(i)) == 200);
        assert!(back.is_some(), "replica {i} did not recover by itself");
    }
    assert!(c.put(2, "r/t/k", b"v2").status.success());
    let cookie = attest(&http, &c.url(1), &c.url(2), &key);
    assert_eq!(
        fetch(&http, &c.url(0), "r/t/k", &cookie, &key).1.as_deref(),
        Some(&b"v2"[..])
    );
}

#[test]
fn a_replica_cut_off_from_the_database_goes_unready_and_releases_nothing() {
    let Some(c) = Cluster::start("replicas: cut off") else {
        return;
    };
    let http = client();
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    assert!(c.put(0, "r/t/k", b"v1").status.success());
    let cookie = attest(&http, &c.url(0), &c.url(1), &key);
    // B has the resource cached before it is cut off.
    assert_eq!(fetch(&http, &c.url(1), "r/t/k", &cookie, &key).0, 200);
    let before = c.pg.psql(
        PgCluster::db_of(&c.store_url),
        "SELECT count(*) FROM audit_log",
    );
    c.net.cut_off(1, true);
    let unready = time_until(Duration::from_secs(15), || ready(&http, &c.url(1)) == 503);
    assert!(unready.is_some(), "the cut-off replica stayed ready");
    let (status, value) = fetch(&http, &c.url(1), "r/t/k", &cookie, &key);
    assert_eq!(
        (status, value),
        (503, None),
        "released what it could not audit"
    );
    // The others serve on.
    assert_eq!(ready(&http, &c.url(0)), 200);
    assert_eq!(fetch(&http, &c.url(2), "r/t/k", &cookie, &key).0, 200);
    // It says it is no longer told of changes (and polls).
    let polling = time_until(Duration::from_secs(10), || {
        notifications(&http, &c.url(1)) == Some(0)
    });
    assert!(polling.is_some(), "the notification metric did not drop");
    assert_eq!(notifications(&http, &c.url(0)), Some(1));
    c.net.cut_off(1, false);
    let listening = time_until(Duration::from_secs(10), || {
        notifications(&http, &c.url(1)) == Some(1)
    });
    assert!(listening.is_some(), "notifications did not resume");
    let back = time_until(Duration::from_secs(15), || ready(&http, &c.url(1)) == 200);
    assert!(back.is_some(), "the replica did not recover by itself");
    assert_eq!(fetch(&http, &c.url(1), "r/t/k", &cookie, &key).0, 200);
    let after: u64 =
        c.pg.psql(
            PgCluster::db_of(&c.store_url),
            "SELECT count(*) FROM audit_log",
        )
        .parse()
        .unwrap();
    // The release on C while B was cut off; B's repeat of its own earlier
    // release to this token, after, is answered from that token's cache
    // and was recorded the first time.
    assert_eq!(after, before.parse::<u64>().unwrap() + 1);
}

/// `/auth` on `a`, `/attest` on `b`, as a client that gives up on any
/// failure: the attested cookie, or `None`.
fn try_attest(
    http: &reqwest::blocking::Client,
    a: &str,
    b: &str,
    key: &TeeKeyPair,
) -> Option<String> {
    let r = http
        .post(format!("{a}/kbs/v0/auth"))
        .body(AUTH)
        .send()
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    let cookie = session_cookie(&r);
    let v: Value = r.json().ok()?;
    let nonce = v["nonce"].as_str()?;
    let r = http
        .post(format!("{b}/kbs/v0/attest"))
        .header("cookie", &cookie)
        .json(&attestation(nonce, key))
        .send()
        .ok()?;
    (r.status() == 200).then(|| session_cookie(&r))
}

/// Whole handshakes until `stop`, the steps of each on the next replicas
/// in turn; failures (a replica killed under a request) are dropped, as a
/// client would retry. Returns how many releases were answered.
fn background_handshakes(t: usize, stop: &std::sync::atomic::AtomicBool, urls: &[String]) -> usize {
    let http = client();
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let mut answered = 0usize;
    let mut n = t;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let url = |k: usize| &urls[(n + k) % urls.len()];
        let Some(ck) = try_attest(&http, url(0), url(1), &key) else {
            continue;
        };
        let got = http
            .get(format!("{}/kbs/v0/resource/r/load/k{}", url(2), n % 7))
            .header("cookie", &ck)
            .send();
        if matches!(got, Ok(ref r) if r.status() == 200) {
            answered += 1;
        }
    }
    answered
}

#[test]
fn replicas_killed_mid_load_lose_no_acknowledged_write_and_the_log_verifies() {
    let Some(mut c) = Cluster::start("replicas: kill -9") else {
        return;
    };
    let http = client();
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    // Acknowledged writes and releases, with the value each had.
    let mut acked: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut releases = 0usize;
    // A Service: each request goes to the next replica, and a client
    // retries on the next one when a replica fails.
    let mut next = 0usize;
    let mut pick = |c: &Cluster| loop {
        next = (next + 1) % 3;
        if c.replicas[next].is_some() {
            return next;
        }
    };
    let mut rng = 0x2545_f491_u64;
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut cookie: Option<String> = None;
    for k in 0..7 {
        assert!(c
            .put(0, &format!("r/load/k{k}"), b"initial")
            .status
            .success());
    }
    // Meanwhile, clients run whole handshakes (each step on the next
    // replica) so that kills land on requests in flight; each counts the
    // releases it was answered.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls: Vec<String> = (0..3).map(|i| c.url(i)).collect();
    let background: Vec<_> = (0..2)
        .map(|t| {
            let (stop, urls) = (stop.clone(), urls.clone());
            std::thread::spawn(move || background_handshakes(t, &stop, &urls))
        })
        .collect();
    for round in 0..60 {
        if round % 15 == 7 {
            let victim = (random() % 3) as usize;
            c.kill9(victim);
            if c.replicas.iter().all(Option::is_none) {
                c.start_replica(victim);
            }
        }
        if round % 15 == 12 {
            for i in 0..3 {
                if c.replicas[i].is_none() {
                    c.start_replica(i);
                }
            }
        }
        let path = format!("r/load/k{}", round % 7);
        let value = format!("value-{round}").into_bytes();
        for _ in 0..3 {
            let i = pick(&c);
            if c.put(i, &path, &value).status.success() {
                acked.insert(path.clone(), value.clone());
                break;
            }
        }
        for _ in 0..3 {
            let i = pick(&c);
            let j = pick(&c);
            let ck = match &cookie {
                Some(ck) => ck.clone(),
                None => match try_attest(&http, &c.url(i), &c.url(j), &key) {
                    Some(ck) => ck,
                    None => continue,
                },
            };
            cookie = Some(ck.clone());
            let Ok(r) = http
                .get(format!("{}/kbs/v0/resource/{path}", c.url(j)))
                .header("cookie", &ck)
                .send()
            else {
                continue;
            };
            if r.status() == 200 {
                releases += 1;
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let answered: usize = background.into_iter().map(|t| t.join().unwrap()).sum();
    for i in 0..3 {
        if c.replicas[i].is_none() {
            c.start_replica(i);
        }
    }
    eprintln!("{answered} releases answered to the background clients");
    assert!(answered > 0, "the background clients were answered");
    assert!(
        acked.len() == 7 && releases > 30,
        "the load ran: {} keys, {releases} releases",
        acked.len()
    );
    // Every acknowledged write is there, with its last acknowledged value.
    let cookie = attest(&http, &c.url(0), &c.url(1), &key);
    for (path, value) in &acked {
        assert_eq!(
            fetch(&http, &c.url(2), path, &cookie, &key).1.as_ref(),
            Some(value),
            "{path}"
        );
    }
    // Every acknowledged release has its entry, and the log verifies from
    // entry 0 to a checkpoint.
    let db = PgCluster::db_of(&c.store_url).to_string();
    let recorded: usize = c
        .pg
        .psql(&db, "SELECT count(*) FROM audit_log WHERE convert_from(leaf, 'UTF8')::jsonb->>'kind' = 'release'")
        .parse()
        .unwrap();
    // The final check above released 7 more; each background release was
    // its token's first.
    assert!(
        recorded >= releases + answered + 7,
        "{recorded} release entries for {releases} + {answered} + 7 releases"
    );
    let dir = tempfile::tempdir().unwrap();
    let (log, cp) = (dir.path().join("log.jsonl"), dir.path().join("checkpoint"));
    let fetched = Command::new(WARD)
        .args(["audit", "fetch", "--url", &c.url(1), "--data-dir"])
        .arg(&c.dirs[0])
        .arg("--log")
        .arg(&log)
        .arg("--checkpoint")
        .arg(&cp)
        .env("WARD_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let token = std::fs::read_to_string(c.dirs[0].join("admin/admin-token")).unwrap();
    let keys: Value = http
        .get(format!("{}/kbs/v0/audit/keys", c.url(2)))
        .bearer_auth(token.trim())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let verified = keys["keys"].as_array().unwrap().iter().any(|k| {
        Command::new(WARD)
            .args(["audit", "verify", "--log"])
            .arg(&log)
            .arg("--checkpoint")
            .arg(&cp)
            .args(["--key", k["verifier_key"].as_str().unwrap()])
            .env("WARD_LOG", "warn")
            .output()
            .unwrap()
            .status
            .success()
    });
    assert!(
        verified,
        "the log fetched after the load verifies against its checkpoint"
    );
}
