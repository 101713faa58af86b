//! The disruption controller against an in-process API server: a PodDisruptionBudget's status follows its
//! pods' readiness, and the eviction API then lets one pod go and refuses the next.

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, PostParams};
use serde_json::json;
use skiff_controllers::disruption;
use support::{Running, eventually, set_ready, start_server};

async fn status(pdbs: &Api<PodDisruptionBudget>, name: &str) -> Option<(i32, i32, i32, i32)> {
    let s = pdbs.get(name).await.ok()?.status?;
    Some((s.expected_pods, s.current_healthy, s.desired_healthy, s.disruptions_allowed))
}

#[tokio::test]
async fn budget_status_follows_readiness_and_gates_evictions() {
    let (_server, client) = start_server().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client.clone());
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
    .unwrap();
    let rs = sets.create(&PostParams::default(), &rs).await.unwrap();
    let uid = rs.metadata.uid.clone().unwrap();
    for i in 0..3 {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("web-{i}"), "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": uid, "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        set_ready(&pods, &format!("web-{i}"), true).await.unwrap();
    }
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let controller = Running::spawn(&client, disruption::run);

    // Three of three ready, one may be unavailable: one disruption allowed.
    eventually("one disruption allowed", || async { status(&pdbs, "web").await == Some((3, 3, 2, 1)) }).await;
    set_ready(&pods, "web-2", false).await.unwrap();
    eventually("no disruption while a pod is not ready", || async { status(&pdbs, "web").await == Some((3, 2, 2, 0)) }).await;
    let refused = pods.evict("web-0", &EvictParams::default()).await.unwrap_err();
    assert!(matches!(&refused, kube::Error::Api(e) if e.code == 429), "{refused:?}");
    set_ready(&pods, "web-2", true).await.unwrap();
    eventually("one disruption allowed again", || async { status(&pdbs, "web").await == Some((3, 3, 2, 1)) }).await;
    pods.evict("web-0", &EvictParams::default()).await.unwrap();
    // The budget is spent until the controller sees the pod gone (and a replacement would be Ready).
    let refused = pods.evict("web-1", &EvictParams::default()).await.unwrap_err();
    assert!(matches!(&refused, kube::Error::Api(e) if e.code == 429), "{refused:?}");
    eventually("the evicted pod is not counted", || async { status(&pdbs, "web").await == Some((3, 2, 2, 0)) }).await;
    let s = pdbs.get("web").await.unwrap().status.unwrap();
    let condition = s.conditions.unwrap().into_iter().find(|c| c.type_ == "DisruptionAllowed").unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "InsufficientPods"));
    controller.stop().await;
}
