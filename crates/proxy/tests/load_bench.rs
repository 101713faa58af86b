//! Load-time comparison at 3,000 Services (or SKIFF_PROXY_BENCH_SERVICES; SKIFF_PROXY_BENCH_IPTABLES=0 skips
//! iptables, which takes minutes at 10,000) with 2 endpoints each, in a throwaway namespace: the nft full
//! rendering, a one-Service nft diff, and the kube-proxy-style iptables-restore equivalent. Prints times.

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{Netns, require_root_and_tools};
use skiff_proxy::nft::Nft;
use skiff_proxy::{Backend, Frontend, Model, Protocol, Target, render_diff, render_full, render_iptables};

fn model(services: u32) -> Model {
    let mut m = Model::default();
    m.settings.table = "skiffbench".into();
    for i in 0..services {
        let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i);
        let ep = |k: u32| Backend { ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 0)) + 2 * i + k), port: 8080 };
        m.frontends.insert(
            Frontend::Vip { ip: vip, protocol: Protocol::Tcp, port: 80 },
            Target { service: format!("bench/svc-{i}:http"), endpoints: vec![ep(0), ep(1)], masquerade: true, affinity_timeout: None },
        );
    }
    m
}

#[tokio::test]
#[ignore = "benchmark: loads 3,000 Services three ways and prints the times; run with --run-ignored only"]
async fn load_times_at_many_services() {
    require_root_and_tools();
    let ns = Netns::new("bench");
    let nft = Nft::new(ns.nft_command());
    let services: u32 = std::env::var("SKIFF_PROXY_BENCH_SERVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    let m = model(services);

    let t = Instant::now();
    let text = render_full(&m);
    let render = t.elapsed();
    let t = Instant::now();
    nft.apply(&text).await.expect("full rendering loads");
    let full = t.elapsed();
    eprintln!("nft full load: {full:?}");

    let mut m2 = m.clone();
    let key = *m2.frontends.keys().nth(services as usize / 2).unwrap();
    m2.frontends.get_mut(&key).unwrap().endpoints.push(Backend { ip: Ipv4Addr::new(10, 99, 0, 1), port: 8080 });
    let diff = render_diff(&m, &m2);
    let t = Instant::now();
    nft.apply(&diff).await.expect("diff loads");
    let one = t.elapsed();
    eprintln!("nft one-service diff: {one:?}");

    if std::env::var("SKIFF_PROXY_BENCH_IPTABLES").as_deref() == Ok("0") {
        println!("{services} services x 2 endpoints: render_full {render:?}, nft full load {full:?}, nft one-service diff {one:?}");
        return;
    }
    let ipt = render_iptables(&m);
    let t = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "iptables-restore", "--noflush"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("iptables-restore");
    child.stdin.take().unwrap().write_all(ipt.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "iptables-restore failed");
    let iptables = t.elapsed();

    println!(
        "{services} services x 2 endpoints: render_full {render:?} ({} bytes), nft full load {full:?}, \
         nft one-service diff {one:?} ({} bytes), iptables-restore (nft backend) {iptables:?} ({} rules)",
        text.len(),
        diff.len(),
        ipt.lines().filter(|l| l.starts_with("-A")).count()
    );
}
