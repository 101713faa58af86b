//! The pod status the kubelet reports (upstream's `generateAPIPodStatus` and status manager): phase per
//! `getPhase`, the pod conditions with transition times, container states with reasons, restart counts,
//! termination messages, IPs and QoS class; written through `pods/status` only when it changed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_runtime::cri::{self, ContainerState as RtState};

use crate::kuberuntime::PodRuntime;
use crate::probes::ProbeManager;

/// Container id as reported in status: `skiff://<id>`.
pub fn container_id(id: &str) -> String {
    format!("skiff://{id}")
}

fn time(t: std::time::SystemTime) -> Time {
    Time(jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Reads a container's termination message: its `terminationMessagePath` file (up to 4 KiB), else with
/// `FallbackToLogsOnError` and a failure, the last 80 lines (at most 2 KiB) of its log.
pub fn termination_message(host_file: &Path, container: &Container, status: &cri::ContainerStatus) -> String {
    let mut message = std::fs::read(host_file)
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).to_string())
        .unwrap_or_default();
    if message.is_empty()
        && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        && status.exit_code.unwrap_or(0) != 0
    {
        message = log_tail(&status.log_path, 80, 2048);
    }
    message
}

/// The last `lines` lines (at most `max_bytes`) of a CRI-format log, as the container printed them.
pub fn log_tail(path: &Path, lines: usize, max_bytes: usize) -> String {
    let Ok(data) = std::fs::read(path) else { return String::new() };
    let mut out = Vec::new();
    for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(rec) = skiff_runtime::logs::parse_line(raw) {
            out.extend_from_slice(&rec.content);
            if !rec.partial {
                out.push(b'\n');
            }
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let all: Vec<&str> = text.lines().collect();
    let mut tail = all[all.len().saturating_sub(lines)..].join("\n");
    if text.ends_with('\n') && !tail.is_empty() {
        tail.push('\n');
    }
    if tail.len() > max_bytes {
        let mut cut = tail.len() - max_bytes;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    tail
}

/// What the status of a pod is computed from.
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a PodRuntime,
    /// Why a container is not running as the last sync found it (reason, message), by container name.
    pub waiting: &'a HashMap<String, (String, String)>,
    pub probes: &'a ProbeManager,
    /// Termination messages by runtime container id.
    pub messages: &'a HashMap<String, String>,
    pub node_ip: IpAddr,
}

fn terminated(c: &cri::ContainerStatus, messages: &HashMap<String, String>) -> ContainerState {
    let code = c.exit_code.unwrap_or(0);
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let message = messages
        .get(&c.id)
        .cloned()
        .filter(|m| !m.is_empty())
        .or_else(|| Some(c.message.clone()).filter(|m| !m.is_empty()));
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason),
            message,
            started_at: c.started_at.map(time),
            finished_at: c.finished_at.map(time),
            container_id: Some(container_id(&c.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

fn container_statuses(
    input: &StatusInput,
    containers: &[Container],
    default_reason: &str,
    init: bool,
) -> Vec<ContainerStatus> {
    let mut out = Vec::new();
    for spec in containers {
        let instances = input.runtime.instances(&spec.name);
        let latest = instances.first().copied();
        let previous = instances.get(1).copied();
        let previous_terminated =
            previous.filter(|p| p.state == RtState::Exited).map(|p| terminated(p, input.messages));
        let (state, last_state) = match (input.waiting.get(&spec.name), latest) {
            (Some((reason, message)), Some(l)) if l.state == RtState::Exited => {
                (waiting(reason, message), Some(terminated(l, input.messages)))
            }
            (Some((reason, message)), _) if latest.is_none_or(|l| l.state != RtState::Running) => {
                (waiting(reason, message), previous_terminated.clone())
            }
            (_, Some(l)) => match l.state {
                RtState::Running => (
                    ContainerState {
                        running: Some(ContainerStateRunning { started_at: l.started_at.map(time) }),
                        ..Default::default()
                    },
                    previous_terminated.clone(),
                ),
                RtState::Exited => (terminated(l, input.messages), previous_terminated.clone()),
                _ => (waiting("ContainerCreating", ""), previous_terminated.clone()),
            },
            (_, None) => (waiting(default_reason, ""), None),
        };
        let running = latest.filter(|l| l.state == RtState::Running && state.running.is_some());
        let started = running.is_some_and(|l| input.probes.started(&l.id, spec));
        let ready = if init && !is_sidecar(spec) {
            state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
        } else {
            running.is_some_and(|l| input.probes.ready(&l.id, spec))
        };
        out.push(ContainerStatus {
            name: spec.name.clone(),
            image: latest.map(|l| l.image.clone()).unwrap_or_else(|| spec.image.clone().unwrap_or_default()),
            image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
            container_id: latest.map(|l| container_id(&l.id)),
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ready,
            started: Some(started),
            restart_count: latest.map(|l| l.attempt as i32).unwrap_or(0),
            ..Default::default()
        });
    }
    out
}

/// Upstream's `getPhase` over the computed statuses.
pub fn phase(pod: &Pod, init: &[ContainerStatus], app: &[ContainerStatus]) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = restart_policy(pod);
    let init_specs = spec.init_containers.unwrap_or_default();
    let mut pending_init = false;
    for (s, st) in init_specs.iter().zip(init) {
        let state = st.state.clone().unwrap_or_default();
        if is_sidecar(s) {
            // A sidecar holds the pod until it started; one that terminated was stopped with the pod.
            if !st.started.unwrap_or(false) && state.terminated.is_none() {
                pending_init = true;
            }
            continue;
        }
        match &state.terminated {
            Some(t) if t.exit_code == 0 => {}
            Some(_) if policy == "Never" => return "Failed",
            _ => {
                let failed_last =
                    st.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some_and(|t| t.exit_code != 0);
                if state.waiting.is_some() && failed_last && policy == "Never" {
                    return "Failed";
                }
                pending_init = true;
            }
        }
    }
    if pending_init {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for st in app {
        let state = st.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        }
    } else {
        "Pending"
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(Into::into) },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

/// The Ready condition: containers ready and every `readinessGates` condition True (upstream's
/// `GeneratePodReadyCondition`).
fn ready_condition(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    old: &PodStatus,
    containers_ready: bool,
    reason: &str,
    message: Option<String>,
) -> PodCondition {
    if !containers_ready {
        return condition("Ready", false, Some(reason), message);
    }
    let mut missing = Vec::new();
    let mut not_true = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        match old.conditions.iter().flatten().find(|c| c.type_ == gate.condition_type) {
            None => missing.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => not_true.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    let problems: Vec<String> = missing.into_iter().chain(not_true).collect();
    if problems.is_empty() {
        condition("Ready", true, None, None)
    } else {
        condition("Ready", false, Some("ReadinessGatesNotReady"), Some(problems.join(", ")))
    }
}

/// Computes the pod's status from the runtime's view and the last sync's outcome.
pub fn generate(input: &StatusInput) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let default_reason = if init_specs.is_empty() { "ContainerCreating" } else { "PodInitializing" };
    let init = container_statuses(input, &init_specs, default_reason, true);
    let app = container_statuses(input, &spec.containers, default_reason, false);
    let mut phase = phase(pod, &init, &app).to_string();
    if matches!(old.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        phase = old.phase.clone().unwrap_or_default();
    }

    let sandbox = input.runtime.sandbox();
    let sandbox_ready = sandbox.is_some_and(|s| s.state == cri::SandboxState::Ready);
    let incomplete: Vec<String> = init_specs
        .iter()
        .zip(&init)
        .filter(|(s, st)| {
            if is_sidecar(s) {
                let terminated = st.state.as_ref().is_some_and(|x| x.terminated.is_some());
                !st.started.unwrap_or(false) && !terminated
            } else {
                !st.ready
            }
        })
        .map(|(s, _)| s.name.clone())
        .collect();
    let initialized = incomplete.is_empty()
        || matches!(phase.as_str(), "Running" | "Succeeded")
            && old.conditions.iter().flatten().any(|c| c.type_ == "Initialized" && c.status == "True");
    let unready: Vec<String> = init_specs
        .iter()
        .zip(&init)
        .filter(|(s, st)| is_sidecar(s) && !st.ready)
        .map(|(s, _)| s.name.clone())
        .chain(app.iter().filter(|st| !st.ready).map(|st| st.name.clone()))
        .collect();
    let finished = phase == "Succeeded" || phase == "Failed";
    let list = |names: &[String]| format!("[{}]", names.join(" "));
    let (ready_reason, ready_message) = if finished && phase == "Succeeded" {
        ("PodCompleted", None)
    } else {
        ("ContainersNotReady", Some(format!("containers with unready status: {}", list(&unready))))
    };
    let containers_ready = unready.is_empty() && !finished;
    let mut ours = vec![
        condition("PodReadyToStartContainers", sandbox_ready, None, None),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: {}", list(&incomplete))),
        ),
        ready_condition(&spec, &old, containers_ready, ready_reason, ready_message.clone()),
        condition("ContainersReady", containers_ready, Some(ready_reason), ready_message),
    ];
    if !old.conditions.iter().flatten().any(|c| c.type_ == "PodScheduled") {
        ours.push(condition("PodScheduled", true, None, None));
    }
    let now = Time(jiff::Timestamp::now());
    for c in &mut ours {
        let prev = old.conditions.iter().flatten().find(|o| o.type_ == c.type_);
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone().or(Some(now.clone())),
            _ => Some(now.clone()),
        };
        c.last_probe_time = None;
    }
    let mut conditions = ours.clone();
    for c in old.conditions.iter().flatten() {
        if !ours.iter().any(|o| o.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }

    let host_network = spec.host_network.unwrap_or(false);
    let pod_ip = if host_network {
        Some(input.node_ip.to_string())
    } else {
        sandbox.and_then(|s| s.ip).map(|ip| ip.to_string()).or(old.pod_ip.clone())
    };
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(input.node_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: input.node_ip.to_string() }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: Some(crate::container_config::pod_qos(pod).as_str().into()),
        container_statuses: Some(app),
        init_container_statuses: (!init_specs.is_empty()).then_some(init),
        nominated_node_name: old.nominated_node_name.clone(),
        message: None,
        reason: None,
        ..Default::default()
    }
}

/// The strategic merge patch that makes the pod's status `status`: conditions merge by type (so conditions
/// others set, such as readiness gates, survive a write from a stale view), the container status and IP
/// lists are replaced whole, and fields the kubelet leaves unset are cleared.
pub fn status_patch(status: &serde_json::Value) -> serde_json::Value {
    let mut status = status.clone();
    for key in ["message", "reason"] {
        if status.get(key).is_none() {
            status[key] = serde_json::Value::Null;
        }
    }
    for key in ["containerStatuses", "initContainerStatuses", "podIPs", "hostIPs"] {
        if let Some(list) = status.get_mut(key).and_then(|v| v.as_array_mut()) {
            list.insert(0, json!({ "$patch": "replace" }));
        }
    }
    if let Some(conditions) = status.get_mut("conditions").and_then(|v| v.as_array_mut()) {
        for c in conditions {
            for f in ["reason", "message"] {
                if c.get(f).is_none() {
                    c[f] = serde_json::Value::Null;
                }
            }
        }
    }
    json!({ "status": status })
}

/// Writes `status` through `pods/status`.
pub async fn update(client: &Client, pod: &Pod, status: &serde_json::Value) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status_patch(status))).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("2024-01-01T00:00:00.000000000Z stderr F line {i}\n"));
        }
        text.push_str("2024-01-01T00:00:00.000000000Z stdout P part\n2024-01-01T00:00:00.000000000Z stdout F ial\n");
        std::fs::write(&p, text).unwrap();
        let tail = log_tail(&p, 80, 2048);
        assert!(tail.starts_with("line 21\n"), "{tail}");
        assert!(tail.ends_with("line 99\npartial\n"), "{tail}");
        assert!(log_tail(&p, 80, 10).len() <= 10);
    }
}
