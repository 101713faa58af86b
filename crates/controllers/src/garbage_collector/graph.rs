//! The garbage collector's picture of who owns what (upstream's `graph_builder`): one node per watched
//! object, its owner references, and the reverse index from an owner's uid to its dependents. Changes
//! return the work they make necessary.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// One watched object.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index into the garbage collector's resource table.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn from_meta(resource: usize, meta: &ObjectMeta) -> Option<Node> {
        Some(Node {
            resource,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted and waiting for its dependents to go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FINALIZER_FOREGROUND)
    }

    /// Being deleted and waiting for its dependents to be orphaned.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(FINALIZER_ORPHAN)
    }
}

/// What the workers must look at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// A dependent whose owners may be gone or deleting in the foreground.
    AttemptToDelete(String),
    /// An owner being deleted with the `orphan` or `foregroundDeletion` finalizer.
    ProcessOwner(String),
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes that name `owner_uid` in their owner references.
    pub fn dependents_of(&self, owner_uid: &str) -> Vec<&Node> {
        self.dependents.get(owner_uid).into_iter().flatten().filter_map(|u| self.nodes.get(u)).collect()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Adds or updates a node.
    pub fn upsert(&mut self, node: Node) -> Vec<Work> {
        let uid = node.uid.clone();
        let old = self.nodes.remove(&uid);
        let mut work = Vec::new();
        if let Some(old) = &old {
            for r in &old.owners {
                if let Some(set) = self.dependents.get_mut(&r.uid) {
                    set.remove(&uid);
                    if set.is_empty() {
                        self.dependents.remove(&r.uid);
                    }
                }
            }
        }
        for r in &node.owners {
            self.dependents.entry(r.uid.clone()).or_default().insert(uid.clone());
        }
        // Owners missing from the graph may be gone; owners deleting their dependents want this one gone.
        if node.owners.iter().any(|r| self.nodes.get(&r.uid).is_none_or(Node::deleting_dependents)) {
            work.push(Work::AttemptToDelete(uid.clone()));
        }
        // Owners (old and new) that wait on their dependents look again.
        let owner_uids: HashSet<&str> =
            old.iter().flat_map(|o| o.owners.iter()).chain(node.owners.iter()).map(|r| r.uid.as_str()).collect();
        for o in owner_uids {
            if self.nodes.get(o).is_some_and(|n| n.deleting_dependents() || n.orphaning()) {
                work.push(Work::ProcessOwner(o.to_string()));
            }
        }
        if node.deleting_dependents() || node.orphaning() {
            work.push(Work::ProcessOwner(uid.clone()));
            if node.deleting_dependents() {
                let deps: Vec<String> = self.dependents.get(&uid).into_iter().flatten().cloned().collect();
                work.extend(deps.into_iter().map(Work::AttemptToDelete));
            }
        }
        self.nodes.insert(uid, node);
        work
    }

    /// Removes a node that was deleted.
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(old) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work = Vec::new();
        for r in &old.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
            if self.nodes.get(&r.uid).is_some_and(|n| n.deleting_dependents() || n.orphaning()) {
                work.push(Work::ProcessOwner(r.uid.clone()));
            }
        }
        // Its dependents have lost an owner.
        work.extend(self.dependents.get(uid).into_iter().flatten().cloned().map(Work::AttemptToDelete));
        work
    }

    /// The work a fully loaded graph needs at start: dependents of owners that are not in the graph,
    /// and owners waiting on the garbage collector.
    pub fn initial_work(&self) -> Vec<Work> {
        let mut work = Vec::new();
        for n in self.nodes.values() {
            if n.owners.iter().any(|r| self.nodes.get(&r.uid).is_none_or(Node::deleting_dependents)) {
                work.push(Work::AttemptToDelete(n.uid.clone()));
            }
            if n.deleting_dependents() || n.orphaning() {
                work.push(Work::ProcessOwner(n.uid.clone()));
            }
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[&str]) -> Node {
        Node {
            resource: 0,
            namespace: Some("default".into()),
            name: uid.into(),
            uid: uid.into(),
            owners: owners
                .iter()
                .map(|o| OwnerReference { uid: o.to_string(), name: o.to_string(), kind: "ReplicaSet".into(), api_version: "apps/v1".into(), ..Default::default() })
                .collect(),
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn dependents_are_indexed_and_removal_schedules_them() {
        let mut g = Graph::default();
        assert_eq!(g.upsert(node("rs", &[])), vec![]);
        assert_eq!(g.upsert(node("p1", &["rs"])), vec![]);
        // An owner not (yet) in the graph may be gone.
        assert_eq!(g.upsert(node("p2", &["ghost"])), vec![Work::AttemptToDelete("p2".into())]);
        assert_eq!(g.dependents_of("rs").len(), 1);
        assert_eq!(g.remove("rs"), vec![Work::AttemptToDelete("p1".into())]);
        let initial: HashSet<Work> = g.initial_work().into_iter().collect();
        assert_eq!(initial, HashSet::from([Work::AttemptToDelete("p1".into()), Work::AttemptToDelete("p2".into())]));
    }

    #[test]
    fn foreground_owner_schedules_itself_and_its_dependents() {
        let mut g = Graph::default();
        g.upsert(node("rs", &[]));
        g.upsert(node("p1", &["rs"]));
        let mut deleting = node("rs", &[]);
        deleting.deleting = true;
        deleting.finalizers = vec![FINALIZER_FOREGROUND.into()];
        let work = g.upsert(deleting);
        assert!(work.contains(&Work::ProcessOwner("rs".into())));
        assert!(work.contains(&Work::AttemptToDelete("p1".into())));
        // The dependent going away makes the owner look again.
        assert_eq!(g.remove("p1"), vec![Work::ProcessOwner("rs".into())]);
        assert!(g.dependents_of("rs").is_empty());
    }

    #[test]
    fn releasing_a_reference_wakes_an_orphaning_owner() {
        let mut g = Graph::default();
        let mut owner = node("d", &[]);
        owner.deleting = true;
        owner.finalizers = vec![FINALIZER_ORPHAN.into()];
        g.upsert(owner);
        g.upsert(node("rs", &["d"]));
        let work = g.upsert(node("rs", &[]));
        assert_eq!(work, vec![Work::ProcessOwner("d".into())]);
        assert!(g.dependents_of("d").is_empty());
    }
}
