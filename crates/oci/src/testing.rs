//! A real distribution registry for tests (Debian's `docker-registry`,
//! started on 127.0.0.1 with a temporary store, optionally behind
//! htpasswd basic auth) and a client that pushes images the test builds.
//! Only with the `testing` feature.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::Digest;

pub const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The registry binary, or `None` (with a notice) when it is absent.
pub fn registry_bin() -> Option<PathBuf> {
    let p = std::env::var_os("WARD_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/docker-registry".into());
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: no distribution registry at {} (apt-get install docker-registry, or set WARD_REGISTRY_BIN)",
            p.display()
        );
        None
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A registry process on 127.0.0.1, killed when dropped.
pub struct Running {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(bin: &Path, htpasswd: Option<&str>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let auth = match htpasswd {
        Some(line) => {
            let p = dir.path().join("htpasswd");
            std::fs::write(&p, format!("{line}\n")).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: ward-test\n    path: {}\n",
                p.display()
            )
        }
        None => String::new(),
    };
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
        dir.path().join("data").display()
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Running {
        child,
        addr,
        _dir: dir,
    }
}

/// `len` incompressible bytes (xorshift from `seed`).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tar of regular files.
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Gzip (fast) of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip-compressed tar of regular files.
pub fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    gzip(&tar(files))
}

pub struct Pusher {
    pub http: reqwest::blocking::Client,
    pub base: String,
    pub auth: Option<(String, String)>,
}

impl Pusher {
    /// A pusher to the registry at `addr` (plain HTTP), as `auth` if given.
    pub fn new(addr: &str, auth: Option<(&str, &str)>) -> Self {
        Self {
            http: reqwest::blocking::Client::new(),
            base: format!("http://{addr}"),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    pub fn req(&self, m: reqwest::Method, url: &str) -> reqwest::blocking::RequestBuilder {
        let r = self.http.request(m, url);
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    pub fn blob(&self, repo: &str, media_type: &str, data: &[u8]) -> Value {
        let d = Digest::sha256_of(data);
        let r = self
            .req(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{:?}", r.text());
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("{}{loc}", self.base)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .req(reqwest::Method::PUT, &format!("{loc}{sep}digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text());
        json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()})
    }

    pub fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &Value) -> Value {
        let data = body.to_string().into_bytes();
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header("content-type", media_type)
            .body(data.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text());
        json!({"mediaType": media_type, "digest": Digest::sha256_of(&data).to_string(), "size": data.len()})
    }

    /// An image whose config says `user` and whose layer holds `passwd`.
    pub fn image(&self, repo: &str, user: &str, passwd: &[u8], arch: &str) -> Value {
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/bin", format!("ARCH={arch}")], "Entrypoint": ["/run.sh"], "Cmd": ["serve"], "WorkingDir": "/srv", "User": user},
            "rootfs": {"type": "layers", "diff_ids": []}
        });
        let c = self.blob(
            repo,
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let base = self.blob(
            repo,
            GZIP,
            &tar_gz(&[
                ("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
                ("etc/group", b"root:x:0:\n"),
            ]),
        );
        let top = self.blob(
            repo,
            GZIP,
            &tar_gz(&[("etc/passwd", passwd), ("etc/.wh.group", b"")]),
        );
        let m =
            json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": c, "layers": [base, top]});
        let mut d = self.manifest(
            repo,
            &Digest::sha256_of(m.to_string().as_bytes()).to_string(),
            MANIFEST,
            &m,
        );
        d["platform"] = json!({"os": "linux", "architecture": arch});
        d
    }
}
