//! The garbage collector against the in-process API server: background, foreground and orphan
//! propagation over plain objects with owner references (no other controller runs).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::Resource;
use serde_json::json;
use skiff_controllers::garbage_collector;

mod support;
use support::{Running, eventually, start_server};


struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    client: kube::Client,
    controller: Running<garbage_collector::Error>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        let controller = Running::spawn(&client, garbage_collector::run);
        Harness { client, controller, _server: server }
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope>>(&self) -> Api<K>
    where
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn stop(self) {
        self.controller.stop().await;
    }
}

fn owner_ref<K: Resource<DynamicType = ()>>(obj: &K, block: bool) -> serde_json::Value {
    json!({
        "apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "name": obj.meta().name, "uid": obj.meta().uid,
        "controller": true, "blockOwnerDeletion": block
    })
}

async fn create<K>(api: &Api<K>, body: serde_json::Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &serde_json::from_value(body).unwrap()).await.unwrap()
}

fn pod_body(name: &str, owners: serde_json::Value, finalizers: &[&str]) -> serde_json::Value {
    json!({"metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
           "spec": {"containers": [{"name": "c", "image": "i"}]}})
}

fn rs_body(name: &str, owners: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"name": name, "ownerReferences": owners}, "spec": {"replicas": 0,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
}

#[tokio::test]
async fn background_deletes_dependents_of_missing_owners() {
    let h = Harness::start().await;
    let cms: Api<ConfigMap> = h.api();
    let secrets: Api<Secret> = h.api();
    let owner = create(&cms, json!({"metadata": {"name": "owner"}})).await;
    let other = create(&cms, json!({"metadata": {"name": "other"}})).await;
    create(&cms, json!({"metadata": {"name": "dep", "ownerReferences": [owner_ref(&owner, false)]}})).await;
    create(&secrets, json!({"metadata": {"name": "sdep", "ownerReferences": [owner_ref(&owner, false)]}})).await;
    // Two owners: losing one only drops that reference.
    let mut second = owner_ref(&other, false);
    second["controller"] = json!(false);
    create(&cms, json!({"metadata": {"name": "shared", "ownerReferences": [owner_ref(&owner, false), second]}})).await;
    // An owner that never existed.
    create(&cms, json!({"metadata": {"name": "stray", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}]}}))
    .await;
    eventually("the dependent of a missing owner is deleted", || async { cms.get_opt("stray").await.unwrap().is_none() }).await;

    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("dependents are deleted", || async {
        cms.get_opt("dep").await.unwrap().is_none() && secrets.get_opt("sdep").await.unwrap().is_none()
    })
    .await;
    eventually("the shared dependent loses only the dead owner", || async {
        let refs = cms.get("shared").await.unwrap().metadata.owner_references.unwrap_or_default();
        refs.len() == 1 && refs[0].name == "other"
    })
    .await;
    assert!(cms.get_opt("other").await.unwrap().is_some());
    h.stop().await;
}

#[tokio::test]
async fn foreground_deletes_dependents_first() {
    let h = Harness::start().await;
    let deploys: Api<Deployment> = h.api();
    let sets: Api<ReplicaSet> = h.api();
    let pods: Api<Pod> = h.api();
    let d = create(&deploys, json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    .await;
    let rs = create(&sets, rs_body("web-1", json!([owner_ref(&d, true)]))).await;
    // The pod holds on with a finalizer of its own, so the order can be seen.
    create(&pods, pod_body("web-1-a", json!([owner_ref(&rs, true)]), &["example.com/hold"])).await;
    create(&pods, pod_body("web-1-b", json!([owner_ref(&rs, true)]), &[])).await;

    let dp = DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..Default::default() };
    deploys.delete("web", &dp).await.unwrap();
    eventually("the pods are being deleted", || async {
        pods.get_opt("web-1-b").await.unwrap().is_none()
            && pods.get("web-1-a").await.unwrap().metadata.deletion_timestamp.is_some()
    })
    .await;
    // While a dependent remains, its owners stay, terminating, with the foregroundDeletion finalizer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rs_now = sets.get("web-1").await.unwrap();
    assert!(rs_now.metadata.deletion_timestamp.is_some());
    assert_eq!(rs_now.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));
    let d_now = deploys.get("web").await.unwrap();
    assert_eq!(d_now.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));

    // Releasing the last pod lets the whole chain go.
    pods.patch("web-1-a", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("the replica set and then the deployment are gone", || async {
        sets.get_opt("web-1").await.unwrap().is_none() && deploys.get_opt("web").await.unwrap().is_none()
    })
    .await;
    assert!(pods.get_opt("web-1-a").await.unwrap().is_none());
    h.stop().await;
}

#[tokio::test]
async fn orphan_keeps_dependents_without_the_owner_reference() {
    let h = Harness::start().await;
    let sets: Api<ReplicaSet> = h.api();
    let pods: Api<Pod> = h.api();
    let rs = create(&sets, rs_body("keep", json!([]))).await;
    create(&pods, pod_body("keep-a", json!([owner_ref(&rs, true)]), &[])).await;
    create(&pods, pod_body("keep-b", json!([owner_ref(&rs, true)]), &[])).await;
    sets.delete("keep", &DeleteParams::orphan()).await.unwrap();
    eventually("the owner is gone", || async { sets.get_opt("keep").await.unwrap().is_none() }).await;
    for p in ["keep-a", "keep-b"] {
        let pod = pods.get(p).await.unwrap();
        assert!(pod.metadata.owner_references.is_none(), "{p} keeps no reference to the deleted owner");
        assert!(pod.metadata.deletion_timestamp.is_none());
    }
    // Nothing deletes them later either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pods.get_opt("keep-a").await.unwrap().is_some());
    h.stop().await;
}
