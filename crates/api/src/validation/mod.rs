//! Validation of API objects as upstream Kubernetes 1.33 validates them: a typed check against the
//! k8s-openapi type of the kind, object metadata, then the per-kind rules, returning every field error with
//! upstream's field paths and messages. `validate_update` adds the immutability rules of updates.
//!
//! Objects are untyped JSON; explicit zero values (`""`, `0`, `false`) read the same as absent ones, as they
//! do for Go's non-pointer fields.

mod apps;
mod batch;
mod core;
mod cron;
pub mod format;
mod gofmt;
mod meta;
mod misc;
mod networking;
mod pod;
pub mod quantity;
pub(crate) mod typed;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::resources::ResourceInfo;
use crate::status::FieldError;

pub use format::NameRule;
pub use quantity::Quantity;

/// Where the errors of one validation run go.
pub(crate) type Errs = Vec<FieldError>;

/// Validates an object on create (and, with `validate_update`, on update). Every error is returned.
pub fn validate(resource: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let typed = typed::check(resource, obj);
    if !typed.is_empty() {
        return typed;
    }
    let mut errs = Errs::new();
    let e = &mut errs;
    match (resource.group, resource.kind) {
        ("", "Event") => {
            // Legacy core/v1 Events skip ObjectMeta validation upstream; only the name must exist.
            if str_at(&obj["metadata"], "name").is_empty() {
                e.push(FieldError::required_msg("metadata.name", "name or generateName is required"));
            }
        }
        _ => meta::object_meta(resource, obj, e),
    }
    match (resource.group, resource.kind) {
        ("", "Pod") => pod::pod(obj, e),
        ("", "PodTemplate") => pod::pod_template_object(obj, e),
        ("", "ReplicationController") => apps::replication_controller(obj, e),
        ("", "Service") => core::service(obj, e),
        ("", "Endpoints") => core::endpoints(obj, e),
        ("", "ConfigMap") => core::config_map(obj, e),
        ("", "Secret") => core::secret(obj, e),
        ("", "Namespace") => core::namespace(obj, e),
        ("", "Node") => core::node(obj, e),
        ("", "Event") => core::event(obj, false, e),
        ("events.k8s.io", "Event") => core::event(obj, true, e),
        ("", "PersistentVolume") => core::persistent_volume(obj, e),
        ("", "PersistentVolumeClaim") => core::persistent_volume_claim(obj, e),
        ("", "ResourceQuota") => core::resource_quota(obj, e),
        ("", "LimitRange") => core::limit_range(obj, e),
        ("apps", "Deployment") => apps::deployment(obj, e),
        ("apps", "ReplicaSet") => apps::replica_set(obj, e),
        ("apps", "StatefulSet") => apps::stateful_set(obj, e),
        ("apps", "DaemonSet") => apps::daemon_set(obj, e),
        ("apps", "ControllerRevision") => apps::controller_revision(obj, e),
        ("batch", "Job") => batch::job(obj, e),
        ("batch", "CronJob") => batch::cron_job(obj, e),
        ("autoscaling", "HorizontalPodAutoscaler") if resource.version == "v1" => misc::hpa_v1(obj, e),
        ("autoscaling", "HorizontalPodAutoscaler") => misc::hpa_v2(obj, e),
        ("coordination.k8s.io", "Lease") => misc::lease(obj, e),
        ("discovery.k8s.io", "EndpointSlice") => networking::endpoint_slice(obj, e),
        ("rbac.authorization.k8s.io", "Role") => misc::role(obj, true, e),
        ("rbac.authorization.k8s.io", "ClusterRole") => misc::role(obj, false, e),
        ("rbac.authorization.k8s.io", "RoleBinding") => misc::role_binding(obj, true, e),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => misc::role_binding(obj, false, e),
        ("storage.k8s.io", "StorageClass") => misc::storage_class(obj, e),
        ("storage.k8s.io", "CSIDriver") => misc::csi_driver(obj, e),
        ("networking.k8s.io", "NetworkPolicy") => networking::network_policy(obj, e),
        ("networking.k8s.io", "Ingress") => networking::ingress(obj, e),
        ("networking.k8s.io", "IngressClass") => networking::ingress_class(obj, e),
        ("policy", "PodDisruptionBudget") => misc::pod_disruption_budget(obj, e),
        ("scheduling.k8s.io", "PriorityClass") => misc::priority_class(obj, e),
        _ => {}
    }
    errs
}

/// The rules an update adds to `validate(new)`: what may not change between `old` and `new`.
pub fn validate_update(resource: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Errs::new();
    let e = &mut errs;
    meta::object_meta_update(new, old, e);
    match (resource.group, resource.kind) {
        ("", "Pod") => pod::pod_update(new, old, e),
        ("", "Service") => core::service_update(new, old, e),
        ("", "ConfigMap") => core::config_map_update(new, old, e),
        ("", "Secret") => core::secret_update(new, old, e),
        ("", "PersistentVolumeClaim") => core::persistent_volume_claim_update(new, old, e),
        ("", "PersistentVolume") => core::persistent_volume_update(new, old, e),
        ("", "Node") => core::node_update(new, old, e),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => apps::selector_immutable(new, old, e),
        ("apps", "StatefulSet") => apps::stateful_set_update(new, old, e),
        ("apps", "ControllerRevision") => apps::controller_revision_update(new, old, e),
        ("batch", "Job") => batch::job_update(new, old, e),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => misc::role_binding_update(new, old, e),
        ("storage.k8s.io", "StorageClass") => misc::storage_class_update(new, old, e),
        ("storage.k8s.io", "CSIDriver") => misc::csi_driver_update(new, old, e),
        ("networking.k8s.io", "IngressClass") => networking::ingress_class_update(new, old, e),
        ("scheduling.k8s.io", "PriorityClass") => misc::priority_class_update(new, old, e),
        _ => {}
    }
    errs
}

// ---------------------------------------------------------------------------------------------------
// Field paths

/// A field path as upstream's `field.Path` prints it: `spec.containers[0].image`, `data[key]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub fn new(root: &str) -> Path {
        Path(root.to_string())
    }

    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() { Path(name.to_string()) } else { Path(format!("{}.{name}", self.0)) }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k}]", self.0))
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> String {
        p.0.clone()
    }
}

impl From<Path> for String {
    fn from(p: Path) -> String {
        p.0
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------------
// Reading untyped objects with Go's zero-value semantics

/// A field that is present and not `null`.
pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// A string field, `""` when absent or not a string.
pub(crate) fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An optional string field (a Go `*string`).
pub(crate) fn opt_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An integer field, 0 when absent.
pub(crate) fn int_at(v: &Value, key: &str) -> i64 {
    opt_int(v, key).unwrap_or(0)
}

/// An optional integer field (a Go `*int32`).
pub(crate) fn opt_int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
}

pub(crate) fn bool_at(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A list field, empty when absent.
pub(crate) fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// An object field.
pub(crate) fn map_at<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// The number of entries of a map field (0 when absent).
pub(crate) fn map_len(v: &Value, key: &str) -> usize {
    map_at(v, key).map_or(0, Map::len)
}

/// Semantic equality of two optional fields, treating absent, `null` and the zero value alike.
pub(crate) fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn norm(v: Option<&Value>) -> Value {
        match v {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(s)) if s.is_empty() => Value::Null,
            Some(Value::Bool(false)) => Value::Null,
            Some(Value::Array(a)) if a.is_empty() => Value::Null,
            Some(Value::Object(m)) if m.is_empty() => Value::Null,
            Some(Value::Object(m)) => {
                let kept: Map<String, Value> =
                    m.iter().map(|(k, v)| (k.clone(), norm(Some(v)))).filter(|(_, v)| !v.is_null()).collect();
                if kept.is_empty() { Value::Null } else { Value::Object(kept) }
            }
            Some(Value::Array(a)) => Value::Array(a.iter().map(|x| norm(Some(x))).collect()),
            Some(other) => other.clone(),
        }
    }
    norm(a) == norm(b)
}

// ---------------------------------------------------------------------------------------------------
// Errors with values rendered the way upstream renders them

/// `Invalid value: <rendered>: <detail>` with a value already rendered Go-style.
pub(crate) fn invalid_go(field: impl Into<String>, rendered: &str, detail: &str) -> FieldError {
    FieldError { reason: "FieldValueInvalid", field: field.into(), message: format!("Invalid value: {rendered}: {detail}") }
}

/// `Unsupported value: <rendered>: supported values: ...` with a value rendered Go-style.
pub(crate) fn not_supported_go(field: impl Into<String>, rendered: &str, supported: &[&str]) -> FieldError {
    let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
    FieldError {
        reason: "FieldValueNotSupported",
        field: field.into(),
        message: format!("Unsupported value: {rendered}: supported values: {}", list.join(", ")),
    }
}

/// `Not found: <value>`.
pub(crate) fn not_found(field: impl Into<String>, value: &Value) -> FieldError {
    let rendered = match value {
        Value::String(s) => gofmt::quote(s),
        other => other.to_string(),
    };
    FieldError { reason: "FieldValueNotFound", field: field.into(), message: format!("Not found: {rendered}") }
}

/// `Invalid value: <value>: field is immutable`.
pub(crate) fn immutable(field: impl Into<String>, value: &Value) -> FieldError {
    FieldError::invalid(field, value, "field is immutable")
}

/// `ValidateNonnegativeField`.
pub(crate) fn nonnegative(v: i64, p: &Path, e: &mut Errs) {
    if v < 0 {
        e.push(FieldError::invalid(p, &Value::from(v), "must be greater than or equal to 0"));
    }
}

/// `ValidateDNS1123Label` on a field.
pub(crate) fn dns_label(v: &str, p: &Path, e: &mut Errs) {
    for m in format::is_dns1123_label(v) {
        e.push(FieldError::invalid(p, &Value::from(v), &m));
    }
}

/// `ValidateDNS1123Subdomain` on a field.
pub(crate) fn dns_subdomain(v: &str, p: &Path, e: &mut Errs) {
    for m in format::is_dns1123_subdomain(v) {
        e.push(FieldError::invalid(p, &Value::from(v), &m));
    }
}

/// `ValidateQualifiedName` on a field.
pub(crate) fn qualified_name(v: &str, p: &Path, e: &mut Errs) {
    for m in format::is_qualified_name(v) {
        e.push(FieldError::invalid(p, &Value::from(v), &m));
    }
}

/// Checks a `[]string`-like enum field against its supported values (`Required` when empty).
pub(crate) fn one_of(v: &str, supported: &[&str], p: &Path, e: &mut Errs) {
    if v.is_empty() {
        e.push(FieldError::required(p));
    } else if !supported.contains(&v) {
        e.push(FieldError::not_supported(p, &Value::from(v), supported));
    }
}
