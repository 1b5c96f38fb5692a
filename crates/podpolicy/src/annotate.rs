//! Writing annotations into the owner's YAML without rewriting it: each
//! annotation is inserted into (or replaced in) the text of its document,
//! so comments, key order and formatting stay as the owner wrote them.
//! Where a document cannot be edited as text (flow-style mappings on the
//! way to the annotations, anchors, …) it is written again from its parsed
//! value, and comments in that document are lost. Every edited document is
//! parsed back and compared with the value it must have; on any difference
//! the re-serialised form is used instead.

use serde::Deserialize;
use serde_json::Value;

/// Annotations to set on the pod template at `pointer` of document
/// `document` (its position in the stream, from 0).
#[derive(Debug, Clone)]
pub struct Edit {
    pub document: usize,
    pub pointer: String,
    pub annotations: Vec<(String, String)>,
}

/// One document of the stream: its lines, and whether it holds anything.
struct Chunk<'a> {
    /// The separator line that opens it, if any (`---`).
    separator: Option<&'a str>,
    lines: Vec<&'a str>,
}

fn is_separator(l: &str) -> bool {
    l == "---" || l.starts_with("--- ") || l.starts_with("---\t")
}

fn is_content(l: &str) -> bool {
    let t = l.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

fn chunks(text: &str) -> Vec<Chunk<'_>> {
    let mut out = vec![Chunk {
        separator: None,
        lines: vec![],
    }];
    for l in text.lines() {
        if is_separator(l) {
            out.push(Chunk {
                separator: Some(l),
                lines: vec![],
            });
        } else {
            out.last_mut().expect("one chunk at least").lines.push(l);
        }
    }
    out
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

/// The line of `key:` at `indent` within `lines[from..to]` whose value is
/// a nested block (nothing after the colon but a comment), and the end of
/// its block. `Err(())` when the key is there in another form.
fn find_block(
    lines: &[String],
    from: usize,
    to: usize,
    indent: usize,
    key: &str,
) -> Result<Option<(usize, usize)>, ()> {
    for i in from..to {
        let l = &lines[i];
        if !is_content(l) || indent_of(l) != indent {
            continue;
        }
        let rest = &l[indent..];
        let Some(after) = rest.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let after = after.trim();
        if !(after.is_empty() || after.starts_with('#')) {
            return Err(());
        }
        let mut end = i + 1;
        while end < to && (!is_content(&lines[end]) || indent_of(&lines[end]) > indent) {
            end += 1;
        }
        // Trailing blank and comment lines belong to what follows.
        while end > i + 1 && !is_content(&lines[end - 1]) {
            end -= 1;
        }
        return Ok(Some((i, end)));
    }
    Ok(None)
}

/// The indentation of the first content line of `lines[from..to]`.
fn child_indent(lines: &[String], from: usize, to: usize) -> Option<usize> {
    (from..to)
        .find(|&i| is_content(&lines[i]))
        .map(|i| indent_of(&lines[i]))
}

/// A plain or double-quoted YAML scalar for `v`.
fn scalar(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=._-".contains(c))
        && !v.starts_with(['-', '.']);
    if plain {
        v.to_string()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

/// Set `annotations` on the mapping at `path` (keys from the document's
/// top) in `lines`, as text. `None` when the text is not in a form this
/// edits.
fn edit_lines(
    lines: &mut Vec<String>,
    path: &[&str],
    annotations: &[(String, String)],
) -> Option<()> {
    let (mut from, mut to, mut indent) = (0, lines.len(), 0);
    let mut path: Vec<&str> = path.to_vec();
    path.push("metadata");
    for (depth, key) in path.iter().enumerate() {
        match find_block(lines, from, to, indent, key).ok()? {
            Some((line, end)) => {
                let ci = child_indent(lines, line + 1, end);
                from = line + 1;
                to = end;
                indent = match ci {
                    Some(ci) if ci > indent => ci,
                    Some(_) => return None,
                    None => indent + 2,
                };
            }
            None if *key == "metadata" && depth == path.len() - 1 => {
                // No metadata yet: add it as the template's first key.
                let pad = " ".repeat(indent);
                lines.insert(from, format!("{pad}metadata:"));
                from += 1;
                to += 1;
                indent += 2;
            }
            None => return None,
        }
    }
    let pad = " ".repeat(indent);
    let (ann_from, ann_to, ann_indent) =
        match find_block(lines, from, to, indent, "annotations").ok()? {
            Some((line, end)) => {
                let ci = child_indent(lines, line + 1, end).unwrap_or(indent + 2);
                if ci <= indent {
                    return None;
                }
                (line + 1, end, ci)
            }
            None => {
                lines.insert(from, format!("{pad}annotations:"));
                (from + 1, from + 1, indent + 2)
            }
        };
    let apad = " ".repeat(ann_indent);
    let mut end = ann_to;
    for (k, v) in annotations {
        let entry = format!("{apad}{}: {}", scalar(k), scalar(v));
        // Replace the key where it is (with any continuation lines).
        let at = (ann_from..end).find(|&i| {
            let l = &lines[i];
            indent_of(l) == ann_indent
                && is_content(l)
                && l[ann_indent..]
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"')
                    .trim_matches('\'')
                    == k
        });
        let replaced = at.is_some();
        if let Some(i) = at {
            let mut j = i + 1;
            while j < end && (!is_content(&lines[j]) || indent_of(&lines[j]) > ann_indent) {
                j += 1;
            }
            lines.splice(i..j, [entry.clone()]);
            end -= j - i - 1;
        }
        if !replaced {
            lines.insert(end, entry);
            end += 1;
        }
    }
    Some(())
}

fn parse_one(text: &str) -> Option<Value> {
    let mut it = serde_yaml_ng::Deserializer::from_str(text);
    let de = it.next()?;
    Value::deserialize(de).ok()
}

/// `text` (one YAML stream) with `edits` applied; `expected[i]` is the
/// value document `i` must have afterwards (the parsed document with its
/// annotations), used to check each text edit.
pub fn annotate(text: &str, edits: &[Edit], expected: &dyn Fn(usize) -> Option<Value>) -> String {
    let mut out = String::new();
    let mut doc = 0usize;
    for chunk in chunks(text) {
        let has_doc = chunk.lines.iter().any(|l| is_content(l));
        if let Some(sep) = chunk.separator {
            out.push_str(sep);
            out.push('\n');
        }
        let mut lines: Vec<String> = chunk.lines.iter().map(|l| l.to_string()).collect();
        if has_doc {
            let mine: Vec<&Edit> = edits.iter().filter(|e| e.document == doc).collect();
            if !mine.is_empty() {
                let original = lines.clone();
                let mut ok = true;
                for e in &mine {
                    let path: Vec<&str> = e.pointer.split('/').filter(|s| !s.is_empty()).collect();
                    if edit_lines(&mut lines, &path, &e.annotations).is_none() {
                        ok = false;
                        break;
                    }
                }
                let want = expected(doc);
                let got = parse_one(&lines.join("\n"));
                if !ok || want.is_none() || got != want {
                    // Written again from its value.
                    lines = original
                        .iter()
                        .take_while(|l| !is_content(l))
                        .cloned()
                        .collect();
                    let v = want.unwrap_or(Value::Null);
                    let y = serde_yaml_ng::to_string(&v).unwrap_or_default();
                    lines.extend(y.lines().map(str::to_string));
                }
            }
            doc += 1;
        }
        for l in &lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(doc: usize, pointer: &str, v: &str) -> Edit {
        Edit {
            document: doc,
            pointer: pointer.into(),
            annotations: vec![("io.example/policy".into(), v.into())],
        }
    }

    fn check(text: &str, edits: &[Edit]) -> String {
        // The expected values: each document as parsed, with its edits.
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        let want = |i: usize| -> Option<Value> {
            let mut v = docs.get(i)?.clone();
            for e in edits.iter().filter(|e| e.document == i) {
                let t = v.pointer_mut(&e.pointer)?;
                let m = t.as_object_mut()?.entry("metadata").or_insert(json!({}));
                let a = m.as_object_mut()?.entry("annotations").or_insert(json!({}));
                for (k, val) in &e.annotations {
                    a.as_object_mut()?
                        .insert(k.clone(), Value::String(val.clone()));
                }
            }
            Some(v)
        };
        let out = annotate(text, edits, &want);
        let got: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        for (i, g) in got.iter().enumerate() {
            assert_eq!(Some(g.clone()), want(i), "document {i} of\n{out}");
        }
        out
    }

    #[test]
    fn comments_order_and_other_documents_stay() {
        let text = "# the app\napiVersion: apps/v1\nkind: Deployment # ours\nmetadata:\n  name: app\nspec:\n  template:\n    metadata:\n      labels:\n        app: app # label\n    spec:\n      containers:\n      - name: app\n        image: x\n---\n# a service\nkind: Service\nmetadata: {name: s}\n";
        let out = check(text, &[edit(0, "/spec/template", "abc=")]);
        assert!(out.contains("# the app\n") && out.contains("kind: Deployment # ours\n"));
        assert!(out.contains("        app: app # label\n"));
        assert!(
            out.contains("      annotations:\n        io.example/policy: abc=\n"),
            "{out}"
        );
        assert!(
            out.ends_with("---\n# a service\nkind: Service\nmetadata: {name: s}\n"),
            "{out}"
        );
        // Again: the annotation is replaced, not added twice.
        let again = check(&out, &[edit(0, "/spec/template", "def=")]);
        assert_eq!(again.matches("io.example/policy").count(), 1);
        assert!(again.contains("io.example/policy: def="));
    }

    #[test]
    fn existing_annotations_and_missing_metadata() {
        let pod = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    other: \"1\"\nspec:\n  containers: []\n";
        let out = check(pod, &[edit(0, "", "v")]);
        assert!(
            out.contains("  annotations:\n    other: \"1\"\n    io.example/policy: v\n"),
            "{out}"
        );
        let tmpl = "kind: Job\nspec:\n  template:\n    spec:\n      containers: []\n";
        let out = check(tmpl, &[edit(0, "/spec/template", "v")]);
        assert!(
            out.contains(
                "    metadata:\n      annotations:\n        io.example/policy: v\n    spec:"
            ),
            "{out}"
        );
    }

    #[test]
    fn flow_style_is_written_again() {
        let pod = "# lost\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n";
        let out = check(pod, &[edit(0, "", "v")]);
        assert!(out.contains("io.example/policy: v"), "{out}");
    }
}
