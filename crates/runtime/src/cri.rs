//! The container runtime boundary the kubelet programs against, shaped like Kubernetes' CRI
//! (`RuntimeService` + `ImageService`): pod sandboxes, containers, streaming, stats and images.
//!
//! The kubelet knows only these traits ([`Runtime`] is both); the OCI implementation (runc through
//! `skiff shim`, CNI, overlayfs) and the fake for unit tests implement them. Types are plain data: no
//! Kubernetes API types cross this boundary, as in CRI. Labels and annotations given at creation are kept by
//! the runtime across agent restarts, so a restarted kubelet can find its pods' sandboxes and containers again
//! (the kubelet stores `io.kubernetes.pod.uid`, `io.kubernetes.container.name`, ... in them, as upstream does).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::bundle;
use crate::cni::PortMapping;

/// Label keys the kubelet writes on sandboxes and containers (upstream's names).
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

/// Errors of the runtime, sorted the way the kubelet turns them into container reasons.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No sandbox, container or image with this id or name.
    #[error("{0} not found")]
    NotFound(String),
    /// Pulling failed: the registry's message (or the network error), shown as `ErrImagePull`.
    #[error("failed to pull image {image:?}: {message}")]
    ImagePull { image: String, message: String },
    /// The image is not present and pulling is not allowed (`imagePullPolicy: Never`): `ErrImageNeverPull`.
    #[error("image {0:?} is not present with pull policy of Never")]
    ImageNeverPull(String),
    /// Building the container failed (bad user, bad mount, unknown image): `CreateContainerError`.
    #[error("failed to create container: {0}")]
    CreateContainer(String),
    /// The OCI runtime refused to start the process (executable not found, ...): `RunContainerError`.
    #[error("failed to start container: {0}")]
    StartContainer(String),
    /// Setting up the pod sandbox (network namespace, CNI) failed.
    #[error("failed to set up the pod sandbox: {0}")]
    Sandbox(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Name and version of the runtime, for `nodeInfo.containerRuntimeVersion` (`skiff://0.1.0`, runc's version).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub runtime_name: String,
    pub runtime_version: String,
}

/// The pod's DNS settings, written to the sandbox's `resolv.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What the kubelet asks for when it creates a pod's sandbox.
#[derive(Clone, Debug, Default)]
pub struct PodSandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Incremented each time the sandbox is recreated for the same pod.
    pub attempt: u32,
    pub hostname: String,
    /// `hostNetwork: true`: no network namespace, no CNI; the pod sees the host's interfaces.
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    /// `shareProcessNamespace`.
    pub share_process_namespace: bool,
    /// `hostPort`s, handed to CNI's portmap plugin.
    pub port_mappings: Vec<PortMapping>,
    /// `None` means the host's `/etc/resolv.conf` (`dnsPolicy: Default`, or host networking).
    pub dns: Option<DnsConfig>,
    /// Extra `/etc/hosts` lines (`hostAliases`), as (ip, names).
    pub host_aliases: Vec<(String, Vec<String>)>,
    /// Folder for the pod's container logs (`/var/log/pods/<ns>_<name>_<uid>` style).
    pub log_directory: PathBuf,
    pub sysctls: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// A sandbox as the runtime reports it.
#[derive(Clone, Debug)]
pub struct PodSandboxStatus {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub state: SandboxState,
    pub created_at: SystemTime,
    /// The pod IP (`None` with host networking, where the kubelet reports the node IP).
    pub ip: Option<IpAddr>,
    pub host_network: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A container to create in a sandbox.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    /// The Kubernetes container name.
    pub name: String,
    /// Incremented on each restart of the container within the pod.
    pub attempt: u32,
    /// The image as the pod names it; it must already be pulled.
    pub image: String,
    /// The process, user, mounts and resources. `spec.id` is ignored: the runtime chooses the id.
    pub spec: bundle::ContainerConfig,
    /// Path of the CRI-format log file, relative to the sandbox's `log_directory` (`<name>/<attempt>.log`).
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container as the runtime reports it.
#[derive(Clone, Debug)]
pub struct ContainerStatus {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// Set once exited; 128 + signal for a signalled process, as a shell reports it.
    pub exit_code: Option<i32>,
    /// `OOMKilled` when the memory cgroup killed it, otherwise empty (the kubelet says Completed or Error).
    pub reason: String,
    pub message: String,
    /// The image as requested, and the digest reference it resolved to (`imageID` in the pod status).
    pub image: String,
    pub image_ref: String,
    /// Absolute path of the container's CRI-format log.
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Which containers `list_containers` returns; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct ContainerFilter {
    pub sandbox_id: Option<String>,
    pub state: Option<ContainerState>,
    pub labels: BTreeMap<String, String>,
}

/// Result of a command run to completion in a container (exec probes, hooks).
#[derive(Clone, Debug, Default)]
pub struct ExecSyncResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A terminal size, in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// What an exec or attach wants connected.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// With a TTY, stderr is merged into stdout and `resize` is honoured.
    pub tty: bool,
}

pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// The open streams of an exec or attach. Dropping `stdin` closes the process's stdin.
pub struct StreamSession {
    pub stdin: Option<BoxWriter>,
    pub stdout: Option<BoxReader>,
    pub stderr: Option<BoxReader>,
    /// Terminal resizes (only with a TTY).
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    /// Resolves to the exec'd process's exit code; for attach, when the streams end (the code is then the
    /// container's if it exited, else 0).
    pub exit: Pin<Box<dyn std::future::Future<Output = Result<i32>> + Send>>,
}

/// A bidirectional byte stream (a port-forward connection into a pod's network namespace).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// Usage of one container from its cgroup, for `/stats/summary`.
#[derive(Clone, Debug, Default)]
pub struct ContainerStats {
    pub id: String,
    pub timestamp: Option<SystemTime>,
    pub cpu_usage_nanos: u64,
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file pages, as cAdvisor computes it.
    pub memory_working_set_bytes: u64,
    pub memory_rss_bytes: u64,
    /// Bytes written in the container's writable layer.
    pub writable_layer_bytes: u64,
}

/// Credentials for one pull (from `imagePullSecrets` or `registries.yaml`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

/// An image in the node's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Config digest (`sha256:...`), the image id.
    pub id: String,
    /// Names pointing at it (`docker.io/library/busybox:latest`).
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>` references.
    pub repo_digests: Vec<String>,
    pub size: u64,
}

/// Sandboxes and containers (CRI `RuntimeService`).
#[async_trait]
pub trait RuntimeService: Send + Sync {
    async fn version(&self) -> Result<RuntimeVersion>;

    /// Creates the sandbox: network namespace (unless host networking) with CNI, shared IPC/UTS, the pod's
    /// cgroup, `resolv.conf`, `hosts` and `hostname` files. Returns the sandbox id.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;
    /// Stops every container of the sandbox and tears its network down; idempotent.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;
    /// Removes a stopped sandbox and its containers, cgroups, mounts and files; idempotent.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus>;
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>>;

    /// Creates (does not start) a container; the image must be in the store.
    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, sandbox: &PodSandboxConfig) -> Result<String>;
    async fn start_container(&self, container_id: &str) -> Result<()>;
    /// SIGTERM (or the image's stop signal), then SIGKILL after `timeout`; returns once it has exited.
    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()>;
    /// Removes an exited container and its rootfs; its log file stays (for `--previous`) until the sandbox goes.
    async fn remove_container(&self, container_id: &str) -> Result<()>;
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus>;
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>>;

    /// Runs `cmd` in the container and waits up to `timeout` for it to end.
    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecSyncResult>;
    /// Starts `cmd` in the container with the requested streams.
    async fn exec(&self, container_id: &str, cmd: &[String], options: &StreamOptions) -> Result<StreamSession>;
    /// Connects to the container's main process stdio (which the shim owns).
    async fn attach(&self, container_id: &str, options: &StreamOptions) -> Result<StreamSession>;
    /// A TCP connection to `port` on the sandbox's loopback, made inside its network namespace.
    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>>;

    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats>;
}

/// Images (CRI `ImageService`).
#[async_trait]
pub trait ImageService: Send + Sync {
    /// Pulls `image` (normalized like Docker: `busybox` is `docker.io/library/busybox:latest`) and returns
    /// its image id.
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<String>;
    /// The image if it is in the store.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;
    async fn list_images(&self) -> Result<Vec<Image>>;
    async fn remove_image(&self, image: &str) -> Result<()>;
}

/// A whole runtime: what the kubelet holds (`Arc<dyn Runtime>`).
pub trait Runtime: RuntimeService + ImageService {}
impl<T: RuntimeService + ImageService> Runtime for T {}
