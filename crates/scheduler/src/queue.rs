//! The scheduling queue, as upstream's `PriorityQueue`: an active heap ordered by priority then arrival,
//! a back-off set (initial back-off doubling per attempt up to the maximum) and an unschedulable set whose
//! pods return when a cluster event could make them fit, or after `pod_max_in_unschedulable` at the latest.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::pod_info::PodInfo;

/// A cluster change that may make unschedulable pods fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeChange,
    AssignedPodAdd,
    AssignedPodDelete,
    PvcChange,
    /// Periodic flush of pods that waited too long.
    ForceFlush,
}

/// A plugin name used when no node exists at all.
pub const NO_NODES: &str = "NoNodes";

impl ClusterEvent {
    /// Whether the event could help a pod rejected by these plugins (upstream's queueing hints, coarsely).
    pub fn may_help(self, plugins: &HashSet<&'static str>) -> bool {
        if plugins.is_empty() {
            return true;
        }
        let any = |names: &[&str]| plugins.iter().any(|p| names.contains(p));
        match self {
            ClusterEvent::NodeAdd | ClusterEvent::NodeChange | ClusterEvent::ForceFlush => true,
            ClusterEvent::AssignedPodDelete => any(&["NodeResourcesFit", "NodePorts", "InterPodAffinity", "PodTopologySpread"]),
            ClusterEvent::AssignedPodAdd => any(&["InterPodAffinity", "PodTopologySpread"]),
            ClusterEvent::PvcChange => any(&["VolumeBinding"]),
        }
    }
}

/// A pod waiting to be scheduled.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When it was first popped, for latency metrics.
    pub first_attempt: Option<Instant>,
    /// Plugins that rejected it last time.
    pub unschedulable_plugins: HashSet<&'static str>,
    last_failure: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Popped and being scheduled or bound.
    InFlight,
}

struct Entry {
    pod: QueuedPod,
    place: Where,
    /// Bumped whenever the pod moves, so stale heap entries are skipped.
    generation: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    seq: u64,
    generation: u64,
    uid: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority.cmp(&o.priority).then_with(|| o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// Uids of the pods in the unschedulable set, so events do not walk the whole queue.
    unschedulable: HashSet<String>,
    seq: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_in_unschedulable: Duration,
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration, max_in_unschedulable: Duration) -> Self {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: HashSet::new(),
            seq: 0,
            initial_backoff,
            max_backoff,
            max_in_unschedulable,
        }
    }

    fn push_active(&mut self, uid: &str) {
        let Some(e) = self.entries.get_mut(uid) else { return };
        self.unschedulable.remove(uid);
        e.generation += 1;
        e.place = Where::Active;
        self.seq += 1;
        self.active.push(ActiveKey { priority: e.pod.info.priority, seq: self.seq, generation: e.generation, uid: uid.to_string() });
    }

    fn push_backoff(&mut self, uid: &str, until: Instant) {
        let Some(e) = self.entries.get_mut(uid) else { return };
        self.unschedulable.remove(uid);
        e.generation += 1;
        e.place = Where::Backoff(until);
        self.backoff.push(Reverse((until, e.generation, uid.to_string())));
    }

    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    fn backoff_until(&self, p: &QueuedPod) -> Option<Instant> {
        p.last_failure.map(|t| t + self.backoff_duration(p.attempts))
    }

    /// A pending pod was seen: new pods go to the active queue; a known pod gets the new object, and an
    /// unschedulable one is retried (its spec may have changed).
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let uid = info.uid.clone();
        match self.entries.get_mut(&uid) {
            None => {
                let pod = QueuedPod { info, attempts: 0, first_attempt: None, unschedulable_plugins: HashSet::new(), last_failure: None };
                self.entries.insert(uid.clone(), Entry { pod, place: Where::Active, generation: 0 });
                self.push_active(&uid);
            }
            Some(e) => {
                let spec_changed = e.pod.info.pod.spec != info.pod.spec || e.pod.info.labels != info.labels;
                let priority_changed = e.pod.info.priority != info.priority;
                e.pod.info = info;
                match e.place {
                    Where::Unschedulable(_) if spec_changed => self.requeue(&uid, now),
                    Where::Active if priority_changed => self.push_active(&uid),
                    _ => {}
                }
            }
        }
    }

    /// Moves an unschedulable pod to back-off or active.
    fn requeue(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else { return };
        match self.backoff_until(&e.pod) {
            Some(until) if until > now => self.push_backoff(uid, until),
            _ => self.push_active(uid),
        }
    }

    pub fn delete(&mut self, uid: &str) {
        self.entries.remove(uid);
        self.unschedulable.remove(uid);
    }

    /// The uids of every pod the queue knows.
    pub fn uids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// The highest-priority active pod; it stays known (in flight) until `done` or a failure.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        while let Some(k) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&k.uid) else { continue };
            if e.generation != k.generation || e.place != Where::Active {
                continue;
            }
            e.place = Where::InFlight;
            e.pod.attempts += 1;
            e.pod.first_attempt.get_or_insert(now);
            return Some(e.pod.clone());
        }
        None
    }

    /// The pod was scheduled (and is being bound): forget it.
    pub fn done(&mut self, uid: &str) {
        self.delete(uid);
    }

    /// The pod fits nowhere: it waits for a cluster event that could help.
    pub fn add_unschedulable(&mut self, uid: &str, plugins: HashSet<&'static str>, now: Instant) {
        if let Some(e) = self.entries.get_mut(uid) {
            e.pod.unschedulable_plugins = plugins;
            e.pod.last_failure = Some(now);
            e.generation += 1;
            e.place = Where::Unschedulable(now);
            self.unschedulable.insert(uid.to_string());
        }
    }

    /// An error (or a failed binding): retry after the back-off. `info` replaces the pod if given.
    pub fn add_backoff(&mut self, pod: QueuedPod, now: Instant) {
        let uid = pod.info.uid.clone();
        let mut pod = pod;
        pod.last_failure = Some(now);
        let until = now + self.backoff_duration(pod.attempts.max(1));
        match self.entries.get_mut(&uid) {
            Some(e) => {
                e.pod.last_failure = Some(now);
                e.pod.attempts = e.pod.attempts.max(pod.attempts);
            }
            None => {
                self.entries.insert(uid.clone(), Entry { pod, place: Where::InFlight, generation: 0 });
            }
        }
        self.push_backoff(&uid, until);
    }

    /// Moves the unschedulable pods this event could help to back-off or active.
    pub fn move_all(&mut self, event: ClusterEvent, now: Instant) -> usize {
        if self.unschedulable.is_empty() {
            return 0;
        }
        let entries = &self.entries;
        let uids: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| entries.get(*u).is_some_and(|e| event.may_help(&e.pod.unschedulable_plugins)))
            .cloned()
            .collect();
        for u in &uids {
            self.requeue(u, now);
        }
        uids.len()
    }

    /// Back-off that has expired goes to active; unschedulable pods older than the limit are retried.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, generation, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self.entries.get(&uid).is_some_and(|e| e.generation == generation && matches!(e.place, Where::Backoff(_))) {
                self.push_active(&uid);
            }
        }
        let limit = self.max_in_unschedulable;
        let entries = &self.entries;
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| {
                entries.get(*u).is_some_and(|e| matches!(e.place, Where::Unschedulable(since) if now.duration_since(since) >= limit))
            })
            .cloned()
            .collect();
        for u in stale {
            self.requeue(&u, now);
        }
    }

    /// When the next back-off ends.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Pods in each set: (active, backoff, unschedulable).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in self.entries.values() {
            match e.place {
                Where::Active => c.0 += 1,
                Where::Backoff(_) => c.1 += 1,
                Where::Unschedulable(_) => c.2 += 1,
                Where::InFlight => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10), Duration::from_secs(300))
    }

    #[test]
    fn pops_by_priority_then_arrival() {
        let mut q = queue();
        let now = Instant::now();
        q.add_or_update(PodBuilder::new("low").priority(1).info(), now);
        q.add_or_update(PodBuilder::new("high").priority(100).info(), now);
        q.add_or_update(PodBuilder::new("low2").priority(1).info(), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now)).map(|p| p.info.name.clone()).collect();
        assert_eq!(order, ["high", "low", "low2"]);
    }

    #[test]
    fn backoff_doubles_to_the_maximum() {
        let q = queue();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_return_on_events_that_may_help() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add_or_update(PodBuilder::new("p").info(), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.info.uid, HashSet::from(["NodeResourcesFit"]), t0);
        assert!(q.pop(t0).is_none());
        assert_eq!(q.move_all(ClusterEvent::AssignedPodAdd, t0), 0);
        // Within its back-off the pod waits in back-off, then becomes active.
        assert_eq!(q.move_all(ClusterEvent::AssignedPodDelete, t0), 1);
        assert_eq!(q.counts(), (0, 1, 0));
        q.flush(t0 + Duration::from_millis(500));
        assert!(q.pop(t0 + Duration::from_millis(500)).is_none());
        q.flush(t0 + Duration::from_secs(1));
        let again = q.pop(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(again.attempts, 2);
        // After the back-off, a node event makes it active at once.
        q.add_unschedulable(&again.info.uid, HashSet::from(["TaintToleration"]), t0);
        assert_eq!(q.move_all(ClusterEvent::NodeAdd, t0 + Duration::from_secs(5)), 1);
        assert_eq!(q.counts(), (1, 0, 0));
    }

    #[test]
    fn unschedulable_pods_are_flushed_after_the_limit() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add_or_update(PodBuilder::new("p").info(), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.info.uid, HashSet::from(["NodeAffinity"]), t0);
        q.flush(t0 + Duration::from_secs(299));
        assert_eq!(q.counts(), (0, 0, 1));
        q.flush(t0 + Duration::from_secs(300));
        assert_eq!(q.counts(), (1, 0, 0));
    }

    #[test]
    fn updates_retry_unschedulable_pods_and_deletes_forget() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add_or_update(PodBuilder::new("p").info(), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.info.uid, HashSet::from(["TaintToleration"]), t0);
        q.add_or_update(PodBuilder::new("p").info(), t0 + Duration::from_secs(2));
        assert_eq!(q.counts(), (0, 0, 1), "an unchanged pod stays");
        q.add_or_update(PodBuilder::new("p").toleration("", "Exists", "", "").info(), t0 + Duration::from_secs(2));
        assert_eq!(q.counts(), (1, 0, 0));
        q.delete(&p.info.uid);
        assert!(q.pop(t0).is_none());
    }
}
