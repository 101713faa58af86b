//! The scheduler against the in-process API server: Node objects (there is no kubelet here), pods, and the
//! bindings, conditions and events the scheduler writes.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::Client;
use skiff_scheduler::testing::{NodeBuilder, PodBuilder};
use skiff_scheduler::SchedulerConfig;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything that waits on the server; never a synchronisation delay.
const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    client: Client,
    server_shutdown: CancellationToken,
    scheduler_shutdown: CancellationToken,
    scheduler: Option<tokio::task::JoinHandle<Result<(), skiff_scheduler::Error>>>,
}

impl Cluster {
    /// A server and a scheduler with `config` (leader election off unless the config turns it on).
    async fn start(config: SchedulerConfig) -> Cluster {
        let server = skiff_apiserver::testing::start_admin().await;
        let client = Client::new(server.router.clone(), "default");
        let scheduler_shutdown = CancellationToken::new();
        let scheduler = tokio::spawn(skiff_scheduler::run(config, client.clone(), scheduler_shutdown.clone()));
        Cluster { client, server_shutdown: server.shutdown, scheduler_shutdown, scheduler: Some(scheduler) }
    }

    async fn stop(mut self) {
        self.scheduler_shutdown.cancel();
        if let Some(s) = self.scheduler.take() {
            bounded("the scheduler to stop", s).await.expect("the scheduler task ends").expect("the scheduler returns Ok");
        }
        self.server_shutdown.cancel();
    }

    fn pods(&self) -> Api<Pod> {
        Api::default_namespaced(self.client.clone())
    }

    async fn node(&self, node: Node) {
        Api::<Node>::all(self.client.clone()).create(&PostParams::default(), &node).await.expect("node created");
    }

    async fn pod(&self, mut pod: Pod) -> String {
        pod.metadata.uid = None;
        pod.metadata.creation_timestamp = None;
        let name = pod.metadata.name.clone().unwrap();
        self.pods().create(&PostParams::default(), &pod).await.expect("pod created");
        name
    }

    /// Waits until the pod is bound and returns its node.
    async fn bound(&self, name: &str) -> String {
        let cond = |p: Option<&Pod>| p.and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.as_ref()).is_some();
        let pod = bounded(&format!("pod {name} to be bound"), await_condition(self.pods(), name, cond))
            .await
            .expect("watch")
            .expect("the pod exists");
        pod.spec.unwrap().node_name.unwrap()
    }

    /// Waits until the pod has PodScheduled=False and returns the condition's message.
    async fn unschedulable(&self, name: &str) -> String {
        let cond = |p: Option<&Pod>| scheduled_condition(p).is_some_and(|c| c.0 == "False");
        let pod = bounded(&format!("pod {name} to be unschedulable"), await_condition(self.pods(), name, cond))
            .await
            .expect("watch")
            .expect("the pod exists");
        let (status, reason, message) = scheduled_condition(Some(&pod)).unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Unschedulable"));
        message
    }

    /// Waits for an event about the pod with this reason, found as `kubectl describe pod` finds them.
    async fn event(&self, pod: &str, reason: &str) -> Event {
        let events: Api<Event> = Api::default_namespaced(self.client.clone());
        let uid = self.pods().get(pod).await.ok().and_then(|p| p.metadata.uid).unwrap_or_default();
        let selector = format!("involvedObject.name={pod},involvedObject.namespace=default,involvedObject.uid={uid}");
        bounded(&format!("a {reason} event for {pod}"), async {
            loop {
                let list = events.list(&ListParams::default().fields(&selector)).await.expect("events list");
                if let Some(e) = list.items.into_iter().find(|e| {
                    e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason)
                }) {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }
}

fn scheduled_condition(p: Option<&Pod>) -> Option<(String, String, String)> {
    let c = p?.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn no_election(mut c: SchedulerConfig) -> SchedulerConfig {
    c.leader_election.leader_elect = false;
    c
}

/// Places two 1-CPU pods, one after the other, on two equal nodes.
async fn place_two(config: SchedulerConfig) -> (String, String) {
    let c = Cluster::start(no_election(config)).await;
    c.node(NodeBuilder::new("n1").build()).await;
    c.node(NodeBuilder::new("n2").build()).await;
    c.pod(PodBuilder::new("first").container("1", "1Gi").build()).await;
    let first = c.bound("first").await;
    c.pod(PodBuilder::new("second").container("1", "1Gi").build()).await;
    let second = c.bound("second").await;
    c.stop().await;
    (first, second)
}

#[tokio::test]
async fn spread_and_binpack_place_the_same_pods_differently() {
    let (a, b) = place_two(SchedulerConfig::spread()).await;
    assert_ne!(a, b, "spread puts the second pod on the empty node");
    let (a, b) = place_two(SchedulerConfig::binpack()).await;
    assert_eq!(a, b, "binpack fills the used node first");
}

#[tokio::test]
async fn profiles_from_a_file_are_chosen_by_scheduler_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler.yaml");
    std::fs::write(
        &path,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nleaderElection:\n  leaderElect: false\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n",
    )
    .unwrap();
    let c = Cluster::start(SchedulerConfig::from_file(&path).unwrap()).await;
    c.node(NodeBuilder::new("n1").build()).await;
    c.node(NodeBuilder::new("n2").build()).await;
    c.pod(PodBuilder::new("a").container("1", "1Gi").scheduler_name("packer").build()).await;
    let a = c.bound("a").await;
    c.pod(PodBuilder::new("b").container("1", "1Gi").scheduler_name("packer").build()).await;
    assert_eq!(c.bound("b").await, a);
    c.pod(PodBuilder::new("d").container("1", "1Gi").build()).await;
    assert_ne!(c.bound("d").await, a, "the default profile spreads");

    // A pod naming an unknown scheduler is left alone.
    c.pod(PodBuilder::new("other").scheduler_name("someone-else").build()).await;
    c.pod(PodBuilder::new("after").build()).await;
    c.bound("after").await;
    let other = c.pods().get("other").await.unwrap();
    assert!(other.spec.as_ref().unwrap().node_name.is_none());
    assert!(scheduled_condition(Some(&other)).is_none());
    c.stop().await;
}

#[tokio::test]
async fn taints_tolerations_and_node_affinity() {
    let c = Cluster::start(no_election(SchedulerConfig::default())).await;
    c.node(NodeBuilder::new("cp").label("zone", "a").taint("node-role.kubernetes.io/control-plane", "", "NoSchedule").build()).await;
    c.node(NodeBuilder::new("w1").label("zone", "a").build()).await;
    c.node(NodeBuilder::new("w2").label("zone", "b").build()).await;
    for i in 0..3 {
        c.pod(PodBuilder::new(&format!("plain{i}")).container("100m", "").build()).await;
        assert_ne!(c.bound(&format!("plain{i}")).await, "cp", "an untolerated taint keeps pods off");
    }
    c.pod(
        PodBuilder::new("tolerant")
            .toleration("node-role.kubernetes.io/control-plane", "Exists", "", "NoSchedule")
            .required_node_name_field(&["cp"])
            .build(),
    )
    .await;
    assert_eq!(c.bound("tolerant").await, "cp");
    c.pod(PodBuilder::new("zone-b").required_node_affinity("zone", "In", &["b"]).build()).await;
    assert_eq!(c.bound("zone-b").await, "w2");
    c.pod(PodBuilder::new("selector").node_selector("zone", "a").build()).await;
    assert_eq!(c.bound("selector").await, "w1");
    c.stop().await;
}

#[tokio::test]
async fn required_anti_affinity_and_topology_spread() {
    let c = Cluster::start(no_election(SchedulerConfig::default())).await;
    c.node(NodeBuilder::new("a1").label("topology.kubernetes.io/zone", "a").build()).await;
    c.node(NodeBuilder::new("a2").label("topology.kubernetes.io/zone", "a").build()).await;
    c.node(NodeBuilder::new("b1").label("topology.kubernetes.io/zone", "b").build()).await;

    let mut zones = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..4 {
        let name = format!("spread{i}");
        c.pod(
            PodBuilder::new(&name)
                .label("app", "spread")
                .spread(1, "topology.kubernetes.io/zone", "DoNotSchedule", &[("app", "spread")])
                .build(),
        )
        .await;
        let node = c.bound(&name).await;
        *zones.entry(if node == "b1" { "b".into() } else { "a".into() }).or_default() += 1;
    }
    assert_eq!(zones, [("a".to_string(), 2), ("b".to_string(), 2)].into());

    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..3 {
        let name = format!("web{i}");
        c.pod(PodBuilder::new(&name).label("app", "web").pod_anti_affinity(&[("app", "web")], "kubernetes.io/hostname").build())
            .await;
        nodes.insert(c.bound(&name).await);
    }
    assert_eq!(nodes.len(), 3, "one web pod per node");
    c.pod(PodBuilder::new("web3").label("app", "web").pod_anti_affinity(&[("app", "web")], "kubernetes.io/hostname").build())
        .await;
    let msg = c.unschedulable("web3").await;
    // The running web pods' own anti-affinity is checked first, as upstream does.
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
    c.stop().await;
}

#[tokio::test]
async fn an_unschedulable_pod_is_explained_and_placed_when_a_node_appears() {
    let c = Cluster::start(no_election(SchedulerConfig::default())).await;
    c.node(NodeBuilder::new("small").cpu("1").build()).await;
    c.node(NodeBuilder::new("cp").taint("node-role.kubernetes.io/control-plane", "", "NoSchedule").build()).await;
    c.pod(PodBuilder::new("big").container("2", "1Gi").build()).await;
    let msg = c.unschedulable("big").await;
    assert_eq!(
        msg,
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
    );
    let ev = c.event("big", "FailedScheduling").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.message.as_deref(), Some(msg.as_str()));
    assert_eq!(ev.source.as_ref().and_then(|s| s.component.as_deref()), Some("default-scheduler"));

    c.node(NodeBuilder::new("large").cpu("8").build()).await;
    assert_eq!(c.bound("big").await, "large");
    let ev = c.event("big", "Scheduled").await;
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
    assert_eq!(ev.message.as_deref(), Some("Successfully assigned default/big to large"));
    c.stop().await;
}

#[tokio::test]
async fn a_high_priority_pod_preempts_a_low_one() {
    let c = Cluster::start(no_election(SchedulerConfig::default())).await;
    let classes: Api<PriorityClass> = Api::all(c.client.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        let pc: PriorityClass = serde_json::from_value(serde_json::json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value}))
        .unwrap();
        classes.create(&PostParams::default(), &pc).await.expect("priority class created");
    }
    // Priority admission turns the class name into spec.priority.
    let with_class = |b: PodBuilder, class: &str| {
        let mut p = b.build();
        p.spec.as_mut().unwrap().priority_class_name = Some(class.into());
        p
    };
    c.node(NodeBuilder::new("n1").cpu("2").build()).await;
    c.pod(with_class(PodBuilder::new("victim").container("2", ""), "low")).await;
    assert_eq!(c.bound("victim").await, "n1");
    c.pod(with_class(PodBuilder::new("vip").container("2", ""), "high")).await;
    assert_eq!(c.pods().get("vip").await.unwrap().spec.unwrap().priority, Some(1000));

    // The victim is deleted gracefully (it is bound, so it stays Terminating until its kubelet confirms).
    let terminating = |p: Option<&Pod>| p.is_none_or(|p| p.metadata.deletion_timestamp.is_some());
    bounded("the victim to be terminating", await_condition(c.pods(), "victim", terminating)).await.unwrap();
    let nominated = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()).and_then(|s| s.nominated_node_name.as_deref()) == Some("n1")
    };
    bounded("the preemptor to be nominated", await_condition(c.pods(), "vip", nominated)).await.unwrap();
    let preempted = c.event("victim", "Preempted").await;
    assert!(preempted.message.unwrap().contains("on node n1"));

    // Acting as the kubelet: the containers stopped, the pod goes.
    let _ = c.pods().delete("victim", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
    assert_eq!(c.bound("vip").await, "n1");
    c.stop().await;
}

#[tokio::test]
async fn only_the_lease_holder_schedules_and_another_takes_over() {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = Client::new(server.router.clone(), "default");
    let mut config = SchedulerConfig::default();
    config.leader_election.lease_duration = Duration::from_secs(3);
    config.leader_election.renew_deadline = Duration::from_secs(2);
    config.leader_election.retry_period = Duration::from_millis(200);
    let start = |identity: &str| {
        let mut c = config.clone();
        c.leader_election.identity = Some(identity.into());
        let token = CancellationToken::new();
        (token.clone(), tokio::spawn(skiff_scheduler::run(c, client.clone(), token)))
    };
    let (stop_a, task_a) = start("a");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let held = |p: Option<&Lease>| p.and_then(|l| l.spec.as_ref()).and_then(|s| s.holder_identity.as_deref()) == Some("a");
    bounded("a to hold the lease", await_condition(leases.clone(), "kube-scheduler", held)).await.unwrap();
    let (stop_b, task_b) = start("b");

    let nodes: Api<Node> = Api::all(client.clone());
    nodes.create(&PostParams::default(), &NodeBuilder::new("n1").build()).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut p = PodBuilder::new("one").build();
    p.metadata.uid = None;
    pods.create(&PostParams::default(), &p).await.unwrap();
    let bound = |p: Option<&Pod>| p.and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.as_ref()).is_some();
    bounded("pod one to be bound", await_condition(pods.clone(), "one", bound)).await.unwrap();
    let lease = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("a"), "b stands by while a holds the lease");
    assert_eq!(lease.lease_duration_seconds, Some(3));

    // a stops and releases the lease; b takes over and schedules.
    stop_a.cancel();
    bounded("a to stop", task_a).await.unwrap().unwrap();
    let held_b = |p: Option<&Lease>| p.and_then(|l| l.spec.as_ref()).and_then(|s| s.holder_identity.as_deref()) == Some("b");
    bounded("b to hold the lease", await_condition(leases.clone(), "kube-scheduler", held_b)).await.unwrap();
    let mut p = PodBuilder::new("two").build();
    p.metadata.uid = None;
    pods.create(&PostParams::default(), &p).await.unwrap();
    bounded("pod two to be bound", await_condition(pods.clone(), "two", bound)).await.unwrap();
    let transitions = leases.get("kube-scheduler").await.unwrap().spec.unwrap().lease_transitions;
    assert_eq!(transitions, Some(1));
    stop_b.cancel();
    bounded("b to stop", task_b).await.unwrap().unwrap();
    server.shutdown.cancel();
}

#[tokio::test]
async fn a_binding_for_an_older_pod_with_the_same_name_is_refused() {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = Client::new(server.router.clone(), "default");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut p = PodBuilder::new("p").build();
    p.metadata.uid = None;
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    let binding = |uid: &str| serde_json::json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "p", "uid": uid}, "target": {"kind": "Node", "name": "n1"}});
    let stale: Result<serde_json::Value, kube::Error> =
        pods.create_subresource("binding", "p", &PostParams::default(), &binding("not-the-uid")).await;
    match stale {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains("Precondition failed: UID in precondition: not-the-uid"), "{}", s.message);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let uid = created.metadata.uid.unwrap();
    let _: serde_json::Value = pods.create_subresource("binding", "p", &PostParams::default(), &binding(&uid)).await.unwrap();
    assert_eq!(pods.get("p").await.unwrap().spec.unwrap().node_name.as_deref(), Some("n1"));
    server.shutdown.cancel();
}

#[tokio::test]
async fn an_expired_lease_of_a_dead_holder_is_taken_over() {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = Client::new(server.router.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let ghost: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 1, "leaseTransitions": 4,
                 "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}}))
    .unwrap();
    leases.create(&PostParams::default(), &ghost).await.unwrap();
    let mut config = SchedulerConfig::default();
    config.leader_election.identity = Some("a".into());
    config.leader_election.retry_period = Duration::from_millis(200);
    let stop = CancellationToken::new();
    let task = tokio::spawn(skiff_scheduler::run(config, client.clone(), stop.clone()));
    let held = |p: Option<&Lease>| p.and_then(|l| l.spec.as_ref()).and_then(|s| s.holder_identity.as_deref()) == Some("a");
    let lease = bounded("a to take the lease over", await_condition(leases.clone(), "kube-scheduler", held)).await.unwrap().unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!((spec.lease_transitions, spec.lease_duration_seconds), (Some(5), Some(15)));
    stop.cancel();
    bounded("the scheduler to stop", task).await.unwrap().unwrap();
    let released = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_eq!(released.holder_identity, None, "the lease is released on shutdown");
    server.shutdown.cancel();
}

#[tokio::test]
async fn a_pod_waits_for_its_claim_and_is_placed_once_the_claim_is_bound() {
    let c = Cluster::start(no_election(SchedulerConfig::default())).await;
    c.node(NodeBuilder::new("n1").build()).await;
    c.pod(PodBuilder::new("db").pvc("data").build()).await;
    let msg = c.unschedulable("db").await;
    assert_eq!(
        msg,
        "0/1 nodes are available: persistentvolumeclaim \"data\" not found. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    );
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::default_namespaced(c.client.clone());
    let pvc = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-data"}}))
    .unwrap();
    claims.create(&PostParams::default(), &pvc).await.expect("claim created");
    // VolumeBinding also wants the claim's volume to exist (upstream: "pvc(s) bound to non-existent pv(s)").
    let pv = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/tmp/pv-data"},
                 "claimRef": {"namespace": "default", "name": "data"}}}))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(c.client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .expect("volume created");
    assert_eq!(c.bound("db").await, "n1");
    c.stop().await;
}
