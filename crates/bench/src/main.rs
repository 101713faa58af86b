//! `skiff-bench`: starts the built `skiff server` (embedded store, and with `--etcd` against its own etcd)
//! and measures time to ready, API creates/s and GETs/s, RSS, LIST latency of 10,000 pods and watch
//! delivery latency, then prints markdown tables and the embedded/etcd ratios.
//!
//! Run: `cargo build --release -p skiff && cargo run --release -p skiff-bench -- [--etcd]
//! [--skiff PATH] [--pods N] [--starts N] [--dir DIR] [--node-ip IP]`. The server always listens on 127.0.0.1;
//! `--node-ip` (default 127.0.0.1) is what it advertises.
//!
//! `skiff-bench scheduler-perf [...]` runs the scheduler workloads on hollow nodes instead (`hollow_perf.rs`).
//! `skiff-bench podstart [...]` measures pod start latency on the real node agent (`podstart.rs`).
//! `skiff-bench dns [...]` measures the cluster DNS's queries/s, latency and RSS with 10,000 Services (`dns.rs`).
//! `skiff-bench proxy [...]` times nftables against iptables service rules and first connects (`proxy.rs`).

mod client;
mod dns;
mod hollow;
mod hollow_perf;
mod podstart;
mod process;
mod proxy;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use http::{Method, StatusCode};

use crate::process::{Etcd, Skiff};
use crate::report::{Better, Figure, median, percentile, spread};
use crate::workload::{Api, NAMESPACE, Op, configmap, pod};

/// Creates per round with one client, and per client per round with 16 clients.
const CREATES_ONE: usize = 500;
const CREATES_EACH: usize = 64;
/// GETs per round with one client, and per client per round with 16 clients.
const GETS_ONE: usize = 2000;
const GETS_EACH: usize = 250;
const ROUNDS: usize = 3;
const CONCURRENT: usize = 16;
const WATCH_WARMUP: usize = 10;
const WATCH_WRITES: usize = 200;
const LISTS: usize = 5;
const RESTARTS_WITH_PODS: usize = 5;
/// Time left to the server after start-up and after the bulk load before RSS is sampled.
const SETTLE: Duration = Duration::from_secs(2);

struct Options {
    etcd: bool,
    skiff: PathBuf,
    pods: usize,
    starts: usize,
    dir: PathBuf,
    node_ip: String,
}

fn parse_options() -> anyhow::Result<Options> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut options = Options {
        etcd: false,
        skiff: workspace.join("target/release/skiff"),
        pods: 10_000,
        starts: 10,
        dir: std::env::temp_dir(),
        node_ip: "127.0.0.1".to_string(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--etcd" => options.etcd = true,
            "--skiff" => options.skiff = PathBuf::from(value("--skiff")?),
            "--pods" => options.pods = value("--pods")?.parse().context("--pods needs a number")?,
            "--starts" => {
                options.starts = value("--starts")?
                    .parse()
                    .context("--starts needs a number")?
            }
            "--dir" => options.dir = PathBuf::from(value("--dir")?),
            "--node-ip" => options.node_ip = value("--node-ip")?,
            other => bail!(
                "unknown argument {other}; usage: skiff-bench [--etcd] [--skiff PATH] [--pods N] [--starts N] [--dir DIR] [--node-ip IP]"
            ),
        }
    }
    if options.pods < CONCURRENT || options.starts == 0 {
        bail!("--pods must be at least {CONCURRENT} and --starts at least 1");
    }
    if !options.skiff.is_file() {
        bail!(
            "{} does not exist: build it first with `cargo build --release -p skiff` (or pass --skiff PATH)",
            options.skiff.display()
        );
    }
    options.skiff = options
        .skiff
        .canonicalize()
        .context("failed to resolve the skiff binary path")?;
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("scheduler-perf") {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
        return runtime.block_on(hollow_perf::main(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("proxy") {
        return runtime.block_on(proxy::main(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("dns") {
        return dns::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("podstart") {
        return runtime.block_on(podstart::main(&args[1..]));
    }
    let options = parse_options()?;
    runtime.block_on(async {
        tokio::select! {
            result = run(&options) => result,
            // Dropping `run` drops every process guard and temporary directory.
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = process::status_kib_from("/proc/meminfo", "MemTotal")
        .map(|k| format!("{:.1} GiB", k as f64 / 1048576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {} memory, kernel {}",
        memory.unwrap_or_else(|_| "unknown".into()),
        kernel.trim()
    )
}

async fn run(options: &Options) -> anyhow::Result<()> {
    let root = tempfile::Builder::new()
        .prefix("skiff-bench-")
        .tempdir_in(&options.dir)
        .with_context(|| {
            format!(
                "failed to create a temporary directory in {}",
                options.dir.display()
            )
        })?;
    eprintln!("machine: {}", machine());
    eprintln!(
        "skiff: {}; work dir {}",
        options.skiff.display(),
        root.path().display()
    );

    let embedded = bench_backend(options, root.path(), false).await?;
    let etcd = if options.etcd {
        Some(bench_backend(options, root.path(), true).await?)
    } else {
        None
    };

    println!("Machine: {}\n", machine());
    if options.etcd {
        let version = std::process::Command::new("etcd")
            .arg("--version")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let version = String::from_utf8_lossy(&version);
        println!("etcd: {}\n", version.lines().next().unwrap_or("unknown"));
    }
    println!(
        "{}",
        report::backend_table("embedded store (redb)", &embedded)
    );
    if let Some(etcd) = &etcd {
        println!("{}", report::backend_table("etcd store", etcd));
        println!("{}", report::comparison_table(&embedded, etcd));
    }
    Ok(())
}

/// The status line and the `message` of a Kubernetes Status in an error, for a table cell.
fn short_error(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let status = text.split(':').next().unwrap_or_default();
    match text
        .split_once("\"message\":\"")
        .and_then(|(_, rest)| rest.split_once("\",\""))
    {
        Some((message, _)) => format!("{status}: {}", message.replace("\\\"", "'")),
        None => text.chars().take(300).collect(),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Measures every figure for one backend; the same figures in the same order for both.
async fn bench_backend(
    options: &Options,
    root: &Path,
    with_etcd: bool,
) -> anyhow::Result<Vec<Figure>> {
    let label = if with_etcd { "etcd" } else { "embedded" };
    let mut figures = Vec::new();

    // Ready after start on a fresh data directory (and, for etcd, a fresh etcd started beforehand).
    let mut fresh = Vec::new();
    for index in 0..options.starts {
        let etcd = if with_etcd {
            Some(Etcd::start().await?)
        } else {
            None
        };
        let data = root.join(format!("{label}-fresh-{index}"));
        std::fs::create_dir(&data)
            .with_context(|| format!("failed to create {}", data.display()))?;
        let log = root.join(format!("{label}-fresh.log"));
        let mut server = Skiff::spawn(
            &options.skiff,
            &options.node_ip,
            &data,
            &log,
            etcd.as_ref().map(|e| e.endpoint.as_str()),
        )?;
        let (ready, _) = server.wait_ready().await?;
        server.stop()?;
        drop(etcd);
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("failed to remove {}", data.display()))?;
        fresh.push(ms(ready));
        eprintln!("{label}: fresh start {index}: ready in {:.1} ms", ms(ready));
    }
    figures.push(Figure::new(
        "ready after spawn, fresh data dir (ms)",
        median(&fresh),
        1,
        Better::Lower,
        spread(&fresh, 1),
    ));

    // Ready after start on an existing data directory; the last start stays up for the API workloads.
    let etcd = if with_etcd {
        Some(Etcd::start().await?)
    } else {
        None
    };
    let endpoint = etcd.as_ref().map(|e| e.endpoint.clone());
    let data = root.join(format!("{label}-data"));
    std::fs::create_dir(&data).with_context(|| format!("failed to create {}", data.display()))?;
    let log = root.join(format!("{label}-server.log"));
    let mut first = Skiff::spawn(
        &options.skiff,
        &options.node_ip,
        &data,
        &log,
        endpoint.as_deref(),
    )?;
    first.wait_ready().await?;
    first.stop()?;
    let mut existing = Vec::new();
    let mut running = None;
    for index in 0..options.starts {
        let mut server = Skiff::spawn(
            &options.skiff,
            &options.node_ip,
            &data,
            &log,
            endpoint.as_deref(),
        )?;
        let (ready, tls) = server.wait_ready().await?;
        existing.push(ms(ready));
        eprintln!("{label}: restart {index}: ready in {:.1} ms", ms(ready));
        if index + 1 == options.starts {
            running = Some((server, tls));
        } else {
            server.stop()?;
        }
    }
    figures.push(Figure::new(
        "ready after spawn, existing data dir (ms)",
        median(&existing),
        1,
        Better::Lower,
        spread(&existing, 1),
    ));
    let (server, tls) = running.context("no server is running")?;
    let api = Api {
        port: server.port,
        tls,
    };

    tokio::time::sleep(SETTLE).await;
    let idle_rss = mib(server.rss_kib()?);
    let etcd_idle_rss = etcd.as_ref().map(|e| e.rss_kib()).transpose()?.map(mib);
    eprintln!("{label}: idle RSS {idle_rss:.1} MiB");

    api.create_namespace(NAMESPACE).await?;
    let configmaps = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");

    // Creates and GETs of ConfigMaps.
    let (mut creates_one, mut creates_many) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = configmaps.clone();
        creates_one.push(
            api.parallel(1, CREATES_ONE, move |_, i| Op {
                method: Method::POST,
                path: base.clone(),
                body: Some(configmap(&format!("c1-r{round}-{i:05}"))),
                want: StatusCode::CREATED,
            })
            .await?,
        );
        let base = configmaps.clone();
        creates_many.push(
            api.parallel(CONCURRENT, CREATES_EACH, move |client, i| Op {
                method: Method::POST,
                path: base.clone(),
                body: Some(configmap(&format!("c16-r{round}-w{client:02}-{i:05}"))),
                want: StatusCode::CREATED,
            })
            .await?,
        );
        eprintln!(
            "{label}: creates round {round}: {:.0}/s with 1 client, {:.0}/s with {CONCURRENT}",
            creates_one[round], creates_many[round]
        );
    }
    let (mut gets_one, mut gets_many) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = configmaps.clone();
        gets_one.push(
            api.parallel(1, GETS_ONE, move |_, i| Op {
                method: Method::GET,
                path: format!("{base}/c1-r0-{:05}", i % CREATES_ONE),
                body: None,
                want: StatusCode::OK,
            })
            .await?,
        );
        let base = configmaps.clone();
        gets_many.push(
            api.parallel(CONCURRENT, GETS_EACH, move |client, i| Op {
                method: Method::GET,
                path: format!("{base}/c1-r0-{:05}", (client * GETS_EACH + i) % CREATES_ONE),
                body: None,
                want: StatusCode::OK,
            })
            .await?,
        );
        eprintln!(
            "{label}: GETs round {round}: {:.0}/s with 1 client, {:.0}/s with {CONCURRENT}",
            gets_one[round], gets_many[round]
        );
    }
    let rounds = |samples: &[f64], what: String| format!("{what}; {}", spread(samples, 0));
    figures.push(Figure::new(
        "ConfigMap creates/s, 1 client",
        median(&creates_one),
        0,
        Better::Higher,
        rounds(&creates_one, format!("{CREATES_ONE} POSTs per round")),
    ));
    figures.push(Figure::new(
        "ConfigMap creates/s, 16 clients",
        median(&creates_many),
        0,
        Better::Higher,
        rounds(
            &creates_many,
            format!("{CONCURRENT}×{CREATES_EACH} POSTs per round"),
        ),
    ));
    figures.push(Figure::new(
        "ConfigMap GETs/s, 1 client",
        median(&gets_one),
        0,
        Better::Higher,
        rounds(&gets_one, format!("{GETS_ONE} GETs per round")),
    ));
    figures.push(Figure::new(
        "ConfigMap GETs/s, 16 clients",
        median(&gets_many),
        0,
        Better::Higher,
        rounds(
            &gets_many,
            format!("{CONCURRENT}×{GETS_EACH} GETs per round"),
        ),
    ));

    // Watch delivery.
    let watch = workload::watch_latency(&api, WATCH_WARMUP, WATCH_WRITES).await?;
    eprintln!(
        "{label}: watch p50 {:.2} ms, p99 {:.2} ms",
        median(&watch),
        percentile(&watch, 99.0)
    );
    let watch_detail = format!(
        "{WATCH_WRITES} sequential POSTs after {WATCH_WARMUP} warm-up; POST sent → event line received"
    );
    figures.push(Figure::new(
        "watch latency p50 (ms)",
        median(&watch),
        2,
        Better::Lower,
        watch_detail.clone(),
    ));
    figures.push(Figure::new(
        "watch latency p99 (ms)",
        percentile(&watch, 99.0),
        2,
        Better::Lower,
        watch_detail,
    ));

    // Bulk pods.
    let per_client = options.pods / CONCURRENT;
    let pods = per_client * CONCURRENT;
    let cpu_before = server.cpu_seconds()?;
    let pods_path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let pod_rate = api
        .parallel(CONCURRENT, per_client, move |client, i| {
            let index = client * per_client + i;
            Op {
                method: Method::POST,
                path: pods_path.clone(),
                body: Some(pod(&format!("pod-{index:05}"), index)),
                want: StatusCode::CREATED,
            }
        })
        .await?;
    let pod_cpu = server.cpu_seconds()? - cpu_before;
    eprintln!("{label}: {pods} pods at {pod_rate:.0}/s, server CPU {pod_cpu:.1} s");
    tokio::time::sleep(SETTLE).await;
    let pods_rss = mib(server.rss_kib()?);
    let etcd_pods_rss = etcd.as_ref().map(|e| e.rss_kib()).transpose()?.map(mib);

    // LIST. A failing LIST is reported as a figure, not the end of the run.
    let mut lists = Vec::new();
    for (what, accept) in [("JSON", None), ("Table", Some(client::TABLE))] {
        let figure = match workload::list_pods(&api, accept, LISTS).await {
            Ok((samples, bytes, count)) => {
                eprintln!(
                    "{label}: LIST {pods} pods, {what}: {:.1} ms ({count} items)",
                    median(&samples)
                );
                let warning = if count == pods {
                    String::new()
                } else {
                    format!("; WARNING: expected {pods}")
                };
                Figure::new(
                    if accept.is_none() {
                        "LIST pods, JSON (ms)"
                    } else {
                        "LIST pods, Table (ms)"
                    },
                    median(&samples),
                    1,
                    Better::Lower,
                    format!(
                        "{count} items, {:.1} MB; {}{warning}",
                        bytes as f64 / 1e6,
                        spread(&samples, 1)
                    ),
                )
            }
            Err(e) => {
                eprintln!("{label}: LIST {pods} pods, {what} FAILED: {e:#}");
                let name = if accept.is_none() {
                    "LIST pods, JSON (ms)"
                } else {
                    "LIST pods, Table (ms)"
                };
                Figure::failed(name, short_error(&e))
            }
        };
        lists.push(figure);
    }
    const PAGE: usize = 500;
    lists.push(match workload::list_pods_paged(&api, PAGE, LISTS).await {
        Ok((samples, pages, count)) => {
            eprintln!("{label}: LIST {pods} pods in pages of {PAGE}: {:.1} ms ({count} items, {pages} pages)", median(&samples));
            let warning = if count == pods { String::new() } else { format!("; WARNING: expected {pods}") };
            Figure::new(
                "LIST pods, JSON, pages of 500 (ms)",
                median(&samples),
                1,
                Better::Lower,
                format!("{count} items in {pages} requests (limit/continue); {}{warning}", spread(&samples, 1)),
            )
        }
        Err(e) => {
            eprintln!("{label}: LIST {pods} pods in pages of {PAGE} FAILED: {e:#}");
            Figure::failed("LIST pods, JSON, pages of 500 (ms)", short_error(&e))
        }
    });
    let list_rss = mib(server.rss_kib()?);
    let peak_rss = mib(process::status_kib(server.pid(), "VmHWM")?);
    server.stop()?;

    // Restarts with the pods stored.
    let mut loaded = Vec::new();
    for index in 0..RESTARTS_WITH_PODS {
        let mut server = Skiff::spawn(
            &options.skiff,
            &options.node_ip,
            &data,
            &log,
            endpoint.as_deref(),
        )?;
        let (ready, _) = server.wait_ready().await?;
        server.stop()?;
        loaded.push(ms(ready));
        eprintln!(
            "{label}: restart {index} with {pods} pods: ready in {:.1} ms",
            ms(ready)
        );
    }
    drop(etcd);

    let either = |value: Option<f64>, fallback: f64| value.unwrap_or(fallback);
    figures.push(Figure::new(
        "skiff RSS idle after start (MiB)",
        idle_rss,
        1,
        Better::Lower,
        format!("VmRSS {}s after ready", SETTLE.as_secs()),
    ));
    figures.push(match etcd_idle_rss {
        Some(rss) => Figure::new(
            "etcd RSS idle (MiB)",
            rss,
            1,
            Better::Lower,
            "VmRSS of the etcd process".into(),
        ),
        None => Figure::absent("etcd RSS idle (MiB)", "no etcd"),
    });
    figures.push(Figure::new(
        "skiff + store RSS idle (MiB)",
        idle_rss + either(etcd_idle_rss, 0.0),
        1,
        Better::Lower,
        "skiff, plus etcd when used".into(),
    ));
    figures.push(Figure::new(
        "Pod creates/s, 16 clients (bulk load)",
        pod_rate,
        0,
        Better::Higher,
        format!("{CONCURRENT}×{per_client} POSTs, one round"),
    ));
    figures.push(Figure::new(
        "skiff CPU for the bulk load (s)",
        pod_cpu,
        1,
        Better::Lower,
        format!("user+system CPU of skiff while creating {pods} pods"),
    ));
    figures.push(Figure::new(
        "skiff RSS after the pods (MiB)",
        pods_rss,
        1,
        Better::Lower,
        format!("VmRSS {}s after {pods} pods were created", SETTLE.as_secs()),
    ));
    figures.push(match etcd_pods_rss {
        Some(rss) => Figure::new(
            "etcd RSS after the pods (MiB)",
            rss,
            1,
            Better::Lower,
            "VmRSS of the etcd process".into(),
        ),
        None => Figure::absent("etcd RSS after the pods (MiB)", "no etcd"),
    });
    figures.push(Figure::new(
        "skiff + store RSS after the pods (MiB)",
        pods_rss + either(etcd_pods_rss, 0.0),
        1,
        Better::Lower,
        "skiff, plus etcd when used".into(),
    ));
    figures.extend(lists);
    figures.push(Figure::new(
        "skiff RSS after the LISTs (MiB)",
        list_rss,
        1,
        Better::Lower,
        format!("VmRSS; peak (VmHWM) {peak_rss:.1} MiB"),
    ));
    figures.push(Figure::new(
        "ready after spawn, data dir with the pods (ms)",
        median(&loaded),
        1,
        Better::Lower,
        format!("{pods} pods stored; {}", spread(&loaded, 1)),
    ));
    Ok(figures)
}
