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
//!   the policy uses `with` (which rewrites documents during evaluation) or
//!   a template string (`$"…{expr}…"`, which hides references in a
//!   literal), or when it calls anything but a builtin known to be pure
//!   (see `PURE`) or a function it defines itself. This is an allow-list: a builtin that reads
//!   the clock, randomness, the network or the runtime, including one a
//!   later engine adds, turns the memo off until it is listed;
//! * treats every `input` identifier as the root document, even where it is
//!   only a field name (`x.input`): that can only add paths or give up.
//!
//! Paths are never wrong in the unsafe direction: a shorter path covers a
//! longer one, and giving up only costs speed.

/// Builtins whose result depends on their arguments alone: the catalogue
/// of regorus 0.14 without `http.send`, `opa.runtime`, `rand.intn`,
/// `test.sleep`, `time.now_ns`, `trace` and `uuid.rfc4122` (`print` is a
/// statement of the interpreter). Sorted, for binary search. OPA builtins
/// that read the clock or the network implicitly (`io.jwt.decode_verify`,
/// `crypto.x509.parse_and_verify_certificates`, `net.lookup_ip_addr`) are
/// deliberately absent, should the engine gain them.
const PURE: &[&str] = &[
    "abs",
    "array.concat",
    "array.reverse",
    "array.slice",
    "base64.decode",
    "base64.encode",
    "base64.is_valid",
    "base64url.decode",
    "base64url.encode",
    "base64url.encode_no_pad",
    "bits.and",
    "bits.lsh",
    "bits.negate",
    "bits.or",
    "bits.rsh",
    "bits.xor",
    "ceil",
    "concat",
    "contains",
    "count",
    "endswith",
    "floor",
    "format_int",
    "glob.match",
    "glob.quote_meta",
    "graph.reachable",
    "graph.reachable_paths",
    "hex.decode",
    "hex.encode",
    "indexof",
    "indexof_n",
    "intersection",
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "json.filter",
    "json.is_valid",
    "json.marshal",
    "json.marshal_with_options",
    "json.match_schema",
    "json.patch",
    "json.remove",
    "json.unmarshal",
    "json.verify_schema",
    "lower",
    "max",
    "min",
    "net.cidr_contains",
    "net.cidr_expand",
    "net.cidr_is_valid",
    "numbers.range",
    "numbers.range_step",
    "object.filter",
    "object.get",
    "object.keys",
    "object.remove",
    "object.subset",
    "object.union",
    "object.union_n",
    "product",
    "regex.find_n",
    "regex.globs_match",
    "regex.is_valid",
    "regex.match",
    "regex.replace",
    "regex.split",
    "regex.template_match",
    "replace",
    "round",
    "semver.compare",
    "semver.is_valid",
    "sort",
    "split",
    "sprintf",
    "startswith",
    "strings.any_prefix_match",
    "strings.any_suffix_match",
    "strings.count",
    "strings.replace_n",
    "strings.reverse",
    "substring",
    "sum",
    "time.add_date",
    "time.clock",
    "time.date",
    "time.diff",
    "time.format",
    "time.parse_duration_ns",
    "time.parse_ns",
    "time.parse_rfc3339_ns",
    "time.weekday",
    "to_number",
    "trim",
    "trim_left",
    "trim_prefix",
    "trim_right",
    "trim_space",
    "trim_suffix",
    "type_name",
    "union",
    "units.parse",
    "units.parse_bytes",
    "upper",
    "urlquery.decode",
    "urlquery.decode_object",
    "urlquery.encode",
    "urlquery.encode_object",
    "uuid.parse",
    "walk",
    "yaml.is_valid",
    "yaml.marshal",
    "yaml.unmarshal",
];

/// Output-only builtins that a policy could not meaningfully redefine; a
/// call to them is never taken for a call of the policy's own function.
const OUTPUT: &[&str] = &["print", "trace"];

/// Words of the language that may stand before `(` without calling it.
const KEYWORDS: &[&str] = &[
    "as", "contains", "default", "else", "every", "false", "if", "import", "in", "not", "null",
    "package", "some", "true",
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

/// The functions `source` defines: an identifier followed by `(` that starts
/// a rule at the top level (first on its line outside any bracket, or after
/// `default`). Missing one only makes [`calls_are_pure`] give up.
fn defined_functions<'a>(source: &str, toks: &'a [(Tok, usize, usize)]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for (i, (tok, start, _)) in toks.iter().enumerate() {
        match tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
            Tok::Ident(name) if depth == 0 => {
                let opens_call = matches!(toks.get(i + 1), Some((Tok::Punct('('), _, _)));
                let starts_rule = match i.checked_sub(1).and_then(|p| toks.get(p)) {
                    None => true,
                    Some((Tok::Ident(d), _, _)) if d == "default" => true,
                    Some((_, _, prev_end)) => source
                        .get(*prev_end..*start)
                        .is_some_and(|gap| gap.contains('\n')),
                };
                if opens_call && starts_rule {
                    out.push(name.as_str());
                }
            }
            _ => {}
        }
    }
    out
}

/// What stands before the `(` at token `i`.
enum Callee<'a> {
    /// A dotted name, in order (`["time", "now_ns"]`).
    Name(Vec<&'a str>),
    /// A name reached through something that is not a name (`"s".f(`,
    /// `x[0].f(`, `x.(`): not one this scan can resolve.
    Unresolvable,
    /// No name: a grouping parenthesis.
    Grouping,
}

fn callee(toks: &[(Tok, usize, usize)], i: usize) -> Callee<'_> {
    let before = |k: usize| k.checked_sub(1).and_then(|k| toks.get(k)).map(|t| &t.0);
    let dot = Tok::Punct('.');
    // Walked back from the name's last part.
    let mut parts = Vec::new();
    let mut j = i;
    while let Some(Tok::Ident(part)) = before(j) {
        parts.push(part.as_str());
        j -= 1;
        if before(j) != Some(&dot) {
            break;
        }
        j -= 1;
    }
    if toks.get(j).map(|t| &t.0) == Some(&dot) || before(j) == Some(&dot) {
        return Callee::Unresolvable;
    }
    if parts.is_empty() {
        return Callee::Grouping;
    }
    parts.reverse();
    Callee::Name(parts)
}

/// Whether every call in `source` is to a builtin in `PURE` or to a function
/// the policy defines. A call is a dotted name followed by `(`; a name
/// reached through a bracket (`x[0].f(`) or in another package
/// (`data.lib.f(`) cannot be checked and fails.
fn calls_are_pure(source: &str, toks: &[(Tok, usize, usize)]) -> bool {
    let defined = defined_functions(source, toks);
    for (i, (tok, _, _)) in toks.iter().enumerate() {
        if tok != &Tok::Punct('(') {
            continue;
        }
        let parts = match callee(toks, i) {
            Callee::Name(parts) => parts,
            Callee::Unresolvable => return false,
            Callee::Grouping => continue,
        };
        let name = parts.join(".");
        let single = |set: &[&str]| parts.len() == 1 && set.contains(&parts[0]);
        if OUTPUT.contains(&name.as_str())
            || !(single(&defined) || single(KEYWORDS) || PURE.binary_search(&name.as_str()).is_ok())
        {
            return false;
        }
    }
    true
}

/// The names `source` calls that it does not define itself: dotted names
/// before `(` (`time.now_ns`, `query_reference_value`), keywords and
/// grouping parentheses left out, each once, in order of first call. A call
/// through a bracket (`x[0].f(`) is not a name and is not listed.
pub fn called_functions(source: &str) -> Vec<String> {
    let toks = tokenize(source);
    let defined = defined_functions(source, &toks);
    let mut out: Vec<String> = Vec::new();
    for (i, (tok, _, _)) in toks.iter().enumerate() {
        if tok != &Tok::Punct('(') {
            continue;
        }
        let Callee::Name(parts) = callee(&toks, i) else {
            continue;
        };
        if parts.len() == 1 && (defined.contains(&parts[0]) || KEYWORDS.contains(&parts[0])) {
            continue;
        }
        let name = parts.join(".");
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The key paths under `input` that `source` can read, deduplicated and with
/// paths covered by a shorter one removed; `None` when the result may depend
/// on more than those (see the module documentation).
pub fn input_paths(source: &str) -> Option<Vec<Vec<String>>> {
    let toks = tokenize(source);
    if !calls_are_pure(source, &toks) {
        return None;
    }
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (i, (tok, _, end)) in toks.iter().enumerate() {
        // `$"…{input.a}…"`: a template string (newer OPA) hides
        // references inside a literal.
        if tok == &Tok::Punct('$') {
            return None;
        }
        let Tok::Ident(name) = tok else { continue };
        if name == "with" {
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
            "x := $\"{input.a}\"",
        ] {
            assert_eq!(paths(src), None, "{src}");
        }
    }

    #[test]
    fn calls_to_pure_builtins_and_own_functions_keep_the_memo() {
        assert_eq!(
            paths(
                "x := count(input.a) + abs(input.b)\ny := data.r[concat(\"\", [\"p\", input.c])]"
            ),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            paths("below(c) if {\n  input.tcb[c] < 3\n}\ndefault g(_) := 0\nallow if below(\"x\")\ny := g(input.z)\nz if {\n  some c in [1]\n  below(c)\n}"),
            Some(vec!["tcb".into(), "z".into()])
        );
        // Keywords before a parenthesis, and grouping, are not calls.
        assert_eq!(
            paths("allow if (input.a + 1) * 2 > 3\nok if not (input.b == 1)\nx if { some y in (input.c) }"),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn calls_that_cannot_be_shown_pure_give_up() {
        for src in [
            // Not (yet) a known pure builtin: a later engine's clock reader
            // must not be memoized by default.
            "x := crypto.sha256(input.a)",
            "x := future.clock_ms()",
            "x := f(input.a)",
            // Defined elsewhere, or a dotted name that is not a builtin.
            "x := data.lib.f(input.a)",
            "x := input.a(1)",
            // A call through something this scan cannot resolve.
            "x := \"s\".upper(input.a)",
            "x := y[0].count(input.a)",
            // Output builtins, even if the text pretends to define them.
            "print(x) := 1\ny := print(input.a)",
            "trace(x) := 1\ny := trace(input.a)",
        ] {
            assert_eq!(paths(src), None, "{src}");
        }
        // A function is one the policy defines at the top level, not a call
        // inside a rule body or after an assignment.
        assert_eq!(paths("x := f(input.a)\ny if {\n  f(1)\n}"), None);
    }

    #[test]
    fn pure_builtins_are_sorted_and_exclude_impure_ones() {
        assert!(
            PURE.windows(2).all(|w| w[0] < w[1]),
            "PURE must stay sorted"
        );
        for impure in [
            "http.send",
            "opa.runtime",
            "rand.intn",
            "test.sleep",
            "time.now_ns",
            "trace",
            "print",
            "uuid.rfc4122",
            "io.jwt.decode_verify",
            "io.jwt.encode_sign",
            "crypto.x509.parse_and_verify_certificates",
            "net.lookup_ip_addr",
        ] {
            assert!(PURE.binary_search(&impure).is_err(), "{impure}");
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
