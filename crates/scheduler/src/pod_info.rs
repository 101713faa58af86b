//! `PodInfo`: a pod with everything the plugins ask of it computed once (requests, host ports,
//! tolerations, affinity terms), shared by `Arc` between the queue, the cache and the node infos.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration, WeightedPodAffinityTerm};

use crate::resource::{PodRequests, pod_requests};
use crate::selector::{Labels, Op, Requirement, Selector};

/// The label of a pod's node that names it (`kubernetes.io/hostname`).
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The zone label.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// A host port a pod asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Upstream's conflict rule: same protocol and port, and either address is 0.0.0.0 or they are equal.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// A pod (anti-)affinity term, compiled.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// Namespaces listed by the term (with the pod's own when neither list nor selector is given).
    pub namespaces: Vec<String>,
    /// `namespaceSelector`; `Some(everything)` for `{}`.
    pub namespace_selector: Option<Selector>,
    pub selector: Selector,
    pub topology_key: String,
    pub weight: i32,
}

impl AffinityTerm {
    fn new(t: &PodAffinityTerm, pod_ns: &str, pod_labels: &Labels, weight: i32) -> Self {
        let mut selector = Selector::from_label_selector(t.label_selector.as_ref());
        // matchLabelKeys / mismatchLabelKeys: merged into the selector with the incoming pod's values.
        if t.label_selector.is_some() {
            for k in t.match_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.add(Requirement { key: k.clone(), op: Op::In(vec![v.clone()]) });
                }
            }
            for k in t.mismatch_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.add(Requirement { key: k.clone(), op: Op::NotIn(vec![v.clone()]) });
                }
            }
        }
        let namespace_selector = t.namespace_selector.as_ref().map(|s| Selector::from_label_selector(Some(s)));
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(pod_ns.to_string());
        }
        AffinityTerm { namespaces, namespace_selector, selector, topology_key: t.topology_key.clone(), weight }
    }

    /// Whether the term selects `pod`; `ns_labels` gives a namespace's labels for namespace selectors.
    pub fn matches(&self, pod: &PodInfo, ns_labels: &dyn Fn(&str) -> Option<Labels>) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                s.is_empty() || ns_labels(&pod.namespace).is_some_and(|l| s.matches(&l))
            });
        ns_ok && self.selector.matches(&pod.labels)
    }
}

/// A pod as the scheduler sees it.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    pub priority: i32,
    pub requests: PodRequests,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    /// The uid of the controller owner (ReplicaSet, StatefulSet...), for the default spread constraints.
    pub controller_uid: Option<String>,
    pub terminating: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let mut host_ports = Vec::new();
        if let Some(spec) = spec {
            let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            for c in spec.containers.iter().chain(sidecars) {
                for p in c.ports.iter().flatten() {
                    if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                        host_ports.push(HostPort {
                            ip: p.host_ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                            port: hp,
                        });
                    }
                }
            }
        }
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let req = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|t| AffinityTerm::new(t, &namespace, &labels, 1)).collect()
        };
        let pref = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(&t.pod_affinity_term, &namespace, &labels, t.weight))
                .collect()
        };
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_affinity = req(pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()));
        let preferred_affinity = pref(pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()));
        let required_anti_affinity =
            req(paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()));
        let preferred_anti_affinity =
            pref(paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()));
        let controller_uid = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        PodInfo {
            namespace,
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests: pod_requests(&pod),
            host_ports,
            tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            controller_uid,
            terminating: meta.deletion_timestamp.is_some(),
            labels,
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn node_name(&self) -> Option<&str> {
        self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
    }

    pub fn scheduler_name(&self) -> &str {
        self.pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME)
    }

    pub fn nominated_node_name(&self) -> Option<&str> {
        self.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty())
    }

    pub fn preempt_never(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never")
    }

    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// Pods that have finished no longer hold resources on their node.
    pub fn is_terminal(&self) -> bool {
        matches!(self.pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
    }

    pub fn creation_time(&self) -> Option<jiff::Timestamp> {
        self.pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
    }
}
