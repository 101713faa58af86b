//! NodeResourcesBalancedAllocation: favours nodes whose CPU and memory use stay balanced after placing the
//! pod (one minus the standard deviation of the requested fractions).

use crate::cache::Cache;
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct NodeResourcesBalancedAllocation {
    pub resources: Vec<(String, i64)>,
}

impl Default for NodeResourcesBalancedAllocation {
    fn default() -> Self {
        NodeResourcesBalancedAllocation { resources: vec![("cpu".into(), 1), ("memory".into(), 1)] }
    }
}

impl Plugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_score(&self, _state: &mut CycleState, pod: &PodInfo, _cache: &Cache, _nodes: &[&NodeInfo]) -> bool {
        // Upstream skips pods that request nothing.
        !pod.requests.requests.is_zero()
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo, _cache: &Cache) -> i64 {
        let mut fractions = Vec::with_capacity(self.resources.len());
        for (name, _) in &self.resources {
            let (req, alloc) = match name.as_str() {
                "cpu" => (node.requested.milli_cpu + pod.requests.requests.milli_cpu, node.allocatable.milli_cpu),
                "memory" => (node.requested.memory + pod.requests.requests.memory, node.allocatable.memory),
                n => (node.requested.get(n) + pod.requests.requests.get(n), node.allocatable.get(n)),
            };
            if alloc == 0 {
                continue;
            }
            fractions.push((req as f64 / alloc as f64).min(1.0));
        }
        let std = match fractions.len() {
            0 | 1 => 0.0,
            2 => (fractions[0] - fractions[1]).abs() / 2.0,
            n => {
                let mean = fractions.iter().sum::<f64>() / n as f64;
                (fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
            }
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, score_all};

    #[test]
    fn score() {
        let nodes = [
            NodeBuilder::new("n1").cpu("4").memory("4Gi").build(),
            NodeBuilder::new("n2").cpu("4").memory("4Gi").build(),
        ];
        let pods = [PodBuilder::new("e").container("3", "0").node("n2").build()];
        let pod = PodBuilder::new("p").container("1", "1Gi").build();
        // n1: 0.25 / 0.25 -> 100; n2: 1.0 / 0.25 -> 1 - 0.375 = 62
        assert_eq!(score_all(&NodeResourcesBalancedAllocation::default(), &pod, &nodes, &pods), vec![100, 62]);
        let none = PodBuilder::new("p").container("", "").build();
        assert_eq!(score_all(&NodeResourcesBalancedAllocation::default(), &none, &nodes, &pods), vec![0, 0]);
    }
}
