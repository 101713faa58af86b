//! The pod spec translated into the runtime's terms: the pod sandbox config (hostname, namespaces, ports, DNS,
//! host aliases, log directory, sysctls) and each container's config (environment, command, security context,
//! resources, OOM score, mounts, termination message file), following the kubelet's rules.

mod dns;
mod qos;
mod subpath;

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_runtime::bundle::{self, CapabilitiesConfig, MountConfig, Propagation, ResourceConfig, UserConfig};
use skiff_runtime::cni::PortMapping;
use skiff_runtime::cri;

pub use dns::{HostResolv, pod_dns};
pub use qos::{QosClass, oom_score_adj, pod_qos};
pub use subpath::prepare_subpath;

use crate::env::{self, NodeAllocatable};
use crate::volumes::MountedVolumes;

/// Default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Longest hostname a pod gets (upstream truncates to 63).
pub const HOSTNAME_MAX_LEN: usize = 63;

/// Annotation keys written on containers (upstream's names), read back by the pod workers.
pub mod annotations {
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// `"true"` when the merged security context asks for a non-root user; the runtime checks it against the
    /// image's user (upstream's `verifyRunAsNonRoot`).
    pub const RUN_AS_NON_ROOT: &str = "io.kubernetes.container.runAsNonRoot";
    /// The pod's FQDN (`<hostname>.<subdomain>.<ns>.svc.<domain>`) for `/etc/hosts`, when it has a subdomain.
    pub const HOSTNAME_FQDN: &str = "io.kubernetes.pod.hostnameFQDN";
}

/// What the node tells the translation: its name and address, cluster DNS, and where logs and cgroups live.
#[derive(Clone, Debug)]
pub struct NodeContext {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub log_root: PathBuf,
    pub cgroup_parent: PathBuf,
}

/// Why a pod or container could not be translated; the text is what the container's waiting message
/// (`CreateContainerConfigError`) shows, in the kubelet's words.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey { key: String, kind: &'static str, namespace: String, name: String },
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container \"{0}\" not found in the pod")]
    ContainerNotFound(String),
    #[error("invalid quantity {value:?} for {what}")]
    Quantity { what: String, value: String },
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    VolumeNotFound { volume: String, container: String },
    #[error("failed to prepare subPath for volumeMount \"{volume}\" of container \"{container}\": {reason}")]
    SubPath { volume: String, container: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("failed to get {kind} {namespace}/{name}: {source}")]
    Api { kind: &'static str, namespace: String, name: String, source: Box<kube::Error> },
    #[error("failed to list services: {0}")]
    ListServices(Box<kube::Error>),
    #[error("failed to {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// Where the kubelet keeps a container attempt's termination message file on the host (bind-mounted to its
/// `terminationMessagePath`): `<pod dir>/containers/<name>/<attempt>`.
pub fn termination_message_path(pod_dir: &Path, container: &str, attempt: u32) -> PathBuf {
    pod_dir.join("containers").join(container).join(attempt.to_string())
}

/// The pod's log directory: `<log_root>/<namespace>_<name>_<uid>`.
pub fn pod_log_directory(log_root: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    log_root.join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    ))
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The pod's hostname and domain (`GeneratePodHostNameAndDomain`): `spec.hostname` or the pod name, cut to 63
/// characters without a trailing `-` or `.`; the domain is `<subdomain>.<ns>.svc.<cluster domain>`.
pub fn pod_hostname_and_domain(pod: &Pod, cluster_domain: &str) -> Result<(String, Option<String>), ConfigError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut hostname = name.clone();
    if let Some(h) = spec.and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty()) {
        if !is_dns1123_label(h) {
            return Err(ConfigError::Invalid(format!("pod Hostname {h:?} is not a valid DNS label")));
        }
        hostname = h.to_string();
    }
    if hostname.len() > HOSTNAME_MAX_LEN {
        let mut cut = HOSTNAME_MAX_LEN;
        while !hostname.is_char_boundary(cut) {
            cut -= 1;
        }
        let truncated = hostname[..cut].trim_end_matches(['-', '.']).to_string();
        if truncated.is_empty() {
            return Err(ConfigError::Invalid(format!("hostname for pod {name:?} was invalid: {hostname:?}")));
        }
        hostname = truncated;
    }
    let domain = spec.and_then(|s| s.subdomain.as_deref()).filter(|s| !s.is_empty()).map(|sub| {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        format!("{sub}.{ns}.svc.{cluster_domain}")
    });
    Ok((hostname, domain))
}

fn pod_identity_labels(pod: &Pod) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    BTreeMap::from([
        (cri::labels::POD_NAME.to_string(), m.name.clone().unwrap_or_default()),
        (cri::labels::POD_NAMESPACE.to_string(), m.namespace.clone().unwrap_or_else(|| "default".into())),
        (cri::labels::POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
    ])
}

/// The sandbox config of `pod` (`generatePodSandboxConfig`). The attempt is 0; the caller raises it when it
/// recreates the sandbox.
pub async fn sandbox_config(pod: &Pod, node: &NodeContext) -> Result<cri::PodSandboxConfig, ConfigError> {
    let host = match tokio::fs::read_to_string("/etc/resolv.conf").await {
        Ok(text) => HostResolv::parse(&text),
        Err(_) => HostResolv::default(),
    };
    sandbox_config_with_host(pod, node, &host)
}

/// [`sandbox_config`] with the host's `resolv.conf` given (for tests).
pub fn sandbox_config_with_host(
    pod: &Pod,
    node: &NodeContext,
    host: &HostResolv,
) -> Result<cri::PodSandboxConfig, ConfigError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref().ok_or_else(|| ConfigError::Invalid("pod has no spec".into()))?;
    let uid = m.uid.clone().filter(|u| !u.is_empty()).ok_or_else(|| ConfigError::Invalid("pod has no uid".into()))?;
    let (hostname, domain) = pod_hostname_and_domain(pod, &node.cluster_domain)?;
    let hostname = match (&domain, spec.set_hostname_as_fqdn) {
        (Some(d), Some(true)) => format!("{hostname}.{d}"),
        _ => hostname,
    };
    let mut port_mappings = Vec::new();
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|hp| *hp > 0) else { continue };
            let (Ok(host_port), Ok(container_port)) = (u16::try_from(host_port), u16::try_from(p.container_port))
            else {
                return Err(ConfigError::Invalid(format!("invalid port mapping {host_port}:{}", p.container_port)));
            };
            port_mappings.push(PortMapping {
                host_port,
                container_port,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
            });
        }
    }
    let host_aliases =
        spec.host_aliases.iter().flatten().map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default())).collect();
    let sysctls = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .map(|v| v.iter().map(|s| (s.name.clone(), s.value.clone())).collect())
        .unwrap_or_default();
    let mut labels = m.labels.clone().unwrap_or_default();
    labels.extend(pod_identity_labels(pod));
    let mut annotations = m.annotations.clone().unwrap_or_default();
    if let Some(d) = &domain {
        let short = pod_hostname_and_domain(pod, &node.cluster_domain)?.0;
        annotations.insert(annotations::HOSTNAME_FQDN.to_string(), format!("{short}.{d}"));
    }
    Ok(cri::PodSandboxConfig {
        name: m.name.clone().unwrap_or_default(),
        namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
        uid,
        attempt: 0,
        hostname,
        host_network: spec.host_network.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        host_pid: spec.host_pid.unwrap_or(false),
        share_process_namespace: spec.share_process_namespace.unwrap_or(false),
        port_mappings,
        dns: pod_dns(pod, &node.cluster_dns, &node.cluster_domain, host),
        host_aliases,
        log_directory: pod_log_directory(&node.log_root, pod),
        sysctls,
        labels,
        annotations,
    })
}

/// A stable hash of the container's spec (FNV-1a over its JSON), so a restarted kubelet sees spec changes.
pub fn container_hash(container: &Container) -> String {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x100000001b3);
            }
        }
    }
    let mut h = Fnv(0xcbf29ce484222325);
    h.write(&serde_json::to_vec(container).unwrap_or_default());
    format!("{:x}", h.finish())
}

/// The merged security settings of a container (pod level, then container level).
fn security(pod: &Pod, container: &Container) -> (UserConfig, bool, CapabilitiesConfig, bool, Option<bool>, bool) {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = container.security_context.as_ref();
    let run_as_user = csc.and_then(|c| c.run_as_user).or(psc.and_then(|p| p.run_as_user));
    let run_as_group = csc.and_then(|c| c.run_as_group).or(psc.and_then(|p| p.run_as_group));
    let run_as_non_root = csc.and_then(|c| c.run_as_non_root).or(psc.and_then(|p| p.run_as_non_root)).unwrap_or(false);
    let mut groups: Vec<u32> = Vec::new();
    for g in psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(psc.and_then(|p| p.fs_group))
    {
        if let Ok(g) = u32::try_from(g)
            && !groups.contains(&g)
        {
            groups.push(g);
        }
    }
    let user = UserConfig {
        run_as_user: run_as_user.and_then(|u| u32::try_from(u).ok()),
        run_as_group: run_as_group.and_then(|g| u32::try_from(g).ok()),
        run_as_username: None,
        supplemental_groups: groups,
    };
    let caps = csc.and_then(|c| c.capabilities.as_ref());
    let capabilities = CapabilitiesConfig {
        add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
    };
    (
        user,
        csc.and_then(|c| c.privileged).unwrap_or(false),
        capabilities,
        csc.and_then(|c| c.read_only_root_filesystem).unwrap_or(false),
        csc.and_then(|c| c.allow_privilege_escalation),
        run_as_non_root,
    )
}

fn resources(container: &Container) -> Result<ResourceConfig, ConfigError> {
    let res = container.resources.as_ref();
    let get = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str| {
        m.and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let (cpu_req, cpu_lim, mem_lim) = (get(requests, "cpu"), get(limits, "cpu"), get(limits, "memory"));
    ResourceConfig::from_quantities(cpu_req.as_deref(), cpu_lim.as_deref(), mem_lim.as_deref(), None).map_err(|e| {
        let value = match &e {
            bundle::BundleError::Quantity(v) => v.clone(),
            other => other.to_string(),
        };
        ConfigError::Quantity { what: format!("container {:?} resources", container.name), value }
    })
}

fn propagation(mode: Option<&str>, privileged: bool) -> Result<Propagation, ConfigError> {
    match mode.unwrap_or("None") {
        "None" | "" => Ok(Propagation::None),
        "HostToContainer" => Ok(Propagation::HostToContainer),
        "Bidirectional" if privileged => Ok(Propagation::Bidirectional),
        "Bidirectional" => Err(ConfigError::Invalid(
            "Bidirectional mount propagation is available only to privileged containers".into(),
        )),
        other => Err(ConfigError::Invalid(format!("invalid mount propagation mode {other:?}"))),
    }
}

/// The config of `container` (attempt `attempt`) in `pod` (`generateContainerConfig`): environment resolved
/// through `client`, command and args expanded, security context merged, resources and OOM score, the
/// volume mounts over `volumes` (subPaths created), and the termination message file created empty.
/// `pod.status.podIP(s)` should hold the sandbox's address for `fieldRef: status.podIP`.
pub async fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    volumes: &MountedVolumes,
    client: &kube::Client,
    node: &NodeContext,
) -> Result<cri::ContainerConfig, ConfigError> {
    let allocatable = NodeAllocatable::from_host();
    let (env, invalid) = env::make_environment(pod, container, client, node, &allocatable).await?;
    if !invalid.is_empty() {
        tracing::warn!(
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            container = %container.name,
            keys = ?invalid,
            "envFrom keys were skipped since they are considered invalid environment variable names"
        );
    }
    build_container_config(pod, container, attempt, volumes, node, env, &allocatable)
}

/// [`container_config`] once the environment is known (no API calls).
pub fn build_container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    volumes: &MountedVolumes,
    node: &NodeContext,
    env: Vec<(String, String)>,
    allocatable: &NodeAllocatable,
) -> Result<cri::ContainerConfig, ConfigError> {
    let spec = pod.spec.as_ref().ok_or_else(|| ConfigError::Invalid("pod has no spec".into()))?;
    let env_map: std::collections::HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| env_map.get(name).map(|v| v.to_string());
    let command: Vec<String> = container.command.iter().flatten().map(|c| env::expand(c, &lookup)).collect();
    let args: Vec<String> = container.args.iter().flatten().map(|c| env::expand(c, &lookup)).collect();

    let (user, privileged, capabilities, read_only_root_filesystem, allow_privilege_escalation, run_as_non_root) =
        security(pod, container);
    if run_as_non_root && user.run_as_user == Some(0) {
        return Err(ConfigError::Invalid(format!(
            "container's runAsUser breaks non-root policy (pod: {:?}, container: {})",
            format!(
                "{}_{}({})",
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.uid.as_deref().unwrap_or_default()
            ),
            container.name
        )));
    }

    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let base = volumes.paths.get(&vm.name).ok_or_else(|| ConfigError::VolumeNotFound {
            volume: vm.name.clone(),
            container: container.name.clone(),
        })?;
        let sub = match (
            vm.sub_path.as_deref().filter(|s| !s.is_empty()),
            vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(s), _) => Some(s.to_string()),
            (None, Some(expr)) => Some(env::expand(expr, &lookup)),
            (None, None) => None,
        };
        let host_path = match sub {
            Some(s) => prepare_subpath(base, &s).map_err(|reason| ConfigError::SubPath {
                volume: vm.name.clone(),
                container: container.name.clone(),
                reason,
            })?,
            None => base.clone(),
        };
        mounts.push(MountConfig {
            host_path,
            container_path: PathBuf::from(&vm.mount_path),
            read_only: vm.read_only.unwrap_or(false) || volumes.read_only.contains(&vm.name),
            propagation: propagation(vm.mount_propagation.as_deref(), privileged)?,
        });
    }

    let tm_container_path = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
    let tm_host = termination_message_path(&volumes.pod_dir, &container.name, attempt);
    if let Some(parent) = tm_host.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ConfigError::Io {
            what: "create",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&tm_host, b"").map_err(|source| ConfigError::Io {
        what: "create",
        path: tm_host.clone(),
        source,
    })?;
    if !mounts.iter().any(|m| m.container_path == Path::new(&tm_container_path)) {
        mounts.push(MountConfig {
            host_path: tm_host,
            container_path: PathBuf::from(&tm_container_path),
            read_only: false,
            propagation: Propagation::None,
        });
    }

    let host_network = spec.host_network.unwrap_or(false);
    let hostname = if host_network { None } else { Some(pod_hostname_and_domain(pod, &node.cluster_domain)?.0) };
    let sysctls = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .map(|v| v.iter().map(|s| (s.name.clone(), s.value.clone())).collect())
        .unwrap_or_default();

    let mut labels = pod_identity_labels(pod);
    labels.insert(cri::labels::CONTAINER_NAME.to_string(), container.name.clone());
    let mut annotations = BTreeMap::from([
        (annotations::CONTAINER_HASH.to_string(), container_hash(container)),
        (annotations::RESTART_COUNT.to_string(), attempt.to_string()),
        (annotations::TERMINATION_MESSAGE_PATH.to_string(), tm_container_path),
        (
            annotations::TERMINATION_MESSAGE_POLICY.to_string(),
            container.termination_message_policy.clone().unwrap_or_else(|| "File".into()),
        ),
        (
            annotations::TERMINATION_GRACE_PERIOD.to_string(),
            spec.termination_grace_period_seconds.unwrap_or(30).to_string(),
        ),
    ]);
    if run_as_non_root {
        annotations.insert(annotations::RUN_AS_NON_ROOT.to_string(), "true".into());
    }

    let bundle_config = bundle::ContainerConfig {
        id: String::new(),
        name: container.name.clone(),
        command,
        args,
        env,
        working_dir: container.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        privileged,
        capabilities,
        read_only_root_filesystem,
        allow_privilege_escalation,
        tty: container.tty.unwrap_or(false),
        stdin: container.stdin.unwrap_or(false),
        mounts,
        resources: resources(container)?,
        hostname,
        sysctls,
        oom_score_adj: Some(oom_score_adj(pod, container, allocatable.memory_bytes)),
    };
    Ok(cri::ContainerConfig {
        name: container.name.clone(),
        attempt,
        image: container.image.clone().unwrap_or_default(),
        spec: bundle_config,
        log_path: PathBuf::from(&container.name).join(format!("{attempt}.log")),
        labels,
        annotations,
    })
}
