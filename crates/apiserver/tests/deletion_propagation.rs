//! DELETE honours `propagationPolicy` (and the older `orphanDependents`) as upstream does: Foreground and
//! Orphan leave the object terminating with the `foregroundDeletion` or `orphan` finalizer for the garbage
//! collector, Background deletes at once, and batch/v1 Jobs default to Orphan.

use axum::body::Body;
use http::{Method, Request};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use tower::ServiceExt;

async fn cm(api: &Api<ConfigMap>, name: &str, finalizers: &[&str]) {
    let obj: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "finalizers": finalizers}})).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn finalizers(meta: &kube::api::ObjectMeta) -> Vec<String> {
    meta.finalizers.clone().unwrap_or_default()
}

#[tokio::test]
async fn foreground_and_orphan_add_their_finalizers_background_deletes_at_once() {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    cm(&cms, "fg", &[]).await;
    let dp = DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..Default::default() };
    let left = cms.delete("fg", &dp).await.unwrap().left().expect("still there while dependents go");
    assert_eq!(finalizers(&left.metadata), vec!["foregroundDeletion"]);
    assert!(left.metadata.deletion_timestamp.is_some());
    // The garbage collector removes the finalizer when the dependents are gone; then the object goes.
    cms.patch("fg", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(cms.get_opt("fg").await.unwrap().is_none());

    cm(&cms, "or", &["example.com/keep"]).await;
    let left = cms.delete("or", &DeleteParams::orphan()).await.unwrap().left().unwrap();
    assert_eq!(finalizers(&left.metadata), vec!["example.com/keep", "orphan"]);
    // Deleting again with Background takes the orphan finalizer away; the other one still holds it.
    let left = cms.delete("or", &DeleteParams::background()).await.unwrap().left().unwrap();
    assert_eq!(finalizers(&left.metadata), vec!["example.com/keep"]);

    cm(&cms, "bg", &[]).await;
    assert!(cms.delete("bg", &DeleteParams::background()).await.unwrap().is_right());
    cm(&cms, "default", &[]).await;
    assert!(cms.delete("default", &DeleteParams::default()).await.unwrap().is_right(), "Background is the default");

    // apps/v1 defaults to Background, batch/v1 Jobs to Orphan (upstream's compatibility default).
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    assert!(deploys.delete("d", &DeleteParams::default()).await.unwrap().is_right());
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let j: Job = serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}))
    .unwrap();
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let left = jobs.delete("j", &DeleteParams::default()).await.unwrap().left().unwrap();
    assert_eq!(finalizers(&left.metadata), vec!["orphan"]);

    // The query parameter and the old orphanDependents field work too.
    cm(&cms, "q", &[]).await;
    let req = Request::builder()
        .method(Method::DELETE)
        .uri("/api/v1/namespaces/default/configmaps/q?propagationPolicy=Foreground")
        .body(Body::empty())
        .unwrap();
    assert!(server.router.clone().oneshot(req).await.unwrap().status().is_success());
    assert_eq!(finalizers(&cms.get("q").await.unwrap().metadata), vec!["foregroundDeletion"]);
    cm(&cms, "od", &[]).await;
    let req = Request::builder()
        .method(Method::DELETE)
        .uri("/api/v1/namespaces/default/configmaps/od")
        .header("content-type", "application/json")
        .body(Body::from(json!({"orphanDependents": true}).to_string()))
        .unwrap();
    assert!(server.router.clone().oneshot(req).await.unwrap().status().is_success());
    assert_eq!(finalizers(&cms.get("od").await.unwrap().metadata), vec!["orphan"]);
    let req = Request::builder()
        .method(Method::DELETE)
        .uri("/api/v1/namespaces/default/configmaps/od?propagationPolicy=Sideways")
        .body(Body::empty())
        .unwrap();
    assert_eq!(server.router.clone().oneshot(req).await.unwrap().status(), 422);
}
