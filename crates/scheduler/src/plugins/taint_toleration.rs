//! TaintToleration: a node's NoSchedule and NoExecute taints must be tolerated; PreferNoSchedule taints the
//! pod does not tolerate lower the node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::Cache;
use crate::framework::{CycleState, Plugin, Status, default_normalize};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const NAME: &str = "TaintToleration";

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The first NoSchedule/NoExecute taint no toleration matches.
pub fn find_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

pub struct TaintToleration;

/// The pod's tolerations that apply to PreferNoSchedule taints, computed once per cycle.
#[derive(Clone)]
struct PreferTolerations(Vec<Toleration>);

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        match find_untolerated(&node.taints, &pod.tolerations) {
            None => Ok(()),
            Some(t) => Err(Status::unresolvable(
                NAME,
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or("")),
            )),
        }
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _cache: &Cache, _nodes: &[&NodeInfo]) -> bool {
        let prefer: Vec<Toleration> = pod
            .tolerations
            .iter()
            .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule"))
            .cloned()
            .collect();
        state.write(NAME, PreferTolerations(prefer));
        true
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo, _cache: &Cache) -> i64 {
        if node.taints.is_empty() {
            return 0;
        }
        let Some(PreferTolerations(prefer)) = state.read::<PreferTolerations>(NAME) else { return 0 };
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|taint| !prefer.iter().any(|t| tolerates(t, taint)))
            .count() as i64
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_one, score_all};

    #[test]
    fn filter() {
        let cp = NodeBuilder::new("cp").taint("node-role.kubernetes.io/control-plane", "", "NoSchedule").build();
        let gpu = NodeBuilder::new("g").taint("gpu", "true", "NoExecute").build();
        let cases = [
            ("untainted", PodBuilder::new("p").build(), NodeBuilder::new("n").build(), Ok(())),
            (
                "control plane",
                PodBuilder::new("p").build(),
                cp.clone(),
                Err("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }".to_string()),
            ),
            (
                "exists toleration",
                PodBuilder::new("p").toleration("node-role.kubernetes.io/control-plane", "Exists", "", "NoSchedule").build(),
                cp,
                Ok(()),
            ),
            ("equal value", PodBuilder::new("p").toleration("gpu", "Equal", "true", "").build(), gpu.clone(), Ok(())),
            (
                "wrong value",
                PodBuilder::new("p").toleration("gpu", "Equal", "false", "").build(),
                gpu.clone(),
                Err("node(s) had untolerated taint {gpu: true}".to_string()),
            ),
            (
                "wrong effect",
                PodBuilder::new("p").toleration("gpu", "Exists", "", "NoSchedule").build(),
                gpu,
                Err("node(s) had untolerated taint {gpu: true}".to_string()),
            ),
            (
                "prefer taints do not filter",
                PodBuilder::new("p").build(),
                NodeBuilder::new("n").taint("a", "b", "PreferNoSchedule").build(),
                Ok(()),
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(filter_one(&TaintToleration, &pod, &node, &[]), want, "{name}");
        }
    }

    #[test]
    fn score_prefers_fewer_untolerated_prefer_no_schedule_taints() {
        let nodes = [
            NodeBuilder::new("n0").build(),
            NodeBuilder::new("n1").taint("a", "1", "PreferNoSchedule").build(),
            NodeBuilder::new("n2").taint("a", "1", "PreferNoSchedule").taint("b", "1", "PreferNoSchedule").build(),
        ];
        assert_eq!(score_all(&TaintToleration, &PodBuilder::new("p").build(), &nodes, &[]), vec![100, 50, 0]);
        let tolerant = PodBuilder::new("p").toleration("b", "Exists", "", "PreferNoSchedule").build();
        assert_eq!(score_all(&TaintToleration, &tolerant, &nodes, &[]), vec![100, 0, 0]);
    }
}
