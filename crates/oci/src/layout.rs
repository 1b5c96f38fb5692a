//! An OCI image layout directory (OCI image spec, "Image Layout"):
//! `oci-layout`, `index.json` and `blobs/<algorithm>/<encoded>`. A
//! reference names a manifest by its `org.opencontainers.image.ref.name`
//! annotation; an index (or a Docker manifest list) is resolved for one
//! platform. Every blob is read against its descriptor's digest and size.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::blob::{BlobError, Digest};
use crate::cache::LayerCache;
use crate::layers::{LayerEffect, LayerError, UserDatabases};

/// Manifests, indexes and configs larger than this are refused.
const MAX_JSON: u64 = 4 * 1024 * 1024;
/// How deep indexes may nest.
const MAX_DEPTH: usize = 4;

/// The platform an index is resolved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    /// linux/amd64.
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('/');
        let os = it.next().filter(|s| !s.is_empty())?.to_string();
        let architecture = it.next().filter(|s| !s.is_empty())?.to_string();
        let variant = it.next().map(str::to_string);
        it.next().is_none().then_some(Self {
            os,
            architecture,
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What the policy needs of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// The digest of the (platform) manifest: what the policy pins.
    pub manifest_digest: Digest,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// The config's `Volumes`, sorted.
    pub volumes: Vec<String>,
    /// Layer digests (compressed, as in the manifest), lowest first.
    pub layers: Vec<Digest>,
    /// Per layer, its diff_id and dm-verity root hash, when the source was
    /// asked for them (empty otherwise).
    pub layer_integrity: Vec<crate::verity::LayerIntegrity>,
    pub user_databases: UserDatabases,
}

/// Why an image could not be read (from a layout or a registry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("{}: not an OCI image layout: {reason}", path.display())]
    NotLayout { path: PathBuf, reason: String },
    #[error("{what} {digest}: {reason}")]
    Json {
        what: &'static str,
        digest: String,
        reason: String,
    },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("{0}")]
    NotFound(String),
    #[error("media type {media_type:?} of {digest} is neither a manifest nor an index")]
    MediaType { media_type: String, digest: String },
    /// The registry could not be reached, or did not answer in time.
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The registry refused the credentials (or has none for us).
    #[error("{url}: {reason}")]
    Unauthorized { url: String, reason: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{0}")]
    Credentials(String),
}

/// An image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
    index: ImageIndex,
    cache: Option<LayerCache>,
    integrity: bool,
    progress: Option<Progress>,
}

/// Told, as each layer is read, its digest, the bytes read so far and its
/// size (for a progress display).
#[derive(Clone)]
pub struct Progress(pub std::sync::Arc<ProgressFn>);

/// (layer digest, bytes read, layer size).
pub type ProgressFn = dyn Fn(&Digest, u64, u64) + Send + Sync;

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// A reader that reports its progress.
struct Reporting<'a, R> {
    inner: R,
    digest: &'a Digest,
    done: u64,
    total: u64,
    progress: &'a Progress,
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.progress.0)(self.digest, self.done, self.total);
        Ok(n)
    }
}

pub(crate) const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
pub(crate) const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

impl Layout {
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| ImageError::NotLayout {
                path: dir.to_path_buf(),
                reason: format!("{name}: {e}"),
            })
        };
        let marker: serde_json::Value =
            serde_json::from_slice(&read("oci-layout")?).map_err(|e| ImageError::NotLayout {
                path: dir.to_path_buf(),
                reason: format!("oci-layout: {e}"),
            })?;
        if marker["imageLayoutVersion"] != "1.0.0" {
            return Err(ImageError::NotLayout {
                path: dir.to_path_buf(),
                reason: format!(
                    "imageLayoutVersion {} (1.0.0 expected)",
                    marker["imageLayoutVersion"]
                ),
            });
        }
        let index = ImageIndex::from_reader(&read("index.json")?[..]).map_err(|e| {
            ImageError::NotLayout {
                path: dir.to_path_buf(),
                reason: format!("index.json: {e}"),
            }
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
            cache: None,
            integrity: false,
            progress: None,
        })
    }

    /// Keep layer results in `cache`.
    /// Report each layer's reading to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Also compute each layer's diff_id and dm-verity root hash
    /// ([`crate::verity`]).
    pub fn with_integrity(mut self, on: bool) -> Self {
        self.integrity = on;
        self
    }

    pub fn with_cache(mut self, cache: LayerCache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs").join(d.algorithm()).join(d.hex())
    }

    fn open_blob(&self, d: &Digest) -> Result<std::fs::File, ImageError> {
        let p = self.blob_path(d);
        std::fs::File::open(&p).map_err(|e| ImageError::Io {
            path: p,
            reason: e.to_string(),
        })
    }

    fn json_blob(&self, desc: &Descriptor) -> Result<(Digest, Vec<u8>), ImageError> {
        let d = Digest::parse(desc.digest().as_ref())?;
        let data = d.read_verified(self.open_blob(&d)?, Some(desc.size()), MAX_JSON)?;
        Ok((d, data))
    }

    /// The image `reference` names (its `ref.name` annotation, or the tag
    /// of `name:tag`), or the layout's only image when `None`, resolved for
    /// `platform`.
    pub fn image(
        &self,
        reference: Option<&str>,
        platform: &Platform,
    ) -> Result<ImageMeta, ImageError> {
        const REF: &str = "org.opencontainers.image.ref.name";
        let named = |d: &&Descriptor| {
            let Some(r) = reference else { return true };
            let name = d.annotations().as_ref().and_then(|a| a.get(REF));
            let tag = r
                .rsplit_once(':')
                .map(|(_, t)| t)
                .filter(|t| !t.contains('/'));
            name.is_some_and(|n| n == r || Some(n.as_str()) == tag)
        };
        let found: Vec<&Descriptor> = self.index.manifests().iter().filter(named).collect();
        let desc = match (found.as_slice(), reference) {
            ([one], _) => *one,
            ([], Some(r)) => {
                return Err(ImageError::NotFound(format!(
                    "{}: no image named {r:?}",
                    self.dir.display()
                )))
            }
            ([], None) => {
                return Err(ImageError::NotFound(format!(
                    "{}: no image",
                    self.dir.display()
                )))
            }
            (_, _) => {
                return Err(ImageError::NotFound(format!(
                    "{}: {} images; name one (ref.name annotation)",
                    self.dir.display(),
                    found.len()
                )))
            }
        };
        self.resolve(desc, platform, 0)
    }

    fn resolve(
        &self,
        desc: &Descriptor,
        platform: &Platform,
        depth: usize,
    ) -> Result<ImageMeta, ImageError> {
        let (digest, data) = self.json_blob(desc)?;
        resolve(
            self,
            desc.media_type().as_ref(),
            digest,
            &data,
            platform,
            depth,
        )
    }
}

/// Where an image's blobs come from (a layout, a registry).
pub(crate) trait Source: Sync {
    /// A manifest, index or config blob of `desc`, checked against it.
    fn json(&self, desc: &Descriptor) -> Result<(Digest, Vec<u8>), ImageError>;
    /// The bytes of layer `digest` as stored (compressed), unchecked: the
    /// caller checks them as it reads.
    fn layer(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, ImageError>;
    /// Where layer results are kept between runs, if anywhere.
    fn cache(&self) -> Option<&LayerCache>;
    /// Whether layers' dm-verity root hashes are wanted.
    fn integrity(&self) -> bool;
    /// Where reading progress goes, if anywhere.
    fn progress(&self) -> Option<&Progress>;
}

impl Source for Layout {
    fn json(&self, desc: &Descriptor) -> Result<(Digest, Vec<u8>), ImageError> {
        self.json_blob(desc)
    }

    fn layer(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, ImageError> {
        Ok(Box::new(self.open_blob(digest)?))
    }

    fn integrity(&self) -> bool {
        self.integrity
    }

    fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    fn cache(&self) -> Option<&LayerCache> {
        self.cache.as_ref()
    }
}

/// The image of manifest or index `data` (of `media_type`, with `digest`)
/// for `platform`, its blobs from `source`.
pub(crate) fn resolve(
    source: &dyn Source,
    media_type: &str,
    digest: Digest,
    data: &[u8],
    platform: &Platform,
    depth: usize,
) -> Result<ImageMeta, ImageError> {
    let json_err = |what, e: &dyn std::fmt::Display| ImageError::Json {
        what,
        digest: digest.to_string(),
        reason: e.to_string(),
    };
    if INDEX_TYPES.contains(&media_type) {
        if depth >= MAX_DEPTH {
            return Err(json_err("index", &"indexes nest too deep"));
        }
        let index = ImageIndex::from_reader(data).map_err(|e| json_err("index", &e))?;
        let chosen = index
            .manifests()
            .iter()
            .find(|m| {
                m.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == platform.os
                        && p.architecture().to_string() == platform.architecture
                        && (platform.variant.is_none()
                            || p.variant().as_deref() == platform.variant.as_deref())
                })
            })
            .ok_or_else(|| {
                let offered: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|m| m.platform().as_ref())
                    .map(|p| format!("{}/{}", p.os(), p.architecture()))
                    .collect();
                ImageError::NotFound(format!(
                    "index {digest} has no manifest for {platform} (it has {})",
                    offered.join(", ")
                ))
            })?;
        let (d, data) = source.json(chosen)?;
        return resolve(
            source,
            chosen.media_type().as_ref(),
            d,
            &data,
            platform,
            depth + 1,
        );
    }
    if !MANIFEST_TYPES.contains(&media_type) {
        return Err(ImageError::MediaType {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
        });
    }
    let manifest = ImageManifest::from_reader(data).map_err(|e| json_err("manifest", &e))?;
    let (config_digest, config) = source.json(manifest.config())?;
    let config = ImageConfiguration::from_reader(&config[..]).map_err(|e| ImageError::Json {
        what: "config",
        digest: config_digest.to_string(),
        reason: e.to_string(),
    })?;
    let c = config.config().clone().unwrap_or_default();
    // Layers are read in parallel (each is downloaded, decompressed and
    // hashed once), then applied in order.
    let descs = manifest.layers();
    let integrity = source.integrity();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Slot = std::sync::Mutex<Option<Result<(Digest, LayerEffect), ImageError>>>;
    let slots: Vec<Slot> = descs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.min(descs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(l) = descs.get(i) else { break };
                let r = layer_effect(source, l, integrity);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let effects = slots.into_iter().map(|m| {
        m.into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every layer was read")
    });
    let mut dbs = UserDatabases::default();
    let mut layers = Vec::new();
    let mut layer_integrity = Vec::new();
    let diff_ids = config.rootfs().diff_ids();
    for (i, e) in effects.into_iter().enumerate() {
        let (d, effect) = e?;
        if let Some(li) = &effect.integrity {
            // The config names what each layer decompresses to.
            let want = diff_ids.get(i).map(String::as_str).unwrap_or("");
            let got = format!("sha256:{}", hex::encode(li.diff_id));
            if want != got {
                return Err(ImageError::Json {
                    what: "config",
                    digest: config_digest.to_string(),
                    reason: format!(
                        "layer {d} decompresses to {got}, the config's diff_id is {want:?}"
                    ),
                });
            }
            layer_integrity.push(li.clone());
        }
        dbs.apply_effect(&effect);
        layers.push(d);
    }
    Ok(ImageMeta {
        manifest_digest: digest,
        env: c.env().clone().unwrap_or_default(),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        volumes: c
            .volumes()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        layers,
        layer_integrity,
        user_databases: dbs,
    })
}

/// What layer `l` does, from the cache or read (and verified) from
/// `source`.
fn layer_effect(
    source: &dyn Source,
    l: &Descriptor,
    integrity: bool,
) -> Result<(Digest, LayerEffect), ImageError> {
    let d = Digest::parse(l.digest().as_ref())?;
    if let Some(e) = source.cache().and_then(|c| c.get(&d)) {
        if !integrity || e.integrity.is_some() {
            return Ok((d, e));
        }
    }
    let blob = source.layer(&d)?;
    let blob: Box<dyn Read + '_> = match source.progress() {
        Some(p) => Box::new(Reporting {
            inner: blob,
            digest: &d,
            done: 0,
            total: l.size(),
            progress: p,
        }),
        None => blob,
    };
    let mut r = VerifyingReader::new(blob, &d);
    let e = LayerEffect::read_with(&d.to_string(), l.media_type().as_ref(), &mut r, integrity)?;
    r.finish(l.size())?;
    if let Some(c) = source.cache() {
        c.put(&d, &e);
    }
    Ok((d, e))
}

/// Hashes what is read through it; [`VerifyingReader::finish`] reads the
/// rest and checks digest and size, so a layer is trusted only whole.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    ctx: aws_lc_rs::digest::Context,
    digest: Digest,
    read: u64,
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(inner: R, digest: &Digest) -> Self {
        let alg = if digest.algorithm() == "sha512" {
            &aws_lc_rs::digest::SHA512
        } else {
            &aws_lc_rs::digest::SHA256
        };
        Self {
            inner,
            ctx: aws_lc_rs::digest::Context::new(alg),
            digest: digest.clone(),
            read: 0,
        }
    }

    pub(crate) fn finish(mut self, size: u64) -> Result<(), BlobError> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| BlobError::Io {
            digest: self.digest.to_string(),
            reason: e.to_string(),
        })?;
        if self.read != size {
            return Err(BlobError::Size {
                digest: self.digest.to_string(),
                expected: size,
                actual: self.read,
            });
        }
        let actual = hex::encode(self.ctx.finish().as_ref());
        if actual != self.digest.hex() {
            return Err(BlobError::Mismatch {
                digest: self.digest.to_string(),
                actual: format!("{}:{actual}", self.digest.algorithm()),
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::layers::tests::{gzip, tar, GZIP};

    /// Write `data` as a blob; its descriptor JSON.
    fn blob(dir: &Path, media_type: &str, data: &[u8]) -> serde_json::Value {
        let d = Digest::sha256_of(data);
        let p = dir.join("blobs/sha256");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(d.hex()), data).unwrap();
        json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()})
    }

    fn image(dir: &Path, user: &str, passwd: &[u8]) -> serde_json::Value {
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/e"], "Cmd": ["c"], "WorkingDir": "/w", "User": user},
            "rootfs": {"type": "layers", "diff_ids": []}
        });
        let c = blob(
            dir,
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let l = blob(dir, GZIP, &gzip(&tar(&[("etc/passwd", Some(passwd))])));
        let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": c, "layers": [l]});
        blob(
            dir,
            "application/vnd.oci.image.manifest.v1+json",
            m.to_string().as_bytes(),
        )
    }

    fn layout(dir: &Path, manifests: Vec<serde_json::Value>) {
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    }

    #[test]
    fn resolves_an_index_for_the_platform_and_reads_config_and_users() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let mut amd = image(d, "app", b"app:x:7:7::/:/bin/sh\n");
        amd["platform"] = json!({"os": "linux", "architecture": "amd64"});
        let mut arm = image(d, "root", b"root:x:0:0::/:/bin/sh\n");
        arm["platform"] = json!({"os": "linux", "architecture": "arm64"});
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [arm, amd.clone()]});
        let mut top = blob(
            d,
            "application/vnd.oci.image.index.v1+json",
            idx.to_string().as_bytes(),
        );
        top["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
        layout(d, vec![top]);

        let l = Layout::open(d).unwrap();
        let m = l
            .image(Some("example.com/app:v1"), &Platform::default())
            .unwrap();
        assert_eq!(m.manifest_digest.to_string(), amd["digest"]);
        assert_eq!((m.user.as_str(), m.working_dir.as_str()), ("app", "/w"));
        assert_eq!(
            (m.entrypoint.clone(), m.cmd.clone(), m.env.clone()),
            (
                vec!["/e".to_string()],
                vec!["c".to_string()],
                vec!["PATH=/bin".to_string()]
            )
        );
        assert_eq!(
            m.user_databases.passwd.as_deref(),
            Some(&b"app:x:7:7::/:/bin/sh\n"[..])
        );
        let arm = l
            .image(None, &Platform::parse("linux/arm64").unwrap())
            .unwrap();
        assert_eq!(arm.user, "root");

        let e = l
            .image(None, &Platform::parse("linux/s390x").unwrap())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("no manifest for linux/s390x (it has linux/arm64, linux/amd64)"),
            "{e}"
        );
        let e = l.image(Some("v2"), &Platform::default()).unwrap_err();
        assert!(e.to_string().contains("no image named \"v2\""), "{e}");
    }

    #[test]
    fn progress_is_reported_for_every_layer_to_its_size() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let mut m = image(d, "app", b"app:x:7:7::/:/bin/sh\n");
        m["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
        layout(d, vec![m]);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
            String,
            (u64, u64),
        >::new()));
        let s2 = seen.clone();
        let l = Layout::open(d)
            .unwrap()
            .with_progress(Progress(std::sync::Arc::new(move |dg, done, total| {
                s2.lock().unwrap().insert(dg.to_string(), (done, total));
            })));
        let meta = l.image(Some("v1"), &Platform::default()).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), meta.layers.len());
        for (done, total) in seen.values() {
            assert_eq!(done, total);
            assert!(*total > 0);
        }
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let m = image(d, "app", b"app:x:7:7::/:/bin/sh\n");
        layout(d, vec![m]);
        // Corrupt the layer (the gzip blob): its digest no longer matches.
        let blobs = d.join("blobs/sha256");
        for e in std::fs::read_dir(&blobs).unwrap() {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            if data.starts_with(&[0x1f, 0x8b]) {
                let mut bad = gzip(&tar(&[("etc/passwd", Some(b"evil:x:0:0::/:/bin/sh\n"))]));
                bad.truncate(bad.len());
                std::fs::write(&p, bad).unwrap();
            }
        }
        let e = Layout::open(d)
            .unwrap()
            .image(None, &Platform::default())
            .unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::Blob(BlobError::Mismatch { .. } | BlobError::Size { .. })
            ),
            "{e}"
        );

        assert!(matches!(
            Layout::open(&d.join("nope")),
            Err(ImageError::NotLayout { .. })
        ));
        assert_eq!(Platform::parse("linux"), None);
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
    }
}
