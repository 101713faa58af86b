//! Unit tests of model building from Service and EndpointSlice objects.

use super::*;
use serde_json::{Value, json};

fn svc(v: Value) -> Service {
    serde_json::from_value(v).expect("valid Service")
}

fn slice(v: Value) -> EndpointSlice {
    serde_json::from_value(v).expect("valid EndpointSlice")
}

fn web(spec: Value) -> Service {
    let mut s = json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}});
    for (k, v) in spec.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    svc(s)
}

fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn web_slice(name: &str, endpoints: Vec<Value>) -> EndpointSlice {
    slice(json!({"metadata": {"name": name, "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
}

fn vip(ip: [u8; 4], port: u16) -> Frontend {
    Frontend::Vip { ip: Ipv4Addr::from(ip), protocol: Protocol::Tcp, port }
}

fn b(ip: &str, port: u16) -> Backend {
    Backend { ip: ip.parse().unwrap(), port }
}

fn build(services: &[Service], slices: &[EndpointSlice]) -> Model {
    Model::build(Settings::default(), "node-a", services, slices)
}

#[test]
fn cidr_parses_and_contains() {
    let c: Ipv4Cidr = "10.42.7.1/16".parse().unwrap();
    assert_eq!(c.to_string(), "10.42.0.0/16");
    assert!(c.contains("10.42.200.3".parse().unwrap()));
    assert!(!c.contains("10.43.0.1".parse().unwrap()));
    assert!("10.42.0.0".parse::<Ipv4Cidr>().unwrap_err().contains("not an IPv4 CIDR"));
    assert!("10.42.0.0/33".parse::<Ipv4Cidr>().is_err());
}

#[test]
fn ready_endpoints_joined_by_label_and_port_name() {
    let other = slice(json!({"metadata": {"name": "other-1", "namespace": "default",
            "labels": {SERVICE_NAME_LABEL: "other"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.9.9"]}],
        "ports": [{"name": "http", "port": 1, "protocol": "TCP"}]}));
    let wrong_port_name = slice(json!({"metadata": {"name": "web-x", "namespace": "default",
            "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.8.8"]}],
        "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}]}));
    let m = build(
        &[web(json!({}))],
        &[
            web_slice("web-1", vec![ep("10.42.0.5", "node-a", true, true, false)]),
            web_slice("web-2", vec![ep("10.42.1.5", "node-b", true, true, false), ep("10.42.1.6", "node-b", false, false, false)]),
            other,
            wrong_port_name,
        ],
    );
    let t = &m.frontends[&vip([10, 43, 0, 10], 80)];
    assert_eq!(t.endpoints, vec![b("10.42.0.5", 8080), b("10.42.1.5", 8080)]);
    assert_eq!(t.service, "default/web:http");
    assert!(t.masquerade);
    assert_eq!(t.affinity_timeout, None);
    assert_eq!(m.frontends.len(), 1);
}

#[test]
fn terminating_fallback_only_when_nothing_is_ready() {
    let m = build(
        &[web(json!({}))],
        &[web_slice(
            "web-1",
            vec![ep("10.42.0.5", "node-a", false, true, true), ep("10.42.0.6", "node-a", false, false, true)],
        )],
    );
    assert_eq!(m.frontends[&vip([10, 43, 0, 10], 80)].endpoints, vec![b("10.42.0.5", 8080)]);
    // With a ready endpoint, the serving-terminating one is not used.
    let m = build(
        &[web(json!({}))],
        &[web_slice(
            "web-1",
            vec![ep("10.42.0.5", "node-a", false, true, true), ep("10.42.0.7", "node-b", true, true, false)],
        )],
    );
    assert_eq!(m.frontends[&vip([10, 43, 0, 10], 80)].endpoints, vec![b("10.42.0.7", 8080)]);
}

#[test]
fn unset_conditions_mean_ready() {
    let m = build(
        &[web(json!({}))],
        &[web_slice("web-1", vec![json!({"addresses": ["10.42.0.5"]})])],
    );
    assert_eq!(m.frontends[&vip([10, 43, 0, 10], 80)].endpoints, vec![b("10.42.0.5", 8080)]);
}

#[test]
fn no_endpoints_gives_an_empty_target() {
    let m = build(&[web(json!({}))], &[]);
    assert!(m.frontends[&vip([10, 43, 0, 10], 80)].endpoints.is_empty());
}

#[test]
fn headless_and_external_name_services_are_skipped() {
    let headless = web(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
    let ext = svc(json!({"metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}}));
    let m = build(&[headless, ext], &[web_slice("web-1", vec![ep("10.42.0.5", "node-a", true, true, false)])]);
    assert!(m.frontends.is_empty());
}

#[test]
fn nodeport_and_external_traffic_policy_local() {
    let s = web(json!({"type": "NodePort",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}));
    let slices = [web_slice("web-1", vec![ep("10.42.0.5", "node-a", true, true, false), ep("10.42.1.5", "node-b", true, true, false)])];
    let m = build(std::slice::from_ref(&s), &slices);
    let np = Frontend::NodePort { protocol: Protocol::Tcp, port: 30080 };
    assert_eq!(m.frontends[&np].endpoints.len(), 2);
    assert!(m.frontends[&np].masquerade);

    let mut local = s.clone();
    local.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
    let m = build(&[local], &slices);
    assert_eq!(m.frontends[&np].endpoints, vec![b("10.42.0.5", 8080)]);
    assert!(!m.frontends[&np].masquerade, "Local keeps the client address");
    // The ClusterIP still uses every endpoint.
    assert_eq!(m.frontends[&vip([10, 43, 0, 10], 80)].endpoints.len(), 2);
}

#[test]
fn internal_traffic_policy_local_uses_this_nodes_endpoints() {
    let s = web(json!({"internalTrafficPolicy": "Local"}));
    let m = build(
        &[s],
        &[web_slice("web-1", vec![ep("10.42.0.5", "node-b", true, true, false), ep("10.42.1.5", "node-a", true, true, false)])],
    );
    assert_eq!(m.frontends[&vip([10, 43, 0, 10], 80)].endpoints, vec![b("10.42.1.5", 8080)]);
}

#[test]
fn load_balancer_ingress_and_external_ips_are_frontends() {
    let mut s = web(json!({"type": "LoadBalancer", "externalIPs": ["192.0.2.7"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 31000}]}));
    s.status = Some(serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.20"}]}})).unwrap());
    let m = build(&[s], &[web_slice("web-1", vec![ep("10.42.0.5", "node-a", true, true, false)])]);
    let keys: Vec<Frontend> = m.frontends.keys().copied().collect();
    assert_eq!(
        keys,
        vec![
            vip([10, 43, 0, 10], 80),
            vip([192, 0, 2, 7], 80),
            vip([192, 168, 1, 20], 80),
            Frontend::NodePort { protocol: Protocol::Tcp, port: 31000 },
        ]
    );
    assert!(m.frontends.values().all(|t| t.endpoints == vec![b("10.42.0.5", 8080)]));
}

#[test]
fn session_affinity_timeout_defaults_to_three_hours() {
    let m = build(&[web(json!({"sessionAffinity": "ClientIP"}))], &[]);
    assert_eq!(m.frontends[&vip([10, 43, 0, 10], 80)].affinity_timeout, Some(10800));
    let m = build(
        &[web(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}))],
        &[],
    );
    assert_eq!(m.frontends[&vip([10, 43, 0, 10], 80)].affinity_timeout, Some(60));
}

#[test]
fn udp_port_matches_udp_slice_port_only() {
    let s = web(json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}));
    let sl = slice(json!({"metadata": {"name": "web-1", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.5"]}],
        "ports": [{"name": "dns", "port": 5353, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}));
    let m = build(&[s], &[sl]);
    let f = Frontend::Vip { ip: Ipv4Addr::new(10, 43, 0, 10), protocol: Protocol::Udp, port: 53 };
    assert_eq!(m.frontends[&f].endpoints, vec![b("10.42.0.5", 53)]);
}
