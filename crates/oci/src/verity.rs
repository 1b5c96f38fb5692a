//! Layer integrity for runtimes that mount each image layer read-only as
//! a tar file system under dm-verity (the Kata tardev snapshotter, as AKS
//! confidential containers use it).
//!
//! What such a runtime mounts, per layer, is the layer's **decompressed
//! tar**, followed by a **tarfs index** (appended by the snapshotter, read
//! by the kernel's tarfs), zero-padded to whole 4096-byte blocks, under a
//! dm-verity hash tree. The policy pins that tree's root hash.
//!
//! * dm-verity (Linux `Documentation/admin-guide/device-mapper/verity.rst`,
//!   hash format version 1, as `veritysetup format --format=1` writes it):
//!   SHA-256, 4096-byte data and hash blocks, a salt of 32 zero bytes;
//!   each block's digest is SHA-256(salt ‖ block); a level's digests are
//!   packed 128 to a hash block, the last one zero-padded; levels are added
//!   until one hash block remains, and the root hash is the digest of that
//!   block.
//! * The tarfs index (after the tar, aligned as it ends): an inode table of
//!   32-byte entries (mode u16, a zero byte, the high 4 bits of mtime, uid
//!   u32, gid u32, the low 32 bits of mtime, size u64, offset u64; all
//!   little-endian), inode 1 the root directory and the rest numbered in
//!   breadth-first order of the tree, children in byte order of their
//!   names; then, for each directory in that order, its entries (ino u64,
//!   name offset u64, name length u64, type u8 as `d_type`, 7 zero bytes);
//!   then the names, in the same order; zero padding to 512 bytes; then a
//!   512-byte super block holding the inode table's offset and the inode
//!   count (u64 each). A regular file's offset is that of its data in the
//!   tar, a symlink's that of the link name in its header (byte 157);
//!   directories point at their entries. Only regular files, directories,
//!   symlinks and hard links (sharing the inode) are indexed; a later entry
//!   for a path replaces the earlier one, names are normalised (`.` and
//!   empty components dropped, `..` resolved, names leaving the root
//!   skipped), as the snapshotter's `tarindex` does.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;

use aws_lc_rs::digest::{Context, SHA256};

/// dm-verity data and hash block size.
pub const BLOCK: usize = 4096;
const DIGEST: usize = 32;
const PER_BLOCK: usize = BLOCK / DIGEST;
const SALT: [u8; DIGEST] = [0; DIGEST];

fn salted(data: &[u8]) -> [u8; DIGEST] {
    let mut c = Context::new(&SHA256);
    c.update(&SALT);
    c.update(data);
    let mut out = [0; DIGEST];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// A dm-verity root hash computed over a stream, without the tree.
#[derive(Default)]
pub struct VerityHasher {
    /// The data block being filled.
    block: Vec<u8>,
    /// Digests waiting for their hash block, per level (0: of data).
    levels: Vec<Vec<[u8; DIGEST]>>,
    /// Digests given to each level so far.
    pushed: Vec<u64>,
    len: u64,
}

impl VerityHasher {
    pub fn new() -> Self {
        Self {
            block: Vec::with_capacity(BLOCK),
            ..Self::default()
        }
    }

    /// Bytes given so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, level: usize, digest: [u8; DIGEST]) {
        if self.levels.len() <= level {
            self.levels.push(Vec::with_capacity(PER_BLOCK));
            self.pushed.push(0);
        }
        self.pushed[level] += 1;
        self.levels[level].push(digest);
        if self.levels[level].len() == PER_BLOCK {
            self.flush_level(level);
        }
    }

    fn flush_level(&mut self, level: usize) {
        let mut block = [0u8; BLOCK];
        for (i, d) in self.levels[level].drain(..).enumerate() {
            block[i * DIGEST..][..DIGEST].copy_from_slice(&d);
        }
        let d = salted(&block);
        self.push(level + 1, d);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.block.is_empty() {
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                let d = salted(&self.block);
                self.block.clear();
                self.push(0, d);
            }
        }
        while data.len() >= BLOCK {
            let d = salted(&data[..BLOCK]);
            self.push(0, d);
            data = &data[BLOCK..];
        }
        self.block.extend_from_slice(data);
    }

    /// The root hash, the data zero-padded to whole blocks.
    pub fn finish(mut self) -> [u8; DIGEST] {
        if !self.block.is_empty() || self.len == 0 {
            self.block.resize(BLOCK, 0);
            let d = salted(&self.block);
            self.push(0, d);
        }
        // Levels are added until one digest remains: the root (for a
        // single data block, its own digest).
        let mut level = 0;
        loop {
            if self.pushed[level] == 1 {
                return self.levels[level][0];
            }
            if !self.levels[level].is_empty() {
                self.flush_level(level);
            }
            level += 1;
        }
    }
}

const S_IFMT: u16 = 0o170_000;
const S_IFLNK: u16 = 0o120_000;
const S_IFREG: u16 = 0o100_000;
const S_IFDIR: u16 = 0o040_000;

#[derive(Debug, Clone, Default)]
struct Node {
    mode: u16,
    size: u64,
    offset: u64,
    mtime: u64,
    uid: u32,
    gid: u32,
    /// Index into the node arena of each child, by name.
    children: BTreeMap<Vec<u8>, usize>,
}

/// The tarfs index of one tar, built from its entries as they are read.
#[derive(Debug, Clone)]
pub struct TarfsIndex {
    nodes: Vec<Node>,
}

impl Default for TarfsIndex {
    fn default() -> Self {
        Self {
            nodes: vec![Node {
                mode: S_IFDIR | 0o555,
                ..Node::default()
            }],
        }
    }
}

fn clean(path: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

impl TarfsIndex {
    fn walk(&mut self, path: &[&[u8]]) -> usize {
        let mut at = 0;
        for c in path {
            at = match self.nodes[at].children.get(*c) {
                Some(&n) => n,
                None => {
                    self.nodes.push(Node::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[at].children.insert(c.to_vec(), n);
                    n
                }
            };
        }
        at
    }

    /// Record one tar entry. `data_offset` is where its data starts in
    /// the tar, `header_offset` where its header does.
    pub fn add(
        &mut self,
        header: &tar::Header,
        path: &[u8],
        link: Option<&[u8]>,
        data_offset: u64,
        header_offset: u64,
    ) {
        let Some(p) = clean(path) else { return };
        let perm = header.mode().map(|m| m as u16 & 0o777);
        let Ok(perm) = perm else { return };
        let (mode, size, offset) = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => (
                S_IFREG | perm,
                header.entry_size().unwrap_or(0),
                data_offset,
            ),
            tar::EntryType::Directory => (S_IFDIR | perm, 0, 0),
            tar::EntryType::Symlink => match (link, header.link_name_bytes()) {
                // A long link name (in a GNU/PAX extension) is not in
                // the header where the index would point: skipped.
                (Some(l), Some(h)) if *l == *h => {
                    (S_IFLNK | perm, l.len() as u64, header_offset + 157)
                }
                _ => return,
            },
            tar::EntryType::Link => {
                let Some(target) = link.and_then(clean) else {
                    return;
                };
                let existing = self.walk(&target);
                if self.nodes[existing].mode & S_IFMT != S_IFREG || p.is_empty() {
                    return;
                }
                let parent = self.walk(&p[..p.len() - 1]);
                self.nodes[parent]
                    .children
                    .insert(p[p.len() - 1].to_vec(), existing);
                return;
            }
            _ => return,
        };
        let n = self.walk(&p);
        self.nodes[n] = Node {
            mode,
            size,
            offset,
            mtime: header.mtime().unwrap_or(0),
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            children: BTreeMap::new(),
        };
    }

    /// The index bytes for a tar of `contents` bytes.
    pub fn bytes(&self, contents: u64) -> Vec<u8> {
        // Breadth-first order; a node reached again (a hard link) keeps
        // its first inode number.
        let mut ino: Vec<u64> = vec![0; self.nodes.len()];
        let mut order = vec![];
        let mut visits = vec![];
        let mut q = VecDeque::from([0usize]);
        while let Some(n) = q.pop_front() {
            visits.push(n);
            if ino[n] == 0 {
                order.push(n);
                ino[n] = order.len() as u64;
            }
            q.extend(self.nodes[n].children.values().copied());
        }
        let inode_table = 32 * order.len() as u64;
        // Directory entry blocks, in visit order of directories.
        let is_dir = |n: usize| self.nodes[n].mode & S_IFMT == S_IFDIR;
        let mut dir_offset = BTreeMap::new();
        let mut off = contents + inode_table;
        for &n in &visits {
            if is_dir(n) && !dir_offset.contains_key(&n) {
                dir_offset.insert(n, off);
                off += 32 * self.nodes[n].children.len() as u64;
            }
        }
        let strings_start = off;
        let mut out = Vec::new();
        let mut emitted = vec![false; self.nodes.len()];
        for &n in &visits {
            if emitted[n] {
                continue;
            }
            emitted[n] = true;
            let e = &self.nodes[n];
            let (size, offset) = if is_dir(n) {
                (32 * e.children.len() as u64, dir_offset[&n])
            } else {
                (e.size, e.offset)
            };
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.push(0);
            out.push(((e.mtime >> 32) & 0xf) as u8);
            out.extend_from_slice(&e.uid.to_le_bytes());
            out.extend_from_slice(&e.gid.to_le_bytes());
            out.extend_from_slice(&(e.mtime as u32).to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        let mut name_at = strings_start;
        let mut done = vec![false; self.nodes.len()];
        let mut names = Vec::new();
        for &n in &visits {
            if !is_dir(n) || done[n] {
                continue;
            }
            done[n] = true;
            for (name, &c) in &self.nodes[n].children {
                let t = match self.nodes[c].mode & S_IFMT {
                    S_IFREG => 8u8,
                    S_IFDIR => 4,
                    S_IFLNK => 10,
                    _ => 0,
                };
                out.extend_from_slice(&ino[c].to_le_bytes());
                out.extend_from_slice(&name_at.to_le_bytes());
                out.extend_from_slice(&(name.len() as u64).to_le_bytes());
                out.push(t);
                out.extend_from_slice(&[0; 7]);
                name_at += name.len() as u64;
                names.extend_from_slice(name);
            }
        }
        out.extend_from_slice(&names);
        let end = contents + out.len() as u64;
        out.resize(out.len() + ((512 - end % 512) % 512) as usize, 0);
        out.extend_from_slice(&contents.to_le_bytes());
        out.extend_from_slice(&(order.len() as u64).to_le_bytes());
        out.resize(out.len() + 512 - 16, 0);
        out
    }
}

/// What integrity checking learns of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIntegrity {
    /// SHA-256 of the decompressed tar (the config's `diff_id`).
    pub diff_id: [u8; DIGEST],
    /// The dm-verity root hash over tar ‖ tarfs index.
    pub root_hash: [u8; DIGEST],
}

/// A reader that, when hashing is on, passes everything it reads to the
/// diff_id hash and the verity computation; otherwise it only reads.
pub(crate) struct Tee<R> {
    pub inner: R,
    hashes: Option<(VerityHasher, Context)>,
}

impl<R: Read> Tee<R> {
    pub fn new(inner: R, hashing: bool) -> Self {
        Self {
            inner,
            hashes: hashing.then(|| (VerityHasher::new(), Context::new(&SHA256))),
        }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some((verity, diff)) = &mut self.hashes {
            verity.update(&buf[..n]);
            diff.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R: Read> Tee<R> {
    /// Read the rest, then append `index` to the verity data (`None` when
    /// hashing is off).
    pub fn finish(mut self, index: &TarfsIndex) -> std::io::Result<Option<LayerIntegrity>> {
        if self.hashes.is_none() {
            return Ok(None);
        }
        std::io::copy(&mut self, &mut std::io::sink())?;
        let Some((mut v, diff)) = self.hashes else {
            return Ok(None);
        };
        let contents = v.len();
        let mut diff_id = [0; DIGEST];
        diff_id.copy_from_slice(diff.finish().as_ref());
        v.update(&index.bytes(contents));
        Ok(Some(LayerIntegrity {
            diff_id,
            root_hash: v.finish(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree built level by level, as the definition says.
    fn reference_root(data: &[u8]) -> [u8; DIGEST] {
        let mut padded = data.to_vec();
        let blocks = padded.len().div_ceil(BLOCK).max(1);
        padded.resize(blocks * BLOCK, 0);
        let mut digests: Vec<[u8; DIGEST]> = padded.chunks(BLOCK).map(salted).collect();
        loop {
            if digests.len() == 1 {
                return digests[0];
            }
            let blocks: Vec<Vec<u8>> = digests
                .chunks(PER_BLOCK)
                .map(|c| {
                    let mut b = c.concat();
                    b.resize(BLOCK, 0);
                    b
                })
                .collect();
            digests = blocks.iter().map(|b| salted(b)).collect();
        }
    }

    const VERITYSETUP_1: &str = "2e534ef0107d592d1706ac38ad58596b85ef3375d360a6d669f974792df5cb5a";
    const VERITYSETUP_2: &str = "4c6e92c282fcae6ea856d968b4a410a0352136964fc3995d4276f4bb7b096718";
    const VERITYSETUP_129: &str =
        "1f80296d52e9502d1ec420acbe5c1c4f170ae9d262e899e57991ed8346ebc1a8";

    /// Root hashes `veritysetup format --format=1 --hash=sha256
    /// --data-block-size=4096 --hash-block-size=4096 --salt=<32 zero bytes>
    /// --no-superblock` printed (cryptsetup 2.6.1) for data blocks whose
    /// bytes are all `n as u8` (`n` = the block number).
    #[test]
    fn root_hashes_agree_with_veritysetup() {
        for (blocks, root) in [
            (1usize, VERITYSETUP_1),
            (2, VERITYSETUP_2),
            (129, VERITYSETUP_129),
        ] {
            let data: Vec<u8> = (0..blocks).flat_map(|n| vec![n as u8; BLOCK]).collect();
            let mut h = VerityHasher::new();
            h.update(&data);
            assert_eq!(hex::encode(h.finish()), root, "{blocks} blocks");
        }
    }

    #[test]
    fn streaming_root_matches_the_level_by_level_tree() {
        for len in [
            1usize,
            4096,
            4097,
            128 * 4096,
            128 * 4096 + 1,
            129 * 4096 + 77,
            300 * 4096,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut h = VerityHasher::new();
            // Odd chunk sizes, to cross block boundaries.
            for c in data.chunks(1000) {
                h.update(c);
            }
            assert_eq!(h.finish(), reference_root(&data), "{len} bytes");
        }
    }
}
