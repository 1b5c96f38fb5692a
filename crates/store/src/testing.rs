//! A throwaway PostgreSQL server for tests: Debian's `postgresql` package
//! (`initdb`, `pg_ctl`), a cluster in a temporary directory listening on
//! 127.0.0.1 at a free port, owned by the `postgres` user when the tests
//! run as root (PostgreSQL refuses to run as root). Tests that need it skip
//! with a notice when the binaries are absent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running PostgreSQL cluster; stopped (immediately) when dropped.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Run commands as this user (when the tests run as root).
    as_user: Option<&'static str>,
    /// `listen_addresses` (127.0.0.1 is always one of them).
    listen: String,
    /// More server settings (`-c name=value …`).
    settings: String,
}

/// The directory of `initdb` and `pg_ctl`: `$WARD_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn pg_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARD_PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl PgCluster {
    /// Create and start a cluster, or `None` (with a notice naming `test`)
    /// when PostgreSQL is not installed.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_listening(test, &[])
    }

    /// Like [`start`](Self::start), listening on `extra` addresses too
    /// (which must exist, as on a bridge a test made).
    pub fn start_listening(test: &str, extra: &[std::net::IpAddr]) -> Option<Self> {
        Self::start_with(test, extra, None)
    }

    /// Like [`start`](Self::start), with TLS on: `cert_pem` and `key_pem`
    /// are the server's certificate (for 127.0.0.1) and key.
    pub fn start_tls(test: &str, cert_pem: &str, key_pem: &str) -> Option<Self> {
        Self::start_with(test, &[], Some((cert_pem, key_pem)))
    }

    fn start_with(
        test: &str,
        extra: &[std::net::IpAddr],
        tls: Option<(&str, &str)>,
    ) -> Option<Self> {
        let Some(bin) = pg_bin() else {
            eprintln!("NOTICE: {test}: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, WARD_PG_BIN unset); skipped");
            return None;
        };
        let as_user = if is_root() { Some("postgres") } else { None };
        let dir = tempfile::Builder::new()
            .prefix("ward-pg-")
            .tempdir()
            .expect("a temporary directory");
        if let Some(u) = as_user {
            let ok = Command::new("chown")
                .arg(u)
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                eprintln!("NOTICE: {test}: running as root and cannot hand a directory to the {u} user; skipped");
                return None;
            }
        }
        let c = Self {
            bin,
            dir,
            port: free_port(),
            as_user,
            listen: std::iter::once("127.0.0.1".to_string())
                .chain(extra.iter().map(|a| a.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            settings: String::new(),
        };
        let out = c.run(
            "initdb",
            &[
                "-D",
                &c.data().display().to_string(),
                "-U",
                "ward",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !extra.is_empty() {
            // Clients on the test's own network (10.0.0.0/8, the bridges a
            // test makes) are as trusted as loopback ones.
            use std::io::Write;
            let mut hba = std::fs::OpenOptions::new()
                .append(true)
                .open(c.data().join("pg_hba.conf"))
                .expect("pg_hba.conf");
            writeln!(hba, "host all all 10.0.0.0/8 trust").expect("pg_hba.conf");
        }
        let mut c = c;
        if let Some((cert, key)) = tls {
            let (crt, k) = (
                c.dir.path().join("server.crt"),
                c.dir.path().join("server.key"),
            );
            std::fs::write(&crt, cert).expect("server.crt");
            std::fs::write(&k, key).expect("server.key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if let Some(u) = c.as_user {
                for f in [&crt, &k] {
                    let ok = Command::new("chown")
                        .arg(u)
                        .arg(f)
                        .status()
                        .map(|s| s.success());
                    assert!(matches!(ok, Ok(true)), "chown {}", f.display());
                }
            }
            c.settings = format!(
                "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                crt.display(),
                k.display()
            );
        }
        c.start_server();
        Some(c)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = match self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"))
    }

    /// Start the server (again, after [`stop`](Self::stop)) and wait until
    /// it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -c listen_addresses={} -k {} -c max_connections=200 {}",
            self.port,
            self.listen,
            self.dir.path().display(),
            self.settings
        );
        let data = self.data().display().to_string();
        let log = self.dir.path().join("log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stop the server at once (connections are cut, as in a crash).
    pub fn stop(&self) {
        let data = self.data().display().to_string();
        let out = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new empty database, and its URL.
    pub fn new_database(&self) -> String {
        let name = format!("t{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The URL of database `name` (plain TCP on 127.0.0.1).
    pub fn url(&self, name: &str) -> String {
        self.url_at("127.0.0.1".parse().expect("an address"), name)
    }

    /// The URL of database `name` at address `host`.
    pub fn url_at(&self, host: std::net::IpAddr, name: &str) -> String {
        format!(
            "postgres://ward@{host}:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Run SQL in database `db` with `psql`; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "ward",
                "-d",
                db,
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `pg_dump` of database `db` (data and schema, plain SQL).
    pub fn dump(&self, db: &str) -> Vec<u8> {
        let port = self.port.to_string();
        let out = self.run(
            "pg_dump",
            &["-h", "127.0.0.1", "-p", &port, "-U", "ward", db],
        );
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The database name at the end of a URL made by [`url`](Self::url).
    pub fn db_of(url: &str) -> &str {
        let tail = url.rsplit('/').next().unwrap_or_default();
        tail.split('?').next().unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}
