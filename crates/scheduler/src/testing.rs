//! Node and pod builders for tests (here and in other crates' tests), and helpers that run one plugin's
//! filter or score over a small cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, PersistentVolumeClaimVolumeSource, Pod, PodAffinity, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
    TopologySpreadConstraint, Volume, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};

use crate::cache::Cache;
use crate::framework::{CycleState, Plugin, PreFilterResult};
use crate::node_info::NodeInfo;
use crate::pod_info::{LABEL_HOSTNAME, PodInfo};

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// Builds a Node: 4 CPUs, 16Gi, 110 pods, labelled with its hostname unless changed.
pub struct NodeBuilder(Node);

impl NodeBuilder {
    pub fn new(name: &str) -> Self {
        let mut alloc = BTreeMap::new();
        alloc.insert("cpu".to_string(), q("4"));
        alloc.insert("memory".to_string(), q("16Gi"));
        alloc.insert("pods".to_string(), q("110"));
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_HOSTNAME.to_string(), name.to_string());
        NodeBuilder(Node {
            metadata: ObjectMeta { name: Some(name.into()), labels: Some(labels), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus { capacity: Some(alloc.clone()), allocatable: Some(alloc), ..Default::default() }),
        })
    }

    pub fn allocatable(mut self, name: &str, quantity: &str) -> Self {
        let st = self.0.status.as_mut().unwrap();
        st.allocatable.as_mut().unwrap().insert(name.into(), q(quantity));
        st.capacity.as_mut().unwrap().insert(name.into(), q(quantity));
        self
    }

    pub fn cpu(self, quantity: &str) -> Self {
        self.allocatable("cpu", quantity)
    }

    pub fn memory(self, quantity: &str) -> Self {
        self.allocatable("memory", quantity)
    }

    pub fn pods(self, quantity: &str) -> Self {
        self.allocatable("pods", quantity)
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.metadata.labels.get_or_insert_default().insert(k.into(), v.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.0.spec.get_or_insert_default();
        spec.taints.get_or_insert_default().push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.0.spec.get_or_insert_default().unschedulable = Some(true);
        self
    }

    pub fn image(mut self, name: &str, size: i64) -> Self {
        let st = self.0.status.as_mut().unwrap();
        st.images.get_or_insert_default().push(ContainerImage { names: Some(vec![name.into()]), size_bytes: Some(size) });
        self
    }

    pub fn build(self) -> Node {
        self.0
    }
}

/// Builds a Pod in namespace `default` with a uid made from its name.
pub struct PodBuilder(Pod);

fn label_selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        match_expressions: None,
    }
}

impl PodBuilder {
    pub fn new(name: &str) -> Self {
        PodBuilder(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: None,
        })
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.as_mut().unwrap()
    }

    fn affinity(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_default()
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.metadata.namespace = Some(ns.into());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.metadata.labels.get_or_insert_default().insert(k.into(), v.into());
        self
    }

    pub fn owner(mut self, uid: &str) -> Self {
        self.0.metadata.owner_references.get_or_insert_default().push(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        });
        self
    }

    fn make_container(name: String, cpu: &str, mem: &str) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert("cpu".to_string(), q(cpu));
        }
        if !mem.is_empty() {
            req.insert("memory".to_string(), q(mem));
        }
        Container {
            name,
            image: Some("busybox".into()),
            resources: Some(ResourceRequirements { requests: Some(req), ..Default::default() }),
            ..Default::default()
        }
    }

    /// A container requesting `cpu` and `mem` (empty: no request).
    pub fn container(mut self, cpu: &str, mem: &str) -> Self {
        let n = format!("c{}", self.spec().containers.len());
        self.spec().containers.push(Self::make_container(n, cpu, mem));
        self
    }

    /// A request of the last container (an extended resource, ephemeral-storage...).
    pub fn request(mut self, name: &str, quantity: &str) -> Self {
        if self.spec().containers.is_empty() {
            self = self.container("", "");
        }
        let c = self.spec().containers.last_mut().unwrap();
        c.resources.get_or_insert_default().requests.get_or_insert_default().insert(name.into(), q(quantity));
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        if self.spec().containers.is_empty() {
            self = self.container("", "");
        }
        self.spec().containers.last_mut().unwrap().image = Some(image.into());
        self
    }

    pub fn init_container(mut self, cpu: &str, mem: &str) -> Self {
        let n = format!("i{}", self.spec().init_containers.as_ref().map_or(0, |v| v.len()));
        self.spec().init_containers.get_or_insert_default().push(Self::make_container(n, cpu, mem));
        self
    }

    pub fn sidecar(mut self, cpu: &str, mem: &str) -> Self {
        let n = format!("i{}", self.spec().init_containers.as_ref().map_or(0, |v| v.len()));
        let mut c = Self::make_container(n, cpu, mem);
        c.restart_policy = Some("Always".into());
        self.spec().init_containers.get_or_insert_default().push(c);
        self
    }

    pub fn overhead(mut self, cpu: &str, mem: &str) -> Self {
        let o = self.spec().overhead.get_or_insert_default();
        o.insert("cpu".into(), q(cpu));
        o.insert("memory".into(), q(mem));
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }

    pub fn scheduler_name(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.into());
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    pub fn preempt_never(mut self) -> Self {
        self.spec().preemption_policy = Some("Never".into());
        self
    }

    pub fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec().tolerations.get_or_insert_default().push(Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        });
        self
    }

    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec().node_selector.get_or_insert_default().insert(k.into(), v.into());
        self
    }

    fn node_req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    /// Adds a required node affinity term with one expression (terms are ORed).
    pub fn required_node_affinity(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        let na = self.affinity().node_affinity.get_or_insert_default();
        let sel = na.required_during_scheduling_ignored_during_execution.get_or_insert_with(NodeSelector::default);
        sel.node_selector_terms.push(NodeSelectorTerm {
            match_expressions: Some(vec![Self::node_req(key, op, values)]),
            match_fields: None,
        });
        self
    }

    /// Adds a required term matching a node name through `matchFields`.
    pub fn required_node_name_field(mut self, names: &[&str]) -> Self {
        let na: &mut NodeAffinity = self.affinity().node_affinity.get_or_insert_default();
        let sel = na.required_during_scheduling_ignored_during_execution.get_or_insert_with(NodeSelector::default);
        sel.node_selector_terms.push(NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![Self::node_req("metadata.name", "In", names)]),
        });
        self
    }

    pub fn preferred_node_affinity(mut self, weight: i32, key: &str, op: &str, values: &[&str]) -> Self {
        let na = self.affinity().node_affinity.get_or_insert_default();
        na.preferred_during_scheduling_ignored_during_execution.get_or_insert_default().push(PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm { match_expressions: Some(vec![Self::node_req(key, op, values)]), match_fields: None },
        });
        self
    }

    fn term(labels: &[(&str, &str)], topology_key: &str) -> PodAffinityTerm {
        PodAffinityTerm { label_selector: Some(label_selector(labels)), topology_key: topology_key.into(), ..Default::default() }
    }

    pub fn pod_affinity(mut self, labels: &[(&str, &str)], topology_key: &str) -> Self {
        let a = self.affinity().pod_affinity.get_or_insert_with(PodAffinity::default);
        a.required_during_scheduling_ignored_during_execution.get_or_insert_default().push(Self::term(labels, topology_key));
        self
    }

    pub fn pod_anti_affinity(mut self, labels: &[(&str, &str)], topology_key: &str) -> Self {
        let a = self.affinity().pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
        a.required_during_scheduling_ignored_during_execution.get_or_insert_default().push(Self::term(labels, topology_key));
        self
    }

    pub fn preferred_pod_affinity(mut self, weight: i32, labels: &[(&str, &str)], topology_key: &str) -> Self {
        let a = self.affinity().pod_affinity.get_or_insert_with(PodAffinity::default);
        a.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(WeightedPodAffinityTerm { weight, pod_affinity_term: Self::term(labels, topology_key) });
        self
    }

    pub fn preferred_pod_anti_affinity(mut self, weight: i32, labels: &[(&str, &str)], topology_key: &str) -> Self {
        let a = self.affinity().pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
        a.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(WeightedPodAffinityTerm { weight, pod_affinity_term: Self::term(labels, topology_key) });
        self
    }

    /// A topology spread constraint (`DoNotSchedule` or `ScheduleAnyway`) over pods with these labels.
    pub fn spread(mut self, max_skew: i32, topology_key: &str, when: &str, labels: &[(&str, &str)]) -> Self {
        self.spec().topology_spread_constraints.get_or_insert_default().push(TopologySpreadConstraint {
            max_skew,
            topology_key: topology_key.into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(label_selector(labels)),
            ..Default::default()
        });
        self
    }

    pub fn host_port(mut self, port: i32) -> Self {
        if self.spec().containers.is_empty() {
            self = self.container("", "");
        }
        let c = self.spec().containers.last_mut().unwrap();
        c.ports.get_or_insert_default().push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        });
        self
    }

    pub fn pvc(mut self, claim: &str) -> Self {
        self.spec().volumes.get_or_insert_default().push(Volume {
            name: claim.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim.into(), read_only: None }),
            ..Default::default()
        });
        self
    }

    /// The pod; one container without requests if none was added (pods need one).
    pub fn build(mut self) -> Pod {
        if self.spec().containers.is_empty() {
            self = self.container("", "");
        }
        self.0
    }

    pub fn info(self) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(self.build())))
    }
}

/// A cache with these nodes and bound pods.
pub fn cache_with(nodes: &[Node], pods: &[Pod]) -> Cache {
    let mut c = Cache::new();
    for n in nodes {
        c.add_or_update_node(Arc::new(n.clone()));
    }
    for p in pods {
        c.add_or_update_pod(Arc::new(PodInfo::new(Arc::new(p.clone()))));
    }
    c
}

/// Runs `plugin`'s pre-filter and filter for `pod` on every node; `Err` holds the joined reasons.
pub fn filter_all(plugin: &dyn Plugin, pod: &Pod, nodes: &[Node], pods: &[Pod]) -> Vec<Result<(), String>> {
    let cache = cache_with(nodes, pods);
    let pi = PodInfo::new(Arc::new(pod.clone()));
    let mut state = CycleState::default();
    match plugin.pre_filter(&mut state, &pi, &cache) {
        Err(s) => return nodes.iter().map(|_| Err(s.message())).collect(),
        Ok(PreFilterResult::Skip) => return nodes.iter().map(|_| Ok(())).collect(),
        Ok(PreFilterResult::Nodes(set)) => {
            return cache
                .nodes()
                .iter()
                .map(|n| {
                    if !set.contains(&n.name) {
                        return Err("not in pre-filter result".to_string());
                    }
                    plugin.filter(&state, &pi, n).map_err(|s| s.message())
                })
                .collect();
        }
        Ok(PreFilterResult::Continue) => {}
    }
    cache.nodes().iter().map(|n| plugin.filter(&state, &pi, n).map_err(|s| s.message())).collect()
}

/// `filter_all` with one node.
pub fn filter_one(plugin: &dyn Plugin, pod: &Pod, node: &Node, pods: &[Pod]) -> Result<(), String> {
    filter_all(plugin, pod, std::slice::from_ref(node), pods).remove(0)
}

/// Runs `plugin`'s pre-score, score and normalize for `pod` over all nodes.
pub fn score_all(plugin: &dyn Plugin, pod: &Pod, nodes: &[Node], pods: &[Pod]) -> Vec<i64> {
    let cache = cache_with(nodes, pods);
    let pi = PodInfo::new(Arc::new(pod.clone()));
    let mut state = CycleState::default();
    let _ = plugin.pre_filter(&mut state, &pi, &cache);
    let infos: Vec<&NodeInfo> = cache.nodes().iter().collect();
    if !plugin.pre_score(&mut state, &pi, &cache, &infos) {
        return vec![0; infos.len()];
    }
    let mut scores: Vec<i64> = infos.iter().map(|n| plugin.score(&state, &pi, n, &cache)).collect();
    plugin.normalize(&state, &pi, &mut scores);
    scores
}
