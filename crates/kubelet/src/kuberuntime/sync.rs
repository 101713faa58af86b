//! `sync_pod`: one pass that moves a pod towards its spec (upstream's `computePodActions` + `SyncPod`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodIP};
use skiff_runtime::cri::{self, ContainerState, ContainerStatus, SandboxState, labels};

use super::events::{NORMAL, WARNING};
use super::{Kubelet, PodRuntime, PodState, find_container, grace_period, pod_uid};
use crate::backoff::go_duration;
use crate::container_config::{annotations, container_config, container_hash, sandbox_config};
use crate::status::{is_sidecar, restart_policy};

/// Keeps the soonest of the wake-ups asked for during a sync.
#[derive(Default)]
struct Wake(Option<Duration>);

impl Wake {
    fn at(&mut self, d: Duration) {
        self.0 = Some(self.0.map_or(d, |w| w.min(d)));
    }
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}

/// Where a sync got to with the pod's containers.
struct Target<'a> {
    pod: &'a Pod,
    /// The pod with `status.podIP(s)` of its sandbox, for `fieldRef`s.
    pod_with_ip: Pod,
    sandbox_id: String,
    sandbox_config: cri::PodSandboxConfig,
}

impl Kubelet {
    /// Whether every container of the pod is done and none will be restarted (the pod is Succeeded or
    /// Failed); such a pod's sandbox is stopped and nothing runs again.
    fn pod_finished(&self, pod: &Pod, rt: &PodRuntime) -> bool {
        let policy = restart_policy(pod);
        if policy == "Always" {
            return false;
        }
        let Some(spec) = &pod.spec else { return false };
        let init_failed = spec.init_containers.iter().flatten().filter(|c| !is_sidecar(c)).any(|c| {
            rt.latest(&c.name).is_some_and(|l| {
                l.state == ContainerState::Exited && l.exit_code.unwrap_or(0) != 0 && policy == "Never"
            })
        });
        if init_failed {
            return true;
        }
        spec.containers.iter().all(|c| {
            rt.latest(&c.name)
                .is_some_and(|l| l.state == ContainerState::Exited && !should_restart(policy, l.exit_code.unwrap_or(0)))
        })
    }

    /// One sync of a pod that should be running. Returns when it wants to be synced again at the latest
    /// (back-off expiry, retry of a failed step).
    pub async fn sync_pod(&self, pod: &Arc<Pod>, st: &mut PodState) -> Option<Duration> {
        let uid = pod_uid(pod);
        let retry = self.config.backoff_initial;
        st.waiting.clear();
        st.view = None;
        let mut rt = match self.pod_runtime(&uid).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(pod = %uid, error = %e, "failed to list the pod's containers");
                return Some(retry);
            }
        };
        let grace = grace_period(pod);

        let terminal =
            matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"));
        if terminal || self.pod_finished(pod, &rt) {
            // Sidecars end with the pod; the sandbox is stopped, the exited containers kept for status and logs.
            for c in rt.running() {
                self.kill_container(pod, c, grace, None, true).await;
            }
            for s in rt.sandboxes.iter().filter(|s| s.state == SandboxState::Ready) {
                if let Err(e) = self.runtime.stop_pod_sandbox(&s.id).await {
                    tracing::warn!(sandbox = %s.id, error = %e, "failed to stop the sandbox of a finished pod");
                }
            }
            self.probes.retain_pod(&uid, &[]);
            return None;
        }

        // Volumes come first: no container starts before all of them are ready.
        if st.volumes.is_none() {
            match self.volumes.setup(pod).await {
                Ok(v) => st.volumes = Some(v),
                Err(e) => {
                    self.recorder.event(pod, None, WARNING, "FailedMount", e.to_string()).await;
                    return Some(retry);
                }
            }
        } else if let Err(e) = self.volumes.refresh(pod).await {
            tracing::warn!(pod = %uid, error = %e, "failed to refresh the pod's volumes");
        }

        let mut sandbox_cfg = match sandbox_config(pod, &self.node).await {
            Ok(c) => c,
            Err(e) => {
                self.recorder
                    .event(pod, None, WARNING, "FailedCreatePodSandBox", format!("Failed to create pod sandbox: {e}"))
                    .await;
                return Some(retry);
            }
        };
        for (k, v) in [
            (labels::POD_UID, uid.clone()),
            (labels::POD_NAME, pod.metadata.name.clone().unwrap_or_default()),
            (labels::POD_NAMESPACE, pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())),
        ] {
            sandbox_cfg.labels.entry(k.to_string()).or_insert(v);
        }
        let sandbox = rt.sandbox().cloned();
        let sandbox = match sandbox {
            Some(s) if s.state == SandboxState::Ready => s,
            old => {
                if let Some(old) = &old {
                    if restart_policy(pod) == "Never" && !rt.containers.is_empty() {
                        // Upstream does not recreate the sandbox of a Never pod whose containers already ran.
                        return None;
                    }
                    self.recorder
                        .event(
                            pod,
                            None,
                            NORMAL,
                            "SandboxChanged",
                            "Pod sandbox changed, it will be killed and re-created.",
                        )
                        .await;
                    for c in rt.running() {
                        self.kill_container(pod, c, grace, None, false).await;
                    }
                    if let Err(e) = self.runtime.stop_pod_sandbox(&old.id).await {
                        tracing::warn!(sandbox = %old.id, error = %e, "failed to stop a dead sandbox");
                    }
                    sandbox_cfg.attempt = old.attempt + 1;
                }
                let id = match self.runtime.run_pod_sandbox(&sandbox_cfg).await {
                    Ok(id) => id,
                    Err(e) => {
                        self.recorder
                            .event(
                                pod,
                                None,
                                WARNING,
                                "FailedCreatePodSandBox",
                                format!("Failed to create pod sandbox: {e}"),
                            )
                            .await;
                        return Some(retry);
                    }
                };
                match self.runtime.pod_sandbox_status(&id).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(sandbox = %id, error = %e, "failed to read a new sandbox");
                        return Some(retry);
                    }
                }
            }
        };
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let pod_ip = if host_network { Some(self.config.node_ip) } else { sandbox.ip };
        let mut pod_with_ip = (**pod).clone();
        {
            let status = pod_with_ip.status.get_or_insert_with(Default::default);
            status.pod_ip = pod_ip.map(|ip| ip.to_string());
            status.pod_ips = pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]);
            status.host_ip = Some(self.config.node_ip.to_string());
        }
        let target = Target { pod, pod_with_ip, sandbox_id: sandbox.id.clone(), sandbox_config: sandbox_cfg };

        // Containers to kill: failed liveness/startup probes, changed definitions.
        let mut restart_now: Vec<String> = Vec::new();
        for c in rt.running().cloned().collect::<Vec<_>>() {
            let Some(spec) = find_container(pod, &c.name) else {
                self.kill_container(
                    pod,
                    &c,
                    grace,
                    Some(format!("Stopping container {} not in the pod's spec", c.name)),
                    true,
                )
                .await;
                continue;
            };
            let message = if let Some(kind) = self.probes.failed(&c.id) {
                Some(format!("Container {} failed {} probe, will be restarted", c.name, kind.name().to_lowercase()))
            } else if c.annotations.get(annotations::CONTAINER_HASH).is_some_and(|h| *h != container_hash(spec)) {
                Some(format!("Container {} definition changed, will be restarted", c.name))
            } else {
                None
            };
            if let Some(message) = message {
                self.kill_container(pod, &c, grace, Some(message), true).await;
                restart_now.push(c.name.clone());
            }
        }
        if !restart_now.is_empty() {
            match self.pod_runtime(&uid).await {
                Ok(r) => rt = r,
                Err(_) => return Some(retry),
            }
        }

        let mut wake = Wake::default();
        let policy = restart_policy(pod).to_string();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut initialized = true;
        for c in spec.init_containers.iter().flatten() {
            let latest = rt.latest(&c.name).cloned();
            if is_sidecar(c) {
                let started = match &latest {
                    Some(l) if l.state == ContainerState::Running => self.probes.started(&l.id, c),
                    _ => {
                        let ok =
                            self.start_container(&target, c, latest.as_ref(), &rt, st, &mut wake, &restart_now).await;
                        ok && c.startup_probe.is_none()
                    }
                };
                if !started {
                    initialized = false;
                    break;
                }
                continue;
            }
            match &latest {
                // A completion counts in the current sandbox only: a recreated sandbox runs them again.
                Some(l) if l.state == ContainerState::Exited && l.exit_code == Some(0) => {
                    if l.sandbox_id == target.sandbox_id {
                        continue;
                    }
                    self.start_container(&target, c, latest.as_ref(), &rt, st, &mut wake, &restart_now).await;
                }
                Some(l) if l.state == ContainerState::Exited => {
                    if should_restart(&policy, l.exit_code.unwrap_or(1)) {
                        self.start_container(&target, c, latest.as_ref(), &rt, st, &mut wake, &restart_now).await;
                    }
                }
                Some(l) if l.state == ContainerState::Running => {}
                _ => {
                    self.start_container(&target, c, latest.as_ref(), &rt, st, &mut wake, &restart_now).await;
                }
            }
            initialized = false;
            break;
        }
        if initialized {
            for c in &spec.containers {
                let latest = rt.latest(&c.name).cloned();
                let start = match &latest {
                    None => true,
                    Some(l) => match l.state {
                        ContainerState::Running => false,
                        ContainerState::Exited => should_restart(&policy, l.exit_code.unwrap_or(0)),
                        ContainerState::Created | ContainerState::Unknown => true,
                    },
                };
                if start {
                    self.start_container(&target, c, latest.as_ref(), &rt, st, &mut wake, &restart_now).await;
                }
            }
        }

        // Probe workers for what runs now; none for what stopped.
        if let Ok(now) = self.pod_runtime(&uid).await {
            let running: Vec<String> = now.running().map(|c| c.id.clone()).collect();
            self.probes.retain_pod(&uid, &running);
            for c in now.running() {
                if let Some(spec) = find_container(pod, &c.name) {
                    self.probes.ensure(
                        pod,
                        spec,
                        &c.id,
                        c.started_at.unwrap_or_else(SystemTime::now),
                        pod_ip,
                        &st.notify,
                        &self.shutdown,
                    );
                }
            }
            st.view = Some(now);
        }
        wake.0
    }

    /// Starts a new instance of `c` (upstream's `startContainer`): restart back-off, image, config, create,
    /// start, postStart. Returns whether it runs; otherwise `st.waiting` says why.
    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        t: &Target<'_>,
        c: &Container,
        latest: Option<&ContainerStatus>,
        rt: &PodRuntime,
        st: &mut PodState,
        wake: &mut Wake,
        restart_now: &[String],
    ) -> bool {
        let pod = t.pod;
        let uid = pod_uid(pod);
        let name = c.name.as_str();
        let retry = self.config.backoff_initial;
        let now = SystemTime::now();
        if let Some(l) = latest.filter(|l| l.state == ContainerState::Exited)
            && !restart_now.iter().any(|n| n == name)
        {
            let key = format!("{uid}/{name}");
            let since = l.finished_at.unwrap_or(now);
            if let Some((delay, left)) = self.backoff.in_backoff_since(&key, since, now) {
                let pod_name = pod.metadata.name.as_deref().unwrap_or("");
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                st.waiting.insert(
                    name.to_string(),
                    (
                        "CrashLoopBackOff".into(),
                        format!(
                            "back-off {} restarting failed container={name} pod={pod_name}_{ns}({uid})",
                            go_duration(delay)
                        ),
                    ),
                );
                self.recorder
                    .event(
                        pod,
                        Some(name),
                        WARNING,
                        "BackOff",
                        format!("Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})"),
                    )
                    .await;
                wake.at(left);
                return false;
            }
            self.backoff.next(&key, now);
        }

        if let Err(e) = self.images.ensure_image(pod, c).await {
            self.recorder.event(pod, Some(name), WARNING, "Failed", format!("Error: {}", e.reason)).await;
            st.waiting.insert(name.to_string(), (e.reason.to_string(), e.message));
            wake.at(retry);
            return false;
        }

        let attempt = latest.map(|l| l.attempt + 1).unwrap_or(0);
        let Some(volumes) = st.volumes.as_ref() else { return false };
        let mut config = match container_config(&t.pod_with_ip, c, attempt, volumes, &self.client, &self.node).await {
            Ok(cfg) => cfg,
            Err(e) => {
                let message = e.to_string();
                self.recorder.event(pod, Some(name), WARNING, "Failed", format!("Error: {message}")).await;
                st.waiting.insert(name.to_string(), ("CreateContainerConfigError".into(), message));
                wake.at(retry);
                return false;
            }
        };
        for (k, v) in &t.sandbox_config.labels {
            if [labels::POD_UID, labels::POD_NAME, labels::POD_NAMESPACE].contains(&k.as_str()) {
                config.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        config.labels.entry(labels::CONTAINER_NAME.to_string()).or_insert_with(|| name.to_string());
        config.labels.insert(labels::POD_UID.to_string(), uid.clone());

        let id = match self.runtime.create_container(&t.sandbox_id, &config, &t.sandbox_config).await {
            Ok(id) => id,
            Err(e) => {
                let message = e.to_string();
                self.recorder.event(pod, Some(name), WARNING, "Failed", format!("Error: {message}")).await;
                st.waiting.insert(name.to_string(), ("CreateContainerError".into(), message));
                wake.at(retry);
                return false;
            }
        };
        self.recorder.event(pod, Some(name), NORMAL, "Created", format!("Created container: {name}")).await;
        if let Err(e) = self.runtime.start_container(&id).await {
            let message = e.to_string();
            self.recorder.event(pod, Some(name), WARNING, "Failed", format!("Error: {message}")).await;
            st.waiting.insert(name.to_string(), ("RunContainerError".into(), message));
            wake.at(retry);
            return false;
        }
        self.recorder.event(pod, Some(name), NORMAL, "Started", format!("Started container {name}")).await;

        // Older instances that do not run go; the one before this start stays for `lastState` and `logs --previous`.
        for old in rt.instances(name).into_iter().skip(1).filter(|o| o.state != ContainerState::Running) {
            if let Err(e) = self.runtime.remove_container(&old.id).await {
                tracing::debug!(container = %old.id, error = %e, "failed to remove an old container");
            }
        }

        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let pod_ip = t.pod_with_ip.status.as_ref().and_then(|s| s.pod_ip.as_ref()).and_then(|ip| ip.parse().ok());
            let grace = grace_period(pod);
            if let Err(msg) = crate::lifecycle::run_handler(self.runtime.as_ref(), hook, c, &id, pod_ip, grace).await {
                self.recorder.event(pod, Some(name), WARNING, "FailedPostStartHook", msg.clone()).await;
                if let Ok(status) = self.runtime.container_status(&id).await {
                    self.kill_container(pod, &status, grace, Some(format!("FailedPostStartHook: {msg}")), false).await;
                }
                st.waiting.insert(name.to_string(), ("PostStartHookError".into(), msg));
                wake.at(retry);
                return false;
            }
        }
        true
    }
}
