//! The pod sync over the runtime trait (upstream's `kuberuntime_manager`): what the runtime has for a pod,
//! `sync_pod` (volumes, sandbox, init containers in order with sidecars, app containers, restarts with
//! back-off, probe-driven kills, hooks) and `kill_pod` (preStop, graceful stop, sandbox teardown).

pub mod events;
mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use skiff_runtime::cri::{
    ContainerFilter, ContainerState, ContainerStatus, PodSandboxStatus, RuntimeError, RuntimeService, SandboxState,
    labels,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::KubeletConfig;
use crate::container_config::NodeContext;
pub use crate::env::find_container;
use crate::images::ImageManager;
use crate::probes::ProbeManager;
use crate::run::Deps;
use crate::status;
use crate::volumes::{MountedVolumes, VolumeManager};
use events::{NORMAL, Recorder, WARNING};

/// The shortest grace period a container is stopped with (upstream's `minimumGracePeriodInSeconds`).
const MIN_GRACE: Duration = Duration::from_secs(2);

/// What the runtime has for one pod: its sandboxes and containers, newest first.
#[derive(Clone, Debug, Default)]
pub struct PodRuntime {
    pub sandboxes: Vec<PodSandboxStatus>,
    pub containers: Vec<ContainerStatus>,
}

impl PodRuntime {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&PodSandboxStatus> {
        self.sandboxes.first()
    }

    /// Every instance of the container `name`, newest first.
    pub fn instances(&self, name: &str) -> Vec<&ContainerStatus> {
        self.containers.iter().filter(|c| c.name == name).collect()
    }

    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().find(|c| c.name == name)
    }

    pub fn running(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.containers.iter().filter(|c| c.state == ContainerState::Running)
    }
}

/// What a pod worker keeps between syncs of its pod.
pub struct PodState {
    /// Why a container is not running after the last sync (waiting reason, message), by name.
    pub waiting: HashMap<String, (String, String)>,
    pub volumes: Option<MountedVolumes>,
    /// Termination messages read once per exited container, by runtime id.
    pub messages: HashMap<String, String>,
    /// The status last written (or found equal), to write only changes.
    pub last_status: Option<serde_json::Value>,
    /// Wakes the pod's worker (probe results, runtime changes).
    pub notify: Arc<Notify>,
    /// The runtime's view at the end of the last sync, for the status that follows it.
    pub view: Option<PodRuntime>,
}

impl PodState {
    pub fn new(notify: Arc<Notify>) -> Self {
        PodState {
            waiting: HashMap::new(),
            volumes: None,
            messages: HashMap::new(),
            last_status: None,
            notify,
            view: None,
        }
    }
}

/// Everything a pod sync needs, shared by all pod workers.
pub struct Kubelet {
    pub config: Arc<KubeletConfig>,
    pub client: Client,
    pub runtime: Arc<dyn RuntimeService>,
    pub images: ImageManager,
    pub volumes: VolumeManager,
    pub node: NodeContext,
    pub recorder: Arc<Recorder>,
    pub probes: Arc<ProbeManager>,
    pub backoff: Backoff,
    pub shutdown: CancellationToken,
}

pub fn pod_uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The pod's grace period: the deletion's, else `terminationGracePeriodSeconds` (30).
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

impl Kubelet {
    pub fn new(config: Arc<KubeletConfig>, deps: Deps, shutdown: CancellationToken) -> Self {
        let recorder = Arc::new(Recorder::new(deps.client.clone(), config.node_name.clone()));
        Kubelet {
            images: ImageManager::new(
                deps.images.clone(),
                deps.client.clone(),
                recorder.clone(),
                Backoff::new(config.backoff_initial, config.backoff_max),
            ),
            volumes: VolumeManager::new(config.pods_root(), deps.client.clone()),
            node: NodeContext {
                node_name: config.node_name.clone(),
                node_ip: config.node_ip,
                cluster_dns: config.cluster_dns.clone(),
                cluster_domain: config.cluster_domain.clone(),
                log_root: config.log_root(),
                cgroup_parent: config.cgroup_parent.clone(),
            },
            probes: Arc::new(ProbeManager::new(deps.runtime.clone(), recorder.clone())),
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            recorder,
            client: deps.client,
            runtime: deps.runtime,
            config,
            shutdown,
        }
    }

    /// The runtime's sandboxes and containers of the pod with `uid`, newest first.
    pub async fn pod_runtime(&self, uid: &str) -> Result<PodRuntime, RuntimeError> {
        let mut sandboxes: Vec<PodSandboxStatus> =
            self.runtime.list_pod_sandboxes().await?.into_iter().filter(|s| s.uid == uid).collect();
        sandboxes.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.attempt.cmp(&a.attempt)));
        let filter = ContainerFilter {
            labels: [(labels::POD_UID.to_string(), uid.to_string())].into_iter().collect(),
            ..Default::default()
        };
        let mut containers = self.runtime.list_containers(&filter).await?;
        containers.sort_by(|a, b| b.attempt.cmp(&a.attempt).then(b.created_at.cmp(&a.created_at)));
        Ok(PodRuntime { sandboxes, containers })
    }

    /// Stops one container: its preStop hook within the grace period, then the runtime's stop with what is
    /// left (at least 2 s).
    pub async fn kill_container(
        &self,
        pod: &Pod,
        container: &ContainerStatus,
        grace: Duration,
        message: Option<String>,
        run_pre_stop: bool,
    ) {
        let spec = find_container(pod, &container.name);
        let started = Instant::now();
        let message = message.unwrap_or_else(|| format!("Stopping container {}", container.name));
        self.recorder.event(pod, Some(&container.name), NORMAL, "Killing", message).await;
        if run_pre_stop
            && container.state == ContainerState::Running
            && let Some(spec) = spec
            && let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        {
            let pod_ip = self.pod_ip(pod).await;
            if let Err(msg) =
                crate::lifecycle::run_handler(self.runtime.as_ref(), hook, spec, &container.id, pod_ip, grace).await
            {
                self.recorder.event(pod, Some(&container.name), WARNING, "FailedPreStopHook", msg).await;
            }
        }
        let left = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
        if let Err(e) = self.runtime.stop_container(&container.id, left).await {
            tracing::warn!(container = %container.id, error = %e, "failed to stop a container");
        }
        self.probes.remove(&container.id);
    }

    /// The pod's IP as its sandbox has it (the node's for host networking).
    async fn pod_ip(&self, pod: &Pod) -> Option<std::net::IpAddr> {
        if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
            return Some(self.config.node_ip);
        }
        let rt = self.pod_runtime(&pod_uid(pod)).await.ok()?;
        rt.sandbox().and_then(|s| s.ip)
    }

    /// Stops every container of the pod (app containers and regular init containers first, then sidecars
    /// in reverse order, as upstream) and its sandboxes.
    pub async fn kill_pod(&self, pod: &Pod, grace: Duration) {
        let uid = pod_uid(pod);
        let rt = match self.pod_runtime(&uid).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(pod = %uid, error = %e, "failed to list the pod's containers to stop them");
                return;
            }
        };
        let sidecars: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| status::is_sidecar(c))
            .map(|c| c.name.clone())
            .collect();
        let (late, first): (Vec<&ContainerStatus>, Vec<&ContainerStatus>) =
            rt.running().partition(|c| sidecars.contains(&c.name));
        futures::future::join_all(first.into_iter().map(|c| self.kill_container(pod, c, grace, None, true))).await;
        let mut late = late;
        late.sort_by_key(|c| std::cmp::Reverse(sidecars.iter().position(|n| n == &c.name)));
        for c in late {
            self.kill_container(pod, c, grace, None, true).await;
        }
        for s in rt.sandboxes.iter().filter(|s| s.state == SandboxState::Ready) {
            if let Err(e) = self.runtime.stop_pod_sandbox(&s.id).await {
                tracing::warn!(sandbox = %s.id, error = %e, "failed to stop a pod sandbox");
            }
        }
        self.probes.retain_pod(&uid, &[]);
    }

    /// Removes everything left of a pod on the node: sandboxes (with their containers), logs, volumes,
    /// back-offs.
    pub async fn cleanup_pod(&self, uid: &str) {
        if let Ok(sandboxes) = self.runtime.list_pod_sandboxes().await {
            for s in sandboxes.into_iter().filter(|s| s.uid == uid) {
                if let Err(e) = self.runtime.stop_pod_sandbox(&s.id).await {
                    tracing::warn!(sandbox = %s.id, error = %e, "failed to stop a pod sandbox");
                }
                if let Err(e) = self.runtime.remove_pod_sandbox(&s.id).await {
                    tracing::warn!(sandbox = %s.id, error = %e, "failed to remove a pod sandbox");
                }
            }
        }
        // The pod's log folder (`<log_root>/<namespace>_<name>_<uid>`) goes with the pod.
        if let Ok(entries) = std::fs::read_dir(self.config.log_root()) {
            for e in entries.flatten() {
                if e.file_name().to_str().is_some_and(|n| n.ends_with(&format!("_{uid}")))
                    && let Err(err) = std::fs::remove_dir_all(e.path())
                {
                    tracing::warn!(path = %e.path().display(), error = %err, "failed to remove a pod's logs");
                }
            }
        }
        if let Err(e) = self.volumes.teardown(uid).await {
            tracing::warn!(pod = %uid, error = %e, "failed to tear down the pod's volumes");
        }
        self.backoff.forget_prefix(&format!("{uid}/"));
        self.images.forget_pod(uid);
        self.recorder.forget_pod(uid);
        self.probes.retain_pod(uid, &[]);
    }

    /// Computes the pod's status and writes it when it changed. Pods the API already reports as finished
    /// are left alone.
    pub async fn update_status(&self, pod: &Pod, state: &mut PodState) {
        let old_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(old_phase, Some("Succeeded") | Some("Failed")) {
            return;
        }
        let uid = pod_uid(pod);
        let rt = match state.view.take() {
            Some(rt) => rt,
            None => match self.pod_runtime(&uid).await {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!(pod = %uid, error = %e, "failed to read the pod's containers for its status");
                    return;
                }
            },
        };
        let pod_dir = self.volumes.pod_dir(&uid);
        for c in rt.containers.iter().filter(|c| c.state == ContainerState::Exited) {
            if !state.messages.contains_key(&c.id)
                && let Some(spec) = find_container(pod, &c.name)
            {
                let path = crate::container_config::termination_message_path(&pod_dir, &c.name, c.attempt);
                state.messages.insert(c.id.clone(), status::termination_message(&path, spec, c));
            }
        }
        state.messages.retain(|id, _| rt.containers.iter().any(|c| &c.id == id));
        let input = status::StatusInput {
            pod,
            runtime: &rt,
            waiting: &state.waiting,
            probes: &self.probes,
            messages: &state.messages,
            node_ip: self.config.node_ip,
        };
        let new = status::generate(&input);
        let value = match serde_json::to_value(&new) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "failed to encode a pod status");
                return;
            }
        };
        if state.last_status.as_ref() == Some(&value) {
            return;
        }
        let current = pod.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
        if state.last_status.is_none() && current.as_ref() == Some(&value) {
            state.last_status = Some(value);
            return;
        }
        match status::update(&self.client, pod, &value).await {
            Ok(()) => state.last_status = Some(value),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(pod = %uid, error = %e, "failed to update the pod status"),
        }
    }
}
