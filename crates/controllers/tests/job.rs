//! The Job controller against the in-process API server; pods are driven by patching their status, as a
//! kubelet would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::job::{self, COMPLETION_INDEX, TRACKING_FINALIZER};

mod support;
use support::{Running, eventually, manual_clock, start_server};


struct Harness {
    _server: skiff_apiserver::testing::InProcess,
    jobs: Api<Job>,
    pods: Api<Pod>,
    clock: Arc<Mutex<jiff::Timestamp>>,
    controller: Running<job::Error>,
}

impl Harness {
    async fn start() -> Self {
        let (server, client) = start_server().await;
        let (clock, controller_clock) = manual_clock();
        let config = job::Config {
            clock: controller_clock,
            pod_backoff_base: Duration::ZERO,
        };
        let controller = Running::spawn(&client, |ctx, shutdown| job::run_with(ctx, config, shutdown));
        Harness {
            jobs: Api::namespaced(client.clone(), "default"),
            pods: Api::namespaced(client, "default"),
            clock,
            controller,
            _server: server,
        }
    }

    async fn stop(self) {
        self.controller.stop().await;
    }

    async fn create(&self, name: &str, spec: serde_json::Value) -> Job {
        let mut spec = spec;
        spec["template"] = serde_json::json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
        let job: Job =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
                .unwrap();
        self.jobs
            .create(&PostParams::default(), &job)
            .await
            .unwrap()
    }

    /// The job's pods that are neither finished nor being deleted.
    async fn active_pods(&self, job: &str) -> Vec<Pod> {
        self.pods(job)
            .await
            .into_iter()
            .filter(skiff_controllers::pod_util::is_pod_active)
            .collect()
    }

    async fn pods(&self, job: &str) -> Vec<Pod> {
        self.pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .unwrap()
            .items
    }

    async fn finish(&self, pod: &Pod, phase: &str, exit_code: i32) {
        let status = serde_json::json!({"status": {"phase": phase, "containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "finishedAt": jiff::Timestamp::now().to_string()}}
        }]}});
        let name = pod.metadata.name.as_deref().unwrap();
        self.pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    async fn condition(&self, job: &str, type_: &str) -> Option<(String, String)> {
        let j = self.jobs.get(job).await.ok()?;
        let c = j
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == type_ && c.status == "True")?;
        Some((c.reason.unwrap_or_default(), c.message.unwrap_or_default()))
    }
}

#[tokio::test]
async fn completions_with_parallelism_complete_the_job() {
    let h = Harness::start().await;
    h.create(
        "pi",
        serde_json::json!({"completions": 3, "parallelism": 2}),
    )
    .await;
    let mut done: i32 = 0;
    while done < 3 {
        eventually("two pods run (or the last one)", || async {
            h.active_pods("pi").await.len() == 2.min(3 - done) as usize
        })
        .await;
        let active = h.active_pods("pi").await;
        assert!(active.len() <= 2, "parallelism caps the running pods");
        let pod = &active[0];
        assert!(
            pod.metadata
                .finalizers
                .as_ref()
                .unwrap()
                .contains(&TRACKING_FINALIZER.to_string())
        );
        h.finish(pod, "Succeeded", 0).await;
        done += 1;
        eventually("the success is counted", || async {
            h.jobs
                .get("pi")
                .await
                .unwrap()
                .status
                .and_then(|s| s.succeeded)
                == Some(done)
        })
        .await;
    }
    eventually("the job is Complete", || async {
        h.condition("pi", "Complete").await.is_some()
    })
    .await;
    let job = h.jobs.get("pi").await.unwrap();
    let status = job.status.unwrap();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active, Some(0));
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "SuccessCriteriaMet"
                && c.reason.as_deref() == Some("CompletionsReached"))
    );
    let pods = h.pods("pi").await;
    assert_eq!(pods.len(), 3, "exactly three pods were ever made");
    assert!(
        pods.iter()
            .all(|p| p.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty())),
        "finalizers are removed once counted"
    );
    // One SuccessfulCreate event per pod (not folded into one series), and the Completed event.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(h.jobs.clone().into_client(), "default");
    let events = events.list(&ListParams::default()).await.unwrap().items;
    let about_pi = |reason: &str| {
        events
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("pi")
            })
            .count()
    };
    assert_eq!(about_pi("SuccessfulCreate"), 3);
    assert_eq!(about_pi("Completed"), 1);
    h.stop().await;
}

#[tokio::test]
async fn failures_past_the_backoff_limit_fail_the_job() {
    let h = Harness::start().await;
    h.create("flaky", serde_json::json!({"backoffLimit": 1}))
        .await;
    for failures in 1..=2 {
        eventually("a pod runs", || async {
            h.active_pods("flaky").await.len() == 1
        })
        .await;
        let pod = h.active_pods("flaky").await.remove(0);
        h.finish(&pod, "Failed", 1).await;
        eventually("the failure is counted", || async {
            h.jobs
                .get("flaky")
                .await
                .unwrap()
                .status
                .and_then(|s| s.failed)
                == Some(failures)
        })
        .await;
    }
    eventually("the job is Failed", || async {
        h.condition("flaky", "Failed").await.is_some()
    })
    .await;
    let (reason, message) = h.condition("flaky", "Failed").await.unwrap();
    assert_eq!(
        (reason.as_str(), message.as_str()),
        (
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit"
        )
    );
    assert!(h.condition("flaky", "FailureTarget").await.is_some());
    assert_eq!(h.pods("flaky").await.len(), 2, "no pod after the limit");
    h.stop().await;
}

#[tokio::test]
async fn indexed_jobs_run_one_pod_per_index() {
    let h = Harness::start().await;
    h.create(
        "idx",
        serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    )
    .await;
    eventually("three indexed pods", || async {
        h.active_pods("idx").await.len() == 3
    })
    .await;
    let mut pods = h.active_pods("idx").await;
    pods.sort_by_key(|p| p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX].clone());
    for (i, pod) in pods.iter().enumerate() {
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX],
            i.to_string()
        );
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX],
            i.to_string()
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
        assert!(
            spec.containers[0]
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "JOB_COMPLETION_INDEX")
        );
    }
    h.finish(&pods[1], "Succeeded", 0).await;
    eventually("index 1 is completed", || async {
        h.jobs
            .get("idx")
            .await
            .unwrap()
            .status
            .and_then(|s| s.completed_indexes)
            .as_deref()
            == Some("1")
    })
    .await;
    // A failed index is retried with a pod of the same index.
    h.finish(&pods[0], "Failed", 1).await;
    eventually("index 0 runs again", || async {
        h.active_pods("idx")
            .await
            .iter()
            .filter(|p| p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX] == "0")
            .count()
            == 1
    })
    .await;
    for pod in h.active_pods("idx").await {
        h.finish(&pod, "Succeeded", 0).await;
    }
    eventually("the job is Complete", || async {
        h.condition("idx", "Complete").await.is_some()
    })
    .await;
    let status = h.jobs.get("idx").await.unwrap().status.unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((status.succeeded, status.failed), (Some(3), Some(1)));
    h.stop().await;
}

#[tokio::test]
async fn suspend_removes_pods_and_resume_brings_them_back() {
    let h = Harness::start().await;
    h.create(
        "sus",
        serde_json::json!({"suspend": true, "parallelism": 2, "completions": 4}),
    )
    .await;
    eventually("the job is Suspended", || async {
        h.condition("sus", "Suspended").await.is_some()
    })
    .await;
    assert!(h.active_pods("sus").await.is_empty());
    let (reason, _) = h.condition("sus", "Suspended").await.unwrap();
    assert_eq!(reason, "JobSuspended");
    let patch = |v: bool| serde_json::json!({"spec": {"suspend": v}});
    h.jobs
        .patch("sus", &PatchParams::default(), &Patch::Merge(&patch(false)))
        .await
        .unwrap();
    eventually("two pods run", || async {
        h.active_pods("sus").await.len() == 2
    })
    .await;
    h.jobs
        .patch("sus", &PatchParams::default(), &Patch::Merge(&patch(true)))
        .await
        .unwrap();
    eventually("the pods are removed", || async {
        h.active_pods("sus").await.is_empty()
    })
    .await;
    eventually("suspended again", || async {
        h.condition("sus", "Suspended").await.is_some()
    })
    .await;
    let status = h.jobs.get("sus").await.unwrap().status.unwrap();
    assert_eq!(
        status.failed.unwrap_or(0),
        0,
        "pods removed for suspension are not failures"
    );
    h.stop().await;
}

#[tokio::test]
async fn pod_failure_policy_fails_the_job_on_an_exit_code_and_ignores_disruptions() {
    let h = Harness::start().await;
    h.create(
        "pfp",
        serde_json::json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}
        ]}}),
    )
    .await;
    eventually("a pod runs", || async {
        h.active_pods("pfp").await.len() == 1
    })
    .await;
    let pod = h.active_pods("pfp").await.remove(0);
    h.finish(&pod, "Failed", 7).await;
    eventually("an ignored failure is replaced", || async {
        h.active_pods("pfp").await.len() == 1 && h.pods("pfp").await.len() == 2
    })
    .await;
    assert_eq!(
        h.jobs
            .get("pfp")
            .await
            .unwrap()
            .status
            .unwrap()
            .failed
            .unwrap_or(0),
        0,
        "the ignored failure is not counted"
    );
    let pod = h.active_pods("pfp").await.remove(0);
    h.finish(&pod, "Failed", 42).await;
    eventually("the job is Failed", || async {
        h.condition("pfp", "Failed").await.is_some()
    })
    .await;
    let (reason, message) = h.condition("pfp", "Failed").await.unwrap();
    assert_eq!(reason, "PodFailurePolicy");
    assert!(
        message.starts_with("Container main for pod default/pfp-")
            && message.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{message}"
    );
    h.stop().await;
}

#[tokio::test]
async fn active_deadline_and_ttl_after_finished() {
    let h = Harness::start().await;
    h.create(
        "slow",
        serde_json::json!({"activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 30}),
    )
    .await;
    eventually("a pod runs", || async {
        h.active_pods("slow").await.len() == 1
    })
    .await;
    // Two minutes pass: the deadline is gone. A touch of the Job makes the controller look at once.
    *h.clock.lock().unwrap() += jiff::SignedDuration::from_secs(120);
    let touch = serde_json::json!({"metadata": {"annotations": {"touch": "1"}}});
    h.jobs
        .patch("slow", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    eventually("the job failed on its deadline", || async {
        h.condition("slow", "Failed").await.is_some()
    })
    .await;
    assert_eq!(
        h.condition("slow", "Failed").await.unwrap().0,
        "DeadlineExceeded"
    );
    assert!(
        h.active_pods("slow").await.is_empty(),
        "the running pod is deleted"
    );
    // The TTL runs from the failure: a minute later the Job is deleted.
    *h.clock.lock().unwrap() += jiff::SignedDuration::from_secs(60);
    let touch = serde_json::json!({"metadata": {"annotations": {"touch": "2"}}});
    h.jobs
        .patch("slow", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    eventually("the finished job is deleted after its TTL", || async {
        h.jobs
            .get_opt("slow")
            .await
            .unwrap()
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn pods_of_a_deleted_job_lose_the_tracking_finalizer() {
    let h = Harness::start().await;
    h.create(
        "gone",
        serde_json::json!({"parallelism": 2, "completions": 2}),
    )
    .await;
    eventually("two pods run", || async {
        h.active_pods("gone").await.len() == 2
    })
    .await;
    h.jobs
        .delete("gone", &kube::api::DeleteParams::background())
        .await
        .unwrap();
    eventually("no pod keeps the finalizer", || async {
        h.pods("gone").await.iter().all(|p| {
            p.metadata
                .finalizers
                .as_ref()
                .is_none_or(|f| !f.contains(&TRACKING_FINALIZER.to_string()))
        })
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_met_success_policy_completes_an_indexed_job_early() {
    let h = Harness::start().await;
    let spec = serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed", "successPolicy": {"rules": [{"succeededIndexes": "0"}]}});
    h.create("leader", spec).await;
    eventually("three indexed pods", || async {
        h.active_pods("leader").await.len() == 3
    })
    .await;
    let leader = h
        .active_pods("leader")
        .await
        .into_iter()
        .find(|p| p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX] == "0")
        .unwrap();
    h.finish(&leader, "Succeeded", 0).await;
    eventually("the job is Complete", || async {
        h.condition("leader", "Complete").await.is_some()
    })
    .await;
    assert_eq!(
        h.condition("leader", "Complete").await.unwrap(),
        (
            "SuccessPolicy".to_string(),
            "Matched rules at index 0".to_string()
        )
    );
    assert!(
        h.active_pods("leader").await.is_empty(),
        "the other indexes are stopped"
    );
    h.stop().await;
}

/// Binds a pod to a node (so its deletion is graceful and it stays terminating) and deletes it.
async fn bind_and_delete(h: &Harness, pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap();
    let binding = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}});
    h.pods
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
        .unwrap();
    h.pods
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn deleted_pods_are_replaced_at_once_or_after_termination_with_policy_failed() {
    let h = Harness::start().await;
    h.create("eager", serde_json::json!({"backoffLimit": 3}))
        .await;
    h.create(
        "patient",
        serde_json::json!({"backoffLimit": 3, "podReplacementPolicy": "Failed"}),
    )
    .await;
    eventually("both run a pod", || async {
        h.active_pods("eager").await.len() == 1 && h.active_pods("patient").await.len() == 1
    })
    .await;
    let eager = h.active_pods("eager").await.remove(0);
    let patient = h.active_pods("patient").await.remove(0);
    bind_and_delete(&h, &eager).await;
    bind_and_delete(&h, &patient).await;
    eventually(
        "the default policy replaces the terminating pod and counts a failure",
        || async {
            h.active_pods("eager").await.len() == 1
                && h.jobs
                    .get("eager")
                    .await
                    .unwrap()
                    .status
                    .and_then(|s| s.failed)
                    == Some(1)
        },
    )
    .await;
    eventually("the terminating pod is reported", || async {
        h.jobs
            .get("patient")
            .await
            .unwrap()
            .status
            .and_then(|s| s.terminating)
            == Some(1)
    })
    .await;
    assert!(
        h.active_pods("patient").await.is_empty(),
        "policy Failed waits for the pod to finish"
    );
    // The kubelet reports the pod Failed: now it is replaced.
    h.finish(&patient, "Failed", 137).await;
    eventually("replaced once failed", || async {
        h.active_pods("patient").await.len() == 1
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn backoff_limit_per_index_fails_only_that_index() {
    let h = Harness::start().await;
    let spec = serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed", "backoffLimitPerIndex": 1});
    h.create("per", spec).await;
    eventually("three indexed pods", || async {
        h.active_pods("per").await.len() == 3
    })
    .await;
    let of = |pods: Vec<Pod>, i: &str| {
        pods.into_iter()
            .find(|p| p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX] == i)
    };
    for attempt in 0..2 {
        eventually("index 1 runs", || async {
            of(h.active_pods("per").await, "1").is_some()
        })
        .await;
        let pod = of(h.active_pods("per").await, "1").unwrap();
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()[job::INDEX_FAILURE_COUNT],
            attempt.to_string()
        );
        h.finish(&pod, "Failed", 1).await;
        eventually("the failure is counted", || async {
            h.jobs
                .get("per")
                .await
                .unwrap()
                .status
                .and_then(|s| s.failed)
                == Some(attempt + 1)
        })
        .await;
    }
    eventually("index 1 is failed", || async {
        h.jobs
            .get("per")
            .await
            .unwrap()
            .status
            .and_then(|s| s.failed_indexes)
            .as_deref()
            == Some("1")
    })
    .await;
    assert!(
        of(h.active_pods("per").await, "1").is_none(),
        "a failed index is not retried"
    );
    for i in ["0", "2"] {
        let pod = of(h.active_pods("per").await, i).unwrap();
        h.finish(&pod, "Succeeded", 0).await;
    }
    eventually("the job is Failed", || async {
        h.condition("per", "Failed").await.is_some()
    })
    .await;
    assert_eq!(
        h.condition("per", "Failed").await.unwrap(),
        (
            "FailedIndexes".to_string(),
            "Job has failed indexes".to_string()
        )
    );
    assert_eq!(
        h.jobs
            .get("per")
            .await
            .unwrap()
            .status
            .unwrap()
            .completed_indexes
            .as_deref(),
        Some("0,2")
    );
    h.stop().await;
}
