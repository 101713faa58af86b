//! Pod workers (upstream's `pod_workers` with its PLEG and housekeeping): pods bound to the node are
//! watched with a `spec.nodeName` field selector; each pod UID gets one worker task that serialises its
//! syncs (syncing → terminating → terminated). A relist of the runtime wakes the workers whose containers
//! changed; housekeeping removes sandboxes and volumes of pods that no longer exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use skiff_runtime::cri::{ContainerFilter, ContainerState, SandboxState, labels};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::KubeletConfig;
use crate::kuberuntime::{Kubelet, PodState, grace_period, pod_uid};
use crate::run::Deps;

/// A pod's worker: the latest pod (`None` once it is gone from the API) and a wake-up.
struct Worker {
    pod: watch::Sender<Option<Arc<Pod>>>,
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

/// Runs the pod workers until shutdown.
pub async fn run(config: Arc<KubeletConfig>, deps: Deps, shutdown: CancellationToken) {
    let kubelet = Arc::new(Kubelet::new(config.clone(), deps.clone(), shutdown.clone()));
    let pods: Api<Pod> = Api::all(deps.client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name));
    let mut stream = watcher::watcher(pods, wc).default_backoff().boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    let mut relisted: HashMap<String, (String, String)> = HashMap::new();
    let mut pleg = tokio::time::interval(config.pleg_relist_period);
    pleg.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(config.housekeeping_interval);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = stream.next() => match event {
                Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(pod_uid(&pod));
                    }
                    dispatch(&kubelet, &mut workers, pod);
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(seen) = listing.take() {
                        for (uid, w) in &workers {
                            if !seen.contains(uid) {
                                let _ = w.pod.send(None);
                            }
                        }
                    }
                    synced = true;
                }
                Some(Ok(Event::Apply(pod))) => dispatch(&kubelet, &mut workers, pod),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(w) = workers.get(&pod_uid(&pod)) {
                        let _ = w.pod.send(None);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                None => break,
            },
            _ = pleg.tick() => relist(&kubelet, &workers, &mut relisted).await,
            _ = housekeeping.tick(), if synced => {
                workers.retain(|_, w| !w.task.is_finished());
                cleanup_orphans(&kubelet, &workers).await;
            }
        }
    }
    for (_, w) in workers {
        let _ = w.task.await;
    }
}

/// Hands a pod to its worker, starting one for a new UID (or after the previous one ended).
fn dispatch(kubelet: &Arc<Kubelet>, workers: &mut HashMap<String, Worker>, pod: Pod) {
    let uid = pod_uid(&pod);
    if uid.is_empty() {
        return;
    }
    let pod = Arc::new(pod);
    if let Some(w) = workers.get(&uid)
        && !w.task.is_finished()
    {
        w.pod.send_replace(Some(pod));
        return;
    }
    if is_active(&pod) {
        let active = workers
            .values()
            .filter(|w| !w.task.is_finished() && w.pod.borrow().as_deref().is_some_and(is_active))
            .count();
        let max = kubelet.config.max_pods as usize;
        if active >= max {
            // Admission (upstream's `canAdmitPod`): the pod fails with OutOfpods and never runs here.
            let kubelet = kubelet.clone();
            tokio::spawn(async move {
                reject(&kubelet, &pod, "OutOfpods", &format!(
                "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: {active}, capacity: {max}"
            )).await
            });
            return;
        }
    }
    let (tx, rx) = watch::channel(Some(pod));
    let notify = Arc::new(Notify::new());
    let task = tokio::spawn(pod_worker(kubelet.clone(), rx, notify.clone()));
    workers.insert(uid, Worker { pod: tx, notify, task });
}

/// Whether a pod counts against `maxPods`: not finished and not being deleted.
fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

/// Marks a pod the node will not run as Failed, with the admission's reason and message.
async fn reject(kubelet: &Kubelet, pod: &Pod, reason: &str, message: &str) {
    kubelet.recorder.event(pod, None, crate::kuberuntime::events::WARNING, reason, message).await;
    let status = serde_json::json!({ "phase": "Failed", "reason": reason, "message": message });
    if let Err(e) = crate::status::update(&kubelet.client, pod, &status).await {
        tracing::warn!(pod = %pod_uid(pod), error = %e, "failed to reject a pod");
    }
}

/// Compares the runtime's sandboxes and containers with the last relist and wakes the workers of pods
/// whose state changed (upstream's generic PLEG).
async fn relist(kubelet: &Kubelet, workers: &HashMap<String, Worker>, last: &mut HashMap<String, (String, String)>) {
    let mut now: HashMap<String, (String, String)> = HashMap::new();
    match kubelet.runtime.list_pod_sandboxes().await {
        Ok(sandboxes) => {
            for s in sandboxes {
                let state = if s.state == SandboxState::Ready { "ready" } else { "notready" };
                now.insert(s.id, (s.uid, state.to_string()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "failed to relist pod sandboxes");
            return;
        }
    }
    match kubelet.runtime.list_containers(&ContainerFilter::default()).await {
        Ok(containers) => {
            for c in containers {
                let uid = c.labels.get(labels::POD_UID).cloned().unwrap_or_default();
                let state = match c.state {
                    ContainerState::Created => "created",
                    ContainerState::Running => "running",
                    ContainerState::Exited => "exited",
                    ContainerState::Unknown => "unknown",
                };
                now.insert(c.id, (uid, state.to_string()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "failed to relist containers");
            return;
        }
    }
    let mut changed: HashSet<&str> = HashSet::new();
    for (id, (uid, state)) in &now {
        if last.get(id).is_none_or(|(_, s)| s != state) {
            changed.insert(uid);
        }
    }
    for (id, (uid, _)) in last.iter() {
        if !now.contains_key(id) {
            changed.insert(uid);
        }
    }
    for uid in changed {
        if let Some(w) = workers.get(uid) {
            w.notify.notify_one();
        }
    }
    *last = now;
}

/// Removes sandboxes, volume and log folders of pods that have no worker (the pod is gone from the API).
async fn cleanup_orphans(kubelet: &Kubelet, workers: &HashMap<String, Worker>) {
    let mut orphans: HashSet<String> = HashSet::new();
    if let Ok(sandboxes) = kubelet.runtime.list_pod_sandboxes().await {
        orphans.extend(sandboxes.into_iter().map(|s| s.uid).filter(|u| !workers.contains_key(u)));
    }
    if let Ok(entries) = std::fs::read_dir(kubelet.config.pods_root()) {
        for e in entries.flatten() {
            if let Some(uid) = e.file_name().to_str()
                && !workers.contains_key(uid)
            {
                orphans.insert(uid.to_string());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(kubelet.config.log_root()) {
        for e in entries.flatten() {
            if let Some(uid) = e.file_name().to_str().and_then(|n| n.rsplit_once('_')).map(|(_, uid)| uid.to_string())
                && !workers.contains_key(&uid)
            {
                orphans.insert(uid);
            }
        }
    }
    for uid in orphans {
        tracing::info!(pod = %uid, "cleaning up the sandboxes and volumes of a pod that no longer exists");
        kubelet.cleanup_pod(&uid).await;
    }
}

/// One pod's worker: syncs until the pod is deleted, then stops it, cleans up and lets the API remove it.
async fn pod_worker(kubelet: Arc<Kubelet>, mut rx: watch::Receiver<Option<Arc<Pod>>>, notify: Arc<Notify>) {
    let Some(mut pod) = rx.borrow_and_update().clone() else { return };
    let uid = pod_uid(&pod);
    let mut state = PodState::new(notify.clone());
    let shutdown = kubelet.shutdown.clone();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let current = rx.borrow_and_update().clone();
        let removed = current.is_none();
        if let Some(p) = current {
            pod = p;
        }
        if removed || pod.metadata.deletion_timestamp.is_some() {
            // Terminating: stop everything, then terminated: clean up and remove the API object.
            kubelet.kill_pod(&pod, grace_period(&pod)).await;
            kubelet.cleanup_pod(&uid).await;
            if !removed {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                let api: Api<Pod> = Api::namespaced(kubelet.client.clone(), ns);
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..Default::default()
                };
                match api.delete(pod.metadata.name.as_deref().unwrap_or(""), &dp).await {
                    Ok(_) => tracing::info!(pod = %uid, "pod terminated and deleted"),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => tracing::warn!(pod = %uid, error = %e, "failed to delete a terminated pod"),
                }
            }
            return;
        }
        let wake = kubelet.sync_pod(&pod, &mut state).await;
        kubelet.update_status(&pod, &mut state).await;
        let resync = kubelet.config.sync_frequency;
        let sleep = wake.map_or(resync, |w| w.min(resync));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
            _ = notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
