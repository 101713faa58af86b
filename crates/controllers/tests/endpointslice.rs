//! The EndpointSlice controller against the in-process API server. Pods get their IP and readiness through
//! the status subresource, as a kubelet would report them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::endpointslice::{self, EndpointSliceConfig};

mod endpoint_common;
mod support;
use endpoint_common::{PodSpec, create_node, create_pod, create_service, set_pod_status};
use support::{Running, eventually, start_server};

struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    client: kube::Client,
    slices: Api<EndpointSlice>,
    pods: Api<Pod>,
    services: Api<Service>,
    controller: Running<endpointslice::Error>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        create_node(&client, "n1", Some("zone-a")).await;
        let controller = Running::spawn(&client, |ctx, s| endpointslice::run_with(ctx, EndpointSliceConfig::default(), s));
        Harness {
            slices: Api::namespaced(client.clone(), "default"),
            pods: Api::namespaced(client.clone(), "default"),
            services: Api::namespaced(client.clone(), "default"),
            client,
            controller,
            _server: server,
        }
    }

    /// The slices labelled for `service`.
    async fn slices_of(&self, service: &str) -> Vec<EndpointSlice> {
        self.slices.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await.unwrap().items
    }

    async fn web_pod(&self, name: &str, ip: &str, ready: bool) -> Pod {
        create_pod(&self.client, PodSpec { name, labels: serde_json::json!({"app": "web"}), node: "n1", ip, http_port: Some(8080), ready }).await
    }
}

fn web_service(extra_spec: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9100, "targetPort": 9101}]});
    spec.as_object_mut().unwrap().extend(extra_spec.as_object().unwrap().clone());
    serde_json::json!({"metadata": {"name": "web", "labels": {"team": "blue"}}, "spec": spec})
}

fn endpoints(slices: &[EndpointSlice]) -> BTreeMap<String, Endpoint> {
    slices.iter().flat_map(|s| s.endpoints.iter()).map(|e| (e.target_ref.as_ref().unwrap().name.clone().unwrap(), e.clone())).collect()
}

fn conditions(e: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
    let c = e.conditions.as_ref().unwrap();
    (c.ready, c.serving, c.terminating)
}

#[tokio::test]
async fn endpointslice_selector_service_gets_a_slice_of_its_ready_pods_with_resolved_ports() {
    let h = Harness::start().await;
    let svc = create_service(&h.client, web_service(serde_json::json!({}))).await;
    for (i, name) in ["web-a", "web-b", "web-c"].into_iter().enumerate() {
        h.web_pod(name, &format!("10.42.0.{}", i + 10), true).await;
    }
    // A pod that does not match the selector is not listed.
    create_pod(&h.client, PodSpec { name: "other", labels: serde_json::json!({"app": "db"}), node: "n1", ip: "10.42.0.99", http_port: Some(8080), ready: true }).await;
    eventually("one slice lists the 3 pods", || async {
        let s = h.slices_of("web").await;
        s.len() == 1 && s[0].endpoints.len() == 3
    })
    .await;
    let slice = h.slices_of("web").await.remove(0);
    assert_eq!(slice.address_type, "IPv4");
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("web-"));
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert_eq!(labels["team"], "blue", "the Service's labels are copied");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Service", svc.metadata.uid.as_deref().unwrap()));
    assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    let mut ports: Vec<(String, i32, String)> =
        slice.ports.unwrap().into_iter().map(|p| (p.name.unwrap(), p.port.unwrap(), p.protocol.unwrap())).collect();
    ports.sort();
    assert_eq!(ports, vec![("http".into(), 8080, "TCP".into()), ("metrics".into(), 9101, "TCP".into())]);
    let eps = endpoints(&h.slices_of("web").await);
    assert_eq!(eps.keys().cloned().collect::<Vec<_>>(), ["web-a", "web-b", "web-c"]);
    let a = &eps["web-a"];
    assert_eq!(a.addresses, ["10.42.0.10"]);
    assert_eq!(conditions(a), (Some(true), Some(true), Some(false)));
    assert_eq!(a.node_name.as_deref(), Some("n1"));
    assert_eq!(a.zone.as_deref(), Some("zone-a"));
    assert_eq!(a.target_ref.as_ref().unwrap().kind.as_deref(), Some("Pod"));
    assert!(a.hints.is_none(), "no hints without the topology annotation");

    // A pod whose named port resolves to another number gets a slice of its own port set.
    create_pod(&h.client, PodSpec { name: "web-d", labels: serde_json::json!({"app": "web"}), node: "n1", ip: "10.42.0.13", http_port: Some(8081), ready: true }).await;
    eventually("a second slice for port 8081", || async {
        let s = h.slices_of("web").await;
        s.len() == 2
            && s.iter().any(|s| s.endpoints.len() == 1 && s.ports.as_ref().unwrap().iter().any(|p| p.port == Some(8081)))
    })
    .await;

    // Not ready: ready and serving turn false.
    set_pod_status(&h.client, "web-b", "10.42.0.11", false).await;
    eventually("web-b is not ready", || async {
        endpoints(&h.slices_of("web").await).get("web-b").map(conditions) == Some((Some(false), Some(false), Some(false)))
    })
    .await;

    // Minimal churn: a pod change that does not change endpoints writes nothing.
    let before: Vec<_> = h.slices_of("web").await.into_iter().map(|s| (s.metadata.name, s.metadata.resource_version)).collect();
    let p = serde_json::json!({"metadata": {"annotations": {"touched": "yes"}}});
    h.pods.patch("web-a", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut after: Vec<_> = h.slices_of("web").await.into_iter().map(|s| (s.metadata.name, s.metadata.resource_version)).collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after, "unchanged endpoints do not rewrite slices");

    // Relabelled out of the selector: removed.
    let p = serde_json::json!({"metadata": {"labels": {"app": "gone"}}});
    h.pods.patch("web-c", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    eventually("web-c leaves the slice", || async { !endpoints(&h.slices_of("web").await).contains_key("web-c") }).await;
    h.controller.stop().await;
}

#[tokio::test]
async fn endpointslice_publish_not_ready_addresses_makes_every_endpoint_ready() {
    let h = Harness::start().await;
    create_service(&h.client, web_service(serde_json::json!({"publishNotReadyAddresses": true}))).await;
    h.web_pod("web-a", "10.42.0.10", false).await;
    h.web_pod("web-b", "10.42.0.11", true).await;
    eventually("both pods listed as ready", || async {
        let eps = endpoints(&h.slices_of("web").await);
        eps.len() == 2 && eps.get("web-a").map(conditions) == Some((Some(true), Some(false), Some(false)))
    })
    .await;
    h.controller.stop().await;
}

#[tokio::test]
async fn endpointslice_many_pods_are_packed_into_slices_of_at_most_100() {
    let h = Harness::start().await;
    create_service(&h.client, web_service(serde_json::json!({}))).await;
    for i in 0..250 {
        h.web_pod(&format!("web-{i}"), &format!("10.42.{}.{}", i / 200, i % 200 + 1), true).await;
    }
    eventually("250 endpoints in 3 slices", || async {
        let s = h.slices_of("web").await;
        endpoints(&s).len() == 250 && s.len() == 3
    })
    .await;
    let slices = h.slices_of("web").await;
    assert!(slices.iter().all(|s| s.endpoints.len() <= 100), "{:?}", slices.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>());
    assert_eq!(slices.iter().map(|s| s.endpoints.len()).sum::<usize>(), 250, "no endpoint listed twice");
    h.controller.stop().await;
}

#[tokio::test]
async fn endpointslice_terminating_pod_is_listed_terminating_and_serving_by_its_readiness() {
    let h = Harness::start().await;
    create_service(&h.client, web_service(serde_json::json!({}))).await;
    h.web_pod("web-a", "10.42.0.10", true).await;
    h.web_pod("web-b", "10.42.0.11", true).await;
    eventually("both listed", || async { endpoints(&h.slices_of("web").await).len() == 2 }).await;
    // Bound to a node, the pod stays terminating until its kubelet finishes (there is none here).
    h.pods.delete("web-a", &DeleteParams::default()).await.unwrap();
    eventually("web-a is terminating, still serving, not ready", || async {
        endpoints(&h.slices_of("web").await).get("web-a").map(conditions) == Some((Some(false), Some(true), Some(true)))
    })
    .await;
    set_pod_status(&h.client, "web-a", "10.42.0.10", false).await;
    eventually("web-a stops serving", || async {
        endpoints(&h.slices_of("web").await).get("web-a").map(conditions) == Some((Some(false), Some(false), Some(true)))
    })
    .await;
    // Terminal pods are left out.
    let failed = serde_json::json!({"status": {"phase": "Failed"}});
    h.pods.patch_status("web-b", &PatchParams::default(), &Patch::Merge(&failed)).await.unwrap();
    eventually("the failed pod is gone from the slice", || async { !endpoints(&h.slices_of("web").await).contains_key("web-b") }).await;
    h.controller.stop().await;
}

#[tokio::test]
async fn endpointslice_services_without_selector_are_left_alone_and_deleted_services_lose_their_slices() {
    let h = Harness::start().await;
    let gc = Running::spawn(&h.client, skiff_controllers::garbage_collector::run);
    h.web_pod("web-a", "10.42.0.10", true).await;

    // A selectorless Service with a hand-made slice (even one claiming to be managed) is not touched.
    create_service(&h.client, serde_json::json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"port": 80}]}})).await;
    let hand: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ext-1", "labels": {"kubernetes.io/service-name": "ext",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.1"]}],
        "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}))
    .unwrap();
    let hand = h.slices.create(&PostParams::default(), &hand).await.unwrap();
    // ExternalName Services get no slices.
    create_service(&h.client, serde_json::json!({"metadata": {"name": "alias"},
        "spec": {"type": "ExternalName", "externalName": "example.com", "selector": {"app": "web"}}})).await;

    // A selector Service with no pods gets one empty placeholder slice.
    create_service(&h.client, serde_json::json!({"metadata": {"name": "empty"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}})).await;
    create_service(&h.client, web_service(serde_json::json!({}))).await;
    eventually("web has its slice and empty its placeholder", || async {
        let empty = h.slices_of("empty").await;
        endpoints(&h.slices_of("web").await).len() == 1 && empty.len() == 1 && empty[0].endpoints.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ext = h.slices_of("ext").await;
    assert_eq!(ext.len(), 1);
    assert_eq!(ext[0].metadata.resource_version, hand.metadata.resource_version, "the hand-made slice is untouched");
    assert!(h.slices_of("alias").await.is_empty());

    // Removing the selector hands the slices to the user (upstream leaves them as they are).
    let before = h.slices_of("web").await;
    let p = serde_json::json!({"spec": {"selector": null}});
    h.services.patch("web", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    h.web_pod("web-b", "10.42.0.11", true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = h.slices_of("web").await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].metadata.resource_version, before[0].metadata.resource_version, "no longer managed");

    // Deleting the Service removes its slices (owner reference, garbage collector).
    h.services.delete("empty", &DeleteParams::default()).await.unwrap();
    h.services.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the deleted Services' slices are gone", || async { h.slices_of("empty").await.is_empty() && h.slices_of("web").await.is_empty() }).await;
    assert_eq!(h.slices_of("ext").await.len(), 1);
    gc.stop().await;
    h.controller.stop().await;
}

#[tokio::test]
async fn endpointslice_topology_mode_auto_hints_each_endpoint_to_its_zone_when_every_zone_has_one() {
    let h = Harness::start().await;
    create_node(&h.client, "n2", Some("zone-b")).await;
    let mut svc = web_service(serde_json::json!({}));
    svc["metadata"]["annotations"] = serde_json::json!({"service.kubernetes.io/topology-mode": "Auto"});
    create_service(&h.client, svc).await;
    h.web_pod("web-a", "10.42.0.10", true).await;
    eventually("web-a listed without hints (zone-b has no endpoint)", || async {
        endpoints(&h.slices_of("web").await).get("web-a").is_some_and(|e| e.hints.is_none())
    })
    .await;
    create_pod(&h.client, PodSpec { name: "web-b", labels: serde_json::json!({"app": "web"}), node: "n2", ip: "10.42.1.10", http_port: Some(8080), ready: true }).await;
    let hint = |e: &Endpoint| e.hints.as_ref().and_then(|h| h.for_zones.as_ref()).map(|z| z.iter().map(|z| z.name.clone()).collect::<Vec<_>>());
    eventually("each endpoint hinted to its own zone", || async {
        let eps = endpoints(&h.slices_of("web").await);
        eps.get("web-a").and_then(hint) == Some(vec!["zone-a".into()]) && eps.get("web-b").and_then(hint) == Some(vec!["zone-b".into()])
    })
    .await;
    assert_eq!(endpoints(&h.slices_of("web").await)["web-b"].zone.as_deref(), Some("zone-b"));
    h.controller.stop().await;
}
