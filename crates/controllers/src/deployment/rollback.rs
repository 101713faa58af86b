//! Skiff's opt-in automatic rollback: a Deployment annotated `skiff.io/auto-rollback: "true"` whose
//! rollout exceeded its progress deadline gets the previous revision's template back (what
//! `kubectl rollout undo` does), with an `AutoRolledBack` event and a `RolledBack` condition.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::PostParams;
use kube::runtime::events::EventType;

use super::sync::{find_new, old_indices};
use super::util::*;
use super::{Error, State, write_status};

/// The condition type recorded on the Deployment.
pub const ROLLED_BACK: &str = "RolledBack";
/// The event and condition reason.
pub const AUTO_ROLLED_BACK: &str = "AutoRolledBack";

/// The set to roll back to: the highest revision below the new set's, if the rollout timed out, the
/// Deployment opted in, and the new set is not itself the result of an automatic rollback.
pub fn rollback_target<'a>(d: &Deployment, sets: &'a [ReplicaSet]) -> Option<(&'a ReplicaSet, &'a ReplicaSet)> {
    let ann = d.metadata.annotations.as_ref()?;
    if ann.get(AUTO_ROLLBACK).map(String::as_str) != Some("true") || d.spec.as_ref()?.paused == Some(true) {
        return None;
    }
    let status = d.status.as_ref()?;
    let cond = get_condition(status, "Progressing")?;
    if cond.status != "False" || cond.reason.as_deref() != Some(TIMED_OUT) {
        return None;
    }
    let new = find_new(d, sets)?;
    let new_rs = &sets[new];
    if ann.get(AUTO_ROLLED_BACK_TO) == new_rs.metadata.name.as_ref() {
        return None;
    }
    let new_rev = revision_of(new_rs);
    let prev = old_indices(sets, Some(new))
        .into_iter()
        .map(|i| &sets[i])
        .filter(|r| revision_of(r) < new_rev && r.spec.as_ref().and_then(|s| s.template.as_ref()).is_some())
        .max_by_key(|r| revision_of(r))?;
    Some((new_rs, prev))
}

/// Rolls back when `rollback_target` finds a target; true if it did.
pub async fn auto_rollback(state: &State, d: &mut Deployment, sets: &[ReplicaSet]) -> Result<bool, Error> {
    let Some((failed, prev)) = rollback_target(d, sets) else { return Ok(false) };
    let (failed_name, failed_rev) = (failed.metadata.name.clone().unwrap_or_default(), revision_of(failed));
    let (prev_name, prev_rev) = (prev.metadata.name.clone().unwrap_or_default(), revision_of(prev));
    let template = without_hash(prev.spec.as_ref().and_then(|s| s.template.as_ref()).expect("filtered"));
    let mut updated = d.clone();
    if let Some(spec) = updated.spec.as_mut() {
        spec.template = template;
    }
    let ann = updated.metadata.annotations.get_or_insert_with(Default::default);
    // As `kubectl rollout undo`: the revision's annotations (change-cause) come back with its template.
    ann.remove("kubernetes.io/change-cause");
    ann.extend(annotations_from_rs(prev));
    ann.insert(AUTO_ROLLED_BACK_TO.into(), prev_name.clone());
    ann.insert(AUTO_ROLLBACK.into(), "true".into());
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let mut written = state.deploy_api(&ns).replace(&name, &PostParams::default(), &updated).await?;
    let msg = format!(
        "Rolled back to revision {prev_rev} (ReplicaSet {prev_name:?}): revision {failed_rev} (ReplicaSet {failed_name:?}) exceeded its progress deadline"
    );
    state.event(d, EventType::Warning, AUTO_ROLLED_BACK, msg.clone()).await;
    let mut status = written.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    remove_condition(&mut status, ROLLED_BACK);
    set_condition(&mut status, new_condition(ROLLED_BACK, "True", AUTO_ROLLED_BACK, msg, now));
    write_status(state, &mut written, status).await?;
    *d = written;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus, ReplicaSetSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec { containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }], ..Default::default() }),
        }
    }

    fn rs(name: &str, revision: i64, image: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some([(REVISION.to_string(), revision.to_string())].into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { template: Some(template(image)), ..Default::default() }),
            status: None,
        }
    }

    fn timed_out_deploy(image: &str, annotations: &[(&str, &str)]) -> Deployment {
        let mut status = DeploymentStatus::default();
        set_condition(&mut status, new_condition("Progressing", "False", TIMED_OUT, "x".into(), jiff::Timestamp::now()));
        Deployment {
            metadata: ObjectMeta {
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec { template: template(image), ..Default::default() }),
            status: Some(status),
        }
    }

    #[test]
    fn rolls_back_only_when_opted_in_and_timed_out() {
        let sets = vec![rs("v1", 1, "a"), rs("v2", 2, "b"), rs("v3", 3, "c")];
        let d = timed_out_deploy("c", &[(AUTO_ROLLBACK, "true")]);
        let (failed, prev) = rollback_target(&d, &sets).unwrap();
        assert_eq!((failed.metadata.name.as_deref(), prev.metadata.name.as_deref()), (Some("v3"), Some("v2")));
        // Not opted in.
        assert!(rollback_target(&timed_out_deploy("c", &[]), &sets).is_none());
        // Never away from the set an automatic rollback went to (no flapping between two bad revisions).
        let d = timed_out_deploy("c", &[(AUTO_ROLLBACK, "true"), (AUTO_ROLLED_BACK_TO, "v3")]);
        assert!(rollback_target(&d, &sets).is_none());
        // Still progressing: nothing to do.
        let mut d = timed_out_deploy("c", &[(AUTO_ROLLBACK, "true")]);
        d.status = Some(DeploymentStatus::default());
        assert!(rollback_target(&d, &sets).is_none());
    }
}
