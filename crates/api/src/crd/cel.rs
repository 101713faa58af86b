//! `x-kubernetes-validations`: CEL rules evaluated with the `cel` crate against `self` (the value at the
//! rule's schema node) and, for transition rules (rules that name `oldSelf`), the old value on update.
//!
//! Only the CEL standard library (with `cel`'s string extensions) is available: Kubernetes' own CEL
//! libraries (quantity, url, ip, format, list extensions) and cost estimation are not implemented.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::status::FieldError;

/// Compiles a rule, returning the compiler's message on failure (used when a CRD is validated).
pub fn compile(rule: &str) -> Result<cel::Program, String> {
    cel::Program::compile(rule).map_err(|e| e.to_string())
}

/// Whether a rule is a transition rule (refers to `oldSelf`).
pub fn is_transition(program: &cel::Program) -> bool {
    program.references().has_variable("oldSelf")
}

/// A JSON value as a CEL value: integers as `int`, other numbers as `double`, objects as maps.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => match n.as_u64() {
                Some(u) => cel::Value::UInt(u),
                None => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
            },
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let m: HashMap<String, cel::Value> = map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(m)
        }
    }
}

/// Evaluates every `x-kubernetes-validations` rule in `schema` against `value` (and the correlated
/// `old` value), recursing through properties, additionalProperties and items.
pub fn validate(schema: &Value, value: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        for rule in rules {
            check_rule(schema, rule, value, old, path, errs);
        }
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|s| s.is_object());
            for (k, v) in map {
                let child_old = old.and_then(|o| o.get(k));
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    validate(s, v, child_old, &p, errs);
                } else if let Some(s) = additional {
                    validate(s, v, child_old, &format!("{path}[{k}]"), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                // Items are correlated with old items only for map lists (by their keys), as upstream.
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"].as_array()
                    .map(|k| k.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let list_type_map = schema["x-kubernetes-list-type"] == "map" && !keys.is_empty();
                for (i, item) in items.iter().enumerate() {
                    let item_old = if list_type_map {
                        old.and_then(Value::as_array).and_then(|olds| olds.iter().find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k))))
                    } else {
                        None
                    };
                    validate(s, item, item_old, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

fn type_name(schema: &Value) -> &str {
    match schema["type"].as_str() {
        Some(t) if !t.is_empty() => t,
        _ if schema["x-kubernetes-int-or-string"] == Value::Bool(true) => "integer",
        _ => "object",
    }
}

fn check_rule(schema: &Value, rule: &Value, value: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(src) = rule["rule"].as_str() else { return };
    let program = match compile(src) {
        Ok(p) => p,
        Err(e) => {
            errs.push(FieldError::invalid(path, &Value::from(type_name(schema)), &format!("rule compiler initialization error: {e}")));
            return;
        }
    };
    let transition = is_transition(&program);
    if transition && old.is_none() && rule["optionalOldSelf"] != Value::Bool(true) {
        return;
    }
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("self", to_cel(value));
    if transition {
        ctx.add_variable_from_value("oldSelf", old.map(to_cel).unwrap_or(cel::Value::Null));
    }
    let field = match rule["fieldPath"].as_str().filter(|p| !p.is_empty()) {
        Some(fp) => format!("{path}{}", if path.is_empty() { fp.trim_start_matches('.') } else { fp }),
        None => path.to_string(),
    };
    let reason = match rule["reason"].as_str() {
        Some("FieldValueRequired") => "FieldValueRequired",
        Some("FieldValueDuplicate") => "FieldValueDuplicate",
        Some("FieldValueForbidden") => "FieldValueForbidden",
        _ => "FieldValueInvalid",
    };
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(true)) => {}
        Ok(cel::Value::Bool(false)) => {
            let message = rule_message(rule, src, &ctx);
            let err = match reason {
                "FieldValueRequired" => FieldError { reason, field, message: format!("Required value: {message}") },
                "FieldValueForbidden" => FieldError { reason, field, message: format!("Forbidden: {message}") },
                "FieldValueDuplicate" => FieldError { reason, field, message: format!("Duplicate value: {message}") },
                _ => FieldError::invalid(field, &Value::from(type_name(schema)), &message),
            };
            errs.push(err);
        }
        Ok(other) => errs.push(FieldError::invalid(field, &Value::from(type_name(schema)),
            &format!("rule did not evaluate to a bool: {}", other.type_of()))),
        Err(e) => errs.push(FieldError::invalid(field, &Value::from(type_name(schema)), &format!("{}: {e}", default_message(src)))),
    }
}

fn default_message(rule: &str) -> String {
    format!("failed rule: {rule}")
}

/// `messageExpression` (when it yields a non-empty string), else `message`, else `failed rule: <rule>`.
fn rule_message(rule: &Value, src: &str, ctx: &cel::Context) -> String {
    if let Some(expr) = rule["messageExpression"].as_str()
        && let Ok(p) = compile(expr)
        && let Ok(cel::Value::String(s)) = p.execute(ctx)
        && !s.trim().is_empty()
    {
        return s.to_string();
    }
    match rule["message"].as_str() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => default_message(src),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(schema: &Value, value: Value, old: Option<Value>) -> Vec<String> {
        let mut e = Vec::new();
        validate(schema, &value, old.as_ref(), "", &mut e);
        e.into_iter().map(|e| e.to_line()).collect()
    }

    #[test]
    fn rules_with_self_and_messages() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
                {"rule": "self.name.startsWith('a')", "messageExpression": "'name ' + self.name + ' must start with a'"},
                {"rule": "!has(self.forbidden)"}],
            "properties": {"minReplicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}, "name": {"type": "string"},
                           "forbidden": {"type": "string"}}}}});
        assert_eq!(run(&s, json!({"spec": {"minReplicas": 1, "maxReplicas": 3, "name": "abc"}}), None), Vec::<String>::new());
        assert_eq!(run(&s, json!({"spec": {"minReplicas": 5, "maxReplicas": 3, "name": "bcd", "forbidden": "x"}}), None), vec![
            r#"spec: Invalid value: "object": minReplicas must not exceed maxReplicas"#.to_string(),
            r#"spec: Invalid value: "object": name bcd must start with a"#.to_string(),
            r#"spec: Invalid value: "object": failed rule: !has(self.forbidden)"#.to_string(),
        ]);
    }

    #[test]
    fn transition_rules_only_run_on_update() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "mode": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]}}}}});
        assert!(run(&s, json!({"spec": {"mode": "a"}}), None).is_empty());
        assert!(run(&s, json!({"spec": {"mode": "a"}}), Some(json!({"spec": {"mode": "a"}}))).is_empty());
        assert_eq!(run(&s, json!({"spec": {"mode": "b"}}), Some(json!({"spec": {"mode": "a"}}))),
            vec![r#"spec.mode: Invalid value: "string": Value is immutable"#.to_string()]);
    }
}
