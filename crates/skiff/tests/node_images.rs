//! End-to-end: the node agent's images, configuration, recovery and second nodes. Real `skiff server` (and
//! `skiff agent`) processes with runc and CNI, Debian's docker-registry on 127.0.0.1 for pulls, and the real
//! kubectl. Needs root, like node.rs.

mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{Agent, Server, eventually};
use serde_json::Value;
use skiff_runtime::testing::{ManifestFormat, TestRegistry, busybox_image};

/// A pod of one busybox container that runs `script` under `sh -c` (and exits at once on SIGTERM).
fn pod(name: &str, image: &str, policy: &str, script: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "{image}"
    imagePullPolicy: {policy}
    command: ["sh", "-c", "trap 'exit 0' TERM; {script}; while true; do sleep 1; done"]
{extra_spec}"#
    )
}

/// Polls pod `pod` until `check` accepts it; on time-out fails with the pod's status and events.
#[track_caller]
fn wait_pod<T>(s: &Server, pod: &str, what: &str, timeout: Duration, mut check: impl FnMut(&Value) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let p = s.get_json(&["pod", pod]);
        if let Some(v) = check(&p) {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for pod {pod}: {what}\nstatus: {}\nevents: {:?}", p["status"], events(s, pod));
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[track_caller]
fn wait_running(s: &Server, pod: &str) -> Value {
    wait_pod(s, pod, "Running and Ready", Duration::from_secs(90), |p| {
        (p["status"]["phase"] == "Running"
            && p["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        .then(|| p.clone())
    })
}

/// Waits until the first container of `pod` waits with one of `reasons`; returns (reason, message).
#[track_caller]
fn wait_waiting(s: &Server, pod: &str, reasons: &[&str], timeout: Duration) -> (String, String) {
    wait_pod(s, pod, &format!("waiting with {reasons:?}"), timeout, |p| {
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        let reason = w["reason"].as_str()?;
        reasons.contains(&reason).then(|| (reason.to_string(), w["message"].as_str().unwrap_or("").to_string()))
    })
}

/// `kubectl get pod --watch -o json` running in the background, so that short-lived states are seen too.
struct PodWatch {
    child: std::process::Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl PodWatch {
    fn start(s: &Server, pod: &str) -> PodWatch {
        let dir = tempfile::Builder::new().prefix("skiff-e2e-watch-").tempdir().unwrap();
        let out = dir.path().join("watch.json");
        let child = Command::new(e2e::KUBECTL)
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["get", "pod", pod, "--watch", "-o", "json"])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs");
        let watch = PodWatch { child, out, _dir: dir };
        // The pod as listed comes first; the watch then starts from its resourceVersion.
        eventually("the pod watch to start", Duration::from_secs(20), || {
            std::fs::metadata(&watch.out).is_ok_and(|m| m.len() > 0).then_some(())
        });
        watch
    }

    /// The waiting reasons of the first container, in the order the watch saw them (repeats folded).
    fn waiting_reasons(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut reasons: Vec<String> = Vec::new();
        for pod in serde_json::Deserializer::from_str(&text).into_iter::<Value>().map_while(Result::ok) {
            if let Some(r) = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str()
                && reasons.last().map(String::as_str) != Some(r)
            {
                reasons.push(r.to_string());
            }
        }
        reasons
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The waiting state (reason, message) of a pod's first container, if it is waiting.
fn waiting(s: &Server, pod: &str) -> Option<(String, String)> {
    let p = s.get_json(&["pod", pod]);
    let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
    Some((w["reason"].as_str()?.to_string(), w["message"].as_str().unwrap_or("").to_string()))
}

/// The events about `pod`: (reason, message).
fn events(s: &Server, pod: &str) -> Vec<(String, String)> {
    let list = s.get_json(&["events"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["kind"] == "Pod" && e["involvedObject"]["name"] == pod)
        .map(|e| (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// The busybox test image pushed to `registry` as `dest` (optionally logging in); returns the reference.
fn push_busybox(registry: &TestRegistry, dest: &str, credentials: Option<(&str, &str)>) -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new().prefix("skiff-e2e-push-").tempdir().unwrap();
    let image = busybox_image(dir.path()).expect("the busybox test image builds");
    let reference = registry.push_with_credentials(&image, dest, ManifestFormat::Oci, credentials).expect("skopeo pushes the test image");
    (dir, reference)
}

#[test]
fn a_pod_pulls_its_image_from_a_registry_on_loopback() {
    let s = Server::start_node();
    let registry = TestRegistry::start().expect("docker-registry starts");
    let (_image, reference) = push_busybox(&registry, "busybox:1", None);
    assert!(reference.starts_with("127.0.0.1:"), "{reference}");

    s.ok_stdin(&["apply", "-f", "-"], &pod("pulled", &reference, "Always", "echo pulled from the registry", ""));
    let p = wait_running(&s, "pulled");
    let status = &p["status"]["containerStatuses"][0];
    assert!(status["image"].as_str().is_some_and(|i| i.ends_with(&reference)), "{status}");
    assert!(status["imageID"].as_str().is_some_and(|id| id.contains("sha256:")), "imageID names the digest: {status}");

    let events = events(&s, "pulled");
    let pulling = events.iter().find(|(r, _)| r == "Pulling").unwrap_or_else(|| panic!("a Pulling event: {events:?}"));
    assert!(pulling.1.contains(&reference), "{pulling:?}");
    let pulled = events.iter().find(|(r, _)| r == "Pulled").unwrap_or_else(|| panic!("a Pulled event: {events:?}"));
    assert!(pulled.1.contains("Successfully pulled image") && pulled.1.contains(&reference), "{pulled:?}");
    assert!(registry.log().contains("/v2/busybox/manifests/1"), "the registry served the manifest: {}", registry.log());

    let logs = eventually("the pulled image's output", Duration::from_secs(20), || {
        let out = s.ok(&["logs", "pulled"]);
        out.contains("pulled from the registry").then_some(out)
    });
    assert_eq!(logs.trim(), "pulled from the registry");
}

#[test]
fn a_missing_image_backs_off_with_the_registry_message_and_disturbs_no_one() {
    let s = Server::start_node();
    let registry = TestRegistry::start().expect("docker-registry starts");
    s.ok_stdin(&["apply", "-f", "-"], &pod("steady", "busybox:test", "Never", "echo steady", ""));
    let steady = wait_running(&s, "steady");
    let steady_id = steady["status"]["containerStatuses"][0]["containerID"].clone();

    let missing = format!("{}/nothere:1", registry.host());
    // Held by a scheduling gate until the watch runs, so that it sees every status from the first.
    let missing_pod = pod("missing", &missing, "IfNotPresent", "true", "  schedulingGates: [{name: e2e.skiff.dev/hold}]\n");
    s.ok_stdin(&["create", "-f", "-"], &missing_pod);
    let watch = PodWatch::start(&s, "missing");
    s.ok(&["patch", "pod", "missing", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/schedulingGates"}]"#]);
    let (_, backoff) = wait_waiting(&s, "missing", &["ImagePullBackOff"], Duration::from_secs(90));
    // ErrImagePull shows first (briefly: the next sync already backs off), as the watch saw it.
    let seen = eventually("the watch to show ErrImagePull then ImagePullBackOff", Duration::from_secs(20), || {
        let seen = watch.waiting_reasons();
        seen.iter().position(|r| r == "ErrImagePull").is_some_and(|i| seen[i..].iter().any(|r| r == "ImagePullBackOff")).then_some(seen)
    });
    assert!(!seen.iter().any(|r| r != "ErrImagePull" && r != "ImagePullBackOff" && r != "ContainerCreating"), "{seen:?}");
    drop(watch);
    assert!(backoff.contains("manifest unknown"), "the registry's message in the waiting message: {backoff}");
    assert!(backoff.contains(&missing), "the back-off names the image: {backoff}");

    let describe = s.ok(&["describe", "pod", "missing"]);
    assert!(describe.contains("ImagePullBackOff"), "{describe}");
    assert!(describe.contains("manifest unknown"), "describe shows the registry's message: {describe}");
    let events = events(&s, "missing");
    assert!(events.iter().any(|(r, m)| r == "Failed" && m.contains("Failed to pull image") && m.contains("manifest unknown")), "{events:?}");
    assert!(events.iter().any(|(r, _)| r == "BackOff"), "{events:?}");
    let p = s.get_json(&["pod", "missing"]);
    assert_eq!(p["status"]["phase"], "Pending", "{p}");

    // The other pod keeps running untouched, and a new pod starts next to the failing one.
    let steady = s.get_json(&["pod", "steady"]);
    assert_eq!(steady["status"]["phase"], "Running");
    assert_eq!(steady["status"]["containerStatuses"][0]["containerID"], steady_id);
    assert_eq!(steady["status"]["containerStatuses"][0]["restartCount"], 0);
    s.ok_stdin(&["apply", "-f", "-"], &pod("latecomer", "busybox:test", "Never", "echo late", ""));
    wait_running(&s, "latecomer");
    assert_eq!(s.ok(&["exec", "steady", "--", "echo", "fine"]).trim(), "fine");
}

#[test]
fn a_private_registry_needs_the_pull_secret() {
    let s = Server::start_node();
    let htpasswd = format!("alice:{}\n", bcrypt::hash("s3cret-pass", 4).unwrap());
    let registry = TestRegistry::start_with_htpasswd(&htpasswd).expect("docker-registry with htpasswd starts");
    let (_image, reference) = push_busybox(&registry, "private/busybox:1", Some(("alice", "s3cret-pass")));

    s.ok_stdin(&["apply", "-f", "-"], &pod("anonymous", &reference, "Always", "echo anonymous", ""));
    let (reason, message) = wait_waiting(&s, "anonymous", &["ErrImagePull", "ImagePullBackOff"], Duration::from_secs(60));
    let lower = message.to_lowercase();
    assert!(lower.contains("unauthorized") || lower.contains("401") || lower.contains("authentication"), "{reason}: {message}");

    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.host()),
        "--docker-username=alice",
        "--docker-password=s3cret-pass",
    ]);
    let with_secret = pod("authorized", &reference, "Always", "echo authorized", "  imagePullSecrets:\n  - name: regcred\n");
    s.ok_stdin(&["apply", "-f", "-"], &with_secret);
    wait_running(&s, "authorized");
    eventually("the private image's output", Duration::from_secs(20), || s.ok(&["logs", "authorized"]).contains("authorized").then_some(()));
    // The pod without the secret still cannot pull.
    let (reason, _) = waiting(&s, "anonymous").expect("the anonymous pod still waits");
    assert!(reason == "ErrImagePull" || reason == "ImagePullBackOff", "{reason}");
}

const CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {greeting: hello-1}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
stringData: {password: hunter2}
"#;

const CONFIGURED: &str = r#"
  - name: extra
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: app-secret, key: password}}
    volumeMounts:
    - {name: config, mountPath: /etc/cfg}
    - {name: secret, mountPath: /etc/sec}
  volumes:
  - name: config
    configMap: {name: app-config}
  - name: secret
    secret: {secretName: app-secret}
"#;

fn exec(s: &Server, pod: &str, container: &str, script: &str) -> String {
    s.ok(&["exec", pod, "-c", container, "--", "sh", "-c", script]).trim().to_string()
}

#[test]
fn config_maps_and_secrets_reach_the_pod_and_follow_updates() {
    let s = Server::start_node();
    // A pod whose configMap does not exist yet waits and says which one is missing.
    let waiting_pod = pod("waits", "busybox:test", "Never", "cat /etc/late/key; echo", "    volumeMounts: [{name: late, mountPath: /etc/late}]\n  volumes:\n  - name: late\n    configMap: {name: late-config}\n");
    s.ok_stdin(&["apply", "-f", "-"], &waiting_pod);
    // So does one whose environment names a missing configMap.
    let env_pod = pod("needs-env", "busybox:test", "Never", "echo $LATE", "    env:\n    - name: LATE\n      valueFrom: {configMapKeyRef: {name: env-config, key: late}}\n");
    s.ok_stdin(&["apply", "-f", "-"], &env_pod);

    s.ok_stdin(&["apply", "-f", "-"], CONFIG);
    s.ok_stdin(&["apply", "-f", "-"], &pod("configured", "busybox:test", "Never", "true", CONFIGURED));
    wait_running(&s, "configured");
    assert_eq!(exec(&s, "configured", "extra", "echo $GREETING $PASSWORD"), "hello-1 hunter2");
    assert_eq!(exec(&s, "configured", "extra", "cat /etc/cfg/greeting"), "hello-1");
    assert_eq!(exec(&s, "configured", "extra", "cat /etc/sec/password"), "hunter2");
    assert_eq!(exec(&s, "configured", "extra", "readlink /etc/cfg/greeting"), "..data/greeting");
    let data_before = exec(&s, "configured", "extra", "readlink /etc/cfg/..data");
    assert!(data_before.starts_with("..20"), "..data points at a timestamped folder: {data_before}");

    let message = eventually("the waiting pod to name its missing configMap", Duration::from_secs(60), || {
        let events = events(&s, "waits");
        events.into_iter().find(|(r, m)| r == "FailedMount" && m.contains("late-config")).map(|(_, m)| m)
    });
    assert!(message.contains(r#"configmap "late-config" not found"#), "{message}");
    let p = s.get_json(&["pod", "waits"]);
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    let describe = s.ok(&["describe", "pod", "waits"]);
    assert!(describe.contains("late-config"), "describe names the missing configMap: {describe}");

    let (_, env_message) = wait_waiting(&s, "needs-env", &["CreateContainerConfigError"], Duration::from_secs(60));
    assert_eq!(env_message, r#"configmap "env-config" not found"#);

    // Update the ConfigMap and create the missing one: the file follows by the ..data swap, the env does not
    // (as upstream), and the waiting pod starts.
    s.ok(&["patch", "configmap", "app-config", "-p", r#"{"data":{"greeting":"hello-2"}}"#]);
    s.ok(&["create", "configmap", "late-config", "--from-literal=key=arrived"]);
    s.ok(&["create", "configmap", "env-config", "--from-literal=late=in-env"]);
    eventually("the configMap file to follow the update", Duration::from_secs(120), || {
        (exec(&s, "configured", "extra", "cat /etc/cfg/greeting") == "hello-2").then_some(())
    });
    let data_after = exec(&s, "configured", "extra", "readlink /etc/cfg/..data");
    assert_ne!(data_after, data_before, "the update swapped the ..data symlink");
    assert_eq!(exec(&s, "configured", "extra", "echo $GREETING"), "hello-1", "environment variables are fixed at start");
    wait_running(&s, "waits");
    eventually("the late configMap's content", Duration::from_secs(20), || s.ok(&["logs", "waits"]).contains("arrived").then_some(()));
    wait_running(&s, "needs-env");
    eventually("the late environment", Duration::from_secs(20), || s.ok(&["logs", "needs-env"]).contains("in-env").then_some(()));
}

/// The CRI log file(s) of a pod's container under the local agent's data dir.
fn container_logs(data_dir: &Path, pod: &str) -> Vec<PathBuf> {
    let root = data_dir.join("agent").join("logs");
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(&format!("_{pod}_")) && path.extension().is_some_and(|e| e == "log") {
                found.push(path);
            }
        }
    }
    found
}

fn last_tick(text: &str) -> Option<u64> {
    text.lines().filter_map(|l| l.rsplit("tick ").next()?.trim().parse().ok()).max()
}

#[test]
fn a_killed_server_leaves_its_pods_running_and_adopts_them_on_restart() {
    let mut s = Server::start_node();
    s.ok_stdin(&["apply", "-f", "-"], &pod("survivor", "busybox:test", "Never", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done", ""));
    let before = wait_running(&s, "survivor");
    let id = before["status"]["containerStatuses"][0]["containerID"].as_str().unwrap().to_string();
    eventually("a few ticks", Duration::from_secs(20), || (last_tick(&s.ok(&["logs", "survivor"]))? >= 1).then_some(()));

    s.kill9();
    let logs = container_logs(s.dir.path(), "survivor");
    assert_eq!(logs.len(), 1, "one log file for the container: {logs:?}");
    let at_kill = last_tick(&std::fs::read_to_string(&logs[0]).unwrap()).unwrap();
    let while_dead = eventually("the container to keep writing with the server dead", Duration::from_secs(30), || {
        let t = last_tick(&std::fs::read_to_string(&logs[0]).ok()?)?;
        (t >= at_kill + 2).then_some(t)
    });

    s.restart(&[]);
    let after = wait_running(&s, "survivor");
    let status = &after["status"]["containerStatuses"][0];
    assert_eq!(status["containerID"], id.as_str(), "the restarted kubelet adopted the container: {status}");
    assert_eq!(status["restartCount"], 0, "{status}");
    assert!(status["state"]["running"].is_object(), "{status}");
    let seen = eventually("kubectl logs after the restart", Duration::from_secs(30), || {
        let t = last_tick(&s.ok(&["logs", "survivor"]))?;
        (t > while_dead).then_some(t)
    });
    assert!(seen > at_kill);
    assert_eq!(s.ok(&["exec", "survivor", "--", "echo", "back"]).trim(), "back");
    let events = events(&s, "survivor");
    assert_eq!(events.iter().filter(|(r, _)| r == "Started").count(), 1, "the container was not started again: {events:?}");
}

/// The free share (%) of the filesystem holding `dir`, from `df`.
fn disk_available_percent(dir: &Path) -> f64 {
    let out = Command::new("df").args(["--output=size,avail", "-B1"]).arg(dir).output().expect("df runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let nums: Vec<f64> = text.lines().nth(1).unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
    nums[1] * 100.0 / nums[0]
}

fn node_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

#[test]
fn an_agent_joins_with_the_token_and_its_pods_reach_the_first_node() {
    let s = Server::start_node();
    let token = s.token();

    // A wrong token is refused with a clear message, and the agent exits.
    let (hash, _) = token.split_once("::").expect("a K10 token");
    let refused_dir = tempfile::Builder::new().prefix("skiff-e2e-refused-").tempdir().unwrap();
    let mut refused = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("agent")
        .args(["--server", &s.url(""), "--token", &format!("{hash}::server:not-the-secret"), "--node-name", "intruder"])
        .arg("--data-dir")
        .arg(refused_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually("the refused agent to exit", Duration::from_secs(30), || refused.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("the join token is not this server's"), "{stderr}");
    assert!(s.kubectl(&["get", "node", "intruder"]).status.code() != Some(0), "no node for a refused agent");

    let node2 = format!("n2-{}", s.port);
    let agent = Agent::start(&s, &node2, &[]);
    let n2 = eventually("the second node Ready with its pod CIDR", Duration::from_secs(90), || {
        let out = s.kubectl(&["get", "node", &node2, "-o", "json"]);
        let n: Value = serde_json::from_slice(&out.stdout).ok()?;
        (node_ready(&n) && n["spec"]["podCIDR"].is_string()).then_some(n)
    });
    let n1 = s.get_json(&["node", &s.node_name()]);
    let (cidr1, cidr2) = (n1["spec"]["podCIDR"].as_str().unwrap(), n2["spec"]["podCIDR"].as_str().unwrap());
    assert_ne!(cidr1, cidr2, "each node has its own pod CIDR");
    assert_eq!(n2["metadata"]["labels"]["kubernetes.io/hostname"], node2.as_str(), "{n2}");

    let on_node1 = format!("  nodeName: {}\n", s.node_name());
    let on_node2 = format!("  nodeSelector: {{kubernetes.io/hostname: {node2}}}\n");
    s.ok_stdin(&["apply", "-f", "-"], &pod("first", "busybox:test", "Never", "echo on the first node", &on_node1));
    s.ok_stdin(&["apply", "-f", "-"], &pod("second", "busybox:test", "Never", "echo on the second node", &on_node2));
    let first = wait_running(&s, "first");
    let second = wait_running(&s, "second");
    assert_eq!(second["spec"]["nodeName"], node2.as_str());
    let ip2 = second["status"]["podIP"].as_str().unwrap().to_string();
    let prefix2 = cidr2.rsplit_once('.').unwrap().0;
    assert!(ip2.starts_with(&format!("{prefix2}.")), "pod IP {ip2} from the second node's CIDR {cidr2}");
    let ip1 = first["status"]["podIP"].as_str().unwrap().to_string();

    // Logs and exec reach the second node's kubelet through the API server.
    eventually("logs from the second node", Duration::from_secs(20), || s.ok(&["logs", "second"]).contains("on the second node").then_some(()));
    assert_eq!(s.ok(&["exec", "second", "--", "hostname"]).trim(), "second");
    let out = s.kubectl(&["exec", "second", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));

    // Pods on the two nodes reach each other by IP (both bridges are on this host).
    eventually("a ping from node 1's pod to node 2's pod", Duration::from_secs(30), || {
        s.kubectl(&["exec", "first", "--", "ping", "-c", "1", "-W", "2", &ip2]).status.success().then_some(())
    });
    eventually("a ping from node 2's pod to node 1's pod", Duration::from_secs(30), || {
        s.kubectl(&["exec", "second", "--", "ping", "-c", "1", "-W", "2", &ip1]).status.success().then_some(())
    });
    drop(agent);
}

#[test]
fn the_node_reports_capacity_conditions_and_renews_its_lease() {
    let s = Server::start_node();
    let name = s.node_name();
    let node = eventually("the node Ready", Duration::from_secs(60), || {
        let n = s.get_json(&["node", &name]);
        node_ready(&n).then_some(n)
    });
    for field in ["capacity", "allocatable"] {
        let r = &node["status"][field];
        for key in ["cpu", "memory", "ephemeral-storage", "pods"] {
            assert!(r[key].is_string(), "{field}.{key}: {r}");
        }
        assert_eq!(r["pods"], "110", "{field}: {r}");
    }
    let conditions: Vec<&str> = node["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    for c in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(conditions.contains(&c), "condition {c}: {conditions:?}");
    }
    // Ready; no memory or PID pressure here; disk pressure as upstream's nodefs.available<10% says for the
    // filesystem of the data dir (CI disks can be nearly full: compare with `df`, away from the threshold).
    let condition = |t: &str| node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap().clone();
    assert_eq!(condition("Ready")["status"], "True");
    assert_eq!(condition("Ready")["reason"], "KubeletReady");
    assert_eq!(condition("MemoryPressure")["status"], "False", "{node}");
    assert_eq!(condition("PIDPressure")["status"], "False", "{node}");
    let available = disk_available_percent(s.dir.path());
    let disk = condition("DiskPressure");
    let expected = [("True", "KubeletHasDiskPressure"), ("False", "KubeletHasNoDiskPressure")];
    if available < 8.0 {
        assert_eq!((disk["status"].as_str().unwrap(), disk["reason"].as_str().unwrap()), expected[0], "{available:.1}% free: {disk}");
    } else if available > 12.0 {
        assert_eq!((disk["status"].as_str().unwrap(), disk["reason"].as_str().unwrap()), expected[1], "{available:.1}% free: {disk}");
    }
    let info = &node["status"]["nodeInfo"];
    for key in ["kernelVersion", "osImage", "containerRuntimeVersion", "kubeletVersion", "operatingSystem", "architecture"] {
        assert!(info[key].as_str().is_some_and(|v| !v.is_empty()), "nodeInfo.{key}: {info}");
    }
    assert_eq!(info["operatingSystem"], "linux");
    assert!(node["status"]["addresses"].as_array().unwrap().iter().any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"), "{node}");
    assert!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().is_some_and(|p| p > 0), "{node}");
    let wide = s.ok(&["get", "nodes"]);
    assert!(wide.lines().any(|l| l.starts_with(&name) && l.contains(" Ready ")), "{wide}");

    let lease = s.get_json(&["lease", "-n", "kube-node-lease", &name]);
    assert_eq!(lease["spec"]["holderIdentity"], name.as_str(), "{lease}");
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    eventually("the lease to be renewed", Duration::from_secs(40), || {
        let l = s.get_json(&["lease", "-n", "kube-node-lease", &name]);
        (l["spec"]["renewTime"].as_str()? != first).then_some(())
    });
}
