//! VolumeBinding: the seam for the storage issue. Pods without PersistentVolumeClaims pass untouched; for
//! pods with claims it checks that each claim exists, is not being deleted and is bound. Still to come with
//! the storage issue: WaitForFirstConsumer classes (binding in Reserve/PreBind), PV node affinity and
//! capacity.

use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::cache::Cache;
use crate::framework::{CycleState, Plugin, PreFilterResult, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const NAME: &str = "VolumeBinding";
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// Looks a claim up by namespace and name.
pub type ClaimLookup = Arc<dyn Fn(&str, &str) -> Option<Arc<PersistentVolumeClaim>> + Send + Sync>;

pub struct VolumeBinding {
    pub claims: ClaimLookup,
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

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn pre_filter(&self, _state: &mut CycleState, pod: &PodInfo, _cache: &Cache) -> Result<PreFilterResult, Status> {
        let claims = pod_claims(pod);
        if claims.is_empty() {
            return Ok(PreFilterResult::Skip);
        }
        for name in claims {
            let Some(pvc) = (self.claims)(&pod.namespace, &name) else {
                return Err(Status::unresolvable(NAME, format!("persistentvolumeclaim \"{name}\" not found")));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(NAME, format!("persistentvolumeclaim \"{name}\" is being deleted")));
            }
            let bound = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty());
            if !bound {
                return Err(Status::unresolvable(NAME, ERR_UNBOUND_IMMEDIATE));
            }
        }
        Ok(PreFilterResult::Continue)
    }

    fn filter(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> Result<(), Status> {
        // The storage issue adds the PersistentVolume's node affinity here.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_one};
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn filter() {
        let lookup: ClaimLookup = Arc::new(|_ns: &str, name: &str| match name {
            "bound" => Some(Arc::new(PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
                spec: Some(PersistentVolumeClaimSpec { volume_name: Some("pv1".into()), ..Default::default() }),
                status: None,
            })),
            "pending" => Some(Arc::new(PersistentVolumeClaim::default())),
            _ => None,
        });
        let pl = VolumeBinding { claims: lookup };
        let node = NodeBuilder::new("n").build();
        let cases = [
            ("no claims", PodBuilder::new("p").build(), Ok(())),
            ("bound claim", PodBuilder::new("p").pvc("bound").build(), Ok(())),
            ("unbound claim", PodBuilder::new("p").pvc("pending").build(), Err(ERR_UNBOUND_IMMEDIATE.to_string())),
            ("missing claim", PodBuilder::new("p").pvc("x").build(), Err("persistentvolumeclaim \"x\" not found".to_string())),
        ];
        for (name, pod, want) in cases {
            assert_eq!(filter_one(&pl, &pod, &node, &[]), want, "{name}");
        }
    }
}
