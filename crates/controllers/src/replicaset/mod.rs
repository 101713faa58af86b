//! The ReplicaSet controller: keeps `spec.replicas` pods matching the selector, adopting and releasing
//! pods by their controller reference, and reports their counts in status (upstream's `replica_set.go`).

pub mod ranking;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::{
    self as cu, BURST_REPLICAS, Backoff, Claim, Expectations, SLOW_START_INITIAL_BATCH_SIZE, object_reference,
    record_event, record_event_related,
};
use crate::pod_util::{controller_of, is_pod_active, is_pod_available, is_pod_ready};

/// What can go wrong in one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    ManageReplicas(String),
}

/// Which pods to look at for a set, without scanning every pod: pods by their controller's uid, and the
/// pods of each namespace that have no controller (candidates for adoption).
#[derive(Default)]
struct PodIndex {
    inner: std::sync::Mutex<PodIndexInner>,
}

#[derive(Default)]
struct PodIndexInner {
    /// pod (namespace, name) -> its controller's uid, or None for an orphan.
    owner_of: std::collections::HashMap<(String, String), Option<String>>,
    by_owner: std::collections::HashMap<String, std::collections::HashSet<(String, String)>>,
    orphans: std::collections::HashMap<String, std::collections::HashSet<(String, String)>>,
}

impl PodIndex {
    fn update(&self, pod: &Pod, deleted: bool) {
        let key = (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
        let mut ix = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = ix.owner_of.remove(&key) {
            let bucket = match &old {
                Some(uid) => ix.by_owner.get_mut(uid),
                None => ix.orphans.get_mut(&key.0),
            };
            if let Some(b) = bucket {
                b.remove(&key);
            }
        }
        if deleted {
            return;
        }
        let owner = controller_of(&pod.metadata).map(|r| r.uid.clone());
        match &owner {
            Some(uid) => ix.by_owner.entry(uid.clone()).or_default().insert(key.clone()),
            None => ix.orphans.entry(key.0.clone()).or_default().insert(key.clone()),
        };
        ix.owner_of.insert(key, owner);
    }

    /// The pods controlled by `uid` and the orphans of `namespace`.
    fn candidates(&self, uid: &str, namespace: &str) -> Vec<(String, String)> {
        let ix = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ix.by_owner.get(uid).into_iter().flatten().chain(ix.orphans.get(namespace).into_iter().flatten()).cloned().collect()
    }
}

struct State {
    ctx: Context,
    pods: Store<Pod>,
    index: Arc<PodIndex>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
    backoff: Backoff,
}

/// Runs the ReplicaSet controller until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (pods, writer) = reflector::store::<Pod>();
    let expectations = Arc::new(Expectations::new());
    let recorder = ctx.recorder.clone();
    let index = Arc::new(PodIndex::default());
    let state = Arc::new(State { ctx, pods, index: index.clone(), expectations: expectations.clone(), recorder, backoff: Backoff::default() });

    let controller = Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let pod_changes = cu::reflected_changes(Api::<Pod>::all(client), writer, move |ev| {
        match ev {
            Event::Apply(p) | Event::InitApply(p) => index.update(p, false),
            Event::Delete(p) => index.update(p, true),
            _ => {}
        }
        observe_pod(&expectations, ev)
    });
    controller
        .watches_stream(pod_changes, move |pod: Pod| sets_for_pod(&sets, &pod))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, state)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "replicaset sync");
            }
        })
        .await;
    Ok(())
}

/// Settles expectations from the pod watch (upstream's addPod/updatePod/deletePod bookkeeping).
fn observe_pod(expectations: &Expectations, ev: &Event<Pod>) {
    let (pod, deleted) = match ev {
        Event::Apply(p) | Event::InitApply(p) => (p, p.metadata.deletion_timestamp.is_some()),
        Event::Delete(p) => (p, true),
        _ => return,
    };
    let Some(owner) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else { return };
    let key = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), owner.name);
    let name = pod.metadata.name.as_deref().unwrap_or("");
    expectations.creation_observed(&key, name);
    if deleted {
        expectations.deletion_observed(&key, name);
    }
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every set whose selector matches.
fn sets_for_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(ns)];
        }
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns))
        .filter(|rs| cu::selector_matches(rs.spec.as_ref().map(|s| &s.selector), pod.metadata.labels.as_ref()))
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, state: Arc<State>) -> Action {
    let key = cu::key_of(&rs.metadata);
    tracing::info!(replicaset = %key, error = %err, "sync failed; will retry");
    Action::requeue(state.backoff.next(&key))
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action, Error> {
    let key = cu::key_of(&rs.metadata);
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let selector = Some(&spec.selector);
    if cu::selector_is_empty(selector) {
        // Validation refuses this for apps/v1; an empty selector would claim every pod in the namespace.
        return Ok(Action::await_change());
    }
    let now = jiff::Timestamp::now();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let pods_api = Api::<Pod>::namespaced(state.ctx.client.clone(), &ns);

    // Active pods of the namespace, then the ones this set claims.
    let all: Vec<Arc<Pod>> = state
        .index
        .candidates(&uid, &ns)
        .into_iter()
        .filter_map(|(pns, name)| state.pods.get(&ObjectRef::new(&name).within(&pns)))
        .filter(|p| is_pod_active(p))
        .collect();
    let mut claimed = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for pod in all {
        let matches = cu::selector_matches(selector, pod.metadata.labels.as_ref());
        match cu::claim(&pod.metadata, &uid, matches, deleting) {
            Claim::Keep => claimed.push(pod),
            Claim::Ignore => {}
            Claim::Release => {
                cu::release(&pods_api, &pod.metadata, &uid).await?;
            }
            Claim::Adopt => {
                if can_adopt.is_none() {
                    can_adopt = Some(fresh_and_live(&state, &rs).await?);
                }
                if can_adopt == Some(true) {
                    let owner = crate::pod_util::controller_ref(rs.as_ref()).expect("a stored set has a name and uid");
                    match cu::adopt(&pods_api, &pod.metadata, owner).await {
                        Ok(p) => claimed.push(Arc::new(p)),
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    let live = |name: &str| {
        state.pods.get(&ObjectRef::new(name).within(&ns)).is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    };
    let needs_sync = state.expectations.satisfied(&key, live);
    let mut manage_err = None;
    if needs_sync && !deleting {
        manage_err = manage_replicas(&state, &rs, &claimed, &key, now).await.err();
    }

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    update_status(&state, &rs, &claimed, manage_err.as_ref(), now).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    state.backoff.reset(&key);

    // Come back when a ready pod becomes available.
    if min_ready > 0 {
        let next = claimed
            .iter()
            .filter(|p| is_pod_ready(p) && !is_pod_available(p, min_ready, now))
            .filter_map(|p| ready_since(p))
            .map(|t| t.as_second() + i64::from(min_ready) - now.as_second())
            .min();
        if let Some(secs) = next {
            return Ok(Action::requeue(Duration::from_secs(secs.max(0) as u64 + 1)));
        }
    }
    if !needs_sync {
        // Expectations settle from the pod watch; look again in case an event was missed.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    Ok(Action::await_change())
}

fn ready_since(p: &Pod) -> Option<jiff::Timestamp> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref().map(|t| t.0)
}

/// Upstream's `canAdopt`: a fresh read shows the same set, not being deleted.
async fn fresh_and_live(state: &State, rs: &ReplicaSet) -> Result<bool, kube::Error> {
    let api = Api::<ReplicaSet>::namespaced(state.ctx.client.clone(), rs.metadata.namespace.as_deref().unwrap_or(""));
    match api.get_opt(rs.metadata.name.as_deref().unwrap_or("")).await? {
        Some(fresh) => Ok(fresh.metadata.uid == rs.metadata.uid && fresh.metadata.deletion_timestamp.is_none()),
        None => Ok(false),
    }
}

/// Creates or deletes pods so that `pods.len()` moves towards `spec.replicas` (at most `BURST_REPLICAS`
/// per sync; creations in slow-start batches).
async fn manage_replicas(state: &State, rs: &ReplicaSet, pods: &[Arc<Pod>], key: &str, now: jiff::Timestamp) -> Result<(), Error> {
    let spec = rs.spec.as_ref().expect("checked by the caller");
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let ns = rs.metadata.namespace.as_deref().unwrap_or("");
    let name = rs.metadata.name.as_deref().unwrap_or("");
    let regarding = object_reference(rs);
    if pods.len() < want {
        let diff = (want - pods.len()).min(BURST_REPLICAS);
        let template = spec.template.clone().unwrap_or_default();
        let owner = crate::pod_util::controller_ref(rs);
        let prefix = cu::pods_prefix(name);
        let (created, err) = cu::slow_start_batch(diff, SLOW_START_INITIAL_BATCH_SIZE, |_| {
            let pod_name = format!("{prefix}{}", cu::random_suffix(5));
            state.expectations.expect_creation(key, &pod_name);
            let (template, owner, client) = (&template, owner.clone(), &state.ctx.client);
            async move {
                match cu::create_pod_from_template(client, ns, &pod_name, template, owner).await {
                    Ok(p) => Ok(p),
                    Err(e) => {
                        state.expectations.creation_observed(key, &pod_name);
                        Err(e)
                    }
                }
            }
        })
        .await;
        for p in &created {
            let pn = p.metadata.name.as_deref().unwrap_or("");
            let related = Some(object_reference(p));
            record_event_related(&state.recorder, &regarding, related, EventType::Normal, "SuccessfulCreate", format!("Created pod: {pn}"))
                .await;
        }
        if let Some(e) = err {
            let msg = api_message(&e);
            record_event(&state.recorder, &regarding, EventType::Warning, "FailedCreate", format!("Error creating: {msg}")).await;
            return Err(Error::ManageReplicas(format!("FailedCreate:{msg}")));
        }
    } else if pods.len() > want {
        let diff = (pods.len() - want).min(BURST_REPLICAS);
        let victims = ranking::pods_to_delete(pods, diff, now);
        let api = Api::<Pod>::namespaced(state.ctx.client.clone(), ns);
        for v in &victims {
            state.expectations.expect_deletion(key, v.metadata.name.as_deref().unwrap_or(""));
        }
        let results = futures::future::join_all(victims.iter().map(|v| {
            let api = api.clone();
            async move {
                let pn = v.metadata.name.clone().unwrap_or_default();
                (pn.clone(), api.delete(&pn, &DeleteParams::default()).await)
            }
        }))
        .await;
        let mut first_err = None;
        for ((pn, r), v) in results.into_iter().zip(&victims) {
            match r {
                Ok(_) => {
                    let related = Some(object_reference(v.as_ref()));
                    let note = format!("Deleted pod: {pn}");
                    record_event_related(&state.recorder, &regarding, related, EventType::Normal, "SuccessfulDelete", note).await
                }
                Err(kube::Error::Api(s)) if s.code == 404 => state.expectations.deletion_observed(key, &pn),
                Err(e) => {
                    state.expectations.deletion_observed(key, &pn);
                    let msg = api_message(&e);
                    record_event(&state.recorder, &regarding, EventType::Warning, "FailedDelete", format!("Error deleting: {msg}")).await;
                    first_err.get_or_insert(format!("FailedDelete:{msg}"));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(Error::ManageReplicas(e));
        }
    }
    Ok(())
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Writes replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration and the
/// ReplicaFailure condition when they changed (upstream's `calculateStatus` + `updateReplicaSetStatus`).
async fn update_status(
    state: &State,
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    manage_err: Option<&Error>,
    now: jiff::Timestamp,
) -> Result<(), Error> {
    let spec = rs.spec.as_ref().expect("checked by the caller");
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels: BTreeMap<String, String> =
        spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .count() as i32;
    let ready = pods.iter().filter(|p| is_pod_ready(p)).count() as i32;
    let available = pods.iter().filter(|p| is_pod_available(p, min_ready, now)).count() as i32;
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.clone().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some(Error::ManageReplicas(msg)) if !has_failure => {
            let (reason, message) = msg.split_once(':').unwrap_or(("FailedCreate", msg));
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let generation = rs.metadata.generation.unwrap_or(0);
    let changed = old.replicas != pods.len() as i32
        || old.fully_labeled_replicas.unwrap_or(0) != fully_labeled
        || old.ready_replicas.unwrap_or(0) != ready
        || old.available_replicas.unwrap_or(0) != available
        || old.observed_generation.unwrap_or(0) != generation
        || old.conditions.clone().unwrap_or_default() != conditions;
    if !changed {
        return Ok(());
    }
    let patch = serde_json::json!({"status": {
        "replicas": pods.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": generation,
        "conditions": if conditions.is_empty() { serde_json::Value::Null } else { serde_json::json!(conditions) },
    }});
    let api = Api::<ReplicaSet>::namespaced(state.ctx.client.clone(), rs.metadata.namespace.as_deref().unwrap_or(""));
    match api.patch_status(rs.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
