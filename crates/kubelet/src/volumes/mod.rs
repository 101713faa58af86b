//! A pod's volumes on the node, under `<pods_root>/<uid>/volumes/<plugin>/<name>`: emptyDir (disk, or tmpfs
//! for `medium: Memory`), hostPath (with its type checks), configMap, secret, downwardAPI and projected (written
//! with Kubernetes' AtomicWriter and refreshed in place) and persistentVolumeClaim (the bound PV's hostPath or
//! local source, kept when the pod goes).

pub mod atomic_writer;
mod host_path;
pub mod local_path_cleaner;
mod mount;
pub mod persistent_claim;
mod sources;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Volume};

pub use atomic_writer::{AtomicWriteError, DATA_DIR_NAME, FileProjection, Payload};
pub use sources::DEFAULT_MODE;

use crate::container_config::ConfigError;
use crate::env::NodeAllocatable;

/// Plugin folder names, as upstream (`kubernetes.io~<plugin>`).
pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";
pub const CONFIG_MAP_PLUGIN: &str = "kubernetes.io~configmap";
pub const SECRET_PLUGIN: &str = "kubernetes.io~secret";
pub const DOWNWARD_API_PLUGIN: &str = "kubernetes.io~downward-api";
pub const PROJECTED_PLUGIN: &str = "kubernetes.io~projected";

/// Why a volume could not be set up; the `SetUp` text is the pod's `FailedMount` event message.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {source}")]
    SetUp { volume: String, source: Box<VolumeError> },
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    MissingSecretKey(String),
    #[error("hostPath type check failed: {0}")]
    HostPathType(String),
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    #[error("persistentvolumeclaim \"{name}\" is not bound (phase {phase})")]
    ClaimNotBound { name: String, phase: String },
    #[error("can't start pod because PVC {0} is being deleted")]
    ClaimBeingDeleted(String),
    #[error("persistentvolume \"{0}\" not found")]
    VolumeNotFound(String),
    #[error("path \"{0}\" does not exist")]
    LocalPathMissing(String),
    #[error("volume type {0} is not supported")]
    Unsupported(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    #[error("failed to get {kind} {namespace}/{name}: {source}")]
    Api { kind: &'static str, namespace: String, name: String, source: Box<kube::Error> },
    #[error("failed to {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

impl VolumeError {
    /// The volume a `SetUp` error is about.
    pub fn volume(&self) -> Option<&str> {
        match self {
            VolumeError::SetUp { volume, .. } => Some(volume),
            _ => None,
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io { what, path: path.to_path_buf(), source }
}

/// The host paths of a pod's volumes, by volume name, and the pod's directory.
#[derive(Clone, Debug, Default)]
pub struct MountedVolumes {
    pub paths: BTreeMap<String, PathBuf>,
    /// Volumes every container mounts read-only (a read-only persistentVolumeClaim).
    pub read_only: BTreeSet<String>,
    /// `<pods_root>/<uid>`: where termination message files and subPaths live.
    pub pod_dir: PathBuf,
}

/// Sets up, refreshes and tears down pods' volumes.
pub struct VolumeManager {
    pods_root: PathBuf,
    client: kube::Client,
    allocatable: NodeAllocatable,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Service account tokens issued for projected volumes, by `<uid>/<volume>/<path>`, reused until 80% of
    /// their lifetime has passed (as the kubelet's token manager).
    tokens: Mutex<HashMap<String, IssuedToken>>,
}

struct IssuedToken {
    issued: std::time::Instant,
    lifetime: std::time::Duration,
    token: Vec<u8>,
}

/// What a volume's contents are made of, once read from the API.
enum Contents {
    /// A directory of files written atomically; `memory` puts it on a tmpfs (secrets, projected).
    Files {
        plugin: &'static str,
        payload: Payload,
        memory: bool,
    },
    EmptyDir {
        memory: bool,
        size: Option<i64>,
    },
    HostPath(PathBuf),
    /// A persistentVolumeClaim's volume, prepared on the node.
    Claim(persistent_claim::ResolvedClaim),
}

impl VolumeManager {
    pub fn new(pods_root: PathBuf, client: kube::Client) -> Self {
        Self {
            pods_root,
            client,
            allocatable: NodeAllocatable::from_host(),
            locks: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// `<pods_root>/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.pods_root.join(pod_uid)
    }

    fn lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().expect("volume lock map").entry(uid.to_string()).or_default().clone()
    }

    fn uid(pod: &Pod) -> Result<String, VolumeError> {
        pod.metadata
            .uid
            .clone()
            .filter(|u| !u.is_empty() && !u.contains('/') && u != "." && u != "..")
            .ok_or_else(|| VolumeError::Invalid("pod has no valid uid".into()))
    }

    /// Makes every volume of the pod ready (before its containers start). Returns their host paths; the first
    /// failure is returned as `MountVolume.SetUp failed for volume "<name>" : <reason>`, after the other
    /// volumes were tried.
    pub async fn setup(&self, pod: &Pod) -> Result<MountedVolumes, VolumeError> {
        let uid = Self::uid(pod)?;
        let lock = self.lock(&uid);
        let _guard = lock.lock().await;
        let pod_dir = self.pod_dir(&uid);
        std::fs::create_dir_all(pod_dir.join("volumes")).map_err(io_err("create", &pod_dir))?;
        let mut mounted = MountedVolumes { pod_dir: pod_dir.clone(), ..Default::default() };
        let mut first_err = None;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            match self.setup_volume(pod, &pod_dir, volume).await {
                Ok((path, read_only)) => {
                    mounted.paths.insert(volume.name.clone(), path);
                    if read_only {
                        mounted.read_only.insert(volume.name.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(pod = %uid, volume = %volume.name, error = %e, "volume set-up failed");
                    first_err.get_or_insert(VolumeError::SetUp { volume: volume.name.clone(), source: Box::new(e) });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(mounted),
        }
    }

    /// Rewrites configMap, secret, downwardAPI and projected volumes whose source changed (atomically; files
    /// mounted through a subPath do not change, as in Kubernetes).
    pub async fn refresh(&self, pod: &Pod) -> Result<(), VolumeError> {
        let uid = Self::uid(pod)?;
        let lock = self.lock(&uid);
        let _guard = lock.lock().await;
        let pod_dir = self.pod_dir(&uid);
        let mut first_err = None;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let refreshable = volume.config_map.is_some()
                || volume.secret.is_some()
                || volume.downward_api.is_some()
                || volume.projected.is_some();
            if !refreshable {
                continue;
            }
            if let Err(e) = self.setup_volume(pod, &pod_dir, volume).await {
                first_err.get_or_insert(VolumeError::SetUp { volume: volume.name.clone(), source: Box::new(e) });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Unmounts everything under the pod's directory and removes it. Idempotent.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid == "." || pod_uid == ".." {
            return Err(VolumeError::Invalid(format!("invalid pod uid {pod_uid:?}")));
        }
        let lock = self.lock(pod_uid);
        let guard = lock.lock().await;
        let pod_dir = self.pod_dir(pod_uid);
        let dir = pod_dir.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), VolumeError> {
            if std::fs::symlink_metadata(&dir).is_err() {
                return Ok(());
            }
            for m in mount::mounts_under(&dir).map_err(io_err("read mounts under", &dir))? {
                mount::unmount(&m).map_err(io_err("unmount", &m))?;
            }
            std::fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))
        })
        .await
        .map_err(|e| VolumeError::Invalid(format!("teardown task failed: {e}")))?;
        drop(guard);
        if result.is_ok() {
            self.locks.lock().expect("volume lock map").remove(pod_uid);
            let prefix = format!("{pod_uid}/");
            self.tokens.lock().expect("token map").retain(|k, _| !k.starts_with(&prefix));
        }
        result
    }

    /// A token for a projected `serviceAccountToken` source: the one issued before while it is younger than
    /// 80% of its lifetime, else a new one. `None` when the API server does not serve TokenRequest.
    async fn token(
        &self,
        pod: &Pod,
        volume: &str,
        projection: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    ) -> Result<Option<Vec<u8>>, VolumeError> {
        let key = format!("{}/{volume}/{}", pod.metadata.uid.as_deref().unwrap_or_default(), projection.path);
        if let Some(t) = self.tokens.lock().expect("token map").get(&key)
            && t.issued.elapsed() < t.lifetime.mul_f64(0.8)
        {
            return Ok(Some(t.token.clone()));
        }
        let Some(token) = sources::service_account_token(&self.client, pod, projection).await? else {
            return Ok(None);
        };
        let lifetime = std::time::Duration::from_secs(projection.expiration_seconds.unwrap_or(3600).max(600) as u64);
        self.tokens
            .lock()
            .expect("token map")
            .insert(key, IssuedToken { issued: std::time::Instant::now(), lifetime, token: token.clone() });
        Ok(Some(token))
    }

    fn volume_dir(pod_dir: &Path, plugin: &str, name: &str) -> Result<PathBuf, VolumeError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(VolumeError::Invalid(format!("invalid volume name {name:?}")));
        }
        Ok(pod_dir.join("volumes").join(plugin).join(name))
    }

    /// tmpfs size for a memory-backed volume: the smallest of `sizeLimit`, the pod's memory limit (when every
    /// container has one) and the node's memory.
    fn memory_size(&self, pod: &Pod, size_limit: Option<i64>) -> i64 {
        let mut size = self.allocatable.memory_bytes;
        if let Some(spec) = pod.spec.as_ref() {
            let limits: Option<i64> = spec
                .containers
                .iter()
                .map(|c| {
                    c.resources
                        .as_ref()
                        .and_then(|r| r.limits.as_ref())
                        .and_then(|l| l.get("memory"))
                        .and_then(|q| skiff_runtime::bundle::parse_bytes(&q.0).ok())
                })
                .sum();
            if let Some(l) = limits.filter(|l| *l > 0) {
                size = if size > 0 { size.min(l) } else { l };
            }
        }
        if let Some(s) = size_limit.filter(|s| *s > 0) {
            size = if size > 0 { size.min(s) } else { s };
        }
        size
    }

    async fn contents(&self, pod: &Pod, volume: &Volume) -> Result<Contents, VolumeError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(ed) = &volume.empty_dir {
            let memory = match ed.medium.as_deref().unwrap_or("") {
                "" => false,
                "Memory" => true,
                other => return Err(VolumeError::Invalid(format!("emptyDir medium {other:?} is not supported"))),
            };
            let limit = ed
                .size_limit
                .as_ref()
                .map(|q| {
                    skiff_runtime::bundle::parse_bytes(&q.0)
                        .map_err(|_| VolumeError::Invalid(format!("invalid emptyDir sizeLimit {:?}", q.0)))
                })
                .transpose()?;
            let size = memory.then(|| self.memory_size(pod, limit));
            return Ok(Contents::EmptyDir { memory, size });
        }
        if let Some(hp) = &volume.host_path {
            let (path, type_) = (hp.path.clone(), hp.type_.clone());
            let p = tokio::task::spawn_blocking(move || host_path::prepare(&path, type_.as_deref()))
                .await
                .map_err(|e| VolumeError::Invalid(format!("hostPath task failed: {e}")))??;
            return Ok(Contents::HostPath(p));
        }
        if let Some(cm) = &volume.config_map {
            let payload = sources::config_map_payload(
                &self.client,
                ns,
                &cm.name,
                cm.items.as_deref(),
                cm.default_mode.unwrap_or(DEFAULT_MODE),
                cm.optional.unwrap_or(false),
            )
            .await?;
            return Ok(Contents::Files { plugin: CONFIG_MAP_PLUGIN, payload, memory: false });
        }
        if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let payload = sources::secret_payload(
                &self.client,
                ns,
                &name,
                s.items.as_deref(),
                s.default_mode.unwrap_or(DEFAULT_MODE),
                s.optional.unwrap_or(false),
            )
            .await?;
            return Ok(Contents::Files { plugin: SECRET_PLUGIN, payload, memory: true });
        }
        if let Some(d) = &volume.downward_api {
            let payload = sources::downward_api_payload(
                pod,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode.unwrap_or(DEFAULT_MODE),
                &self.allocatable,
            )?;
            return Ok(Contents::Files { plugin: DOWNWARD_API_PLUGIN, payload, memory: false });
        }
        if let Some(p) = &volume.projected {
            let default_mode = p.default_mode.unwrap_or(DEFAULT_MODE);
            let mut payload = Payload::new();
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    payload.extend(
                        sources::config_map_payload(
                            &self.client,
                            ns,
                            &cm.name,
                            cm.items.as_deref(),
                            default_mode,
                            cm.optional.unwrap_or(false),
                        )
                        .await?,
                    );
                }
                if let Some(s) = &source.secret {
                    payload.extend(
                        sources::secret_payload(
                            &self.client,
                            ns,
                            &s.name,
                            s.items.as_deref(),
                            default_mode,
                            s.optional.unwrap_or(false),
                        )
                        .await?,
                    );
                }
                if let Some(d) = &source.downward_api {
                    payload.extend(sources::downward_api_payload(
                        pod,
                        d.items.as_deref().unwrap_or_default(),
                        default_mode,
                        &self.allocatable,
                    )?);
                }
                if let Some(t) = &source.service_account_token
                    && let Some(token) = self.token(pod, &volume.name, t).await?
                {
                    payload
                        .insert(t.path.clone(), FileProjection { data: token, mode: (default_mode as u32) & 0o7777 });
                }
                if source.cluster_trust_bundle.is_some() {
                    return Err(VolumeError::Unsupported("projected clusterTrustBundle"));
                }
            }
            return Ok(Contents::Files { plugin: PROJECTED_PLUGIN, payload, memory: true });
        }
        if let Some(pvc) = &volume.persistent_volume_claim {
            return Ok(Contents::Claim(persistent_claim::resolve(&self.client, ns, pvc).await?));
        }
        Err(VolumeError::Unsupported(unsupported_kind(volume)))
    }

    /// Sets one volume up; returns its host path and whether it must be mounted read-only.
    async fn setup_volume(&self, pod: &Pod, pod_dir: &Path, volume: &Volume) -> Result<(PathBuf, bool), VolumeError> {
        let contents = self.contents(pod, volume).await?;
        if let Contents::Claim(c) = contents {
            return Ok((c.path, c.read_only));
        }
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok());
        let name = volume.name.clone();
        let pod_dir = pod_dir.to_path_buf();
        let memory_size = Some(self.memory_size(pod, None));
        tokio::task::spawn_blocking(move || -> Result<PathBuf, VolumeError> {
            match contents {
                Contents::HostPath(p) => Ok(p),
                Contents::Claim(c) => Ok(c.path),
                Contents::EmptyDir { memory, size } => {
                    let dir = Self::volume_dir(&pod_dir, EMPTY_DIR_PLUGIN, &name)?;
                    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                    if memory && !mount::is_mount_point(&dir) {
                        mount::mount_tmpfs(&dir, size).map_err(io_err("mount tmpfs on", &dir))?;
                    }
                    let mut mode = 0o777;
                    if let Some(gid) = fs_group {
                        std::os::unix::fs::chown(&dir, None, Some(gid)).map_err(io_err("chown", &dir))?;
                        mode |= 0o2000;
                    }
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                        .map_err(io_err("chmod", &dir))?;
                    Ok(dir)
                }
                Contents::Files { plugin, payload, memory } => {
                    let dir = Self::volume_dir(&pod_dir, plugin, &name)?;
                    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                    if memory && !mount::is_mount_point(&dir) {
                        // Secrets never touch the disk: a tmpfs sized like a memory emptyDir (upstream wraps one).
                        mount::mount_tmpfs(&dir, memory_size).map_err(io_err("mount tmpfs on", &dir))?;
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                            .map_err(io_err("chmod", &dir))?;
                    }
                    atomic_writer::write_payload(&dir, &payload, fs_group)?;
                    Ok(dir)
                }
            }
        })
        .await
        .map_err(|e| VolumeError::Invalid(format!("volume task failed: {e}")))?
        .map(|p| (p, false))
    }
}

fn unsupported_kind(v: &Volume) -> &'static str {
    match v {
        _ if v.nfs.is_some() => "nfs",
        _ if v.csi.is_some() => "csi",
        _ if v.ephemeral.is_some() => "ephemeral",
        _ if v.image.is_some() => "image",
        _ if v.iscsi.is_some() => "iscsi",
        _ if v.git_repo.is_some() => "gitRepo",
        _ => "(none or unknown)",
    }
}
