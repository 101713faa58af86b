//! `run()` against the in-process API server with nft pointed into a node namespace: Services and
//! EndpointSlices become map elements, real TCP connections are balanced over two backend namespaces, a VIP
//! without endpoints refuses at once, a flushed or deleted table is repaired, deleting a Service removes its
//! elements, and shutdown deletes the table.

mod common;

use std::time::Duration;

use common::{Netns, Server, Topology, backend_ip, connect, require_root_and_tools, sh};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use skiff_proxy::{ProxyConfig, run};
use tokio_util::sync::CancellationToken;

/// Polls `check` every 100 ms for up to 20 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn service_ips(topo: &Topology) -> String {
    topo.node.try_exec(&["nft", "list", "map", "ip", "skiff", "service_ips"]).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_proxies_services_balances_refuses_repairs_and_cleans_up() {
    require_root_and_tools();
    let topo = Topology::new(2);
    let _servers: Vec<Server> =
        topo.backends.iter().enumerate().map(|(i, ns)| Server::start(ns, 8080, &format!("backend-{i}"))).collect();

    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    let config = ProxyConfig {
        node_name: "node-a".into(),
        cluster_cidr: "10.250.0.0/24".parse().unwrap(),
        nft: topo.node.nft_command(),
        repair_interval: Duration::from_secs(1),
        min_sync_interval: Duration::from_millis(50),
        ..ProxyConfig::default()
    };
    let shutdown = CancellationToken::new();
    let proxy = tokio::spawn(run(config, client.clone(), shutdown.clone()));

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "http"}], "selector": {"app": "web"}}
    }))
    .unwrap();
    let web = services.create(&PostParams::default(), &web).await.expect("create Service web");
    let spec = web.spec.unwrap();
    let vip = spec.cluster_ip.clone().expect("a cluster IP was allocated");
    let node_port = spec.ports.unwrap()[0].node_port.expect("a node port was allocated") as u16;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [backend_ip(0)], "conditions": {"ready": true}, "nodeName": "node-a"},
            {"addresses": [backend_ip(1)], "conditions": {"ready": true}, "nodeName": "node-b"}
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.expect("create EndpointSlice");
    let empty: Service = serde_json::from_value(json!({
        "metadata": {"name": "empty"}, "spec": {"ports": [{"port": 81}], "selector": {"app": "none"}}
    }))
    .unwrap();
    let empty = services.create(&PostParams::default(), &empty).await.expect("create Service empty");
    let empty_vip = empty.spec.unwrap().cluster_ip.unwrap();

    eventually("the Service's elements appear", || service_ips(&topo).contains(&format!("{vip} . tcp . 80 : goto lb_2"))).await;
    let endpoints = topo.node.exec(&["nft", "list", "map", "ip", "skiff", "endpoints_tcp"]);
    assert!(endpoints.contains(&format!("{vip} . tcp . 80 . 0 : {} . 8080", backend_ip(0))), "{endpoints}");
    eventually("the empty Service is in the reject set", || {
        topo.node.try_exec(&["nft", "list", "set", "ip", "skiff", "no_endpoint_services"]).1.contains(&empty_vip)
    })
    .await;

    // Load balancing over both backends through the ClusterIP.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let reply = connect(&topo.node, &vip, 80).expect("connect to the ClusterIP");
        *seen.entry(reply).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both backends answer: {seen:?}");
    assert!(seen.contains_key("backend-0") && seen.contains_key("backend-1"), "{seen:?}");

    // Hairpin: a backend reaching the Service gets answers from itself too (masqueraded via @hairpin).
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let reply = connect(&topo.backends[0], &vip, 80).expect("a backend connects to its own Service");
        *seen.entry(reply).or_insert(0) += 1;
    }
    assert!(seen.contains_key("backend-0"), "the backend reached itself through the VIP: {seen:?}");

    // Session affinity: every connection from one client goes to one backend.
    let sticky: Service = serde_json::from_value(json!({
        "metadata": {"name": "sticky"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}], "selector": {"app": "web"},
                 "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}}}
    }))
    .unwrap();
    let sticky = services.create(&PostParams::default(), &sticky).await.expect("create Service sticky");
    let sticky_vip = sticky.spec.unwrap().cluster_ip.unwrap();
    let mut sticky_slice = slice.clone();
    sticky_slice.metadata.name = Some("sticky-abc".into());
    sticky_slice.metadata.labels = Some([("kubernetes.io/service-name".to_string(), "sticky".to_string())].into());
    slices.create(&PostParams::default(), &sticky_slice).await.expect("create EndpointSlice sticky");
    eventually("the affinity Service's elements appear", || service_ips(&topo).contains(&format!("{sticky_vip} . tcp . 80 : goto affinity_"))).await;
    for client in [&topo.node, &topo.backends[1]] {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            seen.insert(connect(client, &sticky_vip, 80).expect("connect to the affinity Service"));
        }
        assert_eq!(seen.len(), 1, "one client, one backend: {seen:?}");
    }
    let affinity_map = format!("affinity_{}_tcp_80_t300", sticky_vip.replace('.', "_"));
    let remembered = topo.node.exec(&["nft", "list", "map", "ip", "skiff", &affinity_map]);
    assert!(remembered.contains("10.250.0.1 expires") || remembered.contains("10.250.0.1 :"), "{remembered}");
    assert!(remembered.contains(&backend_ip(1)) || remembered.contains(&backend_ip(0)), "{remembered}");

    // The NodePort on the node's own address.
    let reply = connect(&topo.node, "10.250.0.1", node_port).expect("connect to the NodePort");
    assert!(reply.starts_with("backend-"), "{reply}");

    // No endpoints: refused, not black-holed (busybox nc reports the RST).
    let err = connect(&topo.node, &empty_vip, 81).expect_err("a Service without endpoints refuses");
    assert!(err.contains("refused"), "{err}");

    // Pod egress to a non-cluster destination is masqueraded (the outside namespace has no route back to
    // the pod network, so a reply only arrives if the source was rewritten to the node's address).
    let outside = Netns::new("out");
    sh(&["ip", "link", "add", "ext0", "netns", &topo.node.name, "type", "veth", "peer", "name", "eth0", "netns", &outside.name]);
    topo.node.exec(&["ip", "addr", "add", "192.168.77.1/24", "dev", "ext0"]);
    topo.node.exec(&["ip", "link", "set", "ext0", "up"]);
    outside.exec(&["ip", "addr", "add", "192.168.77.2/24", "dev", "eth0"]);
    outside.exec(&["ip", "link", "set", "eth0", "up"]);
    let _outside_server = Server::start(&outside, 9000, "outside");
    eventually("a pod reaches a non-cluster address through masquerade", || {
        connect(&topo.backends[0], "192.168.77.2", 9000).as_deref() == Ok("outside")
    })
    .await;

    // Someone flushes the table: the repair loop puts it back.
    topo.node.exec(&["nft", "flush", "table", "ip", "skiff"]);
    eventually("the flushed table is repaired", || connect(&topo.node, &vip, 80).is_ok()).await;
    topo.node.exec(&["nft", "delete", "table", "ip", "skiff"]);
    eventually("the deleted table is repaired", || service_ips(&topo).contains(&format!("{vip} . tcp . 80"))).await;
    assert!(connect(&topo.node, &vip, 80).is_ok());

    // Deleting the Service removes its elements.
    services.delete("web", &DeleteParams::default()).await.expect("delete Service web");
    eventually("the Service's elements are gone", || {
        let s = service_ips(&topo);
        !s.is_empty() && !s.contains(&vip)
    })
    .await;
    let endpoints = topo.node.exec(&["nft", "list", "map", "ip", "skiff", "endpoints_tcp"]);
    assert!(!endpoints.contains(&vip), "{endpoints}");

    // Shutdown deletes the table.
    shutdown.cancel();
    proxy.await.expect("proxy task").expect("run returns Ok");
    let (exists, _, _) = topo.node.try_exec(&["nft", "list", "table", "ip", "skiff"]);
    assert!(!exists, "the table is deleted at shutdown");
    server.shutdown.cancel();
}
