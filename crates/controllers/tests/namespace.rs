//! The namespace controller against the in-process API server: a namespace kept Terminating by a
//! gracefully terminating pod is removed once that pod is gone.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use skiff_controllers::namespace;

mod support;
use support::{Running, eventually, start_server};

#[tokio::test]
async fn a_terminating_namespace_goes_once_its_last_pod_is_gone() {
    let (_server, client) = start_server().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": "doomed"}})).unwrap()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    // On a node, so its deletion is graceful and waits for the kubelet (this test plays the kubelet).
    let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
    pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();

    let running = Running::spawn(&client, namespace::run);
    let first = namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    assert!(first.is_left(), "the namespace waits for its graceful pod");
    eventually("the pod is terminating", || async { pods.get("p").await.is_ok_and(|p| p.metadata.deletion_timestamp.is_some()) }).await;
    assert!(namespaces.get("doomed").await.is_ok(), "still Terminating while the pod terminates");

    // The kubelet confirms the pod's end.
    pods.delete("p", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    eventually("the namespace is removed", || async { namespaces.get("doomed").await.is_err_and(|e| matches!(e, kube::Error::Api(s) if s.code == 404)) }).await;
    running.stop().await;
}
