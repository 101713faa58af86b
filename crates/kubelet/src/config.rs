//! The kubelet's typed configuration (`KubeletConfiguration`'s fields that Skiff uses) and its defaults.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

/// Everything the kubelet needs to know about its node; `KubeletConfig::new` fills upstream's defaults.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The Node object's name (`--hostname-override`), also its `kubernetes.io/hostname` label.
    pub node_name: String,
    /// The node's InternalIP, hostIP of its pods and podIP of host-network pods.
    pub node_ip: IpAddr,
    /// Root of the kubelet's state: `pods/<uid>` (volumes, termination messages) and `logs/` (container logs).
    pub data_dir: PathBuf,
    /// `clusterDNS`: nameservers written into pods with `dnsPolicy: ClusterFirst`.
    pub cluster_dns: Vec<String>,
    /// `clusterDomain` (`cluster.local`).
    pub cluster_domain: String,
    /// The node's pod range (`spec.podCIDR`), or `None` when the network does not use one.
    pub pod_cidr: Option<String>,
    /// `maxPods`, also the `pods` capacity (110).
    pub max_pods: u32,
    /// Extra node labels (`--node-labels`), e.g. `node-role.kubernetes.io/control-plane: ""`.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`: applied when the Node is created.
    pub taints: Vec<Taint>,
    /// Port reported in `status.daemonEndpoints.kubeletEndpoint` (10250).
    pub kubelet_port: u16,
    /// Cgroup parent handed to containers (the runtime owns what is under it).
    pub cgroup_parent: PathBuf,
    /// How often the node status is computed (`nodeStatusUpdateFrequency`, 10 s); it is posted when it changed.
    pub node_status_update_frequency: Duration,
    /// Longest time between two status posts even without changes (`nodeStatusReportFrequency`, 5 min).
    pub node_status_report_frequency: Duration,
    /// Lease renewal (10 s) and its duration (`nodeLeaseDurationSeconds`, 40).
    pub lease_renew_interval: Duration,
    pub lease_duration_seconds: i32,
    /// Resync of every pod worker without an event (`syncFrequency`; upstream 1 min).
    pub sync_frequency: Duration,
    /// How often the runtime is relisted to notice container changes (PLEG's relist period, 1 s).
    pub pleg_relist_period: Duration,
    /// Cleanup of sandboxes and volumes of pods that no longer exist (housekeeping, 2 s).
    pub housekeeping_interval: Duration,
    /// Container restart and image pull back-off: first delay (10 s) and cap (5 min); an entry is forgotten
    /// after twice the cap without failures (upstream's `hasExpired`).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Where the local-path provisioner's volumes live on this node (`<data-dir>/storage`); released
    /// local-path volumes of this node are removed only under it. `None`: no local-path clean-up.
    pub storage_dir: Option<PathBuf>,
}

impl KubeletConfig {
    /// A configuration with upstream's defaults for everything but the node's identity and data dir.
    pub fn new(node_name: impl Into<String>, node_ip: IpAddr, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        KubeletConfig {
            node_name: node_name.into(),
            node_ip,
            cgroup_parent: PathBuf::from("/kubepods"),
            data_dir,
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            pod_cidr: None,
            max_pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            kubelet_port: 10250,
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(300),
            lease_renew_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            sync_frequency: Duration::from_secs(60),
            pleg_relist_period: Duration::from_secs(1),
            housekeeping_interval: Duration::from_secs(2),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            storage_dir: None,
        }
    }

    /// Folder of the pods' state (`<data_dir>/pods`), handed to the volume manager.
    pub fn pods_root(&self) -> PathBuf {
        self.data_dir.join("pods")
    }

    /// Folder of the container logs (`<data_dir>/logs`, upstream's `/var/log/pods`).
    pub fn log_root(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}
