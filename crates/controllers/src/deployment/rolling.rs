//! The two rollout strategies (upstream's `rolling.go` and `recreate.go`).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::sync::{self, old_indices, scale_and_record};
use super::util::*;
use super::{Error, State};

/// Upstream's `rolloutRolling`: grow the new set within maxSurge, shrink old sets within maxUnavailable.
pub async fn rollout_rolling(state: &State, d: &mut Deployment, sets: &mut Vec<ReplicaSet>) -> Result<(), Error> {
    let new = sync::new_rs_and_sync_revision(state, d, sets, true).await?.expect("created when missing");
    if reconcile_new(state, d, sets, new).await? {
        return sync::sync_rollout_status(state, d, sets, Some(new)).await;
    }
    if reconcile_old(state, d, sets, new).await? {
        return sync::sync_rollout_status(state, d, sets, Some(new)).await;
    }
    if complete(d, &d.status.clone().unwrap_or_default()) {
        sync::cleanup(state, d, sets, Some(new)).await?;
    }
    sync::sync_rollout_status(state, d, sets, Some(new)).await
}

/// Upstream's `reconcileNewReplicaSet`.
async fn reconcile_new(state: &State, d: &Deployment, sets: &mut [ReplicaSet], new: usize) -> Result<bool, Error> {
    let want = replicas(d);
    let current = rs_replicas(&sets[new]);
    if current == want {
        return Ok(false);
    }
    if current > want {
        return scale_and_record(state, d, sets, new, want).await;
    }
    let all: Vec<&ReplicaSet> = sets.iter().collect();
    let target = sync::new_rs_new_replicas(d, &all, current);
    scale_and_record(state, d, sets, new, target).await
}

/// Upstream's `reconcileOldReplicaSets`.
async fn reconcile_old(state: &State, d: &Deployment, sets: &mut [ReplicaSet], new: usize) -> Result<bool, Error> {
    let olds = old_indices(sets, Some(new));
    let old_count: i32 = olds.iter().map(|i| rs_replicas(&sets[*i])).sum();
    if old_count == 0 {
        return Ok(false);
    }
    let all_count: i32 = sets.iter().map(rs_replicas).sum();
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(&sets[new]) - rs_status(&sets[new]).2;
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(false);
    }
    let mut olds: Vec<usize> = olds.into_iter().filter(|i| rs_replicas(&sets[*i]) > 0).collect();
    olds.sort_by(|a, b| {
        let ca = sets[*a].metadata.creation_timestamp.as_ref().map(|t| t.0);
        let cb = sets[*b].metadata.creation_timestamp.as_ref().map(|t| t.0);
        ca.cmp(&cb).then(sets[*a].metadata.name.cmp(&sets[*b].metadata.name))
    });
    // Unhealthy replicas first, so that they never block the rollout.
    let mut cleaned = 0;
    for &i in &olds {
        if cleaned >= max_scaled_down {
            break;
        }
        let (size, available) = (rs_replicas(&sets[i]), rs_status(&sets[i]).2);
        if size == 0 || size == available {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(size - available);
        scale_and_record(state, d, sets, i, size - n).await?;
        cleaned += n;
    }
    // Then healthy ones, as far as maxUnavailable allows.
    let available_all: i32 = sets.iter().map(|r| rs_status(r).2).sum();
    let mut scaled = 0;
    if available_all > min_available {
        let total = available_all - min_available;
        for &i in &olds {
            if scaled >= total {
                break;
            }
            let size = rs_replicas(&sets[i]);
            if size == 0 {
                continue;
            }
            let n = size.min(total - scaled);
            scale_and_record(state, d, sets, i, size - n).await?;
            scaled += n;
        }
    }
    Ok(cleaned + scaled > 0)
}

/// Upstream's `rolloutRecreate`: every old pod gone before the new set grows.
pub async fn rollout_recreate(state: &State, d: &mut Deployment, sets: &mut Vec<ReplicaSet>) -> Result<(), Error> {
    let mut new = sync::new_rs_and_sync_revision(state, d, sets, false).await?;
    let mut scaled_down = false;
    for i in old_indices(sets, new) {
        if rs_replicas(&sets[i]) > 0 {
            scaled_down |= scale_and_record(state, d, sets, i, 0).await?;
        }
    }
    if scaled_down || old_pods_running(state, d, sets, new).await? {
        return sync::sync_rollout_status(state, d, sets, new).await;
    }
    if new.is_none() {
        new = sync::new_rs_and_sync_revision(state, d, sets, true).await?;
    }
    let n = new.expect("created when missing");
    let want = replicas(d);
    if rs_replicas(&sets[n]) != want {
        scale_and_record(state, d, sets, n, want).await?;
    }
    if complete(d, &d.status.clone().unwrap_or_default()) {
        sync::cleanup(state, d, sets, new).await?;
    }
    sync::sync_rollout_status(state, d, sets, new).await
}

/// Upstream's `oldPodsRunning`: old sets still report pods, or pods of old sets are not finished.
async fn old_pods_running(state: &State, d: &Deployment, sets: &[ReplicaSet], new: Option<usize>) -> Result<bool, Error> {
    let olds = old_indices(sets, new);
    if olds.iter().any(|i| rs_status(&sets[*i]).0 > 0) {
        return Ok(true);
    }
    let old_uids: Vec<&str> = olds.iter().filter_map(|i| sets[*i].metadata.uid.as_deref()).collect();
    if old_uids.is_empty() {
        return Ok(false);
    }
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(state.ctx.client.clone(), &ns).list(&ListParams::default()).await?;
    Ok(pods.items.iter().any(|p| {
        let owner = crate::pod_util::controller_of(&p.metadata).map(|r| r.uid.as_str());
        let finished = matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        owner.is_some_and(|u| old_uids.contains(&u)) && !finished
    }))
}
