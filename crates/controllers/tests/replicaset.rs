//! The ReplicaSet controller against the in-process API server. There is no kubelet: readiness is driven
//! by patching pod status as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::replicaset;

mod support;
use support::{Running, eventually, start_server};


struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    sets: Api<ReplicaSet>,
    pods: Api<Pod>,
    events: Api<Event>,
    controller: Running<replicaset::Error>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        let controller = Running::spawn(&client, replicaset::run);
        Harness {
            sets: Api::namespaced(client.clone(), "default"),
            pods: Api::namespaced(client.clone(), "default"),
            events: Api::namespaced(client, "default"),
            controller,
            _server: server,
        }
    }

    async fn stop(self) {
        self.controller.stop().await;
    }

    async fn create_rs(&self, name: &str, replicas: i32) -> ReplicaSet {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "nginx"}]}}
            }
        }))
        .unwrap();
        self.sets.create(&PostParams::default(), &rs).await.unwrap()
    }

    async fn scale(&self, name: &str, replicas: i32) {
        let p = serde_json::json!({"spec": {"replicas": replicas}});
        self.sets.patch(name, &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    }

    /// Live pods with label app=`app`.
    async fn pods_of(&self, app: &str) -> Vec<Pod> {
        let mut v = support::live_pods(&self.pods, &format!("app={app}")).await;
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        v
    }

    async fn set_ready(&self, pod: &str, ready: bool) {
        support::set_ready(&self.pods, pod, ready).await.unwrap();
    }

    async fn status(&self, name: &str) -> (i32, i32, i32, i32, i64) {
        let s = self.sets.get(name).await.unwrap().status.unwrap_or_default();
        (s.replicas, s.fully_labeled_replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0), s.observed_generation.unwrap_or(0))
    }
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

#[tokio::test]
async fn creates_replicas_replaces_a_deleted_pod_and_reports_status() {
    let h = Harness::start().await;
    let rs = h.create_rs("web", 3).await;
    eventually("3 pods exist", || async { h.pods_of("web").await.len() == 3 }).await;
    let pods = h.pods_of("web").await;
    for p in &pods {
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("ReplicaSet", rs.metadata.uid.as_deref().unwrap(), Some(true)));
        assert!(p.metadata.name.as_deref().unwrap().starts_with("web-"));
    }
    for p in &pods {
        h.set_ready(p.metadata.name.as_deref().unwrap(), true).await;
    }
    eventually("status counts 3 ready and available pods", || async { h.status("web").await == (3, 3, 3, 3, 1) }).await;

    // A deleted pod is replaced by a new one.
    let gone = pods[0].metadata.name.clone().unwrap();
    h.pods.delete(&gone, &DeleteParams::default()).await.unwrap();
    eventually("the deleted pod is replaced", || async {
        let now = names(&h.pods_of("web").await);
        now.len() == 3 && !now.contains(&gone)
    })
    .await;
    eventually("status follows the replacement", || async { h.status("web").await.0 == 3 && h.status("web").await.2 == 2 }).await;
    // Never more than asked for, even while the cache catches up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.pods_of("web").await.len(), 3);

    let events = h.events.list(&ListParams::default()).await.unwrap().items;
    let creates = events.iter().filter(|e| e.reason.as_deref() == Some("SuccessfulCreate")).count();
    // One event per pod (3, then the replacement), as upstream's "Created pod: <name>" messages.
    assert_eq!(creates, 4, "SuccessfulCreate events are recorded: {events:?}");
    h.stop().await;
}

#[tokio::test]
async fn adopts_a_matching_orphan_and_releases_a_pod_that_stops_matching() {
    let h = Harness::start().await;
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "stray", "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]}
    }))
    .unwrap();
    h.pods.create(&PostParams::default(), &orphan).await.unwrap();
    let rs = h.create_rs("api", 2).await;
    let uid = rs.metadata.uid.clone().unwrap();
    eventually("the orphan is adopted", || async {
        h.pods.get("stray").await.unwrap().metadata.owner_references.is_some_and(|r| r.iter().any(|r| r.uid == uid && r.controller == Some(true)))
    })
    .await;
    eventually("2 pods in all", || async { h.pods_of("api").await.len() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.pods_of("api").await.len(), 2, "the adopted pod counts: only one pod was created");
    assert!(names(&h.pods_of("api").await).contains(&"stray".to_string()));

    // Relabel the adopted pod: it is released and replaced.
    let p = serde_json::json!({"metadata": {"labels": {"app": "other"}}});
    h.pods.patch("stray", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    eventually("the relabelled pod is released", || async { h.pods.get("stray").await.unwrap().metadata.owner_references.is_none() }).await;
    eventually("a replacement brings it back to 2", || async { h.pods_of("api").await.len() == 2 }).await;
    h.stop().await;
}

#[tokio::test]
async fn scales_down_by_ranking() {
    let h = Harness::start().await;
    h.create_rs("db", 4).await;
    eventually("4 pods exist", || async { h.pods_of("db").await.len() == 4 }).await;
    let pods = names(&h.pods_of("db").await);
    for p in &pods {
        h.set_ready(p, true).await;
    }
    eventually("4 ready", || async { h.status("db").await.2 == 4 }).await;
    // One pod not ready: it goes first.
    h.set_ready(&pods[2], false).await;
    eventually("3 ready", || async { h.status("db").await.2 == 3 }).await;
    h.scale("db", 3).await;
    eventually("the not-ready pod is deleted", || async { !names(&h.pods_of("db").await).contains(&pods[2]) }).await;
    assert_eq!(h.pods_of("db").await.len(), 3);

    // Among ready pods, the lowest pod-deletion-cost goes first.
    for (p, cost) in [(&pods[0], "100"), (&pods[1], "-100"), (&pods[3], "0")] {
        let patch = serde_json::json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": cost}}});
        h.pods.patch(p, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    h.scale("db", 2).await;
    eventually("the cheapest pod is deleted", || async { !names(&h.pods_of("db").await).contains(&pods[1]) }).await;
    h.scale("db", 1).await;
    eventually("then the next cheapest", || async { names(&h.pods_of("db").await) == vec![pods[0].clone()] }).await;
    eventually("status shows 1 replica", || async { h.status("db").await.0 == 1 }).await;
    let deletes = h.events.list(&ListParams::default()).await.unwrap().items;
    assert!(deletes.iter().any(|e| e.reason.as_deref() == Some("SuccessfulDelete")));
    h.stop().await;
}

#[tokio::test]
async fn available_replicas_wait_for_min_ready_seconds() {
    let h = Harness::start().await;
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "slow"},
        "spec": {
            "replicas": 2,
            "minReadySeconds": 4,
            "selector": {"matchLabels": {"app": "slow"}},
            "template": {"metadata": {"labels": {"app": "slow"}}, "spec": {"containers": [{"name": "main", "image": "nginx"}]}}
        }
    }))
    .unwrap();
    h.sets.create(&PostParams::default(), &rs).await.unwrap();
    eventually("2 pods exist", || async { h.pods_of("slow").await.len() == 2 }).await;
    for p in names(&h.pods_of("slow").await) {
        h.set_ready(&p, true).await;
    }
    // Ready at once, available only once they have been ready for minReadySeconds (the controller
    // comes back by itself: nothing else changes meanwhile).
    eventually("2 ready", || async { h.status("slow").await.2 == 2 }).await;
    let (_, _, ready, available, _) = h.status("slow").await;
    assert_eq!((ready, available), (2, 0), "not yet available");
    eventually("2 available", || async { h.status("slow").await.3 == 2 }).await;
    h.stop().await;
}
