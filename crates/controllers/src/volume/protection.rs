//! The storage-object-in-use protection controllers (upstream `pkg/controller/volume/pvcprotection` and
//! `pvprotection`): every claim carries `kubernetes.io/pvc-protection` and every volume
//! `kubernetes.io/pv-protection` (added here, as upstream's StorageObjectInUseProtection admission adds them at
//! create); a deleted claim keeps its finalizer while a pod that has not terminated uses it, a deleted volume
//! while it is Bound.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Error;
use super::caches::{Caches, run_synced};
use super::names::{PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER};
use super::persistentvolume::binder::{pod_claims, pod_is_active};
use crate::context::Context;

/// How often everything is re-synced without a change.
const SYNC_PERIOD: Duration = Duration::from_secs(30);

/// Runs both protection controllers until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let ctx = Arc::new(ctx);
    run_synced(&client, SYNC_PERIOD, shutdown, move |caches| {
        let ctx = ctx.clone();
        async move { sync_all(&ctx, &caches).await }
    })
    .await
}

/// Whether an active pod in the claim's namespace uses it, in `pods`.
pub fn claim_in_use<'a>(claim: &PersistentVolumeClaim, mut pods: impl Iterator<Item = &'a Pod>) -> bool {
    let name = claim.name_any();
    pods.any(|p| p.metadata.namespace == claim.metadata.namespace && pod_is_active(p) && pod_claims(p).contains(&name))
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.as_ref().is_some_and(|fs| fs.iter().any(|x| x == f))
}

/// Adds or removes `finalizer`, guarded by the object's resourceVersion.
async fn set_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str, present: bool) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers: Vec<String> = obj.meta().finalizers.clone().unwrap_or_default();
    finalizers.retain(|f| f != finalizer);
    if present {
        finalizers.push(finalizer.to_string());
    }
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.meta().resource_version}});
    match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn sync_all(ctx: &Context, caches: &Caches) {
    let pods = caches.pods.state();
    for claim in caches.claims.state() {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
        let protected = has_finalizer(&claim.metadata, PVC_PROTECTION_FINALIZER);
        let result = if claim.metadata.deletion_timestamp.is_none() {
            if protected { Ok(()) } else { set_finalizer(&api, &*claim, PVC_PROTECTION_FINALIZER, true).await }
        } else if protected && !claim_in_use(&claim, pods.iter().map(|p| &**p)) {
            // The cache may not have a pod created a moment ago: ask the API before letting the claim go.
            let live: Api<Pod> = Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
            match live.list(&ListParams::default()).await {
                Ok(list) if !claim_in_use(&claim, list.items.iter()) => set_finalizer(&api, &*claim, PVC_PROTECTION_FINALIZER, false).await,
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!(claim = %claim.name_any(), error = %e, "pvc protection");
        }
    }
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    for volume in caches.volumes.state() {
        let protected = has_finalizer(&volume.metadata, PV_PROTECTION_FINALIZER);
        let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let result = if volume.metadata.deletion_timestamp.is_none() {
            if protected { Ok(()) } else { set_finalizer(&volumes, &*volume, PV_PROTECTION_FINALIZER, true).await }
        } else if protected && !bound {
            set_finalizer(&volumes, &*volume, PV_PROTECTION_FINALIZER, false).await
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!(volume = %volume.name_any(), error = %e, "pv protection");
        }
    }
}
