//! The Merkle tree of RFC 9162 §2.1: leaf hash SHA-256(0x00 ‖ leaf),
//! interior node SHA-256(0x01 ‖ left ‖ right), the tree of n leaves split
//! at the largest power of two below n. Inclusion proofs (§2.1.3) and
//! consistency proofs (§2.1.4), generated from the leaf hashes and verified
//! by the algorithms of §2.1.3.2 and §2.1.4.2.

use aws_lc_rs::digest::{Context, SHA256};

pub type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut c = Context::new(&SHA256);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().try_into().expect("32 bytes")
}

/// The hash of a leaf.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[0x00], leaf])
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root (MTH) of the tree whose leaves hash to `leaves`; of no
/// leaves, SHA-256 of nothing.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size}")]
    Index { index: usize, size: usize },
    #[error("a tree of {from} is not a prefix of one of {to}")]
    Sizes { from: usize, to: usize },
}

/// The inclusion proof (audit path) of leaf `index` in the tree of
/// `leaves`.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    if index >= leaves.len() {
        return Err(ProofError::Index {
            index,
            size: leaves.len(),
        });
    }
    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() == 1 {
            return vec![];
        }
        let k = split(d.len());
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(root(&d[..k]));
            p
        }
    }
    Ok(path(index, leaves))
}

/// The consistency proof between the tree of the first `from` leaves and
/// the tree of all `leaves`.
pub fn consistency_proof(from: usize, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    if from == 0 || from > leaves.len() {
        return Err(ProofError::Sizes {
            from,
            to: leaves.len(),
        });
    }
    fn sub(m: usize, d: &[Hash], whole: bool) -> Vec<Hash> {
        if m == d.len() {
            return if whole { vec![] } else { vec![root(d)] };
        }
        let k = split(d.len());
        if m <= k {
            let mut p = sub(m, &d[..k], whole);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = sub(m - k, &d[k..], false);
            p.push(root(&d[..k]));
            p
        }
    }
    Ok(sub(from, leaves, true))
}

/// RFC 9162 §2.1.3.2: does `proof` show the leaf hashing to `leaf` at
/// `index` in the tree of `size` leaves with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `from` leaves with
/// `from_root` to be a prefix of the tree of `to` leaves with `to_root`?
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *from_root && sr == *to_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the Certificate Transparency test tree.
    fn ct_leaves() -> Vec<Hash> {
        let raw: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        raw.iter().map(|l| leaf_hash(l)).collect()
    }

    #[test]
    fn roots_of_the_ct_test_tree() {
        // As computed independently (Python hashlib) and published with
        // RFC 6962's reference implementation for the 8-leaf tree.
        let want = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let l = ct_leaves();
        for (n, w) in want.iter().enumerate() {
            assert_eq!(hex::encode(root(&l[..n + 1])), *w, "{} leaves", n + 1);
        }
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_inclusion_proof_verifies_and_no_tampered_one_does() {
        for n in 1..=40 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(i, &l).unwrap();
                assert!(
                    verify_inclusion(i as u64, n as u64, &l[i], &p, &r),
                    "{i} of {n}"
                );
                // Another leaf, index, root or path: refused. (A size is
                // bound by the signed checkpoint that names it with the
                // root, not by the path.)
                assert!(!verify_inclusion(
                    i as u64,
                    n as u64,
                    &leaf_hash(b"x"),
                    &p,
                    &r
                ));
                if n > 1 {
                    assert!(!verify_inclusion(
                        ((i + 1) % n) as u64,
                        n as u64,
                        &l[i],
                        &p,
                        &r
                    ));
                }
                assert!(!verify_inclusion(
                    i as u64,
                    n as u64,
                    &l[i],
                    &p,
                    &leaf_hash(b"r")
                ));
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(i as u64, n as u64, &l[i], &bad, &r));
                    assert!(!verify_inclusion(i as u64, n as u64, &l[i], &p[1..], &r));
                }
            }
        }
        assert!(inclusion_proof(3, &leaves(3)).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_no_tampered_one_does() {
        for n in 1..=40 {
            let l = leaves(n);
            let to_root = root(&l);
            for m in 1..=n {
                let from_root = root(&l[..m]);
                let p = consistency_proof(m, &l).unwrap();
                assert!(
                    verify_consistency(m as u64, n as u64, &from_root, &to_root, &p),
                    "{m} → {n}"
                );
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &leaf_hash(b"x"),
                    &to_root,
                    &p
                ));
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &from_root,
                    &leaf_hash(b"y"),
                    &p
                ));
                if !p.is_empty() {
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &from_root,
                        &to_root,
                        &p[1..]
                    ));
                }
            }
        }
        assert!(consistency_proof(0, &leaves(2)).is_err());
        assert!(consistency_proof(3, &leaves(2)).is_err());
    }
}
