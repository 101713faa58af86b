//! The StatefulSet controller (upstream `pkg/controller/statefulset`): pods with stable names `<set>-<i>`,
//! stable hostnames under the governing Service and their own PVCs, created in order (OrderedReady) or all at
//! once (Parallel), rolled from the highest ordinal down to the partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_revision::{self, REVISION_HASH_LABEL};
use crate::controller_utils::object_reference;
use crate::controller_utils::pod_from_template;
use crate::controller_utils::{Clock, claim_pods, log_reconcile_errors, publish, publish_related, selector_params, system_clock};
use crate::pod_util::{controller_ref, is_pod_available, is_pod_ready};

/// The label with a StatefulSet pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("statefulset api call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("statefulset {0} has an invalid selector: {1}")]
    Selector(String, String),
}

/// Settings of the StatefulSet controller.
#[derive(Clone)]
pub struct Config {
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

/// Runs the StatefulSet controller until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, Config::default(), shutdown).await
}

/// Runs the StatefulSet controller with explicit settings.
pub async fn run_with(
    ctx: Context,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = ctx.client.clone();
    let recorder = ctx.recorder.clone();
    let state = Arc::new(State {
        ctx,
        config,
        recorder,
    });
    let results = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
    .owns(
        Api::<ControllerRevision>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, state);
    log_reconcile_errors(results, "statefulset").await;
    Ok(())
}

fn error_policy(_set: Arc<StatefulSet>, err: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(error = %err, "statefulset sync failed, retrying");
    match err {
        // A bad selector does not heal by retrying; the next change to the object brings it back.
        Error::Selector(..) => Action::requeue(Duration::from_secs(300)),
        Error::Kube(_) => Action::requeue(Duration::from_secs(1)),
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Healthy as upstream means it: running, ready and not being deleted.
fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

fn pod_revision(pod: &Pod) -> Option<&str> {
    controller_revision::revision_label(&pod.metadata)
}

/// The ordinal of a pod named `<set>-<i>`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty()
        || !rest.bytes().all(|b| b.is_ascii_digit())
        || (rest.len() > 1 && rest.starts_with('0'))
    {
        return None;
    }
    rest.parse().ok()
}

/// The PVC name of one claim template for one pod: `<claim>-<set>-<i>`.
pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// The pod for `ordinal` from `template` (the set's, or an older revision's), labelled with `revision`.
pub fn new_pod(
    set: &StatefulSet,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ordinal: i32,
    revision: &str,
) -> Pod {
    let set_name = set.name_any();
    let name = format!("{set_name}-{ordinal}");
    let mut pod = pod_from_template(
        template,
        &set.namespace().unwrap_or_default(),
        &name,
        controller_ref(set),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name.clone());
    if let Some(svc) = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.as_deref())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc.into());
    }
    for claim in set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
    {
        let cname = claim.metadata.name.clone().unwrap_or_default();
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != cname);
        volumes.push(Volume {
            name: cname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&cname, &set_name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    pod
}

/// The PVCs a pod needs (upstream `getPersistentVolumeClaims`): the templates, named per pod, labelled with
/// the set's selector labels, owned by the set when the retention policy deletes them with it.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|mut claim| {
            let cname = claim.metadata.name.clone().unwrap_or_default();
            claim.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(claim_name(&cname, &set.name_any(), ordinal)),
                namespace: set.namespace(),
                labels: Some({
                    let mut l = claim.metadata.labels.take().unwrap_or_default();
                    l.extend(selector_labels.clone());
                    l
                }),
                annotations: claim.metadata.annotations.take(),
                owner_references: if delete_with_set {
                    controller_ref(set).map(|r| vec![r])
                } else {
                    None
                },
                ..Default::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

async fn reconcile(cached: Arc<StatefulSet>, st: Arc<State>) -> Result<Action, Error> {
    let client = st.ctx.client.clone();
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, &ns);
    let Some(set) = sets.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = set.uid().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let Some(lp) =
        selector_params(Some(&spec.selector)).map_err(|e| Error::Selector(name.clone(), e))?
    else {
        return Ok(Action::await_change());
    };
    let now = (st.config.clock)();
    let pods: Vec<Pod> = claim_pods(&pods_api, &set, pods_api.list(&lp).await?.items).await?;

    // Revisions: the update revision is the current template's; the current one is what the set last settled on.
    let mut revisions =
        controller_revision::list_revisions(&revs_api, Some(&spec.selector), &uid).await?;
    let old_status = set.status.clone().unwrap_or_default();
    let mut collision_count = old_status.collision_count.unwrap_or(0);
    let update_rev = controller_revision::current_revision(
        &revs_api,
        &set,
        &spec.template,
        &mut revisions,
        &mut collision_count,
    )
    .await?;
    let current_rev = old_status
        .current_revision
        .as_ref()
        .and_then(|n| {
            revisions
                .iter()
                .find(|r| r.metadata.name.as_ref() == Some(n))
        })
        .cloned()
        .unwrap_or_else(|| update_rev.clone());
    let update_name = update_rev.name_any();
    let current_name = current_rev.name_any();
    let current_template =
        controller_revision::template_of(&current_rev).unwrap_or_else(|| spec.template.clone());

    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let monotonic = spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady")
        != "Parallel";
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);

    let mut by_ordinal: BTreeMap<i32, &Pod> = BTreeMap::new();
    for pod in &pods {
        if let Some(i) = ordinal_of(&name, &pod.name_any()) {
            by_ordinal.insert(i, pod);
        }
    }
    let in_range = |i: i32| i >= start && i < start + replicas;
    let condemned: Vec<i32> = by_ordinal
        .keys()
        .copied()
        .filter(|i| !in_range(*i))
        .rev()
        .collect();

    let mut blocked = false;
    // 1. Replicas: replace finished pods, create missing ones (in order when OrderedReady).
    for ordinal in start..start + replicas {
        match by_ordinal.get(&ordinal) {
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") && !is_terminating(pod) => {
                delete_pod(&st, &pods_api, &set, pod).await?;
                if monotonic {
                    blocked = true;
                    break;
                }
            }
            Some(pod) => {
                if monotonic && !is_healthy(pod) {
                    blocked = true;
                    break;
                }
            }
            None => {
                let (template, revision) = if rolling && ordinal < start + partition {
                    (&current_template, &current_name)
                } else {
                    (&spec.template, &update_name)
                };
                create_claims(&st, &pvcs, &set, ordinal).await?;
                let pod = new_pod(&set, template, ordinal, revision);
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        let msg = format!(
                            "create Pod {} in StatefulSet {name} successful",
                            pod.name_any()
                        );
                        publish_related(
                            &st.recorder,
                            &set,
                            object_reference(&pod),
                            EventType::Normal,
                            "SuccessfulCreate",
                            msg,
                        )
                        .await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        let msg = format!(
                            "create Pod {} in StatefulSet {name} failed error: {e}",
                            pod.name_any()
                        );
                        publish(&st.recorder, &set, EventType::Warning, "FailedCreate", msg).await;
                        return Err(e.into());
                    }
                }
                if monotonic {
                    blocked = true;
                    break;
                }
            }
        }
    }

    // 2. Condemned pods (beyond the replicas), highest ordinal first; one at a time when OrderedReady.
    if !blocked {
        for ordinal in &condemned {
            let pod = by_ordinal[ordinal];
            if is_terminating(pod) {
                if monotonic {
                    blocked = true;
                    break;
                }
                continue;
            }
            if monotonic
                && by_ordinal
                    .iter()
                    .any(|(i, p)| i != ordinal && !is_healthy(p))
            {
                blocked = true;
                break;
            }
            delete_pod(&st, &pods_api, &set, pod).await?;
            if spec
                .persistent_volume_claim_retention_policy
                .as_ref()
                .and_then(|p| p.when_scaled.as_deref())
                == Some("Delete")
            {
                for claim in claims_for(&set, *ordinal) {
                    match pvcs
                        .delete(&claim.name_any(), &DeleteParams::default())
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if monotonic {
                blocked = true;
                break;
            }
        }
    }

    // 3. Rolling update: from the highest ordinal down to the partition, one pod at a time.
    if !blocked && rolling {
        for ordinal in (start + partition.max(0)..start + replicas).rev() {
            let Some(pod) = by_ordinal.get(&ordinal) else {
                break;
            };
            if pod_revision(pod) != Some(update_name.as_str()) && !is_terminating(pod) {
                delete_pod(&st, &pods_api, &set, pod).await?;
                break;
            }
            if !is_healthy(pod) {
                break;
            }
        }
    }

    // 4. Status from the pods as listed (what this sync changed shows in the next one).
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: Some(collision_count),
        current_revision: Some(current_name.clone()),
        update_revision: Some(update_name.clone()),
        ..Default::default()
    };
    let mut available = 0;
    let (mut ready, mut current, mut updated) = (0, 0, 0);
    for pod in &pods {
        status.replicas += 1;
        if is_running_and_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !is_terminating(pod) {
            if pod_revision(pod) == Some(current_name.as_str()) {
                current += 1;
            }
            if pod_revision(pod) == Some(update_name.as_str()) {
                updated += 1;
            }
        }
    }
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
    // A finished rolling update makes the update revision current.
    if rolling && updated == replicas && ready == replicas && status.replicas == replicas {
        status.current_replicas = Some(updated);
        status.current_revision = Some(update_name.clone());
    }
    if set.status.as_ref() != Some(&status) {
        let mut next = set.clone();
        next.status = Some(status.clone());
        sets.replace_status(&name, &PostParams::default(), &next)
            .await?;
    }

    // 5. History beyond revisionHistoryLimit, keeping what pods and the status still name.
    let mut live: Vec<String> = vec![
        update_name.clone(),
        status.current_revision.clone().unwrap_or_default(),
    ];
    live.extend(
        pods.iter()
            .filter_map(|p| pod_revision(p).map(String::from)),
    );
    controller_revision::truncate_history(
        &revs_api,
        &revisions,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    let wait = if min_ready > 0 {
        Duration::from_secs(u64::try_from(min_ready).unwrap_or(1))
    } else {
        Duration::from_secs(300)
    };
    Ok(Action::requeue(wait))
}

async fn create_claims(
    st: &State,
    pvcs: &Api<PersistentVolumeClaim>,
    set: &StatefulSet,
    ordinal: i32,
) -> Result<(), Error> {
    for claim in claims_for(set, ordinal) {
        let cname = claim.name_any();
        if pvcs.get_opt(&cname).await?.is_some() {
            continue;
        }
        match pvcs.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                let msg = format!(
                    "create Claim {cname} Pod {}-{ordinal} in StatefulSet {} success",
                    set.name_any(),
                    set.name_any()
                );
                publish_related(
                    &st.recorder,
                    set,
                    object_reference(&claim),
                    EventType::Normal,
                    "SuccessfulCreate",
                    msg,
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                let msg = format!(
                    "create Claim {cname} for Pod {}-{ordinal} in StatefulSet {} failed error: {e}",
                    set.name_any(),
                    set.name_any()
                );
                publish(&st.recorder, set, EventType::Warning, "FailedCreate", msg).await;
                return Err(e.into());
            }
        }
    }
    Ok(())
}

async fn delete_pod(
    st: &State,
    pods_api: &Api<Pod>,
    set: &StatefulSet,
    pod: &Pod,
) -> Result<(), Error> {
    match pods_api
        .delete(&pod.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {
            let msg = format!(
                "delete Pod {} in StatefulSet {} successful",
                pod.name_any(),
                set.name_any()
            );
            publish_related(
                &st.recorder,
                set,
                object_reference(pod),
                EventType::Normal,
                "SuccessfulDelete",
                msg,
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    };
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn set() -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                service_name: Some("nginx".into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "web".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("www".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some("Delete".into()),
                        when_scaled: Some("Retain".into()),
                    },
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn ordinals_parse_only_canonical_numbers() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn pods_have_identity_and_claims() {
        let s = set();
        let pod = new_pod(&s, &s.spec.as_ref().unwrap().template, 2, "web-abc");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_HASH_LABEL], "web-abc");
        let spec = pod.spec.unwrap();
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some("web-2"), Some("nginx"))
        );
        let vol = &spec.volumes.unwrap()[0];
        assert_eq!(vol.name, "www");
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-2"
        );
        let claims = claims_for(&s, 2);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-2"));
        assert_eq!(claims[0].metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(
            claims[0].metadata.owner_references.as_ref().unwrap()[0].kind,
            "StatefulSet"
        );
    }
}
