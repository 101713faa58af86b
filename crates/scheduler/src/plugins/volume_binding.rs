//! VolumeBinding, as upstream's plugin (simplified): the pod's PersistentVolumeClaims must exist and not be
//! being deleted; a bound claim's PersistentVolume must allow the node (`nodeAffinity.required`); an unbound
//! claim of an Immediate class makes the pod unschedulable until the PV controller binds it; an unbound claim
//! of a WaitForFirstConsumer class fits a node where an available matching static PV may go, or anywhere
//! when its class has a provisioner. The binding itself (PreBind) is [`prebind`]: static matches get the PV's
//! `claimRef`, claims to provision get `volume.kubernetes.io/selected-node`, then it waits until every claim
//! is Bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

use crate::cache::Cache;
use crate::framework::{CycleState, Plugin, PreFilterResult, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::resource::parse_value;
use crate::selector::{NodeTerm, Selector};

pub const NAME: &str = "VolumeBinding";
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const ERR_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const ERR_PV_NOT_FOUND: &str = "pvc(s) bound to non-existent pv(s)";
/// The annotation that asks the provisioner for a volume on this node.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
/// How long PreBind waits for the claims to be bound (upstream's `bindTimeoutSeconds` is 600).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(60);

/// The listers VolumeBinding reads: claims, volumes and classes (reflector stores).
#[derive(Clone)]
pub struct VolumeListers {
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
}

/// Kept for callers that name the old type.
pub type ClaimLookup = VolumeListers;

impl VolumeListers {
    /// Empty stores (no claims, volumes or classes), for tests.
    pub fn empty() -> Self {
        VolumeListers { claims: reflector::store().0, volumes: reflector::store().0, classes: reflector::store().0 }
    }

    /// Stores holding these objects, for tests.
    pub fn with(claims: &[PersistentVolumeClaim], volumes: &[PersistentVolume], classes: &[StorageClass]) -> Self {
        fn fill<K>(objs: &[K]) -> Store<K>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            let (reader, mut writer) = reflector::store();
            for o in objs {
                writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
            }
            reader
        }
        VolumeListers { claims: fill(claims), volumes: fill(volumes), classes: fill(classes) }
    }

    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(ns))
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }
}

pub struct VolumeBinding {
    pub listers: VolumeListers,
}

/// The claims a pod uses: `persistentVolumeClaim` volumes and generic ephemeral volumes (`<pod>-<volume>`).
pub fn pod_claims(pod: &PodInfo) -> Vec<String> {
    let Some(spec) = pod.pod.spec.as_ref() else { return vec![] };
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{}-{}", pod.name, v.name)),
            _ => None,
        })
        .collect()
}

fn claim_volume_name(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty())
}

fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

fn pv_class(pv: &PersistentVolume) -> &str {
    pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// Whether the PV's `nodeAffinity.required` admits the node (no affinity admits every node).
pub fn pv_allows_node(pv: &PersistentVolume, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let Some(required) = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref()) else {
        return true;
    };
    required.node_selector_terms.iter().map(NodeTerm::from_term).any(|t| t.matches(node_name, labels))
}

/// Whether a PV could be bound to the claim (upstream's `FindMatchingVolume`, without the node check):
/// class, pre-binding, phase, volume mode, access modes, capacity and selector.
pub fn pv_matches_claim(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(spec), Some(cspec)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else { return false };
    if pv.metadata.deletion_timestamp.is_some() || pv_class(pv) != claim_class(pvc) {
        return false;
    }
    if let Some(r) = &spec.claim_ref {
        let same = r.name.as_deref() == pvc.metadata.name.as_deref()
            && r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
            && r.uid.as_deref().is_none_or(|u| Some(u) == pvc.metadata.uid.as_deref());
        if !same {
            return false;
        }
    } else if pv.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p != "Available" && p != "Pending") {
        return false;
    }
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if mode(spec.volume_mode.as_ref()) != mode(cspec.volume_mode.as_ref()) {
        return false;
    }
    let pv_modes = spec.access_modes.clone().unwrap_or_default();
    if !cspec.access_modes.iter().flatten().all(|m| pv_modes.contains(m)) {
        return false;
    }
    let want = cspec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_value(&q.0))
        .unwrap_or(0);
    let have = spec.capacity.as_ref().and_then(|c| c.get("storage")).and_then(|q| parse_value(&q.0)).unwrap_or(0);
    if have < want {
        return false;
    }
    if cspec.selector.is_some() {
        let sel = Selector::from_label_selector(cspec.selector.as_ref());
        if !sel.matches(pv.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())) {
            return false;
        }
    }
    true
}

/// What pre-filter learned about the pod's claims.
#[derive(Clone, Debug, Default)]
struct PodVolumes {
    /// Volumes of the bound claims.
    bound: Vec<Arc<PersistentVolume>>,
    /// Unbound WaitForFirstConsumer claims, and whether their class can provision.
    delayed: Vec<(Arc<PersistentVolumeClaim>, bool)>,
}

impl VolumeBinding {
    fn pod_volumes(&self, pod: &PodInfo) -> Result<PodVolumes, Status> {
        let mut out = PodVolumes::default();
        for name in pod_claims(pod) {
            let Some(pvc) = self.listers.claim(&pod.namespace, &name) else {
                return Err(Status::unresolvable(NAME, format!("persistentvolumeclaim \"{name}\" not found")));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(NAME, format!("persistentvolumeclaim \"{name}\" is being deleted")));
            }
            if let Some(volume) = claim_volume_name(&pvc) {
                match self.listers.volume(volume) {
                    Some(pv) => out.bound.push(pv),
                    None => return Err(Status::unresolvable(NAME, ERR_PV_NOT_FOUND)),
                }
                continue;
            }
            let class_name = claim_class(&pvc);
            if class_name.is_empty() {
                return Err(Status::unresolvable(NAME, ERR_UNBOUND_IMMEDIATE));
            }
            let Some(class) = self.listers.class(class_name) else {
                return Err(Status::unresolvable(NAME, format!("storageclass.storage.k8s.io \"{class_name}\" not found")));
            };
            if class.volume_binding_mode.as_deref() != Some(WAIT_FOR_FIRST_CONSUMER) {
                return Err(Status::unresolvable(NAME, ERR_UNBOUND_IMMEDIATE));
            }
            let provisions = !class.provisioner.is_empty() && class.provisioner != "kubernetes.io/no-provisioner";
            out.delayed.push((pvc, provisions));
        }
        Ok(out)
    }

    /// An available static PV for the claim that admits the node.
    fn static_match(&self, pvc: &PersistentVolumeClaim, node_name: &str, labels: &BTreeMap<String, String>) -> Option<Arc<PersistentVolume>> {
        let mut found: Vec<Arc<PersistentVolume>> = self
            .listers
            .volumes
            .state()
            .into_iter()
            .filter(|pv| pv_matches_claim(pv, pvc) && pv_allows_node(pv, node_name, labels))
            .collect();
        // Pre-bound volumes first, then the smallest that fits (as upstream).
        let size = |pv: &PersistentVolume| {
            pv.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).and_then(|q| parse_value(&q.0)).unwrap_or(0)
        };
        found.sort_by_key(|pv| (pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none(), size(pv)));
        found.into_iter().next()
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _cache: &Cache) -> Result<PreFilterResult, Status> {
        if pod_claims(pod).is_empty() {
            return Ok(PreFilterResult::Skip);
        }
        let volumes = self.pod_volumes(pod)?;
        state.write(NAME, volumes);
        Ok(PreFilterResult::Continue)
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let Some(volumes) = state.read::<PodVolumes>(NAME) else { return Ok(()) };
        for pv in &volumes.bound {
            if !pv_allows_node(pv, &node.name, &node.labels) {
                return Err(Status::unresolvable(NAME, ERR_NODE_CONFLICT));
            }
        }
        for (pvc, provisions) in &volumes.delayed {
            if !provisions && self.static_match(pvc, &node.name, &node.labels).is_none() {
                return Err(Status::unresolvable(NAME, ERR_BIND_CONFLICT));
            }
        }
        Ok(())
    }
}

/// Why PreBind failed.
#[derive(Debug, thiserror::Error)]
pub enum PreBindError {
    #[error("binding volumes: {0}")]
    Api(#[from] kube::Error),
    #[error("binding volumes: timed out waiting for the condition (claim {0} is still unbound)")]
    Timeout(String),
    #[error("binding volumes: persistentvolumeclaim \"{0}\" not found")]
    ClaimGone(String),
}

/// PreBind: binds the pod's unbound WaitForFirstConsumer claims for `node` and waits (up to `timeout`)
/// until they are all Bound. A static PV that matches gets the claim as its `claimRef` (the PV controller
/// completes the binding); otherwise the claim gets `volume.kubernetes.io/selected-node` for the provisioner.
pub async fn prebind(
    client: &Client,
    listers: &VolumeListers,
    pod: &PodInfo,
    node: &str,
    node_labels: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), PreBindError> {
    let vb = VolumeBinding { listers: listers.clone() };
    let mut waiting = Vec::new();
    for name in pod_claims(pod) {
        let Some(pvc) = listers.claim(&pod.namespace, &name) else { continue };
        if claim_volume_name(&pvc).is_some() {
            continue;
        }
        let class = listers.class(claim_class(&pvc));
        if class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) != Some(WAIT_FOR_FIRST_CONSUMER) {
            continue;
        }
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &pod.namespace);
        if let Some(pv) = vb.static_match(&pvc, node, node_labels) {
            if pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none() {
                let volumes: Api<PersistentVolume> = Api::all(client.clone());
                let patch = json!({
                    "metadata": {"resourceVersion": pv.metadata.resource_version},
                    "spec": {"claimRef": {
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "namespace": pod.namespace, "name": name, "uid": pvc.metadata.uid,
                        "resourceVersion": pvc.metadata.resource_version,
                    }},
                });
                volumes
                    .patch(pv.metadata.name.as_deref().unwrap_or(""), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                    .await?;
            }
        } else {
            let current = pvc.metadata.annotations.as_ref().and_then(|a| a.get(ANN_SELECTED_NODE));
            if current.map(String::as_str) != Some(node) {
                let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
                match claims.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => return Err(PreBindError::ClaimGone(name)),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        waiting.push((claims, name));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    for (api, name) in waiting {
        let bound = |c: Option<&PersistentVolumeClaim>| {
            c.is_some_and(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") && claim_volume_name(c).is_some())
        };
        let wait = kube::runtime::wait::await_condition(api, &name, bound);
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(PreBindError::Timeout(format!("{name} ({e})"))),
            Err(_) => return Err(PreBindError::Timeout(name)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
