//! The node's half of local-path deletion: PersistentVolumes provisioned by `rancher.io/local-path`, pinned
//! to this node, Released with reclaim policy Delete, get their directory removed (only when it lies under
//! the node's storage directory; anything else is refused with a Warning event on the volume) and then the
//! annotation `skiff.io/local-path-cleaned: "true"`, after which the control plane deletes the volume.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference, PersistentVolume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub const PROVISIONER: &str = "rancher.io/local-path";
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const ANN_CLEANED: &str = "skiff.io/local-path-cleaned";
const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    /// `<data-dir>/storage`: the only place directories are removed from.
    pub storage_dir: PathBuf,
}

/// Why a volume's directory was not removed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CleanError {
    #[error("refusing to remove {path}: it is not a directory under the local-path storage directory {base}")]
    OutsideStorage { path: String, base: String },
    #[error("persistentvolume has no hostPath or local path")]
    NoPath,
    #[error("failed to remove {path}: {reason}")]
    Remove { path: String, reason: String },
}

/// Whether the node's clean-up applies to `pv`: provisioned by local-path, pinned to `node`, Released with
/// reclaim policy Delete, and not cleaned yet.
pub fn needs_cleaning(pv: &PersistentVolume, node: &str) -> bool {
    let ann = pv.metadata.annotations.as_ref();
    if ann.and_then(|a| a.get(ANN_PROVISIONED_BY)).map(String::as_str) != Some(PROVISIONER)
        || ann.and_then(|a| a.get(ANN_CLEANED)).is_some_and(|v| v == "true")
    {
        return false;
    }
    let Some(spec) = pv.spec.as_ref() else { return false };
    if spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
        || pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Released")
    {
        return false;
    }
    node_of(pv).as_deref() == Some(node)
}

/// The node named by the volume's `kubernetes.io/hostname In [<node>]` affinity (local-path's pinning).
pub fn node_of(pv: &PersistentVolume) -> Option<String> {
    let terms = &pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == LABEL_HOSTNAME && e.operator == "In")
        .and_then(|e| e.values.as_ref())
        .filter(|v| v.len() == 1)
        .map(|v| v[0].clone())
}

/// The volume's directory, if it lies strictly under `base` (no `..`, no relative path, not `base` itself).
pub fn checked_path(pv: &PersistentVolume, base: &Path) -> Result<PathBuf, CleanError> {
    let spec = pv.spec.as_ref().ok_or(CleanError::NoPath)?;
    let path = spec
        .host_path
        .as_ref()
        .map(|h| h.path.clone())
        .or_else(|| spec.local.as_ref().map(|l| l.path.clone()))
        .ok_or(CleanError::NoPath)?;
    let p = PathBuf::from(&path);
    let outside = || CleanError::OutsideStorage { path: path.clone(), base: base.display().to_string() };
    let lexically_clean = p.is_absolute() && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !lexically_clean || !p.starts_with(base) || p == base {
        return Err(outside());
    }
    // Symlinks on the way must not lead out of the storage directory either.
    if let (Ok(real_base), Some(parent)) = (std::fs::canonicalize(base), p.parent())
        && let Ok(real_parent) = std::fs::canonicalize(parent)
        && !real_parent.starts_with(&real_base)
    {
        return Err(outside());
    }
    Ok(p)
}

/// Removes the directory (a missing one is already clean). A symlink is removed, not followed.
pub fn remove(path: &Path) -> Result<(), CleanError> {
    let err = |e: std::io::Error| CleanError::Remove { path: path.display().to_string(), reason: e.to_string() };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(err),
        Ok(_) => std::fs::remove_file(path).map_err(err),
    }
}

/// Runs the clean-up until `shutdown`.
pub async fn run(config: Config, client: Client, shutdown: CancellationToken) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default()).default_backoff().applied_objects().boxed();
    let mut refused: HashSet<String> = HashSet::new();
    tracing::info!(storage_dir = %config.storage_dir.display(), "local-path clean-up started");
    loop {
        let pv = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = stream.next() => match next {
                Some(Ok(pv)) => pv,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "persistentvolume watch failed; retrying");
                    continue;
                }
                None => break,
            },
        };
        if !needs_cleaning(&pv, &config.node_name) {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        let base = config.storage_dir.clone();
        let pv2 = pv.clone();
        let result = tokio::task::spawn_blocking(move || checked_path(&pv2, &base).and_then(|p| remove(&p).map(|_| p)))
            .await
            .unwrap_or_else(|e| Err(CleanError::Remove { path: String::new(), reason: e.to_string() }));
        match result {
            Ok(path) => {
                let patch = json!({"metadata": {"annotations": {ANN_CLEANED: "true"}}});
                match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => tracing::info!(volume = %name, path = %path.display(), "local-path volume removed"),
                    Err(e) => tracing::warn!(volume = %name, error = %e, "failed to mark the local-path volume cleaned"),
                }
            }
            Err(e) => {
                tracing::warn!(volume = %name, error = %e, "local-path volume not removed");
                if refused.insert(format!("{name}/{e}")) {
                    volume_event(&client, &pv, &config.node_name, "VolumeFailedDelete", &e.to_string()).await;
                }
            }
        }
    }
}

/// A Warning event on the (cluster-scoped) volume, in `default` as upstream records them.
async fn volume_event(client: &Client, pv: &PersistentVolume, node: &str, reason: &str, message: &str) {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond() as u64)),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolume".into()),
            name: Some(name.clone()),
            uid: pv.metadata.uid.clone(),
            resource_version: pv.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        source: Some(k8s_openapi::api::core::v1::EventSource { component: Some("kubelet".into()), host: Some(node.into()) }),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), "default").create(&PostParams::default(), &event).await {
        tracing::warn!(volume = %name, error = %e, "failed to record an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeSpec,
        PersistentVolumeStatus, VolumeNodeAffinity,
    };

    pub(crate) fn local_path_pv(name: &str, path: &str, node: &str, phase: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some([(ANN_PROVISIONED_BY.to_string(), PROVISIONER.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                host_path: Some(HostPathVolumeSource { path: path.into(), type_: Some("DirectoryOrCreate".into()) }),
                persistent_volume_reclaim_policy: Some("Delete".into()),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: LABEL_HOSTNAME.into(),
                                operator: "In".into(),
                                values: Some(vec![node.into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    #[test]
    fn volume_cleaning_applies_to_released_local_path_volumes_of_this_node() {
        assert!(needs_cleaning(&local_path_pv("a", "/s/a", "n1", "Released"), "n1"));
        assert!(!needs_cleaning(&local_path_pv("a", "/s/a", "n1", "Released"), "n2"), "another node's");
        assert!(!needs_cleaning(&local_path_pv("a", "/s/a", "n1", "Bound"), "n1"), "still bound");
        let mut retain = local_path_pv("a", "/s/a", "n1", "Released");
        retain.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Retain".into());
        assert!(!needs_cleaning(&retain, "n1"), "Retain keeps the data");
        let mut other = local_path_pv("a", "/s/a", "n1", "Released");
        other.metadata.annotations = None;
        assert!(!needs_cleaning(&other, "n1"), "not provisioned by local-path");
        let mut done = local_path_pv("a", "/s/a", "n1", "Released");
        done.metadata.annotations.as_mut().unwrap().insert(ANN_CLEANED.into(), "true".into());
        assert!(!needs_cleaning(&done, "n1"), "already cleaned");
    }

    #[test]
    fn volume_paths_outside_the_storage_dir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("storage");
        std::fs::create_dir_all(base.join("pvc-1")).unwrap();
        std::fs::write(base.join("pvc-1/data"), "x").unwrap();
        let b = base.to_str().unwrap();
        let ok = local_path_pv("a", &format!("{b}/pvc-1"), "n", "Released");
        let p = checked_path(&ok, &base).unwrap();
        remove(&p).unwrap();
        assert!(!base.join("pvc-1").exists(), "the directory is removed");
        assert!(base.exists(), "the storage directory stays");
        remove(&p).expect("a missing directory is already clean");

        for bad in [b.to_string(), format!("{b}/../etc"), "/etc".to_string(), "relative/pvc".to_string(), format!("{b}x/pvc")] {
            let pv = local_path_pv("a", &bad, "n", "Released");
            assert!(
                matches!(checked_path(&pv, &base), Err(CleanError::OutsideStorage { .. })),
                "{bad} must be refused"
            );
        }
        // A symlink inside the storage directory that leads out of it.
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("victim")).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
        let pv = local_path_pv("a", &format!("{b}/link/victim"), "n", "Released");
        assert!(matches!(checked_path(&pv, &base), Err(CleanError::OutsideStorage { .. })));
        assert!(outside.join("victim").exists());
    }
}
