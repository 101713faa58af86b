//! The built-in local-path provisioner (as k3s's `rancher.io/local-path`): claims of a class with this
//! provisioner get a hostPath PersistentVolume `pvc-<uid>` under the storage directory of one node, pinned
//! there by node affinity and pre-bound to the claim. Immediate classes get a Ready node at once,
//! WaitForFirstConsumer classes the node the scheduler selected.
//!
//! The directory itself is made and removed by the node (the kubelet's half): a released volume with
//! reclaim policy Delete is deleted here only once the node has set `skiff.io/local-path-cleaned: "true"`
//! on it. Capacity is recorded, not enforced: the directory is a plain directory on the node's filesystem.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::EventType;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Error;
use super::caches::{Caches, run_synced};
use super::events::Events;
use super::names::*;
use super::persistentvolume::binder::{claim_class, selected_node, wait_for_first_consumer};
use crate::context::Context;

/// Settings of the local-path provisioner.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the volumes' directories live on every node (`<data-dir>/storage` on a Skiff server).
    pub base_path: PathBuf,
    /// How often everything is re-synced without a change.
    pub sync_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self { base_path: PathBuf::from("/var/lib/skiff/storage"), sync_period: Duration::from_secs(15) }
    }
}

/// Runs the provisioner until `shutdown` is cancelled.
pub async fn run(ctx: Context, config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let period = config.sync_period;
    let provisioner = Arc::new(Provisioner { events: Events::new(ctx.recorder.clone()), ctx: ctx.clone(), config });
    run_synced(&ctx.client, period, shutdown, move |caches| {
        let p = provisioner.clone();
        async move { p.sync_all(&caches).await }
    })
    .await
}

/// The name of the volume provisioned for a claim.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or(""))
}

/// The directory of a claim's volume on its node: `<base>/pvc-<uid>_<namespace>_<name>`.
pub fn volume_path(base: &std::path::Path, claim: &PersistentVolumeClaim) -> PathBuf {
    base.join(format!("{}_{}_{}", volume_name(claim), claim.namespace().unwrap_or_default(), claim.name_any()))
}

/// The PersistentVolume for `claim` on `node` (pre-bound to the claim, as external provisioners make them).
pub fn provisioned_volume(claim: &PersistentVolumeClaim, node: &str, base: &std::path::Path, reclaim_policy: &str) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    let value = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim), "annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
        "spec": {
            "capacity": {"storage": request},
            "accessModes": spec.access_modes,
            "persistentVolumeReclaimPolicy": reclaim_policy,
            "storageClassName": claim_class(claim),
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": volume_path(base, claim).to_string_lossy(), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": claim.namespace(),
                         "name": claim.name_any(), "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version},
        },
    });
    serde_json::from_value(value).expect("a well-formed PersistentVolume")
}

/// The node a local-path volume is pinned to (its `kubernetes.io/hostname` In value).
pub fn volume_node(volume: &PersistentVolume) -> Option<String> {
    let terms = &volume.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms;
    terms.iter().flat_map(|t| t.match_expressions.iter().flatten()).find_map(|e| {
        (e.key == "kubernetes.io/hostname" && e.operator == "In").then(|| e.values.as_ref()?.first().cloned()).flatten()
    })
}

fn node_is_ready(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true)
        && node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

struct Provisioner {
    ctx: Context,
    config: Config,
    events: Events,
}

impl Provisioner {
    async fn sync_all(&self, caches: &Caches) {
        for claim in caches.claims.state() {
            if let Err(e) = self.provision(caches, &claim).await {
                tracing::debug!(claim = %claim.name_any(), error = %e, "local-path provisioning");
            }
        }
        for volume in caches.volumes.state() {
            if let Err(e) = self.delete(caches, &volume).await {
                tracing::debug!(volume = %volume.name_any(), error = %e, "local-path deletion");
            }
        }
    }

    async fn provision(&self, caches: &Caches, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
        if claim.metadata.deletion_timestamp.is_some() || !claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("").is_empty() {
            return Ok(());
        }
        let class_name = claim_class(claim);
        let Some(class) = (!class_name.is_empty()).then(|| caches.class(class_name)).flatten() else { return Ok(()) };
        if class.provisioner != LOCAL_PATH_PROVISIONER {
            return Ok(());
        }
        let name = volume_name(claim);
        if caches.volume(&name).is_some() {
            return Ok(());
        }
        let node = if wait_for_first_consumer(Some(&*class)) {
            match selected_node(claim, &caches.pods.state()) {
                Some(n) => n,
                None => return Ok(()),
            }
        } else {
            let mut ready: Vec<String> = caches.nodes.state().iter().filter(|n| node_is_ready(n)).map(|n| n.name_any()).collect();
            ready.sort();
            match ready.into_iter().next() {
                Some(n) => n,
                None => {
                    self.events
                        .emit(claim, EventType::Warning, "ProvisioningFailed", "failed to provision volume with StorageClass \"".to_string() + class_name + "\": no Ready node to provision the volume on")
                        .await;
                    return Ok(());
                }
            }
        };
        let spec = claim.spec.clone().unwrap_or_default();
        if spec.volume_mode.as_deref() == Some("Block") {
            self.events
                .emit(claim, EventType::Warning, "ProvisioningFailed", format!("failed to provision volume with StorageClass \"{class_name}\": local-path supports only volumeMode Filesystem"))
                .await;
            return Ok(());
        }
        if spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).is_none() {
            self.events
                .emit(claim, EventType::Warning, "ProvisioningFailed", format!("failed to provision volume with StorageClass \"{class_name}\": the claim requests no storage"))
                .await;
            return Ok(());
        }
        self.events
            .emit(claim, EventType::Normal, "Provisioning", format!("External provisioner is provisioning volume for claim \"{}/{}\"", claim.namespace().unwrap_or_default(), claim.name_any()))
            .await;
        let policy = class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into());
        let volume = provisioned_volume(claim, &node, &self.config.base_path, &policy);
        match Api::<PersistentVolume>::all(self.ctx.client.clone()).create(&PostParams::default(), &volume).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
            Err(e) => {
                self.events
                    .emit(claim, EventType::Warning, "ProvisioningFailed", format!("failed to provision volume with StorageClass \"{class_name}\": {e}"))
                    .await;
                return Err(e);
            }
        }
        self.events.emit(claim, EventType::Normal, "ProvisioningSucceeded", format!("Successfully provisioned volume {name}")).await;
        Ok(())
    }

    async fn delete(&self, caches: &Caches, volume: &PersistentVolume) -> Result<(), kube::Error> {
        let annotations = volume.metadata.annotations.clone().unwrap_or_default();
        let spec = volume.spec.clone().unwrap_or_default();
        let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if annotations.get(ANN_PROVISIONED_BY).map(String::as_str) != Some(LOCAL_PATH_PROVISIONER)
            || phase != "Released"
            || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
            || volume.metadata.deletion_timestamp.is_some()
        {
            return Ok(());
        }
        if annotations.get(ANN_LOCAL_PATH_CLEANED).map(String::as_str) == Some("true") {
            return match Api::<PersistentVolume>::all(self.ctx.client.clone()).delete(&volume.name_any(), &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            };
        }
        match volume_node(volume) {
            Some(node) if caches.node(&node).is_none() => {
                self.events
                    .emit(
                        volume,
                        EventType::Warning,
                        "VolumeFailedDelete",
                        format!("node \"{node}\" of the volume is gone: its directory cannot be removed; delete the PersistentVolume by hand"),
                    )
                    .await;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisioned_volume_is_pinned_prebound_and_under_the_base() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path", "resources": {"requests": {"storage": "2Gi"}}}}))
        .unwrap();
        let v = provisioned_volume(&claim, "n1", std::path::Path::new("/data/storage"), "Delete");
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["metadata"]["name"], "pvc-u-1");
        assert_eq!(j["spec"]["hostPath"], json!({"path": "/data/storage/pvc-u-1_ns_data", "type": "DirectoryOrCreate"}));
        assert_eq!(j["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(j["spec"]["claimRef"]["uid"], "u-1");
        assert_eq!(j["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(volume_node(&v).as_deref(), Some("n1"));
    }
}
