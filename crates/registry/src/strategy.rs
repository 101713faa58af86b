//! Per-resource rules of the generic store: which kinds track `metadata.generation`, which have a status
//! subresource, and what create and update keep, reset or take from the old object.

use serde_json::{json, Map, Value};
use skiff_api::ResourceInfo;

/// Whether objects of this resource get `metadata.generation`, bumped on every spec change.
pub fn tracks_generation(r: &ResourceInfo) -> bool {
    matches!(
        (r.storage_group, r.storage_plural),
        ("apps", _)
            | ("batch", _)
            | ("autoscaling", _)
            | ("policy", "poddisruptionbudgets")
            | ("networking.k8s.io", "networkpolicies" | "ingresses")
            | ("", "replicationcontrollers")
            | ("apiextensions.k8s.io", "customresourcedefinitions")
    ) && r.storage_plural != "controllerrevisions"
        || r.custom
}

/// Whether the main resource ignores `status` on create and update (it has a status subresource).
pub fn has_status_subresource(r: &ResourceInfo) -> bool {
    r.has_subresource("status")
}

/// The fields that make up the "spec" of an object for generation tracking: everything except
/// `metadata` and `status` (ConfigMaps and the like have no spec but do not track generation).
fn spec_part(obj: &Value) -> Map<String, Value> {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "apiVersion", "kind"] {
        m.remove(k);
    }
    m
}

/// Rewrites write-only input fields into their stored form, as upstream's conversion does: a Secret's
/// `stringData` is base64-encoded into `data` (overriding keys of the same name) and dropped.
pub fn normalize(r: &ResourceInfo, obj: &mut Value) {
    if r.storage_group.is_empty() && r.storage_plural == "secrets"
        && let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
        && let Value::Object(entries) = string_data
    {
        use base64::Engine as _;
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in entries {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()));
        }
    }
}

/// A Service that becomes ExternalName gives up the cluster addresses it had (upstream's
/// `dropTypeDependentFields`), unless the client set different ones itself.
pub fn drop_type_dependent_fields(r: &ResourceInfo, new: &mut Value, old: &Value) {
    if !(r.storage_group.is_empty() && r.storage_plural == "services") {
        return;
    }
    let becomes_external = new["spec"]["type"] == "ExternalName" && old["spec"]["type"] != "ExternalName";
    if becomes_external
        && new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
        && let Some(spec) = new["spec"].as_object_mut()
    {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(f);
        }
    }
}

/// Prepares a new object before validation: resets status where the status subresource owns it and
/// sets what each kind starts with.
pub fn prepare_for_create(r: &ResourceInfo, obj: &mut Value) {
    if has_status_subresource(r) {
        let initial = initial_status(r, obj);
        match initial {
            Some(s) => obj["status"] = s,
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if (r.storage_group, r.storage_plural) == ("", "pods") {
        add_default_toleration_seconds(obj);
    }
    if tracks_generation(r) {
        obj["metadata"]["generation"] = json!(1);
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("generation");
    }
}

/// How long pods stay on a not-ready or unreachable node before the node lifecycle controller evicts them.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Upstream's DefaultTolerationSeconds admission: a pod without a NoExecute toleration for
/// `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable` gets one for 300 s.
fn add_default_toleration_seconds(pod: &mut Value) {
    if !pod["spec"].is_object() {
        return;
    }
    let existing = pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    let mut tolerations = existing.clone();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = existing.iter().any(|t| {
            let effect = t["effect"].as_str().unwrap_or("");
            let k = t["key"].as_str().unwrap_or("");
            (effect.is_empty() || effect == "NoExecute") && (k == key || (k.is_empty() && t["operator"] == "Exists"))
        });
        if !covered {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
    if tolerations.len() != existing.len() {
        pod["spec"]["tolerations"] = Value::Array(tolerations);
    }
}

/// The status an object of this kind is created with.
fn initial_status(r: &ResourceInfo, obj: &Value) -> Option<Value> {
    match (r.storage_group, r.storage_plural) {
        ("", "pods") => {
            let mut status = json!({"phase": "Pending"});
            status["qosClass"] = json!(qos_class(obj));
            Some(status)
        }
        ("", "namespaces") => Some(json!({"phase": "Active"})),
        ("", "persistentvolumeclaims") => Some(json!({"phase": "Pending"})),
        ("", "persistentvolumes") => Some(json!({"phase": "Pending"})),
        ("", "services") => Some(json!({"loadBalancer": {}})),
        ("", "nodes") => obj.get("status").cloned(),
        _ => None,
    }
}

/// The pod QoS class from its containers' requests and limits (Guaranteed, Burstable, BestEffort).
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .collect();
    let mut any_set = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c["resources"]["requests"].as_object();
        let limits = c["resources"]["limits"].as_object();
        if requests.is_some_and(|m| !m.is_empty()) || limits.is_some_and(|m| !m.is_empty()) {
            any_set = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|m| m.get(res));
            let request = requests.and_then(|m| m.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Prepares an update of the main resource: status comes from the old object where the status
/// subresource owns it, and generation is bumped when the spec changed.
pub fn prepare_for_update(r: &ResourceInfo, new: &mut Value, old: &Value) {
    if has_status_subresource(r) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    carry_generation(r, new, old);
}

/// Prepares an update through the status subresource: only `status` (and, as upstream, nothing of
/// metadata but labels and annotations... kept from the old object) changes.
pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    let mut merged = old.clone();
    match status {
        Some(s) => merged["status"] = s,
        None => {
            if let Some(m) = merged.as_object_mut() {
                m.remove("status");
            }
        }
    }
    // managedFields are computed by the API server for the status write; none means keep the old ones.
    if let Some(mf) = new["metadata"].get("managedFields") {
        merged["metadata"]["managedFields"] = mf.clone();
    }
    // resourceVersion from the request is the precondition; keep it for the caller's CAS check.
    if let Some(rv) = new["metadata"].get("resourceVersion") {
        merged["metadata"]["resourceVersion"] = rv.clone();
    }
    *new = merged;
}

fn carry_generation(r: &ResourceInfo, new: &mut Value, old: &Value) {
    if !tracks_generation(r) {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("generation");
        }
        return;
    }
    let old_gen = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let changed = spec_part(new) != spec_part(old);
    // A change of deletionTimestamp does not bump generation; spec changes do.
    new["metadata"]["generation"] = json!(if changed { old_gen + 1 } else { old_gen });
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::find;

    #[test]
    fn pods_get_default_toleration_seconds_unless_they_tolerate_already() {
        let r = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        prepare_for_create(r, &mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t["tolerationSeconds"] == 300 && t["effect"] == "NoExecute"));

        let mut own = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        prepare_for_create(r, &mut own);
        let t = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2, "only not-ready is added");
        assert_eq!(t[0]["tolerationSeconds"], 5);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");

        let mut all = json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}});
        prepare_for_create(r, &mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1, "tolerate-everything covers both");
    }

    #[test]
    fn deployment_generation_bumps_on_spec_change_only() {
        let r = find("apps", "v1", "deployments").unwrap();
        let mut obj = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 5}});
        prepare_for_create(r, &mut obj);
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj.get("status").is_none());

        let mut same = obj.clone();
        same["metadata"]["labels"] = json!({"a": "b"});
        prepare_for_update(r, &mut same, &obj);
        assert_eq!(same["metadata"]["generation"], 1);

        let mut changed = obj.clone();
        changed["spec"]["replicas"] = json!(3);
        changed["status"] = json!({"replicas": 9});
        prepare_for_update(r, &mut changed, &obj);
        assert_eq!(changed["metadata"]["generation"], 2);
        assert!(changed.get("status").is_none(), "status comes from the old object");
    }

    #[test]
    fn status_update_keeps_everything_but_status() {
        let old = json!({"metadata": {"name": "d", "labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "d", "labels": {"a": "2"}, "resourceVersion": "7"},
                             "spec": {"replicas": 9}, "status": {"replicas": 1}});
        prepare_for_status_update(&mut new, &old);
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["metadata"]["labels"]["a"], "1");
        assert_eq!(new["status"]["replicas"], 1);
        assert_eq!(new["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn secret_string_data_moves_into_data() {
        let r = find("", "v1", "secrets").unwrap();
        let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "hunter2"}});
        normalize(r, &mut s);
        assert_eq!(s, json!({"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "aHVudGVyMg=="}}));
    }

    #[test]
    fn pods_start_pending_with_a_qos_class() {
        let r = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        prepare_for_create(r, &mut pod);
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        assert!(pod["metadata"].get("generation").is_none());
    }
}
