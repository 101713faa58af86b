//! A pod's QoS class (`v1qos.GetPodQOS`) and the OOM score adjustment of its containers
//! (`qos.GetContainerOOMScoreAdjust`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_runtime::bundle::{parse_bytes, parse_cpu_millis};

pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;
/// `scheduling.SystemCriticalPriority`.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

fn amount(name: &str, q: &str) -> i64 {
    let parsed = if name == "cpu" { parse_cpu_millis(q) } else { parse_bytes(q) };
    parsed.unwrap_or(0)
}

/// The pod's QoS class: `status.qosClass` when set, else computed from its containers' cpu and memory.
pub fn pod_qos(pod: &Pod) -> QosClass {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => return QosClass::Guaranteed,
        Some("Burstable") => return QosClass::Burstable,
        Some("BestEffort") => return QosClass::BestEffort,
        _ => {}
    }
    let Some(spec) = pod.spec.as_ref() else { return QosClass::BestEffort };
    let mut requests: BTreeMap<&str, i64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i64> = BTreeMap::new();
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let res = c.resources.as_ref();
        for (name, q) in res.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            let name = name.as_str();
            if name == "cpu" || name == "memory" {
                let v = amount(name, &q.0);
                if v > 0 {
                    *requests.entry(if name == "cpu" { "cpu" } else { "memory" }).or_default() += v;
                }
            }
        }
        let mut found = (false, false);
        for (name, q) in res.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
            let name = name.as_str();
            if name == "cpu" || name == "memory" {
                let v = amount(name, &q.0);
                if v > 0 {
                    if name == "cpu" {
                        found.0 = true;
                    } else {
                        found.1 = true;
                    }
                    *limits.entry(if name == "cpu" { "cpu" } else { "memory" }).or_default() += v;
                }
            }
        }
        if !(found.0 && found.1) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) && requests.len() == limits.len() {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

fn is_node_critical(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let priority = spec.and_then(|s| s.priority).unwrap_or(0);
    let class = spec.and_then(|s| s.priority_class_name.as_deref()).unwrap_or_default();
    priority >= SYSTEM_CRITICAL_PRIORITY && class == "system-node-critical"
}

/// The container's `oom_score_adj`: -997 for Guaranteed (and node-critical) pods, 1000 for BestEffort,
/// `1000 - 1000 * memoryRequest / memoryCapacity` for Burstable, held within 3..=999.
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i32 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match pod_qos(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let request = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("memory"))
        .map(|q| amount("memory", &q.0))
        .unwrap_or(0);
    let adj =
        if memory_capacity > 0 { 1000 - (1000i128 * request as i128 / memory_capacity as i128) as i64 } else { 1000 };
    if adj < i64::from(1000 + GUARANTEED_OOM_SCORE_ADJ) {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    if adj == i64::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        return BEST_EFFORT_OOM_SCORE_ADJ - 1;
    }
    adj as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| v.iter().map(|(k, q)| (k.to_string(), Quantity(q.to_string()))).collect())
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod { spec: Some(PodSpec { containers, ..Default::default() }), ..Default::default() }
    }

    const GI: i64 = 1 << 30;

    #[test]
    fn best_effort() {
        let c = container(&[], &[]);
        let p = pod(vec![c.clone()]);
        assert_eq!(pod_qos(&p), QosClass::BestEffort);
        assert_eq!(oom_score_adj(&p, &c, 4 * GI), 1000);
    }

    #[test]
    fn guaranteed_needs_equal_cpu_and_memory_everywhere() {
        let c = container(&[("cpu", "500m"), ("memory", "1Gi")], &[("cpu", "0.5"), ("memory", "1024Mi")]);
        let p = pod(vec![c.clone()]);
        assert_eq!(pod_qos(&p), QosClass::Guaranteed);
        assert_eq!(oom_score_adj(&p, &c, 4 * GI), -997);
        // Only a memory limit: Burstable.
        let m = container(&[], &[("memory", "1Gi")]);
        assert_eq!(pod_qos(&pod(vec![m])), QosClass::Burstable);
        // A second container without limits breaks Guaranteed.
        assert_eq!(pod_qos(&pod(vec![c, container(&[("cpu", "1")], &[])])), QosClass::Burstable);
    }

    #[test]
    fn burstable_formula() {
        let c = container(&[("memory", "1Gi")], &[("memory", "2Gi")]);
        let p = pod(vec![c.clone()]);
        assert_eq!(pod_qos(&p), QosClass::Burstable);
        assert_eq!(oom_score_adj(&p, &c, 4 * GI), 750);
        // A request near the capacity is held at 3; none at all gives 999.
        let big = container(&[("memory", "4Gi")], &[]);
        assert_eq!(oom_score_adj(&pod(vec![big.clone()]), &big, 4 * GI), 3);
        let cpu_only = container(&[("cpu", "100m")], &[]);
        assert_eq!(oom_score_adj(&pod(vec![cpu_only.clone()]), &cpu_only, 4 * GI), 999);
    }

    #[test]
    fn node_critical_is_guaranteed_score() {
        let c = container(&[], &[]);
        let mut p = pod(vec![c.clone()]);
        let spec = p.spec.as_mut().unwrap();
        spec.priority = Some(2_000_001_000);
        spec.priority_class_name = Some("system-node-critical".into());
        assert_eq!(oom_score_adj(&p, &c, 4 * GI), -997);
    }
}
