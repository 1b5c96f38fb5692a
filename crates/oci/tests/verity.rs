//! Layer integrity: the tarfs image of a layer (tar ‖ index) read back as
//! the kernel's tarfs would, and its dm-verity root hash checked against
//! `veritysetup` (cryptsetup) when that is installed.

use std::path::Path;
use std::process::Command;

use ward_oci::layers::LayerEffect;
use ward_oci::verity::{TarfsIndex, VerityHasher, BLOCK};

fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir, "etc/", &[][..]).unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_mode(0o644);
    f.set_uid(7);
    f.set_mtime(1_700_000_000);
    let passwd = b"root:x:0:0::/:/bin/sh\n";
    f.set_size(passwd.len() as u64);
    b.append_data(&mut f, "etc/passwd", &passwd[..]).unwrap();
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_mode(0o777);
    l.set_size(0);
    b.append_link(&mut l, "etc/pw", "passwd").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o644);
    h.set_size(0);
    b.append_link(&mut h, "etc/passwd.hard", "etc/passwd")
        .unwrap();
    let big: Vec<u8> = (0..3 * BLOCK + 5).map(|i| (i % 253) as u8).collect();
    let mut g = tar::Header::new_gnu();
    g.set_mode(0o600);
    g.set_size(big.len() as u64);
    for d in ["usr/", "usr/lib/"] {
        b.append_data(&mut dir.clone(), d, &[][..]).unwrap();
    }
    b.append_data(&mut g, "./usr/lib/big.bin", &big[..])
        .unwrap();
    // Under a directory the tar never declares: indexed with mode 0, as
    // the snapshotter's tarindex does, so not reachable.
    b.append_data(&mut f.clone(), "opt/x/file", &passwd[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The tarfs image the runtime mounts: tar, index, zero padding.
fn image(tar: &[u8]) -> Vec<u8> {
    let mut ix = TarfsIndex::default();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        ix.add(
            e.header(),
            &e.path_bytes(),
            link.as_deref(),
            e.raw_file_position(),
            e.raw_header_position(),
        );
    }
    let mut img = tar.to_vec();
    img.extend(ix.bytes(tar.len() as u64));
    img
}

/// Look `path` up in a tarfs image: (mode, size, offset) of its inode.
fn lookup(img: &[u8], path: &str) -> Option<(u16, u64, u64)> {
    let sb = img.len() - 512;
    let table = u64_at(img, sb) as usize;
    let count = u64_at(img, sb + 8);
    let inode = |ino: u64| {
        assert!(ino >= 1 && ino <= count, "inode {ino} of {count}");
        let at = table + 32 * (ino as usize - 1);
        let mode = u16::from_le_bytes([img[at], img[at + 1]]);
        (mode, u64_at(img, at + 16), u64_at(img, at + 24))
    };
    let mut cur = inode(1);
    for comp in path.split('/') {
        let (mode, size, off) = cur;
        assert_eq!(mode & 0o170000, 0o040000, "{comp}: parent not a directory");
        let mut found = None;
        for k in 0..size as usize / 32 {
            let d = off as usize + 32 * k;
            let (ino, name_at, len) = (
                u64_at(img, d),
                u64_at(img, d + 8) as usize,
                u64_at(img, d + 16) as usize,
            );
            if &img[name_at..name_at + len] == comp.as_bytes() {
                found = Some(ino);
            }
        }
        cur = inode(found?);
    }
    Some(cur)
}

#[test]
fn the_tarfs_index_finds_every_file_where_the_tar_holds_it() {
    let tar = layer();
    let img = image(&tar);
    assert_eq!(img.len() % 512, 0);
    assert_eq!(
        u64_at(&img, img.len() - 512),
        tar.len() as u64,
        "the inode table follows the tar"
    );
    let (mode, size, off) = lookup(&img, "etc/passwd").unwrap();
    assert_eq!(mode, 0o100644);
    assert_eq!(
        &img[off as usize..(off + size) as usize],
        b"root:x:0:0::/:/bin/sh\n"
    );
    let (hmode, hsize, hoff) = lookup(&img, "etc/passwd.hard").unwrap();
    assert_eq!(
        (hmode, hsize, hoff),
        (mode, size, off),
        "a hard link shares the inode"
    );
    let (lmode, lsize, loff) = lookup(&img, "etc/pw").unwrap();
    assert_eq!(lmode & 0o170000, 0o120000);
    assert_eq!(&img[loff as usize..(loff + lsize) as usize], b"passwd");
    let (_, bsize, boff) = lookup(&img, "usr/lib/big.bin").unwrap();
    assert_eq!(bsize, 3 * BLOCK as u64 + 5);
    assert_eq!(img[boff as usize + 1000], (1000 % 253) as u8);
    assert!(lookup(&img, "etc/shadow").is_none());
    assert_eq!(lookup(&img, "opt").map(|i| i.0), Some(0));
}

#[test]
fn reading_a_layer_gives_its_diff_id_and_the_verity_root_of_its_tarfs_image() {
    let tar = layer();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let e = LayerEffect::read_with(
        "l",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &gz.finish().unwrap()[..],
        true,
    )
    .unwrap();
    let i = e.integrity.unwrap();
    assert_eq!(
        hex::encode(i.diff_id),
        hex::encode(ward_proto_free_sha256(&tar))
    );
    let img = image(&tar);
    let mut v = VerityHasher::new();
    v.update(&img);
    assert_eq!(i.root_hash, v.finish());
    assert_eq!(e.added[0].as_deref(), Some(&b"root:x:0:0::/:/bin/sh\n"[..]));

    // The same root as veritysetup computes over the padded image.
    let Some(bin) = ["/usr/sbin/veritysetup", "/sbin/veritysetup"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        eprintln!("SKIPPED: the veritysetup cross-check (apt-get install cryptsetup-bin)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut padded = img.clone();
    padded.resize(img.len().div_ceil(BLOCK) * BLOCK, 0);
    std::fs::write(dir.path().join("data"), &padded).unwrap();
    let out = Command::new(bin)
        .args([
            "format",
            "--format=1",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
            "--no-superblock",
        ])
        .arg(format!("--salt={}", "0".repeat(64)))
        .arg(dir.path().join("data"))
        .arg(dir.path().join("hash"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(root, hex::encode(i.root_hash));
}

fn ward_proto_free_sha256(b: &[u8]) -> [u8; 32] {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .try_into()
        .unwrap()
}
