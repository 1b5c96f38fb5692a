//! Images saved with `docker save` (a docker-archive tar). Docker 25 and
//! later write the image as an OCI image layout inside the tar
//! (`oci-layout`, `index.json`, `blobs/`), beside the older
//! `manifest.json`; that layout is what is read, so the manifest digest
//! the policy pins is the one the registry serves. An archive without it
//! (an older Docker) holds no manifest at all, so no digest can be pinned
//! from it: it is refused, saying so.

use std::path::Path;

use crate::layout::{ImageError, Layout};

/// Unpack the archive at `path` into `dir` (regular files and
/// directories only; entries that would leave `dir` are refused) and open
/// the OCI image layout it holds.
pub fn open(path: &Path, dir: &Path) -> Result<Layout, ImageError> {
    let io = |reason: String| ImageError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| io(format!("{}: {e}", dir.display())))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(f));
    for entry in tar.entries().map_err(|e| io(e.to_string()))? {
        let mut entry = entry.map_err(|e| io(e.to_string()))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            // Legacy layer links (`<id>/layer.tar -> ../blobs/…`) are not
            // needed: the layout names its blobs by digest.
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| io(e.to_string()))?
            .display()
            .to_string();
        if !entry
            .unpack_in(dir)
            .map_err(|e| io(format!("{name}: {e}")))?
        {
            return Err(io(format!("{name}: leaves the archive's directory")));
        }
    }
    if !dir.join("index.json").exists() {
        let legacy = dir.join("manifest.json").exists();
        return Err(ImageError::NotLayout {
            path: path.to_path_buf(),
            reason: if legacy {
                "a docker-archive without an OCI layout (written by Docker before 25) has no registry manifest, so its digest cannot be pinned: push the image and name it by digest, or save it with Docker 25 or later".into()
            } else {
                "neither an OCI image layout nor a docker-archive".into()
            },
        });
    }
    Layout::open(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, *d).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn legacy_and_foreign_archives_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("old.tar");
        std::fs::write(
            &a,
            tar_of(&[("manifest.json", b"[]"), ("abc/layer.tar", b"")]),
        )
        .unwrap();
        let e = open(&a, &dir.path().join("x")).unwrap_err().to_string();
        assert!(e.contains("before 25"), "{e}");
        let b = dir.path().join("other.tar");
        std::fs::write(&b, tar_of(&[("hello.txt", b"hi")])).unwrap();
        let e = open(&b, &dir.path().join("y")).unwrap_err().to_string();
        assert!(
            e.contains("neither an OCI image layout nor a docker-archive"),
            "{e}"
        );
    }

    #[test]
    fn entries_leaving_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // The tar crate's builder refuses `..`; write the header by hand.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(b"hi");
        data.resize(512 * 2, 0);
        data.extend_from_slice(&[0; 1024]);
        let a = dir.path().join("evil.tar");
        std::fs::write(&a, data).unwrap();
        let inside = dir.path().join("in");
        std::fs::create_dir(&inside).unwrap();
        assert!(open(&a, &inside).is_err());
        assert!(!dir.path().join("escape").exists());
    }
}
