//! Store benchmark: durable writes/s with 1 and 64 concurrent writers, and watch delivery latency
//! (write acknowledged → event received), for the embedded backend and etcd.
//!
//! Run: `cargo run --release -p skiff-store --example store_bench -- [--etcd http://127.0.0.1:2379]
//! [--no-etcd] [--dir DIR] [--rounds N]`. Without `--etcd` it starts its own etcd (as the tests do) when
//! the `etcd` binary is installed. The embedded store goes to a temporary directory under `--dir`
//! (default: the system temporary directory), which should be on the same kind of disk as etcd's data.

#[path = "../tests/support/etcd_process.rs"]
mod etcd_process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use skiff_store::Backend;
use skiff_store::embedded::{EmbeddedBackend, WriterStats};
use skiff_store::etcd::EtcdBackend;

const VALUE_SIZE: usize = 1024;
const SEQUENTIAL_WRITES: usize = 1000;
const CONCURRENT_WRITERS: usize = 64;
const WRITES_PER_CONCURRENT_WRITER: usize = 50;
const LATENCY_WRITES: usize = 1000;
const LATENCY_WRITES_PER_CONCURRENT_WRITER: usize = 20;

struct Options {
    etcd: Option<String>,
    no_etcd: bool,
    dir: Option<PathBuf>,
    rounds: usize,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        etcd: None,
        no_etcd: false,
        dir: None,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--etcd" => options.etcd = Some(args.next().context("--etcd needs an endpoint URL")?),
            "--no-etcd" => options.no_etcd = true,
            "--dir" => options.dir = Some(args.next().context("--dir needs a directory")?.into()),
            "--rounds" => {
                options.rounds = args.next().context("--rounds needs a number")?.parse()?
            }
            other => bail!(
                "unknown argument {other}; usage: store_bench [--etcd URL] [--no-etcd] [--dir DIR] [--rounds N]"
            ),
        }
    }
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(options)
}

/// One measured figure: its name, value, decimals, and whether an embedded/etcd ratio means something.
struct Figure {
    metric: String,
    value: f64,
    precision: usize,
    ratio: bool,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Creates `writers × writes_each` keys under `prefix` and returns writes per second.
async fn write_throughput(
    backend: &Arc<dyn Backend>,
    prefix: &str,
    writers: usize,
    writes_each: usize,
) -> anyhow::Result<f64> {
    let value = vec![b'x'; VALUE_SIZE];
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let backend = backend.clone();
        let prefix = prefix.to_owned();
        let value = value.clone();
        tasks.spawn(async move {
            for i in 0..writes_each {
                backend
                    .create(&format!("{prefix}w{writer:03}/{i:06}"), value.clone())
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok((writers * writes_each) as f64 / started.elapsed().as_secs_f64())
}

/// Sorted samples, in milliseconds, of watch delivery latency.
struct Latencies {
    /// From sending the write to the watcher receiving its event.
    from_send: Vec<f64>,
    /// From the writer getting the acknowledgement to the watcher receiving the event; negative when the
    /// event arrived first.
    from_ack: Vec<f64>,
}

fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(after) => after.as_secs_f64() * 1000.0,
        None => -(from.duration_since(to).as_secs_f64() * 1000.0),
    }
}

/// Watch delivery latency of every write made by `writers` concurrent writers.
async fn watch_latency(
    backend: &Arc<dyn Backend>,
    prefix: &str,
    writers: usize,
    writes_each: usize,
) -> anyhow::Result<Latencies> {
    let total = writers * writes_each;
    let mut watch = backend.watch(prefix, 0).await?;
    let watcher = tokio::spawn(async move {
        let mut received = Vec::with_capacity(total);
        while received.len() < total {
            let event = tokio::time::timeout(Duration::from_secs(60), watch.next())
                .await
                .context("timed out waiting for a watch event")?
                .context("the watch ended")??;
            received.push((event.revision, Instant::now()));
        }
        anyhow::Ok(received)
    });
    let value = vec![b'x'; VALUE_SIZE];
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let backend = backend.clone();
        let prefix = prefix.to_owned();
        let value = value.clone();
        tasks.spawn(async move {
            let mut acked = Vec::with_capacity(writes_each);
            for i in 0..writes_each {
                let sent = Instant::now();
                let kv = backend
                    .create(&format!("{prefix}w{writer:03}/{i:06}"), value.clone())
                    .await?;
                acked.push((kv.mod_revision, (sent, Instant::now())));
            }
            anyhow::Ok(acked)
        });
    }
    let mut acked = std::collections::HashMap::with_capacity(total);
    while let Some(result) = tasks.join_next().await {
        acked.extend(result??);
    }
    let received = watcher.await??;
    let mut latencies = Latencies {
        from_send: Vec::with_capacity(total),
        from_ack: Vec::with_capacity(total),
    };
    for (revision, at) in received {
        let (sent, acked_at) = acked
            .get(&revision)
            .context("an event for a write that was not acknowledged")?;
        latencies.from_send.push(signed_ms(*sent, at));
        latencies.from_ack.push(signed_ms(*acked_at, at));
    }
    latencies.from_send.sort_by(f64::total_cmp);
    latencies.from_ack.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Prints what the embedded writer did during one phase: batch sizes and where its time went.
fn report_writer(name: &str, stats: &WriterStats) {
    if stats.batches == 0 {
        return;
    }
    let per_batch = |d: Duration| d.as_secs_f64() * 1000.0 / stats.batches as f64;
    eprintln!(
        "  {name}: {} batches, mean {:.1} ops (largest so far {}); per batch (ms): idle {:.3}, gather {:.3} \
         (of which waiting for writers {:.3}; {} waits expired), commit {:.3}, answer {:.3}",
        stats.batches,
        stats.operations as f64 / stats.batches as f64,
        stats.largest_batch,
        per_batch(stats.idle),
        per_batch(stats.gather),
        per_batch(stats.linger),
        stats.lingers_expired,
        per_batch(stats.commit),
        per_batch(stats.answer),
    );
}

async fn measure(
    name: &str,
    backend: Arc<dyn Backend>,
    writer_stats: Option<&dyn Fn() -> WriterStats>,
    rounds: usize,
) -> anyhow::Result<Vec<Figure>> {
    let stats_now = || writer_stats.map(|f| f());
    let report = |before: Option<WriterStats>| {
        if let (Some(before), Some(after)) = (before, stats_now()) {
            report_writer(name, &after.since(&before));
        }
    };
    let mut sequential = Vec::new();
    let mut concurrent = Vec::new();
    for round in 0..rounds {
        let before = stats_now();
        let rate = write_throughput(
            &backend,
            &format!("/bench/{round}/seq/"),
            1,
            SEQUENTIAL_WRITES,
        )
        .await?;
        eprintln!("{name}: round {round}: 1 writer: {rate:.0} writes/s");
        report(before);
        sequential.push(rate);
        let before = stats_now();
        let prefix = format!("/bench/{round}/conc/");
        let rate = write_throughput(
            &backend,
            &prefix,
            CONCURRENT_WRITERS,
            WRITES_PER_CONCURRENT_WRITER,
        )
        .await?;
        eprintln!("{name}: round {round}: {CONCURRENT_WRITERS} writers: {rate:.0} writes/s");
        report(before);
        concurrent.push(rate);
    }
    let figure = |metric: String, value: f64, precision: usize, ratio: bool| Figure {
        metric,
        value,
        precision,
        ratio,
    };
    let mut figures = vec![
        figure(
            "durable writes/s, 1 writer".into(),
            median(sequential),
            0,
            true,
        ),
        figure(
            format!("durable writes/s, {CONCURRENT_WRITERS} writers"),
            median(concurrent),
            0,
            true,
        ),
    ];
    for (writers, writes_each) in [
        (1, LATENCY_WRITES),
        (CONCURRENT_WRITERS, LATENCY_WRITES_PER_CONCURRENT_WRITER),
    ] {
        let prefix = format!("/bench/latency/{writers}/");
        let latencies = watch_latency(&backend, &prefix, writers, writes_each).await?;
        let who = if writers == 1 {
            "1 writer".to_owned()
        } else {
            format!("{writers} writers")
        };
        for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
            let value = percentile(&latencies.from_send, p);
            figures.push(figure(
                format!("watch latency {label}, write sent → event (ms), {who}"),
                value,
                3,
                true,
            ));
        }
        for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
            let value = percentile(&latencies.from_ack, p);
            figures.push(figure(
                format!("watch latency {label}, write acked → event (ms), {who}"),
                value,
                3,
                false,
            ));
        }
    }
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let base = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("skiff-store-bench-")
        .tempdir_in(&base)?;

    let store = Arc::new(EmbeddedBackend::open(&dir.path().join("db"))?);
    let stats = || store.writer_stats();
    let embedded = measure("embedded", store.clone(), Some(&stats), options.rounds).await?;

    // Keeps a started etcd alive until the end.
    let mut _etcd_process = None;
    let etcd_backend = match (&options.etcd, options.no_etcd) {
        (_, true) => None,
        (Some(endpoint), false) => {
            Some(EtcdBackend::connect(std::slice::from_ref(endpoint)).await?)
        }
        (None, false) => {
            let (process, backend) = etcd_process::EtcdProcess::start().await?;
            eprintln!("started etcd at {}", process.endpoint());
            _etcd_process = Some(process);
            Some(backend)
        }
    };
    let etcd = match etcd_backend {
        Some(backend) => Some(measure("etcd", Arc::new(backend), None, options.rounds).await?),
        None => None,
    };

    println!(
        "Values of {VALUE_SIZE} B. Throughput: median of {} rounds of {SEQUENTIAL_WRITES} creates (1 writer) and \
         {CONCURRENT_WRITERS}×{WRITES_PER_CONCURRENT_WRITER} creates ({CONCURRENT_WRITERS} writers). Watch latency: \
         {LATENCY_WRITES} creates (1 writer), {CONCURRENT_WRITERS}×{LATENCY_WRITES_PER_CONCURRENT_WRITER} \
         ({CONCURRENT_WRITERS} writers); \"acked → event\" is negative when the event arrives before the ack.\n",
        options.rounds
    );
    println!("| metric | embedded (redb) | etcd | embedded/etcd |\n|---|---|---|---|");
    for (index, mine) in embedded.iter().enumerate() {
        let precision = mine.precision;
        let theirs = etcd.as_ref().map(|figures| figures[index].value);
        let (etcd_value, ratio) = match theirs {
            Some(theirs) if mine.ratio => (
                format!("{theirs:.precision$}"),
                format!("{:.2}", mine.value / theirs),
            ),
            Some(theirs) => (format!("{theirs:.precision$}"), "–".to_owned()),
            None => ("–".to_owned(), "–".to_owned()),
        };
        println!(
            "| {} | {:.precision$} | {etcd_value} | {ratio} |",
            mine.metric, mine.value
        );
    }
    Ok(())
}
