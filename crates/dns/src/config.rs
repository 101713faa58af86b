//! `DnsConfig`: where the cluster DNS listens, its domain, its upstream nameservers and its cache.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The cluster DNS server's settings. [`Default`] listens on `0.0.0.0:53`, serves `cluster.local` and
/// forwards to the nameservers of the host's `/etc/resolv.conf`.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Addresses served over both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The cluster domain (`cluster.local`), with or without the trailing dot.
    pub cluster_domain: String,
    /// Nameservers asked, in order, for names outside the cluster domain.
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream may take to answer before the next one is asked.
    pub upstream_timeout: Duration,
    /// TTL of the cluster's own records (CoreDNS's kubernetes plugin uses 5 s).
    pub ttl: u32,
    /// Most upstream answers kept; the oldest half is dropped when full.
    pub cache_size: usize,
    /// Upper bound of the time an upstream answer is cached (CoreDNS's default Corefile: `cache 30`).
    pub cache_max_ttl: Duration,
    /// Upper bound of the time an upstream NXDOMAIN or empty answer is cached.
    pub cache_negative_ttl: Duration,
    /// Idle time after which a TCP connection is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 53))],
            cluster_domain: "cluster.local".into(),
            upstreams: host_upstreams(),
            upstream_timeout: Duration::from_secs(2),
            ttl: 5,
            cache_size: 10_000,
            cache_max_ttl: Duration::from_secs(30),
            cache_negative_ttl: Duration::from_secs(30),
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// The nameservers of the host's `/etc/resolv.conf` (none when it cannot be read).
pub fn host_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|text| parse_resolv_conf(&text))
        .unwrap_or_default()
}

/// The `nameserver` lines of a resolv.conf, on port 53; zone indexes (`fe80::1%eth0`) and
/// unparsable addresses are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            words.next()?.parse::<IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver  2001:db8::1 # v6\n\
                    ;nameserver 1.1.1.1\nnameserver fe80::1%eth0\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec!["10.0.0.2:53".parse().unwrap(), "[2001:db8::1]:53".parse().unwrap()]
        );
    }
}
