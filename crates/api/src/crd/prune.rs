//! Pruning and defaulting of custom objects by their structural schema, as upstream's
//! `structural/pruning` and `structural/defaulting`: fields the schema does not specify are dropped
//! (unless `x-kubernetes-preserve-unknown-fields`), absent fields with a `default` get it, and a `null`
//! in a field that is not `nullable` takes the default or is dropped.

use serde_json::{Map, Value};

/// Drops the fields of `obj` (a whole object: `apiVersion`, `kind` and `metadata` are always kept) that
/// `schema` does not specify.
pub fn prune_object(schema: &Value, obj: &mut Value) {
    prune(schema, obj, true);
}

fn prune(schema: &Value, value: &mut Value, root: bool) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    let embedded = root || schema["x-kubernetes-embedded-resource"] == Value::Bool(true);
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|s| s.is_object());
            let mut drop = Vec::new();
            for (k, v) in map.iter_mut() {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") && props.is_none_or(|p| !p.contains_key(k)) {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    prune(s, v, false);
                } else if let Some(s) = additional {
                    prune(s, v, false);
                } else if schema.get("additionalProperties") == Some(&Value::Bool(true)) || preserve {
                    // Kept as it is.
                } else {
                    drop.push(k.clone());
                }
            }
            for k in drop {
                map.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for item in items {
                    prune(s, item, false);
                }
            }
        }
        _ => {}
    }
}

/// Applies the schema's `default`s to `value`, top-down.
pub fn default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                default_properties(props, map);
            }
            if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for v in map.values_mut() {
                    default(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for item in items {
                    default(s, item);
                }
            }
        }
        _ => {}
    }
}

fn default_properties(props: &Map<String, Value>, map: &mut Map<String, Value>) {
    for (k, s) in props {
        let nullable = s["nullable"] == Value::Bool(true);
        match map.get(k) {
            None => {
                if let Some(d) = s.get("default") {
                    map.insert(k.clone(), d.clone());
                }
            }
            Some(Value::Null) if !nullable => match s.get("default") {
                Some(d) => {
                    map.insert(k.clone(), d.clone());
                }
                None => {
                    map.remove(k);
                }
            },
            Some(_) => {}
        }
        if let Some(v) = map.get_mut(k) {
            default(s, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_are_pruned_unless_preserved() {
        let s = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}}}}}});
        let mut o = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "extra": 1,
            "spec": {"a": "x", "b": "gone", "free": {"anything": {"deep": 1}}, "labels": {"k": "v"},
                     "list": [{"x": 1, "y": 2}]}});
        prune_object(&s, &mut o);
        assert_eq!(o, json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"a": "x", "free": {"anything": {"deep": 1}}, "labels": {"k": "v"}, "list": [{"x": 1}]}}));
    }

    #[test]
    fn defaults_fill_absent_and_null_fields() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
            "properties": {"replicas": {"type": "integer", "default": 1}, "mode": {"type": "string", "default": "fast"},
                           "gone": {"type": "string"}}}}});
        let mut o = json!({"metadata": {}});
        default(&s, &mut o);
        assert_eq!(o["spec"], json!({"replicas": 1, "mode": "fast"}));
        let mut o = json!({"spec": {"replicas": 3, "mode": null, "gone": null}});
        default(&s, &mut o);
        assert_eq!(o["spec"], json!({"replicas": 3, "mode": "fast"}));
    }
}
