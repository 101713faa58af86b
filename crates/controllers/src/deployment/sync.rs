//! The Deployment's ReplicaSets: finding or creating the new one with its revision, scaling (also
//! proportionally), cleaning up old revisions, and the status (upstream's `sync.go` and `progress.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;

use super::util::{self, *};
use super::{Error, State, write_status};

fn created(rs: &ReplicaSet) -> Option<jiff::Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Upstream's `FindNewReplicaSet`: the oldest set whose template equals the Deployment's (ignoring the hash).
pub fn find_new(d: &Deployment, sets: &[ReplicaSet]) -> Option<usize> {
    let template = d.spec.as_ref()?.template.clone();
    let mut idx: Vec<usize> = (0..sets.len()).collect();
    idx.sort_by(|a, b| created(&sets[*a]).cmp(&created(&sets[*b])).then(sets[*a].metadata.name.cmp(&sets[*b].metadata.name)));
    idx.into_iter().find(|i| sets[*i].spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &template)))
}

pub fn old_indices(sets: &[ReplicaSet], new: Option<usize>) -> Vec<usize> {
    (0..sets.len()).filter(|i| Some(*i) != new).collect()
}

fn refs<'a>(sets: &'a [ReplicaSet], idx: &[usize]) -> Vec<&'a ReplicaSet> {
    idx.iter().map(|i| &sets[*i]).collect()
}

fn all_refs(sets: &[ReplicaSet]) -> Vec<&ReplicaSet> {
    sets.iter().collect()
}

/// Upstream's `NewRSNewReplicas`: how far the new set may grow now.
pub fn new_rs_new_replicas(d: &Deployment, sets: &[&ReplicaSet], new_replicas: i32) -> i32 {
    let want = replicas(d);
    if !is_rolling(d) {
        return want;
    }
    let current = replica_count(sets);
    let max_total = want + max_surge(d);
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(want - new_replicas);
    new_replicas + up
}

async fn patch_deployment_revision(state: &State, d: &mut Deployment, revision: &str) -> Result<(), Error> {
    if d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str) == Some(revision) {
        return Ok(());
    }
    let patch = serde_json::json!({"metadata": {"annotations": {REVISION: revision}}});
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let updated = state.deploy_api(&ns).patch(d.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    d.metadata.annotations = updated.metadata.annotations;
    d.metadata.resource_version = updated.metadata.resource_version;
    Ok(())
}

/// Upstream's `getAllReplicaSetsAndSyncRevision` / `getNewReplicaSet`: the index of the new set (created
/// when `create` and missing), with its revision and the Deployment's revision annotation brought up to date.
pub async fn new_rs_and_sync_revision(state: &State, d: &mut Deployment, sets: &mut Vec<ReplicaSet>, create: bool) -> Result<Option<usize>, Error> {
    let new = find_new(d, sets);
    let max_old = old_indices(sets, new).into_iter().map(|i| revision_of(&sets[i])).max().unwrap_or(0);
    let new_revision = max_old + 1;
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let api = state.rs_api(&ns);
    let now = jiff::Timestamp::now();
    let spec = d.spec.clone().unwrap_or_default();
    if let Some(i) = new {
        let mut rs = sets[i].clone();
        let min_ready_changed = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != spec.min_ready_seconds;
        let ann_changed = set_new_rs_annotations(d, &mut rs, new_revision, true);
        if ann_changed || min_ready_changed {
            if let Some(s) = rs.spec.as_mut() {
                s.min_ready_seconds = spec.min_ready_seconds;
            }
            sets[i] = api.replace(rs.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &rs).await?;
        }
        let rev = sets[i].metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned().unwrap_or_default();
        patch_deployment_revision(state, d, &rev).await?;
        let status = d.status.clone().unwrap_or_default();
        if has_progress_deadline(d) && get_condition(&status, "Progressing").is_none() {
            let mut status = status;
            let msg = format!("Found new replica set {:?}", sets[i].metadata.name.as_deref().unwrap_or(""));
            set_condition(&mut status, new_condition("Progressing", "True", FOUND_NEW_RS, msg, now));
            write_status(state, d, status).await?;
        }
        return Ok(Some(i));
    }
    if !create {
        return Ok(None);
    }

    let mut status = d.status.clone().unwrap_or_default();
    let hash = compute_hash(&spec.template, status.collision_count);
    let mut template = spec.template.clone();
    template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let name = format!("{}-{}", d.metadata.name.as_deref().unwrap_or(""), hash);
    let all = all_refs(sets);
    let new_replicas = new_rs_new_replicas(d, &all, 0);
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            owner_references: crate::pod_util::controller_ref(d).map(|r| vec![r]),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(new_replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    set_new_rs_annotations(d, &mut rs, new_revision, false);
    let created = match api.create(&PostParams::default(), &rs).await {
        Ok(c) => c,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Our cache may be behind: the set exists and is ours with our template.
            let existing = api.get(&name).await?;
            let ours = crate::pod_util::is_controlled_by(&existing.metadata, d.metadata.uid.as_deref().unwrap_or(""));
            let same = existing.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &spec.template));
            if ours && same {
                sets.push(existing);
                return Ok(Some(sets.len() - 1));
            }
            // A hash collision: bump collisionCount so the next hash differs.
            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
            write_status(state, d, status).await?;
            return Err(Error::Sync(format!("hash collision for replica set {name}")));
        }
        Err(e) => {
            let msg = format!("Failed to create new replica set {name:?}: {}", api_message(&e));
            if has_progress_deadline(d) {
                set_condition(&mut status, new_condition("Progressing", "False", FAILED_RS_CREATE, msg.clone(), now));
                write_status(state, d, status).await?;
            }
            state.event(d, EventType::Warning, FAILED_RS_CREATE, msg).await;
            return Err(e.into());
        }
    };
    if new_replicas > 0 {
        let note = format!("Scaled up replica set {name} from 0 to {new_replicas}");
        state.event_about(d, &created, EventType::Normal, "ScalingReplicaSet", note).await;
    }
    sets.push(created);
    patch_deployment_revision(state, d, &new_revision.to_string()).await?;
    if has_progress_deadline(d) {
        let mut status = d.status.clone().unwrap_or_default();
        set_condition(&mut status, new_condition("Progressing", "True", NEW_RS_CREATED, format!("Created new replica set {name:?}"), now));
        write_status(state, d, status).await?;
    }
    Ok(Some(sets.len() - 1))
}

pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Upstream's `scaleReplicaSetAndRecordEvent`: true when the size changed.
pub async fn scale_and_record(state: &State, d: &Deployment, sets: &mut [ReplicaSet], i: usize, new_scale: i32) -> Result<bool, Error> {
    let current = rs_replicas(&sets[i]);
    if current == new_scale {
        return Ok(false);
    }
    let op = if current < new_scale { "up" } else { "down" };
    scale_rs(state, d, sets, i, new_scale, op).await
}

/// Upstream's `scaleReplicaSet`: writes the size and the replica annotations (pinned to the cached
/// resourceVersion, so a stale cache fails with a conflict instead of scaling twice).
pub async fn scale_rs(state: &State, d: &Deployment, sets: &mut [ReplicaSet], i: usize, new_scale: i32, op: &str) -> Result<bool, Error> {
    let rs = &sets[i];
    let old = rs_replicas(rs);
    let size_changes = old != new_scale;
    let (desired, max) = (replicas(d), replicas(d) + max_surge(d));
    if !size_changes && !replicas_annotations_need_update(rs, desired, max) {
        return Ok(false);
    }
    let mut rs = rs.clone();
    if let Some(s) = rs.spec.as_mut() {
        s.replicas = Some(new_scale);
    }
    set_replicas_annotations(&mut rs, desired, max);
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    sets[i] = state.rs_api(&ns).replace(&name, &PostParams::default(), &rs).await?;
    if size_changes {
        let note = format!("Scaled {op} replica set {name} from {old} to {new_scale}");
        state.event_about(d, &sets[i], EventType::Normal, "ScalingReplicaSet", note).await;
    }
    Ok(size_changes)
}

fn active(rs: &ReplicaSet) -> bool {
    rs_replicas(rs) > 0
}

/// Upstream's `isScalingEvent`: an active set's desired-replicas annotation differs from the Deployment.
pub async fn is_scaling_event(state: &State, d: &mut Deployment, sets: &mut Vec<ReplicaSet>) -> Result<bool, Error> {
    new_rs_and_sync_revision(state, d, sets, false).await?;
    let want = replicas(d);
    Ok(sets.iter().filter(|r| active(r)).any(|r| desired_annotation(r).is_some_and(|v| v != want)))
}

/// Upstream's `sync`: scale (paused Deployments and scaling events), clean up when paused, status.
pub async fn sync(state: &State, d: &mut Deployment, sets: &mut Vec<ReplicaSet>) -> Result<(), Error> {
    let new = new_rs_and_sync_revision(state, d, sets, false).await?;
    scale(state, d, sets, new).await?;
    if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
        cleanup(state, d, sets, new).await?;
    }
    let status = calculate_status(d, sets, new);
    write_status(state, d, status).await
}

pub async fn sync_status_only(state: &State, d: &mut Deployment, sets: &mut Vec<ReplicaSet>) -> Result<(), Error> {
    let new = new_rs_and_sync_revision(state, d, sets, false).await?;
    let status = calculate_status(d, sets, new);
    write_status(state, d, status).await
}

fn saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let want = replicas(d);
    rs_replicas(rs) == want && desired_annotation(rs) == Some(want) && rs_status(rs).2 == want
}

/// Upstream's `scale`: one active set takes the whole count; a saturated new set empties the old ones;
/// otherwise replicas are added or removed proportionally across the active sets.
pub async fn scale(state: &State, d: &Deployment, sets: &mut [ReplicaSet], new: Option<usize>) -> Result<(), Error> {
    let want = replicas(d);
    // FindActiveOrLatest.
    if !sets.is_empty() {
        let actives: Vec<usize> = (0..sets.len()).filter(|i| active(&sets[*i])).collect();
        let pick = match actives.len() {
            0 => Some(new.unwrap_or_else(|| {
                (0..sets.len()).max_by(|a, b| created(&sets[*a]).cmp(&created(&sets[*b]))).expect("non-empty")
            })),
            1 => Some(actives[0]),
            _ => None,
        };
        if let Some(i) = pick {
            if rs_replicas(&sets[i]) != want {
                scale_and_record(state, d, sets, i, want).await?;
            }
            return Ok(());
        }
    }
    if let Some(n) = new
        && saturated(d, &sets[n])
    {
        for i in old_indices(sets, new) {
            if active(&sets[i]) {
                scale_and_record(state, d, sets, i, 0).await?;
            }
        }
        return Ok(());
    }
    if !is_rolling(d) {
        return Ok(());
    }
    let mut actives: Vec<usize> = (0..sets.len()).filter(|i| active(&sets[*i])).collect();
    let total = replica_count(&refs(sets, &actives));
    let allowed = if want > 0 { want + max_surge(d) } else { 0 };
    let to_add = allowed - total;
    let op = if to_add > 0 { "up" } else { "down" };
    if to_add > 0 {
        // Larger first; newer first among equals.
        actives.sort_by(|a, b| rs_replicas(&sets[*b]).cmp(&rs_replicas(&sets[*a])).then(created(&sets[*b]).cmp(&created(&sets[*a]))));
    } else if to_add < 0 {
        actives.sort_by(|a, b| rs_replicas(&sets[*b]).cmp(&rs_replicas(&sets[*a])).then(created(&sets[*a]).cmp(&created(&sets[*b]))));
    }
    let mut added = 0;
    let mut sizes = Vec::new();
    for &i in &actives {
        let size = rs_replicas(&sets[i]);
        if to_add != 0 {
            let p = proportion(&sets[i], d, to_add, added);
            sizes.push(size + p);
            added += p;
        } else {
            sizes.push(size);
        }
    }
    for (k, &i) in actives.iter().enumerate() {
        if k == 0 && to_add != 0 {
            sizes[0] = (sizes[0] + to_add - added).max(0);
        }
        scale_rs(state, d, sets, i, sizes[k], op).await?;
    }
    Ok(())
}

/// Upstream's `GetProportion` / `getReplicaSetFraction`.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    let size = rs_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -size
    } else {
        let deployment_replicas = replicas(d) + max_surge(d);
        let annotated = max_replicas_annotation(rs).unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            0
        } else {
            (f64::from(size) * f64::from(deployment_replicas) / f64::from(annotated)).round() as i32 - size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

/// Upstream's `cleanupDeployment`: deletes the oldest empty old sets beyond `revisionHistoryLimit`.
pub async fn cleanup(state: &State, d: &Deployment, sets: &[ReplicaSet], new: Option<usize>) -> Result<(), Error> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Ok(()) };
    let mut cleanable: Vec<&ReplicaSet> =
        old_indices(sets, new).into_iter().map(|i| &sets[i]).filter(|r| r.metadata.deletion_timestamp.is_none()).collect();
    let diff = cleanable.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Ok(());
    }
    cleanable.sort_by(|a, b| revision_of(a).cmp(&revision_of(b)).then(created(a).cmp(&created(b))));
    for rs in cleanable.into_iter().take(diff as usize) {
        let s = rs.status.clone().unwrap_or_default();
        if s.replicas != 0 || rs_replicas(rs) != 0 || rs.metadata.generation.unwrap_or(0) > s.observed_generation.unwrap_or(0) {
            continue;
        }
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        match state.rs_api(&ns).delete(rs.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Upstream's `calculateStatus`.
pub fn calculate_status(d: &Deployment, sets: &[ReplicaSet], new: Option<usize>) -> DeploymentStatus {
    let all = all_refs(sets);
    let available = available_count(&all);
    let total = replica_count(&all);
    let unavailable = (total - available).max(0);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual_count(&all)),
        updated_replicas: Some(new.map_or(0, |i| rs_status(&sets[i]).0)),
        ready_replicas: Some(ready_count(&all)),
        available_replicas: Some(available),
        unavailable_replicas: Some(unavailable),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    let now = jiff::Timestamp::now();
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(&mut status, new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.".into(), now));
    } else {
        set_condition(
            &mut status,
            new_condition("Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.".into(), now),
        );
    }
    status
}

/// Upstream's `syncRolloutStatus`: status plus the Progressing condition and ReplicaFailure.
pub async fn sync_rollout_status(state: &State, d: &mut Deployment, sets: &[ReplicaSet], new: Option<usize>) -> Result<(), Error> {
    let mut status = calculate_status(d, sets, new);
    let now = jiff::Timestamp::now();
    if !has_progress_deadline(d) {
        remove_condition(&mut status, "Progressing");
    }
    let old_status = d.status.clone().unwrap_or_default();
    let current = get_condition(&old_status, "Progressing").cloned();
    let is_complete = status.replicas == status.updated_replicas
        && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    let new_name = new.and_then(|i| sets[i].metadata.name.clone());
    let what = |suffix: &str| match &new_name {
        Some(n) => format!("ReplicaSet {n:?} {suffix}"),
        None => format!("Deployment {:?} {suffix}", d.metadata.name.as_deref().unwrap_or("")),
    };
    if has_progress_deadline(d) && !is_complete {
        if util::complete(d, &status) {
            set_condition(&mut status, new_condition("Progressing", "True", NEW_RS_AVAILABLE, what("has successfully progressed."), now));
        } else if util::progressing(d, &status) {
            let mut c = new_condition("Progressing", "True", RS_UPDATED, what("is progressing."), now);
            if let Some(cur) = &current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut status, "Progressing");
            }
            set_condition(&mut status, c);
        } else if util::timed_out(d, &status, now) {
            set_condition(&mut status, new_condition("Progressing", "False", TIMED_OUT, what("has timed out progressing."), now));
        }
    }
    // The first ReplicaFailure condition of the sets (new set first) moves up to the Deployment.
    let mut order: Vec<usize> = new.into_iter().collect();
    order.extend(old_indices(sets, new));
    let failure = order.iter().find_map(|i| {
        sets[*i].status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "ReplicaFailure" && c.status == "True").cloned()
    });
    match failure {
        Some(f) => set_condition(
            &mut status,
            new_condition("ReplicaFailure", &f.status, f.reason.as_deref().unwrap_or(""), f.message.clone().unwrap_or_default(), now),
        ),
        None => remove_condition(&mut status, "ReplicaFailure"),
    }
    write_status(state, d, status).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetStatus};

    fn deploy(replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta { name: Some("d".into()), generation: Some(1), ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(replicas), ..Default::default() }),
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32, max_annotation: Option<i32>) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: max_annotation.map(|m| [(MAX_REPLICAS.to_string(), m.to_string())].into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn new_set_grows_within_max_surge() {
        // 10 replicas, default 25% surge = 3.
        let d = deploy(10);
        let old = rs("old", 10, 10, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old], 0), 3);
        let new = rs("new", 3, 0, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 3), 3, "at the surge limit nothing more");
        let old = rs("old", 7, 7, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 3), 6);
    }

    #[test]
    fn proportions_follow_the_max_replicas_annotation() {
        // Scaling 10 -> 20 during a rollout (surge 25%: 3 -> 5): sets of 8 and 5, annotated for 13.
        let d = deploy(20);
        let a = rs("a", 8, 8, Some(13));
        let b = rs("b", 5, 0, Some(13));
        let to_add = 20 + 5 - 13;
        let pa = proportion(&a, &d, to_add, 0);
        let pb = proportion(&b, &d, to_add, pa);
        assert_eq!((pa, pb), (7, 5));
        assert!(pa + pb <= to_add);
    }

    #[test]
    fn status_counts_and_availability_condition() {
        let d = deploy(4);
        let sets = vec![rs("old", 2, 2, None), rs("new", 2, 1, None)];
        let s = calculate_status(&d, &sets, Some(1));
        assert_eq!((s.replicas, s.updated_replicas, s.available_replicas, s.unavailable_replicas), (Some(4), Some(2), Some(3), Some(1)));
        // 25% of 4 may be unavailable: 3 available is the minimum.
        assert_eq!(get_condition(&s, "Available").unwrap().reason.as_deref(), Some(MIN_AVAILABLE));
        let sets = vec![rs("old", 2, 1, None), rs("new", 2, 1, None)];
        let s = calculate_status(&d, &sets, Some(1));
        assert_eq!(get_condition(&s, "Available").unwrap().status, "False");
    }
}
