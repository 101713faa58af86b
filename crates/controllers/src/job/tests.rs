//! Unit tests of the Job controller's pure parts: pod construction, failure policy, indexes, backoff.

use super::*;
use k8s_openapi::api::batch::v1::{
    JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodSpec,
    PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn job(indexed: bool) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completion_mode: indexed.then(|| "Indexed".into()),
            completions: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "pi".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn failed_pod(code: i32, conditions: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Failed".into()),
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s)| PodCondition {
                        type_: t.to_string(),
                        status: s.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

#[test]
fn indexed_pod_has_index_everywhere() {
    let pod = new_pod(&job(true), Some(2));
    let meta = &pod.metadata;
    assert_eq!(meta.generate_name.as_deref(), Some("pi-2-"));
    assert_eq!(meta.annotations.as_ref().unwrap()[COMPLETION_INDEX], "2");
    assert_eq!(meta.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
    assert_eq!(meta.labels.as_ref().unwrap()["app"], "pi");
    assert_eq!(
        meta.finalizers.as_deref(),
        Some(&[TRACKING_FINALIZER.to_string()][..])
    );
    assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "u1");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
    let env = &spec.containers[0].env.as_ref().unwrap()[0];
    assert_eq!(env.name, "JOB_COMPLETION_INDEX");
    assert_eq!(
        env.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        format!("metadata.annotations['{COMPLETION_INDEX}']")
    );
}

#[test]
fn non_indexed_pod_has_no_index() {
    let pod = new_pod(&job(false), None);
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
    assert!(pod.metadata.annotations.is_none());
    assert!(pod.spec.unwrap().hostname.is_none());
}

#[test]
fn long_job_names_are_cut_for_generated_names() {
    let mut j = job(true);
    j.metadata.name = Some("a".repeat(63));
    let pod = new_pod(&j, Some(12));
    let g = pod.metadata.generate_name.unwrap();
    assert_eq!(g.len(), 58);
    assert!(g.ends_with("-12-"));
}

#[test]
fn indexes_round_trip() {
    let set = parse_indexes("1,3-5,7");
    assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4, 5, 7]);
    assert_eq!(format_indexes(&set), "1,3-5,7");
    assert_eq!(format_indexes(&BTreeSet::new()), "");
    assert_eq!(format_indexes(&parse_indexes("0,1,2")), "0-2");
    assert!(parse_indexes("x,5-2,-1").is_empty());
}

fn policy(rules: Vec<PodFailurePolicyRule>) -> PodFailurePolicy {
    PodFailurePolicy { rules }
}

#[test]
fn failure_policy_matches_exit_codes_and_conditions() {
    let p = policy(vec![
        PodFailurePolicyRule {
            action: "Ignore".into(),
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
            }]),
            ..Default::default()
        },
        PodFailurePolicyRule {
            action: "FailJob".into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some("main".into()),
                operator: "In".into(),
                values: vec![42],
            }),
            ..Default::default()
        },
        PodFailurePolicyRule {
            action: "Count".into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: "NotIn".into(),
                values: vec![1],
            }),
            ..Default::default()
        },
    ]);
    let (a, msg) = policy::match_pod_failure_policy(Some(&p), &failed_pod(42, &[])).unwrap();
    assert_eq!(a, policy::Action::FailJob);
    assert_eq!(
        msg,
        "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
    );
    let (a, msg) = policy::match_pod_failure_policy(
        Some(&p),
        &failed_pod(42, &[("DisruptionTarget", "True")]),
    )
    .unwrap();
    assert_eq!(a, policy::Action::Ignore);
    assert_eq!(
        msg,
        "Pod ns/p has condition DisruptionTarget matching Ignore rule at index 0"
    );
    assert_eq!(
        policy::match_pod_failure_policy(Some(&p), &failed_pod(3, &[]))
            .unwrap()
            .0,
        policy::Action::Count
    );
    // Exit code 1 is excluded by NotIn and nothing else matches; exit code 0 never matches.
    assert!(policy::match_pod_failure_policy(Some(&p), &failed_pod(1, &[])).is_none());
    assert!(policy::match_pod_failure_policy(Some(&p), &failed_pod(0, &[])).is_none());
    assert!(policy::match_pod_failure_policy(None, &failed_pod(42, &[])).is_none());
}

#[test]
fn restarts_count_against_backoff_limit_with_on_failure() {
    let mut j = job(false);
    let spec = j.spec.as_mut().unwrap();
    spec.backoff_limit = Some(2);
    spec.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    let mut pod = failed_pod(1, &[]);
    let st = pod.status.as_mut().unwrap();
    st.phase = Some("Running".into());
    st.container_statuses.as_mut().unwrap()[0].restart_count = 1;
    assert!(!past_backoff_limit_on_failure(&j, &[&pod]));
    pod.status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .restart_count = 2;
    assert!(past_backoff_limit_on_failure(&j, &[&pod]));
    j.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = Some("Never".into());
    assert!(!past_backoff_limit_on_failure(&j, &[&pod]));
}

#[test]
fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
    let mut j = job(false);
    let mut pod = failed_pod(0, &[]);
    pod.status.as_mut().unwrap().phase = Some("Running".into());
    assert!(!is_pod_failed(&pod, &j));
    pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    assert!(is_pod_failed(&pod, &j));
    j.spec.as_mut().unwrap().pod_replacement_policy = Some("Failed".into());
    assert!(!is_pod_failed(&pod, &j));
}

#[test]
fn pod_backoff_doubles_and_caps() {
    let j = job(false);
    let config = Config {
        clock: system_clock(),
        pod_backoff_base: Duration::from_secs(10),
    };
    let now = jiff::Timestamp::from_second(1_000).unwrap();
    let mut pod = failed_pod(1, &[]);
    pod.status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .state
        .as_mut()
        .unwrap()
        .terminated
        .as_mut()
        .unwrap()
        .finished_at = Some(Time(jiff::Timestamp::from_second(995).unwrap()));
    let pods = vec![pod];
    assert_eq!(
        pod_backoff(&config, &pods, &j, 1, now),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        pod_backoff(&config, &pods, &j, 3, now),
        Some(Duration::from_secs(35))
    );
    assert_eq!(
        pod_backoff(&config, &pods, &j, 30, now),
        Some(Duration::from_secs(355))
    );
    assert_eq!(pod_backoff(&config, &pods, &j, 0, now), None);
}

#[test]
fn success_policy_rules() {
    use k8s_openapi::api::batch::v1::{SuccessPolicy, SuccessPolicyRule};
    let p = SuccessPolicy {
        rules: vec![
            SuccessPolicyRule {
                succeeded_indexes: Some("0-2".into()),
                succeeded_count: Some(2),
            },
            SuccessPolicyRule {
                succeeded_indexes: None,
                succeeded_count: Some(4),
            },
        ],
    };
    let done = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
    assert_eq!(
        policy::match_success_policy(Some(&p), 10, &done(&[0, 5])),
        None
    );
    assert_eq!(
        policy::match_success_policy(Some(&p), 10, &done(&[0, 2])).as_deref(),
        Some("Matched rules at index 0")
    );
    assert_eq!(
        policy::match_success_policy(Some(&p), 10, &done(&[5, 6, 7, 8])).as_deref(),
        Some("Matched rules at index 1")
    );
    assert_eq!(
        policy::match_success_policy(None, 10, &done(&[0, 1, 2])),
        None
    );
}
