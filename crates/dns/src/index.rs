//! The record index: lowercase FQDN → records, replaced one Service at a time, with the empty
//! non-terminal names above every record (so `<ns>.svc.<domain>` exists while the namespace has Services).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::records::name_of;

/// What the index says about a question.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The name has records of the asked type (or a CNAME); `additionals` holds SRV targets' addresses.
    Found { answers: Vec<Record>, additionals: Vec<Record> },
    /// The name exists without records of the asked type: NOERROR, no answers, this SOA in authority.
    NoData(Record),
    /// The name does not exist in the cluster domain: NXDOMAIN with this SOA in authority.
    NxDomain(Record),
    /// Not a cluster name (or an unknown reverse name): ask the upstream nameservers.
    Outside,
}

#[derive(Default)]
struct Node {
    /// Records with the Service (`namespace/name`) that owns each.
    records: Vec<(Arc<str>, Record)>,
    /// Names directly below this one.
    children: u32,
}

/// Every record of the cluster's Services, by lowercase fully qualified name.
pub struct Index {
    /// `cluster.local.`: lowercase, with the trailing dot.
    domain: String,
    domain_name: Name,
    ttl: u32,
    names: HashMap<Box<str>, Node>,
    /// The names each Service has records at.
    owners: HashMap<Arc<str>, Vec<Box<str>>>,
    /// The SOA serial: the time of the last change (seconds since the epoch), as CoreDNS.
    serial: u32,
}

impl Index {
    /// An empty index for `domain` (`cluster.local`, with or without the trailing dot); `ttl` is the TTL
    /// of the records it makes itself (pod records, SOA).
    pub fn new(domain: &str, ttl: u32) -> Result<Self, String> {
        let domain_name = name_of(&domain.to_ascii_lowercase())
            .ok_or_else(|| format!("cluster domain {domain:?} is not a valid DNS name"))?;
        if domain_name.is_root() {
            return Err("the cluster domain must not be the root".into());
        }
        Ok(Index {
            domain: key_of(&domain_name),
            domain_name,
            ttl,
            names: HashMap::new(),
            owners: HashMap::new(),
            serial: now_serial(),
        })
    }

    /// The cluster domain, lowercase with the trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// How many names (with records, or empty non-terminals) the index holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The Services (`namespace/name`) that have records.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.owners.keys().map(|k| &**k)
    }

    /// Replaces every record of the Service `owner` (`namespace/name`) with `records`.
    pub fn set_service(&mut self, owner: &str, records: Vec<Record>) {
        self.remove_service(owner);
        if records.is_empty() {
            return;
        }
        let owner: Arc<str> = Arc::from(owner);
        let mut keys: Vec<Box<str>> = Vec::new();
        for record in records {
            let key = key_of(&record.name);
            if key == self.domain {
                continue;
            }
            self.ensure_node(&key).records.push((owner.clone(), record));
            if !keys.iter().any(|k| **k == *key) {
                keys.push(key.into());
            }
        }
        self.owners.insert(owner, keys);
        self.serial = now_serial().max(self.serial.wrapping_add(1));
    }

    /// Removes every record of the Service `owner` (`namespace/name`).
    pub fn remove_service(&mut self, owner: &str) {
        let Some(keys) = self.owners.remove(owner) else { return };
        for key in keys {
            if let Some(node) = self.names.get_mut(&key) {
                node.records.retain(|(o, _)| &**o != owner);
            }
            self.prune(&key);
        }
        self.serial = now_serial().max(self.serial.wrapping_add(1));
    }

    /// The answer to `qtype` at `qname`, as CoreDNS's kubernetes plugin gives it.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Answer {
        let key = key_of(qname);
        if key == self.domain {
            return match qtype {
                RecordType::SOA | RecordType::ANY => Answer::Found { answers: vec![self.soa()], additionals: vec![] },
                _ => Answer::NoData(self.soa()),
            };
        }
        let in_domain = self.parent_in_domain(&key).is_some();
        let Some(node) = self.names.get(key.as_str()) else {
            if !in_domain {
                return Answer::Outside;
            }
            return self.pod_lookup(&key, qname, qtype);
        };
        let of_type = |t: RecordType| node.records.iter().filter(move |(_, r)| r.record_type() == t).map(|(_, r)| r.clone());
        let mut answers: Vec<Record> = match qtype {
            RecordType::ANY => node.records.iter().map(|(_, r)| r.clone()).collect(),
            _ => of_type(qtype).collect(),
        };
        if answers.is_empty() && qtype != RecordType::CNAME {
            answers = of_type(RecordType::CNAME).collect();
        }
        if answers.is_empty() {
            return Answer::NoData(if in_domain { self.soa() } else { self.reverse_soa(&key) });
        }
        let mut additionals = Vec::new();
        for answer in &answers {
            if let RData::SRV(srv) = &answer.data {
                let target = key_of(&srv.target);
                if let Some(target) = self.names.get(target.as_str()) {
                    additionals.extend(
                        target
                            .records
                            .iter()
                            .filter(|(_, r)| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                            .map(|(_, r)| r.clone()),
                    );
                }
            }
        }
        Answer::Found { answers, additionals }
    }

    /// The zone's SOA in CoreDNS's shape: `ns.dns.<domain> hostmaster.<domain> <serial> 7200 1800 86400 <ttl>`.
    pub fn soa(&self) -> Record {
        self.soa_at(self.domain_name.clone())
    }

    fn soa_at(&self, zone: Name) -> Record {
        let under = |label: &str| Name::from_ascii(label).and_then(|n| n.append_domain(&self.domain_name));
        let mname = under("ns.dns").unwrap_or_else(|_| self.domain_name.clone());
        let rname = under("hostmaster").unwrap_or_else(|_| self.domain_name.clone());
        let soa = SOA::new(mname, rname, self.serial, 7200, 1800, 86400, self.ttl);
        Record::from_rdata(zone, self.ttl, RData::SOA(soa))
    }

    fn reverse_soa(&self, key: &str) -> Record {
        let zone = if key.ends_with(".ip6.arpa.") { "ip6.arpa" } else { "in-addr.arpa" };
        self.soa_at(name_of(zone).unwrap_or_else(|| self.domain_name.clone()))
    }

    /// `<a-b-c-d>.<ns>.pod.<domain>` → a.b.c.d (CoreDNS's `pods insecure`); `pod.<domain>` and
    /// `<ns>.pod.<domain>` exist without records; anything else is NXDOMAIN.
    fn pod_lookup(&self, key: &str, qname: &Name, qtype: RecordType) -> Answer {
        let relative = &key[..key.len() - self.domain.len() - 1];
        let labels: Vec<&str> = relative.split('.').collect();
        match labels.as_slice() {
            ["pod"] | [_, "pod"] => Answer::NoData(self.soa()),
            [address, _, "pod"] => {
                let Some(ip) = pod_address(address) else { return Answer::NxDomain(self.soa()) };
                let data = match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
                    _ => return Answer::NoData(self.soa()),
                };
                let mut name = qname.clone();
                name.set_fqdn(true);
                Answer::Found { answers: vec![Record::from_rdata(name, self.ttl, data)], additionals: vec![] }
            }
            _ => Answer::NxDomain(self.soa()),
        }
    }

    /// The parent of `key` when `key` is strictly inside the cluster domain (the domain itself included).
    fn parent_in_domain<'k>(&self, key: &'k str) -> Option<&'k str> {
        let inside = key.len() > self.domain.len()
            && key.ends_with(self.domain.as_str())
            && key.as_bytes()[key.len() - self.domain.len() - 1] == b'.';
        if !inside {
            return None;
        }
        key.find('.').map(|dot| &key[dot + 1..])
    }

    /// The node at `key`, created with the empty non-terminals above it (up to the domain) when missing.
    fn ensure_node(&mut self, key: &str) -> &mut Node {
        let mut missing = Vec::new();
        let mut current = key;
        while !self.names.contains_key(current) {
            missing.push(current);
            match self.parent_in_domain(current) {
                Some(parent) if parent != self.domain => current = parent,
                _ => break,
            }
        }
        for name in &missing {
            self.names.insert((*name).into(), Node::default());
        }
        for name in &missing {
            if let Some(parent) = self.parent_in_domain(name).filter(|p| *p != self.domain) {
                if let Some(node) = self.names.get_mut(parent) {
                    node.children += 1;
                }
            }
        }
        self.names.get_mut(key).expect("the node exists or was just inserted")
    }

    /// Removes `key` and the empty non-terminals above it once nothing is left at or below them.
    fn prune(&mut self, key: &str) {
        let mut current = key.to_string();
        loop {
            let Some(node) = self.names.get(current.as_str()) else { return };
            if !node.records.is_empty() || node.children > 0 {
                return;
            }
            self.names.remove(current.as_str());
            let Some(parent) = self.parent_in_domain(&current) else { return };
            if parent == self.domain {
                return;
            }
            let parent = parent.to_string();
            if let Some(node) = self.names.get_mut(parent.as_str()) {
                node.children = node.children.saturating_sub(1);
            }
            current = parent;
        }
    }
}

/// The lowercase text of a name with the trailing dot, the index's key.
pub fn key_of(name: &Name) -> String {
    let mut key = String::with_capacity(64);
    for label in name.iter() {
        for &byte in label {
            key.push(byte.to_ascii_lowercase() as char);
        }
        key.push('.');
    }
    if key.is_empty() {
        key.push('.');
    }
    key
}

/// The address of a pod name's first label: `10-244-0-5` or `fd00--5`.
fn pod_address(label: &str) -> Option<IpAddr> {
    let parts: Vec<&str> = label.split('-').collect();
    if parts.len() == 4 {
        let octets: Vec<u8> = parts.iter().filter_map(|p| p.parse().ok()).collect();
        if let [a, b, c, d] = octets[..] {
            return Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
        }
    }
    label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

fn now_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests;
