//! End-to-end: pods as real containers. The built `skiff server` with its local agent (runc, CNI) and the
//! real kubectl; the busybox test image is imported from an archive before the server starts.

mod e2e;

use std::time::Duration;

use e2e::{Server, eventually};

const HELLO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; echo hello from skiff; while true; do sleep 1; done"]
"#;

fn wait_running(s: &Server, pod: &str) {
    eventually(&format!("pod {pod} Running"), Duration::from_secs(60), || {
        let p = s.get_json(&["pod", pod]);
        (p["status"]["phase"] == "Running" && p["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")).then_some(())
    });
}

#[test]
fn a_pod_runs_prints_and_execs_then_is_removed() {
    let s = Server::start_node();
    s.ok_stdin(&["apply", "-f", "-"], HELLO);
    wait_running(&s, "hello");
    let pod = s.get_json(&["pod", "hello"]);
    assert!(pod["spec"]["nodeName"].as_str().is_some_and(|n| n.starts_with("node-")), "the scheduler placed it: {pod}");
    assert!(pod["status"]["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.")), "pod IP from the node's pod CIDR: {pod}");
    assert!(pod["status"]["containerStatuses"][0]["containerID"].as_str().is_some_and(|id| id.starts_with("skiff://")));

    let logs = eventually("the pod's output in kubectl logs", Duration::from_secs(20), || {
        let out = s.ok(&["logs", "hello"]);
        out.contains("hello from skiff").then_some(out)
    });
    assert_eq!(logs.trim(), "hello from skiff");

    assert_eq!(s.ok(&["exec", "hello", "--", "echo", "inside"]).trim(), "inside");
    let out = s.kubectl(&["exec", "hello", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "kubectl exec returns the command's exit code: {}", String::from_utf8_lossy(&out.stderr));

    s.ok(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
    let left = s.kubectl(&["get", "pod", "hello"]);
    assert!(!left.status.success(), "the pod is gone after deletion");
}

// ---------------------------------------------------------------------------------------------------------
// Helpers of the tests below.

/// Applies a manifest with `kubectl apply -f -`.
fn apply(s: &Server, yaml: &str) {
    s.ok_stdin(&["apply", "-f", "-"], yaml);
}

/// The pod's status of container `name` (in `containerStatuses` or `initContainerStatuses`).
fn container_status(pod: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| pod["status"][k].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
}

/// The READY, STATUS and RESTARTS columns of `kubectl get pod NAME` (the server-side table).
fn get_columns(s: &Server, pod: &str) -> (String, String, String) {
    let out = s.ok(&["get", "pod", pod, "--no-headers"]);
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert!(cols.len() >= 5 && cols[0] == pod, "kubectl get pod {pod}: {out}");
    (cols[1].to_string(), cols[2].to_string(), cols[3].to_string())
}

fn condition(pod: &serde_json::Value, kind: &str) -> Option<String> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind).and_then(|c| c["status"].as_str()).map(str::to_string)
}

/// Waits for the pod's phase to be `phase`; returns the pod.
#[track_caller]
fn wait_phase(s: &Server, pod: &str, phase: &str, timeout: Duration) -> serde_json::Value {
    eventually(&format!("pod {pod} in phase {phase}"), timeout, || {
        let p = s.get_json(&["pod", pod]);
        (p["status"]["phase"] == phase).then_some(p)
    })
}

/// Waits until the pod's phase is Running and container `name` is running (not necessarily ready).
#[track_caller]
fn wait_container_running(s: &Server, pod: &str, name: &str) -> serde_json::Value {
    eventually(&format!("container {name} of pod {pod} running"), Duration::from_secs(60), || {
        let p = s.get_json(&["pod", pod]);
        container_status(&p, name).filter(|c| c["state"]["running"].is_object()).map(|_| p)
    })
}

/// Lines a background process prints on stdout, read on a thread so a test can wait with a time-out.
struct Lines {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(mut cmd: std::process::Command) -> Lines {
        use std::io::BufRead;
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).stdin(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("kubectl starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, rx, seen: Vec::new() }
    }

    /// Reads lines until one contains `want`; fails after `timeout` with what was printed.
    #[track_caller]
    fn wait_for(&mut self, want: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.seen.iter().any(|l| l.contains(want)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no line with {want:?} ({e:?}); printed so far: {:?}", self.seen),
            }
        }
    }

    /// Waits for the end of stdout and the exit of the process; returns its status.
    #[track_caller]
    fn wait_end(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("the process did not end ({e:?}); printed so far: {:?}", self.seen),
            }
        }
        eventually("the process to exit", timeout, || self.child.try_wait().unwrap())
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Logs.

#[test]
fn logs_follow_previous_tail_and_timestamps() {
    let s = Server::start_node();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: follow}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; done; until [ -e /tmp/go ]; do sleep 0.2; done; echo line 11; sleep 1; echo line 12"]
---
apiVersion: v1
kind: Pod
metadata: {name: twice}
spec:
  restartPolicy: Always
  volumes: [{name: state, emptyDir: {}}]
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    volumeMounts: [{name: state, mountPath: /state}]
    command: ["sh", "-c", "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n; echo instance $n; if [ $n = 1 ]; then exit 1; fi; trap 'exit 0' TERM; while true; do sleep 1; done"]
"#,
    );
    wait_container_running(&s, "follow", "main");
    eventually("ten lines logged", Duration::from_secs(20), || s.ok(&["logs", "follow"]).contains("line 10").then_some(()));

    // --tail: the last lines only.
    assert_eq!(s.ok(&["logs", "follow", "--tail=3"]), "line 8\nline 9\nline 10\n");
    // --timestamps: each line starts with its RFC 3339 time.
    let stamped = s.ok(&["logs", "follow", "--timestamps", "--tail=2"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    for (line, want) in lines.iter().zip(["line 9", "line 10"]) {
        let (ts, text) = line.split_once(' ').unwrap_or_else(|| panic!("no timestamp in {line:?}"));
        assert_eq!(text, want, "{stamped}");
        assert!(
            ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
            "an RFC 3339 UTC timestamp: {ts:?}"
        );
    }

    // --limit-bytes and --since.
    assert_eq!(s.ok(&["logs", "follow", "--limit-bytes=9"]), "line 1\nli");
    assert!(s.ok(&["logs", "follow", "--since=1h"]).starts_with("line 1\nline 2\n"));

    // -f: prints what is there, follows new lines, and ends when the container exits.
    let mut follow = Lines::spawn(s.kubectl_command(&["logs", "-f", "follow"]));
    follow.wait_for("line 10", Duration::from_secs(20));
    assert!(!follow.seen.iter().any(|l| l.contains("line 11")), "line 11 is not printed before /tmp/go exists");
    s.ok(&["exec", "follow", "--", "touch", "/tmp/go"]);
    follow.wait_for("line 11", Duration::from_secs(20));
    follow.wait_for("line 12", Duration::from_secs(20));
    let status = follow.wait_end(Duration::from_secs(30));
    assert!(status.success(), "kubectl logs -f ends cleanly when the container exits: {status}; {:?}", follow.seen);
    let want: Vec<String> = (1..=12).map(|i| format!("line {i}")).collect();
    assert_eq!(follow.seen, want);
    let done = wait_phase(&s, "follow", "Succeeded", Duration::from_secs(30));
    assert_eq!(container_status(&done, "main").unwrap()["state"]["terminated"]["reason"], "Completed");

    // --previous: the instance before the restart.
    eventually("the second instance of twice runs", Duration::from_secs(60), || {
        let p = s.get_json(&["pod", "twice"]);
        let c = container_status(&p, "main")?;
        (c["restartCount"].as_i64() >= Some(1) && c["state"]["running"].is_object()).then_some(())
    });
    let current = eventually("the second instance's output", Duration::from_secs(20), || {
        let out = s.ok(&["logs", "twice"]);
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(current, "instance 2\n");
    assert_eq!(s.ok(&["logs", "twice", "--previous"]), "instance 1\n");
    let p = s.get_json(&["pod", "twice"]);
    let last = &container_status(&p, "main").unwrap()["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{p}");
    assert_eq!(last["reason"], "Error", "{p}");
    // No previous instance: a clear error.
    let err = s.fails(&["logs", "follow", "--previous"]);
    assert!(err.contains("previous terminated container") && err.contains("not found"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Exec with a TTY and with stdin.

const SLEEPER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#;

fn sleeper(name: &str) -> String {
    SLEEPER.replace("NAME", name)
}

#[test]
fn exec_with_a_tty_and_with_stdin() {
    assert!(
        std::process::Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success()),
        "this test runs kubectl under util-linux `script` for a TTY: apt-get install util-linux"
    );
    let s = Server::start_node();
    apply(&s, &sleeper("shell"));
    wait_running(&s, "shell");

    // -it under `script`: the command sees a terminal and its exit code comes back through kubectl and script.
    let line = s.kubectl_shell_line(&["exec", "-it", "shell", "--", "sh", "-c", "busybox tty; [ -t 0 ] && echo stdin-is-a-tty; exit 5"]);
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    // script forwards its stdin to the terminal; an open, empty pipe (not /dev/null) so it does not see EOF first.
    script.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = script.spawn().expect("script starts");
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.lines().any(|l| l.trim_end_matches('\r').starts_with("/dev/pts/")), "tty prints a /dev/pts path: {text:?} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("stdin-is-a-tty"), "{text:?}");
    assert!(text.contains("\r\n"), "a TTY turns \\n into \\r\\n: {text:?}");
    assert_eq!(out.status.code(), Some(5), "the exit code comes back through kubectl exec -it: {text:?} {}", String::from_utf8_lossy(&out.stderr));

    // Typing into the terminal: an interactive shell reads the lines and its exit code comes back.
    let line = s.kubectl_shell_line(&["exec", "-it", "shell", "--", "sh"]);
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    script.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = script.spawn().expect("script starts");
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(b"echo typed-$((40+2))\nexit 4\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("typed-42"), "the shell ran the typed line: {text:?} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{text:?} {}", String::from_utf8_lossy(&out.stderr));

    // Without -t there is no terminal.
    let out = s.kubectl(&["exec", "shell", "--", "sh", "-c", "busybox tty; exit 0"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not a tty");

    // -i with a pipe: what is sent comes back, and stdin's end ends the command.
    let sent = "first line\nsecond line\n".repeat(200);
    let echoed = s.ok_stdin(&["exec", "-i", "shell", "--", "cat"], &sent);
    assert_eq!(echoed, sent);
    let counted = s.ok_stdin(&["exec", "-i", "shell", "--", "wc", "-l"], "a\nb\nc\n");
    assert_eq!(counted.trim(), "3");
}

// ---------------------------------------------------------------------------------------------------------
// Port-forward.

#[test]
fn port_forward_reaches_an_http_server_in_the_pod() {
    let s = Server::start_node();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo served-by-busybox-httpd > /www/page.txt && exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080}]
"#,
    );
    wait_running(&s, "web");
    let local = e2e::free_local_port();
    let mut forward = Lines::spawn(s.kubectl_command(&["port-forward", "pod/web", &format!("{local}:8080")]));
    forward.wait_for(&format!("Forwarding from 127.0.0.1:{local} -> 8080"), Duration::from_secs(30));
    let url = format!("http://127.0.0.1:{local}/page.txt");
    let body = eventually("the page through the forwarded port", Duration::from_secs(30), || {
        let out = std::process::Command::new("curl").args(["-sf", "--max-time", "10", &url]).output().expect("curl runs");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(body, "served-by-busybox-httpd\n");
    // A second connection over the same forward, and a missing file is the server's 404.
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", &format!("http://127.0.0.1:{local}/nothing")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    // Connections at the same time, each its own stream.
    let parallel: Vec<_> = (0..5)
        .map(|_| std::process::Command::new("curl").args(["-sf", "--max-time", "20", &url]).stdout(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    for curl in parallel {
        let out = curl.wait_with_output().unwrap();
        assert!(out.status.success(), "a concurrent request through the forward failed: {}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "served-by-busybox-httpd\n");
    }
    assert!(forward.child.try_wait().unwrap().is_none(), "kubectl port-forward keeps running");
}

// ---------------------------------------------------------------------------------------------------------
// Pod network.

#[test]
fn two_pods_ping_each_other_by_pod_ip() {
    let s = Server::start_node();
    apply(&s, &format!("{}---{}", sleeper("ping-a"), sleeper("ping-b")));
    wait_running(&s, "ping-a");
    wait_running(&s, "ping-b");
    let ip = |pod: &str| s.get_json(&["pod", pod])["status"]["podIP"].as_str().unwrap().to_string();
    let (a, b) = (ip("ping-a"), ip("ping-b"));
    assert_ne!(a, b);
    for (from, to) in [("ping-a", &b), ("ping-b", &a)] {
        let out = s.kubectl(&["exec", from, "--", "ping", "-c", "2", "-W", "5", to]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("2 packets received"),
            "{from} pings {to}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The container sees its own pod IP on eth0.
    let addrs = s.ok(&["exec", "ping-a", "--", "ip", "-4", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("inet {a}/")), "{addrs}");
}

// ---------------------------------------------------------------------------------------------------------
// Init containers.

#[test]
fn init_containers_run_first_and_in_order() {
    let s = Server::start_node();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: inits}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: first
    image: busybox:test
    imagePullPolicy: Never
    volumeMounts: [{name: work, mountPath: /work}]
    command: ["sh", "-c", "[ ! -e /work/order ] && echo first >> /work/order"]
  - name: second
    image: busybox:test
    imagePullPolicy: Never
    volumeMounts: [{name: work, mountPath: /work}]
    command: ["sh", "-c", "grep -qx first /work/order && sleep 1 && echo second >> /work/order"]
  containers:
  - name: app
    image: busybox:test
    imagePullPolicy: Never
    volumeMounts: [{name: work, mountPath: /work}]
    command: ["sh", "-c", "cat /work/order; echo app >> /work/order; trap 'exit 0' TERM; while true; do sleep 1; done"]
"#,
    );
    wait_running(&s, "inits");
    let logs = eventually("the app's output", Duration::from_secs(20), || {
        let out = s.ok(&["logs", "inits", "-c", "app"]);
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(logs, "first\nsecond\n");
    let pod = s.get_json(&["pod", "inits"]);
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("True"), "{pod}");
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits.iter().map(|c| c["name"].as_str().unwrap()).collect::<Vec<_>>(), ["first", "second"]);
    for c in inits {
        assert_eq!(c["state"]["terminated"]["reason"], "Completed", "{c}");
        assert_eq!(c["state"]["terminated"]["exitCode"], 0, "{c}");
        assert_eq!(c["restartCount"], 0, "{c}");
    }
    let first_done = inits[0]["state"]["terminated"]["finishedAt"].as_str().unwrap();
    let second_started = inits[1]["state"]["terminated"]["startedAt"].as_str().unwrap();
    assert!(first_done <= second_started, "second starts after first finished: {first_done} {second_started}");
    assert_eq!(s.ok(&["logs", "inits", "-c", "second"]), "");
}

// ---------------------------------------------------------------------------------------------------------
// Restarts: crash loop, liveness, readiness, OOM, start errors, restart policies.

#[test]
fn a_crashing_container_reaches_crash_loop_back_off_with_growing_delay() {
    let s = Server::start_node();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  restartPolicy: Always
  containers:
  - name: boom
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "echo crashing; exit 1"]
"#,
    );
    let uid = s.get_json(&["pod", "crasher"])["metadata"]["uid"].as_str().unwrap().to_string();
    let message = |delay: &str| format!("back-off {delay} restarting failed container=boom pod=crasher_default({uid})");
    let first = eventually("CrashLoopBackOff with a 10s back-off", Duration::from_secs(60), || {
        let p = s.get_json(&["pod", "crasher"]);
        let c = container_status(&p, "boom")?;
        (c["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(c)
    });
    assert_eq!(first["state"]["waiting"]["message"], message("10s").as_str(), "{first}");
    assert_eq!(first["lastState"]["terminated"]["exitCode"], 1, "{first}");
    assert_eq!(first["lastState"]["terminated"]["reason"], "Error", "{first}");
    assert_eq!(first["ready"], false);
    let count_at_10s = first["restartCount"].as_i64().unwrap();
    assert!(count_at_10s >= 1, "{first}");

    let second = eventually("the back-off doubles to 20s", Duration::from_secs(90), || {
        let p = s.get_json(&["pod", "crasher"]);
        let c = container_status(&p, "boom")?;
        (c["state"]["waiting"]["message"] == message("20s").as_str()).then_some((p, c))
    });
    let (pod, c) = second;
    assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff", "{c}");
    assert!(c["restartCount"].as_i64().unwrap() > count_at_10s, "restartCount grows: {c}");
    assert_eq!(pod["status"]["phase"], "Running", "a restarting pod stays Running: {pod}");
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    let (ready, status, restarts) = get_columns(&s, "crasher");
    assert_eq!((ready.as_str(), status.as_str()), ("0/1", "CrashLoopBackOff"), "kubectl get pod crasher");
    assert!(restarts.parse::<i64>().is_ok_and(|r| r >= 2), "RESTARTS column: {restarts}");
    let describe = s.ok(&["describe", "pod", "crasher"]);
    assert!(describe.contains("CrashLoopBackOff") && describe.contains("Back-off restarting failed container boom"), "{describe}");
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let s = Server::start_node();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; trap 'exit 0' TERM; while true; do sleep 1; done"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    let c = eventually("a restart after the liveness probe failed", Duration::from_secs(90), || {
        let p = s.get_json(&["pod", "live"]);
        let c = container_status(&p, "main")?;
        (c["restartCount"].as_i64() >= Some(1)).then_some(c)
    });
    assert!(c["lastState"]["terminated"].is_object(), "the killed instance is lastState: {c}");
    let events = eventually("the Unhealthy and Killing events", Duration::from_secs(30), || {
        let events = s.events_of("live");
        let has = |reason: &str| events.iter().any(|e| e["reason"] == reason);
        (has("Unhealthy") && has("Killing")).then_some(events)
    });
    let unhealthy = events.iter().find(|e| e["reason"] == "Unhealthy").unwrap();
    assert_eq!(unhealthy["type"], "Warning");
    assert!(unhealthy["message"].as_str().unwrap().starts_with("Liveness probe failed"), "{unhealthy}");
    let killing = events.iter().find(|e| e["reason"] == "Killing").unwrap();
    assert!(killing["message"].as_str().unwrap().contains("failed liveness probe, will be restarted"), "{killing}");
    let describe = s.ok(&["describe", "pod", "live"]);
    assert!(describe.contains("Liveness probe failed"), "{describe}");
}

#[test]
fn readiness_probe_gates_the_ready_condition() {
    let s = Server::start_node();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: gated}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    readinessProbe:
      exec: {command: ["cat", "/tmp/ready"]}
      periodSeconds: 1
"#,
    );
    wait_container_running(&s, "gated", "main");
    // Probed several times and still not ready.
    eventually("a failed readiness probe event", Duration::from_secs(30), || {
        s.events_of("gated").iter().any(|e| e["reason"] == "Unhealthy" && e["message"].as_str().is_some_and(|m| m.starts_with("Readiness probe failed"))).then_some(())
    });
    let pod = s.get_json(&["pod", "gated"]);
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"), "{pod}");
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("False"), "{pod}");
    assert_eq!(container_status(&pod, "main").unwrap()["ready"], false);
    assert_eq!(get_columns(&s, "gated").0, "0/1");

    s.ok(&["exec", "gated", "--", "touch", "/tmp/ready"]);
    wait_running(&s, "gated");
    let pod = s.get_json(&["pod", "gated"]);
    assert_eq!(container_status(&pod, "main").unwrap()["ready"], true, "{pod}");
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("True"), "{pod}");
    assert_eq!(get_columns(&s, "gated").0, "1/1");

    // And back: not ready once the file goes, without a restart.
    s.ok(&["exec", "gated", "--", "rm", "/tmp/ready"]);
    let pod = eventually("Ready False again", Duration::from_secs(30), || {
        let p = s.get_json(&["pod", "gated"]);
        (condition(&p, "Ready").as_deref() == Some("False")).then_some(p)
    });
    assert_eq!(container_status(&pod, "main").unwrap()["restartCount"], 0, "readiness never restarts: {pod}");
}

const HOG: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Always
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "echo eating; tail /dev/zero"]
    resources:
      limits: {memory: 20Mi}
"#;

#[test]
fn a_memory_hog_is_oom_killed() {
    let s = Server::start_node();
    apply(&s, HOG);
    let c = eventually("the OOM-killed instance in lastState", Duration::from_secs(90), || {
        let p = s.get_json(&["pod", "hog"]);
        let c = container_status(&p, "main")?;
        c["lastState"]["terminated"].is_object().then_some(c)
    });
    let last = &c["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{c}");
    assert_eq!(last["exitCode"], 137, "{c}");
    assert!(c["restartCount"].as_i64() >= Some(1), "restartPolicy Always restarts it: {c}");
    let describe = s.ok(&["describe", "pod", "hog"]);
    assert!(describe.contains("OOMKilled") && describe.contains("137"), "{describe}");

    // With restartPolicy Never the pod fails, and the reason stays in the current state.
    apply(&s, &HOG.replace("name: hog", "name: hog-never").replace("restartPolicy: Always", "restartPolicy: Never"));
    let p = wait_phase(&s, "hog-never", "Failed", Duration::from_secs(90));
    let c = container_status(&p, "main").unwrap();
    assert_eq!(c["state"]["terminated"]["reason"], "OOMKilled", "{p}");
    assert_eq!(c["state"]["terminated"]["exitCode"], 137, "{p}");
    assert_eq!(get_columns(&s, "hog-never").1, "OOMKilled");
}

#[test]
fn an_unknown_command_says_why_it_cannot_start() {
    let s = Server::start_node();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: typo}
spec:
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["no-such-command", "--flag"]
"#,
    );
    // As with containerd: the failed instance is terminated with StartError (exit code 128) and the runtime's
    // message; the container waits with RunContainerError (then CrashLoopBackOff) saying the same.
    let c = eventually("the failed start in lastState", Duration::from_secs(60), || {
        let p = s.get_json(&["pod", "typo"]);
        let c = container_status(&p, "main")?;
        (c["lastState"]["terminated"]["reason"] == "StartError").then_some(c)
    });
    let last = &c["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 128, "{c}");
    let message = last["message"].as_str().unwrap_or_default();
    assert!(message.contains("executable file not found") && message.contains("no-such-command"), "{c}");
    let waiting = &c["state"]["waiting"];
    assert!(["RunContainerError", "CrashLoopBackOff"].contains(&waiting["reason"].as_str().unwrap_or_default()), "{c}");
    if waiting["reason"] == "RunContainerError" {
        assert!(waiting["message"].as_str().unwrap_or_default().contains("executable file not found"), "{c}");
    }
    assert_eq!(c["started"], false, "{c}");
    let pod = s.get_json(&["pod", "typo"]);
    assert_ne!(condition(&pod, "Ready").as_deref(), Some("True"), "{pod}");
    let describe = s.ok(&["describe", "pod", "typo"]);
    assert!(describe.contains("executable file not found"), "{describe}");
    let events = s.events_of("typo");
    assert!(
        events.iter().any(|e| e["reason"] == "Failed" && e["message"].as_str().is_some_and(|m| m.contains("executable file not found"))),
        "{events:?}"
    );
}

#[test]
fn restart_policies_never_and_on_failure_end_in_succeeded_or_failed() {
    let s = Server::start_node();
    let pod = |name: &str, policy: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: main\n    image: busybox:test\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"{script}\"]\n"
        )
    };
    apply(
        &s,
        &[pod("done-never", "Never", "echo ok"), pod("done-onfailure", "OnFailure", "echo ok"), pod("fails-never", "Never", "echo bad; exit 3")].join("---\n"),
    );
    for name in ["done-never", "done-onfailure"] {
        let p = wait_phase(&s, name, "Succeeded", Duration::from_secs(60));
        let c = container_status(&p, "main").unwrap();
        assert_eq!(c["state"]["terminated"]["reason"], "Completed", "{p}");
        assert_eq!(c["state"]["terminated"]["exitCode"], 0, "{p}");
        assert_eq!(c["restartCount"], 0, "{p}");
        assert_eq!(condition(&p, "Ready").as_deref(), Some("False"), "{p}");
        assert_eq!(s.ok(&["logs", name]), "ok\n");
        assert_eq!(get_columns(&s, name), ("0/1".into(), "Completed".into(), "0".into()), "kubectl get pod {name}");
    }
    let p = wait_phase(&s, "fails-never", "Failed", Duration::from_secs(60));
    let c = container_status(&p, "main").unwrap();
    assert_eq!(c["state"]["terminated"]["reason"], "Error", "{p}");
    assert_eq!(c["state"]["terminated"]["exitCode"], 3, "{p}");
    assert_eq!(c["restartCount"], 0, "{p}");
    assert_eq!(s.ok(&["logs", "fails-never"]), "bad\n");
    assert_eq!(get_columns(&s, "fails-never"), ("0/1".into(), "Error".into(), "0".into()), "kubectl get pod fails-never");
    // Finished pods stay finished.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.get_json(&["pod", "fails-never"])["status"]["phase"], "Failed");
    assert_eq!(s.get_json(&["pod", "done-never"])["status"]["phase"], "Succeeded");
}
