//! A pod's DNS settings per `dnsPolicy` and `dnsConfig`, as the kubelet's `dns.Configurer.GetPodDNS`.

use k8s_openapi::api::core::v1::Pod;
use skiff_runtime::cri::DnsConfig;

/// Most nameservers a resolver uses (`MaxDNSNameservers`).
pub const MAX_NAMESERVERS: usize = 3;
/// Most search domains (`MaxDNSSearchPaths`) and their total length (`MaxDNSSearchListChars`).
pub const MAX_SEARCHES: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;

/// The host's `resolv.conf`, parsed as the kubelet does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostResolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl HostResolv {
    /// Parses `resolv.conf` text: `nameserver` lines, the last `search` line (trailing dots removed, `.`
    /// dropped), `options` appended.
    pub fn parse(text: &str) -> Self {
        let mut out = HostResolv::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.first() {
                Some(&"nameserver") if fields.len() > 1 => out.nameservers.push(fields[1].to_string()),
                Some(&"search") => {
                    out.searches =
                        fields[1..].iter().filter(|s| **s != ".").map(|s| s.trim_end_matches('.').to_string()).collect()
                }
                Some(&"options") => {
                    out.options = merge_options(&out.options, fields[1..].iter().map(|o| parse_option(o)))
                }
                _ => {}
            }
        }
        out
    }

    /// The host's `/etc/resolv.conf` (empty when unreadable).
    pub fn from_host() -> Self {
        std::fs::read_to_string("/etc/resolv.conf").map(|t| Self::parse(&t)).unwrap_or_default()
    }
}

fn parse_option(op: &str) -> (String, Option<String>) {
    match op.split_once(':') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (op.to_string(), None),
    }
}

/// Options merged by name, later values winning, first-seen order kept (`mergeDNSOptions`).
fn merge_options(existing: &[String], more: impl IntoIterator<Item = (String, Option<String>)>) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> = existing.iter().map(|o| parse_option(o)).collect();
    for (name, value) in more {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        }
    }
    merged
        .into_iter()
        .map(|(n, v)| match v.filter(|v| !v.is_empty()) {
            Some(v) => format!("{n}:{v}"),
            None => n,
        })
        .collect()
}

fn omit_duplicates(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The pod's DNS configuration, or `None` for the host's `resolv.conf` unchanged (`dnsPolicy: Default`, or
/// `ClusterFirst` with host networking, without a `dnsConfig`).
pub fn pod_dns(pod: &Pod, cluster_dns: &[String], cluster_domain: &str, host: &HostResolv) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_config = || DnsConfig {
        servers: host.nameservers.clone(),
        searches: host.searches.clone(),
        options: host.options.clone(),
    };

    let cluster = match policy {
        "None" => Some(false),
        "ClusterFirstWithHostNet" => Some(true),
        "Default" => None,
        "ClusterFirst" if host_network => None,
        _ => Some(true),
    };
    let mut config = match cluster {
        Some(false) => DnsConfig::default(),
        Some(true) if !cluster_dns.is_empty() => {
            let mut searches = Vec::new();
            if !cluster_domain.is_empty() {
                searches.push(format!("{namespace}.svc.{cluster_domain}"));
                searches.push(format!("svc.{cluster_domain}"));
                searches.push(cluster_domain.to_string());
            }
            searches.extend(host.searches.iter().cloned());
            DnsConfig {
                servers: cluster_dns.to_vec(),
                searches: omit_duplicates(searches),
                options: vec!["ndots:5".to_string()],
            }
        }
        // No cluster DNS known: upstream falls back to the host's settings.
        _ => {
            spec.and_then(|s| s.dns_config.as_ref())?;
            host_config()
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        config.servers =
            omit_duplicates(config.servers.into_iter().chain(extra.nameservers.iter().flatten().cloned()).collect());
        config.searches =
            omit_duplicates(config.searches.into_iter().chain(extra.searches.iter().flatten().cloned()).collect());
        config.options = merge_options(
            &config.options,
            extra.options.iter().flatten().filter_map(|o| Some((o.name.clone()?, o.value.clone()))),
        );
    }
    Some(fits_limits(config))
}

/// Trims nameservers and search domains to what resolvers accept (`formDNSConfigFitsLimits`).
fn fits_limits(mut config: DnsConfig) -> DnsConfig {
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches.truncate(MAX_SEARCHES);
    let mut total = 0;
    let mut keep = 0;
    for s in &config.searches {
        let len = s.len() + usize::from(keep > 0);
        if total + len > MAX_SEARCH_CHARS {
            break;
        }
        total += len;
        keep += 1;
    }
    config.searches.truncate(keep);
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    fn pod(policy: Option<&str>, host_network: bool, dns_config: Option<PodDNSConfig>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("team".into());
        p.spec = Some(PodSpec {
            dns_policy: policy.map(String::from),
            host_network: Some(host_network),
            dns_config,
            ..Default::default()
        });
        p
    }

    fn host() -> HostResolv {
        HostResolv::parse(
            "# comment\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch example.com. corp.local .\noptions timeout:2 rotate\n",
        )
    }

    #[test]
    fn parses_host_resolv_conf() {
        let h = host();
        assert_eq!(h.nameservers, ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(h.searches, ["example.com", "corp.local"]);
        assert_eq!(h.options, ["timeout:2", "rotate"]);
    }

    #[test]
    fn cluster_first() {
        let c = pod_dns(&pod(None, false, None), &["10.43.0.10".into()], "cluster.local", &host()).unwrap();
        assert_eq!(c.servers, ["10.43.0.10"]);
        assert_eq!(
            c.searches,
            ["team.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.com", "corp.local"]
        );
        assert_eq!(c.options, ["ndots:5"]);
    }

    #[test]
    fn cluster_first_with_host_network_is_default_unless_with_host_net() {
        assert_eq!(
            pod_dns(&pod(Some("ClusterFirst"), true, None), &["10.43.0.10".into()], "cluster.local", &host()),
            None
        );
        let c = pod_dns(
            &pod(Some("ClusterFirstWithHostNet"), true, None),
            &["10.43.0.10".into()],
            "cluster.local",
            &host(),
        )
        .unwrap();
        assert_eq!(c.servers, ["10.43.0.10"]);
    }

    #[test]
    fn default_policy_uses_host_and_merges_dns_config() {
        assert_eq!(pod_dns(&pod(Some("Default"), false, None), &["10.43.0.10".into()], "cluster.local", &host()), None);
        let extra = PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into()]),
            searches: Some(vec!["extra.io".into()]),
            options: Some(vec![PodDNSConfigOption { name: Some("timeout".into()), value: Some("5".into()) }]),
        };
        let c = pod_dns(&pod(Some("Default"), false, Some(extra)), &[], "cluster.local", &host()).unwrap();
        assert_eq!(c.servers, ["10.0.0.2", "10.0.0.3", "1.1.1.1"]);
        assert_eq!(c.searches, ["example.com", "corp.local", "extra.io"]);
        assert_eq!(c.options, ["timeout:5", "rotate"]);
    }

    #[test]
    fn none_policy_is_only_dns_config() {
        let extra = PodDNSConfig {
            nameservers: Some(vec![
                "1.1.1.1".into(),
                "1.1.1.1".into(),
                "8.8.8.8".into(),
                "9.9.9.9".into(),
                "4.4.4.4".into(),
            ]),
            searches: Some(vec!["a.io".into()]),
            options: Some(vec![
                PodDNSConfigOption { name: Some("ndots".into()), value: Some("2".into()) },
                PodDNSConfigOption { name: Some("edns0".into()), value: None },
            ]),
        };
        let c =
            pod_dns(&pod(Some("None"), false, Some(extra)), &["10.43.0.10".into()], "cluster.local", &host()).unwrap();
        assert_eq!(c.servers, ["1.1.1.1", "8.8.8.8", "9.9.9.9"]);
        assert_eq!(c.searches, ["a.io"]);
        assert_eq!(c.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_host() {
        assert_eq!(pod_dns(&pod(None, false, None), &[], "cluster.local", &host()), None);
    }

    #[test]
    fn cluster_first_merges_dns_config_options() {
        let extra = PodDNSConfig {
            nameservers: None,
            searches: Some(vec!["svc.cluster.local".into(), "my.dom".into()]),
            options: Some(vec![PodDNSConfigOption { name: Some("ndots".into()), value: Some("1".into()) }]),
        };
        let c = pod_dns(&pod(None, false, Some(extra)), &["10.43.0.10".into()], "cluster.local", &host()).unwrap();
        assert_eq!(c.searches.last().unwrap(), "my.dom");
        assert_eq!(c.searches.iter().filter(|s| *s == "svc.cluster.local").count(), 1);
        assert_eq!(c.options, ["ndots:1"]);
    }

    #[test]
    fn search_list_is_limited() {
        let extra =
            PodDNSConfig { searches: Some((0..40).map(|i| format!("d{i}.example")).collect()), ..Default::default() };
        let c = pod_dns(&pod(Some("None"), false, Some(extra)), &[], "", &HostResolv::default()).unwrap();
        assert_eq!(c.searches.len(), MAX_SEARCHES);
    }
}
