//! The image's `/etc/passwd` and `/etc/group`, read through its layers in
//! order as the runtime would see them (OCI image spec, "Image Layer
//! Filesystem Changeset"): a later layer's file replaces an earlier one's;
//! `.wh.<name>` deletes `<name>` from the layers below; `.wh..wh..opq`
//! empties its directory of what the layers below put there. Layers are
//! tar, gzip-compressed tar or zstd-compressed tar, by media type.

use std::io::Read;

/// The user databases of an image (`None`: the file is not there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDatabases {
    pub passwd: Option<Vec<u8>>,
    pub group: Option<Vec<u8>>,
}

/// Why a layer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error(
        "layer {layer}: media type {media_type:?} is not a tar layer (tar, tar+gzip, tar+zstd)"
    )]
    MediaType { layer: String, media_type: String },
    #[error("layer {layer}: {reason}")]
    Tar { layer: String, reason: String },
    #[error("layer {layer}: {path} is larger than {limit} bytes")]
    TooLarge {
        layer: String,
        path: String,
        limit: u64,
    },
}

/// User databases larger than this are refused.
const MAX_DB: u64 = 4 * 1024 * 1024;

/// How a layer's bytes are compressed, from its media type (OCI and
/// Docker names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        Some(match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Self::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Self::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Self::Zstd,
            _ => return None,
        })
    }
}

const TARGETS: [&str; 2] = ["etc/passwd", "etc/group"];

/// `./etc//passwd` → `etc/passwd`.
fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl UserDatabases {
    fn slot(&mut self, target: &str) -> &mut Option<Vec<u8>> {
        if target == "etc/passwd" {
            &mut self.passwd
        } else {
            &mut self.group
        }
    }

    /// Apply one layer (its compressed bytes as read from `r`, named
    /// `layer` in messages) over what the layers below gave.
    pub fn apply(&mut self, layer: &str, media_type: &str, r: impl Read) -> Result<(), LayerError> {
        let effect = LayerEffect::read(layer, media_type, r)?;
        self.apply_effect(&effect);
        Ok(())
    }

    /// Apply what a layer does to the user databases.
    pub fn apply_effect(&mut self, effect: &LayerEffect) {
        for (i, target) in TARGETS.iter().enumerate() {
            let slot = self.slot(target);
            if effect.deleted[i] {
                *slot = None;
            }
            if let Some(d) = &effect.added[i] {
                *slot = Some(d.clone());
            }
        }
    }
}

/// What one layer does to `/etc/passwd` and `/etc/group`: whether it
/// deletes what lies below, and what it puts there. Kept per layer digest
/// by the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerEffect {
    /// passwd, group.
    pub deleted: [bool; 2],
    pub added: [Option<Vec<u8>>; 2],
    /// The layer's diff_id and dm-verity root hash, when asked for.
    pub integrity: Option<crate::verity::LayerIntegrity>,
}

impl LayerEffect {
    /// Read a layer (compressed as `media_type` says) to the end.
    pub fn read(layer: &str, media_type: &str, r: impl Read) -> Result<Self, LayerError> {
        Self::read_with(layer, media_type, r, false)
    }

    /// Read a layer, and with `integrity` also its diff_id and the
    /// dm-verity root hash of its tarfs image ([`crate::verity`]), in the
    /// same pass.
    pub fn read_with(
        layer: &str,
        media_type: &str,
        r: impl Read,
        integrity: bool,
    ) -> Result<Self, LayerError> {
        let compression =
            Compression::of_media_type(media_type).ok_or_else(|| LayerError::MediaType {
                layer: layer.to_string(),
                media_type: media_type.to_string(),
            })?;
        let tar_err = |e: std::io::Error| LayerError::Tar {
            layer: layer.to_string(),
            reason: e.to_string(),
        };
        let reader: Box<dyn Read> = match compression {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r).map_err(tar_err)?),
        };
        let mut archive = tar::Archive::new(crate::verity::Tee::new(reader, integrity));
        let mut index = integrity.then(crate::verity::TarfsIndex::default);
        // What this layer deletes from below, and what it adds; a layer's
        // own files are not affected by its whiteouts.
        let mut deleted = [false; 2];
        let mut added: [Option<Vec<u8>>; 2] = [None, None];
        for entry in archive.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            if let Some(ix) = &mut index {
                let link = entry.link_name_bytes().map(|l| l.into_owned());
                ix.add(
                    entry.header(),
                    &entry.path_bytes(),
                    link.as_deref(),
                    entry.raw_file_position(),
                    entry.raw_header_position(),
                );
            }
            let path = normalize(&entry.path().map_err(tar_err)?.to_string_lossy());
            let (dir, name) = match path.rsplit_once('/') {
                Some((d, n)) => (d.to_string(), n.to_string()),
                None => (String::new(), path.clone()),
            };
            for (i, target) in TARGETS.iter().enumerate() {
                let whited = |n: &str| {
                    let p = if dir.is_empty() {
                        n.to_string()
                    } else {
                        format!("{dir}/{n}")
                    };
                    *target == p || target.starts_with(&format!("{p}/"))
                };
                if name == ".wh..wh..opq" {
                    // An opaque directory hides everything below it.
                    if dir.is_empty() || target.starts_with(&format!("{dir}/")) {
                        deleted[i] = true;
                    }
                } else if let Some(hidden) = name.strip_prefix(".wh.") {
                    if whited(hidden) {
                        deleted[i] = true;
                    }
                } else if path == *target {
                    if entry.header().entry_type().is_file() {
                        if entry.size() > MAX_DB {
                            return Err(LayerError::TooLarge {
                                layer: layer.to_string(),
                                path: format!("/{path}"),
                                limit: MAX_DB,
                            });
                        }
                        let mut data = Vec::new();
                        (&mut entry)
                            .take(MAX_DB)
                            .read_to_end(&mut data)
                            .map_err(tar_err)?;
                        added[i] = Some(data);
                    } else {
                        // A directory, link or device where the database
                        // would be: there is no readable file here.
                        added[i] = None;
                        deleted[i] = true;
                    }
                } else if target.starts_with(&format!("{path}/"))
                    && !entry.header().entry_type().is_dir()
                {
                    // `etc` replaced by a non-directory.
                    deleted[i] = true;
                }
            }
        }
        let integrity = match index {
            Some(ix) => archive.into_inner().finish(&ix).map_err(tar_err)?,
            None => None,
        };
        Ok(Self {
            deleted,
            added,
            integrity,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// A tar of (path, content) files; `None` content: a directory.
    pub fn tar(files: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *c).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    #[test]
    fn later_layers_replace_and_whiteouts_delete() {
        let mut db = UserDatabases::default();
        let base = tar(&[
            ("etc", None),
            ("etc/passwd", Some(b"root:x:0:0::/:/bin/sh\n")),
            ("etc/group", Some(b"root:x:0:\n")),
        ]);
        db.apply("l0", GZIP, &gzip(&base)[..]).unwrap();
        assert_eq!(db.group.as_deref(), Some(&b"root:x:0:\n"[..]));

        let over = tar(&[
            ("./etc/passwd", Some(b"app:x:1:1::/:/bin/sh\n")),
            ("etc/.wh.group", Some(b"")),
        ]);
        let z = zstd::encode_all(&over[..], 1).unwrap();
        db.apply("l1", ZSTD, &z[..]).unwrap();
        assert_eq!(db.passwd.as_deref(), Some(&b"app:x:1:1::/:/bin/sh\n"[..]));
        assert_eq!(db.group, None);

        // An opaque etc hides what lies below, but not the layer's own files.
        let opaque = tar(&[
            ("etc/.wh..wh..opq", Some(b"")),
            ("etc/group", Some(b"g:x:5:\n")),
        ]);
        db.apply("l2", TAR, &opaque[..]).unwrap();
        assert_eq!(db.passwd, None);
        assert_eq!(db.group.as_deref(), Some(&b"g:x:5:\n"[..]));

        // Deleting the whole directory.
        db.apply("l3", TAR, &tar(&[(".wh.etc", Some(b""))])[..])
            .unwrap();
        assert_eq!(db, UserDatabases::default());
    }

    #[test]
    fn bad_layers_are_named() {
        let mut db = UserDatabases::default();
        let e = db.apply("l0", "application/x-foo", &b""[..]).unwrap_err();
        assert!(e.to_string().contains("is not a tar layer"), "{e}");
        let e = db.apply("l1", GZIP, &b"not gzip"[..]).unwrap_err();
        assert!(matches!(e, LayerError::Tar { .. }), "{e}");
        assert!(e.to_string().starts_with("layer l1: "), "{e}");
    }
}
