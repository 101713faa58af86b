//! The nftables rendering: the whole table for a first sync or a repair (`render_full`), and the smallest
//! batch of element and chain changes from one model to the next (`render_diff`). Pure text, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::model::{Frontend, Model, Settings};
use crate::nft::Fingerprint;

/// The mark bit for "masquerade this connection" (kube-proxy's; CNI portmap uses 0x2000).
pub const MASQ_MARK: u32 = 0x4000;

/// The maps and sets whose elements follow the model. (name, declaration without elements)
///
/// The endpoint maps are per protocol: nft 1.0.6 cannot add a rule in a later batch that uses a map whose
/// `typeof` data is `th dport` ("conflicting protocols specified: tcp vs. th"), and a `typeof` map's data
/// must name one protocol (`tcp dport`), which a rule matching another protocol may not use.
pub const ELEMENT_SETS: &[(&str, &str)] = &[
    ("service_ips", "type ipv4_addr . inet_proto . inet_service : verdict"),
    ("service_nodeports", "type inet_proto . inet_service : verdict"),
    ("endpoints_tcp", "typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . tcp dport"),
    ("endpoints_udp", "typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . udp dport"),
    ("endpoints_sctp", "typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . sctp dport"),
    ("nodeport_endpoints_tcp", "typeof meta l4proto . th dport . numgen random mod 2 : ip daddr . tcp dport"),
    ("nodeport_endpoints_udp", "typeof meta l4proto . th dport . numgen random mod 2 : ip daddr . udp dport"),
    ("nodeport_endpoints_sctp", "typeof meta l4proto . th dport . numgen random mod 2 : ip daddr . sctp dport"),
    ("no_endpoint_services", "type ipv4_addr . inet_proto . inet_service"),
    ("no_endpoint_nodeports", "type inet_proto . inet_service"),
    ("hairpin", "type ipv4_addr . ipv4_addr"),
];

/// What the model turns into, in a form that can be compared piece by piece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// set or map name -> element key -> value (None for sets).
    pub elements: BTreeMap<&'static str, BTreeMap<String, Option<String>>>,
    /// Chains whose existence and body follow the model (lb chains, affinity chains, `affinity_record`).
    pub chains: BTreeMap<String, Vec<String>>,
    /// Per-Service affinity maps: name -> timeout in seconds.
    pub affinity_maps: BTreeMap<String, u32>,
}

/// The load-balancing chain for a frontend kind, endpoint count and masquerade choice.
fn lb_chain(frontend: &Frontend, count: usize, masquerade: bool) -> String {
    let kind = match frontend {
        Frontend::Vip { .. } => "lb",
        Frontend::NodePort { .. } => "nodeport_lb",
    };
    if masquerade { format!("{kind}_{count}") } else { format!("{kind}_nomasq_{count}") }
}

/// The endpoint map of a frontend kind (`endpoints`, `nodeport_endpoints`) and protocol.
fn endpoint_map(prefix: &str, protocol: &str) -> &'static str {
    ELEMENT_SETS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| name.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) == Some(protocol))
        .expect("an endpoint map per protocol")
}

fn affinity_chain(frontend: &Frontend) -> String {
    format!("affinity_{}", frontend.id())
}

fn affinity_map(frontend: &Frontend, timeout: u32) -> String {
    format!("affinity_{}_t{timeout}", frontend.id())
}

fn masq_rule(settings: &Settings) -> String {
    format!("ip saddr != {} meta mark set meta mark | {MASQ_MARK:#x}", settings.cluster_cidr)
}

impl Rendered {
    /// Computes the element sets and dynamic chains of a model.
    pub fn of(model: &Model) -> Rendered {
        let s = &model.settings;
        let mut r = Rendered::default();
        for (name, _) in ELEMENT_SETS {
            r.elements.insert(name, BTreeMap::new());
        }
        let mut record_vip = Vec::new();
        let mut record_nodeport = Vec::new();
        for (frontend, target) in &model.frontends {
            let (key, verdicts, ep_map, no_ep) = match frontend {
                Frontend::Vip { ip, protocol, port } => (
                    format!("{ip} . {} . {port}", protocol.name()),
                    "service_ips",
                    endpoint_map("endpoints", protocol.name()),
                    "no_endpoint_services",
                ),
                Frontend::NodePort { protocol, port } => (
                    format!("{} . {port}", protocol.name()),
                    "service_nodeports",
                    endpoint_map("nodeport_endpoints", protocol.name()),
                    "no_endpoint_nodeports",
                ),
            };
            let ep_prefix = match frontend {
                Frontend::Vip { .. } => "endpoints",
                Frontend::NodePort { .. } => "nodeport_endpoints",
            };
            let n = target.endpoints.len();
            if n == 0 {
                r.elements.get_mut(no_ep).expect("declared").insert(key, None);
                continue;
            }
            let lb = lb_chain(frontend, n, target.masquerade);
            let key_expr = match frontend {
                Frontend::Vip { .. } => "ip daddr . meta l4proto . th dport",
                Frontend::NodePort { .. } => "meta l4proto . th dport",
            };
            r.chains.entry(lb.clone()).or_insert_with(|| {
                let mut body = Vec::new();
                if target.masquerade {
                    body.push(masq_rule(s));
                }
                for proto in ["tcp", "udp", "sctp"] {
                    body.push(format!(
                        "meta l4proto {proto} dnat to {key_expr} . numgen random mod {n} map @{}",
                        endpoint_map(ep_prefix, proto)
                    ));
                }
                body
            });
            let verdict = match target.affinity_timeout {
                None => format!("goto {lb}"),
                Some(timeout) => {
                    let chain = affinity_chain(frontend);
                    let map = affinity_map(frontend, timeout);
                    let mut body = Vec::new();
                    if target.masquerade {
                        body.push(masq_rule(s));
                    }
                    body.push(format!("meta l4proto {{ tcp, udp, sctp }} dnat to ip saddr map @{map}"));
                    body.push(format!("goto {lb}"));
                    r.chains.insert(chain.clone(), body);
                    r.affinity_maps.insert(map.clone(), timeout);
                    let p = match frontend {
                        Frontend::Vip { protocol, .. } | Frontend::NodePort { protocol, .. } => protocol.name(),
                    };
                    let record = format!("update @{map} {{ ip saddr : ip daddr . {p} dport }} return");
                    match frontend {
                        Frontend::Vip { ip, protocol, port } => record_vip.push(format!(
                            "ct original ip daddr {ip} meta l4proto {} ct original proto-dst {port} {record}",
                            protocol.name()
                        )),
                        Frontend::NodePort { protocol, port } => {
                            let local = if s.node_ips.is_empty() { String::new() } else { "ct original ip daddr @node_ips ".into() };
                            record_nodeport.push(format!(
                                "{local}meta l4proto {} ct original proto-dst {port} {record}",
                                protocol.name()
                            ))
                        }
                    }
                    format!("goto {chain}")
                }
            };
            r.elements.get_mut(verdicts).expect("declared").insert(key.clone(), Some(verdict));
            let eps = r.elements.get_mut(ep_map).expect("declared");
            for (i, b) in target.endpoints.iter().enumerate() {
                eps.insert(format!("{key} . {i}"), Some(format!("{} . {}", b.ip, b.port)));
            }
        }
        let hairpin = r.elements.get_mut("hairpin").expect("declared");
        for ip in model.endpoint_ips() {
            hairpin.insert(format!("{ip} . {ip}"), None);
        }
        record_vip.extend(record_nodeport);
        r.chains.insert("affinity_record".into(), record_vip);
        r
    }
}

/// Writes `{ a, b : c, ... }` element lists, a few per line.
fn element_list(out: &mut String, elements: &BTreeMap<String, Option<String>>) {
    out.push_str("{ ");
    for (i, (k, v)) in elements.iter().enumerate() {
        if i > 0 {
            out.push_str(if i % 4 == 0 { ",\n\t\t\t" } else { ", " });
        }
        out.push_str(k);
        if let Some(v) = v {
            out.push_str(" : ");
            out.push_str(v);
        }
    }
    out.push_str(" }");
}

/// The whole table as one atomic batch: it creates the table if missing, deletes it, and defines it again.
pub fn render_full(model: &Model) -> String {
    let s = &model.settings;
    let r = Rendered::of(model);
    let t = &s.table;
    let cidr = s.cluster_cidr;
    let mut o = String::new();
    let _ = writeln!(o, "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{");
    let _ = write!(o, "\tset node_ips {{\n\t\ttype ipv4_addr\n");
    if !s.node_ips.is_empty() {
        let ips: Vec<String> = s.node_ips.iter().map(|i| i.to_string()).collect();
        let _ = writeln!(o, "\t\telements = {{ {} }}", ips.join(", "));
    }
    o.push_str("\t}\n");
    for (name, decl) in ELEMENT_SETS {
        let kind = if decl.contains(':') { "map" } else { "set" };
        let _ = write!(o, "\t{kind} {name} {{\n\t\t{decl}\n");
        let elements = &r.elements[name];
        if !elements.is_empty() {
            o.push_str("\t\telements = ");
            element_list(&mut o, elements);
            o.push('\n');
        }
        o.push_str("\t}\n");
    }
    for (name, timeout) in &r.affinity_maps {
        let _ = writeln!(o, "\tmap {name} {{\n\t\t{}\n\t}}", affinity_map_decl(*timeout));
    }
    let nodeport_match = if s.node_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8".to_string()
    } else {
        "ip daddr @node_ips".to_string()
    };
    let egress = match (&s.masquerade_egress, &s.pod_bridge) {
        (false, _) => String::new(),
        (true, Some(br)) => format!("\t\tip saddr {cidr} ip daddr != {cidr} oifname != \"{br}\" masquerade\n"),
        (true, None) => format!("\t\tip saddr {cidr} ip daddr != {cidr} masquerade\n"),
    };
    let _ = write!(
        o,
        "\
\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @service_ips
\t\t{nodeport_match} meta l4proto . th dport vmap @service_nodeports
\t}}
\tchain nat_prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}}
\tchain nat_output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}}
\tchain nat_postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark | {MASQ_MARK:#x}
\t\tmeta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark & {clear:#x} masquerade
{egress}\t}}
\tchain endpoints_check {{
\t\tip daddr . meta l4proto . th dport @no_endpoint_services goto reject_connection
\t\t{nodeport_match} meta l4proto . th dport @no_endpoint_nodeports goto reject_connection
\t}}
\tchain reject_connection {{
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}}
\tchain filter_input {{
\t\ttype filter hook input priority -1; policy accept;
\t\tct state new jump endpoints_check
\t}}
\tchain filter_forward {{
\t\ttype filter hook forward priority -1; policy accept;
\t\tct state new jump endpoints_check
\t}}
\tchain filter_output {{
\t\ttype filter hook output priority -1; policy accept;
\t\tct state new jump endpoints_check
\t}}
\tchain affinity_prerouting {{
\t\ttype filter hook prerouting priority -99; policy accept;
\t\tct state new ct status dnat jump affinity_record
\t}}
\tchain affinity_output {{
\t\ttype filter hook output priority -99; policy accept;
\t\tct state new ct status dnat jump affinity_record
\t}}
",
        clear = !MASQ_MARK,
    );
    // Chains that others jump to come first: lb chains, then affinity chains, then affinity_record.
    for (name, body) in ordered_chains(&r.chains) {
        let _ = writeln!(o, "\tchain {name} {{");
        for rule in body {
            let _ = writeln!(o, "\t\t{rule}");
        }
        o.push_str("\t}\n");
    }
    o.push_str("}\n");
    o
}

/// What `nft -j list table` should show after the table for `model` was loaded: rules per chain and elements
/// per set (per-Service affinity maps are dynamic; only their presence is checked, see `table_intact`).
pub fn expected_fingerprint(model: &Model) -> Fingerprint {
    let s = &model.settings;
    let r = Rendered::of(model);
    let egress = usize::from(s.masquerade_egress);
    let mut f = Fingerprint::default();
    for (name, rules) in [
        ("services", 2),
        ("nat_prerouting", 1),
        ("nat_output", 1),
        ("nat_postrouting", 2 + egress),
        ("endpoints_check", 2),
        ("reject_connection", 2),
        ("filter_input", 1),
        ("filter_forward", 1),
        ("filter_output", 1),
        ("affinity_prerouting", 1),
        ("affinity_output", 1),
    ] {
        f.chains.insert(name.to_string(), rules);
    }
    for (name, body) in &r.chains {
        f.chains.insert(name.clone(), body.len());
    }
    f.sets.insert("node_ips".into(), s.node_ips.len());
    for (name, elements) in &r.elements {
        f.sets.insert(name.to_string(), elements.len());
    }
    for name in r.affinity_maps.keys() {
        f.sets.insert(name.clone(), 0);
    }
    f
}

/// Whether the table read back matches what was loaded (affinity maps: present, any number of elements).
pub fn table_intact(expected: &Fingerprint, actual: &Fingerprint) -> bool {
    expected.chains == actual.chains
        && expected.sets.len() == actual.sets.len()
        && expected.sets.iter().all(|(name, n)| match actual.sets.get(name) {
            Some(_) if name.starts_with("affinity_") => true,
            Some(m) => m == n,
            None => false,
        })
}

fn affinity_map_decl(timeout: u32) -> String {
    // `type`, not `typeof ... : ip daddr . th dport`: see ELEMENT_SETS.
    format!("type ipv4_addr : ipv4_addr . inet_service\n\t\tflags timeout\n\t\ttimeout {timeout}s")
}

/// Dynamic chains in dependency order: load-balancing chains, affinity chains, `affinity_record`.
fn ordered_chains(chains: &BTreeMap<String, Vec<String>>) -> Vec<(&String, &Vec<String>)> {
    let rank = |n: &str| {
        if n == "affinity_record" {
            2
        } else if n.starts_with("affinity_") {
            1
        } else {
            0
        }
    };
    let mut v: Vec<_> = chains.iter().collect();
    v.sort_by_key(|(n, _)| (rank(n), (*n).clone()));
    v
}

/// The batch that turns the table rendered for `old` into the one for `new`: only element additions and
/// deletions, plus creating or deleting load-balancing and affinity chains when they appear or disappear.
/// Empty when nothing changed. The settings (table name, CIDR, node IPs) must be the same in both; when
/// they differ, render the whole table instead.
pub fn render_diff(old: &Model, new: &Model) -> String {
    let t = &new.settings.table;
    let a = Rendered::of(old);
    let b = Rendered::of(new);
    let mut o = String::new();
    // 1. New maps and chains (empty first, so rules may refer to each other), then bodies.
    for (name, timeout) in &b.affinity_maps {
        if !a.affinity_maps.contains_key(name) {
            let _ = writeln!(o, "add map ip {t} {name} {{ {} }}", affinity_map_decl(*timeout).replace("\n\t\t", "; "));
        }
    }
    let new_chains: Vec<_> = ordered_chains(&b.chains).into_iter().filter(|(n, _)| !a.chains.contains_key(*n)).collect();
    for (name, _) in &new_chains {
        let _ = writeln!(o, "add chain ip {t} {name}");
    }
    for (name, body) in ordered_chains(&b.chains) {
        let old_body = a.chains.get(name);
        if old_body == Some(body) {
            continue;
        }
        if old_body.is_some() {
            let _ = writeln!(o, "flush chain ip {t} {name}");
        }
        for rule in body {
            let _ = writeln!(o, "add rule ip {t} {name} {rule}");
        }
    }
    // 2. Elements: deletions (also of changed values) before additions.
    let mut adds = String::new();
    for (set, new_elems) in &b.elements {
        let old_elems = &a.elements[set];
        let dels: Vec<&String> =
            old_elems.iter().filter(|(k, v)| new_elems.get(*k) != Some(*v)).map(|(k, _)| k).collect();
        if !dels.is_empty() {
            let keys: Vec<&str> = dels.iter().map(|k| k.as_str()).collect();
            let _ = writeln!(o, "delete element ip {t} {set} {{ {} }}", keys.join(", "));
        }
        let add: BTreeMap<String, Option<String>> =
            new_elems.iter().filter(|(k, v)| old_elems.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !add.is_empty() {
            let _ = write!(adds, "add element ip {t} {set} ");
            element_list(&mut adds, &add);
            adds.push('\n');
        }
    }
    o.push_str(&adds);
    // 3. Affinity entries that may point at a removed endpoint are forgotten.
    for (frontend, target) in &new.frontends {
        let (Some(timeout), Some(old_target)) = (target.affinity_timeout, old.frontends.get(frontend)) else { continue };
        if old_target.affinity_timeout != Some(timeout) {
            continue; // a new map
        }
        let now: BTreeSet<_> = target.endpoints.iter().collect();
        if old_target.endpoints.iter().any(|e| !now.contains(e)) {
            let _ = writeln!(o, "flush map ip {t} {}", affinity_map(frontend, timeout));
        }
    }
    // 4. Chains and maps nobody refers to any more: flush all first (they may refer to each other).
    let gone: Vec<&String> = a.chains.keys().filter(|n| !b.chains.contains_key(*n)).collect();
    for name in &gone {
        let _ = writeln!(o, "flush chain ip {t} {name}");
    }
    for name in &gone {
        let _ = writeln!(o, "delete chain ip {t} {name}");
    }
    for name in a.affinity_maps.keys().filter(|n| !b.affinity_maps.contains_key(*n)) {
        let _ = writeln!(o, "delete map ip {t} {name}");
    }
    o
}

#[cfg(test)]
mod tests;
