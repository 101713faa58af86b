//! The pod garbage collector (upstream `pkg/controller/podgc`): removes terminated pods beyond a threshold,
//! pods bound to nodes that no longer exist, unscheduled pods being deleted, and terminating pods on nodes
//! taken out of service.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// The taint that lets terminating pods on a dead node go (upstream `TaintNodeOutOfService`).
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod gc api call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("pod gc could not fill its caches: {0}")]
    Cache(String),
}

/// Settings of the pod garbage collector.
#[derive(Clone, Debug)]
pub struct Config {
    /// Terminated pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`, upstream 12500;
    /// zero or less turns this part off).
    pub terminated_pod_threshold: i64,
    /// How often the collector looks (upstream: 20 s).
    pub period: Duration,
    /// How long a node must be missing before its pods go (upstream: 40 s).
    pub quarantine: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            terminated_pod_threshold: 12_500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

/// Runs the pod garbage collector with the default settings until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, Config::default(), shutdown).await
}

/// Runs the pod garbage collector until `shutdown` is cancelled.
pub async fn run_with(
    ctx: Context,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let pod_watch = reflector::reflector(
        pods_writer,
        watcher::watcher(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(|_| std::future::ready(()));
    let node_watch = reflector::reflector(
        nodes_writer,
        watcher::watcher(
            Api::<Node>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(|_| std::future::ready(()));
    let watches = futures::future::join(pod_watch, node_watch);
    tokio::pin!(watches);
    let ready = async {
        pods.wait_until_ready()
            .await
            .map_err(|e| Error::Cache(e.to_string()))?;
        nodes
            .wait_until_ready()
            .await
            .map_err(|e| Error::Cache(e.to_string()))
    };
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = &mut watches => return Err(Error::Cache("watches ended".into())),
        r = ready => r?,
    }
    let mut gc = PodGc {
        ctx,
        config,
        missing_since: HashMap::new(),
    };
    let mut tick = tokio::time::interval(gc.config.period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = &mut watches => return Err(Error::Cache("watches ended".into())),
            _ = tick.tick() => {
                if let Err(e) = gc.sweep(&pods, &nodes).await {
                    tracing::debug!(error = %e, "pod gc sweep");
                }
            }
        }
    }
}

struct PodGc {
    ctx: Context,
    config: Config,
    /// When each missing node was first seen missing (the quarantine).
    missing_since: HashMap<String, Instant>,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// The terminated pods to delete: the oldest beyond `threshold` (upstream `gcTerminated`).
pub fn terminated_to_delete(pods: &[&Pod], threshold: i64) -> Vec<String> {
    if threshold <= 0 {
        return Vec::new();
    }
    let mut terminated: Vec<&&Pod> = pods
        .iter()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = terminated.len() as i64 - threshold;
    if excess <= 0 {
        return Vec::new();
    }
    terminated.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.namespace(),
            p.name_any(),
        )
    });
    terminated
        .into_iter()
        .take(excess as usize)
        .map(|p| key(p))
        .collect()
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

impl PodGc {
    async fn sweep(&mut self, pods: &Store<Pod>, nodes: &Store<Node>) -> Result<(), Error> {
        let all = pods.state();
        let refs: Vec<&Pod> = all.iter().map(|p| &**p).collect();
        let node_list = nodes.state();
        let known: BTreeSet<String> = node_list.iter().map(|n| n.name_any()).collect();

        for k in terminated_to_delete(&refs, self.config.terminated_pod_threshold) {
            if let Some(pod) = refs.iter().find(|p| key(p) == k) {
                self.force_delete(pod).await?;
            }
        }

        // Pods bound to nodes that are gone (after the quarantine, and confirmed with the API).
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for pod in &refs {
            if let Some(n) = node_name(pod)
                && !known.contains(n)
            {
                missing.insert(n.to_string());
            }
        }
        self.missing_since.retain(|n, _| missing.contains(n));
        let now = Instant::now();
        let node_api: Api<Node> = Api::all(self.ctx.client.clone());
        for n in &missing {
            let since = *self.missing_since.entry(n.clone()).or_insert(now);
            if now.duration_since(since) < self.config.quarantine
                || node_api.get_opt(n).await?.is_some()
            {
                continue;
            }
            for pod in refs.iter().filter(|p| node_name(p) == Some(n.as_str())) {
                if !is_terminated(pod) {
                    self.mark_failed(pod, "PodGC: node no longer exists")
                        .await?;
                }
                self.force_delete(pod).await?;
            }
        }

        // Unscheduled pods being deleted: no kubelet will ever finish them.
        for pod in refs
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_none())
        {
            self.force_delete(pod).await?;
        }

        // Terminating pods on nodes that are out of service and not Ready.
        for node in node_list.iter() {
            let out = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == TAINT_OUT_OF_SERVICE));
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if !out || ready {
                continue;
            }
            let name = node.name_any();
            for pod in refs.iter().filter(|p| {
                p.metadata.deletion_timestamp.is_some() && node_name(p) == Some(name.as_str())
            }) {
                if !is_terminated(pod) {
                    self.mark_failed(pod, "PodGC: node is out of service")
                        .await?;
                }
                self.force_delete(pod).await?;
            }
        }
        Ok(())
    }

    /// Upstream marks a running pod Failed with a DisruptionTarget condition before deleting it.
    async fn mark_failed(&self, pod: &Pod, message: &str) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let patch = serde_json::json!({"status": {"phase": "Failed", "conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC", "message": message, "lastTransitionTime": now}
        ]}});
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn force_delete(&self, pod: &Pod) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &dp).await {
            Ok(_) => {
                tracing::info!(pod = %key(pod), "pod gc deleted pod");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, phase: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                creation_timestamp: Some(Time(jiff::Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_oldest_terminated_pods_beyond_the_threshold_go() {
        let pods = [
            pod("a", "Succeeded", 3),
            pod("b", "Failed", 1),
            pod("c", "Running", 0),
            pod("d", "Succeeded", 2),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(terminated_to_delete(&refs, 1), ["ns/b", "ns/d"]);
        assert_eq!(terminated_to_delete(&refs, 3), Vec::<String>::new());
        assert_eq!(
            terminated_to_delete(&refs, 0),
            Vec::<String>::new(),
            "zero turns it off"
        );
    }
}
