//! The disruption controller (upstream `pkg/controller/disruption`): keeps every PodDisruptionBudget's
//! status — expected pods, current and desired healthy pods, how many disruptions are allowed now, the
//! `DisruptionAllowed` condition — so that the eviction API and `kubectl drain` can honour it. Pods an
//! eviction just disrupted (`status.disruptedPods`) count as unhealthy for two minutes or until they are gone.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::{scaled_value, selector_matches};

/// How long a pod an eviction disrupted is not counted healthy while it is not yet deleted (upstream
/// `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to update the status of PodDisruptionBudget {namespace}/{name}: {source}")]
    Status { namespace: String, name: String, source: kube::Error },
}

/// The numbers of one budget's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub expected_pods: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub disruptions_allowed: i32,
    /// Why the budget could not be computed (then nothing may be disrupted).
    pub failure: Option<String>,
}

/// The replica counts of the controllers owning pods, by owner UID (the scale the budget's percentages and
/// maxUnavailable are taken of).
pub type Scales = HashMap<String, i32>;

/// Computes a budget from its matching pods (upstream `getExpectedPodCount` and `countHealthyPods`).
/// `scales` maps each controlling owner's UID to its desired replicas; a pod whose controller is missing
/// from it makes percentages and maxUnavailable impossible to compute.
pub fn compute(pdb: &PodDisruptionBudget, pods: &[&Pod], scales: &Scales, now: jiff::Timestamp) -> Budget {
    let spec = pdb.spec.clone().unwrap_or_default();
    let disrupted = pdb.status.as_ref().and_then(|s| s.disrupted_pods.clone()).unwrap_or_default();
    let current_healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            !disrupted.get(name).is_some_and(|t| jiff::Timestamp::from_second(t.0.as_second()).map(|t| t + DELETION_TIMEOUT).is_ok_and(|until| until > now))
        })
        .filter(|p| is_ready(p))
        .count() as i32;
    let by_controllers = || -> Result<i32, String> {
        let mut seen = BTreeMap::new();
        for pod in pods {
            let owner = pod.metadata.owner_references.as_ref().and_then(|o| o.iter().find(|o| o.controller == Some(true)));
            let Some(owner) = owner else {
                return Err(format!("found no controllers for pod {:?}", pod.metadata.name.as_deref().unwrap_or_default()));
            };
            let scale = scales.get(&owner.uid).ok_or_else(|| format!("found no controllers for pod {:?}", pod.metadata.name.as_deref().unwrap_or_default()))?;
            seen.insert(owner.uid.clone(), *scale);
        }
        Ok(seen.values().sum())
    };
    let (expected, desired) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => match by_controllers() {
            Ok(expected) => (expected, (expected - scaled_value(Some(max), expected, true, "0")).max(0)),
            Err(e) => return failed(current_healthy, e),
        },
        (None, Some(IntOrString::Int(min))) => (pods.len() as i32, *min),
        (None, Some(min @ IntOrString::String(_))) => match by_controllers() {
            Ok(expected) => (expected, scaled_value(Some(min), expected, true, "0")),
            Err(e) => return failed(current_healthy, e),
        },
        (None, None) => (pods.len() as i32, 0),
    };
    let allowed = if expected <= 0 { 0 } else { (current_healthy - desired).max(0) };
    Budget { expected_pods: expected, current_healthy, desired_healthy: desired, disruptions_allowed: allowed, failure: None }
}

fn failed(current_healthy: i32, reason: String) -> Budget {
    Budget { expected_pods: 0, current_healthy, desired_healthy: 0, disruptions_allowed: 0, failure: Some(reason) }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Runs until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let (pdbs, pdb_writer) = reflector::store::<PodDisruptionBudget>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pdb_events = reflector(pdb_writer, watcher(Api::<PodDisruptionBudget>::all(ctx.client.clone()), watcher::Config::default()).default_backoff()).touched_objects().map(|_| ());
    let pod_events = reflector(pod_writer, watcher(Api::<Pod>::all(ctx.client.clone()), watcher::Config::default()).default_backoff()).touched_objects().map(|_| ());
    let mut events = futures::stream::select(pdb_events, pod_events).boxed();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = resync.tick() => {}
            e = events.next() => if e.is_none() { return Ok(()) },
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let all_pods = pods.state();
        for pdb in pdbs.state() {
            let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            let matching: Vec<&Pod> = all_pods
                .iter()
                .map(|p| p.as_ref())
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()) && selector_matches(selector, p.metadata.labels.as_ref()))
                .collect();
            let scales = controller_scales(&ctx, &namespace, &matching).await;
            let budget = compute(&pdb, &matching, &scales, jiff::Timestamp::now());
            if let Err(e) = write_status(&ctx, &pdb, &matching, &budget).await {
                tracing::warn!(error = %e, "disruption controller");
            }
        }
    }
}

/// The desired replicas of the controllers owning `pods` (Deployments through their ReplicaSets).
async fn controller_scales(ctx: &Context, namespace: &str, pods: &[&Pod]) -> Scales {
    let mut scales = Scales::new();
    for pod in pods {
        let Some(owner) = pod.metadata.owner_references.as_ref().and_then(|o| o.iter().find(|o| o.controller == Some(true))) else { continue };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let scale = match owner.kind.as_str() {
            "ReplicaSet" => match Api::<ReplicaSet>::namespaced(ctx.client.clone(), namespace).get_opt(&owner.name).await {
                Ok(Some(rs)) => {
                    let deployment = rs.metadata.owner_references.as_ref().and_then(|o| o.iter().find(|o| o.controller == Some(true) && o.kind == "Deployment"));
                    match deployment {
                        Some(d) => Api::<Deployment>::namespaced(ctx.client.clone(), namespace).get_opt(&d.name).await.ok().flatten().and_then(|d| d.spec.and_then(|s| s.replicas)),
                        None => rs.spec.and_then(|s| s.replicas),
                    }
                }
                _ => None,
            },
            "StatefulSet" => Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace).get_opt(&owner.name).await.ok().flatten().and_then(|s| s.spec.and_then(|s| s.replicas)),
            "ReplicationController" => Api::<ReplicationController>::namespaced(ctx.client.clone(), namespace).get_opt(&owner.name).await.ok().flatten().and_then(|s| s.spec.and_then(|s| s.replicas)),
            _ => None,
        };
        if let Some(scale) = scale {
            scales.insert(owner.uid.clone(), scale);
        }
    }
    scales
}

/// Writes the status when it changed; expired or gone entries of `disruptedPods` are dropped.
async fn write_status(ctx: &Context, pdb: &PodDisruptionBudget, pods: &[&Pod], budget: &Budget) -> Result<(), Error> {
    let (namespace, name) = (pdb.metadata.namespace.clone().unwrap_or_default(), pdb.metadata.name.clone().unwrap_or_default());
    let now = jiff::Timestamp::now();
    let status = pdb.status.clone().unwrap_or_default();
    let live: std::collections::HashSet<&str> = pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
    let disrupted: BTreeMap<String, String> = status
        .disrupted_pods
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(pod, t)| live.contains(pod.as_str()) && jiff::Timestamp::from_second(t.0.as_second()).is_ok_and(|t| t + DELETION_TIMEOUT > now))
        .map(|(pod, t)| (pod, t.0.to_string()))
        .collect();
    let (cond_status, reason, message) = match &budget.failure {
        Some(why) => ("False", "SyncFailed", why.clone()),
        None if budget.disruptions_allowed > 0 => ("True", "SufficientPods", String::new()),
        None => ("False", "InsufficientPods", String::new()),
    };
    let old_condition = status.conditions.as_ref().and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let unchanged = status.observed_generation == pdb.metadata.generation
        && status.expected_pods == budget.expected_pods
        && status.current_healthy == budget.current_healthy
        && status.desired_healthy == budget.desired_healthy
        && status.disruptions_allowed == budget.disruptions_allowed
        && status.disrupted_pods.as_ref().map(|d| d.len()).unwrap_or(0) == disrupted.len()
        && old_condition.is_some_and(|c| c.status == cond_status && c.reason == reason && c.message == message);
    if unchanged {
        return Ok(());
    }
    let transition = match old_condition {
        Some(c) if c.status == cond_status => c.last_transition_time.0.to_string(),
        _ => now.to_string(),
    };
    let patch = json!({"status": {
        "observedGeneration": pdb.metadata.generation,
        "expectedPods": budget.expected_pods,
        "currentHealthy": budget.current_healthy,
        "desiredHealthy": budget.desired_healthy,
        "disruptionsAllowed": budget.disruptions_allowed,
        "disruptedPods": if disrupted.is_empty() { serde_json::Value::Null } else { json!(disrupted) },
        "conditions": [{"type": "DisruptionAllowed", "status": cond_status, "reason": reason, "message": message,
                        "lastTransitionTime": transition, "observedGeneration": pdb.metadata.generation}],
    }});
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Status { namespace: namespace.clone(), name: name.clone(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(min: Option<serde_json::Value>, max: Option<serde_json::Value>, disrupted: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b", "namespace": "d", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": min, "maxUnavailable": max},
            "status": {"disruptedPods": disrupted, "disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}}))
        .unwrap()
    }

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "a"},
                "ownerReferences": owner.map(|uid| vec![json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true})])},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        .unwrap()
    }

    #[test]
    fn min_available_as_a_number_counts_the_pods() {
        let pods = [pod("a", true, None), pod("b", true, None), pod("c", false, None)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let b = compute(&pdb(Some(json!(1)), None, json!({})), &refs, &Scales::new(), jiff::Timestamp::now());
        assert_eq!(b, Budget { expected_pods: 3, current_healthy: 2, desired_healthy: 1, disruptions_allowed: 1, failure: None });
    }

    #[test]
    fn max_unavailable_takes_the_controllers_scale() {
        let pods = [pod("a", true, Some("u1")), pod("b", true, Some("u1"))];
        let refs: Vec<&Pod> = pods.iter().collect();
        let scales = Scales::from([("u1".to_string(), 4)]);
        let b = compute(&pdb(None, Some(json!("25%")), json!({})), &refs, &scales, jiff::Timestamp::now());
        assert_eq!((b.expected_pods, b.desired_healthy, b.current_healthy, b.disruptions_allowed), (4, 3, 2, 0));
        let b = compute(&pdb(Some(json!("50%")), None, json!({})), &refs, &scales, jiff::Timestamp::now());
        assert_eq!((b.expected_pods, b.desired_healthy, b.disruptions_allowed), (4, 2, 0));
        // A pod without a controller makes a percentage impossible: nothing may be disrupted.
        let orphan = [pod("a", true, None)];
        let refs: Vec<&Pod> = orphan.iter().collect();
        let b = compute(&pdb(None, Some(json!(1)), json!({})), &refs, &scales, jiff::Timestamp::now());
        assert_eq!(b.disruptions_allowed, 0);
        assert!(b.failure.unwrap().contains("found no controllers"));
    }

    #[test]
    fn a_recently_disrupted_pod_is_not_healthy() {
        let now = jiff::Timestamp::now();
        let pods = [pod("a", true, None), pod("b", true, None)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let recent = pdb(Some(json!(1)), None, json!({"a": now.to_string()}));
        assert_eq!(compute(&recent, &refs, &Scales::new(), now).current_healthy, 1);
        let old = pdb(Some(json!(1)), None, json!({"a": (now - Duration::from_secs(600)).to_string()}));
        assert_eq!(compute(&old, &refs, &Scales::new(), now).current_healthy, 2);
    }
}
