//! Unknown-field detection for `fieldValidation=Strict|Warn`: walks an object against its kind's schema
//! and reports every field the schema does not declare.

use serde_json::Value;

use super::Schemas;

/// Paths of the fields of `obj` unknown to `schema`, in document order (`spec.containers[0].imagee`).
pub(super) fn unknown_fields(schemas: &Schemas, schema: &Value, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schemas, schema, obj, "", &mut out);
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Whether a schema accepts any value below it: free-form objects, int-or-string, preserved fields.
fn is_leaf(schema: &Value) -> bool {
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
    flag("x-kubernetes-preserve-unknown-fields")
        || flag("x-kubernetes-int-or-string")
        || schema.get("format").and_then(Value::as_str) == Some("int-or-string")
}

fn walk(schemas: &Schemas, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    // A dangling reference accepts anything: nothing can be said about its fields.
    let Some(schema) = schemas.resolve(schema) else { return };
    if is_leaf(schema) {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if properties.is_none() && additional.is_none() {
                // RawExtension, JSON, FieldsV1 and other free-form objects.
                return;
            }
            for (key, child) in map {
                match properties.and_then(|p| p.get(key)).or(additional) {
                    Some(field_schema) => walk(schemas, field_schema, child, &join(path, key), out),
                    None => out.push(join(path, key)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(schemas, item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reports_nested_unknown_fields_with_indexes() {
        let s = Schemas::load();
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "bogus": 1},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "a", "image": "nginx"},
                        {"name": "b", "imagee": "nginx", "ports": [{"containerPort": 80, "hostt": 1}],
                         "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
                    ]}
                }
            },
            "status": {"replicas": 1}
        });
        assert_eq!(
            s.unknown_fields("apps", "v1", "Deployment", &deploy),
            vec![
                "metadata.bogus".to_string(),
                "spec.template.spec.containers[1].imagee".to_string(),
                "spec.template.spec.containers[1].ports[0].hostt".to_string(),
            ]
        );
    }

    #[test]
    fn top_level_and_clean_objects() {
        let s = Schemas::load();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        assert!(s.unknown_fields("", "v1", "ConfigMap", &cm).is_empty());
        let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "dataa": {}});
        assert_eq!(s.unknown_fields("", "v1", "ConfigMap", &bad), vec!["dataa".to_string()]);
        assert!(s.unknown_fields("example.com", "v1", "Widget", &bad).is_empty());
    }

    #[test]
    fn free_form_and_int_or_string_are_leaves() {
        let s = Schemas::load();
        let svc = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]}
        });
        assert!(s.unknown_fields("", "v1", "Service", &svc).is_empty());
        // ControllerRevision.data is a RawExtension: anything goes below it.
        let cr = json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"},
            "revision": 1, "data": {"spec": {"whatever": {"deep": [1, 2]}}}
        });
        assert!(s.unknown_fields("apps", "v1", "ControllerRevision", &cr).is_empty());
        // managedFields[].fieldsV1 is free-form as well.
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        });
        assert!(s.unknown_fields("", "v1", "Pod", &pod).is_empty());
    }
}
