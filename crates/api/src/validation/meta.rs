//! `ObjectMeta` validation (name per kind, namespace, labels, annotations, owner references, finalizers),
//! its update rules, and the shared label-map and label-selector checks.

use serde_json::Value;

use super::format::{self, NameRule};
use super::{gofmt, immutable, list, nonnegative, opt_int, str_at, Errs, Path};
use crate::resources::ResourceInfo;
use crate::status::FieldError;

const ANNOTATIONS_LIMIT: usize = 256 * 1024;
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// The name rule of a kind (`ValidateNameFunc` upstream).
pub fn name_rule(r: &ResourceInfo) -> NameRule {
    match (r.group, r.kind) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("", "Event") => NameRule::Unchecked,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// `ValidateObjectMeta` with the kind's name rule and scope.
pub fn object_meta(r: &ResourceInfo, obj: &Value, e: &mut Errs) {
    let meta = &obj["metadata"];
    let p = Path::new("metadata");
    let rule = name_rule(r);
    let generate_name = str_at(meta, "generateName");
    if !generate_name.is_empty() {
        for m in format::check_name(rule, generate_name, true) {
            e.push(FieldError::invalid(p.child("generateName"), &Value::from(generate_name), &m));
        }
    }
    let name = str_at(meta, "name");
    if name.is_empty() {
        e.push(FieldError::required_msg(p.child("name"), "name or generateName is required"));
    } else {
        for m in format::check_name(rule, name, false) {
            e.push(FieldError::invalid(p.child("name"), &Value::from(name), &m));
        }
        if r.group == "storage.k8s.io" && r.kind == "CSIDriver" && name.len() > 63 {
            e.push(FieldError::invalid(p.child("name"), &Value::from(name), &format::max_len_error(63)));
        }
    }
    let namespace = str_at(meta, "namespace");
    if r.namespaced {
        if namespace.is_empty() {
            e.push(FieldError::required(p.child("namespace")));
        } else {
            for m in format::is_dns1123_label(namespace) {
                e.push(FieldError::invalid(p.child("namespace"), &Value::from(namespace), &m));
            }
        }
    } else if !namespace.is_empty() {
        e.push(FieldError::forbidden(p.child("namespace"), "not allowed on this type"));
    }
    if let Some(g) = opt_int(meta, "generation") {
        nonnegative(g, &p.child("generation"), e);
    }
    labels(meta.get("labels"), &p.child("labels"), e);
    annotations(meta.get("annotations"), &p.child("annotations"), e);
    owner_references(list(meta, "ownerReferences"), &p.child("ownerReferences"), e);
    finalizers(meta.get("finalizers"), &p.child("finalizers"), e);
}

/// `ValidateLabels`: keys are qualified names, values label values; the path is the map's.
pub fn labels(v: Option<&Value>, p: &Path, e: &mut Errs) {
    let Some(m) = v.and_then(Value::as_object) else { return };
    for (k, val) in m {
        for msg in format::is_qualified_name(k) {
            e.push(FieldError::invalid(p, &Value::from(k.as_str()), &msg));
        }
        let s = val.as_str().unwrap_or("");
        for msg in format::is_label_value(s) {
            e.push(FieldError::invalid(p, &Value::from(s), &msg));
        }
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive); at most 256 KiB in all.
pub fn annotations(v: Option<&Value>, p: &Path, e: &mut Errs) {
    let Some(m) = v.and_then(Value::as_object) else { return };
    let mut total = 0usize;
    for (k, val) in m {
        for msg in format::is_qualified_name(&k.to_lowercase()) {
            e.push(FieldError::invalid(p, &Value::from(k.as_str()), &msg));
        }
        total += k.len() + val.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_LIMIT {
        e.push(FieldError::too_long(p, ANNOTATIONS_LIMIT));
    }
}

fn owner_references(refs: &[Value], p: &Path, e: &mut Errs) {
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_at(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            e.push(FieldError::invalid(p.child("apiVersion"), &Value::from(api_version), "version must not be empty"));
        }
        for f in ["kind", "name", "uid"] {
            if str_at(r, f).is_empty() {
                e.push(FieldError::invalid(p.child(f), &Value::from(""), "must not be empty"));
            }
        }
        if api_version == "v1" && str_at(r, "kind") == "Event" {
            e.push(FieldError::invalid(p, r, "/v1, Kind=Event is disallowed from being an owner"));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let cur = format!("{}/{}", str_at(r, "kind"), str_at(r, "name"));
            match &first_controller {
                Some(first) => e.push(FieldError::invalid(
                    p,
                    &Value::Array(refs.to_vec()),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {cur}"),
                )),
                None => first_controller = Some(cur),
            }
        }
    }
}

fn finalizers(v: Option<&Value>, p: &Path, e: &mut Errs) {
    let Some(items) = v.and_then(Value::as_array) else { return };
    let names: Vec<&str> = items.iter().map(|f| f.as_str().unwrap_or("")).collect();
    for f in &names {
        for m in format::is_qualified_name(f) {
            e.push(FieldError::invalid(p, &Value::from(*f), &m));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        e.push(super::invalid_go(
            p,
            &gofmt::str_slice(v),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    for (i, f) in names.iter().enumerate() {
        kube_finalizer_name(f, &p.index(i), e);
    }
}

/// `validateKubeFinalizerName`: an unqualified finalizer must be a standard one.
pub fn kube_finalizer_name(f: &str, p: &Path, e: &mut Errs) {
    if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
        e.push(FieldError::invalid(p, &Value::from(f), "name is neither a standard finalizer name nor is it fully qualified"));
    }
}

/// `ValidateObjectMetaUpdate` (the registry keeps uid, creationTimestamp and resourceVersion itself).
pub fn object_meta_update(new: &Value, old: &Value, e: &mut Errs) {
    let (nm, om) = (&new["metadata"], &old["metadata"]);
    let p = Path::new("metadata");
    if om.get("deletionTimestamp").is_some_and(|d| !d.is_null()) {
        let old_f: Vec<&str> = list(om, "finalizers").iter().filter_map(Value::as_str).collect();
        let mut extra: Vec<&str> =
            list(nm, "finalizers").iter().filter_map(Value::as_str).filter(|f| !old_f.contains(f)).collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let rendered = gofmt::str_slice(Some(&Value::from(extra.clone())));
            e.push(FieldError::forbidden(
                p.child("finalizers"),
                &format!("no new finalizers can be added if the object is being deleted, found new finalizers {rendered}"),
            ));
        }
    }
    for f in ["name", "namespace", "uid"] {
        let (a, b) = (str_at(nm, f), str_at(om, f));
        if a != b {
            e.push(immutable(p.child(f), &Value::from(a)));
        }
    }
}

/// `ValidateLabelSelector` (matchLabels and matchExpressions) at `p`.
pub fn label_selector(sel: Option<&Value>, p: &Path, e: &mut Errs) {
    let Some(sel) = sel.filter(|s| s.is_object()) else { return };
    labels(sel.get("matchLabels"), &p.child("matchLabels"), e);
    for (i, expr) in list(sel, "matchExpressions").iter().enumerate() {
        let ep = p.child("matchExpressions").index(i);
        let values = list(expr, "values");
        let op = str_at(expr, "operator");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.push(FieldError::required_msg(ep.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.push(FieldError::forbidden(
                        ep.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => e.push(FieldError::invalid(ep.child("operator"), &Value::from(op), "not a valid selector operator")),
        }
        let key = str_at(expr, "key");
        for m in format::is_qualified_name(key) {
            e.push(FieldError::invalid(ep.child("key"), &Value::from(key), &m));
        }
        for (j, v) in values.iter().enumerate() {
            let s = v.as_str().unwrap_or("");
            for m in format::is_label_value(s) {
                e.push(FieldError::invalid(ep.child("values").index(j), &Value::from(s), &m));
            }
        }
    }
}

/// Whether a `metav1.LabelSelector` (absent: matches nothing) selects the given labels; `None` when the
/// selector cannot be built (`LabelSelectorAsSelector` fails).
pub fn selector_matches(sel: Option<&Value>, labels: Option<&Value>) -> Option<bool> {
    let sel = crate::selector::LabelSelector::from_json(sel.unwrap_or(&Value::Null)).ok()?;
    Some(sel.matches(labels.and_then(Value::as_object)))
}

/// The number of requirements of a `metav1.LabelSelector`.
pub fn selector_size(sel: Option<&Value>) -> usize {
    sel.map_or(0, |s| super::map_len(s, "matchLabels") + list(s, "matchExpressions").len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    fn errs(plural: &str, group: &str, obj: Value) -> Vec<String> {
        let r = crate::resources::RESOURCES.iter().find(|r| r.plural == plural && r.group == group).unwrap();
        let mut e = Errs::new();
        object_meta(r, &obj, &mut e);
        e.iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn names_follow_the_kind() {
        assert!(errs("configmaps", "", json!({"metadata": {"name": "a.b", "namespace": "default"}})).is_empty());
        let ns = errs("namespaces", "", json!({"metadata": {"name": "a.b"}}));
        assert_eq!(ns, vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]);
        let svc = errs("services", "", json!({"metadata": {"name": "1web", "namespace": "d"}}));
        assert!(svc[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist"));
        assert!(errs("clusterroles", "rbac.authorization.k8s.io", json!({"metadata": {"name": "system:aggregate-to-edit"}})).is_empty());
        let missing = errs("pods", "", json!({"metadata": {"namespace": "d"}}));
        assert_eq!(missing, vec!["metadata.name: Required value: name or generateName is required"]);
    }

    #[test]
    fn scope_decides_the_namespace_rule() {
        let cluster = errs("nodes", "", json!({"metadata": {"name": "n", "namespace": "x"}}));
        assert_eq!(cluster, vec!["metadata.namespace: Forbidden: not allowed on this type"]);
        let namespaced = errs("pods", "", json!({"metadata": {"name": "p"}}));
        assert_eq!(namespaced, vec!["metadata.namespace: Required value"]);
    }

    #[test]
    fn labels_annotations_finalizers() {
        let e = errs(
            "configmaps",
            "",
            json!({"metadata": {"name": "c", "namespace": "d", "labels": {"a/b/c": "ok", "k": "-bad"},
                   "annotations": {"Example.COM/Key": "fine", "big": "x".repeat(262_144)},
                   "finalizers": ["custom", "example.com/f"]}}),
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of"));
        assert!(e[1].starts_with("metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"));
        assert_eq!(e[2], "metadata.annotations: Too long: may not be more than 262144 bytes");
        assert_eq!(
            e[3],
            "metadata.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
        );
    }

    #[test]
    fn updates_keep_identity() {
        let mut e = Errs::new();
        object_meta_update(
            &json!({"metadata": {"name": "b", "namespace": "d", "finalizers": ["x/y"]}}),
            &json!({"metadata": {"name": "a", "namespace": "d", "deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            &mut e,
        );
        let lines: Vec<String> = e.iter().map(FieldError::to_line).collect();
        assert_eq!(
            lines,
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"x/y\"}",
                "metadata.name: Invalid value: \"b\": field is immutable",
            ]
        );
        let _ = find("", "v1", "pods");
    }

    #[test]
    fn selectors() {
        let mut e = Errs::new();
        label_selector(
            Some(&json!({"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Exists", "values": ["x"]}, {"key": "c", "operator": "Gt"}]})),
            &Path::new("spec.selector"),
            &mut e,
        );
        let lines: Vec<String> = e.iter().map(FieldError::to_line).collect();
        assert_eq!(
            lines,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Gt\": not a valid selector operator",
            ]
        );
        assert_eq!(selector_matches(Some(&json!({"matchLabels": {"a": "1"}})), Some(&json!({"a": "1", "b": "2"}))), Some(true));
        assert_eq!(selector_matches(None, Some(&json!({"a": "1"}))), Some(false));
        assert_eq!(selector_matches(Some(&json!({})), None), Some(true));
    }
}
