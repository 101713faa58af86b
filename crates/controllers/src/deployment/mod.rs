//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets named
//! `<deployment>-<template hash>` (RollingUpdate with maxSurge/maxUnavailable, or Recreate), keeps the
//! revision annotations `kubectl rollout` reads, cleans up old revisions, reports progress against
//! `progressDeadlineSeconds`, and (Skiff's opt-in `skiff.io/auto-rollback: "true"`) rolls back a rollout
//! that exceeded its deadline. Upstream's `pkg/controller/deployment`.

mod rollback;
mod rolling;
mod sync;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::{self as cu, Backoff, Claim, object_reference, record_event};
use crate::pod_util::controller_of;

/// What can go wrong in one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Sync(String),
}

pub(crate) struct State {
    pub ctx: Context,
    pub sets: Store<ReplicaSet>,
    pub recorder: Recorder,
    backoff: Backoff,
}

impl State {
    pub fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    pub fn deploy_api(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    pub async fn event(&self, d: &Deployment, type_: EventType, reason: &str, note: String) {
        record_event(&self.recorder, &object_reference(d), type_, reason, note).await;
    }

    /// An event about the Deployment that also concerns one of its ReplicaSets.
    pub async fn event_about(&self, d: &Deployment, rs: &ReplicaSet, type_: EventType, reason: &str, note: String) {
        let related = Some(object_reference(rs));
        crate::controller_utils::record_event_related(&self.recorder, &object_reference(d), related, type_, reason, note).await;
    }
}

/// Runs the Deployment controller until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (sets, writer) = reflector::store::<ReplicaSet>();
    let recorder = ctx.recorder.clone();
    let state = Arc::new(State { ctx, sets, recorder, backoff: Backoff::default() });
    let controller = Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default());
    let deployments = controller.store();
    let rs_changes = cu::reflected_changes(Api::<ReplicaSet>::all(client), writer, |_| {});
    controller
        .watches_stream(rs_changes, move |rs: ReplicaSet| deployments_for_rs(&deployments, &rs))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, state)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "deployment sync");
            }
        })
        .await;
    Ok(())
}

fn deployments_for_rs(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.metadata.namespace.as_deref().unwrap_or("");
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(ns)];
        }
        return Vec::new();
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns))
        .filter(|d| cu::selector_matches(d.spec.as_ref().map(|s| &s.selector), rs.metadata.labels.as_ref()))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn error_policy(d: Arc<Deployment>, err: &Error, state: Arc<State>) -> Action {
    let key = cu::key_of(&d.metadata);
    tracing::info!(deployment = %key, error = %err, "sync failed; will retry");
    Action::requeue(state.backoff.next(&key))
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action, Error> {
    let key = cu::key_of(&d.metadata);
    let mut d = (*d).clone();
    let action = sync_deployment(&state, &mut d).await?;
    state.backoff.reset(&key);
    Ok(action)
}

/// Upstream's `syncDeployment`.
async fn sync_deployment(state: &State, d: &mut Deployment) -> Result<Action, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    if cu::selector_is_empty(Some(&spec.selector)) {
        state
            .event(d, EventType::Warning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.".into())
            .await;
        let generation = d.metadata.generation.unwrap_or(0);
        if d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0) < generation {
            let mut status = d.status.clone().unwrap_or_default();
            status.observed_generation = Some(generation);
            write_status(state, d, status).await?;
        }
        return Ok(Action::await_change());
    }
    let mut sets = claim_replica_sets(state, d).await?;
    if d.metadata.deletion_timestamp.is_some() {
        sync::sync_status_only(state, d, &mut sets).await?;
        return Ok(Action::await_change());
    }
    check_paused_conditions(state, d).await?;
    if spec.paused == Some(true) || sync::is_scaling_event(state, d, &mut sets).await? {
        sync::sync(state, d, &mut sets).await?;
    } else if util::is_rolling(d) {
        rolling::rollout_rolling(state, d, &mut sets).await?;
    } else {
        rolling::rollout_recreate(state, d, &mut sets).await?;
    }
    if rollback::auto_rollback(state, d, &sets).await? {
        return Ok(Action::await_change());
    }
    Ok(requeue_stuck(d, jiff::Timestamp::now()))
}

/// Upstream's `requeueStuckDeployment`: look again when the progress deadline would pass.
fn requeue_stuck(d: &Deployment, now: jiff::Timestamp) -> Action {
    let status = d.status.clone().unwrap_or_default();
    let Some(cond) = util::get_condition(&status, "Progressing") else { return Action::await_change() };
    if !util::has_progress_deadline(d) || util::complete(d, &status) || util::timed_out(d, &status, now) {
        return Action::await_change();
    }
    if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
        return Action::await_change();
    }
    let deadline = i64::from(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600));
    let from = cond.last_update_time.as_ref().map_or(now.as_second(), |t| t.0.as_second());
    let after = (from + deadline - now.as_second()).max(0) as u64;
    Action::requeue(Duration::from_secs(after + 1))
}

/// The ReplicaSets this Deployment owns after adoption and release (upstream's `getReplicaSetsForDeployment`).
async fn claim_replica_sets(state: &State, d: &Deployment) -> Result<Vec<ReplicaSet>, Error> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let selector = d.spec.as_ref().map(|s| &s.selector);
    let deleting = d.metadata.deletion_timestamp.is_some();
    let api = state.rs_api(&ns);
    let mut out = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for rs in state.sets.state() {
        if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let matches = cu::selector_matches(selector, rs.metadata.labels.as_ref());
        match cu::claim(&rs.metadata, &uid, matches, deleting) {
            Claim::Keep => out.push((*rs).clone()),
            Claim::Ignore => {}
            Claim::Release => {
                cu::release(&api, &rs.metadata, &uid).await?;
            }
            Claim::Adopt => {
                if can_adopt.is_none() {
                    let fresh = state.deploy_api(&ns).get_opt(d.metadata.name.as_deref().unwrap_or("")).await?;
                    can_adopt = Some(fresh.is_some_and(|f| f.metadata.uid == d.metadata.uid && f.metadata.deletion_timestamp.is_none()));
                }
                if can_adopt == Some(true) {
                    let owner = crate::pod_util::controller_ref(d).expect("a stored deployment has a name and uid");
                    match cu::adopt(&api, &rs.metadata, owner).await {
                        Ok(rs) => out.push(rs),
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Upstream's `checkPausedConditions`: Progressing Unknown while paused, and on resume, so that the time
/// spent paused never counts against the progress deadline.
async fn check_paused_conditions(state: &State, d: &mut Deployment) -> Result<(), Error> {
    if !util::has_progress_deadline(d) {
        return Ok(());
    }
    let mut status = d.status.clone().unwrap_or_default();
    let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    let reason = util::get_condition(&status, "Progressing").and_then(|c| c.reason.clone());
    let now = jiff::Timestamp::now();
    let update = if paused && reason.as_deref() != Some(util::PAUSED) {
        util::set_condition(&mut status, util::new_condition("Progressing", "Unknown", util::PAUSED, "Deployment is paused".into(), now));
        true
    } else if !paused && reason.as_deref() == Some(util::PAUSED) {
        util::set_condition(&mut status, util::new_condition("Progressing", "Unknown", util::RESUMED, "Deployment is resumed".into(), now));
        true
    } else {
        false
    };
    if update {
        write_status(state, d, status).await?;
    }
    Ok(())
}

/// Writes the Deployment's status when it changed, and keeps `d` in step.
pub(crate) async fn write_status(state: &State, d: &mut Deployment, status: DeploymentStatus) -> Result<(), Error> {
    if d.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut body = serde_json::to_value(&status).map_err(|e| Error::Sync(e.to_string()))?;
    // A merge patch keeps fields it does not name: name the ones that went away.
    for f in ["conditions", "collisionCount"] {
        if body.get(f).is_none() {
            body[f] = serde_json::Value::Null;
        }
    }
    let patch = serde_json::json!({ "status": body });
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let updated = state
        .deploy_api(&ns)
        .patch_status(d.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    d.status = updated.status;
    d.metadata.resource_version = updated.metadata.resource_version;
    Ok(())
}
