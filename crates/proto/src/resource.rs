//! Resource paths `<repo>/<type>/<tag>` and `kbs:///repo/type/tag` URIs.

use std::fmt;

/// A validated three-segment resource path. Each segment matches
/// `[A-Za-z0-9_-][A-Za-z0-9_.-]*` (so `.` and `..` can never appear).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePath {
    pub repo: String,
    pub kind: String,
    pub tag: String,
}

/// A resource path or URI was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resource path {input:?}: {reason}")]
pub struct ResourcePathError {
    pub input: String,
    pub reason: &'static str,
}

const MAX_SEGMENT: usize = 128;

fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SEGMENT
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_' || b[0] == b'-')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

impl ResourcePath {
    pub fn new(repo: &str, kind: &str, tag: &str) -> Result<Self, ResourcePathError> {
        Self::parse(&format!("{repo}/{kind}/{tag}"))
    }

    /// Parse `repo/type/tag`.
    pub fn parse(s: &str) -> Result<Self, ResourcePathError> {
        let err = |reason| ResourcePathError {
            input: s.chars().take(200).collect(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() != 3 {
            return Err(err("expected exactly three segments repo/type/tag"));
        }
        if !parts.iter().all(|p| valid_segment(p)) {
            return Err(err(
                "each segment must match [A-Za-z0-9_-][A-Za-z0-9_.-]* (at most 128 characters)",
            ));
        }
        Ok(Self {
            repo: parts[0].into(),
            kind: parts[1].into(),
            tag: parts[2].into(),
        })
    }

    /// Parse `kbs:///repo/type/tag` (an authority, `kbs://host/…`, is allowed
    /// and ignored, as in the reference client) or a bare `repo/type/tag`.
    pub fn parse_uri(s: &str) -> Result<Self, ResourcePathError> {
        if let Some(rest) = s.strip_prefix("kbs://") {
            let path = match rest.find('/') {
                Some(i) => &rest[i + 1..],
                None => {
                    return Err(ResourcePathError {
                        input: s.into(),
                        reason: "kbs URI has no path",
                    })
                }
            };
            Self::parse(path)
        } else {
            Self::parse(s.trim_start_matches('/'))
        }
    }

    /// The three segments, as the resource policy's `resource-path` sees them.
    pub fn segments(&self) -> [&str; 3] {
        [&self.repo, &self.kind, &self.tag]
    }
}

/// Validate a resource-path prefix: one to three segments (`repo`,
/// `repo/type`, `repo/type/tag`), each as in a [`ResourcePath`]. Returns the
/// prefix in its canonical form (no leading or trailing `/`).
pub fn parse_prefix(s: &str) -> Result<String, ResourcePathError> {
    let err = |reason| ResourcePathError {
        input: s.chars().take(200).collect(),
        reason,
    };
    let trimmed = s.trim_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    if trimmed.is_empty() || parts.len() > 3 {
        return Err(err("a prefix is one to three segments: repo[/type[/tag]]"));
    }
    if !parts.iter().all(|p| valid_segment(p)) {
        return Err(err(
            "each segment must match [A-Za-z0-9_-][A-Za-z0-9_.-]* (at most 128 characters)",
        ));
    }
    Ok(trimmed.to_string())
}

impl ResourcePath {
    /// The prefixes that cover this path, most specific first:
    /// `repo/type/tag`, `repo/type`, `repo`.
    pub fn prefixes(&self) -> [String; 3] {
        [
            self.to_string(),
            format!("{}/{}", self.repo, self.kind),
            self.repo.clone(),
        ]
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repo, self.kind, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_have_one_to_three_valid_segments() {
        assert_eq!(parse_prefix("a").unwrap(), "a");
        assert_eq!(parse_prefix("/a/b/").unwrap(), "a/b");
        assert_eq!(parse_prefix("a/b/c.1").unwrap(), "a/b/c.1");
        for bad in ["", "/", "a/b/c/d", "a//b", "a/../b", "a/.b", "a b"] {
            assert!(parse_prefix(bad).is_err(), "{bad:?}");
        }
        let p = ResourcePath::parse("r/t/g").unwrap();
        assert_eq!(p.prefixes(), ["r/t/g", "r/t", "r"]);
    }

    #[test]
    fn accepts_uris_and_paths() {
        let p = ResourcePath::parse_uri("kbs:///default/test/key").unwrap();
        assert_eq!(p.to_string(), "default/test/key");
        assert_eq!(
            ResourcePath::parse_uri("kbs://host:8080/a/b/c.1")
                .unwrap()
                .tag,
            "c.1"
        );
        assert_eq!(ResourcePath::parse_uri("/a/b/c").unwrap().repo, "a");
    }

    #[test]
    fn rejects_traversal_and_bad_shapes() {
        for bad in [
            "a/b", "a/b/c/d", "../b/c", "a/./c", "a/b/", "a b/c/d", ".a/b/c", "a/b/c%2f",
        ] {
            assert!(ResourcePath::parse(bad).is_err(), "{bad}");
        }
        assert!(ResourcePath::parse(&format!("a/b/{}", "x".repeat(129))).is_err());
    }
}
