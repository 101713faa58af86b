//! The DNS records of one Service and its EndpointSlices, as CoreDNS's kubernetes plugin serves them
//! (https://github.com/kubernetes/dns/blob/master/docs/specification.md): A/AAAA, SRV, PTR and CNAME.

use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every record of `service` (with the EndpointSlices labelled with its name) under `domain`
/// (lowercase, with the trailing dot), with `ttl`. Empty when the Service has no usable address.
pub fn service_records(service: &Service, slices: &[&EndpointSlice], domain: &str, ttl: u32) -> Vec<Record> {
    let (Some(name), Some(namespace)) = (service.metadata.name.as_deref(), service.metadata.namespace.as_deref())
    else {
        return Vec::new();
    };
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let base = format!("{name}.{namespace}.svc.{domain}");
    let Some(base_name) = name_of(&base) else { return Vec::new() };
    let mut records = Vec::new();

    if spec.type_.as_deref() == Some("ExternalName") {
        // A CNAME to the external name, whatever is asked (CoreDNS answers CNAME for A, AAAA and CNAME).
        if let Some(target) = spec.external_name.as_deref().and_then(|e| name_of(e.trim_end_matches('.'))) {
            records.push(Record::from_rdata(base_name, ttl, RData::CNAME(CNAME(target))));
        }
        return records;
    }

    let cluster_ips: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.as_str()],
        _ => Vec::new(),
    };
    let headless = cluster_ips.first() == Some(&"None");

    if !headless {
        let ips: Vec<IpAddr> = cluster_ips.iter().filter_map(|ip| ip.parse().ok()).collect();
        if ips.is_empty() {
            return records;
        }
        for ip in &ips {
            records.push(address(&base_name, *ip, ttl));
            if let Some(reverse) = reverse_name(*ip) {
                records.push(Record::from_rdata(reverse, ttl, RData::PTR(PTR(base_name.clone()))));
            }
        }
        let mut base_srv = Vec::new();
        for port in spec.ports.iter().flatten() {
            let Ok(number) = u16::try_from(port.port) else { continue };
            base_srv.push((number, base_name.clone()));
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let protocol = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                if let Some(srv_name) = name_of(&format!("_{port_name}._{protocol}.{base}")) {
                    records.extend(srv_records(&srv_name, &[(number, base_name.clone())], ttl));
                }
            }
        }
        records.extend(srv_records(&base_name, &base_srv, ttl));
        return records;
    }

    // Headless: the ready endpoints (all with publishNotReadyAddresses), each also under its own name.
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    // (ip, endpoint label) pairs, sorted and without repeats across slices.
    let mut endpoints = BTreeSet::new();
    // SRV name → (port, target) pairs.
    let mut srv: std::collections::BTreeMap<Name, BTreeSet<(u16, Name)>> = Default::default();
    for slice in slices {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !publish_not_ready {
                continue;
            }
            for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                let label = endpoint
                    .hostname
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| dashed(ip));
                let Some(target) = name_of(&format!("{label}.{base}")) else { continue };
                endpoints.insert((ip, target.clone()));
                for port in slice.ports.iter().flatten() {
                    let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else { continue };
                    srv.entry(base_name.clone()).or_default().insert((number, target.clone()));
                    if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                        let protocol = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                        if let Some(srv_name) = name_of(&format!("_{port_name}._{protocol}.{base}")) {
                            srv.entry(srv_name).or_default().insert((number, target.clone()));
                        }
                    }
                }
            }
        }
    }
    let mut base_ips = BTreeSet::new();
    for (ip, target) in &endpoints {
        if base_ips.insert(*ip) {
            records.push(address(&base_name, *ip, ttl));
        }
        records.push(address(target, *ip, ttl));
        if let Some(reverse) = reverse_name(*ip) {
            records.push(Record::from_rdata(reverse, ttl, RData::PTR(PTR(target.clone()))));
        }
    }
    for (srv_name, targets) in srv {
        records.extend(srv_records(&srv_name, &targets.into_iter().collect::<Vec<_>>(), ttl));
    }
    records
}

/// SRV records at `name`, priority 0 and CoreDNS's weights (100 shared evenly between the targets).
fn srv_records(name: &Name, targets: &[(u16, Name)], ttl: u32) -> Vec<Record> {
    let weight = (100 / targets.len().max(1)).max(1) as u16;
    targets
        .iter()
        .map(|(port, target)| Record::from_rdata(name.clone(), ttl, RData::SRV(SRV::new(0, weight, *port, target.clone()))))
        .collect()
}

fn address(name: &Name, ip: IpAddr, ttl: u32) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

/// A fully qualified name from text without the trailing dot, or `None` when it is not a valid name.
pub fn name_of(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text.trim_end_matches('.')).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// `1-2-3-4` for 1.2.3.4, and `fd00--1` for fd00::1 (CoreDNS's endpoint names without a hostname).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// `d.c.b.a.in-addr.arpa.` for a.b.c.d, and the nibble form under `ip6.arpa.` for IPv6.
pub fn reverse_name(ip: IpAddr) -> Option<Name> {
    let text = match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut text = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                text.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            text.push_str("ip6.arpa");
            text
        }
    };
    name_of(&text)
}
