//! VolumeBinding against the in-process API server: a WaitForFirstConsumer claim gets
//! `volume.kubernetes.io/selected-node` for the chosen node and the pod is bound only once the claim is
//! (the test plays the PV controller and the provisioner); unbound Immediate claims and volumes pinned to
//! another node make the pod unschedulable with upstream's messages.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::Client;
use serde_json::json;
use skiff_scheduler::testing::{NodeBuilder, PodBuilder};
use skiff_scheduler::SchedulerConfig;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

struct Cluster {
    client: Client,
    server: CancellationToken,
    scheduler: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.scheduler.cancel();
        self.server.cancel();
    }
}

async fn start() -> Cluster {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = Client::new(server.router.clone(), "default");
    let mut config = SchedulerConfig::default();
    config.leader_election.leader_elect = false;
    let scheduler = CancellationToken::new();
    tokio::spawn(skiff_scheduler::run(config, client.clone(), scheduler.clone()));
    Cluster { client, server: server.shutdown, scheduler }
}

impl Cluster {
    async fn create<K>(&self, api: Api<K>, obj: serde_json::Value) -> K
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(obj).expect("a valid object");
        api.create(&PostParams::default(), &obj).await.expect("created")
    }

    async fn node(&self, node: Node) {
        Api::<Node>::all(self.client.clone()).create(&PostParams::default(), &node).await.expect("node created");
    }

    async fn class(&self, name: &str, provisioner: &str, mode: &str) {
        let obj = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": mode, "reclaimPolicy": "Delete"});
        self.create(Api::<StorageClass>::all(self.client.clone()), obj).await;
    }

    async fn claim(&self, name: &str, class: &str) -> PersistentVolumeClaim {
        let obj = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}});
        self.create(Api::default_namespaced(self.client.clone()), obj).await
    }

    async fn pod(&self, pod: Pod) {
        Api::<Pod>::default_namespaced(self.client.clone()).create(&PostParams::default(), &pod).await.expect("pod created");
    }

    /// Plays the provisioner and the PV controller: a PV pinned to `node`, bound both ways.
    async fn bind_claim(&self, claim: &PersistentVolumeClaim, pv_name: &str, node: &str) {
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
            "spec": {"storageClassName": claim.spec.as_ref().unwrap().storage_class_name, "accessModes": ["ReadWriteOnce"],
                     "capacity": {"storage": "1Gi"}, "persistentVolumeReclaimPolicy": "Delete",
                     "hostPath": {"path": format!("/tmp/{pv_name}"), "type": "DirectoryOrCreate"},
                     "claimRef": {"namespace": "default", "name": claim.metadata.name, "uid": claim.metadata.uid},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}});
        self.create(Api::<PersistentVolume>::all(self.client.clone()), pv).await;
        let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(self.client.clone());
        let name = claim.metadata.name.as_deref().unwrap();
        claims
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"volumeName": pv_name}})))
            .await
            .expect("claim bound");
        claims
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Bound"}})))
            .await
            .expect("claim status Bound");
    }

    async fn pod_node(&self, name: &str) -> Option<String> {
        let pod = Api::<Pod>::default_namespaced(self.client.clone()).get(name).await.expect("pod exists");
        pod.spec.and_then(|s| s.node_name)
    }

    async fn bound(&self, name: &str) -> String {
        let cond = |p: Option<&Pod>| p.and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.as_ref()).is_some();
        let api = Api::<Pod>::default_namespaced(self.client.clone());
        let pod = bounded(&format!("pod {name} to be bound"), await_condition(api, name, cond)).await.unwrap().unwrap();
        pod.spec.unwrap().node_name.unwrap()
    }

    async fn unschedulable(&self, name: &str) -> String {
        let message = |p: Option<&Pod>| -> Option<String> {
            let c = p?.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            c.message.clone()
        };
        let api = Api::<Pod>::default_namespaced(self.client.clone());
        let pod = bounded(&format!("pod {name} to be unschedulable"), await_condition(api, name, move |p: Option<&Pod>| message(p).is_some()))
            .await
            .unwrap();
        message(pod.as_ref()).unwrap()
    }
}

#[tokio::test]
async fn volume_wffc_claim_gets_the_selected_node_and_the_pod_waits_for_binding() {
    let c = start().await;
    c.node(NodeBuilder::new("n1").build()).await;
    c.node(NodeBuilder::new("n2").build()).await;
    c.class("wffc", "rancher.io/local-path", "WaitForFirstConsumer").await;
    let claim = c.claim("data", "wffc").await;
    c.pod(PodBuilder::new("p").node_selector("kubernetes.io/hostname", "n2").pvc("data").build()).await;

    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client.clone());
    let selected = |p: Option<&PersistentVolumeClaim>| {
        p.and_then(|p| p.metadata.annotations.as_ref()).and_then(|a| a.get("volume.kubernetes.io/selected-node")).cloned()
    };
    let got = bounded("the selected-node annotation", await_condition(claims.clone(), "data", move |p: Option<&PersistentVolumeClaim>| selected(p).is_some()))
        .await
        .unwrap();
    assert_eq!(selected(got.as_ref()).as_deref(), Some("n2"), "the claim is provisioned where the pod goes");
    assert_eq!(c.pod_node("p").await, None, "the pod is not bound before its claim");

    c.bind_claim(&claim, "pvc-data", "n2").await;
    assert_eq!(c.bound("p").await, "n2");
}

#[tokio::test]
async fn volume_unbound_immediate_and_conflicting_claims_are_unschedulable() {
    let c = start().await;
    c.node(NodeBuilder::new("n1").build()).await;
    c.class("fast", "example.com/fast", "Immediate").await;
    c.class("wffc", "rancher.io/local-path", "WaitForFirstConsumer").await;
    c.claim("slow", "fast").await;
    c.pod(PodBuilder::new("imm").pvc("slow").build()).await;
    let msg = c.unschedulable("imm").await;
    assert!(msg.starts_with("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."), "{msg}");

    c.pod(PodBuilder::new("nope").pvc("missing").build()).await;
    let msg = c.unschedulable("nope").await;
    assert!(msg.starts_with("0/1 nodes are available: persistentvolumeclaim \"missing\" not found."), "{msg}");

    // A claim bound to a volume pinned to a node that is not there.
    let elsewhere = c.claim("elsewhere", "wffc").await;
    c.bind_claim(&elsewhere, "pv-elsewhere", "gone").await;
    c.pod(PodBuilder::new("far").pvc("elsewhere").build()).await;
    let msg = c.unschedulable("far").await;
    assert!(msg.starts_with("0/1 nodes are available: 1 node(s) had volume node affinity conflict."), "{msg}");

    // Once the missing claim appears and is bound on n1, that pod schedules.
    let found = c.claim("missing", "wffc").await;
    c.bind_claim(&found, "pv-missing", "n1").await;
    assert_eq!(c.bound("nope").await, "n1");
}
