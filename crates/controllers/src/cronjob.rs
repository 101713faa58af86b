//! The CronJob controller (upstream `pkg/controller/cronjob`, v2): creates a Job for each scheduled time,
//! honouring the time zone, concurrency policy, starting deadline, suspension and history limits.

pub mod schedule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::object_reference;
use crate::controller_utils::{Clock, log_reconcile_errors, publish, publish_related, system_clock};
use crate::job::condition;
use crate::pod_util::{controller_ref, is_controlled_by};
use schedule::Schedule;

/// The annotation with the time a Job was scheduled for (RFC 3339 in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Upstream wakes up this long after a scheduled time so the time has surely passed.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cronjob api call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not replace job {0}")]
    Replace(String),
}

/// Settings of the CronJob controller.
#[derive(Clone)]
pub struct Config {
    /// The time the controller schedules by; tests move it by hand.
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            clock: system_clock(),
        }
    }
}

struct State {
    ctx: Context,
    config: Config,
    recorder: Recorder,
}

/// Runs the CronJob controller until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, Config::default(), shutdown).await
}

/// Runs the CronJob controller with explicit settings.
pub async fn run_with(
    ctx: Context,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let cronjobs = Api::<CronJob>::all(ctx.client.clone());
    let jobs = Api::<Job>::all(ctx.client.clone());
    let recorder = ctx.recorder.clone();
    let state = Arc::new(State {
        ctx,
        config,
        recorder,
    });
    let results = Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state);
    log_reconcile_errors(results, "cronjob").await;
    Ok(())
}

fn error_policy(_cj: Arc<CronJob>, err: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(error = %err, "cronjob sync failed, retrying");
    Action::requeue(Duration::from_secs(1))
}

/// The Job name for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The time zone a CronJob schedules in: `spec.timeZone` from the tz database, else the controller's (UTC).
pub fn time_zone(cj: &CronJob) -> Result<TimeZone, String> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        None => Ok(TimeZone::UTC),
        Some(name) => jiff::tz::db().get(name).map_err(|e| e.to_string()),
    }
}

/// The most recent unmet scheduled time at `now` and how many were missed (upstream's `mostRecentScheduleTime`).
pub fn most_recent_schedule_time(
    earliest: Timestamp,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
) -> Result<(Option<Timestamp>, i64), String> {
    let Some(t1) = sched.next(earliest, tz) else {
        return Ok((None, 0));
    };
    if now < t1 {
        return Ok((None, 0));
    }
    let Some(t2) = sched.next(t1, tz) else {
        return Ok((Some(t1), 1));
    };
    if now < t2 {
        return Ok((Some(t1), 1));
    }
    let between = t1.duration_until(t2).as_secs();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = t1.duration_until(now).as_secs();
    let missed = elapsed / between + 1;
    // Jump close to now, then walk: schedules are not always evenly spaced.
    let mut recent = t1;
    let jump = t1
        .checked_add(jiff::SignedDuration::from_secs(
            (missed - 2).max(0) * between,
        ))
        .unwrap_or(t1);
    if jump <= now {
        recent = jump;
    }
    while let Some(t) = sched.next(recent, tz) {
        if t > now {
            break;
        }
        recent = t;
    }
    Ok((Some(recent), missed))
}

fn earliest_time(cj: &CronJob, now: Timestamp) -> Timestamp {
    let mut earliest = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    if let Some(last) = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
    {
        earliest = last.0;
    }
    if let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
        let deadline = now - jiff::SignedDuration::from_secs(sds);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    earliest
}

/// How long until the next scheduled time after the most recent one.
fn next_schedule_delay(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
) -> Option<Duration> {
    let earliest = earliest_time(cj, now);
    let recent = most_recent_schedule_time(earliest, now, sched, tz)
        .ok()?
        .0
        .unwrap_or(earliest);
    let next = sched.next(recent, tz)?;
    let wait = now.duration_until(next).max(jiff::SignedDuration::ZERO);
    Some(Duration::try_from(wait).unwrap_or_default() + NEXT_SCHEDULE_DELTA)
}

fn requeue(delay: Option<Duration>) -> Action {
    // Wake up at least every five minutes: a moved clock or a lost event must not stall a schedule.
    Action::requeue(
        delay
            .unwrap_or(Duration::from_secs(300))
            .min(Duration::from_secs(300)),
    )
}

fn finished_type(job: &Job) -> Option<&'static str> {
    let status = job.status.as_ref()?;
    if condition(status, "Complete").is_some() {
        Some("Complete")
    } else if condition(status, "Failed").is_some() {
        Some("Failed")
    } else {
        None
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The Job for one scheduled time (upstream's `getJobFromTemplate2`).
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: Some(tmeta.labels.unwrap_or_default()),
            annotations: Some(annotations),
            owner_references: controller_ref(cj).map(|r| vec![r]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn reconcile(cached: Arc<CronJob>, st: Arc<State>) -> Result<Action, Error> {
    let client = st.ctx.client.clone();
    let ns = cached.namespace().unwrap_or_default();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(client, &ns);
    let Some(mut cj) = cronjobs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let uid = cj.uid().unwrap_or_default();
    let now = (st.config.clock)();
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| is_controlled_by(&j.metadata, &uid))
        .collect();
    let old_status = cj.status.clone();
    let status = cj.status.get_or_insert_with(Default::default);
    let mut active: Vec<ObjectReference> = status.active.take().unwrap_or_default();

    for job in &jobs {
        let in_active = active.iter().any(|r| r.uid == job.metadata.uid);
        let finished = finished_type(job);
        if !in_active && finished.is_none() {
            publish_related(
                &st.recorder,
                &cj,
                object_reference(job),
                EventType::Warning,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.name_any()
                ),
            )
            .await;
            // Upstream keeps such jobs out of the active list too; it does not adopt them here.
        } else if in_active && let Some(cond) = finished {
            active.retain(|r| r.uid != job.metadata.uid);
            publish_related(
                &st.recorder,
                &cj,
                object_reference(job),
                EventType::Normal,
                "SawCompletedJob",
                format!("Saw completed job: {}, condition: {cond}", job.name_any()),
            )
            .await;
        }
        if finished == Some("Complete")
            && let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.as_ref())
        {
            let status = cj.status.get_or_insert_with(Default::default);
            if status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done.0)
            {
                status.last_successful_time = Some(done.clone());
            }
        }
    }
    // Active jobs that no longer exist.
    let mut kept = Vec::new();
    for r in active {
        if jobs.iter().any(|j| j.metadata.uid == r.uid) {
            kept.push(r);
            continue;
        }
        match jobs_api.get_opt(r.name.as_deref().unwrap_or("")).await? {
            Some(_) => kept.push(r),
            None => {
                publish(
                    &st.recorder,
                    &cj,
                    EventType::Normal,
                    "MissingJob",
                    format!(
                        "Active job went missing: {}",
                        r.name.as_deref().unwrap_or("")
                    ),
                )
                .await
            }
        }
    }
    cj.status.get_or_insert_with(Default::default).active = Some(kept);

    let action = if cj.metadata.deletion_timestamp.is_some() {
        Action::await_change()
    } else {
        schedule_next(&st, &jobs_api, &mut cj, now).await?
    };

    if cj.metadata.deletion_timestamp.is_none() {
        cleanup_finished_jobs(&st, &jobs_api, &cj, &jobs).await?;
    }
    let mut new_status = cj.status.clone().unwrap_or_default();
    if new_status.active.as_ref().is_some_and(|a| a.is_empty()) {
        new_status.active = None;
    }
    cj.status = Some(new_status);
    if cj.status != old_status
        && cj.status != old_status.clone().or_else(|| Some(Default::default()))
    {
        cronjobs
            .replace_status(&cj.name_any(), &PostParams::default(), &cj)
            .await?;
    }
    Ok(action)
}

/// Creates the Job for the most recent unmet scheduled time, if the policies allow; returns when to look again.
async fn schedule_next(
    st: &State,
    jobs_api: &Api<Job>,
    cj: &mut CronJob,
    now: Timestamp,
) -> Result<Action, Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let tz = match time_zone(cj) {
        Ok(tz) => tz,
        Err(e) => {
            let msg = format!(
                "invalid timeZone: {:?}: {e}",
                spec.time_zone.as_deref().unwrap_or("")
            );
            publish(
                &st.recorder,
                &*cj,
                EventType::Warning,
                "UnknownTimeZone",
                msg,
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    if spec.suspend == Some(true) {
        return Ok(Action::await_change());
    }
    let sched = match schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            publish(
                &st.recorder,
                &*cj,
                EventType::Warning,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let (scheduled, missed) =
        match most_recent_schedule_time(earliest_time(cj, now), now, &sched, &tz) {
            Ok(r) => r,
            Err(e) => {
                publish(
                    &st.recorder,
                    &*cj,
                    EventType::Warning,
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", spec.schedule),
                )
                .await;
                return Ok(Action::await_change());
            }
        };
    if missed > 100 {
        let msg = format!(
            "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
        );
        publish(
            &st.recorder,
            &*cj,
            EventType::Warning,
            "TooManyMissedTimes",
            msg,
        )
        .await;
    }
    let Some(scheduled) = scheduled else {
        return Ok(requeue(next_schedule_delay(cj, now, &sched, &tz)));
    };
    if let Some(sds) = spec.starting_deadline_seconds
        && scheduled + jiff::SignedDuration::from_secs(sds) < now
    {
        let when = scheduled
            .to_zoned(TimeZone::UTC)
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string();
        publish(
            &st.recorder,
            &*cj,
            EventType::Warning,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {when}"),
        )
        .await;
        return Ok(requeue(next_schedule_delay(cj, now, &sched, &tz)));
    }
    let name = job_name(&cj.name_any(), scheduled);
    let status = cj.status.get_or_insert_with(Default::default);
    let active = status.active.get_or_insert_with(Vec::new);
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled)
    {
        return Ok(requeue(next_schedule_delay(cj, now, &sched, &tz)));
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        let note =
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .to_string();
        publish(
            &st.recorder,
            &*cj,
            EventType::Normal,
            "JobAlreadyActive",
            note,
        )
        .await;
        return Ok(requeue(next_schedule_delay(cj, now, &sched, &tz)));
    }
    if policy == "Replace" {
        for r in std::mem::take(active) {
            let jname = r.name.clone().unwrap_or_default();
            match jobs_api.delete(&jname, &DeleteParams::background()).await {
                Ok(_) => {
                    publish_related(
                        &st.recorder,
                        &*cj,
                        r.clone(),
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted job {jname}"),
                    )
                    .await
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    publish(
                        &st.recorder,
                        &*cj,
                        EventType::Warning,
                        "FailedDelete",
                        format!("Deleted job: {e}"),
                    )
                    .await;
                    cj.status
                        .get_or_insert_with(Default::default)
                        .active
                        .get_or_insert_with(Vec::new)
                        .push(r);
                    return Err(Error::Replace(jname));
                }
            }
        }
    }
    let job = job_from_template(cj, scheduled, &tz);
    let created = match jobs_api.create(&PostParams::default(), &job).await {
        Ok(j) => j,
        // Someone (an earlier run of ours) made it: its status is already recorded or will be.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Ok(requeue(next_schedule_delay(cj, now, &sched, &tz)));
        }
        Err(e) => {
            publish(
                &st.recorder,
                &*cj,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {e}"),
            )
            .await;
            return Err(e.into());
        }
    };
    publish_related(
        &st.recorder,
        &*cj,
        object_reference(&created),
        EventType::Normal,
        "SuccessfulCreate",
        format!("Created job {}", created.name_any()),
    )
    .await;
    let status = cj.status.get_or_insert_with(Default::default);
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(job_ref(&created));
    status.last_schedule_time = Some(Time(scheduled));
    Ok(requeue(next_schedule_delay(cj, now, &sched, &tz)))
}

/// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit and failedJobsHistoryLimit.
async fn cleanup_finished_jobs(
    st: &State,
    jobs_api: &Api<Job>,
    cj: &CronJob,
    jobs: &[Job],
) -> Result<(), Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut by_type: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
    for job in jobs
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
    {
        if let Some(t) = finished_type(job) {
            by_type.entry(t).or_default().push(job);
        }
    }
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let (Some(limit), Some(list)) = (limit, by_type.get_mut(kind)) else {
            continue;
        };
        let limit = usize::try_from(limit).unwrap_or(0);
        if list.len() <= limit {
            continue;
        }
        list.sort_by_key(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .or(j.metadata.creation_timestamp.as_ref())
                .map(|t| t.0)
        });
        let excess = list.len() - limit;
        for job in list.iter().take(excess) {
            match jobs_api
                .delete(&job.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {
                    publish_related(
                        &st.recorder,
                        cj,
                        object_reference(*job),
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted job {}", job.name_any()),
                    )
                    .await
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn job_names_are_minutes_since_the_epoch() {
        assert_eq!(
            job_name("hello", ts("2024-01-01T00:01:00Z")),
            "hello-28401121"
        );
    }

    #[test]
    fn missed_schedules_are_counted_and_the_latest_is_run() {
        let every_minute = schedule::parse("* * * * *").unwrap();
        let tz = TimeZone::UTC;
        let (t, n) = most_recent_schedule_time(
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T00:00:30Z"),
            &every_minute,
            &tz,
        )
        .unwrap();
        assert_eq!((t, n), (None, 0));
        let (t, n) = most_recent_schedule_time(
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T00:01:30Z"),
            &every_minute,
            &tz,
        )
        .unwrap();
        assert_eq!((t, n), (Some(ts("2024-01-01T00:01:00Z")), 1));
        let (t, n) = most_recent_schedule_time(
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T03:00:10Z"),
            &every_minute,
            &tz,
        )
        .unwrap();
        assert_eq!((t, n), (Some(ts("2024-01-01T03:00:00Z")), 180));
        let monthly = schedule::parse("0 0 1 * *").unwrap();
        let (t, n) = most_recent_schedule_time(
            ts("2024-01-15T00:00:00Z"),
            ts("2024-06-15T00:00:00Z"),
            &monthly,
            &tz,
        )
        .unwrap();
        assert_eq!(t, Some(ts("2024-06-01T00:00:00Z")));
        assert!(n >= 4);
    }

    #[test]
    fn jobs_carry_the_scheduled_time_in_the_cronjob_zone() {
        let cj = CronJob {
            metadata: ObjectMeta {
                name: Some("c".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::batch::v1::CronJobSpec {
                time_zone: Some("Europe/Paris".into()),
                ..Default::default()
            }),
            status: None,
        };
        let tz = time_zone(&cj).unwrap();
        let job = job_from_template(&cj, ts("2024-01-01T00:00:00Z"), &tz);
        assert_eq!(job.metadata.name.as_deref(), Some("c-28401120"));
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
            "2024-01-01T01:00:00+01:00"
        );
        assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
        let utc = job_from_template(&cj, ts("2024-01-01T00:00:00Z"), &TimeZone::UTC);
        assert_eq!(
            utc.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
            "2024-01-01T00:00:00Z"
        );
        let bad = CronJob {
            spec: Some(k8s_openapi::api::batch::v1::CronJobSpec {
                time_zone: Some("Mars/Olympus".into()),
                ..Default::default()
            }),
            ..cj
        };
        assert!(time_zone(&bad).is_err());
    }
}
