//! The DNS server end to end: `run()` over the in-process API server, questions over UDP and TCP on
//! loopback, a fake upstream nameserver for forwarded names.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_dns::DnsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// The API server, the DNS server's address, and the token that stops both (on drop too).
struct Cluster {
    client: kube::Client,
    dns: SocketAddr,
    shutdown: CancellationToken,
    _server: skiff_apiserver::testing::InProcess,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self._server.shutdown.cancel();
    }
}

/// A loopback port free for both UDP and TCP.
async fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).await.is_ok() {
            return port;
        }
    }
}

async fn start(upstreams: Vec<SocketAddr>) -> Cluster {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port().await));
    let config = DnsConfig {
        listen: vec![dns],
        upstreams,
        upstream_timeout: Duration::from_millis(300),
        ..DnsConfig::default()
    };
    let shutdown = CancellationToken::new();
    let (run_client, run_shutdown) = (client.clone(), shutdown.clone());
    tokio::spawn(async move {
        skiff_dns::run(config, run_client, run_shutdown).await.expect("the DNS server runs");
    });
    let cluster = Cluster { client, dns, shutdown, _server: server };
    // Serving once the bootstrap `kubernetes` Service is answered.
    let answer = eventually(&cluster, "kubernetes.default.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&answer), vec!["10.43.0.1".parse::<IpAddr>().unwrap()]);
    cluster
}

fn request(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

/// One question over UDP; `None` when no answer came within a second.
async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let request = request(name, qtype);
    socket.send_to(&request.to_vec().unwrap(), server).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buffer)).await.ok()?.unwrap();
    let response = Message::from_vec(&buffer[..n]).expect("the answer parses");
    assert_eq!(response.metadata.id, request.metadata.id);
    assert_eq!(response.metadata.message_type, MessageType::Response);
    Some(response)
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = request(name, qtype).to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let length = stream.read_u16().await.unwrap() as usize;
    let mut buffer = vec![0u8; length];
    stream.read_exact(&mut buffer).await.unwrap();
    Message::from_vec(&buffer).unwrap()
}

/// Asks until `done` holds for the answer (records appear through a watch); fails after 30 s with the
/// last answer.
async fn eventually(cluster: &Cluster, name: &str, qtype: RecordType, done: impl Fn(&Message) -> bool) -> Message {
    let mut last = None;
    for _ in 0..300 {
        if let Some(answer) = ask_udp(cluster.dns, name, qtype).await {
            if done(&answer) {
                return answer;
            }
            last = Some(answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} {qtype}: the expected answer never came; last answer: {last:?}");
}

fn addresses(message: &Message) -> Vec<IpAddr> {
    addresses_of(&message.answers)
}

fn addresses_of(records: &[Record]) -> Vec<IpAddr> {
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

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

async fn create_service(client: &kube::Client, value: serde_json::Value) -> Service {
    let service: Service = serde_json::from_value(value).unwrap();
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &service).await.unwrap()
}

async fn create_slice(client: &kube::Client, value: serde_json::Value) {
    let slice: EndpointSlice = serde_json::from_value(value).unwrap();
    Api::<EndpointSlice>::namespaced(client.clone(), "default").create(&PostParams::default(), &slice).await.unwrap();
}

#[tokio::test]
async fn cluster_records_over_udp_and_tcp() {
    let cluster = start(vec![]).await;
    let client = &cluster.client;
    let web = create_service(client, json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "selector": {"app": "web"}}
    }))
    .await;
    let cluster_ip: IpAddr = web.spec.unwrap().cluster_ip.unwrap().parse().unwrap();

    // The record appears after the Service is created.
    let answer = eventually(&cluster, "web.default.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(addresses(&answer), vec![cluster_ip]);
    assert_eq!(answer.answers[0].ttl, 5);

    // AAAA of an IPv4-only Service: NODATA with the SOA.
    let answer = ask_udp(cluster.dns, "web.default.svc.cluster.local.", RecordType::AAAA).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
    assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);

    // SRV of the named port, with the target's address as additional.
    let answer = ask_udp(cluster.dns, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await.unwrap();
    let RData::SRV(srv) = &answer.answers[0].data else { panic!("not SRV: {answer:?}") };
    assert_eq!((srv.port, srv.target.to_ascii().as_str()), (80, "web.default.svc.cluster.local."));
    assert_eq!(addresses_of(&answer.additionals), vec![cluster_ip]);

    // PTR of the cluster IP.
    let IpAddr::V4(v4) = cluster_ip else { panic!("IPv4 cluster IP expected") };
    let [a, b, c, d] = v4.octets();
    let answer = ask_udp(cluster.dns, &format!("{d}.{c}.{b}.{a}.in-addr.arpa."), RecordType::PTR).await.unwrap();
    let RData::PTR(ptr) = &answer.answers[0].data else { panic!("not PTR: {answer:?}") };
    assert_eq!(ptr.0.to_ascii(), "web.default.svc.cluster.local.");

    // Headless Service: the ready endpoints, the StatefulSet hostname, SRV per endpoint.
    create_service(client, json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}], "selector": {"app": "db"}}
    }))
    .await;
    create_slice(client, json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.6"], "hostname": "db-1", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.7"], "hostname": "db-2", "conditions": {"ready": false}}
        ],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]
    }))
    .await;
    let answer = eventually(&cluster, "db.default.svc.cluster.local.", RecordType::A, |m| m.answers.len() == 2).await;
    assert_eq!(addresses(&answer), ips(&["10.244.0.5", "10.244.0.6"]));
    let answer = ask_udp(cluster.dns, "db-1.db.default.svc.cluster.local.", RecordType::A).await.unwrap();
    assert_eq!(addresses(&answer), ips(&["10.244.0.6"]));
    let answer = ask_udp(cluster.dns, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV).await.unwrap();
    let mut targets: Vec<String> = answer
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => srv.target.to_ascii(),
            other => panic!("not SRV: {other:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(targets, ["db-0.db.default.svc.cluster.local.", "db-1.db.default.svc.cluster.local."]);
    assert_eq!(addresses_of(&answer.additionals), ips(&["10.244.0.5", "10.244.0.6"]));
    let answer = ask_udp(cluster.dns, "6.0.244.10.in-addr.arpa.", RecordType::PTR).await.unwrap();
    let RData::PTR(ptr) = &answer.answers[0].data else { panic!("not PTR: {answer:?}") };
    assert_eq!(ptr.0.to_ascii(), "db-1.db.default.svc.cluster.local.");

    // ExternalName: a CNAME.
    create_service(client, json!({
        "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }))
    .await;
    let answer = eventually(&cluster, "ext.default.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;
    let RData::CNAME(cname) = &answer.answers[0].data else { panic!("not CNAME: {answer:?}") };
    assert_eq!(cname.0.to_ascii(), "db.example.com.");

    // Pod names.
    let answer = ask_udp(cluster.dns, "10-244-3-7.default.pod.cluster.local.", RecordType::A).await.unwrap();
    assert_eq!(addresses(&answer), ips(&["10.244.3.7"]));

    // A missing name: NXDOMAIN with the SOA in CoreDNS's shape.
    let answer = ask_udp(cluster.dns, "missing.default.svc.cluster.local.", RecordType::A).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    let RData::SOA(soa) = &answer.authorities[0].data else { panic!("no SOA: {answer:?}") };
    assert_eq!(soa.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(answer.authorities[0].name.to_ascii(), "cluster.local.");

    // The namespace name exists while it has Services.
    let answer = ask_udp(cluster.dns, "default.svc.cluster.local.", RecordType::A).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());

    // TCP.
    let answer = ask_tcp(cluster.dns, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&answer), vec![cluster_ip]);

    // Deleting the Service removes its records.
    Api::<Service>::namespaced(client.clone(), "default").delete("web", &DeleteParams::default()).await.unwrap();
    eventually(&cluster, "web.default.svc.cluster.local.", RecordType::A, |m| {
        m.metadata.response_code == ResponseCode::NXDomain
    })
    .await;
}

/// A fake upstream nameserver on loopback: answers `A` for names under `example.test.` with 192.0.2.1
/// (TTL 60), never answers `silent.test.`, and counts the questions it got.
async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buffer).await else { return };
            let Ok(request) = Message::from_vec(&buffer[..n]) else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let query = request.queries[0].clone();
            let name = query.name().to_ascii().to_ascii_lowercase();
            if name.ends_with("silent.test.") {
                continue;
            }
            let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
            response.metadata.recursion_available = true;
            response.add_query(query.clone());
            if name.ends_with("example.test.") && query.query_type() == RecordType::A {
                response.add_answer(Record::from_rdata(query.name().clone(), 60, RData::A(A::new(192, 0, 2, 1))));
            } else {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
        }
    });
    (address, count)
}

#[tokio::test]
async fn outside_names_are_forwarded_and_cached() {
    let (upstream, count) = fake_upstream().await;
    let cluster = start(vec![upstream]).await;

    let answer = ask_udp(cluster.dns, "www.Example.test.", RecordType::A).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&answer), ips(&["192.0.2.1"]));
    assert!(answer.metadata.recursion_available);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // The second question is answered from the cache.
    let answer = ask_udp(cluster.dns, "www.example.test.", RecordType::A).await.unwrap();
    assert_eq!(addresses(&answer), ips(&["192.0.2.1"]));
    assert!(answer.answers[0].ttl <= 30, "the cached TTL is capped at 30 s: {}", answer.answers[0].ttl);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Over TCP too.
    let answer = ask_tcp(cluster.dns, "tcp.example.test.", RecordType::A).await;
    assert_eq!(addresses(&answer), ips(&["192.0.2.1"]));

    // Upstream NXDOMAIN is passed on.
    let answer = ask_udp(cluster.dns, "other.test.", RecordType::A).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    // An upstream that never answers: SERVFAIL (after the 300 ms upstream timeout), not silence.
    let answer = ask_udp(cluster.dns, "www.silent.test.", RecordType::A).await.expect("an answer, not a hang");
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn no_upstream_answers_servfail() {
    let cluster = start(vec![]).await;
    let answer = ask_udp(cluster.dns, "www.example.test.", RecordType::A).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn malformed_packets_are_dropped_and_serving_goes_on() {
    let cluster = start(vec![]).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let good = request("kubernetes.default.svc.cluster.local.", RecordType::A);
    let mut truncated = good.to_vec().unwrap();
    truncated.truncate(truncated.len() - 3);
    let mut bad_label = good.to_vec().unwrap();
    bad_label[12] = 0xff; // a label length far past the end
    for garbage in [vec![], vec![0u8; 5], vec![0xff; 300], truncated, bad_label] {
        socket.send_to(&garbage, cluster.dns).await.unwrap();
    }
    socket.send_to(&good.to_vec().unwrap(), cluster.dns).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
        .await
        .expect("the good question is answered")
        .unwrap();
    // The first (and only) answer is the good question's: the garbage got none.
    let answer = Message::from_vec(&buffer[..n]).unwrap();
    assert_eq!(answer.metadata.id, good.metadata.id);
    assert_eq!(addresses(&answer), ips(&["10.43.0.1"]));
    // A response sent to the server is not answered either; the next question still is.
    let mut response = good.clone();
    response.metadata.message_type = MessageType::Response;
    socket.send_to(&response.to_vec().unwrap(), cluster.dns).await.unwrap();
    let again = request("kubernetes.default.svc.cluster.local.", RecordType::A);
    socket.send_to(&again.to_vec().unwrap(), cluster.dns).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await.unwrap().unwrap();
    assert_eq!(Message::from_vec(&buffer[..n]).unwrap().metadata.id, again.metadata.id);
}

/// `dig`'s answer lines (`+short`) for one question, over UDP or TCP.
async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new("dig");
    command.arg(format!("@{}", server.ip())).arg("-p").arg(server.port().to_string()).args(["+short", "+time=2", "+tries=1"]);
    command.args(args);
    let output = command.output().await.expect("dig runs: install it with `apt-get install bind9-dnsutils`");
    assert!(output.status.success(), "dig {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn dig_gets_answers_over_udp_and_tcp() {
    let cluster = start(vec![]).await;
    let short = dig(cluster.dns, &["kubernetes.default.svc.cluster.local", "A"]).await;
    assert_eq!(short.trim(), "10.43.0.1");
    let short = dig(cluster.dns, &["+tcp", "kubernetes.default.svc.cluster.local", "A"]).await;
    assert_eq!(short.trim(), "10.43.0.1");
    let short = dig(cluster.dns, &["_https._tcp.kubernetes.default.svc.cluster.local", "SRV"]).await;
    assert_eq!(short.trim(), "0 100 443 kubernetes.default.svc.cluster.local.");
    let short = dig(cluster.dns, &["-x", "10.43.0.1"]).await;
    assert_eq!(short.trim(), "kubernetes.default.svc.cluster.local.");
}
