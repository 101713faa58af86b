//! Conversion between the served versions of one stored resource: HorizontalPodAutoscalers are stored
//! as autoscaling/v2 and served as v1 too; Events are stored as core/v1 and served as events.k8s.io/v1.
//! Custom resources are stored in their CRD's storage version and converted with the `None` strategy
//! (only `apiVersion` is rewritten).

use serde_json::{json, Map, Value};
use skiff_api::ResourceInfo;

/// The apiVersion objects of this resource are stored in.
pub fn storage_api_version(r: &ResourceInfo) -> &'static str {
    match (r.storage_group, r.storage_plural) {
        ("autoscaling", "horizontalpodautoscalers") => "autoscaling/v2",
        ("", "events") => "v1",
        _ => "",
    }
}

/// Whether objects of `r` are served in a version other than the one they are stored in.
pub fn needs_conversion(r: &ResourceInfo) -> bool {
    (r.custom && r.version != r.storage_version) || matches!((r.group, r.version, r.storage_plural), ("autoscaling", "v1", "horizontalpodautoscalers") | ("events.k8s.io", "v1", "events"))
}

/// Converts a stored object to the version `r` serves (a no-op for single-version resources).
pub fn to_served(r: &ResourceInfo, mut obj: Value) -> Value {
    match (r.group, r.version, r.storage_plural) {
        ("autoscaling", "v1", "horizontalpodautoscalers") => hpa_v2_to_v1(&mut obj),
        ("events.k8s.io", "v1", "events") => core_event_to_events_v1(&mut obj),
        _ => {}
    }
    obj["apiVersion"] = json!(r.api_version());
    obj["kind"] = json!(r.kind);
    obj
}

/// Converts an object in the version `r` serves to the stored version.
pub fn to_storage(r: &ResourceInfo, mut obj: Value) -> Value {
    match (r.group, r.version, r.storage_plural) {
        ("autoscaling", "v1", "horizontalpodautoscalers") => hpa_v1_to_v2(&mut obj),
        ("events.k8s.io", "v1", "events") => events_v1_to_core_event(&mut obj),
        _ => {
            // Single-version built-ins and custom resources (`None` conversion: only apiVersion changes).
            obj["apiVersion"] = json!(if r.storage_group.is_empty() {
                r.storage_version.to_string()
            } else {
                format!("{}/{}", r.storage_group, r.storage_version)
            });
            obj["kind"] = json!(r.kind);
            return obj;
        }
    }
    obj["apiVersion"] = json!(storage_api_version(r));
    obj["kind"] = json!(r.kind);
    obj
}

fn take(m: &mut Map<String, Value>, key: &str) -> Option<Value> {
    m.remove(key)
}

fn rename(m: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = take(m, from) {
        m.insert(to.to_string(), v);
    }
}

fn hpa_v1_to_v2(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(target) = take(spec, "targetCPUUtilizationPercentage")
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target}}}]),
        );
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        if let Some(current) = take(status, "currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]),
            );
        }
        if let Some(t) = take(status, "lastScaleTime") {
            status.insert("lastScaleTime".into(), t);
        }
    }
}

fn hpa_v2_to_v1(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let metrics = take(spec, "metrics");
        spec.remove("behavior");
        let cpu = metrics.as_ref().and_then(Value::as_array).and_then(|ms| {
            ms.iter().find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
                .and_then(|m| m["resource"]["target"]["averageUtilization"].as_i64())
        });
        if let Some(cpu) = cpu {
            spec.insert("targetCPUUtilizationPercentage".into(), json!(cpu));
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let current = take(status, "currentMetrics");
        status.remove("conditions");
        let cpu = current.as_ref().and_then(Value::as_array).and_then(|ms| {
            ms.iter().find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
                .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
        });
        if let Some(cpu) = cpu {
            status.insert("currentCPUUtilizationPercentage".into(), json!(cpu));
        }
    }
}

const EVENT_RENAMES: &[(&str, &str)] = &[
    // (core/v1, events.k8s.io/v1)
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn core_event_to_events_v1(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        for (core, ev) in EVENT_RENAMES {
            rename(m, core, ev);
        }
    }
}

fn events_v1_to_core_event(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        for (core, ev) in EVENT_RENAMES {
            rename(m, ev, core);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::find;

    #[test]
    fn hpa_v1_round_trips_through_v2_storage() {
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70,
                     "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}}});
        let stored = to_storage(v1, obj.clone());
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);
        assert_eq!(to_served(v1, stored), obj);
    }

    #[test]
    fn events_v1_maps_field_names() {
        let ev = find("events.k8s.io", "v1", "events").unwrap();
        let stored = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started"});
        let served = to_served(ev, stored.clone());
        assert_eq!(served["apiVersion"], "events.k8s.io/v1");
        assert_eq!(served["regarding"]["name"], "p");
        assert_eq!(served["note"], "hi");
        assert_eq!(to_storage(ev, served), stored);
    }
}
