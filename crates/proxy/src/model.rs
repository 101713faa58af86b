//! The proxy's model: Services and EndpointSlices reduced to frontends (VIP or NodePort, protocol, port) and
//! the backends each one load-balances to, with upstream kube-proxy's endpoint selection rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// The label that joins an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// An IPv4 network such as `10.42.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 CIDR such as 10.42.0.0/16");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        Ok(Ipv4Cidr { addr: Ipv4Addr::from(u32::from(addr) & mask), prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A Service port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses a Kubernetes protocol name (`TCP` when unset).
    pub fn from_k8s(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
    /// The nft and iptables name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Where traffic enters a Service: a virtual IP (ClusterIP, LoadBalancer ingress IP or external IP) with a
/// protocol and port, or a NodePort open on the node's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Frontend {
    Vip { ip: Ipv4Addr, protocol: Protocol, port: u16 },
    NodePort { protocol: Protocol, port: u16 },
}

impl Frontend {
    /// A name usable inside nft object names (`10_43_0_10_tcp_80`, `nodeport_tcp_30080`).
    pub fn id(&self) -> String {
        match self {
            Frontend::Vip { ip, protocol, port } => {
                format!("{}_{}_{port}", ip.to_string().replace('.', "_"), protocol.name())
            }
            Frontend::NodePort { protocol, port } => format!("nodeport_{}_{port}", protocol.name()),
        }
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frontend::Vip { ip, protocol, port } => write!(f, "{ip}:{port}/{}", protocol.name()),
            Frontend::NodePort { protocol, port } => write!(f, "nodeport {port}/{}", protocol.name()),
        }
    }
}

/// One endpoint address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// What a frontend sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `namespace/name:port` of the Service port, for logs and rule comments.
    pub service: String,
    /// The backends, sorted. Empty: connections are rejected.
    pub endpoints: Vec<Backend>,
    /// Whether traffic from outside the cluster CIDR is masqueraded (false for `externalTrafficPolicy:
    /// Local` frontends, which keep the client's address).
    pub masquerade: bool,
    /// `sessionAffinity: ClientIP` with this timeout in seconds.
    pub affinity_timeout: Option<u32>,
}

/// How the rendering is laid out, from the proxy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The nftables table (`ip <table>`).
    pub table: String,
    /// The pod network.
    pub cluster_cidr: Ipv4Cidr,
    /// The addresses NodePorts are open on; empty means every local address (`fib daddr type local`).
    pub node_ips: Vec<Ipv4Addr>,
    /// The pod bridge; pod traffic leaving through it is not masqueraded.
    pub pod_bridge: Option<String>,
    /// Masquerade pod traffic to destinations outside the cluster CIDR (replaces the CNI's ipMasq).
    pub masquerade_egress: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "skiff".into(),
            cluster_cidr: Ipv4Cidr { addr: Ipv4Addr::new(10, 42, 0, 0), prefix: 16 },
            node_ips: Vec::new(),
            pod_bridge: Some("cni0".into()),
            masquerade_egress: true,
        }
    }
}

/// Every frontend of every Service and its target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    pub settings: Settings,
    pub frontends: BTreeMap<Frontend, Target>,
}

impl Model {
    /// Builds the model from Services and EndpointSlices as this node (`node_name`) sees them.
    pub fn build<'a>(
        settings: Settings,
        node_name: &str,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Model {
        // namespace/service name -> slices
        let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            by_service.entry((ns, name.clone())).or_default().push(slice);
        }
        let mut services: Vec<&Service> = services.into_iter().collect();
        services.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
        let mut frontends = BTreeMap::new();
        for svc in services {
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            let name = svc.metadata.name.clone().unwrap_or_default();
            let slices = by_service.get(&(ns.clone(), name.clone())).map(Vec::as_slice).unwrap_or(&[]);
            for (frontend, target) in service_frontends(svc, &ns, &name, slices, node_name) {
                if let Some(prev) = frontends.get(&frontend) {
                    let prev: &Target = prev;
                    tracing::warn!(%frontend, kept = %prev.service, ignored = %target.service, "two Services claim one frontend");
                    continue;
                }
                frontends.insert(frontend, target);
            }
        }
        Model { settings, frontends }
    }

    /// Every distinct endpoint address (for the hairpin set).
    pub fn endpoint_ips(&self) -> BTreeSet<Ipv4Addr> {
        self.frontends.values().flat_map(|t| t.endpoints.iter().map(|b| b.ip)).collect()
    }
}

/// The frontends of one Service.
fn service_frontends(
    svc: &Service,
    ns: &str,
    name: &str,
    slices: &[&EndpointSlice],
    node_name: &str,
) -> Vec<(Frontend, Target)> {
    let mut out = Vec::new();
    let Some(spec) = svc.spec.as_ref() else { return out };
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ == "ExternalName" {
        return out;
    }
    let cluster_ips: Vec<Ipv4Addr> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.iter().filter_map(|s| s.parse().ok()).collect(),
        (_, Some(ip)) => ip.parse().ok().into_iter().collect(),
        _ => Vec::new(),
    };
    if cluster_ips.is_empty() {
        // Headless (clusterIP: None) or not yet allocated: nothing to proxy.
        return out;
    }
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let mut external_ips: Vec<Ipv4Addr> =
        spec.external_ips.iter().flatten().filter_map(|s| s.parse().ok()).collect();
    if type_ == "LoadBalancer" {
        let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(ingress.iter().flat_map(|i| i.iter()).filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()));
    }
    let node_ports = type_ == "NodePort" || type_ == "LoadBalancer";
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else { continue };
        let Ok(svc_port) = u16::try_from(port.port) else { continue };
        let (cluster, local) = select_endpoints(slices, port, protocol, node_name);
        let label = format!("{ns}/{name}:{}", port.name.as_deref().unwrap_or(&svc_port.to_string()));
        let target = |endpoints: &Vec<Backend>, masquerade: bool| Target {
            service: label.clone(),
            endpoints: endpoints.clone(),
            masquerade,
            affinity_timeout,
        };
        let internal = if internal_local { &local } else { &cluster };
        let external = if external_local { &local } else { &cluster };
        for ip in &cluster_ips {
            out.push((Frontend::Vip { ip: *ip, protocol, port: svc_port }, target(internal, true)));
        }
        for ip in &external_ips {
            out.push((Frontend::Vip { ip: *ip, protocol, port: svc_port }, target(external, !external_local)));
        }
        if node_ports && let Some(np) = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
            out.push((Frontend::NodePort { protocol, port: np }, target(external, !external_local)));
        }
    }
    out
}

/// The backends of one Service port: (all usable endpoints, this node's usable endpoints). Usable means
/// ready; when none is ready, serving and terminating ones (upstream's terminating-endpoint fallback), chosen
/// separately for the cluster-wide and the node-local set.
fn select_endpoints(
    slices: &[&EndpointSlice],
    port: &ServicePort,
    protocol: Protocol,
    node_name: &str,
) -> (Vec<Backend>, Vec<Backend>) {
    let want_name = port.name.as_deref().unwrap_or("");
    // (backend, ready, serving&&terminating, local)
    let mut all: BTreeMap<Backend, (bool, bool, bool)> = BTreeMap::new();
    for slice in slices {
        let Some(slice_port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == want_name && Protocol::from_k8s(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(target_port) = slice_port.port.and_then(|p| u16::try_from(p).ok()) else { continue };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else { continue };
            let (ready, fallback) = conditions(ep);
            let local = ep.node_name.as_deref() == Some(node_name);
            let e = all.entry(Backend { ip, port: target_port }).or_insert((false, false, false));
            e.0 |= ready;
            e.1 |= fallback;
            e.2 |= local;
        }
    }
    let usable = |only_local: bool| -> Vec<Backend> {
        let candidates: Vec<_> = all.iter().filter(|(_, c)| !only_local || c.2).collect();
        let ready: Vec<Backend> = candidates.iter().filter(|(_, c)| c.0).map(|(b, _)| **b).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates.iter().filter(|(_, c)| c.1).map(|(b, _)| **b).collect()
    };
    (usable(false), usable(true))
}

/// (ready, serving-and-terminating) of one endpoint; unset `ready` means ready, unset `serving` follows
/// `ready`, unset `terminating` means not terminating (the EndpointSlice API's rules).
fn conditions(ep: &Endpoint) -> (bool, bool) {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    (ready, serving && terminating)
}

#[cfg(test)]
mod tests;
