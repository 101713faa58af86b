//! Unit tests of the nft rendering (full and incremental) and the fingerprint.

use std::net::Ipv4Addr;

use super::*;
use crate::model::{Backend, Protocol, Target};

fn target(endpoints: &[(&str, u16)], affinity: Option<u32>) -> Target {
    Target {
        service: "default/web:http".into(),
        endpoints: endpoints.iter().map(|(ip, port)| Backend { ip: ip.parse().unwrap(), port: *port }).collect(),
        masquerade: true,
        affinity_timeout: affinity,
    }
}

fn vip(last: u8, port: u16) -> Frontend {
    Frontend::Vip { ip: Ipv4Addr::new(10, 43, 0, last), protocol: Protocol::Tcp, port }
}

pub(crate) fn sample() -> Model {
    let mut m = Model::default();
    m.frontends.insert(vip(10, 80), target(&[("10.42.0.5", 8080), ("10.42.1.5", 8080)], None));
    m.frontends.insert(vip(11, 53), target(&[], None));
    m.frontends.insert(Frontend::NodePort { protocol: Protocol::Tcp, port: 30080 }, target(&[("10.42.0.5", 8080)], None));
    m
}

#[test]
fn full_rendering_is_one_atomic_replace() {
    let text = render_full(&sample());
    assert!(text.starts_with("table ip skiff {}\ndelete table ip skiff\ntable ip skiff {\n"), "{text}");
    assert!(text.contains("10.43.0.10 . tcp . 80 : goto lb_2"), "{text}");
    assert!(text.contains("10.43.0.10 . tcp . 80 . 0 : 10.42.0.5 . 8080"), "{text}");
    assert!(text.contains("10.43.0.10 . tcp . 80 . 1 : 10.42.1.5 . 8080"), "{text}");
    assert!(text.contains("tcp . 30080 : goto nodeport_lb_1"), "{text}");
    assert!(text.contains("elements = { 10.43.0.11 . tcp . 53 }"), "no-endpoint set: {text}");
    assert!(text.contains("meta l4proto udp dnat to ip daddr . meta l4proto . th dport . numgen random mod 2 map @endpoints_udp"), "{text}");
    assert!(text.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 oifname != \"cni0\" masquerade"), "{text}");
    assert!(text.contains("10.42.0.5 . 10.42.0.5, 10.42.1.5 . 10.42.1.5"), "hairpin set: {text}");
    // No chain per Service: two lb chains for two distinct (kind, count) pairs.
    assert_eq!(text.matches("\tchain lb_").count() + text.matches("\tchain nodeport_lb_").count(), 2);
}

#[test]
fn diff_of_identical_models_is_empty() {
    assert_eq!(render_diff(&sample(), &sample()), "");
}

#[test]
fn diff_adds_an_endpoint_with_elements_and_a_new_lb_chain() {
    let old = sample();
    let mut new = sample();
    new.frontends.insert(vip(10, 80), target(&[("10.42.0.5", 8080), ("10.42.1.5", 8080), ("10.42.2.5", 8080)], None));
    let d = render_diff(&old, &new);
    assert!(d.contains("add chain ip skiff lb_3\n"), "{d}");
    assert!(d.contains("add rule ip skiff lb_3 meta l4proto tcp dnat to ip daddr . meta l4proto . th dport . numgen random mod 3 map @endpoints_tcp"), "{d}");
    assert!(d.contains("delete element ip skiff service_ips { 10.43.0.10 . tcp . 80 }"), "{d}");
    assert!(d.contains("add element ip skiff service_ips { 10.43.0.10 . tcp . 80 : goto lb_3 }"), "{d}");
    assert!(d.contains("add element ip skiff endpoints_tcp { 10.43.0.10 . tcp . 80 . 2 : 10.42.2.5 . 8080 }"), "{d}");
    assert!(d.contains("add element ip skiff hairpin { 10.42.2.5 . 10.42.2.5 }"), "{d}");
    assert!(d.contains("flush chain ip skiff lb_2\ndelete chain ip skiff lb_2\n"), "lb_2 unused now: {d}");
    // Unchanged endpoint elements are not touched.
    assert!(!d.contains(". 0 : 10.42.0.5"), "{d}");
    // Nothing recreates the table.
    assert!(!d.contains("table"), "{d}");
    // The verdict element is deleted before the chain it points to.
    assert!(d.find("delete element ip skiff service_ips").unwrap() < d.find("delete chain ip skiff lb_2").unwrap());
}

#[test]
fn diff_moves_a_service_to_and_from_reject() {
    let old = sample();
    let mut new = sample();
    new.frontends.insert(vip(10, 80), target(&[], None));
    let d = render_diff(&old, &new);
    assert!(d.contains("add element ip skiff no_endpoint_services { 10.43.0.10 . tcp . 80 }"), "{d}");
    assert!(d.contains("delete element ip skiff endpoints_tcp { 10.43.0.10 . tcp . 80 . 0, 10.43.0.10 . tcp . 80 . 1 }"), "{d}");
    let back = render_diff(&new, &old);
    assert!(back.contains("delete element ip skiff no_endpoint_services { 10.43.0.10 . tcp . 80 }"), "{back}");
}

#[test]
fn affinity_uses_a_chain_and_map_per_frontend_and_flushes_on_endpoint_loss() {
    let mut old = sample();
    old.frontends.insert(vip(12, 80), target(&[("10.42.0.5", 80), ("10.42.0.6", 80)], Some(60)));
    let text = render_full(&old);
    assert!(text.contains("10.43.0.12 . tcp . 80 : goto affinity_10_43_0_12_tcp_80"), "{text}");
    assert!(text.contains("map affinity_10_43_0_12_tcp_80_t60 {"), "{text}");
    assert!(text.contains("dnat to ip saddr map @affinity_10_43_0_12_tcp_80_t60\n\t\tgoto lb_2"), "{text}");
    assert!(text.contains("ct original ip daddr 10.43.0.12 meta l4proto tcp ct original proto-dst 80 update @affinity_10_43_0_12_tcp_80_t60 { ip saddr : ip daddr . tcp dport } return"), "{text}");

    let mut new = old.clone();
    new.frontends.insert(vip(12, 80), target(&[("10.42.0.5", 80)], Some(60)));
    let d = render_diff(&old, &new);
    assert!(d.contains("flush map ip skiff affinity_10_43_0_12_tcp_80_t60"), "{d}");
    assert!(d.contains("flush chain ip skiff affinity_10_43_0_12_tcp_80\n"), "{d}");
    // Gaining an endpoint keeps the affinity entries.
    let d = render_diff(&new, &old);
    assert!(!d.contains("flush map"), "{d}");
    // Dropping affinity deletes the chain and the map.
    let d = render_diff(&old, &sample());
    assert!(d.contains("delete chain ip skiff affinity_10_43_0_12_tcp_80\n"), "{d}");
    assert!(d.contains("delete map ip skiff affinity_10_43_0_12_tcp_80_t60"), "{d}");
}

#[test]
fn external_traffic_policy_local_uses_chains_without_the_masquerade_mark() {
    let mut m = sample();
    let mut t = target(&[("10.42.0.5", 8080)], None);
    t.masquerade = false;
    m.frontends.insert(Frontend::NodePort { protocol: Protocol::Tcp, port: 30080 }, t);
    let text = render_full(&m);
    assert!(text.contains("tcp . 30080 : goto nodeport_lb_nomasq_1"), "{text}");
    let chain = text.split("chain nodeport_lb_nomasq_1 {").nth(1).unwrap().split('}').next().unwrap();
    assert!(!chain.contains("mark"), "{chain}");
    let chain = text.split("chain lb_2 {").nth(1).unwrap().split("\t}").next().unwrap();
    assert!(chain.contains("ip saddr != 10.42.0.0/16 meta mark set meta mark | 0x4000"), "{chain}");
}

#[test]
fn node_ips_restrict_nodeports() {
    let mut m = sample();
    m.settings.node_ips = vec![Ipv4Addr::new(192, 168, 1, 2)];
    let text = render_full(&m);
    assert!(text.contains("elements = { 192.168.1.2 }"), "{text}");
    assert!(text.contains("ip daddr @node_ips meta l4proto . th dport vmap @service_nodeports"), "{text}");
    let text = render_full(&sample());
    assert!(text.contains("fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service_nodeports"));
}

#[test]
fn fingerprint_counts_elements_and_rules() {
    let f = expected_fingerprint(&sample());
    assert_eq!(f.sets["service_ips"], 1);
    assert_eq!(f.sets["endpoints_tcp"], 2);
    assert_eq!(f.sets["no_endpoint_services"], 1);
    assert_eq!(f.sets["hairpin"], 2);
    assert_eq!(f.chains["lb_2"], 4);
    assert_eq!(f.chains["affinity_record"], 0);
    let mut changed = f.clone();
    changed.sets.insert("endpoints_tcp".into(), 0);
    assert!(table_intact(&f, &f));
    assert!(!table_intact(&f, &changed));
}

#[test]
fn iptables_rendering_has_a_chain_per_service_and_endpoint() {
    let text = crate::render_iptables(&sample());
    assert!(text.starts_with("*nat\n"));
    assert!(text.ends_with("COMMIT\n"));
    assert_eq!(text.matches(":KUBE-SVC-").count(), 2, "{text}");
    assert_eq!(text.matches(":KUBE-SEP-").count(), 3, "{text}");
    assert!(text.contains("-m statistic --mode random --probability 0.50000000000"), "{text}");
    assert!(text.contains("-j DNAT --to-destination 10.42.1.5:8080"), "{text}");
}
