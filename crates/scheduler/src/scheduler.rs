//! The scheduling loop: watches pods, nodes, namespaces, claims and PodDisruptionBudgets into the cache
//! and the queue, schedules one pod at a time (filter, score, preemption), assumes it on its node and binds
//! it through `pods/binding` in the background; failures get the PodScheduled condition and an event.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, NodeChange};
use crate::config::SchedulerConfig;
use crate::events::{EventRecorder, TYPE_NORMAL, TYPE_WARNING};
use crate::framework::Framework;
use crate::plugins::volume_binding::{self, VolumeListers};
use crate::pod_info::PodInfo;
use crate::preemption::{Pdb, preempt};
use crate::queue::{ClusterEvent, QueuedPod, SchedulingQueue};
use crate::schedule_one::Algorithm;

// Each input is moved once from the stream to its handler; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Input {
    Pod(watcher::Event<Pod>),
    Node(watcher::Event<Node>),
    Namespace(watcher::Event<Namespace>),
    Pvc,
    Other,
    Error(String),
}

/// What a background binding reported.
enum BindOutcome {
    Bound { uid: String },
    /// The pod is gone or already bound elsewhere: nothing to retry.
    Dropped { uid: String },
    Failed { pod: QueuedPod },
}

/// Statistics a benchmark or test can read.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub scheduled: u64,
    pub unschedulable: u64,
    pub preemptions: u64,
    pub bind_failures: u64,
    /// Scheduling cycles run and the time spent in them (filter, score, preemption; not binding).
    pub cycles: u64,
    pub cycle_time: Duration,
}

struct Loop {
    client: Client,
    frameworks: HashMap<String, Framework>,
    cache: Cache,
    queue: SchedulingQueue,
    algorithm: Algorithm,
    rng: StdRng,
    pdbs: Store<PodDisruptionBudget>,
    /// Claim, volume and class listers, for VolumeBinding's PreBind.
    volumes: VolumeListers,
    events: Arc<EventRecorder>,
    bind_tx: mpsc::UnboundedSender<BindOutcome>,
    /// Uids seen during a re-list (pods, nodes), to drop what disappeared.
    relist_pods: Option<HashSet<String>>,
    relist_nodes: Option<HashSet<String>>,
    pods_synced: bool,
    nodes_synced: bool,
    /// Last status written per pod (message, nominated node), to skip identical writes.
    reported: HashMap<String, (String, Option<String>)>,
    stats: Stats,
}

type BoxStream = Pin<Box<dyn Stream<Item = Input> + Send>>;

fn watch<K>(api: Api<K>, f: fn(watcher::Event<K>) -> Input) -> BoxStream
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |r| match r {
            Ok(ev) => f(ev),
            Err(e) => Input::Error(e.to_string()),
        })
        .boxed()
}

fn reflect<K>(api: Api<K>, input: fn() -> Input) -> (Store<K>, BoxStream)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff())
        .map(move |r| match r {
            Ok(_) => input(),
            Err(e) => Input::Error(e.to_string()),
        })
        .boxed();
    (reader, stream)
}

/// Runs the scheduling loop until `shutdown` (without leader election).
pub async fn run_scheduler(config: SchedulerConfig, client: Client, shutdown: CancellationToken, identity: String) {
    let (pvcs, pvc_stream) = reflect(Api::<PersistentVolumeClaim>::all(client.clone()), || Input::Pvc);
    let (pdbs, pdb_stream) = reflect(Api::<PodDisruptionBudget>::all(client.clone()), || Input::Other);
    // PersistentVolume and StorageClass changes may make a claim bindable: they move pods as claim changes do.
    let (pvs, pv_stream) = reflect(Api::<PersistentVolume>::all(client.clone()), || Input::Pvc);
    let (classes, class_stream) = reflect(Api::<StorageClass>::all(client.clone()), || Input::Pvc);
    let claims = VolumeListers { claims: pvcs, volumes: pvs, classes };
    let frameworks = config
        .profiles
        .iter()
        .map(|p| (p.scheduler_name.clone(), p.framework(config.percentage_of_nodes_to_score, &claims)))
        .collect();
    let streams = vec![
        watch(Api::<Pod>::all(client.clone()), Input::Pod),
        watch(Api::<Node>::all(client.clone()), Input::Node),
        watch(Api::<Namespace>::all(client.clone()), Input::Namespace),
        pvc_stream,
        pv_stream,
        class_stream,
        pdb_stream,
    ];
    let mut inputs = futures::stream::select_all(streams);
    let (bind_tx, mut bind_rx) = mpsc::unbounded_channel();
    let mut l = Loop {
        queue: SchedulingQueue::new(config.pod_initial_backoff, config.pod_max_backoff, config.pod_max_in_unschedulable),
        events: Arc::new(EventRecorder::new(client.clone(), identity)),
        client,
        frameworks,
        cache: Cache::new(),
        algorithm: Algorithm::default(),
        rng: StdRng::from_os_rng(),
        pdbs,
        volumes: claims,
        bind_tx,
        relist_pods: None,
        relist_nodes: None,
        pods_synced: false,
        nodes_synced: false,
        reported: HashMap::new(),
        stats: Stats::default(),
    };
    tracing::info!(profiles = ?l.frameworks.keys().collect::<Vec<_>>(), "scheduler started");
    let flush_period = Duration::from_secs(1);
    let mut next_flush = Instant::now() + flush_period;
    let mut cycles_since_yield = 0u32;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // Apply what the watches and bindings have delivered, without waiting.
        let mut applied = 0;
        while applied < 2048 {
            match inputs.next().now_or_never() {
                Some(Some(input)) => {
                    l.handle(input);
                    applied += 1;
                }
                _ => break,
            }
        }
        while let Ok(o) = bind_rx.try_recv() {
            l.bind_outcome(o);
        }
        let now = Instant::now();
        if now >= next_flush {
            l.queue.flush(now);
            next_flush = now + flush_period;
        } else if l.queue.next_backoff().is_some_and(|t| t <= now) {
            l.queue.flush(now);
        }
        if l.pods_synced && l.nodes_synced
            && let Some(p) = l.queue.pop(now)
        {
            let t = std::time::Instant::now();
            l.schedule_one(p);
            l.stats.cycles += 1;
            l.stats.cycle_time += t.elapsed();
            cycles_since_yield += 1;
            if cycles_since_yield >= 16 {
                cycles_since_yield = 0;
                tokio::task::yield_now().await;
            }
            continue;
        }
        let wake = l.queue.next_backoff().map_or(next_flush, |t| t.min(next_flush));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            input = inputs.next() => match input {
                Some(input) => l.handle(input),
                None => break,
            },
            Some(o) = bind_rx.recv() => l.bind_outcome(o),
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    tracing::info!(stats = ?l.stats, "scheduler stopped");
}

impl Loop {
    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Pod(ev) => match ev {
                watcher::Event::Init => self.relist_pods = Some(HashSet::new()),
                watcher::Event::InitApply(p) => {
                    if let Some(seen) = self.relist_pods.as_mut() {
                        seen.insert(p.metadata.uid.clone().unwrap_or_default());
                    }
                    self.pod_applied(p, now);
                }
                watcher::Event::InitDone => {
                    if let Some(seen) = self.relist_pods.take() {
                        for uid in self.cache.pod_uids() {
                            if !seen.contains(&uid) && !self.cache.is_assumed(&uid) {
                                self.cache.remove_pod(&uid);
                            }
                        }
                        for uid in self.queue.uids() {
                            if !seen.contains(&uid) {
                                self.queue.delete(&uid);
                            }
                        }
                        self.queue.move_all(ClusterEvent::AssignedPodDelete, now);
                    }
                    self.pods_synced = true;
                }
                watcher::Event::Apply(p) => self.pod_applied(p, now),
                watcher::Event::Delete(p) => self.pod_deleted(&p, now),
            },
            Input::Node(ev) => match ev {
                watcher::Event::Init => self.relist_nodes = Some(HashSet::new()),
                watcher::Event::InitApply(n) => {
                    if let Some(seen) = self.relist_nodes.as_mut() {
                        seen.insert(n.metadata.name.clone().unwrap_or_default());
                    }
                    self.node_applied(n, now);
                }
                watcher::Event::InitDone => {
                    if let Some(seen) = self.relist_nodes.take() {
                        let gone: Vec<String> =
                            self.cache.nodes().iter().filter(|n| !seen.contains(&n.name)).map(|n| n.name.clone()).collect();
                        for n in gone {
                            self.cache.remove_node(&n);
                        }
                    }
                    self.nodes_synced = true;
                }
                watcher::Event::Apply(n) => self.node_applied(n, now),
                watcher::Event::Delete(n) => self.cache.remove_node(n.metadata.name.as_deref().unwrap_or("")),
            },
            Input::Namespace(ev) => match ev {
                watcher::Event::Apply(ns) | watcher::Event::InitApply(ns) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    self.cache.set_namespace(&name, ns.metadata.labels.clone().unwrap_or_default());
                }
                watcher::Event::Delete(ns) => self.cache.remove_namespace(ns.metadata.name.as_deref().unwrap_or("")),
                _ => {}
            },
            Input::Pvc => {
                self.queue.move_all(ClusterEvent::PvcChange, now);
            }
            Input::Other => {}
            Input::Error(e) => tracing::warn!(error = %e, "scheduler watch failed; retrying"),
        }
    }

    fn node_applied(&mut self, node: Node, now: Instant) {
        match self.cache.add_or_update_node(Arc::new(node)) {
            NodeChange::Added => {
                self.queue.move_all(ClusterEvent::NodeAdd, now);
            }
            NodeChange::Changed => {
                self.queue.move_all(ClusterEvent::NodeChange, now);
            }
            NodeChange::Unchanged => {}
        }
    }

    fn pod_applied(&mut self, pod: Pod, now: Instant) {
        let info = Arc::new(PodInfo::new(Arc::new(pod)));
        if info.node_name().is_some() {
            self.queue.delete(&info.uid);
            self.reported.remove(&info.uid);
            if info.is_terminal() {
                if self.cache.remove_pod(&info.uid).is_some() {
                    self.queue.move_all(ClusterEvent::AssignedPodDelete, now);
                }
                return;
            }
            let known = self.cache.contains_pod(&info.uid) && !self.cache.is_assumed(&info.uid);
            let was_terminating = self.cache.pod(&info.uid).is_some_and(|p| p.terminating);
            self.cache.set_nominated(&info, None);
            self.cache.add_or_update_pod(info.clone());
            if !known {
                self.queue.move_all(ClusterEvent::AssignedPodAdd, now);
            } else if info.terminating && !was_terminating {
                // A terminating pod no longer counts for spreading or affinity.
                self.queue.move_all(ClusterEvent::AssignedPodDelete, now);
            }
            return;
        }
        if self.cache.is_assumed(&info.uid) {
            return;
        }
        if info.terminating || !self.frameworks.contains_key(info.scheduler_name()) {
            self.queue.delete(&info.uid);
            return;
        }
        let gated = info.pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty());
        if gated {
            self.queue.delete(&info.uid);
            return;
        }
        self.cache.set_nominated(&info, info.nominated_node_name());
        self.queue.add_or_update(info, now);
    }

    fn pod_deleted(&mut self, pod: &Pod, now: Instant) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.queue.delete(&uid);
        self.reported.remove(&uid);
        self.events.forget(&uid);
        let info = Arc::new(PodInfo::new(Arc::new(pod.clone())));
        self.cache.set_nominated(&info, None);
        if self.cache.remove_pod(&uid).is_some() {
            self.queue.move_all(ClusterEvent::AssignedPodDelete, now);
        }
    }

    fn bind_outcome(&mut self, o: BindOutcome) {
        match o {
            BindOutcome::Bound { uid } => {
                self.stats.scheduled += 1;
                self.reported.remove(&uid);
            }
            BindOutcome::Dropped { uid } => {
                self.cache.forget_pod(&uid);
                self.stats.bind_failures += 1;
            }
            BindOutcome::Failed { pod } => {
                self.cache.forget_pod(&pod.info.uid);
                self.stats.bind_failures += 1;
                self.queue.add_backoff(pod, Instant::now());
            }
        }
    }

    fn schedule_one(&mut self, qp: QueuedPod) {
        let info = qp.info.clone();
        let Some(fw) = self.frameworks.get(info.scheduler_name()) else {
            self.queue.done(&info.uid);
            return;
        };
        match self.algorithm.schedule_pod(fw, &self.cache, &info, &mut self.rng) {
            Ok(result) => {
                self.queue.done(&info.uid);
                self.cache.set_nominated(&info, None);
                self.cache.assume_pod(info.clone(), &result.node);
                let labels = self.cache.node(&result.node).map(|n| n.labels.clone()).unwrap_or_default();
                let volumes = (!volume_binding::pod_claims(&info).is_empty()).then(|| (self.volumes.clone(), labels));
                tokio::spawn(bind(
                    self.client.clone(),
                    self.events.clone(),
                    fw.scheduler_name.clone(),
                    qp,
                    result.node,
                    volumes,
                    self.bind_tx.clone(),
                ));
            }
            Err(err) => {
                let (mut fit, state) = *err;
                let mut nominated = None;
                if fw.preemption && fit.num_all_nodes > 0 {
                    let pdbs: Vec<Pdb> = self.pdbs.state().iter().map(|p| Pdb::from_api(p)).collect();
                    match preempt(fw, &self.cache, &state, &info, &fit.diagnosis, &pdbs, &mut self.rng) {
                        Ok(candidate) => {
                            self.stats.preemptions += 1;
                            nominated = Some(candidate.node.clone());
                            // Lower-priority pods nominated to the node lose their nomination.
                            let displaced: Vec<Arc<PodInfo>> = self
                                .cache
                                .nominated_on(&candidate.node)
                                .into_iter()
                                .filter(|p| p.priority < info.priority && p.uid != info.uid)
                                .collect();
                            for p in &displaced {
                                self.cache.set_nominated(p, None);
                            }
                            self.cache.set_nominated(&info, Some(&candidate.node));
                            tokio::spawn(evict_victims(
                                self.client.clone(),
                                self.events.clone(),
                                fw.scheduler_name.clone(),
                                info.clone(),
                                candidate,
                                displaced,
                            ));
                        }
                        Err(msg) => fit.diagnosis.post_filter_msg = Some(msg),
                    }
                }
                let message = fit.message();
                self.stats.unschedulable += 1;
                tracing::debug!(pod = %info.key(), %message, "unschedulable");
                let mut plugins = fit.diagnosis.unschedulable_plugins.clone();
                if nominated.is_some() {
                    plugins.insert("NodeResourcesFit");
                }
                self.queue.add_unschedulable(&info.uid, plugins, Instant::now());
                let report = (message.clone(), nominated.clone());
                if self.reported.get(&info.uid) != Some(&report) {
                    self.reported.insert(info.uid.clone(), report);
                    tokio::spawn(report_failure(
                        self.client.clone(),
                        self.events.clone(),
                        fw.scheduler_name.clone(),
                        info,
                        message,
                        nominated,
                    ));
                }
            }
        }
    }
}

async fn bind(
    client: Client,
    events: Arc<EventRecorder>,
    component: String,
    qp: QueuedPod,
    node: String,
    volumes: Option<(VolumeListers, std::collections::BTreeMap<String, String>)>,
    tx: mpsc::UnboundedSender<BindOutcome>,
) {
    let info = qp.info.clone();
    // PreBind: the pod's WaitForFirstConsumer claims are bound for this node before the pod is.
    if let Some((listers, labels)) = volumes
        && let Err(e) = volume_binding::prebind(&client, &listers, &info, &node, &labels, volume_binding::BIND_TIMEOUT).await
    {
        tracing::info!(pod = %info.key(), %node, error = %e, "volume binding failed; retrying after back-off");
        events.record(&info, &component, TYPE_WARNING, "FailedScheduling", "Scheduling", &e.to_string()).await;
        let _ = tx.send(BindOutcome::Failed { pod: qp });
        return;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &info.namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": info.name, "namespace": info.namespace, "uid": info.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let res: Result<serde_json::Value, kube::Error> =
        api.create_subresource("binding", &info.name, &PostParams::default(), &binding).await;
    match res {
        Ok(_) => {
            let _ = tx.send(BindOutcome::Bound { uid: info.uid.clone() });
            let msg = format!("Successfully assigned {}/{} to {}", info.namespace, info.name, node);
            events.record(&info, &component, TYPE_NORMAL, "Scheduled", "Binding", &msg).await;
            events.forget(&info.uid);
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            tracing::debug!(pod = %info.key(), %node, reason = %s.message, "binding dropped");
            let _ = tx.send(BindOutcome::Dropped { uid: info.uid.clone() });
        }
        Err(e) => {
            tracing::warn!(pod = %info.key(), %node, error = %e, "binding failed; retrying after back-off");
            let msg = format!("Binding rejected: {e}");
            events.record(&info, &component, TYPE_WARNING, "FailedScheduling", "Scheduling", &msg).await;
            let _ = tx.send(BindOutcome::Failed { pod: qp });
        }
    }
}

/// Sets PodScheduled=False (and the nominated node) through pods/status and records FailedScheduling.
async fn report_failure(
    client: Client,
    events: Arc<EventRecorder>,
    component: String,
    info: Arc<PodInfo>,
    message: String,
    nominated: Option<String>,
) {
    let api: Api<Pod> = Api::namespaced(client, &info.namespace);
    let current = info.pod.status.as_ref();
    let same_condition = current
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable") && c.message.as_deref() == Some(&message));
    let same_nomination = nominated.is_none() || current.and_then(|s| s.nominated_node_name.as_ref()) == nominated.as_ref();
    if !(same_condition && same_nomination) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut status = json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": now,
        }]});
        if let Some(n) = &nominated {
            status["nominatedNodeName"] = json!(n);
        }
        let patch = json!({"status": status});
        if let Err(e) = api.patch_status(&info.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            tracing::debug!(pod = %info.key(), error = %e, "failed to update the PodScheduled condition");
        }
    }
    events.record(&info, &component, TYPE_WARNING, "FailedScheduling", "Scheduling", &message).await;
}

/// Deletes the victims gracefully (with their own grace period) and clears displaced nominations.
async fn evict_victims(
    client: Client,
    events: Arc<EventRecorder>,
    component: String,
    preemptor: Arc<PodInfo>,
    candidate: crate::preemption::Candidate,
    displaced: Vec<Arc<PodInfo>>,
) {
    for v in &candidate.victims {
        let api: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(v.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&v.name, &dp).await {
            Ok(_) => {
                let msg = format!("Preempted by pod {} on node {}", preemptor.uid, candidate.node);
                events.record(v, &component, TYPE_NORMAL, "Preempted", "Preempting", &msg).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %v.key(), error = %e, "failed to delete a preemption victim"),
        }
    }
    for p in displaced {
        let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
        let patch = json!({"status": {"nominatedNodeName": null}});
        let _ = api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
}
