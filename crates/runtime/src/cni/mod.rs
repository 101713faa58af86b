//! The pod network through CNI plugins (spec 1.0.0): the node's conflist (bridge with host-local IPAM, then
//! portmap) and a driver that runs the plugin binaries for ADD, CHECK and DEL of a pod sandbox.
//!
//! The driver follows libcni's behaviour where the spec leaves room: the `lo` interface is brought up by the
//! `loopback` plugin on its own, outside the list; every ADD result is cached in a file under the data dir
//! so DEL and CHECK get the right `prevResult` even after an agent restart; DEL runs the list in reverse and
//! tolerates state that is already gone. A failed ADD is rolled back with a best-effort DEL so IPs do not
//! leak.

mod exec;
mod result;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use result::{CniResult, Dns, Interface, IpConfig, Route};

/// The CNI spec version of the conflist skiff writes (Debian's plugins 1.1.1 support up to 1.0.0).
pub const CNI_VERSION: &str = "1.0.0";
/// Where Debian's containernetworking-plugins install their binaries.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
/// The pod's interface name.
pub const POD_IFNAME: &str = "eth0";
/// The default time a single plugin invocation may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the pod network.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("invalid CNI network config: {0}")]
    InvalidConfig(String),
    #[error("invalid pod network request: {0}")]
    InvalidRequest(String),
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} {command} failed (code {code}): {msg}{}", details_suffix(.details))]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("CNI plugin {plugin} {command} did not finish within {timeout:?} and was killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error("running CNI plugin {plugin}: {source}")]
    Exec {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} printed an invalid result: {reason}")]
    InvalidResult {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no cached CNI result for container {0}: its network was not added")]
    NotAdded(String),
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CniError + '_ {
    move |source| CniError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An IPv4 network in CIDR notation, such as a node's podCIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The network, with host bits cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CniError> {
        if prefix > 32 {
            return Err(CniError::InvalidConfig(format!(
                "prefix length {prefix} > 32"
            )));
        }
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask(prefix)),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.addr)
    }

    /// The first host address (network + 1), the conventional gateway.
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        if self.prefix >= 31 {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.addr) + 1))
    }
}

impl FromStr for Ipv4Net {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CniError::InvalidConfig(format!("{s:?} is not an IPv4 CIDR"));
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Self::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The pod network of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The network name in the conflist (and in cache file names).
    pub name: String,
    /// The Linux bridge pods attach to.
    pub bridge: String,
    /// The node's podCIDR.
    pub pod_cidr: Ipv4Net,
    /// The bridge's address, the pods' default gateway.
    pub gateway: Ipv4Addr,
    /// MTU of the bridge and veths; the plugin's default when `None`.
    pub mtu: Option<u32>,
    /// Lets a pod reach itself through a service (hairpin on the bridge port).
    pub hairpin_mode: bool,
    /// Masquerade traffic from pods leaving the pod CIDR.
    pub ip_masq: bool,
    /// Directories searched for plugin binaries, in order (`CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    /// Skiff's CNI state directory (`<data-dir>/cni`): host-local's leases, the result cache, the conflist.
    pub state_dir: PathBuf,
}

impl NetworkConfig {
    /// A config with the defaults (`cni0`, gateway = first host of the CIDR, hairpin and masquerade on,
    /// plugins in `/usr/lib/cni`), keeping its state under `<data_dir>/cni`.
    pub fn new(data_dir: &Path, pod_cidr: &str) -> Result<Self, CniError> {
        let pod_cidr: Ipv4Net = pod_cidr.parse()?;
        let gateway = pod_cidr
            .first_host()
            .ok_or_else(|| CniError::InvalidConfig(format!("pod CIDR {pod_cidr} is too small")))?;
        Ok(Self {
            name: "skiff".to_string(),
            bridge: "cni0".to_string(),
            pod_cidr,
            gateway,
            mtu: None,
            hairpin_mode: true,
            ip_masq: true,
            plugin_dirs: vec![PathBuf::from(DEFAULT_PLUGIN_DIR)],
            state_dir: data_dir.join("cni"),
        })
    }

    /// host-local's `dataDir`: its leases, per network, under skiff's data dir rather than `/var/lib/cni`,
    /// so several instances can share a host.
    pub fn ipam_dir(&self) -> PathBuf {
        self.state_dir.join("ipam")
    }

    /// The cached ADD results, one file per container and interface.
    pub fn cache_dir(&self) -> PathBuf {
        self.state_dir.join("results")
    }

    /// Where [`NetworkConfig::write_conflist`] puts the conflist.
    pub fn conflist_path(&self) -> PathBuf {
        self.state_dir.join("net.d").join("10-skiff.conflist")
    }

    fn validate(&self) -> Result<(), CniError> {
        let broadcast = Ipv4Addr::from(
            u32::from(self.pod_cidr.network()) | !Ipv4Net::mask(self.pod_cidr.prefix),
        );
        if !self.pod_cidr.contains(self.gateway)
            || self.gateway == self.pod_cidr.network()
            || self.gateway == broadcast
        {
            return Err(CniError::InvalidConfig(format!(
                "gateway {} is not a host address of {}",
                self.gateway, self.pod_cidr
            )));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains('/') {
            return Err(CniError::InvalidConfig(format!(
                "bad bridge name {:?}",
                self.bridge
            )));
        }
        if self.name.is_empty() || !self.name.chars().all(is_id_char) {
            return Err(CniError::InvalidConfig(format!(
                "bad network name {:?}",
                self.name
            )));
        }
        if self.plugin_dirs.is_empty() {
            return Err(CniError::InvalidConfig("no plugin directory".into()));
        }
        Ok(())
    }

    /// The network configuration list: `bridge` (host-local IPAM on the pod CIDR) then `portmap`.
    pub fn conflist(&self) -> Value {
        let mut bridge = json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": self.ip_masq,
            "hairpinMode": self.hairpin_mode,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr.to_string(), "gateway": self.gateway.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir(),
            },
        });
        if let Some(mtu) = self.mtu {
            bridge["mtu"] = json!(mtu);
        }
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                bridge,
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        })
    }

    /// The config of the `loopback` plugin, run on its own for the pod's `lo`.
    pub fn loopback_config(&self) -> Value {
        json!({"cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback"})
    }

    /// Writes [`NetworkConfig::conflist`] to [`NetworkConfig::conflist_path`] (atomically) and returns the path.
    pub fn write_conflist(&self) -> Result<PathBuf, CniError> {
        let path = self.conflist_path();
        let text = serde_json::to_vec_pretty(&self.conflist()).expect("a Value serialises");
        write_atomic(&path, &text)?;
        Ok(path)
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CniError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// A hostPort declaration, as the `portMappings` capability takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// The pod sandbox whose network is set up or torn down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The sandbox's id (`CNI_CONTAINERID`): letters, digits, `_`, `.`, `-`.
    pub container_id: String,
    /// Path of the pod's network namespace (`CNI_NETNS`), e.g. `/var/run/netns/<name>`.
    pub netns: PathBuf,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The pod's hostPorts.
    pub port_mappings: Vec<PortMapping>,
}

impl PodNetwork {
    fn validate(&self) -> Result<(), CniError> {
        if self.container_id.is_empty() || !self.container_id.chars().all(is_id_char) {
            return Err(CniError::InvalidRequest(format!(
                "container id {:?} must be letters, digits, '_', '.', '-'",
                self.container_id
            )));
        }
        for (what, v) in [("namespace", &self.pod_namespace), ("name", &self.pod_name)] {
            if v.contains([';', '=']) {
                return Err(CniError::InvalidRequest(format!("pod {what} {v:?}")));
            }
        }
        Ok(())
    }

    fn cni_args(&self) -> String {
        format!(
            "K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};IgnoreUnknown=1",
            self.pod_namespace, self.pod_name, self.container_id
        )
    }
}

/// The network of a pod after ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct PodNetworkStatus {
    /// The final result of the list (the last plugin's output).
    pub result: CniResult,
    /// The same result as printed, unknown fields included.
    pub raw: Value,
}

impl PodNetworkStatus {
    /// The pod's IPv4 address for `status.podIP`: the first IPv4 on an interface inside the sandbox,
    /// else the first IPv4 of the result.
    pub fn pod_ip(&self) -> Option<Ipv4Addr> {
        let in_sandbox = |ip: &&IpConfig| {
            ip.interface
                .and_then(|i| self.result.interfaces.get(i))
                .is_some_and(|itf| itf.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
        };
        self.result
            .ips
            .iter()
            .filter(in_sandbox)
            .find_map(IpConfig::ipv4)
            .or_else(|| self.result.ips.iter().find_map(IpConfig::ipv4))
    }
}

/// What is cached per container after a successful ADD (libcni's `cniCacheV1` shape).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    kind: String,
    container_id: String,
    if_name: String,
    network_name: String,
    netns: PathBuf,
    cni_args: String,
    capability_args: CapabilityArgs,
    result: Value,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CapabilityArgs {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Add,
    Check,
    Del,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
}

/// One invocation's inputs that are the same for every plugin of the list.
struct Invocation<'a> {
    command: Command,
    pod: &'a PodNetwork,
    netns: &'a Path,
    ifname: &'a str,
    port_mappings: &'a [PortMapping],
}

/// Runs the node's CNI plugins for pod sandboxes.
#[derive(Debug, Clone)]
pub struct CniDriver {
    config: NetworkConfig,
    timeout: Duration,
}

impl CniDriver {
    /// A driver for `config`, with the default per-plugin time-out of 30 s.
    pub fn new(config: NetworkConfig) -> Result<Self, CniError> {
        config.validate()?;
        Ok(Self {
            config,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets how long one plugin invocation may run before it is killed.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Sets up the pod's network: `lo` through `loopback`, then the list in order, each plugin getting the
    /// previous one's result. The result is cached for DEL and CHECK. On failure the plugins are rolled
    /// back with DEL.
    pub fn add(&self, pod: &PodNetwork) -> Result<PodNetworkStatus, CniError> {
        pod.validate()?;
        let lo = Invocation {
            command: Command::Add,
            pod,
            netns: &pod.netns,
            ifname: "lo",
            port_mappings: &[],
        };
        self.invoke(&self.config.loopback_config(), None, &lo)?;

        let list = self.config.conflist();
        let inv = Invocation {
            command: Command::Add,
            pod,
            netns: &pod.netns,
            ifname: POD_IFNAME,
            port_mappings: &pod.port_mappings,
        };
        let mut prev: Option<Value> = None;
        for plugin in plugins(&list) {
            match self.invoke(&plugin_config(&list, plugin), prev.as_ref(), &inv) {
                Ok(out) => prev = Some(out),
                Err(e) => {
                    tracing::warn!(container = %pod.container_id, error = %e, "CNI ADD failed, rolling back");
                    let del = Invocation {
                        command: Command::Del,
                        ..inv
                    };
                    if let Err(e2) = self.del_list(&list, prev.as_ref(), &del) {
                        tracing::warn!(container = %pod.container_id, error = %e2, "CNI rollback DEL failed");
                    }
                    return Err(e);
                }
            }
        }
        let raw = prev.unwrap_or_else(|| json!({"cniVersion": CNI_VERSION}));
        let result: CniResult =
            serde_json::from_value(raw.clone()).map_err(|e| CniError::InvalidResult {
                plugin: self.config.name.clone(),
                command: "ADD",
                reason: e.to_string(),
            })?;
        let entry = CacheEntry {
            kind: "cniCacheV1".into(),
            container_id: pod.container_id.clone(),
            if_name: POD_IFNAME.into(),
            network_name: self.config.name.clone(),
            netns: pod.netns.clone(),
            cni_args: pod.cni_args(),
            capability_args: CapabilityArgs {
                port_mappings: pod.port_mappings.clone(),
            },
            result: raw.clone(),
        };
        let path = self.cache_path(&pod.container_id);
        write_atomic(
            &path,
            &serde_json::to_vec(&entry).expect("a cache entry serialises"),
        )?;
        Ok(PodNetworkStatus { result, raw })
    }

    /// Tears down the pod's network: the list in reverse with the cached result as `prevResult`, then
    /// `loopback`. Succeeds when the network is already gone; errors about a missing netns are logged.
    /// The cache entry is removed once every plugin succeeded.
    pub fn del(&self, pod: &PodNetwork) -> Result<(), CniError> {
        pod.validate()?;
        let cached = self.read_cache(&pod.container_id)?;
        let (prev, mappings) = match &cached {
            Some(c) => (Some(&c.result), c.capability_args.port_mappings.as_slice()),
            None => (None, pod.port_mappings.as_slice()),
        };
        let list = self.config.conflist();
        let inv = Invocation {
            command: Command::Del,
            pod,
            netns: &pod.netns,
            ifname: POD_IFNAME,
            port_mappings: mappings,
        };
        let mut first_err = self.del_list(&list, prev, &inv).err();
        let lo = Invocation {
            ifname: "lo",
            port_mappings: &[],
            ..inv
        };
        if let Err(e) = self.invoke(&self.config.loopback_config(), None, &lo)
            && !tolerable_del_error(&e, &pod.netns)
        {
            first_err.get_or_insert(e);
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let path = self.cache_path(&pod.container_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Asks each plugin of the list whether the pod's network is as ADD left it.
    pub fn check(&self, pod: &PodNetwork) -> Result<(), CniError> {
        pod.validate()?;
        let cached = self
            .read_cache(&pod.container_id)?
            .ok_or_else(|| CniError::NotAdded(pod.container_id.clone()))?;
        let list = self.config.conflist();
        let inv = Invocation {
            command: Command::Check,
            pod,
            netns: &pod.netns,
            ifname: POD_IFNAME,
            port_mappings: &cached.capability_args.port_mappings,
        };
        for plugin in plugins(&list) {
            self.invoke(&plugin_config(&list, plugin), Some(&cached.result), &inv)?;
        }
        Ok(())
    }

    /// The cached ADD result of a container, if its network is set up (e.g. after an agent restart).
    pub fn cached_status(&self, container_id: &str) -> Result<Option<PodNetworkStatus>, CniError> {
        if container_id.is_empty() || !container_id.chars().all(is_id_char) {
            return Err(CniError::InvalidRequest(format!(
                "container id {container_id:?}"
            )));
        }
        let Some(entry) = self.read_cache(container_id)? else {
            return Ok(None);
        };
        let path = self.cache_path(container_id);
        let result = serde_json::from_value(entry.result.clone()).map_err(|e| CniError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Ok(Some(PodNetworkStatus {
            result,
            raw: entry.result,
        }))
    }

    fn cache_path(&self, container_id: &str) -> PathBuf {
        self.config.cache_dir().join(format!(
            "{}-{}-{}",
            self.config.name, container_id, POD_IFNAME
        ))
    }

    fn read_cache(&self, container_id: &str) -> Result<Option<CacheEntry>, CniError> {
        let path = self.cache_path(container_id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => {
                // A torn or foreign file must not block DEL forever: run without prevResult.
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable CNI cache entry");
                Ok(None)
            }
        }
    }

    /// DEL for every plugin of the list in reverse order; returns the first error that is not tolerable,
    /// after trying all plugins.
    fn del_list(
        &self,
        list: &Value,
        prev: Option<&Value>,
        inv: &Invocation<'_>,
    ) -> Result<(), CniError> {
        let mut first_err = None;
        let all: Vec<&Value> = plugins(list).collect();
        for plugin in all.into_iter().rev() {
            if let Err(e) = self.invoke(&plugin_config(list, plugin), prev, inv) {
                if tolerable_del_error(&e, inv.netns) {
                    tracing::info!(container = %inv.pod.container_id, error = %e, "CNI DEL: already gone");
                } else {
                    tracing::warn!(container = %inv.pod.container_id, error = %e, "CNI DEL failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Runs one plugin; returns its parsed stdout for ADD (its result), `Value::Null` otherwise.
    fn invoke(
        &self,
        config: &Value,
        prev: Option<&Value>,
        inv: &Invocation<'_>,
    ) -> Result<Value, CniError> {
        let plugin = config
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let dirs = &self.config.plugin_dirs;
        let binary = exec::find_plugin(dirs, &plugin).ok_or_else(|| CniError::PluginNotFound {
            plugin: plugin.clone(),
            dirs: join_paths(dirs),
        })?;
        let stdin = stdin_config(config, prev, inv.port_mappings);
        let env = vec![
            ("CNI_COMMAND".to_string(), inv.command.as_str().to_string()),
            ("CNI_CONTAINERID".to_string(), inv.pod.container_id.clone()),
            ("CNI_NETNS".to_string(), inv.netns.display().to_string()),
            ("CNI_IFNAME".to_string(), inv.ifname.to_string()),
            ("CNI_ARGS".to_string(), inv.pod.cni_args()),
            ("CNI_PATH".to_string(), join_paths(dirs)),
        ];
        let command = inv.command.as_str();
        tracing::debug!(%plugin, command, container = %inv.pod.container_id, "invoking CNI plugin");
        let stdin = serde_json::to_vec(&stdin).expect("a Value serialises");
        let out = exec::run(&binary, &env, &stdin, self.timeout).map_err(|f| match f {
            exec::ExecFailure::Timeout => CniError::Timeout {
                plugin: plugin.clone(),
                command,
                timeout: self.timeout,
            },
            exec::ExecFailure::Spawn(source) => CniError::Exec {
                plugin: plugin.clone(),
                source,
            },
        })?;
        if !out.status.success() {
            return Err(plugin_error(&plugin, command, &out));
        }
        if inv.command != Command::Add {
            return Ok(Value::Null);
        }
        let value: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| CniError::InvalidResult {
                plugin: plugin.clone(),
                command,
                reason: e.to_string(),
            })?;
        serde_json::from_value::<CniResult>(value.clone()).map_err(|e| {
            CniError::InvalidResult {
                plugin: plugin.clone(),
                command,
                reason: e.to_string(),
            }
        })?;
        Ok(value)
    }
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn plugins(list: &Value) -> impl Iterator<Item = &Value> {
    list.get("plugins")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A plugin's own network config: its object from the list with the list's `name` and `cniVersion`.
fn plugin_config(list: &Value, plugin: &Value) -> Value {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), list["name"].clone());
    conf.insert("cniVersion".into(), list["cniVersion"].clone());
    Value::Object(conf)
}

/// The stdin of one invocation: the plugin's config plus `prevResult` and the `runtimeConfig` of the
/// capabilities it declares.
fn stdin_config(config: &Value, prev: Option<&Value>, port_mappings: &[PortMapping]) -> Value {
    let mut conf = config.as_object().cloned().unwrap_or_default();
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let wants = |cap: &str| {
        config
            .get("capabilities")
            .and_then(|c| c.get(cap))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut runtime = Map::new();
    if wants("portMappings") {
        runtime.insert(
            "portMappings".into(),
            serde_json::to_value(port_mappings).expect("port mappings serialise"),
        );
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

fn plugin_error(plugin: &str, command: &'static str, out: &exec::Output) -> CniError {
    let parsed: Option<result::ErrorOutput> = serde_json::from_slice(&out.stdout).ok();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let (code, msg, details) = match parsed {
        Some(e) if !e.msg.is_empty() => (e.code, e.msg, e.details),
        parsed => {
            let msg = if !stderr.is_empty() {
                stderr
            } else if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&out.status) {
                format!("killed by signal {sig}")
            } else {
                let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if stdout.is_empty() {
                    format!("exited with {}", out.status)
                } else {
                    stdout
                }
            };
            (parsed.map_or(0, |p| p.code), msg, String::new())
        }
    };
    CniError::Plugin {
        plugin: plugin.to_string(),
        command,
        code,
        msg,
        details,
    }
}

/// DEL must succeed when things are already gone: a missing netns, or a plugin that says so.
fn tolerable_del_error(e: &CniError, netns: &Path) -> bool {
    match e {
        CniError::Plugin { code, msg, .. } => {
            let msg = msg.to_ascii_lowercase();
            *code == 3
                || !netns.exists()
                || msg.contains("no such file")
                || msg.contains("does not exist")
                || msg.contains("not found")
                || msg.contains("netns")
        }
        _ => false,
    }
}
