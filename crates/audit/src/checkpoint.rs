//! Checkpoints: the C2SP tlog-checkpoint body (origin line, tree size in
//! decimal, root hash in standard base64, optional extension lines, each
//! ending in a newline) signed as a C2SP signed note: the body, a blank
//! line, then one line per signature, `— <key name> <base64(key ID ‖
//! signature)>`. For Ed25519 (algorithm 0x01) the key ID is the first 4
//! bytes of SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key), and verifier
//! keys are written `<name>+<key ID, hex>+<base64(0x01 ‖ public key)>`.

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::merkle::Hash;

const ED25519_ALG: u8 = 0x01;
const DASH: &str = "\u{2014} ";

/// A tree head as a checkpoint says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

/// Why a checkpoint or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint: {0}")]
    Malformed(String),
    #[error("no signature by {0} that verifies")]
    NotSigned(String),
    #[error("verifier key: {0}")]
    Key(String),
}

fn malformed(s: &str) -> CheckpointError {
    CheckpointError::Malformed(s.into())
}

impl Checkpoint {
    /// The note body.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let body = body
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the body does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| malformed("no origin"))?;
        let size = lines
            .next()
            .and_then(|s| {
                s.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then_some(s)
                    .filter(|s| s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| malformed("the second line is not a tree size in decimal"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed("the third line is not a base64 SHA-256 root hash"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(malformed("an empty extension line"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

/// An Ed25519 note signer.
pub struct Signer {
    name: String,
    key: Ed25519KeyPair,
}

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut m = Vec::with_capacity(name.len() + 2 + public.len());
    m.extend_from_slice(name.as_bytes());
    m.push(b'\n');
    m.push(ED25519_ALG);
    m.extend_from_slice(public);
    digest(&SHA256, &m).as_ref()[..4]
        .try_into()
        .expect("4 bytes")
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

impl Signer {
    /// A signer named `name` from a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, CheckpointError> {
        if !name_ok(name) {
            return Err(CheckpointError::Key(format!(
                "{name:?} is not a key name (no spaces or +)"
            )));
        }
        let key = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| CheckpointError::Key("not a PKCS#8 Ed25519 key".into()))?;
        Ok(Self {
            name: name.to_string(),
            key,
        })
    }

    /// The verifier key others check signatures with.
    pub fn verifier_key(&self) -> String {
        let public = self.key.public_key().as_ref();
        let mut k = vec![ED25519_ALG];
        k.extend_from_slice(public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, public)),
            STANDARD.encode(k)
        )
    }

    /// The signed note of `c`.
    pub fn sign(&self, c: &Checkpoint) -> String {
        let body = c.body();
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, self.key.public_key().as_ref()).to_vec();
        blob.extend_from_slice(sig.as_ref());
        format!("{body}\n{DASH}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// A parsed verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
}

impl Verifier {
    /// Parse `<name>+<hex id>+<base64(0x01 ‖ key)>`; the ID must be the
    /// key's.
    pub fn parse(s: &str) -> Result<Self, CheckpointError> {
        let bad = |r: &str| CheckpointError::Key(r.to_string());
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        if !name_ok(name) {
            return Err(bad("bad key name"));
        }
        let id: [u8; 4] = hex::decode(id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("the key id is not 8 hex digits"))?;
        let key = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let (alg, public) = key.split_first().ok_or_else(|| bad("empty key"))?;
        if *alg != ED25519_ALG || public.len() != 32 {
            return Err(bad("not an Ed25519 key (algorithm 0x01, 32 bytes)"));
        }
        if key_id(name, public) != id {
            return Err(bad("the key id does not match the key"));
        }
        Ok(Self {
            name: name.to_string(),
            id,
            public: public.to_vec(),
        })
    }

    /// The checkpoint in `note` if this key signed it.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
        let checkpoint = Checkpoint::parse_body(body)?;
        for line in sigs.split_terminator('\n') {
            let Some(rest) = line.strip_prefix(DASH) else {
                return Err(malformed("a signature line does not start with an em dash"));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(malformed("a signature line has no signature"));
            };
            if name != self.name {
                continue;
            }
            let Ok(blob) = STANDARD.decode(blob) else {
                continue;
            };
            if blob.len() != 4 + 64 || blob[..4] != self.id {
                continue;
            }
            if UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(body.as_bytes(), &blob[4..])
                .is_ok()
            {
                return Ok(checkpoint);
            }
        }
        Err(CheckpointError::NotSigned(self.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    fn signer(name: &str) -> Signer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::from_pkcs8(name, pkcs8.as_ref()).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "ward.example/audit".into(),
            size: 8,
            root: crate::merkle::leaf_hash(b"root"),
            extensions: vec![],
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_not_otherwise() {
        let s = signer("ward.example/audit");
        let v = Verifier::parse(&s.verifier_key()).unwrap();
        let note = s.sign(&checkpoint());
        assert!(note.starts_with("ward.example/audit\n8\n"));
        assert!(note.contains("\n\n\u{2014} ward.example/audit "));
        assert_eq!(v.open(&note).unwrap(), checkpoint());

        // Another key of the same name, a changed size, a changed root.
        let other = Verifier::parse(&signer("ward.example/audit").verifier_key()).unwrap();
        assert_eq!(
            other.open(&note),
            Err(CheckpointError::NotSigned("ward.example/audit".into()))
        );
        let bumped = note.replacen("\n8\n", "\n9\n", 1);
        assert!(v.open(&bumped).is_err());
        let mut c = checkpoint();
        c.root = crate::merkle::leaf_hash(b"other");
        let swapped = format!("{}{}", c.body(), &note[note.rfind("\n\n").unwrap() + 1..]);
        assert!(v.open(&swapped).is_err());
    }

    #[test]
    fn the_key_id_is_the_one_signed_notes_use() {
        // The example verifier key of the Go sumdb note package's
        // documentation: its key ID is SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[..4].
        let v =
            Verifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
        assert!(v.is_ok(), "{v:?}");
        assert!(Verifier::parse(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
    }

    #[test]
    fn verifier_keys_and_bodies_are_checked() {
        let s = signer("log");
        let key = s.verifier_key();
        let mut parts: Vec<&str> = key.split('+').collect();
        parts[1] = "00000000";
        assert!(Verifier::parse(&parts.join("+")).is_err(), "a wrong key id");
        assert!(Verifier::parse("log+abcd").is_err());
        let v = Verifier::parse(&key).unwrap();
        for bad in ["", "log\n8\n", "log\n08\nAAAA\n\n", "log\nx\nAAAA\n\n"] {
            assert!(v.open(bad).is_err(), "{bad:?}");
        }
    }
}
