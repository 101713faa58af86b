//! `skiff-bench dns`: the cluster DNS (skiff-dns) in-process over an in-process API server holding N
//! Services (one EndpointSlice of E endpoints each, every tenth headless), measured with closed-loop UDP
//! clients over loopback: queries/s, p50/p99 latency, the server thread's CPU, and the process RSS before
//! and after the DNS server loaded its records.
//!
//! Run: `cargo build --release -p skiff-bench && target/release/skiff-bench dns [--services N]
//! [--endpoints E] [--clients C] [--seconds S]`. With two or more cores the DNS server runs on a
//! current-thread runtime in its own thread pinned to core 0 and the clients on core 1, so the figure is
//! one core's worth of serving.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::process::status_kib_from;
use crate::report::{median, percentile};

const NAMESPACES: usize = 10;
/// Concurrent creates while loading the objects.
const LOADERS: usize = 16;
const WARMUP: Duration = Duration::from_secs(1);

struct Options {
    services: usize,
    endpoints: usize,
    clients: usize,
    seconds: u64,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options { services: 10_000, endpoints: 10, clients: 32, seconds: 10 };
    let usage = "usage: skiff-bench dns [--services N] [--endpoints E] [--clients C] [--seconds S]";
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |n: &str| -> anyhow::Result<usize> {
            it.next().with_context(|| format!("{n} needs a value; {usage}"))?.parse().with_context(|| format!("{n} needs a number"))
        };
        match a.as_str() {
            "--services" => o.services = number("--services")?,
            "--endpoints" => o.endpoints = number("--endpoints")?,
            "--clients" => o.clients = number("--clients")?,
            "--seconds" => o.seconds = number("--seconds")? as u64,
            other => bail!("unknown argument {other}; {usage}"),
        }
    }
    if o.services < NAMESPACES || o.endpoints == 0 || o.endpoints > 250 || o.clients == 0 || o.seconds == 0 {
        bail!("--services must be at least {NAMESPACES}, --endpoints 1..=250, --clients and --seconds at least 1");
    }
    Ok(o)
}

fn rss_mib() -> f64 {
    status_kib_from("/proc/self/status", "VmRSS").map(|k| k as f64 / 1024.0).unwrap_or(f64::NAN)
}

/// Pins the calling thread to `core`; false when that is not possible.
fn pin_to(core: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it; sched_setaffinity(0)
    // only changes the calling thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// user+system CPU seconds of one thread of this process.
fn thread_cpu_seconds(tid: i32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn endpoint_ip(service: usize, endpoint: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (service * 256 + endpoint) as u32)
}

fn headless(i: usize) -> bool {
    i % 10 == 5
}

fn namespace_of(i: usize) -> String {
    format!("bench-{}", i % NAMESPACES)
}

/// Creates the namespaces, Services and EndpointSlices; the cluster IPs by Service index.
async fn load(client: &kube::Client, o: &Options) -> anyhow::Result<Vec<Option<Ipv4Addr>>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": format!("bench-{n}")}}))?;
        namespaces.create(&PostParams::default(), &ns).await.context("creating a namespace")?;
    }
    let endpoints = o.endpoints;
    let ips: Vec<Option<Ipv4Addr>> = futures::stream::iter(0..o.services)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = namespace_of(i);
                let mut spec = json!({"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "selector": {"app": format!("svc-{i}")}});
                if headless(i) {
                    spec["clusterIP"] = json!("None");
                }
                let service: Service = serde_json::from_value(json!({"metadata": {"name": format!("svc-{i}")}, "spec": spec}))?;
                let created = Api::<Service>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &service)
                    .await
                    .with_context(|| format!("creating Service svc-{i}"))?;
                let eps: Vec<serde_json::Value> = (0..endpoints)
                    .map(|j| {
                        let mut e = json!({"addresses": [endpoint_ip(i, j).to_string()], "conditions": {"ready": true}});
                        if headless(i) {
                            e["hostname"] = json!(format!("pod-{j}"));
                        }
                        e
                    })
                    .collect();
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "metadata": {"name": format!("svc-{i}-1"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                    "addressType": "IPv4",
                    "endpoints": eps,
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
                }))?;
                Api::<EndpointSlice>::namespaced(client, &ns)
                    .create(&PostParams::default(), &slice)
                    .await
                    .with_context(|| format!("creating EndpointSlice svc-{i}-1"))?;
                let ip = created.spec.and_then(|s| s.cluster_ip).and_then(|ip| ip.parse().ok());
                if (i + 1) % 1000 == 0 {
                    eprintln!("dns: {} Services created", i + 1);
                }
                anyhow::Ok(ip)
            }
        })
        .buffered(LOADERS)
        .try_collect()
        .await?;
    Ok(ips)
}

/// The kinds of question in the mix, one packet each.
#[derive(Clone, Copy)]
enum Kind {
    ServiceA,
    Srv,
    EndpointA,
    Ptr,
    Missing,
    Aaaa,
}

fn packet(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("valid name"), qtype));
    // EDNS with 1232 bytes, as dig sends: headless SRV answers with their addresses exceed 512 bytes.
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    m.to_vec().expect("query encodes")
}

/// 20,000 questions: 70% Service A, 10% SRV, 5% endpoint A (hostname or dashed), 5% PTR,
/// 5% missing names (NXDOMAIN), 5% AAAA (NODATA), over random Services.
fn questions(o: &Options, ips: &[Option<Ipv4Addr>]) -> Vec<(Kind, Vec<u8>)> {
    let mut out = Vec::with_capacity(20_000);
    for k in 0..20_000usize {
        let i = rand::random_range(0..o.services);
        let base = format!("svc-{i}.{}.svc.cluster.local.", namespace_of(i));
        let j = rand::random_range(0..o.endpoints);
        let kind = match k % 20 {
            0..=13 => Kind::ServiceA,
            14 | 15 => Kind::Srv,
            16 => Kind::EndpointA,
            17 => Kind::Ptr,
            18 => Kind::Missing,
            _ => Kind::Aaaa,
        };
        let bytes = match kind {
            Kind::ServiceA => packet(&base, RecordType::A),
            Kind::Srv => packet(&format!("_http._tcp.{base}"), RecordType::SRV),
            Kind::EndpointA if headless(i) => packet(&format!("pod-{j}.{base}"), RecordType::A),
            Kind::EndpointA => packet(&base, RecordType::A),
            Kind::Ptr => {
                // Headless endpoints and cluster IPs have PTR records.
                let ip = if headless(i) { endpoint_ip(i, j) } else { ips[i].unwrap_or(endpoint_ip(i, j)) };
                let [a, b, c, d] = ip.octets();
                packet(&format!("{d}.{c}.{b}.{a}.in-addr.arpa."), RecordType::PTR)
            }
            Kind::Missing => packet(&format!("missing-{i}.{}.svc.cluster.local.", namespace_of(i)), RecordType::A),
            Kind::Aaaa => packet(&base, RecordType::AAAA),
        };
        out.push((kind, bytes));
    }
    out
}

#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    answered: u64,
    unexpected: u64,
    timeouts: u64,
}

/// One closed-loop client: a question, wait for its answer, the next. Counts only after `measuring`.
async fn run_client(
    server: SocketAddr,
    questions: Arc<Vec<(Kind, Vec<u8>)>>,
    offset: usize,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ClientResult> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut result = ClientResult::default();
    let mut buffer = vec![0u8; 4096];
    let mut id: u16 = 0;
    let mut next = offset;
    while !stop.load(Ordering::Relaxed) {
        let (kind, bytes) = &questions[next % questions.len()];
        next += 1;
        id = id.wrapping_add(1);
        let mut packet = bytes.clone();
        packet[..2].copy_from_slice(&id.to_be_bytes());
        let start = Instant::now();
        socket.send(&packet).await?;
        let received = loop {
            match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer)).await {
                Err(_) => break None,
                Ok(n) => {
                    let n = n?;
                    if n >= 12 && buffer[..2] == id.to_be_bytes() {
                        break Some(n);
                    }
                }
            }
        };
        let elapsed = start.elapsed();
        if !measuring.load(Ordering::Relaxed) {
            continue;
        }
        let Some(_) = received else {
            result.timeouts += 1;
            continue;
        };
        let rcode = buffer[3] & 0x0f;
        let answers = u16::from_be_bytes([buffer[6], buffer[7]]);
        let expected = match kind {
            Kind::Missing => rcode == 3,
            Kind::Aaaa => rcode == 0 && answers == 0,
            _ => rcode == 0 && answers > 0,
        };
        if !expected {
            result.unexpected += 1;
            if result.unexpected <= 2 {
                let question = Message::from_vec(&packet).map(|m| m.queries[0].to_string()).unwrap_or_default();
                eprintln!("dns: unexpected answer (rcode {rcode}, {answers} answers) to {question}");
            }
        }
        result.answered += 1;
        result.latencies_us.push(elapsed.as_micros().min(u32::MAX as u128) as u32);
    }
    Ok(result)
}

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rss_start = rss_mib();
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let main_runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let server = main_runtime.block_on(skiff_apiserver::testing::start_admin());
    let client = main_runtime.block_on(async { kube::Client::new(server.router.clone(), "default") });
    let started = Instant::now();
    let ips = main_runtime.block_on(load(&client, &o))?;
    let load_seconds = started.elapsed().as_secs_f64();
    eprintln!("dns: {} Services and EndpointSlices created in {load_seconds:.1} s", o.services);
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_mib();

    // The DNS server: its own thread and current-thread runtime, pinned to core 0.
    let port = crate::process::free_port()?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let config = skiff_dns::DnsConfig { listen: vec![address], upstreams: vec![], ..skiff_dns::DnsConfig::default() };
    let shutdown = CancellationToken::new();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let dns_thread = {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let pinned = cores >= 2 && pin_to(0);
            // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send((unsafe { libc::gettid() }, pinned));
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(skiff_dns::run(config, client, shutdown))?;
            Ok(())
        })
    };
    let (dns_tid, pinned) = tid_rx.recv().context("the DNS thread did not start")?;

    // Loaded once the last Service's records are answered (its slice was created last).
    let started = Instant::now();
    let last = o.services - 1;
    let probe = if headless(last) {
        format!("pod-{}.svc-{last}.{}.svc.cluster.local.", o.endpoints - 1, namespace_of(last))
    } else {
        format!("_http._tcp.svc-{last}.{}.svc.cluster.local.", namespace_of(last))
    };
    let probe_type = if headless(last) { RecordType::A } else { RecordType::SRV };
    main_runtime.block_on(async {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let bytes = packet(&probe, probe_type);
        let mut buffer = vec![0u8; 4096];
        loop {
            if started.elapsed() > Duration::from_secs(300) {
                bail!("the DNS server did not answer {probe} within 300 s");
            }
            socket.send_to(&bytes, address).await?;
            if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buffer)).await {
                if n >= 12 && buffer[3] & 0x0f == 0 && u16::from_be_bytes([buffer[6], buffer[7]]) > 0 {
                    return anyhow::Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    let ready_seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = rss_mib();
    eprintln!("dns: records loaded in {ready_seconds:.2} s; RSS {rss_before:.1} → {rss_after:.1} MiB");

    // The clients: their own thread and current-thread runtime, pinned to core 1.
    let questions = Arc::new(questions(&o, &ips));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = o.clients;
    let client_thread = {
        let (questions, measuring, stop) = (questions.clone(), measuring.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<Vec<ClientResult>> {
            if cores >= 2 {
                pin_to(1);
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let tasks: Vec<_> = (0..clients)
                    .map(|c| {
                        tokio::spawn(run_client(address, questions.clone(), c * 619, measuring.clone(), stop.clone()))
                    })
                    .collect();
                let mut results = Vec::new();
                for task in tasks {
                    results.push(task.await??);
                }
                anyhow::Ok(results)
            })
        })
    };
    std::thread::sleep(WARMUP);
    let cpu_start = thread_cpu_seconds(dns_tid)?;
    let window = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(o.seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = window.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds(dns_tid)? - cpu_start;
    stop.store(true, Ordering::Relaxed);
    let results = client_thread.join().map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    shutdown.cancel();
    dns_thread.join().map_err(|_| anyhow::anyhow!("the DNS thread panicked"))??;
    server.shutdown.cancel();

    let answered: u64 = results.iter().map(|r| r.answered).sum();
    let unexpected: u64 = results.iter().map(|r| r.unexpected).sum();
    let timeouts: u64 = results.iter().map(|r| r.timeouts).sum();
    let latencies: Vec<f64> = results.iter().flat_map(|r| r.latencies_us.iter().map(|&u| u as f64)).collect();
    let qps = answered as f64 / elapsed;
    let utilisation = cpu / elapsed;

    println!("Machine: {}; load average before the run {}\n", crate::machine(), load_average.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    println!("| figure | value |\n|---|---|");
    println!("| Services (headless) | {} ({}) |", o.services, (0..o.services).filter(|i| headless(*i)).count());
    println!("| endpoints per Service (one EndpointSlice each) | {} |", o.endpoints);
    println!("| objects created through the API | {load_seconds:.1} s |");
    println!("| records loaded after the DNS server started | {ready_seconds:.2} s |");
    println!("| process RSS at start / API server loaded / DNS loaded (MiB) | {rss_start:.1} / {rss_before:.1} / {rss_after:.1} |");
    println!("| RSS added by the DNS server (MiB) | {:.1} |", rss_after - rss_before);
    println!("| UDP clients (closed loop, loopback) | {} on {} |", o.clients, if cores >= 2 { "core 1" } else { "the same core" });
    println!("| DNS server thread | current-thread runtime{} |", if pinned { ", pinned to core 0" } else { ", not pinned" });
    println!("| queries/s | {qps:.0} |");
    println!("| DNS thread CPU | {:.0}% of one core |", utilisation * 100.0);
    println!("| queries per DNS-thread CPU second | {:.0} |", if cpu > 0.0 { answered as f64 / cpu } else { f64::NAN });
    println!("| latency p50 / p99 (µs) | {:.0} / {:.0} |", median(&latencies), percentile(&latencies, 99.0));
    println!("| unexpected answers / timeouts | {unexpected} / {timeouts} |");
    println!("| measured for | {elapsed:.1} s after {:.0} s warm-up; 70% Service A, 10% SRV, 5% endpoint A, 5% PTR, 5% NXDOMAIN, 5% AAAA NODATA |", WARMUP.as_secs_f64());
    Ok(())
}
