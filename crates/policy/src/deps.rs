//! Which parts of `input` a policy can read, found from its text.
//!
//! A Rego evaluation is a pure function of `input` and `data`, unless the
//! policy calls a builtin that reads the clock, a random source, the network
//! or the runtime, or prints. `data` is fixed for the life of a [`Policy`]
//! (reference values and request data are loaded by building a new one), so
//! when every mention of `input` in the text starts a reference with static
//! keys (`input.a.b`, `input["a"].b`, `input.a[x]`), two inputs that agree
//! at each such key path (a value, or the same absence) get the same answer.
//! [`input_paths`] lists those paths, so results can be memoized per policy
//! version.
//!
//! The scan is conservative. It tokenizes the text the way the Rego lexer
//! does (comments, double-quoted strings with escapes, raw strings,
//! identifiers) and:
//! * stops a path at the first part that is not a static key written
//!   directly after the previous one (so `input.a[x].b` depends on all of
//!   `input.a`, and `input .a` on all of `input`);
//! * gives up (returns `None`, so nothing is memoized) when `input` is used
//!   whole (`walk(input)`, `x := input`, `input[k]`, `import input`), when
//!   the policy uses `with` (which rewrites documents during evaluation), or
//!   when any identifier names a non-deterministic builtin (see `IMPURE`:
//!   the clock, randomness, the network, the runtime, printing), wherever
//!   it appears;
//! * treats every `input` identifier as the root document, even where it is
//!   only a field name (`x.input`): that can only add paths or give up.
//!
//! Paths are never wrong in the unsafe direction: a shorter path covers a
//! longer one, and giving up only costs speed.

/// Identifiers that make a policy's result depend on more than its input and
/// data: `time.now_ns`, `rand.intn`, `uuid.rfc4122`, `http.send`,
/// `opa.runtime`, `trace`, `print`, and the Rego builtins that read the clock
/// or the network without saying so (`io.jwt.decode_verify` checks expiry
/// against now, `crypto.x509.parse_and_verify_certificates*` validity
/// periods, `net.lookup_ip_addr` asks DNS), whether or not this build of the
/// engine has them.
const IMPURE: &[&str] = &[
    "now_ns",
    "rand",
    "uuid",
    "http",
    "opa",
    "trace",
    "print",
    "decode_verify",
    "parse_and_verify_certificates",
    "parse_and_verify_certificates_with_keys",
    "lookup_ip_addr",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A double-quoted string, decoded.
    Str(String),
    /// A raw (backtick) string or a malformed literal: never a static key.
    Opaque,
    Punct(char),
}

/// Tokens with their byte span in the source.
fn tokenize(src: &str) -> Vec<(Tok, usize, usize)> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                let tok = src
                    .get(start..i)
                    .and_then(|lit| serde_json::from_str::<String>(lit).ok())
                    .map_or(Tok::Opaque, Tok::Str);
                out.push((tok, start, i));
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                out.push((Tok::Opaque, start, i));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push((Tok::Ident(src[start..i].to_string()), start, i));
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii() => {
                i += 1;
                out.push((Tok::Punct(c as char), start, i));
            }
            _ => {
                // Any other character (inside no literal) cannot start a key.
                let len = src[i..].chars().next().map_or(1, char::len_utf8);
                i += len;
                out.push((Tok::Opaque, start, i));
            }
        }
    }
    out
}

/// The key paths under `input` that `source` can read, deduplicated and with
/// paths covered by a shorter one removed; `None` when the result may depend
/// on more than those (see the module documentation).
pub fn input_paths(source: &str) -> Option<Vec<Vec<String>>> {
    let toks = tokenize(source);
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (i, (tok, _, end)) in toks.iter().enumerate() {
        let Tok::Ident(name) = tok else { continue };
        if IMPURE.contains(&name.as_str()) || name == "with" {
            return None;
        }
        if name != "input" {
            continue;
        }
        let mut path = Vec::new();
        let mut at = *end;
        let mut j = i + 1;
        loop {
            let adjacent = |k: usize| toks.get(k).filter(|t| t.1 == at);
            match (adjacent(j).map(|t| &t.0), toks.get(j + 1)) {
                (Some(Tok::Punct('.')), Some((Tok::Ident(key), s, e))) if *s == at + 1 => {
                    path.push(key.clone());
                    at = *e;
                    j += 2;
                }
                (Some(Tok::Punct('[')), Some((Tok::Str(key), s, e))) if *s == at + 1 => {
                    match toks.get(j + 2) {
                        Some((Tok::Punct(']'), s2, e2)) if s2 == e => {
                            path.push(key.clone());
                            at = *e2;
                            j += 3;
                        }
                        _ => break,
                    }
                }
                _ => break,
            }
        }
        if path.is_empty() {
            return None;
        }
        paths.push(path);
    }
    paths.sort();
    paths.dedup();
    let mut minimal: Vec<Vec<String>> = Vec::new();
    for p in paths {
        // Sorted order puts a prefix right before the paths it covers.
        if !minimal.iter().any(|m| p.starts_with(m)) {
            minimal.push(p);
        }
    }
    Some(minimal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Option<Vec<String>> {
        input_paths(src).map(|ps| ps.iter().map(|p| p.join("/")).collect())
    }

    #[test]
    fn static_references_become_paths() {
        assert_eq!(
            paths("allow if { input.a.b == 1; input[\"c-d\"].e; input.a.z }"),
            Some(vec!["a/b".into(), "a/z".into(), "c-d/e".into()])
        );
        // Escapes in a bracketed key are decoded.
        assert_eq!(paths(r#"x := input["q\"r"]"#), Some(vec!["q\"r".into()]));
    }

    #[test]
    fn a_dynamic_or_spaced_part_ends_the_path() {
        assert_eq!(paths("x := input.a[k].b"), Some(vec!["a".into()]));
        assert_eq!(paths("x := input.a[0].b"), Some(vec!["a".into()]));
        assert_eq!(paths("x := input.a[`b`]"), Some(vec!["a".into()]));
        assert_eq!(paths("x := input.a. b"), Some(vec!["a".into()]));
        // A shorter path covers the longer ones.
        assert_eq!(
            paths("x := input.a.b\ny := input.a[_]"),
            Some(vec!["a".into()])
        );
    }

    #[test]
    fn whole_input_or_rewriting_or_impure_builtins_give_up() {
        for src in [
            "x := input",
            "x := walk(input)",
            "x := input[k]",
            "x := input .a",
            "import input\nx := a",
            "x := data.y with input as {}",
            "x := data.y with input.a as 1",
            "x := time.now_ns()",
            "x := rand.intn(\"k\", 3)",
            "x := uuid.rfc4122(\"k\")",
            "x := http.send({})",
            "x := opa.runtime()",
            "x := trace(\"t\")",
            "x := print(input.a)",
            "x := io.jwt.decode_verify(input.t, {\"cert\": data.c})",
            "x := crypto.x509.parse_and_verify_certificates(input.c)",
            "x := crypto.x509.parse_and_verify_certificates_with_keys(input.c)",
            "x := net.lookup_ip_addr(input.host)",
        ] {
            assert_eq!(paths(src), None, "{src}");
        }
    }

    #[test]
    fn strings_and_comments_are_not_references() {
        assert_eq!(
            paths("# input\nx := \"input\"\ny := `input`\nz := input.a # with time.now_ns"),
            Some(vec!["a".into()])
        );
        assert_eq!(paths("default allow := true"), Some(vec![]));
        // Identifiers that merely contain the word are other names.
        assert_eq!(paths("x := my_input; y := inputs"), Some(vec![]));
    }

    #[test]
    fn an_import_alias_is_covered_by_its_path() {
        // `s.x` reads input.snp.x, inside the imported path.
        assert_eq!(
            paths("import input.snp as s\nx := s.x"),
            Some(vec!["snp".into()])
        );
    }

    #[test]
    fn malformed_text_does_not_panic() {
        for src in [
            "input.",
            "input[",
            "input[\"a",
            "input[\"a\"",
            "\"unterminated",
            "`raw",
            "input.é",
            "é input.a",
            "input[\"\\u12\"]",
        ] {
            let _ = input_paths(src);
        }
        assert_eq!(paths("input."), None);
        assert_eq!(paths("input[\"a\""), None);
    }
}
