//! The garbage collector (upstream's `pkg/controller/garbagecollector`): watches the metadata of the
//! workload resources, deletes dependents whose owners are all gone (background), deletes the dependents
//! of owners deleted in the foreground before removing their `foregroundDeletion` finalizer (waiting for
//! dependents with `blockOwnerDeletion`), and strips the owner references of an owner deleted with the
//! `orphan` finalizer before removing that finalizer.

pub mod graph;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::watcher::{self, Event};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use graph::{FINALIZER_FOREGROUND, FINALIZER_ORPHAN, Graph, Node, Work};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// A resource the collector watches.
#[derive(Clone, Debug)]
pub struct GcResource {
    pub api: ApiResource,
    pub namespaced: bool,
}

impl GcResource {
    fn of<K: kube::Resource<DynamicType = ()>>(namespaced: bool) -> Self {
        GcResource { api: ApiResource::erase::<K>(&()), namespaced }
    }
}

/// The resources whose owner references the collector follows: the workloads and what they own.
pub fn default_resources() -> Vec<GcResource> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core, discovery::v1 as discovery};
    vec![
        GcResource::of::<core::Pod>(true),
        GcResource::of::<apps::ReplicaSet>(true),
        GcResource::of::<apps::Deployment>(true),
        GcResource::of::<apps::StatefulSet>(true),
        GcResource::of::<apps::DaemonSet>(true),
        GcResource::of::<apps::ControllerRevision>(true),
        GcResource::of::<batch::Job>(true),
        GcResource::of::<batch::CronJob>(true),
        GcResource::of::<core::ConfigMap>(true),
        GcResource::of::<core::Secret>(true),
        GcResource::of::<core::Service>(true),
        GcResource::of::<core::Endpoints>(true),
        GcResource::of::<discovery::EndpointSlice>(true),
        GcResource::of::<core::PersistentVolumeClaim>(true),
        GcResource::of::<core::ServiceAccount>(true),
        GcResource::of::<core::ReplicationController>(true),
    ]
}

/// Work waiting for the worker: a queue without duplicates.
#[derive(Default)]
struct Queue {
    items: Mutex<(VecDeque<Work>, HashSet<Work>)>,
    notify: Notify,
}

impl Queue {
    fn push_all(&self, work: impl IntoIterator<Item = Work>) {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        for w in work {
            if q.1.insert(w.clone()) {
                q.0.push_back(w);
                any = true;
            }
        }
        if any {
            self.notify.notify_one();
        }
    }

    fn pop(&self) -> Option<Work> {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let w = q.0.pop_front()?;
        q.1.remove(&w);
        Some(w)
    }
}

struct Collector {
    client: kube::Client,
    resources: Vec<GcResource>,
    graph: Mutex<Graph>,
    queue: Queue,
}

/// Runs the garbage collector over `default_resources()` until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, default_resources(), shutdown).await
}

/// Runs the garbage collector over the given resources.
pub async fn run_with(ctx: Context, resources: Vec<GcResource>, shutdown: CancellationToken) -> Result<(), Error> {
    let collector = Arc::new(Collector { client: ctx.client.clone(), resources, graph: Mutex::default(), queue: Queue::default() });
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let events = tokio::spawn(watch_all(collector.clone(), synced_tx, shutdown.clone()));
    let worker = tokio::spawn(work(collector.clone(), synced_rx, shutdown.clone()));
    let (a, b) = tokio::join!(events, worker);
    if let Err(e) = a.and(b) {
        tracing::error!(error = %e, "garbage collector task failed");
    }
    Ok(())
}

/// Feeds every resource's metadata watch into the graph; once every watch has listed, schedules the
/// initial work and opens the gate for the worker.
async fn watch_all(c: Arc<Collector>, synced: tokio::sync::watch::Sender<bool>, shutdown: CancellationToken) {
    let streams = c.resources.iter().enumerate().map(|(i, r)| {
        let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(c.client.clone(), &r.api);
        watcher::watcher(api, watcher::Config::default()).default_backoff().map(move |ev| (i, ev)).boxed()
    });
    let mut all = futures::stream::select_all(streams);
    let mut listed = vec![false; c.resources.len()];
    // The uids seen by a (re-)list in progress, per resource: nodes a re-list no longer shows were
    // deleted while the watch was down.
    let mut relisting: Vec<Option<HashSet<String>>> = vec![None; c.resources.len()];
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = all.next() => n,
        };
        let Some((i, ev)) = next else { return };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(resource = %c.resources[i].api.plural, error = %e, "garbage collector watch");
                continue;
            }
        };
        let work = {
            let mut g = c.graph.lock().unwrap_or_else(|e| e.into_inner());
            match &ev {
                Event::Apply(o) => Node::from_meta(i, &o.metadata).map(|n| g.upsert(n)).unwrap_or_default(),
                Event::InitApply(o) => {
                    if let (Some(seen), Some(uid)) = (relisting[i].as_mut(), o.metadata.uid.as_ref()) {
                        seen.insert(uid.clone());
                    }
                    Node::from_meta(i, &o.metadata).map(|n| g.upsert(n)).unwrap_or_default()
                }
                Event::Delete(o) => o.metadata.uid.as_deref().map(|u| g.remove(u)).unwrap_or_default(),
                Event::Init => {
                    relisting[i] = Some(HashSet::new());
                    Vec::new()
                }
                Event::InitDone => {
                    let mut work = Vec::new();
                    if let Some(seen) = relisting[i].take() {
                        let vanished: Vec<String> =
                            g.nodes().filter(|n| n.resource == i && !seen.contains(&n.uid)).map(|n| n.uid.clone()).collect();
                        for uid in vanished {
                            work.extend(g.remove(&uid));
                        }
                    }
                    let first = !listed.iter().all(|l| *l);
                    listed[i] = true;
                    if first && listed.iter().all(|l| *l) {
                        work.extend(g.initial_work());
                    }
                    work
                }
            }
        };
        c.queue.push_all(work);
        if !*synced.borrow() && listed.iter().all(|l| *l) {
            let _ = synced.send(true);
        }
    }
}

/// How many items are processed at once (upstream runs 20 attempt-to-delete workers): deletes wait for
/// the store's fsync, so one at a time would make a large cascade slow.
const WORKERS: usize = 20;

/// Processes work, `WORKERS` items at a time; a failed item is retried after a pause.
async fn work(c: Arc<Collector>, mut synced: tokio::sync::watch::Receiver<bool>, shutdown: CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => return,
        r = synced.wait_for(|s| *s) => if r.is_err() { return },
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(WORKERS));
    loop {
        let Some(item) = c.queue.pop() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = c.queue.notify.notified() => continue,
                _ = tokio::time::sleep(Duration::from_secs(30)) => continue,
            }
        };
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (c, token) = (c.clone(), shutdown.clone());
        tokio::spawn(async move {
            let result = match &item {
                Work::AttemptToDelete(uid) => attempt_to_delete(&c, uid).await,
                Work::ProcessOwner(uid) => process_owner(&c, uid).await,
            };
            drop(permit);
            if let Err(e) = result {
                tracing::debug!(?item, error = %e, "garbage collection failed; will retry");
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => c.queue.push_all([item]),
                }
            }
        });
    }
}

impl Collector {
    fn node(&self, uid: &str) -> Option<Node> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner()).get(uid).cloned()
    }

    fn resource_for(&self, r: &OwnerReference) -> Option<&GcResource> {
        self.resources.iter().find(|g| g.api.kind == r.kind && g.api.api_version == r.api_version).or_else(|| {
            // Another version of the same group and kind.
            let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            self.resources.iter().find(|g| g.api.kind == r.kind && g.api.group == group)
        })
    }

    fn api(&self, res: &GcResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match (res.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &res.api),
            _ => Api::all_with(self.client.clone(), &res.api),
        }
    }

    async fn delete(&self, n: &Node, policy: PropagationPolicy) -> Result<(), kube::Error> {
        let res = &self.resources[n.resource];
        tracing::debug!(kind = %res.api.kind, name = %n.name, ?policy, "garbage collecting");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions { uid: Some(n.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match self.api(res, n.namespace.as_deref()).delete(&n.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the owner references with the given uids (a merge patch pinned to the latest resourceVersion).
    async fn remove_owner_refs(&self, n: &Node, uids: &[&str]) -> Result<(), kube::Error> {
        let api = self.api(&self.resources[n.resource], n.namespace.as_deref());
        let Some(latest) = api.get_metadata_opt(&n.name).await? else { return Ok(()) };
        if latest.metadata.uid.as_deref() != Some(n.uid.as_str()) {
            return Ok(());
        }
        let refs: Vec<OwnerReference> =
            latest.metadata.owner_references.unwrap_or_default().into_iter().filter(|r| !uids.contains(&r.uid.as_str())).collect();
        let refs = if refs.is_empty() { serde_json::Value::Null } else { serde_json::json!(refs) };
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": latest.metadata.resource_version}});
        match api.patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_finalizer(&self, n: &Node, finalizer: &str) -> Result<(), kube::Error> {
        let api = self.api(&self.resources[n.resource], n.namespace.as_deref());
        let Some(latest) = api.get_metadata_opt(&n.name).await? else { return Ok(()) };
        if latest.metadata.uid.as_deref() != Some(n.uid.as_str()) {
            return Ok(());
        }
        let fins: Vec<String> = latest.metadata.finalizers.unwrap_or_default().into_iter().filter(|f| f != finalizer).collect();
        let fins = if fins.is_empty() { serde_json::Value::Null } else { serde_json::json!(fins) };
        let patch = serde_json::json!({"metadata": {"finalizers": fins, "resourceVersion": latest.metadata.resource_version}});
        match api.patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// How an owner reference stands (upstream's `classifyReferences`).
enum Owner {
    /// Exists and is not deleting its dependents.
    Solid,
    /// Gone, or replaced by another object of the same name.
    Dangling,
    /// Being deleted in the foreground: waiting for its dependents.
    Waiting,
}

async fn classify(c: &Collector, n: &Node, r: &OwnerReference) -> Result<Owner, kube::Error> {
    if let Some(owner) = c.node(&r.uid) {
        return Ok(if owner.deleting_dependents() { Owner::Waiting } else { Owner::Solid });
    }
    // Not in the graph: ask the API server (the graph may lag behind).
    let Some(res) = c.resource_for(r) else {
        // A kind the collector does not know: leave the reference alone.
        return Ok(Owner::Solid);
    };
    let ns = if res.namespaced { n.namespace.as_deref() } else { None };
    if res.namespaced && ns.is_none() {
        // A cluster-scoped dependent cannot have a namespaced owner.
        return Ok(Owner::Dangling);
    }
    match c.api(res, ns).get_metadata_opt(&r.name).await? {
        None => Ok(Owner::Dangling),
        Some(o) if o.metadata.uid.as_deref() != Some(r.uid.as_str()) => Ok(Owner::Dangling),
        Some(o) => {
            let fg = o.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER_FOREGROUND);
            Ok(if o.metadata.deletion_timestamp.is_some() && fg { Owner::Waiting } else { Owner::Solid })
        }
    }
}

/// Upstream's `attemptToDeleteItem`.
async fn attempt_to_delete(c: &Collector, uid: &str) -> Result<(), kube::Error> {
    let Some(n) = c.node(uid) else { return Ok(()) };
    if n.owners.is_empty() {
        return Ok(());
    }
    if n.deleting && !n.deleting_dependents() {
        // Already on its way out (finalizers or a grace period).
        return Ok(());
    }
    let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
    for r in &n.owners {
        match classify(c, &n, r).await? {
            Owner::Solid => solid.push(r.uid.as_str()),
            Owner::Dangling => dangling.push(r.uid.as_str()),
            Owner::Waiting => waiting.push(r.uid.as_str()),
        }
    }
    if !solid.is_empty() {
        // Another owner keeps it: only drop the references to owners that are gone or going.
        let drop: Vec<&str> = dangling.iter().chain(waiting.iter()).copied().collect();
        if !drop.is_empty() {
            c.remove_owner_refs(&n, &drop).await?;
        }
        return Ok(());
    }
    if n.deleting {
        return Ok(());
    }
    let has_dependents = !c.graph.lock().unwrap_or_else(|e| e.into_inner()).dependents_of(uid).is_empty();
    let policy = if !waiting.is_empty() && has_dependents {
        PropagationPolicy::Foreground
    } else if n.has_finalizer(FINALIZER_ORPHAN) {
        PropagationPolicy::Orphan
    } else if n.has_finalizer(FINALIZER_FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    c.delete(&n, policy).await
}

/// Upstream's `processDeletingDependentsItem` and `orphanDependents`.
async fn process_owner(c: &Collector, uid: &str) -> Result<(), kube::Error> {
    let Some(owner) = c.node(uid) else { return Ok(()) };
    let dependents: Vec<Node> = c.graph.lock().unwrap_or_else(|e| e.into_inner()).dependents_of(uid).into_iter().cloned().collect();
    if owner.orphaning() {
        for d in &dependents {
            c.remove_owner_refs(d, &[uid]).await?;
        }
        return c.remove_finalizer(&owner, FINALIZER_ORPHAN).await;
    }
    if owner.deleting_dependents() {
        let blocking: Vec<&Node> = dependents
            .iter()
            .filter(|d| d.owners.iter().any(|r| r.uid == uid && r.block_owner_deletion == Some(true)))
            .collect();
        if blocking.is_empty() {
            return c.remove_finalizer(&owner, FINALIZER_FOREGROUND).await;
        }
        c.queue.push_all(dependents.iter().filter(|d| !d.deleting || d.deleting_dependents()).map(|d| Work::AttemptToDelete(d.uid.clone())));
    }
    Ok(())
}
