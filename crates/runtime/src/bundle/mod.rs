//! OCI bundles from a Kubernetes container: the runtime spec (`config.json`) built from the container, its pod
//! sandbox and its image config with Kubernetes (kubelet + containerd CRI) semantics, and writing it atomically.
//!
//! Inputs are plain structs so the runtime does not depend on API types. Resource values arrive as numbers
//! (millicores, bytes); [`parse_cpu_millis`] and [`parse_bytes`] convert Kubernetes quantity strings for callers
//! that hold them. Command and args are expected with `$(VAR)` references already expanded by the kubelet.

mod quantity;
mod user;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

pub use quantity::{parse_bytes, parse_cpu_millis};
pub use user::{resolve_user, ResolvedUser};

/// The OCI runtime spec version written into `config.json` (runc 1.1 accepts it).
pub const OCI_VERSION: &str = "1.0.2";
/// `PATH` when neither the image nor the container sets one (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Size of a container's own `/dev/shm` (as Docker and containerd).
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;
/// The soft and hard `RLIMIT_NOFILE` of container processes (containerd's default).
pub const NOFILE_LIMIT: u64 = 1_048_576;
/// CFS period used with a CPU limit, in microseconds (the kubelet's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kubelet's minimum cpu shares (`MinShares`).
pub const MIN_CPU_SHARES: u64 = 2;
/// The kubelet's minimum CFS quota (`MinQuotaPeriod`), in microseconds.
pub const MIN_CPU_QUOTA_US: i64 = 1_000;

/// containerd's and Docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability the spec knows, granted to privileged containers and by `add: [ALL]`.
pub const ALL_CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETGID",
    "SETFCAP",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// containerd's default masked paths (not applied to privileged containers).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default read-only paths (not applied to privileged containers).
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Errors while building or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("container has no command: neither command/args nor the image's Entrypoint/Cmd give one")]
    NoCommand,
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("user {name:?} not found in {}/etc/passwd", rootfs.display())]
    UnknownUser { name: String, rootfs: PathBuf },
    #[error("group {name:?} not found in {}/etc/group", rootfs.display())]
    UnknownGroup { name: String, rootfs: PathBuf },
    #[error("too many levels of symbolic links resolving {0} inside the rootfs")]
    SymlinkLoop(PathBuf),
    #[error("{what} must be an absolute path, got {path:?}")]
    NotAbsolute { what: &'static str, path: PathBuf },
    #[error("invalid container id {0:?}: it must be non-empty and contain no '/'")]
    InvalidId(String),
    #[error("invalid quantity {0:?}")]
    Quantity(String),
    #[error("invalid environment variable name {0:?}")]
    InvalidEnv(String),
    #[error("failed to build the runtime spec")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("failed to read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("failed to serialize the runtime spec")]
    Serialize(#[from] serde_json::Error),
}

/// A container as the kubelet hands it to the runtime, with everything outside the rootfs already resolved.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    /// The runtime's container id; the leaf of the cgroup path.
    pub id: String,
    /// The Kubernetes container name.
    pub name: String,
    /// `command`: replaces the image's Entrypoint (and drops its Cmd) when non-empty.
    pub command: Vec<String>,
    /// `args`: replaces the image's Cmd when non-empty.
    pub args: Vec<String>,
    /// Resolved environment, in order; overrides image variables of the same name.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: UserConfig,
    pub privileged: bool,
    pub capabilities: CapabilitiesConfig,
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation`; as in the kubelet, only an explicit `false` sets `noNewPrivileges`.
    pub allow_privilege_escalation: Option<bool>,
    pub tty: bool,
    /// Whether stdin is kept open; the shim owns stdio, so this does not change the spec.
    pub stdin: bool,
    pub mounts: Vec<MountConfig>,
    pub resources: ResourceConfig,
    /// The pod's hostname; set only when the container has its own or the pod's UTS namespace.
    pub hostname: Option<String>,
    pub sysctls: Vec<(String, String)>,
    /// The QoS-derived OOM score adjustment the kubelet computes.
    pub oom_score_adj: Option<i32>,
}

/// Who the process runs as (`securityContext` fields).
#[derive(Clone, Debug, Default)]
pub struct UserConfig {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// A user name to resolve in the rootfs (`runAsUserName`-like); wins over `run_as_user`.
    pub run_as_username: Option<String>,
    /// The pod's `supplementalGroups` (and `fsGroup`).
    pub supplemental_groups: Vec<u32>,
}

/// `securityContext.capabilities`: names with or without `CAP_`, any case, or `ALL`.
#[derive(Clone, Debug, Default)]
pub struct CapabilitiesConfig {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// Mount propagation, as `volumeMounts[].mountPropagation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    None,
    HostToContainer,
    Bidirectional,
}

/// A bind mount of a host path (a volume already set up by the kubelet) into the container.
#[derive(Clone, Debug, Default)]
pub struct MountConfig {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
    pub propagation: Propagation,
}

/// Resources, already converted from quantities.
#[derive(Clone, Debug, Default)]
pub struct ResourceConfig {
    pub cpu_request_millis: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
}

impl ResourceConfig {
    /// Builds resources from Kubernetes quantity strings (`requests.cpu`, `limits.cpu`, `limits.memory`).
    pub fn from_quantities(
        cpu_request: Option<&str>,
        cpu_limit: Option<&str>,
        memory_limit: Option<&str>,
        pids_limit: Option<i64>,
    ) -> Result<Self, BundleError> {
        let millis = |q: &str| -> Result<u64, BundleError> {
            u64::try_from(parse_cpu_millis(q)?).map_err(|_| BundleError::Quantity(q.to_string()))
        };
        Ok(Self {
            cpu_request_millis: cpu_request.map(millis).transpose()?,
            cpu_limit_millis: cpu_limit.map(millis).transpose()?,
            memory_limit_bytes: memory_limit.map(parse_bytes).transpose()?,
            pids_limit,
        })
    }

    /// cpu shares as the kubelet computes them: from the request (or the limit when only that is set),
    /// `max(2, millis * 1024 / 1000)`.
    pub fn cpu_shares(&self) -> u64 {
        let millis = self.cpu_request_millis.or(self.cpu_limit_millis).unwrap_or(0);
        (millis.saturating_mul(1024) / 1000).max(MIN_CPU_SHARES)
    }

    /// CFS quota in microseconds for [`CPU_PERIOD_US`]; `None` without a cpu limit.
    pub fn cpu_quota(&self) -> Option<i64> {
        let millis = self.cpu_limit_millis.filter(|m| *m > 0)?;
        let quota = i64::try_from(millis.saturating_mul(CPU_PERIOD_US) / 1000).unwrap_or(i64::MAX);
        Some(quota.max(MIN_CPU_QUOTA_US))
    }
}

/// How a container gets one of its namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// The host's namespace: no entry in the spec.
    Host,
    /// A fresh namespace of its own.
    #[default]
    Private,
    /// Join the namespace at this path (the pod sandbox's).
    Join(PathBuf),
}

/// What the pod sandbox provides to each of its containers.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    /// The pod's network namespace; `Host` for `hostNetwork: true`.
    pub network: NamespaceMode,
    /// The pod's IPC namespace (shared by its containers); `Host` for `hostIPC`.
    pub ipc: NamespaceMode,
    /// The pod's UTS namespace; `Host` with host networking.
    pub uts: NamespaceMode,
    /// `Private` by default; `Join(pod pid ns)` with `shareProcessNamespace`; `Host` for `hostPID`.
    pub pid: NamespaceMode,
    /// Absolute cgroup parent owned by the agent (e.g. `/<agent cgroup>/kubepods/pod<uid>`).
    pub cgroup_parent: PathBuf,
    /// Files bind-mounted to `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`.
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    /// The pod's shared `/dev/shm`; without it each container gets its own 64 MiB tmpfs.
    pub shm: Option<PathBuf>,
}

/// The process arguments by the Kubernetes rules: `command` replaces Entrypoint and drops Cmd, `args` replaces Cmd.
pub fn process_args(
    command: &[String],
    args: &[String],
    entrypoint: &[String],
    cmd: &[String],
) -> Result<Vec<String>, BundleError> {
    let mut out: Vec<String> = if command.is_empty() {
        entrypoint.to_vec()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        out.extend_from_slice(args);
    } else if command.is_empty() {
        out.extend_from_slice(cmd);
    }
    if out.is_empty() {
        return Err(BundleError::NoCommand);
    }
    Ok(out)
}

/// The environment: image variables first, container variables replacing them by name (in place) or appended,
/// `PATH` defaulted when missing and `HOSTNAME` added when a hostname is known (as containerd does).
pub fn merge_env(
    image_env: &[String],
    container_env: &[(String, String)],
    hostname: Option<&str>,
) -> Result<Vec<String>, BundleError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: &str, v: &str| match vars.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => vars.push((k.to_string(), v.to_string())),
    };
    if let Some(h) = hostname.filter(|h| !h.is_empty()) {
        set(&mut vars, "HOSTNAME", h);
    }
    for entry in image_env {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        if !k.is_empty() {
            set(&mut vars, k, v);
        }
    }
    for (k, v) in container_env {
        if k.is_empty() || k.contains('=') {
            return Err(BundleError::InvalidEnv(k.clone()));
        }
        set(&mut vars, k, v);
    }
    if !vars.iter().any(|(k, _)| k == "PATH") {
        vars.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn parse_capability(name: &str) -> Result<Capability, BundleError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    serde_json::from_value(serde_json::Value::String(format!("CAP_{bare}")))
        .map_err(|_| BundleError::UnknownCapability(name.to_string()))
}

fn is_all(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase();
    upper == "ALL" || upper == "CAP_ALL"
}

/// The capability set: all for privileged containers, else the default set with `ALL` handled first (add
/// `ALL`, then drop `ALL`) and then the individual adds and drops, as containerd does.
pub fn capability_set(privileged: bool, caps: &CapabilitiesConfig) -> Result<Capabilities, BundleError> {
    let all = || {
        ALL_CAPABILITIES
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<HashSet<_>, _>>()
    };
    if privileged {
        return all();
    }
    let mut set: Capabilities = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| parse_capability(c))
        .collect::<Result<_, _>>()?;
    if caps.add.iter().any(|c| is_all(c)) {
        set = all()?;
    }
    if caps.drop.iter().any(|c| is_all(c)) {
        set.clear();
    }
    for c in caps.add.iter().filter(|c| !is_all(c)) {
        set.insert(parse_capability(c)?);
    }
    for c in caps.drop.iter().filter(|c| !is_all(c)) {
        set.remove(&parse_capability(c)?);
    }
    Ok(set)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, BundleError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn bind(source: &Path, dest: &Path, read_only: bool, propagation: &str) -> Result<Mount, BundleError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(vec![
            "rbind".to_string(),
            propagation.to_string(),
            if read_only { "ro" } else { "rw" }.to_string(),
        ])
        .build()?)
}

fn require_absolute(what: &'static str, path: &Path) -> Result<(), BundleError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(BundleError::NotAbsolute {
            what,
            path: path.to_path_buf(),
        })
    }
}

/// The OCI runtime spec for `container` in `sandbox`, from `image_config` and the unpacked `rootfs`
/// (absolute; its `/etc/passwd` and `/etc/group` are read to resolve user and group names).
pub fn runtime_spec(
    container: &ContainerConfig,
    sandbox: &SandboxConfig,
    image_config: &ImageConfiguration,
    rootfs: &Path,
) -> Result<Spec, BundleError> {
    require_absolute("rootfs", rootfs)?;
    require_absolute("cgroup parent", &sandbox.cgroup_parent)?;
    if container.id.is_empty() || container.id.contains('/') || container.id == "." || container.id == ".." {
        return Err(BundleError::InvalidId(container.id.clone()));
    }
    let image = image_config.config().clone().unwrap_or_default();
    let none: Vec<String> = Vec::new();

    // Process.
    let args = process_args(
        &container.command,
        &container.args,
        image.entrypoint().as_ref().unwrap_or(&none),
        image.cmd().as_ref().unwrap_or(&none),
    )?;
    let has_uts = sandbox.uts != NamespaceMode::Host;
    let hostname = container.hostname.as_deref().filter(|h| has_uts && !h.is_empty());
    let env = merge_env(image.env().as_ref().unwrap_or(&none), &container.env, hostname)?;
    let cwd = container
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .or(image.working_dir().as_deref().filter(|d| !d.is_empty()))
        .unwrap_or("/");
    let cwd = if cwd.starts_with('/') {
        cwd.to_string()
    } else {
        format!("/{cwd}")
    };
    let resolved = resolve_user(&container.user, image.user().as_deref().unwrap_or(""), rootfs)?;
    let mut user = UserBuilder::default().uid(resolved.uid).gid(resolved.gid);
    if !resolved.additional_gids.is_empty() {
        user = user.additional_gids(resolved.additional_gids.clone());
    }
    let caps = capability_set(container.privileged, &container.capabilities)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .build()?;
    let no_new_privileges = !container.privileged && container.allow_privilege_escalation == Some(false);
    let mut process = ProcessBuilder::default()
        .terminal(container.tty)
        .user(user.build()?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(NOFILE_LIMIT)
            .soft(NOFILE_LIMIT)
            .build()?])
        .no_new_privileges(no_new_privileges);
    if let Some(adj) = container.oom_score_adj {
        process = process.oom_score_adj(adj);
    }

    // Mounts: the runtime's defaults, then the pod's files, then volumes (parents before children);
    // a volume on a default destination replaces the default.
    let sys_ro = if container.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", sys_ro])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_ro],
        )?,
    ];
    match &sandbox.shm {
        Some(shm) => {
            require_absolute("shm path", shm)?;
            mounts.push(bind(shm, Path::new("/dev/shm"), false, "rprivate")?);
        }
        None => {
            let size = format!("size={DEFAULT_SHM_SIZE}");
            mounts.push(mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", &size],
            )?);
        }
    }
    let pod_files = [
        (&sandbox.resolv_conf, "/etc/resolv.conf"),
        (&sandbox.hosts, "/etc/hosts"),
        (&sandbox.hostname_file, "/etc/hostname"),
    ];
    for (source, dest) in pod_files {
        if let Some(source) = source {
            require_absolute("pod file", source)?;
            mounts.push(bind(
                source,
                Path::new(dest),
                container.read_only_root_filesystem,
                "rprivate",
            )?);
        }
    }
    let mut volumes: Vec<&MountConfig> = container.mounts.iter().collect();
    volumes.sort_by_key(|m| m.container_path.components().count());
    let mut rootfs_propagation: Option<&str> = None;
    for m in volumes {
        require_absolute("volume host path", &m.host_path)?;
        require_absolute("volume container path", &m.container_path)?;
        let propagation = match m.propagation {
            Propagation::None => "rprivate",
            Propagation::HostToContainer => {
                rootfs_propagation.get_or_insert("rslave");
                "rslave"
            }
            Propagation::Bidirectional => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
        };
        mounts.retain(|existing| existing.destination() != &m.container_path);
        mounts.push(bind(&m.host_path, &m.container_path, m.read_only, propagation)?);
    }

    // Namespaces.
    let mut namespaces = Vec::new();
    let mut ns = |typ: LinuxNamespaceType, mode: &NamespaceMode| -> Result<(), BundleError> {
        match mode {
            NamespaceMode::Host => {}
            NamespaceMode::Private => namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?),
            NamespaceMode::Join(path) => {
                require_absolute("namespace path", path)?;
                namespaces.push(LinuxNamespaceBuilder::default().typ(typ).path(path.clone()).build()?)
            }
        }
        Ok(())
    };
    ns(LinuxNamespaceType::Pid, &sandbox.pid)?;
    ns(LinuxNamespaceType::Ipc, &sandbox.ipc)?;
    ns(LinuxNamespaceType::Uts, &sandbox.uts)?;
    ns(LinuxNamespaceType::Network, &sandbox.network)?;
    ns(LinuxNamespaceType::Mount, &NamespaceMode::Private)?;

    // Resources.
    let r = &container.resources;
    let mut cpu = LinuxCpuBuilder::default().shares(r.cpu_shares());
    if let Some(quota) = r.cpu_quota() {
        cpu = cpu.quota(quota).period(CPU_PERIOD_US);
    }
    let device_rule = LinuxDeviceCgroupBuilder::default()
        .allow(container.privileged)
        .access("rwm")
        .build()?;
    let mut resources = LinuxResourcesBuilder::default()
        .cpu(cpu.build()?)
        .devices(vec![device_rule]);
    if let Some(limit) = r.memory_limit_bytes.filter(|l| *l > 0) {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(limit) = r.pids_limit.filter(|l| *l > 0) {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }

    // The builders start from oci-spec's `Default`s (youki's), so every field that matters is set explicitly.
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(sandbox.cgroup_parent.join(&container.id));
    if !container.privileged {
        linux = linux
            .masked_paths(MASKED_PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .readonly_paths(READONLY_PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    }
    if !container.sysctls.is_empty() {
        linux = linux.sysctl(container.sysctls.iter().cloned().collect::<HashMap<_, _>>());
    }
    if let Some(p) = rootfs_propagation {
        linux = linux.rootfs_propagation(p);
    }
    let mut linux = linux.build()?;
    if container.privileged {
        linux.set_masked_paths(None).set_readonly_paths(None);
    }

    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(container.read_only_root_filesystem)
                .build()?,
        )
        .mounts(mounts)
        .process(process.build()?)
        .linux(linux);
    if let Some(h) = hostname {
        spec = spec.hostname(h);
    }
    let mut spec = spec.build()?;
    if hostname.is_none() {
        spec.set_hostname(None);
    }
    Ok(spec)
}

/// Writes `spec` as `<dir>/config.json` atomically (temporary file, fsync, rename), creating `dir` if needed.
pub fn write_bundle(dir: &Path, spec: &Spec) -> Result<(), BundleError> {
    std::fs::create_dir_all(dir).map_err(|source| BundleError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(spec)?;
    let tmp = dir.join(".config.json.tmp");
    let target = dir.join("config.json");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        BundleError::Write {
            path: target.clone(),
            source,
        }
    })
}
