//! The typed check: the object must deserialize into the k8s-openapi type of its kind. A type error becomes
//! a field error naming the path (`spec.replicas: Invalid value: "string": spec.replicas in body must be of
//! type integer: "string"`). Missing required fields are not type errors (the per-kind rules report them),
//! so they are filled with placeholders and deserialization is retried to find real type errors behind them.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::ResourceInfo;
use crate::status::FieldError;

/// Map-typed fields: a path segment after one of these is a key, printed as `[key]`.
const MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "binaryData",
    "stringData",
    "nodeSelector",
    "matchLabels",
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
    "parameters",
    "overhead",
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
    "volumeAttributes",
    "allocatedResources",
];

type DeError = serde_path_to_error::Error<serde_json::Error>;

fn de<T: DeserializeOwned>(v: &Value) -> Result<(), DeError> {
    serde_path_to_error::deserialize::<_, T>(v).map(|_| ())
}

fn deserialize(r: &ResourceInfo, v: &Value) -> Result<(), DeError> {
    use k8s_openapi::api::{
        apps, autoscaling, batch, coordination, core, discovery, events, networking, policy, rbac, scheduling, storage,
    };
    match (r.group, r.version, r.kind) {
        ("", "v1", "Namespace") => de::<core::v1::Namespace>(v),
        ("", "v1", "Pod") => de::<core::v1::Pod>(v),
        ("", "v1", "Service") => de::<core::v1::Service>(v),
        ("", "v1", "Endpoints") => de::<core::v1::Endpoints>(v),
        ("", "v1", "ConfigMap") => de::<core::v1::ConfigMap>(v),
        ("", "v1", "Secret") => de::<core::v1::Secret>(v),
        ("", "v1", "ServiceAccount") => de::<core::v1::ServiceAccount>(v),
        ("", "v1", "Node") => de::<core::v1::Node>(v),
        ("", "v1", "Event") => de::<core::v1::Event>(v),
        ("", "v1", "PersistentVolume") => de::<core::v1::PersistentVolume>(v),
        ("", "v1", "PersistentVolumeClaim") => de::<core::v1::PersistentVolumeClaim>(v),
        ("", "v1", "ResourceQuota") => de::<core::v1::ResourceQuota>(v),
        ("", "v1", "LimitRange") => de::<core::v1::LimitRange>(v),
        ("", "v1", "PodTemplate") => de::<core::v1::PodTemplate>(v),
        ("", "v1", "ReplicationController") => de::<core::v1::ReplicationController>(v),
        ("apps", "v1", "Deployment") => de::<apps::v1::Deployment>(v),
        ("apps", "v1", "ReplicaSet") => de::<apps::v1::ReplicaSet>(v),
        ("apps", "v1", "StatefulSet") => de::<apps::v1::StatefulSet>(v),
        ("apps", "v1", "DaemonSet") => de::<apps::v1::DaemonSet>(v),
        ("apps", "v1", "ControllerRevision") => de::<apps::v1::ControllerRevision>(v),
        ("batch", "v1", "Job") => de::<batch::v1::Job>(v),
        ("batch", "v1", "CronJob") => de::<batch::v1::CronJob>(v),
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => de::<autoscaling::v2::HorizontalPodAutoscaler>(v),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => de::<autoscaling::v1::HorizontalPodAutoscaler>(v),
        ("coordination.k8s.io", "v1", "Lease") => de::<coordination::v1::Lease>(v),
        ("discovery.k8s.io", "v1", "EndpointSlice") => de::<discovery::v1::EndpointSlice>(v),
        ("events.k8s.io", "v1", "Event") => de::<events::v1::Event>(v),
        ("rbac.authorization.k8s.io", "v1", "Role") => de::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => de::<rbac::v1::RoleBinding>(v),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => de::<rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => de::<rbac::v1::ClusterRoleBinding>(v),
        ("storage.k8s.io", "v1", "StorageClass") => de::<storage::v1::StorageClass>(v),
        ("storage.k8s.io", "v1", "CSIDriver") => de::<storage::v1::CSIDriver>(v),
        ("networking.k8s.io", "v1", "NetworkPolicy") => de::<networking::v1::NetworkPolicy>(v),
        ("networking.k8s.io", "v1", "Ingress") => de::<networking::v1::Ingress>(v),
        ("networking.k8s.io", "v1", "IngressClass") => de::<networking::v1::IngressClass>(v),
        ("policy", "v1", "PodDisruptionBudget") => de::<policy::v1::PodDisruptionBudget>(v),
        ("scheduling.k8s.io", "v1", "PriorityClass") => de::<scheduling::v1::PriorityClass>(v),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            de::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(v)
        }
        _ => Ok(()),
    }
}

/// One step of a path into a JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// The field path as Kubernetes prints it: `spec.containers[0].ports[1].containerPort`, `data[a.b]`.
fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    let mut prev_is_map = false;
    for s in segs {
        match s {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) if prev_is_map => out.push_str(&format!("[{k}]")),
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
        prev_is_map = matches!(s, Seg::Key(k) if MAP_FIELDS.contains(&k.as_str())) && !prev_is_map;
    }
    out
}

fn at<'a>(v: &'a Value, segs: &[Seg]) -> Option<&'a Value> {
    segs.iter().try_fold(v, |cur, s| match s {
        Seg::Key(k) => cur.get(k),
        Seg::Index(i) => cur.get(*i),
    })
}

fn at_mut<'a>(v: &'a mut Value, segs: &[Seg]) -> Option<&'a mut Value> {
    segs.iter().try_fold(v, |cur, s| match s {
        Seg::Key(k) => cur.get_mut(k),
        Seg::Index(i) => cur.get_mut(*i),
    })
}

fn json_type(v: Option<&Value>) -> &'static str {
    match v {
        Some(Value::String(_)) => "string",
        Some(Value::Number(n)) if n.is_f64() => "number",
        Some(Value::Number(_)) => "integer",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
        Some(Value::Null) | None => "null",
    }
}

/// The OpenAPI type named by a serde "expected ..." phrase.
fn expected_type(expected: &str) -> &'static str {
    let e = expected.trim();
    if ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "integer"].iter().any(|t| e.contains(t)) {
        "integer"
    } else if e.contains("f32") || e.contains("f64") || e.contains("number") {
        "number"
    } else if e.contains("bool") {
        "boolean"
    } else if e.contains("IntOrString") {
        "integer-or-string"
    } else if e.contains("string") || e.contains("Quantity") || e.contains("char") || e.contains("Time") {
        "string"
    } else if e.contains("sequence") || e.contains("array") || e.contains("Vec") {
        "array"
    } else {
        "object"
    }
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Placeholders tried in turn for a missing required field.
fn placeholder(n: usize) -> Option<Value> {
    match n {
        0 => Some(Value::from("")),
        1 => Some(Value::from(0)),
        2 => Some(Value::Bool(false)),
        3 => Some(Value::Object(Default::default())),
        4 => Some(Value::Array(Vec::new())),
        _ => None,
    }
}

/// Turns a serde error into the field error Kubernetes would report.
fn to_field_error(original: &Value, segs: &[Seg], msg: &str) -> FieldError {
    let path = render(segs);
    let value = at(original, segs);
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let expected = rest.rsplit_once(", expected ").map_or("", |(_, e)| e);
        let actual = json_type(value);
        let want = expected_type(expected);
        return FieldError::type_invalid(&path, &format!("\"{actual}\": {path} in body must be of type {want}: \"{actual}\""));
    }
    let shown = value.cloned().unwrap_or(Value::Null);
    if let Some(offset) = msg.split("offset ").nth(1).and_then(|s| s.trim_end_matches('.').trim().parse::<usize>().ok()) {
        // The base64 crate's "Invalid symbol 33, offset 4." as Go's encoding/base64 words it.
        return FieldError::invalid(&path, &shown, &format!("illegal base64 data at input byte {offset}"));
    }
    if msg.starts_with("Invalid") && msg.contains("length") || msg.contains("padding") || msg.contains("last symbol") {
        let len = shown.as_str().map_or(0, str::len);
        return FieldError::invalid(&path, &shown, &format!("illegal base64 data at input byte {}", len.saturating_sub(1)));
    }
    FieldError::invalid(&path, &shown, msg)
}

/// The typed check of `obj` as the kind of `r`; empty when it deserializes.
pub fn check(r: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut v = obj.clone();
    strip_nulls(&mut v);
    if let Some(m) = v.as_object_mut() {
        // The registry sets these; the typed check must not fail on a missing or served-version apiVersion.
        m.insert("apiVersion".into(), Value::from(r.api_version()));
        m.insert("kind".into(), Value::from(r.kind));
        m.remove("status");
    }
    // Placeholders filled for missing fields: (path, attempt).
    let mut filled: Vec<(Vec<Seg>, usize)> = Vec::new();
    for _ in 0..64 {
        let err = match deserialize(r, &v) {
            Ok(()) => return Vec::new(),
            Err(e) => e,
        };
        let segs = segments(err.path());
        let msg = err.inner().to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        if let Some(field) = msg.strip_prefix("missing field `").and_then(|s| s.split('`').next()) {
            let mut field_path = segs.clone();
            field_path.push(Seg::Key(field.to_string()));
            let Some(Value::Object(parent)) = at_mut(&mut v, &segs) else { return Vec::new() };
            parent.insert(field.to_string(), placeholder(0).unwrap_or_default());
            filled.push((field_path, 0));
            continue;
        }
        if let Some((_, attempt)) = filled.iter_mut().find(|(p, _)| *p == segs) {
            *attempt += 1;
            let Some(next) = placeholder(*attempt) else { return Vec::new() };
            match at_mut(&mut v, &segs) {
                Some(slot) => *slot = next,
                None => return Vec::new(),
            }
            continue;
        }
        if filled.iter().any(|(p, _)| segs.starts_with(p)) {
            // An error inside a placeholder is not the user's.
            return Vec::new();
        }
        return vec![to_field_error(obj, &segs, &msg)];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    fn lines(plural: &str, group: &str, version: &str, obj: Value) -> Vec<String> {
        check(find(group, version, plural).unwrap(), &obj).iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn type_errors_name_the_path() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": "3", "selector": {}, "template": {}}});
        assert_eq!(
            lines("deployments", "apps", "v1", d),
            vec!["spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""]
        );
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": true}]}]}});
        assert_eq!(
            lines("pods", "", "v1", p),
            vec!["spec.containers[0].ports[0].containerPort: Invalid value: \"boolean\": spec.containers[0].ports[0].containerPort in body must be of type integer: \"boolean\""]
        );
        let cm = json!({"metadata": {"name": "c", "labels": {"a.b": 1}}});
        assert_eq!(
            lines("configmaps", "", "v1", cm),
            vec!["metadata.labels[a.b]: Invalid value: \"integer\": metadata.labels[a.b] in body must be of type string: \"integer\""]
        );
    }

    #[test]
    fn missing_required_fields_are_not_type_errors() {
        // containers[0].name is required by the type, and a type error hides behind it.
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "i"}], "hostNetwork": "yes"}});
        assert_eq!(
            lines("pods", "", "v1", p),
            vec!["spec.hostNetwork: Invalid value: \"string\": spec.hostNetwork in body must be of type boolean: \"string\""]
        );
        let ok = json!({"metadata": {"name": "p"}, "spec": {"containers": [{}]}});
        assert!(lines("pods", "", "v1", ok).is_empty());
        let bare = json!({});
        assert!(lines("roles", "rbac.authorization.k8s.io", "v1", bare).is_empty());
    }

    #[test]
    fn secrets_need_base64() {
        let s = json!({"metadata": {"name": "s"}, "data": {"k": "not base64!"}});
        let l = lines("secrets", "", "v1", s);
        assert_eq!(l, vec!["data[k]: Invalid value: \"not base64!\": illegal base64 data at input byte 3"]);
        let ok = json!({"metadata": {"name": "s"}, "data": {"k": "aGVsbG8="}, "status": {"x": 1}});
        assert!(lines("secrets", "", "v1", ok).is_empty());
    }

    #[test]
    fn every_served_kind_has_a_type() {
        for r in crate::resources::RESOURCES {
            let errs = check(r, &json!({"metadata": 5}));
            assert_eq!(errs.len(), 1, "{}/{} {}", r.group, r.version, r.kind);
            assert_eq!(errs[0].field, "metadata");
            assert_eq!(errs[0].reason, "FieldValueTypeInvalid");
        }
    }

    #[test]
    fn nulls_and_quantities_are_fine() {
        let p = json!({"metadata": {"name": "p", "creationTimestamp": null}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}});
        assert!(lines("pods", "", "v1", p).is_empty());
    }
}
