//! The binder's rules with no I/O (upstream `pkg/controller/volume/persistentvolume/index.go` and
//! `storage/volume/util`): which volume fits a claim, the smallest fitting one first.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::controller_utils::selector_matches;
use crate::volume::names::ANN_SELECTED_NODE;
use crate::volume::quantity;

/// The claim's class (`""` when none is set).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// The volume's class (`""` when none is set).
pub fn volume_class(volume: &PersistentVolume) -> &str {
    volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// Whether binding claims of this class waits for a pod to be scheduled.
pub fn wait_for_first_consumer(class: Option<&StorageClass>) -> bool {
    class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}

/// The claim's requested storage in bytes (0 when none is given).
pub fn requested(claim: &PersistentVolumeClaim) -> f64 {
    quantity::storage(claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref())).unwrap_or(0.0)
}

/// The volume's capacity in bytes (0 when none is given).
pub fn capacity(volume: &PersistentVolume) -> f64 {
    quantity::storage(volume.spec.as_ref().and_then(|s| s.capacity.as_ref())).unwrap_or(0.0)
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// `namespace/name` of a claim.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!("{}/{}", claim.metadata.namespace.as_deref().unwrap_or(""), claim.metadata.name.as_deref().unwrap_or(""))
}

/// Whether the volume's claimRef names this claim (and, when the reference has a uid, this incarnation).
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    r.name == claim.metadata.name
        && r.namespace == claim.metadata.namespace
        && r.uid.as_deref().is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_fit(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let offered = volume.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_default();
    let wanted = claim.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_default();
    wanted.iter().all(|m| offered.contains(m))
}

/// Whether the volume's node affinity admits `node` (by its labels; a node not known is matched by its
/// `kubernetes.io/hostname`). A volume without node affinity fits every node.
pub fn fits_node(volume: &PersistentVolume, node_name: &str, node: Option<&Node>) -> bool {
    let Some(required) = volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref()) else {
        return true;
    };
    let mut labels = node.and_then(|n| n.metadata.labels.clone()).unwrap_or_default();
    labels.entry("kubernetes.io/hostname".into()).or_insert_with(|| node_name.to_string());
    required.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        let field_ok = fields.iter().all(|f| {
            let values = f.values.as_deref().unwrap_or_default();
            let v = (f.key == "metadata.name").then_some(node_name);
            match f.operator.as_str() {
                "In" => v.is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => !v.is_some_and(|v| values.iter().any(|x| x == v)),
                _ => false,
            }
        });
        field_ok
            && exprs.iter().all(|e| {
                let values = e.values.as_deref().unwrap_or_default();
                let v = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => v.is_some_and(|v| values.contains(v)),
                    "NotIn" => !v.is_some_and(|v| values.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    "Gt" | "Lt" => match (v.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|x| x.parse::<i64>().ok())) {
                        (Some(v), Some(x)) => if e.operator == "Gt" { v > x } else { v < x },
                        _ => false,
                    },
                    _ => false,
                }
            })
    })
}

fn phase(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Whether a pod still counts as using its volumes (it has not terminated).
pub fn pod_is_active(pod: &Pod) -> bool {
    !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The claims a pod names: its persistentVolumeClaim volumes and the claims of its ephemeral volumes
/// (`<pod>-<volume>`).
pub fn pod_claims(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|vols| {
            vols.iter()
                .filter_map(|v| {
                    if let Some(c) = &v.persistent_volume_claim {
                        Some(c.claim_name.clone())
                    } else {
                        v.ephemeral.as_ref().map(|_| format!("{pod_name}-{}", v.name))
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The node a WaitForFirstConsumer claim is for: the scheduler's `volume.kubernetes.io/selected-node`, or
/// else the node of an active pod using it that is already placed (a pod created with `nodeName`).
pub fn selected_node(claim: &PersistentVolumeClaim, pods: &[Arc<Pod>]) -> Option<String> {
    if let Some(n) = claim.metadata.annotations.as_ref().and_then(|a| a.get(ANN_SELECTED_NODE)).filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let name = claim.metadata.name.as_deref()?;
    pods.iter()
        .filter(|p| p.metadata.namespace == claim.metadata.namespace && pod_is_active(p))
        .filter(|p| pod_claims(p).iter().any(|c| c == name))
        .find_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()))
}

/// Upstream's `findMatchingVolume`: the volume pre-bound to this claim if it fits, otherwise the smallest
/// Available volume of the claim's class whose capacity, access modes, volume mode, selector (and, when
/// `node` is given, node affinity) fit. With `delay_binding` and no node only pre-bound volumes count: the
/// scheduler decides.
pub fn find_best_match(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: Option<(&str, Option<&Node>)>,
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    let request = requested(claim);
    let class = claim_class(claim);
    let spec = claim.spec.as_ref();
    let claim_mode = volume_mode(spec.and_then(|s| s.volume_mode.as_ref()));
    let mut best: Option<Arc<PersistentVolume>> = None;
    for v in volumes {
        if v.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let vspec = v.spec.as_ref();
        if volume_mode(vspec.and_then(|s| s.volume_mode.as_ref())) != claim_mode {
            continue;
        }
        if capacity(v) < request {
            continue;
        }
        if let Some((name, n)) = node
            && !fits_node(v, name, n)
        {
            continue;
        }
        if is_bound_to(v, claim) {
            return Some(v.clone());
        }
        if vspec.and_then(|s| s.claim_ref.as_ref()).is_some() {
            continue;
        }
        if delay_binding && node.is_none() {
            continue;
        }
        if phase(v) != "Available" {
            continue;
        }
        if volume_class(v) != class {
            continue;
        }
        if let Some(sel) = spec.and_then(|s| s.selector.as_ref())
            && !selector_matches(Some(sel), v.metadata.labels.as_ref())
        {
            continue;
        }
        if !access_modes_fit(v, claim) {
            continue;
        }
        if best.as_ref().is_none_or(|b| capacity(v) < capacity(b)) {
            best = Some(v.clone());
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, class: &str, phase: &str) -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
                "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": class,
                         "hostPath": {"path": "/tmp/x"}},
                "status": {"phase": phase}}))
            .unwrap(),
        )
    }

    fn pvc(size: &str, class: &str, modes: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": modes, "storageClassName": class, "resources": {"requests": {"storage": size}}}}))
        .unwrap()
    }

    fn names(v: Option<Arc<PersistentVolume>>) -> Option<String> {
        v.and_then(|v| v.metadata.name.clone())
    }

    #[test]
    fn the_smallest_fitting_available_volume_of_the_class_wins() {
        let vols = vec![pv("big", "10Gi", "", "Available"), pv("small", "2Gi", "", "Available"), pv("tiny", "1Gi", "", "Available"),
            pv("other-class", "2Gi", "fast", "Available"), pv("released", "2Gi", "", "Released")];
        assert_eq!(names(find_best_match(&pvc("1500Mi", "", &["ReadWriteOnce"]), &vols, None, false)).as_deref(), Some("small"));
        assert_eq!(names(find_best_match(&pvc("1500Mi", "fast", &["ReadWriteOnce"]), &vols, None, false)).as_deref(), Some("other-class"));
        assert_eq!(names(find_best_match(&pvc("20Gi", "", &["ReadWriteOnce"]), &vols, None, false)), None);
        assert_eq!(names(find_best_match(&pvc("1Gi", "", &["ReadWriteMany"]), &vols, None, false)), None);
        assert_eq!(names(find_best_match(&pvc("1Gi", "", &["ReadWriteOnce"]), &vols, None, true)), None, "delayed binding waits for a node");
    }

    #[test]
    fn selector_volume_mode_and_prebinding_are_honoured() {
        let vols = vec![pv("a", "1Gi", "", "Available")];
        let mut claim = pvc("1Gi", "", &["ReadWriteOnce"]);
        claim.spec.as_mut().unwrap().selector = Some(serde_json::from_value(json!({"matchLabels": {"tier": "slow"}})).unwrap());
        assert_eq!(names(find_best_match(&claim, &vols, None, false)), None);
        let mut claim = pvc("1Gi", "", &["ReadWriteOnce"]);
        claim.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert_eq!(names(find_best_match(&claim, &vols, None, false)), None);
        let mut pre: PersistentVolume = (*pv("pre", "5Gi", "other", "Available")).clone();
        pre.spec.as_mut().unwrap().claim_ref = Some(serde_json::from_value(json!({"namespace": "default", "name": "c"})).unwrap());
        let vols = vec![pv("a", "1Gi", "", "Available"), Arc::new(pre)];
        assert_eq!(names(find_best_match(&pvc("1Gi", "", &["ReadWriteOnce"]), &vols, None, false)).as_deref(), Some("pre"));
    }

    #[test]
    fn node_affinity_is_matched_against_the_node() {
        let v: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}))
        .unwrap();
        assert!(fits_node(&v, "n1", None));
        assert!(!fits_node(&v, "n2", None));
    }
}
