//! PodTopologySpread: `DoNotSchedule` constraints keep the skew of matching pods across topology domains
//! within `maxSkew` (filter); `ScheduleAnyway` constraints, or the cluster default constraints for pods
//! without any, favour less crowded domains (score).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use crate::cache::Cache;
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreFilterResult, Status};
use crate::node_info::NodeInfo;
use crate::plugins::node_affinity::RequiredNodeAffinity;
use crate::plugins::taint_toleration::find_untolerated;
use crate::pod_info::{LABEL_HOSTNAME, LABEL_ZONE, PodInfo};
use crate::selector::{Op, Requirement, Selector};

pub const NAME: &str = "PodTopologySpread";
pub const ERR_REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";
const SCORE_KEY: &str = "PodTopologySpread/score";

/// A default constraint (from the profile, or the system's): applied to pods that set none, over the
/// pods of the same controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    pub when_unsatisfiable: String,
}

/// Upstream's system defaults: hostname skew 3, zone skew 5, both ScheduleAnyway.
pub fn system_default_constraints() -> Vec<DefaultConstraint> {
    vec![
        DefaultConstraint { max_skew: 3, topology_key: LABEL_HOSTNAME.into(), when_unsatisfiable: "ScheduleAnyway".into() },
        DefaultConstraint { max_skew: 5, topology_key: LABEL_ZONE.into(), when_unsatisfiable: "ScheduleAnyway".into() },
    ]
}

pub struct PodTopologySpread {
    pub default_constraints: Vec<DefaultConstraint>,
    /// The defaults are the system's (nodes without a zone are then not ignored when scoring).
    pub system_defaulted: bool,
}

impl Default for PodTopologySpread {
    fn default() -> Self {
        PodTopologySpread { default_constraints: system_default_constraints(), system_defaulted: true }
    }
}

#[derive(Clone, Debug)]
enum SpreadSelector {
    Labels(Selector),
    /// Pods with the same controller (the default constraints' selector).
    SameOwner(String),
}

#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: SpreadSelector,
    min_domains: usize,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    fn from_api(c: &TopologySpreadConstraint, pod: &PodInfo) -> Self {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        for k in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod.labels.get(k) {
                selector.add(Requirement { key: k.clone(), op: Op::In(vec![v.clone()]) });
            }
        }
        Constraint {
            max_skew: c.max_skew.max(1) as i64,
            topology_key: c.topology_key.clone(),
            selector: SpreadSelector::Labels(selector),
            min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether `other` counts for this constraint of `pod`.
    fn counts(&self, pod: &PodInfo, other: &PodInfo) -> bool {
        if other.terminating || other.namespace != pod.namespace {
            return false;
        }
        match &self.selector {
            SpreadSelector::Labels(s) => s.matches(&other.labels),
            SpreadSelector::SameOwner(uid) => other.controller_uid.as_deref() == Some(uid),
        }
    }

    fn count_on(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node.pods.iter().filter(|p| self.counts(pod, p)).count() as i64
    }
}

/// The pod's constraints with this `when_unsatisfiable`; the defaults when the pod has none at all.
fn constraints(pl: &PodTopologySpread, pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let own = pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()).filter(|c| !c.is_empty());
    match own {
        Some(list) => list.iter().filter(|c| c.when_unsatisfiable == when).map(|c| Constraint::from_api(c, pod)).collect(),
        None => {
            let Some(uid) = pod.controller_uid.as_ref() else { return vec![] };
            pl.default_constraints
                .iter()
                .filter(|c| c.when_unsatisfiable == when)
                .map(|c| Constraint {
                    max_skew: c.max_skew.max(1) as i64,
                    topology_key: c.topology_key.clone(),
                    selector: SpreadSelector::SameOwner(uid.clone()),
                    min_domains: 1,
                    honor_node_affinity: true,
                    honor_node_taints: false,
                })
                .collect()
        }
    }
}

/// Whether a node's pods count for `c` (node inclusion policies).
fn node_included(c: &Constraint, pod: &PodInfo, affinity: &RequiredNodeAffinity, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || affinity.matches(node))
        && (!c.honor_node_taints || find_untolerated(&node.taints, &pod.tolerations).is_none())
}

#[derive(Clone, Debug)]
struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain value.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the smallest count.
    min: Vec<i64>,
}

impl FilterState {
    fn recompute_min(&mut self, i: usize) {
        self.min[i] = self.counts[i].values().copied().min().unwrap_or(0);
    }

    fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        for i in 0..self.constraints.len() {
            let c = &self.constraints[i];
            if !c.counts(pod, other) {
                continue;
            }
            let Some(v) = node.labels.get(&c.topology_key) else { continue };
            let Some(n) = self.counts[i].get_mut(v) else { continue };
            *n += delta;
            self.recompute_min(i);
        }
    }
}

#[derive(Clone, Debug)]
struct ScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    /// Per feasible node (in scoring order): ignored for lacking a topology label.
    ignored: Vec<bool>,
    index: HashMap<String, usize>,
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Result<PreFilterResult, Status> {
        let cons = constraints(self, pod, "DoNotSchedule");
        if cons.is_empty() {
            return Ok(PreFilterResult::Skip);
        }
        let affinity = RequiredNodeAffinity::new(pod);
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cons.len()];
        for node in cache.nodes() {
            if !cons.iter().all(|c| node.labels.contains_key(&c.topology_key)) {
                continue;
            }
            for (i, c) in cons.iter().enumerate() {
                if !node_included(c, pod, &affinity, node) {
                    continue;
                }
                let n = c.count_on(pod, node);
                *counts[i].entry(node.labels[&c.topology_key].clone()).or_default() += n;
            }
        }
        let mut st = FilterState { min: vec![0; cons.len()], constraints: cons, counts };
        for i in 0..st.constraints.len() {
            st.recompute_min(i);
        }
        state.write(NAME, st);
        Ok(PreFilterResult::Continue)
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let Some(st) = state.read::<FilterState>(NAME) else { return Ok(()) };
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.topology_key) else {
                return Err(Status::unresolvable(NAME, ERR_REASON_MISSING_LABEL));
            };
            let self_match = i64::from(c.counts(pod, pod));
            let matched = st.counts[i].get(value).copied().unwrap_or(0);
            let min = if st.counts[i].len() < c.min_domains { 0 } else { st.min[i] };
            if matched + self_match - min > c.max_skew {
                return Err(Status::unschedulable(NAME, ERR_REASON));
            }
        }
        Ok(())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, _cache: &Cache) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            st.update(pod, other, node, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, _cache: &Cache) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            st.update(pod, other, node, -1);
        }
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache, nodes: &[&NodeInfo]) -> bool {
        let cons = constraints(self, pod, "ScheduleAnyway");
        if cons.is_empty() {
            return false;
        }
        let has_own = pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty());
        let require_all = has_own || !self.system_defaulted;
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cons.len()];
        let mut ignored = Vec::with_capacity(nodes.len());
        let mut sizes = vec![0usize; cons.len()];
        for n in nodes {
            let ignore = require_all && !cons.iter().all(|c| n.labels.contains_key(&c.topology_key));
            ignored.push(ignore);
            if ignore {
                continue;
            }
            for (i, c) in cons.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                if let Some(v) = n.labels.get(&c.topology_key)
                    && !counts[i].contains_key(v)
                {
                    counts[i].insert(v.clone(), 0);
                    sizes[i] += 1;
                }
            }
        }
        let considered = ignored.iter().filter(|i| !**i).count();
        let weights = cons
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME { considered } else { sizes[i] };
                ((size + 2) as f64).ln()
            })
            .collect();
        let affinity = RequiredNodeAffinity::new(pod);
        for node in cache.nodes() {
            if require_all && !cons.iter().all(|c| node.labels.contains_key(&c.topology_key)) {
                continue;
            }
            for (i, c) in cons.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME || !node_included(c, pod, &affinity, node) {
                    continue;
                }
                if let Some(v) = node.labels.get(&c.topology_key)
                    && let Some(n) = counts[i].get_mut(v)
                {
                    *n += c.count_on(pod, node);
                }
            }
        }
        let index = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        state.write(SCORE_KEY, ScoreState { constraints: cons, counts, weights, ignored, index });
        true
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, _cache: &Cache) -> i64 {
        let Some(st) = state.read::<ScoreState>(SCORE_KEY) else { return 0 };
        if st.index.get(&node.name).is_some_and(|&i| st.ignored[i]) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.topology_key) else { continue };
            let cnt = if c.topology_key == LABEL_HOSTNAME {
                c.count_on(pod, node)
            } else {
                st.counts[i].get(v).copied().unwrap_or(0)
            };
            score += cnt as f64 * st.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let Some(st) = state.read::<ScoreState>(SCORE_KEY) else { return };
        let ignored = |i: usize| st.ignored.get(i).copied().unwrap_or(false);
        let (mut min, mut max) = (i64::MAX, 0i64);
        for (i, s) in scores.iter().enumerate() {
            if !ignored(i) {
                min = min.min(*s);
                max = max.max(*s);
            }
        }
        for (i, s) in scores.iter_mut().enumerate() {
            *s = if ignored(i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_all, score_all};

    fn zones() -> Vec<k8s_openapi::api::core::v1::Node> {
        vec![
            NodeBuilder::new("a1").label(LABEL_ZONE, "a").build(),
            NodeBuilder::new("a2").label(LABEL_ZONE, "a").build(),
            NodeBuilder::new("b1").label(LABEL_ZONE, "b").build(),
            NodeBuilder::new("nozone").build(),
        ]
    }

    fn web(name: &str, node: &str) -> k8s_openapi::api::core::v1::Pod {
        PodBuilder::new(name).label("app", "web").node(node).build()
    }

    #[test]
    fn filter() {
        let skew = || Err(ERR_REASON.to_string());
        let missing = || Err(ERR_REASON_MISSING_LABEL.to_string());
        let pod = PodBuilder::new("p").label("app", "web").spread(1, LABEL_ZONE, "DoNotSchedule", &[("app", "web")]).build();
        let cases = [
            ("empty cluster: every zone", vec![], vec![Ok(()), Ok(()), Ok(()), missing()]),
            ("zone a has one more: only b", vec![web("w1", "a1")], vec![skew(), skew(), Ok(()), missing()]),
            ("balanced", vec![web("w1", "a1"), web("w2", "b1")], vec![Ok(()), Ok(()), Ok(()), missing()]),
            (
                "other namespaces and labels do not count",
                vec![
                    PodBuilder::new("x").namespace("other").label("app", "web").node("a1").build(),
                    PodBuilder::new("y").label("app", "db").node("a1").build(),
                ],
                vec![Ok(()), Ok(()), Ok(()), missing()],
            ),
        ];
        for (name, pods, want) in cases {
            assert_eq!(filter_all(&PodTopologySpread::default(), &pod, &zones(), &pods), want, "{name}");
        }
        // maxSkew 2 allows one more.
        let loose = PodBuilder::new("p").label("app", "web").spread(2, LABEL_ZONE, "DoNotSchedule", &[("app", "web")]).build();
        assert_eq!(
            filter_all(&PodTopologySpread::default(), &loose, &zones(), &[web("w1", "a1")]),
            vec![Ok(()), Ok(()), Ok(()), missing()]
        );
        // Hostname spreading.
        let host = PodBuilder::new("p").label("app", "web").spread(1, LABEL_HOSTNAME, "DoNotSchedule", &[("app", "web")]).build();
        assert_eq!(
            filter_all(&PodTopologySpread::default(), &host, &zones(), &[web("w1", "a1")]),
            vec![skew(), Ok(()), Ok(()), Ok(())]
        );
    }

    #[test]
    fn score_prefers_emptier_domains() {
        let pod = PodBuilder::new("p").label("app", "web").spread(1, LABEL_ZONE, "ScheduleAnyway", &[("app", "web")]).build();
        let pods = [web("w1", "a1"), web("w2", "a2")];
        let scores = score_all(&PodTopologySpread::default(), &pod, &zones(), &pods);
        assert_eq!(scores[3], 0, "a node without the zone is ignored");
        assert!(scores[2] > scores[0] && scores[0] == scores[1], "{scores:?}");
        assert_eq!(scores[2], 100);
    }

    #[test]
    fn system_defaults_spread_a_controllers_pods() {
        let nodes = [NodeBuilder::new("n1").build(), NodeBuilder::new("n2").build()];
        let pods = [PodBuilder::new("r1").owner("rs-1").node("n1").build(), PodBuilder::new("r2").owner("rs-1").node("n1").build()];
        let pod = PodBuilder::new("p").owner("rs-1").build();
        let scores = score_all(&PodTopologySpread::default(), &pod, &nodes, &pods);
        assert!(scores[1] > scores[0], "{scores:?}");
        let orphan = PodBuilder::new("p").build();
        assert_eq!(score_all(&PodTopologySpread::default(), &orphan, &nodes, &pods), vec![0, 0]);
    }
}
