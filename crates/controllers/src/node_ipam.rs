//! Node IPAM (upstream's range allocator): every node gets a pod CIDR (`spec.podCIDR`, a /24 by default)
//! from the cluster CIDR, the lowest free one, once; the agents' CNI configuration and the cross-node routes
//! are built from it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::publish;

/// An IPv4 network such as `10.42.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR such as 10.42.0.0/16"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ok(Ipv4Net { addr: Ipv4Addr::from(u32::from(addr) & mask), prefix })
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `--cluster-cidr` and the size of each node's share (`--node-cidr-mask-size`, 24).
#[derive(Clone, Debug)]
pub struct NodeIpamConfig {
    pub cluster_cidr: Ipv4Net,
    pub node_mask: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cluster CIDR {cidr} has no free /{mask} left for node {node}")]
    Exhausted { cidr: Ipv4Net, mask: u8, node: String },
    #[error("node IPAM: {0}")]
    Api(#[from] kube::Error),
}

/// The allocator: which node-sized subnets of the cluster CIDR are taken.
#[derive(Debug)]
pub struct RangeAllocator {
    config: NodeIpamConfig,
    used: BTreeSet<u32>,
}

impl RangeAllocator {
    pub fn new(config: NodeIpamConfig) -> Self {
        RangeAllocator { config, used: BTreeSet::new() }
    }

    fn size(&self) -> u64 {
        1u64 << (self.config.node_mask.saturating_sub(self.config.cluster_cidr.prefix))
    }

    /// Marks a CIDR already on a node as taken (ignored when outside the cluster CIDR).
    pub fn occupy(&mut self, cidr: &str) {
        let Ok(net) = cidr.parse::<Ipv4Net>() else { return };
        if net.prefix != self.config.node_mask {
            return;
        }
        let base = u32::from(self.config.cluster_cidr.addr);
        let step = 1u64 << (32 - self.config.node_mask);
        let off = u64::from(u32::from(net.addr).wrapping_sub(base));
        if u32::from(net.addr) >= base && off / step < self.size() {
            self.used.insert((off / step) as u32);
        }
    }

    /// The lowest free node CIDR, now taken.
    pub fn allocate(&mut self) -> Option<Ipv4Net> {
        let index = (0..self.size()).map(|i| i as u32).find(|i| !self.used.contains(i))?;
        self.used.insert(index);
        let step = 1u64 << (32 - self.config.node_mask);
        let addr = u64::from(u32::from(self.config.cluster_cidr.addr)) + u64::from(index) * step;
        Some(Ipv4Net { addr: Ipv4Addr::from(addr as u32), prefix: self.config.node_mask })
    }

    /// Gives a node's CIDR back (the node was deleted).
    pub fn release(&mut self, cidr: &str) {
        let Ok(net) = cidr.parse::<Ipv4Net>() else { return };
        let step = 1u64 << (32 - self.config.node_mask);
        let off = u64::from(u32::from(net.addr).wrapping_sub(u32::from(self.config.cluster_cidr.addr)));
        self.used.remove(&((off / step) as u32));
    }
}

struct State {
    ctx: Context,
    config: NodeIpamConfig,
    allocator: Mutex<RangeAllocator>,
}

/// Runs until `shutdown`.
pub async fn run(ctx: Context, config: NodeIpamConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut allocator = RangeAllocator::new(config.clone());
    for node in nodes.list(&ListParams::default()).await?.items {
        if let Some(c) = node.spec.and_then(|s| s.pod_cidr) {
            allocator.occupy(&c);
        }
    }
    let state = Arc::new(State { ctx, config, allocator: Mutex::new(allocator) });
    Controller::new(nodes, watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    if let Some(existing) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
        state.allocator.lock().unwrap_or_else(|p| p.into_inner()).occupy(existing);
        return Ok(Action::await_change());
    }
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let cidr = state.allocator.lock().unwrap_or_else(|p| p.into_inner()).allocate().ok_or_else(|| Error::Exhausted {
        cidr: state.config.cluster_cidr,
        mask: state.config.node_mask,
        node: name.clone(),
    })?;
    let patch = serde_json::json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    let nodes: Api<Node> = Api::all(state.ctx.client.clone());
    match nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "allocated the node's pod CIDR");
            publish(&state.ctx.recorder, node.as_ref(), EventType::Normal, "CIDRAssignmentSucceeded", format!("Node {name} was assigned pod CIDR {cidr}")).await;
        }
        Err(e) => {
            state.allocator.lock().unwrap_or_else(|p| p.into_inner()).release(&cidr.to_string());
            return Err(e.into());
        }
    }
    Ok(Action::await_change())
}

fn error_policy(node: Arc<Node>, error: &Error, state: Arc<State>) -> Action {
    tracing::warn!(node = node.metadata.name.as_deref().unwrap_or(""), %error, "node IPAM");
    if let Error::Exhausted { .. } = error {
        let ctx = state.ctx.clone();
        let message = error.to_string();
        tokio::spawn(async move { publish(&ctx.recorder, node.as_ref(), EventType::Warning, "CIDRNotAvailable", message).await });
        return Action::requeue(Duration::from_secs(30));
    }
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator(cidr: &str) -> RangeAllocator {
        RangeAllocator::new(NodeIpamConfig { cluster_cidr: cidr.parse().unwrap(), node_mask: 24 })
    }

    #[test]
    fn allocates_the_lowest_free_subnet_and_reuses_released_ones() {
        let mut a = allocator("10.42.0.0/16");
        a.occupy("10.42.0.0/24");
        a.occupy("10.42.2.0/24");
        a.occupy("192.168.0.0/24"); // outside: ignored
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.1.0/24");
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.3.0/24");
        a.release("10.42.1.0/24");
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.1.0/24");
    }

    #[test]
    fn a_full_range_is_exhausted() {
        let mut a = allocator("10.42.0.0/23");
        assert!(a.allocate().is_some());
        assert!(a.allocate().is_some());
        assert!(a.allocate().is_none());
    }

    #[test]
    fn cidrs_parse_with_clear_errors() {
        assert_eq!("10.42.7.9/16".parse::<Ipv4Net>().unwrap().to_string(), "10.42.0.0/16");
        assert!("10.42.0.0".parse::<Ipv4Net>().unwrap_err().contains("not a CIDR"));
        assert!("10.42.0.0/33".parse::<Ipv4Net>().unwrap_err().contains("prefix length"));
    }
}
