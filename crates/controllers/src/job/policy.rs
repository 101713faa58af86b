//! A Job's podFailurePolicy matched against a failed pod (upstream `pod_failure_policy.go`).

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a matching rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    FailJob,
    Ignore,
    Count,
    FailIndex,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "FailJob" => Some(Self::FailJob),
            "Ignore" => Some(Self::Ignore),
            "Count" => Some(Self::Count),
            "FailIndex" => Some(Self::FailIndex),
            _ => None,
        }
    }
}

/// The first rule matching the failed pod, with upstream's message for FailJob.
pub fn match_pod_failure_policy(
    policy: Option<&PodFailurePolicy>,
    pod: &Pod,
) -> Option<(Action, String)> {
    let policy = policy?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        let Some(action) = Action::parse(&rule.action) else {
            continue;
        };
        if let Some(req) = &rule.on_exit_codes
            && let Some(cs) = matching_container(pod, req)
        {
            let code = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map_or(0, |t| t.exit_code);
            let msg = format!(
                "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                cs.name, rule.action
            );
            return Some((action, msg));
        }
        for pattern in rule.on_pod_conditions.iter().flatten() {
            let has = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == pattern.type_ && c.status == pattern.status)
                });
            if has {
                let msg = format!(
                    "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                    pattern.type_, rule.action
                );
                return Some((action, msg));
            }
        }
    }
    None
}

fn matching_container<'a>(
    pod: &'a Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let st = pod.status.as_ref()?;
    let lists = [
        st.container_statuses.as_ref(),
        st.init_container_statuses.as_ref(),
    ];
    lists.into_iter().flatten().flatten().find(|cs| {
        let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        if req.container_name.as_ref().is_some_and(|n| *n != cs.name) || t.exit_code == 0 {
            return false;
        }
        match req.operator.as_str() {
            "In" => req.values.contains(&t.exit_code),
            "NotIn" => !req.values.contains(&t.exit_code),
            _ => false,
        }
    })
}

/// The first successPolicy rule the succeeded indexes meet, with upstream's message (Indexed Jobs only).
pub fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(indexes), count) => {
                let required: BTreeSet<i32> = super::parse_indexes(indexes)
                    .into_iter()
                    .filter(|i| *i < completions)
                    .collect();
                if required.is_empty() {
                    continue;
                }
                let done = required.intersection(succeeded).count() as i32;
                match count {
                    Some(c) => done >= c,
                    None => done == required.len() as i32,
                }
            }
            (None, Some(c)) => c <= succeeded.len() as i32,
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}
