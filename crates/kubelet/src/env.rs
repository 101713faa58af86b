//! A container's environment as the kubelet builds it (`makeEnvironmentVariables`): service links, `envFrom`,
//! `env` with `$(VAR)` expansion, and the values of `fieldRef` and `resourceFieldRef` (shared with the
//! downwardAPI volume).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use skiff_runtime::bundle::{parse_bytes, parse_cpu_millis};

use crate::container_config::{ConfigError, NodeContext};

/// The namespace of the master service (`kubernetes`), whose variables every pod gets.
pub const MASTER_SERVICE_NAMESPACE: &str = "default";
const MASTER_SERVICE_NAME: &str = "kubernetes";

/// Expands `$(VAR)` references as Kubernetes' `expansion.Expand`: a reference found by `lookup` is replaced,
/// an unknown one is left as written, `$$` is an escaped `$`, and any other `$` is kept literally.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
            break;
        }
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    // An incomplete reference is kept literally.
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            // `$` followed by anything else: kept, with the next character.
            let ch = after.chars().next().expect("after is not empty");
            out.push('$');
            out.push(ch);
            rest = &after[ch.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether `name` is accepted as an environment variable name: any printable ASCII but `=`, not empty
/// (Kubernetes' relaxed rule, on by default since 1.32).
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// What the node offers, used as a container's limits when it sets none (`resourceFieldRef`) and as the
/// memory capacity in the OOM score of burstable containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAllocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
}

impl NodeAllocatable {
    /// The host's CPUs, `MemTotal` from `/proc/meminfo` and the size of the root filesystem.
    pub fn from_host() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64;
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let rest = l.strip_prefix("MemTotal:")?;
                    rest.trim().trim_end_matches("kB").trim().parse::<i64>().ok()
                })
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        Self { cpu_millis: cpus * 1000, memory_bytes, ephemeral_storage_bytes: filesystem_size("/") }
    }
}

fn filesystem_size(path: &str) -> i64 {
    let Ok(c) = std::ffi::CString::new(path) else { return 0 };
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return 0;
        }
        (st.f_blocks as i64).saturating_mul(st.f_frsize as i64)
    }
}

/// `key="value"` lines in key order, as `fieldpath.FormatMap` (the downwardAPI's labels and annotations).
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// Go's `%q` for a string: double quotes with `\"`, `\\` and control characters escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits `metadata.labels['key']` into (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let open = path.find("['")?;
    let inner = path[open + 2..].strip_suffix("']")?;
    Some((&path[..open], inner))
}

/// The value of a `fieldRef` (`podFieldSelectorRuntimeValue` and `ExtractFieldPathAsString`). `host_ip` is the
/// node's address; pod IPs come from `pod.status` (the caller fills them from the sandbox).
pub fn pod_field_value(pod: &Pod, host_ip: Option<IpAddr>, field_path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    if let Some((base, key)) = split_subscript(field_path) {
        let map = match base {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(ConfigError::UnsupportedFieldPath(field_path.to_string())),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let host_ip_str =
        || host_ip.map(|ip| ip.to_string()).or_else(|| status.and_then(|s| s.host_ip.clone())).unwrap_or_default();
    Ok(match field_path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&meta.labels.clone().unwrap_or_default()),
        "metadata.annotations" => format_map(&meta.annotations.clone().unwrap_or_default()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => host_ip_str(),
        "status.hostIPs" => {
            let ips: Vec<String> = status
                .and_then(|s| s.host_ips.as_ref())
                .map(|v| v.iter().map(|i| i.ip.clone()).collect())
                .filter(|v: &Vec<String>| !v.is_empty())
                .unwrap_or_else(|| vec![host_ip_str()]);
            ips.join(",")
        }
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => {
            let ips: Vec<String> = status
                .and_then(|s| s.pod_ips.as_ref())
                .map(|v| v.iter().map(|i| i.ip.clone()).collect())
                .filter(|v: &Vec<String>| !v.is_empty())
                .unwrap_or_else(|| status.and_then(|s| s.pod_ip.clone()).into_iter().collect());
            ips.join(",")
        }
        other => return Err(ConfigError::UnsupportedFieldPath(other.to_string())),
    })
}

fn quantity<'a>(map: Option<&'a BTreeMap<String, Quantity>>, name: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(name)).map(|q| q.0.as_str())
}

fn parse_quantity(what: &str, value: &str, cpu: bool) -> Result<i64, ConfigError> {
    let parsed = if cpu { parse_cpu_millis(value) } else { parse_bytes(value) };
    parsed.map_err(|_| ConfigError::Quantity { what: what.to_string(), value: value.to_string() })
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 0 {
        return 0;
    }
    (a as i128 + b as i128 - 1).div_euclid(b as i128) as i64
}

/// The value of a `resourceFieldRef` for `container` (`ExtractContainerResourceValue`), limits defaulting to
/// the node's allocatable when unset (as the kubelet's `defaultPodLimitsForDownwardAPI`).
pub fn container_resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    allocatable: &NodeAllocatable,
) -> Result<String, ConfigError> {
    let res = container.resources.as_ref();
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    let divisor = divisor.map(|d| d.0.as_str()).filter(|d| !d.is_empty() && *d != "0");
    let (kind, name) = match resource.split_once('.') {
        Some(("limits", n)) => (true, n),
        Some(("requests", n)) => (false, n),
        _ => return Err(ConfigError::UnsupportedResource(resource.to_string())),
    };
    let map = if kind { limits } else { requests };
    match name {
        "cpu" => {
            let millis = match quantity(map, "cpu") {
                Some(q) => parse_quantity(resource, q, true)?,
                None if kind => allocatable.cpu_millis,
                None => 0,
            };
            let div = divisor.map(|d| parse_quantity("divisor", d, true)).transpose()?.unwrap_or(1000);
            Ok(ceil_div(millis, div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match quantity(map, name) {
                Some(q) => parse_quantity(resource, q, false)?,
                None if kind && name == "memory" => allocatable.memory_bytes,
                None if kind => allocatable.ephemeral_storage_bytes,
                None => 0,
            };
            let div = divisor.map(|d| parse_quantity("divisor", d, false)).transpose()?.unwrap_or(1);
            Ok(ceil_div(bytes, div).to_string())
        }
        n if n.starts_with("hugepages-") => {
            let bytes = quantity(map, n).map(|q| parse_quantity(resource, q, false)).transpose()?.unwrap_or(0);
            let div = divisor.map(|d| parse_quantity("divisor", d, false)).transpose()?.unwrap_or(1);
            Ok(ceil_div(bytes, div).to_string())
        }
        _ => Err(ConfigError::UnsupportedResource(resource.to_string())),
    }
}

/// An ordered environment where a later value replaces an earlier one in place.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, k: String, v: String) {
        match self.index.get(&k) {
            Some(&i) => self.vars[i].1 = v,
            None => {
                self.index.insert(k.clone(), self.vars.len());
                self.vars.push((k, v));
            }
        }
    }
    fn get(&self, k: &str) -> Option<&String> {
        self.index.get(k).map(|&i| &self.vars[i].1)
    }
}

fn env_var_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// `<SVC>_SERVICE_HOST`, `_SERVICE_PORT[_<NAME>]` and the docker-link variables of one Service
/// (`envvars.FromServices`); nothing for headless or address-less Services.
pub fn service_env(service: &Service) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(spec) = service.spec.as_ref() else { return out };
    let ip = match spec.cluster_ip.as_deref() {
        Some(ip) if !ip.is_empty() && ip != "None" => ip,
        _ => return out,
    };
    let ports = spec.ports.clone().unwrap_or_default();
    let Some(first) = ports.first() else { return out };
    let prefix = env_var_name(service.metadata.name.as_deref().unwrap_or_default());
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    let port_name = format!("{prefix}_SERVICE_PORT");
    out.push((port_name.clone(), first.port.to_string()));
    for p in &ports {
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{port_name}_{}", env_var_name(n)), p.port.to_string()));
        }
    }
    let host = |port: i32| match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    };
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let lower = proto.to_lowercase();
        let url = format!("{lower}://{}", host(p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), lower));
        out.push((format!("{pp}_PORT"), p.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_string()));
    }
    out
}

/// The service-link variables a pod in `namespace` gets: the `kubernetes` Service always, every Service of
/// the namespace when `enable_service_links`.
async fn service_env_map(
    client: &kube::Client,
    namespace: &str,
    enable_service_links: bool,
) -> Result<OrderedEnv, ConfigError> {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let master: Api<Service> = Api::namespaced(client.clone(), MASTER_SERVICE_NAMESPACE);
    if let Some(svc) = master.get_opt(MASTER_SERVICE_NAME).await.map_err(|e| ConfigError::ListServices(Box::new(e)))? {
        services.insert(MASTER_SERVICE_NAME.to_string(), svc);
    }
    if enable_service_links {
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        let list = api.list(&Default::default()).await.map_err(|e| ConfigError::ListServices(Box::new(e)))?;
        for svc in list.items {
            let name = svc.metadata.name.clone().unwrap_or_default();
            services.insert(name, svc);
        }
    }
    let mut env = OrderedEnv::default();
    for svc in services.values() {
        for (k, v) in service_env(svc) {
            env.set(k, v);
        }
    }
    Ok(env)
}

/// Objects read while building one container's environment, so each is fetched once.
#[derive(Default)]
struct Cache {
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Cache {
    async fn config_map(
        &mut self,
        client: &kube::Client,
        ns: &str,
        name: &str,
    ) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let cm = api.get_opt(name).await.map_err(|source| ConfigError::Api {
                kind: "configmap",
                namespace: ns.to_string(),
                name: name.to_string(),
                source: Box::new(source),
            })?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps[name].as_ref())
    }

    async fn secret(&mut self, client: &kube::Client, ns: &str, name: &str) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            let s = api.get_opt(name).await.map_err(|source| ConfigError::Api {
                kind: "secret",
                namespace: ns.to_string(),
                name: name.to_string(),
                source: Box::new(source),
            })?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets[name].as_ref())
    }
}

/// All of a ConfigMap's values as strings (`data`, then `binaryData` as UTF-8 where it is).
fn config_map_entries(cm: &ConfigMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cm.data.clone().unwrap_or_default().into_iter().collect();
    out.sort();
    out
}

fn secret_entries(secret: &Secret) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    if let Some(sd) = &secret.string_data {
        out.extend(sd.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.sort();
    out
}

/// The environment of `container` in `pod`, in the kubelet's order and precedence: `envFrom` sources in
/// order, then `env` entries (later wins; `$(VAR)` in values expands against what came before and the service
/// variables), then service-link variables that nothing else set. Invalid `envFrom` keys are skipped (they are
/// returned in the second element, for an event).
pub async fn make_environment(
    pod: &Pod,
    container: &Container,
    client: &kube::Client,
    node: &NodeContext,
    allocatable: &NodeAllocatable,
) -> Result<(Vec<(String, String)>, Vec<String>), ConfigError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let enable_links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let service_env = service_env_map(client, &ns, enable_links).await?;
    let mut cache = Cache::default();
    let mut env = OrderedEnv::default();
    let mut invalid = Vec::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let entries = if let Some(cm_ref) = &from.config_map_ref {
            let optional = cm_ref.optional.unwrap_or(false);
            match cache.config_map(client, &ns, &cm_ref.name).await? {
                Some(cm) => config_map_entries(cm),
                None if optional => continue,
                None => return Err(ConfigError::ConfigMapNotFound(cm_ref.name.clone())),
            }
        } else if let Some(s_ref) = &from.secret_ref {
            let optional = s_ref.optional.unwrap_or(false);
            match cache.secret(client, &ns, &s_ref.name).await? {
                Some(s) => secret_entries(s),
                None if optional => continue,
                None => return Err(ConfigError::SecretNotFound(s_ref.name.clone())),
            }
        } else {
            continue;
        };
        for (k, v) in entries {
            let key = format!("{prefix}{k}");
            if !is_env_var_name(&key) {
                invalid.push(key);
                continue;
            }
            env.set(key, v);
        }
    }

    let host_ip = Some(node.node_ip);
    for var in container.env.iter().flatten() {
        let value = var.value.clone().unwrap_or_default();
        let resolved = if !value.is_empty() {
            let lookup = |name: &str| env.get(name).or_else(|| service_env.get(name)).cloned();
            expand(&value, &lookup)
        } else if let Some(src) = &var.value_from {
            if let Some(f) = &src.field_ref {
                pod_field_value(pod, host_ip, &f.field_path)?
            } else if let Some(r) = &src.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => {
                        find_container(pod, name).ok_or_else(|| ConfigError::ContainerNotFound(name.to_string()))?
                    }
                    None => container,
                };
                container_resource_value(target, &r.resource, r.divisor.as_ref(), allocatable)?
            } else if let Some(k) = &src.config_map_key_ref {
                let optional = k.optional.unwrap_or(false);
                let cm = match cache.config_map(client, &ns, &k.name).await? {
                    Some(cm) => cm,
                    None if optional => continue,
                    None => return Err(ConfigError::ConfigMapNotFound(k.name.clone())),
                };
                // Only `data`, as upstream (binaryData is for files).
                let found = cm.data.as_ref().and_then(|d| d.get(&k.key)).cloned();
                match found {
                    Some(v) => v,
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::MissingKey {
                            key: k.key.clone(),
                            kind: "ConfigMap",
                            namespace: ns.clone(),
                            name: k.name.clone(),
                        });
                    }
                }
            } else if let Some(k) = &src.secret_key_ref {
                let optional = k.optional.unwrap_or(false);
                let secret = match cache.secret(client, &ns, &k.name).await? {
                    Some(s) => s,
                    None if optional => continue,
                    None => return Err(ConfigError::SecretNotFound(k.name.clone())),
                };
                match secret_entries(secret).into_iter().find(|(key, _)| key == &k.key) {
                    Some((_, v)) => v,
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::MissingKey {
                            key: k.key.clone(),
                            kind: "Secret",
                            namespace: ns.clone(),
                            name: k.name.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), resolved);
    }

    let mut result = env.vars.clone();
    for (k, v) in service_env.vars {
        if env.get(&k).is_none() {
            result.push((k, v));
        }
    }
    Ok((result, invalid))
}

/// A container of the pod by name: app, init or ephemeral.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodSpec, PodStatus, ResourceRequirements, ServicePort, ServiceSpec};

    fn expand_with(input: &str) -> String {
        let vars: HashMap<&str, &str> = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
            ("BIG_MONEY", "$$$"),
        ]
        .into_iter()
        .collect();
        expand(input, &|n| vars.get(n).map(|v| v.to_string()))
    }

    #[test]
    fn expansion_follows_upstream_rules() {
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-1", "A-1"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("--$(VAR_EMPTY)--", "----"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$$$$$(BIG_MONEY)", "$$$$$$"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("$", "$"),
            ("$(", "$("),
            ("$()", "$()"),
            ("$$", "$"),
            ("$é", "$é"),
            ("plain", "plain"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_with(input), want, "input {input:?}");
        }
    }

    #[test]
    fn env_var_names() {
        assert!(is_env_var_name("A_B"));
        assert!(is_env_var_name("1abc.x-y"));
        assert!(!is_env_var_name(""));
        assert!(!is_env_var_name("A=B"));
        assert!(!is_env_var_name("tab\tname"));
        assert!(!is_env_var_name("é"));
    }

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web-0".into());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("u-1".into());
        p.metadata.labels = Some([("app".to_string(), "web".to_string()), ("tier".into(), "a\"b".into())].into());
        p.metadata.annotations = Some([("note".to_string(), "hi".to_string())].into());
        p.spec = Some(PodSpec {
            node_name: Some("n1".into()),
            service_account_name: Some("sa".into()),
            ..Default::default()
        });
        p.status = Some(PodStatus {
            pod_ip: Some("10.42.0.5".into()),
            pod_ips: Some(vec![PodIP { ip: "10.42.0.5".into() }, PodIP { ip: "fd00::5".into() }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn field_refs() {
        let p = pod();
        let ip: Option<IpAddr> = Some("192.168.1.2".parse().unwrap());
        let v = |f: &str| pod_field_value(&p, ip, f).unwrap();
        assert_eq!(v("metadata.name"), "web-0");
        assert_eq!(v("metadata.namespace"), "shop");
        assert_eq!(v("metadata.uid"), "u-1");
        assert_eq!(v("metadata.labels['app']"), "web");
        assert_eq!(v("metadata.labels['missing']"), "");
        assert_eq!(v("metadata.annotations['note']"), "hi");
        assert_eq!(v("metadata.labels"), "app=\"web\"\ntier=\"a\\\"b\"");
        assert_eq!(v("spec.nodeName"), "n1");
        assert_eq!(v("spec.serviceAccountName"), "sa");
        assert_eq!(v("status.hostIP"), "192.168.1.2");
        assert_eq!(v("status.hostIPs"), "192.168.1.2");
        assert_eq!(v("status.podIP"), "10.42.0.5");
        assert_eq!(v("status.podIPs"), "10.42.0.5,fd00::5");
        let err = pod_field_value(&p, ip, "spec.bogus").unwrap_err();
        assert_eq!(err.to_string(), "unsupported fieldPath: spec.bogus");
    }

    #[test]
    fn resource_refs_with_divisors_and_node_defaults() {
        let c = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
                requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let node = NodeAllocatable { cpu_millis: 4000, memory_bytes: 8 << 30, ephemeral_storage_bytes: 100 << 30 };
        let v = |r: &str, d: Option<&str>| {
            container_resource_value(&c, r, d.map(|d| Quantity(d.into())).as_ref(), &node).unwrap()
        };
        assert_eq!(v("limits.memory", None), (64 << 20).to_string());
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        assert_eq!(v("requests.cpu", None), "1", "250m rounds up to 1 core");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("limits.cpu", None), "4", "no limit: node allocatable");
        assert_eq!(v("requests.memory", None), "0");
        assert_eq!(v("limits.ephemeral-storage", Some("1Gi")), "100");
        let err = container_resource_value(&c, "limits.gpu", None, &node).unwrap_err();
        assert_eq!(err.to_string(), "unsupported container resource : limits.gpu");
    }

    #[test]
    fn service_link_variables() {
        let svc = Service {
            metadata: kube::api::ObjectMeta { name: Some("my-db".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.43.0.20".into()),
                ports: Some(vec![
                    ServicePort {
                        name: Some("sql".into()),
                        port: 5432,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("metrics".into()),
                        port: 9187,
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env: BTreeMap<String, String> = service_env(&svc).into_iter().collect();
        assert_eq!(env["MY_DB_SERVICE_HOST"], "10.43.0.20");
        assert_eq!(env["MY_DB_SERVICE_PORT"], "5432");
        assert_eq!(env["MY_DB_SERVICE_PORT_SQL"], "5432");
        assert_eq!(env["MY_DB_SERVICE_PORT_METRICS"], "9187");
        assert_eq!(env["MY_DB_PORT"], "tcp://10.43.0.20:5432");
        assert_eq!(env["MY_DB_PORT_5432_TCP"], "tcp://10.43.0.20:5432");
        assert_eq!(env["MY_DB_PORT_5432_TCP_PROTO"], "tcp");
        assert_eq!(env["MY_DB_PORT_5432_TCP_PORT"], "5432");
        assert_eq!(env["MY_DB_PORT_5432_TCP_ADDR"], "10.43.0.20");
        assert_eq!(env["MY_DB_PORT_9187_UDP"], "udp://10.43.0.20:9187");
        assert_eq!(env.len(), 4 + 1 + 4 + 4);
        let mut headless = svc.clone();
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert!(service_env(&headless).is_empty());
    }
}
