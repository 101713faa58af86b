//! Node lifecycle and service account controllers against the in-process API server.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use skiff_controllers::node_lifecycle::{self, NodeLifecycleConfig, TAINT_UNREACHABLE};

mod support;
use support::{Running, eventually, start_server};


fn ago(secs: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string()
}

fn pod(name: &str, tolerations: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}], "tolerations": tolerations}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_silent_node_is_marked_unknown_tainted_and_its_pods_evicted_then_healed() {
    let (_server, client) = start_server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": ago(100), "lastTransitionTime": ago(100)}]}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let quick = serde_json::json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]);
    pods.create(&PostParams::default(), &pod("quick", quick)).await.unwrap();
    pods.create(&PostParams::default(), &pod("patient", serde_json::json!([]))).await.unwrap();
    let config = NodeLifecycleConfig { monitor_period: Duration::from_millis(200), grace_period: Duration::from_secs(1) };
    let controller = Running::spawn(&client, |ctx, shutdown| node_lifecycle::run(ctx, config, shutdown));

    eventually("the node is Unknown and tainted unreachable", || async {
        let n = nodes.get("n1").await.unwrap();
        let ready = n.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
        ready.status == "Unknown"
            && ready.message.as_deref() == Some("Kubelet stopped posting node status.")
            && taints.iter().any(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoExecute")
            && taints.iter().any(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoSchedule")
    })
    .await;
    eventually("the pod tolerating 1 s is evicted", || async { pods.get("quick").await.is_ok_and(|p| p.metadata.deletion_timestamp.is_some()) }).await;
    let patient = pods.get("patient").await.unwrap();
    assert!(patient.metadata.deletion_timestamp.is_none(), "the pod with the default 300 s toleration stays for now");

    // The kubelet comes back: a fresh lease and a Ready condition.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let now = jiff::Timestamp::now().to_string();
    let ready = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    eventually("the node loses its lifecycle taints", || async {
        nodes.get("n1").await.unwrap().spec.and_then(|s| s.taints).unwrap_or_default().is_empty()
    })
    .await;
    controller.stop().await;
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account_again_after_deletion() {
    let (_server, client) = start_server().await;
    let controller = Running::spawn(&client, skiff_controllers::serviceaccount::run);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "team-a"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    eventually("team-a has a default account", || async { accounts.get("default").await.is_ok() }).await;
    let in_default: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    eventually("default has one too", || async { in_default.get("default").await.is_ok() }).await;
    let uid = accounts.get("default").await.unwrap().metadata.uid;
    accounts.delete("default", &DeleteParams::default()).await.unwrap();
    eventually("the account is recreated", || async { accounts.get("default").await.is_ok_and(|a| a.metadata.uid != uid) }).await;
    controller.stop().await;
}

#[tokio::test]
async fn nodes_get_distinct_pod_cidrs() {
    use skiff_controllers::node_ipam::{self, NodeIpamConfig};
    let (_server, client) = start_server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let taken: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "old"}, "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}})).unwrap();
    nodes.create(&PostParams::default(), &taken).await.unwrap();
    let config = NodeIpamConfig { cluster_cidr: "10.42.0.0/16".parse().unwrap(), node_mask: 24 };
    let controller = Running::spawn(&client, |ctx, shutdown| node_ipam::run(ctx, config, shutdown));
    for name in ["a", "b"] {
        let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    let cidr = |name: &'static str| {
        let nodes = nodes.clone();
        async move { nodes.get(name).await.unwrap().spec.and_then(|s| s.pod_cidr) }
    };
    eventually("both new nodes have pod CIDRs", || async { cidr("a").await.is_some() && cidr("b").await.is_some() }).await;
    let mut got = vec![cidr("a").await.unwrap(), cidr("b").await.unwrap()];
    got.sort();
    assert_eq!(got, vec!["10.42.1.0/24".to_string(), "10.42.2.0/24".to_string()]);
    controller.stop().await;
}
