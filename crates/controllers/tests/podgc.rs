//! The pod garbage collector against the in-process API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::podgc::{self, TAINT_OUT_OF_SERVICE};

mod support;
use support::{Running, eventually, start_server};


fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut spec = serde_json::json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let Some(n) = node {
        spec["nodeName"] = n.into();
    }
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test]
async fn terminated_orphaned_and_out_of_service_pods_are_collected() {
    let (_server, client) = start_server().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let dead: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "dead"}, "spec": {"taints": [{"key": TAINT_OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}]}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &dead).await.unwrap();

    for i in 0..4 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("done-{i}"), Some("n1")),
        )
        .await
        .unwrap();
        let status = serde_json::json!({"status": {"phase": "Succeeded"}});
        pods.patch_status(
            &format!("done-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap();
    }
    pods.create(&PostParams::default(), &pod("running", Some("n1")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("orphan", Some("ghost")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("stuck", Some("dead")))
        .await
        .unwrap();
    pods.delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        pods.get("stuck")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some(),
        "a pod on a node waits for its kubelet"
    );
    let config = podgc::Config {
        terminated_pod_threshold: 2,
        period: Duration::from_millis(100),
        quarantine: Duration::from_millis(300),
    };
    let controller = Running::spawn(&client, |ctx, shutdown| podgc::run_with(ctx, config, shutdown));

    eventually("only two terminated pods are kept", || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        list.iter()
            .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("done-"))
            .count()
            == 2
    })
    .await;
    eventually("the pod of the missing node is gone", || async {
        pods.get_opt("orphan").await.unwrap().is_none()
    })
    .await;
    eventually(
        "the terminating pod on the out-of-service node is gone",
        || async { pods.get_opt("stuck").await.unwrap().is_none() },
    )
    .await;
    assert!(
        pods.get_opt("running").await.unwrap().is_some(),
        "a running pod on a live node stays"
    );

    controller.stop().await;
}
