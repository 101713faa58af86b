//! Service address allocation: cluster IPs from the service CIDR and node ports from their range.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;

/// An IPv4 CIDR such as `10.43.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR (expected a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = len.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s:?}: prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Cidr { base: Ipv4Addr::from(u32::from(ip) & mask), prefix })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Ipv4Cidr {
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.base)
    }

    /// The n-th address of the range (`nth(1)` is the `kubernetes` Service address).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    /// Whether `ip` can be given to a Service: inside the range, not the network or broadcast address.
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        let off = u32::from(ip).wrapping_sub(u32::from(self.base));
        self.contains(ip) && off != 0 && off != self.size() - 1
    }
}

/// Picks a free cluster IP: random in the upper part of the range, as upstream keeps the lower
/// sixteenth for addresses users choose themselves.
pub fn pick_cluster_ip(cidr: &Ipv4Cidr, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let size = cidr.size();
    let static_band = (size / 16).clamp(16, 256).min(size / 2);
    let mut rng = rand::rng();
    for _ in 0..64 {
        let ip = cidr.nth(rng.random_range(static_band..size - 1));
        if !used.contains(&ip) {
            return Some(ip);
        }
    }
    (1..size - 1).map(|n| cidr.nth(n)).find(|ip| !used.contains(ip))
}

/// Picks a free node port in `range`.
pub fn pick_node_port(range: (u16, u16), used: &HashSet<u16>) -> Option<u16> {
    let mut rng = rand::rng();
    for _ in 0..64 {
        let p = rng.random_range(range.0..=range.1);
        if !used.contains(&p) {
            return Some(p);
        }
    }
    (range.0..=range.1).find(|p| !used.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_masks() {
        let c: Ipv4Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert_eq!(c.nth(1), Ipv4Addr::new(10, 43, 0, 1));
        assert!(c.assignable(Ipv4Addr::new(10, 43, 0, 10)));
        assert!(!c.assignable(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!c.assignable(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn picks_free_addresses_until_full() {
        let c: Ipv4Cidr = "10.0.0.0/29".parse().unwrap();
        let mut used = HashSet::new();
        for _ in 0..6 {
            let ip = pick_cluster_ip(&c, &used).unwrap();
            assert!(c.assignable(ip));
            assert!(used.insert(ip));
        }
        assert_eq!(pick_cluster_ip(&c, &used), None);
        let mut ports = HashSet::new();
        for _ in 0..3 {
            assert!(ports.insert(pick_node_port((30000, 30002), &ports).unwrap()));
        }
        assert_eq!(pick_node_port((30000, 30002), &ports), None);
    }
}
