//! persistentVolumeClaim volumes: the claim must exist, not be being deleted and be Bound; its
//! PersistentVolume's source is mounted: `hostPath` (with its type checks, `DirectoryOrCreate` creating the
//! directory) or `local` (the path must exist). Read-only when the volume says so or the claim asks only
//! for ReadOnlyMany. The data stays when the pod goes (upstream never deletes PV data on unmount).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource};
use kube::Api;

use super::VolumeError;
use super::host_path;

/// A claim's volume, resolved to what the node mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedClaim {
    pub volume_name: String,
    pub path: PathBuf,
    pub read_only: bool,
}

/// What the PersistentVolume's source asks the node to prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    HostPath { path: String, type_: Option<String> },
    Local { path: String },
}

fn api_err(kind: &'static str, ns: &str, name: &str) -> impl FnOnce(kube::Error) -> VolumeError {
    let (ns, name) = (ns.to_string(), name.to_string());
    move |source| VolumeError::Api { kind, namespace: ns, name, source: Box::new(source) }
}

/// Checks the claim and names its volume: the claim must not be being deleted and must be Bound.
pub fn bound_volume(claim: &PersistentVolumeClaim) -> Result<String, VolumeError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(VolumeError::ClaimBeingDeleted(format!("{ns}/{name}")));
    }
    let phase = claim.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
    let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        return Err(VolumeError::ClaimNotBound { name, phase });
    }
    Ok(volume)
}

/// The PV's mountable source; other sources are not supported on this node.
pub fn volume_source(pv: &PersistentVolume) -> Result<VolumeSource, VolumeError> {
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    let spec = pv.spec.as_ref().ok_or_else(|| VolumeError::Invalid(format!("persistentvolume \"{name}\" has no spec")))?;
    if let Some(hp) = &spec.host_path {
        return Ok(VolumeSource::HostPath { path: hp.path.clone(), type_: hp.type_.clone() });
    }
    if let Some(l) = &spec.local {
        return Ok(VolumeSource::Local { path: l.path.clone() });
    }
    Err(VolumeError::Invalid(format!(
        "persistentvolume \"{name}\" has a source this node cannot mount (supported: hostPath, local)"
    )))
}

/// Whether the volume is mounted read-only: the pod's `readOnly`, or a claim asking only for ReadOnlyMany.
pub fn read_only(source: &PersistentVolumeClaimVolumeSource, claim: &PersistentVolumeClaim) -> bool {
    let modes = claim.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default();
    source.read_only.unwrap_or(false) || (!modes.is_empty() && modes.iter().all(|m| m == "ReadOnlyMany"))
}

/// Prepares the source on this node (blocking: file system checks) and returns the path to mount.
pub fn prepare(source: &VolumeSource) -> Result<PathBuf, VolumeError> {
    match source {
        VolumeSource::HostPath { path, type_ } => host_path::prepare(path, type_.as_deref()),
        VolumeSource::Local { path } => {
            let p = PathBuf::from(path);
            if !p.is_absolute() {
                return Err(VolumeError::Invalid(format!("local volume path {path:?} must be an absolute path")));
            }
            if std::fs::metadata(&p).is_err() {
                return Err(VolumeError::LocalPathMissing(path.clone()));
            }
            Ok(p)
        }
    }
}

/// Resolves a pod's claim through the API and prepares its volume on the node.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    source: &PersistentVolumeClaimVolumeSource,
) -> Result<ResolvedClaim, VolumeError> {
    let claim_name = source.claim_name.as_str();
    if claim_name.is_empty() {
        return Err(VolumeError::Invalid("persistentVolumeClaim.claimName is empty".into()));
    }
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(claim_name)
        .await
        .map_err(api_err("persistentvolumeclaim", namespace, claim_name))?
        .ok_or_else(|| VolumeError::ClaimNotFound(claim_name.to_string()))?;
    let volume_name = bound_volume(&claim)?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume_name)
        .await
        .map_err(api_err("persistentvolume", "", &volume_name))?
        .ok_or_else(|| VolumeError::VolumeNotFound(volume_name.clone()))?;
    // The volume must point back at this claim (a PV re-bound elsewhere is not ours to mount).
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let points_back = claim_ref.is_some_and(|r| {
        r.name.as_deref() == Some(claim_name)
            && r.namespace.as_deref() == Some(namespace)
            && r.uid.as_deref().is_none_or(|u| Some(u) == claim.metadata.uid.as_deref())
    });
    if !points_back {
        return Err(VolumeError::Invalid(format!(
            "persistentvolume \"{volume_name}\" is not bound to persistentvolumeclaim \"{claim_name}\""
        )));
    }
    let vs = volume_source(&pv)?;
    let path = tokio::task::spawn_blocking(move || prepare(&vs))
        .await
        .map_err(|e| VolumeError::Invalid(format!("persistent volume task failed: {e}")))??;
    Ok(ResolvedClaim { volume_name, path, read_only: read_only(source, &claim) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        HostPathVolumeSource, LocalVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn claim(phase: &str, volume: Option<&str>, modes: &[&str]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("data".into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: volume.map(Into::into),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    #[test]
    fn volume_claim_must_be_bound() {
        assert_eq!(bound_volume(&claim("Bound", Some("pv1"), &["ReadWriteOnce"])).unwrap(), "pv1");
        assert_eq!(
            bound_volume(&claim("Pending", None, &[])).unwrap_err().to_string(),
            "persistentvolumeclaim \"data\" is not bound (phase Pending)"
        );
        let mut deleting = claim("Bound", Some("pv1"), &[]);
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        assert_eq!(
            bound_volume(&deleting).unwrap_err().to_string(),
            "can't start pod because PVC default/data is being deleted"
        );
    }

    #[test]
    fn volume_read_only_from_volume_or_claim() {
        let src = |ro| PersistentVolumeClaimVolumeSource { claim_name: "data".into(), read_only: ro };
        assert!(!read_only(&src(None), &claim("Bound", Some("pv"), &["ReadWriteOnce"])));
        assert!(read_only(&src(Some(true)), &claim("Bound", Some("pv"), &["ReadWriteOnce"])));
        assert!(read_only(&src(None), &claim("Bound", Some("pv"), &["ReadOnlyMany"])));
        assert!(!read_only(&src(None), &claim("Bound", Some("pv"), &["ReadOnlyMany", "ReadWriteOnce"])));
    }

    #[test]
    fn volume_sources_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pvc-1");
        let pv = |spec: PersistentVolumeSpec| PersistentVolume {
            metadata: ObjectMeta { name: Some("pv".into()), ..Default::default() },
            spec: Some(spec),
            status: None,
        };
        let hp = pv(PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource {
                path: target.to_str().unwrap().into(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Default::default()
        });
        let p = prepare(&volume_source(&hp).unwrap()).unwrap();
        assert_eq!(p, target);
        assert!(target.is_dir(), "DirectoryOrCreate creates the directory");

        let missing = dir.path().join("nope");
        let local = pv(PersistentVolumeSpec {
            local: Some(LocalVolumeSource { path: missing.to_str().unwrap().into(), fs_type: None }),
            ..Default::default()
        });
        let err = prepare(&volume_source(&local).unwrap()).unwrap_err().to_string();
        assert_eq!(err, format!("path \"{}\" does not exist", missing.display()));
        let local_ok = pv(PersistentVolumeSpec {
            local: Some(LocalVolumeSource { path: target.to_str().unwrap().into(), fs_type: None }),
            ..Default::default()
        });
        assert_eq!(prepare(&volume_source(&local_ok).unwrap()).unwrap(), target);

        let none = pv(PersistentVolumeSpec::default());
        assert!(volume_source(&none).unwrap_err().to_string().contains("cannot mount"));
    }
}
