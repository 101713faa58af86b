//! Record index tests: Services and EndpointSlices in, answers out.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::{Answer, Index};
use crate::records::service_records;

const DOMAIN: &str = "cluster.local.";

fn service(value: serde_json::Value) -> Service {
    serde_json::from_value(value).unwrap()
}

fn slice(value: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(value).unwrap()
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn cluster_ip_service() -> Service {
    service(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 9090}]}
    }))
}

fn headless_service(publish_not_ready: bool) -> Service {
    service(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": publish_not_ready,
                 "ports": [{"name": "pg", "port": 5432}]}
    }))
}

fn db_slice() -> EndpointSlice {
    slice(json!({
        "metadata": {"name": "db-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.6"], "conditions": {}},
            {"addresses": ["10.244.0.7"], "hostname": "db-2", "conditions": {"ready": false}}
        ],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]
    }))
}

fn index_with(services: &[(&Service, &[&EndpointSlice])]) -> Index {
    let mut index = Index::new("cluster.local", 5).unwrap();
    for (service, slices) in services {
        let key = format!("{}/{}", service.metadata.namespace.as_deref().unwrap(), service.metadata.name.as_deref().unwrap());
        index.set_service(&key, service_records(service, slices, DOMAIN, 5));
    }
    index
}

fn found(answer: Answer) -> (Vec<Record>, Vec<Record>) {
    match answer {
        Answer::Found { answers, additionals } => (answers, additionals),
        other => panic!("expected records, got {other:?}"),
    }
}

fn addresses(records: &[Record]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn cluster_ip_service_answers_a_with_ttl_5_and_nodata_for_aaaa() {
    let index = index_with(&[(&cluster_ip_service(), &[])]);
    let (answers, _) = found(index.lookup(&name("WEB.shop.svc.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![ip("10.43.0.20")]);
    assert_eq!(answers[0].ttl, 5);
    match index.lookup(&name("web.shop.svc.cluster.local."), RecordType::AAAA) {
        Answer::NoData(soa) => assert_eq!(soa.record_type(), RecordType::SOA),
        other => panic!("expected NODATA, got {other:?}"),
    }
}

#[test]
fn srv_for_named_ports_and_ptr_for_the_cluster_ip() {
    let index = index_with(&[(&cluster_ip_service(), &[])]);
    let (answers, additionals) = found(index.lookup(&name("_http._tcp.web.shop.svc.cluster.local."), RecordType::SRV));
    let RData::SRV(srv) = &answers[0].data else { panic!("not SRV: {answers:?}") };
    assert_eq!((answers.len(), srv.port, srv.target.to_ascii().as_str()), (1, 80, "web.shop.svc.cluster.local."));
    assert_eq!(addresses(&additionals), vec![ip("10.43.0.20")]);
    // The unnamed port has no _port._proto name.
    assert!(matches!(
        index.lookup(&name("_9090._tcp.web.shop.svc.cluster.local."), RecordType::SRV),
        Answer::NxDomain(_)
    ));
    let (answers, _) = found(index.lookup(&name("20.0.43.10.in-addr.arpa."), RecordType::PTR));
    let RData::PTR(ptr) = &answers[0].data else { panic!("not PTR") };
    assert_eq!(ptr.0.to_ascii(), "web.shop.svc.cluster.local.");
}

#[test]
fn headless_service_answers_ready_endpoints_and_hostnames() {
    let slice = db_slice();
    let index = index_with(&[(&headless_service(false), &[&slice])]);
    let (answers, _) = found(index.lookup(&name("db.shop.svc.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![ip("10.244.0.5"), ip("10.244.0.6")]);
    let (answers, _) = found(index.lookup(&name("db-0.db.shop.svc.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![ip("10.244.0.5")]);
    // Without a hostname the endpoint is named by its dashed address.
    let (answers, _) = found(index.lookup(&name("10-244-0-6.db.shop.svc.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![ip("10.244.0.6")]);
    // Not ready: absent.
    assert!(matches!(index.lookup(&name("db-2.db.shop.svc.cluster.local."), RecordType::A), Answer::NxDomain(_)));
    let (answers, additionals) = found(index.lookup(&name("_pg._tcp.db.shop.svc.cluster.local."), RecordType::SRV));
    let mut targets: Vec<String> = answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => {
                assert_eq!((srv.port, srv.weight), (5432, 50));
                srv.target.to_ascii()
            }
            other => panic!("not SRV: {other:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(targets, vec!["10-244-0-6.db.shop.svc.cluster.local.", "db-0.db.shop.svc.cluster.local."]);
    assert_eq!(addresses(&additionals), vec![ip("10.244.0.5"), ip("10.244.0.6")]);
    let (answers, _) = found(index.lookup(&name("5.0.244.10.in-addr.arpa."), RecordType::PTR));
    let RData::PTR(ptr) = &answers[0].data else { panic!("not PTR") };
    assert_eq!(ptr.0.to_ascii(), "db-0.db.shop.svc.cluster.local.");
}

#[test]
fn publish_not_ready_addresses_includes_every_endpoint() {
    let slice = db_slice();
    let index = index_with(&[(&headless_service(true), &[&slice])]);
    let (answers, _) = found(index.lookup(&name("db.shop.svc.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![ip("10.244.0.5"), ip("10.244.0.6"), ip("10.244.0.7")]);
}

#[test]
fn external_name_is_a_cname_whatever_is_asked() {
    let external = service(json!({
        "metadata": {"name": "ext", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "Example.COM"}
    }));
    let index = index_with(&[(&external, &[])]);
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let (answers, _) = found(index.lookup(&name("ext.shop.svc.cluster.local."), qtype));
        let RData::CNAME(cname) = &answers[0].data else { panic!("not CNAME: {answers:?}") };
        assert_eq!(cname.0.to_ascii(), "Example.COM.");
    }
}

#[test]
fn pod_names_resolve_to_their_dashed_address() {
    let index = index_with(&[]);
    let (answers, _) = found(index.lookup(&name("10-244-1-9.any.pod.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![ip("10.244.1.9")]);
    assert!(matches!(index.lookup(&name("10-244-1-9.any.pod.cluster.local."), RecordType::AAAA), Answer::NoData(_)));
    assert!(matches!(index.lookup(&name("10-244-1-300.any.pod.cluster.local."), RecordType::A), Answer::NxDomain(_)));
    let (answers, _) = found(index.lookup(&name("fd00--5.any.pod.cluster.local."), RecordType::AAAA));
    assert_eq!(addresses(&answers), vec![ip("fd00::5")]);
}

#[test]
fn unknown_names_are_nxdomain_with_coredns_soa_and_others_are_outside() {
    let index = index_with(&[(&cluster_ip_service(), &[])]);
    let Answer::NxDomain(soa) = index.lookup(&name("nope.shop.svc.cluster.local."), RecordType::A) else {
        panic!("expected NXDOMAIN")
    };
    let RData::SOA(data) = &soa.data else { panic!("not SOA") };
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    assert_eq!(data.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(data.rname.to_ascii(), "hostmaster.cluster.local.");
    assert_eq!((data.refresh, data.retry, data.expire, data.minimum), (7200, 1800, 86400, 5));
    assert_eq!(index.lookup(&name("example.com."), RecordType::A), Answer::Outside);
    // A reverse name the cluster does not own is forwarded (CoreDNS's fallthrough).
    assert_eq!(index.lookup(&name("1.1.1.1.in-addr.arpa."), RecordType::PTR), Answer::Outside);
    assert!(matches!(index.lookup(&name("other.cluster.local.example."), RecordType::A), Answer::Outside));
}

#[test]
fn namespace_names_exist_while_the_namespace_has_services() {
    let mut index = index_with(&[(&cluster_ip_service(), &[])]);
    assert!(matches!(index.lookup(&name("shop.svc.cluster.local."), RecordType::A), Answer::NoData(_)));
    assert!(matches!(index.lookup(&name("svc.cluster.local."), RecordType::A), Answer::NoData(_)));
    assert!(matches!(index.lookup(&name("_tcp.web.shop.svc.cluster.local."), RecordType::A), Answer::NoData(_)));
    assert!(matches!(index.lookup(&name("empty.svc.cluster.local."), RecordType::A), Answer::NxDomain(_)));
    index.remove_service("shop/web");
    assert!(matches!(index.lookup(&name("shop.svc.cluster.local."), RecordType::A), Answer::NxDomain(_)));
    assert!(matches!(index.lookup(&name("web.shop.svc.cluster.local."), RecordType::A), Answer::NxDomain(_)));
    assert_eq!(index.lookup(&name("20.0.43.10.in-addr.arpa."), RecordType::PTR), Answer::Outside);
    assert!(index.is_empty(), "every name, empty non-terminals included, is gone");
}

#[test]
fn replacing_a_service_keeps_other_owners_of_a_shared_name() {
    // Two headless Services selecting the same pod share its PTR name.
    let slice_a = db_slice();
    let mut other = headless_service(false);
    other.metadata.name = Some("db2".into());
    let mut slice_b = db_slice();
    slice_b.metadata.name = Some("db2-x".into());
    slice_b.metadata.labels = Some([("kubernetes.io/service-name".to_string(), "db2".to_string())].into());
    let mut index = index_with(&[(&headless_service(false), &[&slice_a]), (&other, &[&slice_b])]);
    let (answers, _) = found(index.lookup(&name("5.0.244.10.in-addr.arpa."), RecordType::PTR));
    assert_eq!(answers.len(), 2);
    // The slice of `db` loses an endpoint: only its records change.
    let mut smaller = db_slice();
    smaller.endpoints.truncate(1);
    let service = headless_service(false);
    index.set_service("shop/db", service_records(&service, &[&smaller], DOMAIN, 5));
    let (answers, _) = found(index.lookup(&name("db.shop.svc.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![IpAddr::V4(Ipv4Addr::new(10, 244, 0, 5))]);
    let (answers, _) = found(index.lookup(&name("db2.shop.svc.cluster.local."), RecordType::A));
    assert_eq!(addresses(&answers), vec![ip("10.244.0.5"), ip("10.244.0.6")]);
    let (answers, _) = found(index.lookup(&name("6.0.244.10.in-addr.arpa."), RecordType::PTR));
    assert_eq!(answers.len(), 1);
}

#[test]
fn apex_answers_soa() {
    let index = index_with(&[]);
    let (answers, _) = found(index.lookup(&name("cluster.local."), RecordType::SOA));
    assert_eq!(answers[0].record_type(), RecordType::SOA);
    assert!(matches!(index.lookup(&name("cluster.local."), RecordType::A), Answer::NoData(_)));
}
