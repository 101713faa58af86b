//! The PersistentVolume controller (upstream `pkg/controller/volume/persistentvolume`): binds claims to
//! volumes in both directions, keeps the phases of both, reclaims released volumes (Retain, Delete), and
//! carries out the expansion of bound claims whose class allows it.
//!
//! Expansion only raises the recorded sizes (the volume's `spec.capacity`, the claim's `status.capacity`):
//! Skiff's volumes are host directories, which have no size to grow, and the local-path provisioner does not
//! enforce capacity.

pub mod binder;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::binder::{claim_class, find_best_match, is_bound_to, selected_node, wait_for_first_consumer};
use super::Error;
use super::caches::{Caches, run_synced};
use super::events::Events;
use super::names::*;
use super::quantity;
use crate::context::Context;

/// Upstream's message when a hostPath volume with reclaim policy Delete is released.
pub const HOST_PATH_DELETER_MESSAGE: &str = "host_path deleter only supports /tmp/.+";

/// Settings of the PersistentVolume controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often everything is re-synced without a change (upstream `--pvclaimbinder-sync-period`, 15 s).
    pub sync_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self { sync_period: Duration::from_secs(15) }
    }
}

/// Runs the controller with the default settings until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(ctx, Config::default(), shutdown).await
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run_with(ctx: Context, config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let controller = Arc::new(Binder { events: Events::new(ctx.recorder.clone()), ctx: ctx.clone() });
    run_synced(&ctx.client, config.sync_period, shutdown, move |caches| {
        let c = controller.clone();
        async move { c.sync_all(&caches).await }
    })
    .await
}

struct Binder {
    ctx: Context,
    events: Events,
}

fn phase_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn phase_of_volume(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

impl Binder {
    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    async fn sync_all(&self, caches: &Caches) {
        for claim in caches.claims.state() {
            if let Err(e) = self.sync_claim(caches, &claim).await {
                tracing::debug!(claim = %binder::claim_key(&claim), error = %e, "syncing claim");
            }
        }
        for volume in caches.volumes.state() {
            if let Err(e) = self.sync_volume(caches, &volume).await {
                tracing::debug!(volume = %volume.name_any(), error = %e, "syncing volume");
            }
        }
    }

    /// Upstream `syncClaim`.
    async fn sync_claim(&self, caches: &Caches, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
        let spec = claim.spec.clone().unwrap_or_default();
        // Claims without a class get the default class (upstream's retroactive default StorageClass assignment).
        if spec.storage_class_name.is_none()
            && spec.volume_name.as_deref().unwrap_or("").is_empty()
            && let Some(default) = default_class(caches)
        {
            let patch = json!({"spec": {"storageClassName": default}});
            self.claims_api(&claim.namespace().unwrap_or_default())
                .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok(());
        }
        match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            None => self.sync_unbound_claim(caches, claim).await,
            Some(name) => self.sync_bound_claim(caches, claim, name).await,
        }
    }

    async fn sync_unbound_claim(&self, caches: &Caches, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
        let class_name = claim_class(claim);
        let class = if class_name.is_empty() { None } else { caches.class(class_name) };
        let pods = caches.pods.state();
        let node_name = selected_node(claim, &pods);
        let delay = wait_for_first_consumer(class.as_deref()) && node_name.is_none();
        let node = node_name.as_deref().map(|n| (n, caches.node(n)));
        let volumes = caches.volumes.state();
        if let Some(volume) = find_best_match(claim, &volumes, node.as_ref().map(|(n, node)| (*n, node.as_deref())), delay) {
            return self.bind(claim, &volume).await;
        }
        if phase_of_claim(claim) != "Pending" {
            self.set_claim_phase(claim, "Pending").await?;
        }
        if class_name.is_empty() {
            self.events
                .emit(claim, EventType::Normal, "FailedBinding", "no persistent volumes available for this claim and no storage class is set".into())
                .await;
            return Ok(());
        }
        let Some(class) = class else {
            self.events
                .emit(claim, EventType::Warning, "ProvisioningFailed", format!("storageclass.storage.k8s.io \"{class_name}\" not found"))
                .await;
            return Ok(());
        };
        if delay {
            self.events
                .emit(claim, EventType::Normal, "WaitForFirstConsumer", "waiting for first consumer to be created before binding".into())
                .await;
            return Ok(());
        }
        if class.provisioner == "kubernetes.io/no-provisioner" {
            self.events
                .emit(claim, EventType::Normal, "FailedBinding", "no persistent volumes available for this claim and no storage class is set".into())
                .await;
            return Ok(());
        }
        // Hand the claim to its provisioner (upstream's external provisioning: the annotations say who).
        if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(class.provisioner.as_str()) {
            let patch = json!({"metadata": {"annotations": {ANN_STORAGE_PROVISIONER: class.provisioner, ANN_BETA_STORAGE_PROVISIONER: class.provisioner}}});
            self.claims_api(&claim.namespace().unwrap_or_default())
                .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        self.events
            .emit(
                claim,
                EventType::Normal,
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                    class.provisioner
                ),
            )
            .await;
        Ok(())
    }

    async fn sync_bound_claim(&self, caches: &Caches, claim: &PersistentVolumeClaim, volume_name: &str) -> Result<(), kube::Error> {
        let Some(volume) = caches.volume(volume_name) else {
            if phase_of_claim(claim) == "Bound" {
                self.set_claim_phase(claim, "Lost").await?;
                self.events
                    .emit(claim, EventType::Warning, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into())
                    .await;
            }
            return Ok(());
        };
        let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_none() || is_bound_to(&volume, claim) {
            self.bind(claim, &volume).await?;
            return self.expand(caches, claim, &volume).await;
        }
        if phase_of_claim(claim) == "Bound" {
            self.set_claim_phase(claim, "Lost").await?;
            self.events
                .emit(claim, EventType::Warning, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly".into())
                .await;
        } else {
            self.events
                .emit(claim, EventType::Warning, "FailedBinding", format!("volume \"{volume_name}\" already bound to a different claim."))
                .await;
        }
        Ok(())
    }

    /// Upstream `bind`: the volume's claimRef and phase, then the claim's volumeName, annotations and status;
    /// each write only when it changes something.
    async fn bind(&self, claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Result<(), kube::Error> {
        let vname = volume.name_any();
        let ns = claim.namespace().unwrap_or_default();
        let uid_matches = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|r| r.uid.as_deref()) == claim.metadata.uid.as_deref();
        if !is_bound_to(volume, claim) || !uid_matches {
            let mut patch = json!({"spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                "name": claim.name_any(), "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version}}});
            if !is_bound_to(volume, claim) {
                patch["metadata"] = json!({"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}});
            }
            self.volumes_api().patch(&vname, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        if phase_of_volume(volume) != "Bound" {
            let patch = json!({"status": {"phase": "Bound", "message": null, "reason": null}});
            self.volumes_api().patch_status(&vname, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let claims = self.claims_api(&ns);
        let spec_volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
        if spec_volume != vname || annotation(&claim.metadata, ANN_BIND_COMPLETED) != Some("yes") {
            let mut annotations = json!({ANN_BIND_COMPLETED: "yes"});
            if spec_volume != vname {
                annotations[ANN_BOUND_BY_CONTROLLER] = json!("yes");
            }
            let patch = json!({"metadata": {"annotations": annotations}, "spec": {"volumeName": vname}});
            claims.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let vspec = volume.spec.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        let first_bind = status.phase.as_deref() != Some("Bound");
        if first_bind || status.access_modes != vspec.access_modes {
            let mut s = json!({"phase": "Bound", "accessModes": vspec.access_modes});
            if first_bind {
                s["capacity"] = json!(vspec.capacity);
            }
            claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": s}))).await?;
        }
        Ok(())
    }

    /// The resizer's part of expansion: a bound claim asking for more than its volume has, in a class that
    /// allows expansion, gets the volume's capacity raised and its own `status.capacity` updated.
    async fn expand(&self, caches: &Caches, claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Result<(), kube::Error> {
        let requests = claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.clone()).unwrap_or_default();
        let Some(request_q) = requests.get("storage") else { return Ok(()) };
        let request = quantity::bytes(&request_q.0).unwrap_or(0.0);
        let status_capacity = quantity::storage(claim.status.as_ref().and_then(|s| s.capacity.as_ref())).unwrap_or(0.0);
        if request <= status_capacity || phase_of_claim(claim) != "Bound" {
            return Ok(());
        }
        let class = caches.class(claim_class(claim));
        if !class.as_ref().is_some_and(|c| c.allow_volume_expansion == Some(true)) {
            return Ok(());
        }
        let vname = volume.name_any();
        if binder::capacity(volume) < request {
            let patch = json!({"spec": {"capacity": {"storage": request_q}}});
            self.volumes_api().patch(&vname, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let mut capacity: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        capacity.insert("storage".into(), json!(request_q));
        let patch = json!({"status": {"capacity": capacity}});
        self.claims_api(&claim.namespace().unwrap_or_default())
            .patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.events
            .emit(claim, EventType::Normal, "VolumeResizeSuccessful", format!("resize volume \"{vname}\" to {} succeeded", request_q.0))
            .await;
        Ok(())
    }

    async fn set_claim_phase(&self, claim: &PersistentVolumeClaim, phase: &str) -> Result<(), kube::Error> {
        let patch = json!({"status": {"phase": phase}});
        self.claims_api(&claim.namespace().unwrap_or_default())
            .patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    async fn set_volume_phase(&self, volume: &PersistentVolume, phase: &str, message: Option<&str>) -> Result<(), kube::Error> {
        let patch = json!({"status": {"phase": phase, "message": message}});
        self.volumes_api().patch_status(&volume.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
    }

    /// Upstream `syncVolume`.
    async fn sync_volume(&self, caches: &Caches, volume: &PersistentVolume) -> Result<(), kube::Error> {
        let phase = phase_of_volume(volume);
        let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            if phase != "Available" {
                self.set_volume_phase(volume, "Available", None).await?;
            }
            return Ok(());
        };
        let ns = claim_ref.namespace.clone().unwrap_or_default();
        let name = claim_ref.name.clone().unwrap_or_default();
        let ref_uid = claim_ref.uid.clone().unwrap_or_default();
        let mut claim = caches.claim(&ns, &name).map(|c| (*c).clone());
        if claim.is_none() && !ref_uid.is_empty() {
            // The cache may lag: ask the API before calling the claim gone.
            claim = self.claims_api(&ns).get_opt(&name).await?;
        }
        if ref_uid.is_empty() {
            // Pre-bound by a user: the claim side binds it once the claim exists.
            if phase.is_empty() || phase == "Pending" {
                self.set_volume_phase(volume, "Available", None).await?;
            }
            return Ok(());
        }
        let Some(claim) = claim.filter(|c| c.metadata.uid.as_deref() == Some(ref_uid.as_str())) else {
            return self.reclaim(caches, volume).await;
        };
        let claim_volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
        if claim_volume == volume.name_any() {
            if phase != "Bound" {
                self.set_volume_phase(volume, "Bound", None).await?;
            }
        } else if claim_volume.is_empty() {
            if phase.is_empty() || phase == "Pending" {
                self.set_volume_phase(volume, "Available", None).await?;
            }
        } else if annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
            // The claim went to another volume: give this one back.
            let patch = json!({"spec": {"claimRef": null}, "metadata": {"annotations": {ANN_BOUND_BY_CONTROLLER: null}}});
            self.volumes_api().patch(&volume.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            self.set_volume_phase(volume, "Available", None).await?;
        }
        Ok(())
    }

    /// A volume whose claim is gone: Released, then what its reclaim policy says.
    async fn reclaim(&self, _caches: &Caches, volume: &PersistentVolume) -> Result<(), kube::Error> {
        let phase = phase_of_volume(volume);
        if phase == "Failed" {
            return Ok(());
        }
        if phase != "Released" {
            self.set_volume_phase(volume, "Released", None).await?;
        }
        if volume.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let spec = volume.spec.clone().unwrap_or_default();
        match spec.persistent_volume_reclaim_policy.as_deref().unwrap_or("Retain") {
            "Retain" => Ok(()),
            "Delete" => {
                let provisioned_by = annotation(&volume.metadata, ANN_PROVISIONED_BY);
                if provisioned_by == Some(LOCAL_PATH_PROVISIONER) {
                    // The local-path provisioner deletes it once the node removed the directory.
                    return Ok(());
                }
                if provisioned_by.is_some() {
                    // An external provisioner deletes what it provisioned.
                    return Ok(());
                }
                let message = if spec.host_path.is_some() {
                    HOST_PATH_DELETER_MESSAGE.to_string()
                } else {
                    format!("error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched", volume.name_any())
                };
                self.set_volume_phase(volume, "Failed", Some(&message)).await?;
                self.events.emit(volume, EventType::Warning, "VolumeFailedDelete", message).await;
                Ok(())
            }
            "Recycle" => {
                let message = "No recycler plugin found for the volume!".to_string();
                self.set_volume_phase(volume, "Failed", Some(&message)).await?;
                self.events.emit(volume, EventType::Warning, "VolumeFailedRecycle", message).await;
                Ok(())
            }
            other => {
                let message = format!("unknown reclaim policy {other:?}");
                self.set_volume_phase(volume, "Failed", Some(&message)).await?;
                Ok(())
            }
        }
    }
}

/// The default StorageClass (annotated `storageclass.kubernetes.io/is-default-class: "true"`); with several,
/// the newest, as upstream.
pub fn default_class(caches: &Caches) -> Option<String> {
    let mut defaults: Vec<_> = caches
        .classes
        .state()
        .into_iter()
        .filter(|c| annotation(&c.metadata, ANN_DEFAULT_CLASS) == Some("true"))
        .collect();
    defaults.sort_by(|a, b| {
        b.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)).then_with(|| a.name_any().cmp(&b.name_any()))
    });
    defaults.first().map(|c| c.name_any())
}
