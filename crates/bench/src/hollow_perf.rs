//! `skiff-bench scheduler-perf`: workloads shaped like Kubernetes' scheduler_perf (SchedulingBasic,
//! required pod anti-affinity, topology spreading, a DaemonSet-style case, PreemptionBasic) on hollow nodes.
//! The API server (memory store), the scheduler and the hollow nodes run in this process; the figure is
//! measured pods bound per second from the first create to the last binding, API writes included, and the
//! peak RSS is this whole process's.
//!
//! Run: `cargo run --release -p skiff-bench -- scheduler-perf [--workload NAME|all] [--scale F]
//! [--strategy spread|binpack]`. `--scale 0.1` runs every workload at a tenth of its size. Peak RSS is the
//! process's high-water mark, so with `--workload all` it covers every workload run so far: run one
//! workload per process to report memory. `RUST_LOG=skiff_scheduler=info` prints the scheduler's cycle
//! statistics (time spent filtering and scoring, apart from the API).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::hollow::{self, HollowNodeSpec};

/// One scheduler_perf-shaped workload.
struct Workload {
    name: &'static str,
    nodes: usize,
    init_pods: usize,
    measured_pods: usize,
    /// Kubernetes' CI floor for this workload, pods/s (performance-anchors.md rows 12-16).
    upstream_floor: f64,
    node_spec: HollowNodeSpec,
    init: fn(usize) -> serde_json::Value,
    measured: fn(usize) -> serde_json::Value,
}

fn pod(name: String, group: &str, spec_extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]});
    for (k, v) in spec_extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"skiff-bench/group": group, "color": "green"}}, "spec": spec})
}

fn basic_init(i: usize) -> serde_json::Value {
    pod(format!("init-{i}"), "init", json!({}))
}

fn basic(i: usize) -> serde_json::Value {
    pod(format!("measured-{i}"), "measured", json!({}))
}

fn anti_affinity(i: usize) -> serde_json::Value {
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    pod(format!("measured-{i}"), "measured", json!({"affinity": aff}))
}

fn anti_affinity_init(i: usize) -> serde_json::Value {
    let mut p = anti_affinity(i);
    p["metadata"]["name"] = json!(format!("init-{i}"));
    p["metadata"]["labels"]["skiff-bench/group"] = json!("init");
    p
}

fn spread(i: usize) -> serde_json::Value {
    let c = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"color": "green"}}}]);
    pod(format!("measured-{i}"), "measured", json!({"topologySpreadConstraints": c}))
}

fn daemonset(i: usize) -> serde_json::Value {
    let aff = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": [format!("hollow-{i}")]}]}]}}});
    pod(format!("measured-{i}"), "measured", json!({"affinity": aff}))
}

fn low_priority(i: usize) -> serde_json::Value {
    let mut p = pod(format!("init-{i}"), "init", json!({"priorityClassName": "bench-low"}));
    p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("900m");
    p
}

fn high_priority(i: usize) -> serde_json::Value {
    let mut p = pod(format!("measured-{i}"), "measured", json!({"priorityClassName": "bench-high"}));
    p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("3");
    p
}

fn workloads() -> Vec<Workload> {
    let spec = HollowNodeSpec::default();
    vec![
        Workload { name: "SchedulingBasic", nodes: 5000, init_pods: 1000, measured_pods: 10000, upstream_floor: 270.0,
                   node_spec: spec.clone(), init: basic_init, measured: basic },
        Workload { name: "SchedulingPodAntiAffinity", nodes: 5000, init_pods: 1000, measured_pods: 1000, upstream_floor: 60.0,
                   node_spec: spec.clone(), init: anti_affinity_init, measured: anti_affinity },
        Workload { name: "TopologySpreading", nodes: 5000, init_pods: 5000, measured_pods: 5000, upstream_floor: 85.0,
                   node_spec: spec.clone(), init: basic_init, measured: spread },
        Workload { name: "SchedulingDaemonset", nodes: 15000, init_pods: 0, measured_pods: 15000, upstream_floor: 390.0,
                   node_spec: spec.clone(), init: basic_init, measured: daemonset },
        Workload { name: "PreemptionBasic", nodes: 500, init_pods: 2000, measured_pods: 500, upstream_floor: 18.0,
                   node_spec: spec, init: low_priority, measured: high_priority },
    ]
}

struct Options {
    workload: String,
    scale: f64,
    strategy: String,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options { workload: "all".into(), scale: 1.0, strategy: "spread".into() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |n: &str| it.next().cloned().with_context(|| format!("{n} needs a value"));
        match a.as_str() {
            "--workload" => o.workload = value("--workload")?,
            "--scale" => o.scale = value("--scale")?.parse().context("--scale needs a number")?,
            "--strategy" => o.strategy = value("--strategy")?,
            other => bail!("unknown argument {other}; usage: skiff-bench scheduler-perf [--workload NAME|all] [--scale F] [--strategy spread|binpack]"),
        }
    }
    if !(o.scale > 0.0 && o.scale <= 1.0) {
        bail!("--scale must be in (0, 1]");
    }
    Ok(o)
}

fn peak_rss_mib() -> f64 {
    crate::process::status_kib_from("/proc/self/status", "VmHWM").map(|k| k as f64 / 1024.0).unwrap_or(0.0)
}

/// Counts pods of `group` that have a node, publishing the count.
fn count_bound(client: &Client, group: &str, shutdown: CancellationToken) -> watch::Receiver<usize> {
    let (tx, rx) = watch::channel(0);
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let cfg = watcher::Config::default().labels(&format!("skiff-bench/group={group}"));
    tokio::spawn(async move {
        let mut bound = HashSet::new();
        let mut stream = watcher(api, cfg).default_backoff().applied_objects().boxed();
        loop {
            let p = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = stream.next() => match p { Some(Ok(p)) => p, Some(Err(_)) => continue, None => return },
            };
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() && bound.insert(p.metadata.uid.unwrap_or_default()) {
                let _ = tx.send(bound.len());
            }
        }
    });
    rx
}

async fn create_pods(client: &Client, n: usize, make: fn(usize) -> serde_json::Value) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let p: Pod = serde_json::from_value(make(i))?;
                api.create(&PostParams::default(), &p).await.context("failed to create a pod")?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn wait_for(rx: &mut watch::Receiver<usize>, n: usize, what: &str, limit: Duration) -> anyhow::Result<()> {
    let done = tokio::time::timeout(limit, rx.wait_for(|c| *c >= n)).await.map(|r| r.is_ok());
    match done {
        Ok(true) => Ok(()),
        Ok(false) => bail!("the counter for {what} stopped"),
        Err(_) => bail!("timed out after {limit:?} waiting for {what} ({} of {n} bound)", *rx.borrow()),
    }
}

struct Row {
    name: &'static str,
    nodes: usize,
    init: usize,
    measured: usize,
    seconds: f64,
    floor: f64,
    rss: f64,
}

async fn run_one(w: &Workload, scale: f64, strategy: &str) -> anyhow::Result<Row> {
    let nodes = ((w.nodes as f64 * scale).round() as usize).max(1);
    let init = (w.init_pods as f64 * scale).round() as usize;
    let measured = ((w.measured_pods as f64 * scale).round() as usize).max(1);
    let server = skiff_apiserver::testing::start_admin().await;
    let client = Client::new(server.router.clone(), "default");
    let classes: Api<PriorityClass> = Api::all(client.clone());
    for (name, value) in [("bench-low", 1), ("bench-high", 10)] {
        let pc: PriorityClass = serde_json::from_value(json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value}))?;
        classes.create(&PostParams::default(), &pc).await?;
    }
    let t = Instant::now();
    let names = hollow::register(&client, "hollow", nodes, &w.node_spec).await?;
    eprintln!("{}: {nodes} hollow nodes registered in {:.1}s", w.name, t.elapsed().as_secs_f64());
    let stop = CancellationToken::new();
    let names = Arc::new(names);
    tokio::spawn(hollow::heartbeat(client.clone(), names.clone(), Duration::from_secs(10), stop.clone()));
    let set: Arc<HashSet<String>> = Arc::new(names.iter().cloned().collect());
    tokio::spawn(hollow::run_fake_runtime(client.clone(), set, stop.clone()));
    let mut config = skiff_scheduler::SchedulerConfig::from_strategy(strategy)?;
    config.leader_election.leader_elect = false;
    let scheduler = tokio::spawn(skiff_scheduler::run(config, client.clone(), stop.clone()));

    let limit = Duration::from_secs(600);
    if init > 0 {
        let mut rx = count_bound(&client, "init", stop.clone());
        create_pods(&client, init, w.init).await?;
        wait_for(&mut rx, init, "the initial pods", limit).await?;
    }
    let mut rx = count_bound(&client, "measured", stop.clone());
    let start = Instant::now();
    create_pods(&client, measured, w.measured).await?;
    wait_for(&mut rx, measured, "the measured pods", limit).await?;
    let seconds = start.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    stop.cancel();
    let _ = scheduler.await;
    server.shutdown.cancel();
    Ok(Row { name: w.name, nodes, init, measured, seconds, floor: w.upstream_floor, rss })
}

pub async fn main(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let all = workloads();
    let chosen: Vec<&Workload> = all.iter().filter(|w| o.workload == "all" || w.name == o.workload).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|w| w.name).collect();
        bail!("unknown workload {:?}; one of {}", o.workload, names.join(", "));
    }
    eprintln!("machine: {}", crate::machine());
    println!("| workload | nodes | initial pods | measured pods | seconds | pods/s | upstream CI floor | peak RSS of the process |");
    println!("|---|---|---|---|---|---|---|---|");
    for w in chosen {
        let r = run_one(w, o.scale, &o.strategy).await?;
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.0} MiB |",
            r.name, r.nodes, r.init, r.measured, r.seconds, r.measured as f64 / r.seconds, r.floor, r.rss
        );
    }
    Ok(())
}
