//! The end-to-end harness: starts the built `skiff server` as a child process in a fresh data dir on a
//! free port, runs the real kubectl against it, and stops and removes everything when dropped.

#![allow(dead_code)]

pub mod lab;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The kubectl that the dispatcher picks for a server reporting minor 33.
pub const KUBECTL: &str = "kubectl";
/// kubectl 1.31, installed beside the dispatcher.
pub const KUBECTL_131: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.31";
/// kubectl 1.32, installed beside the dispatcher.
pub const KUBECTL_132: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

/// Fails with the reason when the environment cannot run e2e tests (never a silent skip).
pub fn require_environment() {
    let kubectl = Command::new(KUBECTL).arg("version").arg("--client").output();
    assert!(
        kubectl.is_ok_and(|o| o.status.success()),
        "e2e tests need kubectl on PATH (the Google Cloud SDK kubectl dispatcher); install it or run scripts/test.sh"
    );
}

/// Fails with the reason when this machine cannot run real containers (never a silent skip).
pub fn require_node_environment() {
    require_environment();
    assert!(unsafe_is_root(), "node e2e tests run real containers and need root (CI runs them as root)");
    for (tool, package) in [("runc", "runc"), ("ip", "iproute2"), ("busybox", "busybox-static")] {
        assert!(
            Command::new(tool).arg("--help").output().is_ok(),
            "node e2e tests need {tool}: apt-get install {package} (scripts/install-deps.sh does)"
        );
    }
    assert!(Path::new("/usr/lib/cni/bridge").exists(), "node e2e tests need the CNI plugins: apt-get install containernetworking-plugins");
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `skiff server`.
pub struct Server {
    pub child: Child,
    /// Flags every start of this server gets (control plane only, or the local agent's settings).
    base: Vec<String>,
    /// Whether the server runs its local agent (then dropping it also removes its pods with `skiff killall`).
    pub agent: bool,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_configured(vec!["--disable-agent".into()], false, extra)
    }

    /// A server with its local node agent: real runc containers and CNI networking, so it needs root and
    /// the packages of scripts/install-deps.sh. The busybox test image (`docker.io/library/busybox:test`,
    /// from Debian's busybox-static) is imported before start. Bridge, pod CIDR and kubelet port are
    /// unique to this server so that two can run at once.
    pub fn start_node() -> Server {
        Self::start_node_with(&[])
    }

    pub fn start_node_with(extra: &[&str]) -> Server {
        Self::start_node_with_images(extra, &[])
    }

    /// [`Server::start_node_with`], with the busybox test image also imported under each name in `images`
    /// (e.g. `busybox:rolled`, a second image to roll a Deployment to) before the server starts.
    pub fn start_node_with_images(extra: &[&str], images: &[&str]) -> Server {
        require_node_environment();
        let dir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir().unwrap();
        for name in images {
            import_test_image(dir.path(), name);
        }
        let port = free_port();
        let kubelet_port = free_port();
        let base = vec![
            "--node-name".to_string(),
            format!("node-{port}"),
            "--kubelet-port".into(),
            kubelet_port.to_string(),
            "--pod-bridge".into(),
            format!("sk{port}"),
        ];
        let mut base = base;
        base.extend(network_flags(port));
        base.extend(["--nft-table".to_string(), format!("sk{port}")]);
        Self::start_in(dir, port, base, true, extra)
    }

    /// The name of this server's own node (servers from [`Server::start_node`]).
    pub fn node_name(&self) -> String {
        format!("node-{}", self.port)
    }

    /// The join token agents need (`skiff token`).
    pub fn token(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff")).arg("token").arg("--data-dir").arg(self.dir.path()).output().unwrap();
        assert!(out.status.success(), "skiff token failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn start_configured(base: Vec<String>, agent: bool, extra: &[&str]) -> Server {
        require_environment();
        let dir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir().unwrap();
        let port = free_port();
        // Without a local agent there is no proxy: the default Service range stays; only the DNS listener
        // needs a port of its own.
        let mut base = base;
        base.extend(["--cluster-dns-port".to_string(), free_port().to_string()]);
        Self::start_in(dir, port, base, agent, extra)
    }



    /// A control-plane-only server on `port` with exactly `base` (plus the harness's data dir and port).
    pub fn start_on(port: u16, base: Vec<String>) -> Server {
        require_environment();
        let dir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir().unwrap();
        Self::start_in(dir, port, base, false, &[])
    }

    fn start_in(dir: tempfile::TempDir, port: u16, base: Vec<String>, agent: bool, extra: &[&str]) -> Server {
        if agent {
            let image = skiff_runtime::testing::busybox_image(&dir.path().join("test-image")).expect("the busybox test image builds");
            let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .args(["image", "import", "--data-dir"])
                .arg(dir.path())
                .arg(&image.docker_archive)
                .output()
                .unwrap();
            assert!(out.status.success(), "skiff image import failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let mut server = Server {
            child: spawn_server(dir.path(), port, &args),
            base,
            agent,
            kubeconfig: dir.path().join("kubeconfig.yaml"),
            log: dir.path().join("server.log"),
            dir,
            port,
        };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("skiff server exited with {status}: {}", self.log_text());
            }
            if self.kubeconfig.exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "skiff server did not become ready: {}", self.log_text());
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        unsafe_kill(self.child.id(), "KILL");
        let _ = self.child.wait();
    }

    pub fn restart(&mut self, extra: &[&str]) {
        let mut args: Vec<&str> = self.base.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        self.child = spawn_server(self.dir.path(), self.port, &args);
        self.wait_ready();
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(KUBECTL, args, None)
    }

    pub fn kubectl_with(&self, binary: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let cache = self.dir.path().join(format!("kube-cache-{}", binary.replace('/', "_")));
        let mut cmd = Command::new(binary);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(&cache).args(args);
        cmd.env_remove("KUBECONFIG").stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and asserts success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        self.expect_success(args, None)
    }

    /// Runs kubectl with stdin and asserts success; returns stdout.
    #[track_caller]
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.expect_success(args, Some(stdin))
    }

    #[track_caller]
    fn expect_success(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_with(KUBECTL, args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, asserts failure, returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        self.expect_failure(args, None)
    }

    /// Runs kubectl with stdin, asserts failure, returns stderr.
    #[track_caller]
    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.expect_failure(args, Some(stdin))
    }

    #[track_caller]
    fn expect_failure(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_with(KUBECTL, args, stdin);
        assert!(!out.status.success(), "kubectl {args:?} should have failed but printed: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    /// `kubectl get -o json`, parsed.
    #[track_caller]
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// `curl` with the admin client certificate, for requests kubectl cannot make (malformed bodies).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let tls = self.dir.path().join("server").join("tls");
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(tls.join("ca.crt"))
            .arg("--cert")
            .arg(tls.join("client-admin.crt"))
            .arg("--key")
            .arg(tls.join("client-admin.key"))
            .args(args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

/// Pod, Service and DNS settings unique to the server on `port`, so that servers running at once on this
/// host (their proxies' nftables rules and DNS listeners all live in the same network namespace) never
/// overlap: pods in 10.N.0.0/17, Services in 10.N.128.0/17, the DNS listener on a free port.
pub fn network_flags(port: u16) -> Vec<String> {
    let n = 100 + port % 150;
    vec![
        "--cluster-cidr".into(),
        format!("10.{n}.0.0/17"),
        "--service-cidr".into(),
        format!("10.{n}.128.0/17"),
        "--cluster-dns".into(),
        format!("10.{n}.128.10"),
        "--cluster-dns-port".into(),
        free_port().to_string(),
    ]
}

fn spawn_server(dir: &Path, port: u16, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
    let mut defaults = Vec::new();
    for (flag, value) in [("--bind-address", "127.0.0.1"), ("--node-ip", "127.0.0.1")] {
        if !extra.contains(&flag) {
            defaults.extend([flag, value]);
        }
    }
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("server")
        .arg("--data-dir")
        .arg(dir)
        .arg("--https-listen-port")
        .arg(port.to_string())
        .args(defaults)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("skiff binary starts")
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe_kill(self.child.id(), "KILL");
            let _ = self.child.wait();
        }
        if self.agent {
            // Containers outlive the agent by design: remove them, their netns, mounts and cgroups.
            let out = Command::new(env!("CARGO_BIN_EXE_skiff")).arg("killall").arg("--data-dir").arg(self.dir.path()).output();
            if let Ok(o) = out
                && !o.status.success()
            {
                eprintln!("skiff killall failed: {}", String::from_utf8_lossy(&o.stderr));
            }
            let bridge = self.base.iter().skip_while(|a| *a != "--pod-bridge").nth(1).cloned().unwrap_or_default();
            remove_node_leftovers(self.dir.path(), &bridge);
        }
    }
}

/// Imports the busybox test image under `name` into the node image store under `data_dir` (before the
/// server or agent using it starts).
pub fn import_test_image(data_dir: &Path, name: &str) {
    let build = data_dir.join(format!("test-image-{}", name.replace(['/', ':'], "_")));
    let image = skiff_runtime::testing::build_busybox_image(&build, name).expect("the busybox test image builds");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff")).args(["image", "import", "--data-dir"]).arg(data_dir).arg(&image.docker_archive).output().unwrap();
    assert!(out.status.success(), "skiff image import of {name} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A second node: `skiff agent` joined to a [`Server`] with its own data dir, kubelet port and pod bridge
/// (the busybox test image imported first). Dropping it kills the agent and runs `skiff killall` on its
/// data dir, which removes the pods it left running.
pub struct Agent {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub node_name: String,
    pub log: PathBuf,
    /// Its pod bridge and nftables table in the host's network namespace (`sk<kubelet port>`); None for
    /// an agent in a network namespace of its own, whose bridge and table go with the namespace.
    pub bridge: Option<String>,
}

impl Agent {
    pub fn start(server: &Server, node_name: &str, extra: &[&str]) -> Agent {
        let kubelet_port = free_port();
        let bridge = format!("sk{kubelet_port}");
        let mut args: Vec<String> = ["--node-ip", "127.0.0.1", "--kubelet-port", &kubelet_port.to_string(), "--pod-bridge", &bridge, "--nft-table", &bridge]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut agent = Self::start_as(&server.url(""), &server.token(), node_name, None, &args);
        agent.bridge = Some(bridge);
        agent
    }

    /// Starts `skiff agent` joining `server_url` with `args`, inside the network namespace `netns` (entered
    /// with `nsenter --net`, so the host's mounts stay shared) when given.
    pub fn start_as(server_url: &str, token: &str, node_name: &str, netns: Option<&str>, args: &[String]) -> Agent {
        require_node_environment();
        let dir = tempfile::Builder::new().prefix("skiff-e2e-agent-").tempdir().unwrap();
        import_test_image(dir.path(), skiff_runtime::testing::BUSYBOX_TEST_IMAGE);
        let log = dir.path().join("agent.log");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(env!("CARGO_BIN_EXE_skiff"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_skiff")),
        };
        let child = cmd
            .arg("agent")
            .arg("--server")
            .arg(server_url)
            .arg("--token")
            .arg(token)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--node-name", node_name])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("skiff agent starts");
        Agent { child, dir, node_name: node_name.to_string(), log, bridge: None }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the agent with SIGKILL (its containers keep running until the guard is dropped).
    pub fn kill9(&mut self) {
        unsafe_kill(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe_kill(self.child.id(), "KILL");
            let _ = self.child.wait();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_skiff")).arg("killall").arg("--data-dir").arg(self.dir.path()).output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!("skiff killall of agent {} failed: {}", self.node_name, String::from_utf8_lossy(&o.stderr));
        }
        remove_node_leftovers(self.dir.path(), self.bridge.as_deref().unwrap_or(""));
    }
}

/// An `etcd` (Debian's etcd-server) on free loopback ports in its own folder, killed when dropped.
pub struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    pub endpoint: String,
}

impl Etcd {
    pub fn start() -> Etcd {
        assert!(
            Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success()),
            "the etcd e2e test needs etcd on PATH: apt-get install etcd-server (scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new().prefix("skiff-e2e-etcd-").tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let child = Command::new("etcd")
            .arg("--data-dir").arg(dir.path().join("data"))
            .arg("--listen-client-urls").arg(&endpoint)
            .arg("--advertise-client-urls").arg(&endpoint)
            .arg("--listen-peer-urls").arg(format!("http://127.0.0.1:{peer}"))
            .arg("--initial-advertise-peer-urls").arg(format!("http://127.0.0.1:{peer}"))
            .arg("--initial-cluster").arg(format!("default=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let etcd = Etcd { child, _dir: dir, endpoint };
        eventually("etcd to answer", Duration::from_secs(30), || {
            Command::new("curl").args(["-sf", &format!("{}/health", etcd.endpoint)]).output().ok()
                .filter(|o| o.status.success()).map(|_| ())
        });
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns Some or the deadline passes.
#[track_caller]
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A free TCP port on 127.0.0.1 (the local end of `kubectl port-forward`).
pub fn free_local_port() -> u16 {
    free_port()
}

impl Server {
    /// A `kubectl` command against this server, not started: for processes that run beside the test
    /// (`logs -f`, `port-forward`) or need their own stdio.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join(format!("kube-cache-{KUBECTL}")))
            .args(args)
            .env_remove("KUBECONFIG");
        cmd
    }

    /// The same kubectl command as one shell line (for `script -qec LINE /dev/null`, which gives it a TTY).
    pub fn kubectl_shell_line(&self, args: &[&str]) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut words = vec![KUBECTL.to_string(), "--kubeconfig".into(), quote(&self.kubeconfig.to_string_lossy())];
        words.push("--cache-dir".into());
        words.push(quote(&self.dir.path().join(format!("kube-cache-{KUBECTL}")).to_string_lossy()));
        words.extend(args.iter().map(|a| quote(a)));
        words.join(" ")
    }

    /// The events about object `name` (`kubectl get events --field-selector involvedObject.name=NAME`).
    pub fn events_of(&self, name: &str) -> Vec<serde_json::Value> {
        let v = self.get_json(&["events", "--field-selector", &format!("involvedObject.name={name}")]);
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

/// What `skiff killall` should have removed, removed again if it did not (a failed or crashed run must not
/// leave anything behind for the next): processes started from `data_dir` (shims, whose arguments name their
/// bundle there) or running in a root file system under it (containers), every mount under it (root file
/// systems, namespace files, emptyDirs; deepest first and detached, so that removing the directory afterwards
/// never reaches through a mount), the pod `bridge`, and the pods' cgroups (with any process left in them).
/// Prints what it had to remove.
pub fn remove_node_leftovers(data_dir: &Path, bridge: &str) {
    let dir = data_dir.to_string_lossy().to_string();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).to_string()).collect();
        let started_here = args.iter().any(|a| a.starts_with(&dir)) && args.iter().any(|a| a == "shim");
        let root = std::fs::read_link(entry.path().join("root")).unwrap_or_default();
        if started_here || root.starts_with(data_dir) {
            eprintln!("e2e cleanup: killing leftover process {pid} ({})", args.join(" "));
            unsafe_kill(pid.parse().unwrap(), "KILL");
        }
    }
    let pod_cgroups = pod_cgroups_of(data_dir);
    for cgroup in &pod_cgroups {
        for procs in walk_dirs(cgroup, 4).iter().map(|d| d.join("cgroup.procs")) {
            for pid in std::fs::read_to_string(&procs).unwrap_or_default().lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
                eprintln!("e2e cleanup: killing leftover container process {pid} in {}", procs.display());
                unsafe_kill(pid, "KILL");
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| Path::new(m).starts_with(data_dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in &mounts {
        eprintln!("e2e cleanup: unmounting leftover {m}");
        let _ = Command::new("umount").arg("-l").arg(m).stderr(Stdio::null()).status();
    }
    // The proxy's table carries the bridge's name in these tests; a clean shutdown removes it, a kill does not.
    let table = Command::new("nft").args(["list", "table", "ip", bridge]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !bridge.is_empty() && table.is_ok_and(|s| s.success()) {
        eprintln!("e2e cleanup: deleting leftover nftables table ip {bridge}");
        let _ = Command::new("nft").args(["delete", "table", "ip", bridge]).status();
    }
    let shown = Command::new("ip").args(["link", "show", bridge]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !bridge.is_empty() && shown.is_ok_and(|s| s.success()) {
        eprintln!("e2e cleanup: deleting leftover bridge {bridge}");
        let _ = Command::new("ip").args(["link", "delete", bridge]).status();
    }
    for cgroup in &pod_cgroups {
        let mut dirs = walk_dirs(cgroup, 4);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        eprintln!("e2e cleanup: removing leftover cgroup {}", cgroup.display());
        for d in dirs {
            // A killed process leaves its cgroup a moment later.
            for _ in 0..20 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
        }
    }
}

/// The cgroups (`.../kubepods/pod<uid>` in every hierarchy under /sys/fs/cgroup) of the pods whose
/// directories are under `data_dir/agent/pods`.
fn pod_cgroups_of(data_dir: &Path) -> Vec<PathBuf> {
    let uids: Vec<String> = std::fs::read_dir(data_dir.join("agent").join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| format!("pod{}", e.file_name().to_string_lossy()))
        .collect();
    if uids.is_empty() {
        return Vec::new();
    }
    walk_dirs(Path::new("/sys/fs/cgroup"), 6)
        .into_iter()
        .filter(|d| d.file_name().is_some_and(|n| uids.iter().any(|u| n.to_string_lossy() == *u)))
        .collect()
}

/// `dir` and the directories under it, down to `depth` levels (symbolic links not followed).
fn walk_dirs(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if depth > 0 {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk_dirs(&e.path(), depth - 1));
            }
        }
    }
    out
}
