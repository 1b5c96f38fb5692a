//! RFC 8785 JSON Canonicalization Scheme, for the values this protocol hashes.
//!
//! Object members are sorted by their UTF-16 code units, no whitespace is
//! written, strings use the minimal escaping of ECMAScript `JSON.stringify`.
//! Numbers: integers are written as-is; non-integral numbers are rejected
//! because no value ward hashes contains one and a wrong rendering would
//! silently break the binding.

use serde_json::Value;

/// A value could not be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot canonicalise JSON: {0}")]
pub struct JcsError(&'static str);

/// Canonical bytes of `value` (RFC 8785).
pub fn to_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(JcsError("non-integral numbers are not supported"));
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_nested_values_and_sorts_keys() {
        let v = json!({"b": [1, "x", null, true], "a": {"d": false, "c": -3}});
        assert_eq!(
            String::from_utf8(to_vec(&v).unwrap()).unwrap(),
            r#"{"a":{"c":-3,"d":false},"b":[1,"x",null,true]}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // RFC 8785 §3.2.3 example: U+20AC sorts before U+1F600 by UTF-16
        // (0x20AC < 0xD83D), and "\r" (0x0D) before "1".
        let v = json!({"\u{20ac}": 1, "\u{1f600}": 2, "\r": 3, "1": 4});
        let s = String::from_utf8(to_vec(&v).unwrap()).unwrap();
        assert_eq!(s, "{\"\\r\":3,\"1\":4,\"\u{20ac}\":1,\"\u{1f600}\":2}");
    }

    #[test]
    fn escapes_control_characters_minimally() {
        let v = json!("a\u{1}\u{1f}\"\\/\n é");
        assert_eq!(
            String::from_utf8(to_vec(&v).unwrap()).unwrap(),
            "\"a\\u0001\\u001f\\\"\\\\/\\n é\""
        );
    }

    #[test]
    fn rejects_floats() {
        assert!(to_vec(&json!({"x": 1.5})).is_err());
    }
}
