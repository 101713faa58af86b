//! Whether a daemon pod belongs on a node (upstream `nodeShouldRunDaemonPod`): node selector, required node
//! affinity and taints against the pod's tolerations, including the ones every daemon pod gets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    Taint, Toleration,
};

/// The tolerations upstream adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// Adds the default tolerations that are not already there (same key and effect).
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for d in default_tolerations(host_network) {
        if !tolerations
            .iter()
            .any(|t| t.key == d.key && t.effect == d.effect)
        {
            tolerations.push(d);
        }
    }
}

/// Pins a pod to a node the way upstream does: a required node affinity term on `metadata.name`
/// (`ReplaceDaemonSetPodNodeNameNodeAffinity`), which replaces any field terms and keeps label terms.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(NodeSelectorTerm {
            match_fields: Some(vec![field]),
            match_expressions: None,
        });
        return;
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![field.clone()]);
    }
}

/// The node a daemon pod is for: its nodeName, else the `metadata.name` affinity it was pinned with.
pub fn target_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| {
                    f.values
                        .as_ref()
                        .and_then(|v| (v.len() == 1).then(|| v[0].clone()))
                })
                .flatten()
        })
}

/// Whether one toleration tolerates one taint (upstream `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn untolerated(
    taints: &[Taint],
    tolerations: &[Toleration],
    effect: impl Fn(&str) -> bool,
) -> bool {
    taints
        .iter()
        .filter(|t| effect(&t.effect))
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Whether a node selector term matches the node's labels and name.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether the pod's node selector and required node affinity admit the node.
pub fn node_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, name)),
        None => true,
    }
}

/// (should run, should continue running) for a daemon pod with `spec` (tolerations already added) on `node`.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if !node_matches(spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    if untolerated(taints, tolerations, |e| {
        e == "NoSchedule" || e == "NoExecute"
    }) {
        // Pods already there may stay unless a NoExecute taint is not tolerated.
        return (
            false,
            !untolerated(taints, tolerations, |e| e == "NoExecute"),
        );
    }
    (true, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn spec() -> PodSpec {
        let mut s = PodSpec::default();
        add_default_tolerations(&mut s);
        s
    }

    #[test]
    fn taints_and_default_tolerations() {
        assert_eq!(should_run(&spec(), &node("a", &[], &[])), (true, true));
        assert_eq!(
            should_run(
                &spec(),
                &node(
                    "a",
                    &[],
                    &[("node.kubernetes.io/unschedulable", "NoSchedule")]
                )
            ),
            (true, true)
        );
        assert_eq!(
            should_run(
                &spec(),
                &node("a", &[], &[("node.kubernetes.io/not-ready", "NoExecute")])
            ),
            (true, true)
        );
        assert_eq!(
            should_run(&spec(), &node("a", &[], &[("dedicated", "NoSchedule")])),
            (false, true)
        );
        assert_eq!(
            should_run(&spec(), &node("a", &[], &[("dedicated", "NoExecute")])),
            (false, false)
        );
        assert_eq!(
            should_run(
                &spec(),
                &node(
                    "a",
                    &[],
                    &[("node.kubernetes.io/network-unavailable", "NoSchedule")]
                )
            ),
            (false, true)
        );
        let mut host = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        add_default_tolerations(&mut host);
        assert_eq!(
            should_run(
                &host,
                &node(
                    "a",
                    &[],
                    &[("node.kubernetes.io/network-unavailable", "NoSchedule")]
                )
            ),
            (true, true)
        );
        let mut tolerant = spec();
        tolerant.tolerations.as_mut().unwrap().push(Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        });
        assert_eq!(
            should_run(&tolerant, &node("a", &[], &[("dedicated", "NoExecute")])),
            (true, true)
        );
    }

    #[test]
    fn selectors_and_affinity() {
        let mut s = spec();
        s.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert!(!should_run(&s, &node("a", &[], &[])).0);
        assert!(should_run(&s, &node("a", &[("disk", "ssd")], &[])).0);
        let mut s = spec();
        s.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "cpus".into(),
                            operator: "Gt".into(),
                            values: Some(vec!["4".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(should_run(&s, &node("a", &[("cpus", "8")], &[])).0);
        assert!(!should_run(&s, &node("a", &[("cpus", "2")], &[])).0);
        pin_to_node(&mut s, "b");
        assert_eq!(target_node(&s).as_deref(), Some("b"));
        assert!(!should_run(&s, &node("a", &[("cpus", "8")], &[])).0);
        assert!(should_run(&s, &node("b", &[("cpus", "8")], &[])).0);
        let mut plain = PodSpec::default();
        pin_to_node(&mut plain, "c");
        assert_eq!(target_node(&plain).as_deref(), Some("c"));
    }
}
