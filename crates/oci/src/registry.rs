//! Images from registries over the OCI distribution API
//! (distribution-spec v1.1: `GET /v2/<name>/manifests/<reference>`,
//! `GET /v2/<name>/blobs/<digest>`), with the authentication registries
//! use: none, the bearer-token challenge (`WWW-Authenticate: Bearer
//! realm=…,service=…,scope=…`, the Docker token protocol), and basic
//! credentials, taken from a Docker `config.json` (`auths.<registry>.auth`
//! = base64 of `user:password`). A manifest fetched by tag gets the digest
//! of its bytes, checked against `Docker-Content-Digest` when the registry
//! sends one; fetched by digest, its bytes must have that digest.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use oci_spec::image::Descriptor;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use crate::blob::Digest;
use crate::cache::LayerCache;
use crate::layout::{
    resolve, ImageError, ImageMeta, Platform, Source, INDEX_TYPES, MANIFEST_TYPES,
};
use crate::reference::{Reference, DOCKER_HUB, DOCKER_HUB_API};

/// Manifests and configs larger than this are refused.
const MAX_JSON: u64 = 4 * 1024 * 1024;

/// Basic credentials by registry host.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, (String, String)>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Registries only: passwords never appear in logs.
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    /// The `auths` of a Docker `config.json`.
    pub fn from_docker_config(path: &Path) -> Result<Self, ImageError> {
        let bad = |reason: String| ImageError::Credentials(format!("{}: {reason}", path.display()));
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let mut out = BTreeMap::new();
        if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
            for (host, entry) in auths {
                let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
                    continue;
                };
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .map_err(|_| bad(format!("auths.{host}.auth is not base64")))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| bad(format!("auths.{host}.auth is not text")))?;
                let (user, pass) = text
                    .split_once(':')
                    .ok_or_else(|| bad(format!("auths.{host}.auth is not user:password")))?;
                // Docker writes Docker Hub as a URL.
                let host = host
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                out.insert(host, (user.to_string(), pass.to_string()));
            }
        }
        Ok(Self(out))
    }

    pub fn insert(&mut self, registry: &str, user: &str, password: &str) {
        self.0.insert(
            registry.to_string(),
            (user.to_string(), password.to_string()),
        );
    }

    fn get(&self, registry: &str) -> Option<&(String, String)> {
        self.0.get(registry).or_else(|| {
            (registry == DOCKER_HUB)
                .then(|| {
                    self.0
                        .get("index.docker.io")
                        .or_else(|| self.0.get(DOCKER_HUB_API))
                })
                .flatten()
        })
    }
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registries spoken to over plain HTTP (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// Registry → host to use instead (`--registry-mirror ghcr.io=127.0.0.1:5000`).
    pub mirrors: BTreeMap<String, String>,
    pub credentials: Credentials,
    /// Deadline of each HTTP request (connect and whole answer).
    pub timeout: Duration,
    pub platform: Platform,
    /// Where layer results are kept between runs.
    pub cache: Option<LayerCache>,
    /// Also compute each layer's dm-verity root hash.
    pub integrity: bool,
    /// Where layer reading progress goes.
    pub progress: Option<crate::layout::Progress>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            mirrors: BTreeMap::new(),
            credentials: Credentials::default(),
            timeout: Duration::from_secs(30),
            platform: Platform::default(),
            cache: None,
            integrity: false,
            progress: None,
        }
    }
}

/// A client of the distribution API.
pub struct Registry {
    opts: Options,
    http: Client,
    /// Bearer tokens by (host, scope).
    tokens: Mutex<BTreeMap<(String, String), String>>,
}

/// A registry endpoint for one repository.
struct Repo<'a> {
    registry: &'a Registry,
    /// The registry as named in the reference (credentials are by it).
    name: String,
    base: String,
    host: String,
    repository: String,
}

impl Registry {
    pub fn new(opts: Options) -> Result<Self, ImageError> {
        let http = Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ImageError::Unreachable {
                url: String::new(),
                reason: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            opts,
            http,
            tokens: Mutex::new(BTreeMap::new()),
        })
    }

    fn repo(&self, r: &Reference) -> Repo<'_> {
        let host = self
            .opts
            .mirrors
            .get(&r.registry)
            .cloned()
            .unwrap_or_else(|| {
                if r.registry == DOCKER_HUB {
                    DOCKER_HUB_API.to_string()
                } else {
                    r.registry.clone()
                }
            });
        let insecure = self
            .opts
            .insecure
            .iter()
            .any(|i| *i == r.registry || *i == host);
        let scheme = if insecure { "http" } else { "https" };
        Repo {
            registry: self,
            name: r.registry.clone(),
            base: format!("{scheme}://{host}/v2/{}", r.repository),
            host,
            repository: r.repository.clone(),
        }
    }

    /// The image `r` names, resolved for the configured platform.
    pub fn image(&self, r: &Reference) -> Result<ImageMeta, ImageError> {
        let repo = self.repo(r);
        let (media_type, digest, data) = repo.manifest(&r.manifest_ref(), r.digest.as_ref())?;
        resolve(&repo, &media_type, digest, &data, &self.opts.platform, 0)
    }
}

/// `key="value"` pairs of a `WWW-Authenticate` challenge.
fn challenge_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.insert(key, value);
        rest = next;
    }
    out
}

impl Repo<'_> {
    fn unreachable(url: &str, e: &reqwest::Error) -> ImageError {
        let reason = if e.is_timeout() {
            "no answer in time".to_string()
        } else {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(c) = src {
                s.push_str(": ");
                s.push_str(&c.to_string());
                src = c.source();
            }
            s
        };
        ImageError::Unreachable {
            url: url.to_string(),
            reason,
        }
    }

    fn basic(&self) -> Option<String> {
        self.registry
            .opts
            .credentials
            .get(&self.name)
            .map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            })
    }

    fn scope(&self) -> String {
        format!("repository:{}:pull", self.repository)
    }

    /// GET `url`, answering the registry's authentication challenge once.
    fn get(&self, url: &str, accept: &str) -> Result<Response, ImageError> {
        let key = (self.host.clone(), self.scope());
        let cached = self
            .registry
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let send = |auth: Option<&str>| {
            let mut rq = self.registry.http.get(url).header(ACCEPT, accept);
            if let Some(a) = auth {
                rq = rq.header(AUTHORIZATION, a);
            }
            rq.send().map_err(|e| Self::unreachable(url, &e))
        };
        let first = send(cached.as_deref())?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let challenge = first
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let auth = if let Some(params) = challenge
            .strip_prefix("Bearer ")
            .or_else(|| challenge.strip_prefix("bearer "))
        {
            let token = self.token(&challenge_params(params), url)?;
            self.registry
                .tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, token.clone());
            token
        } else if challenge.to_ascii_lowercase().starts_with("basic") {
            self.basic().ok_or_else(|| ImageError::Unauthorized {
                url: url.to_string(),
                reason: format!(
                    "the registry wants credentials and none are configured for {}",
                    self.name
                ),
            })?
        } else {
            return Err(ImageError::Unauthorized {
                url: url.to_string(),
                reason: format!("401 with an authentication challenge this client does not speak: {challenge:?}"),
            });
        };
        let again = send(Some(&auth))?;
        if again.status() == StatusCode::UNAUTHORIZED || again.status() == StatusCode::FORBIDDEN {
            return Err(ImageError::Unauthorized {
                url: url.to_string(),
                reason: format!(
                    "the registry refused the credentials for {} (HTTP {})",
                    self.name,
                    again.status().as_u16()
                ),
            });
        }
        Ok(again)
    }

    /// A bearer token from the challenge's realm (with basic credentials
    /// when configured).
    fn token(&self, params: &BTreeMap<String, String>, url: &str) -> Result<String, ImageError> {
        let realm = params
            .get("realm")
            .ok_or_else(|| ImageError::Unauthorized {
                url: url.to_string(),
                reason: "bearer challenge without a realm".into(),
            })?;
        let mut u = reqwest::Url::parse(realm).map_err(|e| ImageError::Unauthorized {
            url: realm.clone(),
            reason: format!("the token realm is not a URL: {e}"),
        })?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("scope", params.get("scope").map_or(&self.scope(), |s| s));
            if let Some(s) = params.get("service") {
                q.append_pair("service", s);
            }
        }
        let mut rq = self.registry.http.get(u);
        if let Some(b) = self.basic() {
            rq = rq.header(AUTHORIZATION, b);
        }
        let r = rq.send().map_err(|e| Self::unreachable(realm, &e))?;
        if !r.status().is_success() {
            return Err(ImageError::Unauthorized {
                url: realm.clone(),
                reason: format!(
                    "the token service refused (HTTP {}); check the credentials for {}",
                    r.status().as_u16(),
                    self.name
                ),
            });
        }
        let body = read_limited(r, realm, MAX_JSON)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ImageError::Unauthorized {
                url: realm.clone(),
                reason: format!("token answer is not JSON: {e}"),
            })?;
        let t = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str());
        t.map(|t| format!("Bearer {t}"))
            .ok_or_else(|| ImageError::Unauthorized {
                url: realm.clone(),
                reason: "token answer holds no token".into(),
            })
    }

    fn check_status(&self, r: Response, url: &str, what: &str) -> Result<Response, ImageError> {
        match r.status() {
            s if s.is_success() => Ok(r),
            StatusCode::NOT_FOUND => Err(ImageError::NotFound(format!(
                "{url}: {what} not found in {}/{}",
                self.name, self.repository
            ))),
            s => Err(ImageError::Status {
                url: url.to_string(),
                status: s.as_u16(),
            }),
        }
    }

    /// The manifest or index `reference` (tag or digest): media type,
    /// digest, bytes.
    fn manifest(
        &self,
        reference: &str,
        pinned: Option<&Digest>,
    ) -> Result<(String, Digest, Vec<u8>), ImageError> {
        let url = format!("{}/manifests/{reference}", self.base);
        let accept = [INDEX_TYPES, MANIFEST_TYPES].concat().join(", ");
        let r = self.check_status(
            self.get(&url, &accept)?,
            &url,
            &format!("manifest {reference}"),
        )?;
        let headers: HeaderMap = r.headers().clone();
        let body = read_limited(r, &url, MAX_JSON)?;
        let digest = match pinned {
            Some(d) => {
                d.check(&body, None)?;
                d.clone()
            }
            None => Digest::sha256_of(&body),
        };
        if let Some(sent) = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            let sent = Digest::parse(sent)?;
            if sent.algorithm() == digest.algorithm() && sent != digest {
                return Err(crate::blob::BlobError::Mismatch {
                    digest: sent.to_string(),
                    actual: digest.to_string(),
                }
                .into());
            }
        }
        let media_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
            .filter(|s| !s.is_empty() && s != "application/json")
            .or_else(|| {
                // Fall back to the document's own mediaType field.
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        Ok((media_type, digest, body))
    }

    fn blob(&self, digest: &Digest) -> Result<Response, ImageError> {
        let url = format!("{}/blobs/{digest}", self.base);
        let r = self.get(&url, "*/*")?;
        self.check_status(r, &url, &format!("blob {digest}"))
    }
}

fn read_limited(r: Response, url: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| ImageError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(ImageError::Unreachable {
            url: url.to_string(),
            reason: format!("answer larger than {limit} bytes"),
        });
    }
    Ok(out)
}

impl Source for Repo<'_> {
    fn json(&self, desc: &Descriptor) -> Result<(Digest, Vec<u8>), ImageError> {
        let d = Digest::parse(desc.digest().as_ref())?;
        let media_type = desc.media_type().to_string();
        if INDEX_TYPES.contains(&media_type.as_str())
            || MANIFEST_TYPES.contains(&media_type.as_str())
        {
            let (_, d, body) = self.manifest(&d.to_string(), Some(&d))?;
            crate::blob::Digest::check(&d, &body, Some(desc.size()))?;
            return Ok((d, body));
        }
        let r = self.blob(&d)?;
        let data = d.read_verified(r, Some(desc.size()), MAX_JSON)?;
        Ok((d, data))
    }

    fn layer(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, ImageError> {
        Ok(Box::new(self.blob(digest)?))
    }

    fn cache(&self) -> Option<&LayerCache> {
        self.registry.opts.cache.as_ref()
    }

    fn integrity(&self) -> bool {
        self.registry.opts.integrity
    }

    fn progress(&self) -> Option<&crate::layout::Progress> {
        self.registry.opts.progress.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenges_and_docker_credentials() {
        let p = challenge_params(
            r#"realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.example.com/token");
        assert_eq!(p["service"], "registry.example.com");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let p = challenge_params("realm=https://x/token, service=x");
        assert_eq!(
            (p["realm"].as_str(), p["service"].as_str()),
            ("https://x/token", "x")
        );

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("me:s3cret");
        std::fs::write(&f, format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "127.0.0.1:5000": {{"auth": "{auth}"}}, "nothing": {{}}}}}}"#)).unwrap();
        let c = Credentials::from_docker_config(&f).unwrap();
        assert_eq!(c.get("127.0.0.1:5000").unwrap().0, "me");
        assert_eq!(c.get(DOCKER_HUB).unwrap().1, "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::write(&f, r#"{"auths": {"x": {"auth": "***"}}}"#).unwrap();
        let e = Credentials::from_docker_config(&f).unwrap_err().to_string();
        assert!(e.contains("auths.x.auth is not base64"), "{e}");
    }
}
