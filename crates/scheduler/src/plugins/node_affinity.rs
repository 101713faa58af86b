//! NodeAffinity: `spec.nodeSelector` and required node affinity must match the node's labels (and
//! `metadata.name` fields); preferred terms add their weights to the score.

use std::collections::HashSet;

use crate::cache::Cache;
use crate::framework::{CycleState, Plugin, PreFilterResult, Status, default_normalize};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::selector::{NodeTerm, Op, Selector};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The pod's node constraints, compiled.
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    pub node_selector: Option<Selector>,
    /// ORed terms; `None` when there is no required affinity.
    pub terms: Option<Vec<NodeTerm>>,
}

impl RequiredNodeAffinity {
    pub fn new(pod: &PodInfo) -> Self {
        let spec = pod.pod.spec.as_ref();
        let node_selector = spec.and_then(|s| s.node_selector.as_ref()).filter(|m| !m.is_empty()).map(Selector::from_map);
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|ns| ns.node_selector_terms.iter().map(NodeTerm::from_term).collect());
        RequiredNodeAffinity { node_selector, terms }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_none() && self.terms.is_none()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if let Some(s) = &self.node_selector
            && !s.matches(&node.labels)
        {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(&node.name, &node.labels)),
        }
    }
}

#[derive(Clone)]
struct PreferredTerms(Vec<(i32, NodeTerm)>);

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _cache: &Cache) -> Result<PreFilterResult, Status> {
        let req = RequiredNodeAffinity::new(pod);
        if req.is_empty() {
            return Ok(PreFilterResult::Skip);
        }
        // Terms that all name nodes through `metadata.name In` limit the nodes to look at.
        let mut names: Option<HashSet<String>> = None;
        if let Some(terms) = &req.terms {
            let mut all = HashSet::new();
            let mut every_term_names = !terms.is_empty();
            for t in terms {
                match t.fields.iter().find_map(|f| match &f.op {
                    Op::In(v) if t.valid => Some(v),
                    _ => None,
                }) {
                    Some(v) => all.extend(v.iter().cloned()),
                    None => every_term_names = false,
                }
            }
            if every_term_names {
                names = Some(all);
            }
        }
        state.write(NAME, req);
        Ok(match names {
            Some(n) if n.is_empty() => return Err(Status::unresolvable(NAME, ERR_REASON)),
            Some(n) => PreFilterResult::Nodes(n),
            None => PreFilterResult::Continue,
        })
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let ok = match state.read::<RequiredNodeAffinity>(NAME) {
            Some(r) => r.matches(node),
            None => RequiredNodeAffinity::new(pod).matches(node),
        };
        if ok { Ok(()) } else { Err(Status::unresolvable(NAME, ERR_REASON)) }
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _cache: &Cache, _nodes: &[&NodeInfo]) -> bool {
        let terms: Vec<(i32, NodeTerm)> = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (t.weight, NodeTerm::from_term(&t.preference)))
            .collect();
        if terms.is_empty() {
            return false;
        }
        state.write("NodeAffinity/preferred", PreferredTerms(terms));
        true
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo, _cache: &Cache) -> i64 {
        let Some(PreferredTerms(terms)) = state.read::<PreferredTerms>("NodeAffinity/preferred") else { return 0 };
        terms.iter().filter(|(_, t)| t.matches(&node.name, &node.labels)).map(|(w, _)| *w as i64).sum()
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_all, score_all};

    fn nodes() -> Vec<k8s_openapi::api::core::v1::Node> {
        vec![
            NodeBuilder::new("n1").label("zone", "a").label("disk", "ssd").build(),
            NodeBuilder::new("n2").label("zone", "b").build(),
            NodeBuilder::new("n3").label("zone", "c").label("disk", "hdd").build(),
        ]
    }

    #[test]
    fn filter() {
        let no = || Err(ERR_REASON.to_string());
        let cases = [
            ("nothing required", PodBuilder::new("p").build(), vec![Ok(()), Ok(()), Ok(())]),
            ("node selector", PodBuilder::new("p").node_selector("disk", "ssd").build(), vec![Ok(()), no(), no()]),
            (
                "affinity In",
                PodBuilder::new("p").required_node_affinity("zone", "In", &["a", "b"]).build(),
                vec![Ok(()), Ok(()), no()],
            ),
            (
                "terms are ORed",
                PodBuilder::new("p")
                    .required_node_affinity("zone", "In", &["a"])
                    .required_node_affinity("disk", "In", &["hdd"])
                    .build(),
                vec![Ok(()), no(), Ok(())],
            ),
            (
                "selector and affinity both apply",
                PodBuilder::new("p").node_selector("disk", "ssd").required_node_affinity("zone", "In", &["c"]).build(),
                vec![no(), no(), no()],
            ),
            (
                "DoesNotExist",
                PodBuilder::new("p").required_node_affinity("disk", "DoesNotExist", &[]).build(),
                vec![no(), Ok(()), no()],
            ),
            (
                "metadata.name field",
                PodBuilder::new("p").required_node_name_field(&["n2"]).build(),
                vec![Err("not in pre-filter result".into()), Ok(()), Err("not in pre-filter result".into())],
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(filter_all(&NodeAffinity, &pod, &nodes(), &[]), want, "{name}");
        }
    }

    #[test]
    fn score() {
        let pod = PodBuilder::new("p")
            .preferred_node_affinity(10, "zone", "In", &["a"])
            .preferred_node_affinity(30, "disk", "Exists", &[])
            .build();
        assert_eq!(score_all(&NodeAffinity, &pod, &nodes(), &[]), vec![100, 0, 75]);
        assert_eq!(score_all(&NodeAffinity, &PodBuilder::new("p").build(), &nodes(), &[]), vec![0, 0, 0]);
    }
}
