//! The scheduler cache: every node's `NodeInfo` with the pods bound or assumed on it, the namespaces'
//! labels, image spread and nominated pods. Owned by the scheduling loop, so a cycle reads it without locks
//! or copies (upstream takes a snapshot; here the loop applies watch events between cycles).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::selector::Labels;

struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

#[derive(Default)]
pub struct Cache {
    /// Nodes with a Node object, in the order they are evaluated.
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Pods bound to nodes whose Node object is not (or no longer) known.
    orphans: HashMap<String, NodeInfo>,
    pods: HashMap<String, PodState>,
    /// How many nodes have each image.
    image_nodes: HashMap<String, usize>,
    namespaces: HashMap<String, Labels>,
    /// Pods that preempted others and wait for room on a node, by node.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
}

/// What a node update changed, for moving unschedulable pods.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// Something a filter or score reads changed (allocatable, labels, taints, unschedulable, images).
    Changed,
    Unchanged,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    pub fn namespace_labels(&self, ns: &str) -> Option<Labels> {
        self.namespaces.get(ns).cloned()
    }

    pub fn all_namespace_labels(&self) -> &HashMap<String, Labels> {
        &self.namespaces
    }

    pub fn set_namespace(&mut self, name: &str, labels: Labels) {
        self.namespaces.insert(name.to_string(), labels);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    pub fn add_or_update_node(&mut self, node: Arc<Node>) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            let old = self.nodes[i].node.clone();
            let changed = old.as_ref().is_none_or(|o| o.spec != node.spec || o.metadata.labels != node.metadata.labels
                || o.status.as_ref().map(|s| (&s.allocatable, &s.images))
                    != node.status.as_ref().map(|s| (&s.allocatable, &s.images)));
            if changed {
                self.count_images(i, -1);
                self.nodes[i].set_node(node);
                self.count_images(i, 1);
            } else {
                self.nodes[i].node = Some(node);
            }
            return if changed { NodeChange::Changed } else { NodeChange::Unchanged };
        }
        let mut info = self.orphans.remove(&name).unwrap_or_else(|| NodeInfo::new(&name));
        info.set_node(node);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        self.count_images(self.nodes.len() - 1, 1);
        NodeChange::Added
    }

    fn count_images(&mut self, i: usize, delta: isize) {
        for img in self.nodes[i].images.keys() {
            let c = self.image_nodes.entry(img.clone()).or_default();
            *c = c.saturating_add_signed(delta);
            if *c == 0 {
                self.image_nodes.remove(img);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else { return };
        self.count_images(i, -1);
        let mut info = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        // Pods still bound to the node stay accounted until they are deleted.
        if !info.pods.is_empty() {
            info.node = None;
            self.orphans.insert(name.to_string(), info);
        }
        self.nominated.remove(name);
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        match self.index.get(name) {
            Some(&i) => &mut self.nodes[i],
            None => self.orphans.entry(name.to_string()).or_insert_with(|| NodeInfo::new(name)),
        }
    }

    /// A bound pod was seen (added or updated); confirms an assumed pod.
    pub fn add_or_update_pod(&mut self, info: Arc<PodInfo>) {
        let Some(node) = info.node_name().map(str::to_string) else { return };
        self.remove_pod(&info.uid);
        self.node_mut(&node).add_pod(info.clone());
        self.pods.insert(info.uid.clone(), PodState { info, node, assumed: false });
    }

    /// A pod is gone (deleted, or finished); returns the node it was on.
    pub fn remove_pod(&mut self, uid: &str) -> Option<String> {
        let st = self.pods.remove(uid)?;
        self.remove_from_node(&st.node, uid);
        Some(st.node)
    }

    fn remove_from_node(&mut self, node: &str, uid: &str) {
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].remove_pod(uid);
        } else if let Some(o) = self.orphans.get_mut(node) {
            o.remove_pod(uid);
            if o.pods.is_empty() {
                self.orphans.remove(node);
            }
        }
    }

    /// Accounts a pod on the node it was scheduled to before its binding is confirmed.
    pub fn assume_pod(&mut self, info: Arc<PodInfo>, node: &str) {
        self.remove_pod(&info.uid);
        self.node_mut(node).add_pod(info.clone());
        self.pods.insert(info.uid.clone(), PodState { info, node: node.to_string(), assumed: true });
    }

    /// Drops an assumed pod whose binding failed.
    pub fn forget_pod(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|s| s.assumed) {
            self.remove_pod(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    pub fn pod(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(uid).map(|s| &s.info)
    }

    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }

    /// Records that `pod` waits for room on `node` (after preemption); `None` clears it.
    pub fn set_nominated(&mut self, pod: &Arc<PodInfo>, node: Option<&str>) {
        for list in self.nominated.values_mut() {
            list.retain(|p| p.uid != pod.uid);
        }
        self.nominated.retain(|_, l| !l.is_empty());
        if let Some(n) = node {
            self.nominated.entry(n.to_string()).or_default().push(pod.clone());
        }
    }

    /// Pods nominated to `node` that `pod` must leave room for (equal or higher priority, not itself).
    pub fn nominated_for(&self, node: &str, pod: &PodInfo) -> Vec<Arc<PodInfo>> {
        self.nominated
            .get(node)
            .map(|l| l.iter().filter(|p| p.uid != pod.uid && p.priority >= pod.priority).cloned().collect())
            .unwrap_or_default()
    }

    /// Every pod nominated to `node`.
    pub fn nominated_on(&self, node: &str) -> Vec<Arc<PodInfo>> {
        self.nominated.get(node).cloned().unwrap_or_default()
    }

    /// The uids of every pod in the cache.
    pub fn pod_uids(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    pub fn has_nominations(&self) -> bool {
        !self.nominated.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn assumed_pods_count_until_forgotten_and_confirm_on_watch() {
        let mut c = Cache::new();
        assert_eq!(c.add_or_update_node(Arc::new(NodeBuilder::new("n1").cpu("4").build())), NodeChange::Added);
        let p = Arc::new(PodInfo::new(Arc::new(PodBuilder::new("p").container("1", "1Gi").build())));
        c.assume_pod(p.clone(), "n1");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        assert!(c.is_assumed(&p.uid));
        c.forget_pod(&p.uid);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);

        c.assume_pod(p.clone(), "n1");
        let bound = Arc::new(PodInfo::new(Arc::new(PodBuilder::new("p").container("1", "1Gi").node("n1").build())));
        c.add_or_update_pod(bound.clone());
        assert!(!c.is_assumed(&p.uid));
        assert_eq!(c.node("n1").unwrap().pods.len(), 1);
        c.forget_pod(&p.uid);
        assert_eq!(c.node("n1").unwrap().pods.len(), 1, "a confirmed pod is not forgotten");
        assert_eq!(c.remove_pod(&p.uid).as_deref(), Some("n1"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);
    }

    #[test]
    fn pods_on_unknown_nodes_are_kept_and_join_the_node() {
        let mut c = Cache::new();
        let bound = Arc::new(PodInfo::new(Arc::new(PodBuilder::new("p").container("1", "").node("n2").build())));
        c.add_or_update_pod(bound);
        assert!(c.node("n2").is_none());
        c.add_or_update_node(Arc::new(NodeBuilder::new("n2").build()));
        assert_eq!(c.node("n2").unwrap().requested.milli_cpu, 1000);
        c.add_or_update_node(Arc::new(NodeBuilder::new("n1").build()));
        c.remove_node("n2");
        assert_eq!(c.nodes().len(), 1);
        assert_eq!(c.node("n1").unwrap().name, "n1");
        c.add_or_update_node(Arc::new(NodeBuilder::new("n2").build()));
        assert_eq!(c.node("n2").unwrap().pods.len(), 1);
    }

    #[test]
    fn node_updates_report_relevant_changes() {
        let mut c = Cache::new();
        c.add_or_update_node(Arc::new(NodeBuilder::new("n1").cpu("2").build()));
        assert_eq!(c.add_or_update_node(Arc::new(NodeBuilder::new("n1").cpu("2").build())), NodeChange::Unchanged);
        assert_eq!(c.add_or_update_node(Arc::new(NodeBuilder::new("n1").cpu("4").build())), NodeChange::Changed);
        assert_eq!(c.node("n1").unwrap().allocatable.milli_cpu, 4000);
    }
}
