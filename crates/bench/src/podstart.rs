//! `skiff-bench podstart`: pod start latency of the real node agent (create → Running as seen by a watch,
//! sequential and K at a time), against the floor measured in the same run (`runc run -d` of a bundle
//! holding the same busybox layer and command), and the RSS of the server and of its shims with pods running.
//!
//! Run (as root, with runc, busybox-static and the CNI plugins installed):
//! `cargo build --release -p skiff -p skiff-bench && target/release/skiff-bench podstart [--skiff PATH]
//! [--pods N] [--parallel K] [--rss-pods M] [--warmup W] [--dir DIR]`.
//!
//! What it does: builds the busybox test image (`skiff_runtime::testing::busybox_image`), imports it with
//! `skiff image import`, starts `skiff server` with its local agent (its own bridge, pod CIDR, kubelet port
//! and node name, so it does not collide with other servers on the host), waits for the node to be Ready,
//! then measures, in this order: the runc floor (sequential, then K at a time), pods sequentially, pods K at
//! a time, and the RSS with M pods running. Every phase is preceded by W warm-up starts that are not
//! counted, and ends with all its pods (containers) deleted. The server, its containers (`skiff killall`),
//! the floor's containers and the temporary directory are removed by guards, also on error and Ctrl-C.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::process::{free_port, status_kib};
use crate::report::{median, percentile};

const NAMESPACE: &str = "default";
const LABEL: &str = "skiff-bench=podstart";
/// The command of every pod and floor container: sleeps, exits 0 on SIGTERM.
const COMMAND: &str = "trap 'exit 0' TERM; sleep 3600 & wait";
/// How long one pod may take to reach Running, and all pods to be gone after deletion.
const POD_TIMEOUT: Duration = Duration::from_secs(120);
/// Time left to the processes before RSS is sampled.
const SETTLE: Duration = Duration::from_secs(3);

struct Options {
    skiff: PathBuf,
    pods: usize,
    parallel: usize,
    rss_pods: usize,
    warmup: usize,
    dir: PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut o = Options {
        skiff: workspace.join("target/release/skiff"),
        pods: 100,
        parallel: 10,
        rss_pods: 20,
        warmup: 3,
        dir: std::env::temp_dir(),
    };
    let usage = "usage: skiff-bench podstart [--skiff PATH] [--pods N] [--parallel K] [--rss-pods M] [--warmup W] [--dir DIR]";
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |n: &str| it.next().cloned().with_context(|| format!("{n} needs a value; {usage}"));
        let number = |s: String, n: &str| s.parse::<usize>().with_context(|| format!("{n} needs a number"));
        match a.as_str() {
            "--skiff" => o.skiff = PathBuf::from(value("--skiff")?),
            "--pods" => o.pods = number(value("--pods")?, "--pods")?,
            "--parallel" => o.parallel = number(value("--parallel")?, "--parallel")?,
            "--rss-pods" => o.rss_pods = number(value("--rss-pods")?, "--rss-pods")?,
            "--warmup" => o.warmup = number(value("--warmup")?, "--warmup")?,
            "--dir" => o.dir = PathBuf::from(value("--dir")?),
            other => bail!("unknown argument {other}; {usage}"),
        }
    }
    if o.pods == 0 || o.parallel == 0 {
        bail!("--pods and --parallel must be at least 1");
    }
    if o.pods.max(o.rss_pods) + o.warmup > 100 {
        // The node offers 110 pods; keep room for the warm-up pods.
        eprintln!("note: {} pods at once is close to the node's 110-pod limit", o.pods.max(o.rss_pods));
    }
    if !o.skiff.is_file() {
        bail!("{} does not exist: build it with `cargo build --release -p skiff` or pass --skiff PATH", o.skiff.display());
    }
    o.skiff = o.skiff.canonicalize().context("failed to resolve the skiff binary path")?;
    Ok(o)
}

/// Fails with the reason when this machine cannot run containers.
fn require_environment() -> anyhow::Result<()> {
    let uid = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next().unwrap_or("").to_string()));
    if uid.as_deref() != Some("0") {
        bail!("podstart runs real containers and needs root");
    }
    for (tool, package) in [("runc", "runc"), ("ip", "iproute2")] {
        if Command::new(tool).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            bail!("podstart needs {tool}: apt-get install {package}");
        }
    }
    if !Path::new(skiff_runtime::testing::BUSYBOX).exists() {
        bail!("podstart needs {}: apt-get install busybox-static", skiff_runtime::testing::BUSYBOX);
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        bail!("podstart needs the CNI plugins: apt-get install containernetworking-plugins");
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// A /16 for the server's pods that no route of the host uses yet (10.250-254.0.0/16; the e2e tests use
/// 10.100-249).
fn free_cluster_cidr() -> anyhow::Result<String> {
    let routes = Command::new("ip").args(["-4", "route", "show"]).output().context("failed to run ip route")?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    (250..=254)
        .map(|b| format!("10.{b}."))
        .find(|prefix| !routes.contains(prefix.as_str()))
        .map(|prefix| format!("{prefix}0.0/16"))
        .context("no free 10.250-254.0.0/16 pod CIDR: every one is routed on this host")
}

/// `skiff server` with its local agent; on drop: SIGTERM (SIGKILL after 10 s), then `skiff killall`.
struct Server {
    child: Option<Child>,
    skiff: PathBuf,
    data: PathBuf,
    log: PathBuf,
    node_name: String,
    bridge: String,
    cidr: String,
}

impl Server {
    fn start(skiff: &Path, data: &Path) -> anyhow::Result<Server> {
        let port = free_port()?;
        let kubelet_port = free_port()?;
        let node_name = format!("bench-{port}");
        let bridge = format!("skb{port}");
        let cidr = free_cluster_cidr()?;
        let log = data.join("server.log");
        let log_file = std::fs::File::create(&log).with_context(|| format!("failed to create {}", log.display()))?;
        let child = Command::new(skiff)
            .arg("server")
            .arg("--data-dir")
            .arg(data)
            .args(["--https-listen-port", &port.to_string(), "--bind-address", "127.0.0.1", "--node-ip", "127.0.0.1"])
            .args(["--node-name", &node_name, "--kubelet-port", &kubelet_port.to_string()])
            .args(["--pod-bridge", &bridge, "--cluster-cidr", &cidr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("failed to start {}", skiff.display()))?;
        Ok(Server { child: Some(child), skiff: skiff.into(), data: data.into(), log, node_name, bridge, cidr })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!("skiff server exited with {status}:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// Waits for the admin kubeconfig, the API and the node to be Ready; returns a client.
    async fn wait_ready(&mut self) -> anyhow::Result<Client> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let kubeconfig = self.data.join("kubeconfig.yaml");
        let client = loop {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("skiff server did not answer within 120 s:\n{}", self.log_tail());
            }
            if kubeconfig.exists()
                && let Ok(client) = client_from(&kubeconfig).await
                && client.apiserver_version().await.is_ok()
            {
                break client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let nodes: Api<Node> = Api::all(client.clone());
        loop {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("node {} was not Ready within 120 s:\n{}", self.node_name, self.log_tail());
            }
            if let Ok(Some(node)) = nodes.get_opt(&self.node_name).await {
                let ready = node.status.and_then(|s| s.conditions).into_iter().flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return Ok(client);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                signal(child.id(), "TERM");
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // Containers outlive the agent by design: remove them, their network namespaces, mounts and cgroups.
        match Command::new(&self.skiff).arg("killall").arg("--data-dir").arg(&self.data).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("skiff killall failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("skiff killall did not run: {e}"),
        }
        // The bridge is the agent's; remove it if it is left (killall may keep it).
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn pod(name: &str, phase: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"skiff-bench": "podstart", "phase": phase}},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [{"name": "main", "image": skiff_runtime::testing::BUSYBOX_TEST_IMAGE,
                            "imagePullPolicy": "Never", "command": ["sh", "-c", COMMAND]}]
        }
    }))?)
}

/// What the watch has seen: when each pod was first Running, and which pods exist.
#[derive(Default)]
struct Seen {
    waiters: HashMap<String, oneshot::Sender<Result<Instant, String>>>,
    present: HashSet<String>,
}

/// One watch over the benchmark's pods for the whole run.
struct PodWatch {
    seen: Arc<Mutex<Seen>>,
    count: watch::Receiver<usize>,
}

impl PodWatch {
    async fn start(client: &Client, stop: CancellationToken) -> anyhow::Result<PodWatch> {
        let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (count_tx, count) = watch::channel(0usize);
        let (init_tx, init_rx) = oneshot::channel();
        let shared = seen.clone();
        tokio::spawn(async move {
            let mut init_tx = Some(init_tx);
            // During a (re-)list the set is rebuilt; its size is published once the list is complete.
            let mut listing = false;
            let mut stream = watcher(api, watcher::Config::default().labels(LABEL)).boxed();
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = stream.next() => match e { Some(Ok(e)) => e, Some(Err(_)) => continue, None => return },
                };
                let at = Instant::now();
                let mut seen = shared.lock().unwrap();
                match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        seen.present.insert(name.clone());
                        let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                        if phase == "Running" {
                            if let Some(tx) = seen.waiters.remove(&name) {
                                let _ = tx.send(Ok(at));
                            }
                        } else if (phase == "Failed" || phase == "Succeeded")
                            && let Some(tx) = seen.waiters.remove(&name)
                        {
                            let _ = tx.send(Err(format!("pod {name} ended in phase {phase}: {:?}", p.status)));
                        }
                    }
                    watcher::Event::Delete(p) => {
                        seen.present.remove(&p.metadata.name.unwrap_or_default());
                    }
                    watcher::Event::Init => {
                        listing = true;
                        seen.present.clear();
                    }
                    watcher::Event::InitDone => {
                        listing = false;
                        if let Some(tx) = init_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                if !listing {
                    let _ = count_tx.send(seen.present.len());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), init_rx).await.context("the pod watch did not start")??;
        Ok(PodWatch { seen, count })
    }

    /// Creates the pod and returns the time from sending the create to the watch event showing it Running.
    async fn start_pod(&self, api: &Api<Pod>, name: &str, phase: &str) -> anyhow::Result<Duration> {
        let (tx, rx) = oneshot::channel();
        self.seen.lock().unwrap().waiters.insert(name.to_string(), tx);
        let manifest = pod(name, phase)?;
        let sent = Instant::now();
        api.create(&PostParams::default(), &manifest).await.with_context(|| format!("failed to create pod {name}"))?;
        match tokio::time::timeout(POD_TIMEOUT, rx).await {
            Ok(Ok(Ok(at))) => Ok(at.saturating_duration_since(sent)),
            Ok(Ok(Err(e))) => bail!(e),
            Ok(Err(_)) => bail!("the pod watch stopped"),
            Err(_) => {
                let status = api.get(name).await.map(|p| format!("{:?}", p.status)).unwrap_or_default();
                bail!("pod {name} was not Running after {POD_TIMEOUT:?}: {status}")
            }
        }
    }

    /// Deletes every benchmark pod and waits until the watch has seen them all go.
    async fn delete_all(&mut self, api: &Api<Pod>) -> anyhow::Result<()> {
        let names: Vec<String> = self.seen.lock().unwrap().present.iter().cloned().collect();
        futures::stream::iter(names)
            .map(|name| async move {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(anyhow::Error::new(e).context(format!("failed to delete pod {name}"))),
                }
            })
            .buffer_unordered(10)
            .try_collect::<Vec<()>>()
            .await?;
        let waited = tokio::time::timeout(POD_TIMEOUT, self.count.wait_for(|c| *c == 0)).await.map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => bail!("the pod watch stopped"),
            Err(_) => bail!("{} pods were still there {POD_TIMEOUT:?} after deletion", *self.count.borrow()),
        }
    }
}

/// Starts `count` pods `<prefix>-<i>`, at most `parallel` at a time (a new one as soon as one is Running);
/// returns the latencies in ms and the wall time.
async fn start_pods(
    pw: &PodWatch,
    api: &Api<Pod>,
    prefix: &str,
    count: usize,
    parallel: usize,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    let t = Instant::now();
    let samples = futures::stream::iter(0..count)
        .map(|i| async move {
            let d = pw.start_pod(api, &format!("{prefix}-{i:03}"), prefix).await?;
            anyhow::Ok(d.as_secs_f64() * 1000.0)
        })
        .buffer_unordered(parallel)
        .try_collect::<Vec<f64>>()
        .await?;
    Ok((samples, t.elapsed()))
}

/// The runc floor: a bundle with the busybox image's layer as rootfs and runc's default spec (`runc spec`:
/// new pid, net, ipc, uts and mount namespaces, read-only root, runc's default cgroup), running the pods'
/// command; state in its own `--root`. Containers are removed (`runc delete -f`) on drop.
struct Floor {
    root: PathBuf,
    bundle: PathBuf,
    ids: Vec<String>,
}

impl Floor {
    fn prepare(dir: &Path, image: &skiff_runtime::testing::TestImage) -> anyhow::Result<Floor> {
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs)?;
        // The image's only layer, from the OCI layout: index → manifest → layers[0].
        let blob = |digest: &str| image.layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&image.manifest_digest))?)?;
        let layers = manifest["layers"].as_array().context("no layers in the test image's manifest")?;
        if layers.len() != 1 {
            bail!("the test image has {} layers, expected 1", layers.len());
        }
        let layer = blob(layers[0]["digest"].as_str().context("no layer digest")?);
        let out = Command::new("tar").arg("-xzf").arg(&layer).arg("-C").arg(&rootfs).output()?;
        if !out.status.success() {
            bail!("failed to unpack the test image's layer: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = Command::new("runc").arg("spec").arg("--bundle").arg(&bundle).output()?;
        if !out.status.success() {
            bail!("runc spec failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["sh", "-c", COMMAND]);
        spec["process"]["env"] = json!([skiff_runtime::testing::IMAGE_PATH_ENV]);
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(Floor { root: dir.join("state"), bundle, ids: Vec::new() })
    }

    /// `runc run -d`: from spawn to runc's exit, i.e. the container's process has been started (runc
    /// start returns once init was released to exec the command).
    async fn run_one(root: PathBuf, bundle: PathBuf, id: String) -> anyhow::Result<f64> {
        // runc run -d hands its stdio to the container, so no pipe (it would never reach EOF): a file.
        let errors = root.with_file_name(format!("{id}.stderr"));
        let stderr = std::fs::File::create(&errors)?;
        let t = Instant::now();
        let status = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .await?;
        let d = t.elapsed();
        if !status.success() {
            bail!("runc run -d {id} failed: {}", std::fs::read_to_string(&errors).unwrap_or_default());
        }
        Ok(d.as_secs_f64() * 1000.0)
    }

    async fn run_many(&mut self, prefix: &str, count: usize, parallel: usize) -> anyhow::Result<(Vec<f64>, Duration)> {
        let ids: Vec<String> = (0..count).map(|i| format!("floor-{prefix}-{i:03}-{}", std::process::id())).collect();
        self.ids.extend(ids.iter().cloned());
        let t = Instant::now();
        let samples = futures::stream::iter(ids)
            .map(|id| Self::run_one(self.root.clone(), self.bundle.clone(), id))
            .buffer_unordered(parallel)
            .try_collect::<Vec<f64>>()
            .await?;
        Ok((samples, t.elapsed()))
    }

    fn delete_all(&mut self) {
        for id in self.ids.drain(..) {
            let _ = Command::new("runc").arg("--root").arg(&self.root).args(["delete", "-f", &id])
                .stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.delete_all();
    }
}

/// One line of the latency table.
struct Latency {
    what: String,
    samples: Vec<f64>,
    wall: Duration,
    load: String,
}

impl Latency {
    fn row(&self) -> String {
        let n = self.samples.len();
        format!(
            "| {} | {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
            self.what,
            median(&self.samples),
            percentile(&self.samples, 90.0),
            percentile(&self.samples, 99.0),
            self.samples.iter().copied().fold(f64::INFINITY, f64::min),
            self.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            self.wall.as_secs_f64(),
            self.load
        )
    }
}

/// `skiff shim` processes of this server's data directory: (pid, VmRSS KiB, RssAnon KiB, Pss KiB).
fn shims(data: &Path) -> Vec<(u32, u64, u64, u64)> {
    let data = data.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).to_string()).collect();
        if args.get(1).map(String::as_str) == Some("shim") && args.iter().any(|a| a.starts_with(&data)) {
            let rss = status_kib(pid, "VmRSS").unwrap_or(0);
            let anon = status_kib(pid, "RssAnon").unwrap_or(0);
            let pss = crate::process::status_kib_from(&format!("/proc/{pid}/smaps_rollup"), "Pss").unwrap_or(0);
            found.push((pid, rss, anon, pss));
        }
    }
    found
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn main(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    require_environment()?;
    let root = tempfile::Builder::new().prefix("skiff-podstart-").tempdir_in(&o.dir).context("failed to create a temporary directory")?;
    let result = tokio::select! {
        r = run(&o, root.path()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The guards inside `run` have stopped everything by now; the directory goes last.
    drop(root);
    result
}

async fn run(o: &Options, dir: &Path) -> anyhow::Result<()> {
    eprintln!("machine: {}; load average at start {}", crate::machine(), load_average());
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let image = skiff_runtime::testing::busybox_image(&dir.join("test-image")).context("failed to build the busybox test image")?;
    let out = Command::new(&o.skiff).args(["image", "import", "--data-dir"]).arg(&data).arg(&image.docker_archive).output()?;
    if !out.status.success() {
        bail!("skiff image import failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    let t = Instant::now();
    let mut server = Server::start(&o.skiff, &data)?;
    let client = server.wait_ready().await?;
    eprintln!("server pid {} ready, node {} Ready in {:.1} s (bridge {}, pod CIDR {})",
        server.pid(), server.node_name, t.elapsed().as_secs_f64(), server.bridge, server.cidr);
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let mut pw = PodWatch::start(&client, stop.clone()).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    tokio::time::sleep(SETTLE).await;
    let idle_rss = mib(status_kib(server.pid(), "VmRSS")?);
    eprintln!("server RSS idle (node Ready, no pods): {idle_rss:.1} MiB");

    let mut rows = Vec::new();

    // The runc floor, with the server up and idle.
    let mut floor = Floor::prepare(&dir.join("floor"), &image)?;
    floor.run_many("warm", o.warmup, 1).await?;
    floor.delete_all();
    for (what, parallel) in [("sequential", 1), ("parallel", o.parallel)] {
        let load = load_average();
        let (samples, wall) = floor.run_many(what, o.pods, parallel).await?;
        eprintln!("floor {what}: p50 {:.1} ms, p99 {:.1} ms", median(&samples), percentile(&samples, 99.0));
        let label = if parallel == 1 { "runc run -d (floor), sequential".to_string() } else { format!("runc run -d (floor), {parallel} at a time") };
        rows.push(Latency { what: label, samples, wall, load });
        floor.delete_all();
    }
    drop(floor);

    // Pods.
    start_pods(&pw, &api, "warm", o.warmup, 1).await?;
    pw.delete_all(&api).await?;
    for (what, parallel) in [("seq", 1), ("par", o.parallel)] {
        server.check_alive()?;
        let load = load_average();
        let (samples, wall) = start_pods(&pw, &api, what, o.pods, parallel).await?;
        eprintln!("pods {what}: p50 {:.1} ms, p99 {:.1} ms, {:.1} s", median(&samples), percentile(&samples, 99.0), wall.as_secs_f64());
        let label = if parallel == 1 { "pod create → Running (watch), sequential".to_string() } else { format!("pod create → Running (watch), {parallel} at a time") };
        rows.push(Latency { what: label, samples, wall, load });
        pw.delete_all(&api).await?;
    }

    // Memory with M pods running.
    let rss_load = load_average();
    start_pods(&pw, &api, "rss", o.rss_pods, o.parallel).await?;
    tokio::time::sleep(SETTLE).await;
    server.check_alive()?;
    let server_rss = mib(status_kib(server.pid(), "VmRSS")?);
    let server_anon = mib(status_kib(server.pid(), "RssAnon")?);
    let server_hwm = mib(status_kib(server.pid(), "VmHWM")?);
    let shims = shims(&data);
    pw.delete_all(&api).await?;
    stop.cancel();
    let end_load = load_average();
    server.stop();
    drop(server);

    println!("machine: {}", crate::machine());
    println!("skiff: {}; load average at the end {end_load}\n", o.skiff.display());
    println!("| what | n | p50 (ms) | p90 (ms) | p99 (ms) | min (ms) | max (ms) | wall (s) | load average before |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", r.row());
    }
    let floor_seq = &rows[0].samples;
    let floor_par = &rows[1].samples;
    let pods_seq = &rows[2].samples;
    let pods_par = &rows[3].samples;
    println!("\n| ratio pod / floor | p50 | p99 |\n|---|---|---|");
    println!("| sequential | {:.2} | {:.2} |", median(pods_seq) / median(floor_seq), percentile(pods_seq, 99.0) / percentile(floor_seq, 99.0));
    println!("| {} at a time | {:.2} | {:.2} |", o.parallel, median(pods_par) / median(floor_par), percentile(pods_par, 99.0) / percentile(floor_par, 99.0));

    let rss: Vec<f64> = shims.iter().map(|s| mib(s.1)).collect();
    let anon: Vec<f64> = shims.iter().map(|s| mib(s.2)).collect();
    let pss: Vec<f64> = shims.iter().map(|s| mib(s.3)).collect();
    println!("\nmemory with {} pods Running (load average before {rss_load}):\n", o.rss_pods);
    println!("| process | MiB | how |\n|---|---|---|");
    println!("| skiff server, idle (node Ready, no pods) | {idle_rss:.1} | VmRSS {}s after the node was Ready |", SETTLE.as_secs());
    println!("| skiff server with {} pods | {server_rss:.1} | VmRSS {}s after the last was Running (RssAnon {server_anon:.1}); API server, store, scheduler, controllers and agent are one process |", o.rss_pods, SETTLE.as_secs());
    println!("| skiff server peak | {server_hwm:.1} | VmHWM at that moment (covers the 100-pod phases) |");
    println!("| shims: count | {} | `skiff shim` processes of this data dir |", shims.len());
    println!("| shims: VmRSS sum | {:.1} | counts the shared pages of the skiff binary once per shim |", rss.iter().sum::<f64>());
    println!("| shims: Pss sum | {:.1} | shared pages divided among the processes sharing them (smaps_rollup) |", pss.iter().sum::<f64>());
    println!("| shim: VmRSS per shim | {:.1} | median (min {:.1}, max {:.1}) |", median(&rss),
        rss.iter().copied().fold(f64::INFINITY, f64::min), rss.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    println!("| shim: RssAnon per shim | {:.2} | median (min {:.2}, max {:.2}); the shim's private heap and stacks |", median(&anon),
        anon.iter().copied().fold(f64::INFINITY, f64::min), anon.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    println!("| shim: Pss per shim | {:.2} | median |", median(&pss));
    drop(pw);
    Ok(())
}
