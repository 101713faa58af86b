//! persistentVolumeClaim volumes and the node's local-path clean-up, against the in-process API server:
//! the VolumeManager resolves claims to their PersistentVolume's hostPath or local source (with the
//! FailedMount texts for missing and unbound claims); the kubelet over the fake runtime holds a pod's
//! containers until its claim is bound; released local-path volumes of this node are removed only under the
//! storage directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_kubelet::volumes::VolumeManager;
use skiff_kubelet::{Deps, KubeletConfig};
use skiff_runtime::fake::FakeRuntime;
use tokio_util::sync::CancellationToken;

const NODE: &str = "node-1";

struct Env {
    _server: skiff_apiserver::testing::InProcess,
    client: Client,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = Client::new(server.router.clone(), "default");
    Env { _server: server, client, dir: tempfile::tempdir().unwrap() }
}

impl Env {
    async fn claim(&self, name: &str, modes: &[&str]) -> PersistentVolumeClaim {
        let c: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"storageClassName": "manual", "accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .unwrap();
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), "default").create(&PostParams::default(), &c).await.unwrap()
    }

    /// A PV with `source`, bound both ways to `claim` (as the PV controller leaves them).
    async fn bind(&self, claim: &PersistentVolumeClaim, pv_name: &str, source: serde_json::Value) {
        let mut spec = json!({
            "storageClassName": "manual", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": claim.metadata.name, "uid": claim.metadata.uid},
        });
        spec.as_object_mut().unwrap().extend(source.as_object().unwrap().clone());
        let pv: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": pv_name}, "spec": spec})).unwrap();
        Api::<PersistentVolume>::all(self.client.clone()).create(&PostParams::default(), &pv).await.unwrap();
        let claims = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), "default");
        let name = claim.metadata.name.as_deref().unwrap();
        claims.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"volumeName": pv_name}}))).await.unwrap();
        claims.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Bound"}}))).await.unwrap();
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_string()
    }
}

fn pod(uid: &str, claim: &str, read_only: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}],
            "containers": [{"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn volume_claims_resolve_to_their_persistent_volume() {
    let e = env().await;
    let pods_root = e.dir.path().join("pods");
    let vm = VolumeManager::new(pods_root, e.client.clone());

    let err = vm.setup(&pod("u1", "data", false)).await.unwrap_err().to_string();
    assert_eq!(err, "MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"data\" not found");

    let claim = e.claim("data", &["ReadWriteOnce"]).await;
    let err = vm.setup(&pod("u1", "data", false)).await.unwrap_err().to_string();
    assert_eq!(err, "MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"data\" is not bound (phase Pending)");

    let dir = e.path("storage/pvc-1");
    e.bind(&claim, "pv-1", json!({"hostPath": {"path": dir, "type": "DirectoryOrCreate"}})).await;
    let mounted = vm.setup(&pod("u1", "data", false)).await.unwrap();
    assert_eq!(mounted.paths["data"], Path::new(&dir));
    assert!(Path::new(&dir).is_dir(), "DirectoryOrCreate made the directory");
    assert!(mounted.read_only.is_empty());
    std::fs::write(Path::new(&dir).join("keep"), "data").unwrap();
    vm.teardown("u1").await.unwrap();
    assert_eq!(std::fs::read_to_string(Path::new(&dir).join("keep")).unwrap(), "data", "the data outlives the pod");

    let ro = vm.setup(&pod("u2", "data", true)).await.unwrap();
    assert!(ro.read_only.contains("data"), "readOnly from the pod's volume");
    vm.teardown("u2").await.unwrap();

    // A local volume whose path is missing, then present; a ReadOnlyMany claim is mounted read-only.
    let shared = e.claim("shared", &["ReadOnlyMany"]).await;
    let local = e.path("disk");
    let pinned = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}]}});
    e.bind(&shared, "pv-local", json!({"local": {"path": local}, "nodeAffinity": pinned})).await;
    let err = vm.setup(&pod("u3", "shared", false)).await.unwrap_err().to_string();
    assert_eq!(err, format!("MountVolume.SetUp failed for volume \"data\" : path \"{local}\" does not exist"));
    std::fs::create_dir(&local).unwrap();
    let mounted = vm.setup(&pod("u3", "shared", false)).await.unwrap();
    assert_eq!(mounted.paths["data"], Path::new(&local));
    assert!(mounted.read_only.contains("data"), "ReadOnlyMany claims are mounted read-only");
    vm.teardown("u3").await.unwrap();
}

struct Kubelet {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), skiff_kubelet::Error>>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

fn start_kubelet(e: &Env, fake: Arc<FakeRuntime>) -> Kubelet {
    let mut c = KubeletConfig::new(NODE, "127.0.0.1".parse().unwrap(), e.dir.path().join("kubelet"));
    c.node_status_update_frequency = Duration::from_millis(200);
    c.lease_renew_interval = Duration::from_millis(200);
    c.sync_frequency = Duration::from_secs(1);
    c.pleg_relist_period = Duration::from_millis(50);
    c.housekeeping_interval = Duration::from_millis(200);
    c.backoff_initial = Duration::from_millis(200);
    c.backoff_max = Duration::from_millis(1600);
    c.storage_dir = Some(e.dir.path().join("storage"));
    let shutdown = CancellationToken::new();
    let deps = Deps { client: e.client.clone(), runtime: fake.clone(), images: fake };
    let task = tokio::spawn(skiff_kubelet::run(c, deps, shutdown.clone()));
    Kubelet { shutdown, task }
}

async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn events_about(client: &Client, name: &str) -> Vec<(String, String)> {
    Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn volume_claim_pods_wait_for_binding_before_their_containers_start() {
    let e = env().await;
    let fake = Arc::new(FakeRuntime::new());
    fake.add_image("busybox");
    let _kubelet = start_kubelet(&e, fake.clone());
    let claim = e.claim("data", &["ReadWriteOnce"]).await;
    let mut p = pod("", "data", false);
    p.metadata.uid = None;
    let pods = Api::<Pod>::namespaced(e.client.clone(), "default");
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    let uid = created.metadata.uid.unwrap();

    poll("a FailedMount event about the unbound claim", async || {
        events_about(&e.client, "web")
            .await
            .into_iter()
            .find(|(r, m)| r == "FailedMount" && m.contains("persistentvolumeclaim \"data\" is not bound"))
    })
    .await;
    assert_eq!(fake.start_count(&uid, "app"), 0, "no container starts before its volumes are ready");

    let dir = e.path("storage/pvc-data");
    e.bind(&claim, "pv-data", json!({"hostPath": {"path": dir, "type": "DirectoryOrCreate"}})).await;
    poll("the container to start", async || (fake.start_count(&uid, "app") > 0).then_some(())).await;
    assert!(Path::new(&dir).is_dir());
}

#[tokio::test]
async fn volume_local_path_cleaner_removes_released_directories_under_the_storage_dir_only() {
    let e = env().await;
    let fake = Arc::new(FakeRuntime::new());
    let _kubelet = start_kubelet(&e, fake);
    let pvs = Api::<PersistentVolume>::all(e.client.clone());
    let mk = async |name: &str, path: &str, node: &str| {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
            "spec": {"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                     "persistentVolumeReclaimPolicy": "Delete",
                     "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
        }))
        .unwrap();
        pvs.create(&PostParams::default(), &pv).await.unwrap();
        pvs.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Released"}}))).await.unwrap();
    };
    let inside = e.path("storage/pvc-in");
    let outside = e.path("elsewhere/pvc-out");
    let other_node = e.path("storage/pvc-other");
    for d in [&inside, &outside, &other_node] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(Path::new(d).join("f"), "x").unwrap();
    }
    mk("pvc-in", &inside, NODE).await;
    mk("pvc-out", &outside, NODE).await;
    mk("pvc-other", &other_node, "node-2").await;

    let cleaned = poll("pvc-in to be cleaned", async || {
        let pv = pvs.get("pvc-in").await.unwrap();
        let ann = pv.metadata.annotations.unwrap_or_default();
        (ann.get("skiff.io/local-path-cleaned").map(String::as_str) == Some("true")).then_some(())
    })
    .await;
    let () = cleaned;
    assert!(!Path::new(&inside).exists(), "the released volume's directory is removed");
    poll("a refusal event about pvc-out", async || {
        events_about(&e.client, "pvc-out").await.into_iter().find(|(r, m)| r == "VolumeFailedDelete" && m.contains("refusing"))
    })
    .await;
    assert!(Path::new(&outside).join("f").exists(), "nothing outside the storage directory is removed");
    let out = pvs.get("pvc-out").await.unwrap();
    assert!(out.metadata.annotations.unwrap_or_default().get("skiff.io/local-path-cleaned").is_none());
    assert!(Path::new(&other_node).join("f").exists(), "another node's volume is not this node's to clean");
}
