//! The bare-metal load balancer, as k3s's ServiceLB: a `type: LoadBalancer` Service gets the addresses of the
//! ready nodes as its `status.loadBalancer.ingress`, and every node's proxy opens the Service's ports on them.
//!
//! As with ServiceLB's host ports, one port and protocol can belong to only one LoadBalancer Service: the
//! oldest Service keeps it, a later one stays pending (no ingress) with a warning event until the port is free.
//! When some node carries the label `svccontroller.k3s.cattle.io/enablelb=true`, only labelled nodes are used.
//! Services with a `spec.loadBalancerClass` belong to another implementation and are left alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// The node label that limits ServiceLB to some nodes (k3s's name).
pub const ENABLE_LB_LABEL: &str = "svccontroller.k3s.cattle.io/enablelb";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to update the status of Service {namespace}/{name}: {source}")]
    Status { namespace: String, name: String, source: kube::Error },
}

/// What one LoadBalancer Service should show: its ingress addresses, or the Service that holds a port it wants.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Ingress(Vec<String>),
    PortTaken { port: String, holder: String },
}

/// The addresses LoadBalancer Services get: each ready (and, if any node is labelled, enabled) node's
/// ExternalIP, or its InternalIP when it has none. Sorted, without duplicates.
pub fn ingress_addresses(nodes: &[Node]) -> Vec<String> {
    let enabled = |n: &Node| n.metadata.labels.as_ref().and_then(|l| l.get(ENABLE_LB_LABEL)).is_some_and(|v| v == "true");
    let any_labelled = nodes.iter().any(enabled);
    let mut ips = BTreeSet::new();
    for node in nodes {
        if any_labelled && !enabled(node) {
            continue;
        }
        let status = node.status.as_ref();
        let ready = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            continue;
        }
        let addresses = status.and_then(|s| s.addresses.as_ref()).cloned().unwrap_or_default();
        let pick = addresses.iter().find(|a| a.type_ == "ExternalIP").or_else(|| addresses.iter().find(|a| a.type_ == "InternalIP"));
        if let Some(a) = pick {
            ips.insert(a.address.clone());
        }
    }
    ips.into_iter().collect()
}

/// Decides every LoadBalancer Service's outcome; older Services win port conflicts.
pub fn assign(services: &[Service], addresses: &[String]) -> BTreeMap<(String, String), Outcome> {
    let mut lbs: Vec<&Service> = services.iter().filter(|s| is_ours(s)).collect();
    lbs.sort_by_key(|s| (s.metadata.creation_timestamp.as_ref().map(|t| t.0), s.metadata.namespace.clone(), s.metadata.name.clone()));
    let mut holders: HashMap<(i32, String), String> = HashMap::new();
    let mut out = BTreeMap::new();
    for svc in lbs {
        let key = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
        let me = format!("{}/{}", key.0, key.1);
        let ports: Vec<(i32, String)> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(|ps| ps.iter().map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))).collect())
            .unwrap_or_default();
        let taken = ports.iter().find_map(|p| holders.get(p).map(|h| (p.clone(), h.clone())));
        let outcome = match taken {
            Some(((port, proto), holder)) => Outcome::PortTaken { port: format!("{port}/{proto}"), holder },
            None => {
                for p in ports {
                    holders.insert(p, me.clone());
                }
                Outcome::Ingress(addresses.to_vec())
            }
        };
        out.insert(key, outcome);
    }
    out
}

fn is_ours(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    svc.metadata.deletion_timestamp.is_none()
        && spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_deref()).is_none()
}

fn current_ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

/// Runs until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let (services, svc_writer) = reflector::store::<Service>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let svc_events = reflector(svc_writer, watcher(Api::<Service>::all(ctx.client.clone()), watcher::Config::default()).default_backoff()).touched_objects().map(|_| true);
    let node_events = reflector(node_writer, watcher(Api::<Node>::all(ctx.client.clone()), watcher::Config::default()).default_backoff()).touched_objects().map(|_| false);
    let mut events = futures::stream::select(svc_events, node_events).boxed();
    let mut warned: HashMap<(String, String), String> = HashMap::new();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    let (mut services_seen, mut nodes_seen) = (false, false);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = resync.tick() => {}
            e = events.next() => match e {
                None => return Ok(()),
                Some(true) => services_seen = true,
                Some(false) => nodes_seen = true,
            },
        }
        // Let a burst of events settle into one pass.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Both lists must have arrived (a Service event alone would give every LoadBalancer no address).
        if !services_seen || !nodes_seen {
            continue;
        }
        let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let all_nodes: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        let plan = assign(&svcs, &ingress_addresses(&all_nodes));
        for svc in &svcs {
            let key = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
            let Some(outcome) = plan.get(&key) else { continue };
            if let Err(e) = apply(&ctx, svc, outcome, &mut warned).await {
                tracing::warn!(error = %e, "servicelb");
            }
        }
        warned.retain(|k, _| plan.contains_key(k));
    }
}

async fn apply(ctx: &Context, svc: &Service, outcome: &Outcome, warned: &mut HashMap<(String, String), String>) -> Result<(), Error> {
    let (namespace, name) = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
    let want: Vec<String> = match outcome {
        Outcome::Ingress(ips) => ips.clone(),
        Outcome::PortTaken { port, holder } => {
            if warned.get(&(namespace.clone(), name.clone())) != Some(port) {
                let note = format!("port {port} is already used by LoadBalancer Service {holder}; this Service stays pending until it is free");
                crate::controller_utils::publish(&ctx.recorder, svc, EventType::Warning, "PortInUse", note).await;
                warned.insert((namespace.clone(), name.clone()), port.clone());
            }
            Vec::new()
        }
    };
    if current_ingress(svc) == want {
        return Ok(());
    }
    let ingress: serde_json::Value = if want.is_empty() { json!(null) } else { json!(want.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect::<Vec<_>>()) };
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": ingress}}})))
        .await
        .map_err(|source| Error::Status { namespace: namespace.clone(), name: name.clone(), source })?;
    if let Outcome::Ingress(_) = outcome {
        warned.remove(&(namespace.clone(), name.clone()));
        tracing::info!(service = %format!("{namespace}/{name}"), ingress = ?want, "load balancer addresses");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, internal: &str, external: Option<&str>, labels: serde_json::Value) -> Node {
        let mut addresses = vec![json!({"type": "InternalIP", "address": internal})];
        if let Some(e) = external {
            addresses.push(json!({"type": "ExternalIP", "address": e}));
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "status": {"addresses": addresses, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        .unwrap()
    }

    fn lb(name: &str, created: &str, ports: &[(i32, &str)], class: Option<&str>) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": class,
                     "ports": ports.iter().map(|(p, proto)| json!({"port": p, "protocol": proto})).collect::<Vec<_>>()}}))
        .unwrap()
    }

    #[test]
    fn ready_nodes_give_their_external_or_internal_address() {
        let nodes = vec![
            node("a", true, "10.0.0.1", None, json!({})),
            node("b", true, "10.0.0.2", Some("203.0.113.2"), json!({})),
            node("c", false, "10.0.0.3", None, json!({})),
        ];
        assert_eq!(ingress_addresses(&nodes), vec!["10.0.0.1".to_string(), "203.0.113.2".to_string()]);
        let labelled = vec![node("a", true, "10.0.0.1", None, json!({ENABLE_LB_LABEL: "true"})), node("b", true, "10.0.0.2", None, json!({}))];
        assert_eq!(ingress_addresses(&labelled), vec!["10.0.0.1".to_string()]);
    }

    #[test]
    fn the_older_service_keeps_a_shared_port() {
        let ips = vec!["10.0.0.1".to_string()];
        let services = vec![
            lb("new", "2026-01-02T00:00:00Z", &[(80, "TCP")], None),
            lb("old", "2026-01-01T00:00:00Z", &[(80, "TCP"), (443, "TCP")], None),
            lb("udp", "2026-01-03T00:00:00Z", &[(80, "UDP")], None),
            lb("other", "2026-01-01T00:00:00Z", &[(80, "TCP")], Some("example.com/lb")),
        ];
        let plan = assign(&services, &ips);
        let get = |n: &str| plan.get(&("default".to_string(), n.to_string()));
        assert_eq!(get("old"), Some(&Outcome::Ingress(ips.clone())));
        assert_eq!(get("udp"), Some(&Outcome::Ingress(ips.clone())), "another protocol is another port");
        assert_eq!(get("new"), Some(&Outcome::PortTaken { port: "80/TCP".into(), holder: "default/old".into() }));
        assert_eq!(get("other"), None, "a loadBalancerClass belongs to someone else");
    }
}
