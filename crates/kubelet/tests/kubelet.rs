//! The kubelet over the fake runtime against the in-process API server: node registration and lease, pod
//! lifecycle (init containers, restarts with back-off, probes, image errors), deletion and adoption.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_kubelet::{Deps, KubeletConfig};
use skiff_runtime::cri::{ExecSyncResult, PodSandboxConfig, RuntimeService};
use skiff_runtime::fake::{Behaviour, FakeRuntime};
use tokio_util::sync::CancellationToken;

const NODE: &str = "node-1";

struct Kubelet {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), skiff_kubelet::Error>>,
}

impl Kubelet {
    async fn stop(self) {
        self.shutdown.cancel();
        let res = tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("the kubelet stops");
        res.expect("the kubelet task does not panic").expect("the kubelet ends without error");
    }
}

struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    client: Client,
    fake: Arc<FakeRuntime>,
    dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> KubeletConfig {
    let mut c = KubeletConfig::new(NODE, "127.0.0.1".parse().unwrap(), dir);
    c.labels.insert("node-role.kubernetes.io/control-plane".into(), String::new());
    c.node_status_update_frequency = Duration::from_millis(200);
    c.lease_renew_interval = Duration::from_millis(200);
    c.sync_frequency = Duration::from_secs(2);
    c.pleg_relist_period = Duration::from_millis(50);
    c.housekeeping_interval = Duration::from_millis(200);
    c.backoff_initial = Duration::from_millis(200);
    c.backoff_max = Duration::from_millis(1600);
    c
}

impl Harness {
    async fn new() -> Harness {
        let server = skiff_apiserver::testing::start_admin().await;
        let client = Client::new(server.router.clone(), "default");
        Harness { _server: server, client, fake: Arc::new(FakeRuntime::new()), dir: tempfile::tempdir().unwrap() }
    }

    fn start_kubelet(&self) -> Kubelet {
        self.start_kubelet_with(|_| {})
    }

    fn start_kubelet_with(&self, change: impl FnOnce(&mut KubeletConfig)) -> Kubelet {
        let shutdown = CancellationToken::new();
        let deps = Deps { client: self.client.clone(), runtime: self.fake.clone(), images: self.fake.clone() };
        let mut config = config(self.dir.path());
        change(&mut config);
        let task = tokio::spawn(skiff_kubelet::run(config, deps, shutdown.clone()));
        Kubelet { shutdown, task }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create_pod(&self, pod: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.pods().create(&PostParams::default(), &pod).await.expect("the pod is created")
    }

    /// Polls the pod until `pred` holds (20 s at most), returning it.
    async fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Pod) -> bool) -> Pod {
        let mut last = None;
        for _ in 0..400 {
            match self.pods().get_opt(name).await.unwrap() {
                Some(p) if pred(&p) => return p,
                p => last = p,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pod {name}: {what} never happened; last: {:#?}", last.map(|p| p.status));
    }

    async fn events(&self, pod: &str) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    async fn wait_event(&self, pod: &str, reason: &str, contains: &str) {
        for _ in 0..400 {
            if self.events(pod).await.iter().any(|(r, m)| r == reason && m.contains(contains)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {reason} event containing {contains:?} for {pod}; events: {:#?}", self.events(pod).await);
    }
}

fn pod(name: &str, containers: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "nodeName": NODE, "terminationGracePeriodSeconds": 5, "containers": containers }
    })
}

fn cs<'a>(p: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == name)
}

fn condition(p: &Pod, t: &str) -> Option<String> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == t).map(|c| c.status.clone())
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn waiting_reason(c: Option<&ContainerStatus>) -> Option<String> {
    c?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

#[tokio::test]
async fn node_registers_with_capacity_and_conditions_and_the_lease_renews() {
    let h = Harness::new().await;
    h.fake.add_image("busybox:1.36");
    let kubelet = h.start_kubelet();
    let nodes: Api<Node> = Api::all(h.client.clone());
    let mut node = None;
    for _ in 0..200 {
        if let Some(n) = nodes.get_opt(NODE).await.unwrap()
            && n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some()
        {
            node = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let node = node.expect("the node registers with conditions");
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels.contains_key("kubernetes.io/arch"));
    assert!(labels.contains_key("node-role.kubernetes.io/control-plane"));
    let status = node.status.unwrap();
    let capacity = status.capacity.unwrap();
    assert_eq!(capacity["pods"].0, "110");
    for r in ["cpu", "memory", "ephemeral-storage"] {
        assert!(capacity.contains_key(r), "capacity has {r}");
    }
    assert!(status.allocatable.unwrap().contains_key("memory"));
    let conditions = status.conditions.unwrap();
    // Memory and disk pressure depend on the host (thresholds: 100Mi available, 10% of the data dir's fs).
    for (t, s) in
        [("Ready", Some("True")), ("MemoryPressure", None), ("DiskPressure", None), ("PIDPressure", Some("False"))]
    {
        let c = conditions.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("condition {t}"));
        if let Some(s) = s {
            assert_eq!(c.status, s, "{t}");
        }
        assert!(c.reason.is_some() && c.last_heartbeat_time.is_some() && c.last_transition_time.is_some());
    }
    let addresses = status.addresses.unwrap();
    assert!(addresses.iter().any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"));
    assert!(addresses.iter().any(|a| a.type_ == "Hostname" && a.address == NODE));
    let info = status.node_info.unwrap();
    assert_eq!(info.container_runtime_version, "fake://0.1.0");
    assert_eq!(info.operating_system, "linux");
    assert!(!info.kubelet_version.is_empty() && !info.kernel_version.is_empty());
    assert_eq!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
    let images = status.images.unwrap();
    assert!(images[0].names.as_ref().unwrap().contains(&"docker.io/library/busybox:1.36".to_string()), "{images:?}");

    // Node events as `kubectl describe node` shows them.
    let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
    let mut reasons = Vec::new();
    for _ in 0..200 {
        reasons = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("Node"))
            .map(|e| e.reason.unwrap_or_default())
            .collect::<Vec<_>>();
        if reasons.iter().any(|r| r == "NodeReady") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in ["Starting", "NodeHasSufficientPID", "NodeReady"] {
        assert!(reasons.iter().any(|x| x == r), "node event {r} in {reasons:?}");
    }
    assert!(reasons.iter().any(|x| x.ends_with("Memory")), "{reasons:?}");
    assert!(reasons.iter().any(|x| x.ends_with("DiskPressure")), "{reasons:?}");

    let leases: Api<Lease> = Api::namespaced(h.client.clone(), "kube-node-lease");
    let mut first = None;
    for _ in 0..200 {
        if let Some(l) = leases.get_opt(NODE).await.unwrap() {
            first = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.expect("the lease is created");
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert_eq!(first.metadata.owner_references.unwrap()[0].kind, "Node");
    let mut renewed = false;
    for _ in 0..200 {
        let l = leases.get(NODE).await.unwrap();
        if l.metadata.resource_version != first.metadata.resource_version
            && l.spec.unwrap().renew_time.unwrap().0 > spec.renew_time.as_ref().unwrap().0
        {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed, "the lease is renewed");
    kubelet.stop().await;
}

#[tokio::test]
async fn a_pod_runs_with_ready_condition_and_container_statuses() {
    let h = Harness::new().await;
    let kubelet = h.start_kubelet();
    h.create_pod(pod("web", json!([{ "name": "app", "image": "busybox:1.36" }]))).await;
    let p = h
        .wait_pod("web", "Running and Ready", |p| {
            phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    let status = p.status.clone().unwrap();
    for t in ["PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&p, t).as_deref(), Some("True"), "{t}");
    }
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.pod_ip.as_deref().is_some_and(|ip| ip.starts_with("10.42.")), "{:?}", status.pod_ip);
    assert!(status.start_time.is_some());
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let c = cs(&p, "app").unwrap();
    assert!(c.ready && c.started == Some(true));
    assert_eq!(c.restart_count, 0);
    assert!(c.state.as_ref().unwrap().running.as_ref().unwrap().started_at.is_some());
    assert!(c.container_id.as_deref().unwrap().starts_with("skiff://"));
    assert_eq!(c.image, "docker.io/library/busybox:1.36");
    assert!(c.image_id.contains("sha256:"));
    h.wait_event("web", "Pulled", "busybox:1.36").await;
    h.wait_event("web", "Created", "Created container: app").await;
    h.wait_event("web", "Started", "Started container app").await;
    assert_eq!(h.fake.start_count(p.metadata.uid.as_deref().unwrap(), "app"), 1);
    kubelet.stop().await;
}

#[tokio::test]
async fn init_containers_run_first_in_order() {
    let h = Harness::new().await;
    h.fake.set_behaviour("init-1", Behaviour::ExitAfter(Duration::from_millis(100), 0));
    h.fake.set_behaviour("init-2", Behaviour::ExitAfter(Duration::from_millis(100), 0));
    let kubelet = h.start_kubelet();
    let mut spec = pod("with-init", json!([{ "name": "app", "image": "busybox:1.36" }]));
    spec["spec"]["initContainers"] = json!([
        { "name": "init-1", "image": "busybox:1.36" },
        { "name": "init-2", "image": "busybox:1.36" },
    ]);
    let created = h.create_pod(spec).await;
    let uid = created.metadata.uid.unwrap();
    let p = h.wait_pod("with-init", "Running", |p| phase(p) == "Running").await;
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    let order: Vec<String> = h.fake.start_order().into_iter().filter(|(u, _)| *u == uid).map(|(_, n)| n).collect();
    assert_eq!(order, ["init-1", "init-2", "app"]);
    let inits = p.status.unwrap().init_container_statuses.unwrap();
    for i in &inits {
        let t = i.state.as_ref().unwrap().terminated.as_ref().unwrap_or_else(|| panic!("{} terminated", i.name));
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert!(i.ready);
    }
    kubelet.stop().await;
}

#[tokio::test]
async fn a_failing_container_goes_to_crash_loop_back_off_with_growing_delays() {
    let h = Harness::new().await;
    h.fake.set_behaviour("crash", Behaviour::ExitAfter(Duration::from_millis(20), 1));
    let kubelet = h.start_kubelet();
    h.create_pod(pod("crasher", json!([{ "name": "crash", "image": "busybox:1.36" }]))).await;
    let p = h
        .wait_pod("crasher", "CrashLoopBackOff", |p| {
            waiting_reason(cs(p, "crash")).as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    let c = cs(&p, "crash").unwrap();
    let message = c.state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.starts_with("back-off ")
            && message.ends_with(&format!("restarting failed container=crash pod=crasher_default({uid})")),
        "{message}"
    );
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().expect("lastState is terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert!(c.restart_count >= 1);
    assert_eq!(phase(&p), "Running");
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));

    // The delay doubles: 200ms, 400ms, 800ms, then the 1.6s cap.
    let p = h
        .wait_pod("crasher", "a longer back-off", |p| {
            cs(p, "crash")
                .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
                .is_some_and(|m| m.starts_with("back-off 800ms") || m.starts_with("back-off 1.6s"))
        })
        .await;
    assert!(cs(&p, "crash").unwrap().restart_count >= 3, "{:?}", cs(&p, "crash"));
    h.wait_event("crasher", "BackOff", "Back-off restarting failed container crash in pod crasher_default").await;
    kubelet.stop().await;
}

#[tokio::test]
async fn a_failed_liveness_probe_restarts_the_container() {
    let h = Harness::new().await;
    let kubelet = h.start_kubelet();
    h.create_pod(pod(
        "live",
        json!([{ "name": "app", "image": "busybox:1.36",
                 "livenessProbe": { "exec": { "command": ["check"] }, "periodSeconds": 1, "failureThreshold": 1 } }]),
    ))
    .await;
    let p = h.wait_pod("live", "Running", |p| phase(p) == "Running").await;
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(h.fake.start_count(&uid, "app"), 1);
    h.fake.set_exec_result(
        "app",
        &["check"],
        Ok(ExecSyncResult { exit_code: 1, stdout: b"unhealthy".to_vec(), ..Default::default() }),
    );
    let p = h.wait_pod("live", "a restart", |p| cs(p, "app").is_some_and(|c| c.restart_count >= 1)).await;
    h.wait_event("live", "Unhealthy", "Liveness probe failed: unhealthy").await;
    h.wait_event("live", "Killing", "Container app failed liveness probe, will be restarted").await;
    assert!(h.fake.start_count(&uid, "app") >= 2);
    let last = cs(&p, "app").unwrap().last_state.clone().unwrap().terminated.expect("the killed instance is lastState");
    assert_eq!(last.exit_code, 137);
    kubelet.stop().await;
}

#[tokio::test]
async fn readiness_probe_gates_the_ready_condition() {
    let h = Harness::new().await;
    h.fake.set_exec_result("app", &["ready"], Ok(ExecSyncResult { exit_code: 1, ..Default::default() }));
    let kubelet = h.start_kubelet();
    h.create_pod(pod(
        "gated",
        json!([{ "name": "app", "image": "busybox:1.36",
                 "readinessProbe": { "exec": { "command": ["ready"] }, "periodSeconds": 1, "failureThreshold": 1 } }]),
    ))
    .await;
    let p = h.wait_pod("gated", "Running", |p| phase(p) == "Running").await;
    // Probes ran and failed: still not ready.
    h.wait_event("gated", "Unhealthy", "Readiness probe failed").await;
    let p2 = h.pods().get("gated").await.unwrap();
    assert_eq!(condition(&p2, "Ready").as_deref(), Some("False"), "{:?}", p.status);
    assert!(!cs(&p2, "app").unwrap().ready);
    h.fake.set_exec_result("app", &["ready"], Ok(ExecSyncResult::default()));
    let p = h.wait_pod("gated", "Ready", |p| condition(p, "Ready").as_deref() == Some("True")).await;
    assert!(cs(&p, "app").unwrap().ready);
    assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("True"));
    kubelet.stop().await;
}

#[tokio::test]
async fn a_pull_failure_shows_err_image_pull_then_image_pull_back_off() {
    let h = Harness::new().await;
    h.fake.fail_pull("registry.example/missing:1", "manifest unknown");
    let kubelet = h.start_kubelet();
    // Every status the pod goes through, from a watch (ErrImagePull may last only until the next sync).
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let recorder = {
        let seen = seen.clone();
        let wc = kube::runtime::watcher::Config::default().fields("metadata.name=nopull");
        let stream = kube::runtime::watcher(h.pods(), wc);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            use kube::runtime::watcher::Event as E;
            let mut ready_tx = Some(ready_tx);
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(event)) = stream.next().await {
                let p = match event {
                    E::InitDone => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    E::Apply(p) | E::InitApply(p) => p,
                    _ => continue,
                };
                if let Some(w) = cs(&p, "app").and_then(|c| c.state.as_ref()?.waiting.clone()) {
                    seen.lock().unwrap().push((w.reason.unwrap_or_default(), w.message.unwrap_or_default()));
                }
            }
        });
        ready_rx.await.expect("the watch starts");
        task
    };
    h.create_pod(pod("nopull", json!([{ "name": "app", "image": "registry.example/missing:1" }]))).await;
    let p = h
        .wait_pod("nopull", "ImagePullBackOff", |p| waiting_reason(cs(p, "app")).as_deref() == Some("ImagePullBackOff"))
        .await;
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    let first_err =
        seen.iter().position(|(r, _)| r == "ErrImagePull").unwrap_or_else(|| panic!("ErrImagePull seen: {seen:?}"));
    let first_backoff = seen.iter().position(|(r, _)| r == "ImagePullBackOff").unwrap_or(usize::MAX);
    assert!(first_err < first_backoff, "{seen:?}");
    let message = seen[first_err].1.clone();
    assert!(message.contains("manifest unknown"), "{message}");
    assert_eq!(phase(&p), "Pending");
    let message = cs(&p, "app").unwrap().state.clone().unwrap().waiting.unwrap().message.unwrap();
    assert!(message.starts_with("Back-off pulling image \"registry.example/missing:1\""), "{message}");
    h.wait_event("nopull", "Failed", "Failed to pull image \"registry.example/missing:1\"").await;
    h.wait_event("nopull", "BackOff", "Back-off pulling image").await;
    // Once the registry has it, the pod starts.
    h.fake.allow_pull("registry.example/missing:1");
    h.wait_pod("nopull", "Running", |p| phase(p) == "Running").await;
    kubelet.stop().await;
}

#[tokio::test]
async fn deleting_a_pod_stops_and_removes_everything() {
    let h = Harness::new().await;
    let kubelet = h.start_kubelet();
    let mut spec = pod(
        "doomed",
        json!([{ "name": "app", "image": "busybox:1.36",
        "lifecycle": { "preStop": { "exec": { "command": ["drain"] } } } }]),
    );
    spec["spec"]["terminationGracePeriodSeconds"] = json!(30);
    let created = h.create_pod(spec).await;
    h.wait_pod("doomed", "Running", |p| phase(p) == "Running").await;
    // The runtime writes container logs under the pod's log folder; it goes with the pod.
    let logs = h.dir.path().join("logs").join(format!("default_doomed_{}", created.metadata.uid.unwrap()));
    std::fs::create_dir_all(logs.join("app")).unwrap();
    std::fs::write(logs.join("app").join("0.log"), "").unwrap();
    assert_eq!(h.fake.sandboxes().len(), 1);
    assert_eq!(h.fake.containers().len(), 1);
    h.pods().delete("doomed", &DeleteParams::default()).await.unwrap();
    let mut gone = false;
    for _ in 0..400 {
        if h.pods().get_opt("doomed").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the pod object disappears");
    assert!(h.fake.sandboxes().is_empty(), "{:?}", h.fake.sandboxes());
    assert!(h.fake.containers().is_empty(), "{:?}", h.fake.containers());
    assert!(!logs.exists(), "the pod's logs are removed");
    assert!(h.fake.execs().iter().any(|(c, cmd)| c == "app" && cmd == &["drain".to_string()]), "preStop ran");
    h.wait_event("doomed", "Killing", "Stopping container app").await;
    kubelet.stop().await;
}

#[tokio::test]
async fn a_restarted_kubelet_adopts_running_containers_and_removes_orphans() {
    let h = Harness::new().await;
    let first = h.start_kubelet();
    let created = h.create_pod(pod("keeper", json!([{ "name": "app", "image": "busybox:1.36" }]))).await;
    let uid = created.metadata.uid.unwrap();
    let p = h.wait_pod("keeper", "Running", |p| phase(p) == "Running").await;
    let container_id = cs(&p, "app").unwrap().container_id.clone();
    first.stop().await;
    assert_eq!(h.fake.start_count(&uid, "app"), 1);

    // A sandbox of a pod that no longer exists.
    let orphan = h
        .fake
        .run_pod_sandbox(&PodSandboxConfig {
            name: "ghost".into(),
            namespace: "default".into(),
            uid: "ghost-uid".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let second = h.start_kubelet();
    let mut removed = false;
    for _ in 0..400 {
        if !h.fake.sandboxes().iter().any(|s| s.id == orphan) {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(removed, "the orphan sandbox is removed");
    // The new kubelet manages the pod (it restarts the container when it exits) but did not restart it.
    assert_eq!(h.fake.start_count(&uid, "app"), 1);
    let p = h.pods().get("keeper").await.unwrap();
    assert_eq!(cs(&p, "app").unwrap().container_id, container_id);
    let running = h.fake.containers().into_iter().find(|c| Some(format!("skiff://{}", c.id)) == container_id).unwrap();
    h.fake.exit_container(&running.id, 0);
    h.wait_pod("keeper", "restarted by the new kubelet", |p| {
        cs(p, "app").is_some_and(|c| c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
    .await;
    assert_eq!(h.fake.start_count(&uid, "app"), 2);
    second.stop().await;
}

#[tokio::test]
async fn never_and_on_failure_pods_finish_with_a_terminal_phase() {
    let h = Harness::new().await;
    h.fake.set_behaviour("ok", Behaviour::ExitAfter(Duration::from_millis(50), 0));
    h.fake.set_behaviour("bad", Behaviour::ExitAfter(Duration::from_millis(50), 3));
    let kubelet = h.start_kubelet();
    let mut done = pod("done", json!([{ "name": "ok", "image": "busybox:1.36" }]));
    done["spec"]["restartPolicy"] = json!("OnFailure");
    h.create_pod(done).await;
    let mut failed = pod("failed", json!([{ "name": "bad", "image": "busybox:1.36" }]));
    failed["spec"]["restartPolicy"] = json!("Never");
    h.create_pod(failed).await;

    let p = h.wait_pod("done", "Succeeded", |p| phase(p) == "Succeeded").await;
    let t = cs(&p, "ok").unwrap().state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert!(t.started_at.is_some() && t.finished_at.is_some());
    let ready =
        p.status.as_ref().unwrap().conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").cloned().unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("PodCompleted")));

    let p = h.wait_pod("failed", "Failed", |p| phase(p) == "Failed").await;
    let c = cs(&p, "bad").unwrap();
    let t = c.state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(c.restart_count, 0);
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(h.fake.start_count(&uid, "bad"), 1);
    // A finished pod's sandbox is stopped; its exited container stays for status and logs.
    let mut stopped = false;
    for _ in 0..200 {
        if h.fake
            .sandboxes()
            .iter()
            .filter(|s| s.uid == uid)
            .all(|s| s.state == skiff_runtime::cri::SandboxState::NotReady)
        {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "the finished pod's sandbox is stopped");
    kubelet.stop().await;
}

#[tokio::test]
async fn config_and_start_errors_show_as_waiting_reasons() {
    let h = Harness::new().await;
    h.fake.fail_start("boom", "exec: \"nope\": executable file not found in $PATH");
    let kubelet = h.start_kubelet();
    h.create_pod(pod(
        "misconfigured",
        json!([{ "name": "app", "image": "busybox:1.36",
                 "env": [{ "name": "X", "valueFrom": { "configMapKeyRef": { "name": "missing", "key": "k" } } }] }]),
    ))
    .await;
    h.create_pod(pod("unstartable", json!([{ "name": "boom", "image": "busybox:1.36" }]))).await;
    let p = h
        .wait_pod("misconfigured", "CreateContainerConfigError", |p| {
            waiting_reason(cs(p, "app")).as_deref() == Some("CreateContainerConfigError")
        })
        .await;
    let message = cs(&p, "app").unwrap().state.clone().unwrap().waiting.unwrap().message.unwrap();
    assert!(message.contains("configmap \"missing\" not found"), "{message}");
    assert_eq!(phase(&p), "Pending");
    h.wait_event("misconfigured", "Failed", "Error: configmap \"missing\" not found").await;

    // The runtime's start error, then the restart back-off.
    h.wait_event("unstartable", "Failed", "executable file not found").await;
    let p = h
        .wait_pod("unstartable", "CrashLoopBackOff", |p| {
            waiting_reason(cs(p, "boom")).as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    let last = cs(&p, "boom").unwrap().last_state.clone().unwrap().terminated.unwrap();
    assert_eq!(last.reason.as_deref(), Some("StartError"));
    assert!(last.message.unwrap_or_default().contains("executable file not found"));
    kubelet.stop().await;
}

#[tokio::test]
async fn a_sidecar_keeps_running_beside_the_app_and_a_failed_post_start_hook_kills() {
    let h = Harness::new().await;
    h.fake.set_exec_result(
        "hooked",
        &["hook"],
        Ok(ExecSyncResult { exit_code: 2, stderr: b"no".to_vec(), ..Default::default() }),
    );
    let kubelet = h.start_kubelet();
    let mut spec = pod("sidecar", json!([{ "name": "app", "image": "busybox:1.36" }]));
    spec["spec"]["initContainers"] = json!([{ "name": "proxy", "image": "busybox:1.36", "restartPolicy": "Always" }]);
    let created = h.create_pod(spec).await;
    let uid = created.metadata.uid.unwrap();
    let p = h.wait_pod("sidecar", "Ready", |p| condition(p, "Ready").as_deref() == Some("True")).await;
    let proxy = &p.status.as_ref().unwrap().init_container_statuses.as_ref().unwrap()[0];
    assert!(proxy.state.as_ref().unwrap().running.is_some() && proxy.ready && proxy.started == Some(true));
    let order: Vec<String> = h.fake.start_order().into_iter().filter(|(u, _)| *u == uid).map(|(_, n)| n).collect();
    assert_eq!(order, ["proxy", "app"]);

    h.create_pod(pod(
        "hook",
        json!([{ "name": "hooked", "image": "busybox:1.36", "lifecycle": { "postStart": { "exec": { "command": ["hook"] } } } }]),
    ))
    .await;
    h.wait_event("hook", "FailedPostStartHook", "exited with 2").await;
    let p = h
        .wait_pod("hook", "a restart after the failed hook", |p| cs(p, "hooked").is_some_and(|c| c.restart_count >= 1))
        .await;
    assert_eq!(phase(&p), "Running");
    kubelet.stop().await;
}

#[tokio::test]
async fn pods_beyond_max_pods_are_rejected_with_out_of_pods() {
    let h = Harness::new().await;
    let kubelet = h.start_kubelet_with(|c| c.max_pods = 1);
    h.create_pod(pod("first", json!([{ "name": "app", "image": "busybox:1.36" }]))).await;
    h.wait_pod("first", "Running", |p| phase(p) == "Running").await;
    let second = h.create_pod(pod("second", json!([{ "name": "app", "image": "busybox:1.36" }]))).await;
    let p = h.wait_pod("second", "Failed", |p| phase(p) == "Failed").await;
    let status = p.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfpods"));
    assert!(status.message.unwrap().contains("Node didn't have enough resource: pods"));
    assert_eq!(h.fake.start_count(second.metadata.uid.as_deref().unwrap(), "app"), 0);
    kubelet.stop().await;
}

#[tokio::test]
async fn startup_probe_failure_restarts_and_the_termination_message_is_reported() {
    let h = Harness::new().await;
    h.fake.set_exec_result("slow", &["started"], Ok(ExecSyncResult { exit_code: 1, ..Default::default() }));
    let kubelet = h.start_kubelet();
    h.create_pod(pod(
        "slow",
        json!([{ "name": "slow", "image": "busybox:1.36",
                 "startupProbe": { "exec": { "command": ["started"] }, "periodSeconds": 1, "failureThreshold": 1 } }]),
    ))
    .await;
    h.wait_event("slow", "Killing", "Container slow failed startup probe, will be restarted").await;
    let p = h.wait_pod("slow", "a restart", |p| cs(p, "slow").is_some_and(|c| c.restart_count >= 1)).await;
    assert_eq!(cs(&p, "slow").unwrap().started, Some(false));

    // terminationMessagePath: the file the container wrote (on the host, in the pod's folder) is the message.
    let mut spec = pod("msg", json!([{ "name": "writer", "image": "busybox:1.36" }]));
    spec["spec"]["restartPolicy"] = json!("Never");
    let created = h.create_pod(spec).await;
    let uid = created.metadata.uid.unwrap();
    h.wait_pod("msg", "Running", |p| phase(p) == "Running").await;
    let file = h.dir.path().join("pods").join(&uid).join("containers").join("writer").join("0");
    std::fs::write(&file, "bye from writer").unwrap();
    let id = h.fake.containers().into_iter().find(|c| c.name == "writer").unwrap().id;
    h.fake.exit_container(&id, 4);
    let p = h.wait_pod("msg", "Failed", |p| phase(p) == "Failed").await;
    let t = cs(&p, "writer").unwrap().state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.message.as_deref()), (4, Some("bye from writer")));
    kubelet.stop().await;
}

#[tokio::test]
async fn readiness_gates_hold_the_ready_condition() {
    let h = Harness::new().await;
    let kubelet = h.start_kubelet();
    let mut spec = pod("gate", json!([{ "name": "app", "image": "busybox:1.36" }]));
    spec["spec"]["readinessGates"] = json!([{ "conditionType": "example.com/lb" }]);
    h.create_pod(spec).await;
    let p = h.wait_pod("gate", "ContainersReady", |p| condition(p, "ContainersReady").as_deref() == Some("True")).await;
    let ready = p.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ReadinessGatesNotReady")));
    let patch = json!({ "status": { "conditions": [{ "type": "example.com/lb", "status": "True" }] } });
    h.pods()
        .patch_status("gate", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(&patch))
        .await
        .unwrap();
    h.wait_pod("gate", "Ready", |p| condition(p, "Ready").as_deref() == Some("True")).await;
    kubelet.stop().await;
}

#[tokio::test]
async fn a_dead_sandbox_is_recreated_and_init_containers_run_again() {
    let h = Harness::new().await;
    h.fake.set_behaviour("prep", Behaviour::ExitAfter(Duration::from_millis(20), 0));
    let kubelet = h.start_kubelet();
    let mut spec = pod("phoenix", json!([{ "name": "app", "image": "busybox:1.36" }]));
    spec["spec"]["initContainers"] = json!([{ "name": "prep", "image": "busybox:1.36" }]);
    let uid = h.create_pod(spec).await.metadata.uid.unwrap();
    h.wait_pod("phoenix", "Running", |p| phase(p) == "Running").await;
    let sandbox = h.fake.sandboxes().into_iter().find(|s| s.uid == uid).unwrap();
    assert_eq!(sandbox.attempt, 0);
    // The sandbox dies (as after a host reboot): everything in it stops.
    h.fake.stop_pod_sandbox(&sandbox.id).await.unwrap();
    h.wait_event("phoenix", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.").await;
    let p = h
        .wait_pod("phoenix", "Running in a new sandbox", |p| {
            phase(p) == "Running" && cs(p, "app").is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .await;
    let sandboxes: Vec<_> = h.fake.sandboxes().into_iter().filter(|s| s.uid == uid).collect();
    assert!(
        sandboxes.iter().any(|s| s.attempt == 1 && s.state == skiff_runtime::cri::SandboxState::Ready),
        "{sandboxes:?}"
    );
    let order: Vec<String> = h.fake.start_order().into_iter().filter(|(u, _)| *u == uid).map(|(_, n)| n).collect();
    assert_eq!(order, ["prep", "app", "prep", "app"]);
    assert_eq!(cs(&p, "app").unwrap().restart_count, 1);
    kubelet.stop().await;
}

#[tokio::test]
async fn a_job_like_pod_with_a_sidecar_succeeds_and_the_sidecar_is_stopped() {
    let h = Harness::new().await;
    h.fake.set_behaviour("work", Behaviour::ExitAfter(Duration::from_millis(100), 0));
    let kubelet = h.start_kubelet();
    let mut spec = pod("job", json!([{ "name": "work", "image": "busybox:1.36" }]));
    spec["spec"]["restartPolicy"] = json!("Never");
    spec["spec"]["initContainers"] = json!([{ "name": "logger", "image": "busybox:1.36", "restartPolicy": "Always" }]);
    h.create_pod(spec).await;
    let p = h.wait_pod("job", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    let logger = &p.status.as_ref().unwrap().init_container_statuses.as_ref().unwrap()[0];
    assert!(logger.state.as_ref().unwrap().terminated.is_some(), "{logger:?}");
    h.wait_event("job", "Killing", "Stopping container logger").await;
    kubelet.stop().await;
}

#[tokio::test]
async fn fallback_to_logs_on_error_reports_the_log_tail() {
    let h = Harness::new().await;
    let kubelet = h.start_kubelet();
    let mut spec = pod(
        "tail",
        json!([{ "name": "app", "image": "busybox:1.36", "terminationMessagePolicy": "FallbackToLogsOnError" }]),
    );
    spec["spec"]["restartPolicy"] = json!("Never");
    h.create_pod(spec).await;
    h.wait_pod("tail", "Running", |p| phase(p) == "Running").await;
    let c = h.fake.containers().into_iter().find(|c| c.name == "app").unwrap();
    std::fs::create_dir_all(c.log_path.parent().unwrap()).unwrap();
    std::fs::write(
        &c.log_path,
        "2024-01-01T00:00:00.000000000Z stdout F starting\n2024-01-01T00:00:01.000000000Z stderr F fatal: no config\n",
    )
    .unwrap();
    h.fake.exit_container(&c.id, 2);
    let p = h.wait_pod("tail", "Failed", |p| phase(p) == "Failed").await;
    let t = cs(&p, "app").unwrap().state.clone().unwrap().terminated.unwrap();
    assert_eq!(t.message.as_deref(), Some("starting\nfatal: no config\n"));
    kubelet.stop().await;
}
