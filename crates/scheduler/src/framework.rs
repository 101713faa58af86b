//! The scheduling framework's extension points, as upstream's `framework.Plugin` interfaces: pre-filter,
//! filter (with add/remove pod for preemption's what-ifs), pre-score, score and normalize; the per-cycle
//! `CycleState`; and `Framework`, one profile's plugins in order with their score weights.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::cache::Cache;
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a plugin rejected a node (or the pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Could fit if something changed on the node (for instance pods preempted).
    Unschedulable,
    /// Preempting pods would not help.
    UnschedulableAndUnresolvable,
    /// An internal error.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: &'static str,
}

impl Status {
    pub fn unschedulable(plugin: &'static str, reason: impl Into<String>) -> Self {
        Status { code: Code::Unschedulable, reasons: vec![reason.into()], plugin }
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Self {
        Status { code: Code::UnschedulableAndUnresolvable, reasons: vec![reason.into()], plugin }
    }

    pub fn error(plugin: &'static str, reason: impl Into<String>) -> Self {
        Status { code: Code::Error, reasons: vec![reason.into()], plugin }
    }

    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// What a pre-filter decided.
#[derive(Debug, PartialEq, Eq)]
pub enum PreFilterResult {
    /// Run this plugin's filter on every node.
    Continue,
    /// The plugin has nothing to check for this pod: skip its filter.
    Skip,
    /// Only these nodes can fit (and run the filter on them).
    Nodes(HashSet<String>),
}

/// Plugin state computed once per cycle, clonable for preemption's what-ifs.
pub trait StateData: Any + Send + Sync {
    fn clone_data(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// State of one scheduling cycle, by plugin name.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn StateData>>,
    /// Bit i set: the framework's i-th filter plugin skips this pod (its pre-filter said so).
    pub skip_filter: u64,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self.data.iter().map(|(k, v)| (*k, (**v).clone_data())).collect(),
            skip_filter: self.skip_filter,
        }
    }
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState").field("keys", &self.data.keys().collect::<Vec<_>>()).finish()
    }
}

impl CycleState {
    pub fn write<T: StateData>(&mut self, key: &'static str, v: T) {
        self.data.insert(key, Box::new(v));
    }

    pub fn read<T: 'static>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|b| (**b).as_any().downcast_ref())
    }

    pub fn read_mut<T: 'static>(&mut self, key: &'static str) -> Option<&mut T> {
        self.data.get_mut(key).and_then(|b| (**b).as_any_mut().downcast_mut())
    }
}

/// A scheduling plugin. Every method has a neutral default; `filters`/`scores` say which extension points
/// the plugin implements.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    fn filters(&self) -> bool {
        false
    }

    fn scores(&self) -> bool {
        false
    }

    fn pre_filter(&self, _state: &mut CycleState, _pod: &PodInfo, _cache: &Cache) -> Result<PreFilterResult, Status> {
        Ok(PreFilterResult::Continue)
    }

    fn filter(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> Result<(), Status> {
        Ok(())
    }

    /// Updates pre-filter state as if `other` ran on `node` (nominated pods).
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _other: &PodInfo, _node: &NodeInfo, _cache: &Cache) {}

    /// Updates pre-filter state as if `other` left `node` (preemption victims).
    fn remove_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _other: &PodInfo, _node: &NodeInfo, _cache: &Cache) {}

    /// Returns false to skip scoring with this plugin for this pod.
    fn pre_score(&self, _state: &mut CycleState, _pod: &PodInfo, _cache: &Cache, _nodes: &[&NodeInfo]) -> bool {
        true
    }

    fn score(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo, _cache: &Cache) -> i64 {
        0
    }

    /// Brings the scores of all feasible nodes (in `nodes` order) into 0..=100.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}
}

/// Scales scores to 0..=100 by the largest one; `reverse` makes the largest the worst.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// One profile's plugins.
pub struct Framework {
    pub scheduler_name: String,
    /// Filter plugins, in order.
    pub filter_plugins: Vec<Arc<dyn Plugin>>,
    /// Score plugins and their weights.
    pub score_plugins: Vec<(Arc<dyn Plugin>, i64)>,
    /// Whether DefaultPreemption runs as the post-filter.
    pub preemption: bool,
    /// `percentageOfNodesToScore` (0: adaptive, as upstream).
    pub percentage_of_nodes_to_score: u32,
}

impl Framework {
    /// Runs every pre-filter; an error status means the pod fits nowhere.
    pub fn run_pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Result<Option<HashSet<String>>, Status> {
        let mut nodes: Option<HashSet<String>> = None;
        for (i, p) in self.filter_plugins.iter().enumerate() {
            match p.pre_filter(state, pod, cache)? {
                PreFilterResult::Continue => {}
                PreFilterResult::Skip => {
                    if i < 64 {
                        state.skip_filter |= 1 << i;
                    }
                }
                PreFilterResult::Nodes(set) => {
                    nodes = Some(match nodes {
                        None => set,
                        Some(prev) => prev.intersection(&set).cloned().collect(),
                    });
                    if nodes.as_ref().is_some_and(|n| n.is_empty()) {
                        return Err(Status::unresolvable(p.name(), "node(s) didn't satisfy plugin(s) [".to_string() + p.name() + "]"));
                    }
                }
            }
        }
        Ok(nodes)
    }

    /// Runs the filters on one node; the first rejection is returned.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        for (i, p) in self.filter_plugins.iter().enumerate() {
            if i < 64 && state.skip_filter & (1 << i) != 0 {
                continue;
            }
            p.filter(state, pod, node)?;
        }
        Ok(())
    }

    /// Runs the filters with the pods nominated to the node that `pod` must leave room for.
    pub fn run_filter_with_nominated(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, cache: &Cache) -> Result<(), Status> {
        if cache.has_nominations() {
            let nominated = cache.nominated_for(&node.name, pod);
            if !nominated.is_empty() {
                let mut st = state.clone();
                let mut ni = node.clone();
                for n in nominated {
                    ni.add_pod(n.clone());
                    for p in &self.filter_plugins {
                        p.add_pod(&mut st, pod, &n, &ni, cache);
                    }
                }
                return self.run_filter(&st, pod, &ni);
            }
        }
        self.run_filter(state, pod, node)
    }

    pub fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, cache: &Cache) {
        for p in &self.filter_plugins {
            p.add_pod(state, pod, other, node, cache);
        }
    }

    pub fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, cache: &Cache) {
        for p in &self.filter_plugins {
            p.remove_pod(state, pod, other, node, cache);
        }
    }

    /// Scores the feasible nodes: each plugin's scores are normalized, weighted and summed.
    pub fn run_score(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for (p, weight) in &self.score_plugins {
            if !p.pre_score(state, pod, cache, nodes) {
                continue;
            }
            for (i, n) in nodes.iter().enumerate() {
                scores[i] = p.score(state, pod, n, cache);
            }
            p.normalize(state, pod, &mut scores);
            for (t, s) in total.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        total
    }
}
