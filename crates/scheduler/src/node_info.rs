//! `NodeInfo`: one node and the pods on it, with the aggregates plugins read kept up to date as pods come
//! and go (requested resources, used host ports, pods with affinity), as upstream's `framework.NodeInfo`.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::pod_info::{HostPort, PodInfo};
use crate::resource::Resource;
use crate::selector::Labels;

#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// `None` while only pods naming this node are known.
    pub node: Option<Arc<Node>>,
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resource,
    /// Sum of the pods' requests.
    pub requested: Resource,
    /// The same with CPU and memory defaulted for containers that request none (for scoring).
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Image names on the node and their sizes.
    pub images: HashMap<String, i64>,
    /// Bumped on every change.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(name: &str) -> Self {
        NodeInfo { name: name.to_string(), ..Default::default() }
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.allocatable = status.and_then(|s| s.allocatable.as_ref()).map(Resource::from_list).unwrap_or_default();
        self.images.clear();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                self.images.insert(n.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        self.node = Some(node);
        self.generation += 1;
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests.requests);
        self.non_zero_cpu += p.requests.non_zero_milli_cpu;
        self.non_zero_memory += p.requests.non_zero_memory;
        self.used_ports.extend(p.host_ports.iter().cloned());
        if p.has_affinity() {
            self.pods_with_affinity.push(p.clone());
        }
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity.push(p.clone());
        }
        self.pods.push(p);
        self.generation += 1;
    }

    /// Removes the pod with this uid; false if it was not here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else { return false };
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests.requests);
        self.non_zero_cpu -= p.requests.non_zero_milli_cpu;
        self.non_zero_memory -= p.requests.non_zero_memory;
        for hp in &p.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        self.pods_with_affinity.retain(|q| q.uid != uid);
        self.pods_with_required_anti_affinity.retain(|q| q.uid != uid);
        self.generation += 1;
        true
    }
}
