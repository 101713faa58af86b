//! Storage orchestration in the controller manager (upstream `pkg/controller/volume`): the PersistentVolume
//! binder, the built-in local-path provisioner, and the pvc/pv protection controllers.
//!
//! Each controller keeps reflector caches of what it reads ([`caches`]) and re-syncs every object when any of
//! them changes (and on a slow tick), writing only when something differs, so repeated syncs converge.

pub mod caches;
pub mod local_path;
pub mod persistentvolume;
pub mod protection;
pub mod quantity;

/// Annotations and names shared with the scheduler, the kubelet and upstream tools.
pub mod names {
    /// Set by the scheduler on a claim of a WaitForFirstConsumer class: the node its first pod goes to.
    pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
    /// On a claim: the binder finished binding it.
    pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
    /// On a claim or volume: the binder (not a user) made the binding.
    pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
    /// On a volume: the provisioner that created it.
    pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
    /// On a claim: the provisioner expected to create its volume (current and beta names).
    pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
    pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
    /// On a StorageClass: it is the default for claims without a class.
    pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
    /// Set by the node half of local-path once the volume's directory is removed.
    pub const ANN_LOCAL_PATH_CLEANED: &str = "skiff.io/local-path-cleaned";
    /// The built-in provisioner's name (k3s's local-path-provisioner).
    pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
    pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
    pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("volume controller api call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("volume controller could not fill its caches: {0}")]
    Cache(String),
}

/// Events of the volume controllers: the same (object, reason, message) is published again only after
/// [`events::REPEAT_AFTER`], since the controllers re-sync on every change in the cluster.
pub mod events {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use kube::Resource;
    use kube::runtime::events::{EventType, Recorder};

    pub const REPEAT_AFTER: Duration = Duration::from_secs(300);

    pub struct Events {
        recorder: Recorder,
        sent: Mutex<HashMap<(String, String, String), Instant>>,
    }

    impl Events {
        pub fn new(recorder: Recorder) -> Self {
            Self { recorder, sent: Mutex::new(HashMap::new()) }
        }

        pub async fn emit<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
            let key = (obj.meta().uid.clone().unwrap_or_default(), reason.to_string(), note.clone());
            {
                let mut sent = self.sent.lock().expect("events lock");
                let now = Instant::now();
                sent.retain(|_, at| now.duration_since(*at) < REPEAT_AFTER);
                if sent.contains_key(&key) {
                    return;
                }
                sent.insert(key, now);
            }
            crate::controller_utils::publish(&self.recorder, obj, type_, reason, note).await;
        }
    }
}
