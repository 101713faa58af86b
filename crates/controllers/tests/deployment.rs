//! The Deployment controller (with the ReplicaSet controller) against the in-process API server. There is
//! no kubelet: pods are made ready by patching their status, one at a time, so each rollout step is seen.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::deployment::util::{self, REVISION};
use skiff_controllers::{deployment, replicaset};

mod support;
use support::{Running, eventually, start_server};


struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    deploys: Api<Deployment>,
    sets: Api<ReplicaSet>,
    pods: Api<Pod>,
    events: Api<Event>,
    replicasets: Running<replicaset::Error>,
    deployments: Running<deployment::Error>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        let replicasets = Running::spawn(&client, replicaset::run);
        let deployments = Running::spawn(&client, deployment::run);
        Harness {
            deploys: Api::namespaced(client.clone(), "default"),
            sets: Api::namespaced(client.clone(), "default"),
            pods: Api::namespaced(client.clone(), "default"),
            events: Api::namespaced(client, "default"),
            replicasets,
            deployments,
            _server: server,
        }
    }

    async fn stop(self) {
        self.deployments.stop().await;
        self.replicasets.stop().await;
    }

    async fn create(&self, name: &str, replicas: i32, extra_spec: serde_json::Value, annotations: serde_json::Value) -> Deployment {
        let mut spec = serde_json::json!({
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "img:v1"}]}}
        });
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let d: Deployment =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "annotations": annotations}, "spec": spec})).unwrap();
        self.deploys.create(&PostParams::default(), &d).await.unwrap()
    }

    async fn set_image(&self, name: &str, image: &str, cause: &str) {
        let p = serde_json::json!({
            "metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}
        });
        self.deploys.patch(name, &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    }

    async fn get(&self, name: &str) -> Deployment {
        self.deploys.get(name).await.unwrap()
    }

    async fn sets_of(&self, app: &str) -> Vec<ReplicaSet> {
        let mut v = self.sets.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items;
        v.sort_by_key(util::revision_of);
        v
    }

    async fn live_pods(&self, app: &str) -> Vec<Pod> {
        support::live_pods(&self.pods, &format!("app={app}")).await
    }

    async fn set_ready(&self, pod: &str) {
        // The pod may be gone already (scaled down meanwhile).
        let _ = support::set_ready(&self.pods, pod, true).await;
    }

    async fn make_all_ready(&self, app: &str) {
        for p in self.live_pods(app).await {
            if !skiff_controllers::pod_util::is_pod_ready(&p) {
                self.set_ready(p.metadata.name.as_deref().unwrap()).await;
            }
        }
    }

    async fn condition(&self, name: &str, type_: &str) -> Option<(String, String)> {
        let d = self.get(name).await;
        let c = util::get_condition(d.status.as_ref()?, type_)?;
        Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
    }

    /// Whether the rollout is complete as `kubectl rollout status` decides it.
    async fn rolled_out(&self, name: &str) -> bool {
        let d = self.get(name).await;
        let s = d.status.clone().unwrap_or_default();
        let want = d.spec.as_ref().unwrap().replicas.unwrap();
        s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want)
            && s.unavailable_replicas.unwrap_or(0) == 0
    }

    /// Readies pods one at a time until the rollout completes, checking after each step that the sum of
    /// the sets' sizes never exceeds `max_total` and that at least `min_ready` pods stay ready.
    async fn drive_rollout(&self, name: &str, max_total: i32, min_ready: usize) {
        for _ in 0..400 {
            let sets = self.sets_of(name).await;
            let total: i32 = sets.iter().map(util::rs_replicas).sum();
            assert!(total <= max_total, "the sets' sizes add up to {total} > {max_total}");
            let pods = self.live_pods(name).await;
            let ready = pods.iter().filter(|p| skiff_controllers::pod_util::is_pod_ready(p)).count();
            assert!(ready >= min_ready, "only {ready} ready pods, fewer than {min_ready}");
            if self.rolled_out(name).await {
                return;
            }
            if let Some(p) = pods.iter().find(|p| !skiff_controllers::pod_util::is_pod_ready(p)) {
                self.set_ready(p.metadata.name.as_deref().unwrap()).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the rollout of {name} did not complete");
    }

    async fn images(&self, app: &str) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in self.live_pods(app).await {
            *m.entry(p.spec.unwrap().containers[0].image.clone().unwrap()).or_default() += 1;
        }
        m
    }

    async fn event_reasons(&self) -> Vec<String> {
        self.events.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect()
    }
}

fn template_image(rs: &ReplicaSet) -> String {
    rs.spec.as_ref().unwrap().template.as_ref().unwrap().spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

fn ann<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

#[tokio::test]
async fn rolling_update_respects_max_surge_and_max_unavailable() {
    let h = Harness::start().await;
    // maxSurge 1, maxUnavailable 0: never more than 5 pods' worth of sets, never fewer than 4 ready.
    let strategy = serde_json::json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}});
    h.create("web", 4, strategy, serde_json::json!({})).await;
    h.drive_rollout("web", 5, 0).await;
    let sets = h.sets_of("web").await;
    assert_eq!(sets.len(), 1);
    let hash = sets[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(sets[0].metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    assert_eq!(sets[0].spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()["pod-template-hash"], hash);
    assert_eq!(ann(&sets[0], REVISION), Some("1"));
    assert_eq!(ann(&sets[0], util::DESIRED_REPLICAS), Some("4"));
    assert_eq!(ann(&sets[0], util::MAX_REPLICAS), Some("5"));
    assert_eq!(h.condition("web", "Available").await, Some(("True".into(), "MinimumReplicasAvailable".into())));
    assert_eq!(h.condition("web", "Progressing").await, Some(("True".into(), "NewReplicaSetAvailable".into())));

    h.set_image("web", "img:v2", "v2").await;
    h.drive_rollout("web", 5, 4).await;
    assert_eq!(h.images("web").await, BTreeMap::from([("img:v2".to_string(), 4)]));
    let d = h.get("web").await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "2");
    let s = d.status.unwrap();
    assert_eq!((s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas), (Some(4), Some(4), Some(4), Some(4)));
    let reasons = h.event_reasons().await;
    assert!(reasons.iter().any(|r| r == "ScalingReplicaSet"), "{reasons:?}");

    // Percentages: 25% of 4 is a surge of 1 (rounded up) and 1 unavailable (rounded down).
    let p = serde_json::json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
    h.deploys.patch("web", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    h.set_image("web", "img:v3", "v3").await;
    h.drive_rollout("web", 5, 3).await;
    assert_eq!(h.images("web").await, BTreeMap::from([("img:v3".to_string(), 4)]));
    h.stop().await;
}

#[tokio::test]
async fn revisions_history_limit_and_rollback_by_template() {
    let h = Harness::start().await;
    h.create("app", 2, serde_json::json!({"revisionHistoryLimit": 2}), serde_json::json!({"kubernetes.io/change-cause": "v1"})).await;
    h.drive_rollout("app", 3, 0).await;
    for v in ["v2", "v3", "v4"] {
        h.set_image("app", &format!("img:{v}"), v).await;
        h.drive_rollout("app", 3, 1).await;
    }
    // Revision 1 is cleaned up (history limit 2 keeps revisions 2 and 3 besides the current 4).
    eventually("old revisions beyond the limit are deleted", || async { h.sets_of("app").await.len() == 3 }).await;
    let sets = h.sets_of("app").await;
    let revs: Vec<(Option<&str>, String, Option<&str>)> =
        sets.iter().map(|r| (ann(r, REVISION), template_image(r), ann(r, "kubernetes.io/change-cause"))).collect();
    assert_eq!(
        revs,
        vec![
            (Some("2"), "img:v2".to_string(), Some("v2")),
            (Some("3"), "img:v3".to_string(), Some("v3")),
            (Some("4"), "img:v4".to_string(), Some("v4")),
        ]
    );
    assert_eq!(util::rs_replicas(&sets[0]), 0);

    // `kubectl rollout undo --to-revision=2` copies revision 2's template (without its hash) back.
    let old = sets[0].clone();
    let mut template = old.spec.unwrap().template.unwrap();
    template.metadata.as_mut().unwrap().labels.as_mut().unwrap().remove("pod-template-hash");
    let p = serde_json::json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "v2"}}, "spec": {"template": template}});
    h.deploys.patch("app", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    h.drive_rollout("app", 3, 1).await;
    assert_eq!(h.images("app").await, BTreeMap::from([("img:v2".to_string(), 2)]));
    let back = h.sets.get(old.metadata.name.as_deref().unwrap()).await.unwrap();
    assert_eq!(ann(&back, REVISION), Some("5"), "the old set comes back as the newest revision");
    assert_eq!(ann(&back, util::REVISION_HISTORY), Some("2"));
    assert_eq!(h.get("app").await.metadata.annotations.unwrap()[REVISION], "5");
    assert_eq!(h.sets_of("app").await.len(), 3, "reusing a set creates none");
    h.stop().await;
}

#[tokio::test]
async fn a_paused_deployment_does_not_roll_until_resumed() {
    let h = Harness::start().await;
    h.create("p", 2, serde_json::json!({}), serde_json::json!({})).await;
    h.drive_rollout("p", 3, 0).await;
    h.deploys.patch("p", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"spec": {"paused": true}}))).await.unwrap();
    h.set_image("p", "img:v2", "v2").await;
    eventually("Progressing shows the pause", || async {
        h.condition("p", "Progressing").await == Some(("Unknown".into(), "DeploymentPaused".into()))
    })
    .await;
    // Scaling still works while paused.
    h.deploys.patch("p", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"spec": {"replicas": 3}}))).await.unwrap();
    eventually("the paused deployment scales", || async { h.live_pods("p").await.len() == 3 }).await;
    assert_eq!(h.sets_of("p").await.len(), 1, "no new ReplicaSet while paused");
    assert_eq!(h.images("p").await, BTreeMap::from([("img:v1".to_string(), 3)]));

    h.deploys.patch("p", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"spec": {"paused": false}}))).await.unwrap();
    h.drive_rollout("p", 4, 0).await;
    assert_eq!(h.images("p").await, BTreeMap::from([("img:v2".to_string(), 3)]));
    h.stop().await;
}

#[tokio::test]
async fn progress_deadline_exceeded_sets_the_condition() {
    let h = Harness::start().await;
    h.create("slow", 2, serde_json::json!({"progressDeadlineSeconds": 1}), serde_json::json!({})).await;
    h.drive_rollout("slow", 3, 0).await;
    h.set_image("slow", "img:broken", "broken").await;
    // The new pods never become ready.
    eventually("Progressing turns False with ProgressDeadlineExceeded", || async {
        h.condition("slow", "Progressing").await == Some(("False".into(), "ProgressDeadlineExceeded".into()))
    })
    .await;
    // Without the opt-in annotation nothing is rolled back.
    let d = h.get("slow").await;
    assert_eq!(d.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(), Some("img:broken"));
    h.stop().await;
}

#[tokio::test]
async fn auto_rollback_returns_to_the_previous_revision() {
    let h = Harness::start().await;
    h.create("auto", 2, serde_json::json!({"progressDeadlineSeconds": 1}), serde_json::json!({"skiff.io/auto-rollback": "true", "kubernetes.io/change-cause": "good"}))
        .await;
    h.drive_rollout("auto", 3, 0).await;
    h.set_image("auto", "img:broken", "bad").await;
    eventually("the template is rolled back to img:v1", || async {
        h.get("auto").await.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref() == Some("img:v1")
    })
    .await;
    assert_eq!(h.condition("auto", "RolledBack").await, Some(("True".into(), "AutoRolledBack".into())));
    assert!(h.event_reasons().await.iter().any(|r| r == "AutoRolledBack"));
    let d = h.get("auto").await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"], "good");
    // The rollout back to v1 completes and the broken pods go away.
    h.drive_rollout("auto", 3, 0).await;
    eventually("only v1 pods remain", || async { h.images("auto").await == BTreeMap::from([("img:v1".to_string(), 2)]) }).await;
    eventually("the v1 set is revision 3", || async {
        h.get("auto").await.metadata.annotations.unwrap()[REVISION] == "3"
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn recreate_removes_old_pods_before_creating_new_ones() {
    let h = Harness::start().await;
    h.create("rc", 2, serde_json::json!({"strategy": {"type": "Recreate"}}), serde_json::json!({})).await;
    h.drive_rollout("rc", 2, 0).await;
    h.set_image("rc", "img:v2", "v2").await;
    for _ in 0..300 {
        let images = h.images("rc").await;
        assert!(images.len() <= 1, "old and new pods at once: {images:?}");
        if h.rolled_out("rc").await && images.get("img:v2") == Some(&2) {
            break;
        }
        h.make_all_ready("rc").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(h.rolled_out("rc").await);
    assert_eq!(h.images("rc").await, BTreeMap::from([("img:v2".to_string(), 2)]));
    h.stop().await;
}
