//! What the EndpointSlice and Endpoints controller tests share: Nodes, Services and pods with an IP and a
//! Ready condition set through the status subresource (there is no kubelet).
#![allow(dead_code)] // each test binary uses its own part of it

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};

/// Creates a Ready Node, with `topology.kubernetes.io/zone` when `zone` is given.
pub async fn create_node(client: &kube::Client, name: &str, zone: Option<&str>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = match zone {
        Some(z) => serde_json::json!({"topology.kubernetes.io/zone": z}),
        None => serde_json::json!({}),
    };
    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "lastHeartbeatTime": jiff::Timestamp::now().to_string(), "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

/// Creates a Service from JSON (`metadata.name` and `spec` at least).
pub async fn create_service(client: &kube::Client, v: serde_json::Value) -> Service {
    let svc: Service = serde_json::from_value(v).unwrap();
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &svc).await.unwrap()
}

/// A pod to create with [`create_pod`].
pub struct PodSpec<'a> {
    pub name: &'a str,
    pub labels: serde_json::Value,
    pub node: &'a str,
    pub ip: &'a str,
    /// The container port named `http`, if any.
    pub http_port: Option<i32>,
    pub ready: bool,
}

/// Creates a pod bound to its node, then reports it Running with its IP and Ready condition.
pub async fn create_pod(client: &kube::Client, p: PodSpec<'_>) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ports: Vec<_> = p.http_port.into_iter().map(|n| serde_json::json!({"name": "http", "containerPort": n})).collect();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": p.name, "labels": p.labels},
        "spec": {"nodeName": p.node, "containers": [{"name": "main", "image": "nginx", "ports": ports}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    set_pod_status(client, p.name, p.ip, p.ready).await
}

/// Reports the pod Running with `ip` and its Ready condition `ready`.
pub async fn set_pod_status(client: &kube::Client, name: &str, ip: &str, ready: bool) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let status = serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [{
        "type": "Ready", "status": if ready { "True" } else { "False" },
        "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap()
}
