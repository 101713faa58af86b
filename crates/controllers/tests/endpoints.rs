//! The Endpoints controller against the in-process API server. Pods get their IP and readiness through the
//! status subresource, as a kubelet would report them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use skiff_controllers::endpoints;

mod endpoint_common;
mod support;
use endpoint_common::{PodSpec, create_node, create_pod, create_service, set_pod_status};
use support::{Running, eventually, start_server};

struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    client: kube::Client,
    endpoints: Api<Endpoints>,
    pods: Api<Pod>,
    services: Api<Service>,
    controller: Running<endpoints::Error>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        create_node(&client, "n1", None).await;
        let controller = Running::spawn(&client, endpoints::run);
        Harness {
            endpoints: Api::namespaced(client.clone(), "default"),
            pods: Api::namespaced(client.clone(), "default"),
            services: Api::namespaced(client.clone(), "default"),
            client,
            controller,
            _server: server,
        }
    }

    async fn web_pod(&self, name: &str, ip: &str, port: Option<i32>, ready: bool) -> Pod {
        create_pod(&self.client, PodSpec { name, labels: serde_json::json!({"app": "web"}), node: "n1", ip, http_port: port, ready }).await
    }

    async fn subsets(&self, name: &str) -> Option<Vec<EndpointSubset>> {
        self.endpoints.get_opt(name).await.unwrap().map(|e| e.subsets.unwrap_or_default())
    }
}

fn ips(v: &Option<Vec<EndpointAddress>>) -> Vec<String> {
    v.iter().flatten().map(|a| a.ip.clone()).collect()
}

fn web_service(extra_spec: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]});
    spec.as_object_mut().unwrap().extend(extra_spec.as_object().unwrap().clone());
    serde_json::json!({"metadata": {"name": "web", "labels": {"team": "blue"}}, "spec": spec})
}

#[tokio::test]
async fn endpoints_list_ready_and_not_ready_addresses_per_port_set() {
    let h = Harness::start().await;
    create_service(&h.client, web_service(serde_json::json!({}))).await;
    h.web_pod("web-a", "10.42.0.10", Some(8080), true).await;
    h.web_pod("web-b", "10.42.0.11", Some(8080), true).await;
    h.web_pod("web-c", "10.42.0.12", Some(8080), false).await;
    // Its named port does not resolve: not listed.
    h.web_pod("web-d", "10.42.0.13", None, true).await;
    eventually("2 ready and 1 not-ready address", || async {
        h.subsets("web").await.is_some_and(|s| s.len() == 1 && ips(&s[0].addresses).len() == 2 && ips(&s[0].not_ready_addresses).len() == 1)
    })
    .await;
    let ep = h.endpoints.get("web").await.unwrap();
    let s = &ep.subsets.as_ref().unwrap()[0];
    assert_eq!(ips(&s.addresses), ["10.42.0.10", "10.42.0.11"]);
    assert_eq!(ips(&s.not_ready_addresses), ["10.42.0.12"]);
    let port = &s.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port, port.protocol.as_deref()), (Some("http"), 8080, Some("TCP")));
    let a = &s.addresses.as_ref().unwrap()[0];
    assert_eq!((a.node_name.as_deref(), a.target_ref.as_ref().unwrap().name.as_deref()), (Some("n1"), Some("web-a")));
    let labels = ep.metadata.labels.clone().unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
    assert!(!labels.contains_key("service.kubernetes.io/headless"));
    assert!(ep.metadata.owner_references.is_none());

    // Readiness flips move addresses between the lists.
    set_pod_status(&h.client, "web-a", "10.42.0.10", false).await;
    eventually("web-a is not ready", || async {
        h.subsets("web").await.is_some_and(|s| ips(&s[0].not_ready_addresses) == ["10.42.0.10", "10.42.0.12"])
    })
    .await;

    // No rewrite when nothing changed.
    let rv = h.endpoints.get("web").await.unwrap().metadata.resource_version;
    let p = serde_json::json!({"metadata": {"annotations": {"touched": "yes"}}});
    h.pods.patch("web-b", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.endpoints.get("web").await.unwrap().metadata.resource_version, rv);

    // A terminating pod leaves the Endpoints (without publishNotReadyAddresses).
    h.pods.delete("web-b", &DeleteParams::default()).await.unwrap();
    eventually("web-b is gone", || async { h.subsets("web").await.is_some_and(|s| ips(&s[0].addresses).is_empty()) }).await;

    // Deleted by someone: put back.
    h.endpoints.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the Endpoints are recreated", || async { h.subsets("web").await.is_some_and(|s| s.len() == 1) }).await;
    h.controller.stop().await;
}

#[tokio::test]
async fn endpoints_publish_not_ready_and_headless_services() {
    let h = Harness::start().await;
    create_service(&h.client, web_service(serde_json::json!({"publishNotReadyAddresses": true}))).await;
    create_service(&h.client, serde_json::json!({"metadata": {"name": "db"}, "spec": {"selector": {"app": "web"}, "clusterIP": "None"}})).await;
    h.web_pod("web-a", "10.42.0.10", Some(8080), false).await;
    h.web_pod("web-b", "10.42.0.11", Some(8080), true).await;
    h.pods.delete("web-b", &DeleteParams::default()).await.unwrap();
    eventually("both (also terminating) addresses ready", || async {
        h.subsets("web").await.is_some_and(|s| s.len() == 1 && ips(&s[0].addresses).len() == 2 && s[0].not_ready_addresses.is_none())
    })
    .await;
    eventually("the headless Service lists web-a, without ports", || async {
        h.subsets("db").await.is_some_and(|s| s.len() == 1 && s[0].ports.is_none() && ips(&s[0].not_ready_addresses) == ["10.42.0.10"])
    })
    .await;
    let labels = h.endpoints.get("db").await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("service.kubernetes.io/headless").map(String::as_str), Some(""));
    h.controller.stop().await;
}

#[tokio::test]
async fn endpoints_selectorless_services_are_left_alone_and_deleted_services_lose_their_endpoints() {
    let h = Harness::start().await;
    h.web_pod("web-a", "10.42.0.10", Some(8080), true).await;
    create_service(&h.client, serde_json::json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"port": 80}]}})).await;
    let hand: Endpoints = serde_json::from_value(serde_json::json!({"metadata": {"name": "ext"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}))
    .unwrap();
    let hand = h.endpoints.create(&PostParams::default(), &hand).await.unwrap();
    create_service(&h.client, web_service(serde_json::json!({}))).await;
    eventually("web has Endpoints", || async { h.subsets("web").await.is_some_and(|s| !s.is_empty()) }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.endpoints.get("ext").await.unwrap().metadata.resource_version, hand.metadata.resource_version);

    // Removing the selector leaves the Endpoints to the user, as upstream does.
    let rv = h.endpoints.get("web").await.unwrap().metadata.resource_version;
    let p = serde_json::json!({"spec": {"selector": null}});
    h.services.patch("web", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    h.web_pod("web-b", "10.42.0.11", Some(8080), true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.endpoints.get("web").await.unwrap().metadata.resource_version, rv);

    // Deleting the Service deletes its Endpoints.
    h.services.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("web's Endpoints are gone", || async { h.endpoints.get_opt("web").await.unwrap().is_none() }).await;
    h.controller.stop().await;
}
