//! The OCI implementation of [`RuntimeService`]: pod sandboxes as bind-mounted namespaces plus CNI, containers
//! as runc bundles on overlayfs run by one `skiff shim` each.
//!
//! Data layout under [`OciConfig::root`] (`<data-dir>/agent`):
//! - `containers/<id>/`: `container.json` (the agent's record), `config.json` (the bundle), `rootfs/` (the
//!   overlay mount; `upper/` and `work/` beside it), and the shim's files: `state.json` (pid, start, exit
//!   code, reason), `init.pid`, `attach.sock`, `runc.log`, `shim.log`.
//! - `sandboxes/<id>/`: `sandbox.json`, `ns/{net,ipc,uts}` (namespace bind mounts, see [`crate::netns`]),
//!   `resolv.conf`, `hosts`, `hostname`, `shm/` (the pod's tmpfs `/dev/shm`).
//! - `runc/`: runc's own state (`runc --root`).
//! - CNI state lives where the [`cni::NetworkConfig`] says (`<root>/cni` when built with
//!   `NetworkConfig::new(root, cidr)`); images in the [`ImageStore`] the caller opened (`<root>/images`).
//! - Container logs: `<log_directory>/<log_path>` as the kubelet asks (`logs/pods/<ns>_<name>_<uid>/...`).
//!
//! Cgroups: every pod gets `<cgroup_parent>/pod<uid>` in every hierarchy; a container's `cgroupsPath` is
//! `<cgroup_parent>/pod<uid>/<container id>` (absolute, see runtime notes). runc removes the container's own
//! cgroup at `runc delete`; the runtime removes the pod's when the sandbox goes, and the parent (with its
//! empty ancestors up to the agent's own cgroup) when the last sandbox goes.
//!
//! Nothing is cached in memory: every call reads the records, so a restarted agent adopts the running shims.

mod container;
mod exec;
mod sandbox;
pub mod store;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::cgroups::Cgroups;
use crate::cni::{self, CniDriver};
use crate::cri::{
    ContainerConfig, ContainerFilter, ContainerStats, ContainerStatus, Duplex, ExecSyncResult,
    Image, ImageService, PodSandboxConfig, PodSandboxStatus, RegistryAuth, Result, RuntimeError,
    RuntimeService, RuntimeVersion, StreamOptions, StreamSession,
};
use crate::image::ImageStore;
use crate::shim::client::ShimCommand;

/// Errors constructing the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the runtime directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroups: {0}")]
    Cgroups(std::io::Error),
    #[error("runc not usable at {path}: {reason}")]
    Runc { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Cni(#[from] cni::CniError),
}

/// How to build an [`OciRuntime`].
#[derive(Clone, Debug)]
pub struct OciConfig {
    /// The runtime's directory (`<data-dir>/agent`).
    pub root: PathBuf,
    /// The runc binary (`runc` is looked up in `PATH`).
    pub runc: PathBuf,
    /// How to start a shim: by default this executable with `shim` (`skiff shim ...`).
    pub shim: ShimCommand,
    /// The pod network.
    pub cni: cni::NetworkConfig,
    /// Absolute cgroup path under which pods get their cgroups: by default `<own cgroup>/kubepods`.
    pub cgroup_parent: PathBuf,
}

impl OciConfig {
    /// Defaults: runc from `PATH`, the current executable as `skiff shim`, `<own cgroup>/kubepods`.
    pub fn new(root: impl Into<PathBuf>, cni: cni::NetworkConfig) -> Result<OciConfig, Error> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::Config(format!("cannot find the current executable: {e}")))?;
        Ok(OciConfig {
            root: root.into(),
            runc: PathBuf::from("runc"),
            shim: ShimCommand {
                exe,
                prefix: vec![OsString::from("shim")],
            },
            cni,
            cgroup_parent: default_cgroup_parent().map_err(Error::Cgroups)?,
        })
    }
}

/// `<the calling process's cgroup>/kubepods` (memory hierarchy on v1, unified on v2).
pub fn default_cgroup_parent() -> std::io::Result<PathBuf> {
    Ok(Cgroups::detect()?.own_cgroup().join("kubepods"))
}

fn find_in_path(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

pub(crate) struct Inner {
    root: PathBuf,
    runc: PathBuf,
    shim: ShimCommand,
    cgroup_parent: PathBuf,
    cni: CniDriver,
    cgroups: Cgroups,
    images: Arc<ImageStore>,
    /// Orders pod cgroup creation against pod cgroup and parent removal (sandbox set-up itself runs
    /// concurrently).
    lock: Mutex<()>,
}

/// The runtime; cheap to clone.
#[derive(Clone)]
pub struct OciRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OciRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRuntime")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl OciRuntime {
    /// Opens (or creates) the runtime at `config.root`. Sandboxes and containers already there (an agent
    /// restart) are listed and managed like new ones; their shims keep running.
    pub fn new(config: OciConfig, images: Arc<ImageStore>) -> Result<OciRuntime, Error> {
        if !config.cgroup_parent.is_absolute() {
            return Err(Error::Config(format!(
                "cgroup parent {:?} must be absolute",
                config.cgroup_parent
            )));
        }
        if !config.root.is_absolute() {
            return Err(Error::Config(format!(
                "runtime root {:?} must be absolute",
                config.root
            )));
        }
        let runc = find_in_path(&config.runc).ok_or_else(|| Error::Runc {
            path: config.runc.clone(),
            reason: "not found (install Debian's runc)".into(),
        })?;
        for d in ["containers", "sandboxes", "runc"] {
            let path = config.root.join(d);
            std::fs::create_dir_all(&path).map_err(|source| Error::Dir { path, source })?;
        }
        let cni = CniDriver::new(config.cni.clone())?;
        cni.config().write_conflist()?;
        let cgroups = Cgroups::detect().map_err(Error::Cgroups)?;
        Ok(OciRuntime {
            inner: Arc::new(Inner {
                root: config.root,
                runc,
                shim: config.shim,
                cgroup_parent: config.cgroup_parent,
                cni,
                cgroups,
                images,
                lock: Mutex::new(()),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The pods' cgroup parent (absolute cgroup path).
    pub fn cgroup_parent(&self) -> &Path {
        &self.inner.cgroup_parent
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| RuntimeError::Other(format!("runtime task failed: {e}")))?
    }
}

impl Inner {
    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    fn runc_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    /// `runc --root <root>/runc` with `args`.
    fn runc(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.runc);
        c.arg("--root").arg(self.runc_root()).args(args);
        c.stdin(std::process::Stdio::null());
        c
    }
}

#[async_trait]
impl RuntimeService for OciRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        self.blocking(|i| i.version()).await
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let config = config.clone();
        self.blocking(move |i| i.run_pod_sandbox(&config)).await
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let id = sandbox_id.to_string();
        self.blocking(move |i| i.stop_pod_sandbox(&id)).await
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let id = sandbox_id.to_string();
        self.blocking(move |i| i.remove_pod_sandbox(&id)).await
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        let id = sandbox_id.to_string();
        self.blocking(move |i| i.pod_sandbox_status(&id)).await
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        self.blocking(|i| i.list_pod_sandboxes()).await
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let (id, config, sandbox) = (sandbox_id.to_string(), config.clone(), sandbox.clone());
        self.blocking(move |i| i.create_container(&id, &config, &sandbox))
            .await
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let id = container_id.to_string();
        self.blocking(move |i| i.start_container(&id)).await
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()> {
        let id = container_id.to_string();
        self.blocking(move |i| i.stop_container(&id, timeout)).await
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let id = container_id.to_string();
        self.blocking(move |i| i.remove_container(&id)).await
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        let id = container_id.to_string();
        self.blocking(move |i| i.container_status(&id)).await
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let filter = filter.clone();
        self.blocking(move |i| i.list_containers(&filter)).await
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult> {
        exec::exec_sync(&self.inner, container_id, cmd, timeout).await
    }

    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        options: &StreamOptions,
    ) -> Result<StreamSession> {
        exec::exec(&self.inner, container_id, cmd, options).await
    }

    async fn attach(&self, container_id: &str, options: &StreamOptions) -> Result<StreamSession> {
        let id = container_id.to_string();
        let (socket, tty) = self.blocking(move |i| i.attach_target(&id)).await?;
        let mut options = options.clone();
        options.tty = tty;
        crate::shim::client::attach(&socket, &options).await
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>> {
        let id = sandbox_id.to_string();
        let std_stream = self
            .blocking(move |i| i.port_forward_connect(&id, port))
            .await?;
        let stream = tokio::net::TcpStream::from_std(std_stream)
            .map_err(|e| RuntimeError::Other(format!("port-forward: {e}")))?;
        Ok(Box::new(stream))
    }

    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats> {
        let id = container_id.to_string();
        self.blocking(move |i| i.container_stats(&id)).await
    }
}

/// A [`RuntimeService`] and an [`ImageService`] as one [`crate::cri::Runtime`] (what the kubelet holds):
/// e.g. `NodeRuntime::new(oci_runtime, images)`.
pub struct NodeRuntime<R, I> {
    pub runtime: R,
    pub images: I,
}

impl<R, I> NodeRuntime<R, I> {
    pub fn new(runtime: R, images: I) -> Self {
        Self { runtime, images }
    }
}

#[async_trait]
impl<R: RuntimeService, I: Send + Sync> RuntimeService for NodeRuntime<R, I> {
    async fn version(&self) -> Result<RuntimeVersion> {
        self.runtime.version().await
    }
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        self.runtime.run_pod_sandbox(config).await
    }
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        self.runtime.stop_pod_sandbox(sandbox_id).await
    }
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        self.runtime.remove_pod_sandbox(sandbox_id).await
    }
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        self.runtime.pod_sandbox_status(sandbox_id).await
    }
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        self.runtime.list_pod_sandboxes().await
    }
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        self.runtime
            .create_container(sandbox_id, config, sandbox)
            .await
    }
    async fn start_container(&self, container_id: &str) -> Result<()> {
        self.runtime.start_container(container_id).await
    }
    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()> {
        self.runtime.stop_container(container_id, timeout).await
    }
    async fn remove_container(&self, container_id: &str) -> Result<()> {
        self.runtime.remove_container(container_id).await
    }
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        self.runtime.container_status(container_id).await
    }
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        self.runtime.list_containers(filter).await
    }
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult> {
        self.runtime.exec_sync(container_id, cmd, timeout).await
    }
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        options: &StreamOptions,
    ) -> Result<StreamSession> {
        self.runtime.exec(container_id, cmd, options).await
    }
    async fn attach(&self, container_id: &str, options: &StreamOptions) -> Result<StreamSession> {
        self.runtime.attach(container_id, options).await
    }
    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>> {
        self.runtime.port_forward(sandbox_id, port).await
    }
    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats> {
        self.runtime.container_stats(container_id).await
    }
}

#[async_trait]
impl<R: Send + Sync, I: ImageService> ImageService for NodeRuntime<R, I> {
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<String> {
        self.images.pull_image(image, auth).await
    }
    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        self.images.image_status(image).await
    }
    async fn list_images(&self) -> Result<Vec<Image>> {
        self.images.list_images().await
    }
    async fn remove_image(&self, image: &str) -> Result<()> {
        self.images.remove_image(image).await
    }
}
