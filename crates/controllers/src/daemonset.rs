//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod per eligible node, pinned with node
//! affinity on `metadata.name` for the scheduler to bind, rolled with maxUnavailable/maxSurge or OnDelete.

pub mod predicates;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_revision::{self, REVISION_HASH_LABEL};
use crate::controller_utils::object_reference;
use crate::controller_utils::{Backoff, pod_from_template};
use crate::controller_utils::{Clock, claim_pods, scaled_value, log_reconcile_errors, publish, publish_related, selector_params, system_clock};
use crate::pod_util::{controller_ref, is_pod_available, is_pod_ready};

/// The deprecated label with the DaemonSet generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("daemonset api call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("daemonset {0} has an invalid selector: {1}")]
    Selector(String, String),
}

/// Settings of the DaemonSet controller.
#[derive(Clone)]
pub struct Config {
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            clock: system_clock(),
        }
    }
}

struct State {
    ctx: Context,
    config: Config,
    recorder: Recorder,
    /// Delay before replacing a failed daemon pod, per node and DaemonSet.
    failed_backoff: Backoff,
    /// Until when a node's failed daemon is not replaced.
    failed_until: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// Runs the DaemonSet controller until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, Config::default(), shutdown).await
}

/// Runs the DaemonSet controller with explicit settings.
pub async fn run_with(
    ctx: Context,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = ctx.client.clone();
    let recorder = ctx.recorder.clone();
    let state = Arc::new(State {
        ctx,
        config,
        recorder,
        failed_backoff: Backoff::default(),
        failed_until: Default::default(),
    });
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let results = controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        // A node added, removed, relabelled or retainted may change where daemons belong; heartbeats do not.
        .watches_stream(
            node_changes(Api::<Node>::all(client)),
            move |_node: Node| {
                store
                    .state()
                    .iter()
                    .map(|ds| ObjectRef::from_obj(&**ds))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state);
    log_reconcile_errors(results, "daemonset").await;
    Ok(())
}

/// Nodes whose scheduling-relevant parts (labels, taints, unschedulable) changed, and nodes deleted.
fn node_changes(
    api: Api<Node>,
) -> impl futures::Stream<Item = Result<Node, watcher::Error>> + Send + 'static {
    use kube::runtime::WatchStreamExt;
    use std::hash::{Hash, Hasher};
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |ev| {
            let out = match ev {
                Err(e) => Some(Err(e)),
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    n.metadata.labels.hash(&mut h);
                    let spec = n.spec.as_ref();
                    serde_json::to_string(&spec.and_then(|s| s.taints.as_ref()))
                        .unwrap_or_default()
                        .hash(&mut h);
                    spec.and_then(|s| s.unschedulable).hash(&mut h);
                    let hash = h.finish();
                    (seen.insert(n.name_any(), hash) != Some(hash)).then_some(Ok(n))
                }
                Ok(watcher::Event::Delete(n)) => {
                    seen.remove(&n.name_any());
                    Some(Ok(n))
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            };
            std::future::ready(out)
        })
}

fn error_policy(_ds: Arc<DaemonSet>, err: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(error = %err, "daemonset sync failed, retrying");
    match err {
        // A bad selector does not heal by retrying; the next change to the object brings it back.
        Error::Selector(..) => Action::requeue(Duration::from_secs(300)),
        Error::Kube(_) => Action::requeue(Duration::from_secs(1)),
    }
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    controller_revision::revision_label(&pod.metadata)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod the DaemonSet runs on `node` (upstream `NewPod` + `CreatePodTemplate`).
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pod_from_template(
        &template,
        &ds.namespace().unwrap_or_default(),
        "",
        controller_ref(ds),
    );
    pod.metadata.name = None;
    pod.metadata.generate_name = Some(crate::controller_utils::pods_prefix(&ds.name_any()));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    labels.insert(
        TEMPLATE_GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    let spec = pod.spec.get_or_insert_with(Default::default);
    predicates::add_default_tolerations(spec);
    predicates::pin_to_node(spec, node);
    pod
}

async fn reconcile(cached: Arc<DaemonSet>, st: Arc<State>) -> Result<Action, Error> {
    let client = st.ctx.client.clone();
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let Some(ds) = dss.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = ds.uid().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let Some(lp) =
        selector_params(Some(&spec.selector)).map_err(|e| Error::Selector(name.clone(), e))?
    else {
        return Ok(Action::await_change());
    };
    let now = (st.config.clock)();
    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await?
        .items;
    let pods: Vec<Pod> = claim_pods(&pods_api, &ds, pods_api.list(&lp).await?.items).await?;

    // The revision of the current template, and the history.
    let mut revisions =
        controller_revision::list_revisions(&revs_api, Some(&spec.selector), &uid).await?;
    let mut collision_count = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let cur = controller_revision::current_revision(
        &revs_api,
        &ds,
        &spec.template,
        &mut revisions,
        &mut collision_count,
    )
    .await?;
    let hash = controller_revision::revision_label(&cur.metadata).unwrap_or_default().to_string();

    // Pods by the node they are for.
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in &pods {
        if let Some(n) = pod.spec.as_ref().and_then(predicates::target_node) {
            by_node.entry(n).or_default().push(pod);
        }
    }
    // Eligibility is judged on the template with the default tolerations (the pin is per node).
    let mut probe = spec.template.spec.clone().unwrap_or_default();
    predicates::add_default_tolerations(&mut probe);

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut to_create: Vec<String> = Vec::new();
    let mut to_delete: Vec<&Pod> = Vec::new();
    let mut eligible: Vec<&str> = Vec::new();
    let mut requeue: Option<Duration> = None;
    for node in &nodes {
        let node_name = node.metadata.name.as_deref().unwrap_or("");
        let (run, keep) = predicates::should_run(&probe, node);
        let here: Vec<&Pod> = by_node.get(node_name).cloned().unwrap_or_default();
        if run {
            eligible.push(node_name);
        }
        if run {
            let key = format!("{ns}/{name}/{node_name}");
            let mut alive = Vec::new();
            for pod in here
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                if phase(pod) == "Failed" {
                    let msg = format!(
                        "Found failed daemon pod {ns}/{} on node {node_name}, will try to kill it",
                        pod.name_any()
                    );
                    publish_related(
                        &st.recorder,
                        &ds,
                        object_reference(*pod),
                        EventType::Warning,
                        "FailedDaemonPod",
                        msg,
                    )
                    .await;
                    to_delete.push(pod);
                } else {
                    alive.push(*pod);
                }
            }
            let failed_here = here
                .iter()
                .any(|p| phase(p) == "Failed" && p.metadata.deletion_timestamp.is_none());
            if failed_here {
                // Replace a failed pod after a growing delay, not in a tight loop (upstream's failedPodsBackoff).
                let wait = st.failed_backoff.next(&key);
                st.failed_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), std::time::Instant::now() + wait);
            }
            if alive.is_empty() && !here.iter().any(|p| p.metadata.deletion_timestamp.is_some()) {
                let until = st
                    .failed_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .copied();
                match until.map(|u| u.saturating_duration_since(std::time::Instant::now())) {
                    Some(wait) if !wait.is_zero() => {
                        requeue = Some(requeue.map_or(wait, |r| r.min(wait)))
                    }
                    _ => to_create.push(node_name.to_string()),
                }
            } else if alive.len() > 1 {
                // Keep the oldest (preferring the current revision during a surge), delete the rest.
                let mut sorted = alive.clone();
                sorted.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
                let surging = sorted.iter().any(|p| pod_hash(p) == Some(&hash))
                    && sorted.iter().any(|p| pod_hash(p) != Some(&hash));
                if !surging {
                    to_delete.extend(sorted.into_iter().skip(1));
                }
            }
            // A daemon that made it to Ready starts the backoff over.
            if alive.iter().any(|p| is_pod_ready(p)) {
                st.failed_backoff.reset(&key);
                st.failed_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            }
        } else if !keep {
            to_delete.extend(
                here.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none()),
            );
        }
    }

    // Rolling update of pods of older revisions.
    let desired = eligible.len() as i32;
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate" {
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        let mut max_surge = scaled_value(ru.max_surge.as_ref(), desired, true, "0");
        let mut max_unavailable = scaled_value(ru.max_unavailable.as_ref(), desired, true, "1");
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        if max_surge > 0 {
            max_unavailable = 0;
        }
        max_surge = max_surge.max(0);
        let mut unavailable = 0;
        let mut old_available: Vec<(&str, &Pod)> = Vec::new();
        let mut surged = 0;
        for node in &eligible {
            let here: Vec<&Pod> = by_node
                .get(*node)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && phase(p) != "Failed")
                .collect();
            let new: Vec<&&Pod> = here.iter().filter(|p| pod_hash(p) == Some(&hash)).collect();
            let old: Vec<&&Pod> = here.iter().filter(|p| pod_hash(p) != Some(&hash)).collect();
            let new_available = new.iter().any(|p| is_pod_available(p, min_ready, now));
            if !new.is_empty() {
                if old.is_empty() {
                    if !new_available {
                        unavailable += 1;
                    }
                } else if new_available {
                    // Surge done on this node: the old pod goes.
                    to_delete.extend(old.iter().map(|p| **p));
                } else {
                    surged += 1;
                }
                continue;
            }
            match old.iter().find(|p| is_pod_available(p, min_ready, now)) {
                None if !old.is_empty() => to_delete.extend(old.iter().map(|p| **p)),
                None => unavailable += 1,
                Some(p) => old_available.push((node, p)),
            }
        }
        if max_surge > 0 {
            for (node, _) in old_available {
                if surged >= max_surge {
                    break;
                }
                to_create.push(node.to_string());
                surged += 1;
            }
        } else {
            for (_, pod) in old_available {
                if unavailable >= max_unavailable {
                    break;
                }
                to_delete.push(pod);
                unavailable += 1;
            }
        }
    }

    to_delete.sort_by_key(|p| p.name_any());
    to_delete.dedup_by_key(|p| p.name_any());
    for pod in &to_delete {
        match pods_api
            .delete(&pod.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                publish_related(
                    &st.recorder,
                    &ds,
                    object_reference(*pod),
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                )
                .await
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for node in &to_create {
        let pod = new_pod(&ds, node, &hash);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                publish_related(
                    &st.recorder,
                    &ds,
                    object_reference(&p),
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                )
                .await
            }
            Err(e) => {
                publish(
                    &st.recorder,
                    &ds,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
                return Err(e.into());
            }
        }
    }

    // History beyond revisionHistoryLimit, keeping revisions that pods still run.
    let mut live: Vec<String> = vec![cur.name_any()];
    for rev in &revisions {
        let h = controller_revision::revision_label(&rev.metadata);
        if pods.iter().any(|p| pod_hash(p) == h) {
            live.push(rev.name_any());
        }
    }
    controller_revision::truncate_history(
        &revs_api,
        &revisions,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    // Status, from what exists now (pods created or deleted above are counted by the next sync).
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: (collision_count > 0).then_some(collision_count),
        ..Default::default()
    };
    for node in &nodes {
        let node_name = node.metadata.name.as_deref().unwrap_or("");
        let here: Vec<&Pod> = by_node
            .get(node_name)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let should = eligible.contains(&node_name);
        if should {
            status.desired_number_scheduled += 1;
            if !here.is_empty() {
                status.current_number_scheduled += 1;
                if here.iter().any(|p| is_pod_ready(p)) {
                    status.number_ready += 1;
                    if here.iter().any(|p| is_pod_available(p, min_ready, now)) {
                        *status.number_available.get_or_insert(0) += 1;
                    }
                }
                if here.iter().any(|p| pod_hash(p) == Some(&hash)) {
                    *status.updated_number_scheduled.get_or_insert(0) += 1;
                }
            }
        } else if !here.is_empty() {
            status.number_misscheduled += 1;
        }
    }
    let available = status.number_available.unwrap_or(0);
    status.number_unavailable = (status.desired_number_scheduled - available > 0)
        .then_some(status.desired_number_scheduled - available);
    status.number_available = status.number_available.filter(|n| *n > 0);
    status.updated_number_scheduled = status.updated_number_scheduled.filter(|n| *n > 0);
    if ds.status.as_ref() != Some(&status) {
        let mut next = ds.clone();
        next.status = Some(status);
        dss.replace_status(&name, &PostParams::default(), &next)
            .await?;
    }
    // minReadySeconds: look again when pods may have become available.
    if min_ready > 0 {
        let wait = Duration::from_secs(u64::try_from(min_ready).unwrap_or(1));
        requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
    }
    let _ = &st.ctx;
    Ok(Action::requeue(requeue.unwrap_or(Duration::from_secs(300))))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled_value(Some(&IntOrString::String("10%".into())), 5, true, "1"), 1);
        assert_eq!(scaled_value(Some(&IntOrString::String("50%".into())), 5, true, "1"), 3);
        assert_eq!(scaled_value(Some(&IntOrString::Int(2)), 5, true, "1"), 2);
        assert_eq!(scaled_value(None, 5, true, "1"), 1);
    }

    #[test]
    fn daemon_pods_are_pinned_labelled_and_tolerant() {
        let ds = DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some("u".into()),
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "agent".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        host_network: Some(true),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        };
        let pod = new_pod(&ds, "n1", "abc");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[REVISION_HASH_LABEL], "abc");
        assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "4");
        assert_eq!(labels["app"], "agent");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let spec = pod.spec.unwrap();
        assert_eq!(predicates::target_node(&spec).as_deref(), Some("n1"));
        assert!(spec.node_name.is_none(), "the scheduler binds daemon pods");
        let tolerations = spec.tolerations.unwrap();
        assert_eq!(tolerations.len(), 7);
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable"))
        );
    }
}
