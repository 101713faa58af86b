//! One scheduling cycle's algorithm, as upstream's `schedulePod`: pre-filter, filter nodes (starting where
//! the last cycle stopped, stopping after enough feasible nodes), score, pick the best (ties at random);
//! and `FitError`, whose message reads like Kubernetes' ("0/3 nodes are available: ...").

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::Rng;

use crate::cache::Cache;
use crate::framework::{Code, CycleState, Framework, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::queue::NO_NODES;

/// Upstream's minimum number of feasible nodes to look for.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to find before scoring (`numFeasibleNodesToFind`).
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize.saturating_sub(num_all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why a pod fits nowhere.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub node_to_status: HashMap<String, Status>,
    /// Set when a pre-filter rejected the pod for every node.
    pub pre_filter_msg: Option<String>,
    pub unschedulable_plugins: HashSet<&'static str>,
    /// What preemption said.
    pub post_filter_msg: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

/// "N reason" counts, sorted as strings, joined by ", " (upstream's histogram).
pub fn reasons_histogram<'a>(statuses: impl Iterator<Item = &'a Status>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses {
        for r in &s.reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

impl FitError {
    /// Upstream's `FitError.Error()`.
    pub fn message(&self) -> String {
        if self.num_all_nodes == 0 && self.diagnosis.pre_filter_msg.is_none() {
            return "no nodes available to schedule pods".to_string();
        }
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.diagnosis.pre_filter_msg {
            Some(m) => msg += &format!(" {m}."),
            None => {
                let h = reasons_histogram(self.diagnosis.node_to_status.values());
                if !h.is_empty() {
                    msg += &format!(" {h}.");
                }
            }
        }
        if let Some(m) = &self.diagnosis.post_filter_msg {
            msg += &format!(" {m}.");
        }
        msg
    }
}

/// Where a pod goes.
#[derive(Debug)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// The algorithm's state across cycles: where the next search starts.
#[derive(Default)]
pub struct Algorithm {
    next_start_node_index: usize,
}

impl Algorithm {
    /// Finds a node for `pod`. On failure the cycle state (after pre-filter) is returned for preemption.
    pub fn schedule_pod(
        &mut self,
        fw: &Framework,
        cache: &Cache,
        pod: &PodInfo,
        rng: &mut impl Rng,
    ) -> Result<ScheduleResult, Box<(FitError, CycleState)>> {
        let mut state = CycleState::default();
        let all = cache.nodes();
        let fail = |diagnosis: Diagnosis, state: CycleState| Box::new((FitError { num_all_nodes: all.len(), diagnosis }, state));
        if all.is_empty() {
            let diagnosis = Diagnosis { unschedulable_plugins: HashSet::from([NO_NODES]), ..Default::default() };
            return Err(fail(diagnosis, state));
        }
        let allowed = match fw.run_pre_filter(&mut state, pod, cache) {
            Ok(a) => a,
            Err(s) => {
                let mut d = Diagnosis { pre_filter_msg: Some(s.message()), ..Default::default() };
                d.unschedulable_plugins.insert(s.plugin);
                for n in all {
                    d.node_to_status.insert(n.name.clone(), s.clone());
                }
                return Err(fail(d, state));
            }
        };
        let mut diagnosis = Diagnosis::default();

        // A nominated node (from an earlier preemption) is tried first.
        if let Some(nominated) = pod.nominated_node_name()
            && let Some(n) = cache.node(nominated)
            && allowed.as_ref().is_none_or(|a| a.contains(nominated))
            && fw.run_filter_with_nominated(&state, pod, n, cache).is_ok()
        {
            return Ok(ScheduleResult { node: nominated.to_string(), evaluated_nodes: 1, feasible_nodes: 1 });
        }

        let mut feasible: Vec<&NodeInfo> = Vec::new();
        let evaluated;
        match &allowed {
            Some(names) => {
                let mut count = 0;
                // DaemonSet-style pods name one node: look it up instead of walking every node.
                let chosen: Vec<&NodeInfo> = if names.len() * 8 < all.len() {
                    names.iter().filter_map(|n| cache.node(n)).collect()
                } else {
                    all.iter().filter(|n| names.contains(&n.name)).collect()
                };
                for n in chosen {
                    count += 1;
                    match fw.run_filter_with_nominated(&state, pod, n, cache) {
                        Ok(()) => feasible.push(n),
                        Err(s) => {
                            diagnosis.unschedulable_plugins.insert(s.plugin);
                            diagnosis.node_to_status.insert(n.name.clone(), s);
                        }
                    }
                }
                evaluated = count;
            }
            None => {
                let want = num_feasible_nodes_to_find(fw.percentage_of_nodes_to_score, all.len());
                let start = self.next_start_node_index % all.len();
                let mut processed = 0;
                for i in 0..all.len() {
                    let n = &all[(start + i) % all.len()];
                    processed += 1;
                    match fw.run_filter_with_nominated(&state, pod, n, cache) {
                        Ok(()) => {
                            feasible.push(n);
                            if feasible.len() >= want {
                                break;
                            }
                        }
                        Err(s) => {
                            diagnosis.unschedulable_plugins.insert(s.plugin);
                            diagnosis.node_to_status.insert(n.name.clone(), s);
                        }
                    }
                }
                self.next_start_node_index = (start + processed) % all.len();
                evaluated = processed;
            }
        }
        if feasible.is_empty() {
            if let Some(names) = &allowed {
                for n in all.iter().filter(|n| !names.contains(&n.name)) {
                    diagnosis.node_to_status.insert(
                        n.name.clone(),
                        Status::unresolvable("NodeAffinity", crate::plugins::node_affinity::ERR_REASON),
                    );
                }
            }
            return Err(fail(diagnosis, state));
        }
        if feasible.len() == 1 {
            return Ok(ScheduleResult { node: feasible[0].name.clone(), evaluated_nodes: evaluated, feasible_nodes: 1 });
        }
        let scores = fw.run_score(&mut state, pod, cache, &feasible);
        Ok(ScheduleResult { node: select_host(&feasible, &scores, rng), evaluated_nodes: evaluated, feasible_nodes: feasible.len() })
    }
}

/// The highest score wins; ties are broken uniformly at random (reservoir sampling, as upstream).
pub fn select_host(nodes: &[&NodeInfo], scores: &[i64], rng: &mut impl Rng) -> String {
    let mut best = 0;
    let mut ties = 1u32;
    for i in 1..nodes.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name.clone()
}

/// Whether a status lets preemption try the node.
pub fn preemption_may_help(s: &Status) -> bool {
    s.code == Code::Unschedulable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerConfig;
    use crate::plugins::volume_binding::VolumeListers;
    use crate::testing::{NodeBuilder, PodBuilder, cache_with};

    fn framework(c: &SchedulerConfig) -> Framework {
        let claims = VolumeListers::empty();
        c.profiles[0].framework(c.percentage_of_nodes_to_score, &claims)
    }

    #[test]
    fn feasible_node_counts() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 15000), 750);
        assert_eq!(num_feasible_nodes_to_find(10, 500), 100);
        assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
    }

    #[test]
    fn fit_error_messages_read_like_kubernetes() {
        let cache = cache_with(
            &[
                NodeBuilder::new("cp").taint("node-role.kubernetes.io/control-plane", "", "NoSchedule").build(),
                NodeBuilder::new("w1").cpu("1").build(),
                NodeBuilder::new("w2").cpu("1").build(),
            ],
            &[],
        );
        let fw = framework(&SchedulerConfig::default());
        let pod = PodBuilder::new("big").container("2", "").info();
        let err = Algorithm::default().schedule_pod(&fw, &cache, &pod, &mut rand::rng()).unwrap_err();
        assert_eq!(
            err.0.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
        );
        let mut with_post = err.0.clone();
        with_post.diagnosis.post_filter_msg =
            Some("preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.".into());
        assert!(with_post.message().ends_with("2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."));
        let empty = cache_with(&[], &[]);
        let none = Algorithm::default().schedule_pod(&fw, &empty, &pod, &mut rand::rng()).unwrap_err();
        assert_eq!(none.0.message(), "no nodes available to schedule pods");
    }

    #[test]
    fn spread_and_binpack_choose_differently() {
        let nodes = [NodeBuilder::new("busy").build(), NodeBuilder::new("idle").build()];
        let cache = cache_with(&nodes, &[PodBuilder::new("e").container("2", "4Gi").node("busy").build()]);
        let pod = PodBuilder::new("p").container("500m", "1Gi").info();
        let mut alg = Algorithm::default();
        let spread = alg.schedule_pod(&framework(&SchedulerConfig::spread()), &cache, &pod, &mut rand::rng()).unwrap();
        assert_eq!(spread.node, "idle");
        let binpack = alg.schedule_pod(&framework(&SchedulerConfig::binpack()), &cache, &pod, &mut rand::rng()).unwrap();
        assert_eq!(binpack.node, "busy");
    }

    #[test]
    fn many_nodes_stop_after_enough_feasible_ones_and_rotate() {
        let nodes: Vec<_> = (0..300).map(|i| NodeBuilder::new(&format!("n{i}")).build()).collect();
        let cache = cache_with(&nodes, &[]);
        let fw = framework(&SchedulerConfig::default());
        let mut alg = Algorithm::default();
        let pod = PodBuilder::new("p").container("1", "").info();
        let r = alg.schedule_pod(&fw, &cache, &pod, &mut rand::rng()).unwrap();
        // 50% - 300/125 = 48% of 300 nodes.
        assert_eq!((r.feasible_nodes, r.evaluated_nodes), (144, 144));
        assert_eq!(alg.next_start_node_index, 144, "the next search starts after the nodes just evaluated");
    }
}
