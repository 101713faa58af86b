//! ControllerRevisions of DaemonSets and StatefulSets (upstream `pkg/controller/history`): each pod template
//! a workload has had, stored as a patch, named `<owner>-<hash>`, numbered by revision.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};

use crate::controller_utils::SAFE_ALPHABET;
use crate::pod_util::{controller_ref, is_controlled_by};

/// The label with a revision's hash (DaemonSet pods) or name (StatefulSet pods).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The `controller-revision-hash` label of an object (a pod, or a revision itself).
pub fn revision_label(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(REVISION_HASH_LABEL).map(String::as_str)
}

/// FNV-1a over the template's JSON and the collision count, encoded as upstream encodes hashes (its decimal
/// digits mapped into the safe alphabet). Not byte-identical to Go's hash of the Go struct, but as stable.
pub fn hash_template(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |b: u8| {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    };
    bytes.iter().copied().for_each(&mut feed);
    if let Some(c) = collision_count {
        c.to_le_bytes().into_iter().for_each(&mut feed);
    }
    h.to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The patch a revision stores: `{"spec":{"template":{..., "$patch":"replace"}}}` (upstream's `getPatch`).
pub fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": t}})
}

/// The template a revision holds.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(obj) = t.as_object_mut() {
        obj.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// A new revision of `owner` for `template`.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = hash_template(template, collision_count);
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    let owner_name = owner.meta().name.clone().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{owner_name}-{hash}")),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: controller_ref(owner).map(|r| vec![r]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(template))),
        revision,
    }
}

/// Whether two revisions hold the same template.
pub fn same_template(a: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    template_of(a).is_some_and(|t| &t == template)
}

/// The owner's revisions (selected by its selector and controlled by it), oldest first.
pub async fn list_revisions(
    api: &Api<ControllerRevision>,
    selector: Option<&LabelSelector>,
    owner_uid: &str,
) -> Result<Vec<ControllerRevision>, kube::Error> {
    let Ok(Some(lp)) = crate::controller_utils::selector_params(selector) else {
        return Ok(Vec::new());
    };
    let mut revs: Vec<ControllerRevision> = api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|r| is_controlled_by(&r.metadata, owner_uid))
        .collect();
    revs.sort_by_key(|r| {
        (
            r.revision,
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    });
    Ok(revs)
}

/// Finds or makes the revision for the owner's current template (upstream's `constructHistory` /
/// `getStatefulSetRevisions`): an equal revision is reused (renumbered to the newest if it is not), else a new
/// one is created; a name taken by a different template bumps `collision_count`.
pub async fn current_revision<K: Resource<DynamicType = ()>>(
    api: &Api<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    revisions: &mut Vec<ControllerRevision>,
    collision_count: &mut i32,
) -> Result<ControllerRevision, kube::Error> {
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(pos) = revisions.iter().rposition(|r| same_template(r, template)) {
        let mut rev = revisions[pos].clone();
        if rev.revision != max {
            rev.revision = max + 1;
            rev = api
                .replace(&rev.name_any(), &PostParams::default(), &rev)
                .await?;
            revisions[pos] = rev.clone();
        }
        return Ok(rev);
    }
    loop {
        let rev = new_revision(owner, template, max + 1, Some(*collision_count));
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => {
                revisions.push(created.clone());
                return Ok(created);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&rev.name_any()).await?;
                let ours = existing.metadata.uid.is_some()
                    && is_controlled_by(
                        &existing.metadata,
                        owner.meta().uid.as_deref().unwrap_or(""),
                    );
                if ours && same_template(&existing, template) {
                    revisions.push(existing.clone());
                    return Ok(existing);
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deletes the oldest revisions not in `live` beyond `limit` (revisionHistoryLimit).
pub async fn truncate_history(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    live: &[String],
    limit: i32,
) -> Result<(), kube::Error> {
    let old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let excess = old
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    for rev in old.into_iter().take(excess) {
        match api.delete(&rev.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hashes_are_stable_safe_and_change_with_template_and_collisions() {
        let a = hash_template(&template("a"), None);
        assert_eq!(a, hash_template(&template("a"), None));
        assert_ne!(a, hash_template(&template("b"), None));
        assert_ne!(a, hash_template(&template("a"), Some(1)));
        assert!(a.bytes().all(|c| SAFE_ALPHABET.contains(&c)));
    }

    #[test]
    fn revisions_hold_their_template() {
        let ds = DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let rev = new_revision(&ds, &template("a"), 3, Some(0));
        let hash = hash_template(&template("a"), Some(0));
        assert_eq!(
            rev.metadata.name.as_deref(),
            Some(format!("agent-{hash}").as_str())
        );
        assert_eq!(
            rev.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL],
            hash
        );
        assert_eq!(rev.revision, 3);
        assert_eq!(
            rev.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(template_of(&rev), Some(template("a")));
        assert!(same_template(&rev, &template("a")));
        assert!(!same_template(&rev, &template("b")));
    }
}
