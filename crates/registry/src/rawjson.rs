//! Splicing `metadata.resourceVersion` into stored JSON without parsing it into a value tree: a scan
//! that finds the top-level `metadata` object, so large lists are answered by copying bytes.

/// Returns `bytes` (a JSON object) with `"resourceVersion":"<rev>"` as the first member of its
/// top-level `metadata` object (which is created if absent). `None` if `bytes` is not a JSON object
/// or its `metadata` is not an object.
pub fn with_resource_version(bytes: &[u8], rev: i64) -> Option<Vec<u8>> {
    let member = format!("\"resourceVersion\":\"{rev}\"");
    let mut out = Vec::with_capacity(bytes.len() + member.len() + 16);
    match find_metadata(bytes)? {
        Found::Object(open) => {
            // `open` is just past the `{` of metadata.
            let rest = &bytes[open..];
            let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
            out.extend_from_slice(&bytes[..open]);
            out.extend_from_slice(member.as_bytes());
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(rest);
        }
        Found::Missing(close) => {
            // `close` is the index of the top-level object's final `}`.
            let body = &bytes[..close];
            let empty = body.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            out.extend_from_slice(body);
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(b"\"metadata\":{");
            out.extend_from_slice(member.as_bytes());
            out.push(b'}');
            out.extend_from_slice(&bytes[close..]);
        }
    }
    Some(out)
}

enum Found {
    Object(usize),
    Missing(usize),
}

/// Scans the top level of a JSON object for the key `metadata`.
fn find_metadata(bytes: &[u8]) -> Option<Found> {
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(bytes, i);
        match bytes.get(i)? {
            b'}' => return Some(Found::Missing(i)),
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = skip_string(bytes, i)?;
        let is_metadata = &bytes[i..key_end] == b"\"metadata\"";
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        if is_metadata {
            return (bytes.get(i) == Some(&b'{')).then_some(Found::Object(i + 1));
        }
        i = skip_value(bytes, i)?;
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// `i` is at an opening quote; returns the index just past the closing quote.
fn skip_string(bytes: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Skips one JSON value starting at `i`; returns the index just past it.
fn skip_value(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => skip_string(bytes, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match bytes.get(j)? {
                    b'"' => {
                        j = skip_string(bytes, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while bytes.get(j).is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spliced(v: &Value, rev: i64) -> Value {
        serde_json::from_slice(&with_resource_version(v.to_string().as_bytes(), rev).unwrap()).unwrap()
    }

    #[test]
    fn adds_the_resource_version_wherever_metadata_is() {
        let tricky = json!({
            "data": {"metadata": {"x": 1}, "s": "\"metadata\":{", "esc": "a\\\"b"},
            "list": [{"metadata": {}}, [1, 2, {"a": "}"}]],
            "n": -1.5e3, "t": true, "z": null,
            "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"template": {"metadata": {"labels": {}}}}
        });
        let out = spliced(&tricky, 42);
        let mut expected = tricky.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_and_missing_metadata() {
        assert_eq!(spliced(&json!({"metadata": {}}), 7), json!({"metadata": {"resourceVersion": "7"}}));
        assert_eq!(spliced(&json!({"kind": "X"}), 7), json!({"kind": "X", "metadata": {"resourceVersion": "7"}}));
        assert_eq!(spliced(&json!({}), 7), json!({"metadata": {"resourceVersion": "7"}}));
    }

    #[test]
    fn refuses_what_is_not_an_object_with_object_metadata() {
        assert!(with_resource_version(b"[1]", 1).is_none());
        assert!(with_resource_version(b"{\"metadata\": 3}", 1).is_none());
        assert!(with_resource_version(b"{\"a\": ", 1).is_none());
        assert!(with_resource_version(b"{\"a\": \"unterminated", 1).is_none());
    }
}
