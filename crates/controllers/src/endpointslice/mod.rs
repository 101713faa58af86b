//! The EndpointSlice controller: every Service with a selector gets EndpointSlices listing its pods
//! (upstream's `pkg/controller/endpointslice` with the `k8s.io/endpointslice` reconciler). Services without
//! a selector and ExternalName Services are left alone; slices of a deleted Service go with it through
//! their owner reference (the garbage collector).
//!
//! Reflectors keep Services, Pods, Nodes and EndpointSlices; their changes queue Service keys
//! (`namespace/name`) on a [`queue::WorkQueue`], which workers sync one key at a time.

pub mod desired;
pub mod queue;
pub mod reconciler;
pub mod tracker;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::{Backoff, key_of};
use desired::{CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_ZONE};
use queue::WorkQueue;
use tracker::Tracker;

/// What can go wrong in one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} EndpointSlice for Service {service}: {source}")]
    Write { action: &'static str, service: String, source: kube::Error },
    #[error("the {0} cache stopped before it was filled")]
    Cache(&'static str),
}

/// Settings of the controller (upstream's `EndpointSliceControllerConfiguration`).
#[derive(Clone, Debug)]
pub struct EndpointSliceConfig {
    /// The most endpoints one slice holds (upstream's `--max-endpoints-per-slice`, default 100, at most 1000).
    pub max_endpoints_per_slice: usize,
    /// Services synced at the same time (upstream's `--concurrent-service-endpoint-syncs`).
    pub workers: usize,
}

impl Default for EndpointSliceConfig {
    fn default() -> Self {
        Self { max_endpoints_per_slice: 100, workers: 2 }
    }
}

struct State {
    ctx: Context,
    config: EndpointSliceConfig,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    tracker: Tracker,
    backoff: Backoff,
}

/// Runs the controller with the default settings until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, EndpointSliceConfig::default(), shutdown).await
}

/// Runs the controller until `shutdown`.
pub async fn run_with(ctx: Context, config: EndpointSliceConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (services, services_w) = reflector::store::<Service>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let (nodes, nodes_w) = reflector::store::<Node>();
    let (slices, slices_w) = reflector::store::<EndpointSlice>();
    let mut config = config;
    config.max_endpoints_per_slice = config.max_endpoints_per_slice.clamp(1, 1000);
    let workers = config.workers.max(1);
    let state = Arc::new(State { ctx, config, services: services.clone(), pods, nodes, slices, tracker: Tracker::default(), backoff: Backoff::default() });
    let queue = Arc::new(WorkQueue::default());

    let service_loop = service_events(reflect(Api::all(client.clone()), services_w), queue.clone());
    let pod_loop = pod_events(reflect(Api::all(client.clone()), pods_w), services.clone(), queue.clone());
    let node_loop = {
        let (queue, services) = (queue.clone(), services.clone());
        let mut seen: HashMap<String, (Option<String>, bool)> = HashMap::new();
        reflect(Api::<Node>::all(client.clone()), nodes_w).for_each(move |ev| {
            // Zones (and, for hints, which zones have ready Nodes) feed every Service's endpoints.
            let changed = match &ev {
                Event::Apply(n) | Event::InitApply(n) => {
                    let now = (node_zone(n), node_ready(n));
                    seen.insert(n.metadata.name.clone().unwrap_or_default(), now.clone()) != Some(now)
                }
                Event::Delete(n) => seen.remove(n.metadata.name.as_deref().unwrap_or("")).is_some(),
                _ => false,
            };
            if changed {
                for svc in services.state().iter().filter(|s| desired::has_selector(s)) {
                    queue.add(key_of(&svc.metadata));
                }
            }
            std::future::ready(())
        })
    };
    let slice_loop = {
        let (queue, state) = (queue.clone(), state.clone());
        reflect(Api::<EndpointSlice>::all(client), slices_w).for_each(move |ev| {
            let (slice, deleted) = match &ev {
                Event::Apply(s) | Event::InitApply(s) => (s, false),
                Event::Delete(s) => (s, true),
                _ => return std::future::ready(()),
            };
            if let Some(key) = managed_service_key(slice) {
                if deleted {
                    state.tracker.forget_slice(&key, slice.metadata.name.as_deref().unwrap_or(""));
                }
                queue.add(key);
            }
            std::future::ready(())
        })
    };
    let work = {
        let (state, queue, shutdown) = (state.clone(), queue.clone(), shutdown.clone());
        async move {
            // Never sync from a half-filled cache: an empty pod cache would empty every slice.
            state.services.wait_until_ready().await.map_err(|_| Error::Cache("Service"))?;
            state.pods.wait_until_ready().await.map_err(|_| Error::Cache("Pod"))?;
            state.nodes.wait_until_ready().await.map_err(|_| Error::Cache("Node"))?;
            state.slices.wait_until_ready().await.map_err(|_| Error::Cache("EndpointSlice"))?;
            let run = |_| worker(state.clone(), queue.clone(), shutdown.clone(), "endpointslice", sync);
            futures::future::join_all((0..workers).map(run)).await;
            Ok::<(), Error>(())
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        res = async { tokio::join!(service_loop, pod_loop, node_loop, slice_loop, work).4 } => res,
    }
}

/// A watch of `api` kept in `writer`'s store, as its events (errors are logged; the watcher retries).
pub(crate) fn reflect<K>(api: Api<K>, writer: Writer<K>) -> impl Stream<Item = Event<K>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()).default_backoff()).filter_map(|ev| {
        std::future::ready(match ev {
            Ok(ev) => Some(ev),
            Err(e) => {
                tracing::debug!(error = %e, "endpoints watch failed; retrying");
                None
            }
        })
    })
}

/// Queues every Service that is added, changed or deleted.
pub(crate) async fn service_events(events: impl Stream<Item = Event<Service>>, queue: Arc<WorkQueue>) {
    events
        .for_each(|ev| {
            if let Event::Apply(s) | Event::InitApply(s) | Event::Delete(s) = &ev {
                queue.add(key_of(&s.metadata));
            }
            std::future::ready(())
        })
        .await
}

/// Queues the Services a changed pod is or was selected by (its labels before and after the change).
pub(crate) async fn pod_events(events: impl Stream<Item = Event<Pod>>, services: Store<Service>, queue: Arc<WorkQueue>) {
    let mut last_labels: HashMap<String, Option<BTreeMap<String, String>>> = HashMap::new();
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        let (pod, deleted) = match &ev {
            Event::Apply(p) | Event::InitApply(p) => (p, false),
            Event::Delete(p) => (p, true),
            _ => continue,
        };
        let key = key_of(&pod.metadata);
        let old = if deleted { last_labels.remove(&key) } else { last_labels.insert(key, pod.metadata.labels.clone()) };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let mut keys = services_selecting(&services, ns, pod.metadata.labels.as_ref());
        if let Some(old) = old.filter(|o| *o != pod.metadata.labels) {
            keys.extend(services_selecting(&services, ns, old.as_ref()));
        }
        for k in keys {
            queue.add(k);
        }
    }
}

/// Keys of the Services in `namespace` whose selector matches `labels`.
pub(crate) fn services_selecting(services: &Store<Service>, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> BTreeSet<String> {
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace) && desired::selects(s, labels))
        .map(|s| key_of(&s.metadata))
        .collect()
}

/// Syncs queued keys one at a time until `shutdown`: a sync that fails is retried with back-off, one that
/// asks to come back is queued again after the delay it names.
pub(crate) async fn worker<S, F, Fut, E>(state: Arc<S>, queue: Arc<WorkQueue>, shutdown: CancellationToken, controller: &'static str, sync: F)
where
    S: HasBackoff,
    F: Fn(Arc<S>, String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Duration>, E>>,
    E: std::fmt::Display,
{
    loop {
        let key = tokio::select! {
            key = queue.get() => key,
            _ = shutdown.cancelled() => return,
        };
        match sync(state.clone(), key.clone()).await {
            Ok(None) => state.backoff().reset(&key),
            Ok(Some(after)) => queue.add_after(key.clone(), after, &shutdown),
            Err(error) => {
                tracing::info!(service = %key, %error, "{controller} sync failed; will retry");
                queue.add_after(key.clone(), state.backoff().next(&key), &shutdown);
            }
        }
        queue.done(&key);
    }
}

/// Controller state that holds a per-key back-off.
pub(crate) trait HasBackoff {
    fn backoff(&self) -> &Backoff;
}

impl HasBackoff for State {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

/// `namespace/service` of a slice this controller manages.
fn managed_service_key(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    Some(format!("{}/{}", slice.metadata.namespace.as_deref().unwrap_or(""), labels.get(LABEL_SERVICE_NAME)?))
}

fn node_zone(node: &Node) -> Option<String> {
    node.metadata.labels.as_ref()?.get(LABEL_ZONE).filter(|z| !z.is_empty()).cloned()
}

fn node_ready(node: &Node) -> bool {
    node.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// How long to wait for the cache to show this controller's own writes.
const STALE_CACHE_RETRY: Duration = Duration::from_millis(200);
/// When pods were left out because their Node is unknown, look again after this long.
const MISSING_NODE_RETRY: Duration = Duration::from_secs(5);

/// One Service's sync (upstream's `syncService`). `Some(delay)`: come back after it.
async fn sync(state: Arc<State>, key: String) -> Result<Option<Duration>, Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
    let Some(svc) = state.services.get(&ObjectRef::new(name).within(ns)) else {
        // Deleted: its slices go with it (owner reference).
        return Ok(None);
    };
    // ExternalName Services get no endpoints; Services without a selector get theirs from elsewhere.
    if desired::is_external_name(&svc) || !desired::has_selector(&svc) {
        return Ok(None);
    }
    let pods: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && desired::selects(&svc, p.metadata.labels.as_ref()))
        .collect();
    let slices: Vec<EndpointSlice> = state
        .slices
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.deletion_timestamp.is_none())
        .filter(|s| managed_service_key(s).as_deref() == Some(key.as_str()))
        .map(|s| (**s).clone())
        .collect();
    if state.tracker.stale(&key, &slices) {
        return Ok(Some(STALE_CACHE_RETRY));
    }
    let mut nodes = HashMap::new();
    let mut zones = BTreeSet::new();
    for n in state.nodes.state() {
        let zone = node_zone(&n);
        if let Some(z) = zone.clone().filter(|_| node_ready(&n)) {
            zones.insert(z);
        }
        nodes.insert(n.metadata.name.clone().unwrap_or_default(), zone);
    }
    let (mut groups, skipped) = desired::desired_groups(&svc, &pods, &nodes);
    desired::apply_hints(&mut groups, &zones, desired::hints_enabled(&svc));
    let plan = reconciler::plan(&svc, &groups, slices, state.config.max_endpoints_per_slice);
    apply(&state, &key, ns, plan).await?;
    if !skipped.is_empty() {
        tracing::info!(service = %key, pods = ?skipped, "pods on unknown Nodes left out of the Service's endpoints");
        return Ok(Some(MISSING_NODE_RETRY));
    }
    Ok(None)
}

/// Writes a plan: creations first, then updates, then deletions (so endpoints are never missing between).
async fn apply(state: &State, key: &str, ns: &str, plan: reconciler::Plan) -> Result<(), Error> {
    let api: Api<EndpointSlice> = Api::namespaced(state.ctx.client.clone(), ns);
    let err = |action, source| Error::Write { action, service: key.to_string(), source };
    for slice in plan.create {
        match api.create(&PostParams::default(), &slice).await {
            Ok(created) => state.tracker.written(key, &created),
            // The namespace is terminating.
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(()),
            Err(e) => return Err(err("create", e)),
        }
    }
    for slice in plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &PostParams::default(), &slice).await {
            Ok(updated) => state.tracker.written(key, &updated),
            Err(e) => return Err(err("update", e)),
        }
    }
    for slice in plan.delete {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => state.tracker.deleted(key, &name),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(err("delete", e)),
        }
    }
    Ok(())
}
