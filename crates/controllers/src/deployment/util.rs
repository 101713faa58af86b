//! Deployment arithmetic and bookkeeping with no I/O (upstream's `deployment/util/deployment_util.go`):
//! the template hash, revision and replica annotations, maxSurge/maxUnavailable fenceposts, conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Skiff's opt-in: roll back to the previous revision when a rollout exceeds its progress deadline.
pub const AUTO_ROLLBACK: &str = "skiff.io/auto-rollback";
/// Set by the auto-rollback on the Deployment: the ReplicaSet it rolled back to (never rolled back from).
pub const AUTO_ROLLED_BACK_TO: &str = "skiff.io/auto-rolled-back-to";

// Condition reasons (upstream's names).
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// Annotations a ReplicaSet does not copy from its Deployment (and a rollback does not copy back).
fn skip_copy(key: &str) -> bool {
    matches!(key, LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO)
}

/// A template as JSON with every empty value (null, false, 0, "", {}, []) left out: Go's `omitempty`
/// view, so that a template that spells out defaults (`stdin: false`) is the same template as one that
/// does not, as upstream's semantic comparison of typed structs has it.
pub fn normalized(template: &PodTemplateSpec) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match v {
            Value::Object(m) => {
                m.retain(|_, x| !strip(x));
                m.is_empty()
            }
            Value::Array(a) => {
                for x in a.iter_mut() {
                    strip(x);
                }
                a.is_empty()
            }
            Value::Null => true,
            Value::Bool(b) => !*b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
        }
    }
    let mut v = serde_json::to_value(template).unwrap_or_default();
    strip(&mut v);
    v
}

/// Upstream's `ComputeHash`: FNV-32a of the template (here its normalized JSON form) and the collision
/// count, written as its decimal digits mapped onto the safe alphabet.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    write(normalized(template).to_string().as_bytes());
    if let Some(c) = collision_count {
        write(&(c as u32).to_le_bytes());
    }
    h.to_string().bytes().map(|b| crate::controller_utils::SAFE_ALPHABET[usize::from(b) % 27] as char).collect()
}

/// The template without the pod-template-hash label.
pub fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut()
        && let Some(l) = m.labels.as_mut()
    {
        l.remove(POD_TEMPLATE_HASH);
        if l.is_empty() {
            m.labels = None;
        }
    }
    t
}

/// Upstream's `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(&without_hash(a)) == normalized(&without_hash(b))
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0))
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

pub use crate::controller_utils::scaled_value;

/// Upstream's `ResolveFenceposts`: (maxSurge, maxUnavailable), surge rounded up, unavailable down; never
/// both zero.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let desired = replicas(d);
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), desired, true, "25%");
    let mut unavailable = scaled_value(ru.and_then(|r| r.max_unavailable.as_ref()), desired, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) { 0 } else { fenceposts(d).0 }
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// Sum of spec.replicas.
pub fn replica_count(sets: &[&ReplicaSet]) -> i32 {
    sets.iter().map(|r| rs_replicas(r)).sum()
}

pub fn actual_count(sets: &[&ReplicaSet]) -> i32 {
    sets.iter().map(|r| rs_status(r).0).sum()
}

pub fn ready_count(sets: &[&ReplicaSet]) -> i32 {
    sets.iter().map(|r| rs_status(r).1).sum()
}

pub fn available_count(sets: &[&ReplicaSet]) -> i32 {
    sets.iter().map(|r| rs_status(r).2).sum()
}

/// Copies the Deployment's annotations (but not the ones upstream skips) onto the set; true if it changed.
pub fn copy_annotations_to_rs(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// The annotations a rollback copies from a ReplicaSet to its Deployment (upstream's `SetDeploymentAnnotationsTo`).
pub fn annotations_from_rs(rs: &ReplicaSet) -> BTreeMap<String, String> {
    rs.metadata.annotations.iter().flatten().filter(|(k, _)| !skip_copy(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Sets desired-replicas and max-replicas; true if they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let (d, m) = (desired.to_string(), max.to_string());
    let changed = ann.get(DESIRED_REPLICAS) != Some(&d) || ann.get(MAX_REPLICAS) != Some(&m);
    ann.insert(DESIRED_REPLICAS.into(), d);
    ann.insert(MAX_REPLICAS.into(), m);
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.clone().unwrap_or_default();
    ann.get(DESIRED_REPLICAS) != Some(&desired.to_string()) || ann.get(MAX_REPLICAS) != Some(&max.to_string())
}

pub fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(DESIRED_REPLICAS)?.parse().ok()
}

pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(MAX_REPLICAS)?.parse().ok()
}

/// Upstream's `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the revision to
/// `new_revision` (keeping the old one in revision-history when a set comes back), and for a set about
/// to be created, the replica annotations. True if anything changed.
pub fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    const HISTORY_LIMIT_CHARS: usize = 2000;
    let mut changed = copy_annotations_to_rs(d, rs);
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = ann.get(REVISION).cloned();
    let old_int = match old.as_deref().map(str::parse::<i64>) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return changed,
        None => 0,
    };
    if old_int < new_revision {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = ann.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revs: Vec<String> = if history.is_empty() { Vec::new() } else { history.split(',').map(String::from).collect() };
            revs.push(old);
            while revs.join(",").len() > HISTORY_LIMIT_CHARS && revs.len() > 1 {
                revs.remove(0);
            }
            ann.insert(REVISION_HISTORY.into(), revs.join(","));
        }
    }
    if !exists {
        let desired = replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired + max_surge(d));
    }
    changed
}

pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|p| p != i32::MAX)
}

pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: String, now: jiff::Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `SetDeploymentCondition`: no change when status and reason are the same; the transition
/// time is kept when only the reason changes.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_.clone());
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

/// Upstream's `DeploymentComplete`.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream's `DeploymentProgressing`: more updated, fewer old, more ready or more available pods.
pub fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Upstream's `DeploymentTimedOut`.
pub fn timed_out(d: &Deployment, s: &DeploymentStatus, now: jiff::Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = get_condition(s, "Progressing") else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => {
            let deadline = i64::from(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600));
            c.last_update_time.as_ref().is_some_and(|t| t.0.as_second() + deadline < now.as_second())
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deploy(replicas: i32, surge: Option<IntOrString>, unavailable: Option<IntOrString>) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment { max_surge: surge, max_unavailable: unavailable }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        let d = deploy(10, None, None);
        assert_eq!(fenceposts(&d), (3, 2));
        // 0 and 0 becomes unavailable 1.
        let d = deploy(3, Some(IntOrString::Int(0)), Some(IntOrString::Int(0)));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 1));
        // percentages of 1 replica: surge 1, unavailable 0.
        let d = deploy(1, Some(IntOrString::String("25%".into())), Some(IntOrString::String("25%".into())));
        assert_eq!(fenceposts(&d), (1, 0));
        // maxUnavailable never exceeds replicas.
        let d = deploy(2, Some(IntOrString::Int(0)), Some(IntOrString::Int(5)));
        assert_eq!(max_unavailable(&d), 2);
    }

    #[test]
    fn hash_is_stable_and_changes_with_collisions() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() }),
            spec: None,
        };
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t, None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)) && !h.is_empty() && h.len() <= 10);
        let mut hashed = t.clone();
        hashed.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), h);
        assert!(equal_ignore_hash(&t, &hashed));
        // Spelled-out zero values do not make another template.
        let mut explicit = t.clone();
        explicit.metadata.as_mut().unwrap().generation = Some(0);
        explicit.spec = Some(k8s_openapi::api::core::v1::PodSpec { host_network: Some(false), ..Default::default() });
        let mut plain = t.clone();
        plain.spec = Some(Default::default());
        assert!(equal_ignore_hash(&explicit, &plain));
        assert_eq!(compute_hash(&explicit, None), compute_hash(&plain, None));
    }

    #[test]
    fn revision_history_on_comeback() {
        let d = Deployment {
            metadata: ObjectMeta {
                annotations: Some([("kubernetes.io/change-cause".to_string(), "v2".to_string())].into()),
                ..Default::default()
            },
            ..deploy(3, None, None)
        };
        let mut rs = ReplicaSet {
            metadata: ObjectMeta { annotations: Some([(REVISION.to_string(), "1".to_string())].into()), ..Default::default() },
            ..Default::default()
        };
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        let a = rs.metadata.annotations.unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert_eq!(a["kubernetes.io/change-cause"], "v2");
        assert!(!a.contains_key(DESIRED_REPLICAS));
    }

    #[test]
    fn conditions_keep_transition_time() {
        let mut s = DeploymentStatus::default();
        let t0 = jiff::Timestamp::from_second(10).unwrap();
        let t1 = jiff::Timestamp::from_second(20).unwrap();
        set_condition(&mut s, new_condition("Progressing", "True", NEW_RS_CREATED, "a".into(), t0));
        set_condition(&mut s, new_condition("Progressing", "True", RS_UPDATED, "b".into(), t1));
        let c = get_condition(&s, "Progressing").unwrap();
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(c.last_transition_time.as_ref().unwrap().0, t0);
        assert_eq!(c.last_update_time.as_ref().unwrap().0, t1);
    }
}
