//! What a Service's EndpointSlices should hold, from its pods (upstream's `podToEndpoint`,
//! `getEndpointPorts`, `podutil.FindPort` and `ShouldPodBeInEndpoints`): one endpoint per serving pod,
//! grouped by the set of ports that resolve on that pod.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointHints, EndpointPort, ForZone};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `kubernetes.io/service-name`: the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: who manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The managed-by value of this controller's slices.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// `service.kubernetes.io/headless`, on the slices and Endpoints of a Service without a cluster IP.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// The Node label an endpoint's zone comes from.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// `service.kubernetes.io/topology-mode: Auto` asks for zone hints.
pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
/// The older spelling of [`ANNOTATION_TOPOLOGY_MODE`].
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";

/// Whether the Service selects pods: a non-empty `spec.selector`.
pub fn has_selector(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty())
}

/// Whether the Service is of type ExternalName (it gets no endpoints).
pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// Whether a pod with these labels is selected by the Service's (non-empty) selector.
pub fn selects(svc: &Service, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else { return false };
    let Some(labels) = labels else { return false };
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// No cluster IP (`None` or unset): upstream's `!IsServiceIPSet`.
pub fn is_headless(svc: &Service) -> bool {
    matches!(svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()), None | Some("") | Some("None"))
}

fn cluster_ip_none(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// `spec.publishNotReadyAddresses`.
pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// The pod's first IPv4 address (`status.podIPs`, else `status.podIP`).
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let from_list = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str());
    from_list.chain(status.pod_ip.as_deref()).find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()).map(str::to_string)
}

/// Upstream's `ShouldPodBeInEndpoints`: not terminal, has an IP, and (unless `include_terminating`) not
/// being deleted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed")) {
        return false;
    }
    let has_ip = status.is_some_and(|s| s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()) || s.pod_ips.as_ref().is_some_and(|v| !v.is_empty()));
    if !has_ip {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Upstream's `ShouldSetHostname`: the pod has `spec.hostname` and its `spec.subdomain` is this Service.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.hostname.as_deref()).is_some_and(|h| !h.is_empty())
        && spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

/// The pod's port for a Service port (upstream's `podutil.FindPort`): a number as is (unset means the
/// Service port), a name looked up in the containers' ports (and restartable init containers') with the
/// same protocol; `None` when the name does not resolve on this pod.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(if *n == 0 { sp.port } else { *n }),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers.iter().chain(sidecars).flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol).then_some(p.container_port)
            })
        }
    }
}

/// The slice ports of a pod for the Service (upstream's `getEndpointPorts`): every Service port that
/// resolves on the pod, in the Service's order; a headless Service may have none.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// An order-independent key of a port set (upstream's `PortMapKey`).
pub fn port_key(ports: &[EndpointPort]) -> String {
    let mut parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}|{}|{}|{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("TCP"),
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// An endpoint's identity (upstream's `hashEndpoint`): its addresses, hostname and target pod. Two
/// endpoints with the same key are the same endpoint, maybe in a different state.
pub fn endpoint_key(ep: &Endpoint) -> String {
    let mut addrs = ep.addresses.clone();
    addrs.sort();
    let (ns, name) = ep.target_ref.as_ref().map(|r| (r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or(""))).unwrap_or(("", ""));
    format!("{}/{}|{}|{}", ns, name, addrs.join(","), ep.hostname.as_deref().unwrap_or(""))
}

/// The slice endpoint of a pod (upstream's `podToEndpoint`). `zone` is its Node's zone label.
pub fn pod_to_endpoint(pod: &Pod, zone: Option<&str>, svc: &Service) -> Option<Endpoint> {
    let ip = pod_ipv4(pod)?;
    let serving = crate::pod_util::is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // A terminating endpoint is never ready, unless the Service publishes not-ready addresses.
    let ready = publish_not_ready(svc) || (serving && !terminating);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    Some(Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions { ready: Some(ready), serving: Some(serving), terminating: Some(terminating) }),
        hostname: should_set_hostname(pod, svc).then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone())).flatten(),
        node_name: node,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        zone: zone.filter(|z| !z.is_empty()).map(str::to_string),
        ..Default::default()
    })
}

/// The endpoints sharing one port set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    /// In the Service's port order.
    pub ports: Vec<EndpointPort>,
    /// By [`endpoint_key`].
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// What the Service's slices should hold, by [`port_key`], and the pods skipped because their Node is
/// unknown (the sync is retried for them). `nodes` maps the known Nodes to their zone label.
pub fn desired_groups(svc: &Service, pods: &[Arc<Pod>], nodes: &HashMap<String, Option<String>>) -> (BTreeMap<String, Group>, Vec<String>) {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut skipped = Vec::new();
    for pod in pods {
        // v1 slices carry terminating endpoints.
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
        let zone = match nodes.get(node_name) {
            Some(zone) => zone.as_deref(),
            // Upstream: a pod on an unknown Node is left out (and the Service retried) unless the Service
            // publishes not-ready addresses.
            None if !publish_not_ready(svc) => {
                skipped.push(pod.metadata.name.clone().unwrap_or_default());
                continue;
            }
            None => None,
        };
        let Some(ep) = pod_to_endpoint(pod, zone, svc) else { continue };
        let ports = if svc.spec.as_ref().and_then(|s| s.ports.as_ref()).is_none_or(|p| p.is_empty()) && cluster_ip_none(svc) {
            Vec::new()
        } else {
            endpoint_ports(svc, pod)
        };
        let group = groups.entry(port_key(&ports)).or_insert_with(|| Group { ports, endpoints: BTreeMap::new() });
        group.endpoints.insert(endpoint_key(&ep), ep);
    }
    (groups, skipped)
}

/// Whether the Service asks for topology hints (`topology-mode`, else the older `topology-aware-hints`,
/// set to `Auto`/`auto`).
pub fn hints_enabled(svc: &Service) -> bool {
    let ann = svc.metadata.annotations.as_ref();
    let value = ann.and_then(|a| a.get(ANNOTATION_TOPOLOGY_MODE).or_else(|| a.get(ANNOTATION_TOPOLOGY_AWARE_HINTS)));
    matches!(value.map(String::as_str), Some("Auto") | Some("auto"))
}

/// Zone hints (a simplified form of upstream's topology cache): when `enabled`, every ready endpoint has
/// a zone, and every zone in `zones` (the zones of the ready Nodes) has a ready endpoint, each ready
/// endpoint is hinted to its own zone; otherwise no endpoint has hints.
pub fn apply_hints(groups: &mut BTreeMap<String, Group>, zones: &BTreeSet<String>, enabled: bool) {
    let ready = |ep: &Endpoint| ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
    let mut covered = BTreeSet::new();
    let mut all_zoned = true;
    for ep in groups.values().flat_map(|g| g.endpoints.values()).filter(|ep| ready(ep)) {
        match &ep.zone {
            Some(z) => {
                covered.insert(z.clone());
            }
            None => all_zoned = false,
        }
    }
    let hint = enabled && all_zoned && !zones.is_empty() && zones.iter().all(|z| covered.contains(z));
    for ep in groups.values_mut().flat_map(|g| g.endpoints.values_mut()) {
        ep.hints = match (&ep.zone, hint && ready(ep)) {
            (Some(z), true) => Some(EndpointHints { for_zones: Some(vec![ForZone { name: z.clone() }]), for_nodes: None }),
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn web_pod(name: &str, ip: &str, http_port: Option<i32>, ready: bool) -> Arc<Pod> {
        let ports: Vec<_> = http_port.into_iter().map(|p| serde_json::json!({"name": "http", "containerPort": p})).collect();
        Arc::new(pod(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        })))
    }

    fn web_svc() -> Service {
        svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.0.0.1", "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9090, "targetPort": 9091, "protocol": "TCP"}]}
        }))
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_group_pods() {
        let s = web_svc();
        let pods = vec![web_pod("a", "10.1.0.1", Some(8080), true), web_pod("b", "10.1.0.2", Some(8080), false), web_pod("c", "10.1.0.3", Some(8081), true), web_pod("d", "10.1.0.4", None, true)];
        let nodes = HashMap::from([("n1".to_string(), Some("z1".to_string()))]);
        let (groups, skipped) = desired_groups(&s, &pods, &nodes);
        assert!(skipped.is_empty());
        assert_eq!(groups.len(), 3, "8080, 8081 and the pod without the named port: {groups:?}");
        let by_ports: BTreeMap<Vec<i32>, usize> =
            groups.values().map(|g| (g.ports.iter().map(|p| p.port.unwrap()).collect(), g.endpoints.len())).collect();
        assert_eq!(by_ports, BTreeMap::from([(vec![8080, 9091], 2), (vec![8081, 9091], 1), (vec![9091], 1)]));
        let g = groups.values().find(|g| g.endpoints.len() == 2).unwrap();
        assert_eq!(g.ports[0].name.as_deref(), Some("http"));
        let b = g.endpoints.values().find(|e| e.addresses == ["10.1.0.2"]).unwrap();
        let c = b.conditions.as_ref().unwrap();
        assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(false), Some(false)));
        assert_eq!(b.zone.as_deref(), Some("z1"));
        assert_eq!(b.node_name.as_deref(), Some("n1"));
        assert_eq!(b.target_ref.as_ref().unwrap().uid.as_deref(), Some("uid-b"));
    }

    #[test]
    fn terminal_ipless_and_unknown_node_pods_are_left_out_and_terminating_ones_kept() {
        let s = web_svc();
        let mut done = (*web_pod("done", "10.1.0.9", Some(8080), false)).clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut no_ip = (*web_pod("noip", "", Some(8080), false)).clone();
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let mut lost = (*web_pod("lost", "10.1.0.8", Some(8080), true)).clone();
        lost.spec.as_mut().unwrap().node_name = Some("gone".into());
        let mut term = (*web_pod("term", "10.1.0.7", Some(8080), true)).clone();
        term.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
        let pods: Vec<Arc<Pod>> = [done, no_ip, lost, term].into_iter().map(Arc::new).collect();
        let nodes = HashMap::from([("n1".to_string(), None)]);
        let (groups, skipped) = desired_groups(&s, &pods, &nodes);
        assert_eq!(skipped, vec!["lost".to_string()]);
        let eps: Vec<&Endpoint> = groups.values().flat_map(|g| g.endpoints.values()).collect();
        assert_eq!(eps.len(), 1);
        let c = eps[0].conditions.as_ref().unwrap();
        assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(true), Some(true)));
        assert_eq!(eps[0].zone, None);

        // publishNotReadyAddresses: ready regardless, and pods on unknown nodes are kept.
        let mut s = s;
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let (groups, skipped) = desired_groups(&s, &pods, &nodes);
        assert!(skipped.is_empty());
        assert!(groups.values().flat_map(|g| g.endpoints.values()).all(|e| e.conditions.as_ref().unwrap().ready == Some(true)));
        assert_eq!(groups.values().map(|g| g.endpoints.len()).sum::<usize>(), 2);
    }

    #[test]
    fn hostname_only_for_the_pods_subdomain_service() {
        let s = web_svc();
        let mut p = (*web_pod("web-0", "10.1.0.1", Some(8080), true)).clone();
        p.spec.as_mut().unwrap().hostname = Some("web-0".into());
        assert_eq!(pod_to_endpoint(&p, None, &s).unwrap().hostname, None);
        p.spec.as_mut().unwrap().subdomain = Some("web".into());
        assert_eq!(pod_to_endpoint(&p, None, &s).unwrap().hostname.as_deref(), Some("web-0"));
    }

    #[test]
    fn headless_service_without_ports_groups_under_no_ports() {
        let s = svc(serde_json::json!({"metadata": {"name": "db", "namespace": "ns"}, "spec": {"selector": {"app": "web"}, "clusterIP": "None"}}));
        assert!(is_headless(&s));
        let (groups, _) = desired_groups(&s, &[web_pod("a", "10.1.0.1", None, true)], &HashMap::from([("n1".into(), None)]));
        assert_eq!(groups.len(), 1);
        assert!(groups.values().next().unwrap().ports.is_empty());
    }

    #[test]
    fn port_keys_ignore_order() {
        let p = |n: &str, port| EndpointPort { name: Some(n.into()), port: Some(port), protocol: Some("TCP".into()), app_protocol: None };
        assert_eq!(port_key(&[p("a", 1), p("b", 2)]), port_key(&[p("b", 2), p("a", 1)]));
        assert_ne!(port_key(&[p("a", 1)]), port_key(&[p("a", 2)]));
    }

    #[test]
    fn hints_only_when_every_zone_has_a_ready_endpoint() {
        let s = web_svc();
        let nodes = HashMap::from([("n1".to_string(), Some("z1".to_string()))]);
        let (mut groups, _) = desired_groups(&s, &[web_pod("a", "10.1.0.1", Some(8080), true), web_pod("b", "10.1.0.2", Some(8080), false)], &nodes);
        let zones: BTreeSet<String> = ["z1".to_string()].into();
        apply_hints(&mut groups, &zones, true);
        let hinted: Vec<_> = groups.values().flat_map(|g| g.endpoints.values()).map(|e| e.hints.clone()).collect();
        assert_eq!(hinted.iter().filter(|h| h.is_some()).count(), 1, "only the ready endpoint: {hinted:?}");
        let h = hinted.iter().flatten().next().unwrap();
        assert_eq!(h.for_zones.as_ref().unwrap()[0].name, "z1");
        // A zone without endpoints: no hints at all.
        let zones: BTreeSet<String> = ["z1".to_string(), "z2".to_string()].into();
        apply_hints(&mut groups, &zones, true);
        assert!(groups.values().flat_map(|g| g.endpoints.values()).all(|e| e.hints.is_none()));
        apply_hints(&mut groups, &["z1".to_string()].into(), false);
        assert!(groups.values().flat_map(|g| g.endpoints.values()).all(|e| e.hints.is_none()));
        let mut annotated = s.clone();
        annotated.metadata.annotations = Some([(ANNOTATION_TOPOLOGY_AWARE_HINTS.to_string(), "auto".to_string())].into());
        assert!(hints_enabled(&annotated));
        annotated.metadata.annotations = Some([(ANNOTATION_TOPOLOGY_MODE.to_string(), "Auto".to_string())].into());
        assert!(hints_enabled(&annotated));
        assert!(!hints_enabled(&s));
    }
}
