//! `skiff-bench proxy`: the nftables service proxy (`skiff-proxy`) against kube-proxy-style iptables rules:
//! time to load the rules for N Services (full, and one change), and first-connect latency to a ClusterIP.
//!
//! Run (as root, with nft, iptables-nft-restore, optionally iptables-legacy-restore, and iproute2):
//! `cargo build -p skiff-bench && target/debug/skiff-bench proxy [--sync 1000,10000] [--connect 100,10000]
//! [--repeats 5] [--connects 200] [--endpoints 10]`.
//!
//! Everything happens in throwaway network namespaces `skbench-<pid>-<n>`, removed by a guard (also on panic
//! and, through the registry, on Ctrl-C); the host's own ruleset is never touched.
//!
//! Sync: for each size N, N ClusterIP Services (TCP 80 → 8080, `--endpoints` endpoints each in 10.244.0.0/16)
//! become a `Model` (`Model::build` from generated Service and EndpointSlice objects). Each backend (nft with
//! `render_full`/`render_diff`; `iptables-nft-restore` and `iptables-legacy-restore` with `render_iptables`)
//! is timed for: a full load into a fresh namespace, the same full load again over the loaded rules (a full
//! re-sync), one Service whose first endpoint is replaced, and one added Service. For iptables the one-change
//! restore is what kube-proxy's iptables mode writes in a partial sync: `--noflush` with the top-level KUBE-*
//! chains in full (KUBE-SERVICES has one rule per Service port) plus the changed KUBE-SVC/KUBE-SEP chains and
//! `-X` of the chains that went away. Every time includes starting `ip netns exec NS <tool>`; the floor of
//! that (`ip netns exec NS true`) is measured and shown too.
//!
//! Connect: a client namespace holding the rules and a backend namespace joined by a veth pair; the backend
//! listens on 10.244.0.10:8080 (a std listener in a thread that entered the namespace with setns) and every
//! Service's one endpoint is that address. The client (a thread in the client namespace) times `connect()`
//! to Service VIPs spread over all N, alternating with direct connects to the backend (the floor).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_proxy::model::SERVICE_NAME_LABEL;
use skiff_proxy::{Ipv4Cidr, Model, Settings, render_diff, render_full, render_iptables};

use crate::report::{median, percentile};

const NAMESPACE: &str = "bench";
const NODE: &str = "bench-node";
/// The backend of the connect test, and the client's address on the same veth.
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const TARGET_PORT: u16 = 8080;
/// Connects before the measured ones (ARP, first socket), not counted.
const WARMUP_CONNECTS: usize = 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

struct Options {
    sync: Vec<usize>,
    connect: Vec<usize>,
    repeats: usize,
    connects: usize,
    endpoints: usize,
    legacy: bool,
}

fn sizes(text: &str, name: &str) -> anyhow::Result<Vec<usize>> {
    if text.is_empty() || text == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|s| {
            let n: usize = s.trim().parse().with_context(|| format!("{name} needs numbers such as 1000,10000, not {s:?}"))?;
            if n == 0 || n > 60_000 {
                bail!("{name}: {n} Services is outside 1..=60000 (ClusterIPs come from 10.96.0.0/12)");
            }
            Ok(n)
        })
        .collect()
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options { sync: vec![1000, 10_000], connect: vec![100, 10_000], repeats: 5, connects: 200, endpoints: 10, legacy: true };
    let usage = "usage: skiff-bench proxy [--sync N,N|none] [--connect N,N|none] [--repeats R] [--connects C] [--endpoints E] [--no-legacy]";
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |n: &str| it.next().cloned().with_context(|| format!("{n} needs a value; {usage}"));
        let number = |s: String, n: &str| s.parse::<usize>().with_context(|| format!("{n} needs a number, not {s:?}"));
        match a.as_str() {
            "--sync" => o.sync = sizes(&value("--sync")?, "--sync")?,
            "--connect" => o.connect = sizes(&value("--connect")?, "--connect")?,
            "--repeats" => o.repeats = number(value("--repeats")?, "--repeats")?,
            "--connects" => o.connects = number(value("--connects")?, "--connects")?,
            "--endpoints" => o.endpoints = number(value("--endpoints")?, "--endpoints")?,
            "--no-legacy" => o.legacy = false,
            other => bail!("unknown argument {other}; {usage}"),
        }
    }
    if o.repeats == 0 || o.connects == 0 || o.endpoints == 0 || o.endpoints > 200 {
        bail!("--repeats and --connects must be at least 1, --endpoints within 1..=200");
    }
    Ok(o)
}

/// Whether `tool` is an executable file in a PATH directory (or /usr/sbin and /sbin, where these live).
fn tool_exists(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(tool))
        .any(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|_| "not installed".into())
}

/// Fails with the reason when this machine cannot run the benchmark.
fn require_environment(legacy: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("skiff-bench proxy creates network namespaces and loads nftables/iptables rules: run it as root");
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("iptables-nft-restore", "iptables")] {
        if !tool_exists(tool) {
            bail!("skiff-bench proxy needs {tool}: apt-get install {package}");
        }
    }
    if legacy && !tool_exists("iptables-legacy-restore") {
        bail!("iptables-legacy-restore is missing (apt-get install iptables); pass --no-legacy to measure without it");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Network namespaces.

/// The namespaces this run has created and not yet deleted, so that Ctrl-C can delete them.
#[derive(Default)]
pub struct Registry {
    names: Mutex<BTreeSet<String>>,
    counter: AtomicUsize,
}

impl Registry {
    /// Deletes every namespace still registered.
    pub fn cleanup(&self) {
        let names: Vec<String> = std::mem::take(&mut *self.names.lock().unwrap()).into_iter().collect();
        for name in names {
            delete_netns(&name);
        }
    }
}

fn delete_netns(name: &str) {
    match Command::new("ip").args(["netns", "delete", name]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("failed to delete network namespace {name}: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => eprintln!("failed to run ip netns delete {name}: {e}"),
    }
}

/// A network namespace `skbench-<pid>-<n>` with `lo` up; deleted on drop.
struct Netns {
    name: String,
    registry: Arc<Registry>,
}

impl Netns {
    fn new(registry: &Arc<Registry>) -> anyhow::Result<Netns> {
        let n = registry.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("skbench-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        registry.names.lock().unwrap().insert(name.clone());
        let ns = Netns { name, registry: registry.clone() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS <args>`.
    fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `ip netns exec NS <program> <args>`.
    fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

}

/// Moves the calling thread into the network namespace `name` (`/run/netns/<name>`).
fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = Path::new("/run/netns").join(name);
    let file = File::open(&path).with_context(|| format!("failed to open {}", path.display()))?;
    // SAFETY: setns on a namespace file descriptor we own; it changes only the calling thread's namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns into {name} failed: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.registry.names.lock().unwrap().remove(&self.name) {
            delete_netns(&self.name);
        }
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output().with_context(|| format!("failed to run {command:?}"))?;
    if !out.status.success() {
        bail!("{command:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `command` with `input` on standard input and returns the wall time from spawn to exit.
fn timed(mut command: Command, input: &Path) -> anyhow::Result<Duration> {
    let stdin = File::open(input).with_context(|| format!("failed to open {}", input.display()))?;
    command.stdin(stdin).stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = command.output().with_context(|| format!("failed to run {command:?}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let head: String = stderr.lines().take(10).collect::<Vec<_>>().join("\n");
        bail!("{command:?} failed ({}): {head}", out.status);
    }
    Ok(took)
}

// ---------------------------------------------------------------------------------------------------------
// The generated cluster.

fn cluster_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + index as u32)
}

/// Endpoint addresses: pods 10.244.0.2 .. 10.244.253.255, reused round-robin when there are more endpoints
/// than that (a pod backing several Services). 10.244.255.0/24 is left for replacement endpoints.
fn pod_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 2)) + (k % 64_000) as u32)
}

/// The replacement endpoint of change `r`.
fn new_pod_ip(r: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 255, (r % 250 + 1) as u8)
}

fn service(index: usize) -> Service {
    let ip = cluster_ip(index).to_string();
    Service {
        metadata: ObjectMeta { name: Some(format!("svc-{index:05}")), namespace: Some(NAMESPACE.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ip.clone()),
            cluster_ips: Some(vec![ip]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(TARGET_PORT.into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(index: usize, ips: &[Ipv4Addr]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("svc-{index:05}-bench")),
            namespace: Some(NAMESPACE.into()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), format!("svc-{index:05}"))].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) }),
                node_name: Some(NODE.into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(TARGET_PORT.into()),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// Services and their EndpointSlices, as the proxy would see them from the API.
#[derive(Clone)]
struct Cluster {
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
}

impl Cluster {
    /// `n` Services with `endpoints` endpoints each (distinct pods while there are enough).
    fn new(n: usize, endpoints: usize) -> Cluster {
        let mut c = Cluster { services: Vec::with_capacity(n), slices: Vec::with_capacity(n) };
        for i in 0..n {
            c.add(i, endpoints);
        }
        c
    }

    /// `n` Services whose one endpoint is the connect test's backend.
    fn single_backend(n: usize) -> Cluster {
        Cluster {
            services: (0..n).map(service).collect(),
            slices: (0..n).map(|i| slice(i, &[BACKEND])).collect(),
        }
    }

    fn add(&mut self, index: usize, endpoints: usize) {
        let ips: Vec<Ipv4Addr> = (0..endpoints).map(|j| pod_ip(index * endpoints + j)).collect();
        self.services.push(service(index));
        self.slices.push(slice(index, &ips));
    }

    /// Replaces the first endpoint of Service `index` with `ip`.
    fn replace_endpoint(&mut self, index: usize, ip: Ipv4Addr) {
        self.slices[index].endpoints[0].addresses = vec![ip.to_string()];
    }

    fn model(&self) -> Model {
        let settings = Settings {
            table: "skiff".into(),
            cluster_cidr: Ipv4Cidr { addr: Ipv4Addr::new(10, 244, 0, 0), prefix: 16 },
            node_ips: Vec::new(),
            pod_bridge: Some("cni0".into()),
            masquerade_egress: true,
        };
        Model::build(settings, NODE, &self.services, &self.slices)
    }
}

// ---------------------------------------------------------------------------------------------------------
// kube-proxy's partial iptables sync.

/// The top-level chains kube-proxy writes in full on every sync (KUBE-SERVICES has one rule per Service port).
const ALWAYS_WRITTEN: &[&str] = &["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"];
const BUILTIN: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// The user-defined chains of an `iptables-restore` nat table and their `-A` lines, in order.
fn chains_of(restore: &str) -> BTreeMap<&str, Vec<&str>> {
    let mut chains: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in restore.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            chains.entry(name).or_default();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            if !BUILTIN.contains(&chain) {
                chains.entry(chain).or_default().push(line);
            }
        }
    }
    chains
}

/// What kube-proxy's iptables mode restores with `--noflush` to go from `old` to `new` (both full
/// `render_iptables` outputs): the always-written chains and every new or changed chain, declared (which
/// flushes them) and filled, then the chains that are gone declared (flushed) and deleted with `-X`.
fn partial_restore(old: &str, new: &str) -> String {
    let a = chains_of(old);
    let b = chains_of(new);
    let write: Vec<(&str, &Vec<&str>)> = b
        .iter()
        .filter(|(name, rules)| ALWAYS_WRITTEN.contains(name) || a.get(*name) != Some(*rules))
        .map(|(name, rules)| (*name, rules))
        .collect();
    let gone: Vec<&&str> = a.keys().filter(|n| !b.contains_key(*n)).collect();
    let mut o = String::from("*nat\n");
    // Declaring a chain flushes it; chains must be empty to be deleted (kube-proxy declares them too).
    for name in write.iter().map(|(name, _)| name).chain(gone.iter().copied()) {
        o.push_str(&format!(":{name} - [0:0]\n"));
    }
    for (_, rules) in &write {
        for rule in *rules {
            o.push_str(rule);
            o.push('\n');
        }
    }
    for name in gone {
        o.push_str(&format!("-X {name}\n"));
    }
    o.push_str("COMMIT\n");
    o
}

// ---------------------------------------------------------------------------------------------------------
// Sync timing.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Loader {
    Nft,
    IptablesNft,
    IptablesLegacy,
}

impl Loader {
    fn label(self) -> &'static str {
        match self {
            Loader::Nft => "nft (skiff-proxy)",
            Loader::IptablesNft => "iptables-nft",
            Loader::IptablesLegacy => "iptables-legacy",
        }
    }

    /// The command that loads a full rendering into `ns`.
    fn full(self, ns: &Netns) -> Command {
        match self {
            Loader::Nft => ns.exec("nft", &["-f", "-"]),
            Loader::IptablesNft => ns.exec("iptables-nft-restore", &[]),
            Loader::IptablesLegacy => ns.exec("iptables-legacy-restore", &[]),
        }
    }

    /// The command that applies an incremental batch in `ns`.
    fn incremental(self, ns: &Netns) -> Command {
        match self {
            Loader::Nft => ns.exec("nft", &["-f", "-"]),
            Loader::IptablesNft => ns.exec("iptables-nft-restore", &["--noflush"]),
            Loader::IptablesLegacy => ns.exec("iptables-legacy-restore", &["--noflush"]),
        }
    }
}

/// The texts one size needs, written to files once: full renderings and the incremental steps.
struct Scripts {
    nft_full: tempfile::NamedTempFile,
    ipt_full: tempfile::NamedTempFile,
    /// One endpoint replaced, `repeats` times in a row (each from the state the previous one left).
    nft_change: Vec<tempfile::NamedTempFile>,
    ipt_change: Vec<tempfile::NamedTempFile>,
    /// One Service added, `repeats` times in a row after the changes.
    nft_add: Vec<tempfile::NamedTempFile>,
    ipt_add: Vec<tempfile::NamedTempFile>,
    /// Sizes in bytes: (nft full, iptables full, nft change, iptables change, nft add, iptables add); for the
    /// steps, the last one's.
    bytes: [usize; 6],
    /// Render times (ms) in this build: model build, render_full, render_diff, render_iptables.
    render_ms: [f64; 4],
}

fn file_with(text: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new().prefix("skiff-bench-proxy-").tempfile()?;
    f.write_all(text.as_bytes())?;
    f.flush()?;
    Ok(f)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Scripts {
    fn build(n: usize, endpoints: usize, repeats: usize) -> anyhow::Result<Scripts> {
        let mut cluster = Cluster::new(n, endpoints);
        let t = Instant::now();
        let mut model = cluster.model();
        let build_ms = ms(t.elapsed());
        let t = Instant::now();
        let nft = render_full(&model);
        let full_ms = ms(t.elapsed());
        let t = Instant::now();
        let mut ipt = render_iptables(&model);
        let ipt_ms = ms(t.elapsed());
        let nft_full = file_with(&nft)?;
        let ipt_full = file_with(&ipt)?;
        let mut bytes = [nft.len(), ipt.len(), 0, 0, 0, 0];
        drop(nft);
        let (mut nft_change, mut ipt_change, mut nft_add, mut ipt_add) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut diff_ms = Vec::new();
        for r in 0..2 * repeats {
            if r < repeats {
                // Services spread over the whole range.
                cluster.replace_endpoint(r * n / repeats + n / (2 * repeats), new_pod_ip(r));
            } else {
                cluster.add(n + r - repeats, endpoints);
            }
            let next = cluster.model();
            let t = Instant::now();
            let diff = render_diff(&model, &next);
            diff_ms.push(ms(t.elapsed()));
            let next_ipt = render_iptables(&next);
            let partial = partial_restore(&ipt, &next_ipt);
            if diff.is_empty() {
                bail!("render_diff produced nothing for step {r}: the generated change did not change the model");
            }
            let (nft_list, ipt_list, slot) =
                if r < repeats { (&mut nft_change, &mut ipt_change, 2) } else { (&mut nft_add, &mut ipt_add, 4) };
            bytes[slot] = diff.len();
            bytes[slot + 1] = partial.len();
            nft_list.push(file_with(&diff)?);
            ipt_list.push(file_with(&partial)?);
            model = next;
            ipt = next_ipt;
        }
        Ok(Scripts {
            nft_full,
            ipt_full,
            nft_change,
            ipt_change,
            nft_add,
            ipt_add,
            bytes,
            render_ms: [build_ms, full_ms, median(&diff_ms), ipt_ms],
        })
    }
}

/// Timings of one loader at one size, in ms.
#[derive(Default)]
struct SyncTimes {
    full: Vec<f64>,
    resync: Vec<f64>,
    change: Vec<f64>,
    add: Vec<f64>,
}

fn bench_sync(registry: &Arc<Registry>, loader: Loader, scripts: &Scripts, n: usize, repeats: usize) -> anyhow::Result<SyncTimes> {
    let (full, change, add) = match loader {
        Loader::Nft => (&scripts.nft_full, &scripts.nft_change, &scripts.nft_add),
        _ => (&scripts.ipt_full, &scripts.ipt_change, &scripts.ipt_add),
    };
    let mut times = SyncTimes::default();
    let mut last = None;
    for _ in 0..repeats {
        let ns = Netns::new(registry)?;
        times.full.push(ms(timed(loader.full(&ns), full.path())?));
        times.resync.push(ms(timed(loader.full(&ns), full.path())?));
        last = Some(ns);
    }
    let ns = last.context("no repeats")?;
    for step in change {
        times.change.push(ms(timed(loader.incremental(&ns), step.path())?));
    }
    for step in add {
        times.add.push(ms(timed(loader.incremental(&ns), step.path())?));
    }
    check_loaded(&ns, loader, cluster_ip(n + repeats - 1))?;
    Ok(times)
}

/// After the steps, the last added Service's VIP is in the rules (a sanity check, not timed).
fn check_loaded(ns: &Netns, loader: Loader, vip: Ipv4Addr) -> anyhow::Result<()> {
    let out = match loader {
        Loader::Nft => ns.exec("nft", &["list", "map", "ip", "skiff", "service_ips"]).output()?,
        Loader::IptablesNft => ns.exec("iptables-nft", &["-t", "nat", "-S", "KUBE-SERVICES"]).output()?,
        Loader::IptablesLegacy => ns.exec("iptables-legacy", &["-t", "nat", "-S", "KUBE-SERVICES"]).output()?,
    };
    if !out.status.success() {
        bail!("listing the {} rules failed: {}", loader.label(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    // iptables -S lists the matches in its own order.
    let (wanted, found) = match loader {
        Loader::Nft => {
            let w = format!("{vip} . tcp . 80 ");
            (w.clone(), listed.contains(&w))
        }
        _ => {
            let d = format!("-d {vip}/32 ");
            (format!("{d}... --dport 80"), listed.lines().any(|l| l.contains(&d) && l.contains("--dport 80 ")))
        }
    };
    if !found {
        bail!("after the incremental steps the {} rules lack the last added Service ({wanted:?} not listed)", loader.label());
    }
    Ok(())
}

/// `ip netns exec NS true`: the process floor included in every sync time.
fn exec_floor(registry: &Arc<Registry>, repeats: usize) -> anyhow::Result<Vec<f64>> {
    let ns = Netns::new(registry)?;
    let empty = file_with("")?;
    (0..repeats.max(5)).map(|_| Ok(ms(timed(ns.exec("true", &[]), empty.path())?))).collect()
}

// ---------------------------------------------------------------------------------------------------------
// First-connect latency.

/// A TCP listener on BACKEND:8080 inside `ns`, accepting and closing connections until dropped.
struct Listener {
    socket: Arc<TcpListener>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(ns: &Netns) -> anyhow::Result<Listener> {
        let (tx, rx) = std::sync::mpsc::channel();
        let name = ns.name.clone();
        let thread = std::thread::Builder::new().name("backend".into()).spawn(move || {
            let bound = (|| -> anyhow::Result<Arc<TcpListener>> {
                enter_netns(&name)?;
                let l = TcpListener::bind(SocketAddr::from((BACKEND, TARGET_PORT)))
                    .with_context(|| format!("failed to listen on {BACKEND}:{TARGET_PORT} in {name}"))?;
                Ok(Arc::new(l))
            })();
            let socket = match bound {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(socket.clone()));
            // Ends when `Listener::drop` shuts the socket down (accept then fails).
            while let Ok((stream, _)) = socket.accept() {
                drop(stream);
            }
        })?;
        let socket = rx.recv().context("the backend thread ended")??;
        Ok(Listener { socket, thread: Some(thread) })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: shutdown on a socket we own; it wakes the blocked accept() with an error.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connect samples in ms: to VIPs and direct to the backend with the rules loaded, and direct before.
struct ConnectTimes {
    vip: Vec<f64>,
    direct: Vec<f64>,
    no_rules: Vec<f64>,
}

/// One TCP connect (returns after the SYN-ACK), closed at once; its time in ms.
fn connect_once(to: &SocketAddr) -> anyhow::Result<f64> {
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(to, CONNECT_TIMEOUT).with_context(|| format!("connect to {to} failed"))?;
    let took = ms(start.elapsed());
    drop(stream);
    Ok(took)
}

/// Sets up client and backend namespaces, loads the rules for `n` single-backend Services with `loader`,
/// and times connects.
fn bench_connect(registry: &Arc<Registry>, loader: Loader, n: usize, connects: usize) -> anyhow::Result<ConnectTimes> {
    let client = Netns::new(registry)?;
    let backend = Netns::new(registry)?;
    client.ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vb", "netns", &backend.name])?;
    client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "vc"])?;
    client.ip(&["link", "set", "vc", "up"])?;
    backend.ip(&["addr", "add", &format!("{BACKEND}/24"), "dev", "vb"])?;
    backend.ip(&["link", "set", "vb", "up"])?;
    // VIPs are routed towards the backend; the nat output hook rewrites them to the endpoint.
    client.ip(&["route", "add", "default", "via", &BACKEND.to_string()])?;
    let listener = Listener::start(&backend)?;

    // The floor without any rules in the namespace, before loading them.
    let client_name = client.name.clone();
    let no_rules = std::thread::Builder::new().name("client".into()).spawn(move || -> anyhow::Result<Vec<f64>> {
        enter_netns(&client_name)?;
        let direct = SocketAddr::from((BACKEND, TARGET_PORT));
        for _ in 0..WARMUP_CONNECTS {
            connect_once(&direct)?;
        }
        (0..connects).map(|_| connect_once(&direct)).collect()
    })?;
    let no_rules = no_rules.join().map_err(|_| anyhow::anyhow!("the client thread panicked"))??;

    let model = Cluster::single_backend(n).model();
    let script = match loader {
        Loader::Nft => render_full(&model),
        _ => render_iptables(&model),
    };
    let file = file_with(&script)?;
    timed(loader.full(&client), file.path())?;

    // Measured VIPs spread over all N; warm-up VIPs in between.
    let vips: Vec<SocketAddr> =
        (0..connects).map(|i| SocketAddr::from((cluster_ip(i * n / connects), 80))).collect();
    let warm: Vec<SocketAddr> =
        (0..WARMUP_CONNECTS).map(|i| SocketAddr::from((cluster_ip((i * n / WARMUP_CONNECTS + n / 3) % n), 80))).collect();
    let direct = SocketAddr::from((BACKEND, TARGET_PORT));
    let client_name = client.name.clone();
    let thread = std::thread::Builder::new().name("client".into()).spawn(move || -> anyhow::Result<ConnectTimes> {
        enter_netns(&client_name)?;
        let connect = connect_once;
        for to in &warm {
            connect(&direct)?;
            connect(to)?;
        }
        let mut times = ConnectTimes { vip: Vec::new(), direct: Vec::new(), no_rules };
        for to in &vips {
            times.direct.push(connect(&direct)?);
            times.vip.push(connect(to)?);
        }
        Ok(times)
    })?;
    let times = thread.join().map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    drop(listener);
    Ok(times)
}

// ---------------------------------------------------------------------------------------------------------
// Entry point and report.

pub async fn main(args: &[String]) -> anyhow::Result<()> {
    let options = parse(args)?;
    require_environment(options.legacy)?;
    let registry = Arc::new(Registry::default());
    let worker = {
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || bench(&options, &registry))
    };
    tokio::select! {
        result = worker => {
            registry.cleanup();
            result.context("the benchmark thread panicked")?
        }
        _ = tokio::signal::ctrl_c() => {
            // The worker thread cannot be stopped; delete its namespaces and end the process.
            registry.cleanup();
            eprintln!("interrupted; deleted the benchmark's network namespaces");
            std::process::exit(130);
        }
    }
}

fn bench(o: &Options, registry: &Arc<Registry>) -> anyhow::Result<()> {
    let mut loaders = vec![Loader::Nft, Loader::IptablesNft];
    if o.legacy {
        loaders.push(Loader::IptablesLegacy);
    }
    let machine = crate::machine();
    let nft_version = first_line("nft", &["--version"]);
    let ipt_version = first_line("iptables", &["--version"]);
    let legacy_version = first_line("iptables-legacy", &["--version"]);
    eprintln!("machine: {machine}; {nft_version}; {ipt_version}; load average {}", load_average());
    let floor = exec_floor(registry, o.repeats)?;
    eprintln!("ip netns exec NS true: {:.1} ms", median(&floor));

    let mut sync = Vec::new();
    for &n in &o.sync {
        eprintln!("{n} Services × {} endpoints: rendering", o.endpoints);
        let scripts = Scripts::build(n, o.endpoints, o.repeats)?;
        eprintln!(
            "{n}: nft {:.1} MB, iptables {:.1} MB; change nft {} B, iptables {:.1} kB",
            scripts.bytes[0] as f64 / 1e6,
            scripts.bytes[1] as f64 / 1e6,
            scripts.bytes[2],
            scripts.bytes[3] as f64 / 1e3
        );
        let mut per_loader = BTreeMap::new();
        for &loader in &loaders {
            let t = bench_sync(registry, loader, &scripts, n, o.repeats)
                .with_context(|| format!("{n} Services, {}", loader.label()))?;
            eprintln!(
                "{n} {}: full {:.1} ms, resync {:.1} ms, change {:.1} ms, add {:.1} ms",
                loader.label(),
                median(&t.full),
                median(&t.resync),
                median(&t.change),
                median(&t.add)
            );
            per_loader.insert(loader, t);
        }
        sync.push((n, scripts.bytes, scripts.render_ms, per_loader));
    }

    let mut connect = Vec::new();
    for &n in &o.connect {
        let mut per_loader = BTreeMap::new();
        for &loader in &loaders {
            let t = bench_connect(registry, loader, n, o.connects)
                .with_context(|| format!("connect, {n} Services, {}", loader.label()))?;
            eprintln!(
                "connect {n} {}: VIP p50 {:.3} ms p99 {:.3} ms; direct p50 {:.3} ms p99 {:.3} ms",
                loader.label(),
                median(&t.vip),
                percentile(&t.vip, 99.0),
                median(&t.direct),
                percentile(&t.direct, 99.0)
            );
            per_loader.insert(loader, t);
        }
        connect.push((n, per_loader));
    }

    // The report.
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("Machine: {machine}");
    println!("Tools: {nft_version}; {ipt_version}; {legacy_version}");
    let list = |v: &[usize]| if v.is_empty() { "none".to_string() } else { v.iter().map(usize::to_string).collect::<Vec<_>>().join(",") };
    println!(
        "Command: `skiff-bench proxy --sync {} --connect {} --repeats {} --connects {} --endpoints {}{}` ({build} build of \
         skiff-bench; the sync times are spent in nft/iptables and the kernel); load average at the end {}\n",
        list(&o.sync),
        list(&o.connect),
        o.repeats,
        o.connects,
        o.endpoints,
        if o.legacy { "" } else { " --no-legacy" },
        load_average()
    );
    if !sync.is_empty() {
        let mut header = String::from("| operation | Services |");
        let mut rule = String::from("|---|---|");
        for l in &loaders {
            header.push_str(&format!(" {} (ms) |", l.label()));
            rule.push_str("---|");
        }
        for l in &loaders[1..] {
            header.push_str(&format!(" nft / {} |", l.label()));
            rule.push_str("---|");
        }
        header.push_str(" input size nft / iptables |");
        rule.push_str("---|");
        println!(
            "### Sync time: ClusterIP Services (TCP 80 → 8080), {} endpoints each; median of {} (ms)\n",
            o.endpoints, o.repeats
        );
        println!("{header}\n{rule}");
        for (n, bytes, _, per) in &sync {
            let rows: [(&str, fn(&SyncTimes) -> &Vec<f64>, usize); 4] = [
                ("full load, fresh namespace", |t| &t.full, 0),
                ("full re-sync over the loaded rules", |t| &t.resync, 0),
                ("one endpoint of one Service replaced", |t| &t.change, 2),
                ("one Service added", |t| &t.add, 4),
            ];
            for (what, pick, slot) in rows {
                let mut line = format!("| {what} | {n} |");
                for l in &loaders {
                    line.push_str(&format!(" {:.1} |", median(pick(&per[l]))));
                }
                let nft = median(pick(&per[&Loader::Nft]));
                for l in &loaders[1..] {
                    line.push_str(&format!(" {:.2} |", nft / median(pick(&per[l]))));
                }
                line.push_str(&format!(" {} / {} |", size(bytes[slot]), size(bytes[slot + 1])));
                println!("{line}");
            }
        }
        println!(
            "\nEvery time is one `ip netns exec NS <tool>` from spawn to exit, input from a file; `ip netns exec NS true` \
             takes {:.1} ms here (median of {}). nft: `nft -f -` of `render_full` (creates, deletes and redefines table \
             `ip skiff`) and of `render_diff` (element and chain changes only). iptables: `iptables-*-restore` of \
             `render_iptables` (kube-proxy's KUBE-SERVICES / KUBE-SVC-* / KUBE-SEP-* layout) for full loads, and for one \
             change `--noflush` with what kube-proxy's partial sync writes: the KUBE-SERVICES, KUBE-NODEPORTS, \
             KUBE-POSTROUTING and KUBE-MARK-MASQ chains in full, the new or changed KUBE-SVC/KUBE-SEP chains, and `-X` of \
             the removed ones. The {} changes and {} additions are applied one after another in the namespace of the \
             last full load; endpoints beyond 64,000 reuse pod addresses (a pod backing several Services).\n",
            median(&floor),
            floor.len(),
            o.repeats,
            o.repeats
        );
        println!("Rendering in this {build} build (ms): \n");
        println!("| Services | Model::build | render_full | render_diff (one change) | render_iptables |\n|---|---|---|---|---|");
        for (n, _, r, _) in &sync {
            println!("| {n} | {:.1} | {:.1} | {:.2} | {:.1} |", r[0], r[1], r[2], r[3]);
        }
        println!();
    }
    if !connect.is_empty() {
        println!(
            "### First-connect latency to a ClusterIP: {} connects to VIPs spread over all Services, alternating with \
             direct connects to the backend (ms)\n",
            o.connects
        );
        println!("| rules | Services | VIP p50 | VIP p99 | direct p50 | direct p99 | direct p50, no rules | VIP − no-rules p50 | VIP p50 / nft VIP p50 |\n|---|---|---|---|---|---|---|---|---|");
        for (n, per) in &connect {
            let nft = median(&per[&Loader::Nft].vip);
            for l in &loaders {
                let t = &per[l];
                println!(
                    "| {} | {n} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} |",
                    l.label(),
                    median(&t.vip),
                    percentile(&t.vip, 99.0),
                    median(&t.direct),
                    percentile(&t.direct, 99.0),
                    median(&t.no_rules),
                    median(&t.vip) - median(&t.no_rules),
                    median(&t.vip) / nft
                );
            }
        }
        println!(
            "\nClient and backend are two network namespaces joined by a veth pair; the rules are loaded in the client's \
             namespace (nat output hook), every Service's one endpoint is the backend {BACKEND}:{TARGET_PORT}, and each \
             connect is a new connection (new conntrack entry, so the NAT lookup runs). connect() returns after the \
             SYN-ACK; {WARMUP_CONNECTS} warm-up pairs are not counted. \"direct\" connects run with the rules loaded and \
             pass the same nat output hook: with iptables every new connection, to a VIP or not, walks KUBE-SERVICES \
             rule by rule, so they are slower too; \"no rules\" is the same client before the rules were loaded \
             ({} direct connects).{}",
            o.connects,
            if o.connect.iter().any(|&n| n < o.connects) { " With fewer Services than connects, VIPs are used more than once." } else { "" }
        );
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn size(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else if bytes >= 1000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_restore_writes_top_level_and_changed_chains_only() {
        let mut cluster = Cluster::new(3, 2);
        let old = render_iptables(&cluster.model());
        cluster.replace_endpoint(1, new_pod_ip(0));
        let new = render_iptables(&cluster.model());
        let partial = partial_restore(&old, &new);
        let (a, b) = (chains_of(&old), chains_of(&new));
        let removed: Vec<&&str> = a.keys().filter(|n| !b.contains_key(*n)).collect();
        let added: Vec<&&str> = b.keys().filter(|n| !a.contains_key(*n)).collect();
        assert_eq!((removed.len(), added.len()), (1, 1), "one KUBE-SEP chain replaced");
        assert!(removed[0].starts_with("KUBE-SEP-") && added[0].starts_with("KUBE-SEP-"));
        assert!(partial.contains(&format!(":{} - [0:0]\n", removed[0])) && partial.contains(&format!("-X {}\n", removed[0])));
        assert!(partial.contains(&format!(":{} - [0:0]\n", added[0])));
        assert!(partial.contains(&format!("-j DNAT --to-destination {}:8080", new_pod_ip(0))));
        // KUBE-SERVICES is written in full (three Services plus the nodeports rule), builtin chains never.
        let services = partial.lines().filter(|l| l.starts_with("-A KUBE-SERVICES ")).count();
        assert_eq!(services, 4);
        assert!(!partial.contains("-A PREROUTING") && !partial.contains("-A OUTPUT"));
        // The other two Services' chains are untouched: only the changed KUBE-SVC chain is declared.
        let svc_decls = partial.lines().filter(|l| l.starts_with(":KUBE-SVC-")).count();
        assert_eq!(svc_decls, 1);
        assert!(partial.starts_with("*nat\n") && partial.ends_with("COMMIT\n"));
    }

    #[test]
    fn generated_cluster_has_the_asked_endpoints() {
        let model = Cluster::new(4, 10).model();
        assert_eq!(model.frontends.len(), 4);
        assert!(model.frontends.values().all(|t| t.endpoints.len() == 10 && t.endpoints.iter().all(|b| b.port == 8080)));
        let single = Cluster::single_backend(5).model();
        assert!(single.frontends.values().all(|t| t.endpoints.len() == 1 && t.endpoints[0].ip == BACKEND));
    }
}
