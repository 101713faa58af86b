//! End-to-end tests of the OCI runtime: real runc, real CNI plugins, real shims (`skiff-shim`), the busybox
//! test image. They need root, runc and Debian's containernetworking-plugins and busybox-static
//! (scripts/install-deps.sh). Each test runs in a network namespace of its own (the "node"), with its own
//! runtime root and cgroup parent, and removes everything it created, also when it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_runtime::bundle;
use skiff_runtime::cgroups::Cgroups;
use skiff_runtime::cni::NetworkConfig;
use skiff_runtime::cri::{
    ContainerConfig, ContainerFilter, ContainerState, PodSandboxConfig, RuntimeError,
    RuntimeService, SandboxState, StreamOptions, TerminalSize,
};
use skiff_runtime::image::ImageStore;
use skiff_runtime::logs::{Stream, parse_line};
use skiff_runtime::oci::{OciConfig, OciRuntime};
use skiff_runtime::shim::client::ShimCommand;
use skiff_runtime::testing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGE: &str = "busybox:test";

fn require(cond: bool, why: &str) {
    if !cond {
        panic!("this test cannot run: {why}");
    }
}

/// One test's node: its own network namespace (entered by the test thread before any other thread exists,
/// so the tokio runtime, runc, the shims and the CNI plugins all live in it), runtime root and cgroup parent.
struct Node {
    rt: Option<tokio::runtime::Runtime>,
    runtime: Option<OciRuntime>,
    config: OciConfig,
    images: Arc<ImageStore>,
    dir: Option<tempfile::TempDir>,
}

impl Node {
    fn new() -> Node {
        Self::with_root("agent")
    }

    /// A node whose runtime root is `<tempdir>/<root>` (long roots test the socket path limit).
    fn with_root(root: &str) -> Node {
        require(
            unsafe { libc::geteuid() } == 0,
            "it needs root (mounts, namespaces, cgroups)",
        );
        require(
            Path::new("/usr/lib/cni/bridge").exists(),
            "Debian's containernetworking-plugins are not installed",
        );
        require(
            Path::new(testing::BUSYBOX).exists(),
            "Debian's busybox-static is not installed",
        );
        // SAFETY: affects only this thread (and what it starts).
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        run("ip", &["link", "set", "lo", "up"]);
        let dir = tempfile::Builder::new()
            .prefix("skiff-oci-")
            .tempdir()
            .unwrap();
        let images = busybox_store(&dir.path().join("image"), &dir.path().join("agent/images"));
        let cgroup_parent = Cgroups::detect().unwrap().own_cgroup().join(format!(
            "skiff-test-{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("skiff-oci-")
        ));
        let config = oci_config(dir.path().join(root), cgroup_parent);
        let runtime = OciRuntime::new(config.clone(), images.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Node {
            rt: Some(rt),
            runtime: Some(runtime),
            config,
            images,
            dir: Some(dir),
        }
    }

    fn rt(&self) -> &OciRuntime {
        self.runtime.as_ref().unwrap()
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().unwrap().block_on(f)
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn pod(&self, name: &str) -> PodSandboxConfig {
        let uid = format!("uid-{name}-{}", std::process::id());
        PodSandboxConfig {
            name: name.into(),
            namespace: "default".into(),
            uid: uid.clone(),
            hostname: name.into(),
            log_directory: self.dir().join(format!("logs/pods/default_{name}_{uid}")),
            labels: BTreeMap::from([("io.kubernetes.pod.name".to_string(), name.to_string())]),
            annotations: BTreeMap::from([("note".to_string(), format!("pod {name}"))]),
            ..Default::default()
        }
    }

    fn run_pod(&self, name: &str) -> (String, PodSandboxConfig) {
        let pod = self.pod(name);
        let id = self.block_on(self.rt().run_pod_sandbox(&pod)).unwrap();
        (id, pod)
    }

    /// Creates and starts a container running `cmd`.
    fn run_container(&self, sandbox: &str, pod: &PodSandboxConfig, c: ContainerConfig) -> String {
        let id = self
            .block_on(self.rt().create_container(sandbox, &c, pod))
            .unwrap();
        self.block_on(self.rt().start_container(&id)).unwrap();
        id
    }

    fn wait_exited(&self, id: &str) -> skiff_runtime::cri::ContainerStatus {
        let start = Instant::now();
        loop {
            let s = self.block_on(self.rt().container_status(id)).unwrap();
            if s.state == ContainerState::Exited {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "container {id} did not exit: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An image store at `store` holding the test busybox image (built under `image_dir`).
fn busybox_store(image_dir: &Path, store: &Path) -> Arc<ImageStore> {
    let image = testing::busybox_image(image_dir).unwrap();
    let images = Arc::new(ImageStore::open(store).unwrap());
    images.import_archive(&image.oci_archive).unwrap();
    images
}

/// The runtime settings of a test node: root `root`, the test's bridge and pod CIDR, the built skiff-shim.
fn oci_config(root: PathBuf, cgroup_parent: PathBuf) -> OciConfig {
    let mut cni = NetworkConfig::new(&root, "10.244.9.0/24").unwrap();
    cni.bridge = "skiff-t0".into();
    OciConfig {
        root,
        runc: PathBuf::from("runc"),
        shim: ShimCommand {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_skiff-shim")),
            prefix: vec![],
        },
        cni,
        cgroup_parent,
    }
}

fn container(name: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: IMAGE.into(),
        spec: bundle::ContainerConfig {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        log_path: PathBuf::from(format!("{name}/0.log")),
        labels: BTreeMap::from([("io.kubernetes.container.name".to_string(), name.to_string())]),
        annotations: BTreeMap::from([(
            "io.kubernetes.container.restartCount".to_string(),
            "0".to_string(),
        )]),
        ..Default::default()
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

impl Drop for Node {
    /// Removes every sandbox (and so every container, netns, mount, cgroup), even after a failed test;
    /// then unmounts whatever is still mounted under the test dir.
    fn drop(&mut self) {
        if let (Some(rt), Some(runtime)) = (self.rt.as_ref(), self.runtime.as_ref()) {
            rt.block_on(async {
                for c in runtime
                    .list_containers(&ContainerFilter::default())
                    .await
                    .unwrap_or_default()
                {
                    let _ = runtime.remove_container(&c.id).await;
                }
                for s in runtime.list_pod_sandboxes().await.unwrap_or_default() {
                    if let Err(e) = runtime.remove_pod_sandbox(&s.id).await {
                        eprintln!("cleanup: remove sandbox {}: {e}", s.id);
                    }
                }
            });
        }
        if let Some(dir) = &self.dir {
            let mut left = mounts_under(dir.path());
            left.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in left {
                let c = std::ffi::CString::new(m).unwrap();
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if let Ok(c) = Cgroups::detect() {
            let _ = c.remove(&self.config.cgroup_parent);
            c.prune(&self.config.cgroup_parent);
        }
        self.runtime.take();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

#[test]
fn a_container_prints_to_its_cri_log_and_its_exit_code_is_recorded() {
    let node = Node::new();
    let mut pod = node.pod("printer");
    pod.sysctls = vec![("net.ipv4.ip_unprivileged_port_start".into(), "81".into())];
    let sb = node.block_on(node.rt().run_pod_sandbox(&pod)).unwrap();
    let v = node.block_on(node.rt().version()).unwrap();
    assert_eq!(v.runtime_name, "skiff");
    assert!(v.runtime_version.contains("(runc 1."), "{v:?}");
    let st = node.block_on(node.rt().pod_sandbox_status(&sb)).unwrap();
    assert_eq!(st.state, SandboxState::Ready);
    let ip = st.ip.expect("the pod has an IP");
    assert!(ip.to_string().starts_with("10.244.9."), "{ip}");

    let id = node.run_container(&sb, &pod, container("printer", &["sh", "-c", "echo hello; echo oops >&2; hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; exit 3"]));
    let s = node.wait_exited(&id);
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.reason, "");
    assert!(s.started_at.is_some() && s.finished_at.is_some());
    assert_eq!(
        s.image_ref.split('@').next(),
        Some("docker.io/library/busybox")
    );
    assert_eq!(s.log_path, pod.log_directory.join("printer/0.log"));
    let text = std::fs::read(&s.log_path).unwrap();
    let mut lines: Vec<_> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| parse_line(l).unwrap())
        .collect();
    lines.sort_by_key(|l| l.stream == Stream::Stderr);
    let got: Vec<(Stream, bool, String)> = lines
        .iter()
        .map(|l| {
            (
                l.stream,
                l.partial,
                String::from_utf8_lossy(&l.content).to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Stream::Stdout, false, "hello".to_string()),
            (Stream::Stdout, false, "printer".to_string()),
            (Stream::Stdout, false, "81".to_string()),
            (Stream::Stderr, false, "oops".to_string()),
        ]
    );
}

#[test]
fn a_memory_hog_is_oom_killed() {
    let node = Node::new();
    let (sb, pod) = node.run_pod("hog");
    let mut c = container(
        "hog",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
    );
    c.spec.resources.memory_limit_bytes = Some(32 * 1024 * 1024);
    let id = node.run_container(&sb, &pod, c);
    let s = node.wait_exited(&id);
    assert_eq!(s.exit_code, Some(137), "{s:?}");
    assert_eq!(s.reason, "OOMKilled");
}

#[test]
fn an_unknown_command_is_a_start_error_with_runcs_message() {
    let node = Node::new();
    let (sb, pod) = node.run_pod("nosuch");
    let id = node
        .block_on(
            node.rt()
                .create_container(&sb, &container("nosuch", &["nosuch"]), &pod),
        )
        .unwrap();
    let err = node.block_on(node.rt().start_container(&id)).unwrap_err();
    match &err {
        RuntimeError::StartContainer(msg) => {
            assert!(
                msg.contains(r#"exec: "nosuch": executable file not found in $PATH"#),
                "{msg}"
            )
        }
        other => panic!("expected StartContainer, got {other:?}"),
    }
    let s = node.block_on(node.rt().container_status(&id)).unwrap();
    assert_eq!(s.state, ContainerState::Exited);
    assert_eq!(s.reason, "StartError");
    assert_eq!(s.exit_code, Some(128));
    // An image that is not there is a create error.
    let mut c = container("missing", &["true"]);
    c.image = "example.com/none:1".into();
    let err = node
        .block_on(node.rt().create_container(&sb, &c, &pod))
        .unwrap_err();
    assert!(matches!(err, RuntimeError::CreateContainer(_)), "{err:?}");
}

#[test]
fn exec_sync_exec_and_attach() {
    let node = Node::new();
    let (sb, pod) = node.run_pod("exec");
    let mut c = container("cat", &["cat"]);
    c.spec.stdin = true;
    let id = node.run_container(&sb, &pod, c);

    let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let r = node
        .block_on(node.rt().exec_sync(
            &id,
            &cmd(&["sh", "-c", "echo out; echo err >&2; exit 7"]),
            Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(r.exit_code, 7);
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    let err = node
        .block_on(
            node.rt()
                .exec_sync(&id, &cmd(&["nosuch"]), Duration::from_secs(10)),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("executable file not found"),
        "{err}"
    );
    let err = node
        .block_on(
            node.rt()
                .exec_sync(&id, &cmd(&["sleep", "5"]), Duration::from_millis(300)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");

    node.block_on(async {
        // Streaming exec with pipes.
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let mut s = node
            .rt()
            .exec(
                &id,
                &cmd(&["sh", "-c", "read x; echo got $x; exit 4"]),
                &opts,
            )
            .await
            .unwrap();
        let mut stdin = s.stdin.take().unwrap();
        stdin.write_all(b"abc\n").await.unwrap();
        drop(stdin);
        let mut out = String::new();
        s.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "got abc\n");
        assert_eq!(s.exit.await.unwrap(), 4);

        // With a TTY, and a resize.
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let mut s = node
            .rt()
            .exec(&id, &cmd(&["sh", "-c", "sleep 1; stty size; tty"]), &opts)
            .await
            .unwrap();
        s.resize
            .as_ref()
            .unwrap()
            .send(TerminalSize {
                width: 100,
                height: 40,
            })
            .await
            .unwrap();
        let mut out = String::new();
        s.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert!(out.contains("40 100"), "{out:?}");
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert_eq!(s.exit.await.unwrap(), 0);

        // Attach to the container's own stdio (the shim's socket).
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let mut a = node.rt().attach(&id, &opts).await.unwrap();
        a.stdin
            .as_mut()
            .unwrap()
            .write_all(b"ping through attach\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64];
        let mut got = Vec::new();
        let mut out = a.stdout.take().unwrap();
        while !got.ends_with(b"\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "attach output ended early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"ping through attach\n");
    });
    node.block_on(node.rt().stop_container(&id, Duration::from_secs(1)))
        .unwrap();
    let log = std::fs::read_to_string(pod.log_directory.join("cat/0.log")).unwrap();
    assert!(log.contains(" stdout F ping through attach\n"), "{log}");
}

#[test]
fn two_sandboxes_get_ips_and_ping_each_other() {
    let node = Node::new();
    let (a, pod_a) = node.run_pod("ping-a");
    let (b, pod_b) = node.run_pod("ping-b");
    let ip_a = node
        .block_on(node.rt().pod_sandbox_status(&a))
        .unwrap()
        .ip
        .unwrap();
    let ip_b = node
        .block_on(node.rt().pod_sandbox_status(&b))
        .unwrap()
        .ip
        .unwrap();
    assert_ne!(ip_a, ip_b);
    let ca = node.run_container(&a, &pod_a, container("a", &["sleep", "1000"]));
    let _cb = node.run_container(&b, &pod_b, container("b", &["sleep", "1000"]));
    let cmd = vec![
        "ping".to_string(),
        "-c".into(),
        "1".into(),
        "-W".into(),
        "5".into(),
        ip_b.to_string(),
    ];
    let r = node
        .block_on(node.rt().exec_sync(&ca, &cmd, Duration::from_secs(20)))
        .unwrap();
    assert_eq!(
        r.exit_code,
        0,
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("1 packets received"),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
}

#[test]
fn stop_kills_a_process_that_ignores_sigterm_after_the_timeout() {
    let node = Node::new();
    let (sb, pod) = node.run_pod("stubborn");
    let id = node.run_container(
        &sb,
        &pod,
        container(
            "stubborn",
            &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
        ),
    );
    node.block_on(node.rt().stop_container(&id, Duration::from_secs(1)))
        .unwrap();
    let s = node.block_on(node.rt().container_status(&id)).unwrap();
    assert_eq!(s.state, ContainerState::Exited);
    assert_eq!(s.exit_code, Some(137));
    // A process that handles SIGTERM ends with it.
    let id = node.run_container(
        &sb,
        &pod,
        container(
            "polite",
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; echo trapped; while true; do sleep 0.1; done",
            ],
        ),
    );
    // The signal must come after the trap is set: pid 1 ignores signals it has no handler for.
    let start = Instant::now();
    while !std::fs::read_to_string(pod.log_directory.join("polite/0.log"))
        .unwrap_or_default()
        .contains("trapped")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the container never printed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node.block_on(node.rt().stop_container(&id, Duration::from_secs(20)))
        .unwrap();
    assert_eq!(
        node.block_on(node.rt().container_status(&id))
            .unwrap()
            .exit_code,
        Some(0)
    );
}

#[test]
fn a_new_runtime_over_the_same_root_adopts_running_containers() {
    let mut node = Node::new();
    let (sb, pod) = node.run_pod("survivor");
    let id = node.run_container(
        &sb,
        &pod,
        container(
            "survivor",
            &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
        ),
    );
    // The agent goes away: the shim and the container stay.
    node.runtime = None;
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            node.config
                .root
                .join("containers")
                .join(&id)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let shim_pid = state["shim_pid"].as_u64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{shim_pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_ne!(
        fields[1],
        std::process::id().to_string(),
        "the shim must not be the agent's child"
    );
    assert_eq!(
        fields[3],
        shim_pid.to_string(),
        "the shim leads its own session"
    );
    node.runtime = Some(OciRuntime::new(node.config.clone(), node.images.clone()).unwrap());

    let sandboxes = node.block_on(node.rt().list_pod_sandboxes()).unwrap();
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(sandboxes[0].id, sb);
    assert_eq!(sandboxes[0].state, SandboxState::Ready);
    assert_eq!(
        sandboxes[0]
            .labels
            .get("io.kubernetes.pod.name")
            .map(String::as_str),
        Some("survivor")
    );
    assert_eq!(
        sandboxes[0].annotations.get("note").map(String::as_str),
        Some("pod survivor")
    );
    let filter = ContainerFilter {
        state: Some(ContainerState::Running),
        labels: BTreeMap::from([(
            "io.kubernetes.container.name".to_string(),
            "survivor".to_string(),
        )]),
        ..Default::default()
    };
    let running = node.block_on(node.rt().list_containers(&filter)).unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].id, id);
    assert_eq!(
        running[0]
            .annotations
            .get("io.kubernetes.container.restartCount")
            .map(String::as_str),
        Some("0")
    );
    let stats = node.block_on(node.rt().container_stats(&id)).unwrap();
    assert!(stats.memory_usage_bytes > 0, "{stats:?}");
    assert!(stats.cpu_usage_nanos > 0, "{stats:?}");

    node.block_on(node.rt().stop_container(&id, Duration::from_secs(2)))
        .unwrap();
    let s = node.block_on(node.rt().container_status(&id)).unwrap();
    assert_eq!(s.state, ContainerState::Exited);
    let start = Instant::now();
    while Path::new(&format!("/proc/{shim_pid}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the shim did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn port_forward_reaches_a_server_in_the_pod() {
    let node = Node::new();
    let (sb, pod) = node.run_pod("web");
    let _id = node.run_container(
        &sb,
        &pod,
        container("web", &["sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"]),
    );
    let body = node.block_on(async {
        let start = Instant::now();
        loop {
            match node.rt().port_forward(&sb, 8080).await {
                Ok(mut s) => {
                    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                        .await
                        .unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.unwrap();
                    break out;
                }
                Err(e) => {
                    assert!(start.elapsed() < Duration::from_secs(10), "{e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    assert!(body.contains("hello-from-pod"), "{body}");
}

#[test]
fn removing_a_sandbox_leaves_nothing_behind() {
    let node = Node::new();
    let (sb, pod) = node.run_pod("tidy");
    let id = node.run_container(&sb, &pod, container("tidy", &["sleep", "1000"]));
    let root = node.config.root.clone();
    let sandbox_dir = root.join("sandboxes").join(&sb);
    let container_dir = root.join("containers").join(&id);
    let netns = sandbox_dir.join("ns/net");
    assert!(netns.exists());
    let veths = || run("ip", &["-o", "link", "show", "type", "veth"]);
    assert_eq!(veths().lines().count(), 1, "{}", veths());
    let cgroups = Cgroups::detect().unwrap();
    let pod_cgroup = node.config.cgroup_parent.join(format!("pod{}", pod.uid));
    assert!(!cgroups.exists_anywhere(&pod_cgroup.join(&id)).is_empty());
    assert!(!mounts_under(node.dir()).is_empty());
    assert!(pod.log_directory.join("tidy/0.log").exists());

    node.block_on(node.rt().stop_pod_sandbox(&sb)).unwrap();
    assert_eq!(
        node.block_on(node.rt().pod_sandbox_status(&sb))
            .unwrap()
            .state,
        SandboxState::NotReady
    );
    assert_eq!(
        node.block_on(node.rt().container_status(&id))
            .unwrap()
            .state,
        ContainerState::Exited
    );
    assert_eq!(
        veths().lines().count(),
        0,
        "CNI DEL left a veth: {}",
        veths()
    );
    node.block_on(node.rt().remove_pod_sandbox(&sb)).unwrap();
    node.block_on(node.rt().remove_pod_sandbox(&sb)).unwrap(); // idempotent

    assert!(!sandbox_dir.exists());
    assert!(!container_dir.exists());
    assert!(!pod.log_directory.exists());
    assert_eq!(mounts_under(node.dir()), Vec::<String>::new());
    assert_eq!(cgroups.exists_anywhere(&pod_cgroup), Vec::<PathBuf>::new());
    assert_eq!(
        cgroups.exists_anywhere(&node.config.cgroup_parent),
        Vec::<PathBuf>::new()
    );
    let runc_state = run(
        "runc",
        &["--root", root.join("runc").to_str().unwrap(), "list", "-q"],
    );
    assert_eq!(runc_state.trim(), "");
    assert!(
        node.block_on(node.rt().list_pod_sandboxes())
            .unwrap()
            .is_empty()
    );
    assert!(
        node.block_on(node.rt().list_containers(&ContainerFilter::default()))
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        node.block_on(node.rt().pod_sandbox_status(&sb)),
        Err(RuntimeError::NotFound(_))
    ));
}

#[test]
fn a_tty_container_is_attached_and_resized() {
    // A root long enough that the shim's socket paths exceed the 108-byte limit of unix socket addresses.
    let node = Node::with_root(&format!("agent-{}", "x".repeat(60)));
    assert!(
        node.config
            .root
            .join("containers")
            .join("0".repeat(32))
            .join("attach.sock")
            .as_os_str()
            .len()
            > 108
    );
    let (sb, pod) = node.run_pod("tty");
    let mut c = container(
        "tty",
        &["sh", "-c", "while true; do stty size; sleep 0.2; done"],
    );
    c.spec.tty = true;
    c.spec.stdin = true;
    let id = node.run_container(&sb, &pod, c);
    let seen = node.block_on(async {
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: true,
        };
        let mut a = node.rt().attach(&id, &opts).await.unwrap();
        assert!(a.stderr.is_none(), "a TTY merges stderr into stdout");
        a.resize
            .as_ref()
            .unwrap()
            .send(TerminalSize {
                width: 120,
                height: 50,
            })
            .await
            .unwrap();
        let mut out = a.stdout.take().unwrap();
        let mut seen = String::new();
        let mut buf = vec![0u8; 256];
        while !seen.contains("50 120") {
            let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
                .await
                .expect("no resize seen")
                .unwrap();
            assert!(n > 0, "attach output ended: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen
    });
    assert!(seen.contains("50 120"));
    node.block_on(node.rt().stop_container(&id, Duration::from_secs(1)))
        .unwrap();
    let log = std::fs::read_to_string(pod.log_directory.join("tty/0.log")).unwrap();
    assert!(log.contains(" stdout F 50 120\n"), "{log}");
}

#[test]
fn a_host_network_pod_uses_the_nodes_network() {
    let node = Node::new();
    let mut pod = node.pod("hostnet");
    pod.host_network = true;
    let sb = node.block_on(node.rt().run_pod_sandbox(&pod)).unwrap();
    let st = node.block_on(node.rt().pod_sandbox_status(&sb)).unwrap();
    assert!(st.host_network);
    assert_eq!(st.ip, None);
    // The node here is the test's network namespace: a dummy-free marker is its loopback-only link list.
    let node_links = run("ip", &["-o", "link"]).lines().count();
    let id = node.run_container(
        &sb,
        &pod,
        container("hostnet", &["sh", "-c", "ip -o link | wc -l"]),
    );
    let s = node.wait_exited(&id);
    assert_eq!(s.exit_code, Some(0));
    let log = std::fs::read_to_string(&s.log_path).unwrap();
    let line = parse_line(log.lines().next().unwrap().as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&line.content).trim(),
        node_links.to_string()
    );
}

/// The "agent" that `kill_9_of_the_agent_leaves_containers_running` starts and kills: it opens a runtime over
/// the root it is given, runs a pod with one container, reports the ids and waits to be killed.
#[test]
#[ignore = "a helper process: run only by kill_9_of_the_agent_leaves_containers_running, which kills it"]
fn agent_process_for_the_kill_9_test() {
    let dir = PathBuf::from(
        std::env::var("SKIFF_TEST_AGENT_DIR")
            .expect("run by kill_9_of_the_agent_leaves_containers_running"),
    );
    let cgroup_parent = PathBuf::from(std::env::var("SKIFF_TEST_AGENT_CGROUP").unwrap());
    let images = busybox_store(&dir.join("child-image"), &dir.join("child-images"));
    let runtime = OciRuntime::new(oci_config(dir.join("agent"), cgroup_parent), images).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pod = PodSandboxConfig {
        name: "killed-agent".into(),
        namespace: "default".into(),
        uid: format!("uid-killed-agent-{}", std::process::id()),
        hostname: "killed-agent".into(),
        log_directory: dir.join("logs/pods/default_killed-agent"),
        ..Default::default()
    };
    let sb = rt.block_on(runtime.run_pod_sandbox(&pod)).unwrap();
    let c = container(
        "survivor",
        &["sh", "-c", "while true; do echo alive; sleep 0.2; done"],
    );
    let id = rt
        .block_on(runtime.create_container(&sb, &c, &pod))
        .unwrap();
    rt.block_on(runtime.start_container(&id)).unwrap();
    // Straight to fd 1: libtest captures `println!` even in a child run.
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(format!("READY {sb} {id}\n").as_bytes())
        .unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn kill_9_of_the_agent_leaves_containers_running() {
    use std::io::BufRead;
    let node = Node::new();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "agent_process_for_the_kill_9_test",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SKIFF_TEST_AGENT_DIR", node.dir())
        .env("SKIFF_TEST_AGENT_CGROUP", &node.config.cgroup_parent)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut agent = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test ... " first, on the same line.
            if let Some((_, rest)) = line.split_once("READY ") {
                let v: Vec<String> = rest.split(' ').map(str::to_string).collect();
                let _ = tx.send((v[0].clone(), v[1].clone()));
                break;
            }
        }
    });
    let (sb, id) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the agent process did not start its pod");
    // kill -9 of the agent.
    agent.0.kill().unwrap();
    let status = agent.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    std::thread::sleep(Duration::from_millis(500));

    // The runtime of the restarted agent sees the pod still running, and the container still logging.
    let s = node.block_on(node.rt().container_status(&id)).unwrap();
    assert_eq!(s.state, ContainerState::Running, "{s:?}");
    assert_eq!(s.sandbox_id, sb);
    let lines_before = std::fs::read_to_string(&s.log_path)
        .unwrap()
        .lines()
        .count();
    std::thread::sleep(Duration::from_millis(600));
    let lines_after = std::fs::read_to_string(&s.log_path)
        .unwrap()
        .lines()
        .count();
    assert!(
        lines_after > lines_before,
        "the container stopped logging after the agent died"
    );
    assert_eq!(
        node.block_on(node.rt().pod_sandbox_status(&sb))
            .unwrap()
            .state,
        SandboxState::Ready
    );
    node.block_on(node.rt().stop_container(&id, Duration::from_secs(1)))
        .unwrap();
    assert_eq!(
        node.block_on(node.rt().container_status(&id))
            .unwrap()
            .exit_code,
        Some(137)
    );
    node.block_on(node.rt().remove_pod_sandbox(&sb)).unwrap();
    assert!(!node.config.root.join("sandboxes").join(&sb).exists());
}

#[test]
fn a_host_port_reaches_the_pod_through_portmap() {
    use std::io::{Read, Write};
    let node = Node::new();
    let mut pod = node.pod("hostport");
    pod.port_mappings = vec![skiff_runtime::cni::PortMapping {
        host_port: 18080,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: None,
    }];
    let sb = node.block_on(node.rt().run_pod_sandbox(&pod)).unwrap();
    node.run_container(
        &sb,
        &pod,
        container("web", &["sh", "-c", "mkdir -p /www && echo via-host-port > /www/index.html && exec httpd -f -p 8080 -h /www"]),
    );
    // The node's address on the pod bridge; the test thread is in the node's network namespace.
    let start = Instant::now();
    let body = loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &([10, 244, 9, 1], 18080).into(),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(b) if b.contains("via-host-port") => break b,
            other => {
                assert!(start.elapsed() < Duration::from_secs(10), "{other:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(body.starts_with("HTTP/1."), "{body}");
}

#[test]
fn sandboxes_are_created_and_removed_concurrently() {
    let node = Node::new();
    let pods: Vec<PodSandboxConfig> = (0..4).map(|i| node.pod(&format!("many-{i}"))).collect();
    let ids: Vec<String> = node.block_on(async {
        let rt = node.rt();
        let (a, b, c, d) = tokio::join!(
            rt.run_pod_sandbox(&pods[0]),
            rt.run_pod_sandbox(&pods[1]),
            rt.run_pod_sandbox(&pods[2]),
            rt.run_pod_sandbox(&pods[3]),
        );
        vec![a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()]
    });
    let mut ips: Vec<_> = ids
        .iter()
        .map(|id| {
            node.block_on(node.rt().pod_sandbox_status(id))
                .unwrap()
                .ip
                .unwrap()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "{ips:?}");
    node.block_on(async {
        let rt = node.rt();
        let (a, b, c, d) = tokio::join!(
            rt.remove_pod_sandbox(&ids[0]),
            rt.remove_pod_sandbox(&ids[1]),
            rt.remove_pod_sandbox(&ids[2]),
            rt.remove_pod_sandbox(&ids[3]),
        );
        for r in [a, b, c, d] {
            r.unwrap();
        }
    });
    let cgroups = Cgroups::detect().unwrap();
    assert_eq!(
        cgroups.exists_anywhere(&node.config.cgroup_parent),
        Vec::<PathBuf>::new()
    );
    assert_eq!(mounts_under(node.dir()), Vec::<String>::new());
    assert_eq!(
        run("ip", &["-o", "link", "show", "type", "veth"]).trim(),
        ""
    );
}
