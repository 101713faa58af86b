//! The Job controller (upstream `pkg/controller/job`): runs pods to completion, counts failures with the
//! `batch.kubernetes.io/job-tracking` finalizer so none is missed, and finishes the Job Complete or Failed.

mod policy;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::watcher;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::{
    Clock, claim_pods, log_reconcile_errors, object_reference, pod_from_template, publish, publish_related,
    remove_finalizer, selector_params, system_clock,
};
use crate::pod_util::{controller_ref, is_pod_ready};

pub use status::{format_indexes, parse_indexes};

/// The finalizer the controller puts on its pods and removes once it has counted them.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with the completion index of an Indexed Job's pod.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation with how often a pod's index failed before it (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Label every pod of a Job carries (the API server puts it in the template).
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

const MAX_POD_BACKOFF: Duration = Duration::from_secs(360);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job api call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("job {0} has an invalid selector: {1}")]
    Selector(String, String),
}

/// Settings of the Job controller.
#[derive(Clone)]
pub struct Config {
    pub clock: Clock,
    /// First delay before a failed pod is replaced; doubles with each failure up to six minutes (upstream: 10 s).
    pub pod_backoff_base: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            clock: system_clock(),
            pod_backoff_base: Duration::from_secs(10),
        }
    }
}

struct State {
    ctx: Context,
    config: Config,
    recorder: Recorder,
}

/// Runs the Job controller until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, Config::default(), shutdown).await
}

/// Runs the Job controller with explicit settings.
pub async fn run_with(
    ctx: Context,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let jobs = Api::<Job>::all(ctx.client.clone());
    let pods = Api::<Pod>::all(ctx.client.clone());
    let recorder = ctx.recorder.clone();
    let state = Arc::new(State {
        ctx,
        config,
        recorder,
    });
    let client = state.ctx.client.clone();
    let controller = Controller::new(jobs, watcher::Config::default());
    let store = controller.store();
    let reconciling = controller
        .owns(
            pods.clone(),
            watcher::Config::default().labels(CONTROLLER_UID),
        )
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, state);
    let reconciling = log_reconcile_errors(reconciling, "job");
    // Pods whose Job is gone keep no tracking finalizer (upstream's orphan pod handling): the Job's own
    // reconcile never runs again once it is deleted.
    let orphans = watcher::watcher(pods, watcher::Config::default().labels(CONTROLLER_UID))
        .default_backoff()
        .applied_objects()
        .take_until(shutdown.clone().cancelled_owned())
        .for_each(|pod| {
            let store = store.clone();
            let client = client.clone();
            async move {
                let Ok(pod) = pod else { return };
                if let Err(e) = release_orphan(&client, &store, &pod).await {
                    tracing::debug!(error = %e, "job orphan pod");
                }
            }
        });
    // A deleted Job's pods see no change of their own; look at them when the Job goes.
    let jobs_watch = Api::<Job>::all(client.clone());
    let deletions = watcher::watcher(jobs_watch, watcher::Config::default())
        .default_backoff()
        .take_until(shutdown.cancelled_owned())
        .for_each(|ev| {
            let store = store.clone();
            let client = client.clone();
            async move {
                let Ok(watcher::Event::Delete(job)) = ev else {
                    return;
                };
                let (Some(ns), Some(uid)) = (job.namespace(), job.uid()) else {
                    return;
                };
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let lp = ListParams::default().labels(&format!("{CONTROLLER_UID}={uid}"));
                let Ok(list) = api.list(&lp).await else {
                    return;
                };
                for pod in list.items {
                    if let Err(e) = release_orphan(&client, &store, &pod).await {
                        tracing::debug!(error = %e, "job orphan pod");
                    }
                }
            }
        });
    futures::future::join3(reconciling, orphans, deletions).await;
    Ok(())
}

/// Removes the tracking finalizer of a pod whose controlling Job no longer exists.
async fn release_orphan(
    client: &kube::Client,
    store: &kube::runtime::reflector::Store<Job>,
    pod: &Pod,
) -> Result<(), kube::Error> {
    if !has_finalizer(pod) {
        return Ok(());
    }
    let ns = pod.namespace().unwrap_or_default();
    let owner = crate::pod_util::controller_of(&pod.metadata).filter(|r| r.kind == "Job");
    if let Some(r) = owner {
        let key = kube::runtime::reflector::ObjectRef::<Job>::new(&r.name).within(&ns);
        if store
            .get(&key)
            .is_some_and(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str()))
        {
            return Ok(());
        }
        // The cache may lag: ask the API before letting go.
        let live = Api::<Job>::namespaced(client.clone(), &ns)
            .get_opt(&r.name)
            .await?;
        if live.is_some_and(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str())) {
            return Ok(());
        }
    }
    remove_finalizer(
        &Api::namespaced(client.clone(), &ns),
        pod,
        TRACKING_FINALIZER,
    )
    .await
}

fn error_policy(_job: Arc<Job>, err: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(error = %err, "job sync failed, retrying");
    match err {
        // A bad selector does not heal by retrying; the next change to the object brings it back.
        Error::Selector(..) => Action::requeue(Duration::from_secs(300)),
        Error::Kube(_) => Action::requeue(Duration::from_secs(1)),
    }
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's `isPodFailed`: Failed, or deleted before succeeding unless only failed pods are replaced.
fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// How often the pod's index had failed before the pod was made (backoffLimitPerIndex).
fn index_failure_count(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_FAILURE_COUNT))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What manage_pods knows of an Indexed Job's indexes.
struct IndexState<'a> {
    completed: &'a BTreeSet<i32>,
    failed: &'a BTreeSet<i32>,
    pods: &'a [Pod],
}

fn pod_index(pod: &Pod) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    v.parse::<i32>().ok().filter(|i| *i >= 0)
}

pub(crate) fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    cond_status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != cond_status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = cond_status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
    } else {
        conds.push(JobCondition {
            type_: type_.into(),
            status: cond_status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        });
    }
}

/// Whether the Job has its final condition (Complete or Failed).
pub fn is_job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| condition(s, "Complete").is_some() || condition(s, "Failed").is_some())
}

/// When the Job finished: its completionTime, or the Failed condition's transition.
pub fn finish_time(job: &Job) -> Option<jiff::Timestamp> {
    let status = job.status.as_ref()?;
    if let Some(t) = &status.completion_time {
        return Some(t.0);
    }
    condition(status, "Complete")
        .or_else(|| condition(status, "Failed"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// The terminal state decided for a Job before its pods are gone (FailureTarget or SuccessCriteriaMet).
#[derive(Debug, Clone, PartialEq)]
struct Finishing {
    failed: bool,
    reason: String,
    message: String,
}

async fn reconcile(cached: Arc<Job>, st: Arc<State>) -> Result<Action, Error> {
    let client = st.ctx.client.clone();
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(client, &ns);
    // The cache may lag behind our own status writes; the counters must not.
    let Some(job) = jobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let now = (st.config.clock)();

    let params = selector_params(job.spec.as_ref().and_then(|s| s.selector.as_ref()))
        .map_err(|e| Error::Selector(name.clone(), e))?;
    let pods: Vec<Pod> = match params {
        Some(lp) => claim_pods(&pods_api, &job, pods_api.list(&lp).await?.items).await?,
        None => Vec::new(),
    };

    if job.metadata.deletion_timestamp.is_some() || is_job_finished(&job) {
        for pod in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pods_api, pod, TRACKING_FINALIZER).await?;
        }
        return finished_job_ttl(&jobs, &job, now).await;
    }
    sync_job(&st, &jobs, &pods_api, job, pods, now).await
}

/// Deletes a finished Job whose ttlSecondsAfterFinished has passed (upstream's TTL-after-finished controller).
async fn finished_job_ttl(
    jobs: &Api<Job>,
    job: &Job,
    now: jiff::Timestamp,
) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(finished) = finish_time(job) else {
        return Ok(Action::await_change());
    };
    let expire = finished + jiff::SignedDuration::from_secs(i64::from(ttl));
    if now < expire {
        let left = now.duration_until(expire).as_secs().max(1) as u64;
        return Ok(Action::requeue(Duration::from_secs(left)));
    }
    let dp = DeleteParams {
        preconditions: None,
        ..DeleteParams::background()
    };
    match jobs.delete(&job.name_any(), &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

async fn sync_job(
    st: &State,
    jobs: &Api<Job>,
    pods_api: &Api<Pod>,
    mut job: Job,
    pods: Vec<Pod>,
    now: jiff::Timestamp,
) -> Result<Action, Error> {
    let spec = job.spec.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut requeue: Option<Duration> = None;

    // 1. Count finished pods: first record their uids as uncounted, then drop finalizers, then add to the counters.
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_succeeded: BTreeSet<String> = uncounted
        .succeeded
        .take()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut unc_failed: BTreeSet<String> = uncounted
        .failed
        .take()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut completed = status
        .completed_indexes
        .as_deref()
        .map(parse_indexes)
        .unwrap_or_default();
    let per_index = if indexed {
        spec.backoff_limit_per_index
    } else {
        None
    };
    let mut failed_indexes = status
        .failed_indexes
        .as_deref()
        .map(parse_indexes)
        .unwrap_or_default();
    let mut finishing = existing_finishing(&status);
    let mut to_release: Vec<&Pod> = Vec::new();
    let mut newly = false;
    for pod in &pods {
        if !has_finalizer(pod) {
            continue;
        }
        let uid = pod.uid().unwrap_or_default();
        if unc_succeeded.contains(&uid) || unc_failed.contains(&uid) {
            to_release.push(pod);
            continue;
        }
        if phase(pod) == "Succeeded" {
            if indexed {
                match pod_index(pod) {
                    Some(i) if i < spec.completions.unwrap_or(0) => {
                        completed.insert(i);
                    }
                    // A pod with a bad index is not a completion.
                    _ => {
                        to_release.push(pod);
                        continue;
                    }
                }
            }
            unc_succeeded.insert(uid);
            newly = true;
            to_release.push(pod);
        } else if is_pod_failed(pod, &job) {
            let action = if phase(pod) == "Failed" {
                policy::match_pod_failure_policy(spec.pod_failure_policy.as_ref(), pod)
            } else {
                None
            };
            match action {
                Some((policy::Action::Ignore, _)) => {}
                Some((policy::Action::FailJob, message)) => {
                    if finishing.is_none() {
                        finishing = Some(Finishing {
                            failed: true,
                            reason: "PodFailurePolicy".into(),
                            message,
                        });
                    }
                    unc_failed.insert(uid);
                    newly = true;
                }
                Some((policy::Action::FailIndex, _)) if per_index.is_some() => {
                    failed_indexes.extend(pod_index(pod));
                    unc_failed.insert(uid);
                    newly = true;
                }
                _ => {
                    if let (Some(limit), Some(i)) = (per_index, pod_index(pod))
                        && index_failure_count(pod) + 1 > limit
                    {
                        failed_indexes.insert(i);
                    }
                    unc_failed.insert(uid);
                    newly = true;
                }
            }
            to_release.push(pod);
        }
    }
    if newly {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: vec_or_none(&unc_succeeded),
            failed: vec_or_none(&unc_failed),
        });
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        if per_index.is_some() {
            status.failed_indexes = Some(format_indexes(&failed_indexes));
        }
        job = write_status(jobs, &job, &status).await?;
    }
    for pod in &to_release {
        remove_finalizer(pods_api, pod, TRACKING_FINALIZER).await?;
    }
    if indexed {
        status.succeeded = Some(completed.len() as i32);
        status.completed_indexes = Some(format_indexes(&completed));
    } else {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + unc_succeeded.len() as i32);
    }
    status.failed = Some(status.failed.unwrap_or(0) + unc_failed.len() as i32);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    if per_index.is_some() {
        status.failed_indexes = Some(format_indexes(&failed_indexes));
    }
    let succeeded = status.succeeded.unwrap_or(0);
    let failed = status.failed.unwrap_or(0);

    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| crate::pod_util::is_pod_active(p))
        .collect();
    let terminating_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .collect();
    let terminating = terminating_pods.len();

    // 2. Suspension and resumption.
    let suspended = spec.suspend == Some(true);
    let was_suspended = condition(&status, "Suspended").is_some();
    if !suspended && was_suspended {
        set_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        );
        status.start_time = Some(Time(now));
        publish(
            &st.recorder,
            &job,
            EventType::Normal,
            "Resumed",
            "Job resumed".into(),
        )
        .await;
    }
    if !suspended && status.start_time.is_none() {
        status.start_time = Some(Time(now));
    }

    // 3. Decide whether the Job is done.
    if finishing.is_none() && per_index.is_some() {
        let completions = spec.completions.unwrap_or(0) as usize;
        if spec
            .max_failed_indexes
            .is_some_and(|m| failed_indexes.len() as i32 > m)
        {
            finishing = Some(Finishing {
                failed: true,
                reason: "MaxFailedIndexesExceeded".into(),
                message: "Job has exceeded the specified maximal number of failed indexes".into(),
            });
        } else if !failed_indexes.is_empty()
            && completed.len() + failed_indexes.len() >= completions
        {
            finishing = Some(Finishing {
                failed: true,
                reason: "FailedIndexes".into(),
                message: "Job has failed indexes".into(),
            });
        }
    }
    if finishing.is_none() {
        // With backoffLimitPerIndex, failures count per index instead.
        let backoff_limit = if per_index.is_some() {
            i32::MAX
        } else {
            spec.backoff_limit.unwrap_or(6)
        };
        if failed > backoff_limit || past_backoff_limit_on_failure(&job, &active) {
            finishing = Some(Finishing {
                failed: true,
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            });
        } else if let (Some(ads), Some(start), false) = (
            spec.active_deadline_seconds,
            status.start_time.as_ref(),
            suspended,
        ) {
            let deadline = start.0 + jiff::SignedDuration::from_secs(ads);
            if now >= deadline {
                finishing = Some(Finishing {
                    failed: true,
                    reason: "DeadlineExceeded".into(),
                    message: "Job was active longer than specified deadline".into(),
                });
            } else {
                requeue = Some(Duration::from_secs(
                    now.duration_until(deadline).as_secs().max(1) as u64,
                ));
            }
        }
    }
    if finishing.is_none()
        && indexed
        && let Some(message) = policy::match_success_policy(
            spec.success_policy.as_ref(),
            spec.completions.unwrap_or(0),
            &completed,
        )
    {
        finishing = Some(Finishing {
            failed: false,
            reason: "SuccessPolicy".into(),
            message,
        });
    }
    if finishing.is_none() {
        let complete = match spec.completions {
            None => succeeded > 0 && active.is_empty(),
            Some(c) => succeeded >= c,
        };
        if complete {
            finishing = Some(Finishing {
                failed: false,
                reason: "CompletionsReached".into(),
                message: "Reached expected number of succeeded pods".into(),
            });
        }
    }

    let mut active_count = active.len() as i32;
    if let Some(f) = &finishing {
        // 4a. Finishing: remove what still runs, then the final condition once nothing is left.
        let target = if f.failed {
            "FailureTarget"
        } else {
            "SuccessCriteriaMet"
        };
        if existing_finishing(&status).is_none() {
            set_condition(&mut status, target, "True", &f.reason, &f.message, now);
        }
        for pod in &active {
            delete_pod(st, pods_api, &job, pod).await?;
        }
        active_count = 0;
        let pods_left = terminating > 0 || !active.is_empty();
        if !pods_left {
            if f.failed {
                set_condition(&mut status, "Failed", "True", &f.reason, &f.message, now);
                publish(
                    &st.recorder,
                    &job,
                    EventType::Warning,
                    &f.reason,
                    f.message.clone(),
                )
                .await;
            } else {
                set_condition(&mut status, "Complete", "True", &f.reason, &f.message, now);
                status.completion_time = Some(Time(now));
                publish(
                    &st.recorder,
                    &job,
                    EventType::Normal,
                    "Completed",
                    "Job completed".into(),
                )
                .await;
            }
        } else {
            // Pod deletions wake the Job up; this only backs that up.
            requeue = Some(Duration::from_secs(10));
        }
    } else if suspended {
        // 4b. Suspended: no pods run.
        for pod in &active {
            delete_pod(st, pods_api, &job, pod).await?;
        }
        active_count = 0;
        if !was_suspended {
            set_condition(
                &mut status,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            publish(
                &st.recorder,
                &job,
                EventType::Normal,
                "Suspended",
                "Job suspended".into(),
            )
            .await;
        }
    } else {
        // 4c. Running: as many pods as parallelism and the remaining completions allow.
        let delay = pod_backoff(&st.config, &pods, &job, failed, now);
        let held: &[&Pod] = if only_replace_failed(&job) {
            &terminating_pods
        } else {
            &[]
        };
        let indexes = IndexState {
            completed: &completed,
            failed: &failed_indexes,
            pods: &pods,
        };
        let (created, deleted, wait) = manage_pods(
            st, pods_api, &job, &active, &indexes, succeeded, delay, held,
        )
        .await?;
        active_count += created - deleted;
        if let Some(w) = wait {
            requeue = Some(requeue.map_or(w, |r| r.min(w)));
        }
    }

    status.active = Some(active_count);
    status.ready = Some(
        active
            .iter()
            .filter(|p| is_pod_ready(p) && p.metadata.deletion_timestamp.is_none())
            .count() as i32,
    );
    if active_count == 0 {
        // Every active pod was just deleted (finishing or suspended).
        status.ready = Some(0);
    }
    status.terminating = Some(terminating as i32);
    if status != old_status || newly {
        write_status(jobs, &job, &status).await?;
    }
    if is_job_finished(&Job {
        status: Some(status),
        ..job.clone()
    }) && let Some(ttl) = spec.ttl_seconds_after_finished
    {
        requeue = Some(Duration::from_secs(u64::try_from(ttl).unwrap_or(0).max(1)));
    }

    Ok(requeue.map_or_else(
        || Action::requeue(Duration::from_secs(300)),
        Action::requeue,
    ))
}

fn vec_or_none(set: &BTreeSet<String>) -> Option<Vec<String>> {
    (!set.is_empty()).then(|| set.iter().cloned().collect())
}

fn existing_finishing(status: &JobStatus) -> Option<Finishing> {
    if let Some(c) = condition(status, "FailureTarget") {
        return Some(Finishing {
            failed: true,
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    }
    condition(status, "SuccessCriteriaMet").map(|c| Finishing {
        failed: false,
        reason: c.reason.clone().unwrap_or_default(),
        message: c.message.clone().unwrap_or_default(),
    })
}

async fn write_status(jobs: &Api<Job>, job: &Job, status: &JobStatus) -> Result<Job, Error> {
    let mut next = job.clone();
    next.status = Some(status.clone());
    Ok(jobs
        .replace_status(&job.name_any(), &PostParams::default(), &next)
        .await?)
}

/// With restartPolicy OnFailure, container restarts count as failures (upstream's `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(job: &Job, active: &[&Pod]) -> bool {
    let spec = job.spec.as_ref();
    let restart = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let mut restarts = 0;
    for pod in active
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
    {
        let st = pod.status.as_ref();
        for cs in st
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .chain(st.and_then(|s| s.container_statuses.as_ref()))
            .flatten()
        {
            restarts += cs.restart_count;
        }
    }
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// How long to wait before replacing failed pods: base × 2^(failures−1) from the last failure, capped at six minutes.
fn pod_backoff(
    config: &Config,
    pods: &[Pod],
    job: &Job,
    failed: i32,
    now: jiff::Timestamp,
) -> Option<Duration> {
    if failed <= 0 || config.pod_backoff_base.is_zero() {
        return None;
    }
    let last = pods
        .iter()
        .filter(|p| is_pod_failed(p, job))
        .filter_map(last_failure_time)
        .max()?;
    let shift = (failed - 1).min(16) as u32;
    let delay = config
        .pod_backoff_base
        .saturating_mul(1 << shift)
        .min(MAX_POD_BACKOFF);
    let since = last.duration_until(now).as_secs().max(0) as u64;
    let left = delay.saturating_sub(Duration::from_secs(since));
    (!left.is_zero()).then_some(left)
}

fn last_failure_time(pod: &Pod) -> Option<jiff::Timestamp> {
    let st = pod.status.as_ref();
    let finished = st
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max();
    finished
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Creates and deletes pods toward the wanted number; returns (created, deleted, retry after).
#[allow(clippy::too_many_arguments)]
async fn manage_pods(
    st: &State,
    pods_api: &Api<Pod>,
    job: &Job,
    active: &[&Pod],
    indexes: &IndexState<'_>,
    succeeded: i32,
    backoff: Option<Duration>,
    held: &[&Pod],
) -> Result<(i32, i32, Option<Duration>), Error> {
    let completed = indexes.completed;
    let failed_indexes = indexes.failed;
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let active_n = active.len() as i32;
    let mut deleted = 0;
    let mut created = 0;

    if indexed {
        let completions = spec.completions.unwrap_or(0);
        // Duplicates of an index, pods of completed or out-of-range indexes go.
        let mut seen: BTreeMap<i32, &Pod> = BTreeMap::new();
        let mut extra: Vec<&Pod> = Vec::new();
        for pod in active {
            match pod_index(pod) {
                Some(i)
                    if i < completions
                        && !completed.contains(&i)
                        && !failed_indexes.contains(&i)
                        && !seen.contains_key(&i) =>
                {
                    seen.insert(i, pod);
                }
                _ => extra.push(pod),
            }
        }
        // Beyond parallelism, the highest indexes go.
        while seen.len() as i32 > parallelism {
            let (i, _) = seen
                .iter()
                .next_back()
                .map(|(i, p)| (*i, *p))
                .expect("non-empty");
            extra.push(seen.remove(&i).expect("present"));
        }
        for pod in extra {
            delete_pod(st, pods_api, job, pod).await?;
            deleted += 1;
        }
        let room = parallelism - seen.len() as i32;
        if room > 0 {
            if let Some(wait) = backoff {
                return Ok((0, deleted, Some(wait)));
            }
            // With podReplacementPolicy Failed, an index whose pod is still terminating waits for it.
            let held_indexes: BTreeSet<i32> = held.iter().filter_map(|p| pod_index(p)).collect();
            let room = room
                - held_indexes
                    .iter()
                    .filter(|i| !seen.contains_key(i))
                    .count() as i32;
            let pending: Vec<i32> = (0..completions)
                .filter(|i| {
                    !completed.contains(i)
                        && !failed_indexes.contains(i)
                        && !seen.contains_key(i)
                        && !held_indexes.contains(i)
                })
                .take(room.max(0) as usize)
                .collect();
            // Each new pod carries how often its index failed before (backoffLimitPerIndex counts on it).
            let failures = |i: i32| {
                indexes
                    .pods
                    .iter()
                    .filter(|p| pod_index(p) == Some(i) && is_pod_failed(p, job))
                    .map(|p| index_failure_count(p) + 1)
                    .max()
                    .unwrap_or(0)
            };
            let todo = pending
                .into_iter()
                .map(|i| (Some(i), failures(i)))
                .collect();
            created += create_pods(st, pods_api, job, todo).await?;
        }
        return Ok((created, deleted, None));
    }

    let want = match spec.completions {
        None if succeeded > 0 => active_n,
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    };
    if active_n > want {
        let mut ranked: Vec<&Pod> = active.to_vec();
        // Not-ready and younger pods first (a short form of upstream's ActivePods ranking).
        ranked.sort_by_key(|p| {
            (
                is_pod_ready(p),
                std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
        });
        for pod in ranked.into_iter().take((active_n - want) as usize) {
            delete_pod(st, pods_api, job, pod).await?;
            deleted += 1;
        }
    } else if active_n + (held.len() as i32) < want {
        if let Some(wait) = backoff {
            return Ok((0, 0, Some(wait)));
        }
        // With podReplacementPolicy Failed, terminating pods still hold their place.
        let count = (want - active_n - held.len() as i32).max(0) as usize;
        created += create_pods(st, pods_api, job, vec![(None, 0); count]).await?;
    }
    Ok((created, deleted, None))
}

/// Deletes a pod the controller no longer wants; its finalizer goes first so it is not counted as a failure.
async fn delete_pod(st: &State, pods_api: &Api<Pod>, job: &Job, pod: &Pod) -> Result<(), Error> {
    remove_finalizer(pods_api, pod, TRACKING_FINALIZER).await?;
    match pods_api
        .delete(&pod.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    publish_related(
        &st.recorder,
        job,
        object_reference(pod),
        EventType::Normal,
        "SuccessfulDelete",
        format!("Deleted pod: {}", pod.name_any()),
    )
    .await;
    Ok(())
}

/// The pod a Job runs: its template with the controller reference, the tracking finalizer and, for Indexed
/// Jobs, the completion index (annotation, label, JOB_COMPLETION_INDEX, hostname `<job>-<index>`).
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let name = job.name_any();
    let mut pod = pod_from_template(
        &spec.template,
        &job.namespace().unwrap_or_default(),
        "",
        controller_ref(job),
    );
    let mut meta = std::mem::take(&mut pod.metadata);
    meta.name = None;
    meta.finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.into());
    let mut pod_spec = pod.spec.take().unwrap_or_default();
    match index {
        Some(i) => {
            let appendix = format!("-{i}-");
            let prefix_len = 58usize.saturating_sub(appendix.len()).min(name.len());
            let generate = format!("{}{appendix}", &name[..prefix_len]);
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX.into(), i.to_string());
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX.into(), i.to_string());
            if pod_spec.hostname.as_deref().unwrap_or("").is_empty() {
                pod_spec.hostname = Some(generate.trim_end_matches('-').to_string());
            }
            meta.generate_name = Some(generate);
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                        api_version: None,
                    }),
                    ..Default::default()
                }),
            };
            for c in pod_spec
                .containers
                .iter_mut()
                .chain(pod_spec.init_containers.iter_mut().flatten())
            {
                let envs = c.env.get_or_insert_with(Vec::new);
                if !envs.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                    envs.push(env.clone());
                }
            }
        }
        None => meta.generate_name = Some(format!("{}-", &name[..name.len().min(58)])),
    }
    Pod {
        metadata: meta,
        spec: Some(pod_spec),
        status: None,
    }
}

/// Creates pods in slow-start batches (1, 2, 4, ...), stopping at the first failing batch.
async fn create_pods(
    st: &State,
    pods_api: &Api<Pod>,
    job: &Job,
    indexes: Vec<(Option<i32>, i32)>,
) -> Result<i32, Error> {
    let (done, err) = crate::controller_utils::slow_start_batch(
        indexes.len(),
        crate::controller_utils::SLOW_START_INITIAL_BATCH_SIZE,
        |i| create_pod(st, pods_api, job, indexes[i].0, indexes[i].1),
    )
    .await;
    match err {
        Some(e) => Err(e),
        None => Ok(done.len() as i32),
    }
}

async fn create_pod(
    st: &State,
    pods_api: &Api<Pod>,
    job: &Job,
    index: Option<i32>,
    index_failures: i32,
) -> Result<(), Error> {
    let mut pod = new_pod(job, index);
    if job
        .spec
        .as_ref()
        .and_then(|s| s.backoff_limit_per_index)
        .is_some()
        && index.is_some()
    {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(INDEX_FAILURE_COUNT.into(), index_failures.to_string());
    }
    match pods_api.create(&PostParams::default(), &pod).await {
        Ok(created) => {
            publish_related(
                &st.recorder,
                job,
                object_reference(&created),
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created pod: {}", created.name_any()),
            )
            .await;
            Ok(())
        }
        Err(e) => {
            let msg = format!("Error creating: {e}");
            publish(&st.recorder, job, EventType::Warning, "FailedCreate", msg).await;
            Err(e.into())
        }
    }
}
