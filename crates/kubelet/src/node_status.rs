//! Node registration and status: capacity from `/proc` and `statvfs`, addresses, nodeInfo, the four
//! conditions with heartbeats, posted when something changed and at least every `nodeStatusReportFrequency`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_runtime::cri::{ImageService, RuntimeService};
use tokio_util::sync::CancellationToken;

use crate::config::KubeletConfig;
use crate::kuberuntime::events::{NORMAL, Recorder};
use crate::run::Error;

/// Eviction thresholds upstream uses by default to set the pressure conditions.
const MEMORY_AVAILABLE_MIN_BYTES: u64 = 100 * 1024 * 1024;
const NODEFS_AVAILABLE_MIN_PERCENT: f64 = 10.0;

/// What the node has, read from the host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    pub fs_bytes: u64,
    pub fs_available_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `MemTotal`/`MemAvailable` (kB) from `/proc/meminfo`'s text.
fn parse_meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// `PRETTY_NAME` from `/etc/os-release`'s text.
fn parse_os_release(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim().trim_matches('"').to_string())
}

/// Total and available bytes of the filesystem holding `path`.
fn statvfs(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

impl MachineInfo {
    /// Reads the host; `data_dir` is where ephemeral storage lives.
    pub fn read(data_dir: &Path) -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mut cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count() as u32;
        if cpus == 0 {
            cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let existing =
            std::iter::successors(Some(data_dir), |p| p.parent()).find(|p| p.exists()).unwrap_or(Path::new("/"));
        let (fs_bytes, fs_available_bytes) = statvfs(existing).unwrap_or((0, 0));
        MachineInfo {
            cpus,
            memory_bytes: parse_meminfo(&meminfo, "MemTotal").unwrap_or(0),
            memory_available_bytes: parse_meminfo(&meminfo, "MemAvailable").unwrap_or(u64::MAX),
            fs_bytes,
            fs_available_bytes,
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: parse_os_release(&std::fs::read_to_string("/etc/os-release").unwrap_or_default())
                .unwrap_or_else(|| "Linux".into()),
            machine_id: read_trimmed("/etc/machine-id"),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// Go's `GOARCH` name for this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The labels the kubelet puts on its Node.
pub fn node_labels(config: &KubeletConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), go_arch().to_string()),
    ]);
    labels.extend(config.labels.clone());
    labels
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// The node status for what was read, without heartbeat or transition times (see [`stamp_conditions`]).
pub fn build_status(
    config: &KubeletConfig,
    machine: &MachineInfo,
    runtime_version: Option<&str>,
    kubelet_version: &str,
) -> NodeStatus {
    let mut resources = BTreeMap::new();
    resources.insert("cpu".to_string(), Quantity(machine.cpus.to_string()));
    resources.insert("memory".to_string(), Quantity(format!("{}Ki", machine.memory_bytes / 1024)));
    resources.insert("ephemeral-storage".to_string(), Quantity(format!("{}Ki", machine.fs_bytes / 1024)));
    resources.insert("pods".to_string(), Quantity(config.max_pods.to_string()));
    let memory_pressure = machine.memory_available_bytes < MEMORY_AVAILABLE_MIN_BYTES;
    let disk_pressure = machine.fs_bytes > 0
        && (machine.fs_available_bytes as f64) * 100.0 / (machine.fs_bytes as f64) < NODEFS_AVAILABLE_MIN_PERCENT;
    let ready = match runtime_version {
        Some(_) => condition("Ready", true, "KubeletReady", "kubelet is posting ready status"),
        None => condition("Ready", false, "KubeletNotReady", "container runtime is down"),
    };
    let conditions = vec![
        if memory_pressure {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            condition("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
        },
        if disk_pressure {
            condition("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure")
        } else {
            condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
        },
        condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ready,
    ];
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: config.node_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: config.node_name.clone() },
        ]),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: config.kubelet_port as i32 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: runtime_version.unwrap_or_default().to_string(),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: kubelet_version.to_string(),
            machine_id: machine.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: machine.os_image.clone(),
            system_uuid: machine.system_uuid.clone(),
            swap: None,
        }),
        ..Default::default()
    }
}

/// Sets heartbeat times to now and keeps each condition's transition time from `old` when its status did
/// not change.
pub fn stamp_conditions(status: &mut NodeStatus, old: Option<&NodeStatus>) {
    let now = Time(jiff::Timestamp::now());
    for c in status.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = Some(now.clone());
        let previous = old.and_then(|o| o.conditions.as_ref()).and_then(|cs| cs.iter().find(|o| o.type_ == c.type_));
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status && p.last_transition_time.is_some() => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
    }
}

/// Creates the Node, or adds the kubelet's labels (and podCIDR when unset) to an existing one.
pub async fn register(client: &Client, config: &KubeletConfig) -> Result<Node, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = node_labels(config);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: config.pod_cidr.clone(),
            pod_cidrs: config.pod_cidr.clone().map(|c| vec![c]),
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: None,
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => {
            tracing::info!(node = %config.node_name, "registered the node");
            Ok(n)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = nodes.get(&config.node_name).await.map_err(|e| Error::api("read the node", e))?;
            let mut patch = json!({ "metadata": { "labels": labels } });
            if let Some(cidr) = &config.pod_cidr
                && existing.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()
            {
                patch["spec"] = json!({ "podCIDR": cidr, "podCIDRs": [cidr] });
            }
            let n = nodes
                .patch(&config.node_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::api("update the existing node", e))?;
            tracing::info!(node = %config.node_name, "node already registered; labels updated");
            Ok(n)
        }
        Err(e) => Err(Error::api("register the node", e)),
    }
}

/// Most images listed in the node status (upstream's `nodeStatusMaxImages`).
const MAX_IMAGES: usize = 50;

/// The node's images for `status.images` (used by the scheduler's ImageLocality): the largest first, at
/// most 50, each with its tags and digests as names.
pub fn node_images(mut images: Vec<skiff_runtime::cri::Image>) -> Vec<ContainerImage> {
    images.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
    images
        .into_iter()
        .take(MAX_IMAGES)
        .map(|i| {
            let names: Vec<String> = i.repo_digests.into_iter().chain(i.repo_tags).collect();
            ContainerImage { names: Some(names), size_bytes: Some(i.size as i64) }
        })
        .collect()
}

/// The node event upstream's kubelet records when a condition becomes `status`.
fn condition_event(type_: &str, status: &str) -> Option<&'static str> {
    Some(match (type_, status) {
        ("MemoryPressure", "False") => "NodeHasSufficientMemory",
        ("MemoryPressure", _) => "NodeHasInsufficientMemory",
        ("DiskPressure", "False") => "NodeHasNoDiskPressure",
        ("DiskPressure", _) => "NodeHasDiskPressure",
        ("PIDPressure", "False") => "NodeHasSufficientPID",
        ("PIDPressure", _) => "NodeHasInsufficientPID",
        ("Ready", "True") => "NodeReady",
        ("Ready", _) => "NodeNotReady",
        _ => return None,
    })
}

/// Posts the node status when it changed, and at least every `node_status_report_frequency`; records
/// `Starting` and an event for each condition change, as upstream's kubelet.
pub async fn run(
    config: Arc<KubeletConfig>,
    client: Client,
    runtime: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
    kubelet_version: String,
    shutdown: CancellationToken,
) {
    let recorder = Recorder::new(client.clone(), config.node_name.clone());
    recorder.node_event(NORMAL, "Starting", "Starting kubelet.").await;
    let nodes: Api<Node> = Api::all(client);
    let mut last_posted: Option<(NodeStatus, Instant)> = None;
    let mut ticker = tokio::time::interval(config.node_status_update_frequency);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let machine = {
            let dir = config.data_dir.clone();
            tokio::task::spawn_blocking(move || MachineInfo::read(&dir)).await.unwrap_or_default()
        };
        let runtime_version =
            runtime.version().await.ok().map(|v| format!("{}://{}", v.runtime_name, v.runtime_version));
        let mut status = build_status(&config, &machine, runtime_version.as_deref(), &kubelet_version);
        match images.list_images().await {
            Ok(list) => status.images = Some(node_images(list)),
            Err(e) => tracing::warn!(error = %e, "failed to list images for the node status"),
        }
        let due = match &last_posted {
            None => true,
            Some((old, at)) => *old != status || at.elapsed() >= config.node_status_report_frequency,
        };
        if !due {
            continue;
        }
        let current = match nodes.get(&config.node_name).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "failed to read the node for its status");
                continue;
            }
        };
        let mut stamped = status.clone();
        stamp_conditions(&mut stamped, current.status.as_ref());
        let patch = json!({ "status": stamped });
        match nodes.patch_status(&config.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                for c in status.conditions.iter().flatten() {
                    let before = last_posted
                        .as_ref()
                        .and_then(|(old, _)| old.conditions.as_ref())
                        .and_then(|cs| cs.iter().find(|o| o.type_ == c.type_))
                        .map(|o| o.status.clone());
                    if before.as_deref() != Some(c.status.as_str())
                        && let Some(reason) = condition_event(&c.type_, &c.status)
                    {
                        let message = format!("Node {} status is now: {reason}", config.node_name);
                        recorder.node_event(NORMAL, reason, message).await;
                    }
                }
                last_posted = Some((status, Instant::now()));
            }
            Err(e) => tracing::warn!(error = %e, "failed to update the node status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_files() {
        let meminfo = "MemTotal:        8040048 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(parse_meminfo(meminfo, "MemTotal"), Some(8040048 * 1024));
        assert_eq!(parse_meminfo(meminfo, "MemAvailable"), Some(4000000 * 1024));
        assert_eq!(parse_meminfo(meminfo, "Nope"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(parse_os_release(os).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    }

    #[test]
    fn status_reports_pressure_and_runtime_down() {
        let config = KubeletConfig::new("n1", "10.0.0.5".parse().unwrap(), "/tmp/x");
        let machine = MachineInfo {
            cpus: 2,
            memory_bytes: 4 << 30,
            memory_available_bytes: 50 << 20,
            fs_bytes: 1000 << 20,
            fs_available_bytes: 50 << 20,
            ..Default::default()
        };
        let s = build_status(&config, &machine, None, "v1.33.0");
        let cond = |t: &str| s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap().status.clone();
        assert_eq!(cond("MemoryPressure"), "True");
        assert_eq!(cond("DiskPressure"), "True");
        assert_eq!(cond("Ready"), "False");
        assert_eq!(s.capacity.as_ref().unwrap()["pods"].0, "110");
        assert_eq!(s.capacity.as_ref().unwrap()["memory"].0, "4194304Ki");
    }
}
