//! nft tests in a throwaway network namespace: the full rendering loads, a diff changes only elements and
//! chains in place (the table is not recreated), and affinity/NodePort/iptables renderings are accepted.

mod common;

use std::net::Ipv4Addr;

use common::{Netns, require_root_and_tools};
use skiff_proxy::nft::{Nft, parse_fingerprint};
use skiff_proxy::render::{expected_fingerprint, table_intact};
use skiff_proxy::{Backend, Frontend, Model, Protocol, Target, render_diff, render_full};

fn target(endpoints: &[&str], affinity: Option<u32>, masquerade: bool) -> Target {
    Target {
        service: "default/web:http".into(),
        endpoints: endpoints.iter().map(|ip| Backend { ip: ip.parse().unwrap(), port: 8080 }).collect(),
        masquerade,
        affinity_timeout: affinity,
    }
}

fn vip(last: u8, port: u16) -> Frontend {
    Frontend::Vip { ip: Ipv4Addr::new(10, 43, 0, last), protocol: Protocol::Tcp, port }
}

fn model() -> Model {
    let mut m = Model::default();
    m.settings.table = "skifftest".into();
    m.frontends.insert(vip(10, 80), target(&["10.42.0.5", "10.42.1.5"], None, true));
    m.frontends.insert(vip(11, 53), target(&[], None, true));
    m.frontends.insert(
        Frontend::Vip { ip: Ipv4Addr::new(10, 43, 0, 11), protocol: Protocol::Udp, port: 53 },
        target(&["10.42.0.9"], None, true),
    );
    m.frontends.insert(vip(12, 443), target(&["10.42.0.5", "10.42.0.6"], Some(60), true));
    m.frontends.insert(Frontend::NodePort { protocol: Protocol::Tcp, port: 30080 }, target(&["10.42.0.5"], None, false));
    m.frontends.insert(Frontend::NodePort { protocol: Protocol::Udp, port: 30053 }, target(&[], None, true));
    m
}

fn list_json(ns: &Netns) -> serde_json::Value {
    serde_json::from_str(&ns.exec(&["nft", "-j", "list", "table", "ip", "skifftest"])).expect("nft -j output is JSON")
}

fn table_handle(v: &serde_json::Value) -> u64 {
    v["nftables"].as_array().unwrap().iter().find_map(|i| i.get("table")).expect("table")["handle"].as_u64().unwrap()
}

fn elements(v: &serde_json::Value, set: &str) -> usize {
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("map").or_else(|| i.get("set")).filter(|s| s["name"] == set))
        .unwrap_or_else(|| panic!("no set {set}"))
        .get("elem")
        .and_then(|e| e.as_array())
        .map_or(0, |e| e.len())
}

#[tokio::test]
async fn full_rendering_loads_and_a_diff_changes_elements_in_place() {
    require_root_and_tools();
    let ns = Netns::new("nft");
    let nft = Nft::new(ns.nft_command());
    let m1 = model();
    nft.apply(&render_full(&m1)).await.expect("full rendering loads");
    let v1 = list_json(&ns);
    assert_eq!(elements(&v1, "endpoints_tcp"), 4);
    assert_eq!(elements(&v1, "endpoints_udp"), 1);
    assert_eq!(elements(&v1, "service_ips"), 3);
    assert_eq!(elements(&v1, "no_endpoint_services"), 1);
    assert_eq!(elements(&v1, "no_endpoint_nodeports"), 1);
    let fp = nft.fingerprint("skifftest").await.unwrap().expect("table exists");
    assert!(table_intact(&expected_fingerprint(&m1), &fp), "{fp:?}\n{:?}", expected_fingerprint(&m1));

    // One Service gains an endpoint (lb_3 appears, lb_2 still used by the affinity Service), the
    // affinity Service loses one, the empty one gets one.
    let mut m2 = m1.clone();
    m2.frontends.insert(vip(10, 80), target(&["10.42.0.5", "10.42.1.5", "10.42.2.5"], None, true));
    m2.frontends.insert(vip(12, 443), target(&["10.42.0.5"], Some(60), true));
    m2.frontends.insert(vip(11, 53), target(&["10.42.0.9"], None, true));
    let diff = render_diff(&m1, &m2);
    nft.apply(&diff).await.unwrap_or_else(|e| panic!("diff applies: {e}\n{diff}"));
    let v2 = list_json(&ns);
    assert_eq!(table_handle(&v1), table_handle(&v2), "the diff must not recreate the table");
    assert_eq!(elements(&v2, "endpoints_tcp"), 3 + 1 + 1);
    assert_eq!(elements(&v2, "endpoints_udp"), 1);
    assert_eq!(elements(&v2, "no_endpoint_services"), 0);
    let listing = ns.exec(&["nft", "list", "map", "ip", "skifftest", "service_ips"]);
    assert!(listing.contains("10.43.0.10 . tcp . 80 : goto lb_3"), "{listing}");
    assert!(listing.contains("10.43.0.11 . tcp . 53 : goto lb_1"), "{listing}");
    let fp = nft.fingerprint("skifftest").await.unwrap().unwrap();
    assert!(table_intact(&expected_fingerprint(&m2), &fp), "{fp:?}");
    let chains = ns.exec(&["nft", "list", "chains", "ip"]);
    assert!(chains.contains("chain lb_3"), "{chains}");
    assert!(!chains.contains("chain lb_2 "), "lb_2 no longer used: {chains}");

    // And back: removes lb_3, restores everything; the fingerprint matches the first model again.
    let back = render_diff(&m2, &m1);
    nft.apply(&back).await.unwrap_or_else(|e| panic!("reverse diff applies: {e}\n{back}"));
    let v3 = list_json(&ns);
    assert_eq!(table_handle(&v1), table_handle(&v3));
    let fp = nft.fingerprint("skifftest").await.unwrap().unwrap();
    assert!(table_intact(&expected_fingerprint(&m1), &fp));

    // A flushed table no longer matches its fingerprint.
    ns.exec(&["nft", "flush", "table", "ip", "skifftest"]);
    let fp = nft.fingerprint("skifftest").await.unwrap().unwrap();
    assert!(!table_intact(&expected_fingerprint(&m1), &fp));
    // The full rendering replaces the table atomically, also over a damaged one.
    nft.apply(&render_full(&m1)).await.unwrap();
    let fp = nft.fingerprint("skifftest").await.unwrap().unwrap();
    assert!(table_intact(&expected_fingerprint(&m1), &fp));
    ns.exec(&["nft", "delete", "table", "ip", "skifftest"]);
    assert_eq!(nft.fingerprint("skifftest").await.unwrap(), None);
}

#[tokio::test]
async fn a_failing_batch_changes_nothing() {
    require_root_and_tools();
    let ns = Netns::new("atomic");
    let nft = Nft::new(ns.nft_command());
    let m = model();
    nft.apply(&render_full(&m)).await.unwrap();
    let before = ns.exec(&["nft", "list", "table", "ip", "skifftest"]);
    let bad = "add element ip skifftest hairpin { 10.9.9.9 . 10.9.9.9 }\nadd element ip skifftest nosuchmap { 1 }\n";
    let err = nft.apply(bad).await.expect_err("a batch naming a missing map fails");
    assert!(err.to_string().contains("nosuchmap") || err.to_string().contains("No such file"), "{err}");
    assert_eq!(ns.exec(&["nft", "list", "table", "ip", "skifftest"]), before);
}

#[test]
fn iptables_rendering_loads_with_iptables_restore() {
    require_root_and_tools();
    let ns = Netns::new("ipt");
    let text = skiff_proxy::render_iptables(&model());
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "iptables-restore", "--noflush"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("iptables-restore");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "iptables-restore: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let listed = ns.exec(&["iptables", "-t", "nat", "-S"]);
    assert!(listed.contains("--to-destination 10.42.1.5:8080"), "{listed}");
}

#[test]
fn parse_fingerprint_reads_nft_json() {
    let json = r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "t", "handle": 1}},
        {"chain": {"family": "ip", "table": "t", "name": "a", "handle": 2}},
        {"map": {"family": "ip", "name": "m", "table": "t", "elem": [[1, 2], [3, 4]]}},
        {"set": {"family": "ip", "name": "s", "table": "t"}},
        {"rule": {"family": "ip", "table": "t", "chain": "a", "handle": 3, "expr": []}}]}"#;
    let f = parse_fingerprint(json).unwrap();
    assert_eq!(f.chains["a"], 1);
    assert_eq!(f.sets["m"], 2);
    assert_eq!(f.sets["s"], 0);
    assert!(parse_fingerprint("not json").is_err());
}
