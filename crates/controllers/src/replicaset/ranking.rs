//! Which pods a ReplicaSet deletes first when scaling down (upstream's `ActivePodsWithRanks`, with the
//! `LogarithmicScaleDown` behaviour that is on by default).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::pod_util::is_pod_ready;

/// The annotation whose (int32) value makes a pod cheaper or dearer to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Picks `count` pods to delete, the first in upstream's order: unassigned before assigned, pending
/// before unknown before running, not-ready before ready, lower deletion cost first, pods doubled up on a
/// node first, ready for less time first, more restarts first, newer first.
pub fn pods_to_delete(pods: &[Arc<Pod>], count: usize, now: jiff::Timestamp) -> Vec<Arc<Pod>> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    // Rank: how many of these pods share the node (upstream counts the related pods on the same node).
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(n) = node_of(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let mut ranked: Vec<(usize, Arc<Pod>)> =
        pods.iter().map(|p| (node_of(p).map_or(0, |n| per_node[n]), p.clone())).collect();
    ranked.sort_by(|a, b| compare(&a.1, a.0, &b.1, b.0, now));
    ranked.into_iter().take(count).map(|(_, p)| p).collect()
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata.annotations.as_ref().and_then(|a| a.get(POD_DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn ready_time(p: &Pod) -> Option<jiff::Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Upstream's `logarithmicRankDiff`: compares the log2 of the ages.
fn log_rank(t: jiff::Timestamp, now: jiff::Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 { (d as f64).log2() as i64 } else { -1 }
}

/// "Less" in upstream's sense: `Less` means `a` is deleted before `b`.
fn compare(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: jiff::Timestamp) -> Ordering {
    // 1. Unassigned < assigned.
    let (na, nb) = (node_of(a).is_some(), node_of(b).is_some());
    if na != nb {
        return na.cmp(&nb);
    }
    // 2. Pending < Unknown < Running.
    let (pa, pb) = (phase_ordinal(a), phase_ordinal(b));
    if pa != pb {
        return pa.cmp(&pb);
    }
    // 3. Not ready < ready.
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    // 4. Lower deletion cost first.
    let (ca, cb) = (deletion_cost(a), deletion_cost(b));
    if ca != cb {
        return ca.cmp(&cb);
    }
    // 5. Doubled up < not doubled up.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    let uid_order = || a.metadata.uid.cmp(&b.metadata.uid);
    // 6. Ready for less time first (in log2 buckets of age).
    if ra && rb {
        let (ta, tb) = (ready_time(a), ready_time(b));
        if ta != tb {
            return match (ta, tb) {
                (Some(x), Some(y)) => match log_rank(x, now).cmp(&log_rank(y, now)) {
                    Ordering::Equal => uid_order(),
                    o => o,
                },
                (None, _) => Ordering::Less,
                (_, None) => Ordering::Greater,
            };
        }
    }
    // 7. More restarts first.
    let (xa, xb) = (max_restarts(a), max_restarts(b));
    if xa != xb {
        return xb.cmp(&xa);
    }
    // 8. Newer first (log2 buckets of age).
    let (ta, tb) = (a.metadata.creation_timestamp.as_ref().map(|t| t.0), b.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if ta != tb {
        return match (ta, tb) {
            (Some(x), Some(y)) => match log_rank(x, now).cmp(&log_rank(y, now)) {
                Ordering::Equal => uid_order(),
                o => o,
            },
            (None, _) => Ordering::Less,
            (_, None) => Ordering::Greater,
        };
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_since: Option<i64>, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(String::from), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_since.map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(s))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn names(v: &[Arc<Pod>]) -> Vec<&str> {
        v.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn upstream_order() {
        let now = ts(100_000);
        let running_ready_old = pod("ready-old", Some("n1"), "Running", Some(1_000), 1_000);
        let running_ready_new = pod("ready-new", Some("n2"), "Running", Some(99_990), 99_980);
        let running_not_ready = pod("not-ready", Some("n3"), "Running", None, 1_000);
        let pending = pod("pending", Some("n4"), "Pending", None, 1_000);
        let unassigned = pod("unassigned", None, "Pending", None, 1_000);
        let all = vec![running_ready_old, running_ready_new, running_not_ready, pending, unassigned];
        assert_eq!(
            names(&pods_to_delete(&all, 4, now)),
            vec!["unassigned", "pending", "not-ready", "ready-new"]
        );
    }

    #[test]
    fn deletion_cost_restarts_and_doubling_up() {
        let now = ts(100_000);
        let mut cheap = (*pod("cheap", Some("n1"), "Running", Some(1_000), 1_000)).clone();
        cheap.metadata.annotations = Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
        let dear = pod("dear", Some("n2"), "Running", Some(99_000), 99_000);
        assert_eq!(names(&pods_to_delete(&[dear.clone(), Arc::new(cheap)], 1, now)), vec!["cheap"]);

        let mut restarted = (*pod("restarted", Some("n1"), "Running", Some(1_000), 1_000)).clone();
        restarted.status.as_mut().unwrap().container_statuses =
            Some(vec![ContainerStatus { restart_count: 3, ..Default::default() }]);
        let calm = pod("calm", Some("n2"), "Running", Some(1_000), 1_000);
        assert_eq!(names(&pods_to_delete(&[calm, Arc::new(restarted)], 1, now)), vec!["restarted"]);

        let a = pod("a", Some("n1"), "Running", Some(1_000), 1_000);
        let b = pod("b", Some("n1"), "Running", Some(1_000), 1_000);
        let c = pod("c", Some("n2"), "Running", Some(1_000), 1_000);
        let picked = pods_to_delete(&[c, a, b], 1, now);
        assert_ne!(names(&picked), vec!["c"], "a pod doubled up on n1 goes first");
    }
}
