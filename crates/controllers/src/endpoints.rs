//! The Endpoints controller: every Service with a selector gets an `Endpoints` object of the same name
//! listing its pods' addresses, ready and not ready, per port set (upstream's `pkg/controller/endpoint`).
//! Services without a selector and ExternalName Services are left alone (their Endpoints are someone
//! else's); the Endpoints of a deleted Service are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::Backoff;
use crate::endpointslice::desired::{self, LABEL_HEADLESS};
use crate::endpointslice::queue::WorkQueue;
use crate::endpointslice::{HasBackoff, pod_events, reflect, service_events, worker};

/// The most addresses one Endpoints object lists (upstream's `maxCapacity`).
pub const MAX_CAPACITY: usize = 1000;
/// Set to `truncated` on an Endpoints object that lists only [`MAX_CAPACITY`] of the addresses.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// What can go wrong in one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} Endpoints {service}: {source}")]
    Write { action: &'static str, service: String, source: kube::Error },
    #[error("the {0} cache stopped before it was filled")]
    Cache(&'static str),
}

struct State {
    ctx: Context,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    backoff: Backoff,
}

impl HasBackoff for State {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

/// Workers syncing Services at the same time (upstream's `--concurrent-endpoint-syncs` is 5).
const WORKERS: usize = 2;

/// Runs the controller until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (services, services_w) = reflector::store::<Service>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let (endpoints, endpoints_w) = reflector::store::<Endpoints>();
    let state = Arc::new(State { ctx, services: services.clone(), pods, endpoints, backoff: Backoff::default() });
    let queue = Arc::new(WorkQueue::default());

    let service_loop = service_events(reflect(Api::all(client.clone()), services_w), queue.clone());
    let pod_loop = pod_events(reflect(Api::all(client.clone()), pods_w), services.clone(), queue.clone());
    let endpoints_loop = {
        let queue = queue.clone();
        // Endpoints deleted by someone else are put back.
        reflect(Api::<Endpoints>::all(client), endpoints_w).for_each(move |ev| {
            if let Event::Delete(ep) = &ev {
                queue.add(crate::controller_utils::key_of(&ep.metadata));
            }
            std::future::ready(())
        })
    };
    let work = {
        let (state, queue, shutdown) = (state.clone(), queue.clone(), shutdown.clone());
        async move {
            state.services.wait_until_ready().await.map_err(|_| Error::Cache("Service"))?;
            state.pods.wait_until_ready().await.map_err(|_| Error::Cache("Pod"))?;
            state.endpoints.wait_until_ready().await.map_err(|_| Error::Cache("Endpoints"))?;
            let run = |_| worker(state.clone(), queue.clone(), shutdown.clone(), "endpoints", sync);
            futures::future::join_all((0..WORKERS).map(run)).await;
            Ok::<(), Error>(())
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        res = async { tokio::join!(service_loop, pod_loop, endpoints_loop, work).3 } => res,
    }
}

/// One Service's sync (upstream's `syncService`).
async fn sync(state: Arc<State>, key: String) -> Result<Option<Duration>, Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
    let api: Api<Endpoints> = Api::namespaced(state.ctx.client.clone(), ns);
    let err = |action, source| Error::Write { action, service: key.clone(), source };
    let Some(svc) = state.services.get(&ObjectRef::new(name).within(ns)) else {
        // The Service was deleted: so are its Endpoints.
        return match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(err("delete", e)),
        };
    };
    if desired::is_external_name(&svc) || !desired::has_selector(&svc) {
        return Ok(None);
    }
    let pods: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && desired::selects(&svc, p.metadata.labels.as_ref()))
        .collect();
    let (subsets, truncated) = truncate(subsets_for(&svc, &pods), MAX_CAPACITY);
    let labels = endpoints_labels(&svc);
    let current = state.endpoints.get(&ObjectRef::new(name).within(ns));
    if let Some(cur) = &current {
        let annotated = cur.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_OVER_CAPACITY));
        if cur.subsets.clone().unwrap_or_default() == subsets
            && cur.metadata.labels.clone().unwrap_or_default() == labels
            && annotated == truncated
        {
            return Ok(None);
        }
    }
    let mut ep = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta { name: Some(name.to_string()), namespace: Some(ns.to_string()), ..Default::default() },
        subsets: None,
    });
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    ep.metadata.labels = Some(labels);
    let annotations = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        annotations.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    if annotations.is_empty() {
        ep.metadata.annotations = None;
    }
    let res = if current.is_some() { api.replace(name, &PostParams::default(), &ep).await } else { api.create(&PostParams::default(), &ep).await };
    match res {
        Ok(_) => Ok(None),
        // The namespace is terminating.
        Err(kube::Error::Api(s)) if current.is_none() && s.code == 403 => Ok(None),
        Err(e) => Err(err(if current.is_some() { "update" } else { "create" }, e)),
    }
}

/// The Service's labels, with `service.kubernetes.io/headless` exactly when it has no cluster IP.
pub fn endpoints_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if desired::is_headless(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels
}

/// The subsets for the Service's selected pods (upstream's `syncService` loop and `RepackSubsets`): each
/// pod's address with the ports that resolve on it, ready or not ready, addresses with the same port set
/// in one subset; sorted (addresses by IP, ports and subsets by content) so that equal input gives equal
/// output.
pub fn subsets_for(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish_not_ready = desired::publish_not_ready(svc);
    let svc_ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let headless_none = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    // (ip, uid, ready) -> (address, ports)
    let mut per_address: BTreeMap<(String, String, bool), (EndpointAddress, Vec<EndpointPort>)> = BTreeMap::new();
    for pod in pods {
        // Terminating pods only when not-ready addresses are published.
        if !desired::should_pod_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = desired::pod_ipv4(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.clone(),
            hostname: desired::should_set_hostname(pod, svc).then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone())).flatten(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let ready = publish_not_ready || crate::pod_util::is_pod_ready(pod);
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: desired::find_port(pod, sp)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        // A pod none of whose ports resolve is listed only for a headless Service without ports.
        if ports.is_empty() && !(svc_ports.is_empty() && headless_none) {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        per_address.insert((ip, uid, ready), (address, ports));
    }
    let mut by_ports: BTreeMap<Vec<(String, i32, String)>, EndpointSubset> = BTreeMap::new();
    for ((_, _, ready), (address, mut ports)) in per_address {
        ports.sort_by_key(port_sort_key);
        let key: Vec<_> = ports.iter().map(port_sort_key).collect();
        let subset = by_ports.entry(key).or_insert_with(|| EndpointSubset { ports: (!ports.is_empty()).then_some(ports), ..Default::default() });
        let list = if ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        list.get_or_insert_with(Vec::new).push(address);
    }
    let mut subsets: Vec<EndpointSubset> = by_ports.into_values().collect();
    for s in &mut subsets {
        for list in [&mut s.addresses, &mut s.not_ready_addresses].into_iter().flatten() {
            list.sort_by_key(address_sort_key);
        }
    }
    subsets
}

fn port_sort_key(p: &EndpointPort) -> (String, i32, String) {
    (p.name.clone().unwrap_or_default(), p.port, p.protocol.clone().unwrap_or_default())
}

fn address_sort_key(a: &EndpointAddress) -> (Option<std::net::Ipv4Addr>, String, String) {
    (a.ip.parse().ok(), a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default())
}

/// Cuts the subsets to at most `max` addresses (upstream's `truncateEndpoints`): ready addresses are kept
/// before not-ready ones, each subset keeping its share of what is cut. Returns whether anything was cut.
pub fn truncate(mut subsets: Vec<EndpointSubset>, max: usize) -> (Vec<EndpointSubset>, bool) {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= max {
        return (subsets, false);
    }
    let truncate_ready = total_ready > max;
    let (budget, total) = if truncate_ready { (max, total_ready) } else { (max - total_ready, total_not_ready) };
    let mut left = budget;
    for s in &mut subsets {
        let n = if truncate_ready { len(&s.addresses) } else { len(&s.not_ready_addresses) };
        let share = (n * budget).div_ceil(total.max(1)).min(left);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(share);
            }
            s.not_ready_addresses = None;
            left -= len(&s.addresses);
        } else {
            if let Some(a) = s.not_ready_addresses.as_mut() {
                a.truncate(share);
            }
            left -= len(&s.not_ready_addresses);
        }
        for list in [&mut s.addresses, &mut s.not_ready_addresses] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                *list = None;
            }
        }
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    (subsets, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, ip: &str, port: Option<i32>, ready: bool) -> Arc<Pod> {
        let ports: Vec<_> = port.into_iter().map(|p| serde_json::json!({"name": "http", "containerPort": p})).collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .unwrap(),
        )
    }

    fn web() -> Service {
        svc(serde_json::json!({"metadata": {"name": "web", "namespace": "ns", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.0.0.1",
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "admin", "port": 81, "targetPort": 9000}]}}))
    }

    #[test]
    fn addresses_grouped_by_resolved_ports_ready_and_not_ready() {
        let pods = vec![pod("b", "10.1.0.10", Some(8080), true), pod("a", "10.1.0.9", Some(8080), false), pod("c", "10.1.0.11", None, true)];
        let subsets = subsets_for(&web(), &pods);
        assert_eq!(subsets.len(), 2, "{subsets:#?}");
        let full = subsets.iter().find(|s| s.ports.as_ref().unwrap().len() == 2).unwrap();
        let ports: Vec<(Option<&str>, i32)> = full.ports.as_ref().unwrap().iter().map(|p| (p.name.as_deref(), p.port)).collect();
        assert_eq!(ports, vec![(Some("admin"), 9000), (Some("http"), 8080)]);
        assert_eq!(full.addresses.as_ref().unwrap().iter().map(|a| a.ip.as_str()).collect::<Vec<_>>(), ["10.1.0.10"]);
        assert_eq!(full.not_ready_addresses.as_ref().unwrap()[0].ip, "10.1.0.9");
        assert_eq!(full.addresses.as_ref().unwrap()[0].target_ref.as_ref().unwrap().name.as_deref(), Some("b"));
        assert_eq!(full.addresses.as_ref().unwrap()[0].node_name.as_deref(), Some("n1"));
        let partial = subsets.iter().find(|s| s.ports.as_ref().unwrap().len() == 1).unwrap();
        assert_eq!(partial.addresses.as_ref().unwrap()[0].ip, "10.1.0.11");
        // Same input in another order: same output.
        let mut reversed = pods.clone();
        reversed.reverse();
        assert_eq!(subsets_for(&web(), &reversed), subsets);
    }

    #[test]
    fn terminating_pods_only_with_publish_not_ready() {
        let mut t = (*pod("t", "10.1.0.5", Some(8080), true)).clone();
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
        let pods = vec![Arc::new(t), pod("u", "10.1.0.6", Some(8080), false)];
        let subsets = subsets_for(&web(), &pods);
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].addresses.is_none());
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 1);
        let mut s = web();
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let subsets = subsets_for(&s, &pods);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 2);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_label_and_portless_headless_service() {
        let s = svc(serde_json::json!({"metadata": {"name": "db", "namespace": "ns", "labels": {"x": "y"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "None"}}));
        assert_eq!(endpoints_labels(&s).get(LABEL_HEADLESS).map(String::as_str), Some(""));
        assert!(!endpoints_labels(&web()).contains_key(LABEL_HEADLESS));
        let subsets = subsets_for(&s, &[pod("a", "10.1.0.1", None, true)]);
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 1);
    }

    fn addrs(n: usize, prefix: u8) -> Option<Vec<EndpointAddress>> {
        Some((0..n).map(|i| EndpointAddress { ip: format!("10.{prefix}.{}.{}", i / 250, i % 250), ..Default::default() }).collect())
    }

    #[test]
    fn truncation_keeps_ready_first_and_shares_by_proportion() {
        let subsets = vec![
            EndpointSubset { addresses: addrs(600, 1), not_ready_addresses: addrs(100, 2), ports: None },
            EndpointSubset { addresses: addrs(200, 3), not_ready_addresses: addrs(300, 4), ports: None },
        ];
        let (out, cut) = truncate(subsets.clone(), 1000);
        assert!(cut);
        let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
        assert_eq!(count(&out[0].addresses) + count(&out[1].addresses), 800, "every ready address kept");
        // 200 not-ready places shared 100:300 -> 50 and 150.
        assert_eq!((count(&out[0].not_ready_addresses), count(&out[1].not_ready_addresses)), (50, 150));

        let (out, cut) = truncate(vec![EndpointSubset { addresses: addrs(1200, 1), not_ready_addresses: addrs(5, 2), ports: None }], 1000);
        assert!(cut);
        assert_eq!(count(&out[0].addresses), 1000);
        assert!(out[0].not_ready_addresses.is_none());
        let (out, cut) = truncate(subsets[..1].to_vec(), 1000);
        assert!(!cut);
        assert_eq!(out, subsets[..1].to_vec());
    }
}
