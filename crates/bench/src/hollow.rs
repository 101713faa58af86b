//! Hollow nodes for scale work, like KWOK: Node objects with allocatable and zone labels, their Leases in
//! `kube-node-lease` renewed on a timer, and a fake runtime that marks pods bound to them Running. A
//! benchmark tool only: nothing runs in these "nodes".

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The label every hollow node carries.
pub const HOLLOW_LABEL: &str = "skiff.io/hollow";

/// What each hollow node offers.
#[derive(Clone, Debug)]
pub struct HollowNodeSpec {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// Nodes are spread round-robin over this many zones (`zone-0`...).
    pub zones: usize,
}

impl Default for HollowNodeSpec {
    fn default() -> Self {
        // scheduler_perf's node template: 4 CPUs, 32Gi, 110 pods.
        HollowNodeSpec { cpu: "4".into(), memory: "32Gi".into(), pods: "110".into(), zones: 3 }
    }
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn node(name: &str, zone: usize, spec: &HollowNodeSpec) -> anyhow::Result<Node> {
    let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let resources = json!({"cpu": spec.cpu, "memory": spec.memory, "pods": spec.pods});
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": format!("zone-{zone}"), HOLLOW_LABEL: "true"}},
        "spec": {},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "hollow node", "lastHeartbeatTime": ts, "lastTransitionTime": ts}],
            "addresses": [{"type": "InternalIP", "address": "10.255.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.33.0-hollow", "containerRuntimeVersion": "hollow://0", "osImage": "hollow",
                         "kernelVersion": "", "operatingSystem": "linux", "architecture": "amd64", "machineID": "",
                         "systemUUID": "", "bootID": "", "kubeProxyVersion": ""}
        }
    }))?)
}

fn lease(name: &str) -> anyhow::Result<Lease> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()}
    }))?)
}

/// Registers `count` hollow nodes named `<prefix>-<i>` with their leases; returns their names.
pub async fn register(client: &Client, prefix: &str, count: usize, spec: &HollowNodeSpec) -> anyhow::Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (nodes, leases) = (nodes.clone(), leases.clone());
            async move {
                let n = node(name, i % spec.zones.max(1), spec)?;
                nodes.create(&PostParams::default(), &n).await.with_context(|| format!("failed to create node {name}"))?;
                leases.create(&PostParams::default(), &lease(name)?).await.with_context(|| format!("failed to create lease {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(names)
}

/// Renews every node's lease each `interval`, as the kubelet does, until `shutdown`.
pub async fn heartbeat(client: Client, names: Arc<Vec<String>>, interval: Duration, shutdown: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let patch = Arc::new(json!({"spec": {"renewTime": now()}}));
        futures::stream::iter(names.iter().cloned())
            .map(|n| {
                let leases = leases.clone();
                let patch = patch.clone();
                async move {
                    if let Err(e) = leases.patch(&n, &PatchParams::default(), &Patch::Merge(&*patch)).await {
                        eprintln!("hollow: failed to renew lease {n}: {e}");
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    }
}

/// The fake runtime: every pod bound to a hollow node in `nodes` is marked Running (and Ready) once.
pub async fn run_fake_runtime(client: Client, nodes: Arc<HashSet<String>>, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut stream = watcher(pods, watcher::Config::default()).default_backoff().applied_objects().boxed();
    let mut started: HashSet<String> = HashSet::new();
    loop {
        let pod = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = stream.next() => match p {
                Some(Ok(p)) => p,
                Some(Err(_)) => continue,
                None => return,
            },
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if nodes.contains(&node) && pod.metadata.deletion_timestamp.is_some() {
            // Containers "stop" at once: finish the graceful deletion as a kubelet would.
            let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
            let name = pod.metadata.name.clone().unwrap_or_default();
            tokio::spawn(async move {
                let dp = kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                let _ = api.delete(&name, &dp).await;
            });
            continue;
        }
        if !nodes.contains(&node) || phase != "Pending" || pod.metadata.deletion_timestamp.is_some() || !started.insert(uid) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let containers: Vec<_> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": ts}}})).collect())
            .unwrap_or_default();
        let status = json!({"status": {
            "phase": "Running", "startTime": ts, "podIP": "10.255.0.2", "podIPs": [{"ip": "10.255.0.2"}], "hostIP": "10.255.0.1",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
                {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": ts},
                {"type": "Ready", "status": "True", "lastTransitionTime": ts}],
            "containerStatuses": containers}});
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status)).await {
                eprintln!("hollow: failed to mark {ns}/{name} Running: {e}");
            }
        });
    }
}
