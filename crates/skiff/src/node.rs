//! The node role, shared by `skiff server` (its local agent) and `skiff agent`: the image store and puller,
//! the OCI runtime (runc through `skiff shim`, CNI), the kubelet and the kubelet API, all under
//! `<data-dir>/agent`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

/// Node flags, the same on `skiff server` and `skiff agent` (k3s's names where k3s has them).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// This node's IP address (default: the address of the default route's interface).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// This node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// A label for the node at registration, `key=value` (repeatable).
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
    /// A taint for the node at registration, `key=value:Effect` (repeatable).
    #[arg(long = "node-taint")]
    pub node_taints: Vec<String>,
    /// Port of the kubelet API.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Private registry configuration (k3s's registries.yaml); default `<data-dir>/agent/etc/registries.yaml`.
    #[arg(long)]
    pub private_registry: Option<PathBuf>,
    /// Name of the pod network's Linux bridge.
    #[arg(long, default_value = "cni0", hide = true)]
    pub pod_bridge: String,
    /// Do not run the service proxy on this node (Services then need another proxy).
    #[arg(long)]
    pub disable_kube_proxy: bool,
    /// Name of the service proxy's nftables table (`ip <name>`).
    #[arg(long, default_value = "skiff", hide = true)]
    pub nft_table: String,
}

/// The hostname, the default node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// The address of the interface that the default route uses, found without sending anything.
pub fn default_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Everything the node role needs, resolved from flags and the join.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub data_dir: PathBuf,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// The pod network of the whole cluster (each node has a part of it).
    pub cluster_cidr: skiff_registry::Ipv4Cidr,
    /// Whether this node runs the service proxy (it also masquerades pod traffic leaving the cluster).
    pub kube_proxy: bool,
    pub nft_table: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub kubelet_port: u16,
    pub registries: Option<PathBuf>,
    pub pod_bridge: String,
    /// The kubelet API's serving certificate and key, and the CA its callers' certificates must chain to.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub client_ca: PathBuf,
}

/// Parses `key=value` labels.
pub fn parse_labels(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|s| {
            let (k, v) = s.split_once('=').with_context(|| format!("--node-label {s:?} must look like key=value"))?;
            if k.is_empty() {
                bail!("--node-label {s:?} has an empty key");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Parses `key=value:Effect` (or `key:Effect`) taints.
pub fn parse_taints(items: &[String]) -> anyhow::Result<Vec<Taint>> {
    items
        .iter()
        .map(|s| {
            let (kv, effect) = s.rsplit_once(':').with_context(|| format!("--node-taint {s:?} must look like key=value:NoSchedule"))?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                bail!("--node-taint {s:?}: the effect must be NoSchedule, PreferNoSchedule or NoExecute");
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            if key.is_empty() {
                bail!("--node-taint {s:?} has an empty key");
            }
            Ok(Taint { key: key.to_string(), value, effect: effect.to_string(), time_added: None })
        })
        .collect()
}

/// Runs the node until `shutdown`: waits for the node's pod CIDR, then starts the runtime, the kubelet and
/// the kubelet API.
pub async fn run(settings: NodeSettings, client: kube::Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let agent_dir = settings.data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir).with_context(|| format!("failed to create {}", agent_dir.display()))?;

    let pod_cidr = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        cidr = wait_for_pod_cidr(&client, &settings) => cidr?,
    };
    tracing::info!(node = %settings.node_name, %pod_cidr, "node has its pod CIDR");
    enable_ip_forwarding(std::path::Path::new(IP_FORWARD));

    let store = Arc::new(skiff_runtime::image::ImageStore::open(&agent_dir.join("images")).context("failed to open the image store")?);
    let registries = match &settings.registries {
        Some(path) => skiff_runtime::image::registries::RegistriesConfig::load(path).with_context(|| format!("failed to read {}", path.display()))?,
        None => skiff_runtime::image::registries::RegistriesConfig::load_from_data_dir(&settings.data_dir).context("failed to read registries.yaml")?,
    };
    let images = Arc::new(skiff_runtime::image::service::Images::new(store.clone(), registries));

    let mut cni = skiff_runtime::cni::NetworkConfig::new(&agent_dir, &pod_cidr).context("invalid pod network")?;
    cni.bridge = settings.pod_bridge.clone();
    let mut network = Vec::new();
    if settings.kube_proxy {
        // The proxy masquerades pod traffic leaving the cluster itself, so that traffic between nodes' pods
        // keeps the pods' addresses (CNI's ipMasq would hide them behind the node's).
        cni.ip_masq = false;
        let proxy = skiff_proxy::ProxyConfig {
            node_name: settings.node_name.clone(),
            node_ips: match settings.node_ip {
                IpAddr::V4(ip) if !ip.is_loopback() => vec![ip],
                _ => Vec::new(),
            },
            cluster_cidr: settings.cluster_cidr.to_string().parse().map_err(|e: String| anyhow::anyhow!("cluster CIDR: {e}"))?,
            pod_bridge: Some(settings.pod_bridge.clone()),
            masquerade_egress: true,
            table: settings.nft_table.clone(),
            ..Default::default()
        };
        network.push(crate::components::spawn("proxy", skiff_proxy::run(proxy, client.clone(), shutdown.clone())));
    }
    if let IpAddr::V4(node_ip) = settings.node_ip {
        let routes = crate::host_gw::HostGwConfig { node_name: settings.node_name.clone(), node_ip, cluster_cidr: settings.cluster_cidr, resync: Duration::from_secs(30) };
        network.push(crate::components::spawn("host-gw", crate::host_gw::run(routes, client.clone(), shutdown.clone())));
    }
    let oci = skiff_runtime::oci::OciConfig::new(&agent_dir, cni).context("failed to configure the container runtime")?;
    let cgroup_parent = oci.cgroup_parent.clone();
    let runtime = Arc::new(skiff_runtime::oci::OciRuntime::new(oci, store).context("failed to start the container runtime")?);

    let mut kubelet = skiff_kubelet::config::KubeletConfig::new(settings.node_name.clone(), settings.node_ip, agent_dir.clone());
    kubelet.cluster_dns = vec![settings.cluster_dns.to_string()];
    kubelet.cluster_domain = settings.cluster_domain.clone();
    kubelet.pod_cidr = Some(pod_cidr);
    kubelet.labels = settings.labels.clone();
    kubelet.taints = settings.taints.clone();
    kubelet.kubelet_port = settings.kubelet_port;
    kubelet.cgroup_parent = cgroup_parent;
    kubelet.storage_dir = Some(settings.data_dir.join("storage"));

    let server = skiff_kubelet::server::ServerConfig {
        addr: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), settings.kubelet_port),
        tls_cert: settings.serving_cert.clone(),
        tls_key: settings.serving_key.clone(),
        client_ca: settings.client_ca.clone(),
        node_name: settings.node_name.clone(),
    };
    let api = crate::components::spawn("kubelet-server", skiff_kubelet::server::run(server, skiff_kubelet::server::ServerDeps { runtime: runtime.clone() }, shutdown.clone()));
    let deps = skiff_kubelet::run::Deps { client, runtime, images };
    let result = skiff_kubelet::run::run(kubelet, deps, shutdown.clone()).await;
    shutdown.cancel();
    let _ = api.await;
    for task in network {
        let _ = task.await;
    }
    result.context("the kubelet stopped")
}

/// The IPv4 forwarding switch.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns IPv4 forwarding on when it is off, as k3s's agent does: pods reach other nodes' pods and the
/// world only through the host's routing. A failure is logged, not fatal (pods on this node still work).
fn enable_ip_forwarding(switch: &std::path::Path) {
    match std::fs::read_to_string(switch) {
        Ok(v) if v.trim() == "1" => {}
        _ => match std::fs::write(switch, "1") {
            Ok(()) => tracing::info!(path = %switch.display(), "turned on IPv4 forwarding for the pod network"),
            Err(e) => tracing::warn!(path = %switch.display(), error = %e, "failed to turn on IPv4 forwarding: pods cannot reach other nodes"),
        },
    }
}

/// Registers the node if it does not exist yet (the kubelet fills it in) and waits until node IPAM gave it
/// a pod CIDR.
async fn wait_for_pod_cidr(client: &kube::Client, settings: &NodeSettings) -> anyhow::Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &settings.node_name;
    if nodes.get_opt(name).await.context("failed to read this node")?.is_none() {
        let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": settings.labels}}))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("failed to register this node"),
        }
    }
    let started = std::time::Instant::now();
    loop {
        if let Some(cidr) = nodes.get(name).await.context("failed to read this node")?.spec.and_then(|s| s.pod_cidr) {
            return Ok(cidr);
        }
        if started.elapsed() > Duration::from_secs(30) && started.elapsed().as_secs() % 30 == 0 {
            tracing::warn!(node = %name, "still waiting for the node's pod CIDR (is the server's node IPAM running?)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_forwarding_is_turned_on_when_off() {
        let dir = tempfile::tempdir().unwrap();
        let switch = dir.path().join("ip_forward");
        std::fs::write(&switch, "0\n").unwrap();
        enable_ip_forwarding(&switch);
        assert_eq!(std::fs::read_to_string(&switch).unwrap(), "1");
        std::fs::write(&switch, "1\n").unwrap();
        enable_ip_forwarding(&switch);
        assert_eq!(std::fs::read_to_string(&switch).unwrap(), "1\n", "left alone when already on");
    }

    #[test]
    fn labels_and_taints_parse_with_clear_errors() {
        let l = parse_labels(&["zone=a".into(), "x=".into()]).unwrap();
        assert_eq!(l.get("zone").map(String::as_str), Some("a"));
        assert_eq!(l.get("x").map(String::as_str), Some(""));
        assert!(parse_labels(&["nokey".into()]).unwrap_err().to_string().contains("key=value"));
        let t = parse_taints(&["dedicated=gpu:NoSchedule".into(), "spot:NoExecute".into()]).unwrap();
        assert_eq!((t[0].key.as_str(), t[0].value.as_deref(), t[0].effect.as_str()), ("dedicated", Some("gpu"), "NoSchedule"));
        assert_eq!((t[1].key.as_str(), t[1].value.as_deref()), ("spot", None));
        assert!(parse_taints(&["a=b:Sometimes".into()]).unwrap_err().to_string().contains("effect"));
        assert!(parse_taints(&["a=b".into()]).is_err());
    }
}
