//! The CronJob controller against the in-process API server, with a clock the test moves (no real minutes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::cronjob::{self, SCHEDULED_TIMESTAMP};

mod support;
use support::{Running, eventually, manual_clock, start_server};


struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    cronjobs: Api<CronJob>,
    jobs: Api<Job>,
    events: Api<k8s_openapi::api::events::v1::Event>,
    clock: Arc<Mutex<jiff::Timestamp>>,
    controller: Running<cronjob::Error>,
    touches: Mutex<u32>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        let (clock, controller_clock) = manual_clock();
        let config = cronjob::Config {
            clock: controller_clock,
        };
        let controller = Running::spawn(&client, |ctx, shutdown| cronjob::run_with(ctx, config, shutdown));
        Harness {
            cronjobs: Api::namespaced(client.clone(), "default"),
            jobs: Api::namespaced(client.clone(), "default"),
            events: Api::namespaced(client, "default"),
            clock,
            controller,
            touches: Mutex::new(0),
            _server: server,
        }
    }

    async fn stop(self) {
        self.controller.stop().await;
    }

    async fn create(&self, name: &str, extra: serde_json::Value) {
        let mut spec = serde_json::json!({
            "schedule": "* * * * *",
            "jobTemplate": {"metadata": {"labels": {"cron": name}}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let cj: CronJob =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
                .unwrap();
        self.cronjobs
            .create(&PostParams::default(), &cj)
            .await
            .unwrap();
    }

    /// Moves the clock and makes the controller look at the CronJob now.
    async fn advance(&self, name: &str, secs: i64) {
        *self.clock.lock().unwrap() += jiff::SignedDuration::from_secs(secs);
        let n = {
            let mut t = self.touches.lock().unwrap();
            *t += 1;
            *t
        };
        let touch = serde_json::json!({"metadata": {"annotations": {"test/touch": n.to_string()}}});
        self.cronjobs
            .patch(name, &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
    }

    async fn jobs_of(&self, name: &str) -> Vec<Job> {
        let mut jobs = self
            .jobs
            .list(&ListParams::default().labels(&format!("cron={name}")))
            .await
            .unwrap()
            .items;
        jobs.retain(|j| j.metadata.deletion_timestamp.is_none());
        jobs.sort_by_key(|j| j.metadata.name.clone());
        jobs
    }

    async fn complete(&self, job: &Job, type_: &str) {
        let now = jiff::Timestamp::now().to_string();
        let mut status = serde_json::json!({"startTime": now, "conditions": [
            {"type": if type_ == "Complete" { "SuccessCriteriaMet" } else { "FailureTarget" }, "status": "True", "lastTransitionTime": now},
            {"type": type_, "status": "True", "lastTransitionTime": now}
        ]});
        if type_ == "Complete" {
            status["completionTime"] = serde_json::json!(now);
            status["succeeded"] = serde_json::json!(1);
        } else {
            status["failed"] = serde_json::json!(1);
        }
        let name = job.metadata.name.as_deref().unwrap();
        self.jobs
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({"status": status})),
            )
            .await
            .unwrap();
    }

    async fn has_event(&self, reason: &str) -> bool {
        self.events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason))
    }
}

#[tokio::test]
async fn every_minute_creates_one_job_per_scheduled_time() {
    let h = Harness::start().await;
    // The controller comes up three minutes after the CronJob was made: one catch-up run, not three.
    *h.clock.lock().unwrap() += jiff::SignedDuration::from_secs(180);
    h.create("tick", serde_json::json!({})).await;
    eventually("a job is created", || async {
        h.jobs_of("tick").await.len() == 1
    })
    .await;
    let job = h.jobs_of("tick").await.remove(0);
    let cj = h.cronjobs.get("tick").await.unwrap();
    let status = cj.status.unwrap();
    let scheduled = status.last_schedule_time.unwrap().0;
    assert_eq!(scheduled.as_second() % 60, 0, "scheduled on a whole minute");
    assert_eq!(
        job.metadata.name.as_deref().unwrap(),
        format!("tick-{}", scheduled.as_second() / 60)
    );
    assert_eq!(
        job.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
        scheduled.to_string().replace(".000", "")
    );
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].kind,
        "CronJob"
    );
    assert_eq!(status.active.unwrap()[0].name, job.metadata.name);

    // The job finishes: it leaves the active list and becomes the last success.
    h.complete(&job, "Complete").await;
    eventually("the active list empties", || async {
        h.cronjobs
            .get("tick")
            .await
            .unwrap()
            .status
            .unwrap()
            .active
            .is_none_or(|a| a.is_empty())
    })
    .await;
    eventually("the last success is recorded", || async {
        h.cronjobs
            .get("tick")
            .await
            .unwrap()
            .status
            .unwrap()
            .last_successful_time
            .is_some()
    })
    .await;
    assert!(h.has_event("SawCompletedJob").await);

    // A minute later, the next one.
    h.advance("tick", 60).await;
    eventually("a second job is created", || async {
        h.jobs_of("tick").await.len() == 2
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn forbid_skips_while_a_job_runs_and_replace_replaces_it() {
    let h = Harness::start().await;
    *h.clock.lock().unwrap() += jiff::SignedDuration::from_secs(61);
    h.create("forbid", serde_json::json!({"concurrencyPolicy": "Forbid"}))
        .await;
    h.create(
        "replace",
        serde_json::json!({"concurrencyPolicy": "Replace"}),
    )
    .await;
    eventually("each has a job", || async {
        h.jobs_of("forbid").await.len() == 1 && h.jobs_of("replace").await.len() == 1
    })
    .await;
    let first_replaced = h.jobs_of("replace").await.remove(0);

    h.advance("forbid", 60).await;
    h.advance("replace", 0).await;
    eventually("Forbid reports the running job", || async {
        h.has_event("JobAlreadyActive").await
    })
    .await;
    assert_eq!(
        h.jobs_of("forbid").await.len(),
        1,
        "Forbid starts nothing while a job runs"
    );
    eventually("Replace swaps the job", || async {
        let jobs = h.jobs_of("replace").await;
        jobs.len() == 1 && jobs[0].metadata.name != first_replaced.metadata.name
    })
    .await;
    let active = h
        .cronjobs
        .get("replace")
        .await
        .unwrap()
        .status
        .unwrap()
        .active
        .unwrap();
    assert_eq!(active.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn suspended_cronjobs_and_past_deadlines_start_nothing() {
    let h = Harness::start().await;
    // Half past a minute, 90 to 150 s after the CronJobs are made: the last scheduled time is 30 s old.
    let now = jiff::Timestamp::now();
    let at = jiff::Timestamp::from_second((now.as_second() / 60) * 60 + 150).unwrap();
    *h.clock.lock().unwrap() = at;
    h.create("paused", serde_json::json!({"suspend": true}))
        .await;
    h.create("late", serde_json::json!({"startingDeadlineSeconds": 10}))
        .await;
    h.advance("late", 0).await;
    assert!(h.jobs_of("paused").await.is_empty());
    h.cronjobs
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    eventually("resumed, the missed run starts", || async {
        h.jobs_of("paused").await.len() == 1
    })
    .await;
    h.advance("late", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        h.jobs_of("late").await.is_empty(),
        "a run older than startingDeadlineSeconds is not started"
    );
    assert!(
        h.cronjobs
            .get("late")
            .await
            .unwrap()
            .status
            .and_then(|s| s.last_schedule_time)
            .is_none()
    );
    h.stop().await;
}

#[tokio::test]
async fn history_limits_delete_the_oldest_finished_jobs() {
    let h = Harness::start().await;
    *h.clock.lock().unwrap() += jiff::SignedDuration::from_secs(61);
    h.create(
        "hist",
        serde_json::json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}),
    )
    .await;
    for n in 1..=3 {
        eventually("a new job", || async {
            h.jobs_of("hist")
                .await
                .iter()
                .any(|j| j.status.as_ref().is_none_or(|s| s.conditions.is_none()))
        })
        .await;
        let job = h
            .jobs_of("hist")
            .await
            .into_iter()
            .find(|j| j.status.as_ref().is_none_or(|s| s.conditions.is_none()))
            .unwrap();
        h.complete(&job, if n == 2 { "Failed" } else { "Complete" })
            .await;
        eventually("the job leaves the active list", || async {
            h.cronjobs
                .get("hist")
                .await
                .unwrap()
                .status
                .unwrap()
                .active
                .is_none_or(|a| a.is_empty())
        })
        .await;
        h.advance("hist", 60).await;
    }
    eventually("one successful job is kept, no failed one", || async {
        let jobs = h.jobs_of("hist").await;
        let finished: Vec<_> = jobs
            .iter()
            .filter(|j| j.status.as_ref().is_some_and(|s| s.conditions.is_some()))
            .collect();
        finished.len() == 1
    })
    .await;
    h.stop().await;
}
