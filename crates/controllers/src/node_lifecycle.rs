//! Self-healing on node loss (upstream's node lifecycle controller and its NoExecute taint manager).
//!
//! Every `monitor_period` it looks at each node's last heartbeat (its Lease in `kube-node-lease` or the
//! Ready condition's heartbeat, whichever is newer). A node silent for longer than `grace_period` gets its
//! kubelet conditions set to Unknown ("Kubelet stopped posting node status."), the taints
//! `node.kubernetes.io/unreachable` NoSchedule + NoExecute, and its pods' Ready condition set to False. A node
//! whose kubelet reports Ready=False gets `node.kubernetes.io/not-ready`. Pods on a node with NoExecute taints
//! are deleted at once when they do not tolerate them, or once their `tolerationSeconds` have passed since
//! the taint was added (the API server's DefaultTolerationSeconds gives every pod 300 s); their controllers
//! then recreate them elsewhere. A node that heartbeats again loses the taints.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::publish;

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The conditions a kubelet posts; all go Unknown when it goes silent.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Timings, upstream's flags `--node-monitor-period` and `--node-monitor-grace-period`.
#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    pub monitor_period: Duration,
    pub grace_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig { monitor_period: Duration::from_secs(5), grace_period: Duration::from_secs(40) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node lifecycle: {0}")]
    Api(#[from] kube::Error),
}

/// What the controller concludes about one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The kubelet reports Ready=False (or no Ready condition yet while it heartbeats).
    NotReady,
    /// No heartbeat within the grace period.
    Unreachable,
}

/// Runs until `shutdown`.
pub async fn run(ctx: Context, config: NodeLifecycleConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let nodes = spawn_store::<Node>(Api::all(ctx.client.clone()), shutdown.clone());
    let leases = spawn_store::<Lease>(Api::namespaced(ctx.client.clone(), "kube-node-lease"), shutdown.clone());
    let pods = spawn_store::<Pod>(Api::all(ctx.client.clone()), shutdown.clone());
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = async { let _ = nodes.wait_until_ready().await; let _ = leases.wait_until_ready().await; let _ = pods.wait_until_ready().await; } => {}
    }
    // Heartbeats are judged against the time this controller first saw a node, so a restarted controller
    // does not mark every node Unknown at once (upstream's probeTimestamp).
    let mut first_seen: HashMap<String, Timestamp> = HashMap::new();
    loop {
        let now = Timestamp::now();
        let lease_of: HashMap<String, Arc<Lease>> = leases.state().into_iter().filter_map(|l| Some((l.metadata.name.clone()?, l))).collect();
        let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in pods.state() {
            if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                pods_by_node.entry(n).or_default().push(pod);
            }
        }
        for node in nodes.state() {
            let Some(name) = node.metadata.name.clone() else { continue };
            let seen = *first_seen.entry(name.clone()).or_insert(now);
            let health = assess(&node, lease_of.get(&name).map(|l| l.as_ref()), seen, now, config.grace_period);
            let node_pods = pods_by_node.remove(&name).unwrap_or_default();
            if let Err(e) = reconcile_node(&ctx, &node, health, &node_pods, now).await {
                tracing::warn!(node = %name, error = %e, "node lifecycle step failed; retrying next period");
            }
        }
        first_seen.retain(|n, _| nodes.get(&reflector::ObjectRef::new(n)).is_some());
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(config.monitor_period) => {}
        }
    }
}

fn spawn_store<K>(api: Api<K>, shutdown: CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                item = stream.next() => match item {
                    None => return,
                    Some(Err(e)) => tracing::debug!(error = %e, "node lifecycle watch error"),
                    Some(Ok(_)) => {}
                },
            }
        }
    });
    reader
}

/// The node's health at `now`: unreachable when neither its Lease nor its Ready heartbeat (nor, for a node
/// just seen, `first_seen`) is within `grace`.
pub fn assess(node: &Node, lease: Option<&Lease>, first_seen: Timestamp, now: Timestamp, grace: Duration) -> Health {
    let ready = condition(node, "Ready");
    let mut last = first_seen;
    if let Some(t) = lease.and_then(|l| l.spec.as_ref()).and_then(|s| s.renew_time.as_ref()) {
        last = last.max(t.0);
    }
    if let Some(t) = ready.and_then(|c| c.last_heartbeat_time.as_ref()) {
        last = last.max(t.0);
    }
    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
    if now.duration_since(last) > grace {
        return Health::Unreachable;
    }
    match ready.map(|c| c.status.as_str()) {
        Some("True") => Health::Ready,
        // A node that heartbeats but whose Ready is Unknown (set by us earlier) is back: its kubelet will
        // post a fresh Ready condition; until then it is not ready.
        _ => Health::NotReady,
    }
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// The NoSchedule + NoExecute taints the node should carry for `health`, by key.
pub fn wanted_taint_key(health: Health) -> Option<&'static str> {
    match health {
        Health::Ready => None,
        Health::NotReady => Some(TAINT_NOT_READY),
        Health::Unreachable => Some(TAINT_UNREACHABLE),
    }
}

/// The node's taints with the lifecycle taints replaced by those for `health` (existing ones keep their
/// timeAdded); `None` when nothing changes.
pub fn updated_taints(node: &Node, health: Health, now: Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ours = |t: &Taint| t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY;
    let mut next: Vec<Taint> = current.iter().filter(|t| !ours(t)).cloned().collect();
    if let Some(key) = wanted_taint_key(health) {
        for effect in ["NoSchedule", "NoExecute"] {
            let kept = current.iter().find(|t| t.key == key && t.effect == effect).cloned();
            next.push(kept.unwrap_or_else(|| Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                time_added: (effect == "NoExecute").then(|| Time(now)),
                value: None,
            }));
        }
    }
    let same = next.len() == current.len() && next.iter().all(|t| current.contains(t));
    (!same).then_some(next)
}

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// When a pod on a node with `taints` must go: `Some(None)` at once, `Some(Some(t))` at `t`, `None` never.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<Option<Timestamp>> {
    let tolerations: &[Toleration] = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(None);
        }
        // The shortest tolerationSeconds among the matching tolerations; none set means forever.
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else { continue };
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
        let when = added.checked_add(jiff::SignedDuration::from_secs(seconds.max(0))).unwrap_or(Timestamp::MAX);
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at.map(Some)
}

async fn reconcile_node(ctx: &Context, node: &Node, health: Health, pods: &[Arc<Pod>], now: Timestamp) -> Result<(), Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    if health == Health::Unreachable && condition(node, "Ready").is_none_or(|c| c.status != "Unknown") {
        mark_unknown(&nodes, node, now).await?;
        tracing::info!(node = %name, "node stopped posting status: conditions set to Unknown");
        for pod in pods {
            mark_pod_not_ready(ctx, pod, now).await;
        }
    }
    let mut taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    if let Some(next) = updated_taints(node, health, now) {
        let patch = serde_json::json!({"spec": {"taints": next}});
        nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(node = %name, ?health, "node lifecycle taints updated");
        taints = next;
    }
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let due = match eviction_time(pod, &taints) {
            None => continue,
            Some(None) => true,
            Some(Some(at)) => at <= now,
        };
        if due {
            evict(ctx, pod).await;
        }
    }
    Ok(())
}

async fn mark_unknown(nodes: &Api<Node>, node: &Node, now: Timestamp) -> Result<(), Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut status = node.status.clone().unwrap_or_default();
    let mut conditions = status.conditions.take().unwrap_or_default();
    for kind in KUBELET_CONDITIONS {
        let unknown = NodeCondition {
            type_: kind.to_string(),
            status: "Unknown".into(),
            reason: Some("NodeStatusUnknown".into()),
            message: Some("Kubelet stopped posting node status.".into()),
            last_transition_time: Some(Time(now)),
            last_heartbeat_time: None,
        };
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) => {
                let heartbeat = c.last_heartbeat_time.clone();
                *c = NodeCondition { last_heartbeat_time: heartbeat, ..unknown };
            }
            None => conditions.push(NodeCondition { last_heartbeat_time: Some(Time(now)), ..unknown }),
        }
    }
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

async fn mark_pod_not_ready(ctx: &Context, pod: &Pod, now: Timestamp) {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else { return };
    let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else { return };
    let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status == "True") else { return };
    *ready = PodCondition { status: "False".into(), last_transition_time: Some(Time(now)), ..ready.clone() };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    if let Err(e) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::debug!(pod = %name, error = %e, "failed to mark a pod on an unreachable node not ready");
    }
}

async fn evict(ctx: &Context, pod: &Pod) {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else { return };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), "TaintManagerEviction: marking for deletion");
            publish(&ctx.recorder, pod, EventType::Normal, "TaintManagerEviction", format!("Marking for deletion Pod {ns}/{name}")).await;
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "failed to evict a pod from a tainted node"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn node(ready: &str, heartbeat: i64) -> Node {
        Node {
            metadata: ObjectMeta { name: Some("n1".into()), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_heartbeat_time: Some(Time(ts(heartbeat))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn lease(renew: i64) -> Lease {
        Lease { spec: Some(LeaseSpec { renew_time: Some(MicroTime(ts(renew))), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn a_node_is_unreachable_only_after_the_grace_period() {
        let grace = Duration::from_secs(40);
        let n = node("True", 100);
        assert_eq!(assess(&n, None, ts(0), ts(140), grace), Health::Ready);
        assert_eq!(assess(&n, None, ts(0), ts(141), grace), Health::Unreachable);
        // A fresh lease keeps it reachable even with an old Ready heartbeat.
        assert_eq!(assess(&n, Some(&lease(130)), ts(0), ts(160), grace), Health::Ready);
        // A controller that just started gives the node the grace period from then.
        assert_eq!(assess(&n, None, ts(500), ts(520), grace), Health::Ready);
        assert_eq!(assess(&node("False", 100), None, ts(0), ts(110), grace), Health::NotReady);
    }

    #[test]
    fn taints_follow_health_and_keep_their_time() {
        let n = node("Unknown", 0);
        let taints = updated_taints(&n, Health::Unreachable, ts(10)).unwrap();
        assert_eq!(taints.len(), 2);
        assert!(taints.iter().all(|t| t.key == TAINT_UNREACHABLE));
        let no_execute = taints.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert_eq!(no_execute.time_added.as_ref().unwrap().0, ts(10));
        let mut tainted = n.clone();
        tainted.spec.as_mut().unwrap().taints = Some(taints);
        assert!(updated_taints(&tainted, Health::Unreachable, ts(99)).is_none(), "unchanged taints are not rewritten");
        let back = updated_taints(&tainted, Health::Ready, ts(99)).unwrap();
        assert!(back.is_empty());
        let other = Taint { key: "dedicated".into(), effect: "NoSchedule".into(), ..Default::default() };
        tainted.spec.as_mut().unwrap().taints.as_mut().unwrap().push(other.clone());
        assert_eq!(updated_taints(&tainted, Health::Ready, ts(99)).unwrap(), vec![other], "foreign taints stay");
    }

    fn pod_with(tolerations: Vec<Toleration>) -> Pod {
        Pod { spec: Some(PodSpec { tolerations: Some(tolerations), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn eviction_waits_for_toleration_seconds() {
        let taint = Taint { key: TAINT_UNREACHABLE.into(), effect: "NoExecute".into(), time_added: Some(Time(ts(100))), value: None };
        assert_eq!(eviction_time(&pod_with(vec![]), std::slice::from_ref(&taint)), Some(None));
        let t300 = Toleration { key: Some(TAINT_UNREACHABLE.into()), operator: Some("Exists".into()), effect: Some("NoExecute".into()), toleration_seconds: Some(300), value: None };
        assert_eq!(eviction_time(&pod_with(vec![t300.clone()]), std::slice::from_ref(&taint)), Some(Some(ts(400))));
        let forever = Toleration { toleration_seconds: None, ..t300.clone() };
        assert_eq!(eviction_time(&pod_with(vec![forever]), std::slice::from_ref(&taint)), None);
        let everything = Toleration { operator: Some("Exists".into()), ..Default::default() };
        assert_eq!(eviction_time(&pod_with(vec![everything]), std::slice::from_ref(&taint)), None);
        let wrong_key = Toleration { key: Some("other".into()), ..t300 };
        assert_eq!(eviction_time(&pod_with(vec![wrong_key]), &[taint]), Some(None));
    }

    #[test]
    fn equal_tolerations_compare_values() {
        let taint = Taint { key: "k".into(), value: Some("v".into()), effect: "NoExecute".into(), time_added: None };
        let eq = |v: &str| Toleration { key: Some("k".into()), operator: Some("Equal".into()), value: Some(v.into()), ..Default::default() };
        assert!(tolerates(&eq("v"), &taint));
        assert!(!tolerates(&eq("w"), &taint));
    }
}
