//! DefaultPreemption, the post-filter: when a pod fits nowhere, find nodes where evicting lower-priority
//! pods makes room, keep as many of them as possible (reprieve, PodDisruptionBudget-protected pods first),
//! and pick the node with the fewest PDB violations, then the lowest and fewest victims.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rand::Rng;

use crate::cache::Cache;
use crate::framework::{CycleState, Framework, Status};
use crate::pod_info::PodInfo;
use crate::schedule_one::{Diagnosis, FitError, preemption_may_help};
use crate::selector::Selector;

pub const ERR_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const ERR_NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A PodDisruptionBudget as preemption reads it.
#[derive(Clone, Debug)]
pub struct Pdb {
    pub namespace: String,
    pub selector: Selector,
    pub disruptions_allowed: i32,
    /// Pods already being disrupted (`status.disruptedPods`), which do not count again.
    pub disrupted: Vec<String>,
}

impl Pdb {
    pub fn from_api(p: &PodDisruptionBudget) -> Self {
        let sel = p.spec.as_ref().and_then(|s| s.selector.as_ref());
        // An empty selector matches nothing for PDBs in policy/v1 preemption (upstream skips it).
        let selector = match sel {
            Some(s) if s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty()) => Selector::from_label_selector(Some(s)),
            _ => Selector::nothing(),
        };
        let status = p.status.as_ref();
        Pdb {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            selector,
            disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted: status.and_then(|s| s.disrupted_pods.as_ref()).map(|m| m.keys().cloned().collect()).unwrap_or_default(),
        }
    }
}

/// Where preemption would make room and whom it evicts.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// Upstream's `MoreImportantPod`: higher priority, then earlier start.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority.cmp(&a.priority).then_with(|| a.creation_time().cmp(&b.creation_time()))
}

/// Splits pods into those whose eviction would violate a PDB and the rest, in the given order.
fn split_by_pdb(pods: Vec<Arc<PodInfo>>, pdbs: &[Pdb]) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    let (mut violating, mut ok) = (Vec::new(), Vec::new());
    for p in pods {
        let mut violates = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            if pdb.namespace != p.namespace || !pdb.selector.matches(&p.labels) || pdb.disrupted.contains(&p.name) {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates { violating.push(p) } else { ok.push(p) }
    }
    (violating, ok)
}

/// Upstream's `SelectVictimsOnNode`.
fn select_victims_on_node(
    fw: &Framework,
    cache: &Cache,
    state: &CycleState,
    pod: &PodInfo,
    node_name: &str,
    pdbs: &[Pdb],
) -> Result<Candidate, Status> {
    let node = cache.node(node_name).ok_or_else(|| Status::unresolvable("DefaultPreemption", ERR_NOT_HELPFUL))?;
    let mut ni = node.clone();
    let mut st = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if potential.is_empty() {
        return Err(Status::unresolvable("DefaultPreemption", ERR_NO_VICTIMS));
    }
    for v in &potential {
        ni.remove_pod(&v.uid);
        fw.remove_pod(&mut st, pod, v, &ni, cache);
    }
    fw.run_filter_with_nominated(&st, pod, &ni, cache)?;
    potential.sort_by(|a, b| more_important(a, b));
    let (violating, non_violating) = split_by_pdb(potential, pdbs);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, violates) in [(violating, true), (non_violating, false)] {
        for p in group {
            ni.add_pod(p.clone());
            fw.add_pod(&mut st, pod, &p, &ni, cache);
            if fw.run_filter_with_nominated(&st, pod, &ni, cache).is_err() {
                ni.remove_pod(&p.uid);
                fw.remove_pod(&mut st, pod, &p, &ni, cache);
                if violates {
                    pdb_violations += 1;
                }
                victims.push(p);
            }
        }
    }
    victims.sort_by(|a, b| more_important(a, b));
    Ok(Candidate { node: node_name.to_string(), victims, pdb_violations })
}

/// Upstream's `pickOneNodeForPreemption`.
pub fn pick_one(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.iter().min_by(|a, b| {
        let highest = |c: &Candidate| c.victims.first().map_or(i32::MIN, |v| v.priority);
        let sum = |c: &Candidate| c.victims.iter().map(|v| v.priority as i64 + i32::MAX as i64 + 1).sum::<i64>();
        // Prefer the node whose most important victim started last.
        let start = |c: &Candidate| c.victims.first().and_then(|v| v.creation_time());
        a.pdb_violations
            .cmp(&b.pdb_violations)
            .then_with(|| highest(a).cmp(&highest(b)))
            .then_with(|| sum(a).cmp(&sum(b)))
            .then_with(|| a.victims.len().cmp(&b.victims.len()))
            .then_with(|| start(b).cmp(&start(a)))
    })
}

/// Runs preemption for `pod`, which failed with `diagnosis`. `Err` carries the post-filter message.
pub fn preempt(
    fw: &Framework,
    cache: &Cache,
    state: &CycleState,
    pod: &PodInfo,
    diagnosis: &Diagnosis,
    pdbs: &[Pdb],
    rng: &mut impl Rng,
) -> Result<Candidate, String> {
    if pod.preempt_never() {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".to_string());
    }
    if let Some(nominated) = pod.nominated_node_name()
        && let Some(n) = cache.node(nominated)
        && n.pods.iter().any(|p| p.terminating && p.priority < pod.priority)
    {
        return Err("preemption: not eligible due to a terminating pod on the nominated node.".to_string());
    }
    let nodes = cache.nodes();
    let mut statuses: HashMap<String, Status> = HashMap::new();
    let mut potential: Vec<&str> = Vec::new();
    for n in nodes {
        match diagnosis.node_to_status.get(&n.name) {
            Some(s) if !preemption_may_help(s) => {
                statuses.insert(n.name.clone(), Status::unresolvable("DefaultPreemption", ERR_NOT_HELPFUL));
            }
            _ => potential.push(&n.name),
        }
    }
    // Upstream dry-runs at least 100 nodes or 10% of them, from a random offset.
    let limit = (potential.len() / 10).max(100).min(potential.len());
    let offset = if potential.is_empty() { 0 } else { rng.random_range(0..potential.len()) };
    let mut candidates = Vec::new();
    for i in 0..potential.len() {
        let name = potential[(offset + i) % potential.len()];
        match select_victims_on_node(fw, cache, state, pod, name, pdbs) {
            Ok(c) if !c.victims.is_empty() => {
                candidates.push(c);
                if candidates.len() >= limit {
                    break;
                }
            }
            Ok(_) => {
                statuses.insert(name.to_string(), Status::unresolvable("DefaultPreemption", ERR_NO_VICTIMS));
            }
            Err(s) => {
                statuses.insert(name.to_string(), s);
            }
        }
    }
    match pick_one(&candidates) {
        Some(c) => Ok(c.clone()),
        None => {
            let fe = FitError {
                num_all_nodes: statuses.len(),
                diagnosis: Diagnosis { node_to_status: statuses, ..Default::default() },
            };
            Err(format!("preemption: {}", fe.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerConfig;
    use crate::plugins::volume_binding::VolumeListers;
    use crate::schedule_one::Algorithm;
    use crate::testing::{NodeBuilder, PodBuilder, cache_with};
    use k8s_openapi::api::core::v1::Pod;

    fn framework() -> Framework {
        let claims = VolumeListers::empty();
        let c = SchedulerConfig::default();
        c.profiles[0].framework(0, &claims)
    }

    fn run(nodes: &[k8s_openapi::api::core::v1::Node], pods: &[Pod], pod: Pod, pdbs: &[Pdb]) -> Result<Candidate, String> {
        let cache = cache_with(nodes, pods);
        let fw = framework();
        let pi = PodInfo::new(Arc::new(pod));
        let err = Algorithm::default().schedule_pod(&fw, &cache, &pi, &mut rand::rng()).expect_err("the pod does not fit");
        let (fit, state) = *err;
        preempt(&fw, &cache, &state, &pi, &fit.diagnosis, pdbs, &mut rand::rng())
    }

    fn names(c: &Candidate) -> Vec<&str> {
        c.victims.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn picks_the_node_with_the_lowest_victims() {
        let nodes = [NodeBuilder::new("n1").cpu("2").build(), NodeBuilder::new("n2").cpu("2").build()];
        let pods = [
            PodBuilder::new("mid").container("2", "").priority(50).node("n1").build(),
            PodBuilder::new("low").container("2", "").priority(10).node("n2").build(),
        ];
        let c = run(&nodes, &pods, PodBuilder::new("p").container("2", "").priority(100).build(), &[]).unwrap();
        assert_eq!((c.node.as_str(), names(&c)), ("n2", vec!["low"]));
    }

    #[test]
    fn evicts_only_what_is_needed() {
        let nodes = [NodeBuilder::new("n1").cpu("4").build()];
        let pods = [
            PodBuilder::new("a").container("1", "").priority(1).node("n1").build(),
            PodBuilder::new("b").container("1", "").priority(2).node("n1").build(),
            PodBuilder::new("c").container("2", "").priority(3).node("n1").build(),
        ];
        let c = run(&nodes, &pods, PodBuilder::new("p").container("2", "").priority(100).build(), &[]).unwrap();
        // Reprieve keeps the most important pods: c (2 CPUs) stays, a and b go.
        assert_eq!(names(&c), vec!["b", "a"]);
    }

    #[test]
    fn prefers_nodes_without_pdb_violations() {
        let nodes = [NodeBuilder::new("n1").cpu("2").build(), NodeBuilder::new("n2").cpu("2").build()];
        let pods = [
            PodBuilder::new("guarded").label("app", "db").container("2", "").priority(1).node("n1").build(),
            PodBuilder::new("free").container("2", "").priority(5).node("n2").build(),
        ];
        let pdb = Pdb {
            namespace: "default".into(),
            selector: Selector::from_map(&[("app".to_string(), "db".to_string())].into()),
            disruptions_allowed: 0,
            disrupted: vec![],
        };
        let c = run(&nodes, &pods, PodBuilder::new("p").container("2", "").priority(100).build(), &[pdb]).unwrap();
        assert_eq!((c.node.as_str(), c.pdb_violations), ("n2", 0));
    }

    #[test]
    fn leaves_nodes_to_pods_already_nominated_there() {
        let nodes = [NodeBuilder::new("n1").cpu("2").build(), NodeBuilder::new("n2").cpu("2").build()];
        let pods = [
            PodBuilder::new("v1").container("2", "").priority(1).node("n1").build(),
            PodBuilder::new("v2").container("2", "").priority(5).node("n2").build(),
        ];
        let mut cache = cache_with(&nodes, &pods);
        // An earlier preemptor waits for n1, where the cheaper victim is.
        let first = PodBuilder::new("first").container("2", "").priority(100).info();
        cache.set_nominated(&first, Some("n1"));
        let fw = framework();
        let second = PodBuilder::new("second").container("2", "").priority(100).info();
        let (fit, state) = *Algorithm::default().schedule_pod(&fw, &cache, &second, &mut rand::rng()).unwrap_err();
        let c = preempt(&fw, &cache, &state, &second, &fit.diagnosis, &[], &mut rand::rng()).unwrap();
        assert_eq!((c.node.as_str(), names(&c)), ("n2", vec!["v2"]));
    }

    #[test]
    fn explains_when_preemption_cannot_help() {
        let nodes = [
            NodeBuilder::new("tainted").taint("k", "v", "NoSchedule").build(),
            NodeBuilder::new("small").cpu("1").build(),
            NodeBuilder::new("equal").cpu("2").build(),
        ];
        let pods = [PodBuilder::new("peer").container("2", "").priority(100).node("equal").build()];
        let err = run(&nodes, &pods, PodBuilder::new("p").container("2", "").priority(100).build(), &[]).unwrap_err();
        assert_eq!(
            err,
            "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        let never = run(&nodes, &pods, PodBuilder::new("p").container("2", "").priority(1000).preempt_never().build(), &[]);
        assert_eq!(never.unwrap_err(), "preemption: not eligible due to preemptionPolicy=Never.");
    }
}
