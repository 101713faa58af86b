//! The StatefulSet controller against the in-process API server; pods are made Running and Ready by patching
//! their status, as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::controller_revision::REVISION_HASH_LABEL;
use skiff_controllers::statefulset::{self, POD_INDEX_LABEL, POD_NAME_LABEL};

mod support;
use support::{Running, eventually, start_server};


struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    sets: Api<StatefulSet>,
    pods: Api<Pod>,
    pvcs: Api<PersistentVolumeClaim>,
    controller: Running<statefulset::Error>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        let controller = Running::spawn(&client, statefulset::run);
        Harness {
            sets: Api::namespaced(client.clone(), "default"),
            pods: Api::namespaced(client.clone(), "default"),
            pvcs: Api::namespaced(client, "default"),
            controller,
            _server: server,
        }
    }

    async fn stop(self) {
        self.controller.stop().await;
    }

    async fn create(&self, name: &str, replicas: i32, extra: serde_json::Value) {
        let mut spec = serde_json::json!({
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let set: StatefulSet =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
                .unwrap();
        self.sets
            .create(&PostParams::default(), &set)
            .await
            .unwrap();
    }

    /// Live pod names, sorted.
    async fn names(&self, set: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .live(set)
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        v.sort();
        v
    }

    async fn live(&self, set: &str) -> Vec<Pod> {
        support::live_pods(&self.pods, &format!("app={set}")).await
    }

    async fn make_ready(&self, name: &str) {
        support::set_ready(&self.pods, name, true).await.unwrap();
    }

    async fn revision_of(&self, name: &str) -> String {
        self.pods.get(name).await.unwrap().metadata.labels.unwrap()[REVISION_HASH_LABEL].clone()
    }

    /// Makes every live pod that is not yet Ready ready.
    async fn ready_all(&self, set: &str) {
        for pod in self.live(set).await {
            if !skiff_controllers::pod_util::is_pod_ready(&pod) {
                self.make_ready(pod.metadata.name.as_deref().unwrap()).await;
            }
        }
    }
}

#[tokio::test]
async fn ordered_creation_waits_for_readiness_and_makes_claims() {
    let h = Harness::start().await;
    let claims = serde_json::json!({"volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]});
    h.create("web", 3, claims).await;
    for i in 0..3 {
        let expected: Vec<String> = (0..=i).map(|j| format!("web-{j}")).collect();
        eventually("the next ordinal is created", || async {
            h.names("web").await == expected
        })
        .await;
        // Nothing more until this one is Ready.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            h.names("web").await,
            expected,
            "OrderedReady waits for web-{i} to be Ready"
        );
        h.make_ready(&format!("web-{i}")).await;
    }
    let pod = h.pods.get("web-1").await.unwrap();
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(
        (
            labels[POD_NAME_LABEL].as_str(),
            labels[POD_INDEX_LABEL].as_str()
        ),
        ("web-1", "1")
    );
    let spec = pod.spec.unwrap();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-1"), Some("nginx"))
    );
    let vol = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "www")
        .unwrap();
    assert_eq!(vol.persistent_volume_claim.unwrap().claim_name, "www-web-1");
    let mut pvcs: Vec<String> = h
        .pvcs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    pvcs.sort();
    assert_eq!(pvcs, ["www-web-0", "www-web-1", "www-web-2"]);
    eventually("the status counts three ready replicas", || async {
        let s = h.sets.get("web").await.unwrap().status.unwrap_or_default();
        s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.current_replicas == Some(3)
            && s.updated_replicas == Some(3)
            && s.current_revision.is_some()
            && s.current_revision == s.update_revision
            && s.observed_generation == Some(1)
    })
    .await;

    // A restarted pod keeps its name and claim; scaling down removes the highest ordinal first, claims stay.
    h.pods.delete("web-1", &Default::default()).await.unwrap();
    eventually("web-1 is back", || async {
        h.names("web").await.len() == 3
            && h.pods
                .get("web-1")
                .await
                .is_ok_and(|p| !skiff_controllers::pod_util::is_pod_ready(&p))
    })
    .await;
    h.make_ready("web-1").await;
    h.sets
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually("scaled down to web-0", || async {
        h.names("web").await == ["web-0"]
    })
    .await;
    assert_eq!(
        h.pvcs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3,
        "claims are retained on scale-down"
    );
    h.stop().await;
}

#[tokio::test]
async fn partitioned_rolling_update_goes_from_the_highest_ordinal_down() {
    let h = Harness::start().await;
    h.create("db", 3, serde_json::json!({"podManagementPolicy": "Parallel", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}})).await;
    eventually("Parallel creates all pods at once", || async {
        h.names("db").await.len() == 3
    })
    .await;
    h.ready_all("db").await;
    let old = h.revision_of("db-0").await;
    eventually("the set settles", || async {
        h.sets
            .get("db")
            .await
            .unwrap()
            .status
            .unwrap_or_default()
            .ready_replicas
            == Some(3)
    })
    .await;

    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    h.sets
        .patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    // db-2 goes first; db-1 only once db-2 is back and Ready; db-0 is below the partition.
    let mut order = Vec::new();
    for _ in 0..300 {
        let live = h.live("db").await;
        for pod in &live {
            let name = pod.metadata.name.clone().unwrap();
            let rev = pod.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL].clone();
            if rev != old && !order.contains(&name) {
                order.push(name.clone());
            }
            if !skiff_controllers::pod_util::is_pod_ready(pod) {
                h.make_ready(&name).await;
            }
        }
        if order.len() == 2 && live.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        order,
        ["db-2", "db-1"],
        "updated from the highest ordinal down to the partition"
    );
    assert_eq!(
        h.revision_of("db-0").await,
        old,
        "db-0 is below the partition"
    );
    eventually("status shows two updated, one current", || async {
        let s = h.sets.get("db").await.unwrap().status.unwrap_or_default();
        s.updated_replicas == Some(2)
            && s.current_replicas == Some(1)
            && s.current_revision.as_deref() == Some(old.as_str())
            && s.update_revision != s.current_revision
    })
    .await;

    // Partition 0: db-0 follows and the update revision becomes current.
    h.sets.patch("db", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))).await.unwrap();
    eventually("db-0 is updated and the rollout complete", || async {
        h.ready_all("db").await;
        let s = h.sets.get("db").await.unwrap().status.unwrap_or_default();
        s.updated_replicas == Some(3)
            && s.current_revision == s.update_revision
            && s.current_replicas == Some(3)
    })
    .await;
    assert_ne!(h.revision_of("db-0").await, old);
    h.stop().await;
}

#[tokio::test]
async fn on_delete_updates_only_deleted_pods_and_scaled_claims_can_go() {
    let h = Harness::start().await;
    let extra = serde_json::json!({
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "OnDelete"},
        "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    });
    h.create("od", 2, extra).await;
    eventually("both pods exist", || async {
        h.names("od").await.len() == 2
    })
    .await;
    h.ready_all("od").await;
    let old = h.revision_of("od-0").await;
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    h.sets
        .patch("od", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    eventually("the new revision is recorded", || async {
        let s = h.sets.get("od").await.unwrap().status.unwrap_or_default();
        s.update_revision.is_some() && s.update_revision.as_deref() != Some(old.as_str())
    })
    .await;
    assert_eq!(
        h.revision_of("od-1").await,
        old,
        "OnDelete leaves running pods alone"
    );
    h.pods.delete("od-1", &Default::default()).await.unwrap();
    eventually("od-1 comes back on the new revision", || async {
        h.pods
            .get("od-1")
            .await
            .is_ok_and(|p| p.metadata.labels.unwrap()[REVISION_HASH_LABEL] != old)
    })
    .await;
    assert_eq!(h.revision_of("od-0").await, old);

    h.sets
        .patch(
            "od",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually("od-1 and its claim are gone", || async {
        let claims: Vec<String> = h
            .pvcs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        h.names("od").await == ["od-0"] && claims == ["data-od-0"]
    })
    .await;
    h.stop().await;
}
