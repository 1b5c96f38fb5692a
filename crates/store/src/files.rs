//! Writing small private files (keys, tokens) so that a crash or a full
//! disk never leaves a partial one behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Create `path` with `content`, readable only by the owner (0600), all or
/// nothing: the bytes go to a temporary file beside it, are flushed to disk,
/// and the file is then linked into place, so `path` either does not exist
/// or holds all of `content`. Fails with `AlreadyExists` (leaving the other
/// file alone) if `path` exists, so two processes racing get one winner.
pub fn create_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tag = [0u8; 8];
    SystemRandom::new()
        .fill(&mut tag)
        .map_err(|_| std::io::Error::other("random number generator failed"))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex(&tag)));
    let result = write_then_link(&tmp, path, content);
    let _ = std::fs::remove_file(&tmp);
    result?;
    // The new directory entry itself must survive a crash.
    std::fs::File::open(&dir).and_then(|d| d.sync_all())
}

/// Replace `path` with `content` (0600), all or nothing: a temporary file
/// beside it, flushed, renamed over it. Readers see the old file or the
/// new one, never a partial one.
pub fn replace_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.new",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&dir).and_then(|d| d.sync_all())
}

fn write_then_link(tmp: &Path, path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    drop(f);
    std::fs::hard_link(tmp, path)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `e` as a message naming `path`, saying plainly when the disk is full.
pub fn describe(path: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::StorageFull {
        format!(
            "{}: the disk is full (no space left on device)",
            path.display()
        )
    } else {
        format!("{}: {e}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_new_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        create_private(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = create_private(&p, b"two").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        // No temporary file is left behind either way.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["k"]);
    }

    #[test]
    fn names_the_path_and_a_full_disk() {
        let e = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(
            describe(Path::new("/d/kek"), &e),
            "/d/kek: the disk is full (no space left on device)"
        );
    }
}
