//! Validation of custom objects against a structural `openAPIV3Schema`, with upstream's messages
//! (kube-openapi's validator as apiextensions-apiserver turns its results into field errors):
//! `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;
use serde_json::Value;

use crate::status::FieldError;

/// Validates `value` (found at `path`) against `schema`, pushing every error.
pub fn validate(schema: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema["nullable"] == Value::Bool(true) {
            return;
        }
        // `null` with no type constraint (preserve-unknown-fields without type) is accepted.
        if type_of(schema).is_none() && !is_int_or_string(schema) {
            return;
        }
        let want = type_of(schema).unwrap_or("string");
        errs.push(type_error(path, want, "null"));
        return;
    }
    if is_int_or_string(schema) {
        if !(value.is_string() || is_integer(value)) {
            errs.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                message: format!("Invalid value: {}: {path} in body must be of type integer,string: {:?}", quoted(json_type(value)), json_type(value)),
            });
            return;
        }
    } else if let Some(want) = type_of(schema) {
        let ok = match want {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => is_integer(value),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errs.push(type_error(path, want, json_type(value)));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect();
        let refs: Vec<&str> = supported.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(path, value, &refs));
    }
    match value {
        Value::String(s) => string(schema, s, value, path, errs),
        Value::Number(_) => number(schema, value, path, errs),
        Value::Array(items) => array(schema, items, value, path, errs),
        Value::Object(map) => object(schema, map, path, errs),
        _ => {}
    }
}

fn type_of(schema: &Value) -> Option<&str> {
    schema["type"].as_str().filter(|t| !t.is_empty())
}

pub(crate) fn is_int_or_string(schema: &Value) -> bool {
    schema["x-kubernetes-int-or-string"] == Value::Bool(true)
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15)
}

/// The JSON type name as kube-openapi reports it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) if is_integer(v) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn type_error(path: &str, want: &str, got: &str) -> FieldError {
    FieldError {
        reason: "FieldValueTypeInvalid",
        field: path.to_string(),
        message: format!("Invalid value: {}: {path} in body must be of type {want}: {}", quoted(got), quoted(got)),
    }
}

fn invalid(path: &str, value: &Value, detail: String) -> FieldError {
    FieldError::invalid(path, value, &detail)
}

fn string(schema: &Value, s: &str, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && len > max
    {
        errs.push(FieldError::too_long(path, max as usize));
    }
    if let Some(min) = schema["minLength"].as_u64()
        && len < min
    {
        errs.push(invalid(path, value, format!("{path} in body should be at least {min} chars long")));
    }
    if let Some(p) = schema["pattern"].as_str() {
        match regex::Regex::new(p) {
            Ok(re) if !re.is_match(s) => errs.push(invalid(path, value, format!("{path} in body should match '{p}'"))),
            Ok(_) => {}
            Err(_) => errs.push(invalid(path, value, format!("{path} in body has an invalid pattern '{p}'"))),
        }
    }
    if let Some(f) = schema["format"].as_str()
        && !format_ok(f, s)
    {
        errs.push(FieldError {
            reason: "FieldValueTypeInvalid",
            field: path.to_string(),
            message: format!("Invalid value: {}: {path} in body must be of type {f}: {}", quoted(s), quoted(s)),
        });
    }
}

/// The string formats Kubernetes checks (`apiextensions-apiserver`'s supported formats); others pass.
pub fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "int32" => s.parse::<i32>().is_ok(),
        "int64" => s.parse::<i64>().is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "date" => jiff::civil::Date::strptime("%Y-%m-%d", s).is_ok(),
        "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "uuid" => {
            let b = s.as_bytes();
            b.len() == 36
                && b.iter().enumerate().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
        }
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            let ip_ok = ip.parse::<std::net::IpAddr>();
            match (ip_ok, bits.parse::<u8>()) {
                (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
                (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
                _ => false,
            }
        }),
        "hostname" => !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-') && !l.ends_with('-')
        }),
        "email" => s.split_once('@').is_some_and(|(a, d)| !a.is_empty() && d.contains('.')),
        "duration" => go_duration_ok(s),
        _ => true,
    }
}

/// Go's `time.ParseDuration` syntax: `300ms`, `1.5h`, `2h45m`.
fn go_duration_ok(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"].iter().filter(|u| rest.starts_with(**u)).max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn number(schema: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(n) = value.as_f64() else { return };
    let fmt = |x: f64| if x.fract() == 0.0 { format!("{}", x as i64) } else { x.to_string() };
    if let Some(max) = schema["maximum"].as_f64() {
        if schema["exclusiveMaximum"] == Value::Bool(true) {
            if n >= max {
                errs.push(invalid(path, value, format!("{path} in body should be less than {}", fmt(max))));
            }
        } else if n > max {
            errs.push(invalid(path, value, format!("{path} in body should be less than or equal to {}", fmt(max))));
        }
    }
    if let Some(min) = schema["minimum"].as_f64() {
        if schema["exclusiveMinimum"] == Value::Bool(true) {
            if n <= min {
                errs.push(invalid(path, value, format!("{path} in body should be greater than {}", fmt(min))));
            }
        } else if n < min {
            errs.push(invalid(path, value, format!("{path} in body should be greater than or equal to {}", fmt(min))));
        }
    }
    if let Some(m) = schema["multipleOf"].as_f64()
        && m != 0.0
        && (n / m).fract() != 0.0
    {
        errs.push(invalid(path, value, format!("{path} in body should be a multiple of {}", fmt(m))));
    }
    if let Some(f) = schema["format"].as_str() {
        let out_of_range = match f {
            "int32" => value.as_i64().is_none_or(|i| i32::try_from(i).is_err()),
            "int64" => value.as_i64().is_none(),
            _ => false,
        };
        if out_of_range {
            errs.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                message: format!("Invalid value: {}: {path} in body must be of type {f}: {}", quoted(&value.to_string()), quoted(&value.to_string())),
            });
        }
    }
}

fn array(schema: &Value, items: &[Value], value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(max) = schema["maxItems"].as_u64()
        && items.len() as u64 > max
    {
        errs.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            message: format!("Too many: {}: must have at most {max} items", items.len()),
        });
    }
    if let Some(min) = schema["minItems"].as_u64()
        && (items.len() as u64) < min
    {
        errs.push(invalid(path, value, format!("{path} in body should have at least {min} items")));
    }
    if schema["uniqueItems"] == Value::Bool(true) || schema["x-kubernetes-list-type"] == "set" {
        for (i, a) in items.iter().enumerate() {
            if items[..i].contains(a) {
                errs.push(FieldError::duplicate(format!("{path}[{i}]"), a));
            }
        }
    }
    if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), errs);
        }
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn object(schema: &Value, map: &serde_json::Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(required) = schema["required"].as_array() {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                errs.push(FieldError::required(child(path, r)));
            }
        }
    }
    if let Some(max) = schema["maxProperties"].as_u64()
        && map.len() as u64 > max
    {
        errs.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            message: format!("Too many: {}: must have at most {max} items", map.len()),
        });
    }
    if let Some(min) = schema["minProperties"].as_u64()
        && (map.len() as u64) < min
    {
        errs.push(invalid(path, &Value::Object(map.clone()), format!("{path} in body should have at least {min} properties")));
    }
    let embedded = schema["x-kubernetes-embedded-resource"] == Value::Bool(true);
    if embedded {
        for f in ["apiVersion", "kind"] {
            match map.get(f) {
                Some(Value::String(s)) if !s.is_empty() => {}
                _ => errs.push(FieldError::required(child(path, f))),
            }
        }
    }
    let props = schema["properties"].as_object();
    for (k, v) in map {
        if let Some(s) = props.and_then(|p| p.get(k)) {
            validate(s, v, &child(path, k), errs);
        } else if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            validate(s, v, &format!("{path}[{k}]"), errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errs(schema: Value, value: Value) -> Vec<String> {
        let mut e = Vec::new();
        validate(&schema, &value, "", &mut e);
        e.into_iter().map(|e| e.to_line()).collect()
    }

    #[test]
    fn type_errors_read_as_upstream() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}});
        assert_eq!(
            errs(s, json!({"spec": {"replicas": "three"}})),
            vec![r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#]
        );
    }

    #[test]
    fn constraints_are_checked() {
        let s = json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
            "n": {"type": "integer", "minimum": 1, "maximum": 10, "exclusiveMaximum": true, "format": "int32"},
            "color": {"type": "string", "enum": ["red", "blue"]},
            "tags": {"type": "array", "maxItems": 2, "uniqueItems": true, "items": {"type": "string"}},
            "when": {"type": "string", "format": "date-time"},
            "port": {"x-kubernetes-int-or-string": true},
            "opt": {"type": "string", "nullable": true}}});
        let e = errs(s.clone(), json!({"name": "ABCDEFG", "n": 10, "color": "green", "tags": ["a", "a", "b"], "when": "yesterday",
            "port": 1.5, "opt": null}));
        assert!(e.contains(&"name: Too long: may not be more than 5 bytes".to_string()), "{e:?}");
        assert!(e.contains(&r#"name: Invalid value: "ABCDEFG": name in body should match '^[a-z]+$'"#.to_string()), "{e:?}");
        assert!(e.contains(&"n: Invalid value: 10: n in body should be less than 10".to_string()), "{e:?}");
        assert!(e.contains(&r#"color: Unsupported value: "green": supported values: "red", "blue""#.to_string()), "{e:?}");
        assert!(e.contains(&"tags: Too many: 3: must have at most 2 items".to_string()), "{e:?}");
        assert!(e.contains(&r#"tags[1]: Duplicate value: "a""#.to_string()), "{e:?}");
        assert!(e.contains(&r#"when: Invalid value: "yesterday": when in body must be of type date-time: "yesterday""#.to_string()), "{e:?}");
        assert!(e.iter().any(|l| l.starts_with("port: Invalid value: \"number\"")), "{e:?}");
        assert_eq!(e.len(), 8, "{e:?}");
        assert_eq!(errs(s.clone(), json!({"name": "ok", "port": "http", "n": 3})), Vec::<String>::new());
        assert_eq!(errs(s, json!({})), vec!["name: Required value".to_string()]);
    }

    #[test]
    fn formats() {
        assert!(format_ok("int32", "12") && !format_ok("int32", "99999999999"));
        assert!(format_ok("date", "2024-02-29") && !format_ok("date", "2024-13-01"));
        assert!(format_ok("uuid", "123e4567-e89b-12d3-a456-426614174000") && !format_ok("uuid", "x"));
        assert!(format_ok("cidr", "10.0.0.0/8") && !format_ok("cidr", "10.0.0.0/33"));
        assert!(format_ok("duration", "1h30m") && !format_ok("duration", "soon"));
    }
}
