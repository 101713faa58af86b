//! NodeResourcesFit: the pod's requests (containers, init containers, sidecars, overhead) must fit in the
//! node's allocatable beside the pods already there, pod slots included; scores nodes by the profile's
//! strategy: LeastAllocated (spread, the default), MostAllocated (bin packing) or RequestedToCapacityRatio.

use crate::cache::Cache;
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, Status, Code};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const NAME: &str = "NodeResourcesFit";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScoringStrategyType {
    LeastAllocated,
    MostAllocated,
    /// Shape points `(utilization 0..=100, score 0..=10)`, in increasing utilization.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

/// How NodeResourcesFit scores: the strategy and the resources it weighs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoringStrategy {
    pub kind: ScoringStrategyType,
    pub resources: Vec<(String, i64)>,
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            kind: ScoringStrategyType::LeastAllocated,
            resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
        }
    }
}

pub struct NodeResourcesFit {
    pub strategy: ScoringStrategy,
}

/// Upstream's `InsufficientResource`: what is short, and whether even an empty node would be too small.
#[derive(Debug, PartialEq, Eq)]
pub struct Insufficient {
    pub reason: String,
    pub unresolvable: bool,
}

/// Every resource the pod cannot get on the node.
pub fn fits_request(pod: &PodInfo, node: &NodeInfo) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let allowed = node.allocatable.allowed_pod_number;
    if node.pods.len() as i64 + 1 > allowed {
        out.push(Insufficient { reason: "Too many pods".into(), unresolvable: false });
    }
    let req = &pod.requests.requests;
    if req.is_zero() {
        return out;
    }
    let alloc = &node.allocatable;
    let used = &node.requested;
    let mut check = |name: &str, want: i64, have: i64, in_use: i64| {
        if want > 0 && have < want + in_use {
            out.push(Insufficient { reason: format!("Insufficient {name}"), unresolvable: want > have });
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check("ephemeral-storage", req.ephemeral_storage, alloc.ephemeral_storage, used.ephemeral_storage);
    for (name, want) in &req.scalar {
        check(name, *want, alloc.scalar(name), used.scalar(name));
    }
    out
}

impl Plugin for NodeResourcesFit {
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
        let ins = fits_request(pod, node);
        if ins.is_empty() {
            return Ok(());
        }
        let code = if ins.iter().any(|i| i.unresolvable) { Code::UnschedulableAndUnresolvable } else { Code::Unschedulable };
        Err(Status { code, reasons: ins.into_iter().map(|i| i.reason).collect(), plugin: NAME })
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo, _cache: &Cache) -> i64 {
        let scorer = |requested: i64, capacity: i64| -> i64 {
            match &self.strategy.kind {
                ScoringStrategyType::LeastAllocated => least_requested_score(requested, capacity),
                ScoringStrategyType::MostAllocated => most_requested_score(requested, capacity),
                ScoringStrategyType::RequestedToCapacityRatio(shape) => ratio_score(shape, requested, capacity),
            }
        };
        resource_score(&self.strategy.resources, pod, node, scorer)
    }
}

/// The requested amount (node and pod, CPU and memory defaulted as for scoring) and allocatable of a resource.
pub fn requested_and_allocatable(name: &str, pod: &PodInfo, node: &NodeInfo) -> (i64, i64) {
    match name {
        "cpu" => (node.non_zero_cpu + pod.requests.non_zero_milli_cpu, node.allocatable.milli_cpu),
        "memory" => (node.non_zero_memory + pod.requests.non_zero_memory, node.allocatable.memory),
        n => (node.requested.get(n) + pod.requests.requests.get(n), node.allocatable.get(n)),
    }
}

/// Weighted mean of a per-resource score over the resources the node has.
pub fn resource_score(resources: &[(String, i64)], pod: &PodInfo, node: &NodeInfo, scorer: impl Fn(i64, i64) -> i64) -> i64 {
    let (mut total, mut weights) = (0, 0);
    for (name, weight) in resources {
        let (req, alloc) = requested_and_allocatable(name, pod, node);
        if alloc == 0 {
            continue;
        }
        total += scorer(req, alloc) * weight;
        weights += weight;
    }
    if weights == 0 { 0 } else { total / weights }
}

pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

pub fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// RequestedToCapacityRatio: the shape (scores 0..=10, scaled to 0..=100) interpolated at the utilization.
pub fn ratio_score(shape: &[(i64, i64)], requested: i64, capacity: i64) -> i64 {
    let points: Vec<(i64, i64)> = shape.iter().map(|(u, s)| (*u, s * (MAX_NODE_SCORE / 10))).collect();
    let Some(&last) = points.last() else { return 0 };
    if capacity == 0 || requested > capacity {
        return last.1;
    }
    let p = requested * 100 / capacity;
    for (i, &(u, s)) in points.iter().enumerate() {
        if p <= u {
            if i == 0 {
                return points[0].1;
            }
            let (u0, s0) = points[i - 1];
            return s0 + (s - s0) * (p - u0) / (u - u0);
        }
    }
    last.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_one, score_all};

    fn fit() -> NodeResourcesFit {
        NodeResourcesFit { strategy: ScoringStrategy::default() }
    }

    #[test]
    fn filter() {
        let node = NodeBuilder::new("n").cpu("2").memory("4Gi").pods("3").allocatable("example.com/gpu", "1").build();
        let existing = vec![PodBuilder::new("e").container("1", "1Gi").node("n").build()];
        use k8s_openapi::api::core::v1::Pod;
        type Case = (&'static str, Pod, Vec<Pod>, Result<(), String>);
        let cases: Vec<Case> = vec![
            ("fits", PodBuilder::new("p").container("1", "1Gi").build(), existing.clone(), Ok(())),
            ("cpu", PodBuilder::new("p").container("1500m", "1Gi").build(), existing.clone(), Err("Insufficient cpu".into())),
            (
                "cpu and memory",
                PodBuilder::new("p").container("1500m", "3500Mi").build(),
                existing.clone(),
                Err("Insufficient cpu, Insufficient memory".into()),
            ),
            (
                "the init container counts",
                PodBuilder::new("p").container("100m", "").init_container("1500m", "").build(),
                existing.clone(),
                Err("Insufficient cpu".into()),
            ),
            ("no requests fit anywhere", PodBuilder::new("p").container("", "").build(), existing.clone(), Ok(())),
            ("extended resource fits", PodBuilder::new("p").request("example.com/gpu", "1").build(), existing.clone(), Ok(())),
            (
                "extended resource missing",
                PodBuilder::new("p").request("example.com/fpga", "1").build(),
                existing.clone(),
                Err("Insufficient example.com/fpga".into()),
            ),
            (
                "pod count",
                PodBuilder::new("p").build(),
                vec![
                    PodBuilder::new("a").node("n").build(),
                    PodBuilder::new("b").node("n").build(),
                    PodBuilder::new("c").node("n").build(),
                ],
                Err("Too many pods".into()),
            ),
        ];
        for (name, pod, pods, want) in cases {
            assert_eq!(filter_one(&fit(), &pod, &node, &pods), want, "{name}");
        }
    }

    #[test]
    fn larger_than_the_node_is_unresolvable() {
        let node = NodeBuilder::new("n").cpu("2").build();
        let info = |p: k8s_openapi::api::core::v1::Pod| PodInfo::new(std::sync::Arc::new(p));
        let cache = crate::testing::cache_with(&[node], &[PodBuilder::new("e").container("1", "").node("n").build()]);
        let n = &cache.nodes()[0];
        let st = CycleState::default();
        let too_big = fit().filter(&st, &info(PodBuilder::new("p").container("3", "").build()), n).unwrap_err();
        assert_eq!(too_big.code, Code::UnschedulableAndUnresolvable);
        let crowded = fit().filter(&st, &info(PodBuilder::new("p").container("1500m", "").build()), n).unwrap_err();
        assert_eq!(crowded.code, Code::Unschedulable);
    }

    #[test]
    fn strategies() {
        let nodes = [
            NodeBuilder::new("empty").cpu("4").memory("8Gi").build(),
            NodeBuilder::new("half").cpu("4").memory("8Gi").build(),
        ];
        let pods = [PodBuilder::new("e").container("2", "4Gi").node("half").build()];
        let pod = PodBuilder::new("p").container("1", "2Gi").build();
        let least = score_all(&fit(), &pod, &nodes, &pods);
        assert_eq!(least, vec![75, 25]);
        let most = NodeResourcesFit {
            strategy: ScoringStrategy { kind: ScoringStrategyType::MostAllocated, ..Default::default() },
        };
        assert_eq!(score_all(&most, &pod, &nodes, &pods), vec![25, 75]);
        let ratio = NodeResourcesFit {
            strategy: ScoringStrategy {
                kind: ScoringStrategyType::RequestedToCapacityRatio(vec![(0, 10), (100, 0)]),
                ..Default::default()
            },
        };
        assert_eq!(score_all(&ratio, &pod, &nodes, &pods), vec![75, 25]);
        let weighted = NodeResourcesFit {
            strategy: ScoringStrategy {
                kind: ScoringStrategyType::MostAllocated,
                resources: vec![("cpu".into(), 3), ("memory".into(), 1)],
            },
        };
        let pod2 = PodBuilder::new("p").container("2", "0").build();
        // empty: cpu 50, memory 0 -> (150 + 0) / 4 = 37; half: cpu 100, memory 50 -> (300 + 50) / 4 = 87
        assert_eq!(score_all(&weighted, &pod2, &nodes, &pods), vec![37, 87]);
    }

    #[test]
    fn ratio_shape_interpolates() {
        let shape = [(0, 0), (50, 10), (100, 0)];
        assert_eq!(ratio_score(&shape, 0, 100), 0);
        assert_eq!(ratio_score(&shape, 25, 100), 50);
        assert_eq!(ratio_score(&shape, 50, 100), 100);
        assert_eq!(ratio_score(&shape, 75, 100), 50);
        assert_eq!(ratio_score(&shape, 200, 100), 0);
    }
}
