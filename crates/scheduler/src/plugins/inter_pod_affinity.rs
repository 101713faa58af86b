//! InterPodAffinity: required pod affinity and anti-affinity of the incoming pod, and the required
//! anti-affinity of pods already running, per topology domain (filter); preferred terms of both sides
//! (score).

use std::collections::HashMap;

use crate::cache::Cache;
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, PreFilterResult, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::{AffinityTerm, PodInfo};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
const SCORE_KEY: &str = "InterPodAffinity/score";

pub struct InterPodAffinity {
    /// Weight of running pods' required affinity terms that the incoming pod matches (`hardPodAffinityWeight`).
    pub hard_pod_affinity_weight: i64,
    /// Score only by the incoming pod's preferred terms (`ignorePreferredTermsOfExistingPods`).
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity { hard_pod_affinity_weight: 1, ignore_preferred_terms_of_existing_pods: false }
    }
}

type TopologyCounts = HashMap<(String, String), i64>;

#[derive(Clone, Debug, Default)]
struct FilterState {
    existing_anti: TopologyCounts,
    affinity: TopologyCounts,
    anti_affinity: TopologyCounts,
    ns_labels: HashMap<String, crate::selector::Labels>,
}

fn bump(m: &mut TopologyCounts, node: &NodeInfo, key: &str, delta: i64) {
    if let Some(v) = node.labels.get(key) {
        let e = m.entry((key.to_string(), v.clone())).or_default();
        *e += delta;
        if *e == 0 {
            m.remove(&(key.to_string(), v.clone()));
        }
    }
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, ns: &dyn Fn(&str) -> Option<crate::selector::Labels>) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, ns))
}

impl FilterState {
    fn ns(&self) -> impl Fn(&str) -> Option<crate::selector::Labels> + '_ {
        |n: &str| self.ns_labels.get(n).cloned()
    }

    fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        let ns_labels = self.ns_labels.clone();
        let ns = |n: &str| ns_labels.get(n).cloned();
        for t in &other.required_anti_affinity {
            if t.matches(pod, &ns) {
                bump(&mut self.existing_anti, node, &t.topology_key, delta);
            }
        }
        if matches_all(&pod.required_affinity, other, &ns) {
            for t in &pod.required_affinity {
                bump(&mut self.affinity, node, &t.topology_key, delta);
            }
        }
        for t in &pod.required_anti_affinity {
            if t.matches(other, &ns) {
                bump(&mut self.anti_affinity, node, &t.topology_key, delta);
            }
        }
    }
}

/// The namespace labels the terms may need: the incoming pod's own (for running pods' terms with namespace
/// selectors), and every namespace's only when the incoming pod's terms use a namespace selector.
fn namespace_labels(pod: &PodInfo, cache: &Cache) -> HashMap<String, crate::selector::Labels> {
    let uses_selector = |terms: &[AffinityTerm]| terms.iter().any(|t| t.namespace_selector.is_some());
    if uses_selector(&pod.required_affinity)
        || uses_selector(&pod.required_anti_affinity)
        || uses_selector(&pod.preferred_affinity)
        || uses_selector(&pod.preferred_anti_affinity)
    {
        return cache.all_namespace_labels().clone();
    }
    let mut out = HashMap::new();
    if let Some(l) = cache.namespace_labels(&pod.namespace) {
        out.insert(pod.namespace.clone(), l);
    }
    out
}

impl Plugin for InterPodAffinity {
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
        let any_existing_anti = cache.nodes().iter().any(|n| !n.pods_with_required_anti_affinity.is_empty());
        if !any_existing_anti && pod.required_affinity.is_empty() && pod.required_anti_affinity.is_empty() {
            return Ok(PreFilterResult::Skip);
        }
        let mut st = FilterState { ns_labels: namespace_labels(pod, cache), ..Default::default() };
        let ns_labels = st.ns_labels.clone();
        let ns = |n: &str| ns_labels.get(n).cloned();
        for node in cache.nodes() {
            for e in &node.pods_with_required_anti_affinity {
                for t in &e.required_anti_affinity {
                    if t.matches(pod, &ns) {
                        bump(&mut st.existing_anti, node, &t.topology_key, 1);
                    }
                }
            }
            if pod.required_affinity.is_empty() && pod.required_anti_affinity.is_empty() {
                continue;
            }
            for e in &node.pods {
                if matches_all(&pod.required_affinity, e, &ns) {
                    for t in &pod.required_affinity {
                        bump(&mut st.affinity, node, &t.topology_key, 1);
                    }
                }
                for t in &pod.required_anti_affinity {
                    if t.matches(e, &ns) {
                        bump(&mut st.anti_affinity, node, &t.topology_key, 1);
                    }
                }
            }
        }
        state.write(NAME, st);
        Ok(PreFilterResult::Continue)
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let Some(st) = state.read::<FilterState>(NAME) else { return Ok(()) };
        if !st.existing_anti.is_empty()
            && node.labels.iter().any(|(k, v)| st.existing_anti.get(&(k.clone(), v.clone())).is_some_and(|c| *c > 0))
        {
            return Err(Status::unschedulable(NAME, ERR_EXISTING_ANTI_AFFINITY));
        }
        if !pod.required_affinity.is_empty() {
            let mut pods_exist = true;
            for t in &pod.required_affinity {
                let Some(v) = node.labels.get(&t.topology_key) else {
                    return Err(Status::unresolvable(NAME, ERR_AFFINITY));
                };
                if st.affinity.get(&(t.topology_key.clone(), v.clone())).is_none_or(|c| *c <= 0) {
                    pods_exist = false;
                    break;
                }
            }
            // The first pod of a group with affinity to itself may go anywhere the topology exists.
            if !(pods_exist || st.affinity.is_empty() && matches_all(&pod.required_affinity, pod, &st.ns())) {
                return Err(Status::unresolvable(NAME, ERR_AFFINITY));
            }
        }
        for t in &pod.required_anti_affinity {
            if let Some(v) = node.labels.get(&t.topology_key)
                && st.anti_affinity.get(&(t.topology_key.clone(), v.clone())).is_some_and(|c| *c > 0)
            {
                return Err(Status { code: Code::Unschedulable, reasons: vec![ERR_ANTI_AFFINITY.into()], plugin: NAME });
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

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache, _nodes: &[&NodeInfo]) -> bool {
        let has_preferred = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        let any_with_affinity = cache.nodes().iter().any(|n| !n.pods_with_affinity.is_empty());
        if !has_preferred && !any_with_affinity {
            return false;
        }
        let ns_labels = namespace_labels(pod, cache);
        let ns = |n: &str| ns_labels.get(n).cloned();
        let mut scores: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let mut add = |node: &NodeInfo, key: &str, w: i64| {
            if let Some(v) = node.labels.get(key) {
                *scores.entry(key.to_string()).or_default().entry(v.clone()).or_default() += w;
            }
        };
        for node in cache.nodes() {
            let pods = if has_preferred { &node.pods } else { &node.pods_with_affinity };
            for e in pods {
                for t in &pod.preferred_affinity {
                    if t.matches(e, &ns) {
                        add(node, &t.topology_key, t.weight as i64);
                    }
                }
                for t in &pod.preferred_anti_affinity {
                    if t.matches(e, &ns) {
                        add(node, &t.topology_key, -(t.weight as i64));
                    }
                }
                if self.hard_pod_affinity_weight > 0 {
                    for t in &e.required_affinity {
                        if t.matches(pod, &ns) {
                            add(node, &t.topology_key, self.hard_pod_affinity_weight);
                        }
                    }
                }
                if self.ignore_preferred_terms_of_existing_pods {
                    continue;
                }
                for t in &e.preferred_affinity {
                    if t.matches(pod, &ns) {
                        add(node, &t.topology_key, t.weight as i64);
                    }
                }
                for t in &e.preferred_anti_affinity {
                    if t.matches(pod, &ns) {
                        add(node, &t.topology_key, -(t.weight as i64));
                    }
                }
            }
        }
        if scores.is_empty() {
            return false;
        }
        state.write(SCORE_KEY, scores);
        true
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo, _cache: &Cache) -> i64 {
        let Some(scores) = state.read::<HashMap<String, HashMap<String, i64>>>(SCORE_KEY) else { return 0 };
        scores
            .iter()
            .filter_map(|(k, values)| node.labels.get(k).and_then(|v| values.get(v)))
            .sum()
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 { MAX_NODE_SCORE * (*s - min) / diff } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_info::{LABEL_HOSTNAME, LABEL_ZONE};
    use crate::testing::{NodeBuilder, PodBuilder, filter_all, score_all};
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn nodes() -> Vec<Node> {
        vec![
            NodeBuilder::new("a1").label(LABEL_ZONE, "a").build(),
            NodeBuilder::new("a2").label(LABEL_ZONE, "a").build(),
            NodeBuilder::new("b1").label(LABEL_ZONE, "b").build(),
        ]
    }

    fn pod_on(name: &str, app: &str, node: &str) -> Pod {
        PodBuilder::new(name).label("app", app).node(node).build()
    }

    #[test]
    fn filter() {
        let anti = || Err(ERR_ANTI_AFFINITY.to_string());
        let aff = || Err(ERR_AFFINITY.to_string());
        let existing = || Err(ERR_EXISTING_ANTI_AFFINITY.to_string());
        type Case = (&'static str, Pod, Vec<Pod>, Vec<Result<(), String>>);
        let cases: Vec<Case> = vec![
            ("no terms", PodBuilder::new("p").build(), vec![pod_on("w", "web", "a1")], vec![Ok(()), Ok(()), Ok(())]),
            (
                "anti-affinity by hostname",
                PodBuilder::new("p").label("app", "web").pod_anti_affinity(&[("app", "web")], LABEL_HOSTNAME).build(),
                vec![pod_on("w", "web", "a1")],
                vec![anti(), Ok(()), Ok(())],
            ),
            (
                "anti-affinity by zone",
                PodBuilder::new("p").pod_anti_affinity(&[("app", "web")], LABEL_ZONE).build(),
                vec![pod_on("w", "web", "a1")],
                vec![anti(), anti(), Ok(())],
            ),
            (
                "affinity to a zone with the pod",
                PodBuilder::new("p").pod_affinity(&[("app", "db")], LABEL_ZONE).build(),
                vec![pod_on("d", "db", "b1")],
                vec![aff(), aff(), Ok(())],
            ),
            (
                "affinity with no matching pod anywhere",
                PodBuilder::new("p").pod_affinity(&[("app", "db")], LABEL_ZONE).build(),
                vec![],
                vec![aff(), aff(), aff()],
            ),
            (
                "the first pod of a self-affine group goes anywhere",
                PodBuilder::new("p").label("app", "db").pod_affinity(&[("app", "db")], LABEL_ZONE).build(),
                vec![],
                vec![Ok(()), Ok(()), Ok(())],
            ),
            (
                "existing pod's anti-affinity",
                PodBuilder::new("p").label("app", "web").build(),
                vec![PodBuilder::new("e").pod_anti_affinity(&[("app", "web")], LABEL_ZONE).node("b1").build()],
                vec![Ok(()), Ok(()), existing()],
            ),
            (
                "other namespaces do not match",
                PodBuilder::new("p").pod_anti_affinity(&[("app", "web")], LABEL_HOSTNAME).build(),
                vec![PodBuilder::new("w").namespace("other").label("app", "web").node("a1").build()],
                vec![Ok(()), Ok(()), Ok(())],
            ),
        ];
        for (name, pod, pods, want) in cases {
            assert_eq!(filter_all(&InterPodAffinity::default(), &pod, &nodes(), &pods), want, "{name}");
        }
    }

    #[test]
    fn namespace_selectors_match_namespace_labels() {
        use crate::testing::cache_with;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let mut cache = cache_with(&nodes(), &[PodBuilder::new("w").namespace("team-a").label("app", "web").node("a1").build()]);
        cache.set_namespace("team-a", [("team".to_string(), "a".to_string())].into());
        cache.set_namespace("default", Default::default());
        let mut pod = PodBuilder::new("p").pod_anti_affinity(&[("app", "web")], LABEL_HOSTNAME).build();
        let run = |sel: LabelSelector, pod: &mut Pod| {
            pod.spec.as_mut().unwrap().affinity.as_mut().unwrap().pod_anti_affinity.as_mut().unwrap()
                .required_during_scheduling_ignored_during_execution.as_mut().unwrap()[0]
                .namespace_selector = Some(sel);
            let info = PodInfo::new(std::sync::Arc::new(pod.clone()));
            let mut st = CycleState::default();
            InterPodAffinity::default().pre_filter(&mut st, &info, &cache).unwrap();
            cache.nodes().iter().map(|n| InterPodAffinity::default().filter(&st, &info, n).is_ok()).collect::<Vec<_>>()
        };
        let team_a = LabelSelector { match_labels: Some([("team".to_string(), "a".to_string())].into()), match_expressions: None };
        assert_eq!(run(team_a, &mut pod), vec![false, true, true]);
        let team_b = LabelSelector { match_labels: Some([("team".to_string(), "b".to_string())].into()), match_expressions: None };
        assert_eq!(run(team_b, &mut pod), vec![true, true, true]);
        assert_eq!(run(LabelSelector::default(), &mut pod), vec![false, true, true], "{{}} selects every namespace");
    }

    #[test]
    fn score() {
        let pods = [pod_on("w", "web", "a1"), pod_on("d", "db", "b1")];
        let near_web = PodBuilder::new("p").preferred_pod_affinity(10, &[("app", "web")], LABEL_ZONE).build();
        assert_eq!(score_all(&InterPodAffinity::default(), &near_web, &nodes(), &pods), vec![100, 100, 0]);
        let away_from_db = PodBuilder::new("p")
            .preferred_pod_affinity(5, &[("app", "web")], LABEL_HOSTNAME)
            .preferred_pod_anti_affinity(10, &[("app", "db")], LABEL_ZONE)
            .build();
        // a1: +5, a2: 0, b1: -10
        assert_eq!(score_all(&InterPodAffinity::default(), &away_from_db, &nodes(), &pods), vec![100, 66, 0]);
        // An existing pod's preferred anti-affinity repels the incoming pod.
        let repel = [PodBuilder::new("e").preferred_pod_anti_affinity(10, &[("app", "x")], LABEL_ZONE).node("a1").build()];
        let x = PodBuilder::new("p").label("app", "x").build();
        assert_eq!(score_all(&InterPodAffinity::default(), &x, &nodes(), &repel), vec![0, 0, 100]);
        let ignoring = InterPodAffinity { ignore_preferred_terms_of_existing_pods: true, ..Default::default() };
        assert_eq!(score_all(&ignoring, &x, &nodes(), &repel), vec![0, 0, 0]);
    }
}
