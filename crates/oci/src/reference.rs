//! Image references as container runtimes read them
//! (`[registry[:port]/]repository[:tag][@digest]`, the grammar of the
//! distribution project's `reference` package): a first component with a
//! `.` or `:`, or `localhost`, is a registry; otherwise the image is on
//! Docker Hub, where one-component names are under `library/`.

use std::fmt;

use crate::blob::Digest;

/// Docker Hub's name in references, and where its API is.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`, …
    pub registry: String,
    /// `library/busybox`, `prometheus/busybox`, …
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn component_ok(c: &str) -> bool {
    // [a-z0-9]+ separated by `.`, `_`, `__` or runs of `-`.
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: s.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| err(&e.to_string()))?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            if !tag_ok(t) {
                return Err(err("the tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(err("repository path components must be lowercase letters and digits, separated by . _ __ or -"));
        }
        if repository.len() > 255 {
            return Err(err("the repository name is longer than 255 characters"));
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest when pinned, else the tag
    /// (`latest` when none).
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// Neither a digest nor a tag other than `latest`: what the image is
    /// may change under the same name.
    pub fn is_floating(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|t| t == "latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:bdbb485bb9e3baf381a2957b9369b6051c6113097a5f8dcee27faff17624a2c0";

    #[test]
    fn parses_like_the_runtime() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", None)
        );
        assert!(r.is_floating());
        assert_eq!(r.manifest_ref(), "latest");
        let r = Reference::parse("quay.io/prometheus/busybox:latest").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("quay.io", "prometheus/busybox")
        );
        let r =
            Reference::parse(&format!("ghcr.io/burgerdev/weird-images/gid:latest@{D}")).unwrap();
        assert_eq!(r.manifest_ref(), D);
        assert!(!r.is_floating());
        assert_eq!(
            r.to_string(),
            format!("ghcr.io/burgerdev/weird-images/gid:latest@{D}")
        );
        let r = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "app", Some("v1"))
        );
        let r = Reference::parse("localhost/x/y").unwrap();
        assert_eq!(r.registry, "localhost");
        let r = Reference::parse("user/app:1.2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "user/app")
        );
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "a:-x",
            "a@sha256:00",
            "a/-b",
            "a..b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        assert!(component_ok("a__b") && component_ok("a---b") && !component_ok("a___b"));
    }
}
