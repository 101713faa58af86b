//! The multi-node pod network, flannel's `host-gw` backend: every node routes each other node's pod CIDR
//! (`spec.podCIDR`) through that node's InternalIP. Nodes must share a layer-2 network, as with host-gw.
//!
//! Routes are written with `ip route replace ... proto <ROUTE_PROTOCOL>` so that they can be told apart
//! from everyone else's: a route of that protocol inside the cluster CIDR that no node asks for any more is
//! removed. The table is re-checked every `resync` as well, so a route deleted by hand comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use skiff_registry::Ipv4Cidr;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// The routing protocol number Skiff's routes carry (`ip route ... proto 83`); 83 is unassigned in
/// `/etc/iproute2/rt_protos`.
pub const ROUTE_PROTOCOL: &str = "83";

#[derive(Clone, Debug)]
pub struct HostGwConfig {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    /// Only routes inside this range are managed.
    pub cluster_cidr: Ipv4Cidr,
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to run `ip {args}`: {source}")]
    Spawn { args: String, source: std::io::Error },
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("`ip -j route show` printed something that is not its JSON: {0}")]
    Parse(String),
}

/// The routes this node should have: pod CIDR → node IP for every other node with both, except nodes on
/// an address of this host (`local`: several nodes on one host reach each other through their bridges).
pub fn desired_routes(nodes: &[Node], config: &HostGwConfig, local: &BTreeSet<Ipv4Addr>) -> BTreeMap<Ipv4Cidr, Ipv4Addr> {
    let mut routes = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(config.node_name.as_str()) {
            continue;
        }
        let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse::<Ipv4Cidr>().ok()) else { continue };
        let Some(ip) = internal_ip(node) else { continue };
        if ip == config.node_ip || local.contains(&ip) || ip.is_loopback() || !config.cluster_cidr.contains(cidr.base) {
            continue;
        }
        routes.insert(cidr, ip);
    }
    routes
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses.iter().find(|a| a.type_ == "InternalIP").and_then(|a| a.address.parse().ok())
}

/// The changes that turn `current` into `desired`: routes to replace and destinations to delete.
pub fn plan(current: &BTreeMap<Ipv4Cidr, Ipv4Addr>, desired: &BTreeMap<Ipv4Cidr, Ipv4Addr>) -> (Vec<(Ipv4Cidr, Ipv4Addr)>, Vec<Ipv4Cidr>) {
    let replace = desired.iter().filter(|(c, ip)| current.get(c) != Some(ip)).map(|(c, ip)| (*c, *ip)).collect();
    let delete = current.keys().filter(|c| !desired.contains_key(c)).copied().collect();
    (replace, delete)
}

/// Runs until `shutdown`. Routes stay when the agent stops (pods keep running and keep talking).
pub async fn run(config: HostGwConfig, client: kube::Client, shutdown: CancellationToken) -> Result<(), Error> {
    let (reader, writer) = reflector::store::<Node>();
    let nodes: Api<Node> = Api::all(client);
    let mut events = reflector(writer, watcher(nodes, watcher::Config::default()).default_backoff()).touched_objects().boxed();
    let mut tick = tokio::time::interval(config.resync);
    let mut ready = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
            event = events.next() => match event {
                Some(Ok(_)) => ready = true,
                Some(Err(e)) => { tracing::debug!(error = %e, "node watch"); continue }
                None => return Ok(()),
            },
        }
        if !ready {
            continue;
        }
        let nodes: Vec<Node> = reader.state().iter().map(|n| (**n).clone()).collect();
        let result = match local_addresses().await {
            Ok(local) => sync(&desired_routes(&nodes, &config, &local), &config).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "failed to sync the pod network's routes");
        }
    }
}

async fn sync(desired: &BTreeMap<Ipv4Cidr, Ipv4Addr>, config: &HostGwConfig) -> Result<(), Error> {
    let current = current_routes(&config.cluster_cidr).await?;
    let (replace, delete) = plan(&current, desired);
    for (cidr, via) in replace {
        ip(&["route", "replace", &cidr.to_string(), "via", &via.to_string(), "proto", ROUTE_PROTOCOL]).await?;
        tracing::info!(%cidr, %via, "routing a node's pod CIDR");
    }
    for cidr in delete {
        ip(&["route", "del", &cidr.to_string(), "proto", ROUTE_PROTOCOL]).await?;
        tracing::info!(%cidr, "removed the route of a node that is gone");
    }
    Ok(())
}

/// The IPv4 addresses of this host's interfaces.
async fn local_addresses() -> Result<BTreeSet<Ipv4Addr>, Error> {
    parse_addresses(&ip(&["-j", "-4", "addr", "show"]).await?)
}

fn parse_addresses(json: &str) -> Result<BTreeSet<Ipv4Addr>, Error> {
    let links: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| Error::Parse(e.to_string()))?;
    Ok(links
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().and_then(|s| s.parse().ok()))
        .collect())
}

/// Skiff's routes in the main table that lie in the cluster CIDR.
async fn current_routes(cluster: &Ipv4Cidr) -> Result<BTreeMap<Ipv4Cidr, Ipv4Addr>, Error> {
    let out = ip(&["-j", "route", "show", "proto", ROUTE_PROTOCOL]).await?;
    parse_routes(&out, cluster)
}

fn parse_routes(json: &str, cluster: &Ipv4Cidr) -> Result<BTreeMap<Ipv4Cidr, Ipv4Addr>, Error> {
    if json.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let routes: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| Error::Parse(e.to_string()))?;
    let mut out = BTreeMap::new();
    for r in routes {
        let (Some(dst), Some(gw)) = (r["dst"].as_str(), r["gateway"].as_str()) else { continue };
        let dst = if dst.contains('/') { dst.to_string() } else { format!("{dst}/32") };
        if let (Ok(cidr), Ok(gw)) = (dst.parse::<Ipv4Cidr>(), gw.parse::<Ipv4Addr>())
            && cluster.contains(cidr.base)
        {
            out.insert(cidr, gw);
        }
    }
    Ok(out)
}

async fn ip(args: &[&str]) -> Result<String, Error> {
    let joined = args.join(" ");
    let out = Command::new("ip").args(args).output().await.map_err(|source| Error::Spawn { args: joined.clone(), source })?;
    if !out.status.success() {
        return Err(Error::Ip { args: joined, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": ip.map(|ip| vec![serde_json::json!({"type": "InternalIP", "address": ip}), serde_json::json!({"type": "Hostname", "address": name})]).unwrap_or_default()},
        }))
        .unwrap()
    }

    fn config() -> HostGwConfig {
        HostGwConfig { node_name: "a".into(), node_ip: "192.168.1.1".parse().unwrap(), cluster_cidr: "10.42.0.0/16".parse().unwrap(), resync: Duration::from_secs(30) }
    }

    #[test]
    fn routes_go_to_other_nodes_with_a_cidr_and_an_address() {
        let nodes = vec![
            node("a", Some("10.42.0.0/24"), Some("192.168.1.1")),
            node("b", Some("10.42.1.0/24"), Some("192.168.1.2")),
            node("c", None, Some("192.168.1.3")),
            node("d", Some("10.42.3.0/24"), None),
            node("e", Some("10.42.4.0/24"), Some("192.168.1.1")),
            node("f", Some("10.99.0.0/24"), Some("192.168.1.6")),
        ];
        let local = BTreeSet::from(["192.168.1.7".parse().unwrap()]);
        let mut nodes = nodes;
        nodes.push(node("g", Some("10.42.7.0/24"), Some("192.168.1.7")));
        nodes.push(node("h", Some("10.42.8.0/24"), Some("127.0.0.1")));
        let routes = desired_routes(&nodes, &config(), &local);
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(routes[&"10.42.1.0/24".parse().unwrap()], "192.168.1.2".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn plan_replaces_changed_and_deletes_gone() {
        let c = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let current = BTreeMap::from([(c("10.42.1.0/24"), ip("192.168.1.2")), (c("10.42.2.0/24"), ip("192.168.1.3")), (c("10.42.5.0/24"), ip("192.168.1.5"))]);
        let desired = BTreeMap::from([(c("10.42.1.0/24"), ip("192.168.1.2")), (c("10.42.2.0/24"), ip("192.168.1.9")), (c("10.42.3.0/24"), ip("192.168.1.4"))]);
        let (replace, delete) = plan(&current, &desired);
        assert_eq!(replace, vec![(c("10.42.2.0/24"), ip("192.168.1.9")), (c("10.42.3.0/24"), ip("192.168.1.4"))]);
        assert_eq!(delete, vec![c("10.42.5.0/24")]);
    }

    #[test]
    fn ip_json_is_read_and_filtered_to_the_cluster() {
        let json = r#"[{"dst":"10.42.1.0/24","gateway":"192.168.1.2","dev":"eth0","protocol":"83","flags":[]},
                       {"dst":"10.50.0.0/24","gateway":"192.168.1.2","dev":"eth0","flags":[]},
                       {"dst":"10.42.2.0/24","dev":"cni0","flags":[]}]"#;
        let routes = parse_routes(json, &"10.42.0.0/16".parse().unwrap()).unwrap();
        assert_eq!(routes.len(), 1);
        assert!(parse_routes("", &"10.42.0.0/16".parse().unwrap()).unwrap().is_empty());
        assert!(parse_routes("nonsense", &"10.42.0.0/16".parse().unwrap()).is_err());
        let addrs = parse_addresses(r#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1"}]},{"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.2"}]}]"#).unwrap();
        assert_eq!(addrs.len(), 2);
        assert!(addrs.contains(&"192.0.2.2".parse().unwrap()));
    }
}
